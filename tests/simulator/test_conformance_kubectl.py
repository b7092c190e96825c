"""The simulator behaves like kube-apiserver for real kubectl: what QA types works, at every simulated version
with the kubectl minor that version's RKE2 ships, and with every other kubectl minor the project pins.

One simulator per version (started once, stopped when the next version's cells begin), one kubectl HOME per
cell (its own discovery cache). `python -m tests.simulator.kubectl_matrix` prints the result table.
"""
from __future__ import annotations

import json
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from infra.backends.simulated import SimulatorProcess
from infra.backends.simulator_client import SimulatorClient
from infra.kube.install import pinned_kubectl_minors
from infra.kube.kubectl import kubectl_minor
from infra.simulator.harvester.versions import get_version, version_names

from ..conftest import UPSTREAM_CRDS, Kubectl, kubectl_runner, start_simulator

pytestmark = pytest.mark.kubectl

NEWEST_MINOR = pinned_kubectl_minors()[-1]


def matrix_cells() -> list[tuple[str, str]]:
    """(Harvester version, kubectl minor): every version with the minor of its RKE2 (what QA on a node
    types), then every other pinned minor once, against the newest version whose RKE2 is at most that
    minor (the closest skew; the oldest version for a minor older than every RKE2). Every version and
    every minor the project pins runs; no pair runs twice."""
    versions = version_names()
    own = {version: kubectl_minor(get_version(version).rke2_version) for version in versions}
    cells = [(version, own[version]) for version in versions]
    number = lambda minor: int(minor.split(".")[1])  # noqa: E731
    for minor in pinned_kubectl_minors():
        if minor in own.values():
            continue
        older = [v for v in versions if number(own[v]) <= number(minor)]
        cells.append((older[-1] if older else versions[0], minor))
    return sorted(cells, key=lambda cell: versions.index(cell[0]))       # grouped by version: one simulator at a time


def cell_id(cell: tuple[str, str]) -> str:
    return f"{cell[0]}-kubectl-{cell[1]}"


CELLS = matrix_cells()


@dataclass
class Cell:
    version: str
    minor: str
    simulator: SimulatorProcess
    kubectl: Kubectl
    namespace: str
    home: Path

    def name(self, prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:6]}"

    def configmap(self, name: str, data: dict[str, str] | None = None) -> None:
        """Set-up for a test of another verb: `create -f` with a JSON manifest (what every kubectl minor
        sends as JSON), so only the `create` test depends on typed `kubectl create configmap`."""
        manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": self.namespace},
                    "data": data or {}}
        self.kubectl("create", "-f", "-", input=json.dumps(manifest))

    def open_watches(self) -> int:
        return int(SimulatorClient(self.simulator.kubeconfig).info()["openWatches"])

    def await_watch_from(self, process: subprocess.Popen[str], opened_before: int) -> None:
        """Until kubectl's watch is open on the simulator (this test is about kubectl, not the harness's waits):
        at most 15 s, polled every 50 ms; kubectl exiting first fails the test with what it printed."""
        deadline = time.monotonic() + 15
        while self.open_watches() <= opened_before:
            if process.poll() is not None:
                raise AssertionError(f"kubectl exited ({process.returncode}) before watching: {process.stderr.read()}")  # type: ignore[union-attr]
            if time.monotonic() > deadline:
                raise AssertionError("kubectl opened no watch on the simulator within 15 s")
            time.sleep(0.05)

    def env(self) -> dict[str, str]:
        return {"KUBECONFIG": str(self.simulator.kubeconfig), "HOME": str(self.home), "PATH": "/usr/bin:/bin"}


class OneSimulatorAtATime:
    """Cells come grouped by version (CELLS order): keep only the current version's simulator running."""

    def __init__(self, tmp: pytest.TempPathFactory) -> None:
        self.tmp = tmp
        self.current: SimulatorProcess | None = None

    def get(self, version: str) -> SimulatorProcess:
        if self.current is None or self.current.version != version:
            self.stop()
            self.current = start_simulator(version, self.tmp.mktemp(f"kubectl-simulator-{version}"))
        return self.current

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None


@pytest.fixture(scope="module")
def version_simulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OneSimulatorAtATime]:
    simulators = OneSimulatorAtATime(tmp_path_factory)
    yield simulators
    simulators.stop()


