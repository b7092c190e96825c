"""Harvester's VM backups, snapshots and restores, and the CSI snapshots under them.

Read from harvester/harvester at v1.4.2 and v1.5.1 (the parts modelled here read the same at both tags unless
noted); docs/fidelity.md lists the files.

* VirtualMachineBackup (`pkg/apis/harvesterhci.io/v1beta1/backup.go`; no status subresource, so the status is
  written with the object). `spec.type` is `backup` (to the backup target) or `snapshot` (in the cluster).
  - Mutator (`pkg/webhook/resources/virtualmachinebackup/mutator.go`): a name already taken is refused with
    400 before the apiserver's own AlreadyExists.
  - Validator (`validator.go`), in order: an empty source name; the VM must exist (the cache's NotFound text);
    no migration of it in flight; a `snapshot` is then allowed; a `backup` needs the `backup-target` setting
    ("backup target is not set", field spec.type). Deleting a backup a restore is still using is a 500.
  - Controller (`pkg/controller/master/backup/backup.go`, `backup_status.go`): the status is initialised from
    the VM (sourceUID, source = the VM's metadata and spec, one volumeBackup `<backup>-volume-<pvc>` per PVC,
    the CSI driver's VolumeSnapshotClass from `csi-driver-config`: `longhorn` for a backup,
    `longhorn-snapshot` for a snapshot, the backup target for a backup); then one VolumeSnapshot per volume,
    named after its volumeBackup, owned by the backup, annotated with the PVC's StorageClass, image and
    provisioner; conditions InProgress/Ready "Operation in progress"/"Not ready" until every VolumeSnapshot is
    readyToUse, then "Operation complete" and `readyToUse: true`. A ready backup of type `backup` writes its
    metadata to `harvester/vmbackups/<namespace>/<name>.cfg` on the target (MetadataReady).
* The CSI snapshotter and Longhorn's part: a VolumeSnapshot of a bound PVC gets a VolumeSnapshotContent
  `snapcontent-<snapshot uid>`; the volume's bytes are copied at that moment (what the snapshot holds), and the
  content becomes readyToUse after a Longhorn snapshot (`SNAPSHOT_SECONDS`) or an upload to the backup target
  (`BACKUP_SECONDS` plus `BACKUP_SECONDS_PER_GIB` of data). A content whose snapshot is gone is deleted
  (deletionPolicy Delete), and its bytes with it.
* VirtualMachineRestore (`pkg/webhook/resources/virtualmachinerestore/validator.go`, `.../backup/restore.go`):
  - Validator, in order: the target name; the backup exists and is ready; for a snapshot, the same namespace
    and, to replace a VM, deletionPolicy retain; a new VM's name must be free; a VM to replace must exist and
    be stopped (`Please stop the VM %q before doing a restore`). The spec is immutable; a restore whose VM
    exists cannot be deleted.
  - Controller: one PVC per volume, `restore-<backup>-<restore uid>-<volume>`, labels and annotations of the
    backed-up PVC (minus `pv.kubernetes.io/*`) plus `restore.harvesterhci.io/name`, owned by the restore, with
    the VolumeSnapshot as dataSource: Longhorn's provisioner fills it with the snapshot's bytes once the
    snapshot is ready (`hostside.py`). A new VM gets the backed-up spec (template labels replaced, MAC
    addresses cleared unless keepMacAddress, volumes pointing at the new PVCs) and only the restore's
    annotations; a replaced VM gets the spec with runStrategy Halted and is started. The restore is owned by
    the VM. It completes once the VM is Ready (old PVCs deleted unless retain or newVM):
    "Successfully completed VirtualMachineRestore <name>".

Not modelled: secrets referenced by the VM (cloud-init secretRef, access credentials) are not backed up and
restored under new names; resource quotas, backup schedules, guest file-system freeze, progress percentages,
restores into another namespace, the backup target's re-sync after it changes, and the backup target's
reachability. Snapshots live in the simulator's memory, like the volumes' bytes.
"""
from __future__ import annotations

import asyncio
import copy
import json
import logging
import re
import time
from typing import TYPE_CHECKING, Any

from ..apiserver import errors
from ..apiserver.clock import rfc3339
from ..apiserver.objects import AdmissionRequest
from ..apiserver.store import StoredEvent
from ..controllers.backup_target import BackupTarget, decode_backup_target
from ..controllers.upgrade_webhook import AdmitError, bad_request, internal, invalid
from ..guest.hostside import LONGHORN_DRIVER, bytes_of
from ..guest.objects import kind, mutate_if_changed, status_of
from .common import GROUP as KUBEVIRT_GROUP
from .common import Obj, condition_is, controller_ref, set_condition

if TYPE_CHECKING:
    from ..guest.hostside import HostSide
    from .controller import KubeVirt

log = logging.getLogger(__name__)

