"""`Cluster`: the handle every backend returns and every step and domain function takes.

It says how to reach the cluster (a kubeconfig context, SSH to its nodes) and what the cluster offers
beyond the Kubernetes API, each as a real cluster offers it: node power control, Harvester's API at the
VIP (support bundles), a Rancher that manages it (guest clusters, the dashboard), guest clusters the lab
already runs, an address range for test IPPools, and the releases it can be upgraded to (their ISOs).
A step that needs something the cluster lacks raises `CapabilityMissing` (a skip naming what is missing
and how to provide it), never a failure.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol

import pytest
import yaml
from pydantic import SecretStr

from infra.https import Endpoint
from infra.report.redact import register_secret
from infra.scratch import scratch_dir
from infra.ssh import KnownHosts, SshNode, SshTarget
from infra.waits.budget import Budget

if TYPE_CHECKING:
    from infra.kube import Kube


class Capability(Enum):
    """What a cluster may offer beyond the Kubernetes API; the value says how a lab configures it."""

    SSH = "SSH access to the nodes (existing.nodes: host, user, key_file or password)"
    POWER = "node power control (a libvirt domain per node)"
    OTHER_VERSIONS = "clusters at other Harvester versions"
    HARVESTER_API = "Harvester's API at the VIP with an API key (existing.harvester_api: url, token, ca_file)"
    RANCHER = "a Rancher that manages this cluster (rancher: url, token, ca_file)"
    GUEST_CLUSTER = "a guest RKE2 cluster (existing.guest, or a Rancher to provision one)"
    LB_ADDRESSES = "an address range for test IPPools (existing.lb_address_range: FIRST-LAST)"
    RELEASES = "the ISO of an upgrade target (upgrade.releases: version, iso_url, iso_checksum)"
    FAULT_INJECTION = "fault injection (the simulated backend only)"
    BACKUP_TARGET = "a backup target (Harvester's backup-target setting: an NFS or S3 target, Settings > backup-target)"


class CapabilityMissing(pytest.skip.Exception):  # type: ignore[name-defined]
    """The cluster lacks what a step needs: the scenario skips with one line saying what and how to add it."""

    __module__ = "builtins"      # pytest prints "CapabilityMissing: <what is missing>", as it prints "Skipped: ..."

    def __init__(self, message: str, capability: Capability | None = None) -> None:
        super().__init__(message, _use_item_location=True)
        self.capability = capability


@dataclass(frozen=True)
class NodeHandle:
    """A node as the inventory knows it: its name (the Node's name) and how to log in."""

    name: str
    ssh_host: str | None = None
    ssh_port: int | None = None
    ssh_user: str = "rancher"
    ssh_key_file: Path | None = None
    ssh_password: SecretStr | None = field(default=None, repr=False)
    ssh_host_key: str | None = None      # "ssh-ed25519 AAAA...", pinned when provisioning knows it

    @property
    def reachable(self) -> bool:
        return bool(self.ssh_host and self.ssh_port and (self.ssh_key_file or self.ssh_password))


@dataclass(frozen=True)
class AddressRange:
    """Consecutive IPv4 addresses a lab reserves for the IPPools the harness creates."""

    first: ipaddress.IPv4Address
    last: ipaddress.IPv4Address

    @classmethod
    def parse(cls, text: str) -> "AddressRange":
        """`198.51.100.240-198.51.100.249`."""
        start, sep, end = text.partition("-")
        try:
            first, last = ipaddress.IPv4Address(start.strip()), ipaddress.IPv4Address(end.strip())
        except ValueError:
            raise ValueError(f"not an address range {text!r}; write it as FIRST-LAST, e.g. "
                             "198.51.100.240-198.51.100.249") from None
        if not sep or last < first:
            raise ValueError(f"not an address range {text!r}; the first address must not be after the last")
        return cls(first, last)

    @property
    def size(self) -> int:
        return int(self.last) - int(self.first) + 1

    def addresses(self) -> list[str]:
        return [str(ipaddress.IPv4Address(a)) for a in range(int(self.first), int(self.last) + 1)]

    def __contains__(self, address: object) -> bool:
        try:
            return self.first <= ipaddress.IPv4Address(str(address)) <= self.last
        except ValueError:
            return False

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


@dataclass(frozen=True)
class Release:
    """An upgrade target as a Version names it: the ISO (and how to trust its server), the checksum,
    and the annotations its Upgrade needs (e.g. `harvesterhci.io/skip-version-check` for a pre-release)."""

    version: str
    iso_url: str
    iso_checksum: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    ca_file: Path | None = None

    def iso(self) -> Endpoint:
        return Endpoint(self.iso_url, ca_file=self.ca_file)


@dataclass(frozen=True)
class GuestAccess:
    """A guest RKE2 cluster the lab already runs on this Harvester cluster."""

    name: str
    host_namespace: str = "default"
    kubeconfig: Path | None = None       # None: Rancher's Secret fleet-default/<name>-kubeconfig


@dataclass(frozen=True)
class GuestTemplate:
    """What Rancher's Harvester node driver needs to provision a guest RKE2 cluster's VMs on this cluster."""

    cloud_credential: str = ""           # `cattle-global-data:cc-xxxxx`, Rancher's credential for this Harvester
    vm_namespace: str = "default"
    image: str = ""                      # `<namespace>/<VirtualMachineImage>` the VMs boot
    network: str = "default/vm-network"  # `<namespace>/<NetworkAttachmentDefinition>`
    ssh_user: str = "ubuntu"
    cpus: int = 2
    memory_gib: int = 4
    disk_gib: int = 40
    nodes: int = 3


@dataclass(frozen=True)
class RancherAccess:
    """A Rancher that manages the cluster: its API (Steve, and its local cluster's Kubernetes API)."""

    url: str
    token: SecretStr = field(repr=False)
    ca_file: Path | None = None
    verify: bool = True
    cluster_id: str | None = None        # Rancher's id of this Harvester cluster (Virtualization Management);
    #                                      None: this Rancher does not manage it (it provisions guests only)
    guest_template: GuestTemplate | None = None   # None: this Rancher cannot provision guests here

    def endpoint(self) -> Endpoint:
        return Endpoint(self.url, token=self.token, ca_file=self.ca_file, verify=self.verify)

    def local_kubeconfig(self) -> Path:
        """A kubeconfig for Rancher's local cluster (`<url>/k8s/clusters/local`), written privately."""
        cluster: dict[str, Any] = {"server": f"{self.url.rstrip('/')}/k8s/clusters/local"}
        if self.ca_file is not None:
            cluster["certificate-authority"] = str(self.ca_file)
        if not self.verify:
            cluster["insecure-skip-tls-verify"] = True
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "rancher",
                  "clusters": [{"name": "rancher", "cluster": cluster}],
                  "users": [{"name": "rancher", "user": {"token": self.token.get_secret_value()}}],
                  "contexts": [{"name": "rancher", "context": {"cluster": "rancher", "user": "rancher"}}]}
        path = scratch_dir("rancher") / "kubeconfig"
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(config))
        return path


