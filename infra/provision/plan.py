"""From the run's `libvirt:` configuration to a plan: names, addresses, disks and boot for every node.

`plan_cluster` is pure. `check_plan` looks at the libvirt host and refuses, before anything is created,
a plan that cannot work there (a subnet or bridge that clashes, a kernel or ISO that is not there, names a
previous run with the same id still holds), giving every reason at once.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from infra.config import LibvirtSettings

from .connection import is_test_driver, libvirt_module
from .ownership import bridge_name_for, owned_name, stable_mac
from .spec import (
    GIB,
    MIB,
    DhcpReservation,
    DomainSpec,
    NetworkSpec,
    Nic,
    PoolSpec,
    PortForward,
    VolumeSpec,
)

Role = Literal["create", "join", "guest"]
VIP_HOST_INDEX, FIRST_NODE_HOST_INDEX = 9, 10       # .10 is the VIP, nodes from .11 (after the gateway .1)
# qemu's user-mode network is the same for every guest (each has its own): 10.0.2.0/24, the host seen as
# 10.0.2.2, the guest's DHCP address 10.0.2.15. The VIP is the .10 a NAT network would give too.
USER_MODE_CIDR, USER_MODE_HOST, USER_MODE_GUEST = IPv4Network("10.0.2.0/24"), IPv4Address("10.0.2.2"), \
    IPv4Address("10.0.2.15")
SSH_PORT, API_PORT = 22, 6443


class PlanRefused(ValueError):
    """The configuration cannot work on this libvirt host; nothing was created."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("refused before creating anything: " + "; ".join(reasons))


@dataclass(frozen=True)
class NodeAddress:
    mac: str
    ip: IPv4Address | None


@dataclass(frozen=True)
class NetworkLayout:
    """Addresses a cluster was installed with; a golden image restores them unchanged."""

    cidr: IPv4Network
    gateway: IPv4Address
    vip: IPv4Address
    nodes: tuple[NodeAddress, ...]


@dataclass(frozen=True)
class NodePlan:
    index: int
    hostname: str
    domain: str
    volume: str
    mac: str
    ip: IPv4Address | None
    ssh_host: str
    ssh_port: int
    role: Role
    console_log: Path
    api_port: int | None = None     # user-mode networking, the VIP's node: 127.0.0.1:<api_port> -> VIP:6443


@dataclass(frozen=True)
class ClusterPlan:
    run_id: str
    harvester_version: str
    settings: LibvirtSettings
    pool: PoolSpec
    nodes: tuple[NodePlan, ...]
    workdir: Path
    network: NetworkSpec | None = None
    layout: NetworkLayout | None = None
    golden_backing: dict[str, Path] = field(default_factory=dict)   # node hostname -> golden disk

    @property
    def installs_harvester(self) -> bool:
        return self.settings.install != "none"

    @property
    def vip(self) -> IPv4Address | None:
        return self.layout.vip if self.layout else None

    def volume_spec(self, node: NodePlan) -> VolumeSpec:
        return VolumeSpec(name=node.volume, pool=self.pool.name,
                          capacity_bytes=int(self.settings.disk_gib * GIB),
                          backing=self.golden_backing.get(node.hostname))

    @property
    def api_url(self) -> str:
        """Where the harness reaches the Kubernetes API: the VIP, or its port forwarded to 127.0.0.1."""
        if self.settings.network_mode == "user":
            assert self.nodes[0].api_port is not None, "no API port forwarded in user-mode networking"
            return f"https://127.0.0.1:{self.nodes[0].api_port}"
        return f"https://{self.vip}:{API_PORT}"

    def domain_spec(self, node: NodePlan, domain_type: str) -> DomainSpec:
        network = self.network.name if self.network else None
        forwards: tuple[PortForward, ...] = ()
        if self.settings.network_mode == "user":
            forwards = (PortForward(node.ssh_port, SSH_PORT),)
            if node.api_port is not None and self.vip is not None:
                forwards += (PortForward(node.api_port, API_PORT, self.vip),)
        return DomainSpec(name=node.domain, run_id=self.run_id, node=node.hostname, vcpus=self.settings.vcpus,
                          memory_mib=int(self.settings.memory_gib * GIB / MIB), domain_type=domain_type,
                          pool=self.pool.name, volume=node.volume,
                          nic=Nic(mac=node.mac, network=network, forwards=forwards),
                          console_log=node.console_log)


