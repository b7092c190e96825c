"""What makes a VM-type LoadBalancer's address carry traffic: the Service and EndpointSlice the load balancer
controller keeps, its health checker, the host's kube-vip and every node's kube-proxy.

Upstream, harvester/load-balancer-harvester at e861dc94 (docs/harvester-facts.md §2.3):

* `pkg/controller/loadbalancer/controller.go` `OnChange`: after `ensureAllocatedAddress`, a load balancer of
  workloadType `vm` (or none) goes through `ensureVMLoadBalancer`: `lbManager.EnsureLoadBalancer` (the Service),
  `EnsureLoadBalancerServiceIP` (the Service's `status.loadBalancer.ingress[0].ip` becomes `status.address`;
  without one the address is cleared and the error is `lb.ErrWaitExternalIP`, "service is waiting for external
  IP", which `handleError` answers with `EnqueueAfter` 1 s), `EnsureBackendServers` (the EndpointSlice, the
  probers, the dummy endpoint) whose addresses become `status.backendServers` (`getServerAddress`; omitted when
  none). No address: `no running backend servers` when no VMI matched, `running backend servers have no IP`
  when some matched but none has one. With `spec.healthCheck.port` set, `GetProbeReadyBackendServerCount` of 0
  is `running backend servers are not probed as healthy total:<n>, healthy:0`. Those three errors make Ready
  False without a requeue ("wait vmi controller Enqueue() lb / health check go thread Enqueue()"). The manager
  is handed the load balancer as it was read, so the Service of the pass that allocates the address still has
  the old (empty) `loadBalancerIP`; the 1 s requeue fills it in. `OnRemove` (VM type) calls
  `DeleteLoadBalancer`, which only stops the load balancer's probers: the Service and the EndpointSlice carry
  an ownerReference to the load balancer and go with it (garbage collection). `HealthCheckNotify` enqueues the
  load balancer.
* `pkg/controller/vmi/controller.go` (`harvester-lb-vmi-controller`): a VMI's change or removal enqueues every
  load balancer of its namespace that is not being deleted, is not of type cluster, and whose non-empty
  `backendServerSelector` matches the VMI's labels.
* `pkg/lb/servicelb/manager.go`:
  - `constructService`: a Service named as the load balancer, in its namespace, ownerReference
    `{apiVersion, kind, name, uid}` of the load balancer, label `loadbalancer.harvesterhci.io/servicelb: "true"`,
    `type: LoadBalancer`, no selector, no annotations; `spec.loadBalancerIP` is `status.allocatedAddress.ip`
    (pool) or `0.0.0.0` (dhcp: "Kube-vip gets external IP ... by DHCP"); `ports` one per listener
    `{name, protocol, port, targetPort: backendPort}`. An existing Service only gets those two fields rewritten.
  - `getServiceBackendServers`: no selector, no servers; else the VMIs of the load balancer's namespace that
    match it (`utils.NewSelector`: an `In` requirement per key), skipping those with a deletionTimestamp
    (no phase check). A VMI's address (`servicelb/backendserver.go` `GetAddress`) is the first
    `status.interfaces[].ipAddress` that is IPv4; one without it counts as matched but is no server.
  - `constructEndpointSliceFromBackendServers`: an EndpointSlice named as the load balancer, same
    ownerReference, labels `loadbalancer.harvesterhci.io/servicelb: "true"` and
    `kubernetes.io/service-name: <lb>`, `addressType: IPv4`, `ports` one per listener
    `{name, protocol, port: backendPort}`, one endpoint per server `{addresses: [ip], targetRef: {namespace,
    name, uid}, conditions: {ready}}`; an endpoint already there with the same VMI uid and address keeps its
    conditions, a new one starts `ready: false`. No server: the dummy endpoint `10.52.0.255` (targetRef uid
    `dummy347-546a-4642-9da6-5608endpoint`, ready) so that "the LB traffic is [not] routed to other
    services/local host".
  - `ensureProbes`: without a health check (or port 0) the load balancer's probers are removed and every
    real endpoint is made ready (`updateAllConditions`, logged `update all conditions of lb %s/%s endpoints to
    %t`); with one, a prober per real endpoint at `<ip>:<healthCheck.port>`, defaults successThreshold 1,
    failureThreshold 3, timeout 3 s, period 5 s for zero fields, starting from the endpoint's ready condition;
    `updateAllProbers` replaces changed ones, removes stale ones, adds new ones.
  - `ensureDummyEndpoint`: no ready real endpoint and no dummy: the dummy is added; a ready one and the dummy:
    the dummy goes.
  - `updateHealthCondition`: a prober's verdict for `<ip>` that differs from the endpoint's ready condition
    enqueues the load balancer, updates the EndpointSlice and logs `update condition of lb %s endpoint ip %s
    to %t`. `GetProbeReadyBackendServerCount`: the ready real endpoints.
* `pkg/prober/worker.go`, `manager.go`, `prober.go`: a worker probes every `Period` (a ticker: the first probe
  one period after it starts) by TCP connect (tcp-shaker) within `Timeout`; a failure zeroes the success count,
  `FailureThreshold` failures in a row report unhealthy; `SuccessThreshold` successes in a row report healthy;
  each report is sent and the counter restarts (the receiver ignores repeats). `AddWorker` logs `add porber
  worker, uid: %s, address: %s, option: %+v` (sic), `RemoveWorkersByUid` `remove %d porber workers from uid: %s`.
* `pkg/webhook/loadbalancer/validator.go` (not simulated here): listeners need unique names, ports and backend
  ports in 1..65535; a health check's port must be a TCP listener's backendPort with thresholds, period and
  timeout above 0.

Nothing in load-balancer-harvester moves packets. On the host the harvester chart's kube-vip
(harvester/harvester `deploy/charts/harvester/values.yaml`: `svc_enable: "true"`, `vip_arp: "true"`,
`vip_interface: ""`, which kube-vip's `cmd/kube-vip.go` resolves to the default-route interface, the
management network) serves Services of type LoadBalancer: the address is `kube-vip.io/loadbalancerIPs`, else
`spec.loadBalancerIP` (kube-vip `pkg/instance/instance.go`); `0.0.0.0` starts a DHCP client on a macvlan of
that interface, recorded as `kube-vip.io/hwaddr` and `kube-vip.io/requestedIP` (`pkg/services/services.go`
`updateStatus`), which also writes `status.loadBalancer.ingress`. kube-proxy on every node sends a connection
to `<ingress ip>:<port>` (or the ClusterIP) to one ready endpoint of the Service's EndpointSlices (label
`kubernetes.io/service-name`, the port of the same name; a missing ready condition counts as ready), chosen at
random in iptables mode; a Service without one rejects it.

The simulator. `ServiceLB` and `Prober` are the controller's manager and health checker as above (a probe
succeeds when the VMI's guest answers on the port: `Guests.route_guest`). `KubeVipServices` gives a
LoadBalancer Service with an address its ingress; the simulator has no DHCP server on the management network,
so a `0.0.0.0` Service never gets one and a DHCP-mode VM load balancer stays Ready=False `service is waiting
for external IP`, answering nothing. `ServiceProxy` is kube-proxy: `Guests.route` asks it about any address that
is no VMI's, so a node's direct-tcpip channel to `<status.address>:<listener port>` reaches the guest of a
random ready endpoint at its backendPort (the connection then lives with that guest: a later endpoint change
leaves it alone, its guest stopping or losing that address ends it); no such Service port, no ready endpoint
(or only the dummy, where nothing answers), or a guest that does not answer: `connect failed`.
"""
from __future__ import annotations

