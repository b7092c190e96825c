"""KubeVirt's evacuation controller: a node tainted `kubevirt.io/drain:NoSchedule` is emptied by migrations.

pkg/virt-controller/watch/drain/evacuation/evacuation.go (v1.3.1 = v1.4.0), `sync`: on a node with the drain
taint (`MigrationConfiguration.NodeDrainTaintKey`, default `kubevirt.io/drain`) every VMI there is a candidate;
`filterRunningNonMigratingVMIs` drops the final or deleted ones, those that do not want to migrate on eviction
(`VMIMigratableOnEviction`: evictionStrategy None/External, or LiveMigrateIfPossible while not migratable), those
already migrating and those with more than one active pod; a LiveMigrate VMI that is not LiveMigratable only
gets a Normal event `FailedCreate` "VirtualMachineInstance is not migrateable" (again each minute). Candidates get
a VirtualMachineInstanceMigration `kubevirt-evacuation-<suffix>` with the annotation
`kubevirt.io/evacuationMigration: <node>`, as many as `ParallelMigrationsPerCluster` (5) less the running
migrations (`FilterRunningMigrations`: past Pending, not final) and `ParallelOutboundMigrationsPerNode` (2) less
those running from this node allow (counted by VMI name); the migration controller then holds each Pending while
those limits are reached (`handleTargetPodCreation`). A VMI that is neither migrated nor stopped stays on the node.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .common import (DRAIN_TAINT_KEY, MIGRATION_FINAL_PHASES, NOT_MIGRATABLE_WARNING_SECONDS,
                     PARALLEL_MIGRATIONS_PER_CLUSTER, PARALLEL_OUTBOUND_MIGRATIONS_PER_NODE, CREATED_BY_LABEL, Obj,
                     condition_is)
from .controller import is_final
from .migratability import migratable_on_eviction

if TYPE_CHECKING:
    from .controller import KubeVirt

COMPONENT = "evacuation-controller"


def drain_tainted(node: Obj) -> bool:
    return any(t.get("key") == DRAIN_TAINT_KEY and t.get("effect") == "NoSchedule"
               for t in (node.get("spec") or {}).get("taints") or [])


class Evacuation:
    def __init__(self, kubevirt: "KubeVirt") -> None:
        self.kv = kubevirt
        self._warned: dict[str, float] = {}          # VMI uid -> monotonic time of its last warning

    def sync(self) -> None:
        nodes = [n for n in self.kv.node_list() if drain_tainted(n)]
        if not nodes:
            return
        vmis = self.kv.api.list(self.kv.vmis).items
        unfinished = [m for m in self.kv.api.list(self.kv.vmims).items
                      if (m.get("status") or {}).get("phase") not in MIGRATION_FINAL_PHASES]
        running = self.kv.migrations.running()
        for node in nodes:
            self._sync_node(node["metadata"]["name"], vmis, unfinished, running)

    def _sync_node(self, node: str, vmis: list[Obj], unfinished: list[Obj], running: list[Obj]) -> None:
        on_node = sorted((v for v in vmis if (v.get("status") or {}).get("nodeName") == node),
                         key=lambda v: (v["metadata"]["namespace"], v["metadata"]["name"]))
        migrating = {(m["metadata"]["namespace"], m["spec"].get("vmiName")) for m in unfinished}
        candidates, not_migratable = [], []
        for vmi in on_node:
            if is_final(vmi) or vmi["metadata"].get("deletionTimestamp"):
                continue
            live = condition_is(vmi, "LiveMigratable", "True")
            if not migratable_on_eviction(vmi, live):
                continue
            if not live:
                not_migratable.append(vmi)
                continue
            if (vmi["metadata"]["namespace"], vmi["metadata"]["name"]) in migrating:
                continue
            if self._active_pods(vmi) > 1:
                continue
            candidates.append(vmi)
        names_here = {v["metadata"]["name"] for v in on_node}       # numOfVMIMForThisSourceNode: by name
        from_here = sum(1 for m in running if m["spec"].get("vmiName") in names_here)
        free = min(PARALLEL_MIGRATIONS_PER_CLUSTER - len(running), PARALLEL_OUTBOUND_MIGRATIONS_PER_NODE - from_here)
        if free <= 0:
            return
        chosen = candidates[:free]
        for vmi in not_migratable[:max(0, free - len(chosen))]:
            self._warn(vmi)
        for vmi in chosen:
            migration = self.kv.migrations.evacuation_migration(vmi, node)
            self.kv.record_event(vmi, "Normal", "SuccessfulCreate", f"Created Migration {migration['metadata']['name']}",
                                 COMPONENT)

    def _active_pods(self, vmi: Obj) -> int:
        return sum(1 for p in self.kv.vmi_pods(vmi)
                   if (p["metadata"].get("labels") or {}).get(CREATED_BY_LABEL) in (None, vmi["metadata"]["uid"])
                   and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
                   and not p["metadata"].get("deletionTimestamp"))

    def _warn(self, vmi: Obj) -> None:
        uid = vmi["metadata"]["uid"]
        now = time.monotonic()
        if now - self._warned.get(uid, -1e18) < NOT_MIGRATABLE_WARNING_SECONDS / self.kv.clock.scale:
            return
        self._warned[uid] = now
        self.kv.record_event(vmi, "Normal", "FailedCreate", "VirtualMachineInstance is not migrateable", COMPONENT)
