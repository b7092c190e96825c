"""The harness's VM snapshots, backups and restores (infra/harvester/backups.py) on the simulated Harvester: what a
cluster without a backup target says, a snapshot and a backup restoring to new VMs with the data the VM had
when they were taken, and a cleanup that removes all of it and nothing it did not make."""
from __future__ import annotations

from pathlib import Path

import pytest

from infra.backends.simulated import configure_backup_target
from infra.cleanup import CleanupStack
from infra.harvester.backups import (BackupFailed, backup_target, restore_to_new_vm, take_backup, wait_backup_ready,
                                     wait_restored)
from infra.harvester.names import HARVESTER, RUN_ID_LABEL
from infra.harvester.vms import KUBEVIRT, run_inside, wait_running
from infra.kube import Kube
from infra.kube.client import ApiFailure
from infra.waits.budget import Budget

from .harness_cluster import HarnessCluster, cluster_with_a_vm

RUN = "t-backups"


def test_snapshots_and_backups_restore_to_new_vms_with_the_data_they_took_and_cleanup_removes_them(
        tmp_path: Path) -> None:
    with cluster_with_a_vm(tmp_path, RUN, version="v1.4.2", nodes=2, time_scale=120, vm_name="vm-a") as made:
        try:
            backups_restore_with_their_data(made)
        finally:
            failures = made.cleanup.run()
        assert failures == []
        nothing_left(made.cluster.kube())


def backups_restore_with_their_data(made: HarnessCluster) -> None:
    cluster, vm, known_hosts, cleanup = made.cluster, made.vm, made.known_hosts, made.cleanup
    kube = cluster.kube()
    taken = run_inside(cluster, vm, known_hosts, "head -c 65536 /dev/urandom > d && sync && sha256sum d",
                       Budget("guest SSH", 60)).split()[0]

    # no backup target: the harness says so, and Harvester refuses a backup with its own words
    assert backup_target(kube) is None
    with pytest.raises(ApiFailure, match="backup target is not set"):
        take_backup(kube, vm, "vm-a-backup", "backup", run_id=RUN, cleanup=cleanup, gone=Budget("gone", 60))
    configure_backup_target(kube, "nfs://127.0.0.1:/exports/t")
    assert backup_target(kube) == "nfs://127.0.0.1:/exports/t"

    backups = [take_backup(kube, vm, f"vm-a-{kind}", kind, run_id=RUN, cleanup=cleanup, gone=Budget("gone", 60))
               for kind in ("snapshot", "backup")]
    for backup in backups:
        wait_backup_ready(kube, backup, Budget("backup ready", 60))
    run_inside(cluster, vm, known_hosts, "echo later > d", Budget("guest SSH", 60))     # after they were taken
    for backup in backups:
        restore = restore_to_new_vm(kube, backup, f"{backup.name}-restored", run_id=RUN, cleanup=cleanup,
                                    gone=Budget("gone", 60))
        wait_restored(kube, restore, Budget("restore complete", 60))
        wait_running(kube, restore.vm, Budget("VM running", 60))
        assert run_inside(cluster, restore.vm, known_hosts, "sha256sum d", Budget("guest SSH", 60)).split()[0] \
            == taken, f"the VM restored from {backup.kind} {backup.name} lacks the data it took"

    # a backup Harvester reports in error fails the wait at once, with Harvester's message
    broken = take_backup(kube, vm, "vm-a-broken", "snapshot", run_id=RUN, cleanup=cleanup, gone=Budget("g", 60))
    kube.patch(HARVESTER, "VirtualMachineBackup", broken.name,     # as Harvester records a failure, ready or not
               {"status": {"readyToUse": False, "error": {"message": "disk on fire"}}}, namespace="default")
    with pytest.raises(BackupFailed, match="disk on fire"):
        wait_backup_ready(kube, broken, Budget("backup ready", 30))

    # something the run did not make, with a restore's name, is never deleted
    other = CleanupStack()
    other.delete_later(kube, KUBEVIRT, "VirtualMachine", "vm-a", "default", budget=Budget("gone", 10),
                       only_with_annotation=("restore.harvesterhci.io/name", "vm-a-snapshot-restored-restore"))
    assert other.run() == [] and kube.find(KUBEVIRT, "VirtualMachine", "vm-a", "default") is not None


def nothing_left(kube: Kube) -> None:
    label = f"{RUN_ID_LABEL}={RUN}"
    for api_version, kind in ((KUBEVIRT, "VirtualMachine"), (HARVESTER, "VirtualMachineRestore"),
                              (HARVESTER, "VirtualMachineBackup"), ("v1", "PersistentVolumeClaim")):
        assert kube.list(api_version, kind, "default", label_selector=label) == [], f"{kind}s left"
    assert [v["metadata"]["name"] for v in kube.list(KUBEVIRT, "VirtualMachine", "default")] == [], \
        "the restored VMs (no labels) were left"
    assert kube.list("snapshot.storage.k8s.io/v1", "VolumeSnapshot", "default") == []