import asyncio
import copy
import logging
import random
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..apiserver import errors
from ..apiserver.store import StoredEvent
from .base import Controller
from .ipam import GROUP

if TYPE_CHECKING:
    import paramiko

    from ..simulator import Simulator

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Route = Callable[["paramiko.Channel"], None]
GuestRoute = Callable[[str, int], "Route | None"]

SERVICELB_LABEL = f"{GROUP}/servicelb"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
VALUE_TRUE = "true"
ASK_DHCP = "0.0.0.0"
DUMMY_ADDRESS = "10.52.0.255"
DUMMY_UID = "dummy347-546a-4642-9da6-5608endpoint"
DEFAULT_SUCCESS_THRESHOLD = 1
DEFAULT_FAILURE_THRESHOLD = 3
DEFAULT_TIMEOUT_SECONDS = 3
DEFAULT_PERIOD_SECONDS = 5
WAIT_EXTERNAL_IP = "service is waiting for external IP"
NO_RUNNING_BACKEND = "no running backend servers"
BACKENDS_NO_IP = "running backend servers have no IP"
BACKENDS_NOT_HEALTHY = "running backend servers are not probed as healthy"
KUBE_VIP_IPS = "kube-vip.io/loadbalancerIPs"
SERVICES = ("", "services")
SLICES = ("discovery.k8s.io", "endpointslices")


