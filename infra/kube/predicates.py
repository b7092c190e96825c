"""Small readers for object state that waits and assertions share."""
from __future__ import annotations

from typing import Any


def conditions(obj: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list(((obj or {}).get("status") or {}).get("conditions") or [])


def condition_status(obj: dict[str, Any] | None, ctype: str) -> str | None:
    """"True", "False", "Unknown", or None when the condition is absent."""
    for cond in conditions(obj):
        if cond.get("type") == ctype:
            return cond.get("status")
    return None


def has_condition(obj: dict[str, Any] | None, ctype: str, status: str = "True") -> bool:
    return condition_status(obj, ctype) == status


def summary(obj: dict[str, Any] | None) -> str:
    """One line a person can read in a timeout message: name, phase and conditions."""
    if obj is None:
        return "object absent"
    meta = obj.get("metadata", {})
    name = f"{meta.get('namespace')}/{meta.get('name')}" if meta.get("namespace") else meta.get("name")
    status = obj.get("status") or {}
    parts = [f"{obj.get('kind', '?')} {name}", f"rv={meta.get('resourceVersion')}"]
    if isinstance(status, dict):
        if status.get("phase"):
            parts.append(f"phase={status['phase']}")
        conds = [f"{c.get('type')}={c.get('status')}" for c in status.get("conditions") or [] if isinstance(c, dict)]
        if conds:
            parts.append("conditions[" + ", ".join(conds) + "]")
    if meta.get("deletionTimestamp"):
        parts.append("deleting")
    return " ".join(parts)
