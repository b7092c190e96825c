"""IPPools and load balancers (loadbalancer.harvesterhci.io): create them, read their state, check the
load balancer controller's log. docs/harvester-facts.md §2.1-§2.3.

Pools take their addresses from the range the cluster's lab reserves for test IPPools
(`Cluster.lb_addresses`; on a lab `existing.lb_address_range`): a free block is chosen among the
pools that exist, never from a subnet written here.
"""
from __future__ import annotations

import copy
import ipaddress
import secrets
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Iterable

from infra.cleanup import CleanupStack
from infra.cluster import AddressRange
from infra.kube import Kube, NotFound
from infra.kube.predicates import condition_status
from infra.waits.budget import Budget

from .edits import ObjectRef
from .names import RUN_ID_LABEL

Obj = dict[str, Any]

LB_API = "loadbalancer.harvesterhci.io/v1beta1"
NAD_API = "k8s.cni.cncf.io/v1"
GLOBAL_POOL_LABEL = "loadbalancer.harvesterhci.io/global-ip-pool"
NETWORK_ANNOTATION = "loadbalancer.harvesterhci.io/network"
VLAN_LABEL = "network.harvesterhci.io/vlan-id"
ALL = "*"

# The load balancer controller: harvester-load-balancer in harvester-system.
CONTROLLER_NAMESPACE = "harvester-system"
CONTROLLER_SELECTOR = "app.kubernetes.io/name=harvester-load-balancer"
CONTROLLER_CONTAINER = "harvester-load-balancer"

SCENARIO_VLAN = 3987           # VLAN of the VM network a network-selector change points at


# ---- names ----------------------------------------------------------------------------------------

def object_name(run_id: str, role: str) -> str:
    """`<run-id>-<role>-<6 hex>`: unique per scenario, traceable to the run, a valid DNS label."""
    return f"{run_id[:36]}-{role[:16]}-{secrets.token_hex(3)}".lower()


def _labels(run_id: str) -> dict[str, str]:
    return {RUN_ID_LABEL: run_id}


# ---- address blocks -------------------------------------------------------------------------------

@dataclass(frozen=True)
class AddressBlock:
    """`size` consecutive addresses of the lab's range, as one IPPool range (its subnet: the /24 around it)."""

    subnet: str
    start: str
    end: str

    def as_range(self) -> Obj:
        return {"subnet": self.subnet, "rangeStart": self.start, "rangeEnd": self.end}

    @property
    def size(self) -> int:
        return int(ipaddress.ip_address(self.end)) - int(ipaddress.ip_address(self.start)) + 1


def _interval(spec_range: Obj) -> tuple[int, int] | None:
    """The addresses a pool range covers, with MakeRange's defaults (whole subnet minus ends)."""
    try:
        network = ipaddress.ip_interface(str(spec_range.get("subnet"))).network
    except ValueError:
        return None
    first = int(ipaddress.ip_address(spec_range["rangeStart"])) if spec_range.get("rangeStart") \
        else int(network.network_address) + 1
    last = int(ipaddress.ip_address(spec_range["rangeEnd"])) if spec_range.get("rangeEnd") \
        else int(network.broadcast_address) - 1
    return min(first, last), max(first, last)


def _used(pools: Iterable[Obj]) -> list[tuple[int, int]]:
    return [iv for pool in pools for r in (pool.get("spec") or {}).get("ranges") or [] if (iv := _interval(r))]


def free_block(kube: Kube, addresses: AddressRange, size: int = 8) -> AddressBlock:
    """The first `size`-address block of the lab's range that no IPPool's ranges touch."""
    used = _used(kube.list(LB_API, "IPPool"))
    first_of_range, last_of_range = int(addresses.first), int(addresses.last)
    for first in range(first_of_range, last_of_range - size + 2):
        last = first + size - 1
        if all(last < lo or first > hi for lo, hi in used):
            subnet = ipaddress.ip_network(f"{ipaddress.ip_address(first)}/24", strict=False)
            return AddressBlock(str(subnet), str(ipaddress.ip_address(first)), str(ipaddress.ip_address(last)))
    raise RuntimeError(f"no free block of {size} addresses left in the test range {addresses}: "
                       "IPPools left behind by earlier runs? (list them with the run-id label)")


