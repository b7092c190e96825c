"""Reaching a guest RKE2 cluster that runs on Harvester VMs.

A guest's kubeconfig comes, as Harvester/Rancher users get it, from the host: the Secret
`<host namespace>/<cluster>-kubeconfig`, key `value` (Rancher's `<cluster>-kubeconfig`
convention); or it is given (a file). On the simulated backend a guest is started on request
(`POST /twin/v1/guests`) and its kubeconfig comes back with it. Kubeconfigs are written to a
private temporary directory (0700/0600) and never logged or attached.
"""
from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from infra.kube import Kube, NotFound

from .twin_endpoints import twin_call

KUBEVIRT = "kubevirt.io/v1"
ROLE_PREFIX = "node-role.kubernetes.io/"
CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/controlplane")

Obj = dict[str, Any]


class GuestUnavailable(RuntimeError):
    """The guest cluster could not be reached or provided (an infrastructure problem)."""


@dataclass(frozen=True)
class GuestNode:
    """A guest node, its roles, and the host VM (same name) and host node it runs on."""

    name: str
    roles: tuple[str, ...]
    vm: str
    host_node: str

    @property
    def control_plane(self) -> bool:
        return "control-plane" in self.roles or "controlplane" in self.roles


@dataclass
class GuestCluster:
    name: str
    kubeconfig: Path
    host: Kube
    host_namespace: str
    simulated: bool = False
    _kube: Kube | None = field(default=None, repr=False)

    def kube(self) -> Kube:
        if self._kube is None:
            self._kube = Kube(self.kubeconfig, unavailable_budget=self.host.unavailable_budget)
        return self._kube

    def server_version(self) -> str:
        return str(self.kube().server_version()["gitVersion"])

    def nodes(self) -> list[GuestNode]:
        found = []
        for node in self.kube().list("v1", "Node"):
            labels = node["metadata"].get("labels") or {}
            roles = tuple(sorted(k[len(ROLE_PREFIX):] for k in labels if k.startswith(ROLE_PREFIX)))
            name = node["metadata"]["name"]
            found.append(GuestNode(name, roles, name, self.host_node_of(name)))
        return found

    def host_node_of(self, guest_node: str) -> str:
        """The host node running the VM of a guest node (the VMI has the guest node's name)."""
        vmi = self.host.find(KUBEVIRT, "VirtualMachineInstance", guest_node, self.host_namespace)
        return str(((vmi or {}).get("status") or {}).get("nodeName", ""))


def guest_name(purpose: str) -> str:
    """A short DNS-1035 name for a guest this run asks for, e.g. `csi-3f9a1c`."""
    cleaned = re.sub(r"[^a-z0-9-]", "", purpose.lower())[:20].strip("-") or "guest"
    return f"{cleaned}-{secrets.token_hex(3)}"


def _private_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="harvester-e2e-guest-"))     # mkdtemp makes it 0700


def _write_kubeconfig(directory: Path, name: str, config: Obj) -> Path:
    path = directory / f"{name}.kubeconfig"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(config, handle, sort_keys=False)
    return path


def provision_simulated_guest(host: Kube, name: str, rke2_version: str, rancher_line: str, run_id: str, *,
                              host_namespace: str = "default") -> GuestCluster:
    """Ask the simulated Harvester for a guest RKE2 cluster on its VMs."""
    answer = twin_call(host, "POST", "/twin/v1/guests", {"name": name, "rke2Version": rke2_version,
                                                         "rancherLine": rancher_line, "runId": run_id,
                                                         "hostNamespace": host_namespace})
    path = _write_kubeconfig(_private_dir(), name, answer["kubeconfig"])
    return GuestCluster(name, path, host, answer["hostNamespace"], simulated=True)


def remove_simulated_guest(host: Kube, name: str) -> None:
    """Stop a simulated guest and remove its VMs from the host (nothing if it is already gone)."""
    try:
        twin_call(host, "DELETE", f"/twin/v1/guests/{name}")
    except NotFound:
        pass


