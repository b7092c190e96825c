"""VirtualMachineInstanceMigration: admission, the migration controller and the handlers' part of a live migration.

KubeVirt v1.3.1 / v1.4.0 (same behaviour at both):

* Mutating webhook (pkg/virt-api/webhooks/mutating-webhook/mutators/migration-create-mutator.go): the label
  `kubevirt.io/vmi-name: <vmiName>` and the finalizer `kubevirt.io/migrationJobFinalize`.
* Validating webhook `migration-create-validator.kubevirt.io`
  (pkg/virt-api/webhooks/validating-webhook/admitters/migration-create-admitter.go), in order: `spec.vmiName`
  required ("vmiName is missing", 422 with the cause); the VMI must exist ("the VMI \"<ns>/<name>\" does not
  exist"), not be final ("Cannot migrate VMI in finalized state."), not have LiveMigratable=False ("Cannot
  migrate VMI, Reason: <reason>, Message: <message>"), and have no unfinished migration ("in-flight migration
  detected. Active migration job (<uid>) is currently already in progress for VMI <name>."). A refusal is a 400
  (`ToAdmissionResponseError`), relayed by kube-apiserver as `admission webhook "..." denied the request: ...`.
  So a non-migratable VMI's migration is refused at creation: no VMIM object is stored.
* Controller (pkg/virt-controller/watch/migration/migration.go `updateStatus`/`processMigrationPhase`/`sync`):
  "" -> Pending (unless another unfinished migration owns the VMI: Failed; held there while 5 migrations run in
  the cluster or 2 from the VMI's node, `handleTargetPodCreation`) -> Scheduling (the target pod
  exists: the VMI's launcher manifest plus `kubevirt.io/migrationJobUID`, anti-affinity to the VMI's pods) ->
  Scheduled (target pod Ready) -> PreparingTarget (handoff: `status.migrationState` gets migrationUid,
  sourceNode, sourcePod, targetNode, targetPod; the VMI the label `kubevirt.io/migrationTargetNodeName`) ->
  TargetReady (`targetNodeAddress`) -> Running (`startTimestamp`, mode PreCopy) -> Succeeded once the source
  handler reports `completed` (the VMI's `nodeName` and `kubevirt.io/nodeName` are the target's, `endTimestamp`).
  The finished migration keeps a copy of `migrationState` and loses its finalizer; per VMI only the newest five
  finished migrations are kept (`garbageCollectFinalizedMigrations`). A target pod unschedulable for 5 minutes
  is deleted and the migration fails (`handlePendingPodTimeout`); a deleted migration before the handoff is
  cancelled (`handlePreHandoffMigrationCancel`), after it aborted (`abortRequested`, abortStatus Succeeded).
* After the switch-over the source virt-launcher exits: its pod is Completed (phase Succeeded), not deleted
  (virt-controller deletes a VMI's pods only when the VMI goes: vmi.go `deleteAllMatchingPods`).
* The switch-over pause: at the end of pre-copy the source domain is paused, the last dirty pages and device
  state copied, and the target resumed. The simulator holds it `PAUSE_BASE_SECONDS + PAUSE_SECONDS_PER_GIB *
  memory` (0.1 .. 0.5 simulated seconds) and records it on the VMI in the annotation
  `kubevirt.simulator.harvesterhci.io/last-switchover`: JSON with migrationUID, sourceNode, targetNode,
  pausedAt and resumedAt (wall clock, microseconds; `resumedAt` is absent while the guest is paused) and
  pauseSimulatedSeconds. No upstream field has sub-second precision (`targetNodeDomainReadyTimestamp` is
  seconds), hence the simulator's own annotation.

Harvester (pkg/controller/master/migration/vmim_controller.go and vmi_controller.go, the same at v1.4.2 ..
v1.5.2 and ce188325): when a migration reaches Scheduling the VMI gets `harvesterhci.io/migrationUID` and
`harvesterhci.io/migrationState: Migrating`; both go when the VMI reports the migration completed or the
migration fails. Harvester deletes no VirtualMachineInstanceMigration, during or after an upgrade (no code in
pkg/controller/master/upgrade or package/upgrade touches them): they stay, bounded by KubeVirt's five per VMI.
"""
from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from ..apiserver import errors
from ..apiserver.clock import rfc3339
from ..apiserver.objects import AdmissionRequest
from ..apiserver.store import StoredEvent
from .common import (EVACUATION_ANNOTATION, FINALIZED_MIGRATIONS_KEPT, GROUP, HARVESTER_MIGRATION_STATE,
                     HARVESTER_MIGRATION_UID, MIGRATION_BASE_SECONDS, MIGRATION_FINAL_PHASES, MIGRATION_FINALIZER,
                     MIGRATION_JOB_LABEL, MIGRATION_JOB_NAME_ANNOTATION, MIGRATION_MAX_SECONDS,
                     MIGRATION_SECONDS_PER_GIB, MIGRATION_SELECTOR_LABEL, MIGRATION_TARGET_NODE_LABEL,
                     NODE_NAME_LABEL, PARALLEL_MIGRATIONS_PER_CLUSTER, PARALLEL_OUTBOUND_MIGRATIONS_PER_NODE,
                     PAUSE_BASE_SECONDS, PAUSE_MAX_SECONDS, PAUSE_SECONDS_PER_GIB,
                     PREPARE_TARGET_SECONDS, SWITCHOVER_ANNOTATION, TARGET_POD_SECONDS, UNSCHEDULABLE_TARGET_TIMEOUT,
                     Obj, condition, memory_gib, precise_now, set_condition, stamp_phase)
