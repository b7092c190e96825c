"""The objects a healthy Harvester cluster of one version starts with.

Names, labels and annotations follow `docs/harvester-facts.md` (§1.3-§1.5, §3.1). Everything is
deterministic for a given (version, node_count, now): machine names, UIDs and pod suffixes are
hashes of stable names, so reruns produce the same cluster. Node addresses are TEST-NET-1
(192.0.2.0/24, RFC 5737) documentation addresses: nothing ever connects to them.
Version CRs are not seeded (tests create them, see `HarvesterVersion.version_manifest`).
"""
from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

from . import chart_repo
from .helm_storage import release_secret
from .versions import HarvesterVersion

FLEET_LOCAL = "fleet-local"
LOCAL_CLUSTER = "local"
HARVESTER_SYSTEM = "harvester-system"
CLUSTER_AGE = timedelta(days=3)          # how long before `now` the seeded cluster was installed
POD_CIDR_PREFIX = "10.52"                # Harvester's default cluster_pod_cidr 10.52.0.0/16
NODE_IP_BASE = 10                        # harvester-node-i gets 192.0.2.(10 + i)

NAMESPACES = (
    "default", "kube-system", "kube-public", "harvester-system", "cattle-system", "fleet-local",
    "fleet-default", "longhorn-system", "cattle-fleet-system", "cattle-fleet-local-system",
    "cattle-monitoring-system", "cattle-logging-system",
)

_UID_NAMESPACE = uuid.UUID("6f1b2c7e-3a51-4d6a-9a47-0c1f7e2b9d10")   # fixed so UIDs are reproducible
_POD_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"                 # what Kubernetes uses for names
_NO_GENERATION = {"Namespace", "Node", "Pod", "Secret"}                # kinds the API server gives no generation


# ---- deterministic identifiers ---------------------------------------------------------------

def _digest(*parts: str) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


def _uid(*parts: str) -> str:
    return str(uuid.uuid5(_UID_NAMESPACE, "/".join(parts)))


def _name_suffix(length: int, *parts: str) -> str:
    number = int(_digest(*parts), 16)
    chars = []
    for _ in range(length):
        number, index = divmod(number, len(_POD_SUFFIX_ALPHABET))
        chars.append(_POD_SUFFIX_ALPHABET[index])
    return "".join(chars)


DEFAULT_NODE_PREFIX = "harvester-node"


def node_names(node_count: int, prefix: str = DEFAULT_NODE_PREFIX) -> list[str]:
    """The nodes' hostnames, as the installer's os.hostname set them: `<prefix>-0`, `<prefix>-1`, ..."""
    return [f"{prefix}-{i}" for i in range(node_count)]


def machine_name_for(node_name: str) -> str:
    """CAPI Machine name of a node: `custom-<12 hex>`, derived from the node name."""
    return "custom-" + _digest("machine", node_name)[:12]


def node_internal_ip(index: int) -> str:
    return f"192.0.2.{NODE_IP_BASE + index}"


