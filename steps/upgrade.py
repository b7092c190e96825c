"""Steps of the upgrade story: start and follow an upgrade, judge how it ended, check the cluster after."""
from __future__ import annotations

import pytest
from pytest_bdd import given, parsers, then, when

from infra.backends import Backend, Cluster
from infra.cleanup import CleanupStack
from infra.config import RunConfig
from infra.harvester.upgrade import UpgradeRun, UpgradeStalled
from infra.harvester.upgrade.diagnostics import collect_upgrade_diagnostics
from infra.harvester.upgrade.follow import UpgradeAttempt, follow
from infra.harvester.upgrade.preflight import check_release_file
from infra.harvester.upgrade.report import attach_upgrade_record
from infra.harvester.upgrade.workload import RecordedWorkload, record_workload
from infra.report.attach import attach_text, attach_yaml
from infra.waits.budget import Budget


@given("64 KiB of random data is stored in the cluster with its checksum", target_fixture="workload")
def stored_data(cluster: Cluster, run_config: RunConfig, cleanup: CleanupStack) -> RecordedWorkload:
    return record_workload(cluster.kube(), run_config.run_id, cleanup)


@when(parsers.parse("the cluster is upgraded to {version}"), target_fixture="upgrade")
def upgrade_to(cluster: Cluster, version: str, run_config: RunConfig, cleanup: CleanupStack,
               backend: Backend) -> UpgradeAttempt:
    backend.retire(cluster)        # an upgrade changes it for good: the next scenario gets a fresh one
    run = UpgradeRun.start(cluster.kube(), version, run_id=run_config.run_id, cleanup=cleanup)
    attempt = follow(run, run_config)
    attach_upgrade_record(attempt)
    if attempt.problem is not None:
        collect_upgrade_diagnostics(cluster, run)       # before any cleanup runs
    return attempt


@then("the upgrade completes within its phase budgets")
def completes(upgrade: UpgradeAttempt) -> None:
    upgrade.raise_problem()
    assert upgrade.outcome is not None
    assert upgrade.outcome.final.status_of("Completed") == "True"


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


@then("the stall was reported well before the global upgrade budget")
def early(upgrade: UpgradeAttempt) -> None:
    assert isinstance(upgrade.problem, UpgradeStalled)
    global_budget = sum(b.seconds for b in upgrade.tracker.budgets.values())
    spent = sum(p.seconds for p in upgrade.tracker.phases)
    assert spent < 0.1 * global_budget, f"the stall took {spent:.0f}s of a {global_budget:.0f}s global budget"
    attach_text("time to detection", f"{spent:.1f}s of the {global_budget / 60:.0f} min global budget "
                                     f"({100 * spent / global_budget:.2f}%)")


@when("the operator upgrades every Rancher dependency release to the chart the upgrade repo asks for")
def operator_remedy(cluster: Cluster, upgrade: UpgradeAttempt) -> None:
    from infra.harvester.upgrade.remedy import upgrade_dependencies_as_repo_asks
    assert isinstance(upgrade.problem, UpgradeStalled), "the remedy follows a stall"
    attach_text("operator remedy", upgrade_dependencies_as_repo_asks(cluster, upgrade.run.get()))


@when("the harness re-attaches to the upgrade under way", target_fixture="upgrade")
def reattach(cluster: Cluster, upgrade: UpgradeAttempt, run_config: RunConfig) -> UpgradeAttempt:
    run = UpgradeRun.attach(cluster.kube(), run_id=run_config.run_id)
    assert run.name == upgrade.run.name, f"re-attached to {run.name}, expected {upgrade.run.name}"
    attempt = follow(run, run_config)
    attach_upgrade_record(attempt)
    return attempt


@then(parsers.parse("every node runs the Harvester OS and RKE2 of {version}"))
def nodes_at(cluster: Cluster, version: str, upgrade: UpgradeAttempt) -> None:
    from infra.harvester.upgrade.checks import node_versions_match_release
    release = upgrade.outcome.final.upgrade["status"].get("repoInfo") if upgrade.outcome else None
    problems, table = node_versions_match_release(cluster, release)
    attach_text("node versions", table)
    assert not problems, "; ".join(problems)


@then("the stored data still has its checksum")
def data_intact(cluster: Cluster, workload: RecordedWorkload) -> None:
    assert workload.read_checksum(cluster.kube()) == workload.sha256


@then("the temporary upgrade objects are removed")
def temporary_objects_removed(cluster: Cluster, upgrade: UpgradeAttempt, run_config: RunConfig) -> None:
    from infra.harvester.upgrade.checks import wait_temporary_objects_removed
    wait_temporary_objects_removed(cluster.kube(), upgrade.run,
                                   Budget.minutes("upgrade cleanup", run_config.timeouts.api_wait_min))


@given(parsers.parse("the upgrade repo release file of Harvester {version}"), target_fixture="release_file")
def release_file_of(cluster_for_release: Cluster, version: str) -> dict:
    release = cluster_for_release.twin_info(f"/twin/v1/releases/{version}")
    attach_yaml(f"harvester-release.yaml of {version}", release)
    return release


@then(parsers.parse("the pre-flight check flags {flagged}"))
def preflight_flags(release_file: dict, flagged: str) -> None:
    findings = check_release_file(release_file)
    attach_text("pre-flight findings", "\n".join(str(f) for f in findings) or "nothing to flag")
    expected = [] if flagged.strip() == "nothing" else [e.strip() for e in flagged.split(",")]
    assert [f"{f.release} {f.chart_version}" for f in findings] == expected


@pytest.fixture
def cluster_for_release(backend, run_config: RunConfig) -> Cluster:  # noqa: ANN001
    """The pre-flight check reads a release file without starting an upgrade: any cluster serves it."""
    return backend.acquire(run_config.harvester_version)
