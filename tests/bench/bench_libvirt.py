"""Figures for libvirt provisioning, through a private libvirtd and qemu on this machine (see
infra/provision/local_libvirtd.py), printed as a table:

- time from domain define to SSH ready for the tiny guest (median of 3 boots; KVM tried first, TCG where
  KVM does not run guests);
- creating a node disk as a linked clone (qcow2 over a backing file) versus a full copy of a 2 GiB
  image holding 2 GiB of data (median of 3 each), and the ratio.

Run: .venv/bin/python tests/bench/bench_libvirt.py
"""
from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from infra.cleanup import CleanupStack
from infra.config import LibvirtSettings
from infra.provision import (
    ClusterProvisioner,
    leak_audit,
    open_connection,
    plan_cluster,
)
from infra.provision.objects import Provisioner
from infra.provision.spec import GIB, PoolSpec, VolumeSpec
from infra.provision.local_libvirtd import LibvirtdUnavailable, start_libvirtd
from tests.provision.tiny_guest import TinyGuest, TinyGuestUnavailable, build_tiny_guest

BOOTS = 3
COPIES = 3
IMAGE_GIB = 2


def boot_to_ssh(uri: str, guest: TinyGuest, workdir: Path, run_id: str) -> tuple[float, str]:
    settings = LibvirtSettings(
        uri=uri, nodes=1, vcpus=1, memory_gib=0.25, disk_gib=0.0625, install="none", network_mode="user",
        kernel_url=str(guest.kernel), initrd_url=str(guest.initrd), kernel_cmdline=guest.cmdline,
        boot_mode="bios", kvm_probe_s=15, boot_timeout_min=3, storage_pool_dir=workdir / "pools")
    conn = open_connection(uri)
    stack = CleanupStack()
    try:
        provisioner = ClusterProvisioner(conn, plan_cluster(settings, run_id, "none", workdir / run_id), stack)
        provisioner.create_infrastructure()
        started = time.perf_counter()           # from define (boot_all defines, then starts) ...
        provisioner.boot_all()
        provisioner.wait_for_ssh()              # ... to an SSH server answering on the forwarded port
        return time.perf_counter() - started, provisioner.result.domain_type
    finally:
        stack.run()
        assert leak_audit(conn, run_id) == []
        conn.close()


def disk_creation(uri: str, workdir: Path) -> tuple[list[float], list[float]]:
    """(linked clone seconds, full copy seconds) for a node disk over a 2 GiB image full of data."""
    run_id = "e2e-bench-disks"
    conn = open_connection(uri)
    stack = CleanupStack()
    linked, full = [], []
    try:
        objects = Provisioner(conn, run_id, stack)
        pool = objects.create_pool(PoolSpec(f"{run_id}-pool", run_id, workdir / run_id))
        base = objects.create_volume(VolumeSpec(f"{run_id}-node0.qcow2", f"{run_id}-pool", IMAGE_GIB * GIB))
        writes = []                            # fill it: qemu-io writes at most 2 GiB - 1 per request
        for offset in range(0, IMAGE_GIB * 1024, 256):
            writes += ["-c", f"write -P 0x5a {offset}M 256M"]
        subprocess.run(["qemu-io", "-f", "qcow2", *writes, base.path()], check=True, capture_output=True,
                       timeout=600)
        pool.refresh(0)
        for attempt in range(COPIES):
            name = f"{run_id}-node{attempt + 1}.qcow2"
            started = time.perf_counter()
            objects.create_volume(VolumeSpec(name, f"{run_id}-pool", IMAGE_GIB * GIB, backing=Path(base.path())))
            linked.append(time.perf_counter() - started)
            pool.storageVolLookupByName(name).delete(0)
            started = time.perf_counter()
            objects.copy_volume(VolumeSpec(name, f"{run_id}-pool", IMAGE_GIB * GIB), base)
            full.append(time.perf_counter() - started)
            pool.storageVolLookupByName(name).delete(0)
    finally:
        stack.run()
        assert leak_audit(conn, run_id) == []
        conn.close()
    return linked, full


def main() -> int:
    try:
        guest = build_tiny_guest()
        daemon = start_libvirtd()
    except (TinyGuestUnavailable, LibvirtdUnavailable) as exc:
        print(f"bench_libvirt skipped: {exc}")
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="e2e-bench-libvirt-"))
    try:
        boots = [boot_to_ssh(daemon.uri, guest, workdir, f"e2e-bench-boot{i}") for i in range(BOOTS)]
        linked, full = disk_creation(daemon.uri, workdir)
    finally:
        daemon.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    seconds = [s for s, _ in boots]
    linked_s, full_s = statistics.median(linked), statistics.median(full)
    print(f"{'figure':58} {'value':>12}")
    print(f"{'tiny guest: domain define -> SSH ready (median of 3, ' + boots[-1][1] + ')':58} "
          f"{statistics.median(seconds):>10.1f} s   (runs: {', '.join(f'{s:.1f}' for s in seconds)})")
    print(f"{f'node disk, linked clone over a {IMAGE_GIB} GiB image (median of 3)':58} {linked_s * 1000:>10.0f} ms")
    print(f"{f'node disk, full copy of a {IMAGE_GIB} GiB image (median of 3)':58} {full_s:>10.2f} s")
    print(f"{'full copy / linked clone':58} {full_s / linked_s:>10.0f} x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
