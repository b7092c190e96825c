"""The appliance installer's reading of its config, without a VM: the `harvester.*` kernel parameters
(harvester-installer pkg/util/cmdline.go), the document's key spellings and types (pkg/config), the merge of
the two, validation in harvester-installer's words (pkg/console/validator.go), the preflight checks
(pkg/preflight) and the files an install writes onto the node. Also: the harness's own install config and
kernel command line (infra/provision/install_config.py) pass the appliance's validation."""
from __future__ import annotations

import base64
import copy
import gzip
import os
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest

from infra.simulator.appliance.cmdline import CmdlineError, parse_cmdline
from infra.simulator.appliance.config import (ConfigError, HarvesterConfig, Interface, SystemProbe, WriteFile, combine,
                                              load_config, management_interface_name, merge, parse_document, validate)
from infra.simulator.appliance.installer import Release, console_arguments, fetch_config, inside, write_node_files
from infra.simulator.appliance.preflight import Machine, run_checks

MAC = "52:54:00:e2:e0:01"
GIB = 1024 ** 3
HARNESS_CMDLINE = ("ip=dhcp rd.net.dhcp.retry=3 rd.cos.disable rd.noverifyssl net.ifnames=1 root=live:CDLABEL=COS_LIVE "
                   "console=tty1 console=ttyS0 harvester.install.automatic=true "
                   "harvester.install.config_url=http://10.0.2.2:8080/e2e-r1/harvester-node-0.yaml "
                   "harvester.install.skipchecks=true")


def good_document() -> dict[str, Any]:
    return {"scheme_version": 1, "token": "a-cluster-token",
            "os": {"hostname": "harvester-node-0", "password": "a-password",
                   "ssh_authorized_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKey user@host"]},
            "install": {"mode": "create", "device": "/dev/vda", "iso_url": "/srv/harvester.iso", "automatic": True,
                        "poweroff": True, "tty": "ttyS0", "vip": "10.0.2.10", "vip_mode": "static",
                        "management_interface": {"interfaces": [{"name": "ens30", "hwAddr": MAC}],
                                                 "method": "dhcp"}}}


def probe(disk_bytes: int = 4 * GIB) -> SystemProbe:
    return SystemProbe(interfaces=[Interface("lo", "00:00:00:00:00:00", loopback=True), Interface("ens30", MAC)],
                       disks={"/dev/vda": disk_bytes}, bios=True)


def skipping(document: dict[str, Any]) -> HarvesterConfig:
    return combine(parse_cmdline(HARNESS_CMDLINE), document)


# ---- the kernel command line ---------------------------------------------------------------

def test_the_harness_command_line_gives_the_installer_its_config_url_and_flags() -> None:
    assert parse_cmdline(HARNESS_CMDLINE) == {"install": {
        "automatic": "true", "config_url": "http://10.0.2.2:8080/e2e-r1/harvester-node-0.yaml", "skipchecks": "true"}}


def test_quoted_values_repeated_keys_bare_flags_interfaces_and_the_scheme_version() -> None:
    parsed = parse_cmdline('quiet harvester.os.ssh_authorized_keys="ssh-ed25519 AAAA one" '
                           'harvester.os.ssh_authorized_keys="ssh-ed25519 BBBB two" harvester.install.debug '
                           'harvester.install.management_interface.interfaces="hwAddr: 52:54:00:00:00:0a" '
                           'harvester.install.management_interface.interfaces=ens3 harvester.scheme_version=1 '
                           'notharvester.install.mode=join')
    assert parsed["os"]["ssh_authorized_keys"] == ["ssh-ed25519 AAAA one", "ssh-ed25519 BBBB two"]
    assert parsed["install"]["debug"] == "true"
    assert parsed["install"]["management_interface"]["interfaces"] == [{"hwAddr": "52:54:00:00:00:0a"},
                                                                        {"name": "ens3"}]
    assert parsed["scheme_version"] == 1 and "mode" not in parsed["install"]
    with pytest.raises(CmdlineError):
        parse_cmdline("harvester.scheme_version=one")
    with pytest.raises(CmdlineError, match="could not parse interface details"):
        parse_cmdline('harvester.install.management_interface.interfaces="mac: 1:2"')


# ---- key spellings, types, merge -------------------------------------------------------------

@pytest.mark.parametrize("spelling", ["poweroff", "power_off", "powerOff"])
def test_every_spelling_harvester_installer_accepts_is_one_key(spelling: str) -> None:
    config = load_config({"install": {spelling: "true", "management_interface": {
        "interfaces": [{"hw_addr": MAC}], "subnet_mask": "255.255.255.0"}, "vipmode": "static"}})
    assert config.poweroff is True and config.vip_mode == "static"
    network = config.management_interface
    assert network.interfaces[0].hw_addr == MAC and network.subnet_mask == "255.255.255.0"


