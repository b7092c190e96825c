"""KVM where it works, software emulation (TCG, domain type `qemu`) where it does not.

`/dev/kvm` can exist and still not run a guest's kernel (nested virtualisation that fails on stock
kernels): the guest then fails to start, or starts and shows no sign of life at all. So `auto` starts the
first node under KVM and watches its serial console; if qemu refuses to start, or nothing appears on the
console within `kvm_probe_s`, it redefines the domain as `qemu` and starts it again. The decision is kept
for the rest of the run.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from infra.waits.budget import Budget, WaitTimeout

from .connection import is_test_driver, libvirt_module
from .objects import Provisioner
from .power import DomainControl
from .spec import DomainSpec
from .waits import poll_until

log = logging.getLogger("harvester_e2e.provision")


@dataclass
class Acceleration:
    requested: str               # auto | kvm | qemu
    probe_s: float = 30.0
    decided: str | None = None
    fell_back: bool = False

    def initial_type(self, conn: Any) -> str:
        if self.decided:
            return self.decided
        if self.requested != "auto":
            self.decided = self.requested
        elif is_test_driver(conn):
            self.decided = "kvm"          # nothing runs in the test driver: keep the lab's default
        elif not _kvm_offered(conn):
            self.decided = "qemu"
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


def _kvm_offered(conn: Any) -> bool:
    libvirt = libvirt_module()
    try:
        conn.getDomainCapabilities(None, "x86_64", None, "kvm", 0)
        return True
    except libvirt.libvirtError:
        return False
