"""One guest RKE2 cluster: its own Kubernetes API server, its controllers, and its VMs on the host.

The guest's API server is the simulator's engine (`ObjectApi` + `ApiServer`) with its own CA, token
and port, reporting the RKE2 release it was asked for. Its nodes (one per machine of its pools: servers for
etcd/control-plane pools, agents for worker-only ones) are KubeVirt VirtualMachines in the guest's
host namespace, sized by the pool's HarvesterConfig, each with a VMI running on a host node, a
virt-launcher pod and a root disk PVC, and an address leased from the VM network's DHCP server. Everything in the guest happens in one level-triggered loop: any change in the guest, or
to the host objects it depends on, runs the helm-controller, workload controllers, scheduler,
storage, kubelets and cloud provider passes until nothing changes.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..apiserver import errors
from ..apiserver.clock import rfc3339
from ..apiserver.objects import ObjectApi
from ..apiserver.server import ApiServer
from ..apiserver.store import StoredEvent
from ..apiserver.tls import TlsMaterial, make_tls_material
from ..harvester import load_crds
from ..kubeconfig import kubeconfig_dict
from ..nodes.bridge import LoopBridge
from ..pods import PodRuntime
from .cloud_provider import CloudProvider
from .helm_controller import HelmController
from .hostside import DEFAULT_CLASS, VM_NETWORK, HostSide
from .kubelet import Kubelet, Scheduling
from .objects import Obj, kind, owner_reference, random_suffix, stable_suffix
from .rke2 import SERVICE_CIDR_PREFIX, GuestNode, Rke2Line, cattle_cluster_agent
from .storage import GuestStorage
from .workloads import Workloads

if TYPE_CHECKING:
    from ..simulator import SimClock, Simulator

log = logging.getLogger(__name__)

RUN_ID_LABEL = "e2e.harvesterhci.io/run-id"
GUEST_LABEL = "guestcluster.simulator.harvesterhci.io/name"      # simulator bookkeeping on host objects it made
NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease", "cattle-system")
_HOST_TYPES = {("kubevirt.io", "virtualmachines"), ("kubevirt.io", "virtualmachineinstances"),
               ("", "persistentvolumeclaims"), ("", "pods"), ("longhorn.io", "volumes"),
               ("loadbalancer.harvesterhci.io", "loadbalancers"), ("loadbalancer.harvesterhci.io", "ippools")}


# The labels docker-machine-driver-harvester puts on the VMs it creates (harvester/create.go).
DRIVER_CLUSTER_LABEL = "guestcluster.harvesterhci.io/name"
DRIVER_POOL_LABEL = "nodepool.harvesterhci.io/name"
DRIVER_MACHINE_SET_LABEL = "harvesterhci.io/machineSetName"


@dataclass(frozen=True)
class MachinePool:
    """One node pool: its machines' roles and the VM each gets (a HarvesterConfig's fields)."""

    name: str
    quantity: int
    server: bool                       # etcd or control-plane role: an RKE2 server; otherwise an agent
    cpu_count: int = 4
    memory_gi: int = 8
    disk_gi: int = 40
    disk_bus: str = "virtio"
    image: str = ""                    # namespace/name of the VirtualMachineImage of the root disk
    network: str = "/".join(VM_NETWORK)
    network_model: str = "virtio"


DEFAULT_POOLS = (MachinePool("cp", 1, True), MachinePool("wk", 2, False))


@dataclass(frozen=True)
class GuestSpec:
    name: str
    rke2: Rke2Line
    agent_image: str                   # the cattle-cluster-agent image of the Rancher managing it
    host_namespace: str
    run_id: str = ""
    pools: tuple[MachinePool, ...] = DEFAULT_POOLS


class GuestRuntime:
    """The guest's control loop: one pass of every controller per batch of changes."""

    def __init__(self, guest: "SimulatedGuestCluster", steps: list[Callable[[], None]]) -> None:
        self.guest = guest
        self.steps = steps
        self._dirty = asyncio.Event()
        self._wake_at: float | None = None

    def poke(self) -> None:
        self._dirty.set()

    def after(self, simulated_seconds: float) -> None:
        self.after_real(max(simulated_seconds, 0.0) / self.guest.clock.scale)

    def after_real(self, seconds: float) -> None:
        when = time.monotonic() + max(seconds, 0.0)
        if self._wake_at is not None and self._wake_at <= when and self._wake_at > time.monotonic():
            return
        self._wake_at = when
        asyncio.get_running_loop().call_later(max(seconds, 0.0) + 0.001, self._wake)

    def _wake(self) -> None:
        if self._wake_at is not None and self._wake_at <= time.monotonic():
            self._wake_at = None
        self._dirty.set()

    async def run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            for step in self.steps:
                try:
                    step()
                except Exception:  # noqa: BLE001 - one controller's bug must not stop the guest
                    log.exception("guest %s: %s failed", self.guest.name, getattr(step, "__qualname__", step))
            await asyncio.sleep(0)


