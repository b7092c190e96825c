"""Was an object's status preserved? A snapshot before, one after, and a diff a person can read.

Volatile fields (timestamps, resourceVersion, managedFields) are ignored wherever they appear.
Lists of conditions are matched by `type`, so a reordering is no change and a diff reads
`status.conditions[Ready].status`. Missing and empty are different: a wiped status shows every
field it lost.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any, Iterator

from infra.failures import ProductFailure

Obj = dict[str, Any]

VOLATILE_KEYS = frozenset({
    "lastUpdateTime", "lastTransitionTime", "lastHeartbeatTime", "lastProbeTime", "lastSyncTime",
    "creationTimestamp", "resourceVersion", "managedFields", "generation", "observedGeneration",
})


class _Missing:
    """The marker for a field that is not there (distinct from null or empty)."""

    def __repr__(self) -> str:
        return "<absent>"

    def __deepcopy__(self, memo: dict[int, Any]) -> "_Missing":
        return self


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Snapshot:
    """One object's identity and a deep copy of one section of it (by default `status`)."""

    kind: str
    name: str
    section: str        # "" for the whole object
    content: Any
    resource_version: str = ""

    @classmethod
    def of(cls, obj: Obj, section: str = "status") -> "Snapshot":
        meta = obj.get("metadata") or {}
        name = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta.get("name", "")
        content = copy.deepcopy(obj if section == "" else obj.get(section, MISSING))
        return cls(str(obj.get("kind", "")), name, section, content, str(meta.get("resourceVersion", "")))


@dataclass(frozen=True)
class Difference:
    path: str
    before: Any
    after: Any

    @property
    def change(self) -> str:
        if self.before is MISSING:
            return "added"
        if self.after is MISSING:
            return "removed"
        return "changed"

    def __str__(self) -> str:
        if self.change == "added":
            return f"  added    {self.path}: {_show(self.after)}"
        if self.change == "removed":
            return f"  removed  {self.path}: {_show(self.before)}"
        return f"  changed  {self.path}: {_show(self.before)} -> {_show(self.after)}"


@dataclass(frozen=True)
class Comparison:
    before: Snapshot
    after: Snapshot
    differences: tuple[Difference, ...]
    ignored: frozenset[str] = field(default=VOLATILE_KEYS)

    @property
    def preserved(self) -> bool:
        return not self.differences

    def report(self, after_label: str = "after") -> str:
        """The diff as text: a heading, then one line per difference (or a line saying none)."""
        heading = (f"{self.before.section or 'object'} of {self.before.kind} {self.before.name}: before "
                   f"(rv {self.before.resource_version}) vs {after_label} (rv {self.after.resource_version})")
        if self.preserved:
            return f"{heading}\n  no differences (ignored: {', '.join(sorted(self.ignored))})"
        return "\n".join([heading, *(str(d) for d in self.differences)])


def compare(before: Snapshot, after: Snapshot, *, ignore: frozenset[str] = VOLATILE_KEYS) -> Comparison:
    return Comparison(before, after, tuple(_walk(before.section, before.content, after.content, ignore)), ignore)


def _walk(path: str, before: Any, after: Any, ignore: frozenset[str]) -> Iterator[Difference]:
    container = _container_type(before, after)
    if container is None:
        if _strip(before, ignore) != _strip(after, ignore):
            yield Difference(path, _strip(before, ignore), _strip(after, ignore))
        return
    # A map or list that appeared or vanished is walked against an empty one, so the reader sees
    # every field that went with it (a wiped status lists what it lost).
    old = container() if before is MISSING else before
    new = container() if after is MISSING else after
    inner = list(_walk_dict(path, old, new, ignore) if container is dict else _walk_list(path, old, new, ignore))
    if inner:
        yield from inner
    elif (before is MISSING) != (after is MISSING):
        yield Difference(path, before, after)


def _container_type(before: Any, after: Any) -> type | None:
    for kind in (dict, list):
        if all(isinstance(v, kind) or v is MISSING for v in (before, after)) and (before, after) != (MISSING, MISSING):
            return kind
    return None


def _walk_dict(path: str, before: Obj, after: Obj, ignore: frozenset[str]) -> Iterator[Difference]:
    for key in sorted(set(before) | set(after), key=str):
        if key not in ignore:
            yield from _walk(_join(path, str(key)), before.get(key, MISSING), after.get(key, MISSING), ignore)


def _walk_list(path: str, before: list[Any], after: list[Any], ignore: frozenset[str]) -> Iterator[Difference]:
    if _keyed_by_type(before) and _keyed_by_type(after):
        yield from _walk_keyed(path, before, after, ignore)
        return
    for index in range(max(len(before), len(after))):
        yield from _walk(f"{path}[{index}]", before[index] if index < len(before) else MISSING,
                         after[index] if index < len(after) else MISSING, ignore)


def _walk_keyed(path: str, before: list[Obj], after: list[Obj], ignore: frozenset[str]) -> Iterator[Difference]:
    old = {item["type"]: item for item in before}
    new = {item["type"]: item for item in after}
    for key in list(old) + [k for k in new if k not in old]:
        # `type` names the item in the path; as a field it would only repeat it
        yield from _walk(f"{path}[{key}]", old.get(key, MISSING), new.get(key, MISSING), ignore | {"type"})


def _join(path: str, key: str) -> str:
    """`a.b`, or `a["1.2.3.4"]` for keys that are not plain names (IP addresses, label keys)."""
    if key.replace("_", "").replace("-", "").isalnum():
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def _keyed_by_type(items: list[Any]) -> bool:
    types = [item.get("type") for item in items if isinstance(item, dict)]
    return len(types) == len(items) and all(isinstance(t, str) for t in types) and len(set(types)) == len(types)


def _strip(value: Any, ignore: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v, ignore) for k, v in value.items() if k not in ignore}
    if isinstance(value, list):
        return [_strip(v, ignore) for v in value]
    return value


def _show(value: Any) -> str:
    if value is MISSING:
        return "<absent>"
    return json.dumps(value, sort_keys=True, default=str)


class StatusNotPreserved(ProductFailure):
    """An edit lost or changed an object's status; `evidence` carries the diff for the report."""
