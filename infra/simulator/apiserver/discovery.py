"""Discovery documents (legacy, non-aggregated) and the OpenAPI v3 index kubectl reads.

kubectl v1.32 asks for aggregated discovery first and falls back to these documents when the
server answers with plain JSON, as older API servers do.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from .registry import Registry, ResourceType


def api_versions(server_address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group_entry(group: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": entries, "preferredVersion": entries[0]}


def api_group_list(registry: Registry) -> dict[str, Any]:
    groups = registry.groups()
    return {"kind": "APIGroupList", "apiVersion": "v1",
            "groups": [_group_entry(g, groups[g]) for g in sorted(groups)]}


def api_group(registry: Registry, group: str) -> dict[str, Any] | None:
    versions = registry.groups().get(group)
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group, versions)}


def _resource_entries(rtype: ResourceType) -> list[dict[str, Any]]:
    main: dict[str, Any] = {"name": rtype.plural, "singularName": rtype.singular, "namespaced": rtype.namespaced,
                            "kind": rtype.kind, "verbs": list(rtype.verbs)}
    if rtype.short_names:
        main["shortNames"] = list(rtype.short_names)
    if rtype.categories:
        main["categories"] = list(rtype.categories)
    main["storageVersionHash"] = hashlib.sha256(f"{rtype.group}/{rtype.plural}".encode()).hexdigest()[:12]
    entries = [main]
    if rtype.has_status:
        entries.append({"name": f"{rtype.plural}/status", "singularName": "", "namespaced": rtype.namespaced,
                        "kind": rtype.kind, "verbs": ["get", "patch", "update"]})
    if rtype.has_scale:
        entries.append({"name": f"{rtype.plural}/scale", "singularName": "", "namespaced": rtype.namespaced,
                        "group": "autoscaling", "version": "v1", "kind": "Scale",
                        "verbs": ["get", "patch", "update"]})
    for sub in rtype.extra_subresources:
        verbs, kind = (["get"], "Pod") if sub == "log" else (["update"], rtype.kind)
        if sub in _CONNECT_OPTIONS:             # connect subresources: GET or POST with options, then upgrade
            verbs, kind = ["create", "get"], _CONNECT_OPTIONS[sub]
        entries.append({"name": f"{rtype.plural}/{sub}", "singularName": "", "namespaced": rtype.namespaced,
                        "kind": kind, "verbs": verbs})
    return entries


_CONNECT_OPTIONS = {"attach": "PodAttachOptions", "exec": "PodExecOptions", "portforward": "PodPortForwardOptions"}


def api_resource_list(registry: Registry, group: str, version: str) -> dict[str, Any] | None:
    types = registry.in_group_version(group, version)
    if not types and group:
        return None
    resources = [entry for t in sorted(types, key=lambda t: t.plural) for entry in _resource_entries(t)]
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": resources}


# --- OpenAPI v3 ----------------------------------------------------------------------------------
# kubectl reads it to learn that the server validates fields itself (the `fieldValidation` query
# parameter on PATCH), and then sends `fieldValidation=Strict` instead of validating client-side.

def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def openapi_v3_document(registry: Registry, group: str, version: str,
                        schemas: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any] | None:
    types = registry.in_group_version(group, version)
    if not types:
        return None
    paths: dict[str, Any] = {}
    components: dict[str, Any] = {}
    for rtype in types:
        gvk = {"group": rtype.group, "version": version, "kind": rtype.kind}
        prefix = "/" + _gv_path(group, version)
        item = (f"{prefix}/namespaces/{{namespace}}/{rtype.plural}/{{name}}" if rtype.namespaced
                else f"{prefix}/{rtype.plural}/{{name}}")
        patch_types = ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"]
        if not rtype.custom:
            patch_types.append("application/strategic-merge-patch+json")
        paths[item] = {
            "get": {"operationId": f"read{rtype.kind}", "x-kubernetes-group-version-kind": gvk,
                    "x-kubernetes-action": "get", "responses": {"200": {"description": "OK"}}},
            "patch": {
                "operationId": f"patch{rtype.kind}", "x-kubernetes-group-version-kind": gvk,
                "x-kubernetes-action": "patch",
                "parameters": [
                    {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
                    {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                    {"name": "force", "in": "query", "schema": {"type": "boolean"}},
                ],
                "requestBody": {"content": {t: {"schema": {"type": "object"}} for t in patch_types}},
                "responses": {"200": {"description": "OK"}},
            },
        }
        schema = schemas.get((rtype.group, rtype.plural))
        if rtype.custom and schema is not None:
            name = ".".join(reversed(rtype.group.split("."))) + f".{version}.{rtype.kind}"
            components[name] = {**schema, "x-kubernetes-group-version-kind": [gvk]}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.32.2"},
            "paths": paths, "components": {"schemas": components}}


def openapi_v3_index(registry: Registry) -> dict[str, Any]:
    index: dict[str, Any] = {}
    seen = {("", "v1")} | {(t.group, v) for t in registry.all() for v in t.versions}
    for group, version in sorted(seen):
        path = _gv_path(group, version)
        digest = hashlib.sha256(json.dumps(sorted(t.plural for t in registry.in_group_version(group, version)))
                                .encode()).hexdigest()[:16].upper()
        index[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": index}
