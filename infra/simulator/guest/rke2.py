"""What an RKE2 guest cluster of one release line looks like from its API: nodes, version, agent.

Labels are those RKE2 puts on its nodes: every node gets the kubernetes.io/* and
node.kubernetes.io/instance-type=rke2 labels; servers also `node-role.kubernetes.io/
{control-plane,etcd,master}: "true"`; agents get no role label. Servers carry no taint (RKE2's
default). A node's name is its VM's name (the CSI driver and cloud provider rely on that).
Values marked ILLUSTRATIVE are plausible but were not read from a source.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

_RKE2_VERSION = re.compile(r"^v1\.(?P<minor>\d+)\.(?P<patch>\d+)\+rke2r(?P<rev>\d+)$")
CONTROL_PLANE_ROLES = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/etcd",
                       "node-role.kubernetes.io/master")
# containerd shipped per RKE2 minor (ILLUSTRATIVE)
_CONTAINERD = {29: "containerd://1.7.23-k3s2", 30: "containerd://1.7.23-k3s2", 31: "containerd://1.7.23-k3s2",
               32: "containerd://2.0.4-k3s2"}
GUEST_OS = "Ubuntu 22.04.5 LTS"                 # ILLUSTRATIVE cloud image of the guest VMs
GUEST_KERNEL = "5.15.0-131-generic"             # ILLUSTRATIVE
CLUSTER_CIDR_PREFIX = "10.42"                   # RKE2's default cluster-cidr 10.42.0.0/16
SERVICE_CIDR_PREFIX = "10.43"                   # RKE2's default service-cidr 10.43.0.0/16


class BadGuestRequest(ValueError):
    pass


@dataclass(frozen=True)
class Rke2Line:
    version: str
    minor: int

    @classmethod
    def parse(cls, version: str) -> "Rke2Line":
        match = _RKE2_VERSION.match(version or "")
        if not match:
            raise BadGuestRequest(f"rke2Version {version!r} is not an RKE2 release (e.g. v1.31.6+rke2r1)")
        return cls(version, int(match["minor"]))

    @property
    def containerd(self) -> str:
        return _CONTAINERD.get(self.minor, "containerd://2.0.4-k3s2")

    def version_info(self) -> dict[str, str]:
        return {"major": "1", "minor": str(self.minor), "gitVersion": self.version, "gitCommit": "guest-simulator",
                "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23",
                "compiler": "gc", "platform": "linux/amd64"}


@dataclass(frozen=True)
class GuestNode:
    name: str
    index: int
    server: bool
    ip: str
    vm_uid: str
    cpu_count: int = 4
    memory_gi: int = 8

    def labels(self) -> dict[str, str]:
        labels = {
            "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/instance-type": "rke2",
            "beta.kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux", "node.kubernetes.io/instance-type": "rke2",
        }
        if self.server:
            labels.update({role: "true" for role in CONTROL_PLANE_ROLES})
        return labels

    def node_object(self, line: Rke2Line) -> Obj:
        annotations = {"rke2.io/hostname": self.name, "rke2.io/internal-ip": self.ip,
                       "node.alpha.kubernetes.io/ttl": "0",
                       "volumes.kubernetes.io/controller-managed-attach-detach": "true"}
        if self.server:
            annotations["rke2.io/encryption-config-hash"] = "start-" + self.vm_uid.replace("-", "")[:32]
        conditions = [
            ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ]
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.name, "labels": self.labels(), "annotations": annotations},
            "spec": {"podCIDR": f"{CLUSTER_CIDR_PREFIX}.{self.index}.0/24",
                     "podCIDRs": [f"{CLUSTER_CIDR_PREFIX}.{self.index}.0/24"],
                     "providerID": f"harvester://{self.vm_uid}"},
            "status": {
                "conditions": [{"type": t, "status": s, "reason": r, "message": m} for t, s, r, m in conditions],
                "addresses": [{"type": "InternalIP", "address": self.ip}, {"type": "Hostname", "address": self.name}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {"architecture": "amd64", "containerRuntimeVersion": line.containerd,
                             "kernelVersion": GUEST_KERNEL, "kubeProxyVersion": line.version,
                             "kubeletVersion": line.version, "operatingSystem": "linux", "osImage": GUEST_OS,
                             "machineID": self.vm_uid.replace("-", ""), "systemUUID": self.vm_uid,
                             "bootID": self.vm_uid},
                "capacity": {"cpu": str(self.cpu_count), "memory": f"{self.memory_gi * 1016220}Ki", "pods": "110",
                             "ephemeral-storage": "41186748Ki"},
                "allocatable": {"cpu": str(self.cpu_count), "memory": f"{self.memory_gi * 1016220}Ki", "pods": "110",
                                "ephemeral-storage": "40066375582"},
            },
        }


def cattle_cluster_agent(image: str) -> Obj:
    """Rancher's agent in every cluster it manages (`cattle-system/cattle-cluster-agent`), of its version."""
    labels = {"app": "cattle-cluster-agent"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "cattle-cluster-agent", "namespace": "cattle-system", "labels": dict(labels),
                     "annotations": {"management.cattle.io/scale-available": "2"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": dict(labels)},
                 "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                 "template": {"metadata": {"labels": dict(labels)}, "spec": {
                     "serviceAccountName": "cattle",
                     "containers": [{"name": "cluster-register", "image": image,
                                     "env": [{"name": "CATTLE_CLUSTER", "value": "true"},
                                             {"name": "CATTLE_K8S_MANAGED", "value": "true"}]}],
                     "tolerations": [{"effect": "NoSchedule", "key": "node-role.kubernetes.io/controlplane",
                                      "value": "true"},
                                     {"effect": "NoSchedule", "key": "node-role.kubernetes.io/control-plane",
                                      "operator": "Exists"},
                                     {"effect": "NoSchedule", "key": "node-role.kubernetes.io/master",
                                      "operator": "Exists"}],
                     "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
                         "weight": 100, "podAffinityTerm": {
                             "labelSelector": {"matchExpressions": [{"key": "app", "operator": "In",
                                                                     "values": ["cattle-cluster-agent"]}]},
                             "topologyKey": "kubernetes.io/hostname"}}]}}}}},
    }