# ---- reading state --------------------------------------------------------------------------------

@dataclass(frozen=True)
class PoolStatus:
    """An IPPool's status as a person reads it in the dashboard."""

    total: int | None
    available: int | None
    allocated: dict[str, str]
    last_allocated: str
    ready: str | None
    ready_message: str

    @classmethod
    def of(cls, pool: Obj) -> "PoolStatus":
        status = pool.get("status") or {}
        ready: Obj = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        return cls(status.get("total"), status.get("available"), dict(status.get("allocated") or {}),
                   str(status.get("lastAllocated") or ""), condition_status(pool, "Ready"),
                   str(ready.get("message") or ""))

    @property
    def shows(self) -> str:
        """What the dashboard's IPPool list shows: "Not Ready" unless condition Ready is True."""
        return "Ready" if self.ready == "True" else "Not Ready"

    def count_problems(self) -> list[str]:
        """`available` must equal `total` minus the allocations, and never drop below zero."""
        problems = []
        if self.total is None or self.available is None:
            problems.append(f"status has total={self.total} available={self.available}")
        else:
            if self.available != self.total - len(self.allocated):
                problems.append(f"available is {self.available}, but total {self.total} minus "
                                f"{len(self.allocated)} allocated is {self.total - len(self.allocated)}")
            if self.available < 0:
                problems.append(f"available is {self.available} (below zero)")
        return problems

    def summary(self) -> str:
        return (f"{self.shows}: total={self.total} available={self.available} "
                f"allocated={self.allocated or '{}'} lastAllocated={self.last_allocated or '-'}"
                + (f" ({self.ready_message})" if self.ready_message else ""))


@dataclass(frozen=True)
class LbAddress:
    pool: str
    ip: str


def lb_address(lb: Obj | None) -> LbAddress | None:
    allocated = ((lb or {}).get("status") or {}).get("allocatedAddress") or {}
    if allocated.get("ipPool") and allocated.get("ip"):
        return LbAddress(allocated["ipPool"], allocated["ip"])
    return None


