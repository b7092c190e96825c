"""Field ownership: metadata.managedFields and server-side apply, after sigs.k8s.io/structured-merge-diff v4
and k8s.io/apiserver pkg/endpoints/handlers/fieldmanager (v0.32).

A field set is a set of paths; a path is a tuple of FieldsV1 keys: `f:<name>` for an object field,
`k:<json of the key fields>` for an item of an associative list, `v:<json>` for an item of a set. A path in
the set whose node also has owned children is written `".": {}` in FieldsV1.

Schemas: built-in kinds take their list semantics from the strategic-merge table (apimachinery/patch.py:
a merge key makes an associative list, `merge` without one a set, anything else is atomic), with the
list-map keys kube declares where they differ from the patch merge key; custom resources read
`x-kubernetes-list-type`, `x-kubernetes-list-map-keys` and `x-kubernetes-map-type` from their schema.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any, Callable

from . import patch as patching

Path = tuple[str, ...]
FieldSet = set[Path]

# Fields no manager owns (fieldmanager's stripMeta and the identity of the object).
_UNOWNED_META = {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
                 "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"}
# Built-in list-map keys that differ from the patch merge key (+listMapKey markers in k8s.io/api).
_LIST_MAP_KEYS = {"ports": ("containerPort", "protocol")}
_SERVICE_PORT_KEYS = ("port", "protocol")
# Go structs marked +structType=atomic / maps marked +mapType=atomic that kubectl meets most.
_ATOMIC_BUILTIN = {"spec.selector", "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"}
_KEY_DEFAULTS = {"protocol": "TCP"}


@dataclass
class ListKind:
    kind: str                        # "map" | "set" | "atomic"
    keys: tuple[str, ...] = ()


class Schema:
    """List and map semantics of one kind, by generic path (`spec.template.spec.containers[]`)."""

    def __init__(self, kind: str, crd_schema: dict[str, Any] | None = None, *, custom: bool = False) -> None:
        self.kind = kind
        self.custom = custom
        self.crd_schema = crd_schema or {}

    def _crd_node(self, generic: str) -> dict[str, Any] | None:
        node: Any = self.crd_schema
        for part in [p for p in generic.replace("[]", ".[]").split(".") if p]:
            if not isinstance(node, dict):
                return None
            if part == "[]":
                node = node.get("items")
            else:
                props = node.get("properties") or {}
                node = props.get(part) if part in props else node.get("additionalProperties") \
                    if isinstance(node.get("additionalProperties"), dict) else None
        return node if isinstance(node, dict) else None

    def list_kind(self, generic: str) -> ListKind:
        if self.custom:
            node = self._crd_node(generic) or {}
            kind = node.get("x-kubernetes-list-type", "atomic")
            if kind == "map":
                return ListKind("map", tuple(node.get("x-kubernetes-list-map-keys") or ()))
            return ListKind(kind if kind in ("set", "atomic") else "atomic")
        strategy, key = patching.patch_meta(self.kind, generic)
        if strategy and "merge" in strategy:
            if key is None:
                return ListKind("set")
            leaf = generic.rsplit(".", 1)[-1]
            if self.kind == "Service" and generic == "spec.ports":
                return ListKind("map", _SERVICE_PORT_KEYS)
            return ListKind("map", _LIST_MAP_KEYS.get(leaf, (key,)))
        return ListKind("atomic")

    def atomic_map(self, generic: str) -> bool:
        if self.custom:
            node = self._crd_node(generic) or {}
            return node.get("x-kubernetes-map-type") == "atomic"
        if self.kind == "Service":
            return generic == "spec.selector"
        return generic in _ATOMIC_BUILTIN and self.kind in ("Deployment", "DaemonSet", "StatefulSet", "ReplicaSet",
                                                            "Job")


def _child_generic(generic: str, key: str) -> str:
    return f"{generic}.{key}" if generic else key


def _item_key(item: dict[str, Any], keys: tuple[str, ...]) -> str:
    return "k:" + json.dumps({k: item.get(k, _KEY_DEFAULTS.get(k)) for k in keys if k in item or k in _KEY_DEFAULTS},
                             separators=(",", ":"), sort_keys=True)


def _value_key(value: Any) -> str:
    return "v:" + json.dumps(value, separators=(",", ":"), sort_keys=True)


def _scope(obj: dict[str, Any], subresource: str, has_status: bool) -> dict[str, Any]:
    """The part of an object a write's managers can own (the main resource does not own status, and back)."""
    if subresource == "status":
        return {"status": obj["status"]} if "status" in obj else {}
    scoped = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind") and not (has_status and k == "status")}
    if isinstance(scoped.get("metadata"), dict):
        scoped["metadata"] = {k: v for k, v in scoped["metadata"].items() if k not in _UNOWNED_META}
        if not scoped["metadata"]:
            scoped.pop("metadata")
    return scoped