@pytest.fixture(scope="module", params=CELLS, ids=cell_id)
def cell(request: pytest.FixtureRequest, version_simulators: OneSimulatorAtATime,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cell]:
    version, minor = request.param
    simulator = version_simulators.get(version)
    home = tmp_path_factory.mktemp(f"kubectl-{minor}-home")
    kubectl = kubectl_runner(simulator, minor, home)
    namespace = f"kctl-{uuid.uuid4().hex[:8]}"
    kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Namespace",
                                                    "metadata": {"name": namespace}}))
    yield Cell(version, minor, simulator, kubectl, namespace, home)
    kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_kubectl_is_the_minor_asked_for(cell: Cell) -> None:
    client = json.loads(cell.kubectl("version", "-o", "json").stdout)
    assert client["clientVersion"]["gitVersion"].startswith(f"v{cell.minor}.")
    assert client["serverVersion"]["gitVersion"] == get_version(cell.version).kubernetes_version


# ---- reading ---------------------------------------------------------------------------------------------

def test_api_resources(cell: Cell) -> None:
    out = cell.kubectl("api-resources").stdout
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "pods" in lines and "po" in lines["pods"]
    assert "ippools" in lines and "pool,pools" in lines["ippools"]
    assert "upgrades" in lines and "harvesterhci.io/v1beta1" in lines["upgrades"]
    assert "machines" in lines and "cluster.x-k8s.io/v1beta1" in lines["machines"]


def test_get_table(cell: Cell) -> None:
    rows = cell.kubectl("get", "nodes").stdout.splitlines()
    assert rows[0].split()[:5] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert len(rows) == 4 and all(" Ready " in r and "control-plane" in r for r in rows[1:])
    assert all(r.split()[4] == get_version(cell.version).rke2_version for r in rows[1:])


def test_get_wide(cell: Cell) -> None:
    out = cell.kubectl("get", "machines", "-A", "-o", "wide").stdout
    header = out.splitlines()[0]
    assert "PHASE" in header and "NODENAME" in header and "PROVIDERID" in header
    assert out.count("Running") == 3 and "rke2://harvester-node-0" in out


def test_get_yaml(cell: Cell) -> None:
    name = cell.name("y")
    cell.configmap(name, {"k": "v"})
    obj = yaml.safe_load(cell.kubectl("get", "configmap", name, "-n", cell.namespace, "-o", "yaml").stdout)
    assert (obj["kind"], obj["metadata"]["name"], obj["data"]) == ("ConfigMap", name, {"k": "v"})
    assert obj["metadata"]["resourceVersion"] and obj["metadata"]["uid"]


def test_get_jsonpath(cell: Cell) -> None:
    out = cell.kubectl("get", "nodes", "-o", "jsonpath={.items[*].metadata.name}").stdout
    assert out.split() == ["harvester-node-0", "harvester-node-1", "harvester-node-2"]
    kubelet = cell.kubectl("get", "node", "harvester-node-0", "-o",
                           "jsonpath={.status.nodeInfo.kubeletVersion}").stdout
    assert kubelet == get_version(cell.version).rke2_version


def test_get_custom_columns(cell: Cell) -> None:
    out = cell.kubectl("get", "nodes", "-o",
                       "custom-columns=NAME:.metadata.name,KUBELET:.status.nodeInfo.kubeletVersion").stdout
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["NAME", "KUBELET"]
    assert rows[1] == ["harvester-node-0", get_version(cell.version).rke2_version]


def test_get_raw(cell: Cell) -> None:
    assert json.loads(cell.kubectl("get", "--raw", "/version").stdout)["major"] == "1"
    assert json.loads(cell.kubectl("get", "--raw", "/apis/harvesterhci.io/v1beta1").stdout)["kind"] == "APIResourceList"


def test_describe(cell: Cell) -> None:
    node = cell.kubectl("describe", "node", "harvester-node-0").stdout
    assert node.startswith("Name:") and "harvester-node-0" in node.splitlines()[0]
    assert "Conditions:" in node and "Ready" in node
    assert "Kubelet Version:" in node and get_version(cell.version).rke2_version in node
    name = cell.name("d")
    cell.configmap(name, {"color": "blue"})
    described = cell.kubectl("describe", "configmap", name, "-n", cell.namespace).stdout
    assert f"Namespace:    {cell.namespace}" in described and "color:" in described and "blue" in described


