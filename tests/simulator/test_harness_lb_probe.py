"""The harness's probes of what users reach (infra/harvester/vms.py) on the simulated Harvester: the load balancer
probe reaches a VM load balancer's address from the cluster's network through a node, passes over a node that is
down, and fails when the address takes no connection; the VM probe does not wait for an API that is away."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from infra.backends.simulator_client import SimulatorClient
from infra.cluster import AddressRange
from infra.harvester import ippool
from infra.harvester.vms import KUBEVIRT, address_probe, run_inside, ssh_probe
from infra.waits.budget import Budget
from infra.waits.poll import poll_until

from .harness_cluster import HarnessCluster, cluster_with_a_vm

RUN = "t-lb-probe"


def test_the_probe_reaches_a_load_balancer_through_any_node_that_is_up_and_fails_when_it_refuses(
        tmp_path: Path) -> None:
    with cluster_with_a_vm(tmp_path, RUN, version="v1.5.1", nodes=3, time_scale=60, vm_name="web") as made:
        try:
            probe_passes_over_nodes_and_fails_on_refusal(made)
        finally:
            failures = made.cleanup.run()
        assert failures == []


def probe_passes_over_nodes_and_fails_on_refusal(made: HarnessCluster) -> None:
    cluster, vm, known_hosts, cleanup = made.cluster, made.vm, made.known_hosts, made.cleanup
    kube, simulator = cluster.kube(), made.simulator
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


def test_a_vm_probe_does_not_count_the_api_being_away_against_the_vm(tmp_path: Path) -> None:
    """The VM's placement is read with one quick request: while the API is away (refusing, then 503: an RKE2 restart),
    the guest is still reached where it was, within the probe's timeout."""
    with cluster_with_a_vm(tmp_path, RUN, version="v1.5.1", nodes=2, time_scale=60, vm_name="web") as made:
        try:
            run_inside(made.cluster, made.vm, made.known_hosts, "true", Budget("guest SSH", 60))
            probe = ssh_probe(made.cluster, made.vm, made.known_hosts)
            SimulatorClient(made.simulator.kubeconfig).inject(refuseConnectionsSeconds=3.0, unavailableSeconds=6.0)
            started = time.monotonic()
            probe.attempt(3.0)
            assert time.monotonic() - started < 3.0, "the attempt waited for the API instead of the guest"
        finally:
            failures = made.cleanup.run()
        assert failures == []