CLUSTER_KEY = pytest.StashKey["Cluster"]()
"""The scenario's cluster, for plugins that act on a failure (pausing, keeping the cluster)."""


class NodePower(Protocol):
    def power(self, node: str, action: str) -> None: ...


class FaultInjector(Protocol):
    def inject(self, **spec: Any) -> dict[str, Any]: ...


@dataclass
class Cluster:
    name: str
    backend: str
    kubeconfig: Path
    harvester_version: str
    run_id: str
    context: str | None = None
    nodes: list[NodeHandle] = field(default_factory=list)
    known_hosts: Path | None = None            # the run's known_hosts file (never ~/.ssh)
    power_control: NodePower | None = None
    harvester_api: Endpoint | None = None      # Harvester's own API at the VIP (support bundles)
    ranchers: list[RancherAccess] = field(default_factory=list)   # a lab has one; the simulator one per line
    guests: list[GuestAccess] = field(default_factory=list)
    lb_addresses: AddressRange | None = None
    releases: dict[str, Release] = field(default_factory=dict)
    target: str | None = None                  # the release an upgrade goes to when a story names none
    faults: FaultInjector | None = None
    gone: Callable[[], str | None] | None = None   # why the API server will never answer again, if known
    _kube: "Kube | None" = field(default=None, repr=False)
    _sessions: dict[str, SshNode] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        # The kubeconfig's credentials must never reach a log line or a report attachment.
        for user in (yaml.safe_load(self.kubeconfig.read_text()) or {}).get("users") or []:
            for field_name in ("token", "password", "client-key-data"):
                register_secret((user.get("user") or {}).get(field_name))

    # ---- the Kubernetes API ----------------------------------------------------------------------
    def kube(self) -> "Kube":
        from infra.kube import Kube

        if self._kube is None:
            self._kube = Kube(self.kubeconfig, context=self.context, gone=self.gone)
        return self._kube

    def api_endpoint(self) -> Endpoint:
        """The Kubernetes API server with this cluster's credentials (for what the client library lacks)."""
        return Endpoint.from_kubeconfig(self.kubeconfig, self.context)

    # ---- nodes -------------------------------------------------------------------------------------
    def node(self, name: str) -> NodeHandle:
        found = next((n for n in self.nodes if n.name == name), None)
        if found is None:
            raise LookupError(f"{self.name} has no node {name!r}; its nodes: {', '.join(n.name for n in self.nodes)}")
        return found

    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def ssh(self, node_name: str, *, reconnect_budget: Budget | None = None) -> SshNode:
        """The node's SSH session (one per node, kept for the run; it reconnects by itself after a reboot)."""
        if node_name not in self._sessions:
            node = self.node(node_name)
            if not node.reachable:
                raise CapabilityMissing(f"node {node_name} of {self.name} has no SSH login in its inventory: "
                                        f"{Capability.SSH.value}", Capability.SSH)
            if self.known_hosts is None:     # a backend that named none: a private file, never ~/.ssh
                self.known_hosts = scratch_dir("ssh") / "known_hosts"
            assert node.ssh_host is not None and node.ssh_port is not None
            target = SshTarget(node.name, node.ssh_host, node.ssh_port, user=node.ssh_user,
                               key_file=node.ssh_key_file, password=node.ssh_password, host_key=node.ssh_host_key)
            session = SshNode(target, KnownHosts(self.known_hosts))
            if reconnect_budget is not None:
                session.reconnect_budget = reconnect_budget
            self._sessions[node_name] = session
        return self._sessions[node_name]

    def close_sessions(self) -> None:
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()

    def power(self, node: str, action: str) -> None:
        """`reboot`, `shutdown`, `start` or `destroy` a node through its power control."""
        self.require(Capability.POWER)
        assert self.power_control is not None
        self.power_control.power(node, action)

    # ---- what else it offers ----------------------------------------------------------------------
    def offers(self, capability: Capability) -> bool:
        return {
            Capability.SSH: bool(self.nodes) and all(n.reachable for n in self.nodes),
            Capability.POWER: self.power_control is not None,
            Capability.OTHER_VERSIONS: False,           # the backend decides (Backend.acquire)
            Capability.HARVESTER_API: self.harvester_api is not None,
            Capability.RANCHER: bool(self.ranchers),
            Capability.GUEST_CLUSTER: bool(self.guests) or bool(self.ranchers),
            Capability.LB_ADDRESSES: self.lb_addresses is not None,
            Capability.RELEASES: bool(self.releases),
            Capability.FAULT_INJECTION: self.faults is not None,
        }[capability]

    def require(self, capability: Capability, why: str = "") -> None:
        if not self.offers(capability):
            lab = f"this {self.backend} cluster" if self.backend != "existing" else "this lab"
            raise CapabilityMissing(f"{why or 'this scenario'} needs {capability.value}; {lab} has none "
                                    "configured", capability)

    def release(self, version: str | None = None) -> Release:
        """The upgrade target `version` (default: the run's target), as this cluster's catalogue names it."""
        wanted = version or self.target
        if wanted is None:
            raise CapabilityMissing(f"no upgrade target is configured (upgrade.target); "
                                    f"{Capability.RELEASES.value}", Capability.RELEASES)
        found = self.releases.get(wanted)
        if found is None:
            known = ", ".join(self.releases) or "none"
            raise CapabilityMissing(f"needs the ISO of Harvester {wanted}; this cluster's releases: {known} "
                                    f"({Capability.RELEASES.value})", Capability.RELEASES)
        return found

    def inject_fault(self, **spec: Any) -> dict[str, Any]:
        self.require(Capability.FAULT_INJECTION)
        assert self.faults is not None
        return self.faults.inject(**spec)