class LoadBalancerError(Exception):
    def __init__(self, message: str, *, retry: bool = True, quiet: bool = False) -> None:
        super().__init__(message)
        self.retry = retry
        self.quiet = quiet      # upstream's "NotReturnError" kinds: logged when the status changes


def go_duration(seconds: float) -> str:
    """Go's time.Duration String() for whole seconds (3s, 1m0s, 1h0m0s)."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def uid_of(lb: Obj) -> str:
    """The prober manager's key for a load balancer (`marshalUID`)."""
    return f"{lb['metadata']['namespace']}/{lb['metadata']['name']}"


def is_vm_type(lb: Obj) -> bool:
    return (lb.get("spec") or {}).get("workloadType", "") in ("vm", "")


def selector_matches(selector: dict[str, list[str]], labels: dict[str, str]) -> bool:
    """`utils.NewSelector`: every key must be present with one of its values."""
    return all(k in labels and labels[k] in (values or []) for k, values in selector.items())


def ipv4_address(vmi: Obj) -> str | None:
    """`Server.GetAddress`: the first interface address that is IPv4."""
    for interface in (vmi.get("status") or {}).get("interfaces") or []:
        address = str(interface.get("ipAddress") or "")
        parts = address.split(".")
        if len(parts) == 4 and all(p.isdigit() and 0 <= int(p) <= 255 for p in parts):
            return address
    return None


def health_check_port(lb: Obj) -> int:
    check = (lb.get("spec") or {}).get("healthCheck") or {}
    return int(check.get("port") or 0)


def _ready(endpoint: Obj) -> bool:
    return bool((endpoint.get("conditions") or {}).get("ready"))


def _is_dummy(endpoint: Obj) -> bool:
    return (endpoint.get("targetRef") or {}).get("uid") == DUMMY_UID


def _owner(lb: Obj) -> list[Obj]:
    return [{"apiVersion": lb.get("apiVersion", f"{GROUP}/v1beta1"), "kind": lb.get("kind", "LoadBalancer"),
             "name": lb["metadata"]["name"], "uid": lb["metadata"]["uid"]}]


def _without_empty(port: Obj) -> Obj:
    """A Go struct's empty fields are not sent (the API server defaults an empty protocol to TCP)."""
    return {k: v for k, v in port.items() if v not in ("", None)}


def _dummy_endpoint(lb: Obj) -> Obj:
    meta = lb["metadata"]
    return {"addresses": [DUMMY_ADDRESS], "conditions": {"ready": True},
            "targetRef": {"namespace": meta["namespace"], "name": meta["name"], "uid": DUMMY_UID}}


# ---- the health checker (pkg/prober) -------------------------------------------------------------------

@dataclass(frozen=True)
class HealthOption:
    address: str                 # <ip>:<port>
    success_threshold: int
    failure_threshold: int
    timeout: float
    period: float
    initial: bool

    def same(self, other: "HealthOption") -> bool:
        """`HealthOption.Equal`: everything but the initial condition."""
        return (self.address, self.success_threshold, self.failure_threshold, self.timeout, self.period) == \
            (other.address, other.success_threshold, other.failure_threshold, other.timeout, other.period)

    def go_repr(self) -> str:
        return (f"{{Address:{self.address} SuccessThreshold:{self.success_threshold} "
                f"FailureThreshold:{self.failure_threshold} Timeout:{go_duration(self.timeout)} "
                f"Period:{go_duration(self.period)} InitialCondition:{str(self.initial).lower()}}}")


class _Worker:
    def __init__(self, prober: "Prober", uid: str, option: HealthOption) -> None:
        self.prober, self.uid, self.option = prober, uid, option
        self.successes = self.failures = 0
        self.condition = option.initial
        self.task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        while True:
            await self.prober.clock.sleep(self.option.period)
            self.probe_once()

    def probe_once(self) -> None:
        ip, _, port = self.option.address.rpartition(":")
        if not self.prober.probe(ip, int(port)):
            self.successes = 0
            self.failures += 1
            if self.failures >= self.option.failure_threshold:
                self.condition = False
                self.prober.report(self.uid, self.option.address, False)
                self.failures = 0
            return
        self.failures = 0
        self.successes += 1
        if self.successes >= self.option.success_threshold:
            self.condition = True
            self.prober.report(self.uid, self.option.address, True)
            self.successes = 0