def free_local_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def default_layout(settings: LibvirtSettings, run_id: str) -> NetworkLayout:
    if settings.network_mode == "user":     # qemu's fixed network; the one node gets the guest address
        hosts = list(USER_MODE_CIDR.hosts())
        return NetworkLayout(USER_MODE_CIDR, USER_MODE_HOST, hosts[VIP_HOST_INDEX],
                             tuple(NodeAddress(stable_mac(run_id, i), USER_MODE_GUEST) for i in range(settings.nodes)))
    cidr = IPv4Network(settings.network_cidr)
    hosts = list(cidr.hosts())
    gateway = IPv4Address(settings.gateway) if settings.gateway else hosts[0]
    vip = IPv4Address(settings.vip) if settings.vip else hosts[VIP_HOST_INDEX]
    nodes = tuple(NodeAddress(stable_mac(run_id, i), hosts[FIRST_NODE_HOST_INDEX + i])
                  for i in range(settings.nodes))
    return NetworkLayout(cidr, gateway, vip, nodes)


def plan_cluster(settings: LibvirtSettings, run_id: str, harvester_version: str, workdir: Path, *,
                 layout: NetworkLayout | None = None, golden_backing: dict[str, Path] | None = None) -> ClusterPlan:
    """The plan for a run. `layout` (from a golden image) overrides the configured addresses."""
    workdir = workdir.resolve()
    user_mode = settings.network_mode == "user"
    layout = layout or default_layout(settings, run_id)
    network = None
    if not user_mode:
        bridge = settings.bridge_name or bridge_name_for(run_id)
        hosts = list(layout.cidr.hosts())
        reservations = tuple(DhcpReservation(a.mac, f"harvester-node-{i}", a.ip)
                             for i, a in enumerate(layout.nodes) if a.ip is not None)
        network = NetworkSpec(
            name=owned_name(run_id, "net"), run_id=run_id, mode=settings.network_mode,  # type: ignore[arg-type]
            bridge=bridge, cidr=layout.cidr, gateway=layout.gateway,
            dhcp_range=(hosts[len(hosts) // 2], hosts[-1]) if settings.network_mode == "nat" else None,
            reservations=reservations if settings.network_mode == "nat" else ())
    pool = PoolSpec(owned_name(run_id, "pool"), run_id, (settings.storage_pool_dir / run_id).resolve())
    nodes = []
    for index, address in enumerate(layout.nodes[:settings.nodes]):
        role: Role = "guest" if settings.install == "none" else ("create" if index == 0 else "join")
        nodes.append(NodePlan(
            index=index, hostname=f"harvester-node-{index}", domain=owned_name(run_id, f"node{index}"),
            volume=owned_name(run_id, f"node{index}.qcow2"), mac=address.mac, ip=address.ip,
            ssh_host="127.0.0.1" if user_mode else str(address.ip),
            ssh_port=free_local_port() if user_mode else SSH_PORT, role=role,
            console_log=workdir / "consoles" / f"{run_id}-node{index}.log",
            api_port=free_local_port() if user_mode and role == "create" else None))
    installs = settings.install != "none"
    return ClusterPlan(run_id=run_id, harvester_version=harvester_version, settings=settings, pool=pool,
                       nodes=tuple(nodes), workdir=workdir, network=network,
                       layout=layout if installs or not user_mode else None,
                       golden_backing=dict(golden_backing or {}))


def local_path(url: str) -> Path | None:
    """The file a `path` or `file://` URL names; None for http(s) (downloaded at provisioning)."""
    parsed = urlparse(url)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path)
    return None


def _is_local_host(conn: Any) -> bool:
    uri = urlparse(conn.getURI())
    return not uri.hostname and not is_test_driver(conn)


def _networks_in_use(conn: Any) -> list[tuple[str, IPv4Network, str]]:
    """(libvirt network, subnet, bridge) of every network libvirt knows, whoever made it."""
    import xml.etree.ElementTree as ET

    found = []
    for network in conn.listAllNetworks():
        root = ET.fromstring(network.XMLDesc(0))
        bridge = root.find("bridge")
        bridge_name = bridge.get("name", "") if bridge is not None else ""
        for ip in root.findall("ip"):
            if ip.get("family", "ipv4") != "ipv4" or not ip.get("address"):
                continue
            mask = ip.get("netmask") or ip.get("prefix") or "24"
            subnet = IPv4Network(f"{ip.get('address')}/{mask}", strict=False)
            found.append((network.name(), subnet, bridge_name))
        if not root.findall("ip") and bridge_name:
            found.append((network.name(), IPv4Network("0.0.0.0/32"), bridge_name))
    return found


def _host_subnets() -> list[IPv4Network]:
    """Subnets this host routes to directly (its own interfaces), from /proc/net/route."""
    subnets: list[IPv4Network] = []
    try:
        lines = Path("/proc/net/route").read_text().splitlines()[1:]
    except OSError:
        return subnets
    for line in lines:
        fields = line.split()
        if len(fields) < 8 or fields[1] == "00000000":
            continue
        destination = IPv4Address(int(fields[1], 16).to_bytes(4, "little"))
        mask = IPv4Address(int(fields[7], 16).to_bytes(4, "little"))
        subnets.append(IPv4Network(f"{destination}/{mask}", strict=False))
    return subnets


def refusals(conn: Any, plan: ClusterPlan) -> list[str]:
    """Why this plan cannot work on this libvirt host (empty when it can)."""
    libvirt = libvirt_module()
    settings = plan.settings
    reasons: list[str] = []
    local = _is_local_host(conn)
    if plan.network is not None:
        for name, subnet, bridge in _networks_in_use(conn):
            if plan.network.mode == "nat" and subnet.prefixlen < 32 and subnet.overlaps(plan.network.cidr):
                reasons.append(f"libvirt.network_cidr: {plan.network.cidr} overlaps libvirt network {name!r} "
                               f"({subnet}); choose a free subnet, e.g. {_suggest_free(conn, plan.network.cidr)}")
            if plan.network.mode == "nat" and bridge == plan.network.bridge:
                reasons.append(f"libvirt.bridge_name: {bridge!r} is already the bridge of libvirt network "
                               f"{name!r}; leave bridge_name unset to get one per run")
        if local and plan.network.mode == "nat":
            for subnet in _host_subnets():
                if subnet.overlaps(plan.network.cidr):
                    reasons.append(f"libvirt.network_cidr: {plan.network.cidr} overlaps {subnet}, a subnet this "
                                   f"host already routes to; choose another")
                    break
        if local and plan.network.mode == "bridge" and not Path("/sys/class/net", plan.network.bridge).exists():
            reasons.append(f"libvirt.bridge_name: no interface {plan.network.bridge!r} on this host; create the "
                           "bridge first or use network_mode: nat")
        if local and plan.network.mode == "nat" and Path("/sys/class/net", plan.network.bridge).exists():
            reasons.append(f"libvirt.bridge_name: an interface {plan.network.bridge!r} already exists on this host")
    for field_name in ("kernel_url", "initrd_url", "iso_url"):
        url = getattr(settings, field_name)
        path = local_path(url) if url else None
        if path is not None and local and not path.is_file():
            reasons.append(f"libvirt.{field_name}: no such file on the libvirt host: {path}")
    lookups = [("domain", n.domain, conn.lookupByName) for n in plan.nodes]
    lookups.append(("storage pool", plan.pool.name, conn.storagePoolLookupByName))
    if plan.network is not None:
        lookups.append(("network", plan.network.name, conn.networkLookupByName))
    for kind, name, lookup in lookups:
        try:
            lookup(name)
        except libvirt.libvirtError:
            continue
        reasons.append(f"a {kind} named {name!r} already exists: run id {plan.run_id!r} is in use; run "
                       f"`harvester-e2e cleanup --run-id {plan.run_id}` or choose another run id")
    return reasons


def _suggest_free(conn: Any, wanted: IPv4Network) -> str:
    taken = [subnet for _, subnet, _ in _networks_in_use(conn)]
    for third in range(100, 250):
        candidate = IPv4Network(f"192.168.{third}.0/{wanted.prefixlen}", strict=False)
        if not any(candidate.overlaps(t) for t in taken if t.prefixlen < 32):
            return str(candidate)
    return "another private /24"


def check_plan(conn: Any, plan: ClusterPlan) -> None:
    reasons = refusals(conn, plan)
    if reasons:
        raise PlanRefused(reasons)
