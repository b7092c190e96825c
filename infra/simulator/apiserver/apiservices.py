"""apiregistration.k8s.io/v1 APIServices, one per served group/version, as kube-apiserver registers them.

kube-apiserver's aggregator registers an APIService for every group/version its own servers list
(kubernetes pkg/controlplane/apiserver/aggregator.go, v1.32: the fixed priority table below) and the
apiextensions crdregistration controller one per served CRD version (groupPriorityMinimum 1000,
versionPriority 100). All are served locally: no spec.service, Available=True with reason Local.
"""
from __future__ import annotations

import copy
from typing import Any

from .clock import rfc3339
from .registry import Registry, ResourceType
from .store import Store

GROUP, PLURAL = "apiregistration.k8s.io", "apiservices"
AUTOMANAGED = "kube-aggregator.kubernetes.io/automanaged"

# (group, version) -> (groupPriorityMinimum, versionPriority) for built-in groups.
BUILTIN_PRIORITIES: dict[tuple[str, str], tuple[int, int]] = {
    ("", "v1"): (18000, 1),
    ("apiregistration.k8s.io", "v1"): (18000, 15),
    ("apps", "v1"): (17800, 15),
    ("events.k8s.io", "v1"): (17750, 15),
    ("authentication.k8s.io", "v1"): (17700, 15),
    ("authorization.k8s.io", "v1"): (17600, 15),
    ("autoscaling", "v1"): (17500, 15),
    ("autoscaling", "v2"): (17500, 30),
    ("batch", "v1"): (17400, 15),
    ("certificates.k8s.io", "v1"): (17300, 15),
    ("networking.k8s.io", "v1"): (17200, 15),
    ("policy", "v1"): (17100, 15),
    ("rbac.authorization.k8s.io", "v1"): (17000, 15),
    ("storage.k8s.io", "v1"): (16800, 15),
    ("apiextensions.k8s.io", "v1"): (16700, 15),
    ("admissionregistration.k8s.io", "v1"): (16700, 15),
    ("scheduling.k8s.io", "v1"): (16600, 15),
    ("coordination.k8s.io", "v1"): (16500, 15),
    ("node.k8s.io", "v1"): (16300, 15),
    ("discovery.k8s.io", "v1"): (16200, 15),
    ("flowcontrol.apiserver.k8s.io", "v1"): (16100, 21),
}
CRD_PRIORITY = (1000, 100)


def resource_type() -> ResourceType:
    return ResourceType(group=GROUP, versions=("v1",), kind="APIService", plural=PLURAL, singular="apiservice",
                        namespaced=False, categories=("api-extensions",), has_status=True)


def wanted(registry: Registry) -> dict[str, dict[str, Any]]:
    """name -> the APIService kube would have for what `registry` serves."""
    served: dict[tuple[str, str], bool] = {("", "v1"): False}
    for rtype in registry.all():
        for version in rtype.versions:
            key = (rtype.group, version)
            served[key] = served.get(key, False) or (rtype.custom and key not in BUILTIN_PRIORITIES)
    objects: dict[str, dict[str, Any]] = {}
    for (group, version), custom in served.items():
        priority = CRD_PRIORITY if custom else BUILTIN_PRIORITIES.get((group, version))
        if priority is None:
            continue                      # the aggregator skips groups it has no priority for
        name = f"{version}.{group}"
        objects[name] = {
            "apiVersion": f"{GROUP}/v1", "kind": "APIService",
            "metadata": {"name": name, "labels": {AUTOMANAGED: "true" if custom else "onstart"}},
            "spec": {"group": group, "version": version, "groupPriorityMinimum": priority[0],
                     "versionPriority": priority[1]},
        }
    return objects


def sync(store: Store, registry: Registry, new_object: Any) -> None:
    """Create the APIServices `registry` calls for and delete those of groups no longer served."""
    type_key = (GROUP, PLURAL)
    want = wanted(registry)
    for existing in store.list(type_key):
        name = existing["metadata"]["name"]
        if name not in want and (existing["metadata"].get("labels") or {}).get(AUTOMANAGED):
            store.remove(type_key, ("", name))
    for name, obj in want.items():
        if store.peek(type_key, ("", name)) is not None:
            continue
        obj = copy.deepcopy(obj)
        new_object(obj)
        obj["status"] = {"conditions": [{"type": "Available", "status": "True", "lastTransitionTime": rfc3339(),
                                         "reason": "Local", "message": "Local APIServices are always available"}]}
        store.put(type_key, ("", name), obj, "ADDED", None)


def service_column(obj: dict[str, Any]) -> str:
    service = (obj.get("spec") or {}).get("service")
    return f"{service.get('namespace')}/{service.get('name')}" if service else "Local"


def available_column(obj: dict[str, Any]) -> str:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Available":
            status = condition.get("status", "Unknown")
            return status if status == "True" else f"{status} ({condition.get('reason', '')})"
    return "Unknown"
