"""Steps of the upgrade story: start and follow an upgrade, judge how it ended, check the cluster after."""
from __future__ import annotations

import pytest
from pytest_bdd import given, parsers, then, when

from infra.backends import Backend
from infra.cleanup import CleanupStack
from infra.cluster import Cluster
from infra.config import RunConfig
from infra.harvester.health import server_version
from infra.harvester.probes import ApiProbe, Probe
from infra.harvester.releases import release_file_from_iso
from infra.harvester.upgrade import UpgradeRun, UpgradeStalled
from infra.harvester.upgrade.evidence import collect_upgrade_diagnostics
from infra.harvester.upgrade.follow import UpgradeAttempt, follow
from infra.harvester.upgrade.preflight import check_release_file
from infra.harvester.upgrade.record import attach_upgrade_record
from infra.harvester.vms import address_probe, ssh_probe
from infra.report.attach import attach_text, attach_yaml
from infra.report.facts import ScenarioFacts
from infra.waits.budget import format_seconds
from infra.waits.catalogue import Wait, budget


def _probes(cluster: Cluster, request: pytest.FixtureRequest) -> list[Probe]:
    """The API always; each VM the scenario made (a `watched_vms` fixture) over SSH, as its user feels it; the
    load balancer in front of them (`vm_load_balancer`), as a TCP connect from the cluster's network."""
    probes: list[Probe] = [ApiProbe.for_cluster(cluster)]
    try:
        watched = request.getfixturevalue("watched_vms")
    except pytest.FixtureLookupError:
        return probes
    probes += [ssh_probe(cluster, vm, watched.known_hosts) for vm in watched.vms]
    try:
        lb = request.getfixturevalue("vm_load_balancer")
    except pytest.FixtureLookupError:
        return probes
    return probes + [address_probe(cluster, lb.probe_name, lb.address, lb.port, watched.known_hosts)]


def _upgrade(cluster: Cluster, version: str | None, run_config: RunConfig, cleanup: CleanupStack, backend: Backend,
             facts: ScenarioFacts, probes: list[Probe]) -> UpgradeAttempt:
    release = cluster.release(version)
    facts.record("harvester_to", release.version)
    release_file = release_file_from_iso(release)       # what the target declares, read where Harvester reads it
    attach_yaml(f"harvester-release.yaml of {release.version} (from its ISO)", release_file)
    backend.retire(cluster)        # an upgrade changes it for good: the next scenario gets a fresh one
    run = UpgradeRun.start(cluster.kube(), release, run_id=run_config.run_id, cleanup=cleanup,
                           budget=budget(Wait.OBJECT_GONE, run_config))
    # Whatever fails from here on (the upgrade, or a check after it), the evidence is collected first.
    cleanup.on_failure(f"diagnostics of upgrade {run.name}", lambda: collect_upgrade_diagnostics(
        cluster, run, bundle_budget=budget(Wait.SUPPORT_BUNDLE, run_config)))
    attempt = follow(run, run_config, release_file, probes=probes)
    attach_upgrade_record(attempt)
    return attempt


@when(parsers.parse("the cluster is upgraded to {version}"), target_fixture="upgrade")
def upgrade_to(cluster: Cluster, version: str, run_config: RunConfig, cleanup: CleanupStack, backend: Backend,
               facts: ScenarioFacts, request: pytest.FixtureRequest) -> UpgradeAttempt:
    return _upgrade(cluster, None if version == "the target release" else version, run_config, cleanup, backend,
                    facts, _probes(cluster, request))


@then("the upgrade completes within its phase budgets")
def completes(upgrade: UpgradeAttempt) -> None:
    upgrade.raise_problem()
    assert upgrade.outcome is not None
    assert upgrade.outcome.final.status_of("Completed") == "True"


@then("the cluster runs the target release")
def runs_target(cluster: Cluster, upgrade: UpgradeAttempt) -> None:
    actual = server_version(cluster.kube())
    assert actual == upgrade.run.target_version, \
        f"server-version is {actual!r}, expected the target {upgrade.run.target_version!r}"


@then(parsers.parse("the upgrade stalls in {phase} waiting for Helm release {namespace}/{release}"))
def stalls(upgrade: UpgradeAttempt, phase: str, namespace: str, release: str) -> None:
    if not isinstance(upgrade.problem, UpgradeStalled):
        outcome = "completed" if upgrade.outcome else f"ended with {upgrade.problem!r}"
        pytest.fail(f"expected a stall in {phase} waiting for {namespace}/{release}; the upgrade {outcome}")
    stalled = upgrade.problem
    assert stalled.phase == phase, str(stalled)
    awaited = stalled.diagnosis.details.get("awaited") or {}
    assert (awaited.get("namespace"), awaited.get("release")) == (namespace, release), str(stalled)
    attach_text("diagnosis", stalled.diagnosis.sentence)


