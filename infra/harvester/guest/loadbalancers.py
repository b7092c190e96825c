"""Guest LoadBalancer Services and what the host does for them (docs/harvester-facts.md §2.2-§2.4).

A guest Service of type LoadBalancer with `cloudprovider.harvesterhci.io/ipam: dhcp|pool` becomes
a host `LoadBalancer` in the guest's host namespace, named `<cluster>-<ns>-<svc>-<crc32 8 hex>`
(crc32 of that prefix plus the Service uid) and labelled
`cloudprovider.harvesterhci.io/{cluster,serviceNamespace,serviceName}`. Where its address came
from shows on the host: a pool address in `status.allocatedAddress.ipPool` and the IPPool's
`status.allocated`; a DHCP one as `allocatedAddress.ip: 0.0.0.0` ("ask DHCP") with the leased
address, which kube-vip got in the guest, copied into `status.address`. A DHCP address is judged
against the subnet the VM network itself declares (Harvester's route annotation on its
NetworkAttachmentDefinition), never a subnet written here. `AddressWatch` records every address change
of the guest's LoadBalancer Services while something (an upgrade) happens.
"""
from __future__ import annotations

import ipaddress
import re
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any

import kubernetes

from infra.failures import ProductFailure
from infra.kube import Kube
from infra.waits.budget import Budget

from ..ippool import AddressBlock
from ..names import RUN_ID_LABEL
from .cluster import KUBEVIRT, GuestCluster

LB_API = "loadbalancer.harvesterhci.io/v1beta1"
PREFIX = "cloudprovider.harvesterhci.io/"
IPAM_ANNOTATION = PREFIX + "ipam"
KUBE_VIP_IPS = "kube-vip.io/loadbalancerIPs"
ASK_DHCP = "0.0.0.0"
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")

Obj = dict[str, Any]


def expected_lb_name(cluster: str, namespace: str, service: str, uid: str) -> str:
    """harvester-cloud-provider's `loadBalancerName`."""
    if not _DNS1035.match(cluster) or len(cluster) > 63:
        cluster = "a" + cluster
    base = f"{cluster}-{namespace}-{service}-"
    return base[:63 - 8] + f"{zlib.crc32((base + uid).encode()) & 0xFFFFFFFF:08x}"


@dataclass(frozen=True)
class ServedAddress:
    """A guest LoadBalancer Service's address and where, on the host, it came from."""

    service: str
    ipam: str
    address: str
    host_lb: str
    source: str

    def row(self) -> str:
        return f"{self.service:<24} {self.ipam:<5} {self.address:<16} {self.host_lb:<60} {self.source}"


class LoadBalancerProblem(ProductFailure):
    """A load balancer address is not what the host and the guest should agree on."""


def service_manifest(namespace: str, name: str, ipam: str, run_id: str, port: int = 80) -> Obj:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": {RUN_ID_LABEL: run_id},
                         "annotations": {IPAM_ANNOTATION: ipam}},
            "spec": {"type": "LoadBalancer", "selector": {"app": name},
                     "ports": [{"name": "http", "port": port, "protocol": "TCP", "targetPort": 8080}]}}


