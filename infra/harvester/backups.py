"""VM snapshots and backups as Harvester's UI takes them (a VirtualMachineBackup of type `snapshot` or `backup`),
and restores of them to new VMs (a VirtualMachineRestore with `newVM: true`), on any Harvester.

A backup goes to the cluster's backup target, the `backup-target` setting a lab's admins configure; a cluster
without one cannot take backups (Harvester refuses them: "backup target is not set"), which `backup_target`
tells before anything is made. A snapshot needs nothing but the CSI snapshot classes Harvester installs.

Everything is made with the run's label and undone by the scenario's cleanup stack: the restore's VM (it has no
labels: Harvester gives it only the restore's annotations), then the restore and the PVCs it made, then the
backup (which takes its VolumeSnapshots with it).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from infra.cleanup import CleanupStack
from infra.kube import Kube
from infra.waits.budget import Budget

from .names import HARVESTER, RUN_ID_LABEL
from .vms import KUBEVIRT, GuestVm

RESTORE_NAME_ANNOTATION = "restore.harvesterhci.io/name"


@dataclass(frozen=True)
class VmBackup:
    namespace: str
    name: str
    kind: str            # "backup" (to the backup target) or "snapshot" (in the cluster)
    source: GuestVm      # the VM it was taken of (its user and key log in to what it restores to)


@dataclass(frozen=True)
class VmRestore:
    namespace: str
    name: str
    vm: GuestVm          # the new VM it makes


class BackupFailed(AssertionError):
    """Harvester reported the backup or restore in error (its own words)."""


def backup_target(kube: Kube) -> str | None:
    """The backup target Harvester is configured with (its endpoint), or None when the `backup-target` setting
    is empty: then backups are refused and a story taking one is skipped for that missing capability."""
    setting = kube.find(HARVESTER, "Setting", "backup-target") or {}
    raw = setting.get("value") if setting.get("value") is not None else setting.get("default")
    if not raw:
        return None
    try:
        value = json.loads(str(raw))
    except ValueError:
        return None
    if not isinstance(value, dict) or not any(value.values()):
        return None
    if value.get("type") == "s3":
        return f"s3://{value.get('bucketName', '')}@{value.get('bucketRegion', '')}/"
    return str(value.get("endpoint") or "")


def take_backup(kube: Kube, vm: GuestVm, name: str, kind: str, *, run_id: str, cleanup: CleanupStack,
                gone: Budget) -> VmBackup:
    """Start a snapshot or a backup of `vm` (registered for removal first)."""
    if kind not in ("backup", "snapshot"):
        raise ValueError(f"a VM backup is of type backup or snapshot, not {kind!r}")
    cleanup.delete_later(kube, HARVESTER, "VirtualMachineBackup", name, vm.namespace, budget=gone,
                         only_with_label=(RUN_ID_LABEL, run_id))
    kube.create({"apiVersion": HARVESTER, "kind": "VirtualMachineBackup",
                 "metadata": {"name": name, "namespace": vm.namespace, "labels": {RUN_ID_LABEL: run_id}},
                 "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": vm.name},
                          "type": kind}})
    return VmBackup(vm.namespace, name, kind, vm)


def wait_backup_ready(kube: Kube, backup: VmBackup, budget: Budget) -> dict[str, Any]:
    """Until Harvester says the backup is ready to use; its error, if it reports one, fails at once."""
    def settled(obj: dict[str, Any] | None) -> bool:
        status = (obj or {}).get("status") or {}
        return status.get("readyToUse") is True or bool(status.get("error"))
    found = kube.wait_for(HARVESTER, "VirtualMachineBackup", backup.name, settled, budget=budget,
                          namespace=backup.namespace,
                          awaited=f"{backup.kind} {backup.namespace}/{backup.name} of VM {backup.source.name} "
                                  "ready to use")
    status = (found or {}).get("status") or {}
    if status.get("readyToUse") is not True:
        raise BackupFailed(f"{backup.kind} {backup.namespace}/{backup.name} failed: "
                           f"{(status.get('error') or {}).get('message', 'no message')}")
    assert found is not None
    return found


def restore_to_new_vm(kube: Kube, backup: VmBackup, new_vm: str, *, run_id: str, cleanup: CleanupStack,
                      gone: Budget) -> VmRestore:
    """Restore the backup to a new VM named `new_vm`; the guest logs in as the source's did."""
    restore = f"{new_vm}-restore"[-63:].lstrip("-")
    cleanup.defer(f"delete the PVCs restore {backup.namespace}/{restore} made",
                  lambda: _delete_restored_claims(kube, backup.namespace, restore, run_id, gone))
    cleanup.delete_later(kube, HARVESTER, "VirtualMachineRestore", restore, backup.namespace, budget=gone,
                         only_with_label=(RUN_ID_LABEL, run_id))
    cleanup.delete_later(kube, KUBEVIRT, "VirtualMachine", new_vm, backup.namespace, budget=gone,
                         only_with_annotation=(RESTORE_NAME_ANNOTATION, restore))
    kube.create({"apiVersion": HARVESTER, "kind": "VirtualMachineRestore",
                 "metadata": {"name": restore, "namespace": backup.namespace, "labels": {RUN_ID_LABEL: run_id}},
                 "spec": {"target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": new_vm},
                          "virtualMachineBackupName": backup.name, "virtualMachineBackupNamespace": backup.namespace,
                          "newVM": True}})
    return VmRestore(backup.namespace, restore, GuestVm(backup.namespace, new_vm, backup.source.user,
                                                         backup.source.key_file))


def wait_restored(kube: Kube, restore: VmRestore, budget: Budget) -> dict[str, Any]:
    """Until the restore is complete (its VM ready); an Error condition fails at once."""
    def settled(obj: dict[str, Any] | None) -> bool:
        status = (obj or {}).get("status") or {}
        return status.get("complete") is True or _error(obj) is not None
    where = f"{restore.namespace}/{restore.name}"
    found = kube.wait_for(HARVESTER, "VirtualMachineRestore", restore.name, settled, budget=budget,
                          namespace=restore.namespace, awaited=f"restore {where} complete (VM {restore.vm.name} ready)")
    if ((found or {}).get("status") or {}).get("complete") is not True:
        raise BackupFailed(f"restore {where} failed: {_error(found)}")
    assert found is not None
    return found


def _error(restore: dict[str, Any] | None) -> str | None:
    for condition in ((restore or {}).get("status") or {}).get("conditions") or []:
        if condition.get("reason") == "Error":
            return str(condition.get("message") or "")
    return None


def _delete_restored_claims(kube: Kube, namespace: str, restore: str, run_id: str, gone: Budget) -> None:
    """The restore's PVCs (owned by it, so they usually go with it): those still here that carry the run's label
    (copied from the backed-up PVC) and name the restore."""
    for claim in kube.list("v1", "PersistentVolumeClaim", namespace, label_selector=f"{RUN_ID_LABEL}={run_id}"):
        meta = claim["metadata"]
        if (meta.get("annotations") or {}).get(RESTORE_NAME_ANNOTATION) == restore:
            if kube.delete("v1", "PersistentVolumeClaim", meta["name"], namespace):
                kube.wait_for_gone("v1", "PersistentVolumeClaim", meta["name"], namespace=namespace, budget=gone)
