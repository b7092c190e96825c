"""Reaching a guest RKE2 cluster that runs on Harvester VMs, or having Rancher provision one.

A guest comes from where a lab has one: a guest cluster the lab names (its kubeconfig given, or the
one its Rancher publishes in Secret `fleet-default/<cluster>-kubeconfig`, key `value`), or a new one that the Rancher
managing the cluster provisions with its Harvester node driver (a provisioning.cattle.io Cluster in
`fleet-default`; Rancher reports `status.ready` and the kubeconfig in Secret
`fleet-default/<status.clientSecretName>`), deleted again at cleanup. The simulated backend offers both
the same way. Kubeconfigs are written to a private temporary directory (0700/0600) and never logged.
"""
from __future__ import annotations

import base64
import functools
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from infra.cleanup import CleanupStack
from infra.cluster import (
    Capability,
    CapabilityMissing,
    Cluster,
    GuestAccess,
    RancherAccess,
)
from infra.failures import ProductFailure
from infra.kube import Kube
from infra.report.redact import register_secret
from infra.scratch import scratch_dir, scratch_root, write_private
from infra.waits.budget import Budget

from ..names import RUN_ID_LABEL

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
    provisioned_by: str = ""          # the Rancher that provisioned it for this scenario ("" when given)
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
    return scratch_dir("guest")                 # 0700, removed when the process ends


def _write_kubeconfig(directory: Path, name: str, config: Obj) -> Path:
    for user in config.get("users") or []:          # the report redacts the guest's credentials
        for field_name in ("token", "client-key-data", "password"):
            register_secret((user.get("user") or {}).get(field_name))
    path = directory / f"{name}.kubeconfig"
    return write_private(path, yaml.safe_dump(config, sort_keys=False))


def guest_from_rancher(ranchers: list[RancherAccess], host: Kube, name: str, host_namespace: str) -> GuestCluster:
    """A lab's guest by the kubeconfig its Rancher publishes: Secret `fleet-default/<name>-kubeconfig`."""
    for rancher in ranchers:
        secret = Kube(rancher.local_kubeconfig()).find("v1", "Secret", f"{name}-kubeconfig", FLEET_DEFAULT)
        if secret is not None and "value" in (secret.get("data") or {}):
            config = yaml.safe_load(base64.b64decode(secret["data"]["value"]))
            return GuestCluster(name, _write_kubeconfig(_private_dir(), name, config), host, host_namespace)
    raise GuestUnavailable(f"no Rancher of the lab ({len(ranchers)} configured) has Secret "
                           f"{FLEET_DEFAULT}/{name}-kubeconfig: give existing.guest.kubeconfig instead")


def guest_from_kubeconfig(host: Kube, name: str, kubeconfig: Path, host_namespace: str) -> GuestCluster:
    if not kubeconfig.is_file():
        raise GuestUnavailable(f"guest kubeconfig {kubeconfig} does not exist")
    return GuestCluster(name, kubeconfig, host, host_namespace)


def forget_kubeconfig(guest: GuestCluster) -> None:
    """Remove a kubeconfig this module wrote (never one that was given)."""
    if guest.kubeconfig.parent.parent == scratch_root() and guest.kubeconfig.parent.name.startswith("guest-"):
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


class GuestMismatch(ProductFailure):
    """The guest is not the cluster the matrix row asked for."""


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


# ---- where a scenario's guest comes from ---------------------------------------------------------------

PROVISIONING = "provisioning.cattle.io/v1"
MACHINE_CONFIG = "rke-machine-config.cattle.io/v1"
MANAGEMENT = "management.cattle.io/v3"
FLEET_DEFAULT = "fleet-default"


def rancher_line(version: str) -> str:
    """`v2.10.3` -> `2.10`."""
    parts = version.lstrip("v").split(".")
    return ".".join(parts[:2])


def rancher_version(rancher: RancherAccess) -> str:
    """What the Rancher runs: its `server-version` setting, read through its local cluster's API."""
    setting = Kube(rancher.local_kubeconfig()).get(MANAGEMENT, "Setting", "server-version")
    return str(setting.get("value") or setting.get("default") or "")


def load_given(cluster: Cluster, host: Kube, access: GuestAccess) -> GuestCluster:
    if access.kubeconfig is not None:
        return guest_from_kubeconfig(host, access.name, access.kubeconfig, access.host_namespace)
    return guest_from_rancher(cluster.ranchers, host, access.name, access.host_namespace)