def test_strings_become_the_schema_types_and_unknown_keys_are_reported_not_refused() -> None:
    config = load_config({"scheme_version": "1", "install": {"automatic": "false", "skipchecks": "true",
                                                             "no_such_option": 1},
                          "os": {"ssh_authorized_keys": "ssh-ed25519 AAAA one"}})
    assert config.scheme_version == 1 and config.automatic is False and config.skipchecks is True
    assert config.ssh_authorized_keys == ["ssh-ed25519 AAAA one"]
    assert config.unknown_keys == ["install.no_such_option"]


def test_the_command_line_wins_and_the_document_fills_in_what_it_left_empty() -> None:
    document = good_document()
    document["install"]["skipchecks"] = False
    config = combine({"install": {"skipchecks": "true", "device": "/dev/sda"},
                      "os": {"ssh_authorized_keys": "ssh-ed25519 CMDLINE"}}, document)
    assert config.skipchecks is True and config.device == "/dev/sda" and config.vip == "10.0.2.10"
    assert config.ssh_authorized_keys[0] == "ssh-ed25519 CMDLINE" and len(config.ssh_authorized_keys) == 2
    assert merge({"a": {"b": ""}}, {"a": {"b": "x", "c": [1]}}) == {"a": {"b": "x", "c": [1]}}


def test_a_cloud_config_header_is_dropped_and_a_non_mapping_is_refused() -> None:
    assert parse_document("#cloud-config\ntoken: x\n") == {"token": "x"}
    with pytest.raises(ConfigError, match="failed to unmarshal yaml"):
        parse_document("- a list\n")


# ---- validation, in harvester-installer's words ---------------------------------------------

def test_the_good_document_passes_with_skipchecks_and_names_the_management_nic() -> None:
    config = skipping(good_document())
    validate(config, probe())
    assert management_interface_name(config, probe()) == "ens30"


