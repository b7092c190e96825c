"""A VM load balancer's address carries traffic, as on a real lab (infra/simulator/controllers/lb_datapath.py).

Through the real API (an IPPool, VMs, a LoadBalancer of workloadType vm) and real SSH: a session to a node, a
direct-tcpip channel from it to `<LoadBalancer status.address>:<listener port>`, SSH to the guest behind it.
Upstream (load-balancer-harvester e861dc94): the controller keeps a Service and an EndpointSlice named as the
load balancer; kube-vip gives the Service its address, kube-proxy sends each connection to a ready endpoint.
"""
from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any, Callable, Iterator

import paramiko
import pytest

from infra.backends.simulated import SimulatorProcess
from infra.backends.simulator_client import SimulatorClient
from infra.simulator.nodes.kube_vip import LEASE_SECONDS, RETRY_SECONDS

from .test_kubevirt_vms import Clients, finished_migration, migrate, running_vmi, wait_until
from .test_vm_guests import c, nodes  # noqa: F401 - the fixtures, on this module's simulator
from .test_vm_guests import (GUEST_PUBLIC, IMAGE, Guest, Node, address, cloud_config, disk, image, login, other_node,
                             refused, simulator_for_guests, vm)

Obj = dict[str, Any]
SCALE = 10
LB = ("loadbalancer.harvesterhci.io", "v1beta1")
SERVICELB = "loadbalancer.harvesterhci.io/servicelb"
VM_LABEL = "harvesterhci.io/vmName"
LISTENER_PORT = 2222          # the load balancer's port; the guests' sshd is its backendPort 22
DUMMY = "10.52.0.255"


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    with simulator_for_guests(tmp_path_factory.mktemp("lb-datapath"), "v1.4.2", nodes=3, scale=SCALE) as started:
        yield started




class Lab:
    """One test's namespace, pool and load balancers (removed afterwards: load balancers, then the pool)."""

    def __init__(self, c: Clients, simulator: SimulatorProcess) -> None:
        self.c = c
        self.ns = c.namespace()
        self.lbs: list[str] = []
        self.pools: list[str] = []
        self.range = simulator.info["lab"]["loadBalancerRange"]     # the lab's addresses for IPPools

    def pool(self) -> str:
        name = f"pool-{uuid.uuid4().hex[:6]}"
        start = self.range["start"]
        subnet = start.rsplit(".", 1)[0] + ".0/24"
        self.c.custom.create_cluster_custom_object(*LB, "ippools", {
            "apiVersion": "/".join(LB), "kind": "IPPool", "metadata": {"name": name},
            "spec": {"ranges": [{"subnet": subnet, "rangeStart": start, "rangeEnd": self.range["end"]}],
                     "selector": {"scope": [{"project": "*", "namespace": self.ns, "guestCluster": "*"}]}}})
        self.pools.append(name)

        def pool_ready() -> bool:
            found: Obj = self.c.custom.get_cluster_custom_object(*LB, "ippools", name)
            return any(c.get("type") == "Ready" and c.get("status") == "True"
                       for c in (found.get("status") or {}).get("conditions") or [])
        wait_until(pool_ready, 10, f"IPPool {name} Ready")
        return name

    def lb(self, vms: list[str], *, pool: str = "", ipam: str = "pool", health_check: Obj | None = None,
           name: str | None = None) -> str:
        name = name or f"lb-{uuid.uuid4().hex[:6]}"
        spec: Obj = {"workloadType": "vm", "ipam": ipam,
                     "listeners": [{"name": "ssh", "port": LISTENER_PORT, "protocol": "TCP", "backendPort": 22}],
                     "backendServerSelector": {VM_LABEL: vms}}
        if pool:
            spec["ipPool"] = pool
        if health_check is not None:
            spec["healthCheck"] = health_check
        self.c.custom.create_namespaced_custom_object(*LB, self.ns, "loadbalancers", {
            "apiVersion": "/".join(LB), "kind": "LoadBalancer", "metadata": {"name": name}, "spec": spec})
        self.lbs.append(name)
        return name

    def get(self, name: str) -> Obj:
        found: Obj = self.c.custom.get_namespaced_custom_object(*LB, self.ns, "loadbalancers", name)
        return found

    def wait(self, name: str, predicate: Callable[[Obj], bool], what: str, seconds: float = 15) -> Obj:
        found: Obj = wait_until(lambda: (lambda o: o if predicate(o) else None)(self.get(name)), seconds, what)
        return found

    def ready_address(self, name: str) -> str:
        lb = self.wait(name, lambda o: ready(o) == ("True", "") and bool(o["status"].get("address")),
                       f"LoadBalancer {name} Ready with an address")
        return str(lb["status"]["address"])

    def endpoints(self, name: str) -> list[Obj]:
        found = self.c.kube.get("discovery.k8s.io/v1", "EndpointSlice", name, self.ns)
        return list(found.get("endpoints") or [])

    def cleanup(self) -> None:
        for name in self.lbs:
            with contextlib.suppress(Exception):
                self.c.custom.delete_namespaced_custom_object(*LB, self.ns, "loadbalancers", name)
        wait_until(lambda: not self.c.custom.list_namespaced_custom_object(*LB, self.ns, "loadbalancers")["items"],
                   15, "the load balancers are gone")
        for name in self.pools:
            self.c.custom.delete_cluster_custom_object(*LB, "ippools", name)
        self.c.drop_namespace(self.ns)


