"""`python -m infra.appliance build --version v1.5.1 [--version ...]`: build (or reuse) the appliance and print
what was made as JSON (paths, sizes, content keys, what this run rebuilt)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .build import CACHE_DIR, ApplianceUnavailable, build_appliance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.appliance", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="build or reuse the appliance's kernel, initrd, squashfs and ISOs")
    build.add_argument("--version", action="append", required=True, metavar="VERSION", dest="versions",
                       help="a Harvester version of the simulator's table (repeatable), e.g. v1.5.1")
    build.add_argument("--cache", type=Path, default=CACHE_DIR, help=f"cache directory (default {CACHE_DIR})")
    build.add_argument("--mirror", help="Debian mirror (default: $HARVESTER_APPLIANCE_MIRROR, apt's sources, "
                                        "or http://deb.debian.org/debian)")
    args = parser.parse_args(argv)
    try:
        artifacts = build_appliance(args.versions, cache=args.cache, mirror=args.mirror)
    except ApplianceUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(artifacts.describe(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
