"""The twin behaves like kube-apiserver for real kubectl (v1.32): what QA types, works."""
from __future__ import annotations

import json
import subprocess
import time
import uuid

import pytest
import yaml

from ..conftest import KUBECTL, UPSTREAM_CRDS

pytestmark = pytest.mark.kubectl


@pytest.fixture
def ns(kubectl) -> str:  # noqa: ANN001
    name = f"kctl-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_api_resources_lists_core_kinds_and_crds_with_short_names(kubectl) -> None:  # noqa: ANN001
    out = kubectl("api-resources").stdout
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "pods" in lines and "po" in lines["pods"]
    assert "ippools" in lines and "pool,pools" in lines["ippools"]
    assert "upgrades" in lines and "harvesterhci.io/v1beta1" in lines["upgrades"]
    assert "machines" in lines and "cluster.x-k8s.io/v1beta1" in lines["machines"]


def test_get_nodes_shows_three_ready_nodes_with_roles(kubectl) -> None:  # noqa: ANN001
    rows = kubectl("get", "nodes").stdout.splitlines()
    assert rows[0].split()[:5] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert len(rows) == 4 and all(" Ready " in r and "control-plane" in r for r in rows[1:])


def test_get_machines_wide_prints_the_crd_printer_columns(kubectl) -> None:  # noqa: ANN001
    out = kubectl("get", "machines", "-A", "-o", "wide").stdout
    header = out.splitlines()[0]
    assert "PHASE" in header and "NODENAME" in header and "PROVIDERID" in header
    assert out.count("Running") == 3 and "rke2://harvester-node-0" in out


def test_get_raw_and_version(kubectl) -> None:  # noqa: ANN001
    assert json.loads(kubectl("get", "--raw", "/version").stdout)["major"] == "1"
    assert json.loads(kubectl("get", "--raw", "/apis/harvesterhci.io/v1beta1").stdout)["kind"] == "APIResourceList"


def test_apply_creates_then_patches_and_reports_unchanged(kubectl, ns: str) -> None:  # noqa: ANN001
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app", "namespace": ns},
                "data": {"a": "1"}}
    assert "created" in kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest)).stdout
    assert "unchanged" in kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest)).stdout
    manifest["data"] = {"b": "2"}
    assert "configured" in kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest)).stdout
    data = json.loads(kubectl("get", "configmap", "app", "-n", ns, "-o", "json").stdout)["data"]
    assert data == {"b": "2"}, "apply removes keys dropped from the manifest"


def test_apply_a_custom_resource_and_reject_an_unknown_field(kubectl) -> None:  # noqa: ANN001
    pool = {"apiVersion": "loadbalancer.harvesterhci.io/v1beta1", "kind": "IPPool",
            "metadata": {"name": f"pool-{uuid.uuid4().hex[:6]}"},
            "spec": {"ranges": [{"subnet": "192.0.2.0/24"}]}}
    assert "created" in kubectl("apply", "-f", "-", input=yaml.safe_dump(pool)).stdout
    pool["spec"]["bogus"] = True
    failed = kubectl("apply", "-f", "-", input=yaml.safe_dump(pool), check=False)
    assert failed.returncode != 0 and 'unknown field "spec.bogus"' in failed.stderr
    kubectl("delete", "ippool", pool["metadata"]["name"])


def test_patch_merge_json_and_strategic(kubectl, ns: str) -> None:  # noqa: ANN001
    kubectl("create", "configmap", "p", "-n", ns, "--from-literal=a=1")
    kubectl("patch", "configmap", "p", "-n", ns, "--type=merge", "-p", '{"data":{"b":"2"}}')
    kubectl("patch", "configmap", "p", "-n", ns, "--type=json", "-p", '[{"op":"remove","path":"/data/a"}]')
    kubectl("patch", "configmap", "p", "-n", ns, "-p", '{"data":{"c":"3"}}')   # strategic, kubectl's default
    data = json.loads(kubectl("get", "cm", "p", "-n", ns, "-o", "json").stdout)["data"]
    assert data == {"b": "2", "c": "3"}


