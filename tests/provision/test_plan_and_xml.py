"""The plan and the XML generated from it, checked by parsing; configs that ask for too little are refused."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from infra.config import ConfigError, load_config
from infra.provision import plan_cluster
from infra.provision.ownership import METADATA_NAMESPACE
from infra.provision.spec import Boot
from infra.provision.xmlgen import (
    QEMU_NAMESPACE,
    domain_xml,
    network_xml,
    pool_xml,
    volume_xml,
)

from .conftest import guest_settings, harvester_settings

RUN = f"{{{METADATA_NAMESPACE}}}run"


def test_nat_network_reserves_every_node_address_by_mac(tmp_path: Path) -> None:
    plan = plan_cluster(harvester_settings(tmp_path), "e2e-r1", "v1.4.2", tmp_path)
    assert plan.network is not None
    root = ET.fromstring(network_xml(plan.network))
    assert root.findtext("name") == "e2e-r1-net"
    assert root.find(f"metadata/{RUN}").get("id") == "e2e-r1"
    assert root.find("forward").get("mode") == "nat"
    assert len(root.find("bridge").get("name")) <= 15
    ip = root.find("ip")
    assert (ip.get("address"), ip.get("netmask")) == ("192.168.100.1", "255.255.255.0")
    hosts = {h.get("mac"): (h.get("name"), h.get("ip")) for h in ip.findall("dhcp/host")}
    assert hosts == {n.mac: (n.hostname, str(n.ip)) for n in plan.nodes}
    assert [str(n.ip) for n in plan.nodes] == ["192.168.100.11", "192.168.100.12", "192.168.100.13"]
    assert str(plan.vip) == "192.168.100.10"
    dhcp_range = ip.find("dhcp/range")
    assert dhcp_range.get("start") not in {str(n.ip) for n in plan.nodes} | {str(plan.vip)}


def test_bridge_network_serves_nothing_and_nodes_get_static_addresses(tmp_path: Path) -> None:
    settings = harvester_settings(tmp_path, network_mode="bridge", bridge_name="br-lab")
    plan = plan_cluster(settings, "e2e-r1", "v1.4.2", tmp_path)
    root = ET.fromstring(network_xml(plan.network))
    assert root.find("forward").get("mode") == "bridge" and root.find("bridge").get("name") == "br-lab"
    assert root.find("ip") is None
    from infra.provision.install_config import NodeSecrets, node_config

    document = node_config(plan, plan.nodes[1], NodeSecrets("t", "p", ()))
    interface = document["install"]["management_interface"]
    assert interface["method"] == "static" and interface["ip"] == "192.168.100.12"
    assert interface["gateway"] == "192.168.100.1" and interface["subnet_mask"] == "255.255.255.0"


def test_installer_domain_boots_the_kernel_unattended_and_never_reboots_into_it(tmp_path: Path) -> None:
    plan = plan_cluster(harvester_settings(tmp_path), "e2e-r1", "v1.4.2", tmp_path)
    node = plan.nodes[0]
    from infra.provision.install_config import installer_cmdline

    cmdline = installer_cmdline(plan, node, "http://192.168.100.1:8000/e2e-r1/harvester-node-0.yaml")
    spec = plan.domain_spec(node, "kvm").with_boot(
        Boot(firmware="uefi", kernel=tmp_path / "vmlinuz", initrd=tmp_path / "initrd", cmdline=cmdline),
        on_reboot="destroy")
    root = ET.fromstring(domain_xml(spec))
    assert root.get("type") == "kvm" and root.findtext("name") == "e2e-r1-node0"
    assert root.find(f"metadata/{RUN}").attrib == {"id": "e2e-r1", "node": "harvester-node-0"}
    assert root.find("os").get("firmware") == "efi"
    assert root.findtext("os/kernel") == str(tmp_path / "vmlinuz")
    assert root.findtext("os/initrd") == str(tmp_path / "initrd")
    args = root.findtext("os/cmdline").split()
    assert "harvester.install.automatic=true" in args
    assert "harvester.install.config_url=http://192.168.100.1:8000/e2e-r1/harvester-node-0.yaml" in args
    assert "root=live:http://192.168.100.1:8080/rootfs.squashfs" in args and "console=ttyS0" in args
    assert root.findtext("on_reboot") == "destroy"
    assert root.findtext("vcpu") == "8" and root.find("memory").text == str(32 * 1024)
    assert root.find("cpu").get("mode") == "host-passthrough"
    disk = root.find("devices/disk[@device='disk']")
    assert disk.get("type") == "volume" and disk.find("driver").get("type") == "qcow2"
    assert disk.find("source").attrib == {"pool": "e2e-r1-pool", "volume": "e2e-r1-node0.qcow2"}
    assert disk.find("target").attrib == {"dev": "vda", "bus": "virtio"}
    nic = root.find("devices/interface")
    assert nic.get("type") == "network" and nic.find("source").get("network") == "e2e-r1-net"
    assert nic.find("model").get("type") == "virtio" and nic.find("mac").get("address") == node.mac
    assert nic.find("address").get("slot") == "0x03"
    serial = root.find("devices/serial")
    assert serial.get("type") == "file" and serial.find("source").get("path") == str(node.console_log)
    assert root.find(f"{{{QEMU_NAMESPACE}}}commandline") is None


def test_installed_domain_boots_from_its_disk_with_bios(tmp_path: Path) -> None:
    plan = plan_cluster(harvester_settings(tmp_path, boot_mode="bios"), "e2e-r1", "v1.4.2", tmp_path)
    spec = plan.domain_spec(plan.nodes[1], "qemu").with_boot(Boot(firmware="bios"))
    root = ET.fromstring(domain_xml(spec))
    assert root.get("type") == "qemu" and root.find("os").get("firmware") is None
    assert root.find("os/kernel") is None and root.find("os/boot").get("dev") == "hd"
    assert root.find("cpu") is None and root.findtext("on_reboot") == "restart"


def test_iso_install_attaches_the_iso_and_finds_its_rootfs_by_label(tmp_path: Path) -> None:
    iso = tmp_path / "harvester-v1.5.0-amd64.iso"
    iso.write_bytes(b"\0" * 32808 + b"HARVESTER_LIVE".ljust(32) + b"\0" * 100)
    settings = harvester_settings(tmp_path, install="iso", iso_url=str(iso))
    plan = plan_cluster(settings, "e2e-r1", "v1.5.0", tmp_path)
    from infra.provision.install_config import installer_cmdline

    assert "root=live:CDLABEL=HARVESTER_LIVE" in installer_cmdline(plan, plan.nodes[0], "http://x/c.yaml").split()
    spec = plan.domain_spec(plan.nodes[0], "kvm").with_boot(Boot(kernel=tmp_path / "vmlinuz", cdrom=iso))
    cdrom = ET.fromstring(domain_xml(spec)).find("devices/disk[@device='cdrom']")
    assert cdrom.find("source").get("file") == str(iso) and cdrom.find("readonly") is not None


def test_user_mode_forwards_ssh_to_127_0_0_1_only(tmp_path: Path) -> None:
    plan = plan_cluster(guest_settings(tmp_path, network_mode="user"), "e2e-r1", "none", tmp_path)
    assert plan.network is None
    node = plan.nodes[0]
    assert node.ssh_host == "127.0.0.1" and node.ssh_port > 1024
    root = ET.fromstring(domain_xml(plan.domain_spec(node, "qemu")))
    assert root.find("devices/interface") is None
    args = [a.get("value") for a in root.findall(f"{{{QEMU_NAMESPACE}}}commandline/{{{QEMU_NAMESPACE}}}arg")]
    assert args[0] == "-netdev" and args[2] == "-device"
    assert args[1] == f"user,id=e2enet0,hostfwd=tcp:127.0.0.1:{node.ssh_port}-:22"
    assert f"mac={node.mac}" in args[3]


def test_a_one_node_install_on_the_user_network_forwards_ssh_and_the_vip_api_and_serves_its_config_at_10_0_2_2(
        tmp_path: Path) -> None:
    from infra.provision.install_config import InstallConfigServer, NodeSecrets, installer_cmdline, node_config

    settings = harvester_settings(tmp_path, nodes=1, network_mode="user", install_skipchecks=True, vcpus=1,
                                  memory_gib=1, disk_gib=4)
    plan = plan_cluster(settings, "e2e-r1", "v1.5.1", tmp_path)
    assert plan.network is None and str(plan.vip) == "10.0.2.10"
    node = plan.nodes[0]
    assert str(node.ip) == "10.0.2.15" and node.api_port is not None and node.api_port != node.ssh_port
    assert plan.api_url == f"https://127.0.0.1:{node.api_port}"
    args = [a.get("value") for a in ET.fromstring(domain_xml(plan.domain_spec(node, "qemu"))).findall(
        f"{{{QEMU_NAMESPACE}}}commandline/{{{QEMU_NAMESPACE}}}arg")]
    assert args[1] == (f"user,id=e2enet0,hostfwd=tcp:127.0.0.1:{node.ssh_port}-:22,"
                       f"hostfwd=tcp:127.0.0.1:{node.api_port}-10.0.2.10:6443")
    document = node_config(plan, node, NodeSecrets("t", "p", ()))
    assert document["install"]["vip"] == "10.0.2.10" and document["install"]["mode"] == "create"
    assert document["install"]["management_interface"] == {
        "interfaces": [{"name": "ens30", "hwAddr": node.mac}], "method": "dhcp"}
    server = InstallConfigServer("127.0.0.1", guest_host="10.0.2.2")
    try:
        url = server.publish("/e2e-r1/harvester-node-0.yaml", document)
        assert url.startswith(f"http://10.0.2.2:{server.address[1]}/") and server.address[0] == "127.0.0.1"
    finally:
        server.stop()
    assert "harvester.install.skipchecks=true" in installer_cmdline(plan, node, url).split()
    sized = plan_cluster(harvester_settings(tmp_path, nodes=1), "e2e-r1", "v1.5.1", tmp_path)
    assert "harvester.install.skipchecks=true" not in installer_cmdline(sized, sized.nodes[0], url)


def test_volumes_are_qcow2_and_a_linked_clone_names_its_backing_file(tmp_path: Path) -> None:
    backing = {"harvester-node-0": tmp_path / "golden" / "v1.4.2-node0.qcow2"}
    plan = plan_cluster(harvester_settings(tmp_path), "e2e-r1", "v1.4.2", tmp_path, golden_backing=backing)
    linked = ET.fromstring(volume_xml(plan.volume_spec(plan.nodes[0])))
    assert linked.findtext("name") == "e2e-r1-node0.qcow2"
    assert linked.find("target/format").get("type") == "qcow2"
    assert int(linked.findtext("capacity")) == 250 * 1024 ** 3
    assert linked.findtext("backingStore/path") == str(backing["harvester-node-0"])
    full = ET.fromstring(volume_xml(plan.volume_spec(plan.nodes[1])))
    assert full.find("backingStore") is None
    pool = ET.fromstring(pool_xml(plan.pool))
    assert pool.get("type") == "dir" and pool.findtext("target/path") == str((tmp_path / "pools" / "e2e-r1").resolve())


@pytest.mark.parametrize("section, expected", [
    ("vcpus: 4", "libvirt.vcpus: 4 is fewer than the 8 vCPUs a Harvester node needs; set libvirt.vcpus: 8"),
    ("memory_gib: 16", "libvirt.memory_gib: 16 GiB is less than the 32 GiB a Harvester node needs"),
    ("disk_gib: 100", "libvirt.disk_gib: 100 GiB is less than the 250 GiB Harvester installs on"),
    ("kernel_url: null", "libvirt.kernel_url: required for install 'pxe' but not given"),
    ("iso_url: null", "libvirt.iso_url: required for install 'pxe' but not given"),
    ("network_mode: user", "libvirt.network_mode: 'user' isolates every node, so it holds a one-node cluster "
                           "only; set libvirt.nodes: 1"),
    ("vcpus: 1\n  install_skipchecks: false", "or set libvirt.install_skipchecks: true"),
    ("network_cidr: 10.0.0.0/29", "libvirt.network_cidr: too small"),
    ("network_cidr: 10.0.0.300/24", "libvirt.network_cidr: not an IPv4 subnet"),
    ("network_mode: bridge", "libvirt.bridge_name: bridge mode needs the name of an existing host bridge"),
    ("ssh_password: null", "libvirt.ssh_password or libvirt.ssh_key_file"),
])
def test_a_config_that_asks_for_too_little_is_refused_with_the_field_and_the_fix(
        tmp_path: Path, section: str, expected: str) -> None:
    good = ("backend: libvirt\nharvester_version: v1.5.1\nlibvirt:\n  kernel_url: /k\n  initrd_url: /i\n  rootfs_url: http://h/r\n"
            "  iso_url: http://h/i.iso\n  ssh_password: secret-pw-1\n  config_server_bind: 10.0.0.1\n")
    load_config(_write(tmp_path, good), environ={})          # the baseline is fine
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, good + f"  {section}\n"), environ={})
    message = str(caught.value)
    assert expected in message, message
    assert "secret-pw-1" not in message and "\n" not in message


def test_backend_libvirt_without_its_section_says_what_to_add(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="backend 'libvirt' needs a 'libvirt:' section"):
        load_config(_write(tmp_path, "backend: libvirt\n"), environ={})


def test_a_plain_guest_may_be_small(tmp_path: Path) -> None:
    settings = guest_settings(tmp_path)
    assert settings.vcpus == 1 and settings.memory_gib == 0.25


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path
