"""The harness's load balancer probe (infra/harvester/vms.py `address_probe`) on the simulated Harvester: it
reaches a VM load balancer's address from the cluster's network through a node, passes over a node that is
down, and fails when the address takes no connection."""
from __future__ import annotations

from pathlib import Path

import pytest

from infra.backends.simulated import start_simulator_process, upload_vm_image
from infra.backends.simulator_client import SimulatorClient
from infra.cleanup import CleanupStack
from infra.cluster import AddressRange
from infra.harvester import ippool
from infra.harvester.names import HARVESTER
from infra.harvester.vms import KUBEVIRT, VmRequest, address_probe, create_vm, run_inside, wait_running
from infra.ssh import generate_keypair
from infra.waits.budget import Budget
from infra.waits.poll import poll_until

from ..conftest import cluster_of

RUN = "t-lb-probe"


def test_the_probe_reaches_a_load_balancer_through_any_node_that_is_up_and_fails_when_it_refuses(
        tmp_path: Path) -> None:
    node_keys, vm_keys = generate_keypair(tmp_path / "node-keys"), generate_keypair(tmp_path / "vm-keys")
    simulator = start_simulator_process("v1.5.1", time_scale=60, nodes=3, workdir=tmp_path / "simulator",
                                        budget=Budget("simulator start", 60), ssh_authorized_key=node_keys.public_key_file)
    cleanup = CleanupStack()
    known_hosts = tmp_path / "known_hosts"
    try:
        cluster = cluster_of(simulator, RUN, node_keys.private_key_file)
        kube = cluster.kube()
        upload_vm_image(cluster, "default/image-ubuntu-jammy")
        kube.wait_for(HARVESTER, "VirtualMachineImage", "image-ubuntu-jammy",
                      lambda o: bool(((o or {}).get("status") or {}).get("storageClassName")),
                      budget=Budget("the image's StorageClass", 20), awaited="status.storageClassName",
                      namespace="default")
        vm = create_vm(kube, VmRequest("default", "web", "default/image-ubuntu-jammy", "ubuntu", vm_keys.public_key,
                                       "default/vm-network"),
                       vm_keys.private_key_file, run_id=RUN, cleanup=cleanup, gone=Budget("gone", 60))
        wait_running(kube, vm, Budget("VM running", 60))
        run_inside(cluster, vm, known_hosts, "true", Budget("guest SSH", 60))       # its sshd listens
        lab = simulator.info["lab"]["loadBalancerRange"]
        pool = ippool.create_pool(kube, cleanup, RUN, "pool", {"scope": [{"project": "*", "namespace": "default",
                                                                         "guestCluster": "*"}]},
                                  Budget("gone", 30), AddressRange.parse(f"{lab['start']}-{lab['end']}"), size=2)
        lb = ippool.create_vm_loadbalancer(kube, cleanup, RUN, "default", "lb", Budget("gone", 30), vms=["web"],
                                           pool=pool.name, port=2222, backend_port=22)
        _, address = ippool.wait_for_address(kube, lb, Budget("LB address", 30))

        probe = address_probe(cluster, "lb", address.ip, 2222, known_hosts)
        probe.attempt(3.0)                                      # answers
        first = cluster.node_names()[0]
        SimulatorClient(simulator.kubeconfig).power(first, "destroy")     # the kube-vip leader too: the address
        def answers() -> bool:
            probe.attempt(3.0)                                  # refused (an OSError) until it moved: again
            return True
        poll_until(answers, Budget("LB address moved", 10), "the address answering through a node that is up",
                   interval_s=0.05)
        with pytest.raises(ConnectionRefusedError):
            address_probe(cluster, "lb", address.ip, 2223, known_hosts).attempt(3.0)    # no such listener
        kube.patch(KUBEVIRT, "VirtualMachine", "web", {"spec": {"runStrategy": "Halted"}}, namespace="default")
        kube.wait_for_gone(KUBEVIRT, "VirtualMachineInstance", "web", namespace="default", budget=Budget("VMI gone", 30))
        with pytest.raises(ConnectionRefusedError):
            probe.attempt(3.0)                                  # no backend left
    finally:
        failures = cleanup.run()
        simulator.stop()
    assert failures == []