def ingress_ip(service: Obj | None) -> str:
    ingress = (((service or {}).get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return str(ingress[0].get("ip", "")) if ingress else ""


def wait_service_address(kube: Kube, namespace: str, name: str, budget: Budget) -> Obj:
    found = kube.wait_for("v1", "Service", name, lambda s: bool(ingress_ip(s)), budget=budget, namespace=namespace,
                          awaited=f"LoadBalancer Service {namespace}/{name} to get an ingress address")
    assert found is not None
    return found


def host_load_balancers(guest: GuestCluster, cluster: str) -> list[Obj]:
    return guest.host.list(LB_API, "LoadBalancer", guest.host_namespace,
                           label_selector=f"{PREFIX}cluster={cluster}")


def host_lb_for(guest: GuestCluster, cluster: str, service: Obj) -> Obj:
    meta = service["metadata"]
    selector = f"{PREFIX}cluster={cluster},{PREFIX}serviceNamespace={meta['namespace']},{PREFIX}serviceName={meta['name']}"
    found = guest.host.list(LB_API, "LoadBalancer", guest.host_namespace, label_selector=selector)
    expected = expected_lb_name(cluster, meta["namespace"], meta["name"], meta["uid"])
    if len(found) != 1 or found[0]["metadata"]["name"] != expected:
        raise LoadBalancerProblem(
            f"expected one host LoadBalancer {guest.host_namespace}/{expected} for guest Service "
            f"{meta['namespace']}/{meta['name']}, found {[lb['metadata']['name'] for lb in found] or 'none'}",
            evidence={"host LoadBalancers": found})
    return found[0]


def served_address(guest: GuestCluster, cluster: str, service: Obj, budget: Budget) -> ServedAddress:
    """Check the service's address against the host: the LoadBalancer, and the pool that lent it."""
    meta = service["metadata"]
    ipam = (meta.get("annotations") or {}).get(IPAM_ANNOTATION, "pool")
    address = ingress_ip(service)
    lb_name = expected_lb_name(cluster, meta["namespace"], meta["name"], meta["uid"])

    def settled(lb: Obj | None) -> bool:
        status = (lb or {}).get("status") or {}
        return bool(status.get("allocatedAddress", {}).get("ip")) and status.get("address") == address

    lb = guest.host.wait_for(LB_API, "LoadBalancer", lb_name, settled, budget=budget, namespace=guest.host_namespace,
                             awaited=f"host LoadBalancer {lb_name} to record the address {address}")
    lb = host_lb_for(guest, cluster, service)
    spec, status = lb.get("spec") or {}, lb.get("status") or {}
    allocated = status.get("allocatedAddress") or {}
    annotations = meta.get("annotations") or {}
    problems = []
    if spec.get("ipam") != ipam or spec.get("workloadType") != "cluster":
        problems.append(f"host LoadBalancer has ipam={spec.get('ipam')} workloadType={spec.get('workloadType')}, "
                        f"expected ipam={ipam} workloadType=cluster")
    if ipam == "pool":
        pool_name = allocated.get("ipPool", "")
        pool = guest.host.find(LB_API, "IPPool", pool_name) if pool_name else None
        holder = ((pool or {}).get("status") or {}).get("allocated", {}).get(address)
        if allocated.get("ip") != address:
            problems.append(f"the pool allocated {allocated.get('ip')}, the Service serves {address}")
        if holder != f"{guest.host_namespace}/{lb['metadata']['name']}":
            problems.append(f"IPPool {pool_name or '<none>'} does not record {address} as allocated to "
                            f"{guest.host_namespace}/{lb['metadata']['name']} (it says {holder!r})")
        source = f"IPPool {pool_name}"
    else:
        if allocated.get("ip") != ASK_DHCP:
            problems.append(f"a DHCP load balancer's allocatedAddress.ip is {allocated.get('ip')!r}, expected 0.0.0.0")
        if annotations.get(KUBE_VIP_IPS) != ASK_DHCP:
            problems.append(f"the Service asks kube-vip for {annotations.get(KUBE_VIP_IPS)!r}, expected 0.0.0.0 (DHCP)")
        source = "DHCP on the VM network"
    if annotations.get(KUBE_VIP_IPS) != allocated.get("ip"):
        problems.append(f"{KUBE_VIP_IPS} is {annotations.get(KUBE_VIP_IPS)!r}, the host allocated "
                        f"{allocated.get('ip')!r}")
    if problems:
        raise LoadBalancerProblem(f"{meta['namespace']}/{meta['name']}: " + "; ".join(problems),
                                  evidence={"Service": service, "host LoadBalancer": lb})
    return ServedAddress(f"{meta['namespace']}/{meta['name']}", ipam, address, lb["metadata"]["name"], source)


def ippool_manifest(name: str, cluster: str, host_namespace: str, run_id: str, block: AddressBlock) -> Obj:
    """An IPPool for one guest cluster's load balancers, from a block of the lab's test range."""
    return {"apiVersion": LB_API, "kind": "IPPool", "metadata": {"name": name, "labels": {RUN_ID_LABEL: run_id}},
            "spec": {"description": f"load balancer addresses of guest cluster {cluster}",
                     "ranges": [block.as_range()],
                     "selector": {"scope": [{"project": "*", "namespace": host_namespace, "guestCluster": cluster}]}}}


ROUTE_ANNOTATION = "network.harvesterhci.io/route"


@dataclass(frozen=True)
class VmNetwork:
    """The VM network a guest's VMs use, and the subnet it declares (None when it declares none)."""

    name: str                                   # <namespace>/<NetworkAttachmentDefinition>
    subnet: ipaddress.IPv4Network | None
    route: str

    def __str__(self) -> str:
        return f"VM network {self.name} ({self.subnet or 'no subnet declared'})"


def guest_vm_network(guest: GuestCluster) -> VmNetwork:
    """The network of the guest's VMs (their VMI's multus network) and what its NAD declares."""
    names = set()
    for node in guest.kube().list("v1", "Node"):
        vmi = guest.host.find(KUBEVIRT, "VirtualMachineInstance", node["metadata"]["name"], guest.host_namespace)
        for network in ((vmi or {}).get("spec") or {}).get("networks") or []:
            if (network.get("multus") or {}).get("networkName"):
                name = network["multus"]["networkName"]
                names.add(name if "/" in name else f"{guest.host_namespace}/{name}")
    if len(names) != 1:
        raise LoadBalancerProblem(f"the guest's VMs use {sorted(names) or 'no'} VM network(s); expected one")
    name = names.pop()
    namespace, nad_name = name.split("/", 1)
    nad = guest.host.find("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition", nad_name, namespace) or {}
    route = ((nad.get("metadata") or {}).get("annotations") or {}).get(ROUTE_ANNOTATION, "")
    subnet = None
    try:
        import json

        cidr = (json.loads(route) if route else {}).get("cidr", "")
        subnet = ipaddress.IPv4Network(cidr, strict=False) if cidr else None
    except (ValueError, AttributeError):
        subnet = None
    return VmNetwork(name, subnet, route)


def pool_allocations(host: Kube, pool: str) -> dict[str, str]:
    found = host.find(LB_API, "IPPool", pool)
    return dict(((found or {}).get("status") or {}).get("allocated") or {})


def wait_pool_released(host: Kube, pool: str, addresses: list[str], budget: Budget) -> Obj:
    def released(obj: Obj | None) -> bool:
        status = (obj or {}).get("status") or {}
        allocated = status.get("allocated") or {}
        return obj is not None and not any(a in allocated for a in addresses) \
            and status.get("available") == status.get("total")

    found = host.wait_for(LB_API, "IPPool", pool, released, budget=budget,
                          awaited=f"IPPool {pool} to get {', '.join(addresses) or 'its addresses'} back")
    assert found is not None
    return found


def wait_no_host_lbs(guest: GuestCluster, cluster: str, budget: Budget) -> None:
    guest.host.wait_for_all(LB_API, "LoadBalancer", lambda lbs: not lbs, budget=budget,
                            namespace=guest.host_namespace, label_selector=f"{PREFIX}cluster={cluster}",
                            awaited=f"no host LoadBalancer of guest cluster {cluster} to remain")


def in_network(address: str, network: ipaddress.IPv4Network) -> bool:
    try:
        return ipaddress.ip_address(address) in network
    except ValueError:
        return False


@dataclass(frozen=True)
class AddressChange:
    at: float
    service: str
    before: str
    after: str


class AddressWatch:
    """Watches a namespace's LoadBalancer Services in a thread and records every address change.

    Bounded: each watch call ends after `window` seconds and the thread stops when the context ends.
    """

    def __init__(self, kube: Kube, namespace: str, initial: dict[str, str], window: int = 30) -> None:
        self.kube = kube
        self.namespace = namespace
        self.current = dict(initial)
        self.changes: list[AddressChange] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._listed = threading.Event()
        self._window = window
        self._thread = threading.Thread(target=self._run, name=f"address-watch-{namespace}", daemon=True)
        self._watch: kubernetes.watch.Watch | None = None

    def __enter__(self) -> "AddressWatch":
        self._thread.start()
        self._listed.wait(self._window)        # changes from here on are seen
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        self._thread.join(self._window + 15)

    def _observe(self, name: str, now: str) -> None:
        if now != self.current[name]:
            self.changes.append(AddressChange(time.monotonic(), name, self.current[name], now))
            self.current[name] = now

    def _run(self) -> None:
        core = kubernetes.client.CoreV1Api(self.kube.api_client)
        while not self._stop.is_set():
            self._watch = kubernetes.watch.Watch()
            try:
                # list first (nothing between two watches goes unseen), then watch from that version
                listing = self.kube.api_client.sanitize_for_serialization(
                    core.list_namespaced_service(self.namespace, _request_timeout=self._window))
                seen = {s["metadata"]["name"]: s for s in listing.get("items") or []}
                for name in self.current:
                    self._observe(name, ingress_ip(seen.get(name)))
                self._listed.set()
                for event in self._watch.stream(core.list_namespaced_service, self.namespace,
                                                resource_version=listing["metadata"]["resourceVersion"],
                                                timeout_seconds=self._window, _request_timeout=self._window + 10):
                    service = event["raw_object"]
                    name = service["metadata"]["name"]
                    if name in self.current and event["type"] != "BOOKMARK":
                        self._observe(name, ingress_ip(service) if event["type"] != "DELETED" else "")
                    if self._stop.is_set():
                        break
            except Exception as exc:  # noqa: BLE001 - a dropped watch is re-opened; the error is kept as evidence
                if self._stop.is_set():
                    break                  # stopping closes the stream under the reader
                self.errors.append(f"{type(exc).__name__}: {exc}")
                self._stop.wait(0.5)


def serve_all(guest: GuestCluster, cluster: str, services: list[str], budget: Budget) -> dict[str, ServedAddress]:
    """Every `namespace/name` Service gets an address, distinct from the others, from its source; a DHCP
    address lies in the subnet the VM network declares."""
    served = {}
    for key in services:
        namespace, name = key.split("/")
        service = wait_service_address(guest.kube(), namespace, name, budget)
        served[key] = served_address(guest, cluster, service, budget)
    addresses = [s.address for s in served.values()]
    problems = []
    if any(s.ipam == "dhcp" for s in served.values()):
        network = guest_vm_network(guest)
        if network.subnet is None:
            problems.append(f"{network} declares no subnet ({ROUTE_ANNOTATION}: {network.route!r}): "
                            "a DHCP address cannot be judged")
        else:
            problems += [f"{s.service} got {s.address} from DHCP, outside {network}"
                         for s in served.values() if s.ipam == "dhcp" and not in_network(s.address, network.subnet)]
    if len(set(addresses)) != len(addresses):
        problems.append(f"load balancers share an address: {addresses}")
    if problems:
        raise LoadBalancerProblem("; ".join(problems), evidence={"served": [s.row() for s in served.values()]})
    return served


def still_served(guest: GuestCluster, cluster: str, before: dict[str, ServedAddress],
                 budget: Budget) -> dict[str, ServedAddress]:
    """Each Service keeps its address, the host still records it, and kube-vip is there to serve it."""
    now = {}
    for key, was in before.items():
        namespace, name = key.split("/")
        service = guest.kube().get("v1", "Service", name, namespace)
        if ingress_ip(service) != was.address:
            raise LoadBalancerProblem(f"{key} now has {ingress_ip(service) or 'no address'}, it had {was.address}",
                                      evidence={"Service": service})
        now[key] = served_address(guest, cluster, service, budget)
    kube_vip = guest.kube().find("apps/v1", "DaemonSet", "kube-vip", "kube-system")
    if not int(((kube_vip or {}).get("status") or {}).get("numberAvailable", 0)):
        raise LoadBalancerProblem("no kube-vip pod is available to serve the addresses",
                                  evidence={"kube-vip DaemonSet": kube_vip or "absent"})
    return now


def describe_changes(changes: list[AddressChange]) -> str:
    return "; ".join(f"{c.service}: {c.before or '<none>'} -> {c.after or '<none>'}" for c in changes)