def test_explain(cell: Cell) -> None:
    out = cell.kubectl("explain", "upgrades.spec", "--api-version=harvesterhci.io/v1beta1").stdout
    assert "KIND:" in out and "Upgrade" in out and "FIELDS:" in out and "version" in out


def test_auth_can_i(cell: Cell) -> None:
    assert cell.kubectl("auth", "can-i", "create", "upgrades.harvesterhci.io", "-n", "harvester-system").stdout == "yes\n"
    assert cell.kubectl("auth", "can-i", "list", "pods", "--all-namespaces").stdout == "yes\n"


def test_events(cell: Cell) -> None:
    level = cell.kubectl("get", "settings.harvesterhci.io", "log-level", "-o", "jsonpath={.value}").stdout
    marker = "debug" if level != "debug" else "info"
    cell.kubectl("patch", "settings.harvesterhci.io", "log-level", "--type=merge", "-p", json.dumps({"value": marker}))
    try:
        seen = cell.kubectl("get", "events", "-A", "--field-selector", "reason=SettingUpdated", "-o", "name").stdout
        assert seen.strip(), "patching a setting records a SettingUpdated event"
        listed = cell.kubectl("events", "-A").stdout
        assert listed.splitlines()[0].split()[:4] == ["NAMESPACE", "LAST", "SEEN", "TYPE"]
        assert "SettingUpdated" in listed
    finally:
        cell.kubectl("patch", "settings.harvesterhci.io", "log-level", "--type=merge", "-p",
                     json.dumps({"value": level}))


def test_logs(cell: Cell) -> None:
    level = cell.kubectl("get", "settings.harvesterhci.io", "log-level", "-o", "jsonpath={.value}").stdout
    cell.kubectl("patch", "settings.harvesterhci.io", "log-level", "--type=merge", "-p", '{"value":"trace"}')
    try:
        pod = cell.kubectl("get", "pods", "-n", "harvester-system", "-l", "app.kubernetes.io/component=apiserver",
                           "-o", "jsonpath={.items[0].metadata.name}").stdout
        deadline = time.monotonic() + 10
        out = ""
        while 'value="trace"' not in out and time.monotonic() < deadline:   # the controller logs on its own loop
            out = cell.kubectl("logs", "-n", "harvester-system", pod, "--tail=5").stdout
        assert 'value="trace"' in out
    finally:
        cell.kubectl("patch", "settings.harvesterhci.io", "log-level", "--type=merge", "-p",
                     json.dumps({"value": level}))


def test_exec(cell: Cell) -> None:
    pod = cell.kubectl("get", "pods", "-n", "harvester-system", "-l", "app.kubernetes.io/component=apiserver",
                       "-o", "jsonpath={.items[0].metadata.name}").stdout
    out = cell.kubectl("exec", "-n", "harvester-system", pod, "--", "echo", "conformance")
    assert out.stdout == "conformance\n"


# ---- waiting and watching -----------------------------------------------------------------------------

def test_wait_for_condition(cell: Cell) -> None:
    out = cell.kubectl("wait", "--for=condition=Ready", "node/harvester-node-0", "--timeout=10s").stdout
    assert "condition met" in out


def test_wait_for_jsonpath(cell: Cell) -> None:
    out = cell.kubectl("wait", "--for=jsonpath={.status.phase}=Running", "machines.cluster.x-k8s.io", "--all",
                       "-n", "fleet-local", "--timeout=10s").stdout
    assert out.count("condition met") == 3


