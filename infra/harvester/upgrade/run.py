"""Start an upgrade (a Version and an Upgrade in harvester-system), or re-attach to one under way."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.cleanup import CleanupStack
from infra.kube import Kube, NotFound

from ..names import HARVESTER, RUN_ID_LABEL, SYSTEM_NAMESPACE

STATE_LABEL = "harvesterhci.io/upgradeState"
TERMINAL_STATES = ("Succeeded", "Failed")


@dataclass
class UpgradeRun:
    kube: Kube
    name: str
    target_version: str
    namespace: str = SYSTEM_NAMESPACE

    def get(self) -> dict[str, Any]:
        return self.kube.get(HARVESTER, "Upgrade", self.name, self.namespace)

    @classmethod
    def start(cls, kube: Kube, target_version: str, *, run_id: str, cleanup: CleanupStack | None = None,
              iso_url: str | None = None, annotations: dict[str, str] | None = None,
              version_spec: dict[str, Any] | None = None) -> "UpgradeRun":
        """Create the Version (unless it exists: then it is used and left alone) and an Upgrade to it."""
        if kube.find(HARVESTER, "Version", target_version, SYSTEM_NAMESPACE) is None:
            if cleanup is not None:
                cleanup.defer(f"delete Version {target_version}",
                              lambda: kube.delete(HARVESTER, "Version", target_version, SYSTEM_NAMESPACE))
            kube.create({"apiVersion": HARVESTER, "kind": "Version",
                         "metadata": {"name": target_version, "namespace": SYSTEM_NAMESPACE,
                                      "labels": {RUN_ID_LABEL: run_id}},
                         "spec": version_spec or {"isoURL": iso_url or
                                                  f"https://releases.rancher.com/harvester/{target_version}/"
                                                  f"harvester-{target_version}-amd64.iso"}})
        upgrade = kube.create({"apiVersion": HARVESTER, "kind": "Upgrade",
                               "metadata": {"generateName": "hvst-upgrade-", "namespace": SYSTEM_NAMESPACE,
                                            "labels": {RUN_ID_LABEL: run_id},
                                            "annotations": dict(annotations or {})},
                               "spec": {"version": target_version, "logEnabled": True}})
        return cls(kube, upgrade["metadata"]["name"], target_version)

    @classmethod
    def attach(cls, kube: Kube, *, name: str | None = None, run_id: str | None = None) -> "UpgradeRun":
        """Re-attach to an Upgrade already under way (by name, or the newest one carrying the run id)."""
        if name:
            upgrade = kube.get(HARVESTER, "Upgrade", name, SYSTEM_NAMESPACE)
        else:
            selector = f"{RUN_ID_LABEL}={run_id}" if run_id else None
            candidates = kube.list(HARVESTER, "Upgrade", SYSTEM_NAMESPACE, label_selector=selector)
            running = [u for u in candidates
                       if (u["metadata"].get("labels") or {}).get(STATE_LABEL) not in TERMINAL_STATES]
            if not running:
                raise NotFound(404, "NotFound", f"no Upgrade under way with {selector or 'any label'} "
                                                f"in {SYSTEM_NAMESPACE}")
            upgrade = max(running, key=lambda u: u["metadata"]["creationTimestamp"])
        return cls(kube, upgrade["metadata"]["name"], upgrade["spec"].get("version", ""))
