"""Waiting for workloads in a guest to roll out, and seeing where their pods landed and why not.

`placements` answers "pod -> node -> roles" (what a person checks after a chart pins pods to
control-plane nodes). `wait_unschedulable` waits until pods are Pending with kube-scheduler's
`PodScheduled=False`/`Unschedulable` verdict and returns its message, so a scenario that expects
Pending pods says why they are Pending instead of timing out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.failures import ProductFailure
from infra.kube import Kube
from infra.waits.budget import Budget

from .cluster import ROLE_PREFIX

Obj = dict[str, Any]


@dataclass(frozen=True)
class Placement:
    pod: str
    phase: str
    node: str
    roles: tuple[str, ...]

    @property
    def on_control_plane(self) -> bool:
        return "control-plane" in self.roles or "controlplane" in self.roles


@dataclass(frozen=True)
class PendingPod:
    pod: str
    reason: str
    message: str


def _ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def deployment_rolled_out(deployment: Obj | None) -> bool:
    """What `kubectl rollout status deployment` waits for."""
    if deployment is None:
        return False
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    wanted = int(spec.get("replicas", 1))
    return (int(status.get("observedGeneration", 0)) >= int(deployment["metadata"].get("generation", 1))
            and int(status.get("updatedReplicas", 0)) == wanted and int(status.get("replicas", 0)) == wanted
            and int(status.get("availableReplicas", 0)) == wanted)


def daemonset_rolled_out(daemonset: Obj | None) -> bool:
    if daemonset is None:
        return False
    status = daemonset.get("status") or {}
    desired = int(status.get("desiredNumberScheduled", -1))
    return (int(status.get("observedGeneration", 0)) >= int(daemonset["metadata"].get("generation", 1))
            and desired >= 0 and int(status.get("updatedNumberScheduled", 0)) == desired
            and int(status.get("numberAvailable", 0)) == desired)


def _rollout_summary(obj: Obj | None) -> str:
    if obj is None:
        return "absent"
    status = obj.get("status") or {}
    fields = ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas", "desiredNumberScheduled",
              "updatedNumberScheduled", "numberAvailable")
    counts = ", ".join(f"{k}={status[k]}" for k in fields if k in status)
    conditions = ", ".join(f"{c.get('type')}={c.get('status')} ({c.get('reason', '')})"
                           for c in status.get("conditions") or [])
    return (f"{obj.get('kind')} {obj['metadata']['name']} generation={obj['metadata'].get('generation')} "
            f"observed={status.get('observedGeneration')} {counts} {conditions}")


def wait_deployment_rolled_out(kube: Kube, name: str, namespace: str, budget: Budget) -> Obj:
    found = kube.wait_for("apps/v1", "Deployment", name, deployment_rolled_out, budget=budget, namespace=namespace,
                          awaited=f"Deployment {namespace}/{name} to roll out")
    assert found is not None
    return found


def wait_daemonset_rolled_out(kube: Kube, name: str, namespace: str, budget: Budget) -> Obj:
    found = kube.wait_for("apps/v1", "DaemonSet", name, daemonset_rolled_out, budget=budget, namespace=namespace,
                          awaited=f"DaemonSet {namespace}/{name} to roll out")
    assert found is not None
    return found


def describe_rollout(kube: Kube, kind: str, name: str, namespace: str) -> str:
    return _rollout_summary(kube.find("apps/v1", kind, name, namespace))


def selector_of(workload: Obj) -> str:
    labels = ((workload.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def placements(kube: Kube, namespace: str, label_selector: str) -> list[Placement]:
    """Where each selected pod runs, and the roles of its node."""
    roles_of = {}
    for node in kube.list("v1", "Node"):
        labels = node["metadata"].get("labels") or {}
        roles_of[node["metadata"]["name"]] = tuple(sorted(k[len(ROLE_PREFIX):] for k in labels
                                                          if k.startswith(ROLE_PREFIX)))
    result = []
    for pod in kube.list("v1", "Pod", namespace, label_selector=label_selector):
        if pod["metadata"].get("deletionTimestamp"):
            continue
        node_name = str((pod.get("spec") or {}).get("nodeName") or "")
        result.append(Placement(pod["metadata"]["name"], (pod.get("status") or {}).get("phase", ""), node_name,
                                roles_of.get(node_name, ())))
    return sorted(result, key=lambda p: p.pod)


def placement_table(rows: list[Placement]) -> str:
    lines = [f"{'POD':<56} {'PHASE':<10} {'NODE':<28} ROLES"]
    for row in rows:
        lines.append(f"{row.pod:<56} {row.phase:<10} {row.node or '<none>':<28} "
                     f"{','.join(row.roles) or '<none>'}")
    return "\n".join(lines)


def unschedulable(pod: Obj) -> PendingPod | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return PendingPod(pod["metadata"]["name"], cond.get("reason", ""), cond.get("message", ""))
    return None


class PodsWereScheduled(ProductFailure):
    """Pods expected to stay Pending were placed instead (the scheduler found nodes for them)."""


def wait_unschedulable(kube: Kube, namespace: str, label_selector: str, count: int, budget: Budget) -> list[PendingPod]:
    """Wait until `count` selected pods are Pending with kube-scheduler's Unschedulable verdict.

    Fails at once (`PodsWereScheduled`) when the pods get nodes instead: that answer will not change.
    """
    def verdicts(pods: list[Obj]) -> list[PendingPod]:
        return [v for p in pods if not p["metadata"].get("deletionTimestamp")
                and (p.get("status") or {}).get("phase", "Pending") == "Pending"
                and (v := unschedulable(p)) is not None and v.reason == "Unschedulable"]

    def scheduled(pods: list[Obj]) -> list[Obj]:
        return [p for p in pods if (p.get("spec") or {}).get("nodeName") and not p["metadata"].get("deletionTimestamp")]

    def describe(pods: list[Obj]) -> str:
        return "; ".join(f"{p['metadata']['name']} phase={(p.get('status') or {}).get('phase')} "
                         f"node={(p.get('spec') or {}).get('nodeName') or '<none>'} "
                         f"scheduled={(unschedulable(p) or PendingPod('', 'True', '')).reason}"
                         for p in pods) or "no pods"

    pods = kube.wait_for_all("v1", "Pod", lambda ps: len(verdicts(ps)) >= count or len(scheduled(ps)) >= count,
                             budget=budget, namespace=namespace, label_selector=label_selector, describe=describe,
                             awaited=f"{count} pods ({label_selector}) to be reported Unschedulable")
    found = verdicts(pods)
    if len(found) < count:
        rows = placements(kube, namespace, label_selector)
        raise PodsWereScheduled(f"expected {count} pods ({label_selector}) to stay Pending, but the scheduler "
                                f"placed them: " + "; ".join(f"{r.pod} on {r.node} ({','.join(r.roles) or 'no role'})"
                                                             for r in rows),
                                evidence={"placements": placement_table(rows)})
    return found


def ready_pods(kube: Kube, namespace: str, label_selector: str) -> list[Obj]:
    return [p for p in kube.list("v1", "Pod", namespace, label_selector=label_selector)
            if _ready(p) and not p["metadata"].get("deletionTimestamp")]
