"""One way to read a YAML input file and to say what is wrong with it, in one line.

Every file a person writes for the harness (run configuration, matrix, known issues, gate policy) is read
with `load_mapping` and checked with a pydantic model; `one_line` turns the first problem into a line that
names the file, the field and what would be valid (for an unknown key: the closest valid key and the
others; for a fixed set of values: the set; for a missing field: that it is required). Secrets in the
input are never echoed (a whole section is never shown, only scalar values).
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError


class InputError(ValueError):
    """A person's input file is wrong; the message is one line naming the field and the fix."""


def load_mapping(path: Path, what: str, example: str) -> dict[str, Any]:
    """The YAML mapping in `path`; `what` names the file for a person, `example` its first keys."""
    if not path.exists():
        raise InputError(f"{path}: no such file (the {what})")
    if path.is_dir():
        raise InputError(f"{path}: is a directory; give the {what} file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    if not text.strip():
        raise InputError(f"{path}: is empty; the {what} needs at least {example}")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise InputError(f"{path}:{where} is not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: must be a mapping of keys ({example}), not a {type(data).__name__}")
    return data


def _model_at(root: type[BaseModel], path: tuple[Any, ...]) -> type[BaseModel] | None:
    model: Any = root
    for part in path:
        if isinstance(part, int):
            continue                     # an item of a list: the same model
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        candidates = [field.annotation]
        while candidates and not (isinstance(candidates[0], type) and issubclass(candidates[0], BaseModel)):
            current = candidates.pop(0)
            candidates += [a for a in getattr(current, "__args__", ()) if a is not type(None)]
        if not candidates:
            return None
        model = candidates[0]
    return model


_TYPES = {"int_parsing": "a whole number", "int_type": "a whole number", "float_parsing": "a number",
          "float_type": "a number", "bool_parsing": "true or false", "bool_type": "true or false",
          "string_type": "a string (quote versions: '1.30' would be read as a number)", "list_type": "a list",
          "dict_type": "a mapping of keys", "model_type": "a mapping of keys", "date_from_datetime_parsing": "a date",
          "date_parsing": "a date (YYYY-MM-DD)", "date_type": "a date (YYYY-MM-DD)", "path_type": "a file path",
          "url_parsing": "a URL"}


def one_line(error: ValidationError, root: type[BaseModel], prefix: str = "") -> str:
    """The first problem of `error`, as `prefix` + `<field>: <what is wrong>; <what would be valid>`.
    An unknown key comes first: it is usually a typo, and the required key it stands for is then "missing"."""
    errors = sorted(error.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    location = tuple(first["loc"])
    dotted = ".".join(str(p) for p in location) or "(top level)"
    kind = first["type"]
    shown = first.get("input")
    if kind == "extra_forbidden":
        parent = _model_at(root, location[:-1])
        valid = list(parent.model_fields) if parent else []
        guess = difflib.get_close_matches(str(location[-1]), valid, n=1)
        hint = f"; did you mean '{guess[0]}'?" if guess else ""
        line = f"{dotted}: unknown key{hint} valid keys here: {', '.join(valid)}"
    elif kind == "literal_error":
        line = f"{dotted}: {shown!r} is not valid; expected {first.get('ctx', {}).get('expected', '')}"
    elif kind == "missing":
        line = f"{dotted}: required, but not given"
    elif kind in _TYPES:
        got = "" if isinstance(shown, (dict, list)) else f" (got {shown!r})"
        line = f"{dotted}: expected {_TYPES[kind]}{got}"
    else:
        message = first["msg"].removeprefix("Value error, ")
        if dotted == "(top level)" or message.startswith(f"{dotted}."):
            line = message          # a section-level check names its own field
        elif isinstance(shown, (dict, list)):
            line = f"{dotted}: {message}"      # never echo a whole section: it may hold secrets
        else:
            line = f"{dotted}: {message} (got {shown!r})"
    more = len(errors) - 1
    line = " ".join(line.split())          # one line, whatever a message carried
    return prefix + line + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")
