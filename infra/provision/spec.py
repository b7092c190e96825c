"""What to create in libvirt, as plain values: a network, a storage pool, volumes and domains.

`xmlgen` renders these to libvirt XML; `objects.Provisioner` creates them and registers their removal.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Literal

GIB = 1024 ** 3
MIB = 1024 ** 2


@dataclass(frozen=True)
class DhcpReservation:
    mac: str
    hostname: str
    ip: IPv4Address


@dataclass(frozen=True)
class NetworkSpec:
    """`nat`: libvirt creates a bridge, routes and serves DHCP with reservations; `bridge`: the guests join
    an existing host bridge and libvirt serves nothing (the nodes get static addresses)."""

    name: str
    run_id: str
    mode: Literal["nat", "bridge"]
    bridge: str
    cidr: IPv4Network
    gateway: IPv4Address
    dhcp_range: tuple[IPv4Address, IPv4Address] | None = None
    reservations: tuple[DhcpReservation, ...] = ()


@dataclass(frozen=True)
class PoolSpec:
    name: str
    run_id: str
    path: Path
    remove_directory: bool = True      # False for a pool over a directory the run does not own (golden images)


@dataclass(frozen=True)
class VolumeSpec:
    """A qcow2 volume; with `backing` it is a linked clone (copy-on-write over that file)."""

    name: str
    pool: str
    capacity_bytes: int
    backing: Path | None = None
    backing_format: str = "qcow2"


@dataclass(frozen=True)
class PortForward:
    """User-mode networking: 127.0.0.1:<host_port> on the host reaches <guest_ip or the NIC's address>:<guest_port>."""

    host_port: int
    guest_port: int
    guest_ip: IPv4Address | None = None    # None: the address the guest's DHCP got (the node's own)


@dataclass(frozen=True)
class Nic:
    mac: str
    network: str | None = None             # a libvirt network's name
    forwards: tuple[PortForward, ...] = ()  # user-mode networking (no libvirt network): the only way in

    @property
    def user_mode(self) -> bool:
        return self.network is None and bool(self.forwards)


@dataclass(frozen=True)
class Boot:
    """Direct kernel boot (kernel + initrd + cmdline), optionally with a CD-ROM, else the disk."""

    firmware: Literal["uefi", "bios"] = "bios"
    kernel: Path | None = None
    initrd: Path | None = None
    cmdline: str = ""
    cdrom: Path | None = None
    nvram_template: Path | None = None


@dataclass(frozen=True)
class DomainSpec:
    name: str
    run_id: str
    node: str
    vcpus: int
    memory_mib: int
    domain_type: str                 # kvm | qemu (software emulation) | test
    pool: str
    volume: str
    nic: Nic
    console_log: Path
    boot: Boot = field(default_factory=Boot)
    on_reboot: Literal["restart", "destroy"] = "restart"

    def with_boot(self, boot: Boot, on_reboot: Literal["restart", "destroy"] = "restart") -> DomainSpec:
        return replace(self, boot=boot, on_reboot=on_reboot)

    def with_type(self, domain_type: str) -> DomainSpec:
        return replace(self, domain_type=domain_type)
