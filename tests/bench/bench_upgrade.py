"""`make bench` (upgrade figures): how soon after the last change the stall detector reports the RC -> master
hang, against its goal (the stall window plus one tracker tick); and the wall time of a whole simulated
stable -> master upgrade at the default time scale."""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from infra.backends.simulated import cluster_from_simulator, start_simulator_process  # noqa: E402
from infra.cleanup import CleanupStack  # noqa: E402
from infra.config import load_config  # noqa: E402
from infra.harvester.upgrade import UpgradeRun, UpgradeStalled  # noqa: E402
from infra.harvester.upgrade.follow import UpgradeAttempt, follow  # noqa: E402
from infra.kube import Kube  # noqa: E402
from infra.waits.budget import Budget  # noqa: E402


def timed_upgrade(source: str, target: str, time_scale: float) -> tuple[float, UpgradeAttempt]:
    config = load_config(None, environ={}, cli={"simulated.time_scale": time_scale, "upgrade.progress": "off"})
    workdir = Path(tempfile.mkdtemp())
    simulator = start_simulator_process(source, time_scale=time_scale, nodes=3, workdir=workdir,
                              budget=Budget("bench simulator", 60))
    try:
        kube = Kube(simulator.kubeconfig)
        release = cluster_from_simulator(simulator, "bench-upgrade", None, None, known_hosts=workdir / "known_hosts").release(target)
        started = time.monotonic()
        run = UpgradeRun.start(kube, release, run_id="bench-upgrade", cleanup=CleanupStack(),
                               budget=Budget("Version gone", 10))
        attempt = follow(run, config)
        return time.monotonic() - started, attempt
    finally:
        simulator.stop()


def main() -> int:
    config = load_config(None, environ={})
    scale = config.simulated.time_scale
    seconds, attempt = timed_upgrade("v1.5.0-rc2", "master-ce188325-head", scale)
    if not isinstance(attempt.problem, UpgradeStalled):
        print(f"unexpected: the RC -> master upgrade did not stall ({attempt.problem or 'it completed'})")
        return 1
    healthy_seconds, healthy = timed_upgrade("v1.4.2", "master-ce188325-head", scale)
    if healthy.problem is not None:
        print(f"unexpected: v1.4.2 -> master-ce188325-head did not complete: {healthy.problem}")
        return 1
    window, tick = attempt.tracker.stall_window, attempt.tracker.tick
    quiet = attempt.problem.stalled_after
    print(f"\nUpgrade figures (time scale x{scale:g}, stall window {window:.0f}s, tracker tick {tick:.1f}s)")
    print(f"  RC -> master hang reported after      {seconds:6.1f} s  (phase {attempt.problem.phase})")
    print(f"  ... of which quiet since last change  {quiet:6.1f} s  goal <= {window + tick:.1f} s "
          f"(window + one tick): {'met' if quiet <= window + tick else 'MISSED'}")
    print(f"  stable -> master upgrade, wall time   {healthy_seconds:6.1f} s  "
          f"({len(healthy.outcome.phases)} phases, 3 nodes rebooted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
