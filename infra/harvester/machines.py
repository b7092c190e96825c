"""Nodes and cluster-api Machines: are they consistent, as Harvester's pre-upgrade check demands?

The match goes through the Node annotation `cluster.x-k8s.io/machine` and the Machine's
`status.nodeRef.name` (not providerID), as Harvester's `isNodeMachineMatching` does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .names import MACHINE_ANNOTATION

Obj = dict[str, Any]


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
        machine = by_name.get(claimed)
        if machine is None:
            problems.append(f"node {name} refers to machine {claimed}, which does not exist")
            continue
        ref = ((machine.get("status") or {}).get("nodeRef") or {}).get("name")
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
    lines = [header] + [(r.namespace, r.name, r.phase, r.provider_id, r.node_ref, "yes" if r.node_exists else "NO")
                        for r in rows]
    node_header = ("NODE", "READY", MACHINE_ANNOTATION)
    node_lines = [node_header] + [(n["metadata"]["name"], _ready(n),
                                   (n["metadata"].get("annotations") or {}).get(MACHINE_ANNOTATION, "<none>"))
                                  for n in nodes]
    return _format(lines) + "\n\n" + _format(node_lines)


def _ready(node: Obj) -> str:
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status", "Unknown")
    return "Unknown"


def _format(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
