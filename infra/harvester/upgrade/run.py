"""Start an upgrade (a Version and an Upgrade in harvester-system), or re-attach to one under way."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.cleanup import CleanupStack
from infra.cluster import Release
from infra.kube import ApiFailure, Kube, NotFound
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


NODES_UPGRADING = "node upgrade is in progressing"      # the upgrade webhook's refusal to delete (sic)


def _nodes_done(upgrade: dict[str, Any] | None) -> bool:
    if upgrade is None or not _under_way(upgrade):
        return True
    conditions = (upgrade.get("status") or {}).get("conditions") or []
    return all(c.get("status") != "Unknown" for c in conditions if c.get("type") == "NodesUpgraded")


def delete_run_upgrades(kube: Kube, run_id: str, budget: Budget) -> None:
    """An Upgrade stays in harvester-system after it ends (its record is in the report by then). Deleting one
    still under way is Harvester's own "start over an upgrade" (an interrupted run). While its nodes upgrade
    Harvester refuses (they cannot be stopped half-way): wait, within `budget`, for them to finish, then delete."""
    for upgrade in kube.list(HARVESTER, "Upgrade", SYSTEM_NAMESPACE, label_selector=f"{RUN_ID_LABEL}={run_id}"):
        name = upgrade["metadata"]["name"]
        try:
            deleted = kube.delete(HARVESTER, "Upgrade", name, SYSTEM_NAMESPACE)
        except ApiFailure as exc:
            if NODES_UPGRADING not in exc.message:
                raise
            kube.wait_for(HARVESTER, "Upgrade", name, _nodes_done, budget=budget, namespace=SYSTEM_NAMESPACE,
                          awaited=f"the nodes of {name} to finish upgrading (Harvester refuses to delete it before)")
            deleted = kube.delete(HARVESTER, "Upgrade", name, SYSTEM_NAMESPACE)
        if deleted:
            kube.wait_for_gone(HARVESTER, "Upgrade", name, namespace=SYSTEM_NAMESPACE, budget=budget)


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
        # Undo first (the server names the Upgrade, so the undo finds it by the run's label).
        cleanup.defer(f"delete the Upgrade of run {run_id}", lambda: delete_run_upgrades(kube, run_id, budget))
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
