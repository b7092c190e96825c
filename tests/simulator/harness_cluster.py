"""A simulated Harvester as the harness's own code sees one (a `Cluster` with SSH to its nodes), with the VM image
a lab's admins would have uploaded, and one running VM made by the harness: what the harness-level VM tests share."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from infra.backends.simulated import SimulatorProcess, start_simulator_process, upload_vm_image
from infra.cleanup import CleanupStack
from infra.cluster import Cluster
from infra.harvester.names import HARVESTER
from infra.harvester.vms import GuestVm, VmRequest, create_vm, wait_running
from infra.ssh import generate_keypair
from infra.waits.budget import Budget

from ..conftest import cluster_of

IMAGE = "default/image-ubuntu-jammy"


@dataclass
class HarnessCluster:
    simulator: SimulatorProcess
    cluster: Cluster
    vm: GuestVm                 # running, on the VM network
    known_hosts: Path
    cleanup: CleanupStack       # run by the caller, before the simulator stops


@contextlib.contextmanager
def cluster_with_a_vm(tmp_path: Path, run_id: str, *, version: str, nodes: int, time_scale: float,
                      vm_name: str) -> Iterator[HarnessCluster]:
    node_keys, vm_keys = generate_keypair(tmp_path / "node-keys"), generate_keypair(tmp_path / "vm-keys")
    simulator = start_simulator_process(version, time_scale=time_scale, nodes=nodes, workdir=tmp_path / "simulator",
                                        budget=Budget("simulator start", 60), ssh_authorized_key=node_keys.public_key_file)
    try:
        cluster = cluster_of(simulator, run_id, node_keys.private_key_file)
        kube = cluster.kube()
        upload_vm_image(cluster, IMAGE)
        namespace, image = IMAGE.split("/")
        kube.wait_for(HARVESTER, "VirtualMachineImage", image,
                      lambda o: bool(((o or {}).get("status") or {}).get("storageClassName")),
                      budget=Budget("the image's StorageClass", 20), awaited="status.storageClassName",
                      namespace=namespace)
        cleanup = CleanupStack()
        vm = create_vm(kube, VmRequest("default", vm_name, IMAGE, "ubuntu", vm_keys.public_key, "default/vm-network"),
                       vm_keys.private_key_file, run_id=run_id, cleanup=cleanup, gone=Budget("gone", 60))
        wait_running(kube, vm, Budget("VM running", 60))
        yield HarnessCluster(simulator, cluster, vm, tmp_path / "known_hosts", cleanup)
    finally:
        simulator.stop()
