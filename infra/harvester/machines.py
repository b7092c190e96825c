"""Nodes and cluster-api Machines: are they consistent, as Harvester's pre-upgrade check demands?

The match goes through the Node annotation `cluster.x-k8s.io/machine` and the Machine's
`status.nodeRef.name` (not providerID), as Harvester's `isNodeMachineMatching` does.

Also the orphans that break it, made on purpose (docs/harvester-facts.md §1.3/§1.4, harvester/harvester#8179):
a fake Machine `custom-<12 hex>` in `fleet-local`, `providerID: rke2://harv44`, bound to the local
cluster and labelled with the run id, in each state the issue lists; or a Node whose annotation names
a Machine that does not exist. Every injection registers its undo on the cleanup stack BEFORE it
changes anything, so an interrupt between the two cannot leak.
"""
from __future__ import annotations

import json
import logging
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from .names import CAPI, FLEET_LOCAL, MACHINE_ANNOTATION, RUN_ID_LABEL

Obj = dict[str, Any]
log = logging.getLogger("harvester_e2e.machines")


@dataclass(frozen=True)
class MachineRow:
    """One line of `kubectl get machines -o wide` beside the node it claims."""

    namespace: str
    name: str
    phase: str
    provider_id: str
    node_ref: str
    node_exists: bool

    @classmethod
    def of(cls, machine: Obj, node_names: set[str]) -> "MachineRow":
        status = machine.get("status") or {}
        node_ref = (status.get("nodeRef") or {}).get("name", "")
        return cls(machine["metadata"].get("namespace", ""), machine["metadata"]["name"],
                   status.get("phase") or "<none>", (machine.get("spec") or {}).get("providerID") or "<none>",
                   node_ref or "<none>", node_ref in node_names)


def consistency_problems(nodes: list[Obj], machines: list[Obj]) -> list[str]:
    """Every reason the Machines and Nodes do not match; empty when they are consistent."""
    problems: list[str] = []
    by_name = {m["metadata"]["name"]: m for m in machines}
    node_names = {n["metadata"]["name"] for n in nodes}
    for machine in machines:
        row = MachineRow.of(machine, node_names)
        if row.phase != "Running":
            problems.append(f"machine {row.namespace}/{row.name} is not running (phase {row.phase})")
        if row.node_ref == "<none>":
            problems.append(f"machine {row.namespace}/{row.name} has no nodeRef")
        elif not row.node_exists:
            problems.append(f"machine {row.namespace}/{row.name} refers to node {row.node_ref}, which does not exist")
    for node in nodes:
        name = node["metadata"]["name"]
        claimed = (node["metadata"].get("annotations") or {}).get(MACHINE_ANNOTATION)
        if not claimed:
            problems.append(f"node {name} has no {MACHINE_ANNOTATION} annotation")
            continue
        claimed_machine = by_name.get(claimed)
        if claimed_machine is None:
            problems.append(f"node {name} refers to machine {claimed}, which does not exist")
            continue
        ref = ((claimed_machine.get("status") or {}).get("nodeRef") or {}).get("name")
        if ref and ref != name:
            problems.append(f"node {name} refers to machine {claimed}, but the machine refers to node {ref}")
    if len(nodes) != len(machines):
        problems.append(f"{len(nodes)} nodes but {len(machines)} machines")
    return problems


def table(nodes: list[Obj], machines: list[Obj]) -> str:
    """Machines with phase, providerID and nodeRef beside the Nodes, as one text table."""
    node_names = {n["metadata"]["name"] for n in nodes}
    rows = [MachineRow.of(m, node_names) for m in machines]
    header = ("NAMESPACE", "MACHINE", "PHASE", "PROVIDERID", "NODEREF", "NODE EXISTS")
    lines: list[tuple[str, ...]] = [header]
    lines += [(r.namespace, r.name, r.phase, r.provider_id, r.node_ref, "yes" if r.node_exists else "NO") for r in rows]
    machine_names = {m["metadata"]["name"] for m in machines}
    node_header = ("NODE", "READY", MACHINE_ANNOTATION, "MACHINE EXISTS")
    node_lines: list[tuple[str, ...]] = [node_header]
    for node in nodes:
        claimed = (node["metadata"].get("annotations") or {}).get(MACHINE_ANNOTATION)
        node_lines.append((node["metadata"]["name"], _ready(node), claimed or "<none>",
                           "-" if not claimed else "yes" if claimed in machine_names else "NO"))
    return _format(lines) + "\n\n" + _format(node_lines)


def _ready(node: Obj) -> str:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status", "Unknown")
    return "Unknown"


