"""The simulator as a Harvester appliance's API: `--this-machine` (the one Node is the machine it runs on)
and `--state-dir` (the cluster survives a restart, as etcd and RKE2's files make a real one survive).

Each test starts `python -m infra.simulator` as the appliance does, only on 127.0.0.1 with port 0 and
temporary paths, and talks to it with the kubernetes client and kubectl 1.32 as a user would.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import kubernetes
import pytest
import yaml
from cryptography import x509
from kubernetes.client.rest import ApiException

from infra.backends.simulator_client import SimulatorClient, SimulatorRefused
from infra.harvester.machines import consistency_problems, list_nodes_and_machines
from infra.harvester.precheck import dry_run_upgrade
from infra.kube import Kube
from infra.simulator.apiserver.server import url_host
from infra.simulator.apiserver.store import Store, TooOldResourceVersion
from infra.simulator.persistence import read_state, state_path

REPO = Path(__file__).resolve().parents[2]
KUBECTL = REPO / ".cache" / "bin" / "kubectl-1.32"
VERSION = "v1.5.1"
TLS_SAN, NODE_IP = "10.0.2.10", "10.0.2.15"          # only written into the certificate and the Node
HOSTNAME = socket.gethostname().strip().lower()       # kubelet's node name: the hostname, lower-cased
START_SECONDS = 60.0


@dataclass
class Appliance:
    """One run of the simulator in --this-machine mode over a state directory."""

    process: subprocess.Popen[bytes]
    root: Path
    info: dict[str, Any]

    @property
    def kubeconfig(self) -> Path:
        return self.root / "etc" / "rancher" / "rke2" / "rke2.yaml"

    def core(self, kubeconfig: Path | None = None) -> kubernetes.client.CoreV1Api:
        client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig or self.kubeconfig))
        return kubernetes.client.CoreV1Api(client)

    def custom(self) -> kubernetes.client.CustomObjectsApi:
        return kubernetes.client.CustomObjectsApi(
            kubernetes.config.new_client_from_config(config_file=str(self.kubeconfig)))

    def node(self) -> Any:
        return self.core().read_node(HOSTNAME)

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(30)

    def log(self) -> str:
        return (self.root / "simulator.log").read_text(errors="replace")


def command(root: Path, *, version: str = VERSION, extra: tuple[str, ...] = ()) -> list[str]:
    """The appliance's command line, on 127.0.0.1 with an ephemeral port and paths under `root`."""
    return [sys.executable, "-m", "infra.simulator", "--this-machine", "--state-dir", str(root / "state"),
            "--bind", "127.0.0.1", "--port", "0", "--tls-san", TLS_SAN, "--node-ip", NODE_IP,
            "--kubeconfig", str(root / "etc" / "rancher" / "rke2" / "rke2.yaml"), "--version", version,
            "--ready-file", str(root / "run" / "ready.json"), "--log-level", "INFO", *extra]


def wait_for(what: str, check: Callable[[], Any], seconds: float, interval: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; fail saying `what` once `seconds` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {seconds:g}s")
        time.sleep(interval)


def start(root: Path, *, extra: tuple[str, ...] = ()) -> Appliance:
    ready = root / "run" / "ready.json"
    ready.unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "simulator.log", "ab") as log:
        process = subprocess.Popen(command(root, extra=extra), stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, cwd=REPO)

    def ready_or_dead() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the simulator exited with {process.returncode}:\n"
                                 f"{(root / 'simulator.log').read_text(errors='replace')[-3000:]}")
        return ready.exists()
    wait_for("the ready file", ready_or_dead, START_SECONDS)
    return Appliance(process, root, json.loads(ready.read_text()))


@pytest.fixture
def appliances(tmp_path: Path) -> Iterator[Callable[..., Appliance]]:
    """Start the appliance's simulator (again) over tmp_path; whatever still runs is killed at the end."""
    started: list[Appliance] = []

    def run(extra: tuple[str, ...] = ()) -> Appliance:
        appliance = start(tmp_path, extra=extra)
        started.append(appliance)
        return appliance
    yield run
    for appliance in started:
        if appliance.process.poll() is None:
            appliance.process.kill()
            appliance.process.wait(10)


