"""The Harvester CSI driver chart in a guest: where its controllers run, and why they cannot run.

docs/harvester-facts.md §3.1: the chart's controller Deployment `harvester-csi-driver-controllers` (3 replicas) has,
from chart 0.1.23, a required node affinity to nodes labelled `node-role.kubernetes.io/control-plane`
(RKE2) or `node-role.kubernetes.io/controlplane` (RKE1). Where no node has either, the controllers
stay Pending and kube-scheduler says the node affinity is why.
"""
from __future__ import annotations

from dataclasses import dataclass

from infra.failures import ProductFailure
from infra.kube import Kube
from infra.waits.budget import Budget

from . import rollout
from .cluster import CONTROL_PLANE_LABELS

CHART = "harvester-csi-driver"
CONTROLLERS = "harvester-csi-driver-controllers"
NAMESPACE = "kube-system"
CONTROLLER_SELECTOR = "app.kubernetes.io/name=harvester-csi-driver,component=csi-controllers"
NODE_PLUGIN_SELECTOR = "app.kubernetes.io/name=harvester-csi-driver,component=csi-driver"
AFFINITY_VERDICT = "didn't match Pod's node affinity/selector"


class PlacementProblem(ProductFailure):
    """CSI controller pods run where the chart's affinity does not allow."""


@dataclass(frozen=True)
class PendingControllers:
    """Why the controllers are Pending: the scheduler's words and the affinity that causes them."""

    pods: list[rollout.PendingPod]
    required_labels: tuple[str, ...]

    def report(self) -> str:
        return "\n".join([f"required node affinity (any of): {', '.join(self.required_labels)}",
                          *(f"{p.pod}: {p.reason}: {p.message}" for p in self.pods)])


def controller_placements(kube: Kube) -> list[rollout.Placement]:
    return rollout.placements(kube, NAMESPACE, CONTROLLER_SELECTOR)


def assert_controllers_on_control_plane(kube: Kube) -> list[rollout.Placement]:
    rows = controller_placements(kube)
    elsewhere = [f"{r.pod} on {r.node or '<no node>'} ({','.join(r.roles) or 'no role'})"
                 for r in rows if not (r.on_control_plane and r.phase == "Running")]
    if not rows or elsewhere:
        raise PlacementProblem("CSI controller pods not running on a control-plane node: "
                               + ("; ".join(elsewhere) or "there are none"),
                               evidence={"placements": rollout.placement_table(rows)})
    return rows


def required_control_plane_labels(kube: Kube) -> tuple[str, ...]:
    """The node labels the controllers' required node affinity asks for (empty: no such affinity)."""
    deployment = kube.get("apps/v1", "Deployment", CONTROLLERS, NAMESPACE)
    affinity = (deployment["spec"]["template"]["spec"].get("affinity") or {}).get("nodeAffinity") or {}
    terms = (affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or []
    return tuple(sorted(e["key"] for t in terms for e in t.get("matchExpressions") or []
                        if e.get("operator") == "Exists"))


def wait_controllers_pending_for_affinity(kube: Kube, budget: Budget) -> PendingControllers:
    """Every controller replica Pending, Unschedulable because of the control-plane node affinity."""
    replicas = int(kube.get("apps/v1", "Deployment", CONTROLLERS, NAMESPACE)["spec"]["replicas"])
    pods = rollout.wait_unschedulable(kube, NAMESPACE, CONTROLLER_SELECTOR, replicas, budget)
    labels = required_control_plane_labels(kube)
    problems = []
    if set(labels) != set(CONTROL_PLANE_LABELS):
        problems.append(f"the controllers' required node affinity asks for {list(labels) or 'nothing'}, "
                        f"not the control-plane labels {list(CONTROL_PLANE_LABELS)}")
    other = [p for p in pods if AFFINITY_VERDICT not in p.message]
    if other:
        problems.append("Pending for another reason: " + "; ".join(f"{p.pod}: {p.message}" for p in other))
    status = kube.get("apps/v1", "Deployment", CONTROLLERS, NAMESPACE).get("status") or {}
    if status.get("availableReplicas"):
        problems.append(f"{CONTROLLERS} reports {status['availableReplicas']} available replicas")
    if problems:
        raise PlacementProblem("; ".join(problems), evidence={"pending pods": [p.__dict__ for p in pods],
                                                              "Deployment status": status})
    return PendingControllers(pods, labels)


def assert_node_plugin_everywhere(kube: Kube, node_names: set[str], budget: Budget) -> list[rollout.Placement]:
    rollout.wait_daemonset_rolled_out(kube, CHART, NAMESPACE, budget)
    rows = rollout.placements(kube, NAMESPACE, NODE_PLUGIN_SELECTOR)
    running = {r.node for r in rows if r.phase == "Running"}
    if running != node_names:
        raise PlacementProblem(f"the CSI node plugin runs on {sorted(running)}, the nodes are {sorted(node_names)}",
                               evidence={"placements": rollout.placement_table(rows)})
    return rows
