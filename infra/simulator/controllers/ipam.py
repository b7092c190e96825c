"""The load balancer's IPAM, as harvester-load-balancer does it (docs/harvester-facts.md §2.1-§2.2).

* Ranges follow `ipam.MakeRange`: rangeStart defaults to the subnet's `.1`, rangeEnd to the last
  address before broadcast, the gateway to `.1` (and is never handed out); a /32 is one address.
* Allocation records live ONLY in `IPPool.status` (the CRD has no status subresource): `Reserve`
  sets `allocated[ip]`, `lastAllocated` and decrements `available`; `Release` moves the entry to
  `allocatedHistory` and increments `available`. Addresses are handed out round-robin after
  `lastAllocated`, as CNI host-local's allocator does, preferring an applicant's previous address.
* The IPAM controller (`harvester-ipam-controller`) rebuilds the status (total, available,
  pruned history, `Ready`) only when it has no allocator for the pool or the checksum of
  `spec.ranges` changed. So a status wiped by a whole-object write is NOT restored, and the next
  `Reserve` takes `available` from 0 to -1: that is the product's behaviour, reproduced here.
* On removal (through the wrangler finalizer) it logs `IP Pool <name> is deleted` into the
  harvester-load-balancer pod's log (the text of v0.4.4 and later).
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from ..apiserver.clock import rfc3339
from ..apiserver.objects import ObjectApi
from ..apiserver.store import StoredEvent
from ..harvester.versions import compare_semver, is_semver
from .base import Controller

if TYPE_CHECKING:
    from ..simulator import Simulator

GROUP = "loadbalancer.harvesterhci.io"
VERSION = "v1beta1"
IPAM_FINALIZER = "wrangler.cattle.io/harvester-ipam-controller"
GLOBAL_POOL_LABEL = f"{GROUP}/global-ip-pool"
ALL = "*"

LB_NAMESPACE = "harvester-system"
LB_POD_LABELS = {"app.kubernetes.io/name": "harvester-load-balancer"}
LB_CONTAINER = "harvester-load-balancer"

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Obj = dict[str, Any]


# ---- ranges ------------------------------------------------------------------------------------

class RangeError(ValueError):
    """A range the allocator cannot build; the text is upstream's."""


def _go_ip(ip: IP | None) -> str:
    return "<nil>" if ip is None else str(ip)


@dataclass(frozen=True)
class IpRange:
    """One `spec.ranges[]` entry as `ipam.MakeRange` canonicalises it."""

    start: IP
    end: IP
    subnet: ipaddress.IPv4Network | ipaddress.IPv6Network
    gateway: IP | None

    @classmethod
    def from_spec(cls, spec: Obj) -> "IpRange":
        subnet_text = str(spec.get("subnet") or "")
        try:
            interface = ipaddress.ip_interface(subnet_text)
            if "/" not in subnet_text:
                raise ValueError
        except ValueError:
            raise RangeError(f"invalid CIDR address: {subnet_text}, a valid example is 192.168.1.0/24") from None
        subnet = interface.network
        if subnet.prefixlen == subnet.max_prefixlen:          # point to point: the one address
            default_start = default_end = interface.ip
            default_gateway = None
        else:
            default_start = default_gateway = subnet.network_address + 1
            last = subnet.broadcast_address
            default_end = last - 1 if subnet.version == 4 else last
        start = _parse_ip("range start", spec.get("rangeStart"), subnet, default_start)
        end = _parse_ip("range end", spec.get("rangeEnd"), subnet, default_end)
        gateway = _parse_ip("gateway", spec.get("gateway"), subnet, default_gateway)
        if start > end:
            start, end = end, start
        return cls(start, end, subnet, gateway)

    def contains(self, ip: IP) -> bool:
        return ip.version == self.start.version and ip in self.subnet and self.start <= ip <= self.end

    def overlaps(self, other: "IpRange") -> bool:
        if self.start.version != other.start.version:
            return False
        return (self.contains(other.start) or self.contains(other.end)
                or other.contains(self.start) or other.contains(self.end))

    @property
    def size(self) -> int:
        count = int(self.end) - int(self.start) + 1
        return count - 1 if self.gateway is not None and self.contains(self.gateway) else count

    def addresses(self) -> Iterator[IP]:
        for number in range(int(self.start), int(self.end) + 1):
            ip = ipaddress.ip_address(number) if self.start.version == 4 else ipaddress.IPv6Address(number)
            if ip != self.gateway:
                yield ip

    def go_repr(self) -> str:
        """How Go's `%+v` prints the CNI allocator.Range (the validator's messages use it)."""
        mask = format(int(self.subnet.netmask), f"0{self.subnet.max_prefixlen // 4}x")
        return (f"{{RangeStart:{self.start} RangeEnd:{self.end} "
                f"Subnet:{{IP:{self.subnet.network_address} Mask:{mask}}} Gateway:{_go_ip(self.gateway)}}}")

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


