"""VM backups, snapshots and restores of the simulated Harvester (infra/simulator/kubevirt/backups.py), through the
real API with the `kubernetes` client, and the data checked inside the guests over SSH.

What upstream does (harvester/harvester v1.4.2 and v1.5.1, `pkg/webhook/resources/virtualmachine{backup,restore}`,
`pkg/controller/master/backup`): a snapshot or a backup is a VolumeSnapshot per volume, named
`<backup>-volume-<pvc>`, holding the volume as it was when it was taken; a restore makes PVCs
`restore-<backup>-<restore uid>-<volume>` from those snapshots and a VM on them; the webhooks refuse what cannot
work with the messages quoted here.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

import pytest
from kubernetes.client.rest import ApiException

from infra.backends.simulated import SimulatorProcess

from .test_kubevirt_vms import Clients, wait_until
from .test_vm_guests import c, ns  # noqa: F401 - the fixtures, on this module's simulator
from .test_vm_guests import GUEST_PUBLIC, Node, address, cloud_config, image, login, simulator_for_guests

Obj = dict[str, Any]
SCALE = 20
HARVESTER = ("harvesterhci.io", "v1beta1")
SNAPSHOTS = ("snapshot.storage.k8s.io", "v1")
NFS_TARGET = json.dumps({"type": "nfs", "endpoint": "nfs://192.0.2.10:/exports/harvester-backups"})
DENIED = 'admission webhook "validator.harvesterhci.io" denied the request: '


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    with simulator_for_guests(tmp_path_factory.mktemp("vm-backups"), "v1.5.1", nodes=2, scale=SCALE) as started:
        yield started


@pytest.fixture
def node(simulator: SimulatorProcess, c: Clients) -> Iterator[Node]:
    session = Node(simulator, c.node_names()[0])
    yield session
    session.close()


def set_backup_target(c: Clients, value: str) -> None:
    c.custom.patch_cluster_custom_object(*HARVESTER, "settings", "backup-target", {"value": value})


@pytest.fixture
def backup_target(c: Clients) -> Iterator[None]:
    set_backup_target(c, NFS_TARGET)
    yield
    set_backup_target(c, "")


def guest_vm(c: Clients, namespace: str, name: str) -> Obj:
    """A VM as the harness makes one: its disk in the image's class, cloud-init giving the test's key."""
    storage_class = image(c, namespace, f"img-{name}")
    c.core.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": f"{name}-disk-0", "labels": {"made-by": "test"},
                     "annotations": {"harvesterhci.io/imageId": f"{namespace}/img-{name}"}},
        "spec": {"accessModes": ["ReadWriteMany"], "volumeMode": "Block", "storageClassName": storage_class,
                 "resources": {"requests": {"storage": "1Gi"}}}})
    return c.create(namespace, "virtualmachines", {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
        "metadata": {"name": name, "labels": {"made-by": "test"}},
        "spec": {"runStrategy": "RerunOnFailure", "template": {
            "metadata": {"labels": {"harvesterhci.io/vmName": name, "made-by": "test"}},
            "spec": {"evictionStrategy": "LiveMigrate",
                     "domain": {"cpu": {"cores": 1}, "resources": {"requests": {"memory": "1Gi"}},
                                "devices": {"disks": [{"name": "disk-0", "bootOrder": 1, "disk": {"bus": "virtio"}},
                                                      {"name": "cloudinitdisk", "disk": {"bus": "virtio"}}],
                                            "interfaces": [{"name": "nic-1", "bridge": {}, "model": "virtio",
                                                            "macAddress": "52:54:00:aa:bb:cc"}]}},
                     "networks": [{"name": "nic-1", "multus": {"networkName": "default/vm-network"}}],
                     "volumes": [{"name": "disk-0", "persistentVolumeClaim": {"claimName": f"{name}-disk-0"}},
                                 {"name": "cloudinitdisk",
                                  "cloudInitNoCloud": {"userData": cloud_config(keys=[GUEST_PUBLIC])}}]}}}})


def ready_vm(c: Clients, namespace: str, name: str, seconds: float = 30) -> Obj:
    def ready() -> Obj | None:
        vmi = c.get(namespace, "virtualmachineinstances", name) or {}
        interfaces = (vmi.get("status") or {}).get("interfaces") or []
        vm = c.get(namespace, "virtualmachines", name) or {}
        return vmi if (vm.get("status") or {}).get("ready") and interfaces and interfaces[0].get("ipAddress") else None
    return wait_until(ready, seconds, f"VM {namespace}/{name} Ready with an address")


def inside(node: Node, vmi: Obj, command: str) -> str:
    guest = login(node, address(vmi))
    try:
        return guest.ok(command)
    finally:
        guest.close()


def write_data(node: Node, vmi: Obj, seed: str) -> str:
    """1 MiB derived from `seed` written inside; its sha256 as the guest computes it."""
    out = inside(node, vmi, f"head -c 1048576 /dev/urandom > data-{seed} && cp data-{seed} data && sync && "
                            "sha256sum data")
    return out.split()[0]


def backup(c: Clients, namespace: str, name: str, vm: str, kind: str) -> Obj:
    return c.custom.create_namespaced_custom_object(*HARVESTER, namespace, "virtualmachinebackups", {
        "apiVersion": "harvesterhci.io/v1beta1", "kind": "VirtualMachineBackup", "metadata": {"name": name},
        "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": vm}, "type": kind}})


def get(c: Clients, namespace: str, plural: str, name: str, group: tuple[str, str] = HARVESTER) -> Obj | None:
    try:
        return c.custom.get_namespaced_custom_object(*group, namespace, plural, name)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def ready_backup(c: Clients, namespace: str, name: str, seconds: float = 30) -> Obj:
    return wait_until(lambda: (lambda b: b if (b.get("status") or {}).get("readyToUse") is True else None)(
        get(c, namespace, "virtualmachinebackups", name) or {}), seconds, f"backup {name} readyToUse")


def restore(c: Clients, namespace: str, name: str, backup_name: str, target: str, *, new_vm: bool = True,
            policy: str | None = None) -> Obj:
    spec: Obj = {"target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": target},
                 "virtualMachineBackupName": backup_name, "virtualMachineBackupNamespace": namespace, "newVM": new_vm}
    if policy is not None:
        spec["deletionPolicy"] = policy
    return c.custom.create_namespaced_custom_object(*HARVESTER, namespace, "virtualmachinerestores", {
        "apiVersion": "harvesterhci.io/v1beta1", "kind": "VirtualMachineRestore", "metadata": {"name": name},
        "spec": spec})


def complete_restore(c: Clients, namespace: str, name: str, seconds: float = 40) -> Obj:
    return wait_until(lambda: (lambda r: r if (r.get("status") or {}).get("complete") is True else None)(
        get(c, namespace, "virtualmachinerestores", name) or {}), seconds, f"restore {name} complete")


def refusal(call: Any) -> tuple[int, str]:
    with pytest.raises(ApiException) as caught:
        call()
    return caught.value.status, json.loads(caught.value.body)["message"]


def condition(obj: Obj, kind: str) -> Obj:
    return next(c for c in obj["status"]["conditions"] if c["type"] == kind)


# ---- backups and snapshots --------------------------------------------------------------------------------

def test_a_snapshot_and_a_backup_hold_the_disk_as_it_was_and_restore_to_new_vms_with_that_data(
        c: Clients, ns: str, node: Node, backup_target: None) -> None:
    guest_vm(c, ns, "vm1")
    vmi = ready_vm(c, ns, "vm1")
    before = write_data(node, vmi, "one")
    backup(c, ns, "snap1", "vm1", "snapshot")
    backup(c, ns, "bak1", "vm1", "backup")
    snapshot = ready_backup(c, ns, "snap1")
    taken = ready_backup(c, ns, "bak1")
    after = write_data(node, vmi, "two")            # the VM moves on; the snapshots keep what they took
    assert after != before

    # what the backup records (backup.go initBackup, getVolumeBackups; backup_status.go updateConditions)
    pvc = c.core.read_namespaced_persistent_volume_claim("vm1-disk-0", ns)
    vm = c.get(ns, "virtualmachines", "vm1")
    assert vm is not None
    for made, klass in ((snapshot, "longhorn-snapshot"), (taken, "longhorn")):
        status = made["status"]
        assert status["sourceUID"] == vm["metadata"]["uid"]
        assert status["source"]["metadata"]["name"] == "vm1" and status["source"]["spec"] == vm["spec"]
        assert status["csiDriverVolumeSnapshotClassNames"] == {"driver.longhorn.io": klass}
        [volume] = status["volumeBackups"]
        assert volume["name"] == f"{made['metadata']['name']}-volume-vm1-disk-0"
        assert volume["volumeName"] == "disk-0" and volume["csiDriverName"] == "driver.longhorn.io"
        assert volume["persistentVolumeClaim"]["metadata"]["labels"] == {"made-by": "test"}
        assert volume["volumeSize"] == 1 << 30 and volume["readyToUse"] is True
        assert (condition(made, "Ready")["status"], condition(made, "Ready")["message"]) == \
               ("True", "Operation complete")
        assert condition(made, "InProgress")["status"] == "False"
        vs = get(c, ns, "volumesnapshots", volume["name"], SNAPSHOTS)
        assert vs is not None and vs["status"]["readyToUse"] is True
        assert vs["spec"] == {"source": {"persistentVolumeClaimName": "vm1-disk-0"}, "volumeSnapshotClassName": klass}
        assert vs["metadata"]["ownerReferences"][0]["uid"] == made["metadata"]["uid"]
        assert vs["metadata"]["annotations"] == {"harvesterhci.io/storageClassName": pvc.spec.storage_class_name,
                                                 "harvesterhci.io/imageId": f"{ns}/img-vm1",
                                                 "harvesterhci.io/storageProvisioner": "driver.longhorn.io"}
    assert "backupTarget" not in snapshot["status"]
    assert taken["status"]["backupTarget"]["endpoint"] == "nfs://192.0.2.10:/exports/harvester-backups"
    wait_until(lambda: (get(c, ns, "virtualmachinebackups", "bak1") or {}).get("status", {}).get("conditions")
               and condition(get(c, ns, "virtualmachinebackups", "bak1") or {}, "MetadataReady")["status"] == "True",
               10, "the backup's metadata on the target")

    # each restores to a new VM whose disk is the one the snapshot took
    for name, source in (("from-snap", "snap1"), ("from-bak", "bak1")):
        made = restore(c, ns, f"restore-{name}", source, name)
        done = complete_restore(c, ns, f"restore-{name}")
        assert (condition(done, "Ready")["status"], condition(done, "Ready")["message"]) == \
               ("True", "Operation complete")
        claim = f"restore-{source}-{made['metadata']['uid']}-disk-0"
        restored_pvc = c.core.read_namespaced_persistent_volume_claim(claim, ns)
        assert restored_pvc.spec.data_source.kind == "VolumeSnapshot"
        assert restored_pvc.spec.data_source.name == f"{source}-volume-vm1-disk-0"
        assert restored_pvc.metadata.annotations["restore.harvesterhci.io/name"] == f"restore-{name}"
        assert restored_pvc.metadata.labels == {"made-by": "test"}
        assert restored_pvc.metadata.owner_references[0].name == f"restore-{name}"
        new = c.get(ns, "virtualmachines", name)
        assert new is not None
        assert not new["metadata"].get("labels")
        assert new["metadata"]["annotations"] == {
            "restore.harvesterhci.io/last-restore-uid": f"restore-{name}-{made['metadata']['uid']}",
            "restore.harvesterhci.io/name": f"restore-{name}"}
        template = new["spec"]["template"]
        assert template["metadata"]["labels"] == {"harvesterhci.io/creator": "harvester", "harvesterhci.io/vmName": name}
        assert "macAddress" not in template["spec"]["domain"]["devices"]["interfaces"][0]
        assert template["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim
        assert done["metadata"]["ownerReferences"][0]["uid"] == new["metadata"]["uid"]
        assert done["status"]["targetUID"] == new["metadata"]["uid"]
        restored = ready_vm(c, ns, name)
        assert inside(node, restored, "sha256sum data").split()[0] == before
    assert inside(node, vmi, "sha256sum data").split()[0] == after      # the source VM kept its own

    # the restore cannot go while its VM exists; deleting the VM takes the restore and its PVCs with it
    status, message = refusal(lambda: c.custom.delete_namespaced_custom_object(
        *HARVESTER, ns, "virtualmachinerestores", "restore-from-snap"))
    assert (status, message) == (422, DENIED + "The restore can't be removed because the restored VM from-snap exists")
    c.delete(ns, "virtualmachines", "from-snap")
    wait_until(lambda: get(c, ns, "virtualmachinerestores", "restore-from-snap") is None, 20, "the restore collected")


def test_a_backup_needs_a_backup_target_and_a_snapshot_does_not(c: Clients, ns: str) -> None:
    guest_vm(c, ns, "vm2")
    set_backup_target(c, "")
    status, message = refusal(lambda: backup(c, ns, "bak2", "vm2", "backup"))
    assert (status, message) == (422, DENIED + "backup target is not set")
    backup(c, ns, "snap2", "vm2", "snapshot")
    status, message = refusal(lambda: backup(c, ns, "snap2", "vm2", "snapshot"))
    assert (status, message) == (400, 'admission webhook "mutator.harvesterhci.io" denied the request: '
                                       "The snapshot snap2 is already existent. Please use another name for it.")
    status, message = refusal(lambda: backup(c, ns, "snap2", "vm2", "backup"))
    assert message.endswith("VM Backup and Snapshot use same CRD - VirtualMachineBackup. The snapshot snap2 is "
                            "already existent. Please use another name for it.")
    status, message = refusal(lambda: backup(c, ns, "bak3", "no-such-vm", "snapshot"))
    assert (status, message) == (422, DENIED + 'virtualmachines.kubevirt.io "no-such-vm" not found')


def test_restores_are_refused_as_upstream_refuses_them(c: Clients, ns: str) -> None:
    guest_vm(c, ns, "vm3")
    ready_vm(c, ns, "vm3")
    backup(c, ns, "snap3", "vm3", "snapshot")
    status, message = refusal(lambda: restore(c, ns, "too-early", "snap3", "other"))
    if status == 422 and message.endswith("is not ready"):       # taken within the next simulated seconds
        assert message == DENIED + f"VMBackup {ns}/snap3 is not ready"
    ready_backup(c, ns, "snap3")
    assert refusal(lambda: restore(c, ns, "r1", "snap3", "vm3")) == \
        (422, DENIED + "VM vm3 is already exists")
    assert refusal(lambda: restore(c, ns, "r2", "snap3", "vm3", new_vm=False, policy="retain")) == \
        (422, DENIED + 'Please stop the VM "vm3" before doing a restore')
    assert refusal(lambda: restore(c, ns, "r3", "snap3", "vm3", new_vm=False)) == \
        (422, DENIED + "Delete policy with backup type snapshot for replacing VM is not supported")
    assert refusal(lambda: restore(c, ns, "r4", "snap3", "gone", new_vm=False, policy="retain")) == \
        (422, DENIED + "can't replace nonexistent vm gone")
    assert refusal(lambda: restore(c, ns, "r5", "nope", "other")) == \
        (422, DENIED + f'can\'t get vmbackup {ns}/nope, err: virtualmachinebackups.harvesterhci.io "nope" not found')
    assert refusal(lambda: restore(c, ns, "r6", "snap3", "Bad_Name"))[1].startswith(
        DENIED + "Target VM name is invalid, err: ")


def test_replacing_a_stopped_vm_from_its_snapshot_brings_back_its_data_and_keeps_the_old_disk_with_retain(
        c: Clients, ns: str, node: Node) -> None:
    guest_vm(c, ns, "vm4")
    vmi = ready_vm(c, ns, "vm4")
    before = write_data(node, vmi, "one")
    backup(c, ns, "snap4", "vm4", "snapshot")
    ready_backup(c, ns, "snap4")
    write_data(node, vmi, "two")
    c.patch(ns, "virtualmachines", "vm4", {"spec": {"runStrategy": "Halted"}})
    wait_until(lambda: c.get(ns, "virtualmachineinstances", "vm4") is None and
               not ((c.get(ns, "virtualmachines", "vm4") or {}).get("status") or {}).get("ready"), 30, "vm4 stopped")
    made = restore(c, ns, "replace4", "snap4", "vm4", new_vm=False, policy="retain")
    complete_restore(c, ns, "replace4")
    vm = c.get(ns, "virtualmachines", "vm4")
    assert vm is not None
    assert vm["metadata"]["annotations"]["restore.harvesterhci.io/last-restore-uid"] == \
        f"replace4-{made['metadata']['uid']}"
    assert vm["metadata"]["labels"] == {"made-by": "test"}                 # a replaced VM keeps its metadata
    assert vm["spec"]["runStrategy"] != "Halted"
    assert "macAddress" in vm["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"][0]
    restored = ready_vm(c, ns, "vm4")
    assert inside(node, restored, "sha256sum data").split()[0] == before
    c.core.read_namespaced_persistent_volume_claim("vm4-disk-0", ns)     # retained, not deleted


def test_snapshot_contents_go_with_their_snapshots(c: Clients, ns: str) -> None:
    guest_vm(c, ns, "vm5")
    ready_vm(c, ns, "vm5")
    backup(c, ns, "snap5", "vm5", "snapshot")
    ready_backup(c, ns, "snap5")
    vs = get(c, ns, "volumesnapshots", "snap5-volume-vm5-disk-0", SNAPSHOTS)
    assert vs is not None
    content = vs["status"]["boundVolumeSnapshotContentName"]
    assert content == f"snapcontent-{vs['metadata']['uid']}"
    found = c.custom.get_cluster_custom_object(*SNAPSHOTS, "volumesnapshotcontents", content)
    assert found["spec"]["volumeSnapshotRef"]["uid"] == vs["metadata"]["uid"]
    assert found["status"]["readyToUse"] is True
    c.custom.delete_namespaced_custom_object(*HARVESTER, ns, "virtualmachinebackups", "snap5")

    def content_gone() -> bool:
        try:
            c.custom.get_cluster_custom_object(*SNAPSHOTS, "volumesnapshotcontents", content)
        except ApiException as error:
            return error.status == 404
        return False
    wait_until(content_gone, 20, "the snapshot content deleted with its snapshot")

