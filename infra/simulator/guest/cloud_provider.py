"""harvester-cloud-provider's load balancers and kube-vip, in a guest (docs/harvester-facts.md §2.3-§2.4).

Only while the chart's pods run. The cloud provider (a Ready `harvester-cloud-provider` pod; its
`--cluster-name` argument, default "kubernetes") turns each guest Service of type LoadBalancer
into a host LoadBalancer in the guest's host namespace: name `<cluster>-<ns>-<svc>-<crc32 8 hex>`
(crc32 of that prefix plus the Service uid; cluster name prefixed "a" when not a DNS-1035 label),
labels `cloudprovider.harvesterhci.io/{cluster,serviceNamespace,serviceName}`, `spec.ipam` from
the annotation `cloudprovider.harvesterhci.io/ipam` (default pool), `workloadType: cluster`. The
host's load balancer controller allocates (pool: from an IPPool; DHCP: `0.0.0.0`, "ask DHCP");
the cloud provider copies the allocated address into `kube-vip.io/loadbalancerIPs` and the
Service's ingress address into the LoadBalancer's `status.address`.
kube-vip (a Ready pod of its DaemonSet) serves that address: for `0.0.0.0` it leases one from the
VM network's DHCP server for a MAC of its own (`kube-vip.io/hwaddr`, `kube-vip.io/requestedIP`),
and writes `status.loadBalancer.ingress`. Deleting the Service deletes the host LoadBalancer
(which releases a pool address) and kube-vip releases its DHCP lease.
"""
from __future__ import annotations

import hashlib
import re
import zlib
from typing import TYPE_CHECKING

from ..apiserver import errors
from .cloud_provider_chart import CHART as CLOUD_PROVIDER_CHART
from .cloud_provider_chart import DEFAULT_CLUSTER_NAME
from .dhcp import NoFreeAddress
from .objects import Obj, kind, mutate_if_changed, running_ready_pods, status_of

if TYPE_CHECKING:
    from .cluster import SimulatedGuestCluster

PREFIX = "cloudprovider.harvesterhci.io/"
IPAM_ANNOTATION = PREFIX + "ipam"
KUBE_VIP_IPS = "kube-vip.io/loadbalancerIPs"
KUBE_VIP_HWADDR = "kube-vip.io/hwaddr"
KUBE_VIP_REQUESTED = "kube-vip.io/requestedIP"
LB_CLEANUP_FINALIZER = "service.kubernetes.io/load-balancer-cleanup"
LB_GROUP = "loadbalancer.harvesterhci.io"
ASK_DHCP = "0.0.0.0"
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def load_balancer_name(cluster: str, namespace: str, name: str, uid: str) -> str:
    if not _DNS1035.match(cluster) or len(cluster) > 63:
        cluster = "a" + cluster
    base = f"{cluster}-{namespace}-{name}-"
    suffix = f"{zlib.crc32((base + uid).encode()) & 0xFFFFFFFF:08x}"
    return base[:63 - 8] + suffix


def _kube_vip_mac(uid: str) -> str:
    digest = hashlib.sha256(uid.encode()).digest()
    return "00:00:6c:" + ":".join(f"{b:02x}" for b in digest[:3])