def field_set(obj: Any, schema: Schema, *, members: bool = False) -> FieldSet:
    """The paths `obj` sets: leaves, list items (as members) and, with `members`, every object node too."""
    found: FieldSet = set()
    _walk(obj, schema, (), "", found, members)
    return found


def _walk(value: Any, schema: Schema, path: Path, generic: str, found: FieldSet, members: bool) -> None:
    if isinstance(value, dict):
        if path and (not value or schema.atomic_map(generic)):
            found.add(path)
            return
        if path and members:
            found.add(path)
        for key, child in value.items():
            _walk(child, schema, path + (f"f:{key}",), _child_generic(generic, key), found, members)
    elif isinstance(value, list):
        kind = schema.list_kind(generic)
        if kind.kind == "atomic" or not value:
            found.add(path)
            return
        for item in value:
            if kind.kind == "set" or not isinstance(item, dict):
                found.add(path + (_value_key(item),))
                continue
            item_path = path + (_item_key(item, kind.keys),)
            found.add(item_path)
            for key, child in item.items():
                _walk(child, schema, item_path + (f"f:{key}",), f"{generic}[].{key}", found, members)
    else:
        found.add(path)


def value_at(obj: Any, path: Path, schema: Schema) -> tuple[bool, Any]:
    node, generic = obj, ""
    for element in path:
        if element.startswith("f:"):
            key = element[2:]
            if not isinstance(node, dict) or key not in node:
                return False, None
            node, generic = node[key], _child_generic(generic, key)
        elif element.startswith("k:") or element.startswith("v:"):
            if not isinstance(node, list):
                return False, None
            kind = schema.list_kind(generic)
            match = [i for i in node if (_item_key(i, kind.keys) if element.startswith("k:") and isinstance(i, dict)
                                         else _value_key(i)) == element]
            if not match:
                return False, None
            node, generic = match[0], generic + "[]"
        else:
            return False, None
    return True, node


def to_fields_v1(paths: FieldSet) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in sorted(paths):
        node = tree
        for element in path:
            node = node.setdefault(element, {})
    def mark(node: dict[str, Any], path: Path) -> None:
        for element, child in node.items():
            if element == ".":
                continue
            mark(child, path + (element,))
            if child and path + (element,) in paths:
                child["."] = {}
    mark(tree, ())
    return _sorted(tree)


def _sorted(tree: dict[str, Any]) -> dict[str, Any]:
    return {k: _sorted(tree[k]) for k in sorted(tree, key=lambda k: (k != ".", k))}


def from_fields_v1(tree: dict[str, Any], prefix: Path = ()) -> FieldSet:
    paths: FieldSet = set()
    for element, child in (tree or {}).items():
        if element == ".":
            paths.add(prefix)
            continue
        path = prefix + (element,)
        if not child:
            paths.add(path)
        else:
            paths |= from_fields_v1(child, path)
    return paths


# --- managers -----------------------------------------------------------------------------------------------

@dataclass
class Entry:
    manager: str
    operation: str            # "Apply" | "Update"
    api_version: str
    time: str
    fields: FieldSet
    subresource: str = ""

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.manager, self.operation, self.subresource)

    def to_json(self) -> dict[str, Any]:
        entry = {"manager": self.manager, "operation": self.operation, "apiVersion": self.api_version,
                 "time": self.time, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(self.fields)}
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry


def read_entries(obj: dict[str, Any]) -> list[Entry]:
    entries = []
    for raw in (obj.get("metadata") or {}).get("managedFields") or []:
        if not isinstance(raw, dict) or raw.get("fieldsType", "FieldsV1") != "FieldsV1":
            continue
        entries.append(Entry(raw.get("manager", ""), raw.get("operation", "Update"), raw.get("apiVersion", ""),
                             raw.get("time", ""), from_fields_v1(raw.get("fieldsV1") or {}),
                             raw.get("subresource", "")))
    return entries


def write_entries(obj: dict[str, Any], entries: list[Entry]) -> None:
    kept = [e.to_json() for e in entries if e.fields]
    if kept:
        obj.setdefault("metadata", {})["managedFields"] = kept
    else:
        obj.get("metadata", {}).pop("managedFields", None)


