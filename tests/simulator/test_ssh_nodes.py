"""Simulated nodes over real SSH, through the harness's own client (infra/ssh).

Every command a scenario uses, as a Harvester node answers it; a reboot and the session riding
through it (Node NotReady then Ready, seen through the API); power operations through the simulator
endpoint; host-key pinning and a changed key; password login that never reaches a log.
"""
from __future__ import annotations

import datetime
import json
import logging
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from pydantic import SecretStr
from pytest_bdd import scenarios

from infra.backends.simulated import SimulatorProcess, start_simulator_process
from infra.backends.simulator_client import SimulatorRefused
from infra.kube import Kube
from infra.kube.predicates import condition_status
from infra.report.redact import install_log_redaction, uninstall_log_redaction
from infra.simulator.harvester.helm_storage import history_entries
from infra.simulator.harvester.versions import get_version
from infra.simulator.nodes.commands import NodeServices, node_shell
from infra.simulator.nodes.files import NodeFiles
from infra.simulator.nodes.system import NodeSystem
from infra.ssh import (
    CommandTimeout,
    HostKeyChanged,
    KeyPair,
    KnownHosts,
    RemoteFileError,
    SshAuthFailed,
    SshNode,
    SshTarget,
    UnknownHostKey,
    generate_keypair,
)
from infra.ssh.known_hosts import describe, public_key
from infra.waits.budget import Budget, WaitTimeout

from ..conftest import simulator_request as _simulator_request

scenarios("node_power.feature")

NODE_PASSWORD = "p@ssword-never-logged-7c1e"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return generate_keypair(tmp_path_factory.mktemp("ssh-keys"))


@pytest.fixture(scope="module")
def ssh_simulator(tmp_path_factory: pytest.TempPathFactory, keys: KeyPair) -> Iterator[SimulatorProcess]:
    simulator = start_simulator_process("v1.4.2", time_scale=60, nodes=3, workdir=tmp_path_factory.mktemp("ssh-simulator"),
                              budget=Budget("simulator start in tests", 60), ssh_authorized_key=keys.public_key_file)
    try:
        yield simulator
    finally:
        simulator.stop()


def node_info(simulator: SimulatorProcess, name: str) -> dict[str, Any]:
    return next(n for n in simulator.info["nodes"] if n["name"] == name)


def target(simulator: SimulatorProcess, name: str, keys: KeyPair | None = None, *, pin: bool = True,
           password: str | None = None) -> SshTarget:
    info = node_info(simulator, name)
    return SshTarget(name, info["sshHost"], info["sshPort"], key_file=keys.private_key_file if keys else None,
                     password=SecretStr(password) if password else None, host_key=info["hostKey"] if pin else None)


@pytest.fixture
def node0(ssh_simulator: SimulatorProcess, keys: KeyPair, tmp_path: Path) -> Iterator[SshNode]:
    with SshNode(target(ssh_simulator, "harvester-node-0", keys), KnownHosts(tmp_path / "known_hosts")) as node:
        yield node


