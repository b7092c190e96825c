"""CRD structural-schema handling for custom resources, as kube-apiserver (v1.32) does it.

Order of operations matches the apiserver: prune unknown fields, drop unneeded nulls,
apply defaults, then validate. Error strings follow kube's field.Error rendering so
kubectl prints what a real cluster would.

Not implemented: ``format`` checks, CEL rules (``x-kubernetes-validations``),
embedded-resource metadata coercion and validation of metadata beyond the schema.
"""

from __future__ import annotations

import copy
import json
import math
import re
from functools import lru_cache
from typing import Any

from .selectors import go_quote

_RESOURCE_META_FIELDS = ("apiVersion", "kind", "metadata")

# JSON names of metav1.ObjectMeta; anything else under .metadata is dropped as unknown.
OBJECT_META_FIELDS = frozenset({
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields",
})

_PRESERVE = "x-kubernetes-preserve-unknown-fields"
_EMBEDDED = "x-kubernetes-embedded-resource"
_INT_OR_STRING = "x-kubernetes-int-or-string"


def validate_custom_object(obj: dict, schema: dict, *, strict: bool = False) -> tuple[dict, list[str], list[str]]:
    """Prune, default and validate ``obj`` against a CRD version's ``schema.openAPIV3Schema``.

    Returns ``(pruned_and_defaulted_obj, errors, unknown_field_paths)``. Unknown paths look like
    ``.spec.foo`` / ``.spec.items[0].bar`` (sorted). With ``strict`` each unknown path is also
    reported first in ``errors`` as ``unknown field "spec.foo"``, the text of kube's strict field
    validation (which kube answers with 400 rather than the 422 used for schema errors).
    """
    result = copy.deepcopy(obj)
    schema = schema or {}
    unknown: list[str] = []
    errors: list[str] = []
    _prune(result, schema, "", unknown, embedded=True)
    _coerce_object_meta(result, unknown, errors)
    _drop_nulls_without_defaults(result, schema)
    _apply_defaults(result, schema)
    _validate(result, schema, "", errors)
    unknown.sort()
    if strict:
        errors = [f'unknown field "{path[1:]}"' for path in unknown] + errors
    return result, errors, unknown


def _child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _field_schema(schema: dict | None, key: str) -> dict | None:
    """Schema for one key of an object, via properties or an additionalProperties schema."""
    if not schema:
        return None
    properties = schema.get("properties") or {}
    if key in properties:
        return properties[key]
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


# --------------------------------------------------------------------------
# Pruning (apiextensions-apiserver pkg/apiserver/schema/pruning)


def _prune(value: Any, schema: dict | None, path: str, unknown: list[str], *, embedded: bool = False) -> None:
    if schema and schema.get(_PRESERVE):
        _prune_below_preserved(value, schema, path, unknown, embedded=embedded)
        return
    embedded = embedded or bool(schema and schema.get(_EMBEDDED))
    if isinstance(value, dict):
        properties = (schema or {}).get("properties") or {}
        extra = (schema or {}).get("additionalProperties")
        for key in list(value):
            if embedded and key in _RESOURCE_META_FIELDS:
                continue
            if key in properties:
                _prune(value[key], properties[key], _child(path, key), unknown)
            elif extra is True:
                continue
            elif isinstance(extra, dict):
                _prune(value[key], extra, _child(path, key), unknown)
            else:
                unknown.append("." + _child(path, key))
                del value[key]
    elif isinstance(value, list):
        items = (schema or {}).get("items")
        for index, item in enumerate(value):
            _prune(item, items, f"{path}[{index}]", unknown)


def _prune_below_preserved(value: Any, schema: dict | None, path: str, unknown: list[str], *, embedded: bool) -> None:
    """Unknown keys stay, but declared properties are still pruned inside."""
    if not schema:
        return
    embedded = embedded or bool(schema.get(_EMBEDDED))
    if isinstance(value, dict):
        for key, item in value.items():
            if embedded and key in _RESOURCE_META_FIELDS:
                continue
            sub = _field_schema(schema, key)
            if sub is not None:
                _prune(item, sub, _child(path, key), unknown)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _prune_below_preserved(item, schema.get("items"), f"{path}[{index}]", unknown, embedded=False)


