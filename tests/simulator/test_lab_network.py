"""The VM network declares its addressing as Harvester records it (the route annotation of its
NetworkAttachmentDefinition), the ready file describes the lab's network and the range reserved for
load-balancer IPPools, and the DHCP server never leases from that range."""
from __future__ import annotations

import ipaddress
import json

import pytest

from infra.backends.simulated import SimulatorProcess
from infra.kube import Kube
from infra.simulator.guest.dhcp import DhcpServer, NoFreeAddress

ROUTE = "network.harvesterhci.io/route"


def test_the_vm_network_carries_harvesters_route_annotation(kube: Kube, simulator: SimulatorProcess) -> None:
    nad = kube.get("k8s.cni.cncf.io/v1", "NetworkAttachmentDefinition", "vm-network", "default")
    route = json.loads(nad["metadata"]["annotations"][ROUTE])
    network = simulator.info["lab"]["vmNetwork"]
    assert route == {"mode": "auto", "serverIPAddr": network["dhcpServer"], "cidr": network["cidr"],
                     "gateway": network["gateway"], "connectivity": "true"}
    assert nad["metadata"]["labels"]["network.harvesterhci.io/type"] == "L2VlanNetwork"


def test_the_ready_file_describes_the_lab_network(simulator: SimulatorProcess) -> None:
    lab = simulator.info["lab"]
    network = ipaddress.ip_network(lab["vmNetwork"]["cidr"])
    assert (lab["vmNetwork"]["namespace"], lab["vmNetwork"]["name"]) == ("default", "vm-network")
    dhcp = [ipaddress.ip_address(lab["vmNetwork"]["dhcpRange"][k]) for k in ("start", "end")]
    pool = [ipaddress.ip_address(lab["loadBalancerRange"][k]) for k in ("start", "end")]
    assert all(address in network for address in dhcp + pool)
    assert dhcp[1] < pool[0] or pool[1] < dhcp[0], "the IPPool range lies outside the DHCP range"
    assert [str(a) for a in pool] == ["198.51.100.192", "198.51.100.254"]
    for fixed in ("gateway", "dhcpServer"):
        address = ipaddress.ip_address(lab["vmNetwork"][fixed])
        assert not dhcp[0] <= address <= dhcp[1] and not pool[0] <= address <= pool[1]


def test_the_dhcp_server_never_leases_the_reserved_range() -> None:
    server = DhcpServer()
    leased = [ipaddress.ip_address(server.request(f"52:54:00:00:{n // 256:02x}:{n % 256:02x}", f"vm-{n}").ip)
              for n in range(182)]
    assert len(set(leased)) == 182
    assert min(leased) == ipaddress.ip_address("198.51.100.10")
    assert max(leased) == ipaddress.ip_address("198.51.100.191")
    with pytest.raises(NoFreeAddress):
        server.request("52:54:00:ff:ff:ff", "one-too-many")