def _ts(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(name: str, namespace: str | None = None, *, labels: dict[str, str] | None = None,
          annotations: dict[str, str] | None = None, created: datetime, kind: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "uid": _uid(kind, namespace or "", name),
                            "creationTimestamp": _ts(created)}
    if kind not in _NO_GENERATION:
        meta["generation"] = 1
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = dict(labels or {})
    meta["annotations"] = dict(annotations or {})
    return meta


def _condition(ctype: str, status: str, at: datetime, reason: str = "", message: str = "",
               *, heartbeat: bool = False, probe: bool = False) -> dict[str, Any]:
    cond: dict[str, Any] = {"type": ctype, "status": status, "lastTransitionTime": _ts(at)}
    if heartbeat:
        cond["lastHeartbeatTime"] = _ts(at)
    if probe:
        cond["lastProbeTime"] = None
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


# ---- the cluster ------------------------------------------------------------------------------

def initial_objects(version: HarvesterVersion, *, node_count: int = 3, now: datetime,
                    node_prefix: str = DEFAULT_NODE_PREFIX,
                    names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Full Kubernetes objects (apiVersion, kind, metadata, spec, status) of a healthy cluster.

    `names` gives the nodes' exact hostnames (a real machine's); otherwise `<node_prefix>-<i>`."""
    nodes = list(names) if names is not None else node_names(node_count, node_prefix)
    if len(nodes) < 1:
        raise ValueError(f"node_count must be at least 1, got {len(nodes)}")
    if len(set(nodes)) != len(nodes):
        raise ValueError(f"node names must differ: {nodes}")
    if now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    installed = now - CLUSTER_AGE

    objects: list[dict[str, Any]] = [namespace(ns, installed) for ns in NAMESPACES]
    for index, node in enumerate(nodes):
        objects.append(node_object(version, index, node, installed, now))
    objects.append(capi_cluster(installed))
    objects.append(provisioning_cluster(version, installed))
    for index, node in enumerate(nodes):
        objects.append(capi_machine(version, index, node, installed))
        objects.append(machine_plan_secret(node, installed))
    objects.extend(harvester_settings(version, installed))
    objects.append(rancher_setting("server-version", version.rancher_version, installed))
    objects.extend(managed_charts(version, installed))
    objects.extend(helm_releases(version, installed))
    objects.extend(fleet_crds(version, installed))
    objects.extend(workloads(version, nodes, installed))
    return objects


def namespace(name: str, created: datetime) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": _meta(name, labels={"kubernetes.io/metadata.name": name}, created=created,
                              kind="Namespace"),
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def node_info(version: HarvesterVersion, node: str) -> dict[str, str]:
    """status.nodeInfo as the kubelet reports it (the Machine of the node carries the same)."""
    return {
        "architecture": "amd64",
        "bootID": _uid("boot", node),
        "containerRuntimeVersion": version.containerd_version,
        "kernelVersion": version.kernel_version,
        "kubeProxyVersion": version.rke2_version,
        "kubeletVersion": version.rke2_version,
        "machineID": _digest("machine-id", node)[:32],
        "operatingSystem": "linux",
        "osImage": version.os_pretty_name,
        "systemUUID": _uid("system", node),
    }


def node_object(version: HarvesterVersion, index: int, node: str, installed: datetime,
                now: datetime) -> dict[str, Any]:
    ip = node_internal_ip(index)
    joined = installed + timedelta(minutes=10 * index)
    labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/instance-type": "rke2",
        "beta.kubernetes.io/os": "linux",
        "cattle.io/os": "linux",
        "harvesterhci.io/managed": "true",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": node,
        "kubernetes.io/os": "linux",
        "node-role.kubernetes.io/control-plane": "true",
        "node-role.kubernetes.io/etcd": "true",
        "node-role.kubernetes.io/master": "true",
        "node.kubernetes.io/instance-type": "rke2",
        "rke.cattle.io/machine": _uid("rke-machine", node),
    }
    annotations = {
        "cluster.x-k8s.io/cluster-name": LOCAL_CLUSTER,
        "cluster.x-k8s.io/cluster-namespace": FLEET_LOCAL,
        "cluster.x-k8s.io/machine": machine_name_for(node),
        "csi.volume.kubernetes.io/nodeid": '{"driver.longhorn.io":"%s"}' % node,
        "node.alpha.kubernetes.io/ttl": "0",
        "rke2.io/hostname": node,
        "rke2.io/internal-ip": ip,
        "volumes.kubernetes.io/controller-managed-attach-detach": "true",
    }
    memory_ki = 65843508
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": _meta(node, labels=labels, annotations=annotations, created=joined, kind="Node"),
        "spec": {"providerID": f"rke2://{node}", "podCIDR": f"{POD_CIDR_PREFIX}.{index}.0/24",
                 "podCIDRs": [f"{POD_CIDR_PREFIX}.{index}.0/24"]},
        "status": {
            "conditions": [
                _condition("MemoryPressure", "False", joined, "KubeletHasSufficientMemory",
                           "kubelet has sufficient memory available", heartbeat=True),
                _condition("DiskPressure", "False", joined, "KubeletHasNoDiskPressure",
                           "kubelet has no disk pressure", heartbeat=True),
                _condition("PIDPressure", "False", joined, "KubeletHasSufficientPID",
                           "kubelet has sufficient PID available", heartbeat=True),
                _condition("Ready", "True", joined, "KubeletReady", "kubelet is posting ready status",
                           heartbeat=True),
            ],
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": node}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": node_info(version, node),
            "capacity": {
                "cpu": "16", "memory": f"{memory_ki}Ki", "pods": "200",
                "ephemeral-storage": "153707984Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0",
                "devices.kubevirt.io/kvm": "1k", "devices.kubevirt.io/tun": "1k",
                "devices.kubevirt.io/vhost-net": "1k",
            },
            "allocatable": {
                "cpu": "16", "memory": f"{memory_ki - 2097152}Ki", "pods": "200",
                "ephemeral-storage": "149527126718", "hugepages-1Gi": "0", "hugepages-2Mi": "0",
                "devices.kubevirt.io/kvm": "1k", "devices.kubevirt.io/tun": "1k",
                "devices.kubevirt.io/vhost-net": "1k",
            },
        },
    }


def capi_cluster(installed: datetime) -> dict[str, Any]:
    """fleet-local/local, which the upgrade webhook and `wait_capi_cluster` read (phase, observedGeneration)."""
    ref = {"apiVersion": "rke.cattle.io/v1", "namespace": FLEET_LOCAL, "name": LOCAL_CLUSTER}
    return {
        "apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Cluster",
        "metadata": _meta(LOCAL_CLUSTER, FLEET_LOCAL, created=installed, kind="Cluster"),
        "spec": {
            "controlPlaneEndpoint": {"host": "", "port": 0},
            "controlPlaneRef": {**ref, "kind": "RKEControlPlane"},
            "infrastructureRef": {**ref, "kind": "RKECluster"},
        },
        "status": {
            "phase": "Provisioned",
            "infrastructureReady": True,
            "controlPlaneReady": True,
            "observedGeneration": 1,
            "conditions": [
                _condition("Ready", "True", installed),
                _condition("ControlPlaneInitialized", "True", installed),
                _condition("ControlPlaneReady", "True", installed),
                _condition("InfrastructureReady", "True", installed),
            ],
        },
    }


def provisioning_cluster(version: HarvesterVersion, installed: datetime) -> dict[str, Any]:
    return {
        "apiVersion": "provisioning.cattle.io/v1", "kind": "Cluster",
        "metadata": _meta(LOCAL_CLUSTER, FLEET_LOCAL, created=installed, kind="provisioning.Cluster"),
        "spec": {"kubernetesVersion": version.rke2_version, "rkeConfig": {}},
        "status": {
            "ready": True, "clusterName": LOCAL_CLUSTER, "clientSecretName": "local-kubeconfig",
            "fleetWorkspaceName": FLEET_LOCAL, "observedGeneration": 1,
            "conditions": [_condition("Ready", "True", installed), _condition("Provisioned", "True", installed)],
        },
    }


def capi_machine(version: HarvesterVersion, index: int, node: str, installed: datetime) -> dict[str, Any]:
    machine = machine_name_for(node)
    joined = installed + timedelta(minutes=10 * index)
    ref = {"apiVersion": "rke.cattle.io/v1", "namespace": FLEET_LOCAL, "name": machine}
    return {
        "apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "Machine",
        "metadata": _meta(machine, FLEET_LOCAL, created=joined, kind="Machine", labels={
            "cluster.x-k8s.io/cluster-name": LOCAL_CLUSTER,
            "cluster.x-k8s.io/control-plane": "true",
            "rke.cattle.io/cluster-name": LOCAL_CLUSTER,
            "rke.cattle.io/control-plane-role": "true",
            "rke.cattle.io/etcd-role": "true",
            "rke.cattle.io/worker-role": "true",
        }),
        "spec": {
            "clusterName": LOCAL_CLUSTER,
            "bootstrap": {"configRef": {**ref, "kind": "RKEBootstrap"},
                          "dataSecretName": f"{machine}-machine-bootstrap"},
            "infrastructureRef": {**ref, "kind": "CustomMachine"},
            "providerID": f"rke2://{node}",
        },
        "status": {
            "phase": "Running",
            "bootstrapReady": True,
            "infrastructureReady": True,
            "observedGeneration": 1,
            "lastUpdated": _ts(joined),
            # uid is a placeholder: the API server assigns the Node's real uid at creation
            "nodeRef": {"apiVersion": "v1", "kind": "Node", "name": node, "uid": _uid("Node", "", node)},
            "addresses": [{"type": "InternalIP", "address": node_internal_ip(index)},
                          {"type": "Hostname", "address": node}],
            # CAPI's machine controller copies the Node's nodeInfo; the upstream CRD requires all of it.
            "nodeInfo": node_info(version, node),
            "conditions": [
                _condition("Ready", "True", joined),
                _condition("BootstrapReady", "True", joined),
                _condition("InfrastructureReady", "True", joined),
                _condition("NodeHealthy", "True", joined),
            ],
        },
    }


def machine_plan_secret(node: str, installed: datetime) -> dict[str, Any]:
    """The machine-plan Secret the upgrade controller finds by `rke.cattle.io/machine-name` (drain hooks).

    Its real content (the node plan) is left out: seeds carry no secret-looking data.
    """
    machine = machine_name_for(node)
    return {"apiVersion": "v1", "kind": "Secret", "type": "rke.cattle.io/machine-plan",
            "metadata": _meta(f"{machine}-machine-plan", FLEET_LOCAL, created=installed, kind="Secret",
                              labels={"rke.cattle.io/machine-name": machine,
                                      "cluster.x-k8s.io/cluster-name": LOCAL_CLUSTER}),
            "data": {}}


def harvester_settings(version: HarvesterVersion, installed: datetime) -> list[dict[str, Any]]:
    def setting(name: str, *, default: str, value: str | None = None,
                status: dict[str, Any] | None = None) -> dict[str, Any]:
        obj: dict[str, Any] = {"apiVersion": "harvesterhci.io/v1beta1", "kind": "Setting",
                               "metadata": _meta(name, created=installed, kind="Setting")}
        if default:                 # `default,omitempty`: an empty default is not written
            obj["default"] = default
        if value is not None:
            obj["value"] = value
        if status is not None:
            obj["status"] = status
        return obj

    return [
        setting("server-version", default="dev", value=version.name),
        setting("harvester-csi-ccm-versions",
                default='{"harvester-cloud-provider":">=0.0.1 <0.3.0","harvester-csi-provider":">=0.0.1 <0.3.0"}'),
        setting("upgrade-checker-enabled", default="true"),
        setting("upgrade-checker-url", default="https://harvester-upgrade-responder.rancher.io/v1/checkupgrade"),
        setting("release-download-url", default="https://releases.rancher.com/harvester"),
        setting("log-level", default="info"),
        # pkg/settings/settings.go UpgradeConfigSet (v1.4.0 on): image preload strategy and restoreVM
        setting("upgrade-config",
                default='{"imagePreloadOption":{"strategy":{"type":"sequential"}}, "restoreVM": false}'),
        # pkg/settings/settings.go (every simulated tag): BackupTargetSet "", CSIDriverConfig, VolumeSnapshotClass.
        # The backup target controller has run once at start: the default target is `configured` False, with
        # no reason or message (controllers/backup_target.py).
        setting("backup-target", default="", status={"conditions": [
            {"type": "configured", "status": "False", "lastUpdateTime": _ts(installed)}]}),
        setting("csi-driver-config", default='{"driver.longhorn.io":{"volumeSnapshotClassName":"longhorn-snapshot",'
                                             '"backupVolumeSnapshotClassName":"longhorn"}}'),
        setting("volume-snapshot-class", default="longhorn"),
    ]


def rancher_setting(name: str, value: str, installed: datetime) -> dict[str, Any]:
    """settings.management.cattle.io (a different group from Harvester's Setting); upgrade waits on server-version."""
    return {"apiVersion": "management.cattle.io/v3", "kind": "Setting",
            "metadata": _meta(name, created=installed, kind="management.Setting"),
            "default": "dev", "value": value, "source": "", "customized": False}


def managed_charts(version: HarvesterVersion, installed: datetime) -> list[dict[str, Any]]:
    charts = [
        ("harvester", version.harvester_chart_version, HARVESTER_SYSTEM),
        ("harvester-crd", version.harvester_chart_version, HARVESTER_SYSTEM),
        ("rancher-monitoring-crd", version.monitoring_chart_version, "cattle-monitoring-system"),
        ("rancher-logging-crd", version.logging_chart_version, "cattle-logging-system"),
    ]
    result = []
    for name, chart_version, target_ns in charts:
        result.append({
            "apiVersion": "management.cattle.io/v3", "kind": "ManagedChart",
            "metadata": _meta(name, FLEET_LOCAL, created=installed, kind="ManagedChart"),
            "spec": {
                "chart": name, "releaseName": name, "version": chart_version, "repoName": "harvester-charts",
                "defaultNamespace": target_ns, "timeoutSeconds": 600, "values": {},
                "targets": [{"clusterName": LOCAL_CLUSTER, "clusterSelector": {"matchExpressions": [
                    {"key": "provisioning.cattle.io/unmanaged-system-agent", "operator": "DoesNotExist"}]}}],
            },
            "status": {
                "observedGeneration": 1,
                "summary": {"desiredReady": 1, "ready": 1},
                "display": {"readyClusters": "1/1", "state": ""},
                "conditions": [
                    {"type": "Processed", "status": "True", "lastUpdateTime": _ts(installed)},
                    {"type": "Defined", "status": "True", "lastUpdateTime": _ts(installed)},
                    {"type": "Ready", "status": "True", "lastUpdateTime": _ts(installed)},
                ],
            },
        })
    return result


def helm_releases(version: HarvesterVersion, installed: datetime) -> list[dict[str, Any]]:
    """Helm release records of the Rancher dependencies, Rancher itself and the Harvester charts."""
    secrets: list[dict[str, Any]] = []
    deps = version.rancher_dependencies
    for offset, name in enumerate(("fleet-crd", "fleet", "rancher-webhook")):
        dep = deps[name]
        at = installed + timedelta(minutes=20 + offset)
        chart = chart_repo.ChartVersion(name, dep.chart_version, dep.app_version)
        made = {"chart": chart_repo.release_chart(chart), "manifest": chart_repo.manifest(chart, dep.namespace)}
        if name == "fleet":
            # Rancher installs fleet at bootstrap and upgrades it once the local cluster registers,
            # so a real cluster shows a superseded revision 1 under the deployed revision 2.
            secrets.append(release_secret(name, dep.namespace, name, dep.chart_version, dep.app_version, 1,
                                          "superseded", at, **made))
            secrets.append(release_secret(name, dep.namespace, name, dep.chart_version, dep.app_version, 2,
                                          "deployed", at + timedelta(minutes=5), first_deployed=at, **made))
        else:
            secrets.append(release_secret(name, dep.namespace, name, dep.chart_version, dep.app_version, 1,
                                          "deployed", at, **made))
    rancher_values = {
        "rancherImageTag": version.rancher_version,
        "features": "multi-cluster-management=false,multi-cluster-management-agent=false",
        "ingress": {"enabled": False},
        "useBundledSystemChart": True,
        "replicas": -3,
    }
    secrets.append(release_secret("rancher", "cattle-system", "rancher", version.rancher_version.lstrip("v"),
                                  version.rancher_version, 1, "deployed", installed + timedelta(minutes=15),
                                  rancher_values))
    longhorn_tag = f"v{version.longhorn_version}"
    harvester_values = {"longhorn": {"image": {"longhorn": {
        "manager": {"repository": "longhornio/longhorn-manager", "tag": longhorn_tag},
        "instanceManager": {"repository": "longhornio/longhorn-instance-manager", "tag": longhorn_tag},
    }}}}
    for offset, name in enumerate(("harvester-crd", "harvester")):
        secrets.append(release_secret(name, HARVESTER_SYSTEM, name, version.harvester_chart_version, version.name,
                                      1, "deployed", installed + timedelta(minutes=30 + offset),
                                      harvester_values if name == "harvester" else None))
    return secrets


# ---- pods and their controllers --------------------------------------------------------------

def _container_status(name: str, image: str, started: datetime, *parts: str) -> dict[str, Any]:
    repo = image.split(":")[0]
    return {
        "name": name, "image": image, "imageID": f"docker.io/{repo}@sha256:{_digest('image', image)}",
        "containerID": "containerd://" + _digest("container", name, *parts), "ready": True,
        "started": True, "restartCount": 0, "state": {"running": {"startedAt": _ts(started)}},
    }


def pod(namespace_: str, name: str, node: str, containers: list[tuple[str, str]], started: datetime, *,
        labels: dict[str, str], pod_ip: str, host_ip: str, host_network: bool = False,
        annotations: dict[str, str] | None = None, service_account: str = "default",
        priority_class: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "nodeName": node,
        "containers": [{"name": c, "image": image, "imagePullPolicy": "IfNotPresent"} for c, image in containers],
        "restartPolicy": "Always",
        "serviceAccountName": service_account,
        "dnsPolicy": "ClusterFirstWithHostNet" if host_network else "ClusterFirst",
    }
    if host_network:
        spec["hostNetwork"] = True
    if priority_class:
        spec["priorityClassName"] = priority_class
    conditions = [_condition(t, "True", started, probe=True) for t in
                  ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": _meta(name, namespace_, labels=labels, annotations=annotations, created=started, kind="Pod"),
        "spec": spec,
        "status": {
            "phase": "Running", "conditions": conditions, "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}], "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
            "startTime": _ts(started), "qosClass": "Burstable",
            "containerStatuses": [_container_status(c, image, started, namespace_, name) for c, image in containers],
        },
    }


class _PodIPs:
    """Hands out pod IPs per node from the node's /24 of the pod CIDR."""

    def __init__(self, nodes: list[str]) -> None:
        self._index = {n: i for i, n in enumerate(nodes)}
        self._next = {n: 10 for n in nodes}

    def take(self, node: str) -> str:
        host = self._next[node]
        self._next[node] += 1
        return f"{POD_CIDR_PREFIX}.{self._index[node]}.{host}"


def fleet_crds(version: HarvesterVersion, installed: datetime) -> list[dict[str, Any]]:
    """The CRDs the fleet-crd release installed (its chart's objects, with helm's ownership metadata)."""
    dep = version.rancher_dependencies["fleet-crd"]
    chart = chart_repo.ChartVersion("fleet-crd", dep.chart_version, dep.app_version)
    crds = []
    for _, crd in chart_repo.render(chart, dep.namespace):
        crd["metadata"] = {**_meta(crd["metadata"]["name"], created=installed + timedelta(minutes=20),
                                   kind="CustomResourceDefinition"), **{k: v for k, v in crd["metadata"].items()}}
        crds.append(chart_repo.helm_owned(crd, "fleet-crd", dep.namespace))
    return crds


def _deployment(namespace_: str, name: str, containers: list[tuple[str, str]], replicas: int,
                labels: dict[str, str], nodes: list[str], ips: _PodIPs, started: datetime,
                service_account: str) -> list[dict[str, Any]]:
    template_hash = _name_suffix(10, "rs", namespace_, name, *(image for _, image in containers))
    selector = dict(labels)
    pods = []
    for i in range(replicas):
        node = nodes[i % len(nodes)]
        pod_name = f"{name}-{template_hash}-{_name_suffix(5, 'pod', namespace_, name, str(i))}"
        pods.append(pod(namespace_, pod_name, node, containers, started,
                        labels={**labels, "pod-template-hash": template_hash}, pod_ip=ips.take(node),
                        host_ip=node_internal_ip(nodes.index(node)), service_account=service_account))
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta(name, namespace_, labels=dict(labels), created=started, kind="Deployment",
                          annotations={"deployment.kubernetes.io/revision": "1"}),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"serviceAccountName": service_account,
                         "containers": [{"name": c, "image": image, "imagePullPolicy": "IfNotPresent"}
                                        for c, image in containers]},
            },
        },
        "status": {
            "observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
            "readyReplicas": replicas, "availableReplicas": replicas,
            "conditions": [
                {**_condition("Available", "True", started, "MinimumReplicasAvailable",
                              "Deployment has minimum availability."), "lastUpdateTime": _ts(started)},
                {**_condition("Progressing", "True", started, "NewReplicaSetAvailable",
                              f'ReplicaSet "{name}-{template_hash}" has successfully progressed.'),
                 "lastUpdateTime": _ts(started)},
            ],
        },
    }
    return [deployment, *pods]


