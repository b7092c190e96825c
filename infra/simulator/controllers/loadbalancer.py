"""The load balancer controller (`harvester-lb-controller`, docs/harvester-facts.md §2.2-§2.3).

DHCP mode: `status.allocatedAddress.ip = "0.0.0.0"`. Pool mode: an address from `spec.ipPool`, or
from the pool the selector picks (highest-priority matching non-global pool, else the global
one), logged as `lb %s/%s allocate ip %s from pool %s`, then condition Ready. Errors become
Ready=False with upstream's text (`no matched IPPool ...`, the allocator's `no IP addresses
available ...`, `... duplicate allocation is not allowed`) and are retried a simulated second
later. Removal (wrangler finalizer) logs `lb %s/%s is deleted, ...` and releases the address.

VM-type load balancers (workloadType `vm` or none) then go through `ensureVMLoadBalancer`: a Service and an
EndpointSlice named as the load balancer, the health checker, kube-vip's address for the Service as
`status.address`, the backend VMIs' addresses as `status.backendServers` (see `lb_datapath.py`, which also
carries the traffic: a node's direct-tcpip channel to `<status.address>:<listener port>`). A VMI's change
enqueues the load balancers whose selector matches it (`harvester-lb-vmi-controller`), a health verdict that
changes an endpoint enqueues its load balancer (`HealthCheckNotify`), and at start every load balancer is
handled once (the informer's first list).
"""
from __future__ import annotations

import asyncio
import copy
from typing import TYPE_CHECKING, Any

from ..apiserver.clock import rfc3339
from ..apiserver.store import StoredEvent
from .base import Controller
from .ipam import (GROUP, LB_CONTAINER, LB_NAMESPACE, LB_POD_LABELS, VERSION, AllocationError, Requirement,
                   allocators, log_line, select_pool)
from .lb_datapath import (BACKENDS_NO_IP, BACKENDS_NOT_HEALTHY, NO_RUNNING_BACKEND, KubeVipServices,
                          LoadBalancerError, Prober, ServiceLB, ServiceProxy, health_check_port, is_vm_type,
                          selector_matches)

if TYPE_CHECKING:
    from ..simulator import Simulator

LB_FINALIZER = "wrangler.cattle.io/harvester-lb-controller"
DHCP_ADDRESS = "0.0.0.0"
RETRY_SIMULATED_SECONDS = 1.0
DUPLICATE = "duplicate allocation is not allowed"
LBS_KEY = (GROUP, "loadbalancers")
VMIS_KEY = ("kubevirt.io", "virtualmachineinstances")

Obj = dict[str, Any]


