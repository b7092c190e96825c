"""The fault classes a chaos run injects that the simulator added for it, each seen from the client side.

- `sshDrop`: the next N SSH commands lose their connection mid-command (the command ran, part of its output
  went out, no exit status). The harness's SSH client re-runs a read-only command on a rebuilt transport and
  refuses to guess for one that must not run twice.
- `slowPhases`: for a while every simulated duration takes `factor` times as long (a slow phase, still
  progressing), and a factor below 1 is refused.
- `errorBurst` with 429: answered as kube-apiserver's max-in-flight filter does (TooManyRequests,
  Retry-After), and ridden through by the harness's client.
- `GET /simulator/v1/faults`: what is armed and what has fired.
"""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Iterator

import paramiko
import pytest

from infra.backends.simulated import SimulatorProcess, start_simulator_process
from infra.backends.simulator_client import SimulatorClient, SimulatorRefused
from infra.kube import Kube
from infra.simulator.apiserver.faults import Faults
from infra.simulator.simulator import SimClock
from infra.ssh import KeyPair, KnownHosts, SshNode, SshTarget, generate_keypair
from infra.ssh.result import CommandInterrupted
from infra.waits.budget import Budget

TIME_SCALE = 120.0
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return generate_keypair(tmp_path_factory.mktemp("ssh-keys"))


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory, keys: KeyPair) -> Iterator[SimulatorProcess]:
    process = start_simulator_process("v1.5.1", time_scale=TIME_SCALE, nodes=3, workdir=tmp_path_factory.mktemp("simulator"),
                                 budget=Budget("simulator start in tests", 60), ssh_authorized_key=keys.public_key_file)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def client(simulator: SimulatorProcess) -> SimulatorClient:
    return SimulatorClient(simulator.kubeconfig)


def _node(simulator: SimulatorProcess, keys: KeyPair, known_hosts: Path, index: int = 0) -> SshNode:
    info = simulator.info["nodes"][index]
    return SshNode(SshTarget(info["name"], info["sshHost"], info["sshPort"], key_file=keys.private_key_file,
                             host_key=info["hostKey"]), KnownHosts(known_hosts))


def _fired(client: SimulatorClient, name: str) -> int:
    return int(client.fault_state()["fired"].get(name, 0))


# --- SSH connections dropped mid-command -------------------------------------------------------------------
def test_an_ssh_drop_cuts_the_command_off_after_part_of_its_output(simulator: SimulatorProcess, keys: KeyPair,
                                                                   client: SimulatorClient) -> None:
    info = simulator.info["nodes"][1]
    raw = paramiko.SSHClient()
    raw.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    raw.connect(info["sshHost"], info["sshPort"], username=info["sshUser"],
                pkey=paramiko.PKey.from_path(keys.private_key_file), look_for_keys=False, allow_agent=False)
    try:
        before = _fired(client, "sshDrop")
        assert client.inject(sshDrop={"count": 1})["applied"] == {"sshDrop": {"count": 1}}
        assert client.fault_state()["armed"]["sshDrop"] == 1
        stdin, stdout, _ = raw.exec_command("cat /etc/os-release", timeout=10)
        stdin.channel.shutdown_write()               # as the harness does once the exec is answered
        received = stdout.read()                     # until the connection is gone
        transport = raw.get_transport()
        assert transport is None or not transport.is_active(), "the connection was dropped"
        assert stdout.channel.recv_exit_status() == -1, "a dropped command never reports an exit status"
        assert 0 < len(received) and b"PRETTY_NAME" not in received.split(b"\n")[-1]
        assert _fired(client, "sshDrop") == before + 1
        assert client.fault_state()["armed"]["sshDrop"] == 0
    finally:
        raw.close()


