"""Steps about getting a cluster and its basic health."""
from __future__ import annotations

import allure
import pytest
from pytest_bdd import given, parsers, then

from infra.backends import Backend
from infra.cluster import CLUSTER_KEY, CapabilityMissing, Cluster
from infra.config import RunConfig
from infra.harvester import health
from infra.harvester.upgrade.run import upgrades_under_way
from infra.report.attach import attach_text
from infra.report.facts import ScenarioFacts
from infra.waits.catalogue import Wait, budget


def _acquired(cluster: Cluster, run_config: RunConfig, facts: ScenarioFacts, request: pytest.FixtureRequest) -> Cluster:
    allure.dynamic.parameter("backend", run_config.backend)
    under_way = upgrades_under_way(cluster.kube())
    if under_way:          # e.g. a lab an earlier upgrade scenario left stalled: nothing else can be judged there
        raise CapabilityMissing(f"needs a cluster with no upgrade under way; on {cluster.name} Upgrade "
                                f"{', '.join(under_way)} has not ended (an upgrade scenario needs a lab of its own)")
    facts.record("harvester_from", cluster.harvester_version)
    request.node.stash[CLUSTER_KEY] = cluster        # for --pause-on-failure and --keep-on-failure
    return cluster


@given("a Harvester cluster", target_fixture="cluster")
def a_cluster(backend: Backend, run_config: RunConfig, facts: ScenarioFacts, request: pytest.FixtureRequest) -> Cluster:
    """Whatever version the cluster runs: for stories whose outcome does not depend on it."""
    return _acquired(backend.acquire(), run_config, facts, request)


@given(parsers.parse("a Harvester cluster at version {version}"), target_fixture="cluster")
def a_cluster_at(version: str, backend: Backend, run_config: RunConfig, facts: ScenarioFacts,
                 request: pytest.FixtureRequest) -> Cluster:
    return _acquired(backend.acquire(version), run_config, facts, request)


@given("every node is Ready")
@then("every node is Ready")
def every_node_ready(cluster: Cluster, run_config: RunConfig) -> None:
    nodes = health.wait_nodes_ready(cluster.kube(), budget(Wait.NODES_READY, run_config))
    listed = sorted(n["metadata"]["name"] for n in nodes)
    if cluster.nodes:       # the inventory and the cluster agree on which nodes there are
        assert listed == sorted(cluster.node_names()), \
            f"the API lists nodes {listed}, the inventory {sorted(cluster.node_names())}"


@given("every Machine is Running and matched to its Node")
@then("every Machine is Running and matched to its Node")
def machines_matched(cluster: Cluster) -> None:
    attach_text("machines and nodes", health.assert_machines_consistent(cluster.kube()))


@given("every ManagedChart is Ready")
@then("every ManagedChart is Ready")
def managed_charts_ready(cluster: Cluster, run_config: RunConfig) -> None:
    health.wait_managed_charts_ready(cluster.kube(), budget(Wait.CHARTS_READY, run_config))


@then(parsers.parse("the server-version setting is {version}"))
def server_version_is(cluster: Cluster, version: str) -> None:
    actual = health.server_version(cluster.kube())
    expected = cluster.harvester_version if version == "the version the cluster runs" else version
    assert actual == expected, f"server-version is {actual!r}, expected {expected!r}"
