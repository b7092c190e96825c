"""The leak audit: what is still labelled with a run's id after its scenarios (and their cleanup) ran.

Everything the harness creates or changes carries `e2e.harvesterhci.io/run-id=<id>`, so one label
selector per kind finds what a run left behind. The kinds are data (`LEAK_KINDS`): add a row when the
harness starts creating a new kind. A kind the cluster does not serve is skipped and said so.

    python -m infra.harvester.leaks --kubeconfig PATH --run-id ID     # exit status 1 when something leaked
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from infra.kube import Kube, NotFound

from .machines import ORIGINAL_ANNOTATION
from .names import CAPI, HARVESTER, RUN_ID_LABEL

Obj = dict[str, Any]
LOADBALANCER = "loadbalancer.harvesterhci.io/v1beta1"


@dataclass(frozen=True)
class LeakKind:
    api_version: str
    kind: str
    note: str = ""             # what a leftover of this kind means, for the reader of the report


LEAK_KINDS: tuple[LeakKind, ...] = (
    LeakKind(CAPI, "Machine", "a fake Machine (orphan injection) that was not removed"),
    LeakKind("v1", "Node", "a Node a scenario tampered with and did not restore"),
    LeakKind(HARVESTER, "Version", "an upgrade target the harness created"),
    LeakKind(HARVESTER, "Upgrade", "an Upgrade the harness started"),
    LeakKind(HARVESTER, "SupportBundle"),
    LeakKind(HARVESTER, "VirtualMachineImage"),
    LeakKind("v1", "Namespace"),
    LeakKind("v1", "ConfigMap"),
    LeakKind("v1", "Secret"),
    LeakKind("v1", "Service"),
    LeakKind("v1", "Pod"),
    LeakKind("v1", "PersistentVolumeClaim"),
    LeakKind("apps/v1", "Deployment"),
    LeakKind("batch/v1", "Job"),
    LeakKind("kubevirt.io/v1", "VirtualMachine"),
    LeakKind(LOADBALANCER, "IPPool"),
    LeakKind(LOADBALANCER, "LoadBalancer"),
    LeakKind("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition", "a VM network an IPPool scenario made"),
)


@dataclass(frozen=True)
class Leak:
    kind: str
    namespace: str
    name: str
    note: str = ""

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}" + (f" ({self.note})" if self.note else "")


@dataclass
class LeakReport:
    run_id: str
    leaks: list[Leak] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)     # kinds the cluster does not serve

    @property
    def clean(self) -> bool:
        return not self.leaks

    def render(self) -> str:
        head = f"leak audit for {RUN_ID_LABEL}={self.run_id}: "
        lines = [head + ("nothing left behind" if self.clean else f"{len(self.leaks)} object(s) left behind")]
        lines += [f"  - {leak}" for leak in self.leaks]
        if self.skipped:
            lines.append("  (not served by this cluster, not audited: " + ", ".join(self.skipped) + ")")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


def _note(kind: LeakKind, obj: Obj) -> str:
    if kind.kind == "Node":
        original = (obj["metadata"].get("annotations") or {}).get(ORIGINAL_ANNOTATION)
        if original is not None:
            return f"{kind.note}; original cluster.x-k8s.io/machine: {original}"
    return kind.note


def audit(kube: Kube, run_id: str, kinds: Iterable[LeakKind] = LEAK_KINDS) -> LeakReport:
    """Every object of `kinds`, in every namespace, still labelled with `run_id`."""
    report = LeakReport(run_id)
    selector = f"{RUN_ID_LABEL}={run_id}"
    for kind in kinds:
        try:
            items = kube.list(kind.api_version, kind.kind, None, label_selector=selector)
        except NotFound:
            report.skipped.append(f"{kind.kind}.{kind.api_version}")
            continue
        for obj in sorted(items, key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"])):
            meta = obj["metadata"]
            report.leaks.append(Leak(kind.kind, meta.get("namespace", "") or "", meta["name"], _note(kind, obj)))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.harvester.leaks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--run-id", required=True)
    args = parser.parse_args(argv)
    report = audit(Kube(args.kubeconfig, unavailable_budget=30), args.run_id)
    print(report.render())
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main())