class CloudProvider:
    def __init__(self, guest: "SimulatedGuestCluster") -> None:
        self.guest = guest
        self.api = guest.api
        self.host = guest.host.api
        self.services = kind(self.api, "v1", "services")

    @property
    def _lbs(self):  # noqa: ANN202 - ResourceType
        return kind(self.host, f"{LB_GROUP}/v1beta1", "loadbalancers")

    def _cluster_name(self, ccm: list[Obj]) -> str:
        for container in ccm[0]["spec"].get("containers") or []:
            for arg in container.get("args") or []:
                if arg.startswith("--cluster-name="):
                    return arg.split("=", 1)[1]
        return DEFAULT_CLUSTER_NAME

    def reconcile(self) -> None:
        pods = self.api.list(kind(self.api, "v1", "pods")).items
        ccm = running_ready_pods(pods, {"app.kubernetes.io/name": CLOUD_PROVIDER_CHART})
        kube_vip = running_ready_pods(pods, {"app.kubernetes.io/name": "kube-vip"})
        for service in self.api.list(self.services).items:
            if (service.get("spec") or {}).get("type") != "LoadBalancer":
                continue
            if service["metadata"].get("deletionTimestamp"):
                if kube_vip:
                    self._kube_vip_forget(service)
                if ccm and LB_CLEANUP_FINALIZER in (service["metadata"].get("finalizers") or []):
                    self._delete(service, self._cluster_name(ccm))
                continue
            if ccm:
                service = self._ensure(service, self._cluster_name(ccm))
            if kube_vip:
                self._kube_vip_serve(service)

    # ---- the cloud controller manager's service controller ---------------------------------------
    def _ensure(self, service: Obj, cluster: str) -> Obj:
        meta = service["metadata"]
        if LB_CLEANUP_FINALIZER not in (meta.get("finalizers") or []):
            service = self.api.mutate(self.services, meta["namespace"], meta["name"],
                                      lambda o: o["metadata"].setdefault("finalizers", []).append(LB_CLEANUP_FINALIZER))
            self.guest.event(service, "Normal", "EnsuringLoadBalancer", "Ensuring load balancer", "service-controller")
        name = load_balancer_name(cluster, meta["namespace"], meta["name"], meta["uid"])
        annotations = meta.get("annotations") or {}
        ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        ns = self.guest.host_namespace
        lb = self.host.find(self._lbs, ns, name)

        def construct(obj: Obj) -> None:
            obj.setdefault("metadata", {})
            lb_annotations = obj["metadata"].setdefault("annotations", {})
            for key in ("network", "project", "namespace"):
                lb_annotations[f"{LB_GROUP}/{key}"] = annotations.get(PREFIX + key, "")
            lb_annotations[f"{LB_GROUP}/cluster"] = cluster
            labels = obj["metadata"].setdefault("labels", {})
            labels.update({PREFIX + "cluster": cluster, PREFIX + "serviceNamespace": meta["namespace"],
                           PREFIX + "serviceName": meta["name"]})
            spec = obj.setdefault("spec", {})
            spec["ipam"] = annotations.get(IPAM_ANNOTATION, "pool")
            spec["workloadType"] = "cluster"
            if ingress and ingress[0].get("ip"):
                status_of(obj)["address"] = ingress[0]["ip"]

        if lb is None:
            body: Obj = {"apiVersion": f"{LB_GROUP}/v1beta1", "kind": "LoadBalancer",
                         "metadata": {"name": name, "namespace": ns}}
            construct(body)
            try:
                lb = self.host.create(self._lbs, body)
            except errors.ApiError as exc:
                self.guest.event_once(service, "Warning", "SyncLoadBalancerFailed",
                                      f"Error syncing load balancer: failed to ensure load balancer: create or update "
                                      f"lb {ns}/{name} failed, error: {exc}", "service-controller")
                return service
        else:
            lb = mutate_if_changed(self.host, self._lbs, lb, construct)
        allocated = ((lb.get("status") or {}).get("allocatedAddress") or {}).get("ip", "")
        if not allocated:
            return service
        if annotations.get(KUBE_VIP_IPS) != allocated:
            service = mutate_if_changed(self.api, self.services, service, lambda o: o["metadata"].setdefault(
                "annotations", {}).__setitem__(KUBE_VIP_IPS, allocated))
            self.guest.event(service, "Normal", "EnsuredLoadBalancer", "Ensured load balancer", "service-controller")
        return service

    def _delete(self, service: Obj, cluster: str) -> None:
        meta = service["metadata"]
        name = load_balancer_name(cluster, meta["namespace"], meta["name"], meta["uid"])
        try:
            self.host.delete(self._lbs, self.guest.host_namespace, name)
        except errors.ApiError:
            pass
        self.guest.event(service, "Normal", "DeletedLoadBalancer", "Deleted load balancer", "service-controller")
        self.api.mutate(self.services, meta["namespace"], meta["name"], lambda o: o["metadata"].__setitem__(
            "finalizers", [f for f in o["metadata"].get("finalizers") or [] if f != LB_CLEANUP_FINALIZER]))

    # ---- kube-vip ---------------------------------------------------------------------------------------
    def _kube_vip_serve(self, service: Obj) -> None:
        annotations = service["metadata"].get("annotations") or {}
        wanted = annotations.get(KUBE_VIP_IPS, "")
        if not wanted:
            return
        extra: dict[str, str] = {}
        address = wanted
        if wanted == ASK_DHCP:
            mac = annotations.get(KUBE_VIP_HWADDR) or _kube_vip_mac(service["metadata"]["uid"])
            try:
                lease = self.guest.hostside.dhcp.request(mac, f"{service['metadata']['namespace']}-"
                                                              f"{service['metadata']['name']}")
            except NoFreeAddress:
                return
            address = lease.ip
            extra = {KUBE_VIP_HWADDR: mac, KUBE_VIP_REQUESTED: lease.ip}

        def serve(obj: Obj) -> None:
            obj["metadata"].setdefault("annotations", {}).update(extra)
            status_of(obj)["loadBalancer"] = {"ingress": [{"ip": address, "ipMode": "VIP"}]}
        mutate_if_changed(self.api, self.services, service, serve)

    def _kube_vip_forget(self, service: Obj) -> None:
        mac = (service["metadata"].get("annotations") or {}).get(KUBE_VIP_HWADDR)
        if mac:
            self.guest.hostside.dhcp.release(mac)