class Prober:
    """`prober.Manager`: workers by load balancer (`ns/name`) and probe address; on the simulator's loop."""

    def __init__(self, clock: Any, log_line: Callable[[str], None]) -> None:
        self.clock = clock
        self.log = log_line
        self.workers: dict[str, dict[str, _Worker]] = {}
        self.probe: Callable[[str, int], bool] = lambda ip, port: False
        self.report: Callable[[str, str, bool], None] = lambda uid, address, healthy: None

    def options(self, uid: str) -> dict[str, HealthOption]:
        return {address: w.option for address, w in self.workers.get(uid, {}).items()}

    def add(self, uid: str, option: HealthOption) -> None:
        workers = self.workers.setdefault(uid, {})
        old = workers.pop(option.address, None)
        if old is not None:
            self._stop(old)
        worker = _Worker(self, uid, option)
        worker.task = asyncio.get_running_loop().create_task(worker.run(), name=f"lb-probe {uid} {option.address}")
        workers[option.address] = worker
        self.log(f"add porber worker, uid: {uid}, address: {option.address}, option: {option.go_repr()}")

    def remove(self, uid: str, address: str) -> int:
        worker = self.workers.get(uid, {}).pop(address, None)
        if worker is None:
            return 0
        self._stop(worker)
        self.log(f"remove porber worker, uid: {uid}, address: {address}")
        return 1

    def remove_all(self, uid: str) -> int:
        workers = self.workers.pop(uid, {})
        for worker in workers.values():
            self._stop(worker)
        if workers:
            self.log(f"remove {len(workers)} porber workers from uid: {uid}")
        return len(workers)

    def ensure(self, uid: str, targets: dict[str, HealthOption]) -> None:
        """`updateAllProbers`: keep equal ones, replace changed ones, drop stale ones, add new ones."""
        for address, active in self.options(uid).items():
            target = targets.pop(address, None)
            if target is None:
                self.remove(uid, address)
            elif not active.same(target):
                self.remove(uid, address)
                self.add(uid, target)
        for target in targets.values():
            self.add(uid, target)

    @staticmethod
    def _stop(worker: _Worker) -> None:
        if worker.task is not None:
            worker.task.cancel()


# ---- the controller's manager (pkg/lb/servicelb) ---------------------------------------------------------

@dataclass(frozen=True)
class BackendServers:
    servers: list[tuple[Obj, str]]          # (VMI, its address)
    matched: int

    @property
    def addresses(self) -> list[str]:
        return [address for _, address in self.servers]