HARVESTER = "harvesterhci.io"
SNAPSHOT_GROUP = "snapshot.storage.k8s.io"
VALIDATOR, MUTATOR = "validator.harvesterhci.io", "mutator.harvesterhci.io"
BACKUPS_KEY, RESTORES_KEY = (HARVESTER, "virtualmachinebackups"), (HARVESTER, "virtualmachinerestores")
SNAPSHOTS_KEY, CONTENTS_KEY = (SNAPSHOT_GROUP, "volumesnapshots"), (SNAPSHOT_GROUP, "volumesnapshotcontents")
_WATCHED = {BACKUPS_KEY, RESTORES_KEY, SNAPSHOTS_KEY, CONTENTS_KEY, (KUBEVIRT_GROUP, "virtualmachines"),
            (KUBEVIRT_GROUP, "virtualmachineinstances"), ("", "persistentvolumeclaims"),
            (KUBEVIRT_GROUP, "virtualmachineinstancemigrations")}

# pkg/settings/settings.go: csi-driver-config's default; its entries win over the setting's (getCSIDriverMap)
DEFAULT_CSI_DRIVER_CONFIG = {LONGHORN_DRIVER: {"volumeSnapshotClassName": "longhorn-snapshot",
                                               "backupVolumeSnapshotClassName": "longhorn"}}
# the classes Harvester's charts install (csi-snapshotter's snapshotclass.yaml, longhorn-volumesnapshotclass.yaml)
SNAPSHOT_CLASSES = {"longhorn": {}, "longhorn-snapshot": {"type": "snap"}}

RESTORE_NAME_ANNOTATION = "restore.harvesterhci.io/name"
LAST_RESTORE_ANNOTATION = "restore.harvesterhci.io/last-restore-uid"
RESERVED_MEMORY_ANNOTATION = "harvesterhci.io/reservedMemory"
STORAGE_CLASS_ANNOTATION = "harvesterhci.io/storageClassName"
IMAGE_ANNOTATION = "harvesterhci.io/imageId"
PROVISIONER_ANNOTATION = "harvesterhci.io/storageProvisioner"
CREATOR_LABEL, VM_NAME_LABEL = "harvesterhci.io/creator", "harvesterhci.io/vmName"

SNAPSHOT_SECONDS = 2.0            # a Longhorn snapshot of a volume
BACKUP_SECONDS = 10.0             # a Longhorn backup: snapshot, then blocks uploaded to the target
BACKUP_SECONDS_PER_GIB = 60.0
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def current_target(api: Any) -> BackupTarget | None:
    """The `backup-target` setting decoded (`DecodeBackupTarget`); None for the default (empty) one, or one that
    does not decode."""
    setting = api.find(kind(api, "harvesterhci.io/v1beta1", "settings"), None, "backup-target") or {}
    raw = str(setting.get("value") if setting.get("value") is not None else setting.get("default") or "")
    target, error = decode_backup_target(raw)
    return None if target is None or error is not None or target.is_default() else target


