"""Fixtures for the provisioning tests: libvirt's in-process test driver, run ids, settings."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.config import LibvirtSettings

TEST_URI = "test:///default"


def harvester_settings(tmp_path: Path, **overrides: Any) -> LibvirtSettings:
    """A real-Harvester-sized config (PXE install) whose files live under tmp_path."""
    for name in ("vmlinuz", "initrd", "harvester.iso"):
        (tmp_path / name).write_bytes(b"\0")
    values: dict[str, Any] = dict(
        uri=TEST_URI, nodes=3, install="pxe", kernel_url=str(tmp_path / "vmlinuz"),
        initrd_url=str(tmp_path / "initrd"), rootfs_url="http://192.168.100.1:8080/rootfs.squashfs",
        iso_url="http://192.168.100.1:8080/harvester.iso", ssh_password="a-node-password-1",
        cluster_token="a-cluster-token-1", network_cidr="192.168.100.0/24", storage_pool_dir=tmp_path / "pools",
        config_server_bind="127.0.0.1")
    values.update(overrides)
    return LibvirtSettings(**values)


def guest_settings(tmp_path: Path, **overrides: Any) -> LibvirtSettings:
    """A plain kernel/initrd guest (install none): what the test driver and the tiny VM run."""
    for name in ("vmlinuz", "initrd"):
        (tmp_path / name).write_bytes(b"\0")
    values: dict[str, Any] = dict(
        uri=TEST_URI, nodes=2, vcpus=1, memory_gib=0.25, disk_gib=0.0625, install="none",
        kernel_url=str(tmp_path / "vmlinuz"), initrd_url=str(tmp_path / "initrd"),
        kernel_cmdline="console=ttyS0", boot_mode="bios", network_cidr="10.231.0.0/24",
        storage_pool_dir=tmp_path / "pools")
    values.update(overrides)
    return LibvirtSettings(**values)


@pytest.fixture
def run_id() -> str:
    return f"e2e-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def conn() -> Iterator[Any]:
    pytest.importorskip("libvirt", reason="libvirt-python is not installed (see ci/bootstrap-system.sh)")
    from infra.provision import open_connection

    connection = open_connection(TEST_URI)
    yield connection
    connection.close()
