"""Fixtures for the harness's own tests: a simulator on 127.0.0.1, clients for it, kubectl."""
from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

from infra.backends.simulated import SimulatorProcess, cluster_from_simulator, start_simulator_process
from infra.cluster import Cluster
from infra.kube import Kube
from infra.kube.kubectl import kubectl_binary
from infra.waits.budget import Budget

UPSTREAM_CRDS = Path(__file__).resolve().parent / "data" / "upstream-crds"


def simulator_request(kubeconfig: Path, path: str, body: dict | None = None) -> dict:
    """A call to the simulator's own endpoints (fault injection, node power) for the simulator's tests."""
    from infra.backends.simulator_client import SimulatorClient

    return SimulatorClient(kubeconfig)._call("POST" if body is not None else "GET", path, body)  # noqa: SLF001


def start_simulator(version: str = "v1.4.2", tmp: Path | None = None, time_scale: float = 60.0) -> SimulatorProcess:
    return start_simulator_process(version, time_scale=time_scale, nodes=3, workdir=tmp,
                              budget=Budget("simulator start in tests", 60))


def cluster_of(simulator: SimulatorProcess, run_id: str, key_file: Path | None = None) -> Cluster:
    """The `Cluster` the simulated backend would hand a scenario for this simulator (its releases, nodes, APIs)."""
    return cluster_from_simulator(simulator, run_id, key_file, None, known_hosts=simulator.workdir / "known_hosts")


@pytest.fixture(scope="session")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    process = start_simulator("v1.4.2", tmp_path_factory.mktemp("simulator"))
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def simulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], SimulatorProcess]]:
    """One simulator per version for a module, started on first use. Tests put back what they change."""
    started: dict[str, SimulatorProcess] = {}

    def get(version: str) -> SimulatorProcess:
        if version not in started:
            started[version] = start_simulator(version, tmp_path_factory.mktemp(f"simulator-{version}"))
        return started[version]

    yield get
    for simulator in started.values():
        simulator.stop()


@pytest.fixture(scope="session")
def kube(simulator: SimulatorProcess) -> Kube:
    return Kube(simulator.kubeconfig, unavailable_budget=20)


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:8]}"
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    kube.delete("v1", "Namespace", name)


Kubectl = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="session")
def kubectl(simulator: SimulatorProcess) -> Kubectl:
    return kubectl_runner(simulator)


def kubectl_runner(simulator: SimulatorProcess, minor: str | None = None, home: Path | None = None) -> Kubectl:
    """Run the project's kubectl (`minor`, or the newest) against a simulator; a missing binary fails the test
    with `make setup` named (kubectl_binary raises), it never skips."""
    binary = kubectl_binary(minor)
    env = {**os.environ, "KUBECONFIG": str(simulator.kubeconfig), "HOME": str(home or simulator.workdir)}

    def run(*args: str, input: str | None = None, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        result = subprocess.run([str(binary), *args], input=input, capture_output=True, text=True, env=env,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    run.binary = binary  # type: ignore[attr-defined]
    return run
