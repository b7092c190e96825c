"""Where kube-scheduler would put a pod: the filters and scores a harness can notice.

Filters, in kube-scheduler's order, each with the reason it reports for a node it rejects:
NodeUnschedulable, TaintToleration (NoSchedule/NoExecute taints), NodeAffinity (`nodeSelector` and
required node affinity, incl. the `metadata.name` field the DaemonSet controller uses) and
InterPodAffinity (required pod anti-affinity). Scores: preferred node affinity, preferred pod
anti-affinity, and the default spreading of one controller's pods over nodes. When no node fits,
the pod gets the message kube-scheduler writes into `PodScheduled=False` (reason Unschedulable):
`0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3
nodes are available: 3 Preemption is not helpful for scheduling.` Resources are not modelled.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterable

Obj = dict[str, Any]

REASON_UNSCHEDULABLE = "node(s) were unschedulable"
REASON_NODE_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
REASON_ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"


@dataclass(frozen=True)
class Decision:
    node: str | None
    message: str = ""          # why nothing fits (empty when a node was chosen)


def _labels(obj: Obj) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


# ---- selectors ---------------------------------------------------------------------------------

def expression_matches(expression: Obj, labels: dict[str, str]) -> bool:
    key, operator = expression.get("key", ""), expression.get("operator", "")
    values = [str(v) for v in expression.get("values") or []]
    present = key in labels
    if operator == "In":
        return present and labels[key] in values
    if operator == "NotIn":
        return not present or labels[key] not in values
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and values:
        try:
            have, want = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return have > want if operator == "Gt" else have < want
    return False


def label_selector_matches(selector: Obj | None, labels: dict[str, str]) -> bool:
    """metav1.LabelSelector; an empty selector matches everything, a missing one nothing."""
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    return all(expression_matches(e, labels) for e in selector.get("matchExpressions") or [])


def node_selector_term_matches(term: Obj, node: Obj) -> bool:
    """A NodeSelectorTerm: its expressions AND its fields (an empty term matches no node)."""
    expressions, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not expressions and not fields:
        return False
    labels = _labels(node)
    node_fields = {"metadata.name": node["metadata"]["name"]}
    return all(expression_matches(e, labels) for e in expressions) and \
        all(expression_matches(f, node_fields) for f in fields)


def _affinity(pod: Obj) -> Obj:
    return ((pod.get("spec") or {}).get("affinity")) or {}


def matches_node_affinity(pod: Obj, node: Obj) -> bool:
    spec = pod.get("spec") or {}
    labels = _labels(node)
    if any(labels.get(k) != str(v) for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = ((_affinity(pod).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution"))
    if required is None:
        return True
    return any(node_selector_term_matches(t, node) for t in required.get("nodeSelectorTerms") or [])


# ---- taints ------------------------------------------------------------------------------------

def tolerates(toleration: Obj, taint: Obj) -> bool:
    """v1.Toleration.ToleratesTaint: Equal compares values ("" included), Exists ignores them."""
    effect = toleration.get("effect", "")
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key", "")
    if key and key != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    if operator == "Equal":
        return bool(key) and toleration.get("value", "") == taint.get("value", "")
    return False


def untolerated_taint(pod: Obj, node: Obj) -> Obj | None:
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


def _taint_reason(taint: Obj) -> str:
    return f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value', '')}}}"


# ---- pod (anti-)affinity -------------------------------------------------------------------------

def _term_selects(term: Obj, pod: Obj, other: Obj) -> bool:
    namespaces = term.get("namespaces") or [pod["metadata"].get("namespace")]
    if other["metadata"].get("namespace") not in namespaces:
        return False
    return label_selector_matches(term.get("labelSelector"), _labels(other))


def _topology_value(node: Obj | None, key: str) -> str | None:
    if node is None:
        return None
    if key == "kubernetes.io/hostname":
        return _labels(node).get(key, node["metadata"]["name"])
    return _labels(node).get(key)


def _domain_has_match(term: Obj, pod: Obj, node: Obj, nodes_by_name: dict[str, Obj],
                      placed: Iterable[Obj]) -> int:
    key = term.get("topologyKey", "")
    domain = _topology_value(node, key)
    if domain is None:
        return 0
    count = 0
    for other in placed:
        other_node = nodes_by_name.get((other.get("spec") or {}).get("nodeName", ""))
        if _topology_value(other_node, key) == domain and _term_selects(term, pod, other):
            count += 1
    return count


def violates_anti_affinity(pod: Obj, node: Obj, nodes_by_name: dict[str, Obj], placed: list[Obj]) -> bool:
    terms = ((_affinity(pod).get("podAntiAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution")
             or [])
    return any(_domain_has_match(t, pod, node, nodes_by_name, placed) for t in terms)


# ---- the decision --------------------------------------------------------------------------------

def filter_reason(pod: Obj, node: Obj, nodes_by_name: dict[str, Obj], placed: list[Obj]) -> str | None:
    """Why `node` cannot take `pod` (the first failing filter), or None when it fits."""
    if (node.get("spec") or {}).get("unschedulable"):
        tolerations = (pod.get("spec") or {}).get("tolerations") or []
        if not any(tolerates(t, {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"})
                   for t in tolerations):
            return REASON_UNSCHEDULABLE
    taint = untolerated_taint(pod, node)
    if taint is not None:
        return _taint_reason(taint)
    if not matches_node_affinity(pod, node):
        return REASON_NODE_AFFINITY
    if violates_anti_affinity(pod, node, nodes_by_name, placed):
        return REASON_ANTI_AFFINITY
    return None


def _owner_uid(pod: Obj) -> str | None:
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")
    return None


def score(pod: Obj, node: Obj, nodes_by_name: dict[str, Obj], placed: list[Obj]) -> float:
    affinity = _affinity(pod)
    total = 0.0
    for preferred in (affinity.get("nodeAffinity") or {}).get("preferredDuringSchedulingIgnoredDuringExecution") or []:
        if node_selector_term_matches(preferred.get("preference") or {}, node):
            total += float(preferred.get("weight", 0))
    for preferred in (affinity.get("podAntiAffinity") or {}).get("preferredDuringSchedulingIgnoredDuringExecution") or []:
        matches = _domain_has_match(preferred.get("podAffinityTerm") or {}, pod, node, nodes_by_name, placed)
        total -= float(preferred.get("weight", 0)) * matches
    owner = _owner_uid(pod)
    if owner is not None:   # default topology spreading: fewer siblings on a node scores higher
        siblings = sum(1 for p in placed if _owner_uid(p) == owner and
                       (p.get("spec") or {}).get("nodeName") == node["metadata"]["name"])
        total -= 10.0 * siblings
    return total


def preemption_suffix(node_count: int) -> str:
    return (f"preemption: 0/{node_count} nodes are available: {node_count} Preemption is not helpful for "
            "scheduling.")


def unschedulable_message(reasons: Iterable[str], node_count: int) -> str:
    histogram = Counter(reasons)
    parts = ", ".join(sorted(f"{count} {reason}" for reason, count in histogram.items()))   # as FitError sorts
    if not parts:
        return f"0/{node_count} nodes are available: {preemption_suffix(node_count)}"
    return f"0/{node_count} nodes are available: {parts}. {preemption_suffix(node_count)}"


def schedule(pod: Obj, nodes: list[Obj], placed: list[Obj]) -> Decision:
    """Choose a node for `pod` given the pods already placed (bound to a node, not terminating)."""
    nodes_by_name = {n["metadata"]["name"]: n for n in nodes}
    feasible, reasons = [], []
    for node in nodes:
        reason = filter_reason(pod, node, nodes_by_name, placed)
        if reason is None:
            feasible.append(node)
        else:
            reasons.append(reason)
    if not feasible:
        return Decision(None, unschedulable_message(reasons, len(nodes)))
    load = Counter((p.get("spec") or {}).get("nodeName") for p in placed)
    best = max(feasible, key=lambda n: (score(pod, n, nodes_by_name, placed), -load[n["metadata"]["name"]],
                                        [-ord(c) for c in n["metadata"]["name"]]))
    return Decision(best["metadata"]["name"])
