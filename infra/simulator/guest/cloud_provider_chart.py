"""harvester-cloud-provider chart 0.2.8 and 0.2.9 with its kube-vip sub-chart 0.6.4 (docs/harvester-facts.md §2.4).

Both ship appVersion v0.2.4. 0.2.8 -> 0.2.9 (commit 878cbc1) changes Chart.yaml's rancher-version
annotation and prefixes the kube-vip image with `global.cattle.systemDefaultRegistry`; with an empty
registry the two render the same pods, so upgrading rolls nothing but the release record.
`--cluster-name` comes from `global.cattle.clusterName` (Rancher sets it); without it the cloud
provider uses the cloud-provider library's default name "kubernetes".
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .catalog import ChartVersion, Release, RenderedObject

CHART = "harvester-cloud-provider"
APP_VERSION = "v0.2.4"
VERSIONS = ("0.2.8", "0.2.9")
KUBE_VIP_CHART_VERSION = "0.6.4"
KUBE_VIP_APP_VERSION = "v0.8.4"
REGISTRY_ON_KUBE_VIP_FROM = "0.2.9"
DEFAULT_CLUSTER_NAME = "kubernetes"     # k8s.io/cloud-provider's --cluster-name default

Obj = dict[str, Any]

_CONTROL_PLANE_TERMS = [
    {"matchExpressions": [{"key": "node-role.kubernetes.io/controlplane", "operator": "Exists"}]},
    {"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]},
]


def default_values() -> Obj:
    return {
        "replicasCount": 1,
        "image": {"repository": "rancher/harvester-cloud-provider", "pullPolicy": "IfNotPresent", "tag": APP_VERSION},
        "cloudConfigPath": "/etc/kubernetes/cloud-config",
        "imagePullSecrets": [], "nameOverride": "", "fullnameOverride": "",
        "serviceAccount": {"annotations": {}, "name": ""},
        "resources": {},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [
            {"effect": "NoSchedule", "key": "node.cloudprovider.kubernetes.io/uninitialized", "operator": "Equal",
             "value": "true"},
            {"effect": "NoSchedule", "key": "node-role.kubernetes.io/control-plane", "operator": "Equal"},
            {"effect": "NoExecute", "key": "node-role.kubernetes.io/etcd", "operator": "Equal"},
            {"key": "cattle.io/os", "operator": "Equal", "value": "linux", "effect": "NoSchedule"},
        ],
        "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchExpressions": [
                {"key": "app.kubernetes.io/name", "operator": "In", "values": [CHART]}]},
            "topologyKey": "kubernetes.io/hostname"}]}},
        "global": {"cattle": {"systemDefaultRegistry": "", "clusterName": ""}},
        "kube-vip": {
            "enabled": True,
            "image": {"repository": "rancher/mirrored-kube-vip-kube-vip-iptables", "pullPolicy": "IfNotPresent",
                      "tag": "v0.8.7"},
            "config": {"address": ""},
            "env": {"vip_interface": "", "vip_arp": "true", "lb_enable": "true", "lb_port": "6443", "vip_cidr": "32",
                    "cp_enable": "false", "svc_enable": "true", "svc_election": "false",
                    "vip_leaderelection": "false", "enable_service_security": "true"},
            "extraArgs": {}, "nameOverride": "",
            "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}},
            "resources": {}, "nodeSelector": {},
            "tolerations": [
                {"effect": "NoSchedule", "key": "node-role.kubernetes.io/control-plane", "operator": "Exists"},
                {"effect": "NoExecute", "key": "node-role.kubernetes.io/etcd", "operator": "Exists"},
            ],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [dict(t) for t in _CONTROL_PLANE_TERMS]}}},
            "priorityClassName": "",
        },
    }


def kube_vip_uses_registry(version: str) -> bool:
    return tuple(int(p) for p in version.split(".")) >= tuple(int(p) for p in REGISTRY_ON_KUBE_VIP_FROM.split("."))


def render(chart: "ChartVersion", release: "Release", values: Obj) -> list["RenderedObject"]:
    from .catalog import RenderedObject

    name = (values.get("nameOverride") or CHART)[:63].rstrip("-")
    selector = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": release.name}
    labels = {"helm.sh/chart": f"{CHART}-{chart.version}", **selector, "app.kubernetes.io/version": APP_VERSION}
    ns = release.namespace
    cattle = values["global"]["cattle"]
    registry = (cattle.get("systemDefaultRegistry") or "") + ("/" if cattle.get("systemDefaultRegistry") else "")
    args = ["--cloud-config=/etc/kubernetes/cloud-config"]
    if cattle.get("clusterName"):
        args.append(f"--cluster-name={cattle['clusterName']}")
    pod_spec: Obj = {
        "serviceAccountName": name,
        "hostNetwork": True,
        "containers": [{
            "name": name, "image": f"{registry}{values['image']['repository']}:{values['image']['tag']}",
            "imagePullPolicy": values["image"]["pullPolicy"], "args": args, "command": [CHART],
            "resources": dict(values.get("resources") or {}),
            "volumeMounts": [{"mountPath": "/etc/kubernetes/cloud-config", "name": "cloud-config"}],
        }],
        "volumes": [{"name": "cloud-config", "hostPath": {"path": values["cloudConfigPath"], "type": "File"}}],
    }
    for key in ("nodeSelector", "affinity", "tolerations"):
        if values.get(key):
            pod_spec[key] = values[key]
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": dict(labels)},
        "spec": {"replicas": values["replicasCount"], "selector": {"matchLabels": dict(selector)},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                 "template": {"metadata": {"labels": dict(selector)}, "spec": pod_spec}},
    }
    objects = [
        RenderedObject(f"{CHART}/templates/rbac.yaml", {
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": ns, "labels": dict(labels)}}),
        RenderedObject(f"{CHART}/templates/rbac.yaml", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name},
            "rules": [{"apiGroups": [""], "resources": ["services", "nodes", "events"],
                       "verbs": ["get", "watch", "list", "update", "create", "patch"]},
                      {"apiGroups": [""], "resources": ["nodes/status", "services/status"],
                       "verbs": ["update", "patch"]},
                      {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                       "verbs": ["get", "update", "create"]}]}),
        RenderedObject(f"{CHART}/templates/rbac.yaml", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": dict(labels)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]}),
        RenderedObject(f"{CHART}/templates/deployment.yaml", deployment),
    ]
    if values["kube-vip"].get("enabled"):
        objects += _kube_vip(chart, release, values, registry)
    return objects


def _kube_vip(chart: "ChartVersion", release: "Release", values: Obj, registry: str) -> list["RenderedObject"]:
    from .catalog import RenderedObject

    sub = values["kube-vip"]
    name = (sub.get("nameOverride") or "kube-vip")[:63].rstrip("-")
    selector = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": release.name}
    labels = {"helm.sh/chart": f"kube-vip-{KUBE_VIP_CHART_VERSION}", **selector,
              "app.kubernetes.io/version": KUBE_VIP_APP_VERSION, "app.kubernetes.io/managed-by": "Helm"}
    source = f"{CHART}/charts/kube-vip/templates"
    ns = release.namespace
    image_registry = registry if kube_vip_uses_registry(chart.version) else ""
    env = [{"name": key, "value": str(sub["env"][key])} for key in sorted(sub.get("env") or {})]
    if str((sub.get("env") or {}).get("cp_enable", "false")).lower() in ("true", "1"):
        env.insert(0, {"name": "vip_address", "value": sub["config"]["address"]})
    pod_spec: Obj = {
        "containers": [{
            "name": "kube-vip", "args": ["manager", *(f"--{k}={v}" for k, v in sorted(sub.get("extraArgs", {}).items()))],
            "env": env,
            "image": f"{image_registry}{sub['image']['repository']}:{sub['image'].get('tag') or KUBE_VIP_APP_VERSION}",
            "imagePullPolicy": sub["image"]["pullPolicy"], "resources": dict(sub.get("resources") or {}),
            "securityContext": sub.get("securityContext") or {},
        }],
        "hostNetwork": True,
        "serviceAccountName": name,
    }
    for key in ("nodeSelector", "tolerations", "affinity"):
        if sub.get(key):
            pod_spec[key] = sub[key]
    if sub.get("priorityClassName"):
        pod_spec["priorityClassName"] = sub["priorityClassName"]
    return [
        RenderedObject(f"{source}/rbac.yaml", {
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": ns, "labels": dict(labels)}}),
        RenderedObject(f"{source}/rbac.yaml", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
            "rules": [{"apiGroups": [""], "resources": ["services", "services/status", "nodes", "endpoints"],
                       "verbs": ["list", "get", "watch", "update"]},
                      {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                       "verbs": ["list", "get", "watch", "update", "create"]}]}),
        RenderedObject(f"{source}/rbac.yaml", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": dict(labels)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]}),
        RenderedObject(f"{source}/daemonset.yaml", {
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"matchLabels": dict(selector)},
                     "template": {"metadata": {"labels": dict(selector)}, "spec": pod_spec}}}),
    ]
