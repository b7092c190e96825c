"""x509 client certificates on the simulator's kube API, as RKE2's kube-apiserver takes them: a certificate
from the simulator's client CA logs in as its CN with its O as groups (system:masters is admin); one from
any other CA gets 401, not a TLS failure; the token keeps working."""
from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import threading
from pathlib import Path
from typing import Iterator

import kubernetes
import pytest
import yaml
from kubernetes.client.rest import ApiException

from infra.simulator.apiserver.objects import ObjectApi
from infra.simulator.apiserver.server import ApiServer
from infra.simulator.apiserver.tls import make_client_certificate, make_tls_material
from infra.simulator.kubeconfig import write_config

from .guest_support import Lab, start_lab

KUBECTL = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp("x509-simulator")
    found = start_lab(tmp, ranchers=(), extra=("--client-cert-kubeconfig", str(tmp / "admin-cert.kubeconfig")))
    yield found
    found.stop()


def core(kubeconfig: Path) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(kubernetes.config.new_client_from_config(config_file=str(kubeconfig)))


def with_certificate(lab: Lab, path: Path, cert: bytes, key: bytes) -> Path:
    config = yaml.safe_load(Path(lab.info["clientCertKubeconfig"]).read_text())
    config["users"][0]["user"] = {"client-certificate-data": base64.b64encode(cert).decode(),
                                  "client-key-data": base64.b64encode(key).decode()}
    return write_config(path, config)


def test_the_ready_file_names_a_private_client_certificate_kubeconfig(lab: Lab) -> None:
    path = Path(lab.info["clientCertKubeconfig"])
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    user = yaml.safe_load(path.read_text())["users"][0]["user"]
    assert set(user) == {"client-certificate-data", "client-key-data"}
    from cryptography import x509
    from cryptography.x509.oid import NameOID
    cert = x509.load_pem_x509_certificate(base64.b64decode(user["client-certificate-data"]))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "system:admin"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"


def test_the_admin_certificate_logs_in_like_the_token(lab: Lab) -> None:
    by_cert = sorted(n.metadata.name for n in core(Path(lab.info["clientCertKubeconfig"])).list_node().items)
    by_token = sorted(n.metadata.name for n in core(lab.process.kubeconfig).list_node().items)
    assert by_cert == by_token == ["harvester-node-0", "harvester-node-1", "harvester-node-2"]


def test_kubectl_logs_in_with_the_certificate(lab: Lab) -> None:
    if not os.path.exists(KUBECTL):
        pytest.skip("kubectl 1.32 is not on this machine")
    nodes = subprocess.run([KUBECTL, "--kubeconfig", lab.info["clientCertKubeconfig"], "get", "nodes", "-o", "name"],
                           capture_output=True, text=True, timeout=60)
    assert nodes.returncode == 0, nodes.stderr
    assert nodes.stdout.split() == ["node/harvester-node-0", "node/harvester-node-1", "node/harvester-node-2"]


def test_a_certificate_from_another_ca_gets_401(lab: Lab, tmp_path: Path) -> None:
    other = make_tls_material(client_ca_name="rke2-client-ca")       # same names, different keys
    cert, key = make_client_certificate(other.client_ca_cert_pem, other.client_ca_key_pem, "system:admin",
                                        ("system:masters",))
    with pytest.raises(ApiException) as caught:
        core(with_certificate(lab, tmp_path / "foreign.kubeconfig", cert, key)).list_node()
    assert caught.value.status == 401
    if os.path.exists(KUBECTL):
        result = subprocess.run([KUBECTL, "--kubeconfig", str(tmp_path / "foreign.kubeconfig"), "get", "nodes"],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode != 0 and "You must be logged in to the server" in result.stderr


def test_a_certificate_from_the_server_ca_is_not_a_client_certificate(lab: Lab, tmp_path: Path) -> None:
    config = yaml.safe_load(Path(lab.info["clientCertKubeconfig"]).read_text())
    server_ca = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"])
    assert server_ca.decode() == lab.info["caPem"]
    # Without the server CA's key nobody can sign with it; a self-signed look-alike must fail too.
    fake = make_tls_material(ca_name="harvester-simulator-ca", client_ca_name="harvester-simulator-ca")
    cert, key = make_client_certificate(fake.client_ca_cert_pem, fake.client_ca_key_pem, "system:admin",
                                        ("system:masters",))
    with pytest.raises(ApiException) as caught:
        core(with_certificate(lab, tmp_path / "lookalike.kubeconfig", cert, key)).list_node()
    assert caught.value.status == 401


def test_a_valid_certificate_outside_system_masters_is_authenticated_but_forbidden(tmp_path: Path) -> None:
    """A certificate of the client CA for alice (O dev) is a login (403, not 401): the simulator has no RBAC
    binding for anyone but cluster admins. Needs the client CA's key, so the server runs in-process."""
    material = make_tls_material(client_ca_name="rke2-client-ca")
    loop = asyncio.new_event_loop()
    server = ApiServer(ObjectApi(), token="t", tls=material)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
        cert, key = make_client_certificate(material.client_ca_cert_pem, material.client_ca_key_pem, "alice", ("dev",))
        alice = write_config(tmp_path / "alice.kubeconfig", {
            "apiVersion": "v1", "kind": "Config", "current-context": "c",
            "clusters": [{"name": "c", "cluster": {"server": server.url, "certificate-authority-data":
                                                  base64.b64encode(material.ca_cert_pem).decode()}}],
            "users": [{"name": "u", "user": {"client-certificate-data": base64.b64encode(cert).decode(),
                                             "client-key-data": base64.b64encode(key).decode()}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]})
        with pytest.raises(ApiException) as caught:
            core(alice).list_namespace()
        assert caught.value.status == 403 and 'User \\"alice\\" cannot get path' in caught.value.body
        admin_cert, admin_key = make_client_certificate(material.client_ca_cert_pem, material.client_ca_key_pem,
                                                        "system:admin", ("system:masters",))
        config = yaml.safe_load(alice.read_text())
        config["users"][0]["user"] = {"client-certificate-data": base64.b64encode(admin_cert).decode(),
                                      "client-key-data": base64.b64encode(admin_key).decode()}
        assert core(write_config(tmp_path / "admin.kubeconfig", config)).list_namespace().items == []
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_no_certificate_and_no_token_gets_401(lab: Lab, tmp_path: Path) -> None:
    config = yaml.safe_load(Path(lab.info["clientCertKubeconfig"]).read_text())
    config["users"][0]["user"] = {}
    with pytest.raises(ApiException) as caught:
        core(write_config(tmp_path / "anonymous.kubeconfig", config)).list_node()
    assert caught.value.status == 401
