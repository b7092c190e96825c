"""Run the simulator in the foreground: `python -m infra.simulator --version v1.4.2 --kubeconfig PATH`.

Writes the kubeconfig (and, on request, one that logs in with a client certificate, and one Rancher
kubeconfig per `--rancher`), then a JSON ready file (for a parent process), and runs until SIGINT
or SIGTERM, when it stops serving and exits 0.

As a Harvester appliance's API (inside a small VM, started at boot):
`python3 -m infra.simulator --this-machine --state-dir /var/lib/harvester-appliance/state --bind 0.0.0.0
--port 6443 --tls-san 10.0.2.10 --node-ip 10.0.2.15 --kubeconfig /etc/rancher/rke2/rke2.yaml --version v1.5.1
--ready-file /run/harvester-appliance/ready.json`: the one Node is the VM itself, and the cluster (objects,
CA, token) survives reboots in --state-dir. A stored state of another version is refused (exit 2).
"""
from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from .apiserver.tls import make_client_certificate
from .guest.dhcp import lab_description
from .harvester.seed import DEFAULT_NODE_PREFIX
from .harvester.versions import UnknownVersionError, get_version, version_names
from .kubeconfig import client_certificate_kubeconfig_dict, write_config, write_kubeconfig
from .nodes import NodeLogin
from .nodes.this_machine import HEARTBEAT_SECONDS, MachineFacts
from .nodes.this_machine import hostname as this_machine_hostname
from .persistence import SavedState, StateError, mismatch, prepare_directory, read_state
from .rancher.releases import RANCHER_VERSIONS, RancherRelease, UnknownRancherVersion
from .simulator import Simulator, start_simulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m infra.simulator", description=__doc__)
    parser.add_argument("--version", default="v1.4.2", help=f"Harvester version: {', '.join(version_names())}")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--time-scale", type=float, default=60.0)
    parser.add_argument("--nodes", type=int, default=None, help="simulated nodes (default 3)")
    parser.add_argument("--node-name-prefix", default=None, metavar="PREFIX",
                        help=f"nodes are named PREFIX-0, PREFIX-1, ... (their hostnames; default {DEFAULT_NODE_PREFIX})")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--bind", default="127.0.0.1", metavar="ADDR",
                        help="address the Kubernetes API listens on (0.0.0.0: every address)")
    parser.add_argument("--tls-san", action="append", default=[], metavar="NAME_OR_IP",
                        help="also name this in the serving certificate (repeatable; 127.0.0.1 and localhost always)")
    parser.add_argument("--this-machine", action="store_true",
                        help="one node, this machine: named after its hostname, reporting its boot id; no simulated "
                             "SSH or power for it")
    parser.add_argument("--node-ip", metavar="IP",
                        help="with --this-machine: the Node's InternalIP (default: this machine's first non-loopback "
                             "IPv4, else 127.0.0.1)")
    parser.add_argument("--node-status-interval", type=float, default=HEARTBEAT_SECONDS, metavar="SECONDS",
                        help="with --this-machine: how often the Node's heartbeat is posted, in real seconds "
                             f"(kubelet's nodeStatusUpdateFrequency; default {HEARTBEAT_SECONDS:g})")
    parser.add_argument("--state-dir", type=Path, metavar="DIR",
                        help="keep the cluster (objects, CA, token, API keys) in DIR and come back from it")
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
        "nodes": simulator.nodes.describe() if simulator.nodes else [],     # simulated machines only
        "caPem": simulator.tls.ca_cert_pem.decode(),
        "harvesterApi": {"url": vip.url, "caPem": vip.tls.ca_cert_pem.decode(), "apiKey": simulator.vip_key.bearer},
        "ranchers": ranchers,
        "lab": lab_description(),
        "releases": release_mirror(simulator),
    }
    if simulator.this_machine is not None:
        info["thisMachine"] = simulator.this_machine.describe()
    if args.state_dir is not None:
        info["stateDir"] = str(args.state_dir)
    if args.client_cert_kubeconfig:
        cert, key = make_client_certificate(simulator.tls.client_ca_cert_pem, simulator.tls.client_ca_key_pem,
                                            "system:admin", ("system:masters",))
        write_config(args.client_cert_kubeconfig,
                     client_certificate_kubeconfig_dict(simulator.url, simulator.tls.ca_cert_pem, cert, key))
        info["clientCertKubeconfig"] = str(args.client_cert_kubeconfig)
    return info


async def serve(args: argparse.Namespace, announce, saved: SavedState | None = None) -> None:  # noqa: ANN001
    this_machine = MachineFacts.read(args.node_ip) if args.this_machine else None
    simulator = await start_simulator(args.version, node_count=args.nodes or 3, time_scale=args.time_scale,
                            port=args.port, bookmark_interval=args.bookmark_interval,
                            node_login=NodeLogin.from_files(args.ssh_authorized_key, args.ssh_password_file),
                            rancher_versions=tuple(args.rancher),
                            node_prefix=args.node_name_prefix or DEFAULT_NODE_PREFIX,
                            host=args.bind, tls_sans=tuple(args.tls_san), this_machine=this_machine,
                            state_dir=args.state_dir, saved=saved, node_status_interval=args.node_status_interval)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _stopping, signum, stop)
    try:
        # --this-machine: as RKE2's rke2.yaml, context "default" at https://127.0.0.1:<port>
        write_kubeconfig(args.kubeconfig, simulator.url, simulator.tls.ca_cert_pem, simulator.token,
                         name="default" if args.this_machine else "harvester-simulator")
        info = ready_info(simulator, args)
        if args.ready_file:
            args.ready_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = args.ready_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(info))
            tmp.replace(args.ready_file)
        announce(simulator, info)
        await stop.wait()
    finally:
        await simulator.stop()


def usage_problem(args: argparse.Namespace) -> str | None:
    """Options that do not go together (exit 2), said as the option that is wrong."""
    if args.node_ip is not None and not args.this_machine:
        return "--node-ip: only with --this-machine"
    if args.node_status_interval <= 0:
        return "--node-status-interval: must be more than 0 seconds"
    if args.this_machine:
        if args.nodes not in (None, 1):
            return "--nodes: --this-machine is a cluster of one node, this machine"
        if args.node_name_prefix is not None:
            return "--node-name-prefix: with --this-machine the node is named after this machine's hostname"
        if args.ssh_authorized_key or args.ssh_password_file:
            return "--ssh-authorized-key/--ssh-password-file: with --this-machine the machine's own sshd serves SSH"
    if args.node_ip is not None:
        try:
            ipaddress.ip_address(args.node_ip)
        except ValueError:
            return f"--node-ip: {args.node_ip!r} is not an IP address"
    return None


def saved_state(args: argparse.Namespace) -> SavedState | None:
    """What --state-dir holds for this start (None: nothing yet); StateError when it must not be used."""
    if args.state_dir is None:
        return None
    prepare_directory(args.state_dir)
    saved = read_state(args.state_dir)
    if saved is None:
        return None
    this_machine = this_machine_hostname() if args.this_machine else ""
    problem = mismatch(saved, args.state_dir, get_version(args.version).name, this_machine)
    if problem is not None:
        raise StateError(problem)
    return saved


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
    problem = usage_problem(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        saved = saved_state(args)
        asyncio.run(serve(args, announce or (lambda simulator, info: None), saved))
    except UnknownVersionError as exc:
        print(f"error: --version: {exc}", file=sys.stderr)
        return 2
    except StateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
