"""Simulated Rancher Managers beside the simulator: each its own HTTPS listener, CA and API key, Rancher's
local cluster at /k8s/clusters/local, and guest RKE2 clusters provisioned on the simulator's VMs from a
provisioning Cluster and a HarvesterConfig, reported and removed as Rancher does."""
from __future__ import annotations

import base64
import json
import os
import re
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import kubernetes
import pytest
import yaml

from infra.kube import Kube
from infra.waits.budget import Budget

from .guest_support import (
    WORKSPACE,
    Lab,
    LabHost,
    guest_kubeconfig,
    harvester_config,
    provisioning_cluster,
    start_lab,
)

KUBECTL = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32"
PROVISIONING = "provisioning.cattle.io/v1"
WAIT = Budget("rancher test wait", 60)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    found = start_lab(tmp_path_factory.mktemp("rancher-lab"), ranchers=("v2.8.13", "v2.10.3", "v2.11.3"))
    yield found
    found.stop()


@pytest.fixture(scope="module")
def host(lab: Lab) -> LabHost:
    kube = LabHost(lab.process.kubeconfig, unavailable_budget=20)
    kube.lab = lab
    return kube


def kubectl(kubeconfig: str | Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not os.path.exists(KUBECTL):
        pytest.skip("kubectl 1.32 is not on this machine")
    return subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True,
                          timeout=60)


def https_get(url: str, ca_pem: str, token: str | None) -> tuple[int, bytes]:
    with tempfile.NamedTemporaryFile("w", suffix=".crt") as ca:
        ca.write(ca_pem)
        ca.flush()
        context = ssl.create_default_context(cafile=ca.name)
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:  # noqa: S310 - https
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def conditions(cluster: dict[str, Any] | None) -> dict[str, tuple[str, str, str]]:
    return {c["type"]: (c["status"], c.get("reason", ""), c.get("message", ""))
            for c in ((cluster or {}).get("status") or {}).get("conditions") or []}


def host_vms(host: Kube, cluster: str) -> list[str]:
    return sorted(vm["metadata"]["name"] for vm in host.list("kubevirt.io/v1", "VirtualMachine", "default",
                                                             label_selector=f"guestcluster.harvesterhci.io/name={cluster}"))


def test_each_rancher_is_listed_with_its_own_listener_ca_and_key(lab: Lab) -> None:
    ranchers = lab.info["ranchers"]
    assert [r["version"] for r in ranchers] == ["v2.8.13", "v2.10.3", "v2.11.3"]
    assert len({r["url"] for r in ranchers} | {lab.info["url"]}) == 4
    assert len({r["caPem"] for r in ranchers} | {lab.info["caPem"]}) == 4
    for rancher in ranchers:
        assert re.fullmatch(r"token-[a-z0-9]{5}:[a-z0-9]{54}", rancher["apiKey"])
        config = yaml.safe_load(Path(rancher["kubeconfig"]).read_text())
        assert config["clusters"][0]["cluster"]["server"] == rancher["localClusterServer"] == \
            f"{rancher['url']}/k8s/clusters/local"
        assert base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"]).decode() == \
            rancher["caPem"]
        assert config["users"][0]["user"] == {"token": rancher["apiKey"]}
        assert oct(Path(rancher["kubeconfig"]).stat().st_mode & 0o777) == "0o600"


def test_the_local_cluster_answers_kubectl_through_the_rancher_kubeconfig(lab: Lab) -> None:
    for rancher in lab.info["ranchers"]:
        version = kubectl(rancher["kubeconfig"], "get", "settings.management.cattle.io", "server-version",
                          "-o", "jsonpath={.value}")
        assert version.returncode == 0 and version.stdout == rancher["version"], version.stderr
    listed = kubectl(lab.rancher_info("2.10")["kubeconfig"], "get", "clusters.provisioning.cattle.io",
                     "-n", WORKSPACE)
    assert listed.returncode == 0, listed.stderr
    namespaces = kubectl(lab.rancher_info("2.10")["kubeconfig"], "get", "namespaces", "-o", "name").stdout.split()
    assert {"namespace/fleet-default", "namespace/fleet-local", "namespace/cattle-system"} <= set(namespaces)


def test_rancher_takes_its_own_api_key_only(lab: Lab) -> None:
    rancher, other = lab.rancher_info("2.10"), lab.rancher_info("2.11")
    kube_token = yaml.safe_load(lab.process.kubeconfig.read_text())["users"][0]["user"]["token"]
    url = rancher["localClusterServer"] + "/api/v1/namespaces"
    assert https_get(url, rancher["caPem"], rancher["apiKey"])[0] == 200
    for token in (None, kube_token, other["apiKey"], rancher["apiKey"][:-1] + "x"):
        status, body = https_get(url, rancher["caPem"], token)
        assert status == 401 and b"must authenticate" in body
    assert https_get(rancher["url"] + "/ping", rancher["caPem"], None) == (200, b"pong")
    status, body = https_get(rancher["url"] + "/v3/settings/server-version", rancher["caPem"], rancher["apiKey"])
    assert status == 200 and json.loads(body)["value"] == "v2.10.3"


