"""What runs on one simulated node: its OS image, RKE2 version, boot id, power state and journal.

This is the one place per-node versions live. The upgrade controller changes them (`stage_os`,
`set_rke2_version`); `/etc/os-release`, the journal and the Node's `status.nodeInfo` follow from it.
"""
from __future__ import annotations

import datetime as dt
import enum
import uuid
from dataclasses import dataclass, field

from ..harvester.versions import HarvesterVersion
from .journal import Journal

# The SLE Micro base under Harvester OS (ILLUSTRATIVE). Harvester's OS image build replaces PRETTY_NAME
# with "Harvester <version>" and appends GRUB_ENTRY_NAME (harvester-installer package/harvester-os/Dockerfile).
_BASE_OS_RELEASE = (
    'NAME="SLE Micro"\n'
    'VERSION="5.5"\n'
    'VERSION_ID="5.5"\n'
    'PRETTY_NAME="{pretty}"\n'
    'ID="sle-micro"\n'
    'ID_LIKE="suse"\n'
    'ANSI_COLOR="0;32"\n'
    'CPE_NAME="cpe:/o:suse:sle-micro:5.5"\n'
    'GRUB_ENTRY_NAME="{pretty}"\n'
)


class Power(str, enum.Enum):
    RUNNING = "running"            # booted; sshd accepts (rke2-server may still be activating)
    SHUTTING_DOWN = "shutting-down"
    OFF = "off"                    # sshd refuses; the Node goes NotReady after the grace period
    BOOTING = "booting"            # firmware and OS coming up; sshd still refuses


@dataclass
class NodeSystem:
    name: str
    os: HarvesterVersion                    # the Harvester OS image booted now
    rke2_version: str
    kernel_version: str
    journal: Journal
    boot_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    booted_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc))
    power: Power = Power.RUNNING
    rke2_active: bool = True                # `systemctl is-active rke2-server`: active, else activating/inactive
    staged_os: HarvesterVersion | None = None   # written by an upgrade; booted at the next start

    @classmethod
    def installed(cls, name: str, version: HarvesterVersion, boot_id: str, uptime: dt.timedelta) -> "NodeSystem":
        """A node that has been up for `uptime`, with the journal of that boot."""
        booted = dt.datetime.now(dt.timezone.utc) - uptime
        node = cls(name, version, version.rke2_version, version.kernel_version, Journal(name), boot_id=boot_id,
                   booted_at=booted)
        node.journal.services_starting(boot_id, node.rke2_version, at=booted + dt.timedelta(seconds=20))
        node.journal.services_ready(boot_id, at=booted + dt.timedelta(seconds=75))
        return node

    @property
    def os_release(self) -> str:
        return _BASE_OS_RELEASE.format(pretty=self.os.os_pretty_name)

    @property
    def reachable(self) -> bool:
        return self.power == Power.RUNNING

    def stage_os(self, version: HarvesterVersion) -> None:
        """An upgrade wrote a new OS image: it is what the node runs after its next boot."""
        self.staged_os = version

    def set_rke2_version(self, version: str) -> None:
        """RKE2 replaced in place (a system-upgrade plan): the journal shows the restart."""
        self.rke2_version = version
        self.journal.services_stopping(self.boot_id)
        self.journal.services_starting(self.boot_id, version)
        self.journal.services_ready(self.boot_id)

    def new_boot(self) -> None:
        """A boot begins: a fresh boot id, and the staged OS image (if any) becomes the running one."""
        self.boot_id = str(uuid.uuid4())
        self.booted_at = dt.datetime.now(dt.timezone.utc)
        if self.staged_os is not None:
            self.os, self.kernel_version, self.staged_os = self.staged_os, self.staged_os.kernel_version, None
