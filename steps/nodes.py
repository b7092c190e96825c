"""Steps about nodes as machines: SSH, reboots, power cycles, what a node reports about itself.

Nodes are the cluster's own: the steps pick one from the inventory (which the backend checked
against the API's Nodes), never a name written in a feature file.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from pytest_bdd import given, then, when

from infra.cluster import Capability, CapabilityMissing, Cluster
from infra.config import RunConfig
from infra.harvester import nodes as node_checks
from infra.report.attach import attach_text
from infra.waits.catalogue import Wait, budget


@dataclass
class ChosenNode:
    name: str
    boot_id_before: str = ""


@given("a node reachable over SSH", target_fixture="node")
def node_over_ssh(cluster: Cluster) -> ChosenNode:
    cluster.require(Capability.SSH, "a node reboot over SSH")
    return ChosenNode(cluster.node_names()[0])


@given("a node whose power the harness controls", target_fixture="node")
def node_with_power(cluster: Cluster) -> ChosenNode:
    cluster.require(Capability.POWER, "a power cycle")
    cluster.require(Capability.SSH, "reading a node's boot id after a power cycle")
    if not cluster.nodes:
        raise CapabilityMissing(f"{cluster.name} has no node inventory", Capability.SSH)
    return ChosenNode(cluster.node_names()[-1])      # another node than the SSH reboot's, where there are two


@when("the node is rebooted over SSH")
def reboot_over_ssh(cluster: Cluster, run_config: RunConfig, node: ChosenNode) -> None:
    session = cluster.ssh(node.name)
    node.boot_id_before = session.boot_id()
    started = time.monotonic()
    after = session.reboot(budget(Wait.NODE_BACK, run_config))
    attach_text(f"{node.name} boot ids", f"before: {node.boot_id_before}\nafter:  {after}\n"
                                         f"SSH reconnects: {session.reconnects}\n"
                                         f"reboot to SSH with a new boot id: {time.monotonic() - started:.1f}s")


@when("the node is power-cycled")
def power_cycle(cluster: Cluster, run_config: RunConfig, node: ChosenNode) -> None:
    node.boot_id_before = cluster.ssh(node.name).boot_id()
    started = time.monotonic()
    cluster.power(node.name, "reboot")
    node_checks.wait_ready_after_new_boot(cluster.kube(), node.name, node.boot_id_before,
                                          budget(Wait.NODE_BACK, run_config))
    attach_text(f"{node.name} power cycle", f"boot id before: {node.boot_id_before}\nthrough: {cluster.backend} "
                                            "power control (reboot)\n"
                                            f"power cycle to Ready with a new boot id: {time.monotonic() - started:.1f}s")


@then("the node is Ready with the boot id it reports over SSH")
def ready_with_ssh_boot_id(cluster: Cluster, run_config: RunConfig, node: ChosenNode) -> None:
    boot_id = cluster.ssh(node.name).boot_id()
    assert boot_id != node.boot_id_before, \
        f"node {node.name} answers with the same boot id {boot_id} as before: it did not restart"
    node_checks.wait_ready_with_boot_id(cluster.kube(), node.name, boot_id, budget(Wait.NODE_BACK, run_config))


@then("the node reports the Harvester OS of the version the cluster runs")
def reports_os(cluster: Cluster, node: ChosenNode) -> None:
    release = cluster.ssh(node.name).os_release()
    attach_text(f"{node.name} /etc/os-release", "\n".join(f"{k}={v}" for k, v in release.items()))
    problem = node_checks.os_problem(release.get("PRETTY_NAME", ""), cluster.harvester_version)
    assert problem is None, f"node {node.name}: {problem}"