def _parse_ip(what: str, text: Any, subnet: Any, default: IP | None) -> IP | None:
    if not text:
        return default
    try:
        ip = ipaddress.ip_address(str(text))
    except ValueError:
        raise RangeError(f"invalid {what} {text}: invalid IP {text}") from None
    if ip not in subnet:
        raise RangeError(f"invalid {what} {text}: IP {text} is out of subnet {subnet}")
    if ip == subnet.network_address:
        raise RangeError(f"invalid {what} {text}: IP {text} is the network address")
    if subnet.version == 4 and ip == subnet.broadcast_address:
        raise RangeError(f"invalid {what} {text}: IP {text} is the broadcast address")
    return ip


@dataclass(frozen=True)
class RangeSet:
    ranges: tuple[IpRange, ...]

    @classmethod
    def from_spec(cls, ranges: list[Obj] | None) -> "RangeSet":
        return cls(tuple(IpRange.from_spec(r) for r in ranges or []))

    def contains(self, ip: IP) -> bool:
        return any(r.contains(ip) for r in self.ranges)

    def overlaps(self, other: "RangeSet") -> bool:
        return any(a.overlaps(b) for a in self.ranges for b in other.ranges)

    @property
    def total(self) -> int:
        return sum(r.size for r in self.ranges)

    def range_for(self, ip: IP) -> IpRange | None:
        return next((r for r in self.ranges if r.contains(ip)), None)

    def candidates(self, last: IP | None) -> list[IP]:
        """Every address once, round-robin from the one after `last` (CNI host-local's RangeIter)."""
        ordered = [ip for r in self.ranges for ip in r.addresses()]
        if last is not None and self.contains(last) and last in ordered:
            at = ordered.index(last) + 1
            ordered = ordered[at:] + ordered[:at]
        return ordered

    def go_repr(self) -> str:
        return "[" + " ".join(r.go_repr() for r in self.ranges) + "]"

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.ranges)


def ranges_checksum(ranges: list[Obj] | None) -> str:
    """Changes exactly when `spec.ranges` changes (upstream hashes `fmt.Sprintf("%v", ranges)`)."""
    canonical = [{k: r.get(k, "") for k in ("rangeStart", "rangeEnd", "subnet", "gateway")} for r in ranges or []]
    return hashlib.sha256(json.dumps(canonical).encode()).hexdigest()


def parse_ip(text: str) -> IP | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


# ---- selectors -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Requirement:
    """What a LoadBalancer asks of a pool (`ipam.Requirement`)."""

    network: str = ""
    project: str = ""
    namespace: str = ""
    cluster: str = ""

    def go_repr(self) -> str:
        return (f"&{{Network:{self.network} Project:{self.project} Namespace:{self.namespace} "
                f"Cluster:{self.cluster}}}")


def tuple_matches(scope: Obj, requirement: Requirement) -> bool:
    """A scope tuple matches when each field is equal or either side is "*"."""
    pairs = ((scope.get("project", ""), requirement.project), (scope.get("namespace", ""), requirement.namespace),
             (scope.get("guestCluster", ""), requirement.cluster))
    return all(mine == ALL or theirs == ALL or mine == theirs for mine, theirs in pairs)


def selector_matches(selector: Obj | None, requirement: Requirement) -> bool:
    selector = selector or {}
    if selector.get("network", "") != requirement.network:
        return False
    return any(tuple_matches(t, requirement) for t in selector.get("scope") or [])


def is_global_pool(pool: Obj) -> bool:
    """A single scope tuple with all three fields "*" (the mutator's rule for the global label)."""
    scope = ((pool.get("spec") or {}).get("selector") or {}).get("scope") or []
    return len(scope) == 1 and all(scope[0].get(k) == ALL for k in ("project", "namespace", "guestCluster"))


def select_pool(pools: list[Obj], requirement: Requirement) -> Obj | None:
    """The matching non-global pool with the highest priority, else the global pool (`Selector.Select`)."""
    selected, global_pool, priority = None, None, 0
    for pool in pools:
        if (pool["metadata"].get("labels") or {}).get(GLOBAL_POOL_LABEL) == "true":
            global_pool = pool
            continue
        selector = (pool.get("spec") or {}).get("selector") or {}
        if selector_matches(selector, requirement) and int(selector.get("priority") or 0) >= priority:
            selected, priority = pool, int(selector.get("priority") or 0)
    return selected or global_pool