def _set(document: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = document
    for key in parents:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value


@pytest.mark.parametrize(("path", "value", "message"), [
    ("install.vip_mode", "bogus", "unknown vip mode: bogus"),
    ("install.vip_mode", "dhcp", " is an invalid hardware address"),
    ("install.vip", "10.0.2", "10.0.2 is not a valid IP address"),
    ("install.mode", "join", "ServerURL can't empty in join mode"),
    ("install.mode", "dance", "unknown mode: dance"),
    ("server_url", "https://10.0.2.10:443", "ServerURL need to be empty in create mode"),
    ("install.device", None, "no device specified"),
    ("install.device", "/dev/vdb", "lstat /dev/vdb: no such file or directory"),
    ("install.iso_url", None, "iso_url is required in automatic installation"),
    ("token", None, "token not specified"),
    ("token", "bad\ttoken", "Invalid token. Must be alphanumeric and OWASP special password characters"),
    ("scheme_version", 2, "Unsupported Harvester Scheme Version 2"),
    ("os.hostname", "Node_0", "invalid hostname. A lowercase RFC 1123 subdomain"),
    ("install.management_interface.method", "bridge",
     "management network must configure with either static or DHCP method"),
    ("install.management_interface.method", "static", "DNS servers are required for static IP address"),
    ("install.management_interface.interfaces", [{"name": "ens3"}], "interface not found: ens3"),
    ("install.management_interface.interfaces", [{"name": "lo"}], "interface is a loopback interface: lo"),
    ("install.management_interface.interfaces", [{"hwAddr": "52:54:00:00:00:99"}],
     "no interface matching hardware address 52:54:00:00:00:99 found"),
    ("install.management_interface", None, "networks is deprecated, please use management_interface"),
    ("system_settings", {"no-such-setting": "x"}, "unknown system settings: no-such-setting"),
])
def test_an_invalid_config_is_refused_with_harvester_installers_message(path: str, value: Any, message: str) -> None:
    document = copy.deepcopy(good_document())
    _set(document, path, value)
    with pytest.raises(ConfigError) as refused:
        validate(skipping(document), probe())
    assert message in str(refused.value)


def test_no_credentials_at_all_is_refused() -> None:
    document = good_document()
    document["os"].pop("password")
    document["os"].pop("ssh_authorized_keys")
    with pytest.raises(ConfigError, match="no SSH authorized keys or passwords are set"):
        validate(skipping(document), probe())


def test_a_join_with_its_server_url_is_accepted_and_an_interface_found_by_mac_alone() -> None:
    document = good_document()
    document["server_url"] = "https://10.0.2.10:443"
    document["install"]["mode"] = "join"
    document["install"]["management_interface"]["interfaces"] = [{"hwAddr": MAC.upper()}]
    config = skipping(document)
    validate(config, probe())
    assert management_interface_name(config, probe()) == "ens30"


def test_a_static_management_network_needs_its_addresses() -> None:
    document = good_document()
    document["os"]["dns_nameservers"] = ["10.0.2.3"]
    document["install"]["management_interface"].update(method="static", ip="10.0.2.15",
                                                       subnet_mask="255.255.255.0")
    with pytest.raises(ConfigError, match="must specify gateway in static method"):
        validate(skipping(document), probe())
    document["install"]["management_interface"]["gateway"] = "10.0.2.2"
    validate(skipping(document), probe())


def test_the_disk_size_check_is_harvesters_unless_skipchecks() -> None:
    with pytest.raises(ConfigError, match=r"device size too small. At least 250G is required: /dev/vda"):
        validate(combine({}, good_document()), probe(4 * GIB))
    validate(combine({}, good_document()), probe(250 * GIB))
    validate(skipping(good_document()), probe(4 * GIB))


# ---- preflight -----------------------------------------------------------------------------

def test_preflight_messages_are_harvester_installers() -> None:
    small = Machine(cpus=1, mem_total_kib=1000000, virtualization="qemu", has_dev_kvm=False)
    assert run_checks(small) == [
        "Only 1 CPU cores detected. Harvester requires at least 8 cores for testing and 16 for production use.",
        "Only 1000000KiB RAM detected. Harvester requires at least 32GiB for testing and 64GiB for production use.",
        "System is virtualized (qemu) which is not supported in production.",
        "Harvester requires hardware-assisted virtualization, but /dev/kvm does not exist."]
    testing = Machine(cpus=8, mem_total_kib=32 * 1024 * 1024, virtualization="", has_dev_kvm=True)
    assert run_checks(testing) == ["8 CPU cores detected. Harvester requires at least 16 cores for production use.",
                                   "32GiB RAM detected. Harvester requires at least 64GiB for production use."]
    assert run_checks(Machine(cpus=16, mem_total_kib=64 * 1024 * 1024, virtualization="", has_dev_kvm=True)) == []


# ---- what an install writes ------------------------------------------------------------------

def test_write_files_encodings_and_modes() -> None:
    payload = b"hello\n"
    assert WriteFile("/a", base64.b64encode(payload).decode(), "b64").data() == payload
    assert WriteFile("/a", base64.b64encode(gzip.compress(payload)).decode(), "gzip+base64").data() == payload
    assert WriteFile("/a", "x", permissions="0600").mode() == 0o600
    with pytest.raises(ConfigError, match="unknown encoding"):
        WriteFile("/a", "x", "rot13").data()


def test_inside_refuses_paths_out_of_the_installed_system(tmp_path: Path) -> None:
    assert inside(tmp_path, "/etc/x") == tmp_path / "etc" / "x"
    assert inside(tmp_path, "/../../etc/x") == tmp_path / "etc" / "x"


def fake_root(root: Path) -> Path:
    uid, gid = os.getuid(), os.getgid()
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(f"root:x:{uid}:{gid}:root:/root:/bin/bash\n"
                                         f"rancher:x:{uid}:{gid}::/home/rancher:/bin/bash\n")
    (root / "etc" / "group").write_text(f"root:x:{gid}:\nadmin:x:{gid}:rancher\n")
    (root / "etc" / "shadow").write_text("root:*:19000:0:99999:7:::\nrancher:*:19000:0:99999:7:::\n")
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "usr" / "lib" / "os-release").write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\n')
    (root / "etc" / "os-release").symlink_to("../usr/lib/os-release")
    return root


