"""The health checks fail, with the reason, when the cluster is not healthy."""
from __future__ import annotations

import pytest

from infra.harvester import health
from infra.kube import Kube
from infra.waits.budget import Budget, WaitTimeout


def test_a_healthy_simulator_passes_every_check(kube: Kube) -> None:
    assert len(health.wait_nodes_ready(kube, Budget("nodes Ready", 10))) == 3
    assert "custom-" in health.assert_machines_consistent(kube)
    assert health.wait_managed_charts_ready(kube, Budget("charts", 10))
    assert health.server_version(kube) == "v1.4.2"


def test_a_machine_that_is_not_running_fails_with_its_name(kube: Kube) -> None:
    machine = kube.list("cluster.x-k8s.io/v1beta1", "Machine", "fleet-local")[0]
    name = machine["metadata"]["name"]
    kube.patch("cluster.x-k8s.io/v1beta1", "Machine", name, {"status": {"phase": "Provisioning"}},
               namespace="fleet-local", subresource="status")
    try:
        with pytest.raises(health.HealthProblem) as caught:
            health.assert_machines_consistent(kube)
        assert f"machine fleet-local/{name} is not running (phase Provisioning)" in str(caught.value)
        assert "machines and nodes" in caught.value.evidence
    finally:
        kube.patch("cluster.x-k8s.io/v1beta1", "Machine", name, {"status": {"phase": "Running"}},
                   namespace="fleet-local", subresource="status")


def test_a_node_that_stays_not_ready_times_out_naming_the_node(kube: Kube) -> None:
    node = kube.get("v1", "Node", "harvester-node-2")
    conditions = node["status"]["conditions"]
    broken = [dict(c, status="False") if c["type"] == "Ready" else c for c in conditions]
    kube.patch("v1", "Node", "harvester-node-2", {"status": {"conditions": broken}}, subresource="status",
               patch_type="merge")
    try:
        with pytest.raises(WaitTimeout) as caught:
            health.wait_nodes_ready(kube, Budget("nodes Ready", 1.5))
        assert "not Ready: harvester-node-2" in str(caught.value)
    finally:
        kube.patch("v1", "Node", "harvester-node-2", {"status": {"conditions": conditions}},
                   subresource="status", patch_type="merge")


def test_a_dead_simulated_cluster_fails_fast_with_the_reason(tmp_path) -> None:  # noqa: ANN001
    import time

    from infra.kube import ApiFailure
    from infra.kube import Kube as KubeClient

    from ..conftest import start_simulator

    simulator = start_simulator("v1.4.2", tmp_path)
    kube = KubeClient(simulator.kubeconfig, unavailable_budget=300, gone=simulator.exit_reason)
    simulator.process.kill()
    simulator.process.wait(10)
    started = time.monotonic()
    with pytest.raises(ApiFailure) as caught:
        kube.list("v1", "Node")
    assert time.monotonic() - started < 10, "no 5-minute retry against a process that is gone"
    assert "exited with status" in caught.value.message
