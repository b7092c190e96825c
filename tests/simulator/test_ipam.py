"""The simulator's IPPool webhook, IPAM controller and load balancer controller, over the wire.

Behaviour follows load-balancer-harvester (docs/harvester-facts.md §2.1-§2.3); the defect of a whole-object write
without status is reproduced, not patched over. Pools use 203.0.113.0/24 (RFC 5737) only.
"""
from __future__ import annotations

import itertools
import uuid
from typing import Any, Callable, Iterator

import pytest

from infra.harvester import ippool
from infra.harvester.dashboard import Dashboard, DashboardRelease, single_attempt
from infra.kube import ApiFailure, Kube
from infra.kube.predicates import condition_status
from infra.simulator.controllers.ipam import IpRange, RangeError, RangeSet, pool_removed_log
from infra.waits.budget import Budget

API = ippool.LB_API
VALIDATOR = 'admission webhook "validator.harvester-system.harvester-load-balancer-webhook" denied the request: '
BUDGET = Budget("simulator IPAM reaction", 20)

Obj = dict[str, Any]


class Lab:
    """Pools and load balancers one test makes, removed afterwards (load balancers first)."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube, self.namespace = kube, namespace
        self.writer = single_attempt(kube)     # refusals are 500s: do not retry them
        self.pools: list[str] = []
        self.lbs: list[str] = []
        self._blocks = itertools.count(2)    # pools go away after each test, so blocks are reused

    def block(self, size: int = 8) -> Obj:
        start = 8 * next(self._blocks)
        return {"subnet": "203.0.113.0/24", "rangeStart": f"203.0.113.{start}",
                "rangeEnd": f"203.0.113.{start + size - 1}"}

    def pool(self, ranges: list[Obj] | None = None, selector: Obj | None = None, ready: bool = True) -> Obj:
        name = f"pool-{uuid.uuid4().hex[:6]}"
        self.pools.append(name)
        self.writer.create({"apiVersion": API, "kind": "IPPool", "metadata": {"name": name},
                            "spec": {"ranges": ranges if ranges is not None else [self.block()],
                                     "selector": selector if selector is not None
                                     else {"scope": ippool.namespace_scope(self.namespace)}}})
        return self.wait_pool(name, lambda p: condition_status(p, "Ready") == "True") if ready else self.get_pool(name)

    def get_pool(self, name: str) -> Obj:
        return self.kube.get(API, "IPPool", name)

    def wait_pool(self, name: str, predicate: Callable[[Obj], bool]) -> Obj:
        found = self.kube.wait_for(API, "IPPool", name, lambda o: o is not None and predicate(o), budget=BUDGET,
                                   awaited=f"IPPool {name}")
        assert found is not None
        return found

    def lb(self, *, pool: str = "", ipam: str = "pool", annotations: dict[str, str] | None = None,
           name: str | None = None) -> str:
        name = name or f"lb-{uuid.uuid4().hex[:6]}"
        self.lbs.append(name)
        spec: Obj = {"workloadType": "cluster", "ipam": ipam}
        if pool:
            spec["ipPool"] = pool
        self.kube.create({"apiVersion": API, "kind": "LoadBalancer",
                          "metadata": {"name": name, "namespace": self.namespace, "annotations": annotations or {}},
                          "spec": spec})
        return name

    def wait_lb(self, name: str, predicate: Callable[[Obj], bool]) -> Obj:
        found = self.kube.wait_for(API, "LoadBalancer", name, lambda o: o is not None and predicate(o),
                                   budget=BUDGET, namespace=self.namespace, awaited=f"LoadBalancer {name}")
        assert found is not None
        return found

    def address(self, name: str) -> str:
        lb = self.wait_lb(name, lambda o: condition_status(o, "Ready") == "True" and ippool.lb_address(o) is not None)
        address = ippool.lb_address(lb)
        assert address is not None
        return address.ip

    def delete_lb(self, name: str) -> None:
        self.kube.delete(API, "LoadBalancer", name, self.namespace)
        self.kube.wait_for_gone(API, "LoadBalancer", name, budget=BUDGET, namespace=self.namespace)

    def cleanup(self) -> None:
        for name in self.lbs:
            self.delete_lb(name)
        for name in self.pools:
            if self.kube.delete(API, "IPPool", name):
                self.kube.wait_for_gone(API, "IPPool", name, budget=BUDGET)


@pytest.fixture
def lab(kube: Kube, namespace: str) -> Iterator[Lab]:
    made = Lab(kube, namespace)
    try:
        yield made
    finally:
        made.cleanup()


def refusal(lab: Lab, write: Callable[[], Any]) -> str:
    with pytest.raises(ApiFailure) as refused:
        write()
    assert (refused.value.status, refused.value.reason) == (500, "InternalError"), \
        "harvester's webhook framework answers a plain error as InternalError"
    return refused.value.message


# ---- ranges (no cluster needed) ------------------------------------------------------------------

def test_ranges_default_to_the_subnet_minus_network_broadcast_and_gateway() -> None:
    whole = IpRange.from_spec({"subnet": "198.51.100.0/24"})
    assert (str(whole.start), str(whole.end), str(whole.gateway)) == ("198.51.100.1", "198.51.100.254", "198.51.100.1")
    assert whole.size == 253, "the gateway inside the range is never handed out"
    assert IpRange.from_spec({"subnet": "198.51.100.7/32"}).size == 1
    assert RangeSet.from_spec([{"subnet": "198.51.100.0/24", "rangeStart": "198.51.100.20",
                                "rangeEnd": "198.51.100.10"}]).total == 11, "start and end are swapped if reversed"
    with pytest.raises(RangeError, match=r"^invalid range start 198.51.101.1: IP 198.51.101.1 is out of subnet"):
        IpRange.from_spec({"subnet": "198.51.100.0/24", "rangeStart": "198.51.101.1"})
    with pytest.raises(RangeError, match=r"IP 198.51.100.255 is the broadcast address"):
        IpRange.from_spec({"subnet": "198.51.100.0/24", "rangeEnd": "198.51.100.255"})


def test_addresses_are_handed_out_round_robin_after_the_last_one() -> None:
    ranges = RangeSet.from_spec([{"subnet": "198.51.100.0/24", "rangeStart": "198.51.100.10",
                                  "rangeEnd": "198.51.100.12"}])
    order = [str(ip) for ip in ranges.candidates(IpRange.from_spec({"subnet": "198.51.100.11/32"}).start)]
    assert order == ["198.51.100.12", "198.51.100.10", "198.51.100.11"]


def test_the_removal_line_is_the_info_text_from_v0_4_4_on() -> None:
    assert pool_removed_log("v0.4.4", "pool1") == 'level=info msg="IP Pool pool1 is deleted"'
    assert pool_removed_log("v1.5.0", "pool1") == pool_removed_log("master-ce188325-head", "pool1")
    assert pool_removed_log("v0.4.0", "pool1") is None, "v0.2.6-v0.4.0 logged it at debug level only"


# ---- the webhook -----------------------------------------------------------------------------------

def test_a_pool_gets_its_labels_finalizer_and_a_ready_status(lab: Lab) -> None:
    pool = lab.pool()
    labels = pool["metadata"]["labels"]
    assert labels["loadbalancer.harvesterhci.io/vid"] == "0"
    assert labels["loadbalancer.harvesterhci.io/global-ip-pool"] == "false"
    assert pool["metadata"]["finalizers"] == ["wrangler.cattle.io/harvester-ipam-controller"]
    status = ippool.PoolStatus.of(pool)
    assert (status.total, status.available, status.allocated, status.shows) == (8, 8, {}, "Ready")


def test_the_vid_label_comes_from_the_selected_vm_network(lab: Lab) -> None:
    lab.kube.create({"apiVersion": ippool.NAD_API, "kind": "NetworkAttachmentDefinition",
                     "metadata": {"name": "vlan2012", "namespace": lab.namespace},
                     "spec": {"config": '{"type":"bridge","vlan":2012}'}})
    pool = lab.pool(selector={"network": f"{lab.namespace}/vlan2012", "scope": ippool.namespace_scope(lab.namespace)})
    assert pool["metadata"]["labels"]["loadbalancer.harvesterhci.io/vid"] == "2012"
    message = refusal(lab, lambda: lab.pool(selector={"network": f"{lab.namespace}/nope", "scope": []}))
    assert message.startswith('admission webhook "mutator.harvester-system.harvester-load-balancer-webhook" '
                              "denied the request: can't create IP pool ")
    assert message.endswith('because networkattachmentdefinition.k8s.cni.cncf.io "nope" not found')


def test_overlapping_empty_and_malformed_ranges_are_refused(lab: Lab) -> None:
    first = lab.pool()
    overlapping = dict(first["spec"]["ranges"][0])
    message = refusal(lab, lambda: lab.pool(ranges=[overlapping]))
    assert message.startswith(VALIDATOR + "can't create IP pool ")
    assert message.endswith(" overlap with other pools")
    assert "the ranges [{RangeStart:" in message and "Subnet:{IP:203.0.113.0 Mask:ffffff00}" in message
    block = lab.block()
    message = refusal(lab, lambda: lab.pool(ranges=[block, dict(block)]))
    assert "because there are overlaps between range {RangeStart:" in message
    assert refusal(lab, lambda: lab.pool(ranges=[])).endswith("because range can't be empty")
    assert refusal(lab, lambda: lab.pool(ranges=[{"subnet": "203.0.113.300/24"}])).endswith(
        "because invalid CIDR address: 203.0.113.300/24, a valid example is 192.168.1.0/24")


def test_selectors_allow_one_global_pool_and_distinct_priorities(lab: Lab) -> None:
    existing = lab.kube.list(API, "IPPool", label_selector="loadbalancer.harvesterhci.io/global-ip-pool=true")
    first_global = existing[0]["metadata"]["name"] if existing else lab.pool(selector={"scope": ippool.GLOBAL_SCOPE})[
        "metadata"]["name"]
    message = refusal(lab, lambda: lab.pool(selector={"scope": ippool.GLOBAL_SCOPE}))
    assert message.endswith(f"because there is already a global IP pool: {first_global}")
    ranked = lab.pool(selector={"priority": 7, "scope": ippool.namespace_scope(lab.namespace)})
    message = refusal(lab, lambda: lab.pool(selector={"priority": 7, "scope": ippool.namespace_scope("elsewhere")}))
    assert message.endswith(f"because the priority can't be the same as the pool {ranked['metadata']['name']}")
    scope = [{"project": "*", "namespace": "a", "guestCluster": "*"}, {"project": "p", "namespace": "a",
                                                                       "guestCluster": "c"}]
    assert refusal(lab, lambda: lab.pool(selector={"scope": scope})).endswith("is invalid: scope overlaps")


def test_an_update_may_not_leave_out_an_allocated_address_but_one_without_status_passes(lab: Lab) -> None:
    pool = lab.pool()
    name = pool["metadata"]["name"]
    ip = lab.address(lab.lb())
    pool = lab.get_pool(name)
    shrunk = {**pool["spec"]["ranges"][0], "rangeStart": _next(ip)}
    message = refusal(lab, lambda: lab.writer.patch(API, "IPPool", name, {"spec": {"ranges": [shrunk]}}))
    assert message == VALIDATOR + f"can't update IP pool {name} because allocated IP {ip} is excluded"
    # The check reads status.allocated from the incoming object: a PUT without status is let through.
    body = lab.get_pool(name)
    body.pop("status")
    body["spec"]["ranges"] = [shrunk]
    stored = lab.writer.replace(body)
    assert "status" not in stored and stored["spec"]["ranges"] == [shrunk]


def test_a_pool_with_allocations_cannot_be_deleted_and_its_removal_is_logged(lab: Lab) -> None:
    name = lab.pool()["metadata"]["name"]
    lb = lab.lb()
    lab.address(lb)
    message = refusal(lab, lambda: lab.writer.delete(API, "IPPool", name))
    assert message == VALIDATOR + "can't delete pool before releasing all the allocated IP"
    lab.delete_lb(lb)
    lab.lbs.remove(lb)
    assert lab.kube.delete(API, "IPPool", name)
    lab.kube.wait_for_gone(API, "IPPool", name, budget=BUDGET)
    lab.pools.remove(name)
    lines = ippool.pool_removal_lines(ippool.controller_log(lab.kube), name)
    assert len(lines) == 1 and lines[0].endswith(f'level=info msg="IP Pool {name} is deleted"')


# ---- allocation ------------------------------------------------------------------------------------

def test_load_balancers_get_addresses_in_turn_and_the_controller_logs_them(lab: Lab) -> None:
    pool = lab.pool()
    name, first = pool["metadata"]["name"], pool["spec"]["ranges"][0]["rangeStart"]
    lb1, lb2 = lab.lb(), lab.lb()
    assert (lab.address(lb1), lab.address(lb2)) == (first, _next(first))
    lb = lab.kube.get(API, "LoadBalancer", lb1, lab.namespace)
    assert lb["status"]["allocatedAddress"] == {"ipPool": name, "ip": first, "mask": "255.255.255.0",
                                                "gateway": "203.0.113.1"}
    assert lb["metadata"]["finalizers"] == ["wrangler.cattle.io/harvester-lb-controller"]
    status = ippool.PoolStatus.of(lab.get_pool(name))
    assert status.allocated == {first: f"{lab.namespace}/{lb1}", _next(first): f"{lab.namespace}/{lb2}"}
    assert (status.available, status.last_allocated, status.count_problems()) == (6, _next(first), [])
    log = ippool.controller_log(lab.kube)
    assert f'level=info msg="lb {lab.namespace}/{lb1} allocate ip {first} from pool {name}"' in log


def test_a_released_address_goes_to_history_and_comes_back_to_the_same_load_balancer(lab: Lab) -> None:
    name = lab.pool()["metadata"]["name"]
    lb = lab.lb()
    ip = lab.address(lb)
    lab.delete_lb(lb)
    status = lab.wait_pool(name, lambda p: not (p.get("status") or {}).get("allocated"))["status"]
    assert status["allocatedHistory"] == {ip: f"{lab.namespace}/{lb}"} and status["available"] == 8
    assert f"lb {lab.namespace}/{lb} is deleted, address , allocatedIP {ip}" in ippool.controller_log(lab.kube)
    assert lab.address(lab.lb(name=lb)) == ip, "an applicant's previous address is preferred"


def test_selection_picks_the_highest_priority_match_and_says_when_nothing_matches(lab: Lab) -> None:
    low = lab.pool(selector={"priority": 3, "scope": ippool.namespace_scope(lab.namespace)})
    high = lab.pool(selector={"priority": 9, "scope": ippool.namespace_scope(lab.namespace)})
    assert ippool.lb_address(lab.wait_lb(lab.lb(), lambda o: ippool.lb_address(o) is not None)).pool == \
        high["metadata"]["name"]
    pinned = lab.lb(pool=low["metadata"]["name"])
    assert ippool.lb_address(lab.wait_lb(pinned, lambda o: ippool.lb_address(o) is not None)).pool == \
        low["metadata"]["name"]
    stray = lab.lb(annotations={ippool.NETWORK_ANNOTATION: "nowhere/none"})
    lb = lab.wait_lb(stray, lambda o: condition_status(o, "Ready") == "False")
    ready = next(c for c in lb["status"]["conditions"] if c["type"] == "Ready")
    assert ready["message"] == (f"no matched IPPool with requirement &{{Network:nowhere/none Project: "
                                f"Namespace:{lab.namespace} Cluster:}}")


def test_an_exhausted_pool_says_so_and_dhcp_mode_asks_for_a_lease(lab: Lab) -> None:
    one = lab.block(size=1)
    name = lab.pool(ranges=[{**one}])["metadata"]["name"]
    lab.address(lab.lb(pool=name))
    starved = lab.wait_lb(lab.lb(pool=name), lambda o: condition_status(o, "Ready") == "False")
    message = next(c for c in starved["status"]["conditions"] if c["type"] == "Ready")["message"]
    assert message == f"no IP addresses available in range set: {one['rangeStart']}-{one['rangeEnd']}"
    dhcp = lab.wait_lb(lab.lb(ipam="dhcp"), lambda o: ippool.lb_address(o) is None
                       and (o.get("status") or {}).get("allocatedAddress", {}).get("ip") == "0.0.0.0")
    assert condition_status(dhcp, "Ready") == "True"


# ---- the defect: a whole-object write without status ----------------------------------------------

def test_a_status_wiped_by_the_old_dashboard_is_not_restored_and_the_next_allocation_goes_wrong(lab: Lab) -> None:
    name = lab.pool()["metadata"]["name"]
    lb1 = lab.lb()
    ip1 = lab.address(lb1)
    dashboard = Dashboard(DashboardRelease("v2.10.3", "v1.0.4"), lab.kube)
    edited = dashboard.read(API, "IPPool", name)
    edited["spec"]["selector"]["priority"] = 5
    saved = dashboard.save(edited)
    assert "status" not in saved.sent and "status" not in saved.stored
    # The controller re-adds the finalizer the save stripped: it has seen the edit, and left the status alone.
    pool = lab.wait_pool(name, lambda p: "wrangler.cattle.io/harvester-ipam-controller" in
                         (p["metadata"].get("finalizers") or []))
    status = ippool.PoolStatus.of(pool)
    assert status.shows == "Not Ready" and status.total is None
    ip2 = lab.address(lab.lb())
    status = ippool.PoolStatus.of(lab.get_pool(name))
    assert ip2 == ip1, "with the records gone the allocator hands out lb1's address again"
    assert status.available == -1 and status.total == 0
    assert status.count_problems() == ["available is -1 (below zero)"], "what the scenario's Then catches"


def test_the_fixed_dashboard_keeps_the_status(lab: Lab) -> None:
    name = lab.pool()["metadata"]["name"]
    lab.address(lab.lb())
    dashboard = Dashboard(DashboardRelease("v2.11.0", "v1.5.0-rc2"), lab.kube)
    before = dashboard.read(API, "IPPool", name)
    edited = dict(before, spec={**before["spec"], "selector": {**before["spec"]["selector"], "priority": 5}})
    stored = dashboard.save(edited).stored
    assert stored["status"] == before["status"]
    assert ippool.PoolStatus.of(lab.get_pool(name)).count_problems() == []


def test_a_load_balancer_whose_status_was_wiped_gets_its_address_back(lab: Lab) -> None:
    name = lab.pool()["metadata"]["name"]
    lb = lab.lb()
    ip = lab.address(lb)
    dashboard = Dashboard(DashboardRelease("v2.10.3", "v1.0.4"), lab.kube)
    edited = dashboard.read(API, "LoadBalancer", lb, lab.namespace)
    edited["spec"]["description"] = "edited"
    assert "status" not in dashboard.save(edited).stored
    # The allocator refuses a second booking for the same load balancer, releases it, and books it again.
    assert lab.address(lb) == ip
    log = ippool.controller_log(lab.kube)
    assert f"lb {lab.namespace}/{lb} error: {ip} has been allocated to {lab.namespace}/{lb}, duplicate " \
           f"allocation is not allowed, try to release ip to pool {name}, ok" in log
    assert ippool.PoolStatus.of(lab.get_pool(name)).count_problems() == []


def test_a_ranges_change_rebuilds_the_status(lab: Lab) -> None:
    pool = lab.pool()
    name, block = pool["metadata"]["name"], pool["spec"]["ranges"][0]
    ip = lab.address(lab.lb())
    wider = {**block, "rangeEnd": _next(block["rangeEnd"])}
    lab.writer.patch(API, "IPPool", name, {"spec": {"ranges": [wider]}})
    status = lab.wait_pool(name, lambda p: (p.get("status") or {}).get("total") == 9)["status"]
    assert status["available"] == 8 and status["allocated"] == {ip: status["allocated"][ip]}


def _next(ip: str) -> str:
    head, last = ip.rsplit(".", 1)
    return f"{head}.{int(last) + 1}"