def test_label_and_delete(kubectl, ns: str) -> None:  # noqa: ANN001
    kubectl("create", "configmap", "l", "-n", ns)
    kubectl("label", "configmap", "l", "-n", ns, "tier=web")
    assert "l" in kubectl("get", "cm", "-n", ns, "-l", "tier=web", "-o", "name").stdout
    assert 'configmap "l" deleted' in kubectl("delete", "configmap", "l", "-n", ns).stdout
    assert kubectl("get", "cm", "l", "-n", ns, check=False).returncode == 1


def test_get_watch_prints_changes_as_they_happen(kubectl, twin, ns: str) -> None:  # noqa: ANN001
    env = {"KUBECONFIG": str(twin.kubeconfig), "HOME": str(twin.workdir), "PATH": "/usr/bin:/bin"}
    watcher = subprocess.Popen([KUBECTL, "get", "configmaps", "-n", ns, "-w", "--request-timeout=20s"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        time.sleep(1.0)   # let kubectl open the watch: this test is about kubectl, not our waits
        kubectl("create", "configmap", "seen-live", "-n", ns)
        deadline = time.monotonic() + 15
        seen = ""
        while "seen-live" not in seen and time.monotonic() < deadline:
            seen += watcher.stdout.readline()
        assert "seen-live" in seen
    finally:
        watcher.terminate()
        watcher.wait(5)


def test_wait_for_condition(kubectl) -> None:  # noqa: ANN001
    out = kubectl("wait", "--for=condition=Ready", "node/harvester-node-0", "--timeout=10s").stdout
    assert "condition met" in out


def test_logs_of_a_controller_pod(kubectl) -> None:  # noqa: ANN001
    kubectl("patch", "settings.harvesterhci.io", "log-level", "--type=merge", "-p", '{"value":"trace"}')
    pod = kubectl("get", "pods", "-n", "harvester-system", "-l", "app.kubernetes.io/component=apiserver",
                  "-o", "jsonpath={.items[0].metadata.name}").stdout
    deadline = time.monotonic() + 10
    out = ""
    while 'value="trace"' not in out and time.monotonic() < deadline:
        out = kubectl("logs", "-n", "harvester-system", pod, "--tail=5").stdout
    assert 'value="trace"' in out


def test_dry_run_server_stores_nothing(kubectl, ns: str) -> None:  # noqa: ANN001
    out = kubectl("create", "configmap", "dry", "-n", ns, "--dry-run=server", "-o", "name").stdout
    assert out.strip() == "configmap/dry"
    assert kubectl("get", "cm", "dry", "-n", ns, check=False).returncode == 1


@pytest.mark.skipif(not UPSTREAM_CRDS.is_dir(), reason="upstream CRDs (tests/data/upstream-crds) not present")
@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_upstream_crds_apply_cleanly(tmp_path) -> None:  # noqa: ANN001
    import os

    from ..conftest import start_twin

    fresh = start_twin("v1.5.1", tmp_path)     # its own twin: these CRDs replace the project's own
    env = {**os.environ, "KUBECONFIG": str(fresh.kubeconfig), "HOME": str(tmp_path)}
    try:
        for path in sorted(UPSTREAM_CRDS.glob("*.yaml")):
            result = subprocess.run([KUBECTL, "apply", "-f", str(path)], capture_output=True, text=True, env=env,
                                    timeout=60)
            assert result.returncode == 0, f"{path.name}: {result.stderr}"
        resources = subprocess.run([KUBECTL, "api-resources", "--api-group=loadbalancer.harvesterhci.io"],
                                   capture_output=True, text=True, env=env, timeout=60).stdout
        assert "ippools" in resources and "loadbalancers" in resources
    finally:
        fresh.stop()