def obtain_guest(cluster: Cluster, rke2: str, line: str, run_id: str, cleanup: CleanupStack,
                 api_budget: Budget, provision_budget: Budget) -> GuestCluster:
    """A guest RKE2 `rke2` managed by Rancher `line`: one the lab runs, or one a Rancher of that line makes."""
    cluster.require(Capability.GUEST_CLUSTER, f"a guest RKE2 {rke2} cluster managed by Rancher {line}")
    host, seen = cluster.kube(), []
    for access in cluster.guests:
        guest = load_given(cluster, host, access)
        cleanup.defer(f"forget the kubeconfig of guest {guest.name}", functools.partial(forget_kubeconfig, guest))
        try:
            check_matrix_row(guest, rke2, line)
            return guest
        except GuestMismatch as mismatch:
            seen.append(f"the lab's guest {guest.name}: {mismatch}")
    for rancher in cluster.ranchers:
        version = rancher_version(rancher)
        if rancher_line(version) != line:
            seen.append(f"its Rancher runs {version}")
            continue
        if rancher.guest_template is None:
            seen.append(f"its Rancher {version} has no guest template (rancher.guest) to provision one")
            continue
        return provision_guest(host, rancher, version, rke2, run_id, cleanup, api_budget, provision_budget)
    raise CapabilityMissing(f"needs a guest RKE2 {rke2} cluster managed by Rancher {line}; " + "; ".join(seen),
                            Capability.GUEST_CLUSTER)


def provisioning_manifests(name: str, rke2: str, rancher: RancherAccess, run_id: str) -> tuple[Obj, Obj]:
    """The HarvesterConfig (machine pool template) and the provisioning Cluster, as Rancher's UI makes them."""
    template = rancher.guest_template
    assert template is not None
    labels = {RUN_ID_LABEL: run_id}
    disk = {"disks": [{"imageName": template.image, "size": template.disk_gib, "bootOrder": 1}]}
    network = {"interfaces": [{"networkName": template.network}]}
    machine_config: Obj = {
        "apiVersion": MACHINE_CONFIG, "kind": "HarvesterConfig",
        "metadata": {"name": f"nc-{name}-pool1", "namespace": FLEET_DEFAULT, "labels": labels},
        "cpuCount": str(template.cpus), "memorySize": str(template.memory_gib), "diskInfo": _json(disk),
        "networkInfo": _json(network), "sshUser": template.ssh_user, "vmNamespace": template.vm_namespace}
    provisioning = {
        "apiVersion": PROVISIONING, "kind": "Cluster",
        "metadata": {"name": name, "namespace": FLEET_DEFAULT, "labels": labels},
        "spec": {"kubernetesVersion": rke2, "cloudCredentialSecretName": template.cloud_credential,
                 "rkeConfig": {"machinePools": [{
                     "name": "pool1", "quantity": template.nodes, "controlPlaneRole": True, "etcdRole": True,
                     "workerRole": True,
                     "machineConfigRef": {"kind": "HarvesterConfig", "name": machine_config["metadata"]["name"]}}]}}}
    return machine_config, provisioning


def _json(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))


def provision_guest(host: Kube, rancher: RancherAccess, version: str, rke2: str, run_id: str,
                    cleanup: CleanupStack, api_budget: Budget, provision_budget: Budget) -> GuestCluster:
    """Have Rancher provision a guest; its deletion (and the wait until Rancher removed it) is registered first."""
    local = Kube(rancher.local_kubeconfig())
    name = guest_name("e2e")
    machine_config, provisioning = provisioning_manifests(name, rke2, rancher, run_id)
    cleanup.delete_later(local, MACHINE_CONFIG, "HarvesterConfig", machine_config["metadata"]["name"], FLEET_DEFAULT,
                         budget=api_budget)
    local.create(machine_config)
    cleanup.delete_later(local, PROVISIONING, "Cluster", name, FLEET_DEFAULT, budget=provision_budget)
    local.create(provisioning)
    ready = local.wait_for(PROVISIONING, "Cluster", name,
                           lambda o: bool(((o or {}).get("status") or {}).get("ready"))
                           and bool(((o or {}).get("status") or {}).get("clientSecretName")),
                           budget=provision_budget, namespace=FLEET_DEFAULT,
                           awaited=f"Rancher {version} to provision guest cluster {name} (status.ready)")
    assert ready is not None
    secret = local.get("v1", "Secret", ready["status"]["clientSecretName"], FLEET_DEFAULT)
    config = yaml.safe_load(base64.b64decode(secret["data"]["value"]))
    template = rancher.guest_template
    assert template is not None
    guest = GuestCluster(name, _write_kubeconfig(_private_dir(), name, config), host, template.vm_namespace,
                         provisioned_by=version)
    cleanup.defer(f"forget the kubeconfig of guest {name}", lambda: forget_kubeconfig(guest))
    return guest

