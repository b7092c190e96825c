"""Kubernetes object semantics on top of the store.

Both the HTTP layer and the simulator's in-process controllers go through `ObjectApi`, so a controller
write looks to a watching client exactly like any other client's write.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from infra.simulator.apimachinery import fieldmanager
from infra.simulator.apimachinery import patch as patching
from infra.simulator.apimachinery import schema as crd_schema
from infra.simulator.apimachinery import selectors
from infra.simulator.apimachinery.jsontree import clone

from . import apiservices, defaults, errors
from .clock import rfc3339
from .registry import Registry, ResourceType, UnknownResource, type_from_crd
from .store import Store

log = logging.getLogger(__name__)

CRD_GROUP, CRD_PLURAL = "apiextensions.k8s.io", "customresourcedefinitions"
PROTECTED_NAMESPACES = {"default", "kube-system", "kube-public"}


@dataclass
class AdmissionRequest:
    operation: str                       # CREATE | UPDATE | DELETE
    rtype: ResourceType
    object: dict[str, Any] | None        # the incoming object (mutable by mutating hooks)
    old_object: dict[str, Any] | None
    dry_run: bool
    subresource: str = ""


AdmissionHook = Callable[[AdmissionRequest], None]


@dataclass
class ListResult:
    items: list[dict[str, Any]]
    resource_version: int
    continue_token: str = ""
    remaining: int | None = None


class ObjectApi:
    def __init__(self, store: Store | None = None, registry: Registry | None = None) -> None:
        self.store = store or Store()
        self.registry = registry or Registry()
        self._mutating: dict[tuple[str, str], list[AdmissionHook]] = {}
        self._validating: dict[tuple[str, str], list[AdmissionHook]] = {}
        self._crds: dict[tuple[str, str], dict[str, Any]] = {}
        self._pending_gc: list[tuple[str, str]] = []       # (uid, propagation)
        self.logs = PodLogs()
        self._services = defaults.ServiceAllocator()
        self.sync_api_services()

    def sync_api_services(self) -> None:
        """The aggregator's autoregistration: an APIService per served group/version (CRDs' too)."""
        def stamp(obj: dict[str, Any]) -> None:
            obj["metadata"].update(uid=str(uuid.uuid4()), creationTimestamp=rfc3339())
        apiservices.sync(self.store, self.registry, stamp)

    def restore(self, dump: dict[str, Any]) -> None:
        """Come back from `Store.dump()` (a restart): the objects, then the kinds their CRDs serve."""
        self.store.load(dump)
        for crd in self.store.list((CRD_GROUP, CRD_PLURAL)):
            rtype = type_from_crd(crd)
            existing = self.registry.get(rtype.group, rtype.plural)
            if existing is not None and not existing.custom:
                continue
            self.registry.add(rtype)
            self._crds[(rtype.group, rtype.plural)] = crd
        self.sync_api_services()

    # --- admission ----------------------------------------------------------------------------
    def add_admission(self, group: str, plural: str, hook: AdmissionHook, *, mutating: bool = False) -> None:
        table = self._mutating if mutating else self._validating
        table.setdefault((group, plural), []).append(hook)

    def _admit(self, request: AdmissionRequest) -> None:
        key = (request.rtype.group, request.rtype.plural)
        for hook in self._mutating.get(key, []):
            hook(request)
        for hook in self._validating.get(key, []):
            hook(request)

    # --- helpers ------------------------------------------------------------------------------
    def resolve(self, api_version: str, kind: str) -> ResourceType:
        rtype = self.registry.by_kind(api_version, kind)
        if rtype is None:
            raise errors.ApiError(404, "NotFound", f'no matches for kind "{kind}" in version "{api_version}"')
        return rtype

    def crd_for(self, rtype: ResourceType) -> dict[str, Any] | None:
        return self._crds.get((rtype.group, rtype.plural))

    @staticmethod
    def _key(rtype: ResourceType, namespace: str | None, name: str) -> tuple[str, str]:
        return (namespace or "" if rtype.namespaced else "", name)

    def _type_key(self, rtype: ResourceType) -> tuple[str, str]:
        return (rtype.group, rtype.plural)

    def _check_namespace(self, rtype: ResourceType, namespace: str | None, creating: bool,
                         name: str | None = None) -> None:
        if not rtype.namespaced:
            return
        if not namespace:
            raise errors.bad_request("the server could not find the requested resource: namespace is required")
        ns = self.store.peek(("", "namespaces"), ("", namespace))
        if ns is None:
            raise errors.not_found("namespaces", namespace)
        if creating and ns["metadata"].get("deletionTimestamp"):
            raise errors.forbidden_resource(
                rtype.plural, name or "", f"unable to create new content in namespace {namespace} because it is "
                "being terminated", rtype.group)

    def _view(self, rtype: ResourceType, obj: dict[str, Any], version: str | None) -> dict[str, Any]:
        obj["apiVersion"] = rtype.api_version(version)
        obj["kind"] = rtype.kind
        return obj

    # --- reads --------------------------------------------------------------------------------
    def get(self, rtype: ResourceType, namespace: str | None, name: str, version: str | None = None) -> dict[str, Any]:
        obj = self.store.get(self._type_key(rtype), self._key(rtype, namespace, name))
        if obj is None:
            raise errors.not_found(rtype.plural, name, rtype.group)
        return self._view(rtype, obj, version)

    def find(self, rtype: ResourceType, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return self.get(rtype, namespace, name)
        except errors.ApiError:
            return None

    def list(self, rtype: ResourceType, namespace: str | None = None, *, label_selector: str = "",
             field_selector: str = "", limit: int = 0, continue_token: str = "",
             version: str | None = None) -> ListResult:
        labels = selectors.parse_label_selector(label_selector or "")
        fields = selectors.parse_field_selector(field_selector or "", supported_fields(rtype))
        start_after = ""
        rv = self.store.resource_version
        if continue_token:
            try:
                token = json.loads(base64.urlsafe_b64decode(continue_token.encode()))
                start_after, rv = token["start"], int(token["rv"])
            except (ValueError, KeyError, TypeError):
                raise errors.bad_request("continue key is not valid: incorrect encoded start resourceVersion")
        matched: list[dict[str, Any]] = []
        remaining = 0
        for raw in self.store.iter_raw(self._type_key(rtype), namespace if rtype.namespaced else None):
            sort_key = f"{raw['metadata'].get('namespace', '')}/{raw['metadata']['name']}"
            if start_after and sort_key <= start_after:
                continue
            if not labels.matches(raw["metadata"].get("labels")) or not fields.matches(raw):
                continue
            if limit and len(matched) >= limit:
                remaining += 1
                continue
            matched.append(self._view(rtype, clone(raw), version))
        token = ""
        if limit and remaining:
            last = matched[-1]["metadata"]
            token = base64.urlsafe_b64encode(json.dumps(
                {"rv": rv, "start": f"{last.get('namespace', '')}/{last['name']}"}).encode()).decode()
        return ListResult(matched, self.store.resource_version, token, remaining if token else None)

    # --- writes -------------------------------------------------------------------------------
    def create(self, rtype: ResourceType, obj: dict[str, Any], *, namespace: str | None = None,
               dry_run: bool = False, keep_status: bool = False, strict_fields: bool = False,
               version: str | None = None, manager: str | None = None) -> dict[str, Any]:
        obj = clone(obj)
        meta = obj.setdefault("metadata", {})
        if rtype.namespaced:
            namespace = namespace or meta.get("namespace") or "default"
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise errors.bad_request("the namespace of the provided object does not match the namespace "
                                         "sent on the request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            else:
                raise errors.invalid(rtype.kind, "", ["metadata.name: Required value: name or generateName is required"],
                                     rtype.group)
        self._check_namespace(rtype, namespace, creating=True, name=meta["name"])
        key = self._key(rtype, namespace, meta["name"])
        if rtype.has_status and not keep_status:
            obj.pop("status", None)
        self._view(rtype, obj, version)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=rfc3339())
        if _has_generation(rtype):
            meta["generation"] = 1
        meta.pop("resourceVersion", None)
        meta.pop("deletionTimestamp", None)
        self._defaults_on_create(rtype, obj)
        obj = self._validate_schema(rtype, obj, strict_fields)
        self._admit(AdmissionRequest("CREATE", rtype, obj, None, dry_run))
        # kube-apiserver runs admission before storage refuses a taken name (a webhook's message wins)
        if self.store.peek(self._type_key(rtype), key) is not None:
            raise errors.already_exists(rtype.plural, meta["name"], rtype.group)
        if manager is not None:
            meta.pop("managedFields", None)
            fieldmanager.record_update(None, obj, manager, obj["apiVersion"], rfc3339(), self.field_schema(rtype, version),
                                       has_status=rtype.has_status)
        if dry_run:
            return self._view(rtype, obj, version)
        stored = self.store.put(self._type_key(rtype), key, obj, "ADDED", None)
        self._after_write(rtype, stored)
        return self._view(rtype, stored, version)

    def update(self, rtype: ResourceType, obj: dict[str, Any], *, namespace: str | None = None,
               subresource: str = "", dry_run: bool = False, strict_fields: bool = False,
               version: str | None = None, allow_create: bool = False, manager: str | None = None) -> dict[str, Any]:
        obj = clone(obj)
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        namespace = (namespace or meta.get("namespace")) if rtype.namespaced else None
        current = self.store.get(self._type_key(rtype), self._key(rtype, namespace, name))
        if current is None:
            if allow_create and not subresource:
                return self.create(rtype, obj, namespace=namespace, dry_run=dry_run, version=version, manager=manager)
            raise errors.not_found(rtype.plural, name, rtype.group)
        sent_rv = meta.get("resourceVersion")
        if sent_rv:
            if sent_rv != current["metadata"]["resourceVersion"]:
                raise errors.conflict(rtype.plural, name, rtype.group)
        elif rtype.custom:
            raise errors.invalid(rtype.kind, name, ["metadata.resourceVersion: Invalid value: 0x0: "
                                                    "must be specified for an update"], rtype.group)
        new = self._merge_for_update(rtype, current, obj, subresource)
        if not subresource:
            self._defaults_on_update(rtype, current, new)
        new = self._validate_schema(rtype, new, strict_fields, old=current)
        self._admit(AdmissionRequest("UPDATE", rtype, new, clone(current), dry_run, subresource))
        self._record(rtype, current, new, manager, subresource, version, sent="managedFields" in meta)
        return self._commit_update(rtype, current, new, dry_run, version)

    def field_schema(self, rtype: ResourceType, version: str | None) -> fieldmanager.Schema:
        return fieldmanager.Schema(rtype.kind, rtype.schemas.get(version or rtype.storage_version), custom=rtype.custom)

    def _record(self, rtype: ResourceType, current: dict[str, Any], new: dict[str, Any], manager: str | None,
                subresource: str, version: str | None, *, sent: bool = False) -> None:
        """An Update's managedFields; a write that does not send managedFields keeps the stored ones."""
        meta = new.setdefault("metadata", {})
        if not sent and current["metadata"].get("managedFields"):
            meta["managedFields"] = clone(current["metadata"]["managedFields"])
        elif not sent:
            meta.pop("managedFields", None)
        if manager is not None:
            fieldmanager.record_update(current, new, manager, rtype.api_version(version), rfc3339(),
                                       self.field_schema(rtype, version), subresource=subresource,
                                       has_status=rtype.has_status)

    def apply(self, rtype: ResourceType, namespace: str | None, name: str, body: bytes, *, manager: str,
              force: bool = False, subresource: str = "", dry_run: bool = False, strict_fields: bool = False,
              version: str | None = None) -> tuple[dict[str, Any], bool]:
        """Server-side apply; returns (object, created)."""
        try:
            applied = patching.decode_apply_body(body)
        except patching.PatchError as exc:
            raise errors.ApiError(exc.code, _reason(exc.code), str(exc)) from None
        meta = applied.get("metadata") or {}
        if meta.get("name") not in (None, name):
            raise errors.bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the "
                                     f"URL ({name})")
        namespace = namespace if rtype.namespaced else None
        current = self.store.get(self._type_key(rtype), self._key(rtype, namespace, name))
        schema = self.field_schema(rtype, version)
        api_version = rtype.api_version(version)
        try:
            merged = fieldmanager.apply(current, applied, manager, api_version, rfc3339(), schema, force=force,
                                        subresource=subresource, has_status=rtype.has_status)
        except fieldmanager.ApplyConflict as exc:
            message, causes = fieldmanager.conflict_message(exc.conflicts)
            raise errors.ApiError(409, "Conflict", message, details={"causes": causes}) from None
        merged["apiVersion"], merged["kind"] = api_version, rtype.kind
        merged.setdefault("metadata", {})["name"] = name
        if current is None:
            if subresource:
                raise errors.not_found(rtype.plural, name, rtype.group)
            managed = merged["metadata"].get("managedFields")
            created = self.create(rtype, merged, namespace=namespace, dry_run=dry_run, strict_fields=strict_fields,
                                  version=version)
            if managed and not dry_run:
                created = self.mutate(rtype, namespace, name,
                                      lambda o: o["metadata"].__setitem__("managedFields", managed))
            elif managed:
                created["metadata"]["managedFields"] = managed
            return self._view(rtype, created, version), True
        merged["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        new = self._merge_for_update(rtype, current, merged, subresource)
        new["metadata"]["managedFields"] = merged["metadata"].get("managedFields", [])
        if not subresource:
            self._defaults_on_update(rtype, current, new)
        new = self._validate_schema(rtype, new, strict_fields, old=current)
        self._admit(AdmissionRequest("UPDATE", rtype, new, clone(current), dry_run, subresource))
        return self._commit_update(rtype, current, new, dry_run, version), False

    def patch(self, rtype: ResourceType, namespace: str | None, name: str, body: bytes, content_type: str, *,
              subresource: str = "", dry_run: bool = False, strict_fields: bool = False,
              version: str | None = None, manager: str | None = None) -> dict[str, Any]:
        namespace = namespace if rtype.namespaced else None
        current = self.store.get(self._type_key(rtype), self._key(rtype, namespace, name))
        if current is None:
            raise errors.not_found(rtype.plural, name, rtype.group)
        self._view(rtype, current, version)
        try:
            patched = patching.apply_patch(current, body, content_type, rtype.kind, custom=rtype.custom)
        except patching.PatchError as exc:
            raise errors.ApiError(exc.code, _reason(exc.code), str(exc)) from None
        if not isinstance(patched, dict):
            raise errors.bad_request("the patch did not produce an object")
        meta = patched.setdefault("metadata", {})
        if meta.get("name") != name:
            raise errors.bad_request("the name of the object does not match the name on the URL")
        if meta.get("resourceVersion") and meta["resourceVersion"] != current["metadata"]["resourceVersion"]:
            raise errors.conflict(rtype.plural, name, rtype.group)
        new = self._merge_for_update(rtype, current, patched, subresource)
        if not subresource:
            self._defaults_on_update(rtype, current, new)
        new = self._validate_schema(rtype, new, strict_fields, old=current)
        self._admit(AdmissionRequest("UPDATE", rtype, new, clone(current), dry_run, subresource))
        sent = (patched.get("metadata") or {}).get("managedFields") != current["metadata"].get("managedFields")
        self._record(rtype, current, new, manager, subresource, version, sent=sent)
        return self._commit_update(rtype, current, new, dry_run, version)

    def mutate(self, rtype: ResourceType, namespace: str | None, name: str,
               change: Callable[[dict[str, Any]], None], *, subresource: str = "") -> dict[str, Any]:
        """Read-modify-write for in-process controllers (no admission, no conflicts: same loop)."""
        current = self.store.get(self._type_key(rtype), self._key(rtype, namespace, name))
        if current is None:
            raise errors.not_found(rtype.plural, name, rtype.group)
        new = clone(current)
        change(new)
        new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        if subresource != "status" and rtype.has_status:
            # Controllers own status: let a plain mutate write it too.
            merged = self._merge_for_update(rtype, current, new, "")
            merged["status"] = new.get("status", merged.get("status"))
            new = merged
        else:
            new = self._merge_for_update(rtype, current, new, subresource)
        return self._commit_update(rtype, current, new, False, None)

    def delete(self, rtype: ResourceType, namespace: str | None, name: str, *, dry_run: bool = False,
               propagation: str | None = None, preconditions: dict[str, Any] | None = None,
               version: str | None = None) -> dict[str, Any]:
        namespace = namespace if rtype.namespaced else None
        key = self._key(rtype, namespace, name)
        current = self.store.get(self._type_key(rtype), key)
        if current is None:
            raise errors.not_found(rtype.plural, name, rtype.group)
        preconditions = preconditions or {}
        if preconditions.get("uid") and preconditions["uid"] != current["metadata"]["uid"]:
            raise errors.conflict(rtype.plural, name, rtype.group,
                                  f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                                  f"UID in object meta: {current['metadata']['uid']}")
        if preconditions.get("resourceVersion") and \
                preconditions["resourceVersion"] != current["metadata"]["resourceVersion"]:
            raise errors.conflict(rtype.plural, name, rtype.group,
                                  "Precondition failed: ResourceVersion in precondition: "
                                  f"{preconditions['resourceVersion']}, ResourceVersion in object meta: "
                                  f"{current['metadata']['resourceVersion']}")
        if rtype.plural == "namespaces" and not rtype.group and name in PROTECTED_NAMESPACES:
            raise errors.forbidden_resource("namespaces", name, "this namespace may not be deleted")
        self._admit(AdmissionRequest("DELETE", rtype, None, clone(current), dry_run))
        self._view(rtype, current, version)
        if dry_run:
            return current
        is_namespace = rtype.plural == "namespaces" and not rtype.group
        if current["metadata"].get("finalizers") or is_namespace:
            if not current["metadata"].get("deletionTimestamp"):
                new = clone(current)
                new["metadata"]["deletionTimestamp"] = rfc3339()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                if is_namespace:
                    new.setdefault("status", {})["phase"] = "Terminating"
                stored = self.store.put(self._type_key(rtype), key, new, "MODIFIED", current)
                self._schedule_namespace_cleanup(rtype, name)
                return self._view(rtype, stored, version)
            return current
        removed = self.store.remove(self._type_key(rtype), key)
        assert removed is not None
        self._after_delete(rtype, removed, propagation or "Background")
        return self._view(rtype, removed, version)

    # --- internals ----------------------------------------------------------------------------
    def _merge_for_update(self, rtype: ResourceType, current: dict[str, Any], incoming: dict[str, Any],
                          subresource: str) -> dict[str, Any]:
        """Apply the status-subresource rule and keep the fields clients may not change."""
        if subresource == "status":
            new = clone(current)
            new["status"] = clone(incoming.get("status"))
            if new["status"] is None:
                new.pop("status")
            return new
        new = clone(incoming)
        if rtype.has_status:
            if "status" in current:
                new["status"] = clone(current["status"])
            else:
                new.pop("status", None)
        meta, old_meta = new.setdefault("metadata", {}), current["metadata"]
        for field in ("uid", "creationTimestamp", "generation", "namespace", "name"):
            if field in old_meta:
                meta[field] = old_meta[field]
        if old_meta.get("deletionTimestamp"):
            meta["deletionTimestamp"] = old_meta["deletionTimestamp"]
            meta["deletionGracePeriodSeconds"] = old_meta.get("deletionGracePeriodSeconds", 0)
        else:
            meta.pop("deletionTimestamp", None)
        new["apiVersion"], new["kind"] = current["apiVersion"], current["kind"]
        return new

    def _commit_update(self, rtype: ResourceType, current: dict[str, Any], new: dict[str, Any],
                       dry_run: bool, version: str | None) -> dict[str, Any]:
        if _has_generation(rtype) and _spec_changed(rtype, current, new):
            new["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
        key = self._key(rtype, new["metadata"].get("namespace"), new["metadata"]["name"])
        if dry_run:
            return self._view(rtype, new, version)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers") \
                and not (rtype.plural == "namespaces" and not rtype.group):
            self.store.put(self._type_key(rtype), key, new, "MODIFIED", current)
            removed = self.store.remove(self._type_key(rtype), key)
            assert removed is not None
            self._after_delete(rtype, removed, "Background")
            return self._view(rtype, removed, version)
        if _without_rv(new) == _without_rv(current):
            return self._view(rtype, current, version)     # a no-op write keeps the resourceVersion
        stored = self.store.put(self._type_key(rtype), key, new, "MODIFIED", current)
        self._after_write(rtype, stored)
        return self._view(rtype, stored, version)

    def _defaults_on_create(self, rtype: ResourceType, obj: dict[str, Any]) -> None:
        if rtype.custom:
            return
        if rtype.group == "" and rtype.plural == "namespaces":
            obj["status"] = {"phase": "Active"}
        elif rtype.group == "" and rtype.plural == "pods" and "status" not in obj:
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        elif rtype.group == CRD_GROUP and rtype.plural == CRD_PLURAL:
            self._validate_crd(obj)
        defaults.apply(rtype.group, rtype.plural, obj, creating=True)
        if rtype.group == "" and rtype.plural == "services":
            self._services.allocate(obj, self.store.iter_raw(("", "services")))

    def _defaults_on_update(self, rtype: ResourceType, current: dict[str, Any], new: dict[str, Any]) -> None:
        """kube defaults every object it decodes, updates too; a Service keeps what was allocated to it."""
        if rtype.custom:
            return
        defaults.apply(rtype.group, rtype.plural, new, creating=False)
        if rtype.group == "" and rtype.plural == "services":
            defaults.ServiceAllocator.keep_allocated(new, current)

    def _validate_schema(self, rtype: ResourceType, obj: dict[str, Any], strict: bool,
                         old: dict[str, Any] | None = None) -> dict[str, Any]:
        if not rtype.custom:
            return obj
        # Each served version has its own schema; the object arrives in the version the request named.
        version = str(obj.get("apiVersion", "")).rpartition("/")[2] or rtype.storage_version
        schema = rtype.schemas.get(version) or rtype.schemas.get(rtype.storage_version) or {}
        if not schema:
            return obj
        pruned, problems, unknown = crd_schema.validate_custom_object(obj, schema)
        name = obj.get("metadata", {}).get("name", "")
        if strict and unknown:
            raise errors.ApiError(400, "BadRequest", "strict decoding error: " +
                                  ", ".join(f'unknown field "{p.lstrip(".")}"' for p in unknown))
        if problems and old is not None:
            problems = crd_schema.ratchet(problems, old, pruned)
        if problems:
            raise errors.invalid(rtype.kind, name, problems, rtype.group)
        return pruned

    def _validate_crd(self, crd: dict[str, Any]) -> None:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        name = crd["metadata"]["name"]
        problems = []
        if not spec.get("group"):
            problems.append("spec.group: Required value")
        if not names.get("plural") or not names.get("kind"):
            problems.append("spec.names: Required value: plural and kind are required")
        if spec.get("scope") not in ("Namespaced", "Cluster"):
            problems.append(f'spec.scope: Unsupported value: "{spec.get("scope")}": supported values: '
                            '"Cluster", "Namespaced"')
        if not spec.get("versions"):
            problems.append("spec.versions: Invalid value: null: must have exactly one version marked as storage version")
        elif sum(1 for v in spec["versions"] if v.get("storage")) != 1:
            problems.append("spec.versions: Invalid value: must have exactly one version marked as storage version")
        if names.get("plural") and spec.get("group") and name != f"{names['plural']}.{spec['group']}":
            problems.append(f'metadata.name: Invalid value: "{name}": must be spec.names.plural+"."+spec.group')
        if problems:
            raise errors.invalid("CustomResourceDefinition", name, problems, CRD_GROUP)

    def _after_write(self, rtype: ResourceType, obj: dict[str, Any]) -> None:
        if rtype.group == CRD_GROUP and rtype.plural == CRD_PLURAL:
            self._register_crd(obj)

    def _register_crd(self, crd: dict[str, Any]) -> None:
        rtype = type_from_crd(crd)
        existing = self.registry.get(rtype.group, rtype.plural)
        if existing is not None and not existing.custom:
            return
        self.registry.add(rtype)
        self._crds[(rtype.group, rtype.plural)] = crd
        self.sync_api_services()
        conditions = [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": rfc3339()},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": rfc3339()},
        ]
        status = {"conditions": conditions, "acceptedNames": crd["spec"]["names"],
                  "storedVersions": [rtype.storage_version]}
        if (crd.get("status") or {}).get("acceptedNames") != status["acceptedNames"]:
            key = ("", crd["metadata"]["name"])
            current = self.store.get((CRD_GROUP, CRD_PLURAL), key)
            if current is not None:
                new = clone(current)
                new["status"] = status
                self.store.put((CRD_GROUP, CRD_PLURAL), key, new, "MODIFIED", current)

    def _after_delete(self, rtype: ResourceType, removed: dict[str, Any], propagation: str) -> None:
        if rtype.group == CRD_GROUP and rtype.plural == CRD_PLURAL:
            spec = removed["spec"]
            self.registry.remove(spec["group"], spec["names"]["plural"])
            self._crds.pop((spec["group"], spec["names"]["plural"]), None)
            self.store.drop_type((spec["group"], spec["names"]["plural"]))
            self.sync_api_services()
            return
        if rtype.plural == "pods" and not rtype.group:
            self.logs.forget(removed["metadata"].get("namespace", ""), removed["metadata"]["name"])
        self._collect_dependents(removed["metadata"]["uid"], propagation)

    def _collect_dependents(self, owner_uid: str, propagation: str) -> None:
        """The garbage collector: dependents of a deleted owner are deleted (or orphaned)."""
        for type_key in self.store.type_keys():
            rtype = self.registry.get(*type_key)
            if rtype is None:
                continue
            for raw in list(self.store.iter_raw(type_key)):
                refs = raw["metadata"].get("ownerReferences") or []
                if not any(ref.get("uid") == owner_uid for ref in refs):
                    continue
                meta = raw["metadata"]
                if propagation == "Orphan":
                    def drop_ref(obj: dict[str, Any]) -> None:
                        obj["metadata"]["ownerReferences"] = [
                            r for r in obj["metadata"].get("ownerReferences", []) if r.get("uid") != owner_uid]
                    self.mutate(rtype, meta.get("namespace"), meta["name"], drop_ref)
                elif len(refs) == 1:
                    try:
                        self.delete(rtype, meta.get("namespace"), meta["name"], propagation=propagation)
                    except errors.ApiError:
                        pass

    def _schedule_namespace_cleanup(self, rtype: ResourceType, name: str) -> None:
        if rtype.plural == "namespaces" and not rtype.group:
            try:
                asyncio.get_running_loop().call_soon(self.finish_namespace_deletion, name)
            except RuntimeError:
                self.finish_namespace_deletion(name)

    def finish_namespace_deletion(self, name: str) -> bool:
        """The namespace controller: delete the contents; remove the namespace once empty."""
        remaining = 0
        for type_key in self.store.type_keys():
            rtype = self.registry.get(*type_key)
            if rtype is None or not rtype.namespaced:
                continue
            for raw in list(self.store.iter_raw(type_key, name)):
                remaining += 1
                if not raw["metadata"].get("deletionTimestamp"):
                    try:
                        self.delete(rtype, name, raw["metadata"]["name"])
                    except errors.ApiError:
                        pass
        still_there = sum(len(list(self.store.iter_raw(k, name))) for k in self.store.type_keys()
                          if (r := self.registry.get(*k)) is not None and r.namespaced)
        ns_rtype = self.registry.get("", "namespaces")
        assert ns_rtype is not None
        current = self.store.get(("", "namespaces"), ("", name))
        if current is None:
            return True
        if still_there:
            try:
                asyncio.get_running_loop().call_later(0.05, self.finish_namespace_deletion, name)
            except RuntimeError:
                pass
            return False
        if current["metadata"].get("finalizers"):
            return False
        removed = self.store.remove(("", "namespaces"), ("", name))
        return removed is not None

    def lookup(self, group: str, version: str, plural: str) -> ResourceType:
        try:
            return self.registry.lookup(group, version, plural)
        except UnknownResource:
            raise errors.page_not_found() from None


def supported_fields(rtype: ResourceType) -> tuple[str, ...]:
    extra = selectors.EXTRA_FIELDS_BY_KIND.get(rtype.kind, ()) if not rtype.custom else ()
    return tuple(selectors.DEFAULT_FIELDS) + tuple(extra)


def _reason(code: int) -> str:
    return {400: "BadRequest", 409: "Conflict", 415: "UnsupportedMediaType", 422: "Invalid"}.get(code, "BadRequest")


def _without_rv(obj: dict[str, Any]) -> dict[str, Any]:
    clone = dict(obj)
    clone["metadata"] = {k: v for k, v in obj.get("metadata", {}).items() if k != "resourceVersion"}
    return clone


# Built-in kinds whose registry strategy sets metadata.generation (kubernetes pkg/registry/*/strategy.go,
# v1.32: PrepareForCreate sets Generation = 1); Services, Namespaces, Nodes, Pods, PVCs and the like have none.
GENERATION_KINDS = {("apps", "deployments"), ("apps", "daemonsets"), ("apps", "statefulsets"),
                    ("apps", "replicasets"), ("batch", "jobs"), ("batch", "cronjobs"), ("policy", "poddisruptionbudgets"),
                    ("networking.k8s.io", "networkpolicies"), (CRD_GROUP, CRD_PLURAL),
                    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
                    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
                    ("", "replicationcontrollers")}


def _has_generation(rtype: ResourceType) -> bool:
    """Custom resources and the built-in kinds whose strategy counts spec changes track generation."""
    return rtype.custom or (rtype.group, rtype.plural) in GENERATION_KINDS


def _spec_changed(rtype: ResourceType, old: dict[str, Any], new: dict[str, Any]) -> bool:
    """generation counts changes outside metadata (and outside status where status is a subresource)."""
    ignored = {"metadata", "apiVersion", "kind"} | ({"status"} if rtype.has_status else set())
    strip = lambda o: {k: v for k, v in o.items() if k not in ignored}  # noqa: E731
    return strip(old) != strip(new)


class PodLogs:
    """Container logs the simulator's controllers write and `/log` serves (tail, follow)."""

    def __init__(self) -> None:
        self._lines: dict[tuple[str, str, str], list[str]] = {}
        self._waiters: dict[tuple[str, str, str], list[asyncio.Event]] = {}

    def append(self, namespace: str, pod: str, container: str, line: str) -> None:
        key = (namespace, pod, container)
        self._lines.setdefault(key, []).append(line)
        for event in self._waiters.pop(key, []):
            event.set()

    def lines(self, namespace: str, pod: str, container: str) -> list[str]:
        return list(self._lines.get((namespace, pod, container), []))

    def containers(self, namespace: str, pod: str) -> list[str]:
        return [c for (ns, p, c) in self._lines if ns == namespace and p == pod]

    def waiter(self, namespace: str, pod: str, container: str) -> asyncio.Event:
        event = asyncio.Event()
        self._waiters.setdefault((namespace, pod, container), []).append(event)
        return event

    def forget(self, namespace: str, pod: str) -> None:
        for key in [k for k in self._lines if k[0] == namespace and k[1] == pod]:
            self._lines.pop(key, None)
            for event in self._waiters.pop(key, []):
                event.set()