def manager_from_user_agent(user_agent: str) -> str:
    """kube's default manager: the User-Agent up to its first "/" (fieldmanager prefixFromUserAgent)."""
    return (user_agent or "unknown").split("/", 1)[0][:128]


def record_update(old: dict[str, Any] | None, new: dict[str, Any], manager: str, api_version: str, now: str,
                  schema: Schema, *, subresource: str = "", has_status: bool = False) -> None:
    """An Update operation: the writer owns what it changed; others lose it; removed fields are nobody's."""
    entries = read_entries(new)           # the entries the write carries (the old ones unless the client sent some)
    old_scope = _scope(old, subresource, has_status) if old is not None else {}
    new_scope = _scope(new, subresource, has_status)
    before = field_set(old_scope, schema)
    after = field_set(new_scope, schema)
    changed = {p for p in after if value_at(old_scope, p, schema) != value_at(new_scope, p, schema)}
    added_nodes = {p for p in field_set(new_scope, schema, members=True) - field_set(old_scope, schema, members=True)
                   if value_at(old_scope, p, schema)[0] is False}
    removed = before - after
    if not changed and not removed and old is not None:
        write_entries(new, entries)
        return
    mine: Entry | None = None
    for entry in entries:
        if entry.identity == (manager, "Update", subresource):
            mine = entry
        else:
            entry.fields -= changed | removed
            entry.fields -= {p for p in entry.fields if any(p[:len(r)] == r for r in removed)}
    if mine is None:
        mine = Entry(manager, "Update", api_version, now, set(), subresource)
        entries.append(mine)
    mine.fields = (mine.fields - removed) | changed | _maps_added(added_nodes, schema, new_scope)
    mine.api_version, mine.time = api_version, now
    write_entries(new, [e for e in entries if e.fields or e is mine])


def _maps_added(nodes: FieldSet, schema: Schema, obj: dict[str, Any]) -> FieldSet:
    """Newly set maps and list items own their own node (`"."`) in an Update."""
    owned: FieldSet = set()
    for path in nodes:
        present, value = value_at(obj, path, schema)
        if present and isinstance(value, dict) and value and path[-1].startswith(("k:", "f:")):
            if path[-1].startswith("k:") or path[-1][2:] in _MAP_FIELDS:
                owned.add(path)
    return owned


# Fields of built-in kinds that are Go maps (granular, own their node when added), not structs.
_MAP_FIELDS = {"labels", "annotations", "data", "binaryData", "stringData", "nodeSelector", "matchLabels",
               "limits", "requests", "capacity", "allocatable", "parameters"}


class ApplyConflict(Exception):
    def __init__(self, conflicts: list[tuple[Entry, Path]]):
        super().__init__("apply conflicts")
        self.conflicts = conflicts


def path_text(path: Path) -> str:
    """A path as kube prints it in a conflict: `.spec.replicas`, `.spec.containers[name="c"].image`."""
    text = ""
    for element in path:
        if element.startswith("f:"):
            text += "." + element[2:]
        elif element.startswith("k:"):
            keys = json.loads(element[2:])
            text += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
        elif element.startswith("v:"):
            text += "[=" + element[2:] + "]"
    return text


def apply(live: dict[str, Any] | None, applied: dict[str, Any], manager: str, api_version: str, now: str,
          schema: Schema, *, force: bool, subresource: str = "", has_status: bool = False) -> dict[str, Any]:
    """Server-side apply of `applied` onto `live` (None to create); the result carries its managedFields."""
    live = copy.deepcopy(live) if live is not None else {}
    entries = read_entries(live)
    applied_scope = _scope(applied, subresource, has_status)
    applied_set = field_set(applied_scope, schema)
    live_scope = _scope(live, subresource, has_status)
    conflicts: list[tuple[Entry, Path]] = []
    for entry in entries:
        if entry.identity == (manager, "Apply", subresource) or entry.subresource != subresource:
            continue
        for path in sorted(entry.fields & applied_set):
            if value_at(applied_scope, path, schema) != value_at(live_scope, path, schema):
                conflicts.append((entry, path))
    if conflicts and not force:
        raise ApplyConflict(conflicts)
    for entry, path in conflicts:
        entry.fields.discard(path)
    previous = next((e for e in entries if e.identity == (manager, "Apply", subresource)), None)
    result = _merge(live, {k: v for k, v in applied.items() if k not in ("apiVersion", "kind")}, schema, "")
    if isinstance(applied.get("metadata"), dict):
        result.setdefault("metadata", {})
    if previous is not None:
        others: FieldSet = set().union(*(e.fields for e in entries if e is not previous))
        removed: list[Path] = []
        for path in sorted(previous.fields - applied_set, key=len):     # items before their fields
            if any(path[:len(r)] == r for r in removed):
                continue
            if path not in others and not any(o[:len(path)] == path for o in others):
                _remove(result, path, schema)
                removed.append(path)
    unchanged = previous is not None and previous.fields == applied_set and not conflicts \
        and _without_managed(result) == _without_managed(live)
    if previous is None:
        previous = Entry(manager, "Apply", api_version, now, set(), subresource)
        entries.append(previous)
    if not unchanged:                      # a no-op apply leaves the object, its time included, as it was
        previous.fields, previous.api_version, previous.time = applied_set, api_version, now
    write_entries(result, entries)
    return result


