"""After uninstalling a chart, is anything of it left in the guest? List it if so.

An object counts as the chart's when Helm marked it as the release's (`meta.helm.sh/release-name`
annotation, `app.kubernetes.io/instance` label), when it is one of the names the chart is known to
create (`ChartFootprint`: the CSI driver's StorageClass `harvester` and CSIDriver
`driver.harvesterhci.io` are cluster-wide and outlive a namespace), or when it is one of the
release's Helm records. Checked kinds: Deployments, DaemonSets, StatefulSets, Pods, StorageClasses,
CSIDrivers, ServiceAccounts, ClusterRoles, ClusterRoleBindings, Roles, RoleBindings, Services,
ConfigMaps, admission webhooks, and Secrets.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import tenacity

from infra.kube import Kube, NotFound
from infra.waits.budget import Budget

Obj = dict[str, Any]

AUDITED_KINDS: tuple[tuple[str, str], ...] = (
    ("apps/v1", "Deployment"), ("apps/v1", "DaemonSet"), ("apps/v1", "StatefulSet"), ("v1", "Pod"),
    ("storage.k8s.io/v1", "StorageClass"), ("storage.k8s.io/v1", "CSIDriver"), ("v1", "ServiceAccount"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"), ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io/v1", "Role"), ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("v1", "Service"), ("v1", "ConfigMap"),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
    ("v1", "Secret"),
)


@dataclass(frozen=True)
class ChartFootprint:
    """Objects a chart version is known to create, by (kind, name), from the chart's templates."""

    chart: str
    names: frozenset[tuple[str, str]]


FOOTPRINTS = {
    "harvester-csi-driver": ChartFootprint("harvester-csi-driver", frozenset({
        ("Deployment", "harvester-csi-driver-controllers"), ("DaemonSet", "harvester-csi-driver"),
        ("StorageClass", "harvester"), ("CSIDriver", "driver.harvesterhci.io"),
        ("ServiceAccount", "harvester-csi-driver"), ("ClusterRole", "harvester-csi-driver"),
        ("ClusterRoleBinding", "harvester-csi-driver")})),
    "harvester-cloud-provider": ChartFootprint("harvester-cloud-provider", frozenset({
        ("Deployment", "harvester-cloud-provider"), ("DaemonSet", "kube-vip"),
        ("ServiceAccount", "harvester-cloud-provider"), ("ClusterRole", "harvester-cloud-provider"),
        ("ClusterRoleBinding", "harvester-cloud-provider"), ("ServiceAccount", "kube-vip"),
        ("ClusterRole", "kube-vip"), ("ClusterRoleBinding", "kube-vip")})),
}


@dataclass(frozen=True)
class Leftover:
    kind: str
    namespace: str
    name: str
    why: str

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.kind} {where}{self.name} ({self.why})"


@dataclass
class ChartLeftovers(AssertionError):
    release: str
    leftovers: list[Leftover]
    evidence: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return (f"uninstalling {self.release} left {len(self.leftovers)} object(s) behind: "
                + "; ".join(str(x) for x in self.leftovers))


def _why(obj: Obj, kind: str, release: str, namespace: str, footprint: ChartFootprint | None) -> str | None:
    meta = obj["metadata"]
    annotations, labels = meta.get("annotations") or {}, meta.get("labels") or {}
    if annotations.get("meta.helm.sh/release-name") == release and \
            annotations.get("meta.helm.sh/release-namespace", namespace) == namespace:
        policy = annotations.get("helm.sh/resource-policy")
        return "Helm release object" + (f", helm.sh/resource-policy: {policy}" if policy else "")
    if labels.get("app.kubernetes.io/instance") == release:
        return f"labelled app.kubernetes.io/instance={release}"
    if kind == "Secret" and obj.get("type") == "helm.sh/release.v1" and labels.get("name") == release:
        return "Helm release record"
    if footprint is not None and (kind, meta["name"]) in footprint.names:
        return f"created by the {footprint.chart} chart"
    return None


def chart_leftovers(kube: Kube, release: str, namespace: str = "kube-system", chart: str | None = None) -> list[Leftover]:
    footprint = FOOTPRINTS.get(chart or release)
    found = []
    for api_version, kind in AUDITED_KINDS:
        try:
            objects = kube.list(api_version, kind)
        except NotFound:
            continue                      # a kind this cluster does not serve holds nothing
        for obj in objects:
            if obj["metadata"].get("deletionTimestamp") and kind == "Pod":
                continue
            why = _why(obj, kind, release, namespace, footprint)
            if why is not None:
                found.append(Leftover(kind, obj["metadata"].get("namespace", ""), obj["metadata"]["name"], why))
    return found


def assert_chart_gone(kube: Kube, release: str, budget: Budget, namespace: str = "kube-system",
                      chart: str | None = None) -> None:
    """Wait (within the budget) for everything of the release to go; fail listing what stayed."""
    def remaining() -> list[Leftover]:
        return chart_leftovers(kube, release, namespace, chart)

    try:
        tenacity.Retrying(retry=tenacity.retry_if_result(bool), wait=tenacity.wait_fixed(0.5),
                          stop=tenacity.stop_after_delay(budget.seconds))(remaining)
    except tenacity.RetryError as exc:
        leftovers = exc.last_attempt.result()
        raise ChartLeftovers(release, leftovers, evidence={
            "leftovers": [str(x) for x in leftovers],
            "budget": f"{budget} ran out with these still present"}) from None
