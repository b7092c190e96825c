"""Simulated nodes are libvirt domains: `Cluster.power` goes through libvirt's test driver and is bridged
to the simulator, where the node really goes down and comes back."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.backends import BackendError, Cluster
from infra.backends.simulator_client import SimulatorClient
from infra.backends.simulated import SimulatedBackend
from infra.config import RunConfig
from infra.config import SimulatedSettings
from infra.provision.ownership import mark_of
from infra.provision.power import STATE_NAMES
from infra.waits.budget import Budget

from .conftest import TEST_URI


@pytest.fixture
def simulated(tmp_path: Path, run_id: str) -> Iterator[tuple[SimulatedBackend, Cluster]]:
    pytest.importorskip("libvirt", reason="libvirt-python is not installed (see ci/bootstrap-system.sh)")
    config = RunConfig(run_id=run_id, artifacts_dir=tmp_path, simulated=SimulatedSettings(time_scale=60, nodes=2))
    backend = SimulatedBackend(config)
    try:
        yield backend, backend.acquire("v1.4.2")
    finally:
        backend.release_all()


def simulator_power(cluster: Cluster, node: str) -> str:
    nodes = [{"name": name, "power": power} for name, power in SimulatorClient(cluster.kubeconfig).node_power_states().items()]
    return next(n["power"] for n in nodes if n["name"] == node)


def domain_state(conn: Any, name: str) -> str:
    return STATE_NAMES[conn.lookupByName(name).state()[0]]


def wait_for_simulator_power(cluster: Cluster, node: str, wanted: str) -> None:
    from infra.waits.poll import poll_until

    poll_until(lambda: simulator_power(cluster, node) == wanted or None, Budget(f"{node} is {wanted} in the simulator", 30),
               f"{node} to be {wanted}", interval_s=0.2)


def test_each_simulated_node_is_a_running_domain_marked_with_the_run(simulated: tuple[Any, Cluster],
                                                                     run_id: str) -> None:
    from infra.provision import open_connection

    _, cluster = simulated
    conn = open_connection(TEST_URI)
    try:
        for node in ("harvester-node-0", "harvester-node-1"):
            domain = conn.lookupByName(f"{run_id}-simulator-v1.4.2-{node}")
            assert domain.isActive()
            assert mark_of(domain.XMLDesc(0)) == {"id": run_id, "node": node, "cluster": "simulator-v1.4.2"}
    finally:
        conn.close()


def test_shutdown_and_start_go_through_libvirt_to_the_simulator(simulated: tuple[Any, Cluster], run_id: str) -> None:
    from infra.provision import open_connection

    _, cluster = simulated
    conn = open_connection(TEST_URI)
    domain = f"{run_id}-simulator-v1.4.2-harvester-node-1"
    try:
        cluster.power("harvester-node-1", "shutdown")
        assert domain_state(conn, domain) == "shut off"
        wait_for_simulator_power(cluster, "harvester-node-1", "off")
        assert simulator_power(cluster, "harvester-node-0") == "running"        # only that node

        with pytest.raises(BackendError, match="libvirt refused to shutdown harvester-node-1: .*not running"):
            cluster.power("harvester-node-1", "shutdown")

        cluster.power("harvester-node-1", "start")
        assert domain_state(conn, domain) == "running"
        wait_for_simulator_power(cluster, "harvester-node-1", "running")
    finally:
        conn.close()


def test_a_refusal_by_the_simulator_is_reported_and_the_domain_follows_the_simulator(simulated: tuple[Any, Cluster],
                                                                           run_id: str) -> None:
    from infra.provision import open_connection

    _, cluster = simulated
    conn = open_connection(TEST_URI)
    try:
        cluster.power("harvester-node-0", "reboot")            # the simulator takes ~2 s (125 simulated) to reboot
        with pytest.raises(BackendError, match="the simulated cluster refused to reboot harvester-node-0: .*"
                                               "it is not running"):
            cluster.power("harvester-node-0", "reboot")
        assert domain_state(conn, f"{run_id}-simulator-v1.4.2-harvester-node-0") == "running"
        wait_for_simulator_power(cluster, "harvester-node-0", "running")
        with pytest.raises(BackendError, match="no node 'harvester-node-9' in simulator-v1.4.2"):
            cluster.power("harvester-node-9", "reboot")
    finally:
        conn.close()


def test_release_removes_the_node_domains(tmp_path: Path, run_id: str) -> None:
    pytest.importorskip("libvirt", reason="libvirt-python is not installed")
    from infra.provision import leak_audit, open_connection

    conn = open_connection(TEST_URI)          # keeps the test driver's state alive across the backend's close
    try:
        config = RunConfig(run_id=run_id, artifacts_dir=tmp_path, simulated=SimulatedSettings(nodes=1))
        backend = SimulatedBackend(config)
        backend.acquire("v1.4.2")
        assert [o.name for o in leak_audit(conn, run_id)] == [f"{run_id}-simulator-v1.4.2-harvester-node-0"]
        backend.release_all()
        assert leak_audit(conn, run_id) == []
    finally:
        conn.close()