def _coerce_object_meta(obj: dict, unknown: list[str], errors: list[str]) -> None:
    metadata = obj.get("metadata")
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        errors.append(f"metadata: Invalid value: {_go_value(metadata)}: metadata must be an object")
        return
    for key in list(metadata):
        if key not in OBJECT_META_FIELDS:
            unknown.append(f".metadata.{key}")
            del metadata[key]


# --------------------------------------------------------------------------
# Defaulting (apiextensions-apiserver pkg/apiserver/schema/defaulting)


def _drop_nulls_without_defaults(value: Any, schema: dict | None) -> None:
    """A null for a non-nullable field without default is treated as if it were absent."""
    if isinstance(value, dict):
        for key in list(value):
            sub = _field_schema(schema, key)
            if value[key] is None and sub is not None and not sub.get("nullable") and "default" not in sub:
                del value[key]
            else:
                _drop_nulls_without_defaults(value[key], sub)
    elif isinstance(value, list):
        items = schema.get("items") if schema else None
        for item in value:
            _drop_nulls_without_defaults(item, items)


def _apply_defaults(value: Any, schema: dict | None) -> None:
    if not schema:
        return
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if "default" not in sub:
                continue
            if key not in value or (value[key] is None and not sub.get("nullable")):
                value[key] = copy.deepcopy(sub["default"])
        for key, item in value.items():
            _apply_defaults(item, _field_schema(schema, key))
    elif isinstance(value, list):
        for item in value:
            _apply_defaults(item, schema.get("items"))


# --------------------------------------------------------------------------
# Validation (kube-openapi validate + apiextensions error conversion)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _go_number(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def _go_value(value: Any) -> str:
    """Render a bad value the way field.Error does (%q for strings, %v for scalars, %#v otherwise)."""
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _go_number(value)
    if value is None:
        return "null"
    return _go_syntax(value)


def _go_syntax(value: Any) -> str:
    if isinstance(value, dict):
        inner = ", ".join(f"{go_quote(k)}:{_go_syntax(v)}" for k, v in sorted(value.items()))
        return "map[string]interface {}{" + inner + "}"
    if isinstance(value, list):
        return "[]interface {}{" + ", ".join(_go_syntax(v) for v in value) + "}"
    if value is None:
        return "interface {}(nil)"
    return _go_value(value)


def _invalid(path: str, value: Any, detail: str) -> str:
    return f"{path or '<nil>'}: Invalid value: {_go_value(value)}: {detail}"


def _json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: 1 == 1.0, but true != 1."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, (dict, list, bool)) or isinstance(b, (dict, list, bool)):
        return type(a) is type(b) and a == b
    return a == b


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern | None:
    """Compile a schema pattern with Go RE2's meaning of "$" (end of text, not before a final newline)."""
    translated, escaped, in_class = [], False, False
    for ch in pattern:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == "[":
            in_class = True
        elif ch == "]":
            in_class = False
        elif ch == "$" and not in_class:
            ch = r"\Z"
        translated.append(ch)
    try:
        return re.compile("".join(translated))
    except re.error:
        return None


def _allowed_types(schema: dict) -> list[str]:
    declared = schema.get("type")
    if declared:
        return [declared] if isinstance(declared, str) else list(declared)
    if schema.get(_INT_OR_STRING):
        return ["integer", "string"]
    return []


def _type_matches(value: Any, actual: str, allowed: list[str]) -> bool:
    if actual in allowed:
        return True
    if actual == "integer" and "number" in allowed:
        return True
    return actual == "number" and "integer" in allowed and math.isfinite(value) and float(value).is_integer()