def condition(node: Any, kind: str) -> Any:
    return next(c for c in node.status.conditions if c.type == kind)


def configmap(name: str) -> kubernetes.client.V1ConfigMap:
    return kubernetes.client.V1ConfigMap(metadata=kubernetes.client.V1ObjectMeta(name=name), data={"kept": name})


def saved_configmaps(root: Path) -> dict[str, str]:
    """name -> uid of the default namespace's ConfigMaps in the state file, as a restart would load them."""
    saved = read_state(root / "state")
    if saved is None:
        return {}
    return {item["name"]: item["object"]["metadata"]["uid"]
            for entry in saved.store["types"] if (entry["group"], entry["plural"]) == ("", "configmaps")
            for item in entry["objects"] if item["namespace"] == "default"}


# ---- the node is this machine ------------------------------------------------------------------------

def test_the_one_node_is_this_machine_with_its_boot_id_and_address(appliances: Callable[..., Appliance]) -> None:
    appliance = appliances()
    nodes = appliance.core().list_node().items
    assert [n.metadata.name for n in nodes] == [HOSTNAME]
    node = nodes[0]
    assert node.status.node_info.boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    if Path("/etc/machine-id").exists():
        assert node.status.node_info.machine_id == Path("/etc/machine-id").read_text().strip()
    assert condition(node, "Ready").status == "True"
    assert {(a.type, a.address) for a in node.status.addresses} == {("InternalIP", NODE_IP), ("Hostname", HOSTNAME)}
    assert node.metadata.annotations["rke2.io/internal-ip"] == NODE_IP
    assert node.spec.provider_id == f"rke2://{HOSTNAME}"
    assert appliance.info["nodes"] == [], "no simulated machine pretends to be this one"
    assert appliance.info["thisMachine"]["name"] == HOSTNAME


