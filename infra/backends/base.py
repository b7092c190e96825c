"""The `Cluster` handle every backend returns: an API endpoint, nodes, and what it takes to clean up."""
from __future__ import annotations

import abc
import json
import ssl
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infra.config import RunConfig
from infra.report.redact import register_secret


class BackendError(RuntimeError):
    """The backend could not provide a cluster (an infrastructure problem, not a product defect)."""


@dataclass(frozen=True)
class NodeHandle:
    name: str
    ssh_host: str | None = None
    ssh_port: int | None = None


@dataclass
class Cluster:
    name: str
    backend: str
    kubeconfig: Path
    harvester_version: str
    run_id: str
    nodes: list[NodeHandle] = field(default_factory=list)
    simulated: bool = False
    _kube: Any = None

    def __post_init__(self) -> None:
        # The kubeconfig's credentials must never reach a log line or a report attachment.
        for user in (yaml.safe_load(self.kubeconfig.read_text()) or {}).get("users") or []:
            for field_name in ("token", "password", "client-key-data"):
                register_secret((user.get("user") or {}).get(field_name))

    def kube(self) -> Any:
        from infra.kube import Kube

        if self._kube is None:
            self._kube = Kube(self.kubeconfig)
        return self._kube

    @property
    def api_url(self) -> str:
        config = yaml.safe_load(self.kubeconfig.read_text())
        return config["clusters"][0]["cluster"]["server"]

    def inject_fault(self, **spec: Any) -> dict[str, Any]:
        """Fault injection, over HTTPS, on a simulated cluster only (`/twin/v1/faults`)."""
        if not self.simulated:
            raise BackendError(f"fault injection needs the simulated backend; {self.name} is {self.backend}")
        return _twin_request(self.kubeconfig, "/twin/v1/faults", spec)


def _twin_request(kubeconfig: Path, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    import base64
    import tempfile

    config = yaml.safe_load(kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    token = config["users"][0]["user"]["token"]
    with tempfile.NamedTemporaryFile("wb", suffix=".crt") as ca:
        ca.write(base64.b64decode(cluster["certificate-authority-data"]))
        ca.flush()
        context = ssl.create_default_context(cafile=ca.name)
    request = urllib.request.Request(cluster["server"] + path, method="POST" if body is not None else "GET",
                                     data=json.dumps(body).encode() if body is not None else None,
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=context, timeout=10) as response:  # noqa: S310 - https only
        return json.loads(response.read())


class Backend(abc.ABC):
    name: str

    def __init__(self, config: RunConfig) -> None:
        self.config = config

    @abc.abstractmethod
    def acquire(self, harvester_version: str) -> Cluster:
        """A cluster at that version (started, provisioned or checked, depending on the backend)."""

    @abc.abstractmethod
    def release_all(self) -> None:
        """Tear down what this backend created in this run, and nothing else."""


def backend_for(config: RunConfig) -> Backend:
    if config.backend == "simulated":
        from .simulated import SimulatedBackend
        return SimulatedBackend(config)
    if config.backend == "existing":
        from .existing import ExistingBackend
        return ExistingBackend(config)
    raise BackendError("backend 'libvirt' is not available yet: provisioning through libvirt is tracked as "
                       "its own piece of work; use --backend simulated or --backend existing")
