"""Checking an upgrade's admission without starting one, and the Then-steps failing for the right reason.

When the product misbehaves (a release admits what it should refuse, or refuses with other words),
the precheck scenario must fail and say what differed. These tests run the step logic against simulators
whose behaviour does not match the row's expectation.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from infra.backends import Cluster
from infra.backends.simulated import SimulatorProcess
from infra.cleanup import CleanupStack
from infra.harvester import leaks, precheck
from infra.harvester import machines as capi
from infra.harvester.names import RUN_ID_LABEL
from infra.kube import Kube
from infra.waits.budget import Budget
from steps import precheck as steps

from ..conftest import cluster_of as cluster_of_simulator


RUN = "e2e-precheck-tests"
HARVESTER = "harvesterhci.io/v1beta1"
COUNT_MISMATCH = "nodes({nodes}) and machines({machines}) do not match, check the cluster provision"


GONE = Budget("Version gone", 10)


def cluster_of(simulator: SimulatorProcess) -> Cluster:
    return cluster_of_simulator(simulator, RUN)


def admit(simulator: SimulatorProcess, kube: Kube, target: str, stack: CleanupStack) -> precheck.AdmissionResult:
    """Would an upgrade to `target` (the simulator's own release of it) be admitted?"""
    return precheck.check_upgrade_admission(kube, cluster_of(simulator).release(target), RUN, stack, GONE)


def admission_with(cluster: Cluster, kind: str, stack: CleanupStack) -> tuple[steps.Admission, capi.Injection]:
    kube = cluster.kube()
    injection = capi.inject_orphan(kube, kind, RUN, stack, budget=Budget("removal", 10))
    nodes, machines = capi.list_nodes_and_machines(kube)
    result = precheck.check_upgrade_admission(kube, cluster.release("master-ce188325-head"), RUN, stack, GONE)
    return steps.Admission(result, len(nodes), len(machines)), injection


def test_a_healthy_cluster_is_admitted_and_the_version_made_for_it_is_removed(simulators) -> None:  # noqa: ANN001
    simulator = simulators("v1.5.1")
    kube = Kube(simulator.kubeconfig)
    stack = CleanupStack()
    result = admit(simulator, kube, "master-ce188325-head", stack)
    assert result.admitted and result.code == 201 and result.message == ""
    assert result.would_create and result.would_create["metadata"]["name"].startswith("hvst-upgrade-")
    version = kube.get(HARVESTER, "Version", "master-ce188325-head", "harvester-system")
    assert version["metadata"]["labels"][RUN_ID_LABEL] == RUN
    release = cluster_of(simulator).release("master-ce188325-head")
    assert (version["spec"]["isoURL"], version["spec"]["isoChecksum"]) == (release.iso_url, release.iso_checksum)
    assert release.iso_url.endswith("/harvester-master-amd64.iso")
    assert kube.list(HARVESTER, "Upgrade", "harvester-system") == [], "a dry run starts nothing"
    assert admit(simulator, kube, "master-ce188325-head", stack).admitted, "the Version is reused"
    assert len(stack) == 1
    assert stack.run() == []
    assert kube.find(HARVESTER, "Version", "master-ce188325-head", "harvester-system") is None
    assert leaks.audit(kube, RUN).clean


def test_a_version_someone_else_made_is_reused_and_left_alone(simulators) -> None:  # noqa: ANN001
    simulator = simulators("v1.5.1")
    kube = Kube(simulator.kubeconfig)
    kube.create({"apiVersion": HARVESTER, "kind": "Version", "metadata": {"name": "v1.5.2", "namespace":
                 "harvester-system"}, "spec": {"isoURL": "https://example.invalid/theirs.iso"}})
    try:
        stack = CleanupStack()
        assert admit(simulator, kube, "v1.5.2", stack).admitted
        assert len(stack) == 0
        assert kube.get(HARVESTER, "Version", "v1.5.2", "harvester-system")["spec"]["isoURL"].endswith("theirs.iso")
    finally:
        kube.delete(HARVESTER, "Version", "v1.5.2", "harvester-system")


def test_a_webhook_500_is_an_answer_not_an_outage_so_it_is_not_retried(simulators) -> None:  # noqa: ANN001
    simulator = simulators("v1.4.2")
    kube = Kube(simulator.kubeconfig, unavailable_budget=300)
    stack = CleanupStack()
    try:
        capi.inject_orphan(kube, "provisioning", RUN, stack, budget=Budget("removal", 10))
        started = time.monotonic()
        result = admit(simulator, kube, "master-ce188325-head", stack)
        assert time.monotonic() - started < 5
        assert (result.admitted, result.code, result.reason, result.webhook) == \
            (False, 500, "InternalError", "validator.harvesterhci.io")
        assert result.denial.endswith("is not running") and result.message.endswith(result.denial)
    finally:
        assert stack.run() == []


def test_a_release_that_admits_what_the_row_says_it_refuses_fails_the_scenario_saying_so(simulators) -> None:  # noqa: ANN001
    """v1.5.0 lacks the strict match: run against the v1.5.1 row's expectation, the Then step must fail."""
    cluster = cluster_of(simulators("v1.5.0"))
    stack = CleanupStack()
    try:
        admission, injection = admission_with(cluster, "running-no-noderef", stack)
        with pytest.raises(AssertionError) as caught:
            precheck.expect_denied(admission.result, "InternalError", COUNT_MISMATCH,
                                   admission.substitutions(injection))
        assert str(caught.value) == ("expected the upgrade to master-ce188325-head to be denied (InternalError) with "
                                     "'nodes(3) and machines(4) do not match, check the cluster provision', "
                                     "but admission accepted it")
        steps.upgrade_accepted_gap(admission, cluster, injection)          # its own row passes
    finally:
        assert stack.run() == []


def test_a_release_that_refuses_what_the_row_calls_a_gap_fails_the_scenario_saying_so(simulators) -> None:  # noqa: ANN001
    cluster = cluster_of(simulators("v1.5.1"))
    stack = CleanupStack()
    try:
        admission, injection = admission_with(cluster, "running-no-noderef", stack)
        with pytest.raises(AssertionError) as caught:
            steps.upgrade_accepted_gap(admission, cluster, injection)
        assert str(caught.value) == (
            "expected the upgrade to master-ce188325-head to be admitted (Harvester v1.5.1 has no strict node-machine check; "
            "it first shipped in v1.5.1), but it was denied (InternalError 500): admission webhook "
            '"validator.harvesterhci.io" denied the request: nodes(3) and machines(4) do not match, check the '
            "cluster provision")
    finally:
        assert stack.run() == []


def test_a_denial_with_other_words_or_another_reason_fails_the_scenario_showing_both(simulators) -> None:  # noqa: ANN001
    cluster = cluster_of(simulators("v1.5.1"))
    stack = CleanupStack()
    try:
        admission, injection = admission_with(cluster, "node-names-gone-machine", stack)
        subs = admission.substitutions(injection)
        with pytest.raises(AssertionError) as caught:
            precheck.expect_denied(admission.result, "InternalError", "machine {namespace}/{machine} is not running",
                                   subs)
        actual = (f'admission webhook "validator.harvesterhci.io" denied the request: node {injection.node} refers '
                  f"to machine {injection.machine}, but the machine does not exist")
        assert str(caught.value) == (
            "the upgrade was denied, but not as expected: message\n"
            f'  expected: admission webhook "validator.harvesterhci.io" denied the request: machine fleet-local/'
            f"{injection.machine} is not running\n  actual:   {actual}")
        with pytest.raises(AssertionError, match=r"reason: expected BadRequest, actual InternalError \(HTTP 500\)"):
            precheck.expect_denied(admission.result, "BadRequest",
                                   "node {node} refers to machine {machine}, but the machine does not exist", subs)
        with pytest.raises(ValueError, match=r"placeholder 'machin'"):
            precheck.expect_denied(admission.result, "InternalError", "machine {machin}", subs)
        precheck.expect_denied(admission.result, "InternalError",
                               "node {node} refers to machine {machine}, but the machine does not exist", subs)
    finally:
        assert stack.run() == []
    assert leaks.audit(cluster.kube(), RUN).clean


def test_the_denial_names_step_finds_the_machine_or_says_why_not(simulators) -> None:  # noqa: ANN001
    cluster = cluster_of(simulators("v1.5.1"))
    stack = CleanupStack()
    try:
        admission, injection = admission_with(cluster, "no-phase", stack)
        steps.denial_names_machine(admission, injection, cluster)
        injection.remove()
        with pytest.raises(AssertionError, match="which the API does not find"):
            steps.denial_names_machine(admission, injection, cluster)
    finally:
        assert stack.run() == []


def test_the_leak_audit_lists_what_carries_the_run_label_and_skips_kinds_not_served(simulators) -> None:  # noqa: ANN001
    kube = Kube(simulators("v1.5.1").kubeconfig)
    stack = CleanupStack()
    try:
        machine = capi.inject_orphan(kube, "provisioning", RUN, stack, budget=Budget("removal", 10))
        tampered = capi.inject_orphan(kube, "node-names-gone-machine", RUN, stack, budget=Budget("removal", 10))
        report = leaks.audit(kube, RUN)
        rendered = report.render()
        assert not report.clean and len(report.leaks) == 2
        assert f"Machine fleet-local/{machine.machine}" in rendered
        assert f"Node {tampered.node} (a Node a scenario tampered with and did not restore; original " \
               f'cluster.x-k8s.io/machine: "{tampered.original_annotation}")' in rendered
        assert "SupportBundle" not in " ".join(report.skipped)
    finally:
        assert stack.run() == []
    assert leaks.audit(kube, RUN).clean
    assert leaks.main(["--kubeconfig", str(simulators("v1.5.1").kubeconfig), "--run-id", RUN]) == 0
