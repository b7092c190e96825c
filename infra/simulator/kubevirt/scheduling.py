"""Where a virt-launcher pod can run: what kube-scheduler checks for it, and a least-loaded choice.

A virt-launcher pod carries the VMI's `nodeSelector`, `affinity` and `tolerations`
(pkg/virt-controller/services/template.go `renderLaunchManifest`); a migration target pod also gets an
anti-affinity to the VMI's other pods (`createTargetPod`, pkg/virt-controller/watch/migration/migration.go),
so it never lands beside its source. The scheduler keeps off nodes that are not Ready, cordoned
(`spec.unschedulable`) or tainted NoSchedule/NoExecute without a toleration: notably KubeVirt's drain taint
`kubevirt.io/drain` that Harvester's pre-drain puts on a node. Among the nodes left the simulator picks the one
running the fewest virt-launcher pods (name order on ties): ILLUSTRATIVE of kube-scheduler's spreading scores,
not its algorithm. Resource fit is not modelled (the simulated nodes have room).
"""
from __future__ import annotations

from typing import Iterable

from .common import APP_LABEL, Obj
from .migratability import match_node_selector_terms, required_node_affinity


def node_ready(node: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (node.get("status") or {}).get("conditions") or [])


def _tolerates(tolerations: list[Obj], taint: Obj) -> bool:
    for toleration in tolerations:
        effect = toleration.get("effect", "")
        if effect and effect != taint.get("effect"):
            continue
        key, operator = toleration.get("key", ""), toleration.get("operator", "Equal")
        if not key and operator == "Exists":
            return True
        if key != taint.get("key"):
            continue
        if operator == "Exists" or toleration.get("value", "") == taint.get("value", ""):
            return True
    return False


def blocking_taint(node: Obj, tolerations: list[Obj]) -> Obj | None:
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(tolerations, taint):
            return taint
    return None


def why_not(node: Obj, vmi: Obj) -> str:
    """Why the VMI's launcher pod cannot go to this node ("" if it can), in kube-scheduler's words."""
    spec = vmi.get("spec") or {}
    if not node_ready(node):
        return "node(s) were not ready"
    if (node.get("spec") or {}).get("unschedulable"):
        return "node(s) were unschedulable"
    taint = blocking_taint(node, spec.get("tolerations") or [])
    if taint is not None:
        value = f"={taint['value']}" if taint.get("value") else ""
        return f"node(s) had untolerated taint {{{taint.get('key')}{value}}}"
    labels = node["metadata"].get("labels") or {}
    selector = spec.get("nodeSelector") or {}
    required = required_node_affinity(vmi)
    if any(labels.get(k) != v for k, v in selector.items()) or \
            (required is not None and not match_node_selector_terms(node, required)):
        return "node(s) didn't match Pod's node affinity/selector"
    return ""


def launcher_load(pods: Iterable[Obj]) -> dict[str, int]:
    """Active virt-launcher pods per node."""
    load: dict[str, int] = {}
    for pod in pods:
        if (pod["metadata"].get("labels") or {}).get(APP_LABEL) != "virt-launcher":
            continue
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed") or pod["metadata"].get("deletionTimestamp"):
            continue
        node = (pod.get("spec") or {}).get("nodeName")
        if node:
            load[node] = load.get(node, 0) + 1
    return load


def pick_node(nodes: list[Obj], vmi: Obj, pods: Iterable[Obj], exclude: Iterable[str] = ()) -> tuple[str, str]:
    """(node, "") or ("", the scheduler's FailedScheduling message)."""
    excluded = set(exclude)
    reasons: dict[str, int] = {}
    fitting: list[str] = []
    for node in nodes:
        name = node["metadata"]["name"]
        reason = "node(s) didn't match pod anti-affinity rules" if name in excluded else why_not(node, vmi)
        if reason:
            reasons[reason] = reasons.get(reason, 0) + 1
        else:
            fitting.append(name)
    if fitting:
        load = launcher_load(pods)
        return min(fitting, key=lambda n: (load.get(n, 0), n)), ""
    detail = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
    total = len(nodes)
    return "", (f"0/{total} nodes are available: {detail}. preemption: 0/{total} nodes are available: "
                f"{total} Preemption is not helpful for scheduling.")
