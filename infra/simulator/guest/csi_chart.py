"""harvester-csi-driver chart 0.1.21, 0.1.22 and 0.1.23, as harvester/charts tags render them
(docs/harvester-facts.md §3.1).

All three ship appVersion v0.2.2 and the same values. 0.1.21 -> 0.1.22 changed only Chart.yaml;
0.1.23 adds to the controller Deployment a REQUIRED node affinity to control-plane nodes (the RKE1
and the RKE2 role label, either one) and a PREFERRED pod anti-affinity on kubernetes.io/hostname.
So on 0.1.23 the three controller replicas can only run on control-plane nodes, and stay Pending
where no node carries either label.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .catalog import ChartVersion, Release, RenderedObject

CHART = "harvester-csi-driver"
APP_VERSION = "v0.2.2"
VERSIONS = ("0.1.21", "0.1.22", "0.1.23")
CONTROL_PLANE_AFFINITY_FROM = "0.1.23"
DRIVER = "driver.harvesterhci.io"

Obj = dict[str, Any]


def default_values() -> Obj:
    return {
        "replicasCount": 3,
        "image": {
            "harvester": {"csiDriver": {"repository": "rancher/harvester-csi-driver", "tag": APP_VERSION}},
            "csi": {
                "nodeDriverRegistrar": {"repository": "rancher/mirrored-longhornio-csi-node-driver-registrar",
                                        "tag": "v2.3.0"},
                "resizer": {"repository": "rancher/mirrored-longhornio-csi-resizer", "tag": "v1.2.0"},
                "provisioner": {"repository": "rancher/mirrored-longhornio-csi-provisioner", "tag": "v2.1.2"},
                "attacher": {"repository": "rancher/mirrored-longhornio-csi-attacher", "tag": "v3.2.1"},
            },
            "pullPolicy": "IfNotPresent",
        },
        "nameOverride": "",
        "fullnameOverride": "",
        "hostStorageClass": "",
        "kubeletRootDir": "/var/lib/kubelet",
        "cloudConfig": {"secretName": "", "hostPath": "/var/lib/rancher/rke2/etc/config-files/"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [
            {"effect": "NoSchedule", "key": "kubevirt.io/drain", "operator": "Exists"},
            {"effect": "NoSchedule", "key": "node-role.kubernetes.io/control-plane", "operator": "Equal"},
            {"effect": "NoExecute", "key": "node-role.kubernetes.io/etcd", "operator": "Equal"},
            {"key": "cattle.io/os", "operator": "Equal", "value": "linux", "effect": "NoSchedule"},
        ],
        "global": {"cattle": {"systemDefaultRegistry": ""}},
    }


def has_control_plane_affinity(version: str) -> bool:
    return tuple(int(p) for p in version.split(".")) >= tuple(int(p) for p in CONTROL_PLANE_AFFINITY_FROM.split("."))


def _image(values: Obj, ref: Obj) -> str:
    registry = values["global"]["cattle"].get("systemDefaultRegistry") or ""
    return f"{registry + '/' if registry else ''}{ref['repository']}:{ref['tag']}"


def render(chart: "ChartVersion", release: "Release", values: Obj) -> list["RenderedObject"]:
    from .catalog import RenderedObject

    name = (values.get("nameOverride") or CHART)[:63].rstrip("-")
    selector = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": release.name}
    labels = {"helm.sh/chart": f"{CHART}-{chart.version}", **selector, "app.kubernetes.io/version": APP_VERSION}
    ns = release.namespace
    root = values["kubeletRootDir"]
    socket_dir = f"{root}/harvester-plugins/{DRIVER}"
    pull = values["image"]["pullPolicy"]
    csi = values["image"]["csi"]

    def sidecar(container: str, ref: Obj, extra: list[str]) -> Obj:
        return {
            "name": container, "image": _image(values, ref), "imagePullPolicy": pull,
            "args": ["--v=5", "--csi-address=$(ADDRESS)", "--timeout=1m50s", "--leader-election",
                     "--leader-election-namespace=$(POD_NAMESPACE)", *extra],
            "env": [{"name": "ADDRESS", "value": "/csi/csi.sock"},
                    {"name": "POD_NAMESPACE",
                     "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}}],
            "volumeMounts": [{"mountPath": "/csi/", "name": "socket-dir"}],
        }

    controller_spec: Obj = {
        "containers": [sidecar("csi-resizer", csi["resizer"], []),
                       sidecar("csi-provisioner", csi["provisioner"], ["--default-fstype=ext4"]),
                       sidecar("csi-attacher", csi["attacher"], [])],
        "serviceAccountName": name,
        "volumes": [{"name": "socket-dir", "hostPath": {"path": socket_dir, "type": "DirectoryOrCreate"}}],
    }
    if values.get("nodeSelector"):
        controller_spec["nodeSelector"] = dict(values["nodeSelector"])
    if values.get("tolerations"):
        controller_spec["tolerations"] = [dict(t) for t in values["tolerations"]]
    if has_control_plane_affinity(chart.version):
        controller_spec["affinity"] = {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "node-role.kubernetes.io/controlplane", "operator": "Exists"}]},
                {"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]},
            ]}},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 100,
                "podAffinityTerm": {
                    "labelSelector": {"matchExpressions": [
                        {"key": "app.kubernetes.io/name", "operator": "In", "values": [CHART]},
                        {"key": "component", "operator": "In", "values": ["csi-controllers"]}]},
                    "topologyKey": "kubernetes.io/hostname"},
            }]},
        }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": f"{name}-controllers", "namespace": ns, "labels": dict(labels)},
        "spec": {
            "replicas": values["replicasCount"],
            "selector": {"matchLabels": {"component": "csi-controllers", **selector}},
            "template": {"metadata": {"labels": {"component": "csi-controllers", **selector}},
                         "spec": controller_spec},
        },
    }

    plugin_spec: Obj = {
        "containers": [
            {"name": "node-driver-registrar", "image": _image(values, csi["nodeDriverRegistrar"]),
             "imagePullPolicy": pull,
             "args": ["--v=5", "--csi-address=$(ADDRESS)",
                      f"--kubelet-registration-path={socket_dir}/csi.sock"],
             "env": [{"name": "ADDRESS", "value": "/csi/csi.sock"}],
             "securityContext": {"privileged": True},
             "volumeMounts": [{"mountPath": "/csi/", "name": "socket-dir"},
                              {"mountPath": "/registration", "name": "registration-dir"}]},
            {"name": "harvester-csi-driver", "image": _image(values, values["image"]["harvester"]["csiDriver"]),
             "imagePullPolicy": pull,
             "args": ["--nodeid=$(NODE_ID)", "--endpoint=$(CSI_ENDPOINT)",
                      "--kubeconfig=/var/lib/harvester/cloud-provider-config",
                      *([f"--host-storage-class={values['hostStorageClass']}"] if values.get("hostStorageClass")
                        else [])],
             "env": [{"name": "NODE_ID", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}},
                     {"name": "CSI_ENDPOINT", "value": "unix:///csi/csi.sock"}],
             "securityContext": {"allowPrivilegeEscalation": True, "privileged": True,
                                 "capabilities": {"add": ["SYS_ADMIN"]}},
             "volumeMounts": [{"name": "cloud-config", "readOnly": True, "mountPath": "/var/lib/harvester"},
                              {"name": "socket-dir", "mountPath": "/csi/"},
                              {"name": "pods-mount-dir", "mountPath": f"{root}/pods",
                               "mountPropagation": "Bidirectional"}]},
        ],
        "hostPID": True,
        "serviceAccountName": name,
        "volumes": [
            {"name": "cloud-config",
             **({"secret": {"secretName": values["cloudConfig"]["secretName"]}} if values["cloudConfig"].get("secretName")
                else {"hostPath": {"path": values["cloudConfig"]["hostPath"], "type": "DirectoryOrCreate"}})},
            {"name": "registration-dir", "hostPath": {"path": f"{root}/plugins_registry", "type": "Directory"}},
            {"name": "socket-dir", "hostPath": {"path": socket_dir, "type": "DirectoryOrCreate"}},
            {"name": "pods-mount-dir", "hostPath": {"path": f"{root}/pods", "type": "DirectoryOrCreate"}},
        ],
    }
    if values.get("nodeSelector"):
        plugin_spec["nodeSelector"] = dict(values["nodeSelector"])
    if values.get("tolerations"):
        plugin_spec["tolerations"] = [dict(t) for t in values["tolerations"]]
    daemonset = {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": ns, "labels": dict(labels)},
        "spec": {"selector": {"matchLabels": {"component": "csi-driver", **selector}},
                 "template": {"metadata": {"labels": {"component": "csi-driver", **selector}}, "spec": plugin_spec}},
    }

    def rules(*entries: tuple[list[str], list[str], list[str]]) -> list[Obj]:
        return [{"apiGroups": g, "resources": r, "verbs": v} for g, r, v in entries]

    rw = ["get", "list", "watch", "create", "update", "patch", "delete"]
    cluster_role = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": name, "labels": dict(labels)},
        "rules": rules(
            (["coordination.k8s.io"], ["leases"], ["get", "watch", "list", "delete", "update", "create"]),
            (["storage.k8s.io"], ["csistoragecapacities"], rw),
            ([""], ["persistentvolumes"], rw), ([""], ["persistentvolumeclaims"], rw),
            ([""], ["persistentvolumeclaims/status"], ["patch"]),
            (["storage.k8s.io"], ["storageclasses"], ["get", "list", "watch"]),
            (["snapshot.storage.k8s.io"], ["volumesnapshots"], ["get", "list"]),
            (["snapshot.storage.k8s.io"], ["volumesnapshotcontents"], ["get", "list"]),
            (["storage.k8s.io"], ["csinodes"], ["get", "list", "watch"]),
            ([""], ["events"], ["list", "watch", "create", "update", "patch"]),
            ([""], ["pods"], ["get", "list", "watch"]), (["apps"], ["replicasets"], ["get"]),
            ([""], ["nodes"], ["get", "list", "watch"]),
            (["storage.k8s.io"], ["volumeattachments"], ["get", "list", "watch", "patch"]),
            (["storage.k8s.io"], ["volumeattachments/status"], ["patch"])),
    }
    return [
        RenderedObject(f"{CHART}/templates/rbac.yaml", {
            "apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": ns, "labels": dict(labels)}}),
        RenderedObject(f"{CHART}/templates/rbac.yaml", cluster_role),
        RenderedObject(f"{CHART}/templates/rbac.yaml", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "labels": dict(labels)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]}),
        RenderedObject(f"{CHART}/templates/csidriver.yaml", {
            "apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver", "metadata": {"name": DRIVER},
            "spec": {"attachRequired": True, "fsGroupPolicy": "ReadWriteOnceWithFSType", "podInfoOnMount": True,
                     "volumeLifecycleModes": ["Persistent"]}}),
        RenderedObject(f"{CHART}/templates/storageclass.yaml", {
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": "harvester", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "allowVolumeExpansion": True, "provisioner": DRIVER, "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate"}),
        RenderedObject(f"{CHART}/templates/daemonset.yaml", daemonset),
        RenderedObject(f"{CHART}/templates/deployment.yaml", deployment),
    ]
