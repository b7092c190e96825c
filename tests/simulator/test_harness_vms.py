"""The harness's VMs (infra/harvester/vms.py) on the simulated Harvester: made as Harvester's UI makes them,
looked inside through a node (`SshNode(via=...)`, direct-tcpip to the VMI's address), and probed over SSH while
the cluster upgrades, when Harvester's pre-drain has KubeVirt live-migrate them off each node in turn."""
from __future__ import annotations

from pathlib import Path

from infra.backends.simulated import start_simulator_process
from infra.cleanup import CleanupStack
from infra.config import RunConfig
from infra.harvester.probes import ApiProbe
from infra.harvester.upgrade import UpgradeRun
from infra.harvester.upgrade.follow import follow
from infra.cluster import Cluster
from infra.harvester.vms import KUBEVIRT, GuestVm, VmRequest, create_vm, run_inside, ssh_probe, wait_running
from infra.ssh import generate_keypair
from infra.waits.budget import Budget

from ..conftest import cluster_of

IMAGE = ("default", "image-ubuntu-jammy")
DATA = "head -c 1048576 /dev/urandom > e2e-data && sync && sha256sum e2e-data"


def inside(cluster: Cluster, vm: GuestVm, known_hosts: Path, command: str) -> str:
    return run_inside(cluster, vm, known_hosts, command, Budget("the guest answers SSH", 60))


def test_vms_keep_running_through_an_upgrade_with_their_data_and_their_outage_is_measured(tmp_path: Path) -> None:
    node_keys, vm_keys = generate_keypair(tmp_path / "node-keys"), generate_keypair(tmp_path / "vm-keys")
    simulator = start_simulator_process("v1.5.1", time_scale=240, nodes=3, workdir=tmp_path / "simulator",
                                        budget=Budget("simulator start", 60), ssh_authorized_key=node_keys.public_key_file)
    cleanup = CleanupStack()
    try:
        cluster = cluster_of(simulator, "t-vms", node_keys.private_key_file)
        kube = cluster.kube()
        kube.create({"apiVersion": "harvesterhci.io/v1beta1", "kind": "VirtualMachineImage",      # an admin's upload
                     "metadata": {"name": IMAGE[1], "namespace": IMAGE[0], "labels": {"harvesterhci.io/os-type": "ubuntu"}},
                     "spec": {"displayName": "jammy-server-cloudimg-amd64.img", "sourceType": "download",
                              "url": "https://cloud-images.ubuntu.com/jammy/current/jammy-server-cloudimg-amd64.img"}})
        kube.wait_for("harvesterhci.io/v1beta1", "VirtualMachineImage", IMAGE[1],
                      lambda o: bool(((o or {}).get("status") or {}).get("storageClassName")),
                      budget=Budget("the image's StorageClass", 20), awaited="status.storageClassName",
                      namespace=IMAGE[0])
        vms, uids = [], {}
        for x in "ab":          # one after the other: the scheduler places the second beside the first's node
            vm = create_vm(kube, VmRequest("default", f"e2e-vm-{x}", "/".join(IMAGE), "ubuntu", vm_keys.public_key),
                           vm_keys.private_key_file, run_id="t-vms", cleanup=cleanup, gone=Budget("VM gone", 60))
            uids[vm.name] = wait_running(kube, vm, Budget("VM running", 60))["metadata"]["uid"]
            vms.append(vm)
        nodes_before = {vm.name: vm.node(kube) for vm in vms}
        assert len(set(nodes_before.values())) == 2, f"the VMs share a node: {nodes_before}"
        known_hosts = tmp_path / "known_hosts"
        sums = {vm.name: inside(cluster, vm, known_hosts, DATA).split()[0] for vm in vms}
        boots = {vm.name: inside(cluster, vm, known_hosts, "cat /proc/sys/kernel/random/boot_id") for vm in vms}

        run = UpgradeRun.start(kube, cluster.release("v1.5.2"), run_id="t-vms", cleanup=cleanup,
                               budget=Budget("Version gone", 30))
        probes = [ApiProbe.for_cluster(cluster), *(ssh_probe(cluster, vm, known_hosts, interval_s=0.5) for vm in vms)]
        attempt = follow(run, RunConfig(), probes=probes)
        attempt.raise_problem()
        assert attempt.probes is not None
        print(attempt.probes.as_text())
        for vm in vms:
            vmi = kube.get(KUBEVIRT, "VirtualMachineInstance", vm.name, vm.namespace)
            assert vmi["metadata"]["uid"] == uids[vm.name], f"{vm.name} was restarted, not kept running"
            assert (vmi["status"].get("migrationState") or {}).get("completed"), f"{vm.name} never live-migrated"
            assert inside(cluster, vm, known_hosts, "cat /proc/sys/kernel/random/boot_id") == boots[vm.name]
            assert inside(cluster, vm, known_hosts, "sha256sum e2e-data").split()[0] == sums[vm.name]
            summary = attempt.probes.probe(f"vm {vm.namespace}/{vm.name}")
            assert summary.samples > 5 and summary.longest_outage_s <= 5.0, attempt.probes.as_text()
        assert not attempt.probes.check({"vm ": 5.0}), attempt.probes.check({"vm ": 5.0})
    finally:
        failures = cleanup.run()
        simulator.stop()
    assert failures == []
