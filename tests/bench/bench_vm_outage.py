"""`make bench` (VM outages): what the users of two VMs feel during a v1.4.2 -> master-ce188325-head upgrade of the
simulated cluster, as the upgrade story measures it: each VM's SSH and the API probed once a second, the longest
outage per probe and per phase, and the timeline picture.

It runs the story itself ("The cluster upgrades to the target release, and the VMs users run come through it")
with `harvester-e2e run` and reads what the story attached to its report, so the figures are the ones a QA
engineer finds in Allure. The simulated guests pause for KubeVirt's switch-over (0.1-0.5 simulated seconds) on
each live migration; at time scale x10 that is 10-50 ms of wall time, shorter than the probes' interval, and a
command arriving meanwhile is held, not refused: expect no VM outage, as on a healthy real cluster. The API at
the VIP is away while kube-vip fails over from a rebooting holder (1 simulated second): at x1 a probe sees it.

    python tests/bench/bench_vm_outage.py [--time-scale 10] [--picture artifacts/bench/vm-outages.png]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = "target_release and VMs"
OUTAGES, PICTURE = "probes while upgrading: outages", "probes while upgrading: timeline"


def attachments(results: Path) -> dict[str, Path]:
    """Every attachment the scenario's steps made, by name."""
    found: dict[str, Path] = {}

    def walk(steps: list[dict]) -> None:
        for step in steps:
            for attachment in step.get("attachments") or []:
                found[attachment["name"]] = results / attachment["source"]
            walk(step.get("steps") or [])
    for path in results.glob("*-result.json"):
        result = json.loads(path.read_text())
        walk(result.get("steps") or [])
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-scale", type=float, default=10.0, help="simulated seconds per wall second")
    parser.add_argument("--picture", type=Path, default=ROOT / "artifacts" / "bench" / "vm-outages.png")
    args = parser.parse_args()
    results = Path(tempfile.mkdtemp(prefix="bench-vm-outage-"))
    environ = {**os.environ, "HARVESTER_E2E_SIMULATED__TIME_SCALE": f"{args.time_scale:g}",
               "HARVESTER_E2E_HARVESTER_VERSION": "v1.4.2", "HARVESTER_E2E_UPGRADE__TARGET": "master-ce188325-head"}
    started = time.monotonic()
    run = subprocess.run([str(Path(sys.executable).with_name("harvester-e2e")), "run", f"--alluredir={results}", "-k", SCENARIO,
                          "-p", "no:cacheprovider", "-q",
                          "--timeout=3600"], cwd=ROOT, env=environ, capture_output=True, text=True,
                         timeout=3900)
    seconds = time.monotonic() - started
    found = attachments(results)
    if run.returncode != 0 or OUTAGES not in found:
        print(run.stdout[-3000:], run.stderr[-3000:], sep="\n")
        print(f"the story did not pass (exit {run.returncode}); no figures")
        return 1
    args.picture.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(found[PICTURE], args.picture)
    print(f"\nVM outages during v1.4.2 -> master-ce188325-head (simulated, time scale x{args.time_scale:g}, "
          f"story {seconds:.0f} s wall)\n")
    print(found[OUTAGES].read_text())
    print(f"\ntimeline picture: {args.picture}")
    shutil.rmtree(results, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