def test_wait_for_delete(cell: Cell) -> None:
    name = cell.name("w")
    cell.configmap(name)
    opened_before = cell.open_watches()
    waiter = subprocess.Popen([str(cell.kubectl.binary), "wait", "--for=delete", f"configmap/{name}", "-n",  # type: ignore[attr-defined]
                               cell.namespace, "--timeout=30s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=cell.env())
    try:
        cell.await_watch_from(waiter, opened_before)
        cell.kubectl("delete", "configmap", name, "-n", cell.namespace, "--wait=false")
        out, err = waiter.communicate(timeout=30)
        assert waiter.returncode == 0, err
        assert "condition met" in out
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait(5)


def test_get_watch(cell: Cell) -> None:
    opened_before = cell.open_watches()
    watcher = subprocess.Popen([str(cell.kubectl.binary), "get", "configmaps", "-n", cell.namespace, "-w",  # type: ignore[attr-defined]
                                "--request-timeout=20s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=cell.env())
    try:
        cell.await_watch_from(watcher, opened_before)
        name = cell.name("seen-live")
        cell.configmap(name)
        deadline = time.monotonic() + 15
        seen = ""
        while name not in seen and time.monotonic() < deadline:
            seen += watcher.stdout.readline()
        assert name in seen
    finally:
        watcher.terminate()
        watcher.wait(5)


# ---- writing ------------------------------------------------------------------------------------------

def test_create(cell: Cell) -> None:
    name = cell.name("c")
    out = cell.kubectl("create", "configmap", name, "-n", cell.namespace, "--from-literal=k=v").stdout
    assert out == f"configmap/{name} created\n"
    assert json.loads(cell.kubectl("get", "cm", name, "-n", cell.namespace, "-o", "json").stdout)["data"] == {"k": "v"}
    secret = cell.name("s")
    cell.kubectl("create", "secret", "generic", secret, "-n", cell.namespace, "--from-literal=password=hunter2")
    stored = json.loads(cell.kubectl("get", "secret", secret, "-n", cell.namespace, "-o", "json").stdout)
    assert (stored["type"], stored["data"]) == ("Opaque", {"password": "aHVudGVyMg=="})


def test_label(cell: Cell) -> None:
    name = cell.name("l")
    cell.configmap(name)
    assert cell.kubectl("label", "configmap", name, "-n", cell.namespace, "tier=web").stdout == \
        f"configmap/{name} labeled\n"
    assert cell.kubectl("get", "cm", "-n", cell.namespace, "-l", "tier=web", "-o", "name").stdout == f"configmap/{name}\n"
    cell.kubectl("label", "configmap", name, "-n", cell.namespace, "tier-")
    assert cell.kubectl("get", "cm", "-n", cell.namespace, "-l", "tier=web", "-o", "name").stdout == ""


def test_annotate(cell: Cell) -> None:
    name = cell.name("a")
    cell.configmap(name)
    assert cell.kubectl("annotate", "configmap", name, "-n", cell.namespace, "owner=qa").stdout == \
        f"configmap/{name} annotated\n"
    annotations = json.loads(cell.kubectl("get", "cm", name, "-n", cell.namespace, "-o",
                                          "jsonpath={.metadata.annotations}").stdout)
    assert annotations == {"owner": "qa"}
    refused = cell.kubectl("annotate", "configmap", name, "-n", cell.namespace, "owner=dev", check=False)
    assert refused.returncode == 1 and "--overwrite is false" in refused.stderr


def test_patch_merge_json_strategic(cell: Cell) -> None:
    name = cell.name("p")
    cell.configmap(name, {"a": "1"})
    cell.kubectl("patch", "configmap", name, "-n", cell.namespace, "--type=merge", "-p", '{"data":{"b":"2"}}')
    cell.kubectl("patch", "configmap", name, "-n", cell.namespace, "--type=json", "-p",
                 '[{"op":"remove","path":"/data/a"}]')
    cell.kubectl("patch", "configmap", name, "-n", cell.namespace, "-p", '{"data":{"c":"3"}}')   # strategic, the default
    data = json.loads(cell.kubectl("get", "cm", name, "-n", cell.namespace, "-o", "json").stdout)["data"]
    assert data == {"b": "2", "c": "3"}


def test_replace(cell: Cell) -> None:
    name = cell.name("r")
    cell.configmap(name, {"a": "1"})
    obj = json.loads(cell.kubectl("get", "cm", name, "-n", cell.namespace, "-o", "json").stdout)
    obj["data"] = {"z": "26"}
    assert cell.kubectl("replace", "-f", "-", input=json.dumps(obj)).stdout == f"configmap/{name} replaced\n"
    stale = dict(obj, data={"y": "25"})         # the resourceVersion it carries is now old
    refused = cell.kubectl("replace", "-f", "-", input=json.dumps(stale), check=False)
    assert refused.returncode == 1 and "the object has been modified" in refused.stderr
    assert json.loads(cell.kubectl("get", "cm", name, "-n", cell.namespace, "-o", "json").stdout)["data"] == {"z": "26"}


def test_delete(cell: Cell) -> None:
    name = cell.name("x")
    cell.configmap(name)
    out = cell.kubectl("delete", "configmap", name, "-n", cell.namespace).stdout
    # kubectl 1.33 started naming the namespace in this line
    assert out in (f'configmap "{name}" deleted\n', f'configmap "{name}" deleted from {cell.namespace} namespace\n')
    missing = cell.kubectl("get", "cm", name, "-n", cell.namespace, check=False)
    assert missing.returncode == 1
    assert f'Error from server (NotFound): configmaps "{name}" not found' in missing.stderr


def test_apply_client_side(cell: Cell) -> None:
    name = cell.name("app")
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": cell.namespace},
                "data": {"a": "1"}}
    assert "created" in cell.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest)).stdout
    assert "unchanged" in cell.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest)).stdout
    manifest["data"] = {"b": "2"}
    assert "configured" in cell.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest)).stdout
    data = json.loads(cell.kubectl("get", "configmap", name, "-n", cell.namespace, "-o", "json").stdout)["data"]
    assert data == {"b": "2"}, "apply removes keys dropped from the manifest"