def _validate(value: Any, schema: dict | None, path: str, errors: list[str]) -> None:
    if not schema:
        return
    allowed = _allowed_types(schema)
    actual = _json_type(value)
    if value is None:
        if allowed and not schema.get("nullable"):
            errors.append(_type_error(path, allowed, "null"))
        elif "enum" in schema and not any(v is None for v in schema["enum"]):
            errors.append(_enum_error(path, value, schema["enum"]))
        return
    if allowed and not _type_matches(value, actual, allowed):
        errors.append(_type_error(path, allowed, actual))
        return
    if "enum" in schema and not any(_json_equal(value, option) for option in schema["enum"]):
        errors.append(_enum_error(path, value, schema["enum"]))

    if isinstance(value, str):
        _validate_string(value, schema, path, errors)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _validate_number(value, schema, path, errors)
    elif isinstance(value, list):
        _validate_array(value, schema, path, errors)
    elif isinstance(value, dict):
        _validate_object(value, schema, path, errors)
    _validate_combinators(value, schema, path, errors)


def _type_error(path: str, allowed: list[str], actual: str) -> str:
    return _invalid(path, actual, f"{path} in body must be of type {','.join(allowed)}: {go_quote(actual)}")


def _enum_error(path: str, value: Any, options: list) -> str:
    rendered = [o if isinstance(o, str) else json.dumps(o, separators=(",", ":")) for o in options]
    supported = ", ".join(go_quote(o) for o in rendered)
    return f"{path or '<nil>'}: Unsupported value: {_go_value(value)}: supported values: {supported}"


def _validate_string(value: str, schema: dict, path: str, errors: list[str]) -> None:
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(f"{path}: Too long: may not be more than {schema['maxLength']} bytes")
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(_invalid(path, value, f"{path} in body should be at least {schema['minLength']} chars long"))
    if "pattern" in schema:
        compiled = _compile(schema["pattern"])
        if compiled is not None and not compiled.search(value):
            errors.append(_invalid(path, value, f"{path} in body should match '{schema['pattern']}'"))


def _validate_number(value: float | int, schema: dict, path: str, errors: list[str]) -> None:
    if "maximum" in schema:
        limit = schema["maximum"]
        if schema.get("exclusiveMaximum") and value >= limit:
            errors.append(_invalid(path, value, f"{path} in body should be less than {_go_number(limit)}"))
        elif value > limit:
            errors.append(_invalid(path, value, f"{path} in body should be less than or equal to {_go_number(limit)}"))
    if "minimum" in schema:
        limit = schema["minimum"]
        if schema.get("exclusiveMinimum") and value <= limit:
            errors.append(_invalid(path, value, f"{path} in body should be greater than {_go_number(limit)}"))
        elif value < limit:
            errors.append(
                _invalid(path, value, f"{path} in body should be greater than or equal to {_go_number(limit)}")
            )
    factor = schema.get("multipleOf")
    if factor and not float(value / factor).is_integer():
        errors.append(_invalid(path, value, f"{path} in body should be a multiple of {_go_number(factor)}"))


def _validate_array(value: list, schema: dict, path: str, errors: list[str]) -> None:
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        noun = "item" if schema["maxItems"] == 1 else "items"
        errors.append(f"{path}: Too many: {len(value)}: must have at most {schema['maxItems']} {noun}")
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(_invalid(path, value, f"{path} in body should have at least {schema['minItems']} items"))
    items = schema.get("items")
    for index, item in enumerate(value):
        _validate(item, items, f"{path}[{index}]", errors)
    _validate_list_type(value, schema, path, errors)


def _validate_list_type(value: list, schema: dict, path: str, errors: list[str]) -> None:
    list_type = schema.get("x-kubernetes-list-type")
    if list_type == "set":
        seen: list[Any] = []
        for index, item in enumerate(value):
            if any(_json_equal(item, other) for other in seen):
                errors.append(f"{path}[{index}]: Duplicate value: {_go_value(item)}")
            else:
                seen.append(item)
    elif list_type == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen_keys: list[dict] = []
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                continue
            key = {k: item.get(k) for k in keys if k in item}
            if any(_json_equal(key, other) for other in seen_keys):
                errors.append(f"{path}[{index}]: Duplicate value: {_go_syntax(key)}")
            else:
                seen_keys.append(key)


