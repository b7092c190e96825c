"""A guest PVC on the `harvester` StorageClass maps to a host PVC and a Longhorn volume, attaches to the
VM of the node its pod runs on, detaches when the pod goes, and keeps the bytes written to it."""
from __future__ import annotations

from typing import Iterator

import pytest

from infra.harvester.guest import charts, volumes, volume_data
from infra.harvester.guest import cluster as guests
from infra.kube import Kube
from infra.waits.budget import Budget, WaitTimeout

from .guest_support import host_kube, BUDGET, RUN_ID, a_guest, installer


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    with host_kube(tmp_path_factory.mktemp("guest-volumes-simulator")) as kube:
        yield kube


@pytest.fixture(scope="module")
def guest(host: Kube) -> Iterator[guests.GuestCluster]:
    with a_guest(host, "v1.30.10+rke2r1", "2.9") as found:
        installer(found).install(charts.Chart("harvester-csi-driver", "0.1.21"))
        found.kube().create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}})
        yield found


def _workload(guest: guests.GuestCluster, name: str) -> volume_data.DataWorkload:
    kube = guest.kube()
    kube.create(volume_data.claim_manifest("apps", f"{name}-data", RUN_ID))
    data = volume_data.DataWorkload("apps", name, f"{name}-data")
    kube.create(data.manifest(RUN_ID))
    volume_data.scale(kube, data, 1, BUDGET)
    return data


def test_the_volume_chain_attach_detach_and_data(guest: guests.GuestCluster) -> None:
    kube, files = guest.kube(), volume_data.ExecPodFiles(guest.kube())
    data = _workload(guest, "writer")
    chain = volumes.volume_chain(guest, "apps", data.claim, BUDGET)
    claim = kube.get("v1", "PersistentVolumeClaim", data.claim, "apps")
    host_claim = guest.host.get("v1", "PersistentVolumeClaim", chain.host_pvc, guest.host_namespace)
    assert chain.guest_pv == chain.host_pvc == f"pvc-{claim['metadata']['uid']}"
    assert chain.longhorn_volume == f"pvc-{host_claim['metadata']['uid']}"
    assert host_claim["spec"]["accessModes"] == ["ReadWriteMany"] and host_claim["spec"]["volumeMode"] == "Block"

    pod = volume_data.the_pod(kube, data)
    node = pod["spec"]["nodeName"]
    attachment = volumes.wait_attached(guest, chain, node, BUDGET)
    assert attachment.current_node == guest.host_node_of(node) != ""
    assert chain.host_pvc in volumes.vm_hotplug_volumes(guest.host, guest.host_namespace, node)
    vmi = guest.host.get("kubevirt.io/v1", "VirtualMachineInstance", node, guest.host_namespace)
    assert any(s["name"] == chain.host_pvc and s["phase"] == "Ready" for s in vmi["status"]["volumeStatus"])
    record = volume_data.write_data(files, data, pod["metadata"]["name"])

    volume_data.scale(kube, data, 0, BUDGET)
    volumes.wait_detached(guest, chain, BUDGET)
    assert chain.host_pvc not in volumes.vm_hotplug_volumes(guest.host, guest.host_namespace, node)

    pods = volume_data.scale(kube, data, 1, BUDGET)
    volumes.wait_attached(guest, chain, pods[0]["spec"]["nodeName"], BUDGET)
    assert volume_data.verify_data(files, data, pods[0]["metadata"]["name"], record) == record.sha256


def test_the_checksum_is_computed_from_the_bytes_stored(guest: guests.GuestCluster) -> None:
    files = volume_data.ExecPodFiles(guest.kube())
    data = _workload(guest, "tamper")
    pod = volume_data.the_pod(guest.kube(), data)["metadata"]["name"]
    record = volume_data.write_data(files, data, pod, size=4096)
    files.write("apps", pod, volume_data.PAYLOAD, b"something else")
    with pytest.raises(volume_data.DataNotIntact, match="payload is 14 bytes, 4096 were written"):
        volume_data.verify_data(files, data, pod, record)


def test_only_the_volume_outlives_the_pod(guest: guests.GuestCluster) -> None:
    kube, files = guest.kube(), volume_data.ExecPodFiles(guest.kube())
    data = _workload(guest, "rootfs")
    pod = volume_data.the_pod(kube, data)["metadata"]["name"]
    files.write("apps", pod, "/etc/motd", b"on the container's root")
    files.write("apps", pod, "/data/kept", b"on the volume")
    assert files.read("apps", pod, "/etc/motd") == b"on the container's root"
    with pytest.raises(volume_data.PodCommandFailed) as missing:
        files.read("apps", pod, "/data/never-written")
    assert missing.value.exit_code == 1 and "No such file or directory" in missing.value.stderr

    volume_data.scale(kube, data, 0, BUDGET)
    again = volume_data.scale(kube, data, 1, BUDGET)[0]["metadata"]["name"]
    assert again != pod
    assert files.read("apps", again, "/data/kept") == b"on the volume"
    with pytest.raises(volume_data.PodCommandFailed, match="No such file or directory"):
        files.read("apps", again, "/etc/motd")


def test_deleting_the_claim_deletes_the_host_pvc_and_the_longhorn_volume(guest: guests.GuestCluster) -> None:
    kube = guest.kube()
    data = _workload(guest, "short-lived")
    chain = volumes.volume_chain(guest, "apps", data.claim, BUDGET)
    kube.delete("apps/v1", "Deployment", data.name, "apps")
    kube.delete("v1", "PersistentVolumeClaim", data.claim, "apps")
    kube.wait_for_gone("v1", "PersistentVolume", chain.guest_pv, budget=BUDGET)
    volumes.wait_host_side_gone(guest, chain, BUDGET)


def test_without_the_csi_controllers_a_claim_stays_pending(host: Kube) -> None:
    with a_guest(host) as bare:
        kube = bare.kube()
        kube.create({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "harvester"},
                     "provisioner": "driver.harvesterhci.io", "reclaimPolicy": "Delete",
                     "volumeBindingMode": "Immediate"})
        kube.create(volume_data.claim_manifest("default", "orphan", RUN_ID))
        with pytest.raises(WaitTimeout, match="guest PVC default/orphan to be Bound"):
            volumes.volume_chain(bare, "default", "orphan", Budget("short", 1.5))
        events = kube.list("v1", "Event", "default", field_selector="involvedObject.name=orphan")
        assert any(e["reason"] == "ExternalProvisioning" and "driver.harvesterhci.io" in e["message"] for e in events)
        uid = kube.get("v1", "PersistentVolumeClaim", "orphan", "default")["metadata"]["uid"]
        assert bare.host.find("v1", "PersistentVolumeClaim", f"pvc-{uid}", bare.host_namespace) is None, \
            "no host PVC without the provisioner"