def test_apply_custom_resource_rejects_unknown_field(cell: Cell) -> None:
    pool = {"apiVersion": "loadbalancer.harvesterhci.io/v1beta1", "kind": "IPPool",
            "metadata": {"name": cell.name("pool")}, "spec": {"ranges": [{"subnet": "192.0.2.0/24"}]}}
    assert "created" in cell.kubectl("apply", "-f", "-", input=yaml.safe_dump(pool)).stdout
    try:
        pool["spec"]["bogus"] = True
        failed = cell.kubectl("apply", "-f", "-", input=yaml.safe_dump(pool), check=False)
        assert failed.returncode != 0 and 'unknown field "spec.bogus"' in failed.stderr
    finally:
        cell.kubectl("delete", "ippool", pool["metadata"]["name"])


def test_apply_server_side(cell: Cell) -> None:
    name = cell.name("ssa")
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": cell.namespace},
                "data": {"a": "1", "b": "2"}}
    out = cell.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(manifest)).stdout
    assert out == f"configmap/{name} serverside-applied\n"
    manifest["data"] = {"a": "1"}
    cell.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(manifest))
    obj = json.loads(cell.kubectl("get", "cm", name, "-n", cell.namespace, "-o", "json",
                                  "--show-managed-fields").stdout)
    assert obj["data"] == {"a": "1"}, "a field the applier stopped sending is removed"
    managers = {(m["manager"], m["operation"]) for m in obj["metadata"]["managedFields"]}
    assert ("kubectl", "Apply") in managers
    cell.kubectl("patch", "cm", name, "-n", cell.namespace, "--type=merge", "-p", '{"data":{"a":"changed"}}')
    conflict = cell.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(manifest), check=False)
    assert conflict.returncode == 1 and "conflict" in conflict.stderr.lower()


def test_dry_run_server(cell: Cell) -> None:
    name = cell.name("dry")
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": cell.namespace}}
    out = cell.kubectl("apply", "-f", "-", "--dry-run=server", "-o", "name", input=json.dumps(manifest)).stdout
    assert out.strip() == f"configmap/{name}"
    out = cell.kubectl("create", "-f", "-", "--dry-run=server", "-o", "json", input=json.dumps(manifest)).stdout
    assert json.loads(out)["metadata"]["uid"], "the server filled in what it would have stored"
    assert cell.kubectl("get", "cm", name, "-n", cell.namespace, check=False).returncode == 1


# ---- the upstream CRDs (their own simulator: they replace the project's own) ---------------------------------

@pytest.mark.skipif(not UPSTREAM_CRDS.is_dir(), reason="upstream CRDs (tests/data/upstream-crds) not present")
def test_upstream_crds_apply_cleanly(tmp_path: Path) -> None:
    fresh = start_simulator("v1.5.1", tmp_path)
    try:
        kubectl = kubectl_runner(fresh, NEWEST_MINOR, tmp_path)
        for path in sorted(UPSTREAM_CRDS.glob("*.yaml")):
            result = kubectl("apply", "-f", str(path), check=False)
            assert result.returncode == 0, f"{path.name}: {result.stderr}"
        resources = kubectl("api-resources", "--api-group=loadbalancer.harvesterhci.io").stdout
        assert "ippools" in resources and "loadbalancers" in resources
    finally:
        fresh.stop()