class ServiceLB:
    def __init__(self, api: Any, prober: Prober, log_line: Callable[[str], None],
                 notify: Callable[[str, str], None]) -> None:
        self.api = api
        self.prober = prober
        self.log = log_line
        self.notify = notify                   # HealthCheckNotify: enqueue the load balancer
        self.services = api.lookup("", "v1", "services")
        self.slices = api.lookup("discovery.k8s.io", "v1", "endpointslices")
        self.vmis = api.lookup("kubevirt.io", "v1", "virtualmachineinstances")
        prober.report = self.update_health_condition

    # Step 1: the Service
    def ensure_service(self, lb: Obj) -> None:
        meta, spec = lb["metadata"], lb.get("spec") or {}
        address = ASK_DHCP if spec.get("ipam") == "dhcp" else \
            ((lb.get("status") or {}).get("allocatedAddress") or {}).get("ip", "")
        ports = [_without_empty({"name": listener.get("name", ""), "protocol": listener.get("protocol", ""),
                                 "port": listener.get("port"), "targetPort": listener.get("backendPort")})
                 for listener in spec.get("listeners") or []]
        current = self.api.find(self.services, meta["namespace"], meta["name"])
        if current is None:
            body: Obj = {"apiVersion": "v1", "kind": "Service",
                         "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                                      "ownerReferences": _owner(lb), "labels": {SERVICELB_LABEL: VALUE_TRUE}},
                         "spec": {"type": "LoadBalancer", "loadBalancerIP": address, "ports": ports}}
            if not address:
                del body["spec"]["loadBalancerIP"]
            try:
                self.api.create(self.services, body)
            except errors.ApiError as exc:
                if exc.status != 409:
                    raise LoadBalancerError(f"fail to create service, error: {exc}") from None
            return
        wanted = copy.deepcopy(current)
        if address:
            wanted["spec"]["loadBalancerIP"] = address
        else:
            wanted["spec"].pop("loadBalancerIP", None)
        wanted["spec"]["ports"] = ports
        try:
            self.api.update(self.services, wanted)      # a no-op write keeps the resourceVersion
        except errors.ApiError as exc:
            raise LoadBalancerError(f"fail to update service, error: {exc}") from None

    # Step 2: its external address
    def service_ip(self, lb: Obj) -> str:
        service = self.api.find(self.services, lb["metadata"]["namespace"], lb["metadata"]["name"])
        if service is None:
            raise LoadBalancerError("service is not existing, ensure it first")
        ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        if ingress:
            return str(ingress[0].get("ip") or "")
        raise LoadBalancerError(WAIT_EXTERNAL_IP, quiet=True)

    # Step 3: the backends: EndpointSlice, probers, dummy
    def backend_servers(self, lb: Obj) -> BackendServers:
        selector = (lb.get("spec") or {}).get("backendServerSelector") or {}
        if not selector:
            return BackendServers([], 0)
        servers, matched = [], 0
        for vmi in self.api.list(self.vmis, lb["metadata"]["namespace"]).items:
            if not selector_matches(selector, vmi["metadata"].get("labels") or {}):
                continue
            if vmi["metadata"].get("deletionTimestamp"):
                continue
            matched += 1
            address = ipv4_address(vmi)
            if address is not None:
                servers.append((vmi, address))
        return BackendServers(servers, matched)

    def ensure_backend_servers(self, lb: Obj) -> BackendServers:
        meta, spec = lb["metadata"], lb.get("spec") or {}
        if self.api.find(self.services, meta["namespace"], meta["name"]) is None:
            raise LoadBalancerError("service is not existing, ensure it first")
        current = self.api.find(self.slices, meta["namespace"], meta["name"])
        servers = self.backend_servers(lb)
        old = list((current or {}).get("endpoints") or [])
        endpoints: list[Obj] = []
        for vmi, address in servers.servers:
            kept = next((e for e in old if (e.get("targetRef") or {}).get("uid") == vmi["metadata"]["uid"]
                         and (e.get("addresses") or [None])[0] == address), None)
            endpoints.append(copy.deepcopy(kept) if kept is not None else {
                "addresses": [address], "conditions": {"ready": False},
                "targetRef": {"namespace": vmi["metadata"]["namespace"], "name": vmi["metadata"]["name"],
                              "uid": vmi["metadata"]["uid"]}})
        if not endpoints:
            endpoints.append(_dummy_endpoint(lb))
        uid = uid_of(lb)
        port = health_check_port(lb)
        if port == 0:                                    # ensureProbes, disabled: every endpoint serves
            self.prober.remove_all(uid)
            if any(not _is_dummy(e) and not _ready(e) for e in endpoints):
                self.log(f"update all conditions of lb {uid} endpoints to true")
            for endpoint in endpoints:
                if not _is_dummy(endpoint):
                    endpoint.setdefault("conditions", {})["ready"] = True
        else:
            self.prober.ensure(uid, {f"{e['addresses'][0]}:{port}": self._option(lb, e, port)
                                     for e in endpoints if not _is_dummy(e) and e.get("addresses")})
        active = sum(1 for e in endpoints if not _is_dummy(e) and _ready(e))   # ensureDummyEndpoint
        dummies = [e for e in endpoints if _is_dummy(e)]
        if active == 0 and not dummies:
            endpoints.append(_dummy_endpoint(lb))
        elif active and dummies:
            endpoints = [e for e in endpoints if not _is_dummy(e)]
        ports = [_without_empty({"name": listener.get("name", ""), "protocol": listener.get("protocol", ""),
                                 "port": listener.get("backendPort")}) for listener in spec.get("listeners") or []]
        try:
            if current is None:
                self.api.create(self.slices, {
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": meta["name"], "namespace": meta["namespace"], "ownerReferences": _owner(lb),
                                 "labels": {SERVICELB_LABEL: VALUE_TRUE, SERVICE_NAME_LABEL: meta["name"]}},
                    "addressType": "IPv4", "ports": ports, "endpoints": endpoints})
            else:
                wanted = copy.deepcopy(current)
                wanted["ports"], wanted["endpoints"] = ports, endpoints
                self.api.update(self.slices, wanted)
        except errors.ApiError as exc:
            raise LoadBalancerError(f"fail to {'create' if current is None else 'update'} endpointslice, "
                                    f"error: {exc}") from None
        return servers

    def probe_ready_count(self, lb: Obj) -> int:
        found = self.api.find(self.slices, lb["metadata"]["namespace"], lb["metadata"]["name"]) or {}
        return sum(1 for e in found.get("endpoints") or [] if not _is_dummy(e) and _ready(e))

    def delete(self, lb: Obj) -> None:
        self.prober.remove_all(uid_of(lb))

    def update_health_condition(self, uid: str, address: str, healthy: bool) -> None:
        """A prober's verdict: the endpoint of that IP gets it (and the load balancer is enqueued) if it differs."""
        namespace, _, name = uid.partition("/")
        found = self.api.find(self.slices, namespace, name)
        if found is None:
            log.warning("endpointSlice %s/%s is not found", namespace, name)
            return
        ip = address.rpartition(":")[0]
        for index, endpoint in enumerate(found.get("endpoints") or []):
            if (endpoint.get("addresses") or [None])[0] != ip:
                continue
            if (endpoint.get("conditions") or {}).get("ready") is not healthy:
                self.notify(namespace, name)
                wanted = copy.deepcopy(found)
                wanted["endpoints"][index].setdefault("conditions", {})["ready"] = healthy
                self.log(f"update condition of lb {uid} endpoint ip {ip} to {str(healthy).lower()}")
                try:
                    self.api.update(self.slices, wanted)
                except errors.ApiError as exc:
                    log.warning("lb %s: updating endpoint %s: %s", uid, ip, exc)
            break

    @staticmethod
    def _option(lb: Obj, endpoint: Obj, port: int) -> HealthOption:
        check = (lb.get("spec") or {}).get("healthCheck") or {}
        ready = (endpoint.get("conditions") or {}).get("ready")
        return HealthOption(
            address=f"{endpoint['addresses'][0]}:{port}",
            success_threshold=int(check.get("successThreshold") or DEFAULT_SUCCESS_THRESHOLD),
            failure_threshold=int(check.get("failureThreshold") or DEFAULT_FAILURE_THRESHOLD),
            timeout=float(check.get("timeoutSeconds") or DEFAULT_TIMEOUT_SECONDS),
            period=float(check.get("periodSeconds") or DEFAULT_PERIOD_SECONDS),
            initial=True if ready is None else bool(ready))


