"""`harvester-e2e chaos` kept working: its parts, and a tiny campaign that fails on a false failure or a leftover.

The campaign is one precheck row (a Machine stuck in Provisioning, on v1.5.1): a fault-free run, two runs under
real fault classes (the API server restarting; 5xx bursts) that must end with the fault-free verdicts and leave
nothing, a sabotage run whose fault no harness can ride through (403 to everything) that must be counted as a
false failure (so the comparison can fail), and one run interrupted right after its injection that must leave
nothing behind. About 45 s on two cores.
"""
from __future__ import annotations

import random
import socket
from pathlib import Path
from urllib.parse import urlparse

import pytest

from infra.chaos.campaign import ChaosRun, StoryResult, _during, run_campaign
from infra.chaos.faults import BY_NAME, FAULT_CLASSES, FaultClass, Injection, plan, schedule
from infra.chaos.interrupts import InterruptPlan, PhaseTracker, plan_interrupts, run_interrupt
from infra.chaos.report import render, summary
from infra.chaos.runs import STORIES, Leftovers, RunOutcome, differences, read_verdicts, run_story

ROW = "version_with_orphan and v1.5.1 and Provisioning"
FAST = 480.0          # the labs' time scale here: the precheck story waits on no simulated duration
JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="steps.test_features" name="test_a[1]" time="1"/>
<testcase classname="steps.test_features" name="test_a[2]" time="1"><failure message="boom"/></testcase>
<testcase classname="steps.test_features" name="test_b" time="1"><skipped type="pytest.xfail" message="known"/></testcase>
<testcase classname="steps.test_features" name="test_c" time="0"><skipped type="pytest.skip" message="v"/></testcase>
<testcase classname="steps.test_features" name="test_d" time="1"/>
<testcase classname="steps.test_features" name="test_d" time="0"><error message="teardown"/></testcase>
</testsuite></testsuites>"""


# --- the parts -------------------------------------------------------------------------------------------
def test_verdicts_come_from_junit_and_a_teardown_error_fails_the_scenario(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text(JUNIT)
    verdicts = read_verdicts(junit)
    assert verdicts == {"test_a[1]": "passed", "test_a[2]": "failed", "test_b": "xfailed", "test_c": "skipped",
                        "test_d": "failed"}
    assert read_verdicts(tmp_path / "absent.xml") == {}
    changed = differences(verdicts, {**verdicts, "test_b": "failed", "test_e": "passed"} | {"test_c": "missing"})
    assert changed == {"test_b": ("xfailed", "failed"), "test_c": ("skipped", "missing"), "test_e": ("missing", "passed")}


def test_plans_are_seeded_and_every_class_gets_its_share() -> None:
    first = [plan(fault, random.Random(5), 20.0) for fault in FAULT_CLASSES]
    again = [plan(fault, random.Random(5), 20.0) for fault in FAULT_CLASSES]
    assert [[(i.at_s, i.spec) for i in p] for p in first] == [[(i.at_s, i.spec) for i in p] for p in again]
    assert all(0.3 <= i.at_s <= 19.0 for p in first for i in p)
    chosen = schedule(random.Random(1), list(FAULT_CLASSES), 20)
    counts = {f.name: sum(1 for c in chosen if c is f) for f in FAULT_CLASSES}
    assert max(counts.values()) - min(counts.values()) <= 1
    restart = BY_NAME["api-restart"].make(random.Random(3))
    assert restart["unavailableSeconds"] > restart["refuseConnectionsSeconds"] >= 1.0   # 503 after the port opens
    slow = BY_NAME["slow-phases"].make(random.Random(3))["slowPhases"]
    assert 2.0 <= slow["factor"] <= 4.0 and slow["factor"] * 120 < 30 * 60, "inside the stall window"


def test_interrupt_plans_cover_the_moments_and_the_phase_is_named_from_the_output() -> None:
    plans = plan_interrupts(random.Random(4), 8, ["upgrade", "precheck", "ippool"])
    assert {p.moment for p in plans} == {"provisioning", "injection", "mid-upgrade", "cleanup"}
    assert all(p.story == "upgrade" for p in plans if p.moment == "mid-upgrade")
    assert all(p.story == "precheck" for p in plans if p.moment == "injection")
    tracker = PhaseTracker(lambda line: "cleaned up: " in line)
    tracker.feed("steps/test_features.py::test_the_cluster_upgrades_to_the_target_release ", False)
    assert tracker.phase == "set-up (provisioning)"
    tracker.feed("INFO     harvester_e2e.upgrade:tracker.py:222 upgrade hvst-upgrade-a5: phase RepoReady (budget "
                 "10m00s)", True)
    assert tracker.phase == "mid-upgrade (RepoReady)" and not tracker.reached.is_set()
    tracker.feed("------------------------------ live log teardown -------------------------------", True)
    tracker.feed("INFO     harvester_e2e.cleanup:cleanup.py:76 cleaned up: delete Version harvester-system/v1.5.2", True)
    assert tracker.phase == "cleanup" and tracker.reached.is_set()


def _run(index: int, fault: str | None, verdicts: dict[str, str], injected: bool, base: dict[str, str]) -> ChaosRun:
    outcome = RunOutcome(f"run-{index}", 0, 1.0, verdicts, Leftovers(), Path("."))
    injections = [Injection(0.5, {"dropWatches": True}, done_at_s=0.5 if injected else None)]
    changed = differences(base, verdicts)
    return ChaosRun("precheck", index, fault, outcome, injections, 0, changed if injected else {},
                    {} if injected else changed)


def test_false_failures_flakes_and_runs_that_ended_before_any_fault_are_told_apart() -> None:
    base = {"a": "passed", "b": "xfailed"}
    result = StoryResult("precheck", _run(0, None, base, False, base), [
        _run(1, "watch-drop", base, True, base),
        _run(2, "watch-drop", {"a": "failed", "b": "xfailed"}, True, base),        # a false failure, and a flake
        _run(3, "api-5xx", {"a": "failed", "b": "failed"}, False, base),           # died before its fault
        _run(4, "api-5xx", base, True, base)])
    assert result.flakes() == {"watch-drop": {"a": ["failed", "passed"]}}
    data = summary([result], [], seed=1, runs=4, faults=list(FAULT_CLASSES), version="v1.5.1", keyword=None,
                   wall_s={})
    totals = data["totals"]
    assert (totals["false_failures"], totals["runs_with_false_failures"], totals["flakes"]) == (1, 1, 1)
    assert totals["runs_ended_before_a_fault_with_other_verdicts"] == 1
    assert data["per_fault_class"]["api-5xx"]["false_failures"] == 0
    render(data)


# --- a tiny campaign -------------------------------------------------------------------------------------
SABOTAGE = FaultClass("sabotage-403", "every API request refused (no harness rides through this)",
                      lambda rng: {"errorBurst": {"count": 100000, "code": 403}}, ("errorBurst403",))


@pytest.mark.slow
def test_a_tiny_campaign_rides_through_real_faults_and_counts_a_false_failure(tmp_path: Path) -> None:
    story = STORIES["precheck"]
    results = run_campaign([story], 2, [BY_NAME["api-restart"], BY_NAME["api-5xx"]], seed=11, out=tmp_path,
                           keyword=ROW, time_scale=FAST)
    result: StoryResult = results[0]
    base = result.baseline.outcome
    assert list(base.verdicts.values()) == ["passed"], base.output_tail
    assert base.leftovers.count == 0, base.leftovers.as_dict()
    for run in result.runs:
        injected = [i for i in run.injections if i.done_at_s is not None and i.error is None]
        assert injected, f"{run.fault}: nothing was injected: {[i.as_dict() for i in run.injections]}"
        assert not run.differs, f"false failure under {run.fault}: {run.differs}\n{run.outcome.output_tail}"
        assert run.outcome.leftovers.count == 0, (run.fault, run.outcome.leftovers.as_dict())
    assert not result.flakes()

    # The comparison can fail: a fault no harness rides through changes the verdict, and it is counted.
    record: dict = {}
    sabotaged = run_story(story, "chaos-test-sabotage", tmp_path / "sabotage", keyword=ROW, time_scale=FAST,
                          during=_during([Injection(0.0, SABOTAGE.make(random.Random(0)))], record))
    changed = differences(base.verdicts, sabotaged.verdicts)
    assert changed and all(got != "passed" for _, got in changed.values()), sabotaged.output_tail

    # One run (every v1.5.1 row, so that more follows) interrupted right after its first injection: the fake
    # Machine is removed, nothing is left.
    interrupted = run_interrupt(InterruptPlan(1, "injection", "precheck", "SIGTERM", "lab", 0.0), tmp_path,
                                keyword="v1.5.1", time_scale=FAST)
    assert interrupted.signalled, "the run never reached its injection"
    assert interrupted.moment_seen != "after the scenarios", interrupted.moment_seen
    assert interrupted.leftovers.count == 0, interrupted.leftovers.as_dict()
    assert interrupted.exit_code == 2, f"an interrupted pytest exits 2 (see {interrupted.directory}/output.log)"

    data = summary(results, [interrupted], seed=11, runs=2, faults=[BY_NAME["api-restart"], BY_NAME["api-5xx"]],
                   version="v1.5.1", keyword=ROW, wall_s={"precheck": 1.0})
    assert set(data["per_fault_class"]) == {f.name for f in FAULT_CLASSES}, "every class is named"
    assert data["totals"]["false_failures"] == 0 and data["totals"]["interrupt_leftovers"] == 0
    render(data)


def test_what_fired_is_read_once_the_lab_is_back_from_an_injected_restart(tmp_path: Path) -> None:
    """A run can end inside an injected restart; reading what fired waits for the listener (bounded)."""
    from infra.backends.simulated import start_simulator_process
    from infra.backends.simulator_client import SimulatorClient, SimulatorRefused
    from infra.chaos.faults import fault_state_once_back
    from infra.waits.poll import poll_until
    from infra.waits.budget import Budget

    simulator = start_simulator_process("v1.5.1", time_scale=60, nodes=1, budget=Budget("simulator starts", 60),
                                        workdir=tmp_path / "simulator")
    try:
        endpoint = SimulatorClient(simulator.kubeconfig)
        # Longer than a GET's own transport retries ride through (about 9 s), shorter than ENDPOINT_BACK.
        endpoint.inject(refuseConnectionsSeconds=13.0, unavailableSeconds=14.0)
        host, port = urlparse(simulator.info["url"]).hostname, urlparse(simulator.info["url"]).port

        def refused() -> bool:
            try:
                socket.create_connection((host, port), timeout=1).close()
                return False
            except ConnectionRefusedError:
                return True

        poll_until(refused, Budget("the listener closes for the injected restart", 5), "connection refused")
        with pytest.raises(SimulatorRefused):           # a new connection (a kept-alive one is still served)
            SimulatorClient(simulator.kubeconfig).fault_state()
        state = fault_state_once_back(SimulatorClient(simulator.kubeconfig))
        assert state["fired"].get("refusedConnections", 0) >= 1, state
    finally:
        simulator.stop()
