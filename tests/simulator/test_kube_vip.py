"""The API at the VIP is the kube-vip holder's kube-apiserver (infra/simulator/nodes/kube_vip.py): rebooting the
holder takes the API away (no answer; the simulator's own endpoints still answer) until another node takes the lease (a retry period after a clean shutdown, the lease's
expiry after a power cut); rebooting any other node does not touch it."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest

from infra.backends.simulated import SimulatorProcess, start_simulator_process
from infra.backends.simulator_client import SimulatorClient
from infra.https import Endpoint, EndpointError
from infra.simulator.nodes.kube_vip import LEASE_SECONDS, RETRY_SECONDS
from infra.waits.budget import Budget

SCALE = 2.0


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[SimulatorProcess]:
    started = start_simulator_process("v1.5.1", time_scale=SCALE, nodes=3, workdir=tmp_path / "simulator",
                                      budget=Budget("simulator start in tests", 60))
    try:
        yield started
    finally:
        started.stop()


def unanswered_spans(endpoint: Endpoint, seconds: float, interval: float = 0.02) -> list[tuple[float, float]]:
    """GET /version every `interval` for `seconds` (a new connection each time); the spans (from the start)
    during which no answer came."""
    spans: list[tuple[float, float]] = []
    started = time.monotonic()
    down_since: float | None = None
    while time.monotonic() - started < seconds:           # bounded by `seconds`
        now = time.monotonic() - started
        try:
            endpoint.get_bytes("/version", timeout_s=1)
            if down_since is not None:
                spans.append((down_since, now))
                down_since = None
        except EndpointError:
            down_since = now if down_since is None else down_since
        time.sleep(interval)
    if down_since is not None:
        spans.append((down_since, seconds))
    return spans


def test_rebooting_the_vip_holder_takes_the_api_away_until_a_follower_takes_the_lease(
        simulator: SimulatorProcess) -> None:
    client = SimulatorClient(simulator.kubeconfig)
    api = Endpoint.from_kubeconfig(simulator.kubeconfig)
    nodes = sorted(client.node_power_states())
    client.power(nodes[1], "reboot")                       # not the holder: the API does not notice
    assert unanswered_spans(api, 2.0) == []
    client.power(nodes[0], "reboot")                       # the holder, cleanly: its lease is released
    [(began, ended)] = unanswered_spans(api, 3.0)
    assert began < 0.3, "the API went on answering while its node shut down"
    assert RETRY_SECONDS / SCALE * 0.8 <= ended - began <= RETRY_SECONDS / SCALE + 1.0, (began, ended)
    client.power(nodes[2], "reboot")                       # no longer relevant: nodes[1] or nodes[2] holds it now
    spans = unanswered_spans(api, 2.0)
    assert len(spans) <= 1


def test_a_power_cut_of_the_holder_waits_for_the_lease_to_expire(simulator: SimulatorProcess) -> None:
    client = SimulatorClient(simulator.kubeconfig)
    api = Endpoint.from_kubeconfig(simulator.kubeconfig)
    holder = sorted(client.node_power_states())[0]
    client.power(holder, "destroy")
    [(began, ended)] = unanswered_spans(api, 6.0)
    expected = (LEASE_SECONDS + RETRY_SECONDS) / SCALE
    assert began < 0.3 and expected * 0.8 <= ended - began <= expected + 1.0, (began, ended)
