"""The DHCP server of the VM network the guest clusters' VMs sit on (the lab's, not Harvester's).

The network is 198.51.100.0/24 (TEST-NET-2, RFC 5737: documentation addresses; nothing ever
connects to them), gateway .1, DHCP server .2. It leases .10-.191, one lease per MAC address: the
guests' VM NICs, and kube-vip's per-Service interfaces for load balancers in DHCP mode; the same
MAC gets the same address back. .192-.254 are the lab's reservation for load-balancer IPPools (room for several pools at once):
the server never leases them, so a pool over them cannot clash with a VM or a DHCP load balancer.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

NETWORK = ipaddress.ip_network("198.51.100.0/24")
GATEWAY = ipaddress.ip_address("198.51.100.1")
SERVER = ipaddress.ip_address("198.51.100.2")
FIRST, LAST = 10, 191                       # host numbers the server leases
POOL_FIRST, POOL_LAST = 192, 254            # reserved for load-balancer IPPools, never leased


def address(host_number: int) -> str:
    return str(NETWORK.network_address + host_number)


def lab_description() -> dict[str, object]:
    """The VM network as a lab describes it (the simulator's ready file `lab` section)."""
    return {"vmNetwork": {"namespace": "default", "name": "vm-network", "cidr": str(NETWORK),
                          "gateway": str(GATEWAY), "dhcpServer": str(SERVER),
                          "dhcpRange": {"start": address(FIRST), "end": address(LAST)}},
            "loadBalancerRange": {"start": address(POOL_FIRST), "end": address(POOL_LAST)}}


@dataclass(frozen=True)
class Lease:
    mac: str
    ip: str
    hostname: str

    def as_dict(self) -> dict[str, str]:
        return {"mac": self.mac, "ip": self.ip, "hostname": self.hostname,
                "subnetMask": str(NETWORK.netmask), "router": str(GATEWAY), "serverIdentifier": str(SERVER)}


class NoFreeAddress(Exception):
    pass


class DhcpServer:
    def __init__(self) -> None:
        self._leases: dict[str, Lease] = {}
        self._remembered: dict[str, str] = {}      # mac -> last address, reused like a real server does

    def request(self, mac: str, hostname: str) -> Lease:
        mac = mac.lower()
        if mac in self._leases:
            return self._leases[mac]
        taken = {lease.ip for lease in self._leases.values()}
        wanted = self._remembered.get(mac)
        if wanted is None or wanted in taken:
            wanted = next((str(NETWORK.network_address + n) for n in range(FIRST, LAST + 1)
                           if str(NETWORK.network_address + n) not in taken
                           and str(NETWORK.network_address + n) not in self._remembered.values()), None)
        if wanted is None:
            wanted = next((str(NETWORK.network_address + n) for n in range(FIRST, LAST + 1)
                           if str(NETWORK.network_address + n) not in taken), None)
        if wanted is None:
            raise NoFreeAddress(f"no free address in {NETWORK}")
        lease = Lease(mac, wanted, hostname)
        self._leases[mac] = lease
        self._remembered[mac] = wanted
        return lease

    def release(self, mac: str) -> Lease | None:
        return self._leases.pop(mac.lower(), None)

    def lease_for(self, mac: str) -> Lease | None:
        return self._leases.get(mac.lower())

    def leases(self) -> list[Lease]:
        return sorted(self._leases.values(), key=lambda lease: ipaddress.ip_address(lease.ip))