def test_the_harness_reruns_a_read_only_command_cut_off_by_a_drop(simulator: SimulatorProcess, keys: KeyPair,
                                                                  client: SimulatorClient, tmp_path: Path) -> None:
    with _node(simulator, keys, tmp_path / "known_hosts") as node:
        assert node.run("true").ok                   # a live session first: the drop hits it mid-command
        client.inject(sshDrop={"count": 2})
        release = node.os_release()
        assert release["PRETTY_NAME"] == "Harvester v1.5.1", "the second answer is whole, not the cut-off half"
        assert node.reconnects >= 1
        assert node.boot_id()                        # the second drop: ridden through as well
        assert client.fault_state()["armed"]["sshDrop"] == 0


def test_a_command_that_must_not_run_twice_is_reported_as_interrupted(simulator: SimulatorProcess, keys: KeyPair,
                                                                      client: SimulatorClient, tmp_path: Path) -> None:
    with _node(simulator, keys, tmp_path / "known_hosts", index=2) as node:
        assert node.run("true").ok
        client.inject(sshDrop={"count": 1})
        with pytest.raises(CommandInterrupted, match="may or may not have completed"):
            node.run("echo once", idempotent=False)
        assert node.run("echo again", check=True).stdout == "again\n"     # the session is rebuilt afterwards


# --- slow phases -----------------------------------------------------------------------------------------
def test_slow_phases_stretch_simulated_durations_only_while_armed() -> None:
    faults = Faults()
    clock = SimClock(60.0, faults)

    def timed(simulated_seconds: float) -> float:
        started = time.monotonic()
        asyncio.run(clock.sleep(simulated_seconds))
        return time.monotonic() - started

    assert timed(6) < 0.4                            # 6 simulated seconds = 0.1 s at x60
    faults.slow_phases(5.0, seconds=2.0)
    assert timed(6) >= 0.5                           # x5 while armed
    assert faults.fired["slowedSteps"] == 1
    faults.slow_until = 0.0                          # the window is over
    assert timed(6) < 0.4
    with pytest.raises(ValueError, match="at least 1"):
        faults.slow_phases(0.5, seconds=1.0)


def _reboot_seconds(simulator: SimulatorProcess, client: SimulatorClient, node: str) -> float:
    """From a reboot request until the Node is Ready again with a new boot id (shutdown 5 s, boot 120 s and
    kubelet 30 s simulated: ~1.3 s at x120)."""
    kube = Kube(simulator.kubeconfig)
    boot_id = kube.get("v1", "Node", node)["status"]["nodeInfo"]["bootID"]
    started = time.monotonic()
    client.power(node, "reboot")
    kube.wait_for("v1", "Node", node, lambda o: o is not None and o["status"]["nodeInfo"]["bootID"] != boot_id
                  and any(c["type"] == "Ready" and c["status"] == "True" for c in o["status"]["conditions"]),
                  budget=Budget("a simulated node reboots", 60), awaited=f"{node} Ready after a reboot")
    return time.monotonic() - started


def test_a_slow_phase_makes_a_node_reboot_take_longer_but_it_completes(simulator: SimulatorProcess, client: SimulatorClient) -> None:
    node = simulator.info["nodes"][0]["name"]
    normal = _reboot_seconds(simulator, client, node)
    before = _fired(client, "slowedSteps")
    assert client.inject(slowPhases={"factor": 4, "seconds": 30})["applied"]["slowPhases"]["factor"] == 4
    slowed = _reboot_seconds(simulator, client, node)
    client.inject(slowPhases={"factor": 1, "seconds": 0.01})       # disarm for the other tests
    assert slowed >= 4 * (5 + 120 + 30) / TIME_SCALE * 0.95, (normal, slowed)
    assert slowed > normal * 1.5, (normal, slowed)
    assert _fired(client, "slowedSteps") >= before + 2


def test_a_slow_phase_that_would_speed_things_up_is_refused(client: SimulatorClient) -> None:
    with pytest.raises(SimulatorRefused) as refused:
        client.inject(slowPhases={"factor": 0.5, "seconds": 5})
    assert refused.value.status == 400 and "at least 1" in refused.value.message