class VmBackups:
    """The backup, restore and snapshot controllers and webhooks of one simulated Harvester."""

    def __init__(self, kubevirt: "KubeVirt", hostside: "HostSide") -> None:
        self.kv = kubevirt
        self.api = kubevirt.api
        self.hostside = hostside
        self.contents = hostside.contents
        self.backups = kind(self.api, "harvesterhci.io/v1beta1", "virtualmachinebackups")
        self.restores = kind(self.api, "harvesterhci.io/v1beta1", "virtualmachinerestores")
        self.snapshots = kind(self.api, "snapshot.storage.k8s.io/v1", "volumesnapshots")
        self.snapshot_contents = kind(self.api, "snapshot.storage.k8s.io/v1", "volumesnapshotcontents")
        self.snapshot_classes = kind(self.api, "snapshot.storage.k8s.io/v1", "volumesnapshotclasses")
        self.pvcs = kind(self.api, "v1", "persistentvolumeclaims")
        self.pvs = kind(self.api, "v1", "persistentvolumes")
        self.store: dict[str, dict[str, str]] = {}      # backup target endpoint -> path -> file (the .cfg files)
        self._ready_at: dict[str, float] = {}           # VolumeSnapshotContent -> monotonic time it is ready
        self._dirty = asyncio.Event()

    # --- wiring -----------------------------------------------------------------------------------
    def install(self) -> None:
        for name, parameters in SNAPSHOT_CLASSES.items():
            if self.api.find(self.snapshot_classes, None, name) is None:
                self.api.create(self.snapshot_classes, {"metadata": {"name": name}, "driver": LONGHORN_DRIVER,
                                                        "deletionPolicy": "Delete",
                                                        **({"parameters": parameters} if parameters else {})})
        self.api.add_admission(HARVESTER, "virtualmachinebackups", self.mutate_backup, mutating=True)
        self.api.add_admission(HARVESTER, "virtualmachinebackups", self.validate_backup)
        self.api.add_admission(HARVESTER, "virtualmachinerestores", self.validate_restore)
        self.hostside.provisioned.append(self.fill_from_snapshot)
        self.hostside.source_ready = self.snapshot_ready
        self.api.store.listeners.append(self._offer)
        self.kv.simulator.spawn(self._run, "vm-backups")

    def _offer(self, event: StoredEvent) -> None:
        if event.type_key in _WATCHED:
            self._dirty.set()

    async def _run(self) -> None:
        self._dirty.set()
        while True:
            due = [at - time.monotonic() for at in self._ready_at.values()]
            try:
                await asyncio.wait_for(self._dirty.wait(), max(min(due), 0.0) + 0.01 if due else None)
            except asyncio.TimeoutError:
                pass
            self._dirty.clear()
            try:
                self.reconcile()
            except Exception:  # noqa: BLE001 - the controllers must keep running
                log.exception("VM backup controllers failed")

    def reconcile(self) -> None:
        self._snapshot_contents()
        for backup in self.api.list(self.backups).items:
            self._sync_backup(backup)
        for restore in self.api.list(self.restores).items:
            self._sync_restore(restore)

    # --- admission: VirtualMachineBackup -----------------------------------------------------------
    def mutate_backup(self, request: AdmissionRequest) -> None:
        if request.operation != "CREATE" or request.object is None or request.subresource:
            return
        meta = request.object.get("metadata") or {}
        existing = self.api.find(self.backups, meta.get("namespace"), meta.get("name", ""))
        if existing is None:
            return
        kind_of = str((existing.get("spec") or {}).get("type") or "backup")
        message = f"The {kind_of} {meta.get('name')} is already existent. Please use another name for it."
        if kind_of != str((request.object.get("spec") or {}).get("type") or "backup"):
            message = "VM Backup and Snapshot use same CRD - VirtualMachineBackup. " + message
        raise bad_request(message).relayed(MUTATOR)

    def validate_backup(self, request: AdmissionRequest) -> None:
        if request.subresource:
            return
        try:
            if request.operation == "CREATE" and request.object is not None:
                self._admit_backup(request.object)
            elif request.operation == "DELETE" and request.old_object is not None:
                self._admit_backup_delete(request.old_object)
        except AdmitError as exc:
            raise exc.relayed(VALIDATOR) from None

    def _admit_backup(self, backup: Obj) -> None:
        namespace, spec = backup["metadata"].get("namespace", ""), backup.get("spec") or {}
        name = str((spec.get("source") or {}).get("name") or "")
        if not name:
            raise invalid("source VM name is empty", "spec.source.name")
        if backup.get("status") is None:
            if self.api.find(self.kv.vms, namespace, name) is None:
                raise invalid(f'virtualmachines.kubevirt.io "{name}" not found', "spec.source.name")
            for migration in self.api.list(self.kv.vmims, namespace).items:
                if (migration.get("spec") or {}).get("vmiName") == name and \
                        (migration.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                    raise invalid(f"vm {namespace}/{name} is in migration")
        if spec.get("type") == "snapshot":
            return
        if current_target(self.api) is None:
            raise invalid("backup target is not set", "spec.type")

    def _admit_backup_delete(self, backup: Obj) -> None:
        meta = backup["metadata"]
        for restore in self.api.list(self.restores).items:
            spec = restore.get("spec") or {}
            if (spec.get("virtualMachineBackupNamespace"), spec.get("virtualMachineBackupName")) == \
                    (meta.get("namespace"), meta["name"]) and not restore["metadata"].get("deletionTimestamp") \
                    and condition_is(restore, "InProgress", "True"):
                raise internal(f"vmrestore {restore['metadata']['namespace']}/{restore['metadata']['name']} "
                               "is in progress")

    # --- admission: VirtualMachineRestore ----------------------------------------------------------
    def validate_restore(self, request: AdmissionRequest) -> None:
        if request.subresource:
            return
        try:
            if request.operation == "CREATE" and request.object is not None:
                self._admit_restore(request.object)
            elif request.operation == "UPDATE" and request.object is not None and request.old_object is not None:
                if (request.object.get("spec") or {}) != (request.old_object.get("spec") or {}):
                    raise invalid("VirtualMachineRestore spec is immutable", "spec")
            elif request.operation == "DELETE" and request.old_object is not None:
                target = str(((request.old_object.get("spec") or {}).get("target") or {}).get("name") or "")
                vm = self.api.find(self.kv.vms, request.old_object["metadata"].get("namespace"), target)
                if vm is not None and not vm["metadata"].get("deletionTimestamp"):
                    raise invalid(f"The restore can't be removed because the restored VM {target} exists",
                                   "spec.target.name")
        except AdmitError as exc:
            raise exc.relayed(VALIDATOR) from None

    def _admit_restore(self, restore: Obj) -> None:
        namespace, spec = restore["metadata"].get("namespace", ""), restore.get("spec") or {}
        target = str((spec.get("target") or {}).get("name") or "")
        if not _DNS1123_SUBDOMAIN.match(target) or len(target) > 253:
            raise invalid(f"Target VM name is invalid, err: [a lowercase RFC 1123 subdomain must consist of lower "
                           f"case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
                           f"character (e.g. 'example.com', regex used for validation is "
                           f"'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')]",
                           "spec.target.name")
        backup_namespace = str(spec.get("virtualMachineBackupNamespace") or "")
        backup_name = str(spec.get("virtualMachineBackupName") or "")
        backup = self.api.find(self.backups, backup_namespace, backup_name)
        field = "spec.virtualMachineBackupName"
        if backup is None:
            raise invalid(f"can't get vmbackup {backup_namespace}/{backup_name}, err: virtualmachinebackups."
                           f'harvesterhci.io "{backup_name}" not found', field)
        if backup["metadata"].get("deletionTimestamp"):
            raise invalid(f"vmbackup {backup_namespace}/{backup_name} is deleted", field)
        if (backup.get("status") or {}).get("readyToUse") is not True:
            raise invalid(f"VMBackup {backup_namespace}/{backup_name} is not ready", field)
        new_vm, policy = bool(spec.get("newVM")), str(spec.get("deletionPolicy") or "")
        if (backup.get("spec") or {}).get("type") == "snapshot":
            if backup_namespace != namespace:
                raise invalid("Restore to other namespace with backup type snapshot is not supported", field)
            if not new_vm and policy != "retain":
                raise invalid("Delete policy with backup type snapshot for replacing VM is not supported", field)
        elif current_target(self.api) is None:
            raise invalid("backup target is not set", field)
        vm = self.api.find(self.kv.vms, namespace, target)
        if new_vm:
            if vm is not None:
                raise invalid(f"VM {target} is already exists", "spec.newVM")
            return
        if vm is None:
            raise invalid(f"can't replace nonexistent vm {target}", "spec.target.name")
        if (vm.get("status") or {}).get("ready"):
            raise invalid(f"Please stop the VM {json.dumps(target)} before doing a restore")
        for other in self.api.list(self.restores, namespace).items:
            if ((other.get("spec") or {}).get("target") or {}).get("name") == target and \
                    condition_is(other, "InProgress", "True"):
                raise invalid(f"Please wait for the previous VM restore on the {namespace}/{target} to be "
                               "complete first.")

    # --- the CSI snapshotter and Longhorn ---------------------------------------------------------
    def _snapshot_contents(self) -> None:
        now = time.monotonic()
        contents = {c["metadata"]["name"]: c for c in self.api.list(self.snapshot_contents).items}
        live_uids = set()
        for snapshot in self.api.list(self.snapshots).items:
            meta, status = snapshot["metadata"], snapshot.get("status") or {}
            live_uids.add(meta["uid"])
            if meta.get("deletionTimestamp"):
                continue
            name = status.get("boundVolumeSnapshotContentName") or f"snapcontent-{meta['uid']}"
            content = contents.get(name)
            if content is None and not status.get("boundVolumeSnapshotContentName"):
                content = self._take_snapshot(snapshot, name)
            if content is None or status.get("readyToUse") is True:
                continue
            if now >= self._ready_at.get(name, 0.0):
                self._ready_at.pop(name, None)
                self._mark_ready(snapshot, content)
        for name, content in contents.items():        # a snapshot gone: Delete drops the content and its data
            ref = (content.get("spec") or {}).get("volumeSnapshotRef") or {}
            if ref.get("uid") not in live_uids and (content.get("spec") or {}).get("deletionPolicy") == "Delete":
                self._ready_at.pop(name, None)
                self.contents.drop(_snapshot_key(name))
                try:
                    self.api.delete(self.snapshot_contents, None, name)
                except errors.ApiError:
                    pass

    def _take_snapshot(self, snapshot: Obj, content_name: str) -> Obj | None:
        meta, spec = snapshot["metadata"], snapshot.get("spec") or {}
        claim = str((spec.get("source") or {}).get("persistentVolumeClaimName") or "")
        pvc = self.api.find(self.pvcs, meta["namespace"], claim) if claim else None
        volume = str(((pvc or {}).get("spec") or {}).get("volumeName") or "")
        if pvc is None or (pvc.get("status") or {}).get("phase") != "Bound" or not volume:
            def waiting(obj: Obj) -> None:
                status_of(obj)["readyToUse"] = False
                obj["status"]["error"] = {"time": rfc3339(), "message": f"failed to get input parameters to create "
                                          f'snapshot {meta["name"]}: "persistentvolumeclaims \\"{claim}\\" not found"'
                                          if pvc is None else f"the source PVC {claim} is not bound yet"}
            mutate_if_changed(self.api, self.snapshots, snapshot, waiting)
            return None
        klass_name = str(spec.get("volumeSnapshotClassName") or "longhorn")
        klass = self.api.find(self.snapshot_classes, None, klass_name) or {}
        generation, data = self.contents.read_bytes(volume)
        self.contents.write_bytes(_snapshot_key(content_name), data)     # the point in time the snapshot holds
        backup = (klass.get("parameters") or {}).get("type") != "snap"
        seconds = BACKUP_SECONDS + BACKUP_SECONDS_PER_GIB * len(data) / 2**30 if backup else SNAPSHOT_SECONDS
        self._ready_at[content_name] = time.monotonic() + seconds / self.kv.clock.scale
        handle = f"bak://{volume}/backup-{meta['uid'][:16]}" if backup else f"snap://{volume}/snapshot-{meta['uid'][:8]}"
        content = self.api.create(self.snapshot_contents, {
            "metadata": {"name": content_name},
            "spec": {"deletionPolicy": str(klass.get("deletionPolicy") or "Delete"), "driver": LONGHORN_DRIVER,
                     "source": {"volumeHandle": volume}, "volumeSnapshotClassName": klass_name,
                     "volumeSnapshotRef": {"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
                                           "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                                           "resourceVersion": meta.get("resourceVersion", "")}},
            "status": {"readyToUse": False, "snapshotHandle": handle}}, keep_status=True)

        def bound(obj: Obj) -> None:
            status_of(obj).update(boundVolumeSnapshotContentName=content_name, readyToUse=False)
            obj["status"].pop("error", None)
        mutate_if_changed(self.api, self.snapshots, snapshot, bound)
        log.info("snapshot %s/%s of %s taken (%d bytes, generation %d)", meta["namespace"], meta["name"], volume,
                 len(data), generation)
        return content

    def _mark_ready(self, snapshot: Obj, content: Obj) -> None:
        size = len(self.contents.read_bytes(_snapshot_key(content["metadata"]["name"]))[1])
        claim = ((snapshot.get("spec") or {}).get("source") or {}).get("persistentVolumeClaimName", "")
        pvc = self.api.find(self.pvcs, snapshot["metadata"]["namespace"], claim) or {}
        restore_size = str(((pvc.get("status") or {}).get("capacity") or {}).get("storage") or size)
        now = rfc3339()
        mutate_if_changed(self.api, self.snapshot_contents, content, lambda o: status_of(o).update(
            readyToUse=True, restoreSize=bytes_of(restore_size), creationTime=time.time_ns()))
        mutate_if_changed(self.api, self.snapshots, snapshot, lambda o: status_of(o).update(
            readyToUse=True, restoreSize=restore_size, creationTime=now))

    def snapshot_ready(self, pvc: Obj) -> bool:
        """Longhorn's provisioner makes a volume from a snapshot only once the snapshot is ready to use."""
        source = (pvc.get("spec") or {}).get("dataSource") or {}
        if source.get("kind") != "VolumeSnapshot":
            return True
        snapshot = self.api.find(self.snapshots, pvc["metadata"]["namespace"], str(source.get("name") or ""))
        return (snapshot or {}).get("status", {}).get("readyToUse") is True

    def fill_from_snapshot(self, pvc: Obj, storage_class: Obj, volume: str) -> None:
        source = (pvc.get("spec") or {}).get("dataSource") or {}
        if source.get("kind") != "VolumeSnapshot":
            return
        snapshot = self.api.find(self.snapshots, pvc["metadata"]["namespace"], str(source.get("name") or "")) or {}
        content = str((snapshot.get("status") or {}).get("boundVolumeSnapshotContentName") or "")
        self.contents.copy_bytes(_snapshot_key(content), volume)

    # --- VirtualMachineBackup ---------------------------------------------------------------------
    def _sync_backup(self, backup: Obj) -> None:
        meta = backup["metadata"]
        if meta.get("deletionTimestamp"):
            return
        status = backup.get("status") or {}
        if status.get("readyToUse") is True:
            self._upload_metadata(backup)
            return
        if status.get("error"):
            return
        try:
            if not status.get("source") or status.get("volumeBackups") is None:
                self._write_backup(backup, self._initial_status(backup))
                return
            self._ensure_snapshots(backup)
            self._backup_progress(backup)
        except BackupProblem as problem:
            self._backup_error(backup, str(problem))

    def _initial_status(self, backup: Obj) -> Obj:
        meta, spec = backup["metadata"], backup.get("spec") or {}
        source = spec.get("source") or {}
        if source.get("kind") != "VirtualMachine":
            raise BackupProblem(f"unsupported source: {json.dumps(source)}")
        vm = self.api.find(self.kv.vms, meta["namespace"], str(source.get("name") or ""))
        if vm is None:
            raise BackupProblem(f'virtualmachines.kubevirt.io "{source.get("name")}" not found')
        if vm["metadata"].get("deletionTimestamp"):
            raise BackupProblem(f"vm {meta['namespace']}/{vm['metadata']['name']} is being deleted")
        kind_of = str(spec.get("type") or "backup")
        config = {**DEFAULT_CSI_DRIVER_CONFIG}
        class_key = "backupVolumeSnapshotClassName" if kind_of == "backup" else "volumeSnapshotClassName"
        volume_backups, classes = [], {}
        for volume in ((vm["spec"].get("template") or {}).get("spec") or {}).get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if not claim:
                continue
            pvc = self.api.find(self.pvcs, meta["namespace"], claim)
            if pvc is None:
                raise BackupProblem(f'persistentvolumeclaims "{claim}" not found')
            if (pvc.get("status") or {}).get("phase") != "Bound":
                raise BackupProblem(f"unbound PVC {meta['namespace']}/{claim}")
            pv = self.api.find(self.pvs, None, str(pvc["spec"].get("volumeName") or "")) or {}
            driver = str(((pv.get("spec") or {}).get("csi") or {}).get("driver") or "")
            if not driver:
                raise BackupProblem(f"PV {pvc['spec'].get('volumeName')} is not from CSI driver, cannot take a "
                                    f"{kind_of}")
            if driver not in config:
                raise BackupProblem(f"can't find CSI driver {driver} in setting CSIDriverInfo")
            classes[driver] = config[driver][class_key]
            capacity = ((pv.get("spec") or {}).get("capacity") or {}).get("storage") or "0"
            pvc_meta = pvc["metadata"]
            volume_backups.append({
                "name": f"{meta['name']}-volume-{claim}", "volumeName": volume["name"], "csiDriverName": driver,
                "persistentVolumeClaim": {"metadata": {"name": claim, "namespace": meta["namespace"],
                                                       **{k: pvc_meta[k] for k in ("labels", "annotations")
                                                          if pvc_meta.get(k)}},
                                          "spec": copy.deepcopy(pvc["spec"])},
                "volumeSize": bytes_of(capacity), "readyToUse": False})
        vm_meta = vm["metadata"]
        status: Obj = {
            "readyToUse": False, "sourceUID": vm_meta["uid"],
            "source": {"metadata": {"name": vm_meta["name"], "namespace": vm_meta["namespace"],
                                    **{k: vm_meta[k] for k in ("labels", "annotations") if vm_meta.get(k)}},
                       "spec": copy.deepcopy(vm["spec"])},
            "volumeBackups": volume_backups, "csiDriverVolumeSnapshotClassNames": classes}
        if kind_of == "backup":
            target = current_target(self.api)
            if target is None:
                raise BackupProblem("backup target is not set")
            status["backupTarget"] = {"endpoint": target.endpoint_url(),
                                      **({"bucketName": target.bucketName} if target.bucketName else {}),
                                      **({"bucketRegion": target.bucketRegion} if target.bucketRegion else {})}
        return status

    def _ensure_snapshots(self, backup: Obj) -> None:
        meta, status = backup["metadata"], backup["status"]
        classes = status.get("csiDriverVolumeSnapshotClassNames") or {}
        for volume_backup in status.get("volumeBackups") or []:
            name = volume_backup["name"]
            if self.api.find(self.snapshots, meta["namespace"], name) is not None:
                continue
            pvc_meta = volume_backup["persistentVolumeClaim"]["metadata"]
            pvc_spec = volume_backup["persistentVolumeClaim"]["spec"]
            annotations = {STORAGE_CLASS_ANNOTATION: str(pvc_spec.get("storageClassName") or ""),
                           PROVISIONER_ANNOTATION: volume_backup.get("csiDriverName", LONGHORN_DRIVER)}
            image = (pvc_meta.get("annotations") or {}).get(IMAGE_ANNOTATION)
            if image:
                annotations[IMAGE_ANNOTATION] = image
            self.api.create(self.snapshots, {
                "metadata": {"name": name, "namespace": meta["namespace"], "annotations": annotations,
                             "ownerReferences": [{**controller_ref(backup), "blockOwnerDeletion": None}]},
                "spec": {"source": {"persistentVolumeClaimName": pvc_meta["name"]},
                         "volumeSnapshotClassName": classes.get(volume_backup.get("csiDriverName", LONGHORN_DRIVER),
                                                                "longhorn")}})
            self.kv.record_event(backup, "Normal", "VolumeSnapshotCreated",
                                 f"Successfully created VolumeSnapshot {meta['namespace']}/{name}",
                                 "harvester-backup-controller")

    def _backup_progress(self, backup: Obj) -> None:
        meta = backup["metadata"]
        status = copy.deepcopy(backup["status"])
        errored = None
        for volume_backup in status.get("volumeBackups") or []:
            snapshot = self.api.find(self.snapshots, meta["namespace"], volume_backup["name"]) or {}
            snap_status = snapshot.get("status") or {}
            volume_backup["readyToUse"] = snap_status.get("readyToUse") is True
            if snap_status.get("creationTime"):
                volume_backup["creationTime"] = snap_status["creationTime"]
            if snap_status.get("error") and (snap_status.get("boundVolumeSnapshotContentName") or
                                             "not found" in str(snap_status["error"].get("message", ""))):
                volume_backup["error"] = snap_status["error"]
                errored = volume_backup["name"]
        if errored:
            status["error"] = {"time": rfc3339(), "message": f"VolumeSnapshot {errored} in error state"}
            set_condition(status, "InProgress", "False", "Error", status["error"]["message"])
            set_condition(status, "Ready", "False", "", "Not Ready")
        elif all(v["readyToUse"] for v in status.get("volumeBackups") or []):
            status.update(creationTime=rfc3339(), readyToUse=True)
            status.pop("error", None)
            if (backup.get("spec") or {}).get("type", "backup") == "backup":
                status["progress"] = 100
            set_condition(status, "InProgress", "False", "", "Operation complete")
            set_condition(status, "Ready", "True", "", "Operation complete")
        else:
            set_condition(status, "InProgress", "True", "", "Operation in progress")
            set_condition(status, "Ready", "False", "", "Not ready")
        self._write_backup(backup, status)

    def _upload_metadata(self, backup: Obj) -> None:
        """A ready backup (type backup) leaves its metadata on the target it was taken to."""
        meta, status = backup["metadata"], backup.get("status") or {}
        if (backup.get("spec") or {}).get("type", "backup") != "backup" or condition_is(backup, "MetadataReady", "True"):
            return
        endpoint = str((status.get("backupTarget") or {}).get("endpoint") or "")
        current = current_target(self.api)
        if current is None or current.endpoint_url() != endpoint:
            return
        volumes = [{k: v for k, v in vb.items() if k not in ("readyToUse", "creationTime", "error")}
                   for vb in status.get("volumeBackups") or []]
        self.store.setdefault(endpoint, {})[f"harvester/vmbackups/{meta['namespace']}/{meta['name']}.cfg"] = \
            json.dumps({"name": meta["name"], "namespace": meta["namespace"], "backupSpec": backup.get("spec"),
                        "vmSourceSpec": status.get("source"), "volumeBackups": volumes,
                        "secretBackups": status.get("secretBackups")})
        new = copy.deepcopy(status)
        set_condition(new, "MetadataReady", "True")
        self._write_backup(backup, new)

    def _backup_error(self, backup: Obj, message: str) -> None:
        status = copy.deepcopy(backup.get("status") or {})
        status["error"] = {"time": rfc3339(), "message": message}
        set_condition(status, "InProgress", "False", "Error", message)
        set_condition(status, "Ready", "False", "", "Not Ready")
        self._write_backup(backup, status)

    def _write_backup(self, backup: Obj, status: Obj) -> None:
        for entry in status.get("conditions") or []:
            entry.pop("lastProbeTime", None)
            entry.setdefault("lastUpdateTime", entry.get("lastTransitionTime"))
        mutate_if_changed(self.api, self.backups, backup, lambda o: o.__setitem__("status", status))

    # --- VirtualMachineRestore --------------------------------------------------------------------
    def _sync_restore(self, restore: Obj) -> None:
        meta = restore["metadata"]
        status = restore.get("status") or {}
        if meta.get("deletionTimestamp") or status.get("complete") is True:
            return
        if not status:
            status = {"complete": False}
            set_condition(status, "InProgress", "True", "", "Initializing VirtualMachineRestore")
            set_condition(status, "Ready", "False", "", "Initializing VirtualMachineRestore")
            self._write_restore(restore, status)
            return
        try:
            self._restore_step(restore)
        except BackupProblem as problem:
            status = copy.deepcopy(status)
            set_condition(status, "InProgress", "False", "Error", str(problem))
            set_condition(status, "Ready", "False", "Error", str(problem))
            if self._write_restore(restore, status):
                self.kv.record_event(restore, "Warning", "VirtualMachineRestoreError",
                                     f"VirtualMachineRestore encountered error {problem}",
                                     "harvester-restore-controller")

    def _restore_step(self, restore: Obj) -> None:
        meta, spec = restore["metadata"], restore.get("spec") or {}
        namespace = meta["namespace"]
        backup_namespace = str(spec.get("virtualMachineBackupNamespace") or namespace)
        backup = self.api.find(self.backups, backup_namespace, str(spec.get("virtualMachineBackupName") or ""))
        if backup is None or (backup.get("status") or {}).get("readyToUse") is not True:
            raise BackupProblem(f"VMBackup {backup_namespace}/{spec.get('virtualMachineBackupName')} is not ready")
        if backup_namespace != namespace:
            raise BackupProblem("restoring into another namespace is not simulated")
        source = (backup.get("status") or {}).get("source") or {}
        if not source.get("spec"):
            raise BackupProblem(f"empty vm backup source spec of {backup['metadata']['name']}")
        status = copy.deepcopy(restore["status"])
        new_vm, retain = bool(spec.get("newVM")), spec.get("deletionPolicy") == "retain"
        claims: dict[str, str] = {}              # VM volume name -> restored PVC
        if "restores" not in status:
            status["restores"] = []
            for volume_backup in backup["status"].get("volumeBackups") or []:
                name = f"restore-{backup['metadata']['name']}-{meta['uid']}-{volume_backup['volumeName']}"
                status["restores"].append({"volumeName": volume_backup["volumeName"], "volumeBackupName":
                                           volume_backup["name"], "persistentVolumeClaimSpec": {
                                               "metadata": {"name": name, "namespace": namespace},
                                               "spec": volume_backup["persistentVolumeClaim"]["spec"]}})
            if not (new_vm or retain):
                status["deletedVolumes"] = [vb["persistentVolumeClaim"]["metadata"]["name"]
                                            for vb in backup["status"].get("volumeBackups") or []]
        for entry in status["restores"]:
            claims[entry["volumeName"]] = entry["persistentVolumeClaimSpec"]["metadata"]["name"]
            self._restore_claim(restore, backup, entry)
        target = str((spec.get("target") or {}).get("name") or "")
        vm = self.api.find(self.kv.vms, namespace, target)
        restore_id = f"{meta['name']}-{meta['uid']}"
        if vm is None:
            vm = self._new_vm(restore, source, target, claims, keep_mac=bool(spec.get("keepMacAddress")))
        elif (vm["metadata"].get("annotations") or {}).get(LAST_RESTORE_ANNOTATION) != restore_id:
            vm = self._replace_vm(restore, vm, source, claims)
        if not meta.get("ownerReferences"):
            self.api.mutate(self.restores, namespace, meta["name"], lambda o: (
                o["metadata"].__setitem__("ownerReferences", [controller_ref(vm)]),
                status_of(o).__setitem__("targetUID", vm["metadata"]["uid"])))
            return
        bound = all(((self.api.find(self.pvcs, namespace, c) or {}).get("status") or {}).get("phase") == "Bound"
                    for c in claims.values())
        if not bound:
            set_condition(status, "InProgress", "True", "", "Creating new PVCs")
            set_condition(status, "Ready", "False", "", "Waiting for new PVCs")
            self._write_restore(restore, status)
            return
        if (vm.get("spec") or {}).get("runStrategy") == "Halted":
            self.api.mutate(self.kv.vms, namespace, target, lambda o: o["spec"].__setitem__("runStrategy", "Always"))
        if not (vm.get("status") or {}).get("ready"):
            set_condition(status, "InProgress", "False", "", "Waiting for target vm to be ready")
            set_condition(status, "Ready", "False", "", "Waiting for target vm to be ready")
            self._write_restore(restore, status)
            return
        for claim in status.get("deletedVolumes") or []:
            if claim not in claims.values():
                try:
                    self.api.delete(self.pvcs, namespace, claim)
                except errors.ApiError as exc:
                    if exc.code != 404:
                        raise BackupProblem(f"error cleaning up, err:{exc.message}") from exc
        self.kv.record_event(restore, "Normal", "VirtualMachineRestoreComplete",
                             f"Successfully completed VirtualMachineRestore {meta['name']}",
                             "harvester-restore-controller")
        status.update(restoreTime=rfc3339(), complete=True)
        set_condition(status, "InProgress", "False", "", "Operation complete")
        set_condition(status, "Ready", "True", "", "Operation complete")
        self._write_restore(restore, status)

    def _restore_claim(self, restore: Obj, backup: Obj, entry: Obj) -> None:
        meta = restore["metadata"]
        name = entry["persistentVolumeClaimSpec"]["metadata"]["name"]
        if self.api.find(self.pvcs, meta["namespace"], name) is not None:
            return
        volume_backup = next(vb for vb in backup["status"]["volumeBackups"] if vb["name"] == entry["volumeBackupName"])
        source = volume_backup["persistentVolumeClaim"]
        spec = {k: copy.deepcopy(source["spec"][k]) for k in ("accessModes", "resources", "storageClassName",
                                                                "volumeMode") if k in source["spec"]}
        spec["dataSource"] = {"apiGroup": SNAPSHOT_GROUP, "kind": "VolumeSnapshot", "name": volume_backup["name"]}
        annotations = {k: v for k, v in (source["metadata"].get("annotations") or {}).items()
                       if not k.startswith("pv.kubernetes.io")}
        annotations[RESTORE_NAME_ANNOTATION] = meta["name"]
        self.api.create(self.pvcs, {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": meta["namespace"], "annotations": annotations,
                         **({"labels": dict(source["metadata"]["labels"])} if source["metadata"].get("labels") else {}),
                         "ownerReferences": [controller_ref(restore)]},
            "spec": spec})

    def _restored_spec(self, source: Obj, claims: dict[str, str]) -> Obj:
        spec = copy.deepcopy(source["spec"])
        for volume in ((spec.get("template") or {}).get("spec") or {}).get("volumes") or []:
            if volume["name"] in claims and "persistentVolumeClaim" in volume:
                volume["persistentVolumeClaim"]["claimName"] = claims[volume["name"]]
        return spec

    def _new_vm(self, restore: Obj, source: Obj, target: str, claims: dict[str, str], *, keep_mac: bool) -> Obj:
        meta = restore["metadata"]
        spec = self._restored_spec(source, claims)
        template = spec.setdefault("template", {})
        template.setdefault("metadata", {})["labels"] = {CREATOR_LABEL: "harvester", VM_NAME_LABEL: target}
        if not keep_mac:
            for interface in (((template.get("spec") or {}).get("domain") or {}).get("devices") or {}).get(
                    "interfaces") or []:
                interface.pop("macAddress", None)
        if "running" not in spec:
            spec.setdefault("runStrategy", "RerunOnFailure")
        annotations = {LAST_RESTORE_ANNOTATION: f"{meta['name']}-{meta['uid']}", RESTORE_NAME_ANNOTATION: meta["name"]}
        reserved = ((source.get("metadata") or {}).get("annotations") or {}).get(RESERVED_MEMORY_ANNOTATION)
        if reserved:
            annotations[RESERVED_MEMORY_ANNOTATION] = reserved
        return self.api.create(self.kv.vms, {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
                                             "metadata": {"name": target, "namespace": meta["namespace"],
                                                          "annotations": annotations},
                                             "spec": spec})

    def _replace_vm(self, restore: Obj, vm: Obj, source: Obj, claims: dict[str, str]) -> Obj:
        meta = restore["metadata"]
        spec = self._restored_spec(source, claims)
        spec.pop("running", None)
        spec["runStrategy"] = "Halted"

        def replace(obj: Obj) -> None:
            obj["spec"] = spec
            annotations = obj["metadata"].setdefault("annotations", {})
            annotations.pop("harvesterhci.io/volumeClaimTemplates", None)
            annotations.update({LAST_RESTORE_ANNOTATION: f"{meta['name']}-{meta['uid']}",
                                RESTORE_NAME_ANNOTATION: meta["name"]})
        return self.api.mutate(self.kv.vms, vm["metadata"]["namespace"], vm["metadata"]["name"], replace)

    def _write_restore(self, restore: Obj, status: Obj) -> bool:
        for entry in status.get("conditions") or []:
            entry.pop("lastProbeTime", None)
            entry.setdefault("lastUpdateTime", entry.get("lastTransitionTime"))
        written = mutate_if_changed(self.api, self.restores, restore, lambda o: o.__setitem__("status", status))
        return written is not restore


class BackupProblem(Exception):
    """A reconcile error the controller records on the object (status.error or an Error condition)."""


def _snapshot_key(content: str) -> str:
    """Where a snapshot's bytes are kept in the volume contents store (never a Longhorn volume's name)."""
    return f"snapshot:{content}"