@then(parsers.parse("the diagnosis says {wanted} is awaited and {installed} is installed"))
def diagnosis_names(upgrade: UpgradeAttempt, wanted: str, installed: str) -> None:
    assert isinstance(upgrade.problem, UpgradeStalled)
    details = upgrade.problem.diagnosis.details
    assert details["awaited"]["chart"] == wanted, upgrade.problem.diagnosis.sentence
    assert details["installed"]["chart"] == installed, upgrade.problem.diagnosis.sentence
    assert wanted in upgrade.problem.diagnosis.sentence and installed in upgrade.problem.diagnosis.sentence


@then("the stall was reported within the stall window of the last change")
def reported_in_time(upgrade: UpgradeAttempt) -> None:
    """Holds on every cluster: the detector reports a stall at most one tracker tick after the window
    of silence ran out (a real cluster's 10 minutes or the simulated cluster's equivalent)."""
    assert isinstance(upgrade.problem, UpgradeStalled)
    tracker, quiet = upgrade.tracker, upgrade.problem.stalled_after
    limit = tracker.stall_window + tracker.tick
    attach_text("time to detection", f"reported {format_seconds(quiet)} after the last change; stall window "
                                     f"{format_seconds(tracker.stall_window)}, tick {format_seconds(tracker.tick)}")
    assert quiet <= limit, (f"the stall was reported {format_seconds(quiet)} after the last change, more than the "
                            f"window {format_seconds(tracker.stall_window)} plus one tick "
                            f"{format_seconds(tracker.tick)}")


@when("the operator upgrades every Rancher dependency release to the chart the upgrade repo asks for")
def operator_remedy(cluster: Cluster, upgrade: UpgradeAttempt) -> None:
    from infra.harvester.upgrade.remedy import upgrade_dependencies_as_repo_asks
    assert isinstance(upgrade.problem, UpgradeStalled), "the remedy follows a stall"
    attach_text("operator remedy", upgrade_dependencies_as_repo_asks(cluster, upgrade.run))


@when("the harness re-attaches to the upgrade under way", target_fixture="upgrade")
def reattach(cluster: Cluster, upgrade: UpgradeAttempt, run_config: RunConfig) -> UpgradeAttempt:
    run = UpgradeRun.attach(cluster.kube(), run_id=run_config.run_id)
    assert run.name == upgrade.run.name, f"re-attached to {run.name}, expected {upgrade.run.name}"
    attempt = follow(run, run_config, upgrade.release_file)
    attach_upgrade_record(attempt)
    return attempt


@then("every node runs the Harvester OS and RKE2 the target release declares")
def nodes_at_target(cluster: Cluster, upgrade: UpgradeAttempt) -> None:
    from infra.harvester.upgrade.checks import node_versions_match_release
    problems, table = node_versions_match_release(cluster, upgrade.release_file)
    attach_text("node versions", table)
    assert not problems, "; ".join(problems)


@then("the temporary upgrade objects are removed")
def temporary_objects_removed(cluster: Cluster, upgrade: UpgradeAttempt, run_config: RunConfig) -> None:
    from infra.harvester.upgrade.checks import wait_temporary_objects_removed
    wait_temporary_objects_removed(cluster.kube(), upgrade.run, budget(Wait.UPGRADE_CLEANUP, run_config))


@given(parsers.parse("the release file in the ISO of Harvester {version}"), target_fixture="release_file")
def release_file_of(backend: Backend, version: str) -> dict:
    """Any cluster's catalogue names the ISO; the file is read from the ISO itself, as Harvester reads it."""
    release = backend.acquire().release(version)
    found = release_file_from_iso(release)
    attach_yaml(f"harvester-release.yaml of {version} (from {release.iso_url})", found)
    return found


@then(parsers.parse("the pre-flight check flags {flagged}"))
def preflight_flags(release_file: dict, flagged: str) -> None:
    findings = check_release_file(release_file)
    attach_text("pre-flight findings", "\n".join(str(f) for f in findings) or "nothing to flag")
    expected = [] if flagged.strip() == "nothing" else [e.strip() for e in flagged.split(",")]
    assert [f"{f.release} {f.chart_version}" for f in findings] == expected