from .controller import is_final
from .scheduling import pick_node

if TYPE_CHECKING:
    from .controller import KubeVirt

WEBHOOK = "migration-create-validator.kubevirt.io"
THROTTLE_SECONDS = 5.0          # handleTargetPodCreation: AddAfter(key, 5s) at a parallel-migration limit
COMPONENT = "migration-controller"


class MigrationFailed(Exception):
    """The migration ends Failed; the message is the event's."""


class Migrations:
    def __init__(self, kubevirt: "KubeVirt") -> None:
        self.kv = kubevirt
        self.api = kubevirt.api
        self._order: dict[str, int] = {}          # creation order of migrations (creationTimestamp has seconds)

    # --- admission ---------------------------------------------------------------------------------
    def mutate(self, request: AdmissionRequest) -> None:
        if request.operation != "CREATE" or request.object is None or request.subresource:
            return
        meta = request.object.setdefault("metadata", {})
        meta.setdefault("labels", {})[MIGRATION_SELECTOR_LABEL] = str((request.object.get("spec") or {})
                                                                      .get("vmiName", ""))
        finalizers = meta.setdefault("finalizers", [])
        finalizers.append(MIGRATION_FINALIZER)

    def validate(self, request: AdmissionRequest) -> None:
        if request.operation != "CREATE" or request.object is None or request.subresource:
            return
        migration = request.object
        namespace = migration["metadata"].get("namespace", "")
        vmi_name = str((migration.get("spec") or {}).get("vmiName") or "")
        if not vmi_name:
            raise errors.ApiError(422, "Invalid", f'admission webhook "{WEBHOOK}" denied the request: '
                                                  "vmiName is missing",
                                  details={"causes": [{"reason": "FieldValueRequired", "message": "vmiName is missing",
                                                       "field": "spec.vmiName"}]})
        vmi = self.kv.find(self.kv.vmis, namespace, vmi_name)
        if vmi is None:
            raise _denied(f'the VMI "{namespace}/{vmi_name}" does not exist')
        if is_final(vmi):
            raise _denied("Cannot migrate VMI in finalized state.")
        migratable = condition(vmi, "LiveMigratable")
        if migratable is not None and migratable.get("status") == "False":
            raise _denied(f"Cannot migrate VMI, Reason: {migratable.get('reason', '')}, "
                          f"Message: {migratable.get('message', '')}")
        for other in self.api.list(self.kv.vmims, namespace,
                                   label_selector=f"{MIGRATION_SELECTOR_LABEL} in ({vmi_name})").items:
            if (other.get("status") or {}).get("phase") not in MIGRATION_FINAL_PHASES:
                raise _denied(f"in-flight migration detected. Active migration job ({other['metadata']['uid']}) "
                              f"is currently already in progress for VMI {other['spec'].get('vmiName', '')}.")

    # --- events ------------------------------------------------------------------------------------
    def on_event(self, event: StoredEvent) -> None:
        meta = event.object["metadata"]
        uid = meta["uid"]
        if event.type == "ADDED":
            self._order.setdefault(uid, len(self._order))
        if event.type == "DELETED":
            self._order.pop(uid, None)
            return
        phase = (event.object.get("status") or {}).get("phase") or ""
        if phase in MIGRATION_FINAL_PHASES:
            if meta.get("deletionTimestamp") and MIGRATION_FINALIZER in (meta.get("finalizers") or []):
                self._release(meta["namespace"], meta["name"])
            return
        self.kv.spawn_once(f"migrate/{uid}", lambda: self._run(meta["namespace"], meta["name"], uid))

    def resync(self) -> None:
        """After a restart the handlers' half of an unfinished migration is gone: it fails, as a migration
        whose target pod went away does."""
        for migration in self.api.list(self.kv.vmims).items:
            meta = migration["metadata"]
            self._order.setdefault(meta["uid"], len(self._order))
            phase = (migration.get("status") or {}).get("phase") or ""
            if phase in ("", "Pending"):
                self.kv.spawn_once(f"migrate/{meta['uid']}", lambda m=meta: self._run(m["namespace"], m["name"], m["uid"]))
            elif phase not in MIGRATION_FINAL_PHASES:
                self._fail(migration, "Migration target pod was removed during active migration.")

    # --- the migration -----------------------------------------------------------------------------
    def _current(self, namespace: str, name: str, uid: str) -> Obj | None:
        migration = self.kv.find(self.kv.vmims, namespace, name)
        return migration if migration is not None and migration["metadata"]["uid"] == uid else None

    def _set_phase(self, migration: Obj, phase: str) -> Obj:
        return self.api.mutate(self.kv.vmims, migration["metadata"]["namespace"], migration["metadata"]["name"],
                               lambda o: stamp_phase(o.setdefault("status", {}), phase))

    async def _run(self, namespace: str, name: str, uid: str) -> None:
        migration = self._current(namespace, name, uid)
        if migration is None:
            return
        try:
            await self._migrate(migration)
        except MigrationFailed as failure:
            current = self._current(namespace, name, uid)
            if current is not None:
                self._fail(current, str(failure))

    def _check(self, migration: Obj, *, handed_off: bool = False) -> tuple[Obj, Obj]:
        """The migration and its VMI as they are now; MigrationFailed if either makes it end."""
        meta = migration["metadata"]
        current = self._current(meta["namespace"], meta["name"], meta["uid"])
        if current is None:
            raise MigrationFailed("")
        vmi = self.kv.find(self.kv.vmis, meta["namespace"], str(current["spec"].get("vmiName", "")))
        if vmi is None or vmi["metadata"].get("deletionTimestamp"):
            raise MigrationFailed("Migration failed because vmi does not exist.")
        if is_final(vmi):
            raise MigrationFailed("Migration failed vmi shutdown during migration.")
        if current["metadata"].get("deletionTimestamp"):
            raise MigrationFailed("Migration failed due to being canceled")
        return current, vmi

    async def _migrate(self, migration: Obj) -> None:
        kv = self.kv
        migration, vmi = self._check(migration)
        namespace = migration["metadata"]["namespace"]
        if not self._can_migrate(migration, vmi):
            raise MigrationFailed("VMI is not eligible for migration because another migration job is in progress.")
        migration = self._set_phase(migration, "Pending")
        while (vmi.get("status") or {}).get("phase") != "Running":     # no source pod to migrate from yet
            await kv.settle(30.0)
            migration, vmi = self._check(migration)
        migratable = condition(vmi, "LiveMigratable") or {}
        if migratable.get("status") == "False":      # admitted before the condition existed (ILLUSTRATIVE wording)
            raise MigrationFailed(f"Migration failed: {migratable.get('message', '')}")
        while not self._may_start(vmi):              # handleTargetPodCreation: the parallel-migration limits
            await kv.settle(THROTTLE_SECONDS)
            migration, vmi = self._check(migration)
        source_node = str(vmi["status"].get("nodeName", ""))
        source_pod = next((p for p in kv.vmi_pods(vmi) if p["metadata"]["uid"] in (vmi["status"].get("activePods")
                                                                                   or {})), None) or \
            next((p for p in kv.vmi_pods(vmi) if (p.get("spec") or {}).get("nodeName") == source_node
                  and (p.get("status") or {}).get("phase") == "Running"), None)
        if source_pod is None:
            raise MigrationFailed("Migration failed because vmi does not exist.")
        target = kv.create_launcher_pod(vmi, extra_labels={MIGRATION_JOB_LABEL: migration["metadata"]["uid"]},
                                        annotations={MIGRATION_JOB_NAME_ANNOTATION: migration["metadata"]["name"]})
        target_name = target["metadata"]["name"]
        try:
            migration = self._set_phase(migration, "Scheduling")
            self._harvester_annotations(vmi, migration["metadata"]["uid"], "Migrating")
            active = {(p.get("spec") or {}).get("nodeName") for p in kv.vmi_pods(vmi)
                      if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")}
            waited = 0.0
            while True:                              # the scheduler, with the anti-affinity to the VMI's pods
                node, why = pick_node(kv.node_list(), vmi, kv.all_launchers(), exclude={source_node, *active} - {None})
                if node:
                    break
                if waited >= UNSCHEDULABLE_TARGET_TIMEOUT:
                    raise MigrationFailed("Migration target pod was removed during active migration.")
                kv.api.mutate(kv.pods, namespace, target_name, lambda o, w=why: set_condition(
                    o.setdefault("status", {}), "PodScheduled", "False", "Unschedulable", w))
                start = time.monotonic()
                await kv.settle(UNSCHEDULABLE_TARGET_TIMEOUT - waited)
                waited += (time.monotonic() - start) * kv.clock.scale
                migration, vmi = self._check(migration)
            await kv.clock.sleep(TARGET_POD_SECONDS)
            migration, vmi = self._check(migration)
            kv.bind_pod(namespace, target_name, node)
            kv.api.mutate(kv.pods, namespace, target_name, _ready)
            migration = self._set_phase(migration, "Scheduled")
            target_pod = kv.api.get(kv.pods, namespace, target_name)

            def handoff(obj: Obj) -> None:            # handleTargetPodHandoff
                obj.setdefault("status", {})["migrationState"] = {
                    "migrationUid": migration["metadata"]["uid"], "sourceNode": source_node,
                    "sourcePod": source_pod["metadata"]["name"], "targetNode": node, "targetPod": target_name,
                    "migrationConfiguration": {"allowAutoConverge": False, "allowPostCopy": False,
                                               "bandwidthPerMigration": "0", "completionTimeoutPerGiB": 150,
                                               "nodeDrainTaintKey": "kubevirt.io/drain",
                                               "parallelMigrationsPerCluster": 5,
                                               "parallelOutboundMigrationsPerNode": 2, "progressTimeout": 150,
                                               "unsafeMigrationOverride": False}}
                obj["metadata"].setdefault("labels", {})[MIGRATION_TARGET_NODE_LABEL] = node
                activePods = obj["status"].setdefault("activePods", {})
                activePods[target_pod["metadata"]["uid"]] = node
            vmi = kv.api.mutate(kv.vmis, namespace, vmi["metadata"]["name"], handoff)
            migration = self._set_phase(migration, "PreparingTarget")
            await kv.clock.sleep(PREPARE_TARGET_SECONDS)
            migration, vmi = self._check(migration)
            address = kv.node_ip(node)
            vmi = self._state(vmi, targetNodeAddress=address, targetDirectMigrationNodePorts={"38123": 0, "43213": 49152})
            migration = self._set_phase(migration, "TargetReady")
            vmi = self._state(vmi, startTimestamp=rfc3339(), mode="PreCopy")
            migration = self._set_phase(migration, "Running")
            gib = memory_gib(vmi)
            await self._sleep_or_abort(migration, min(MIGRATION_BASE_SECONDS + MIGRATION_SECONDS_PER_GIB * gib,
                                                      MIGRATION_MAX_SECONDS), target_name)
            migration, vmi = self._check(migration)
        except MigrationFailed:
            self._drop_target(namespace, target_name)
            raise
        pause = min(PAUSE_BASE_SECONDS + PAUSE_SECONDS_PER_GIB * gib, PAUSE_MAX_SECONDS)
        record: Obj = {"migrationUID": migration["metadata"]["uid"], "sourceNode": source_node, "targetNode": node,
                       "pausedAt": precise_now(), "pauseSimulatedSeconds": round(pause, 3)}
        vmi = kv.api.mutate(kv.vmis, namespace, vmi["metadata"]["name"], lambda o: o["metadata"].setdefault(
            "annotations", {}).update({SWITCHOVER_ANNOTATION: json.dumps(record, separators=(",", ":"))}))
        uid = vmi["metadata"]["uid"]
        if kv.guests is not None:
            kv.guests.pause(uid)                     # the guest stops answering (guests.py)
        try:
            await kv.clock.sleep(pause)              # the guest is paused: neither side runs it
            vmi = kv.find(kv.vmis, namespace, vmi["metadata"]["name"]) or vmi
            record["resumedAt"] = precise_now()
            target_pod = kv.api.get(kv.pods, namespace, target_name)
            self._switch_over(vmi, target_pod, node, record)
        finally:
            if kv.guests is not None:
                kv.guests.resume(uid)                # on the target now, with its new address if it has one
        kv.finish_source_pod(namespace, source_pod["metadata"]["name"])
        migration = self._set_phase(migration, "Succeeded")
        vmi = kv.api.get(kv.vmis, namespace, vmi["metadata"]["name"])
        kv.record_event(migration, "Normal", "SuccessfulMigration", "Source node reported migration succeeded",
                        COMPONENT)
        self._finalize(migration, vmi)

    async def _sleep_or_abort(self, migration: Obj, seconds: float, target_name: str) -> None:
        """Pre-copy; a migration deleted meanwhile is aborted (the guest stays on the source)."""
        await self.kv.clock.sleep(seconds)
        meta = migration["metadata"]
        current = self._current(meta["namespace"], meta["name"], meta["uid"])
        vmi = self.kv.find(self.kv.vmis, meta["namespace"], str(migration["spec"].get("vmiName", "")))
        if current is None or current["metadata"].get("deletionTimestamp") or vmi is None or is_final(vmi) or \
                vmi["metadata"].get("deletionTimestamp"):
            self._drop_target(meta["namespace"], target_name)
            if vmi is not None and not vmi["metadata"].get("deletionTimestamp"):
                self._state(vmi, abortRequested=True, abortStatus="Succeeded", failed=True, endTimestamp=rfc3339(),
                            failureReason="Live migration aborted")
            raise MigrationFailed("Migration failed due to being canceled" if vmi is not None and not is_final(vmi)
                                  else "Migration failed vmi shutdown during migration.")

    def _state(self, vmi: Obj, **fields: Any) -> Obj:
        def change(obj: Obj) -> None:
            obj.setdefault("status", {}).setdefault("migrationState", {}).update(fields)
        return self.kv.api.mutate(self.kv.vmis, vmi["metadata"]["namespace"], vmi["metadata"]["name"], change)

    def _switch_over(self, vmi: Obj, target_pod: Obj, node: str, record: Obj) -> None:
        """The source handler reports the migration done: the VMI runs on the target node now."""
        kv = self.kv
        now = rfc3339()

        def done(obj: Obj) -> None:
            status = obj.setdefault("status", {})
            state = status.setdefault("migrationState", {})
            state.update(targetNodeDomainDetected=True, targetNodeDomainReadyTimestamp=now, completed=True,
                         endTimestamp=now)
            status["nodeName"] = node
            status["activePods"] = {target_pod["metadata"]["uid"]: node}
            status["interfaces"] = kv.interfaces(obj, target_pod)
            status["launcherContainerImageVersion"] = target_pod["spec"]["containers"][0]["image"]
            labels = obj["metadata"].setdefault("labels", {})
            labels[NODE_NAME_LABEL] = node
            labels.pop(MIGRATION_TARGET_NODE_LABEL, None)
            annotations = obj["metadata"].setdefault("annotations", {})
            annotations[SWITCHOVER_ANNOTATION] = json.dumps(record, separators=(",", ":"))
            if annotations.get(HARVESTER_MIGRATION_UID) == state.get("migrationUid"):
                annotations.pop(HARVESTER_MIGRATION_UID, None)     # Harvester's vmi_controller: reset when done
                annotations.pop(HARVESTER_MIGRATION_STATE, None)
        kv.api.mutate(kv.vmis, vmi["metadata"]["namespace"], vmi["metadata"]["name"], done)

    def _harvester_annotations(self, vmi: Obj, uid: str, state: str) -> None:
        def change(obj: Obj) -> None:
            annotations = obj["metadata"].setdefault("annotations", {})
            if uid:
                annotations.update({HARVESTER_MIGRATION_UID: uid, HARVESTER_MIGRATION_STATE: state})
            else:
                annotations.pop(HARVESTER_MIGRATION_UID, None)
                annotations.pop(HARVESTER_MIGRATION_STATE, None)
        self.kv.api.mutate(self.kv.vmis, vmi["metadata"]["namespace"], vmi["metadata"]["name"], change)

    def running(self) -> list[Obj]:
        """`FilterRunningMigrations`: past Pending and not final."""
        return [m for m in self.api.list(self.kv.vmims).items
                if (m.get("status") or {}).get("phase") not in ("", None, "Pending", *MIGRATION_FINAL_PHASES)]

    def outbound(self, node: str, running: list[Obj]) -> int:
        """`outboundMigrationsOnNode`: running migrations whose VMI is on `node`."""
        count = 0
        for migration in running:
            vmi = self.kv.find(self.kv.vmis, migration["metadata"]["namespace"], str(migration["spec"].get("vmiName")))
            if vmi is not None and (vmi.get("status") or {}).get("nodeName") == node:
                count += 1
        return count

    def _may_start(self, vmi: Obj) -> bool:
        running = self.running()
        return len(running) < PARALLEL_MIGRATIONS_PER_CLUSTER and \
            self.outbound(str((vmi.get("status") or {}).get("nodeName") or ""), running) < \
            PARALLEL_OUTBOUND_MIGRATIONS_PER_NODE

    def _can_migrate(self, migration: Obj, vmi: Obj) -> bool:
        """`canMigrateVMI`: the VMI's migration state belongs to no other unfinished migration."""
        owner = str(((vmi.get("status") or {}).get("migrationState") or {}).get("migrationUid") or "")
        if not owner or owner == migration["metadata"]["uid"]:
            return True
        other = next((m for m in self.api.list(self.kv.vmims, migration["metadata"]["namespace"]).items
                      if m["metadata"]["uid"] == owner), None)
        return other is None or (other.get("status") or {}).get("phase") in MIGRATION_FINAL_PHASES

    def _drop_target(self, namespace: str, pod: str) -> None:
        try:
            self.kv.api.delete(self.kv.pods, namespace, pod)
        except errors.ApiError:
            pass

    def _fail(self, migration: Obj, message: str) -> None:
        kv = self.kv
        meta = migration["metadata"]
        vmi = kv.find(kv.vmis, meta["namespace"], str(migration["spec"].get("vmiName", "")))
        for pod in kv.api.list(kv.pods, meta["namespace"], label_selector=f"{MIGRATION_JOB_LABEL}={meta['uid']}").items:
            if (pod.get("status") or {}).get("phase") != "Succeeded":
                self._drop_target(meta["namespace"], pod["metadata"]["name"])
        if vmi is not None and not vmi["metadata"].get("deletionTimestamp"):
            state = (vmi.get("status") or {}).get("migrationState") or {}
            if state.get("migrationUid") == meta["uid"] and not state.get("completed"):
                self._state(vmi, failed=True, completed=False, endTimestamp=state.get("endTimestamp") or rfc3339())

                def unlabel(obj: Obj) -> None:
                    obj["metadata"].get("labels", {}).pop(MIGRATION_TARGET_NODE_LABEL, None)
                    status = obj.setdefault("status", {})
                    status["activePods"] = {k: v for k, v in (status.get("activePods") or {}).items()
                                            if v == status.get("nodeName")}
                kv.api.mutate(kv.vmis, meta["namespace"], vmi["metadata"]["name"], unlabel)
            annotations = (kv.find(kv.vmis, meta["namespace"], vmi["metadata"]["name"]) or vmi)["metadata"].get(
                "annotations") or {}
            if annotations.get(HARVESTER_MIGRATION_UID) == meta["uid"]:
                self._harvester_annotations(vmi, "", "")
        deleting = bool(meta.get("deletionTimestamp"))

        def failed(obj: Obj) -> None:
            status = obj.setdefault("status", {})
            if deleting and not any(c.get("type") == "migrationAbortRequested" for c in status.get("conditions") or []):
                status.setdefault("conditions", []).append({"type": "migrationAbortRequested", "status": "True",
                                                            "lastProbeTime": rfc3339(), "lastTransitionTime": None})
            stamp_phase(status, "Failed")
        current = self._current(meta["namespace"], meta["name"], meta["uid"])
        if current is None:
            return
        current = self.api.mutate(kv.vmims, meta["namespace"], meta["name"], failed)
        if message:
            kv.record_event(current, "Warning", "FailedMigration", message, COMPONENT)
        self._finalize(current, kv.find(kv.vmis, meta["namespace"], str(current["spec"].get("vmiName", ""))))

    def _finalize(self, migration: Obj, vmi: Obj | None) -> None:
        """A final migration: a copy of the VMI's migration state, no finalizer; old ones collected."""
        meta = migration["metadata"]
        state = ((vmi or {}).get("status") or {}).get("migrationState")

        def keep(obj: Obj) -> None:
            if state is not None and state.get("migrationUid") == meta["uid"]:
                obj.setdefault("status", {})["migrationState"] = json.loads(json.dumps(state))
        self.api.mutate(self.kv.vmims, meta["namespace"], meta["name"], keep)
        self._release(meta["namespace"], meta["name"])
        if vmi is not None:
            self._collect(vmi)

    def _release(self, namespace: str, name: str) -> None:
        def unfinalize(obj: Obj) -> None:
            obj["metadata"]["finalizers"] = [f for f in obj["metadata"].get("finalizers") or []
                                             if f != MIGRATION_FINALIZER]
        if self.kv.find(self.kv.vmims, namespace, name) is not None:
            self.api.mutate(self.kv.vmims, namespace, name, unfinalize)

    def _collect(self, vmi: Obj) -> None:
        """`garbageCollectFinalizedMigrations`: beyond five finished migrations of a VMI, the oldest go."""
        namespace, name = vmi["metadata"]["namespace"], vmi["metadata"]["name"]
        finished = [m for m in self.api.list(self.kv.vmims, namespace,
                                             label_selector=f"{MIGRATION_SELECTOR_LABEL}={name}").items
                    if (m.get("status") or {}).get("phase") in MIGRATION_FINAL_PHASES
                    and not m["metadata"].get("deletionTimestamp")]
        finished.sort(key=lambda m: (m["metadata"].get("creationTimestamp", ""),
                                     self._order.get(m["metadata"]["uid"], 0)))
        for old in finished[:max(0, len(finished) - FINALIZED_MIGRATIONS_KEPT)]:
            try:
                self.api.delete(self.kv.vmims, namespace, old["metadata"]["name"])
            except errors.ApiError:
                pass

    def evacuation_migration(self, vmi: Obj, node: str) -> Obj:
        """evacuation.go `GenerateNewMigration`: `kubevirt-evacuation-<suffix>` naming the source node."""
        return self.api.create(self.kv.vmims, {
            "apiVersion": f"{GROUP}/v1", "kind": "VirtualMachineInstanceMigration",
            "metadata": {"generateName": "kubevirt-evacuation-", "namespace": vmi["metadata"]["namespace"],
                         "annotations": {EVACUATION_ANNOTATION: node}},
            "spec": {"vmiName": vmi["metadata"]["name"]}})


def _denied(message: str) -> errors.ApiError:
    """`ToAdmissionResponseError` (400, no reason) as kube-apiserver relays it."""
    return errors.admission_denied(WEBHOOK, message, 400, "")


def _ready(obj: Obj) -> None:
    status = obj.setdefault("status", {})
    for container in status.get("containerStatuses") or []:
        container["ready"] = True
    for cond in status.get("conditions") or []:
        if cond.get("type") in ("Ready", "ContainersReady"):
            cond["status"] = "True"