def test_kubectl_sees_the_node_through_the_rke2_style_kubeconfig(appliances: Callable[..., Appliance]) -> None:
    if not KUBECTL.exists():
        pytest.skip("kubectl 1.32 is not in .cache/bin")
    appliance = appliances()
    config = yaml.safe_load(appliance.kubeconfig.read_text())
    assert oct(appliance.kubeconfig.stat().st_mode & 0o777) == "0o600"
    assert config["clusters"][0]["cluster"]["server"] == appliance.info["url"]
    assert appliance.info["url"].startswith("https://127.0.0.1:")
    assert config["users"][0]["user"]["token"]
    result = subprocess.run([str(KUBECTL), "--kubeconfig", str(appliance.kubeconfig), "get", "nodes", "-o", "name"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [f"node/{HOSTNAME}"]


def test_the_serving_certificate_names_the_tls_sans_and_the_node(appliances: Callable[..., Appliance]) -> None:
    appliance = appliances()
    port = int(appliance.info["url"].rsplit(":", 1)[1])
    pem = ssl.get_server_certificate(("127.0.0.1", port))
    sans = x509.load_pem_x509_certificate(pem.encode()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    names = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} | set(sans.get_values_for_type(x509.DNSName))
    assert {"127.0.0.1", "localhost", TLS_SAN, NODE_IP, HOSTNAME} <= names


def test_the_heartbeat_is_posted_as_a_kubelet_posts_it(appliances: Callable[..., Appliance]) -> None:
    appliance = appliances(extra=("--node-status-interval", "1"))
    first = condition(appliance.node(), "Ready")

    def newer_heartbeat() -> Any:
        ready = condition(appliance.node(), "Ready")
        return ready if ready.last_heartbeat_time > first.last_heartbeat_time else None
    later = wait_for("a newer Ready heartbeat", newer_heartbeat, 10)
    assert later.status == "True"
    assert later.last_transition_time == first.last_transition_time, "a heartbeat is no transition"


def test_no_simulated_power_or_ssh_for_this_machine(appliances: Callable[..., Appliance]) -> None:
    appliance = appliances()
    client = SimulatorClient(appliance.kubeconfig)
    assert client._call("GET", "/simulator/v1/nodes") == {"items": []}  # noqa: SLF001 - the raw route
    with pytest.raises(SimulatorRefused) as refused:
        client.power(HOSTNAME, "reboot")
    assert refused.value.status == 501
    assert "this machine" in refused.value.message and HOSTNAME in refused.value.message


def test_machines_match_the_node_so_an_upgrade_passes_admission(appliances: Callable[..., Appliance]) -> None:
    appliance = appliances()
    kube = Kube(appliance.kubeconfig, unavailable_budget=20)
    nodes, machines = list_nodes_and_machines(kube)
    assert consistency_problems(nodes, machines) == []
    assert [m["status"]["nodeRef"]["name"] for m in machines] == [HOSTNAME]
    assert [m["spec"]["providerID"] for m in machines] == [f"rke2://{HOSTNAME}"]
    assert nodes[0]["metadata"]["annotations"]["cluster.x-k8s.io/machine"] == machines[0]["metadata"]["name"]
    assert machines[0]["status"]["nodeInfo"]["bootID"] == nodes[0]["status"]["nodeInfo"]["bootID"]
    release = next(r for r in appliance.info["releases"] if r["version"] == "v1.5.2")
    kube.create({"apiVersion": "harvesterhci.io/v1beta1", "kind": "Version",
                 "metadata": {"name": "v1.5.2", "namespace": "harvester-system"},
                 "spec": {"isoURL": release["isoURL"], "isoChecksum": release["isoChecksum"]}})
    result = dry_run_upgrade(kube, "v1.5.2", "test-this-machine")
    assert result.admitted, result.summary()        # v1.5.1 checks Nodes against Machines one to one


def test_an_upgrade_stops_at_the_node_stage_saying_why(appliances: Callable[..., Appliance]) -> None:
    """The simulated node upgrade needs a simulated machine (OS staging, reboot): here the Upgrade fails
    with that reason instead of waiting forever for a reboot that never comes."""
    appliance = appliances(extra=("--time-scale", "3000"))
    release = next(r for r in appliance.info["releases"] if r["version"] == "v1.5.2")
    custom = appliance.custom()
    custom.create_namespaced_custom_object("harvesterhci.io", "v1beta1", "harvester-system", "versions", {
        "apiVersion": "harvesterhci.io/v1beta1", "kind": "Version",
        "metadata": {"name": "v1.5.2", "namespace": "harvester-system"},
        "spec": {"isoURL": release["isoURL"], "isoChecksum": release["isoChecksum"]}})
    custom.create_namespaced_custom_object("harvesterhci.io", "v1beta1", "harvester-system", "upgrades", {
        "apiVersion": "harvesterhci.io/v1beta1", "kind": "Upgrade",
        "metadata": {"name": "to-v1-5-2", "namespace": "harvester-system"}, "spec": {"version": "v1.5.2"}})

    def completed() -> Any:
        upgrade: dict[str, Any] = custom.get_namespaced_custom_object(
            "harvesterhci.io", "v1beta1", "harvester-system", "upgrades", "to-v1-5-2")
        found = [c for c in (upgrade.get("status") or {}).get("conditions") or []
                 if c["type"] == "Completed" and c["status"] != "Unknown"]
        return found[0] if found else None
    done = wait_for("the Upgrade's Completed condition True or False", completed, 60, interval=0.5)
    assert done["status"] == "False"
    assert "is this machine (--this-machine)" in done["reason"] + done.get("message", "")
    assert appliance.process.poll() is None


# ---- the state survives a restart --------------------------------------------------------------------

def test_a_restart_brings_back_the_objects_the_ca_and_the_token(appliances: Callable[..., Appliance],
                                                               tmp_path: Path) -> None:
    first = appliances()
    core = first.core()
    created = core.create_namespaced_config_map("default", configmap("kept"))
    listed_rv = core.list_namespaced_config_map("default").metadata.resource_version
    node_before = first.node()
    old_kubeconfig = tmp_path / "old-rke2.yaml"
    old_kubeconfig.write_bytes(first.kubeconfig.read_bytes())
    assert first.stop(signal.SIGTERM) == 0, first.log()[-2000:]

    second = appliances()
    # The kubeconfig handed out before: same CA and token; only the port differs (port 0 on the host).
    config = yaml.safe_load(old_kubeconfig.read_text())
    config["clusters"][0]["cluster"]["server"] = second.info["url"]
    old_kubeconfig.write_text(yaml.safe_dump(config))
    core = second.core(old_kubeconfig)
    kept = core.read_namespaced_config_map("kept", "default")
    assert (kept.metadata.uid, kept.metadata.resource_version, kept.metadata.creation_timestamp, kept.data) == \
        (created.metadata.uid, created.metadata.resource_version, created.metadata.creation_timestamp, {"kept": "kept"})
    newer = core.create_namespaced_config_map("default", configmap("newer"))
    assert int(newer.metadata.resource_version) > int(listed_rv), "resourceVersions only grow"

    node_after = second.node()
    assert node_after.metadata.uid == node_before.metadata.uid
    assert condition(node_after, "Ready").last_transition_time == condition(node_before, "Ready").last_transition_time, \
        "same boot: no new Ready transition"
    rewritten = yaml.safe_load(second.kubeconfig.read_text())
    assert (rewritten["clusters"][0]["cluster"]["certificate-authority-data"], rewritten["users"][0]["user"]) == \
        (config["clusters"][0]["cluster"]["certificate-authority-data"], config["users"][0]["user"])

    with pytest.raises(ApiException) as gone:       # the event history did not survive: re-list
        for _ in kubernetes.watch.Watch().stream(core.list_namespaced_config_map, "default",
                                                 resource_version=listed_rv, timeout_seconds=5,
                                                 _request_timeout=10):
            pass
    assert gone.value.status == 410
    fresh_rv = core.list_namespaced_config_map("default").metadata.resource_version
    events = kubernetes.watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=fresh_rv,
                                             timeout_seconds=1, _request_timeout=10)
    assert list(events) == [], "a watch from a version listed after the restart starts cleanly"


def test_a_reboot_of_the_machine_is_a_new_ready_transition(appliances: Callable[..., Appliance]) -> None:
    first = appliances()
    assert first.stop() == 0
    # As if the machine booted since: the stored boot id is another one (and the Ready transition long ago).
    path = state_path(first.root / "state")
    state = json.loads(path.read_text())
    nodes = next(t for t in state["store"]["types"] if (t["group"], t["plural"]) == ("", "nodes"))
    stored = nodes["objects"][0]["object"]["status"]
    stored["nodeInfo"]["bootID"] = "00000000-0000-0000-0000-000000000000"
    for stored_condition in stored["conditions"]:
        stored_condition["lastTransitionTime"] = "2020-01-01T00:00:00Z"
    path.write_text(json.dumps(state))

    restarted = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    second = appliances()
    node = second.node()
    assert node.status.node_info.boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    ready = condition(node, "Ready")
    assert ready.status == "True"
    assert ready.last_transition_time >= restarted, "the reboot shows as a fresh Ready transition"
    machine = second.custom().list_namespaced_custom_object("cluster.x-k8s.io", "v1beta1", "fleet-local", "machines")
    assert [m["status"]["nodeInfo"]["bootID"] for m in machine["items"]] == [node.status.node_info.boot_id]


def test_a_deleted_node_registers_again_at_the_next_start(appliances: Callable[..., Appliance]) -> None:
    first = appliances()
    old_uid = first.node().metadata.uid
    first.core().delete_node(HOSTNAME)
    assert first.stop() == 0

    second = appliances()
    node = second.node()
    assert node.metadata.uid != old_uid and condition(node, "Ready").status == "True"
    nodes, machines = list_nodes_and_machines(Kube(second.kubeconfig, unavailable_budget=20))
    assert consistency_problems(nodes, machines) == []
    assert [m["status"]["nodeRef"]["uid"] for m in machines] == [node.metadata.uid]


def test_a_crash_loses_nothing_older_than_a_second(appliances: Callable[..., Appliance]) -> None:
    first = appliances()
    created = first.core().create_namespaced_config_map("default", configmap("before-crash"))
    wait_for("the ConfigMap in the state file", lambda: "before-crash" in saved_configmaps(first.root), 2.0)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL

    second = appliances()
    kept = second.core().read_namespaced_config_map("before-crash", "default")
    assert kept.metadata.uid == created.metadata.uid


def test_another_version_over_a_saved_state_is_refused(appliances: Callable[..., Appliance]) -> None:
    first = appliances()
    assert first.stop() == 0
    result = subprocess.run(command(first.root, version="v1.5.2"), capture_output=True, text=True, timeout=60,
                            cwd=REPO)
    assert result.returncode == 2, result.stderr
    assert "--version v1.5.2" in result.stderr and "harvesterVersion v1.5.1" in result.stderr
    assert json.loads(state_path(first.root / "state").read_text())["harvesterVersion"] == "v1.5.1", \
        "a refused start leaves the state alone"


def test_the_state_is_private(appliances: Callable[..., Appliance]) -> None:
    appliance = appliances()
    state = appliance.root / "state"
    assert oct(state.stat().st_mode & 0o777) == "0o700"
    assert oct(state_path(state).stat().st_mode & 0o777) == "0o600"
    assert os.listdir(state) == ["state.json"]


# ---- units ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("bind", "host"), [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"),
                                            ("::", "127.0.0.1"), ("10.0.2.15", "10.0.2.15"), ("::1", "[::1]")])
