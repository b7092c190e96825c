"""The upgrade tracker against the simulator: stalls, failures, budgets and re-attach, through outages."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Iterator

import pytest

from ..conftest import simulator_request as _simulator_request
from infra.backends.simulated import SimulatorProcess
from infra.harvester.helm import history_from_api
from infra.harvester.upgrade import (PhaseBudgetExceeded, PhaseTracker, UpgradeFailed, UpgradeRun, UpgradeStalled,
                                     default_phase_budgets, diagnose)
from infra.kube import Kube

from infra.cleanup import CleanupStack
from infra.waits.budget import Budget

from ..conftest import cluster_of, start_simulator


@pytest.fixture
def rc_simulator(tmp_path: Path) -> Iterator[SimulatorProcess]:
    simulator = start_simulator("v1.5.0-rc2", tmp_path, time_scale=600)
    yield simulator
    simulator.stop()


def start(simulator: SimulatorProcess, kube: Kube, target: str, run_id: str) -> UpgradeRun:
    """An Upgrade whose Version names the simulator's own ISO of `target` (the simulator reaches no other server)."""
    release = cluster_of(simulator, run_id).release(target)
    return UpgradeRun.start(kube, release, run_id=run_id, cleanup=CleanupStack(), budget=Budget("Version gone", 10))


def tracker_for(run: UpgradeRun, kube: Kube, stall_window: float = 4.0, **budgets_min: float) -> PhaseTracker:
    return PhaseTracker(run, budgets=default_phase_budgets(budgets_min), stall_window=stall_window, tick=0.5,
                        diagnose=lambda phase, lines: diagnose(phase, lines,
                                                               lambda ns, r: history_from_api(kube, ns, r)))


def test_rc_to_master_stalls_with_a_diagnosis_through_api_outages(rc_simulator: SimulatorProcess) -> None:
    kube = Kube(rc_simulator.kubeconfig, unavailable_budget=30)
    run = start(rc_simulator, kube, "master-ce188325-head", "t-stall")
    faults = [{"errorBurst": {"count": 5, "code": 503}, "dropWatches": True},
              {"unavailableSeconds": 2},
              {"refuseConnectionsSeconds": 2}]
    timers = [threading.Timer(0.3 + 1.2 * i, _simulator_request, (rc_simulator.kubeconfig, "/simulator/v1/faults", f))
              for i, f in enumerate(faults)]
    for timer in timers:
        timer.start()
    try:
        with pytest.raises(UpgradeStalled) as caught:
            tracker_for(run, kube).follow()
    finally:
        for timer in timers:
            timer.join()
    stalled = caught.value
    assert stalled.phase == "SystemServicesUpgraded"
    assert stalled.diagnosis.details["awaited"]["chart"] == "fleet-106.0.0+up0.12.0"
    assert stalled.diagnosis.details["installed"]["chart"] == "fleet-106.0.0+up0.12.0-rc.3"
    assert "wait helm release cattle-fleet-system fleet" in stalled.evidence["apply-manifests log (tail)"]
    assert tracker_phases(stalled)[:5] == [
        "LogReady", "ImageReady", "RepoReady", "NodesPrepared", "SystemServicesUpgraded"]


def tracker_phases(stalled: UpgradeStalled) -> list[str]:
    return [line.split(":")[0] for line in stalled.evidence["phase timings"]]


def test_a_downgrade_fails_at_once_on_completed_false(tmp_path: Path) -> None:
    simulator = start_simulator("v1.5.1", tmp_path, time_scale=600)
    try:
        kube = Kube(simulator.kubeconfig)
        run = start(simulator, kube, "v1.4.2", "t-down")
        with pytest.raises(UpgradeFailed) as caught:
            tracker_for(run, kube, stall_window=60).follow()
        assert "downgrading is prohibited" in str(caught.value)
    finally:
        simulator.stop()


def test_reattach_finds_the_upgrade_under_way_by_run_id(rc_simulator: SimulatorProcess) -> None:
    kube = Kube(rc_simulator.kubeconfig)
    started = start(rc_simulator, kube, "master-ce188325-head", "t-reattach")
    attached = UpgradeRun.attach(Kube(rc_simulator.kubeconfig), run_id="t-reattach")
    assert (attached.name, attached.target_version) == (started.name, "master-ce188325-head")
    with pytest.raises(UpgradeStalled):
        tracker_for(attached, attached.kube).follow()


def test_a_phase_over_its_budget_fails_naming_the_phase(tmp_path: Path) -> None:
    simulator = start_simulator("v1.4.2", tmp_path, time_scale=1)      # real time: LogReady takes 20 s
    try:
        kube = Kube(simulator.kubeconfig)
        run = start(simulator, kube, "master-ce188325-head", "t-budget")
        with pytest.raises(PhaseBudgetExceeded) as caught:
            tracker_for(run, kube, stall_window=60, LogReady=0.02).follow()
        assert caught.value.phase == "LogReady" and "budget 1.2s" in str(caught.value)
    finally:
        simulator.stop()


def test_probes_follow_the_upgrade_and_place_an_api_outage_in_its_phase(tmp_path: Path) -> None:
    """`follow(..., probes=...)`: the API probe samples from the start of following to its end, and an outage the
    API really has (its listener closed, then 503) shows up as an outage of about that length, in a phase."""
    from infra.config import RunConfig
    from infra.harvester.probes import ApiProbe
    from infra.harvester.upgrade.follow import follow

    simulator = start_simulator("v1.5.1", tmp_path, time_scale=300)
    try:
        kube = Kube(simulator.kubeconfig, unavailable_budget=30)
        cluster = cluster_of(simulator, "t-probe")
        run = start(simulator, kube, "v1.5.2", "t-probe")
        outage = threading.Timer(1.0, _simulator_request, (simulator.kubeconfig, "/simulator/v1/faults",
                                                           {"refuseConnectionsSeconds": 2.0, "unavailableSeconds": 3.0}))
        outage.start()
        try:
            attempt = follow(run, RunConfig(), probes=[ApiProbe.for_cluster(cluster, "/api/v1/namespaces/default",
                                                                            interval_s=0.25)])
        finally:
            outage.join()
    finally:
        simulator.stop()
    attempt.raise_problem()
    assert attempt.probes is not None
    api = attempt.probes.probe("api")
    assert 2.5 <= api.longest_outage_s <= 5.0, attempt.probes.as_text()
    assert max(api.longest_by_phase.values()) > 0, attempt.probes.as_text()     # placed in a phase


def test_readyz_fails_while_the_api_server_is_up_but_not_ready(tmp_path: Path) -> None:
    """As kube-apiserver: /readyz and /healthz answer 500 naming the failed check while it cannot serve; /livez
    stays ok. A probe on /readyz then sees the whole outage, not only the refused connections."""
    from infra.https import EndpointError

    simulator = start_simulator("v1.5.1", tmp_path, time_scale=60)
    try:
        endpoint = cluster_of(simulator, "t-readyz").api_endpoint()
        assert endpoint.request("GET", "/readyz").status_code == 200
        _simulator_request(simulator.kubeconfig, "/simulator/v1/faults", {"unavailableSeconds": 30.0})
        assert endpoint.request("GET", "/livez").status_code == 200
        for path in ("/readyz", "/healthz"):
            with pytest.raises(EndpointError) as caught:
                endpoint.request("GET", path)
            assert caught.value.status == 500 and "check failed" in caught.value.body, path
    finally:
        simulator.stop()