def simulator_call(simulator: SimulatorProcess, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    return _simulator_request(simulator.kubeconfig, path, body)


def simulator_refusal(simulator: SimulatorProcess, path: str, body: dict[str, Any]) -> tuple[int, str]:
    with pytest.raises(SimulatorRefused) as caught:
        simulator_call(simulator, path, body)
    return caught.value.status, caught.value.message


# --- commands --------------------------------------------------------------------------------------------
def test_os_release_names_the_harvester_version(node0: SshNode) -> None:
    result = node0.run("cat /etc/os-release", check=True)
    assert 'PRETTY_NAME="Harvester v1.4.2"' in result.stdout
    assert node0.os_release()["PRETTY_NAME"] == "Harvester v1.4.2"


def test_rke2_kubeconfig_is_roots_and_reaches_the_simulator(node0: SshNode, ssh_simulator: SimulatorProcess, tmp_path: Path) -> None:
    plain = node0.run("cat /etc/rancher/rke2/rke2.yaml")
    assert plain.exit_status == 1
    assert plain.stderr == "cat: /etc/rancher/rke2/rke2.yaml: Permission denied\n"
    config = yaml.safe_load(node0.sudo("cat /etc/rancher/rke2/rke2.yaml", check=True).stdout)
    assert config["clusters"][0]["cluster"]["server"] == ssh_simulator.info["url"]
    fetched = tmp_path / "rke2.yaml"
    fetched.write_text(yaml.safe_dump(config))
    names = [n["metadata"]["name"] for n in Kube(fetched).list("v1", "Node")]
    assert names == ["harvester-node-0", "harvester-node-1", "harvester-node-2"]


def test_kubectl_runs_the_real_binary_as_root(node0: SshNode) -> None:
    listed = node0.sudo("kubectl get nodes -o name", check=True)
    assert listed.stdout.split() == [f"node/harvester-node-{i}" for i in range(3)]
    piped = node0.sudo("kubectl get nodes --no-headers | grep -c Ready", check=True)
    assert piped.stdout == "3\n"
    as_rancher = node0.run("kubectl get nodes")
    assert as_rancher.exit_status == 1 and "permission denied" in as_rancher.stderr


def test_kubectl_absent_is_command_not_found() -> None:
    version = get_version("v1.4.2")
    system = NodeSystem.installed("harvester-node-0", version, "boot-1", uptime=datetime.timedelta(0))
    services = NodeServices(api=None, bridge=None, files=NodeFiles(""), kubeconfig_file=Path("/nonexistent"),  # type: ignore[arg-type]
                            kubectl_home=Path("/nonexistent"), request_power=lambda node, action: None,
                            find_kubectl=lambda: None)
    shell = node_shell(system, services)
    plain = shell.run("kubectl get nodes", stdin=lambda: "", uid=1000)
    assert (plain.status, plain.stderr) == (127, "bash: kubectl: command not found\n")
    under_sudo = shell.run("sudo kubectl get nodes", stdin=lambda: "", uid=1000)
    assert (under_sudo.status, under_sudo.stderr) == (1, "sudo: kubectl: command not found\n")


def test_helm_history_comes_from_the_release_secrets(node0: SshNode, ssh_simulator: SimulatorProcess) -> None:
    secrets = Kube(ssh_simulator.kubeconfig).list("v1", "Secret", "cattle-fleet-system", label_selector="owner=helm,name=fleet")
    expected = history_entries(secrets)
    assert expected, "the simulator seeds fleet's Helm history"
    as_yaml = node0.sudo("helm history fleet -n cattle-fleet-system -o yaml", check=True)
    assert yaml.safe_load(as_yaml.stdout) == expected
    as_json = node0.sudo("helm history fleet --namespace=cattle-fleet-system -o json", check=True)
    assert json.loads(as_json.stdout) == expected
    fleet = get_version("v1.4.2").rancher_dependencies["fleet"].chart_version
    assert expected[-1]["chart"] == f"fleet-{fleet}" and expected[-1]["status"] == "deployed"
    table = node0.sudo("helm history fleet -n cattle-fleet-system --max 1", check=True).stdout.splitlines()
    assert table[0].split("\t")[0].strip() == "REVISION" and len(table) == 2
    assert f"fleet-{fleet}" in table[1] and "deployed" in table[1]


def test_helm_history_of_a_missing_release_fails_as_helm_does(node0: SshNode) -> None:
    missing = node0.sudo("helm history no-such-release -n cattle-fleet-system -o yaml")
    assert (missing.exit_status, missing.stderr) == (1, "Error: release: not found\n")
    as_rancher = node0.run("helm history fleet -n cattle-fleet-system")
    assert as_rancher.exit_status == 1 and "Kubernetes cluster unreachable" in as_rancher.stderr


def test_journalctl_shows_the_units_start_up(node0: SshNode) -> None:
    rke2 = node0.run("journalctl -u rke2-server --no-pager -n 5", check=True).stdout.splitlines()
    assert len(rke2) == 5
    assert all(" harvester-node-0 " in line for line in rke2)
    assert any('msg="rke2 is up and running"' in line for line in rke2)
    started = node0.run("journalctl -u rke2-server --no-pager | grep 'Starting rke2'", check=True).stdout
    assert "v1.31.4+rke2r1" in started
    agent = node0.run("journalctl -u rancher-system-agent --no-pager -n 50", check=True).stdout
    assert "Rancher System Agent version" in agent and "rke2[" not in agent
    assert node0.run("journalctl -u no-such-unit --no-pager").stdout == "-- No entries --\n"
    assert node0.run("journalctl --bogus").exit_status == 1


def test_systemctl_is_active(node0: SshNode) -> None:
    active = node0.run("systemctl is-active rke2-server")
    assert (active.exit_status, active.stdout) == (0, "active\n")
    unknown = node0.run("systemctl is-active no-such-unit")
    assert (unknown.exit_status, unknown.stdout) == (3, "inactive\n")


def test_unknown_command_exits_127_like_bash(node0: SshNode) -> None:
    result = node0.run("frobnicate --now")
    assert (result.exit_status, result.stdout, result.stderr) == (127, "", "bash: frobnicate: command not found\n")
    with pytest.raises(AssertionError, match=r"`frobnicate --now` on harvester-node-0 exited with status 127"):
        result.check()


def test_lists_and_pipes(node0: SshNode) -> None:
    assert node0.run("false && echo no; echo yes").stdout == "yes\n"
    fallback = node0.run("cat /nonexistent || echo fallback")
    assert (fallback.exit_status, fallback.stdout) == (0, "fallback\n")
    assert fallback.stderr == "cat: /nonexistent: No such file or directory\n"
    assert node0.run("cat /etc/os-release | head -n 4 | tail -n 1").stdout == 'PRETTY_NAME="Harvester v1.4.2"\n'
    assert node0.run("cat /etc/os-release | grep -c =").stdout == "9\n"
    assert node0.run("grep -q Harvester /etc/os-release && echo found").stdout == "found\n"
    quiet = node0.run("cat /nonexistent 2>/dev/null; echo $?; echo out >&2")
    assert (quiet.stdout, quiet.stderr) == ("1\n", "out\n")
    unsupported = node0.run("(echo hi)")
    assert unsupported.exit_status == 2 and "subshell" in unsupported.stderr


def test_a_command_past_its_timeout_is_abandoned_and_stopped_on_the_node(node0: SshNode,
                                                                      ssh_simulator: SimulatorProcess) -> None:
    started = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"`sudo -n -- sh -c 'kubectl get nodes --watch'` on harvester-node-0 "
                                             r"did not finish within 2s"):
        node0.sudo("kubectl get nodes --watch", timeout=2)
    assert time.monotonic() - started < 10
    assert node0.run("true").ok, "the session is still usable after a timed-out command"

    def watching_kubectl() -> list[str]:
        found = subprocess.run(["pgrep", "-P", str(ssh_simulator.process.pid), "-f", "kubectl get nodes --watch"],
                               capture_output=True, text=True)
        return found.stdout.split()

    deadline = time.monotonic() + 10
    while watching_kubectl() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not watching_kubectl(), "the node kills the command of a closed session (as sshd's SIGHUP does)"