def guest_from_host_secret(host: Kube, name: str, host_namespace: str) -> GuestCluster:
    """The guest whose kubeconfig the host keeps in `<host_namespace>/<name>-kubeconfig` (key `value`)."""
    secret = host.find("v1", "Secret", f"{name}-kubeconfig", host_namespace)
    if secret is None or "value" not in (secret.get("data") or {}):
        raise GuestUnavailable(f"no Secret {host_namespace}/{name}-kubeconfig with key 'value' on the host: "
                               "give the guest's kubeconfig in the configuration instead")
    config = yaml.safe_load(base64.b64decode(secret["data"]["value"]))
    return GuestCluster(name, _write_kubeconfig(_private_dir(), name, config), host, host_namespace)


def guest_from_kubeconfig(host: Kube, name: str, kubeconfig: Path, host_namespace: str) -> GuestCluster:
    if not kubeconfig.is_file():
        raise GuestUnavailable(f"guest kubeconfig {kubeconfig} does not exist")
    return GuestCluster(name, kubeconfig, host, host_namespace)


def forget_kubeconfig(guest: GuestCluster) -> None:
    """Remove a kubeconfig this module wrote (never one that was given)."""
    if guest.kubeconfig.parent.name.startswith("harvester-e2e-guest-"):
        shutil.rmtree(guest.kubeconfig.parent, ignore_errors=True)


def strip_control_plane_labels(kube: Kube, defer: Callable[[str, Callable[[], Any]], None]) -> dict[str, dict[str, str]]:
    """Remove the control-plane role labels from every node that has them; the undo is deferred first."""
    saved: dict[str, dict[str, str]] = {}
    for node in kube.list("v1", "Node"):
        labels = node["metadata"].get("labels") or {}
        found = {k: v for k, v in labels.items() if k in CONTROL_PLANE_LABELS}
        if found:
            saved[node["metadata"]["name"]] = found

    def restore() -> None:
        for name, labels in saved.items():
            kube.patch("v1", "Node", name, {"metadata": {"labels": labels}})

    defer("restore the guest nodes' control-plane labels", restore)
    for name, labels in saved.items():
        kube.patch("v1", "Node", name, {"metadata": {"labels": {k: None for k in labels}}})
    return saved


@dataclass
class GuestMismatch(AssertionError):
    """The guest is not the cluster the matrix row asked for."""

    summary: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.summary


def check_matrix_row(guest: GuestCluster, rke2_version: str, rancher_line: str) -> str:
    """The guest reports the RKE2 release (API and every kubelet) and runs the Rancher line's agent.

    Returns the node table (name, roles, kubelet, host node) for the report.
    """
    kube = guest.kube()
    kubelets = {n["metadata"]["name"]: n["status"]["nodeInfo"]["kubeletVersion"] for n in kube.list("v1", "Node")}
    table = "\n".join(f"{n.name:<28} roles={','.join(n.roles) or '<none>':<30} kubelet={kubelets[n.name]:<18} "
                      f"host node={n.host_node}" for n in guest.nodes())
    reported = guest.server_version()
    agent = kube.find("apps/v1", "Deployment", "cattle-cluster-agent", "cattle-system")
    image = (agent or {}).get("spec", {}).get("template", {}).get("spec", {}).get("containers", [{}])[0].get("image", "")
    problems = []
    if reported != rke2_version or set(kubelets.values()) != {rke2_version}:
        problems.append(f"the guest reports {reported} (kubelets {sorted(set(kubelets.values()))}), "
                        f"not {rke2_version}")
    if not image.split(":v")[-1].startswith(rancher_line + "."):
        problems.append(f"its cattle-cluster-agent runs {image or 'nothing'}, not a Rancher {rancher_line} agent")
    if problems:
        raise GuestMismatch("; ".join(problems), evidence={"nodes": table})
    return table