class SimulatedGuestCluster:
    """The simulator's side of a guest RKE2 cluster (its API server, kubelets, controllers); the harness's
    handle on a guest cluster is `infra.harvester.guest.GuestCluster`, which reaches this one over HTTPS."""

    def __init__(self, host: "Simulator", hostside: HostSide, spec: GuestSpec) -> None:
        self.host = host
        self.hostside = hostside
        self.spec = spec
        self.api = ObjectApi()
        self.tls: TlsMaterial = make_tls_material()
        self.token = secrets.token_urlsafe(32)
        self.server = ApiServer(self.api, token=self.token, tls=self.tls, kube_version=spec.rke2.version_info(),
                                info=self.info)
        self.log = log
        self.nodes: list[GuestNode] = []
        self._events_seen: set[tuple[str, str, str]] = set()
        self._service_ips = 10
        self._node_ports = 30000
        self._task: asyncio.Task[Any] | None = None
        self._listeners: list[tuple[ObjectApi, Callable[[StoredEvent], None]]] = []
        self.runtime: GuestRuntime

    # ---- identity ------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def host_namespace(self) -> str:
        return self.spec.host_namespace

    @property
    def clock(self) -> "SimClock":
        return self.host.clock

    def kubeconfig(self) -> dict[str, Any]:
        return kubeconfig_dict(self.server.url, self.tls.ca_cert_pem, self.token, name=self.name)

    def info(self) -> dict[str, Any]:
        return {"guest": self.name, "rke2Version": self.spec.rke2.version, "rancherAgent": self.spec.agent_image,
                "hostNamespace": self.host_namespace, "apiserver": self.server.url,
                "nodes": [{"name": n.name, "role": "server" if n.server else "agent", "ip": n.ip,
                           "hostNode": self._host_node_of(n.index)} for n in self.nodes]}

    # ---- lifecycle -------------------------------------------------------------------------------------
    async def start(self) -> None:
        namespaces = kind(self.host.api, "v1", "namespaces")
        if self.host.api.find(namespaces, None, self.host_namespace) is None:
            raise errors.not_found("namespaces", self.host_namespace)
        self.hostside.start()
        self._create_host_objects()
        self._seed()
        self.storage = GuestStorage(self)
        self.api.add_admission("", "services", self._admit_service, mutating=True)
        self.runtime = GuestRuntime(self, [
            HelmController(self).reconcile, Workloads(self).reconcile, Scheduling(self).reconcile,
            self.storage.reconcile, Kubelet(self).reconcile, CloudProvider(self).reconcile])
        await self.server.start()
        self.server.pod_streams.runtime = PodRuntime(self.api, LoopBridge(asyncio.get_running_loop()),
                                                     volumes=self.storage.pod_volume)
        self._listen(self.api, lambda event: self.runtime.poke())
        self._listen(self.host.api, self._host_event)
        self._task = asyncio.get_running_loop().create_task(self.runtime.run(), name=f"guest-{self.name}")
        self.runtime.poke()
        log.info("guest cluster %s (%s, %s) serving on %s", self.name, self.spec.rke2.version,
                 self.spec.agent_image, self.server.url)

    async def stop(self) -> None:
        for api, listener in self._listeners:
            if listener in api.store.listeners:
                api.store.listeners.remove(listener)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.server.stop()
        self._delete_host_objects()

    def _listen(self, api: ObjectApi, listener: Callable[[StoredEvent], None]) -> None:
        api.store.listeners.append(listener)
        self._listeners.append((api, listener))

    def _host_event(self, event: StoredEvent) -> None:
        if event.type_key not in _HOST_TYPES:
            return
        namespace = (event.object.get("metadata") or {}).get("namespace", "")
        if event.type_key[1] in ("ippools", "volumes") or namespace == self.host_namespace:
            self.runtime.poke()

    # ---- events -----------------------------------------------------------------------------------------
    def event(self, obj: Obj, event_type: str, reason: str, message: str, component: str) -> None:
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        now = rfc3339()
        try:
            self.api.create(kind(self.api, "v1", "events"), {
                "metadata": {"name": f"{meta['name']}.{random_suffix(16)}", "namespace": namespace},
                "involvedObject": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "name": meta["name"],
                                   "namespace": meta.get("namespace", ""), "uid": meta.get("uid")},
                "reason": reason, "message": message, "type": event_type, "count": 1,
                "firstTimestamp": now, "lastTimestamp": now, "source": {"component": component},
                "reportingComponent": component})
        except errors.ApiError:
            pass

    def event_once(self, obj: Obj, event_type: str, reason: str, message: str, component: str) -> None:
        key = (obj["metadata"].get("uid", ""), reason, message)
        if key not in self._events_seen:
            self._events_seen.add(key)
            self.event(obj, event_type, reason, message, component)

    # ---- the guest's own objects ------------------------------------------------------------------------
    def _seed(self) -> None:
        crds = kind(self.api, "apiextensions.k8s.io/v1", "customresourcedefinitions")
        for crd in load_crds():
            if crd["spec"]["group"] == "helm.cattle.io":
                self.api.create(crds, crd)
        namespaces = kind(self.api, "v1", "namespaces")
        for namespace in NAMESPACES:
            if self.api.find(namespaces, None, namespace) is None:
                self.api.create(namespaces, {"metadata": {"name": namespace}})
        nodes = kind(self.api, "v1", "nodes")
        for node in self.nodes:
            self.api.create(nodes, node.node_object(self.spec.rke2), keep_status=True)
        self.api.create(kind(self.api, "v1", "services"), {
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": f"{SERVICE_CIDR_PREFIX}.0.1", "clusterIPs": [f"{SERVICE_CIDR_PREFIX}.0.1"],
                     "type": "ClusterIP", "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                                     "targetPort": 6443}]}})
        self.api.create(kind(self.api, "apps/v1", "deployments"), cattle_cluster_agent(self.spec.agent_image))

    def _admit_service(self, request: Any) -> None:
        """ClusterIP allocation and node ports, as the API server's service REST storage does."""
        if request.operation != "CREATE" or request.object is None:
            return
        spec = request.object.setdefault("spec", {})
        kind_of = spec.setdefault("type", "ClusterIP")
        if kind_of != "ExternalName" and not spec.get("clusterIP"):
            self._service_ips += 1
            address = f"{SERVICE_CIDR_PREFIX}.{self._service_ips // 250}.{self._service_ips % 250 + 2}"
            spec.update(clusterIP=address, clusterIPs=[address])
        spec.setdefault("sessionAffinity", "None")
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        if kind_of in ("LoadBalancer", "NodePort"):
            spec.setdefault("externalTrafficPolicy", "Cluster")
            for port in spec.get("ports") or []:
                if not port.get("nodePort"):
                    self._node_ports += 1
                    port["nodePort"] = self._node_ports
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        request.object.setdefault("status", {"loadBalancer": {}})

    # ---- the guest's VMs on the host ------------------------------------------------------------------
    @staticmethod
    def _mac(name: str) -> str:
        digest = hashlib.sha256(name.encode()).digest()
        return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])

    def _host_nodes(self) -> list[str]:
        return sorted(n["metadata"]["name"] for n in self.host.api.list(kind(self.host.api, "v1", "nodes")).items)

    def _host_node_of(self, index: int) -> str:
        hosts = self._host_nodes()
        return hosts[index % len(hosts)] if hosts else ""

    def _labels(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        labels = {GUEST_LABEL: self.name, **(extra or {})}
        if self.spec.run_id:
            labels[RUN_ID_LABEL] = self.spec.run_id
        return labels

    def host_vmi(self, node: str) -> Obj | None:
        return self.host.api.find(kind(self.host.api, "kubevirt.io/v1", "virtualmachineinstances"),
                                  self.host_namespace, node)

    def _create_host_objects(self) -> None:
        api, ns = self.host.api, self.host_namespace
        vms, vmis = kind(api, "kubevirt.io/v1", "virtualmachines"), kind(api, "kubevirt.io/v1", "virtualmachineinstances")
        pvcs, pods = kind(api, "v1", "persistentvolumeclaims"), kind(api, "v1", "pods")
        now = rfc3339()
        machines = [(pool, number) for pool in self.spec.pools for number in range(pool.quantity)]
        for index, (pool, number) in enumerate(machines):
            server = pool.server
            # Rancher's machine names: <cluster>-<pool> (MachineDeployment), a MachineSet hash, a suffix;
            # the driver names the VM after the machine.
            machine_set = f"{self.name}-{pool.name}-{stable_suffix(10, self.name, pool.name)}"
            name = f"{machine_set}-{stable_suffix(5, machine_set, str(number))}"[:63].rstrip("-")
            lease = self.hostside.dhcp.request(self._mac(name), name)
            node = GuestNode(name, index, server, lease.ip, "", pool.cpu_count, pool.memory_gi)
            host_node = self._host_node_of(node.index)
            disk = f"{node.name}-disk-0-{stable_suffix(5, node.name, 'disk')}"
            mac = self._mac(node.name)
            labels = self._labels({"harvesterhci.io/creator": "docker-machine-driver-harvester",
                                   "harvesterhci.io/vmName": node.name, DRIVER_CLUSTER_LABEL: self.name,
                                   DRIVER_POOL_LABEL: f"{self.name}-{pool.name}",
                                   DRIVER_MACHINE_SET_LABEL: f"{self.host_namespace}-{machine_set}"})
            domain = {"cpu": {"cores": pool.cpu_count, "sockets": 1, "threads": 1},
                      "memory": {"guest": f"{pool.memory_gi * 1024 - 100}Mi"},
                      "devices": {"disks": [{"name": "disk-0", "bootOrder": 1, "disk": {"bus": pool.disk_bus}}],
                                  "interfaces": [{"name": "nic-0", "bridge": {}, "macAddress": mac,
                                                  "model": pool.network_model}]},
                      "resources": {"limits": {"cpu": str(pool.cpu_count), "memory": f"{pool.memory_gi}Gi"}}}
            networks = [{"name": "nic-0", "multus": {"networkName": pool.network}}]
            volumes = [{"name": "disk-0", "persistentVolumeClaim": {"claimName": disk}}]
            self.hostside.serve_claim(ns, disk)
            claim_annotations = {"harvesterhci.io/imageId": pool.image} if pool.image else {}
            api.create(pvcs, {"metadata": {"name": disk, "namespace": ns, "labels": self._labels(),
                                           "annotations": claim_annotations},
                              "spec": {"accessModes": ["ReadWriteMany"], "volumeMode": "Block",
                                       "storageClassName": DEFAULT_CLASS,
                                       "resources": {"requests": {"storage": f"{pool.disk_gi}Gi"}}},
                              "status": {"phase": "Pending"}}, keep_status=True)
            vm = api.create(vms, {
                "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
                "metadata": {"name": node.name, "namespace": ns, "labels": labels,
                             "annotations": {"harvesterhci.io/mac-address": mac}},
                "spec": {"runStrategy": "RerunOnFailure",
                         "template": {"metadata": {"labels": {"harvesterhci.io/vmName": node.name}},
                                      "spec": {"domain": domain, "networks": networks, "volumes": volumes,
                                               "evictionStrategy": "LiveMigrateIfPossible", "hostname": node.name}}},
                "status": {"printableStatus": "Running", "ready": True, "created": True,
                           "runStrategy": "RerunOnFailure",
                           "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": None,
                                           "lastTransitionTime": now}]}}, keep_status=True)
            node = GuestNode(name, index, server, lease.ip, vm["metadata"]["uid"], pool.cpu_count, pool.memory_gi)
            self.nodes.append(node)
            vmi = api.create(vmis, {
                "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                "metadata": {"name": node.name, "namespace": ns,
                             "labels": {**labels, "kubevirt.io/nodeName": host_node},
                             "ownerReferences": [owner_reference(vm)]},
                "spec": {"domain": domain, "networks": networks, "volumes": volumes,
                         "evictionStrategy": "LiveMigrateIfPossible", "hostname": node.name},
                "status": {"phase": "Running", "nodeName": host_node,
                           "interfaces": [{"name": "nic-0", "ipAddress": node.ip, "ipAddresses": [node.ip],
                                           "mac": mac, "infoSource": "domain, guest-agent"}],
                           "guestOSInfo": {"id": "ubuntu", "name": "Ubuntu", "version": "22.04"},
                           "conditions": [
                               {"type": "Ready", "status": "True", "lastProbeTime": None, "lastTransitionTime": now},
                               {"type": "LiveMigratable", "status": "True", "lastProbeTime": None,
                                "lastTransitionTime": now},
                               {"type": "AgentConnected", "status": "True", "lastProbeTime": None,
                                "lastTransitionTime": now}],
                           "volumeStatus": [{"name": "disk-0", "target": "vda"}]}})
            api.create(pods, {
                "metadata": {"name": f"virt-launcher-{node.name}-{stable_suffix(5, node.name, 'launcher')}",
                             "namespace": ns,
                             "labels": self._labels({"kubevirt.io": "virt-launcher", "vm.kubevirt.io/name": node.name,
                                                     "harvesterhci.io/vmName": node.name}),
                             "ownerReferences": [owner_reference(vmi)]},
                "spec": {"nodeName": host_node,
                         "containers": [{"name": "compute",
                                         "image": "registry.suse.com/suse/sles/15.6/virt-launcher:1.3.1"}],
                         "volumes": [{"name": "disk-0", "persistentVolumeClaim": {"claimName": disk}}]},
                "status": {"phase": "Running", "startTime": now}}, keep_status=True)

    def _delete_host_objects(self) -> None:
        api, ns = self.host.api, self.host_namespace
        selector = f"{GUEST_LABEL}={self.name}"
        for plural, api_version in (("pods", "v1"), ("virtualmachineinstances", "kubevirt.io/v1"),
                                    ("virtualmachines", "kubevirt.io/v1"), ("persistentvolumeclaims", "v1")):
            rtype = kind(api, api_version, plural)
            for obj in api.list(rtype, ns, label_selector=selector).items:
                try:
                    api.delete(rtype, ns, obj["metadata"]["name"])
                except errors.ApiError:
                    pass
        pods = kind(api, "v1", "pods")
        for node in self.nodes:
            for pod in api.list(pods, ns, label_selector=f"kubevirt.io=hotplug-disk,vm.kubevirt.io/name={node.name}").items:
                try:
                    api.delete(pods, ns, pod["metadata"]["name"])
                except errors.ApiError:
                    pass
            self.hostside.dhcp.release(self._mac(node.name))
        self.hostside.poke()
