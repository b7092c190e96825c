"""The Harvester appliance in a real VM, under plain qemu (TCG, no libvirt), shaped like the libvirt backend's
domains: build (or reuse) it, boot the installer (-kernel/-initrd/-append with the ISO on the IDE cdrom and
the install config served from 127.0.0.1), wait for the installer to power the VM off, boot from the disk
(BIOS, extlinux), log in over SSH as rancher with the config's key, pin the config's host key, check what the
node says it is, reboot it with sudo and see a new boot id, press the ACPI power button and see it power off.
An invalid config makes the installer say why and write nothing.

Times are printed (`-s` shows them): build cold/cached, install, boot to SSH, reboot. Every wait has a
named budget and ends with the console's tail.
"""
from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.waits.budget import Budget, WaitTimeout

from .vm import NIC_MAC, ConfigServer, QemuVM, free_port

pytestmark = [pytest.mark.slow, pytest.mark.real_vm, pytest.mark.timeout(3600)]

VERSION = "v1.5.1"
VIP = "10.0.2.10"
HOSTNAME = "appliance-node-0"
PASSWORD = "appliance-test-password"
MANAGEMENT_NIC = "ens30"             # the user-mode NIC at PCI slot 0x1e (infra/provision/xmlgen.py)
INSTALL = Budget.minutes("installer to fetch its config, install and power the VM off", 15)
BOOT = Budget.minutes("installed system to boot and accept SSH", 10)
REBOOT = Budget.minutes("`sudo reboot` to a new boot id over SSH", 10)
POWER_BUTTON = Budget.minutes("ACPI power button to power the VM off", 3)
INVALID_CONFIG = Budget.minutes("installer to refuse an invalid config", 10)
API_SERVICE = Budget.minutes("the Harvester API service to be ready", 3)
STAYS_UP = Budget("a refusing installer keeps the VM up (it must not power off)", 5)
CACHED_BUILD_LIMIT_S = 30.0


def why_not() -> str | None:
    if os.geteuid() != 0:
        return "building the appliance needs root (debootstrap, chroot)"
    for tool, package in (("qemu-system-x86_64", "qemu-system-x86"), ("qemu-img", "qemu-utils"),
                          ("debootstrap", "debootstrap"), ("mksquashfs", "squashfs-tools"),
                          ("apt-get", "apt")):
        if shutil.which(tool) is None:
            return f"{tool} is missing (apt-get install -y {package}; see ci/bootstrap-system.sh)"
    if not Path("/bin/busybox").exists():
        return "/bin/busybox is missing (apt-get install -y busybox-static)"
    return None


@dataclass(frozen=True)
class Keys:
    host_private: str
    host_public: str               # "ssh-ed25519 AAAA..."
    client_key: Path
    client_public: str


def make_keys(directory: Path) -> Keys:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    def pair() -> tuple[str, str]:
        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption()).decode()
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH).decode()
        return private, public

    host_private, host_public = pair()
    client_private, client_public = pair()
    client_key = directory / "client_ed25519"
    client_key.write_text(client_private)
    client_key.chmod(0o600)
    return Keys(host_private, host_public, client_key, client_public)


def node_document(keys: Keys, iso_url: str, **install: Any) -> dict[str, Any]:
    """A create-mode config in the shape infra/provision/install_config.node_config makes."""
    document: dict[str, Any] = {
        "scheme_version": 1,
        "token": "appliance-test-token",
        "os": {"hostname": HOSTNAME, "password": PASSWORD,
               "ssh_authorized_keys": [keys.client_public],
               "write_files": [
                   {"encoding": "", "content": keys.host_private, "owner": "root",
                    "path": "/etc/ssh/ssh_host_ed25519_key", "permissions": "0600"},
                   {"encoding": "", "content": keys.host_public + "\n", "owner": "root",
                    "path": "/etc/ssh/ssh_host_ed25519_key.pub", "permissions": "0644"}]},
        "install": {"mode": "create",
                    "management_interface": {"interfaces": [{"name": MANAGEMENT_NIC, "hwAddr": NIC_MAC}],
                                             "method": "dhcp"},
                    "device": "/dev/vda", "iso_url": iso_url, "tty": "ttyS0", "automatic": True, "poweroff": True,
                    "vip": VIP, "vip_mode": "static"},
    }
    document["install"].update(install)
    return document


@pytest.fixture(scope="module")
def appliance() -> Any:
    reason = why_not()
    if reason:
        pytest.skip(f"appliance VM test skipped: {reason}")
    from infra.appliance import build_appliance

    started = time.monotonic()
    artifacts = build_appliance([VERSION])
    first = time.monotonic() - started
    kind = f"built {', '.join(artifacts.built)}" if artifacts.built else "all cached"
    print(f"\nappliance build: {first:.1f}s ({kind})")
    started = time.monotonic()
    again = build_appliance([VERSION])
    cached = time.monotonic() - started
    print(f"appliance build, cached: {cached:.1f}s")
    print(json.dumps(again.describe(), indent=1))
    assert again.built == (), f"a rerun with unchanged inputs rebuilt {again.built}"
    assert cached < CACHED_BUILD_LIMIT_S, f"a cached build took {cached:.1f}s"
    assert again.isos[VERSION].iso == artifacts.isos[VERSION].iso
    return again


