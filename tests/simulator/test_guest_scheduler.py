"""The guest's scheduler places pods as kube-scheduler does, and says why when nothing fits."""
from __future__ import annotations

import copy
from typing import Any

from infra.simulator.guest import catalog, scheduler
from infra.simulator.guest.rke2 import GuestNode, Rke2Line

Obj = dict[str, Any]

PREEMPTION = "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."


def nodes(*, control_plane: bool = True) -> list[Obj]:
    """One RKE2 server and two agents, as a guest's nodes look (no taints)."""
    line = Rke2Line.parse("v1.31.6+rke2r1")
    return [GuestNode(f"node-{index}", index, server and control_plane, f"198.51.100.{10 + index}", "uid")
            .node_object(line) for index, server in enumerate((True, False, False))]


def controller_pod(version: str, name: str, owner: str = "rs-1") -> Obj:
    """A pod of the CSI chart's controller Deployment at `version`, as its ReplicaSet creates it."""
    rendered = catalog.resolve(catalog.HARVESTER_REPO, "harvester-csi-driver", version, "csi").render(
        catalog.Release("harvester-csi-driver", "kube-system"), {})
    deployment = next(r.object for r in rendered if r.object["kind"] == "Deployment")
    template = copy.deepcopy(deployment["spec"]["template"])
    return {"metadata": {"name": name, "namespace": "kube-system", "labels": template["metadata"]["labels"],
                         "ownerReferences": [{"uid": owner, "controller": True}]},
            "spec": template["spec"]}


def place_all(pods: list[Obj], all_nodes: list[Obj]) -> list[scheduler.Decision]:
    placed: list[Obj] = []
    decisions = []
    for pod in pods:
        decision = scheduler.schedule(pod, all_nodes, placed)
        decisions.append(decision)
        if decision.node:
            placed.append({**pod, "spec": {**pod["spec"], "nodeName": decision.node}})
    return decisions


def test_chart_0_1_21_controllers_spread_over_all_nodes() -> None:
    decisions = place_all([controller_pod("0.1.21", f"c{i}") for i in range(3)], nodes())
    assert sorted(d.node for d in decisions) == ["node-0", "node-1", "node-2"]


def test_chart_0_1_23_controllers_all_land_on_the_one_control_plane_node() -> None:
    decisions = place_all([controller_pod("0.1.23", f"c{i}") for i in range(3)], nodes())
    assert [d.node for d in decisions] == ["node-0", "node-0", "node-0"], "anti-affinity is only preferred"


def test_without_a_control_plane_label_0_1_23_controllers_are_unschedulable_with_kube_schedulers_message() -> None:
    decision = scheduler.schedule(controller_pod("0.1.23", "c0"), nodes(control_plane=False), [])
    assert decision.node is None
    assert decision.message == ("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. "
                                + PREEMPTION)


def test_the_rke1_label_satisfies_the_affinity_too() -> None:
    all_nodes = nodes(control_plane=False)
    all_nodes[2]["metadata"]["labels"]["node-role.kubernetes.io/controlplane"] = "true"
    assert scheduler.schedule(controller_pod("0.1.23", "c0"), all_nodes, []).node == "node-2"


def test_reasons_are_counted_per_node_and_sorted() -> None:
    all_nodes = nodes(control_plane=False)
    all_nodes[0]["spec"]["taints"] = [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]
    decision = scheduler.schedule(controller_pod("0.1.23", "c0"), all_nodes, [])
    assert decision.message == ("0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, "
                                "2 node(s) didn't match Pod's node affinity/selector. " + PREEMPTION)


def test_an_equal_toleration_without_value_tolerates_only_an_empty_value() -> None:
    toleration = {"effect": "NoSchedule", "key": "node-role.kubernetes.io/control-plane", "operator": "Equal"}
    assert scheduler.tolerates(toleration, {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"})
    assert not scheduler.tolerates(toleration, {"key": "node-role.kubernetes.io/control-plane", "value": "true",
                                                "effect": "NoSchedule"})
    assert scheduler.tolerates({"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"},
                               {"key": "node-role.kubernetes.io/control-plane", "value": "true", "effect": "NoSchedule"})


def test_a_tainted_control_plane_keeps_0_1_23_controllers_pending_when_the_value_is_not_tolerated() -> None:
    all_nodes = nodes()
    all_nodes[0]["spec"]["taints"] = [{"key": "node-role.kubernetes.io/control-plane", "value": "true",
                                       "effect": "NoSchedule"}]
    decision = scheduler.schedule(controller_pod("0.1.23", "c0"), all_nodes, [])
    assert decision.node is None
    assert "1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: true}" in decision.message


def test_required_anti_affinity_leaves_the_second_replica_pending() -> None:
    pod = {"metadata": {"name": "a", "namespace": "ns", "labels": {"app": "x"}},
           "spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
               {"labelSelector": {"matchLabels": {"app": "x"}}, "topologyKey": "kubernetes.io/hostname"}]}},
               "nodeSelector": {"kubernetes.io/hostname": "node-1"}}}
    second = copy.deepcopy(pod)
    second["metadata"]["name"] = "b"
    first, other = place_all([pod, second], nodes())
    assert first.node == "node-1" and other.node is None
    assert "1 node(s) didn't match pod anti-affinity rules" in other.message
    assert "2 node(s) didn't match Pod's node affinity/selector" in other.message


def test_node_selector_and_daemonset_pinning_by_field() -> None:
    pinned = {"metadata": {"name": "d", "namespace": "ns", "labels": {}},
              "spec": {"nodeSelector": {"kubernetes.io/os": "linux"}, "affinity": {"nodeAffinity": {
                  "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                      {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node-2"]}]}]}}}}}
    assert scheduler.schedule(pinned, nodes(), []).node == "node-2"
    windows = copy.deepcopy(pinned)
    windows["spec"]["nodeSelector"] = {"kubernetes.io/os": "windows"}
    assert scheduler.schedule(windows, nodes(), []).node is None


def test_preferred_node_affinity_wins_over_spreading() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "labels": {}},
           "spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
               {"weight": 50, "preference": {"matchExpressions": [
                   {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-2"]}]}}]}}}}
    assert scheduler.schedule(pod, nodes(), []).node == "node-2"
