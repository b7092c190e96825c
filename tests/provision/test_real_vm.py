"""The real-VM test: the libvirt backend's provisioning code, through a real libvirt daemon and qemu,
boots a tiny Linux guest (Debian cloud kernel + busybox + dropbear), reaches it over SSH on a port
forwarded to 127.0.0.1 only, runs commands, snapshots and reverts it, destroys it, and the leak audit
finds nothing. KVM is tried first and given up for software emulation when the guest shows no sign of
life under it. Where qemu or libvirtd cannot run, the test skips and says why.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from infra.config import LibvirtSettings
from infra.config import RunConfig

pytestmark = [pytest.mark.slow, pytest.mark.real_vm]


@pytest.fixture(scope="module")
def tiny_guest() -> Any:
    from .tiny_guest import TinyGuestUnavailable, build_tiny_guest

    try:
        return build_tiny_guest()
    except TinyGuestUnavailable as exc:
        pytest.skip(f"real-VM test skipped: {exc}")


@pytest.fixture(scope="module")
def libvirtd() -> Iterator[Any]:
    pytest.importorskip("libvirt", reason="real-VM test skipped: libvirt-python is not installed")
    from infra.provision.local_libvirtd import LibvirtdUnavailable, start_libvirtd

    try:
        daemon = start_libvirtd()
    except LibvirtdUnavailable as exc:
        pytest.skip(f"real-VM test skipped: {exc}")
    try:
        yield daemon
    finally:
        daemon.stop()


def tiny_guest_config(guest: Any, uri: str, tmp_path: Path, run_id: str) -> RunConfig:
    settings = LibvirtSettings(
        uri=uri, nodes=1, vcpus=1, memory_gib=0.25, disk_gib=0.0625, install="none", network_mode="user",
        kernel_url=str(guest.kernel), initrd_url=str(guest.initrd), kernel_cmdline=guest.cmdline,
        boot_mode="bios", domain_type="auto", kvm_probe_s=15, boot_timeout_min=3,
        storage_pool_dir=tmp_path / "pools", ssh_user="root", ssh_key_file=guest.client_key)
    return RunConfig(backend="libvirt", run_id=run_id, artifacts_dir=tmp_path / "artifacts", libvirt=settings,
                     harvester_version="none")


def test_tiny_guest_boots_answers_ssh_snapshots_reverts_and_leaves_nothing(
        tiny_guest: Any, libvirtd: Any, tmp_path: Path) -> None:
    from infra.backends import backend_for
    from infra.backends.libvirt import LibvirtBackend
    from infra.provision import leak_audit, open_connection

    run_id = f"e2e-vm-{int(time.time())}"
    backend = cast(LibvirtBackend, backend_for(tiny_guest_config(tiny_guest, libvirtd.uri, tmp_path, run_id)))
    started = time.monotonic()
    try:
        cluster = backend.acquire("none")
        print(f"tiny guest: define to SSH ready in {time.monotonic() - started:.1f}s")
        provisioned = backend.provisioned()
        if provisioned.kvm_probe_seconds is not None:     # decided by the quick probe, not a console watch
            print(f"KVM probe decided {provisioned.domain_type!r} in {provisioned.kvm_probe_seconds:.2f}s")
            assert provisioned.kvm_probe_seconds < 2.0
        node = cluster.nodes[0]
        assert node.ssh_host == "127.0.0.1"
        control = provisioned.control(node.name)
        assert control.state() == "running"
        assert "tiny-guest: sshd started" in control.console_tail(200)        # console captured to its log

        # The host key the guest printed on its console is pinned (it is the key the guest was built with),
        # and the session is the cluster's own, as every step gets it: its login from the configuration.
        assert node.ssh_host_key == tiny_guest.host_key_line
        assert cluster.known_hosts is not None and cluster.known_hosts.is_relative_to(tmp_path)
        with cluster.ssh(node.name) as ssh:
            kernel = ssh.run("uname -r", check=True).stdout.strip()
            assert kernel == tiny_guest.kernel.name.removeprefix("vmlinuz-")
            assert ssh.run("hostname", check=True).stdout.strip() == "tiny-guest"

            control.snapshot("before-change", run_id)
            ssh.run("echo changed > /root/marker", check=True)
            assert ssh.run("cat /root/marker", check=True).stdout.strip() == "changed"
            control.revert("before-change")
            assert control.state() == "running"
            # The guest's memory is back to the snapshot: the file written after it is gone.
            after = ssh.run("cat /root/marker", budget=None)
            assert after.exit_status != 0 and "No such file" in after.stderr, after

        cluster.power(node.name, "destroy")
        assert control.state() == "shut off"
        print(f"tiny guest ran as domain type {provisioned.domain_type!r}")
    finally:
        backend.release_all()
    conn = open_connection(libvirtd.uri)
    try:
        assert leak_audit(conn, run_id) == []
        assert conn.listAllDomains() == [] and conn.listAllStoragePools() == []
    finally:
        conn.close()
    assert not (tmp_path / "pools" / run_id).exists()          # the run's pool directory went with it
