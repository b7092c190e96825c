"""Small helpers the guest's controllers share: kinds, owner references, conditions, pod state."""
from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any, Callable

from ..apiserver import errors
from ..apiserver.clock import rfc3339
from ..apiserver.objects import ObjectApi
from ..apiserver.registry import ResourceType

Obj = dict[str, Any]

NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"      # what Kubernetes uses for generated suffixes


def kind(api: ObjectApi, api_version: str, plural: str) -> ResourceType:
    group, _, version = api_version.rpartition("/")
    return api.lookup(group, version, plural)


def random_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(NAME_ALPHABET) for _ in range(length))


def stable_suffix(length: int, *parts: str) -> str:
    number = int(hashlib.sha256("/".join(parts).encode()).hexdigest(), 16)
    chars = []
    for _ in range(length):
        number, index = divmod(number, len(NAME_ALPHABET))
        chars.append(NAME_ALPHABET[index])
    return "".join(chars)


def template_hash(template: Obj) -> str:
    """A stable pod-template-hash / controller-revision-hash for a pod template."""
    return stable_suffix(10, json.dumps(template, sort_keys=True, separators=(",", ":")))


def owner_reference(owner: Obj, *, controller: bool = True) -> Obj:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": controller, "blockOwnerDeletion": True}


def controller_uid(obj: Obj) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")
    return None


def owned_by(objects: list[Obj], owner: Obj) -> list[Obj]:
    uid = owner["metadata"]["uid"]
    return [o for o in objects if controller_uid(o) == uid]


def with_condition(conditions: list[Obj] | None, ctype: str, status: str, reason: str = "", message: str = "",
                   *, probe: bool = False, update_time: bool = False) -> list[Obj]:
    """Set one condition; its transition time moves only when its status changes."""
    result = [dict(c) for c in conditions or []]
    current = next((c for c in result if c.get("type") == ctype), None)
    now = rfc3339()
    if current is None:
        current = {"type": ctype}
        result.append(current)
    if current.get("status") != status:
        current["lastTransitionTime"] = now
    if update_time and (current.get("status") != status or current.get("reason", "") != reason
                        or current.get("message", "") != message):
        current["lastUpdateTime"] = now
    current["status"] = status
    if probe:
        current.setdefault("lastProbeTime", None)
    for key, value in (("reason", reason), ("message", message)):
        if value:
            current[key] = value
        else:
            current.pop(key, None)
    return result


def condition(obj: Obj | None, ctype: str) -> Obj | None:
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions") or [] if c.get("type") == ctype),
                None)


def is_pod_ready(pod: Obj) -> bool:
    cond = condition(pod, "Ready")
    return cond is not None and cond.get("status") == "True" and not pod["metadata"].get("deletionTimestamp")


def is_active(pod: Obj) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and \
        (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def running_ready_pods(pods: list[Obj], labels: dict[str, str], node: str | None = None) -> list[Obj]:
    found = []
    for pod in pods:
        pod_labels = pod["metadata"].get("labels") or {}
        if all(pod_labels.get(k) == v for k, v in labels.items()) and is_pod_ready(pod):
            if node is None or (pod.get("spec") or {}).get("nodeName") == node:
                found.append(pod)
    return found


def mutate_if_changed(api: ObjectApi, rtype: ResourceType, obj: Obj, change: Callable[[Obj], None]) -> Obj:
    """Apply `change` to a copy and write only when something differs (no write, no event)."""
    meta = obj["metadata"]
    probe = json.loads(json.dumps(obj))
    change(probe)
    if probe == obj:
        return obj
    try:
        return api.mutate(rtype, meta.get("namespace"), meta["name"], change)
    except errors.ApiError:
        return obj


def status_of(obj: Obj) -> Obj:
    """obj["status"] as a dict to fill in (a status-less write may have stored `status: null`)."""
    if not isinstance(obj.get("status"), dict):
        obj["status"] = {}
    return obj["status"]