# --- 429 bursts ------------------------------------------------------------------------------------------
def test_a_429_burst_is_answered_as_kube_apiserver_does_and_ridden_through(simulator: SimulatorProcess,
                                                                          client: SimulatorClient) -> None:
    import requests

    from infra.https import Endpoint

    endpoint = Endpoint.from_kubeconfig(simulator.kubeconfig)
    client.inject(errorBurst={"count": 1, "code": 429})
    token = endpoint.token.get_secret_value() if endpoint.token else ""
    answer = requests.get(f"{simulator.info['url']}/api/v1/namespaces", headers={"Authorization": f"Bearer {token}"},
                          verify=str(endpoint.ca_file), timeout=10)
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "1"
    assert answer.json()["reason"] == "TooManyRequests"
    before = _fired(client, "errorBurst429")
    client.inject(errorBurst={"count": 3, "code": 429})
    assert Kube(simulator.kubeconfig).get("v1", "Namespace", "default")["metadata"]["name"] == "default"
    assert _fired(client, "errorBurst429") == before + 3


# --- the API server restarting -----------------------------------------------------------------------------
def test_an_api_restart_refuses_the_api_but_not_the_release_mirror(simulator: SimulatorProcess, client: SimulatorClient) -> None:
    """The lab's release mirror is a server of its own: while the API server restarts, an upgrade's image
    import still reaches the ISO (on the simulator they once shared a listener, and every upgrade caught by an
    injected restart in ImageReady failed: a false failure that `harvester-e2e chaos` found)."""
    import socket

    import requests

    release = next(r for r in simulator.info["releases"] if r["version"] == "v1.5.2")
    ca = simulator.workdir / "mirror-ca.pem"
    ca.write_text(simulator.info["caPem"])
    api_port = int(simulator.info["url"].rsplit(":", 1)[1])
    assert f":{api_port}/" not in release["isoURL"], "the mirror listens apart from the API server"
    client.inject(refuseConnectionsSeconds=3)
    deadline = Budget("the API listener closes", 5).start()
    while not deadline.expired():                    # the listener closes 50 ms after the answer
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", api_port)) != 0:
                break
        time.sleep(0.02)
    else:
        raise AssertionError("the API server never refused a connection")
    answer = requests.head(release["isoURL"], verify=str(ca), timeout=5)
    assert answer.status_code == 200 and int(answer.headers["Content-Length"]) > 0
    assert Kube(simulator.kubeconfig).get("v1", "Namespace", "default"), "and the API is back after the restart"


# --- a node's SSH port while it reboots -------------------------------------------------------------------
def test_a_rebooting_node_keeps_its_ssh_port_so_nothing_else_can_take_it(simulator: SimulatorProcess, client: SimulatorClient) -> None:
    """While a node is down its port refuses connections but stays bound: on a busy machine an outgoing
    connection once took a rebooting node's port, the node could not listen again after its boot and the
    upgrade never ended (found by `harvester-e2e chaos`, with no fault involved)."""
    import socket

    node = simulator.info["nodes"][2]
    client.power(node["name"], "shutdown")
    try:
        deadline = Budget("the node goes down", 10).start()
        while client.node_power_states()[node["name"]] != "off" and not deadline.expired():
            time.sleep(0.05)                         # the simulator has no watch for power states: poll it
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", node["sshPort"])) != 0, "a node that is off refuses SSH"
        with socket.socket() as other:
            try:
                other.bind(("127.0.0.1", node["sshPort"]))
                taken = True
            except OSError:
                taken = False
        assert not taken, "another socket could take the port of a node that is down"
    finally:
        client.power(node["name"], "start")
    deadline = Budget("the node boots", 30).start()
    while client.node_power_states()[node["name"]] != "running" and not deadline.expired():
        time.sleep(0.05)                             # sshd listens again as the node turns running
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", node["sshPort"])) == 0, "the node answers on its port again"
