"""Start an upgrade (a Version and an Upgrade in harvester-system), or re-attach to one under way."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.cleanup import CleanupStack
from infra.cluster import Release
from infra.kube import Kube, NotFound
from infra.waits.budget import Budget

from ..names import HARVESTER, RUN_ID_LABEL, SYSTEM_NAMESPACE
from ..precheck import upgrade_manifest
from ..releases import ensure_version

STATE_LABEL = "harvesterhci.io/upgradeState"
TERMINAL_STATES = ("Succeeded", "Failed")


def _under_way(upgrade: dict[str, Any]) -> bool:
    return (upgrade["metadata"].get("labels") or {}).get(STATE_LABEL) not in TERMINAL_STATES


def upgrades_under_way(kube: Kube) -> list[str]:
    """Upgrades that have not ended, each as `name (run <run id>)`: Harvester admits no other one meanwhile."""
    found = kube.list(HARVESTER, "Upgrade", SYSTEM_NAMESPACE)
    return [f"{u['metadata']['name']} (run {(u['metadata'].get('labels') or {}).get(RUN_ID_LABEL, 'unknown')})"
            for u in found if _under_way(u)]


@dataclass
class UpgradeRun:
    kube: Kube
    name: str
    target_version: str
    namespace: str = SYSTEM_NAMESPACE

    def get(self) -> dict[str, Any]:
        return self.kube.get(HARVESTER, "Upgrade", self.name, self.namespace)

    @classmethod
    def start(cls, kube: Kube, release: Release, *, run_id: str, cleanup: CleanupStack, budget: Budget) -> "UpgradeRun":
        """Offer the release (its Version, made or reused) and create an Upgrade to it, as the UI does."""
        ensure_version(kube, release, run_id, cleanup, budget)
        body = upgrade_manifest(release.version, run_id, annotations=release.annotations)
        body["spec"]["logEnabled"] = True
        upgrade = kube.create(body)
        return cls(kube, upgrade["metadata"]["name"], release.version)

    @classmethod
    def attach(cls, kube: Kube, *, name: str | None = None, run_id: str | None = None) -> "UpgradeRun":
        """Re-attach to an Upgrade already under way (by name, or the newest one carrying the run id)."""
        if name:
            upgrade = kube.get(HARVESTER, "Upgrade", name, SYSTEM_NAMESPACE)
        else:
            selector = f"{RUN_ID_LABEL}={run_id}" if run_id else None
            candidates = kube.list(HARVESTER, "Upgrade", SYSTEM_NAMESPACE, label_selector=selector)
            running = [u for u in candidates if _under_way(u)]
            if not running:
                raise NotFound(404, "NotFound", f"no Upgrade under way with {selector or 'any label'} "
                                                f"in {SYSTEM_NAMESPACE}")
            upgrade = max(running, key=lambda u: u["metadata"]["creationTimestamp"])
        return cls(kube, upgrade["metadata"]["name"], upgrade["spec"].get("version", ""))
