"""libvirt XML for the specs in `spec`, built with ElementTree (never by string pasting, so values are escaped).

Domains: virtio disk (a pool volume) and virtio NIC pinned at PCI slot 3 on the i440fx machine, so the guest
names it `ens3` on every node (the installer config relies on it); a serial console written to a log file; UEFI (libvirt picks the OVMF build)
or BIOS. User-mode networking has no libvirt device: it is passed to qemu as `-netdev user` with its forwarded
ports (SSH; a Harvester node's API at the VIP) on 127.0.0.1 only.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET

from .ownership import run_mark
from .spec import DomainSpec, NetworkSpec, PoolSpec, VolumeSpec

QEMU_NAMESPACE = "http://libvirt.org/schemas/domain/qemu/1.0"
ET.register_namespace("qemu", QEMU_NAMESPACE)
NIC_PCI_SLOT = "0x03"
# libvirt does not know the user-mode NIC qemu gets on its command line: keep it clear of the slots libvirt
# hands out in order from the bottom.
USER_NIC_PCI_SLOT = "0x1e"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    if text is not None:
        element.text = text
    return element


def _render(root: ET.Element) -> str:
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")


def network_xml(spec: NetworkSpec) -> str:
    root = ET.Element("network")
    _sub(root, "name", spec.name)
    _sub(root, "metadata").append(run_mark(spec.run_id))
    if spec.mode == "bridge":
        _sub(root, "forward", mode="bridge")
        _sub(root, "bridge", name=spec.bridge)
        return _render(root)
    _sub(root, "forward", mode="nat")
    _sub(root, "bridge", name=spec.bridge, stp="on", delay="0")
    ip = _sub(root, "ip", address=str(spec.gateway), netmask=str(spec.cidr.netmask))
    if spec.dhcp_range is not None or spec.reservations:
        dhcp = _sub(ip, "dhcp")
        if spec.dhcp_range is not None:
            _sub(dhcp, "range", start=str(spec.dhcp_range[0]), end=str(spec.dhcp_range[1]))
        for host in spec.reservations:
            _sub(dhcp, "host", mac=host.mac, name=host.hostname, ip=str(host.ip))
    return _render(root)


def pool_xml(spec: PoolSpec) -> str:
    root = ET.Element("pool", type="dir")
    _sub(root, "name", spec.name)
    _sub(_sub(root, "target"), "path", str(spec.path))
    return _render(root)


def volume_xml(spec: VolumeSpec) -> str:
    root = ET.Element("volume")
    _sub(root, "name", spec.name)
    _sub(root, "capacity", str(spec.capacity_bytes), unit="bytes")
    _sub(root, "allocation", "0", unit="bytes")
    _sub(_sub(root, "target"), "format", type="qcow2")
    if spec.backing is not None:
        backing = _sub(root, "backingStore")
        _sub(backing, "path", str(spec.backing))
        _sub(backing, "format", type=spec.backing_format)
    return _render(root)


def domain_xml(spec: DomainSpec, uuid: str | None = None) -> str:
    """`uuid`: the existing domain's, when this XML redefines it (libvirt keys domains by UUID)."""
    root = ET.Element("domain", type=spec.domain_type)
    _sub(root, "name", spec.name)
    if uuid is not None:
        _sub(root, "uuid", uuid)
    _sub(root, "metadata").append(run_mark(spec.run_id, node=spec.node))
    _sub(root, "memory", str(spec.memory_mib), unit="MiB")
    _sub(root, "vcpu", str(spec.vcpus))
    os_element = _sub(root, "os", **({"firmware": "efi"} if spec.boot.firmware == "uefi" else {}))
    _sub(os_element, "type", "hvm", arch="x86_64", machine="pc")
    boot = spec.boot
    if boot.nvram_template is not None:
        _sub(os_element, "nvram", template=str(boot.nvram_template))
    if boot.kernel is not None:
        _sub(os_element, "kernel", str(boot.kernel))
        if boot.initrd is not None:
            _sub(os_element, "initrd", str(boot.initrd))
        _sub(os_element, "cmdline", boot.cmdline)
    else:
        if boot.cdrom is not None:
            _sub(os_element, "boot", dev="cdrom")
        _sub(os_element, "boot", dev="hd")
    features = _sub(root, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    if spec.domain_type == "kvm":
        _sub(root, "cpu", mode="host-passthrough")
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", spec.on_reboot)
    _sub(root, "on_crash", "destroy")
    devices = _sub(root, "devices")
    disk = _sub(devices, "disk", type="volume", device="disk")
    _sub(disk, "driver", name="qemu", type="qcow2", discard="unmap")
    _sub(disk, "source", pool=spec.pool, volume=spec.volume)
    _sub(disk, "target", dev="vda", bus="virtio")
    if boot.cdrom is not None:
        cdrom = _sub(devices, "disk", type="file", device="cdrom")
        _sub(cdrom, "driver", name="qemu", type="raw")
        _sub(cdrom, "source", file=str(boot.cdrom))
        _sub(cdrom, "target", dev="hdc", bus="ide")
        _sub(cdrom, "readonly")
    if spec.nic.network is not None:
        interface = _sub(devices, "interface", type="network")
        _sub(interface, "mac", address=spec.nic.mac)
        _sub(interface, "source", network=spec.nic.network)
        _sub(interface, "model", type="virtio")
        _sub(interface, "address", type="pci", domain="0x0000", bus="0x00", slot=NIC_PCI_SLOT, function="0x0")
    for tag, target in (("serial", {"port": "0"}), ("console", {"type": "serial", "port": "0"})):
        console = _sub(devices, tag, type="file")
        _sub(console, "source", path=str(spec.console_log), append="on")
        _sub(console, "target", **target)
    _sub(devices, "memballoon", model="none")
    rng = _sub(devices, "rng", model="virtio")
    _sub(rng, "backend", "/dev/urandom", model="random")
    if spec.nic.user_mode:
        commandline = _sub(root, f"{{{QEMU_NAMESPACE}}}commandline")
        netdev = "user,id=e2enet0," + ",".join(
            f"hostfwd=tcp:127.0.0.1:{f.host_port}-{f.guest_ip or ''}:{f.guest_port}" for f in spec.nic.forwards)
        device = f"virtio-net-pci,netdev=e2enet0,mac={spec.nic.mac},addr={USER_NIC_PCI_SLOT}"
        for value in ("-netdev", netdev, "-device", device):
            _sub(commandline, f"{{{QEMU_NAMESPACE}}}arg", value=value)
    return _render(root)


def snapshot_xml(name: str, run_id: str) -> str:
    root = ET.Element("domainsnapshot")
    _sub(root, "name", name)
    _sub(root, "description", f"taken by harvester-e2e run {run_id}")
    return _render(root)