def _validate_object(value: dict, schema: dict, path: str, errors: list[str]) -> None:
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        noun = "item" if schema["maxProperties"] == 1 else "items"
        errors.append(f"{path}: Too many: {len(value)}: must have at most {schema['maxProperties']} {noun}")
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        errors.append(
            _invalid(path, value, f"{path} in body should have at least {schema['minProperties']} properties")
        )
    for required in schema.get("required") or []:
        if required not in value:
            errors.append(f"{_child(path, required)}: Required value")
    for key, item in value.items():
        sub = _field_schema(schema, key)
        if sub is not None:
            _validate(item, sub, _child(path, key), errors)


def _validate_combinators(value: Any, schema: dict, path: str, errors: list[str]) -> None:
    """allOf/anyOf/oneOf/not carry value validations only in structural schemas."""

    def passes(sub: dict) -> bool:
        found: list[str] = []
        _validate(value, sub, path, found)
        return not found

    for sub in schema.get("allOf") or []:
        _validate(value, sub, path, errors)
    if schema.get("anyOf") and not any(passes(sub) for sub in schema["anyOf"]):
        errors.append(_invalid(path, "", f"{path} must validate at least one schema (anyOf)"))
    if schema.get("oneOf") and sum(passes(sub) for sub in schema["oneOf"]) != 1:
        errors.append(_invalid(path, "", f"{path} must validate one and only one schema (oneOf)"))
    if schema.get("not") and passes(schema["not"]):
        errors.append(_invalid(path, "", f"{path} must not validate the schema (not)"))


# --------------------------------------------------------------------------
# Validation ratcheting (KEP-4008, CRDValidationRatcheting: beta and on by default from kube 1.30, GA in 1.33)
#
# On update, a schema error is dropped when the value it is about did not change from the old object: the
# node holding the error (for "Required value", the object missing the field) or any node above it compares
# equal with its counterpart in the old object. List items are matched to old items by value, which covers
# sets and unchanged map-list entries.

_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _error_path(error: str) -> tuple[list[str | int], bool]:
    path, _, body = error.partition(": ")
    tokens: list[str | int] = []
    for name, index in _PATH_TOKEN.findall(path):
        tokens.append(int(index) if index else name)
    return tokens, body.startswith("Required value")


_MISSING = object()


def _unchanged_at(old: Any, new: Any, tokens: list[str | int]) -> bool:
    """Whether some node on `tokens` (deepest first) is the same in old and new."""
    pairs: list[tuple[Any, Any]] = [(old, new)]
    for token in tokens:
        old_node, new_node = pairs[-1]
        if isinstance(token, int):
            if not isinstance(new_node, list) or token >= len(new_node):
                break
            item = new_node[token]
            simulator = next((o for o in old_node if _json_equal(o, item)), _MISSING) if isinstance(old_node, list) \
                else _MISSING
            pairs.append((simulator, item))
        else:
            old_child = old_node.get(token, _MISSING) if isinstance(old_node, dict) else _MISSING
            new_child = new_node.get(token, _MISSING) if isinstance(new_node, dict) else _MISSING
            if new_child is _MISSING:
                break
            pairs.append((old_child, new_child))
    return any(o is not _MISSING and _json_equal(o, n) for o, n in reversed(pairs[1:]))


def ratchet(errors: list[str], old: dict, new: dict) -> list[str]:
    """The errors an update still gets once those about unchanged values are dropped."""
    kept = []
    for error in errors:
        tokens, required = _error_path(error)
        if required:
            tokens = tokens[:-1]
        if tokens and _unchanged_at(old, new, tokens):
            continue
        kept.append(error)
    return kept
