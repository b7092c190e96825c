"""Harvester's setting controller, as far as a harness can see it: a log line and an Event per change.

`install` also installs the `backup-target` setting's validator and controller (`backup_target`)."""
from __future__ import annotations

from ..apiserver.store import StoredEvent
from . import backup_target
from .base import Controller

HARVESTER_NAMESPACE = "harvester-system"
HARVESTER_POD_LABELS = {"app.kubernetes.io/name": "harvester", "app.kubernetes.io/component": "apiserver"}


class SettingController(Controller):
    watches = (("harvesterhci.io", "settings"),)

    async def handle(self, event: StoredEvent) -> None:
        setting = event.object
        name = setting["metadata"]["name"]
        value = setting.get("value", setting.get("default", ""))
        verb = {"ADDED": "created", "MODIFIED": "updated", "DELETED": "deleted"}[event.type]
        self.log_to_pod(HARVESTER_NAMESPACE, HARVESTER_POD_LABELS, "apiserver",
                        f'level=info msg="setting {name} {verb}" value="{value}"')
        if event.type != "DELETED":
            self.record_event(setting, "Normal", "SettingUpdated", f"setting {name} {verb}", "harvester-setting-controller")


def install(simulator) -> None:  # noqa: ANN001 - Simulator (import cycle)
    simulator.spawn(SettingController(simulator.api).run, "setting-controller")
    backup_target.install(simulator)
