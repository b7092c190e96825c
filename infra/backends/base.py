"""The `Cluster` handle every backend returns: an API endpoint, nodes, and what it takes to clean up."""
from __future__ import annotations

import abc
import json
import ssl
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

from infra.config import RunConfig
from infra.report.redact import register_secret
from infra.ssh import KnownHosts, SshNode, SshTarget
from infra.waits.budget import Budget


class BackendError(RuntimeError):
    """The backend could not provide a cluster (an infrastructure problem, not a product defect)."""


@dataclass(frozen=True)
class NodeHandle:
    name: str
    ssh_host: str | None = None
    ssh_port: int | None = None
    ssh_user: str = "rancher"
    ssh_key_file: Path | None = None
    ssh_password: SecretStr | None = field(default=None, repr=False)
    ssh_host_key: str | None = None      # "ssh-ed25519 AAAA...", pinned when provisioning knows it


@dataclass
class Cluster:
    name: str
    backend: str
    kubeconfig: Path
    harvester_version: str
    run_id: str
    nodes: list[NodeHandle] = field(default_factory=list)
    simulated: bool = False
    power_control: Any = None        # node power through libvirt domains (see `power`); None: not available
    known_hosts: Path | None = None  # the run's known_hosts file (never ~/.ssh)
    _kube: Any = None
    gone: Any = None            # () -> reason the API server will never answer again, or None
    harvester_url: str | None = None   # Harvester's own API (support bundles); the VIP on a real cluster
    _sessions: dict[str, SshNode] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The kubeconfig's credentials must never reach a log line or a report attachment.
        for user in (yaml.safe_load(self.kubeconfig.read_text()) or {}).get("users") or []:
            for field_name in ("token", "password", "client-key-data"):
                register_secret((user.get("user") or {}).get(field_name))

    def kube(self) -> Any:
        from infra.kube import Kube

        if self._kube is None:
            self._kube = Kube(self.kubeconfig, gone=self.gone)
        return self._kube

    def node(self, name: str) -> NodeHandle:
        found = next((n for n in self.nodes if n.name == name), None)
        if found is None:
            raise BackendError(f"{self.name} has no node {name!r}; its nodes: {', '.join(n.name for n in self.nodes)}")
        return found

    def ssh(self, node_name: str, *, reconnect_budget: Budget | None = None) -> SshNode:
        """The node's SSH session (one per node, kept for the run; it reconnects by itself after a reboot)."""
        if node_name not in self._sessions:
            node = self.node(node_name)
            if node.ssh_host is None or node.ssh_port is None:
                raise BackendError(f"node {node_name} of {self.name} has no SSH address in its inventory")
            if self.known_hosts is None:     # a backend that named none: a private file, never ~/.ssh
                self.known_hosts = Path(tempfile.mkdtemp(prefix="harvester-e2e-ssh-")) / "known_hosts"
            target = SshTarget(node.name, node.ssh_host, node.ssh_port, user=node.ssh_user,
                               key_file=node.ssh_key_file, password=node.ssh_password, host_key=node.ssh_host_key)
            options = {"reconnect_budget": reconnect_budget} if reconnect_budget else {}
            self._sessions[node_name] = SshNode(target, KnownHosts(self.known_hosts), **options)
        return self._sessions[node_name]

    def close_sessions(self) -> None:
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()

    def power(self, node: str, action: str) -> None:
        """`reboot`, `shutdown`, `start` or `destroy` a node, through libvirt (real or simulated domains)."""
        if self.power_control is None:
            raise BackendError(f"node power operations are not available on {self.name} ({self.backend} backend)")
        self.power_control.power(node, action)

    @property
    def api_url(self) -> str:
        config = yaml.safe_load(self.kubeconfig.read_text())
        return config["clusters"][0]["cluster"]["server"]

    def twin_info(self, path: str) -> dict[str, Any]:
        """GET a twin-only endpoint (`/twin/v1/...`) of a simulated cluster."""
        if not self.simulated:
            raise BackendError(f"{path} exists only on the simulated backend; {self.name} is {self.backend}")
        return _twin_request(self.kubeconfig, path)

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

    def retire(self, cluster: Cluster) -> None:
        """This cluster was changed for good (e.g. upgraded): do not hand it to another scenario.
        Backends that cannot make a new one (an existing lab) keep it; the next scenario sees it as is."""

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
    if config.backend == "libvirt":
        from .libvirt import LibvirtBackend
        return LibvirtBackend(config)
    raise BackendError(f"unknown backend {config.backend!r}; use simulated, libvirt or existing")