def test_a_wildcard_listener_is_reached_on_127_0_0_1(bind: str, host: str) -> None:
    """--bind 0.0.0.0 still hands out https://127.0.0.1:<port>, as RKE2's rke2.yaml does."""
    assert url_host(bind) == host


def test_a_loaded_store_has_the_objects_a_higher_counter_and_no_history() -> None:
    store = Store()
    meta = {"name": "a", "namespace": "ns", "uid": "u-1"}
    store.put(("", "configmaps"), ("ns", "a"), {"metadata": dict(meta), "data": {"k": "v"}}, "ADDED", None)
    store.put(("apps", "deployments"), ("ns", "d"), {"metadata": {"name": "d", "namespace": "ns"}}, "ADDED", None)
    saved_rv = store.resource_version
    dump = json.loads(json.dumps(store.dump()))          # through JSON, as the state file carries it

    loaded = Store()
    loaded.load(dump)
    assert loaded.get(("", "configmaps"), ("ns", "a")) == store.get(("", "configmaps"), ("ns", "a"))
    assert loaded.list(("apps", "deployments")) == store.list(("apps", "deployments"))
    assert loaded.resource_version > saved_rv
    with pytest.raises(TooOldResourceVersion):
        loaded.watch(("", "configmaps"), saved_rv, lambda event: True)
    watcher, replay = loaded.watch(("", "configmaps"), loaded.resource_version, lambda event: True)
    assert replay == []
    loaded.unwatch(watcher)
    put = loaded.put(("", "configmaps"), ("ns", "b"), {"metadata": {"name": "b", "namespace": "ns"}}, "ADDED", None)
    assert int(put["metadata"]["resourceVersion"]) > saved_rv


def test_a_dump_of_another_format_is_refused() -> None:
    with pytest.raises(ValueError, match="format"):
        Store().load({"format": 99, "resourceVersion": 1, "types": []})