# ---- kube-vip on the host: a LoadBalancer Service's address ---------------------------------------------

class KubeVipServices(Controller):
    """The host's kube-vip, its Services side (the management VIP's holder is `nodes/kube_vip.py`): a
    LoadBalancer Service asking for an address gets it as its ingress. `0.0.0.0` would be a DHCP lease on the
    management network, whose DHCP server the simulator does not have."""

    watches = (SERVICES,)

    def __init__(self, simulator: "Simulator") -> None:
        super().__init__(simulator.api)
        self.services = self.api.lookup("", "v1", "services")

    async def run(self) -> None:
        for service in self.api.list(self.services).items:       # its informer's first list
            self.serve(service)
        await super().run()

    async def handle(self, event: StoredEvent) -> None:
        if event.type == "DELETED":
            return
        meta = event.object["metadata"]
        service = self.api.find(self.services, meta.get("namespace"), meta["name"])
        if service is not None:
            self.serve(service)

    def serve(self, service: Obj) -> None:
        spec, meta = service.get("spec") or {}, service["metadata"]
        if spec.get("type") != "LoadBalancer" or meta.get("deletionTimestamp"):
            return
        wanted = (meta.get("annotations") or {}).get(KUBE_VIP_IPS) or spec.get("loadBalancerIP") or ""
        address = wanted.split(",")[0].strip()
        if not address or address == ASK_DHCP:
            return
        ingress = [{"ip": address, "ipMode": "VIP"}]
        if ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") == ingress:
            return

        def announce(obj: Obj) -> None:
            obj.setdefault("status", {})["loadBalancer"] = {"ingress": ingress}
        self.api.mutate(self.services, meta["namespace"], meta["name"], announce, subresource="status")


