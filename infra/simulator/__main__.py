"""Run the simulator in the foreground: `python -m infra.simulator --version v1.4.2 --kubeconfig PATH`.

Writes the kubeconfig (and, on request, one that logs in with a client certificate, and one Rancher
kubeconfig per `--rancher`), then a JSON ready file (for a parent process), and runs until SIGINT
or SIGTERM, when it stops serving and exits 0.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from .apiserver.tls import make_client_certificate
from .guest.dhcp import lab_description
from .harvester.versions import UnknownVersionError, version_names
from .kubeconfig import client_certificate_kubeconfig_dict, write_config, write_kubeconfig
from .nodes import NodeLogin
from .rancher.releases import RANCHER_VERSIONS, RancherRelease, UnknownRancherVersion
from .simulator import Simulator, start_simulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m infra.simulator", description=__doc__)
    parser.add_argument("--version", default="v1.4.2", help=f"Harvester version: {', '.join(version_names())}")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--time-scale", type=float, default=60.0)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--node-name-prefix", default="harvester-node", metavar="PREFIX",
                        help="nodes are named PREFIX-0, PREFIX-1, ... (their hostnames)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", type=Path, help="written (JSON) once the simulator serves")
    parser.add_argument("--bookmark-interval", type=float, default=5.0)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--ssh-authorized-key", type=Path, metavar="FILE",
                        help="public key(s) the nodes accept for user rancher (authorized_keys format)")
    parser.add_argument("--ssh-password-file", type=Path, metavar="FILE",
                        help="turn on password login (and sudo password) for rancher; off without it")
    parser.add_argument("--client-cert-kubeconfig", type=Path, metavar="PATH",
                        help="also write a kubeconfig that logs in with a client certificate (system:admin)")
    parser.add_argument("--rancher", action="append", default=[], metavar="VERSION",
                        help=f"start a simulated Rancher of this version (repeatable): {', '.join(RANCHER_VERSIONS)}")
    parser.add_argument("--rancher-dir", type=Path, metavar="DIR",
                        help="where the Rancher kubeconfigs go (default: beside --kubeconfig)")
    return parser.parse_args(argv)


def _stopping(signum: int, stop: asyncio.Event) -> None:
    logging.getLogger("infra.simulator").info("stopping on %s", signal.Signals(signum).name)
    stop.set()


def release_mirror(simulator: Simulator) -> list[dict[str, str]]:
    """Every simulated release's ISO as the lab's release mirror offers it: URL and sha512 (what a
    Version's isoURL and isoChecksum take), in release order."""
    from .harvester.versions import VERSIONS

    mirror = []
    for version in VERSIONS.values():
        published = simulator.releases.publish(version)
        mirror.append({"version": version.name, "isoURL": simulator.releases.iso_url(version),
                       "isoChecksum": published.checksum})
    return mirror


def ready_info(simulator: Simulator, args: argparse.Namespace) -> dict[str, Any]:
    """The ready file: how to reach everything this simulator offers, as a lab's inventory would say it."""
    vip = simulator.vip
    assert vip is not None and simulator.vip_key is not None
    rancher_dir = args.rancher_dir or args.kubeconfig.parent
    ranchers = []
    for rancher in simulator.ranchers:
        path = write_config(rancher_dir / f"rancher-{rancher.release.version}.kubeconfig", rancher.kubeconfig())
        ranchers.append(rancher.describe(path))
    info: dict[str, Any] = {
        "url": simulator.url, "kubeconfig": str(args.kubeconfig), "pid": os.getpid(),
        "harvesterVersion": simulator.version.name, "timeScale": args.time_scale,
        "nodes": simulator.nodes.describe() if simulator.nodes else [],
        "caPem": simulator.tls.ca_cert_pem.decode(),
        "harvesterApi": {"url": vip.url, "caPem": vip.tls.ca_cert_pem.decode(), "apiKey": simulator.vip_key.bearer},
        "ranchers": ranchers,
        "lab": lab_description(),
        "releases": release_mirror(simulator),
    }
    if args.client_cert_kubeconfig:
        cert, key = make_client_certificate(simulator.tls.client_ca_cert_pem, simulator.tls.client_ca_key_pem,
                                            "system:admin", ("system:masters",))
        write_config(args.client_cert_kubeconfig,
                     client_certificate_kubeconfig_dict(simulator.url, simulator.tls.ca_cert_pem, cert, key))
        info["clientCertKubeconfig"] = str(args.client_cert_kubeconfig)
    return info


async def serve(args: argparse.Namespace, announce) -> None:  # noqa: ANN001
    simulator = await start_simulator(args.version, node_count=args.nodes, time_scale=args.time_scale, port=args.port,
                            bookmark_interval=args.bookmark_interval,
                            node_login=NodeLogin.from_files(args.ssh_authorized_key, args.ssh_password_file),
                            rancher_versions=tuple(args.rancher), node_prefix=args.node_name_prefix)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _stopping, signum, stop)
    try:
        write_kubeconfig(args.kubeconfig, simulator.url, simulator.tls.ca_cert_pem, simulator.token)
        info = ready_info(simulator, args)
        if args.ready_file:
            tmp = args.ready_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(info))
            tmp.replace(args.ready_file)
        announce(simulator, info)
        await stop.wait()
    finally:
        await simulator.stop()


def main(argv: list[str] | None = None, announce=None) -> int:  # noqa: ANN001
    args = parse_args(argv)
    if len(set(args.rancher)) != len(args.rancher):
        print("error: --rancher: each version once", file=sys.stderr)
        return 2
    for version in args.rancher:
        try:
            RancherRelease.get(version)
        except UnknownRancherVersion as exc:
            print(f"error: --rancher: {exc}", file=sys.stderr)
            return 2
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(args, announce or (lambda simulator, info: None)))
    except UnknownVersionError as exc:
        print(f"error: --version: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
