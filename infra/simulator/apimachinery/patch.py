"""PATCH request bodies applied the way kube-apiserver applies them.

Covers JSON merge patch (RFC 7386), JSON patch (RFC 6902), Kubernetes strategic
merge patch (semantics of k8s.io/apimachinery/pkg/util/strategicpatch, v0.32)
and a simplified server-side apply. All functions leave their inputs untouched.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import yaml


class PatchError(Exception):
    """A patch kube-apiserver would refuse; ``code`` is the HTTP status to answer with."""

    def __init__(self, message: str, code: int = 422):
        super().__init__(message)
        self.message = message
        self.code = code


JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH_YAML = "application/apply-patch+yaml"

BUILTIN_PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH_YAML)
CUSTOM_RESOURCE_PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH_YAML)

# kube-apiserver rejects bigger JSON patches with 413.
MAX_JSON_PATCH_OPERATIONS = 10000


def _unknown_format_message(accepted: tuple[str, ...]) -> str:
    return "the body of the request was in an unknown format - accepted media types include: " + ", ".join(accepted)


# --------------------------------------------------------------------------
# JSON value helpers


def _json_key(value: Any) -> Any:
    """Hashable identity with JSON semantics: 1 == 1.0, but True != 1."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", float(value))
    if isinstance(value, str):
        return ("string", value)
    if value is None:
        return ("null",)
    return ("json", json.dumps(value, sort_keys=True, separators=(",", ":")))


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return False
    return _json_key(a) == _json_key(b)


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "string" if isinstance(value, str) else "null" if value is None else "array"


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 200 else text[:197] + "..."


