"""Steps about getting a cluster and its basic health."""
from __future__ import annotations

import allure
import pytest
from pytest_bdd import given, parsers, then

from infra.backends import Backend, Cluster
from infra.config import RunConfig
from infra.harvester import health
from infra.report.attach import attach_text
from infra.waits.budget import Budget


@given(parsers.parse("a Harvester cluster at version {version}"), target_fixture="cluster")
def a_cluster_at(version: str, backend: Backend, run_config: RunConfig) -> Cluster:
    if run_config.backend != "simulated" and version != run_config.harvester_version:
        pytest.skip(f"the {run_config.backend} cluster runs {run_config.harvester_version}; "
                    f"this example needs {version}")
    cluster = backend.acquire(version)
    allure.dynamic.parameter("backend", run_config.backend)
    return cluster


@given("every node is Ready")
@then("every node is Ready")
def every_node_ready(cluster: Cluster, run_config: RunConfig) -> None:
    budget = Budget.minutes("nodes Ready", run_config.timeouts.node_ready_min)
    nodes = health.wait_nodes_ready(cluster.kube(), budget)
    assert len(nodes) == len(cluster.nodes) or not cluster.simulated, \
        f"expected {len(cluster.nodes)} nodes, the API lists {len(nodes)}"


@given("every Machine is Running and matched to its Node")
@then("every Machine is Running and matched to its Node")
def machines_matched(cluster: Cluster) -> None:
    attach_text("machines and nodes", health.assert_machines_consistent(cluster.kube()))


@given("every ManagedChart is Ready")
@then("every ManagedChart is Ready")
def managed_charts_ready(cluster: Cluster, run_config: RunConfig) -> None:
    health.wait_managed_charts_ready(cluster.kube(), Budget.minutes("ManagedCharts Ready",
                                                                    run_config.timeouts.api_wait_min))


@then(parsers.parse("the server-version setting is {version}"))
def server_version_is(cluster: Cluster, version: str) -> None:
    actual = health.server_version(cluster.kube())
    assert actual == version, f"server-version is {actual!r}, expected {version!r}"