def test_a_cluster_is_provisioned_reported_and_removed_as_rancher_does(lab: Lab, host: LabHost) -> None:
    rancher = lab.rancher("2.10")
    rancher.create(harvester_config("nc-prov-pool", cpuCount="2", memorySize="4"))
    rancher.create(provisioning_cluster("prov", "v1.31.5+rke2r1", "nc-prov-pool", servers=1, agents=1))
    cluster = rancher.wait_for(PROVISIONING, "Cluster", "prov", lambda c: bool(((c or {}).get("status") or {})
                               .get("ready")), budget=WAIT, namespace=WORKSPACE, awaited="prov ready")
    assert cluster is not None
    status = cluster["status"]
    assert cluster["metadata"]["finalizers"] == ["wrangler.cattle.io/provisioning-cluster-remove",
                                                 "wrangler.cattle.io/rke-cluster-remove"]
    assert re.fullmatch(r"c-m-[a-z0-9]{8}", status["clusterName"])
    assert status["clientSecretName"] == "prov-kubeconfig" and status["fleetWorkspaceName"] == WORKSPACE
    assert status["agentDeployed"] is True and status["observedGeneration"] == 1
    found = conditions(cluster)
    assert all(found[c][0] == "True" for c in ("Created", "RKECluster", "Provisioned", "Updated", "Ready")), found
    assert rancher.get("management.cattle.io/v3", "Cluster", status["clusterName"])["spec"]["displayName"] == "prov"
    config = rancher.get("rke-machine-config.cattle.io/v1", "HarvesterConfig", "nc-prov-pool", WORKSPACE)
    assert [(o["kind"], o["name"], o.get("controller")) for o in config["metadata"]["ownerReferences"]] == \
        [("Cluster", "prov", True)]

    secret = rancher.get("v1", "Secret", "prov-kubeconfig", WORKSPACE)
    assert secret["metadata"]["labels"] == {"cluster.x-k8s.io/cluster-name": "prov"}
    assert [(o["kind"], o["name"]) for o in secret["metadata"]["ownerReferences"]] == [("Cluster", "prov")]
    kubeconfig = guest_kubeconfig(rancher, "prov")
    rancher_info = lab.rancher_info("2.10")
    assert kubeconfig["clusters"][0]["cluster"]["server"] == f"{rancher_info['url']}/k8s/clusters/{status['clusterName']}"
    assert re.fullmatch(r"u-[a-z2-7]{10}:[a-z0-9]{54}", kubeconfig["users"][0]["user"]["token"])
    assert base64.b64decode(secret["data"]["token"]).decode() == kubeconfig["users"][0]["user"]["token"]

    path = Path(tempfile.mkdtemp()) / "prov.kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    guest = kubernetes.config.new_client_from_config(config_file=str(path))
    nodes = kubernetes.client.CoreV1Api(guest).list_node().items
    assert sorted(n.metadata.name for n in nodes) == host_vms(host, "prov")
    assert {n.status.node_info.kubelet_version for n in nodes} == {"v1.31.5+rke2r1"}
    assert sorted(n.status.capacity["cpu"] for n in nodes) == ["2", "2"]
    assert [n.metadata.name.startswith("prov-cp-") for n in nodes].count(True) == 1
    agent = kubernetes.client.AppsV1Api(guest).read_namespaced_deployment("cattle-cluster-agent", "cattle-system")
    assert agent.spec.template.spec.containers[0].image == "rancher/rancher-agent:v2.10.3"
    version = kubectl(path, "version", "-o", "json")
    assert json.loads(version.stdout)["serverVersion"]["gitVersion"] == "v1.31.5+rke2r1", version.stderr

    rancher.delete(PROVISIONING, "Cluster", "prov", WORKSPACE)
    rancher.wait_for_gone(PROVISIONING, "Cluster", "prov", budget=WAIT, namespace=WORKSPACE)
    assert host_vms(host, "prov") == []
    assert host.list("v1", "PersistentVolumeClaim", "default", label_selector="guestcluster.simulator.harvesterhci.io/name=prov") == []
    rancher.wait_for_gone("v1", "Secret", "prov-kubeconfig", budget=WAIT, namespace=WORKSPACE)
    rancher.wait_for_gone("rke-machine-config.cattle.io/v1", "HarvesterConfig", "nc-prov-pool", budget=WAIT,
                          namespace=WORKSPACE)
    assert rancher.find("management.cattle.io/v3", "Cluster", status["clusterName"]) is None
    status_code, _ = https_get(kubeconfig["clusters"][0]["cluster"]["server"] + "/api/v1/nodes", rancher_info["caPem"],
                               kubeconfig["users"][0]["user"]["token"])
    assert status_code == 401


