"""Shared by the API-server semantics tests: real kubectl binaries, the protobuf schema made from one, a simulator."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from infra.backends.simulated import SimulatorProcess
from infra.simulator.apimachinery import protobuf

from ..conftest import start_simulator

# Real kubectl releases of several minors (the Cloud SDK ships them side by side); the PATH one otherwise.
KUBECTL_DIR = Path("/usr/lib/google-cloud-sdk/bin")


def kubectl_binary(minor: int) -> Path | None:
    candidate = KUBECTL_DIR / f"kubectl.1.{minor}"
    if candidate.is_file():
        return candidate
    found = shutil.which("kubectl")
    if found and minor == 32:
        return Path(found)
    return None


def make_schema(directory: Path, minor: int = 32) -> Path:
    binary = kubectl_binary(minor)
    if binary is None:
        pytest.skip(f"no kubectl 1.{minor} binary to extract the protobuf schema from")
    out = directory / "descriptors.binpb"
    protobuf.extract(binary, out)
    return out


@pytest.fixture(scope="module")
def proto_simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    """A v1.5.1 simulator that reads protobuf bodies with the schema of kubectl 1.32."""
    schema = make_schema(tmp_path_factory.mktemp("kube-proto"))
    previous = os.environ.get(protobuf.ENV_VAR)
    os.environ[protobuf.ENV_VAR] = str(schema)
    try:
        process = start_simulator("v1.5.1", tmp_path_factory.mktemp("simulator-v1.5.1"))
    finally:
        if previous is None:
            os.environ.pop(protobuf.ENV_VAR, None)
        else:
            os.environ[protobuf.ENV_VAR] = previous
    try:
        yield process
    finally:
        process.stop()


Kubectl = Callable[..., subprocess.CompletedProcess]


def kubectl_for(simulator: SimulatorProcess, minor: int = 32) -> Kubectl:
    binary = kubectl_binary(minor)
    if binary is None:
        pytest.skip(f"kubectl 1.{minor} is not installed")
    env = {**os.environ, "KUBECONFIG": str(simulator.kubeconfig), "HOME": str(simulator.workdir)}

    def run(*args: str, input: str | None = None, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        result = subprocess.run([str(binary), *args], input=input, capture_output=True, text=True, env=env,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl 1.{minor} {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    return run


def get_json(kubectl: Kubectl, *args: str) -> dict[str, Any]:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


VOLATILE_META = ("uid", "resourceVersion", "creationTimestamp", "managedFields", "generation")


def comparable(obj: dict[str, Any], name: str) -> dict[str, Any]:
    """An object with what differs between two creations (ids, times, the name) taken out."""
    text = json.dumps(obj).replace(name, "NAME")
    clone = json.loads(text)
    for key in VOLATILE_META:
        clone["metadata"].pop(key, None)
    spec = clone.get("spec") or {}
    for key in ("clusterIP", "clusterIPs"):
        spec.pop(key, None)
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.pop("nodePort", None)
    return clone


def raw_request(simulator: SimulatorProcess, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One HTTPS request to the simulator with its token and CA; (status, decoded JSON body or text)."""
    import base64
    import ssl
    import tempfile
    import urllib.error
    import urllib.request

    import yaml

    config = yaml.safe_load(simulator.kubeconfig.read_text())
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    with tempfile.NamedTemporaryFile("wb", suffix=".pem", delete=False) as ca:
        ca.write(base64.b64decode(cluster["certificate-authority-data"]))
    context = ssl.create_default_context(cafile=ca.name)
    os.unlink(ca.name)
    data = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(cluster["server"] + path, data=data, method=method, headers={
        "Authorization": f"Bearer {user['token']}", "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, context=context, timeout=20) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text
