"""What a simulated release puts on its appliance ISO, asked by the image builder as a process (the harness
reaches the simulator only across a process or the wire, never by importing it):

    python -m infra.simulator.appliance.release v1.5.1 [v1.5.2 ...]

prints JSON: version -> {"releaseFile": harvester-release.yaml's text, "osPrettyName": "Harvester v1.5.1"};
an unknown version exits 2 with the reason on stderr.
"""
from __future__ import annotations

import json
import sys

from ..harvester.versions import UnknownVersionError, get_version


def main(argv: list[str] | None = None) -> int:
    names = list(sys.argv[1:] if argv is None else argv)
    try:
        releases = {name: get_version(name) for name in names}
    except UnknownVersionError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    print(json.dumps({name: {"releaseFile": release.release_file_text(), "osPrettyName": release.os_pretty_name}
                      for name, release in releases.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
