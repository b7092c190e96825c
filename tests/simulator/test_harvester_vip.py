"""Harvester's own API at the cluster VIP: a listener of its own with a certificate from Rancher's CA
(not the RKE2 one), Rancher API keys as bearer tokens (the kube token is refused), and the support
bundle download as Harvester's handler serves it."""
from __future__ import annotations

import io
import json
import ssl
import tempfile
import urllib.error
import urllib.request
import zipfile
from typing import Any

import pytest

from infra.backends.simulated import SimulatorProcess
from infra.kube import Kube
from infra.waits.budget import Budget

HARVESTER = "harvesterhci.io/v1beta1"
NAMESPACE = "harvester-system"


def _context(ca_pem: str) -> ssl.SSLContext:
    with tempfile.NamedTemporaryFile("w", suffix=".crt") as ca:
        ca.write(ca_pem)
        ca.flush()
        return ssl.create_default_context(cafile=ca.name)


def vip_get(simulator: SimulatorProcess, path: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    api = simulator.info["harvesterApi"]
    bearer = api["apiKey"] if token is None else token
    request = urllib.request.Request(api["url"] + path, headers={"Authorization": f"Bearer {bearer}"} if bearer else {})
    try:
        with urllib.request.urlopen(request, context=_context(api["caPem"]), timeout=30) as response:  # noqa: S310
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def kube_token(simulator: SimulatorProcess) -> str:
    import yaml
    return yaml.safe_load(simulator.kubeconfig.read_text())["users"][0]["user"]["token"]


def ready_bundle(kube: Kube, name: str) -> dict[str, Any]:
    kube.create({"apiVersion": HARVESTER, "kind": "SupportBundle", "metadata": {"name": name, "namespace": NAMESPACE},
                 "spec": {"description": "vip test"}})
    found = kube.wait_for(HARVESTER, "SupportBundle", name,
                          lambda o: ((o or {}).get("status") or {}).get("state") == "ready",
                          budget=Budget("bundle ready", 30), namespace=NAMESPACE, awaited=f"{name} ready")
    assert found is not None
    return found


def test_the_vip_is_its_own_listener_with_another_ca(simulator: SimulatorProcess) -> None:
    api = simulator.info["harvesterApi"]
    assert api["url"] != simulator.info["url"]
    assert api["caPem"] != simulator.info["caPem"]
    assert api["apiKey"].startswith("token-") and len(api["apiKey"].split(":")[0]) == len("token-xxxxx")
    # The kube API's CA does not vouch for the VIP's certificate.
    request = urllib.request.Request(api["url"] + "/v1/harvester/supportbundles/x/download")
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(request, context=_context(simulator.info["caPem"]), timeout=10)  # noqa: S310


def test_the_vip_takes_rancher_api_keys_only(simulator: SimulatorProcess) -> None:
    assert vip_get(simulator, "/v1/harvester/supportbundles/x/download", token=kube_token(simulator))[0] == 401
    assert vip_get(simulator, "/v1/harvester/supportbundles/x/download", token="")[0] == 401
    name, _, secret = simulator.info["harvesterApi"]["apiKey"].partition(":")
    assert vip_get(simulator, "/v1/harvester/supportbundles/x/download", token=f"{name}:{secret[:-1]}x")[0] == 401
    status, _, body = vip_get(simulator, "/v1/harvester/supportbundles/x/download")
    assert status == 400 and json.loads(body) == {
        "errors": ['fail to get support bundle resource: supportbundles.harvesterhci.io "x" not found']}


def test_the_kube_listener_no_longer_serves_harvesters_api(simulator: SimulatorProcess) -> None:
    api = simulator.info
    request = urllib.request.Request(api["url"] + "/v1/harvester/supportbundles/x/download",
                                     headers={"Authorization": f"Bearer {kube_token(simulator)}"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, context=_context(api["caPem"]), timeout=10)  # noqa: S310
    assert caught.value.code == 404


def test_a_download_names_the_file_and_deletes_the_bundle_unless_retained(simulator: SimulatorProcess, kube: Kube) -> None:
    bundle = ready_bundle(kube, "vip-retained")
    status, headers, body = vip_get(simulator, "/v1/harvester/supportbundles/vip-retained/download?retain=true")
    assert status == 200 and headers["Content-Type"] == "application/zip"
    assert headers["Content-Disposition"] == f"attachment; filename={bundle['status']['filename']}"
    assert int(headers["Content-Length"]) == len(body) == bundle["status"]["filesize"]
    assert "cluster/nodes.yaml" in zipfile.ZipFile(io.BytesIO(body)).namelist()
    assert kube.find(HARVESTER, "SupportBundle", "vip-retained", NAMESPACE) is not None, "retain=true keeps it"
    status, _, again = vip_get(simulator, "/v1/harvester/supportbundles/vip-retained/download")
    assert status == 200 and again == body
    kube.wait_for_gone(HARVESTER, "SupportBundle", "vip-retained", namespace=NAMESPACE,
                       budget=Budget("bundle deleted after download", 10))


def test_an_unready_bundle_gets_harvesters_message(simulator: SimulatorProcess, kube: Kube) -> None:
    kube.create({"apiVersion": HARVESTER, "kind": "SupportBundle",
                 "metadata": {"name": "vip-unready", "namespace": NAMESPACE}, "spec": {"description": "unready"}})
    try:
        status, _, body = vip_get(simulator, "/v1/harvester/supportbundles/vip-unready/download")
        assert status == 400 and json.loads(body) == {"errors": ["support bundle is not ready"]}
    finally:
        kube.delete(HARVESTER, "SupportBundle", "vip-unready", NAMESPACE)


def test_the_vip_reaches_the_local_cluster_as_rancher_does(simulator: SimulatorProcess) -> None:
    status, _, body = vip_get(simulator, "/k8s/clusters/local/api/v1/namespaces/harvester-system")
    assert status == 200 and json.loads(body)["metadata"]["name"] == "harvester-system"
    assert vip_get(simulator, "/k8s/clusters/local/api/v1/namespaces", token=kube_token(simulator))[0] == 401