@pytest.fixture
def config_server() -> Iterator[ConfigServer]:
    server = ConfigServer()
    try:
        yield server
    finally:
        server.stop()


def new_disk(path: Path) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "4G"], check=True, timeout=60)
    return path


def ssh_session(vm: QemuVM, keys: Keys, budget: Budget, not_boot_id: str | None = None) -> tuple[Any, str, float]:
    """An SSH session as rancher that trusts only the config's host key; with `not_boot_id`, one whose boot id
    differs (the machine has rebooted). Returns (client, boot id, seconds waited)."""
    import paramiko

    logging.getLogger("paramiko").setLevel(logging.CRITICAL)     # refused banners while it boots are expected
    host_key = paramiko.Ed25519Key(data=base64.b64decode(keys.host_public.split()[1]))
    state: dict[str, Any] = {"error": "no attempt yet"}

    def attempt() -> bool:
        client = paramiko.SSHClient()
        client.get_host_keys().add(f"[127.0.0.1]:{vm.ssh_port}", "ssh-ed25519", host_key)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect("127.0.0.1", port=vm.ssh_port, username="rancher", key_filename=str(keys.client_key),
                           timeout=10, banner_timeout=15, auth_timeout=15, look_for_keys=False, allow_agent=False)
            boot_id = run(client, "cat /proc/sys/kernel/random/boot_id")
        except (paramiko.SSHException, OSError, EOFError) as exc:
            client.close()
            state["error"] = f"{type(exc).__name__}: {exc}"
            return False
        if not_boot_id is not None and boot_id == not_boot_id:
            client.close()
            state["error"] = "still the old boot id"
            return False
        state.update(client=client, boot_id=boot_id)
        return True

    try:
        seconds = vm.wait_for("SSH as rancher with the pinned host key", budget, attempt, interval=2.0)
    except WaitTimeout as exc:
        exc.last_seen = f"last SSH error: {state['error']}\n{exc.last_seen}"
        raise
    return state["client"], state["boot_id"], seconds


def password_login(vm: QemuVM, keys: Keys) -> str:
    """`id -un` over an SSH session that logs in with os.password (no key offered)."""
    import paramiko

    client = paramiko.SSHClient()
    client.get_host_keys().add(f"[127.0.0.1]:{vm.ssh_port}", "ssh-ed25519",
                               paramiko.Ed25519Key(data=base64.b64decode(keys.host_public.split()[1])))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect("127.0.0.1", port=vm.ssh_port, username="rancher", password=PASSWORD, timeout=20,
                   banner_timeout=20, auth_timeout=20, look_for_keys=False, allow_agent=False)
    try:
        return run(client, "id -un")
    finally:
        client.close()


def run(client: Any, command: str) -> str:
    _, stdout, stderr = client.exec_command(command, timeout=60)
    status = stdout.channel.recv_exit_status()
    output = stdout.read().decode()
    assert status == 0, f"{command!r} exited {status}: {stderr.read().decode()}"
    return output.strip()