def test_the_node_files_an_install_writes(tmp_path: Path) -> None:
    root = fake_root(tmp_path / "root")
    document = good_document()
    document["os"]["write_files"] = [{"encoding": "", "content": "PRIVATE\n", "owner": "root",
                                      "path": "/etc/ssh/ssh_host_ed25519_key", "permissions": "0600"}]
    config = skipping(document)
    release = Release("v1.5.1", "Harvester v1.5.1", {"harvester": "v1.5.1"})
    write_node_files(root, config, release, probe(), console_arguments(config, HARNESS_CMDLINE), "")

    assert 'PRETTY_NAME="Harvester v1.5.1"' in (root / "etc" / "os-release").read_text()
    assert not (root / "etc" / "os-release").is_symlink()
    assert "Debian" in (root / "usr" / "lib" / "os-release").read_text(), "the base's os-release is left alone"
    assert (root / "etc" / "hostname").read_text() == "harvester-node-0\n"
    hashed = next(line for line in (root / "etc" / "shadow").read_text().splitlines()
                  if line.startswith("rancher:")).split(":")[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    assert crypt.crypt("a-password", hashed) == hashed
    keys = root / "home" / "rancher" / ".ssh" / "authorized_keys"
    assert keys.read_text() == document["os"]["ssh_authorized_keys"][0] + "\n" and keys.stat().st_mode & 0o777 == 0o600
    host_key = root / "etc" / "ssh" / "ssh_host_ed25519_key"
    assert host_key.read_text() == "PRIVATE\n" and host_key.stat().st_mode & 0o777 == 0o600
    oem = root / "oem" / "harvester.config"
    assert oem.stat().st_mode & 0o777 == 0o600 and "a-cluster-token" in oem.read_text()
    env = subprocess.run(["sh", "-c", f". {root}/etc/harvester-appliance/node.env && "
                          "echo $HARVESTER_VERSION $INSTALL_MODE $VIP $MGMT_IFACE $MGMT_HWADDR $MGMT_METHOD"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert env == ["v1.5.1", "create", "10.0.2.10", "ens30", MAC, "dhcp"]
    extlinux = (root / "boot" / "extlinux" / "extlinux.conf").read_text()
    assert "APPEND root=LABEL=COS_STATE console=tty1 console=ttyS0 net.ifnames=1 panic=10" in extlinux


def test_the_installed_console_follows_install_tty_else_the_live_systems_console() -> None:
    assert console_arguments(load_config({"install": {"tty": "ttyS1,115200n8"}}), "") == \
        "console=tty1 console=ttyS1,115200n8"
    assert console_arguments(load_config({}), "console=tty1 console=ttyS0") == "console=tty1 console=ttyS0"
    assert console_arguments(load_config({}), "") == "console=tty1 console=ttyS0"


def test_fetching_the_config_retries_a_bounded_number_of_times() -> None:
    import urllib.error

    calls: list[str] = []

    def flaky(url: str, timeout: float) -> bytes:
        calls.append(url)
        if len(calls) < 3:
            raise urllib.error.URLError("connection refused")
        return b"token: x\n"

    assert fetch_config("http://10.0.2.2:1/x.yaml", attempts=5, pause=0, opener=flaky) == "token: x\n"
    assert len(calls) == 3

    def never(url: str, timeout: float) -> bytes:
        raise urllib.error.URLError("connection refused")

    from infra.simulator.appliance.installer import InstallError
    with pytest.raises(InstallError, match="after 2 attempts"):
        fetch_config("http://10.0.2.2:1/x.yaml", attempts=2, pause=0, opener=never)


# ---- the harness's side ------------------------------------------------------------------------

def test_the_harness_install_config_and_command_line_pass_the_appliances_validation(tmp_path: Path) -> None:
    from infra.provision import plan_cluster
    from infra.provision.install_config import NodeSecrets, installer_cmdline, node_config
    from tests.provision.conftest import harvester_settings

    iso = tmp_path / "harvester-appliance-v1.5.1.iso"
    settings = harvester_settings(tmp_path, nodes=1, network_mode="user", install="iso", iso_url=str(iso),
                                  disk_gib=4, install_skipchecks=True)
    plan = plan_cluster(settings, "e2e-r1", "v1.5.1", tmp_path)
    node = plan.nodes[0]
    document = node_config(plan, node, NodeSecrets("a-token", "a-password", ("ssh-ed25519 AAAA k",)))
    cmdline = installer_cmdline(plan, node, "http://10.0.2.2:8080/e2e-r1/harvester-node-0.yaml")
    assert "root=live:CDLABEL=COS_LIVE" in cmdline.split()      # the appliance ISO's volume label
    machine = SystemProbe(interfaces=[Interface("lo", "00:00:00:00:00:00", True), Interface("ens30", node.mac)],
                          disks={"/dev/vda": 4 * GIB})
    config = combine(parse_cmdline(cmdline), document)
    assert config.skipchecks and config.automatic and config.config_url.endswith("/harvester-node-0.yaml")
    validate(config, machine)
    assert management_interface_name(config, machine) == "ens30"


@pytest.mark.parametrize(("name", "pretty"), [("v1.5.1", "Harvester v1.5.1"), ("master-ce188325-head", "Harvester master")])
def test_the_isos_release_file_gives_the_version_and_its_os_pretty_name(tmp_path: Path, name: str, pretty: str) -> None:
    from infra.simulator.appliance.installer import read_release
    from infra.simulator.harvester.versions import get_version

    (tmp_path / "harvester-release.yaml").write_text(get_version(name).release_file_text())
    release = read_release(tmp_path)
    assert (release.version, release.pretty_name) == (name, pretty)
