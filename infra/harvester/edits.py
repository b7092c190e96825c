"""How a person changes an object: the dashboard's save, `kubectl apply`, or a merge patch.

Each path reads the object, applies a change the way that tool would carry it, writes ONCE (a
person's edit is one request) and returns what the write stored, or the refusal it got.

  the dashboard at Rancher v2.10.3 with UI extension v1.0.4   PUT of the whole object (dashboard.py)
  kubectl apply                                              client-side apply of a manifest
  a merge patch                                              RFC 7386 patch of what changed
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import yaml

from infra.kube import ApiFailure, Kube
from infra.kube.kubectl import Kubectl

from .dashboard import Dashboard, DashboardRelease, RancherEndpoint, as_kubernetes_object, parse_release, single_attempt

Obj = dict[str, Any]
Change = Callable[[Obj], None]

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_NOT_EDITABLE = {"apiVersion", "kind", "metadata", "status"}


@dataclass(frozen=True)
class ObjectRef:
    api_version: str
    kind: str
    name: str
    namespace: str | None = None

    @classmethod
    def of(cls, obj: Obj) -> "ObjectRef":
        meta = obj["metadata"]
        return cls(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))

    def get(self, kube: Kube) -> Obj:
        return kube.get(self.api_version, self.kind, self.name, self.namespace)

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"


@dataclass(frozen=True)
class EditOutcome:
    """One edit: the object before, what the write stored (None when refused), and a transcript."""

    path: str
    target: ObjectRef
    field: str
    before: Obj
    stored: Obj | None
    refusal: str | None = None
    transcript: str = ""

    @property
    def refused(self) -> bool:
        return self.refusal is not None


class EditPath(Protocol):
    @property
    def label(self) -> str: ...

    @property
    def facts(self) -> dict[str, str]:
        """What this path's outcome depends on (the browser's releases), for the report and known issues."""
        ...

    def edit(self, kube: Kube, target: ObjectRef, field: str, change: Change) -> EditOutcome: ...


@dataclass(frozen=True)
class DashboardSave:
    release: DashboardRelease
    rancher: RancherEndpoint | None = None

    @property
    def label(self) -> str:
        return f"the dashboard at {self.release}"

    @property
    def facts(self) -> dict[str, str]:
        return {"rancher": self.release.rancher, "ui_extension": self.release.ui_extension}

    def edit(self, kube: Kube, target: ObjectRef, field: str, change: Change) -> EditOutcome:
        dashboard = Dashboard(self.release, kube, self.rancher)
        before = dashboard.read(target.api_version, target.kind, target.name, target.namespace)
        edited = copy.deepcopy(before)
        change(edited)
        try:
            saved = dashboard.save(edited)
        except ApiFailure as refusal:
            return EditOutcome(self.label, target, field, as_kubernetes_object(before), None, refusal.message,
                               f"PUT via {dashboard.via} refused: {refusal}")
        transcript = (f"PUT via {saved.via}; the save left out: {', '.join(saved.dropped) or 'nothing'}\n"
                      f"body:\n{json.dumps(saved.sent, indent=2, sort_keys=True)}")
        return EditOutcome(self.label, target, field, as_kubernetes_object(before), as_kubernetes_object(saved.stored),
                           None, transcript)


@dataclass(frozen=True)
class KubectlApply:
    kubectl: Kubectl = field(repr=False)
    label: str = "kubectl apply"
    facts: dict[str, str] = field(default_factory=dict)

    def edit(self, kube: Kube, target: ObjectRef, field: str, change: Change) -> EditOutcome:
        before = target.get(kube)
        edited = copy.deepcopy(before)
        change(edited)
        manifest = manifest_of(edited)
        result = self.kubectl.apply(manifest)
        transcript = f"manifest:\n{yaml.safe_dump(manifest, sort_keys=False)}\n{result.transcript()}"
        if not result.ok:
            return EditOutcome(self.label, target, field, before, None, _refusal_text(result.stderr), transcript)
        return EditOutcome(self.label, target, field, before, result.json(), None, transcript)


@dataclass(frozen=True)
class MergePatch:
    label: str = "a merge patch"
    facts: dict[str, str] = field(default_factory=dict)

    def edit(self, kube: Kube, target: ObjectRef, field: str, change: Change) -> EditOutcome:
        before = target.get(kube)
        edited = copy.deepcopy(before)
        change(edited)
        patch = merge_patch(_editable(before), _editable(edited))
        transcript = f"PATCH (application/merge-patch+json):\n{json.dumps(patch, indent=2, sort_keys=True)}"
        try:
            stored = single_attempt(kube).patch(target.api_version, target.kind, target.name, patch,
                                                namespace=target.namespace, patch_type="merge")
        except ApiFailure as refusal:
            return EditOutcome(self.label, target, field, before, None, refusal.message,
                               f"{transcript}\nrefused: {refusal}")
        return EditOutcome(self.label, target, field, before, stored, None, transcript)


def manifest_of(obj: Obj) -> Obj:
    """What a person keeps in a file for `kubectl apply`: identity, labels, annotations and spec."""
    meta = obj["metadata"]
    kept_meta: Obj = {"name": meta["name"]}
    if meta.get("namespace"):
        kept_meta["namespace"] = meta["namespace"]
    if meta.get("labels"):
        kept_meta["labels"] = dict(meta["labels"])
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != LAST_APPLIED}
    if annotations:
        kept_meta["annotations"] = annotations
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": kept_meta,
            **{k: copy.deepcopy(v) for k, v in obj.items() if k not in _NOT_EDITABLE}}


def _editable(obj: Obj) -> Obj:
    meta = obj.get("metadata") or {}
    return {"metadata": {k: copy.deepcopy(meta[k]) for k in ("labels", "annotations") if k in meta},
            **{k: copy.deepcopy(v) for k, v in obj.items() if k not in _NOT_EDITABLE}}


def merge_patch(before: Any, after: Any) -> Any:
    """The RFC 7386 JSON merge patch that turns `before` into `after` (lists are replaced whole)."""
    if not (isinstance(before, dict) and isinstance(after, dict)):
        return copy.deepcopy(after)
    patch: Obj = {}
    for key in before.keys() - after.keys():
        patch[key] = None
    for key, value in after.items():
        if key not in before:
            patch[key] = copy.deepcopy(value)
        elif before[key] != value:
            patch[key] = merge_patch(before[key], value)
    return patch


_DENIAL = re.compile(r"(admission webhook .*)", re.DOTALL)


def _refusal_text(stderr: str) -> str:
    """kubectl wraps the server's message in the patch it sent; keep the part a person reads."""
    match = _DENIAL.search(stderr)
    return (match.group(1) if match else stderr).strip()


def parse_path(text: str, *, kubectl: Callable[[], Kubectl], rancher: RancherEndpoint | None = None) -> EditPath:
    """An edit path from a feature file's words (see the module docstring)."""
    text = text.strip()
    if text.startswith("the dashboard at "):
        return DashboardSave(parse_release(text.removeprefix("the dashboard at ")), rancher)
    if text == "kubectl apply":
        return KubectlApply(kubectl())
    if text == "a merge patch":
        return MergePatch()
    raise ValueError(f"unknown edit path {text!r}; use 'the dashboard at Rancher vX with UI extension vY', "
                     "'kubectl apply' or 'a merge patch'")