def test_sudo_runs_as_root(node0: SshNode) -> None:
    assert node0.run("whoami").stdout == "rancher\n"
    assert node0.run("sudo whoami").stdout == "root\n"
    assert node0.sudo("id -u && whoami", check=True).stdout == "0\nroot\n"


def test_sftp_get(node0: SshNode, tmp_path: Path) -> None:
    fetched = node0.get("/etc/os-release", tmp_path / "os-release")
    assert fetched.read_text() == node0.run("cat /etc/os-release").stdout
    with pytest.raises(RemoteFileError, match="cannot fetch /etc/rancher/rke2/rke2.yaml"):
        node0.get("/etc/rancher/rke2/rke2.yaml", tmp_path / "rke2.yaml")
    with pytest.raises(RemoteFileError, match="/var/log/nothing-here"):
        node0.get("/var/log/nothing-here", tmp_path / "nothing")


# --- reboots and power ------------------------------------------------------------------------------------
def test_reboot_rides_through_and_the_node_goes_not_ready_then_ready(
        ssh_simulator: SimulatorProcess, keys: KeyPair, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="harvester_e2e")
    kube = Kube(ssh_simulator.kubeconfig)
    node = "harvester-node-1"
    seen: dict[str, Any] = {}

    def watch_not_ready() -> None:
        seen["obj"] = kube.wait_for("v1", "Node", node, lambda o: condition_status(o, "Ready") == "Unknown",
                                    budget=Budget("Node NotReady during the reboot", 60), awaited="Ready Unknown")

    watcher = threading.Thread(target=watch_not_ready)
    watcher.start()
    with SshNode(target(ssh_simulator, node, keys), KnownHosts(tmp_path / "known_hosts")) as session:
        before = session.boot_id()
        started = time.monotonic()
        after = session.reboot(Budget("node back after reboot", 60))
        took = time.monotonic() - started
        watcher.join(60)
        assert after != before
        assert session.reconnects >= 1
        assert session.os_release()["PRETTY_NAME"] == "Harvester v1.4.2"     # the same session object, rebuilt
    ready = next(c for c in seen["obj"]["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("Unknown", "NodeStatusUnknown")
    assert {t["key"] for t in seen["obj"]["spec"]["taints"]} == {"node.kubernetes.io/unreachable"}
    back = kube.wait_for("v1", "Node", node, lambda o: condition_status(o, "Ready") == "True",
                         budget=Budget("Node Ready after the reboot", 60), awaited="Ready True")
    assert back["status"]["nodeInfo"]["bootID"] == after
    assert not back["spec"].get("taints")
    assert "ssh_transport_dropped" in caplog.text and "session rebuilt" in caplog.text
    journal = SshNode(target(ssh_simulator, node, keys), KnownHosts(tmp_path / "known_hosts")).run(
        "journalctl -u rke2-server --no-pager").stdout
    assert "Stopped Rancher Kubernetes Engine v2 (server)." in journal and f"-- Boot {after.replace('-', '')} --" in journal
    assert took < 30, f"a simulated reboot (about 2 s at x60) took {took:.1f}s"


def test_power_endpoint_shutdown_start_and_destroy(ssh_simulator: SimulatorProcess, keys: KeyPair, tmp_path: Path) -> None:
    node = "harvester-node-2"
    path = f"/simulator/v1/nodes/{node}/power"
    kube = Kube(ssh_simulator.kubeconfig)
    session = SshNode(target(ssh_simulator, node, keys), KnownHosts(tmp_path / "known_hosts"))
    session.wait_reachable(Budget("node up", 10))

    assert simulator_call(ssh_simulator, path, {"action": "shutdown"})["previousPower"] == "running"
    with pytest.raises(WaitTimeout) as refused:
        session.wait_reachable(Budget("SSH while the node is off", 1.5))
    assert node in str(refused.value) and "Unable to connect" in refused.value.last_seen
    kube.wait_for("v1", "Node", node, lambda o: condition_status(o, "Ready") == "Unknown",
                  budget=Budget("Node NotReady while off", 30), awaited="Ready Unknown")
    assert simulator_refusal(ssh_simulator, path, {"action": "reboot"}) == (409, f"node {node} is off: it is not running")

    simulator_call(ssh_simulator, path, {"action": "start"})
    session.wait_reachable(Budget("SSH after start", 30))
    kube.wait_for("v1", "Node", node, lambda o: condition_status(o, "Ready") == "True",
                  budget=Budget("Node Ready after start", 30), awaited="Ready True")
    assert simulator_refusal(ssh_simulator, path, {"action": "start"}) == (409, f"node {node} is running: it is not off")

    simulator_call(ssh_simulator, path, {"action": "destroy"})
    with pytest.raises(WaitTimeout):
        session.wait_reachable(Budget("SSH after destroy", 1.0))
    simulator_call(ssh_simulator, path, {"action": "start"})
    session.wait_reachable(Budget("SSH after start", 30))
    session.close()

    assert simulator_refusal(ssh_simulator, path, {"action": "hibernate"})[0] == 400
    assert simulator_refusal(ssh_simulator, "/simulator/v1/nodes/no-such-node/power", {"action": "reboot"}) == \
        (404, 'node "no-such-node" not found')


def test_a_dropped_connection_is_rebuilt_on_the_next_command(node0: SshNode, ssh_simulator: SimulatorProcess) -> None:
    node0.run("true", check=True)
    dropped = simulator_call(ssh_simulator, "/simulator/v1/nodes/harvester-node-0/disconnect", {})
    assert dropped["droppedSessions"] >= 1
    assert node0.run("hostname", check=True).stdout == "harvester-node-0\n"
    assert node0.reconnects == 1


# --- host keys ----------------------------------------------------------------------------------------------
def test_nodes_endpoint_publishes_the_keys_the_nodes_present(ssh_simulator: SimulatorProcess, keys: KeyPair,
                                                             tmp_path: Path) -> None:
    listed = simulator_call(ssh_simulator, "/simulator/v1/nodes")["items"]
    assert [n["sshPort"] for n in listed] == [n["sshPort"] for n in ssh_simulator.info["nodes"]]
    assert len({n["sshPort"] for n in listed}) == 3 and len({n["hostKey"] for n in listed}) == 3
    known = KnownHosts(tmp_path / "known_hosts")
    for node in listed:       # trust on first use records exactly the key the simulator published
        SshNode(target(ssh_simulator, node["name"], keys, pin=False), known).run("true", check=True)
        recorded = known.known_key(node["sshHost"], node["sshPort"])
        assert recorded is not None and describe(recorded) == f"ssh-ed25519 {node['hostKeyFingerprint']}"


def test_a_changed_host_key_is_refused_with_both_fingerprints(ssh_simulator: SimulatorProcess, keys: KeyPair,
                                                              tmp_path: Path) -> None:
    node0, node1 = node_info(ssh_simulator, "harvester-node-0"), node_info(ssh_simulator, "harvester-node-1")
    known_hosts = tmp_path / "known_hosts"      # recorded earlier in the run: node-1's key at node-0's address
    known_hosts.write_text(f"[127.0.0.1]:{node0['sshPort']} {node1['hostKey']}\n")
    session = SshNode(target(ssh_simulator, "harvester-node-0", keys, pin=False), KnownHosts(known_hosts),
                      reconnect_budget=Budget("SSH session rebuilt", 60))
    started = time.monotonic()
    with pytest.raises(HostKeyChanged) as caught:
        session.run("true")
    assert time.monotonic() - started < 10, "a changed key is refused at once, never retried"
    message = str(caught.value)
    assert f"[127.0.0.1]:{node0['sshPort']}" in message and "CHANGED" in message and "harvester-node-0" in message
    assert node1["hostKeyFingerprint"] in message and node0["hostKeyFingerprint"] in message
    assert known_hosts.read_text().split()[2] == node1["hostKey"].split()[1], "the refused key is not recorded"

    pinned_wrong = SshTarget("harvester-node-0", "127.0.0.1", node0["sshPort"], key_file=keys.private_key_file,
                             host_key=node1["hostKey"])
    with pytest.raises(HostKeyChanged, match="pinned from provisioning"):
        SshNode(pinned_wrong, KnownHosts(tmp_path / "pinned")).run("true")


def test_pinned_key_connects_and_strict_mode_refuses_unknown(ssh_simulator: SimulatorProcess, keys: KeyPair,
                                                            tmp_path: Path) -> None:
    pinned = SshNode(target(ssh_simulator, "harvester-node-0", keys), KnownHosts(tmp_path / "pinned"))
    assert pinned.run("true").ok
    strict = KnownHosts(tmp_path / "strict", trust_on_first_use=False)
    with pytest.raises(UnknownHostKey):
        SshNode(target(ssh_simulator, "harvester-node-0", keys, pin=False), strict).run("true")
    assert public_key(node_info(ssh_simulator, "harvester-node-0")["hostKey"]) == \
        KnownHosts(tmp_path / "pinned").known_key("127.0.0.1", node_info(ssh_simulator, "harvester-node-0")["sshPort"])


# --- password login -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def password_simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    workdir = tmp_path_factory.mktemp("password-simulator")
    password_file = workdir / "node-password"
    password_file.touch(mode=0o600)
    password_file.write_text(NODE_PASSWORD)
    simulator = start_simulator_process("v1.4.2", time_scale=60, nodes=1, workdir=workdir,
                              budget=Budget("simulator start in tests", 60), ssh_password_file=password_file)
    try:
        yield simulator
    finally:
        simulator.stop()


def test_password_login_and_sudo_never_log_the_password(password_simulator: SimulatorProcess, keys: KeyPair, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    uninstall_log_redaction()       # prove the harness never writes it, rather than the redactor hiding it
    try:
        caplog.set_level(logging.DEBUG)
        known = KnownHosts(tmp_path / "known_hosts")
        session = SshNode(target(password_simulator, "harvester-node-0", password=NODE_PASSWORD), known)
        assert session.run("whoami", check=True).stdout == "rancher\n"
        assert session.run("sudo -n whoami").stderr == "sudo: a password is required\n"
        assert session.sudo("whoami", check=True).stdout == "root\n"       # falls back to sudo -S
        assert session.sudo("cat /etc/hostname", check=True).stdout == "harvester-node-0\n"
        wrong = SshNode(target(password_simulator, "harvester-node-0", password="not-" + NODE_PASSWORD), known)
        with pytest.raises(SshAuthFailed) as refused:
            wrong.run("true")
        with pytest.raises(SshAuthFailed, match="refused authentication with key"):
            SshNode(target(password_simulator, "harvester-node-0", keys), known).run("true")
        texts = [caplog.text, str(refused.value), repr(refused.value), repr(session.target), repr(session)]
        assert not any(NODE_PASSWORD in text for text in texts)
        assert "Auth" in caplog.text, "the debug log of the login was captured"
    finally:
        install_log_redaction()