class LoadBalancerController(Controller):
    watches = (LBS_KEY, VMIS_KEY)

    def __init__(self, simulator: "Simulator", proxy: ServiceProxy) -> None:
        super().__init__(simulator.api)
        self.simulator = simulator
        self.allocators = allocators(simulator.api)
        self._retrying: set[tuple[str, str]] = set()
        self.proxy = proxy
        self.prober = Prober(simulator.clock, lambda line: self.log("info", line))
        self.servicelb = ServiceLB(self.api, self.prober, lambda line: self.log("info", line), self.enqueue)

    @property
    def _lbs(self) -> Any:
        return self.api.lookup(GROUP, VERSION, "loadbalancers")

    def log(self, level: str, message: str) -> None:
        self.log_to_pod(LB_NAMESPACE, LB_POD_LABELS, LB_CONTAINER, log_line(level, message))

    async def run(self) -> None:
        guests = getattr(getattr(self.simulator, "kubevirt", None), "guests", None)
        if guests is not None:
            # kube-proxy's rules on every node; the health checker's TCP probes reach the VMIs' guests
            guests.add_frontend(lambda address, port: self.proxy.route(address, port, guests.route_guest))
            self.prober.probe = lambda ip, port: guests.route_guest(ip, port) is not None
        for lb in self.api.list(self._lbs).items:          # the informer's first list
            self.enqueue(lb["metadata"]["namespace"], lb["metadata"]["name"])
        await super().run()

    def enqueue(self, namespace: str, name: str) -> None:
        stub = {"metadata": {"namespace": namespace, "name": name}}
        self.queue.put_nowait(StoredEvent(0, LBS_KEY, "MODIFIED", stub, None))

    async def handle(self, event: StoredEvent) -> None:
        meta = event.object["metadata"]
        namespace, name = meta.get("namespace", ""), meta["name"]
        if event.type_key == VMIS_KEY:
            self.notify_for_vmi(event.object)
            return
        self._retrying.discard((namespace, name))
        lb = self.api.find(self._lbs, namespace, name)
        if lb is None:
            return
        if lb["metadata"].get("deletionTimestamp"):
            if LB_FINALIZER in (lb["metadata"].get("finalizers") or []):
                self.on_remove(lb)
            return
        if LB_FINALIZER not in (lb["metadata"].get("finalizers") or []):
            lb = self.api.mutate(self._lbs, namespace, name,
                                 lambda o: o["metadata"].setdefault("finalizers", []).append(LB_FINALIZER))
        self.on_change(lb)

    def notify_for_vmi(self, vmi: Obj) -> None:
        """`harvester-lb-vmi-controller`: the VM-type load balancers of the VMI's namespace that select it."""
        labels = vmi["metadata"].get("labels") or {}
        for lb in self.api.list(self._lbs, vmi["metadata"].get("namespace", "")).items:
            selector = (lb.get("spec") or {}).get("backendServerSelector") or {}
            if lb["metadata"].get("deletionTimestamp") or not is_vm_type(lb) or not selector:
                continue
            if selector_matches(selector, labels):
                self.enqueue(lb["metadata"]["namespace"], lb["metadata"]["name"])

    # ---- OnChange -----------------------------------------------------------------------------
    def on_change(self, lb: Obj) -> None:
        status = copy.deepcopy(lb.get("status") or {})
        status.setdefault("allocatedAddress", {})
        error: LoadBalancerError | None = None
        try:
            self._ensure_address(lb, status)
            if is_vm_type(lb):
                self._ensure_vm_load_balancer(lb, status)
        except LoadBalancerError as exc:
            error = exc
        status["conditions"] = _ready(status.get("conditions") or [], error)
        if status != (lb.get("status") or {}):
            meta = lb["metadata"]
            self.api.mutate(self._lbs, meta["namespace"], meta["name"], lambda o: o.__setitem__("status", status))
            if error is not None and error.quiet:
                self.log("info", f"lb {meta['namespace']}/{meta['name']} is set to not ready, error: {error}")
        if error is not None and error.retry:
            self._retry_later(lb)

    def _ensure_address(self, lb: Obj, status: Obj) -> None:
        spec, meta = lb.get("spec") or {}, lb["metadata"]
        current = status["allocatedAddress"]
        if spec.get("ipam") == "dhcp":
            if current.get("ip") != DHCP_ADDRESS:
                status["allocatedAddress"] = {"ip": DHCP_ADDRESS}
            return
        who = f"{meta['namespace']}/{meta['name']}"
        if spec.get("ipPool") and current.get("ipPool") and current["ipPool"] != spec["ipPool"]:
            self.log("info", f"lb {who} release ip {current.get('ip', '')} to pool {current['ipPool']}")
            self._release(current["ipPool"], who)
            status["allocatedAddress"] = {}
            return
        if current.get("ipPool"):
            return
        pool = spec.get("ipPool") or self._select(lb)
        allocator = self.allocators.get(pool)
        if allocator is None:
            raise LoadBalancerError(f"fail to get allocator {pool}")
        try:
            allocation = allocator.get(self.api, who)
        except AllocationError as exc:
            if DUPLICATE in str(exc):
                # upstream releases the stale booking so that the next attempt can take it again
                allocator.release(self.api, who)
                self.log("info", f"lb {who} error: {exc}, try to release ip to pool {pool}, ok")
            raise LoadBalancerError(str(exc)) from None
        status["allocatedAddress"] = {"ipPool": allocation.pool, "ip": allocation.ip, "mask": allocation.mask,
                                      "gateway": allocation.gateway}
        self.log("info", f"lb {who} allocate ip {allocation.ip} from pool {allocation.pool}")

    def _select(self, lb: Obj) -> str:
        annotations = lb["metadata"].get("annotations") or {}
        requirement = Requirement(annotations.get(f"{GROUP}/network", ""), annotations.get(f"{GROUP}/project", ""),
                                  annotations.get(f"{GROUP}/namespace", "") or lb["metadata"]["namespace"],
                                  annotations.get(f"{GROUP}/cluster", ""))
        pools = self.api.list(self.api.lookup(GROUP, VERSION, "ippools")).items
        chosen = select_pool([p for p in pools if not p["metadata"].get("deletionTimestamp")], requirement)
        if chosen is None:
            raise LoadBalancerError(f"no matched IPPool with requirement {requirement.go_repr()}", quiet=True)
        return chosen["metadata"]["name"]

    def _ensure_vm_load_balancer(self, lb: Obj, status: Obj) -> None:
        """`ensureVMLoadBalancer`, handed the load balancer as read (its Service gets the address stored so far)."""
        self.servicelb.ensure_service(lb)
        try:
            address = self.servicelb.service_ip(lb)
        except LoadBalancerError:
            status.pop("address", None)
            raise
        _set_or_drop(status, "address", address)
        servers = self.servicelb.ensure_backend_servers(lb)
        _set_or_drop(status, "backendServers", servers.addresses)
        if not servers.addresses:
            if servers.matched == 0:
                raise LoadBalancerError(NO_RUNNING_BACKEND, retry=False, quiet=True)
            raise LoadBalancerError(BACKENDS_NO_IP, retry=False, quiet=True)
        if health_check_port(lb) and self.servicelb.probe_ready_count(lb) == 0:
            raise LoadBalancerError(f"{BACKENDS_NOT_HEALTHY} total:{len(servers.addresses)}, healthy:0",
                                    retry=False, quiet=True)

    # ---- OnRemove -----------------------------------------------------------------------------
    def on_remove(self, lb: Obj) -> None:
        meta, spec = lb["metadata"], lb.get("spec") or {}
        status = lb.get("status") or {}
        allocated = status.get("allocatedAddress") or {}
        who = f"{meta['namespace']}/{meta['name']}"
        self.log("info", f"lb {who} is deleted, address {status.get('address', '')}, "
                         f"allocatedIP {allocated.get('ip', '')}")
        if spec.get("ipam") != "dhcp" and allocated.get("ipPool"):
            try:
                self._release(allocated["ipPool"], who)
            except LoadBalancerError as exc:
                self.log("info", f"lb {who} fail to release ip {allocated.get('ip', '')}, error: {exc}")
                self._retry_later(lb)
                return
        if is_vm_type(lb):
            self.servicelb.delete(lb)       # its Service and EndpointSlice go with it (ownerReferences)

        def drop_finalizer(o: Obj) -> None:
            o["metadata"]["finalizers"] = [f for f in o["metadata"].get("finalizers") or [] if f != LB_FINALIZER]

        self.api.mutate(self._lbs, meta["namespace"], meta["name"], drop_finalizer)

    def _release(self, pool: str, who: str) -> None:
        allocator = self.allocators.get(pool)
        if allocator is None:
            raise LoadBalancerError(f"fail to get allocator {pool}")
        allocator.release(self.api, who)

    # ---- requeue ------------------------------------------------------------------------------
    def _retry_later(self, lb: Obj) -> None:
        """wrangler's EnqueueAfter / error backoff: the key comes back a simulated second later."""
        key = (lb["metadata"]["namespace"], lb["metadata"]["name"])
        if key in self._retrying:
            return
        self._retrying.add(key)
        asyncio.get_running_loop().call_later(RETRY_SIMULATED_SECONDS / self.simulator.clock.scale,
                                              self.enqueue, *key)