def ready(lb: Obj) -> tuple[str, str]:
    cond = next((c for c in (lb.get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"), {})
    return str(cond.get("status", "")), str(cond.get("message", ""))


@pytest.fixture
def lab(c: Clients, simulator: SimulatorProcess) -> Iterator[Lab]:
    made = Lab(c, simulator)
    try:
        yield made
    finally:
        made.cleanup()


def guest_vm(c: Clients, ns: str, name: str, *, network: str = "vlan", blank: bool = False) -> Obj:
    """A VM whose guest lets the test's key in (hostname = its name); `blank`: its disk holds no OS."""
    klass = "harvester-longhorn" if blank else f"longhorn-{IMAGE}"
    disk(c, ns, f"{name}-disk-0", klass, f"{ns}/{IMAGE}")
    vm(c, ns, name, f"{name}-disk-0", network=network, user_data=cloud_config(keys=[GUEST_PUBLIC]))
    return running_vmi(c, ns, name)


class ThroughListener:
    """A node whose direct-tcpip channels go to the load balancer's listener port instead of 22."""

    def __init__(self, node: Node) -> None:
        self.node = node

    def channel(self, address: str, port: int = 22) -> paramiko.Channel:
        return self.node.channel(address, LISTENER_PORT)


def lb_login(node: Node, lb_address: str, seconds: float = 20) -> Guest:
    """SSH through the load balancer: a direct-tcpip channel from the node to <address>:<listener port>."""
    return login(ThroughListener(node), lb_address, seconds)  # type: ignore[arg-type]


def hostname_via_lb(node: Node, lb_address: str) -> str:
    guest = lb_login(node, lb_address)
    try:
        return guest.ok("hostname").strip()
    finally:
        guest.close()


def hostnames(nodes: dict[str, Node], lb_address: str, count: int) -> list[str]:
    """`count` new connections, spread over every node (any node reaches a load balancer address)."""
    sessions = list(nodes.values())
    return [hostname_via_lb(sessions[i % len(sessions)], lb_address) for i in range(count)]


# ---- the tests ------------------------------------------------------------------------------------------------

def test_a_vm_load_balancer_spreads_ssh_over_its_backends_and_follows_them_stopping(
        c: Clients, lab: Lab, nodes: dict[str, Node]) -> None:
    image(c, lab.ns)
    pool = lab.pool()
    vmis = {name: guest_vm(c, lab.ns, name) for name in ("web-a", "web-b")}
    name = lab.lb(["web-a", "web-b"], pool=pool)
    ip = lab.ready_address(name)
    lb = lab.get(name)
    assert lb["status"]["allocatedAddress"]["ip"] == ip and lb["status"]["allocatedAddress"]["ipPool"] == pool
    assert sorted(lb["status"]["backendServers"]) == sorted(address(v) for v in vmis.values())

    # what kubectl shows: a Service and an EndpointSlice named as the load balancer, as upstream keeps them
    svc = c.core.read_namespaced_service(name, lab.ns)
    assert svc.spec.type == "LoadBalancer" and svc.spec.load_balancer_ip == ip and svc.spec.selector is None
    assert [(p.name, p.protocol, p.port, p.target_port) for p in svc.spec.ports] == [("ssh", "TCP", LISTENER_PORT, 22)]
    assert svc.metadata.labels == {SERVICELB: "true"}
    assert [(o.kind, o.name) for o in svc.metadata.owner_references] == [("LoadBalancer", name)]
    assert [i.ip for i in svc.status.load_balancer.ingress] == [ip], "kube-vip serves the address"
    endpoints = lab.endpoints(name)
    assert sorted((e["addresses"][0], e["targetRef"]["name"], e["conditions"]["ready"]) for e in endpoints) == \
        sorted((address(v), n, True) for n, v in vmis.items())

    # any node reaches the address; both guests get connections
    seen: list[str] = []
    for _ in range(40):
        seen += hostnames(nodes, ip, 3)
        if {"web-a", "web-b"} <= set(seen):
            break
    assert set(seen) == {"web-a", "web-b"}, f"connections landed on {sorted(set(seen))}"
    jump = next(iter(nodes.values()))
    assert refused(jump, ip, 22), "only the listener's port answers"
    assert refused(jump, ip, LISTENER_PORT + 1)

    # one VM stops: every connection lands on the other
    c.patch(lab.ns, "virtualmachines", "web-a", {"spec": {"runStrategy": "Halted"}})
    wait_until(lambda: c.get(lab.ns, "virtualmachineinstances", "web-a") is None, 20, "web-a's VMI is gone")
    lab.wait(name, lambda o: o["status"].get("backendServers") == [address(vmis["web-b"])],
             "the load balancer drops web-a")
    assert not [n for n in nodes.values() for _ in range(8) if refused(n, ip, LISTENER_PORT)], \
        "a connection still went to the stopped guest"
    assert set(hostnames(nodes, ip, 12)) == {"web-b"}

    # both stop: the channel is refused, the load balancer says why, the dummy endpoint stands in
    c.patch(lab.ns, "virtualmachines", "web-b", {"spec": {"runStrategy": "Halted"}})
    wait_until(lambda: c.get(lab.ns, "virtualmachineinstances", "web-b") is None, 20, "web-b's VMI is gone")
    lb = lab.wait(name, lambda o: ready(o) == ("False", "no running backend servers"), "Ready=False")
    assert "backendServers" not in lb["status"] and lb["status"]["address"] == ip
    assert [(e["addresses"], e["conditions"]["ready"]) for e in lab.endpoints(name)] == [([DUMMY], True)]
    for node in nodes.values():
        assert refused(node, ip, LISTENER_PORT), f"{node.name} still reaches a guest through {ip}"

    # one starts again: served again
    c.patch(lab.ns, "virtualmachines", "web-b", {"spec": {"runStrategy": "Always"}})
    running_vmi(c, lab.ns, "web-b")
    assert lab.ready_address(name) == ip
    assert hostname_via_lb(jump, ip) == "web-b"


def test_a_migrating_backend_keeps_serving_through_the_load_balancer(
        c: Clients, lab: Lab, nodes: dict[str, Node]) -> None:
    image(c, lab.ns)
    pool = lab.pool()
    before = guest_vm(c, lab.ns, "api", network="pod")      # masquerade: the address changes with the pod
    name = lab.lb(["api"], pool=pool)
    ip = lab.ready_address(name)
    jump = other_node(nodes, before["status"]["nodeName"])
    first = lb_login(jump, ip)
    boot_id = first.ok("cat /proc/sys/kernel/random/boot_id").strip()
    first.close()

    migrate(c, lab.ns, "api", "api-move")
    assert finished_migration(c, lab.ns, "api-move", 30)["status"]["phase"] == "Succeeded"
    after = c.get(lab.ns, "virtualmachineinstances", "api")
    assert after is not None and address(after) != address(before) and \
        after["status"]["nodeName"] != before["status"]["nodeName"]
    lab.wait(name, lambda o: o["status"].get("backendServers") == [address(after)] and ready(o)[0] == "True",
             "the load balancer follows the new pod address")
    assert [e["addresses"][0] for e in lab.endpoints(name)] == [address(after)]
    assert refused(jump, address(before)), "nothing answers at the source pod's address"
    moved = lb_login(other_node(nodes, after["status"]["nodeName"]), ip)
    assert moved.ok("hostname") == "api\n"
    assert moved.ok("cat /proc/sys/kernel/random/boot_id").strip() == boot_id, "the same guest, no reboot"
    moved.close()


def test_a_health_check_keeps_a_backend_that_does_not_answer_out(
        c: Clients, lab: Lab, nodes: dict[str, Node]) -> None:
    image(c, lab.ns)
    pool = lab.pool()
    guest_vm(c, lab.ns, "good")
    dead = guest_vm(c, lab.ns, "dead", blank=True)           # Running with an address, nothing listens
    check = {"port": 22, "successThreshold": 1, "failureThreshold": 1, "periodSeconds": 1, "timeoutSeconds": 1}

    # only the dead one behind a checked load balancer: never healthy, Ready=False, refused
    lonely = lab.lb(["dead"], pool=pool, health_check=check)
    lonely_lb = lab.wait(lonely, lambda o: ready(o)[1].startswith("running backend servers are not probed"),
                         "the unhealthy verdict")
    assert ready(lonely_lb) == ("False", "running backend servers are not probed as healthy total:1, healthy:0")
    assert lonely_lb["status"]["backendServers"] == [address(dead)]
    ends = {e["addresses"][0]: e["conditions"]["ready"] for e in lab.endpoints(lonely)}
    assert ends == {address(dead): False, DUMMY: True}
    assert refused(next(iter(nodes.values())), lonely_lb["status"]["address"], LISTENER_PORT)

    # both behind a checked load balancer: the dead one stays out of the endpoints, every connection works
    checked = lab.lb(["good", "dead"], pool=pool, health_check=check)
    ip = lab.ready_address(checked)
    wait_until(lambda: {e["addresses"][0]: e["conditions"]["ready"] for e in lab.endpoints(checked)}.get(
        address(dead)) is False and len(lab.endpoints(checked)) == 2, 10, "the dead endpoint not ready")
    assert not [n for n in nodes.values() for _ in range(10) if refused(n, ip, LISTENER_PORT)], \
        "a connection went to the backend that fails its health check"
    assert set(hostnames(nodes, ip, 6)) == {"good"}

    # without a check every VMI with an address is an endpoint: some connections go nowhere
    unchecked = lab.lb(["good", "dead"], pool=pool)
    ip2 = lab.ready_address(unchecked)
    jump = next(iter(nodes.values()))
    outcomes = set()
    for _ in range(60):
        outcomes.add("refused" if refused(jump, ip2, LISTENER_PORT) else "open")
        if outcomes == {"refused", "open"}:
            break
    assert outcomes == {"refused", "open"}


def test_a_load_balancer_without_an_address_or_in_dhcp_mode_answers_nothing(
        c: Clients, lab: Lab, nodes: dict[str, Node]) -> None:
    image(c, lab.ns)
    vmi = guest_vm(c, lab.ns, "solo")
    jump = next(iter(nodes.values()))
    login(jump, address(vmi)).close()                        # the guest itself answers

    # no pool for it: no address, no Service address; the pool's first address answers nothing yet
    stray = lab.lb(["solo"])
    lb = lab.wait(stray, lambda o: ready(o)[0] == "False", "Ready=False")
    assert ready(lb)[1].startswith("no matched IPPool") and "address" not in lb["status"]
    assert "ip" not in lb["status"]["allocatedAddress"]
    assert not c.core.list_namespaced_service(lab.ns).items, "no Service before an address"
    start = lab.range["start"]
    for node in nodes.values():
        assert refused(node, start, LISTENER_PORT)

    # DHCP: the Service asks kube-vip for 0.0.0.0; no DHCP server on the management network answers it
    dhcp = lab.lb(["solo"], ipam="dhcp")
    lb = lab.wait(dhcp, lambda o: ready(o) == ("False", "service is waiting for external IP"), "waiting for an IP")
    assert lb["status"]["allocatedAddress"] == {"ip": "0.0.0.0"} and "address" not in lb["status"]
    svc = c.core.read_namespaced_service(dhcp, lab.ns)
    assert svc.spec.load_balancer_ip == "0.0.0.0" and not svc.status.load_balancer.ingress
    assert refused(jump, "0.0.0.0", LISTENER_PORT)

    # a pool now: the waiting one gets its first address (it retries every second) and serves on it
    pool = lab.pool()
    assert lab.ready_address(stray) == start
    assert hostname_via_lb(jump, start) == "solo"

    # another one; deleting it takes its Service and EndpointSlice along, and its address answers no more
    served = lab.lb(["solo"], pool=pool)
    ip = lab.ready_address(served)
    assert ip != start and hostname_via_lb(jump, ip) == "solo"
    c.custom.delete_namespaced_custom_object(*LB, lab.ns, "loadbalancers", served)
    wait_until(lambda: not any(s.metadata.name == served for s in c.core.list_namespaced_service(lab.ns).items),
               15, "the Service goes with its load balancer")
    assert refused(jump, ip, LISTENER_PORT)


def test_a_load_balancer_address_is_on_no_node_while_kube_vip_fails_over(
        c: Clients, lab: Lab, nodes: dict[str, Node], simulator: SimulatorProcess) -> None:
    """The kube-vip that holds the management VIP announces the load balancers' addresses too: when its node loses
    power, they answer nowhere until another node takes the lease (kube-vip's 5 s lease and 1 s retry)."""
    image(c, lab.ns)
    pool = lab.pool()
    for name in ("web-a", "web-b"):
        guest_vm(c, lab.ns, name)
    ip = lab.ready_address(lab.lb(["web-a", "web-b"], pool=pool))
    holder = sorted(nodes)[0]                              # the simulated kube-vip's first leader
    jump = nodes[sorted(nodes)[1]]
    assert hostname_via_lb(jump, ip) in ("web-a", "web-b")      # served (once the guests' sshd is up)
    power = SimulatorClient(simulator.kubeconfig)
    power.power(holder, "destroy")
    try:
        started = time.monotonic()
        outcomes: list[tuple[float, bool]] = []
        while time.monotonic() - started < 3.0:          # bounded: 3 s of attempts
            outcomes.append((time.monotonic() - started, refused(jump, ip, LISTENER_PORT)))
            time.sleep(0.02)
        failover = (LEASE_SECONDS + RETRY_SECONDS) / SCALE
        early = [was_refused for moment, was_refused in outcomes if moment < failover * 0.7]
        late = [was_refused for moment, was_refused in outcomes if moment > failover + 0.5]
        assert early and all(early), "the address answered while no node announced it"
        assert late and not all(late), "the address never came back on the new leader"
    finally:
        power.power(holder, "start")
        wait_until(lambda: next((cond.status for cond in c.core.read_node(holder).status.conditions
                                 if cond.type == "Ready"), "") == "True", 60, f"{holder} Ready again")