# --------------------------------------------------------------------------
# RFC 7386 JSON merge patch


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else replaces."""
    return _merge_patch(copy.deepcopy(target), patch)


def _merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _merge_patch(target.get(key), value)
    return target


# --------------------------------------------------------------------------
# RFC 6902 JSON patch

_ARRAY_INDEX_RE = re.compile(r"0|[1-9][0-9]*")


def _parse_pointer(pointer: Any, op: str, field: str = "path") -> list[str]:
    if not isinstance(pointer, str):
        raise PatchError(f"{op} operation has an invalid {field}: {_short(pointer)}")
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f'{op} operation has an invalid {field} "{pointer}": a JSON pointer must start with "/"')
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")]


def _array_index(token: str, length: int, *, allow_end: bool) -> int | None:
    """Index for ``token`` in a list of ``length``; None when it is out of range or malformed."""
    if allow_end and token == "-":
        return length
    if not _ARRAY_INDEX_RE.fullmatch(token):
        return None
    index = int(token)
    limit = length if allow_end else length - 1
    return index if index <= limit else None


def _resolve(doc: Any, tokens: list[str]) -> tuple[bool, Any]:
    current = doc
    for token in tokens:
        if isinstance(current, dict) and token in current:
            current = current[token]
        elif isinstance(current, list):
            index = _array_index(token, len(current), allow_end=False)
            if index is None:
                return False, None
            current = current[index]
        else:
            return False, None
    return True, current


def _missing(op: str, pointer: str) -> PatchError:
    return PatchError(f'{op} operation does not apply: doc is missing path: "{pointer}"')


def _add(doc: Any, tokens: list[str], value: Any, op: str, pointer: str) -> Any:
    if not tokens:
        return value
    found, parent = _resolve(doc, tokens[:-1])
    last = tokens[-1]
    if found and isinstance(parent, dict):
        parent[last] = value
        return doc
    if found and isinstance(parent, list):
        index = _array_index(last, len(parent), allow_end=True)
        if index is None:
            raise PatchError(
                f'{op} operation does not apply: index "{last}" is invalid or out of bounds for "{pointer}"'
            )
        parent.insert(index, value)
        return doc
    raise _missing(op, pointer)


def _remove(doc: Any, tokens: list[str], op: str, pointer: str) -> Any:
    if not tokens:
        raise PatchError(f"{op} operation does not apply: cannot remove the whole document")
    found, parent = _resolve(doc, tokens[:-1])
    last = tokens[-1]
    if found and isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if found and isinstance(parent, list):
        index = _array_index(last, len(parent), allow_end=False)
        if index is not None:
            return parent.pop(index)
    raise _missing(op, pointer)


def _operation(doc: Any, operation: Any, position: int) -> Any:
    if not isinstance(operation, dict):
        raise PatchError(f"json: cannot unmarshal {_json_kind(operation)} into Go value of type jsonpatch.Operation", 400)
    op = operation.get("op")
    if op not in ("add", "remove", "replace", "move", "copy", "test"):
        raise PatchError(f"Unexpected kind: {op if isinstance(op, str) else _short(op)}")
    if "path" not in operation:
        raise PatchError(f'{op} operation (index {position}) is missing the "path" field')
    pointer = operation["path"]
    tokens = _parse_pointer(pointer, op)
    if op in ("add", "replace", "test") and "value" not in operation:
        raise PatchError(f'{op} operation on "{pointer}" is missing the "value" field')
    value = copy.deepcopy(operation.get("value"))

    if op == "add":
        return _add(doc, tokens, value, op, pointer)
    if op == "remove":
        _remove(doc, tokens, op, pointer)
        return doc
    if op == "replace":
        if not tokens:
            return value
        found, _ = _resolve(doc, tokens)
        if not found:
            raise _missing(op, pointer)
        _remove(doc, tokens, op, pointer)
        return _add(doc, tokens, value, op, pointer)
    if op == "test":
        found, current = _resolve(doc, tokens)
        if not found:
            raise PatchError(f"testing value {pointer} failed: test failed: path does not exist")
        if not _json_equal(current, value):
            raise PatchError(
                f"testing value {pointer} failed: test failed: found {_short(current)}, expected {_short(value)}"
            )
        return doc

    # move / copy
    if "from" not in operation:
        raise PatchError(f'{op} operation on "{pointer}" is missing the "from" field')
    source = operation["from"]
    from_tokens = _parse_pointer(source, op, "from")
    found, current = _resolve(doc, from_tokens)
    if not found:
        raise PatchError(f'{op} operation does not apply: doc is missing from path: "{source}"')
    if op == "copy":
        return _add(doc, tokens, copy.deepcopy(current), op, pointer)
    if tokens == from_tokens:
        return doc
    if tokens[: len(from_tokens)] == from_tokens:
        raise PatchError(f'move operation does not apply: "{pointer}" is inside "{source}"')
    moved = _remove(doc, from_tokens, op, source)
    return _add(doc, tokens, moved, op, pointer)


def apply_json_patch(target: dict, ops: list) -> dict:
    """RFC 6902. A failed ``test`` or a missing path raises PatchError(422)."""
    if not isinstance(ops, list):
        # kube-apiserver's wording (its JSON decoder error) for e.g. a dict sent as JSON patch.
        raise PatchError(f"json: cannot unmarshal {_json_kind(ops)} into Go value of type jsonpatch.Patch", 400)
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise PatchError(
            f"The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {len(ops)}", 413
        )
    doc = copy.deepcopy(target)
    for position, operation in enumerate(ops):
        doc = _operation(doc, operation, position)
    return doc


# --------------------------------------------------------------------------
# Strategic merge patch metadata
#
# Source of truth: the `patchStrategy` / `patchMergeKey` Go struct tags in k8s.io/api (v0.32).
# Paths are dotted from the object root, "[]" marks list items. A strategy may hold
# several comma-separated values ("merge,retainKeys"); "replace" marks atomic fields
# that have no tag, listed so the table documents them.

PatchMeta = tuple[str, "str | None"]

_COMMON: dict[str, PatchMeta] = {
    "metadata.ownerReferences": ("merge", "uid"),
    "metadata.finalizers": ("merge", None),
}

_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")
_CONTAINER_FIELDS: dict[str, PatchMeta] = {
    "ports": ("merge", "containerPort"),
    "env": ("merge", "name"),
    "volumeMounts": ("merge", "mountPath"),
    "volumeDevices": ("merge", "devicePath"),
}


def _pod_spec(prefix: str) -> dict[str, PatchMeta]:
    table: dict[str, PatchMeta] = {
        prefix + "volumes": ("merge,retainKeys", "name"),
        prefix + "imagePullSecrets": ("merge", "name"),
        prefix + "hostAliases": ("merge", "ip"),
        prefix + "topologySpreadConstraints": ("merge", "topologyKey"),
        prefix + "schedulingGates": ("merge", "name"),
        prefix + "resourceClaims": ("merge,retainKeys", "name"),
        prefix + "tolerations": ("replace", None),
    }
    for containers in _CONTAINER_LISTS:
        table[prefix + containers] = ("merge", "name")
        for field, meta in _CONTAINER_FIELDS.items():
            table[f"{prefix}{containers}[].{field}"] = meta
    return table


def _template(prefix: str) -> dict[str, PatchMeta]:
    """A PodTemplateSpec at ``prefix`` (its metadata is an ObjectMeta too)."""
    table = {f"{prefix}metadata.{path[len('metadata.'):]}": meta for path, meta in _COMMON.items()}
    table.update(_pod_spec(prefix + "spec."))
    return table


_POD_STATUS: dict[str, PatchMeta] = {
    "status.conditions": ("merge", "type"),
    "status.podIPs": ("merge", "ip"),
    "status.hostIPs": ("merge", "ip"),
    "status.resourceClaimStatuses": ("merge,retainKeys", "name"),
    **{f"status.{s}[].volumeMounts": ("merge", "mountPath")
       for s in ("containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses")},
}
_CONDITIONS: dict[str, PatchMeta] = {"status.conditions": ("merge", "type")}

PATCH_STRATEGIES: dict[str, dict[str, PatchMeta]] = {
    "Pod": {**_COMMON, **_pod_spec("spec."), **_POD_STATUS},
    "PodTemplate": {**_COMMON, **_template("template.")},
    "ReplicationController": {**_COMMON, **_template("spec.template."), **_CONDITIONS},
    "Deployment": {**_COMMON, **_template("spec.template."), **_CONDITIONS, "spec.strategy": ("retainKeys", None)},
    "DaemonSet": {**_COMMON, **_template("spec.template."), **_CONDITIONS},
    "StatefulSet": {**_COMMON, **_template("spec.template."), **_CONDITIONS},
    "ReplicaSet": {**_COMMON, **_template("spec.template."), **_CONDITIONS},
    "Job": {**_COMMON, **_template("spec.template."), **_CONDITIONS},
    "CronJob": {**_COMMON, **_template("spec.jobTemplate.spec.template.")},
    "Node": {
        **_COMMON,
        "spec.podCIDRs": ("merge", None),
        # NodeSpec.Taints is +listType=atomic with no patchStrategy: kubectl taint sends the full list.
        "spec.taints": ("replace", None),
        "status.conditions": ("merge", "type"),
        "status.addresses": ("merge", "type"),
        "status.images": ("replace", None),
    },
    "Service": {**_COMMON, "spec.ports": ("merge", "port"), **_CONDITIONS},
    "ServiceAccount": {**_COMMON, "secrets": ("merge", "name")},
    "Namespace": {**_COMMON, **_CONDITIONS},
    "PersistentVolumeClaim": {**_COMMON, **_CONDITIONS},
}


def patch_meta(kind: str, path: str) -> tuple[str | None, str | None]:
    """(strategy, merge key) for a dotted path of ``kind``; (None, None) means replace."""
    table = PATCH_STRATEGIES.get(kind, _COMMON)
    return table.get(path, (None, None))


# --------------------------------------------------------------------------
# Strategic merge patch

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_SET_ELEMENT_ORDER = "$setElementOrder"
_DELETE_FROM_PRIMITIVE_LIST = "$deleteFromPrimitiveList"


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _strategies(strategy: str | None) -> set[str]:
    return set(strategy.split(",")) if strategy else set()


def _bad_format(what: str) -> PatchError:
    return PatchError(f"invalid patch format of {what}", 400)


def _discard_nulls(value: Any) -> Any:
    """Nulls have nothing to delete in a value that is new to the object."""
    if isinstance(value, dict):
        return {k: _discard_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_discard_nulls(v) for v in value]
    return value


def _remove_directives(value: Any) -> tuple[Any, bool]:
    """Strip patch directives from a value copied verbatim; a map carrying ``$patch`` is dropped."""
    if isinstance(value, dict):
        if _DIRECTIVE in value:
            return None, False
        cleaned = {}
        for key, item in value.items():
            if key.startswith("$"):
                continue  # typed decoding would drop directive keys anyway
            item, keep = _remove_directives(item)
            if keep:
                cleaned[key] = item
        return cleaned, True
    if isinstance(value, list):
        cleaned_list = []
        for item in value:
            item, keep = _remove_directives(item)
            if keep:
                cleaned_list.append(item)
        return cleaned_list, True
    return value, True


def _new_value(value: Any) -> tuple[Any, bool]:
    return _remove_directives(_discard_nulls(value))


def _kind_of(item: Any) -> type:
    # Go decodes every JSON number as float64, so ints and floats are one kind.
    if isinstance(item, bool):
        return bool
    if isinstance(item, (int, float)):
        return float
    return type(item)


def _element_kind(*lists: list) -> type | None:
    """The common element type of the lists (None if all are empty); mixed types are an error."""
    kind = None
    for items in lists:
        for item in items:
            current = _kind_of(item)
            if current is list:
                raise PatchError("lists of lists are not supported")
            if kind is None:
                kind = current
            elif kind is not current:
                raise PatchError(f"list element types are not identical: {_short(list(lists))}")
    return kind


def _extract_key(directive_key: str, prefix: str) -> str:
    head, sep, field = directive_key.partition("/")
    if not sep or head != prefix:
        raise _bad_format("setElementOrder list" if prefix == _SET_ELEMENT_ORDER else "primitive list")
    return field


def _identity(item: Any, merge_key: str | None, kind: type | None) -> Any:
    if kind is dict:
        return _json_key(item.get(merge_key) if isinstance(item, dict) else None)
    return _json_key(item)


def _index_of(items: list, item: Any, merge_key: str | None, kind: type | None) -> int:
    wanted = _identity(item, merge_key, kind)
    for i, candidate in enumerate(items):
        if _identity(candidate, merge_key, kind) == wanted:
            return i
    return -1


def _require_merge_key(items: list, merge_key: str) -> None:
    for item in items:
        if not isinstance(item, dict):
            raise PatchError(f"expected a map, but received {_short(item)}")
        if merge_key not in item:
            raise PatchError(f"map: {_short(item)} does not contain declared merge key: {merge_key}")


def _normalize_order(patch_items: list, server_only: list, patch_order: list, server_order: list,
                     merge_key: str | None, kind: type | None) -> list:
    """Patch items follow the patch order, server-only items keep their live order, and the two
    are interleaved using live positions (a patch item unknown to the live list goes first)."""
    if kind is dict:
        _require_merge_key(patch_items + server_only + patch_order, merge_key or "")

    def by(order: list):
        def key(item: Any) -> int:
            i = _index_of(order, item, merge_key, kind)
            return i if i >= 0 else len(order)
        return key

    left = sorted(server_only, key=by(server_order))
    right = sorted(patch_items, key=by(patch_order))
    result: list = []
    while left or right:
        if left and right:
            li = _index_of(server_order, left[0], merge_key, kind)
            ri = _index_of(server_order, right[0], merge_key, kind)
            take_left = li >= 0 and ri >= 0 and li < ri
        else:
            take_left = bool(left)
        result.append((left if take_left else right).pop(0))
    return result


def _partition(merged: list, by: list, merge_key: str | None, kind: type | None) -> tuple[list, list]:
    wanted = {_identity(item, merge_key, kind) for item in by}
    inside = [item for item in merged if _identity(item, merge_key, kind) in wanted]
    outside = [item for item in merged if _identity(item, merge_key, kind) not in wanted]
    return inside, outside


class _StrategicMerger:
    def __init__(self, kind: str, table: dict[str, PatchMeta] | None = None):
        self.table = PATCH_STRATEGIES.get(kind, _COMMON) if table is None else table

    def meta(self, path: str) -> tuple[set[str], str | None]:
        strategy, merge_key = self.table.get(path, (None, None))
        return _strategies(strategy), merge_key

    # maps -------------------------------------------------------------------

    def merge_map(self, original: dict, patch: dict, path: str) -> dict:
        patch = dict(patch)
        if _DIRECTIVE in patch:
            directive = patch.pop(_DIRECTIVE)
            if directive == "replace":
                return _remove_directives(patch)[0]
            if directive == "delete":
                return {}
            raise PatchError(f"unknown patch type: {directive} in map: {_short(patch)}")
        self.apply_retain_keys(original, patch)
        self.apply_element_orders(original, patch, path)

        # Deletion lists last, so the result does not depend on key order.
        keys = sorted(patch, key=lambda k: k.startswith(_DELETE_FROM_PRIMITIVE_LIST))
        for key in keys:
            value = patch[key]
            is_delete_list = key.startswith(_DELETE_FROM_PRIMITIVE_LIST)
            if is_delete_list:
                key = _extract_key(key, _DELETE_FROM_PRIMITIVE_LIST)
            elif key.startswith("$"):
                continue
            child = _child(path, key)
            if value is None:
                original.pop(key, None)
                continue
            if key not in original or not self._same_container_type(original[key], value):
                if not is_delete_list:
                    new, keep = _new_value(value)
                    if keep:
                        original[key] = new
                    else:
                        original.pop(key, None)
                continue
            current = original[key]
            if isinstance(current, dict):
                strategies, _ = self.meta(child)
                if "replace" in strategies:
                    original[key] = _remove_directives(value)[0]
                else:
                    original[key] = self.merge_map(current, value, child)
            elif isinstance(current, list):
                original[key] = self.merge_list_field(current, value, child, is_delete_list)
            else:
                original[key] = value
        return original

    @staticmethod
    def _same_container_type(current: Any, value: Any) -> bool:
        if isinstance(current, dict) or isinstance(value, dict):
            return isinstance(current, dict) and isinstance(value, dict)
        if isinstance(current, list) or isinstance(value, list):
            return isinstance(current, list) and isinstance(value, list)
        return True

    @staticmethod
    def apply_retain_keys(original: dict, patch: dict) -> None:
        if _RETAIN_KEYS not in patch:
            return
        retain = patch.pop(_RETAIN_KEYS)
        if not isinstance(retain, list):
            raise _bad_format("retainKeys")
        allowed = set(k for k in retain if isinstance(k, str))
        for key, value in patch.items():
            if value is None or key.startswith((_DELETE_FROM_PRIMITIVE_LIST, _SET_ELEMENT_ORDER)):
                continue
            if key not in allowed:
                raise _bad_format("retainKeys")
        for key in list(original):
            if key not in allowed:
                del original[key]

    def apply_element_orders(self, original: dict, patch: dict, path: str) -> None:
        for directive_key in [k for k in patch if k.startswith(_SET_ELEMENT_ORDER)]:
            order = patch.pop(directive_key)
            field = _extract_key(directive_key, _SET_ELEMENT_ORDER)
            if not isinstance(order, list):
                raise _bad_format("setElementOrder list")
            child = _child(path, field)
            strategies, merge_key = self.meta(child)
            current, patch_list = original.get(field), patch.get(field)
            if current is not None and not isinstance(current, list):
                raise PatchError(f"{child}: expected a list in the object, got {_short(current)}")
            if patch_list is not None and not isinstance(patch_list, list):
                raise _bad_format("setElementOrder list")
            self._check_order_consistency(patch_list or [], order, merge_key)
            if current is None and patch_list is None:
                continue
            live = list(current or [])
            if patch_list is None:
                merged = current
            elif current is None:
                merged = _remove_directives(patch_list)[0]
            else:
                merged = self.merge_list(current, patch_list, child, strategies, merge_key, False, live_view_out=live)
            kind = _element_kind(current or [], patch_list or [])
            if kind is not None:
                inside, outside = _partition(merged, order, merge_key, kind)
                merged = _normalize_order(inside, outside, order, live, merge_key, kind)
            original[field] = merged
            patch.pop(field, None)

    @staticmethod
    def _check_order_consistency(patch_list: list, order: list, merge_key: str | None) -> None:
        """Patch items (minus deletions) must appear in $setElementOrder, in the same relative order."""
        items = [i for i in patch_list if not (isinstance(i, dict) and _DIRECTIVE in i)]
        if not items or not order:
            return
        kind = dict if merge_key else None
        if kind is dict:
            _require_merge_key(items + order, merge_key or "")
        pi = oi = 0
        while pi < len(items) and oi < len(order):
            if _identity(items[pi], merge_key, kind) == _identity(order[oi], merge_key, kind):
                pi += 1
            oi += 1
        if pi < len(items):
            raise PatchError(
                f"The order in patch list: {_short(patch_list)} doesn't match $setElementOrder list: {_short(order)}"
            )

    # lists ------------------------------------------------------------------

    def merge_list_field(self, current: list, patch_list: list, path: str, is_delete_list: bool) -> list:
        strategies, merge_key = self.meta(path)
        return self.merge_list(current, patch_list, path, strategies, merge_key, is_delete_list)

    def merge_list(self, current: list, patch_list: list, path: str, strategies: set[str],
                   merge_key: str | None, is_delete_list: bool, live_view_out: list | None = None) -> list:
        if "merge" not in strategies and not is_delete_list:
            return _remove_directives(patch_list)[0]
        if not current and not patch_list:
            return current
        kind = _element_kind(current, patch_list)
        if kind is not dict:
            if is_delete_list:
                doomed = {_json_key(v) for v in patch_list}
                return [v for v in current if _json_key(v) not in doomed]
            merged, seen = [], set()
            for item in current + patch_list:
                if _json_key(item) not in seen:
                    seen.add(_json_key(item))
                    merged.append(item)
            patch_items, server_order = patch_list, current
        else:
            if not merge_key:
                raise PatchError(f"cannot merge lists without merge key for {path}")
            merged, patch_items, server_order, live_view = self._merge_keyed(current, patch_list, merge_key, path)
            if live_view_out is not None:
                live_view_out[:] = live_view
        inside, outside = _partition(merged, patch_items, merge_key, kind)
        return _normalize_order(inside, outside, patch_items, server_order, merge_key, kind)

    def _merge_keyed(self, current: list, patch_list: list, merge_key: str, path: str) -> tuple[list, list, list, list]:
        """Merge a list of maps by key. Returns (merged, plain patch items, live order after deletions,
        live view). The live view reproduces how Go's in-place slice edits show through the caller's
        copy of the live list; $setElementOrder sorting relies on it when items are deleted and added."""
        size = len(current)
        backing, length = list(current), len(current)

        def find(item: dict) -> int:
            wanted = _json_key(item[merge_key])
            return next((i for i in range(length) if isinstance(backing[i], dict) and merge_key in backing[i]
                         and _json_key(backing[i][merge_key]) == wanted), -1)

        plain, replace = [], False
        for item in patch_list:
            if not isinstance(item, dict):
                raise PatchError(f"expected a map, but received {_short(item)}")
            if _DIRECTIVE not in item:
                plain.append(item)
                continue
            directive = item[_DIRECTIVE]
            if directive == "delete":
                if merge_key not in item:
                    raise PatchError(f"map: {_short(item)} does not contain declared merge key: {merge_key}")
                while (position := find(item)) >= 0:
                    backing[position:length - 1] = backing[position + 1:length]
                    length -= 1
            elif directive == "replace":
                replace = True
            elif directive == "merge":
                raise PatchError("merging lists cannot yet be specified in the patch")
            else:
                raise PatchError(f"unknown patch type: {directive} in map: {_short(item)}")
        if replace:
            # The patch's own elements become the list; nothing is left to merge.
            elements = [_new_value(p)[0] for p in plain]
            return elements, [], elements, backing[:size]

        server_order = backing[:length]
        for item in plain:
            if merge_key not in item:
                raise PatchError(f"map: {_short(item)} does not contain declared merge key: {merge_key}")
            position = find(item)
            if position >= 0:
                backing[position] = self.merge_map(backing[position], item, path + "[]")
                continue
            new, keep = _new_value(item)
            if keep:
                if length < len(backing):
                    backing[length] = new
                else:
                    backing.append(new)
                length += 1
        return backing[:length], plain, server_order, backing[:size]


def _custom_smp_error() -> PatchError:
    return PatchError(
        "strategic merge patch format is not supported: " + _unknown_format_message(CUSTOM_RESOURCE_PATCH_TYPES),
        415,
    )


def apply_strategic_merge_patch(target: dict, patch: dict, kind: str, *, custom: bool = False) -> dict:
    """Kubernetes strategic merge patch of ``patch`` into ``target`` for a built-in ``kind``.

    Custom resources have no patch metadata, so kube-apiserver refuses SMP for them (415).
    """
    if custom:
        raise _custom_smp_error()
    if not isinstance(patch, dict):
        raise PatchError("strategic merge patch body must be a JSON object", 400)
    return _StrategicMerger(kind).merge_map(copy.deepcopy(target), copy.deepcopy(patch), "")


def apply_server_side_apply(target: dict, applied: dict, kind: str, *, custom: bool = False) -> dict:
    """Simplified server-side apply: the applied configuration is strategically merged into the
    live object. There is no field ownership, so fields dropped from a later apply are NOT removed,
    conflicts are never reported and managedFields are not maintained. Custom resources merge like
    JSON merge patch (lists replaced) because list-type metadata of the CRD schema is not consulted.
    """
    if not isinstance(applied, dict):
        raise PatchError("apply patch body must be a YAML or JSON object", 400)
    merger = _StrategicMerger(kind, table={} if custom else None)
    return merger.merge_map(copy.deepcopy(target), copy.deepcopy(applied), "")


# --------------------------------------------------------------------------
# Request body dispatch


class _ApplyYamlLoader(yaml.SafeLoader):
    """YAML as sigs.k8s.io/yaml reads it: timestamps stay strings."""


_ApplyYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _stringify_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {(k if isinstance(k, str) else json.dumps(k) if isinstance(k, bool) else str(k)): _stringify_keys(v)
                for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify_keys(v) for v in value]
    return value


def _decode_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PatchError(f"error decoding patch: {exc}", 400) from None


def _decode_yaml(body: bytes) -> Any:
    try:
        return json.loads(body)  # kubectl --server-side sends JSON; it is valid YAML and much faster to parse
    except (ValueError, UnicodeDecodeError):
        pass
    try:
        return _stringify_keys(yaml.load(body, Loader=_ApplyYamlLoader))  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PatchError(f"error decoding YAML: {exc}", 400) from None


def _require_object(value: Any, what: str) -> dict:
    if not isinstance(value, dict):
        raise PatchError(f"{what} body must be a JSON object, got {_short(value)}", 400)
    return value


def decode_apply_body(body_bytes: bytes) -> dict:
    """An apply request's configuration (YAML or JSON), as an object."""
    return _require_object(_decode_yaml(body_bytes), "apply patch")