def test_a_version_outside_the_rancher_line_waits_on_kdm_and_makes_no_vms(lab: Lab, host: LabHost) -> None:
    rancher = lab.rancher("2.10")
    rancher.create(harvester_config("nc-kdm-pool"))
    rancher.create(provisioning_cluster("kdm", "v1.32.2+rke2r1", "nc-kdm-pool"))
    message = "fleet-default/kdm: KDM release data is empty for v1.32.2+rke2r1"
    cluster = rancher.wait_for(PROVISIONING, "Cluster", "kdm", lambda c: conditions(c).get("Ready", ("",))[-1] == message,
                               budget=WAIT, namespace=WORKSPACE, awaited="the KDM message")
    found = conditions(cluster)
    assert found["Ready"] == found["Updated"] == found["Provisioned"] == ("Unknown", "Waiting", message)
    assert not (cluster or {})["status"].get("ready") and host_vms(host, "kdm") == []
    rancher.delete(PROVISIONING, "Cluster", "kdm", WORKSPACE)
    rancher.wait_for_gone(PROVISIONING, "Cluster", "kdm", budget=WAIT, namespace=WORKSPACE)
    # The same version is in Rancher v2.11's KDM.
    assert "v1.32.2+rke2r1" in lab.rancher_info("2.11")["rke2Versions"]
    assert "v1.32.2+rke2r1" not in lab.rancher_info("2.10")["rke2Versions"]


def test_a_missing_harvester_config_is_reported_then_picked_up(lab: Lab, host: LabHost) -> None:
    rancher = lab.rancher("2.8")
    rancher.create(provisioning_cluster("late", "v1.28.15+rke2r1", "nc-late-pool", agents=0))
    message = 'harvesterconfigs.rke-machine-config.cattle.io "nc-late-pool" not found'
    rancher.wait_for(PROVISIONING, "Cluster", "late", lambda c: conditions(c).get("RKECluster") ==
                     ("False", "Error", message), budget=WAIT, namespace=WORKSPACE, awaited="the RKECluster error")
    assert host_vms(host, "late") == []
    rancher.create(harvester_config("nc-late-pool"))
    rancher.wait_for(PROVISIONING, "Cluster", "late", lambda c: bool(((c or {}).get("status") or {}).get("ready")),
                     budget=WAIT, namespace=WORKSPACE, awaited="late ready once its config exists")
    assert len(host_vms(host, "late")) == 1
    path = Path(tempfile.mkdtemp()) / "late.kubeconfig"
    path.write_text(yaml.safe_dump(guest_kubeconfig(rancher, "late")))
    agent = kubectl(path, "get", "deployment", "-n", "cattle-system", "cattle-cluster-agent",
                    "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    assert agent.stdout == "rancher/rancher-agent:v2.8.13", agent.stderr
    rancher.delete(PROVISIONING, "Cluster", "late", WORKSPACE)
    rancher.wait_for_gone(PROVISIONING, "Cluster", "late", budget=WAIT, namespace=WORKSPACE)
    assert host_vms(host, "late") == []


@pytest.mark.parametrize(("config_fields", "pools", "expected"), [
    ({"vmNamespace": "nowhere"}, None, 'Error with pre-create check: "namespaces \\"nowhere\\" not found"'),
    ({"diskInfo": json.dumps({"disks": [{"imageName": "default/image-none", "size": 40}]})}, None,
     'Error with pre-create check: "virtualmachineimages.harvesterhci.io \\"image-none\\" not found"'),
    ({"networkInfo": json.dumps({"interfaces": [{"networkName": "default/no-net"}]})}, None,
     'network-attachment-definitions.k8s.cni.cncf.io \\"no-net\\" not found'),
    ({}, [{"name": "idle", "quantity": 1, "machineConfigRef": {"kind": "HarvesterConfig", "name": "CONFIG"}}],
     "at least one role of etcd, control-plane or worker must be assigned to machinePool [idle]"),
])
def test_bad_requests_are_reported_on_the_cluster(lab: Lab, host: LabHost, config_fields: dict[str, str],
                                                  pools: list[dict[str, Any]] | None, expected: str) -> None:
    rancher = lab.rancher("2.11")
    name = f"bad-{abs(hash(expected)) % 10**6}"
    rancher.create(harvester_config(f"nc-{name}", **config_fields))
    cluster = provisioning_cluster(name, "v1.31.6+rke2r1", f"nc-{name}", agents=0)
    if pools is not None:
        cluster["spec"]["rkeConfig"]["machinePools"] = json.loads(json.dumps(pools).replace("CONFIG", f"nc-{name}"))
    rancher.create(cluster)
    try:
        rancher.wait_for(PROVISIONING, "Cluster", name, lambda c: any(
            expected.replace('\\"', '"') in message for _, _, message in conditions(c).values()),
            budget=WAIT, namespace=WORKSPACE, awaited=expected)
        assert host_vms(host, name) == []
    finally:
        rancher.delete(PROVISIONING, "Cluster", name, WORKSPACE)
        rancher.wait_for_gone(PROVISIONING, "Cluster", name, budget=WAIT, namespace=WORKSPACE)