def _rke2_images(version: HarvesterVersion) -> tuple[str, str]:
    """(kubernetes image, etcd image) of RKE2's static pods. Build suffixes are ILLUSTRATIVE."""
    k8s_tag = version.rke2_version.replace("+", "-")
    etcd = "v3.5.16-k3s1-build20241106" if version.rke2_version.startswith("v1.31") else "v3.5.19-k3s1-build20250306"
    return f"rancher/hardened-kubernetes:{k8s_tag}-build20250101", f"rancher/hardened-etcd:{etcd}"


def workloads(version: HarvesterVersion, nodes: list[str], installed: datetime) -> list[dict[str, Any]]:
    """Running pods of the system services, with the Deployments / DaemonSet that own them.

    ownerReferences are left out on purpose: the seeded ReplicaSets do not exist, and a dangling
    owner would make the garbage collector delete the pod.
    """
    ips = _PodIPs(nodes)
    deps = version.rancher_dependencies
    fleet_tag = "v" + deps["fleet"].app_version
    webhook_tag = "v" + deps["rancher-webhook"].app_version
    multi = min(3, len(nodes))
    started = installed + timedelta(minutes=25)
    objects: list[dict[str, Any]] = []

    def deploy(ns: str, name: str, containers: list[tuple[str, str]], replicas: int, labels: dict[str, str],
               service_account: str, helm_release: str = "") -> None:
        made = _deployment(ns, name, containers, replicas, labels, nodes, ips, started, service_account)
        if helm_release:      # installed by that Helm release: helm's ownership metadata on the Deployment
            chart_repo.helm_owned(made[0], helm_release, ns)
        objects.extend(made)

    tag = version.image_tag
    deploy(HARVESTER_SYSTEM, "harvester", [("apiserver", f"rancher/harvester:{tag}")], multi,
           {"app.kubernetes.io/name": "harvester", "app.kubernetes.io/component": "apiserver"}, "harvester")
    deploy(HARVESTER_SYSTEM, "harvester-webhook", [("harvester-webhook", f"rancher/harvester-webhook:{tag}")],
           multi, {"app.kubernetes.io/name": "harvester", "app.kubernetes.io/component": "webhook-server"},
           "harvester-webhook")
    deploy(HARVESTER_SYSTEM, "harvester-load-balancer",
           [("harvester-load-balancer", f"rancher/harvester-load-balancer:{version.load_balancer_version}")], 1,
           {"app.kubernetes.io/name": "harvester-load-balancer", "app.kubernetes.io/instance": "harvester"},
           "harvester-load-balancer")
    deploy("cattle-system", "rancher", [("rancher", f"rancher/rancher:{version.rancher_version}")], multi,
           {"app": "rancher"}, "rancher")
    deploy("cattle-system", "rancher-webhook", [("rancher-webhook", f"rancher/rancher-webhook:{webhook_tag}")], 1,
           {"app": "rancher-webhook"}, "rancher-webhook", helm_release="rancher-webhook")
    deploy("cattle-fleet-system", "fleet-controller",
           [("fleet-controller", f"rancher/fleet:{fleet_tag}"), ("fleet-cleanup", f"rancher/fleet:{fleet_tag}"),
            ("fleet-agentmanagement", f"rancher/fleet:{fleet_tag}")], 1, {"app": "fleet-controller"},
           "fleet-controller", helm_release="fleet")
    deploy("cattle-fleet-system", "gitjob", [("gitjob", f"rancher/fleet:{fleet_tag}")], 1, {"app": "gitjob"},
           "gitjob", helm_release="fleet")
    deploy("cattle-fleet-local-system", "fleet-agent", [("fleet-agent", f"rancher/fleet-agent:{fleet_tag}")], 1,
           {"app": "fleet-agent"}, "fleet-agent")

    # longhorn-manager: a DaemonSet pod on every node
    lh_image = f"longhornio/longhorn-manager:v{version.longhorn_version}"
    lh_labels = {"app": "longhorn-manager", "app.kubernetes.io/name": "longhorn",
                 "app.kubernetes.io/instance": "harvester"}
    revision_hash = _name_suffix(10, "ds", lh_image)
    for index, node in enumerate(nodes):
        objects.append(pod("longhorn-system", f"longhorn-manager-{_name_suffix(5, 'lhm', node)}", node,
                           [("longhorn-manager", lh_image)], started,
                           labels={**lh_labels, "controller-revision-hash": revision_hash,
                                   "pod-template-generation": "1"},
                           pod_ip=ips.take(node), host_ip=node_internal_ip(index),
                           service_account="longhorn-service-account"))
    count = len(nodes)
    objects.append({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": _meta("longhorn-manager", "longhorn-system", labels=dict(lh_labels), created=started,
                          kind="DaemonSet"),
        "spec": {"selector": {"matchLabels": {"app": "longhorn-manager"}},
                 "template": {"metadata": {"labels": dict(lh_labels)},
                              "spec": {"serviceAccountName": "longhorn-service-account",
                                       "containers": [{"name": "longhorn-manager", "image": lh_image}]}},
                 "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "100%"}}},
        "status": {"observedGeneration": 1, "currentNumberScheduled": count, "desiredNumberScheduled": count,
                   "numberAvailable": count, "numberReady": count, "numberMisscheduled": 0,
                   "updatedNumberScheduled": count},
    })

    # RKE2 static (mirror) pods on every control-plane node
    k8s_image, etcd_image = _rke2_images(version)
    static = [("etcd", etcd_image), ("kube-apiserver", k8s_image), ("kube-controller-manager", k8s_image),
              ("kube-scheduler", k8s_image)]
    for index, node in enumerate(nodes):
        ip = node_internal_ip(index)
        for component, image in static:
            config_hash = _digest("static", component, node, image)[:32]
            objects.append(pod(
                "kube-system", f"{component}-{node}", node, [(component, image)],
                installed + timedelta(minutes=10 * index),
                labels={"component": component, "tier": "control-plane"}, pod_ip=ip, host_ip=ip,
                host_network=True, priority_class="system-cluster-critical",
                annotations={"kubernetes.io/config.source": "file", "kubernetes.io/config.hash": config_hash,
                             "kubernetes.io/config.mirror": config_hash}))
    return objects