def lb_summary(lb: Obj | None) -> str:
    if lb is None:
        return "LoadBalancer absent"
    ready: Obj = next((c for c in (lb.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), {})
    address = lb_address(lb)
    return (f"LoadBalancer {lb['metadata']['namespace']}/{lb['metadata']['name']}: "
            f"Ready={ready.get('status', 'absent')} {ready.get('message', '')} "
            f"address={address.ip + ' from ' + address.pool if address else 'none'}").strip()


# ---- creating things (each registered with the cleanup stack before it exists) --------------------

def create_namespace(kube: Kube, cleanup: CleanupStack, run_id: str, budget: Budget) -> str:
    name = object_name(run_id, "lbs")
    cleanup.delete_later(kube, "v1", "Namespace", name, budget=budget)
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": _labels(run_id)}})
    return name


def namespace_scope(namespace: str) -> list[Obj]:
    """A scope that lets any project and guest cluster use the pool from this namespace."""
    return [{"project": ALL, "namespace": namespace, "guestCluster": ALL}]


GLOBAL_SCOPE = [{"project": ALL, "namespace": ALL, "guestCluster": ALL}]


def pool_manifest(name: str, run_id: str, block: AddressBlock, selector: Obj) -> Obj:
    return {"apiVersion": LB_API, "kind": "IPPool",
            "metadata": {"name": name, "labels": _labels(run_id)},
            "spec": {"description": "harvester-e2e: addresses of the lab's test range",
                     "ranges": [block.as_range()], "selector": selector}}


def create_pool(kube: Kube, cleanup: CleanupStack, run_id: str, role: str, selector: Obj, budget: Budget,
                addresses: AddressRange, size: int = 8) -> ObjectRef:
    name = object_name(run_id, role)
    cleanup.delete_later(kube, LB_API, "IPPool", name, budget=budget)
    kube.create(pool_manifest(name, run_id, free_block(kube, addresses, size), selector))
    return ObjectRef(LB_API, "IPPool", name)


def global_pool(kube: Kube) -> ObjectRef | None:
    pools = kube.list(LB_API, "IPPool", label_selector=f"{GLOBAL_POOL_LABEL}=true")
    return ObjectRef(LB_API, "IPPool", pools[0]["metadata"]["name"]) if pools else None


def create_vm_network(kube: Kube, cleanup: CleanupStack, run_id: str, namespace: str, budget: Budget) -> str:
    """A VLAN VM network (NetworkAttachmentDefinition) as Harvester's UI makes one; returns `ns/name`."""
    name = object_name(run_id, "vlan")
    config = ('{"cniVersion":"0.3.1","name":"%s","type":"bridge","bridge":"mgmt-br","promiscMode":true,'
              '"vlan":%d,"ipam":{}}' % (name, SCENARIO_VLAN))
    cleanup.delete_later(kube, NAD_API, "NetworkAttachmentDefinition", name, namespace, budget=budget)
    kube.create({"apiVersion": NAD_API, "kind": "NetworkAttachmentDefinition",
                 "metadata": {"name": name, "namespace": namespace,
                              "labels": {**_labels(run_id), VLAN_LABEL: str(SCENARIO_VLAN),
                                         "network.harvesterhci.io/type": "L2VlanNetwork",
                                         "network.harvesterhci.io/clusternetwork": "mgmt"}},
                 "spec": {"config": config}})
    return f"{namespace}/{name}"


def loadbalancer_manifest(name: str, namespace: str, run_id: str, *, network: str = "") -> Obj:
    """A pool-mode LoadBalancer for a guest cluster's Service, as the cloud provider builds one."""
    annotations = {NETWORK_ANNOTATION: network} if network else {}
    return {"apiVersion": LB_API, "kind": "LoadBalancer",
            "metadata": {"name": name, "namespace": namespace, "labels": _labels(run_id),
                         "annotations": annotations},
            "spec": {"description": "harvester-e2e", "workloadType": "cluster", "ipam": "pool",
                     "listeners": [{"name": "http", "port": 80, "protocol": "TCP", "backendPort": 30080}]}}


def create_loadbalancer(kube: Kube, cleanup: CleanupStack, run_id: str, namespace: str, role: str, budget: Budget,
                        *, network: str = "") -> ObjectRef:
    name = object_name(run_id, role)
    cleanup.delete_later(kube, LB_API, "LoadBalancer", name, namespace, budget=budget)
    kube.create(loadbalancer_manifest(name, namespace, run_id, network=network))
    return ObjectRef(LB_API, "LoadBalancer", name, namespace)


def create_vm_loadbalancer(kube: Kube, cleanup: CleanupStack, run_id: str, namespace: str, role: str, budget: Budget,
                           *, vms: list[str], pool: str, port: int, backend_port: int) -> ObjectRef:
    """A VM load balancer as Harvester's UI makes one: a TCP listener in front of the VMs named (by the
    `harvesterhci.io/vmName` label their template carries), its address from `pool`."""
    name = object_name(run_id, role)
    cleanup.delete_later(kube, LB_API, "LoadBalancer", name, namespace, budget=budget)
    kube.create({"apiVersion": LB_API, "kind": "LoadBalancer",
                 "metadata": {"name": name, "namespace": namespace, "labels": _labels(run_id)},
                 "spec": {"description": "harvester-e2e: in front of the story's VMs", "workloadType": "vm",
                          "ipam": "pool", "ipPool": pool,
                          "listeners": [{"name": "tcp", "port": port, "protocol": "TCP", "backendPort": backend_port}],
                          "backendServerSelector": {"harvesterhci.io/vmName": list(vms)}}})
    return ObjectRef(LB_API, "LoadBalancer", name, namespace)


def wait_for_address(kube: Kube, lb: ObjectRef, budget: Budget) -> tuple[Obj, LbAddress]:
    """Wait until the load balancer is Ready with an address from a pool."""
    found = kube.wait_for(LB_API, "LoadBalancer", lb.name,
                          lambda o: condition_status(o, "Ready") == "True" and lb_address(o) is not None,
                          budget=budget, namespace=lb.namespace, awaited=f"{lb} to be Ready with a pool address")
    assert found is not None
    address = lb_address(found)
    assert address is not None
    return found, address


# ---- selector changes -----------------------------------------------------------------------------

class SelectorChange(Enum):
    """The three things a person changes in a pool's selector (the dashboard's Selector tab)."""

    NETWORK = "network"      # point the pool at a VM network
    SCOPE = "scope"          # let one more namespace use it
    PRIORITY = "priority"    # rank it among matching pools

    @classmethod
    def parse(cls, text: str) -> "SelectorChange":
        try:
            return cls(text.strip())
        except ValueError:
            raise ValueError(f"unknown selector change {text!r}; use one of {[c.value for c in cls]}") from None

    def apply(self, selector: Obj, *, namespace: str, network: str = "") -> None:
        if self is SelectorChange.NETWORK:
            selector["network"] = network
        elif self is SelectorChange.SCOPE:
            selector["scope"] = [*(selector.get("scope") or []), *namespace_scope(f"{namespace}-more")]
        else:
            selector["priority"] = int(selector.get("priority") or 0) + 37


# ---- edits the validator must refuse -------------------------------------------------------------

def add_range_of(other_pool: Obj) -> Callable[[Obj], None]:
    """Add another pool's first range to this pool's ranges (they overlap: refused)."""
    taken = copy.deepcopy(other_pool["spec"]["ranges"][0])
    return lambda pool: pool["spec"]["ranges"].append(copy.deepcopy(taken))


def leave_out(ip: str) -> Callable[[Obj], None]:
    """Shrink the pool's ranges so that `ip`, allocated to a load balancer, falls outside them."""
    def shrink(pool: Obj) -> None:
        address = int(ipaddress.ip_address(ip))
        kept = []
        for spec_range in pool["spec"]["ranges"]:
            interval = _interval(spec_range)
            if interval is None or not interval[0] <= address <= interval[1]:
                kept.append(spec_range)
                continue
            first, last = interval
            part = (address + 1, last) if address - first < last - address else (first, address - 1)
            if part[0] <= part[1]:
                kept.append({**spec_range, "rangeStart": str(ipaddress.ip_address(part[0])),
                             "rangeEnd": str(ipaddress.ip_address(part[1]))})
        pool["spec"]["ranges"] = kept
    return shrink


def make_global(pool: Obj) -> None:
    """Open the pool to every project, namespace and guest cluster (refused if a global pool exists)."""
    pool["spec"].setdefault("selector", {})["scope"] = copy.deepcopy(GLOBAL_SCOPE)


def requirement_network(pool: Obj) -> str:
    """The network a load balancer must name to match this pool's selector."""
    return ((pool.get("spec") or {}).get("selector") or {}).get("network", "")


# ---- the load balancer controller's log ----------------------------------------------------------

def controller_log(kube: Kube) -> str:
    """Every harvester-load-balancer pod's log, through the pod log API (only the leader logs)."""
    pods = kube.list("v1", "Pod", CONTROLLER_NAMESPACE, label_selector=CONTROLLER_SELECTOR)
    if not pods:
        raise NotFound(404, "NotFound", f"no pod in {CONTROLLER_NAMESPACE} matches {CONTROLLER_SELECTOR}")
    return "".join(kube.pod_log(p["metadata"]["name"], CONTROLLER_NAMESPACE, container=CONTROLLER_CONTAINER)
                   for p in pods)


def allocation_logged(log: str, lb: ObjectRef, address: LbAddress) -> bool:
    return f"lb {lb.namespace}/{lb.name} allocate ip {address.ip} from pool {address.pool}" in log


def pool_removal_lines(log: str, pool: str) -> list[str]:
    """Lines saying the controller saw the pool removed (v0.4.4+ text, and the older debug text)."""
    texts = (f"IP Pool {pool} is deleted", f"IP Pool {pool} has been deleted")
    return [line for line in log.splitlines() if any(t in line for t in texts)]