def node_api(client: Any, api_port: int | None) -> Any:
    """The node's Kubernetes API through its own /etc/rancher/rke2/rke2.yaml (read over SSH), at the VIP's
    forwarded port: the CA and token it holds must verify and authenticate."""
    from kubernetes import client as kube_client
    from kubernetes import config as kube_config

    assert api_port is not None
    document = yaml.safe_load(run(client, "sudo -n cat /etc/rancher/rke2/rke2.yaml"))
    document["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{api_port}"
    return kube_client.CoreV1Api(kube_config.new_client_from_config_dict(document))


def console_host_keys(console: str) -> list[str]:
    """The key lines of the last cloud-init style host key block on the console."""
    begin, end = "-----BEGIN SSH HOST KEY KEYS-----", "-----END SSH HOST KEY KEYS-----"
    block = console.rsplit(begin, 1)[1].split(end, 1)[0]
    return [" ".join(line.split()[:2]) for line in block.splitlines() if line.strip()]


def test_appliance_installs_boots_to_ssh_reboots_and_powers_off(appliance: Any, config_server: ConfigServer,
                                                                  tmp_path: Path) -> None:
    keys = make_keys(tmp_path)
    iso = appliance.iso(VERSION)
    config_server.documents["/node.yaml"] = yaml.safe_dump(node_document(keys, str(iso))).encode()
    vm = QemuVM(tmp_path, new_disk(tmp_path / "disk.qcow2"), free_port(), api_port=free_port(), api_ip=VIP)
    append = appliance.installer_cmdline(config_server.guest_url("/node.yaml"), "harvester.install.skipchecks=true")
    try:
        vm.start(kernel=appliance.kernel, initrd=appliance.initrd, append=append, cdrom=iso)
        install_seconds = vm.wait_exit(INSTALL)
        console = vm.console_text()
        print(f"install (boot, fetch, install, power off): {install_seconds:.1f}s")
        assert config_server.fetched == ["/node.yaml"]
        assert "harvester-appliance: installed" in console, vm.console_tail()
        assert "invalid config" not in console

        mark = len(vm.console_text())
        vm.start(cdrom=iso)            # no kernel: BIOS boot order cdrom, hd (the ISO still attached, not bootable)
        client, boot_id, boot_seconds = ssh_session(vm, keys, BOOT)
        print(f"boot from disk to SSH: {boot_seconds:.1f}s")
        installed_console = vm.console_text()[mark:]
        assert "harvester-appliance: sshd started" in installed_console
        assert console_host_keys(installed_console) == [keys.host_public], "the console's host key block"
        assert f'PRETTY_NAME="Harvester {VERSION}"' in run(client, "cat /etc/os-release")
        assert run(client, "hostname") == HOSTNAME
        run(client, "sudo -n true")
        assert run(client, "id -nG").split().count("admin") == 1
        addresses = run(client, f"ip -4 -o addr show dev {MANAGEMENT_NIC}")
        assert "10.0.2.15/24" in addresses and f"{VIP}/32" in addresses, addresses
        assert run(client, "sudo -n stat -c '%a %U' /oem/harvester.config") == "600 root"
        assert run(client, "sudo -n stat -c '%a %U' /etc/ssh/ssh_host_ed25519_key") == "600 root"
        api_seconds = vm.wait_for_console("harvester-appliance: api ready", API_SERVICE, after=mark)
        print(f"Harvester API ready {api_seconds:.1f}s after SSH")
        kube = node_api(client, vm.api_port)
        node = kube.read_node(HOSTNAME)
        assert node.status.node_info.boot_id == boot_id, "the API's Node reports this boot"
        marker = kube.create_namespaced_config_map("default", {"metadata": {"name": "before-reboot"},
                                                               "data": {"boot": boot_id}})
        assert password_login(vm, keys) == "rancher"

        mark = len(vm.console_text())
        client.exec_command("sudo -n reboot")
        client.close()
        client, new_boot_id, reboot_seconds = ssh_session(vm, keys, REBOOT, not_boot_id=boot_id)
        print(f"`sudo reboot` to SSH with a new boot id: {reboot_seconds:.1f}s")
        assert new_boot_id != boot_id
        assert run(client, "hostname") == HOSTNAME
        # The cluster's objects live on the disk, as etcd's do: what was written before the reboot is there.
        vm.wait_for_console("harvester-appliance: api ready", API_SERVICE, after=mark)
        kube = node_api(client, vm.api_port)
        kept = kube.read_namespaced_config_map("before-reboot", "default")
        assert kept.metadata.uid == marker.metadata.uid and kept.data == {"boot": boot_id}
        assert kube.read_node(HOSTNAME).status.node_info.boot_id == new_boot_id
        client.close()

        mark = len(vm.console_text())
        vm.monitor_command("system_powerdown")         # what `virsh shutdown` does: the ACPI power button
        off_seconds = vm.wait_exit(POWER_BUTTON)
        print(f"ACPI power button to power-off: {off_seconds:.1f}s")
        assert "power button pressed" in vm.console_text()[mark:]
    finally:
        vm.kill()


def test_an_invalid_config_is_refused_on_the_console_and_nothing_is_written(
        appliance: Any, config_server: ConfigServer, tmp_path: Path) -> None:
    keys = make_keys(tmp_path)
    iso = appliance.iso(VERSION)
    document = node_document(keys, str(iso), vip_mode="bogus")
    config_server.documents["/bad.yaml"] = yaml.safe_dump(document).encode()
    disk = new_disk(tmp_path / "disk.qcow2")
    vm = QemuVM(tmp_path, disk, free_port())
    append = appliance.installer_cmdline(config_server.guest_url("/bad.yaml"), "harvester.install.skipchecks=true")
    try:
        vm.start(kernel=appliance.kernel, initrd=appliance.initrd, append=append, cdrom=iso)
        seconds = vm.wait_for_console("harvester-appliance: installer: install FAILED", INVALID_CONFIG)
        print(f"invalid config refused after {seconds:.1f}s")
        assert "invalid config: unknown vip mode: bogus" in vm.console_text(), vm.console_tail()
        with pytest.raises(WaitTimeout):           # the installer leaves the machine up, showing why
            vm.wait_exit(STAYS_UP)
    finally:
        vm.kill()
    mapping = json.loads(subprocess.run(["qemu-img", "map", "--output=json", str(disk)], check=True,
                                        capture_output=True, text=True, timeout=60).stdout)
    assert not any(extent.get("data") for extent in mapping), "the installer wrote to the disk"
