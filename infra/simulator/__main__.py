"""Run the twin in the foreground: `python -m infra.simulator --version v1.4.2 --kubeconfig PATH`.

Writes the kubeconfig, then a JSON ready file (for a parent process), and runs until SIGINT or
SIGTERM, when it stops serving and exits 0.
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

from .harvester.versions import UnknownVersionError, version_names
from .kubeconfig import write_kubeconfig
from .nodes import NodeLogin
from .twin import start_twin


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m infra.simulator", description=__doc__)
    parser.add_argument("--version", default="v1.4.2", help=f"Harvester version: {', '.join(version_names())}")
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--time-scale", type=float, default=60.0)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ready-file", type=Path, help="written (JSON) once the twin serves")
    parser.add_argument("--bookmark-interval", type=float, default=5.0)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--ssh-authorized-key", type=Path, metavar="FILE",
                        help="public key(s) the nodes accept for user rancher (authorized_keys format)")
    parser.add_argument("--ssh-password-file", type=Path, metavar="FILE",
                        help="turn on password login (and sudo password) for rancher; off without it")
    return parser.parse_args(argv)


def _stopping(signum: int, stop: asyncio.Event) -> None:
    logging.getLogger("infra.simulator").info("stopping on %s", signal.Signals(signum).name)
    stop.set()


async def serve(args: argparse.Namespace, announce) -> None:  # noqa: ANN001
    twin = await start_twin(args.version, node_count=args.nodes, time_scale=args.time_scale, port=args.port,
                            bookmark_interval=args.bookmark_interval,
                            node_login=NodeLogin.from_files(args.ssh_authorized_key, args.ssh_password_file))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _stopping, signum, stop)
    try:
        write_kubeconfig(args.kubeconfig, twin.url, twin.tls.ca_cert_pem, twin.token)
        info = {"url": twin.url, "kubeconfig": str(args.kubeconfig), "pid": os.getpid(),
                "harvesterVersion": twin.version.name, "timeScale": args.time_scale,
                "nodes": twin.nodes.describe() if twin.nodes else []}
        if args.ready_file:
            tmp = args.ready_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(info))
            tmp.replace(args.ready_file)
        announce(twin, info)
        await stop.wait()
    finally:
        await twin.stop()


def main(argv: list[str] | None = None, announce=None) -> int:  # noqa: ANN001
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(args, announce or (lambda twin, info: None)))
    except UnknownVersionError as exc:
        print(f"error: --version: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
