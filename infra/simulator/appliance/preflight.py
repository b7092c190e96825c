"""harvester-installer's preflight checks (pkg/preflight/checks.go), in its words.

An automatic install runs them unless `skipchecks` is set and stops when any fails: "When installing via
PXE, if any checks fail, installation will abort and the failed checks will be visible on the system
console". The appliance's VM is small on purpose, so the harness boots it with
`harvester.install.skipchecks=true`; the checks stay real for whoever does not.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MIN_CPU_TEST, MIN_CPU_PROD = 8, 16
MIN_MEMORY_TEST, MIN_MEMORY_PROD = 32, 64           # GiB


@dataclass(frozen=True)
class Machine:
    """The facts the checks read; `Machine.probe()` reads them from this machine."""

    cpus: int
    mem_total_kib: int
    virtualization: str            # "" on bare metal, else systemd-detect-virt's name ("kvm", "qemu", ...)
    has_dev_kvm: bool

    @classmethod
    def probe(cls, root: Path = Path("/")) -> "Machine":
        return cls(cpus=_cpus(), mem_total_kib=_mem_total_kib(root / "proc/meminfo"),
                   virtualization=_virtualization(root), has_dev_kvm=(root / "dev/kvm").exists())


def _cpus() -> int:
    try:
        return int(os.sysconf("SC_NPROCESSORS_CONF"))       # what `nproc --all` prints
    except (ValueError, OSError):
        return os.cpu_count() or 1


def _mem_total_kib(meminfo: Path) -> int:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _virtualization(root: Path) -> str:
    """systemd-detect-virt --vm's answer, from what the kernel shows (that tool is not on the appliance)."""
    clocksources = _read(root / "sys/devices/system/clocksource/clocksource0/available_clocksource")
    vendor = _read(root / "sys/class/dmi/id/sys_vendor") + " " + _read(root / "sys/class/dmi/id/product_name")
    if "kvm-clock" in clocksources:
        return "kvm"
    if "QEMU" in vendor:
        return "qemu"
    if "VMware" in vendor:
        return "vmware"
    if "VirtualBox" in vendor:
        return "oracle"
    cpuinfo = _read(root / "proc/cpuinfo")
    if " hypervisor" in cpuinfo:
        return "vm-other"
    return ""


def cpu_check(machine: Machine) -> str:
    if machine.cpus < MIN_CPU_TEST:
        return (f"Only {machine.cpus} CPU cores detected. Harvester requires at least {MIN_CPU_TEST} cores for "
                f"testing and {MIN_CPU_PROD} for production use.")
    if machine.cpus < MIN_CPU_PROD:
        return f"{machine.cpus} CPU cores detected. Harvester requires at least {MIN_CPU_PROD} cores for production use."
    return ""


def memory_check(machine: Machine) -> str:
    kib = machine.mem_total_kib
    if kib == 0:
        return "unable to extract MemTotal from /proc/cpuinfo"
    gib = kib // (1 << 20)
    reported = f"{gib}GiB" if gib >= 1 else f"{kib}KiB"
    if gib < MIN_MEMORY_TEST * 0.95:
        return (f"Only {reported} RAM detected. Harvester requires at least {MIN_MEMORY_TEST}GiB for testing and "
                f"{MIN_MEMORY_PROD}GiB for production use.")
    if gib < MIN_MEMORY_PROD * 0.95:
        return f"{reported} RAM detected. Harvester requires at least {MIN_MEMORY_PROD}GiB for production use."
    return ""


def virt_check(machine: Machine) -> str:
    if machine.virtualization:
        return f"System is virtualized ({machine.virtualization}) which is not supported in production."
    return ""


def kvm_host_check(machine: Machine) -> str:
    if not machine.has_dev_kvm:
        return "Harvester requires hardware-assisted virtualization, but /dev/kvm does not exist."
    return ""


CHECKS = (cpu_check, memory_check, virt_check, kvm_host_check)


def run_checks(machine: Machine) -> list[str]:
    """The failed checks' messages, in harvester-installer's order (empty: all passed)."""
    return [message for message in (check(machine) for check in CHECKS) if message]