def _ready(conditions: list[Obj], error: Exception | None) -> list[Obj]:
    result = [dict(c) for c in conditions]
    ready = next((c for c in result if c.get("type") == "Ready"), None)
    if ready is None:
        ready = {"type": "Ready"}
        result.append(ready)
    status, message = ("False", str(error)) if error is not None else ("True", "")
    if ready.get("status") != status or ready.get("message", "") != message:
        ready["status"] = status
        if message:
            ready["message"] = message
        else:
            ready.pop("message", None)
        ready["lastUpdateTime"] = rfc3339()
    return result


def _set_or_drop(status: Obj, key: str, value: Any) -> None:
    """A Go field with `omitempty`: an empty value is no field."""
    if value:
        status[key] = value
    else:
        status.pop(key, None)


def install(simulator: "Simulator") -> None:
    # The kube-vip that holds the management VIP announces the LoadBalancer addresses too (svc_enable, one
    # leader for all services): while it fails over, they are on no node either (nodes/kube_vip.py).
    proxy = ServiceProxy(simulator.api, announcing=lambda: not getattr(getattr(simulator, "kube_vip", None),
                                                                       "failing_over", False))
    proxy.install()
    simulator.spawn(LoadBalancerController(simulator, proxy).run, "loadbalancer-controller")
    simulator.spawn(KubeVipServices(simulator).run, "kube-vip-services")