# ---- the allocation store (IPPool.status) ------------------------------------------------------

def go_status(status: Obj | None) -> Obj:
    """IPPoolStatus as Go serialises it: total/available/lastAllocated always present (no omitempty)."""
    status = dict(status or {})
    status.setdefault("total", 0)
    status.setdefault("available", 0)
    status.setdefault("lastAllocated", "")
    return status


@dataclass(frozen=True)
class Allocation:
    pool: str
    ip: str
    mask: str
    gateway: str


class AllocationError(Exception):
    """The allocator could not hand out an address; the text is upstream's (CNI host-local)."""


@dataclass
class PoolAllocator:
    """The in-memory allocator the controller keeps per pool; records go to the pool's status."""

    name: str
    ranges: RangeSet
    checksum: str

    def _pools(self, api: ObjectApi) -> Any:
        return api.lookup(GROUP, VERSION, "ippools")

    def _status(self, api: ObjectApi) -> Obj:
        pool = api.get(self._pools(api), None, self.name)
        return go_status(pool.get("status"))

    def allocated_to(self, api: ObjectApi, applicant: str) -> list[str]:
        return [ip for ip, who in (self._status(api).get("allocated") or {}).items() if who == applicant]

    def _reserve(self, api: ObjectApi, applicant: str, ip: IP) -> bool:
        text = str(ip)
        allocated = self._status(api).get("allocated") or {}
        if text in allocated:
            return allocated[text] == applicant

        def book(pool: Obj) -> None:
            status = go_status(pool.get("status"))
            history = dict(status.get("allocatedHistory") or {})
            history.pop(text, None)
            if history:
                status["allocatedHistory"] = history
            else:
                status.pop("allocatedHistory", None)     # an empty Go map is omitted (omitempty)
            status["allocated"] = {**(status.get("allocated") or {}), text: applicant}
            status["lastAllocated"] = text
            status["available"] = int(status["available"]) - 1
            pool["status"] = status

        api.mutate(self._pools(api), None, self.name, book)
        return True

    def get(self, api: ObjectApi, applicant: str) -> Allocation:
        """`Allocator.Get`: the applicant's previous address first, else the next free one."""
        status = self._status(api)
        for ip_text, who in (status.get("allocatedHistory") or {}).items():
            ip = parse_ip(ip_text)
            if who == applicant and ip is not None and self.ranges.contains(ip):
                if not self._reserve(api, applicant, ip):
                    raise AllocationError(f"requested IP address {ip} is not available in range set {self.ranges}")
                return self._allocation(ip)
        for held in self.allocated_to(api, applicant):
            ip = parse_ip(held)
            if ip is not None and self.ranges.contains(ip):
                raise AllocationError(f"{held} has been allocated to {applicant}, "
                                      "duplicate allocation is not allowed")
        last = parse_ip(status.get("lastAllocated") or "")
        for ip in self.ranges.candidates(last):
            if self._reserve(api, applicant, ip):
                return self._allocation(ip)
        raise AllocationError(f"no IP addresses available in range set: {self.ranges}")

    def _allocation(self, ip: IP) -> Allocation:
        found = self.ranges.range_for(ip)
        assert found is not None
        return Allocation(self.name, str(ip), str(found.subnet.netmask), _go_ip(found.gateway))

    def release(self, api: ObjectApi, applicant: str) -> None:
        """`ReleaseByID`: the applicant's address moves to allocatedHistory; tolerant of repeats."""
        def give_back(pool: Obj) -> None:
            status = go_status(pool.get("status"))
            allocated = dict(status.get("allocated") or {})
            for ip, who in list(allocated.items()):
                if who == applicant:
                    del allocated[ip]
                    status["allocatedHistory"] = {**(status.get("allocatedHistory") or {}), ip: who}
                    status["available"] = int(status["available"]) + 1
                    break
            else:
                return
            status["allocated"] = allocated
            pool["status"] = status

        if self.allocated_to(api, applicant):
            api.mutate(self._pools(api), None, self.name, give_back)


class AllocatorMap:
    """Allocators by pool name, shared by the IPAM and load balancer controllers (one process upstream)."""

    def __init__(self) -> None:
        self._by_name: dict[str, PoolAllocator] = {}

    def get(self, name: str) -> PoolAllocator | None:
        return self._by_name.get(name)

    def put(self, allocator: PoolAllocator) -> None:
        self._by_name[allocator.name] = allocator

    def drop(self, name: str) -> None:
        self._by_name.pop(name, None)


_ALLOCATORS: "weakref.WeakKeyDictionary[ObjectApi, AllocatorMap]" = weakref.WeakKeyDictionary()