def _format(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


# ---- listing ---------------------------------------------------------------------------------------

def list_nodes_and_machines(kube: Any) -> tuple[list[Obj], list[Obj]]:
    """What `kubectl get nodes` and `kubectl get machines -n fleet-local` show (the webhook's two lists)."""
    return kube.list("v1", "Node"), kube.list(CAPI, "Machine", FLEET_LOCAL)


# ---- orphans ---------------------------------------------------------------------------------------

FAKE_NODE = "harv44"                          # the node the fake Machine claims (providerID rke2://harv44)
ORIGINAL_ANNOTATION = "e2e.harvesterhci.io/original-machine-annotation"   # JSON of the value a scenario replaced


@dataclass(frozen=True)
class OrphanKind:
    """One way a Machine and the Nodes disagree, as a scenario names it."""

    key: str
    phrase: str                    # the Gherkin wording: "When I inject <phrase>"
    phase: str | None = None       # status.phase of the fake Machine (None: no status at all)
    node_ref: str | None = None    # status.nodeRef.name of the fake Machine
    tampers_node: bool = False     # no fake Machine: a Node's annotation names a Machine that is gone


ORPHAN_KINDS: tuple[OrphanKind, ...] = (
    OrphanKind("no-phase", "a Machine that never ran (no phase)"),
    OrphanKind("provisioning", "a Machine stuck in Provisioning", phase="Provisioning"),
    OrphanKind("running-no-noderef", "a Running Machine with no nodeRef", phase="Running"),
    OrphanKind("noderef-missing-node", "a Running Machine whose nodeRef names a missing node", phase="Running",
               node_ref=FAKE_NODE),
    OrphanKind("node-names-gone-machine", "a Node whose machine annotation names a Machine that is gone",
               tampers_node=True),
)


def orphan_kind(name: str) -> OrphanKind:
    """The kind by its Gherkin phrase or its key; a clear error listing the valid phrases otherwise."""
    for kind in ORPHAN_KINDS:
        if name in (kind.phrase, kind.key):
            return kind
    valid = "; ".join(f'"{k.phrase}"' for k in ORPHAN_KINDS)
    raise ValueError(f"unknown kind of orphan {name!r}; valid: {valid}")


def fake_machine_name() -> str:
    """`custom-<12 hex>`, the shape of Rancher's custom Machine names."""
    return "custom-" + secrets.token_hex(6)


def fake_machine(name: str, run_id: str, *, node: str = FAKE_NODE) -> Obj:
    """A Machine of the local cluster that no Node backs. Paused, so a real CAPI controller leaves it alone."""
    ref = {"apiVersion": "rke.cattle.io/v1", "namespace": FLEET_LOCAL, "name": name}
    return {
        "apiVersion": CAPI, "kind": "Machine",
        "metadata": {
            "name": name, "namespace": FLEET_LOCAL,
            "labels": {RUN_ID_LABEL: run_id, "cluster.x-k8s.io/cluster-name": "local"},
            "annotations": {"cluster.x-k8s.io/paused": "true"},
        },
        "spec": {
            "clusterName": "local",
            "bootstrap": {"configRef": {**ref, "kind": "RKEBootstrap"}, "dataSecretName": f"{name}-machine-bootstrap"},
            "infrastructureRef": {**ref, "kind": "CustomMachine"},
            "providerID": f"rke2://{node}",
        },
    }


def fake_machine_status(kind: OrphanKind) -> Obj | None:
    """The status subresource the kind needs (None: leave the Machine without status, as if it never ran)."""
    if kind.phase is None and kind.node_ref is None:
        return None
    status: Obj = {}
    if kind.phase is not None:
        status["phase"] = kind.phase
    if kind.node_ref is not None:
        status["nodeRef"] = {"apiVersion": "v1", "kind": "Node", "name": kind.node_ref, "uid": str(uuid.uuid4())}
    return status


class Defer(Protocol):
    """The cleanup stack's one method the injections need (infra.cleanup.CleanupStack has it)."""

    def defer(self, description: str, action: Callable[[], Any]) -> None: ...


@dataclass
class Injection:
    """What a scenario broke, how to name it in messages, and its undo (idempotent)."""

    kind: OrphanKind
    machine: str                  # the fake Machine, or the gone Machine a Node names
    node: str = ""                # the Node whose annotation was changed ("" when none)
    original_annotation: str | None = None
    _undo: Callable[[], Any] | None = field(default=None, repr=False)
    removed: bool = False

    def remove(self) -> None:
        """Undo now (the cleanup stack's entry then finds nothing to do)."""
        if self._undo is not None and not self.removed:
            self._undo()
        self.removed = True

    def substitutions(self) -> dict[str, str]:
        return {"machine": self.machine, "node": self.node, "namespace": FLEET_LOCAL}

    def describe(self) -> str:
        if self.kind.tampers_node:
            return (f"Node {self.node}: annotation {MACHINE_ANNOTATION} changed from "
                    f"{self.original_annotation!r} to {self.machine!r} (no such Machine)")
        return f"Machine {FLEET_LOCAL}/{self.machine} ({self.kind.phrase}), providerID rke2://{FAKE_NODE}"


def remove_machine(kube: Any, name: str, run_id: str, *, budget: Any) -> bool:
    """Delete a fake Machine of this run and wait until it is gone; False if it was not there.

    Only a Machine carrying this run's label is touched. If it lingers on finalizers past the budget
    (a real CAPI controller got to it), its finalizers are dropped: nothing real stands behind it.
    """
    from infra.waits.budget import WaitTimeout

    current = kube.find(CAPI, "Machine", name, FLEET_LOCAL)
    if current is None:
        return False
    if (current["metadata"].get("labels") or {}).get(RUN_ID_LABEL) != run_id:
        raise RuntimeError(f"Machine {FLEET_LOCAL}/{name} does not carry {RUN_ID_LABEL}={run_id}; not deleting it")
    kube.delete(CAPI, "Machine", name, FLEET_LOCAL)
    try:
        kube.wait_for_gone(CAPI, "Machine", name, namespace=FLEET_LOCAL, budget=budget)
    except WaitTimeout:
        log.warning("fake Machine %s/%s still there after %s; dropping its finalizers", FLEET_LOCAL, name, budget)
        kube.patch(CAPI, "Machine", name, {"metadata": {"finalizers": None}}, namespace=FLEET_LOCAL)
        kube.wait_for_gone(CAPI, "Machine", name, namespace=FLEET_LOCAL, budget=budget)
    return True


def inject_fake_machine(kube: Any, kind: OrphanKind, run_id: str, cleanup: Defer, *, budget: Any,
                        name: str | None = None) -> Injection:
    """Create the fake Machine of `kind`; its removal is on the cleanup stack before the create is sent."""
    if kind.tampers_node:
        raise ValueError(f"{kind.phrase!r} changes a Node, it makes no Machine: use inject_orphan")
    name = name or fake_machine_name()

    def undo() -> None:
        remove_machine(kube, name, run_id, budget=budget)

    cleanup.defer(f"delete fake Machine {FLEET_LOCAL}/{name}", undo)
    kube.create(fake_machine(name, run_id))
    status = fake_machine_status(kind)
    if status is not None:
        kube.patch(CAPI, "Machine", name, {"status": status}, namespace=FLEET_LOCAL, subresource="status")
    log.info("injected fake Machine %s/%s: %s", FLEET_LOCAL, name, kind.phrase)
    return Injection(kind, name, _undo=undo)


def point_node_at_missing_machine(kube: Any, kind: OrphanKind, run_id: str, cleanup: Defer, *,
                                  node: str | None = None, machine: str | None = None) -> Injection:
    """Make a Node's `cluster.x-k8s.io/machine` name a Machine that does not exist; restored on cleanup.

    The Node also carries the run's label and, in ORIGINAL_ANNOTATION, the value to restore, so the leak
    audit finds it (and a person can put it back) even if the process dies before cleanup.
    """
    nodes = sorted(kube.list("v1", "Node"), key=lambda n: n["metadata"]["name"])
    if not nodes:
        raise RuntimeError("the cluster lists no Node to point at a missing Machine")
    target = next((n for n in nodes if n["metadata"]["name"] == node), None) if node else nodes[0]
    if target is None:
        raise RuntimeError(f"no Node named {node}; nodes: {', '.join(n['metadata']['name'] for n in nodes)}")
    node_name = target["metadata"]["name"]
    original = (target["metadata"].get("annotations") or {}).get(MACHINE_ANNOTATION)
    existing = {m["metadata"]["name"] for m in kube.list(CAPI, "Machine", FLEET_LOCAL)}
    machine = machine or fake_machine_name()
    while machine in existing:
        machine = fake_machine_name()

    def undo() -> None:
        restore_node_annotation(kube, node_name, original, run_id)

    cleanup.defer(f"restore Node {node_name} annotation {MACHINE_ANNOTATION}={original!r}", undo)
    kube.patch("v1", "Node", node_name, {"metadata": {
        "labels": {RUN_ID_LABEL: run_id},
        "annotations": {MACHINE_ANNOTATION: machine, ORIGINAL_ANNOTATION: json.dumps(original)},
    }})
    log.info("Node %s now names missing Machine %s (was %s)", node_name, machine, original)
    return Injection(kind, machine, node=node_name, original_annotation=original, _undo=undo)


def restore_node_annotation(kube: Any, node: str, original: str | None, run_id: str) -> bool:
    """Put the Node's machine annotation back; False if this run's mark was already gone (nothing to do)."""
    current = kube.find("v1", "Node", node)
    if current is None:
        return False
    meta = current["metadata"]
    if (meta.get("labels") or {}).get(RUN_ID_LABEL) != run_id and ORIGINAL_ANNOTATION not in (meta.get("annotations") or {}):
        return False
    kube.patch("v1", "Node", node, {"metadata": {
        "labels": {RUN_ID_LABEL: None},
        "annotations": {MACHINE_ANNOTATION: original, ORIGINAL_ANNOTATION: None},
    }})
    return True


def inject_orphan(kube: Any, kind: OrphanKind | str, run_id: str, cleanup: Defer, *, budget: Any) -> Injection:
    """Make the cluster's Machines and Nodes disagree in the way `kind` names."""
    kind = orphan_kind(kind) if isinstance(kind, str) else kind
    if kind.tampers_node:
        return point_node_at_missing_machine(kube, kind, run_id, cleanup)
    return inject_fake_machine(kube, kind, run_id, cleanup, budget=budget)
