"""Which kinds the API server serves: built-in Kubernetes kinds plus whatever CRDs register.

Objects are stored once per (group, plural); each served version is a view of the same object
(the `None` conversion strategy of CRDs), which is what the simulator's kinds need.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass
class ResourceType:
    group: str
    versions: tuple[str, ...]          # served versions, preferred (storage) first
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    has_status: bool = False           # a /status subresource exists (status written only through it)
    has_scale: bool = False
    extra_subresources: tuple[str, ...] = ()   # e.g. ("log",) for pods
    printer_columns: list[dict[str, Any]] = field(default_factory=list)   # CRD additionalPrinterColumns
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)      # version -> openAPIV3Schema
    custom: bool = False               # served from a CRD (no strategic merge patch, schema pruning)
    verbs: tuple[str, ...] = ALL_VERBS

    @property
    def storage_version(self) -> str:
        return self.versions[0]

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    def api_version(self, version: str | None = None) -> str:
        version = version or self.storage_version
        return f"{self.group}/{version}" if self.group else version

    def names(self) -> set[str]:
        return {self.plural, self.singular, self.kind.lower(), *self.short_names}


def _builtin(group: str, version: str, kind: str, plural: str, namespaced: bool, *,
             short: tuple[str, ...] = (), status: bool = True, scale: bool = False,
             extra: tuple[str, ...] = (), categories: tuple[str, ...] = (),
             verbs: tuple[str, ...] = ALL_VERBS) -> ResourceType:
    return ResourceType(group=group, versions=(version,), kind=kind, plural=plural,
                        singular=kind.lower(), namespaced=namespaced, short_names=short,
                        has_status=status, has_scale=scale, extra_subresources=extra,
                        categories=categories, verbs=verbs)


def builtin_types() -> list[ResourceType]:
    """The built-in kinds a Harvester cluster's harness and kubectl touch."""
    return [
        _builtin("", "v1", "Namespace", "namespaces", False, short=("ns",), extra=("finalize",)),
        _builtin("", "v1", "Node", "nodes", False, short=("no",)),
        _builtin("", "v1", "Pod", "pods", True, short=("po",), extra=("attach", "exec", "log", "portforward"),
                 categories=("all",)),
        _builtin("", "v1", "Service", "services", True, short=("svc",), categories=("all",)),
        _builtin("", "v1", "Endpoints", "endpoints", True, short=("ep",), status=False),
        _builtin("", "v1", "ConfigMap", "configmaps", True, short=("cm",), status=False),
        _builtin("", "v1", "Secret", "secrets", True, status=False),
        _builtin("", "v1", "ServiceAccount", "serviceaccounts", True, short=("sa",), status=False),
        _builtin("", "v1", "Event", "events", True, short=("ev",), status=False),
        _builtin("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, short=("pvc",)),
        _builtin("", "v1", "PersistentVolume", "persistentvolumes", False, short=("pv",)),
        _builtin("apps", "v1", "Deployment", "deployments", True, short=("deploy",), scale=True,
                 categories=("all",)),
        _builtin("apps", "v1", "DaemonSet", "daemonsets", True, short=("ds",), categories=("all",)),
        _builtin("apps", "v1", "StatefulSet", "statefulsets", True, short=("sts",), scale=True,
                 categories=("all",)),
        _builtin("apps", "v1", "ReplicaSet", "replicasets", True, short=("rs",), scale=True,
                 categories=("all",)),
        _builtin("batch", "v1", "Job", "jobs", True, categories=("all",)),
        _builtin("events.k8s.io", "v1", "Event", "events", True, short=("ev",), status=False),
        _builtin("coordination.k8s.io", "v1", "Lease", "leases", True, status=False),
        _builtin("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, short=("sc",),
                 status=False),
        _builtin("storage.k8s.io", "v1", "CSIDriver", "csidrivers", False, status=False),
        _builtin("storage.k8s.io", "v1", "VolumeAttachment", "volumeattachments", False),
        _builtin("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False, status=False),
        _builtin("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False,
                 status=False),
        _builtin("rbac.authorization.k8s.io", "v1", "Role", "roles", True, status=False),
        _builtin("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True, status=False),
        _builtin("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration",
                 "validatingwebhookconfigurations", False, status=False),
        _builtin("admissionregistration.k8s.io", "v1", "MutatingWebhookConfiguration",
                 "mutatingwebhookconfigurations", False, status=False),
        _builtin("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
                 False, short=("crd", "crds")),
        _builtin("apiregistration.k8s.io", "v1", "APIService", "apiservices", False,
                 categories=("api-extensions",)),
        # Further kinds every kube-apiserver serves, which QA's kubectl creates (`create quota`, `create ingress`).
        _builtin("", "v1", "ResourceQuota", "resourcequotas", True, short=("quota",)),
        _builtin("", "v1", "LimitRange", "limitranges", True, short=("limits",), status=False),
        _builtin("", "v1", "PodTemplate", "podtemplates", True, status=False),
        _builtin("", "v1", "ReplicationController", "replicationcontrollers", True, short=("rc",), scale=True,
                 categories=("all",)),
        _builtin("batch", "v1", "CronJob", "cronjobs", True, short=("cj",), categories=("all",)),
        _builtin("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True, short=("hpa",),
                 categories=("all",)),
        _builtin("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", True, short=("pdb",)),
        _builtin("networking.k8s.io", "v1", "Ingress", "ingresses", True, short=("ing",)),
        _builtin("networking.k8s.io", "v1", "IngressClass", "ingressclasses", False, status=False),
        _builtin("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", True, short=("netpol",),
                 status=False),
        _builtin("scheduling.k8s.io", "v1", "PriorityClass", "priorityclasses", False, short=("pc",), status=False),
        _builtin("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", True, status=False),
        _builtin("node.k8s.io", "v1", "RuntimeClass", "runtimeclasses", False, status=False),
    ]


class UnknownResource(LookupError):
    pass


class Registry:
    """The served kinds, addressable by (group, version, plural) as URLs name them."""

    def __init__(self) -> None:
        from .reviews import review_types

        self._types: dict[tuple[str, str], ResourceType] = {}
        for rtype in builtin_types() + review_types():
            self.add(rtype)

    def add(self, rtype: ResourceType) -> None:
        self._types[(rtype.group, rtype.plural)] = rtype

    def remove(self, group: str, plural: str) -> ResourceType | None:
        return self._types.pop((group, plural), None)

    def get(self, group: str, plural: str) -> ResourceType | None:
        return self._types.get((group, plural))

    def lookup(self, group: str, version: str, plural: str) -> ResourceType:
        rtype = self._types.get((group, plural))
        if rtype is None or version not in rtype.versions:
            raise UnknownResource(f"{group}/{version}/{plural}")
        return rtype

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        for rtype in self._types.values():
            if rtype.group == group and rtype.kind == kind and version in rtype.versions:
                return rtype
        return None

    def all(self) -> list[ResourceType]:
        return list(self._types.values())

    def groups(self) -> dict[str, list[str]]:
        """group -> served versions (preferred first), the core group excluded."""
        groups: dict[str, list[str]] = {}
        for rtype in self._types.values():
            if not rtype.group:
                continue
            versions = groups.setdefault(rtype.group, [])
            for version in rtype.versions:
                if version not in versions:
                    versions.append(version)
        for versions in groups.values():
            versions.sort(key=_version_priority)
        return groups

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [t for t in self._types.values() if t.group == group and version in t.versions]


def _version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes version priority: GA > beta > alpha, higher numbers first."""
    import re

    match = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not match:
        return (3, 0, 0)
    major, stage, minor = int(match[1]), match[2], int(match[3] or 0)
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -major, -minor)


def type_from_crd(crd: dict[str, Any]) -> ResourceType:
    """Build a served kind from a CustomResourceDefinition (apiextensions.k8s.io/v1)."""
    spec = crd["spec"]
    names = spec["names"]
    served = [v for v in spec["versions"] if v.get("served", True)]
    storage = [v for v in served if v.get("storage")]
    ordered = storage + [v for v in served if not v.get("storage")]
    first = ordered[0] if ordered else spec["versions"][0]
    subresources = first.get("subresources") or {}
    return ResourceType(
        group=spec["group"],
        versions=tuple(v["name"] for v in ordered),
        kind=names["kind"],
        plural=names["plural"],
        singular=names.get("singular") or names["kind"].lower(),
        namespaced=spec["scope"] == "Namespaced",
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        has_status="status" in subresources,
        has_scale="scale" in subresources,
        printer_columns=list(first.get("additionalPrinterColumns") or []),
        schemas={v["name"]: (v.get("schema") or {}).get("openAPIV3Schema") or {} for v in ordered},
        custom=True,
    )


def printer_columns_for(rtype: ResourceType, version: str, crd: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Printer columns of one served version (CRDs may declare them per version)."""
    if crd is None:
        return rtype.printer_columns
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return list(v.get("additionalPrinterColumns") or [])
    return rtype.printer_columns