def allocators(api: ObjectApi) -> AllocatorMap:
    if api not in _ALLOCATORS:
        _ALLOCATORS[api] = AllocatorMap()
    return _ALLOCATORS[api]


# ---- logs -----------------------------------------------------------------------------------------

def pool_removed_log(load_balancer_version: str, pool: str) -> str | None:
    """The removal line at the default (info) level: v0.4.4+ says "is deleted"; before, a debug line."""
    newest = not is_semver(load_balancer_version)
    if newest or compare_semver(load_balancer_version, "v0.4.4") >= 0:
        return log_line("info", f"IP Pool {pool} is deleted")
    return None     # `IP Pool %s has been deleted` at debug level: not in the pod log


def log_line(level: str, message: str) -> str:
    """A logrus text-format line (the pod log adds the timestamp)."""
    return f'level={level} msg="{message}"'


# ---- the controller ---------------------------------------------------------------------------

class IpamController(Controller):
    watches = ((GROUP, "ippools"),)

    def __init__(self, simulator: "Simulator") -> None:
        super().__init__(simulator.api)
        self.simulator = simulator
        self.allocators = allocators(simulator.api)

    def log(self, line: str) -> None:
        self.log_to_pod(LB_NAMESPACE, LB_POD_LABELS, LB_CONTAINER, line)

    async def handle(self, event: StoredEvent) -> None:
        name = event.object["metadata"]["name"]
        pools = self.api.lookup(GROUP, VERSION, "ippools")
        pool = self.api.find(pools, None, name)
        if pool is None:
            self.allocators.drop(name)     # removed without our finalizer: nothing to log
            return
        finalizers = pool["metadata"].get("finalizers") or []
        if pool["metadata"].get("deletionTimestamp"):
            if IPAM_FINALIZER in finalizers:
                self.on_remove(pool)
            return
        if IPAM_FINALIZER not in finalizers:
            pool = self.api.mutate(pools, None, name, lambda p: p["metadata"].setdefault(
                "finalizers", []).append(IPAM_FINALIZER))
        self.on_change(pool)

    def on_change(self, pool: Obj) -> None:
        name = pool["metadata"]["name"]
        ranges = (pool.get("spec") or {}).get("ranges") or []
        checksum = ranges_checksum(ranges)
        previous = self.allocators.get(name)
        if previous is not None and previous.checksum == checksum:
            return         # same ranges: the status is left as it is, even when it was wiped
        try:
            range_set = RangeSet.from_spec(ranges)
        except RangeError:
            return
        self.allocators.put(PoolAllocator(name, range_set, checksum))
        self._rebuild_status(pool, range_set)

    def _rebuild_status(self, pool: Obj, range_set: RangeSet) -> None:
        old = go_status(pool.get("status"))
        new = dict(old)
        allocated = old.get("allocated")
        new["total"] = range_set.total
        new["available"] = range_set.total - len(allocated or {})
        history = {ip: who for ip, who in (old.get("allocatedHistory") or {}).items()
                   if (parsed := parse_ip(ip)) is not None and range_set.contains(parsed)}
        if history:
            new["allocatedHistory"] = history
        else:
            new.pop("allocatedHistory", None)
        new["conditions"] = _set_ready(old.get("conditions") or [])
        if new == (pool.get("status") or {}):
            return
        self.api.mutate(self.api.lookup(GROUP, VERSION, "ippools"), None, pool["metadata"]["name"],
                        lambda p: p.__setitem__("status", new))

    def on_remove(self, pool: Obj) -> None:
        name = pool["metadata"]["name"]
        line = pool_removed_log(self.simulator.version.load_balancer_version, name)
        if line:
            self.log(line)
        self.allocators.drop(name)

        def drop_finalizer(p: Obj) -> None:
            p["metadata"]["finalizers"] = [f for f in p["metadata"].get("finalizers") or [] if f != IPAM_FINALIZER]

        self.api.mutate(self.api.lookup(GROUP, VERSION, "ippools"), None, name, drop_finalizer)


def _set_ready(conditions: list[Obj]) -> list[Obj]:
    """wrangler's `IPPoolReady.True` + `.Message("")`: lastUpdateTime moves only when a value changes."""
    result = [dict(c) for c in conditions]
    ready = next((c for c in result if c.get("type") == "Ready"), None)
    if ready is None:
        ready = {"type": "Ready"}
        result.append(ready)
    if ready.get("status") != "True" or ready.get("message"):
        ready["status"] = "True"
        ready.pop("message", None)
        ready["lastUpdateTime"] = rfc3339()
    return result


def install(simulator: "Simulator") -> None:
    simulator.spawn(IpamController(simulator).run, "ipam-controller")
