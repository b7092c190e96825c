"""`make bench` (upgrade figures): how soon the stall detector reports the RC -> master hang, against the
global budget; and the wall time of a whole simulated stable -> master upgrade at the default time scale."""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from infra.backends.simulated import start_twin_process  # noqa: E402
from infra.config import load_config  # noqa: E402
from infra.harvester.upgrade import UpgradeRun, UpgradeStalled  # noqa: E402
from infra.harvester.upgrade.follow import follow  # noqa: E402
from infra.kube import Kube  # noqa: E402
from infra.waits.budget import Budget  # noqa: E402


def timed_upgrade(source: str, target: str, time_scale: float) -> tuple[float, object]:
    config = load_config(None, environ={}, cli={"simulated.time_scale": time_scale, "upgrade.progress": "off"})
    twin = start_twin_process(source, time_scale=time_scale, nodes=3, workdir=Path(tempfile.mkdtemp()),
                              budget=Budget("bench twin", 60))
    try:
        kube = Kube(twin.kubeconfig)
        started = time.monotonic()
        attempt = follow(UpgradeRun.start(kube, target, run_id="bench-upgrade"), config)
        return time.monotonic() - started, attempt
    finally:
        twin.stop()


def main() -> int:
    config = load_config(None, environ={})
    scale = config.simulated.time_scale
    seconds, attempt = timed_upgrade("v1.5.0-rc2", "master-ce188325-head", scale)
    global_budget = sum(b.seconds for b in attempt.tracker.budgets.values())
    if not isinstance(attempt.problem, UpgradeStalled):
        print(f"unexpected: the RC -> master upgrade did not stall ({attempt.problem or 'it completed'})")
        return 1
    healthy_seconds, healthy = timed_upgrade("v1.4.2", "master-ce188325-head", scale)
    if healthy.problem is not None:
        print(f"unexpected: v1.4.2 -> master-ce188325-head did not complete: {healthy.problem}")
        return 1
    print(f"\nUpgrade figures (time scale x{scale:g}, stall window {config.stall_window_seconds():.0f}s)")
    print(f"  RC -> master hang reported after      {seconds:6.1f} s  (phase {attempt.problem.phase})")
    print(f"  global upgrade budget                 {global_budget:6.0f} s  ({global_budget / 60:.0f} min)")
    print(f"  detection / global budget             {seconds / global_budget:6.2%}")
    print(f"  stable -> master upgrade, wall time   {healthy_seconds:6.1f} s  "
          f"({len(healthy.outcome.phases)} phases, 3 nodes rebooted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
