"""KVM where it works, software emulation (TCG, domain type `qemu`) where it does not.

`/dev/kvm` can exist and still not run a guest's kernel (nested virtualisation that fails on stock
kernels): the guest then fails to start, or starts and shows no sign of life at all. So `auto` decides
first with a quick probe where libvirt runs on this host: qemu boots the node's kernel under KVM with
`earlyprintk` on the serial line; a working KVM prints within a fraction of a second (software emulation
takes ~0.15 s here), a broken one prints nothing, so `QUICK_PROBE_S` decides it. Where that probe cannot
run (a remote libvirt host, no kernel file), the first node is started under KVM and its console watched
for `kvm_probe_s`; if qemu refuses to start, or nothing appears, the domain is redefined as `qemu` and
started again. The decision is kept for the rest of the run.
"""
from __future__ import annotations

import logging
import os
import select
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.waits.budget import Budget, WaitTimeout
from infra.waits.poll import poll_until

from .connection import is_test_driver, libvirt_module
from .objects import Provisioner
from .power import DomainControl
from .spec import DomainSpec

log = logging.getLogger("harvester_e2e.provision")
QUICK_PROBE_S = 1.5         # a working KVM prints early boot output in ~0.1 s; give it ten times that


def quick_kvm_probe(kernel: Path, deadline_s: float = QUICK_PROBE_S) -> bool | None:
    """Does KVM run this kernel here? True/False within `deadline_s`; None when it cannot be tried."""
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None or not os.access("/dev/kvm", os.R_OK | os.W_OK) or not kernel.is_file():
        return None
    command = [qemu, "-accel", "kvm", "-machine", "pc", "-cpu", "host", "-nodefaults", "-display", "none",
               "-m", "128", "-no-reboot", "-monitor", "none", "-serial", "stdio", "-kernel", str(kernel),
               "-append", "earlyprintk=serial,ttyS0,115200 console=ttyS0 panic=-1"]
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        while time.monotonic() - started < deadline_s:
            readable, _, _ = select.select([process.stdout], [], [], 0.05)
            if readable:
                return bool(os.read(process.stdout.fileno(), 64))
            if process.poll() is not None:
                return False                # qemu refused KVM outright
        return False
    finally:
        process.kill()
        process.wait(5)


@dataclass
class Acceleration:
    requested: str               # auto | kvm | qemu
    probe_s: float = 30.0
    probe_kernel: Path | None = None   # a kernel the nodes boot, for the quick probe
    decided: str | None = None
    fell_back: bool = False
    probe_seconds: float | None = None  # how long the quick probe took (None: it did not run)

    def initial_type(self, conn: Any) -> str:
        if self.decided:
            return self.decided
        if self.requested != "auto":
            self.decided = self.requested
        elif is_test_driver(conn):
            self.decided = "kvm"          # nothing runs in the test driver: keep the lab's default
        elif not _kvm_offered(conn):
            self.decided = "qemu"
        elif _is_local(conn) and self.probe_kernel is not None:
            started = time.monotonic()
            works = quick_kvm_probe(self.probe_kernel)
            if works is not None:
                self.probe_seconds = time.monotonic() - started
                self.decided = "kvm" if works else "qemu"
                self.fell_back = not works
                log.info("KVM probe: %s in %.2fs", "KVM runs guests" if works else
                         "KVM does not run guests here; using software emulation (qemu TCG)", self.probe_seconds)
        return self.decided or "kvm"

    def define_and_start(self, provisioner: Provisioner, spec: DomainSpec) -> DomainSpec:
        """Define and start `spec`; under `auto`, fall back to `qemu` when KVM shows no sign of life."""
        libvirt = libvirt_module()
        spec = spec.with_type(self.initial_type(provisioner.conn))
        probing = self.decided is None and spec.domain_type == "kvm"
        domain = provisioner.define_domain(spec)
        try:
            domain.create()
        except libvirt.libvirtError as exc:
            if not probing:
                raise
            log.warning("%s did not start under KVM (%s); falling back to software emulation (qemu TCG)",
                        spec.name, exc.get_error_message().splitlines()[-1])
            return self._fall_back(provisioner, spec)
        if not probing:
            return spec
        control = DomainControl(provisioner.conn, spec.name, spec.console_log)
        try:
            poll_until(lambda: bool(control.console_tail(1).strip()) or None,
                       Budget("a KVM guest writes to its console", self.probe_s),
                       f"console output from {spec.name} under KVM", interval_s=1.0)
            self.decided = "kvm"
            return spec
        except WaitTimeout:
            log.warning("%s wrote nothing to its console in %.0fs under KVM: KVM does not run guests here; "
                        "falling back to software emulation (qemu TCG)", spec.name, self.probe_s)
        control.power("destroy")
        return self._fall_back(provisioner, spec)

    def _fall_back(self, provisioner: Provisioner, spec: DomainSpec) -> DomainSpec:
        self.decided, self.fell_back = "qemu", True
        spec = spec.with_type("qemu")
        if spec.console_log.exists():
            spec.console_log.write_text("")
        provisioner.define_domain(spec).create()
        return spec


def _is_local(conn: Any) -> bool:
    """libvirt runs qemu on this host (qemu:///system or qemu:///session), so a probe here speaks for it."""
    try:
        uri = str(conn.getURI())
    except Exception:  # noqa: BLE001 - an exotic connection: do not guess
        return False
    return uri.startswith("qemu:///")


def _kvm_offered(conn: Any) -> bool:
    libvirt = libvirt_module()
    try:
        conn.getDomainCapabilities(None, "x86_64", None, "kvm", 0)
        return True
    except libvirt.libvirtError:
        return False