def _without_managed(obj: dict[str, Any]) -> dict[str, Any]:
    clone = dict(obj)
    clone["metadata"] = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return clone


def _merge(live: Any, applied: Any, schema: Schema, generic: str) -> Any:
    if isinstance(live, dict) and isinstance(applied, dict) and not (generic and schema.atomic_map(generic)):
        merged = copy.deepcopy(live)
        for key, value in applied.items():
            if generic == "" and key == "metadata" and isinstance(value, dict):
                value = {k: v for k, v in value.items() if k not in _UNOWNED_META or k in ("name", "namespace")}
            merged[key] = _merge(live.get(key), value, schema, _child_generic(generic, key))
        return merged
    if isinstance(live, list) and isinstance(applied, list):
        kind = schema.list_kind(generic)
        if kind.kind == "map":
            merged = copy.deepcopy(live)
            index = {_item_key(i, kind.keys): n for n, i in enumerate(merged) if isinstance(i, dict)}
            for item in applied:
                key = _item_key(item, kind.keys) if isinstance(item, dict) else None
                if key in index:
                    merged[index[key]] = _merge(merged[index[key]], item, schema, generic + "[]")
                else:
                    merged.append(copy.deepcopy(item))
            return merged
        if kind.kind == "set":
            merged = copy.deepcopy(live)
            for item in applied:
                if not any(_value_key(i) == _value_key(item) for i in merged):
                    merged.append(copy.deepcopy(item))
            return merged
    return copy.deepcopy(applied)


def _remove(obj: dict[str, Any], path: Path, schema: Schema) -> None:
    parent_found, parent = value_at(obj, path[:-1], schema) if len(path) > 1 else (True, obj)
    if not parent_found:
        return
    element = path[-1]
    if element.startswith("f:") and isinstance(parent, dict):
        parent.pop(element[2:], None)
    elif isinstance(parent, list):
        kind = schema.list_kind(_generic_of(path[:-1]))
        parent[:] = [i for i in parent if (_item_key(i, kind.keys) if element.startswith("k:") and isinstance(i, dict)
                                           else _value_key(i)) != element]


def _print_manager(entry: Entry) -> str:
    """printManager of apimachinery managedfields/internal/conflict.go (v0.32)."""
    text = json.dumps(entry.manager)
    if entry.subresource:
        text += f" with subresource {json.dumps(entry.subresource)}"
    if entry.operation == "Update":
        text += f" using {entry.api_version}" + (f" at {entry.time}" if entry.time else "")
    return text


def _generic_of(path: Path) -> str:
    generic = ""
    for element in path:
        generic = _child_generic(generic, element[2:]) if element.startswith("f:") else generic + "[]"
    return generic


def conflict_message(conflicts: list[tuple[Entry, Path]]) -> tuple[str, list[dict[str, str]]]:
    """kube's 409 text and causes for apply conflicts (getConflictMessage / NewConflictError)."""
    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {_print_manager(e)}",
               "field": path_text(p)} for e, p in conflicts]
    if len(conflicts) == 1:
        entry, path = conflicts[0]
        return f"Apply failed with 1 conflict: conflict with {_print_manager(entry)}: {path_text(path)}", causes
    by_manager: dict[str, tuple[Entry, list[Path]]] = {}
    for entry, path in conflicts:
        key = json.dumps(entry.to_json() | {"fieldsV1": None}, sort_keys=True)
        by_manager.setdefault(key, (entry, []))[1].append(path)
    lines = []
    for key in sorted(by_manager):
        entry, paths = by_manager[key]
        lines.append(f"conflicts with {_print_manager(entry)}:")
        lines.extend(f"- {path_text(p)}" for p in paths)
    return f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines), causes
