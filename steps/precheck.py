"""Steps about cluster-api Machines beside Nodes, orphan injection, and upgrade admission (dry run).

Thin: the work is in infra/harvester/{machines,precheck,health}.py. The Machines-beside-Nodes table
is attached whenever the cluster is looked at, so a reader sees what admission saw.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import allure
import pytest
from pytest_bdd import given, parsers, then, when

from infra.cleanup import CleanupStack
from infra.cluster import Cluster
from infra.config import RunConfig
from infra.harvester import health, precheck
from infra.harvester import machines as capi
from infra.harvester.names import CAPI, RUN_ID_LABEL
from infra.report.attach import attach_text
from infra.report.facts import ScenarioFacts
from infra.waits.catalogue import Wait, budget

GAP_FIX = "v1.5.1"
GAP_ISSUE = "https://github.com/harvester/harvester/issues/8179"


@dataclass
class Admission:
    """What one admission check answered, and the cluster as the webhook saw it."""

    result: precheck.AdmissionResult
    nodes: int
    machines: int

    def substitutions(self, injection: capi.Injection | None) -> dict[str, str]:
        values = {"nodes": str(self.nodes), "machines": str(self.machines), "namespace": capi.FLEET_LOCAL}
        if injection is not None:
            values.update(injection.substitutions())
        return values


def _attach_table(cluster: Cluster, title: str = "machines beside nodes") -> tuple[int, int]:
    nodes, machines = capi.list_nodes_and_machines(cluster.kube())
    attach_text(title, capi.table(nodes, machines))
    return len(nodes), len(machines)


def _injection(request: pytest.FixtureRequest) -> capi.Injection | None:
    try:
        return request.getfixturevalue("injection")
    except pytest.FixtureLookupError:
        return None


@given("the cluster's machines and nodes are consistent")
@then("the cluster's machines and nodes are consistent")
def machines_and_nodes_consistent(cluster: Cluster) -> None:
    attach_text("machines beside nodes", health.assert_machines_consistent(cluster.kube()))


@when(parsers.parse("I inject {orphan}"), target_fixture="injection")
def inject_orphan(orphan: str, cluster: Cluster, cleanup: CleanupStack, run_config: RunConfig) -> capi.Injection:
    injection = capi.inject_orphan(cluster.kube(), capi.orphan_kind(orphan), cluster.run_id, cleanup,
                                   budget=budget(Wait.OBJECT_GONE, run_config))
    attach_text("injected", injection.describe())
    _attach_table(cluster, "machines beside nodes after the injection")
    return injection


@when("the injected orphan is removed")
def remove_orphan(injection: capi.Injection, cluster: Cluster) -> None:
    injection.remove()
    _attach_table(cluster, "machines beside nodes after the removal")


@when(parsers.parse("I check whether an upgrade to {target} would be admitted"), target_fixture="admission")
def check_admission(target: str, cluster: Cluster, cleanup: CleanupStack, facts: ScenarioFacts,
                    run_config: RunConfig) -> Admission:
    kube = cluster.kube()
    release = cluster.release(None if target == "the target release" else target)
    facts.record("harvester_to", release.version)
    nodes, machines = capi.list_nodes_and_machines(kube)
    result = precheck.check_upgrade_admission(kube, release, cluster.run_id, cleanup, budget(Wait.OBJECT_GONE, run_config))
    attach_text("admission (dry-run Upgrade)", result.summary())
    return Admission(result, len(nodes), len(machines))


@then(parsers.parse('the upgrade is denied ({reason}) with "{message}"'))
def upgrade_denied(reason: str, message: str, admission: Admission, request: pytest.FixtureRequest) -> None:
    substitutions = admission.substitutions(_injection(request))
    try:                                       # {vm}: the VM a scenario pinned (steps/vms.py)
        pinned = request.getfixturevalue("pinned_vm")
        substitutions["vm"] = f"{pinned.namespace}/{pinned.name}"
    except pytest.FixtureLookupError:
        pass
    precheck.expect_denied(admission.result, reason, message, substitutions)


@then("the upgrade is admitted")
def upgrade_admitted(admission: Admission) -> None:
    precheck.expect_admitted(admission.result)


@then(f"the upgrade is accepted, a gap the {GAP_FIX} check closed")
def upgrade_accepted_gap(admission: Admission, cluster: Cluster, injection: capi.Injection) -> None:
    precheck.expect_admitted(admission.result, why=f" (Harvester {cluster.harvester_version} has no strict "
                                                   f"node-machine check; it first shipped in {GAP_FIX})")
    gap = (f"KNOWN GAP on Harvester {cluster.harvester_version}: admission accepts an upgrade with "
           f"{injection.kind.phrase}; the strict Node<->Machine match that first shipped in {GAP_FIX} "
           f"(harvester/harvester#8179) refuses it")
    with allure.step(gap):
        attach_text("known gap", f"{gap}\n\ninjected: {injection.describe()}\nadmission: "
                                 f"{admission.result.summary()}\nsee {GAP_ISSUE}")
    allure.dynamic.tag(f"gap-closed-in-{GAP_FIX}")
    allure.dynamic.link(GAP_ISSUE, name=f"closed in {GAP_FIX}: harvester/harvester#8179")


@then("the denial names the injected Machine, and the API finds it by that name")
def denial_names_machine(admission: Admission, injection: capi.Injection, cluster: Cluster) -> None:
    result = admission.result
    assert not result.admitted, f"expected a denial naming Machine {injection.machine}, but the upgrade was admitted"
    match = re.search(r"\bmachine (?:(?P<namespace>[a-z0-9.-]+)/)?(?P<name>[a-z0-9.-]+)", result.denial)
    assert match is not None, f"the denial names no Machine: {result.message}"
    namespace, name = match["namespace"] or capi.FLEET_LOCAL, match["name"]
    assert name == injection.machine, \
        f"the denial names Machine {namespace}/{name}, but the injected one is {injection.machine}: {result.message}"
    found = cluster.kube().find(CAPI, "Machine", name, namespace)     # what `kubectl get machine -n NS NAME` does
    assert found is not None, f"the denial names Machine {namespace}/{name}, which the API does not find"
    assert (found["metadata"].get("labels") or {}).get(RUN_ID_LABEL) == cluster.run_id, \
        f"Machine {namespace}/{name} is not the one this run injected"
    attach_text("the named Machine", f"kubectl get machine -n {namespace} {name} -o wide\n\n"
                + capi.table([], [found]).split("\n\n")[0])
