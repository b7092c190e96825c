"""Power, snapshots and the console of one libvirt domain, by name.

`reboot` and `shutdown` ask the guest (ACPI); `destroy` pulls the plug; `start` boots it. `shutdown` waits,
within its budget, until the guest has really stopped, and says so with the console's last lines if not.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.waits.budget import Budget
from infra.waits.poll import poll_until

from .connection import libvirt_module
from .xmlgen import snapshot_xml

STATE_NAMES = {0: "no state", 1: "running", 2: "blocked", 3: "paused", 4: "shutting down", 5: "shut off",
               6: "crashed", 7: "suspended (pm)"}


class PowerAction(str, enum.Enum):
    REBOOT = "reboot"
    SHUTDOWN = "shutdown"
    START = "start"
    DESTROY = "destroy"

    @classmethod
    def parse(cls, value: str | PowerAction) -> PowerAction:
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown power action {value!r}; valid: {', '.join(a.value for a in cls)}") from None


@dataclass
class DomainControl:
    conn: Any
    name: str
    console_log: Path | None = None

    @property
    def domain(self) -> Any:
        return self.conn.lookupByName(self.name)

    def state(self) -> str:
        return STATE_NAMES.get(self.domain.state()[0], "unknown")

    def is_running(self) -> bool:
        return bool(self.domain.isActive())

    def console_tail(self, lines: int = 40) -> str:
        """The last lines the guest wrote to its serial console (empty where the driver writes none)."""
        if self.console_log is None:
            return ""
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def evidence(self) -> dict[str, Any]:
        try:
            state = self.state()
        except Exception as exc:
            state = f"unknown ({exc})"
        return {"domain": self.name, "state": state, "console (last lines)": self.console_tail()}

    def power(self, action: PowerAction | str, budget: Budget | None = None) -> None:
        action = PowerAction.parse(action)
        domain = self.domain
        if action is PowerAction.START:
            if not domain.isActive():
                domain.create()
        elif action is PowerAction.DESTROY:
            if domain.isActive():
                domain.destroy()
        elif action is PowerAction.REBOOT:
            domain.reboot(0)
        elif action is PowerAction.SHUTDOWN:
            if domain.isActive():
                domain.shutdown()
            self.wait_for_state("shut off", budget or Budget(f"{self.name} shuts down", 120))

    def wait_for_state(self, wanted: str, budget: Budget) -> None:
        poll_until(lambda: self.state() == wanted or None, budget, f"domain {self.name} to be {wanted}",
                   evidence=self.evidence, interval_s=1.0)

    def snapshot(self, name: str, run_id: str) -> Any:
        """A full snapshot (disk and, while running, memory) the domain can be reverted to."""
        return self.domain.snapshotCreateXML(snapshot_xml(name, run_id), 0)

    def revert(self, name: str) -> None:
        domain = self.domain
        domain.revertToSnapshot(domain.snapshotLookupByName(name, 0), 0)

    def snapshots(self) -> list[str]:
        return [s.getName() for s in self.domain.listAllSnapshots()]

    def delete_snapshot(self, name: str) -> None:
        libvirt = libvirt_module()
        try:
            self.domain.snapshotLookupByName(name, 0).delete(0)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN_SNAPSHOT:
                raise
