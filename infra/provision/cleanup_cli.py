"""`harvester-e2e cleanup`: remove what an aborted run left in libvirt, and only that.

  harvester-e2e cleanup --run-id ID [--uri URI | --config FILE] [--dry-run]
  harvester-e2e cleanup --list [--uri URI | --config FILE]

Only objects carrying the run id are touched: domains and networks whose metadata names the run, pools
and volumes named `<run id>-<role>`. Golden images are never removed. Exit status 0 when nothing of the
run is left, 1 when something could not be removed, 2 for a usage error.
"""
from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

RUN_ID = re.compile(r"[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?")
DEFAULT_URI = "qemu:///system"


def _uri(args: argparse.Namespace) -> str:
    if args.uri:
        return str(args.uri)
    if args.config:
        from infra.config import load_config

        config = load_config(args.config)
        if config.libvirt is not None:
            return config.libvirt.uri
    return DEFAULT_URI


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harvester-e2e cleanup",
                                     description="Remove the libvirt objects an aborted run left behind.")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--run-id", help="the run whose objects to remove")
    which.add_argument("--list", action="store_true", help="list the runs that left objects, remove nothing")
    parser.add_argument("--uri", help=f"libvirt URI (default: the config's libvirt.uri, else {DEFAULT_URI})")
    parser.add_argument("--config", type=Path, help="run configuration to take libvirt.uri from")
    parser.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.run_id is not None and not RUN_ID.fullmatch(args.run_id):
        print(f"error: --run-id: {args.run_id!r} is not a run id (lower-case letters, digits and '-', as the "
              "run printed it)", file=sys.stderr)
        return 2
    from infra.config import ConfigError

    from .audit import owned_objects, remove_run
    from .connection import LibvirtUnavailable, open_connection

    try:
        uri = _uri(args)
        conn = open_connection(uri)
    except (ConfigError, LibvirtUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.list:
            runs: dict[str, Counter[str]] = {}
            for owned in owned_objects(conn):
                runs.setdefault(owned.run_id, Counter())[owned.kind] += 1
            if not runs:
                print(f"no run left anything in {uri}")
            for run, counts in sorted(runs.items()):
                parts = [_plural(counts[k], k) for k in ("domain", "volume", "pool", "network") if counts[k]]
                print(f"{run}: {', '.join(parts)}")
            return 0
        found = owned_objects(conn, args.run_id)
        if not found:
            print(f"nothing of run {args.run_id} in {uri}")
            return 0
        if args.dry_run:
            for owned in found:
                print(f"would remove {owned}")
            return 0
        report = remove_run(conn, args.run_id)
        for owned in report.removed:
            print(f"removed {owned}")
        for owned, reason in report.failed:
            print(f"could not remove {owned}: {reason}", file=sys.stderr)
        if report.left:
            print(f"left after cleanup: {', '.join(str(o) for o in report.left)}", file=sys.stderr)
            return 1
        print(f"removed {len(report.removed)} objects of run {args.run_id}; nothing left")
        return 0
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