# ---- kube-proxy on every node ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Frontend:
    key: tuple[str, str]
    addresses: frozenset[str]
    announced: frozenset[str]                       # the ones kube-vip announces (LoadBalancer ingress)
    ports: tuple[tuple[str, str, int], ...]          # (name, protocol, port)


@dataclass(frozen=True)
class _Slice:
    service: tuple[str, str]
    ports: tuple[tuple[str, str, int], ...]          # (name, protocol, port)
    ready: tuple[str, ...]                            # the ready endpoints' addresses


class ServiceProxy:
    """Services' addresses as every node's kube-proxy routes them (iptables mode: a random ready endpoint).
    Its tables follow the store's events; `route` is called from the nodes' sshd threads."""

    def __init__(self, api: Any, announcing: Callable[[], bool] = lambda: True) -> None:
        self.api = api
        self.announcing = announcing      # whether kube-vip announces LoadBalancer addresses now (not failing over)
        self._lock = threading.Lock()
        self._frontends: dict[tuple[str, str], _Frontend] = {}
        self._slices: dict[tuple[str, str], _Slice] = {}
        self._random = random.Random()

    def install(self) -> None:
        self.api.store.listeners.append(self._offer)
        for service in self.api.store.iter_raw(SERVICES):
            self._service(service, deleted=False)
        for found in self.api.store.iter_raw(SLICES):
            self._slice(found, deleted=False)

    def _offer(self, event: StoredEvent) -> None:
        if event.type_key == SERVICES:
            self._service(event.object, deleted=event.type == "DELETED")
        elif event.type_key == SLICES:
            self._slice(event.object, deleted=event.type == "DELETED")

    def _service(self, service: Obj, *, deleted: bool) -> None:
        meta, spec = service["metadata"], service.get("spec") or {}
        key = (meta.get("namespace", ""), meta["name"])
        announced = {str(i.get("ip")) for i in ((service.get("status") or {}).get("loadBalancer") or {}).get(
            "ingress") or [] if i.get("ip")}
        addresses = announced | {str(ip) for ip in [spec.get("clusterIP"), *(spec.get("clusterIPs") or [])]
                      if ip and ip != "None"}
        ports = tuple((str(p.get("name") or ""), str(p.get("protocol") or "TCP"), int(p.get("port") or 0))
                      for p in spec.get("ports") or [])
        with self._lock:
            if deleted:
                self._frontends.pop(key, None)
            else:
                self._frontends[key] = _Frontend(key, frozenset(addresses), frozenset(announced), ports)

    def _slice(self, found: Obj, *, deleted: bool) -> None:
        meta = found["metadata"]
        key = (meta.get("namespace", ""), meta["name"])
        service = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
        with self._lock:
            if deleted or not service:
                self._slices.pop(key, None)
                return
            ports = tuple((str(p.get("name") or ""), str(p.get("protocol") or "TCP"), int(p.get("port") or 0))
                          for p in found.get("ports") or [])
            ready = tuple(str(e["addresses"][0]) for e in found.get("endpoints") or []
                          if e.get("addresses") and (e.get("conditions") or {}).get("ready") is not False)
            self._slices[key] = _Slice((key[0], service), ports, ready)

    def backends(self, address: str, port: int) -> list[tuple[str, int]] | None:
        """The (endpoint address, port) pairs a TCP connection to address:port may go to; None: no Service port
        there at all."""
        with self._lock:
            for frontend in self._frontends.values():
                if address not in frontend.addresses or (address in frontend.announced and not self.announcing()):
                    continue
                for name, protocol, number in frontend.ports:
                    if number != port or protocol != "TCP":
                        continue
                    return [(ip, target) for s in self._slices.values() if s.service == frontend.key
                            for p_name, p_protocol, target in s.ports if (p_name, p_protocol) == (name, protocol)
                            for ip in s.ready]
        return None

    def route(self, address: str, port: int, guests: GuestRoute) -> "Route | None":
        candidates = self.backends(address, port)
        if not candidates:
            return None
        ip, target = self._random.choice(candidates)
        return guests(ip, target)