def apply_patch(target: dict, body_bytes: bytes, content_type: str, kind: str, *, custom: bool = False) -> dict:
    """Apply a PATCH request body according to its Content-Type, as kube-apiserver does."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    accepted = CUSTOM_RESOURCE_PATCH_TYPES if custom else BUILTIN_PATCH_TYPES
    if media_type == STRATEGIC_MERGE_PATCH and custom:
        raise _custom_smp_error()
    if media_type not in accepted:
        raise PatchError(
            f'the server does not support the patch type "{media_type}": ' + _unknown_format_message(accepted), 415
        )
    if media_type == JSON_PATCH:
        result = apply_json_patch(target, _decode_json(body_bytes))
    elif media_type == MERGE_PATCH:
        result = apply_merge_patch(target, _require_object(_decode_json(body_bytes), "merge patch"))
    elif media_type == STRATEGIC_MERGE_PATCH:
        patch = _require_object(_decode_json(body_bytes), "strategic merge patch")
        result = apply_strategic_merge_patch(target, patch, kind)
    else:
        applied = _require_object(_decode_yaml(body_bytes), "apply patch")
        result = apply_server_side_apply(target, applied, kind, custom=custom)
    if not isinstance(result, dict):
        raise PatchError(f"the patched object is not a JSON object: {_short(result)}", 422)
    return result
