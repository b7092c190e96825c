"""VMs a story runs and looks inside, as a Harvester user makes them: a PVC in the VM image's own StorageClass
(`longhorn-<image>`, whose backing image Longhorn copies onto the volume; ReadWriteMany, so the VM can
live-migrate), a KubeVirt VirtualMachine booting it with cloud-init that gives
the harness's key to the image's user, and SSH to the guest through a node of the cluster (`ssh -J`), which
is how the pod network's and most VM networks' addresses are reached from outside.

Everything is created with the run's label and undone by the scenario's cleanup stack.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import paramiko

from infra.cleanup import CleanupStack
from infra.cluster import Cluster
from infra.kube import Kube
from infra.ssh import KnownHosts, SshNode, SshTarget
from infra.waits.budget import Budget
from infra.waits.poll import poll_until

from .names import HARVESTER, RUN_ID_LABEL
from .probes import CallableProbe

KUBEVIRT = "kubevirt.io/v1"
IMAGE_ANNOTATION = "harvesterhci.io/imageId"


@dataclass(frozen=True)
class VmRequest:
    """What a story asks for; the image and the user are the cluster's (a lab names them)."""

    namespace: str
    name: str
    image: str                      # "<namespace>/<VirtualMachineImage name>"
    user: str                       # the image's default login (cloud-init's default user)
    public_key: str                 # "ssh-ed25519 AAAA..." the harness logs in with
    network: str | None = None      # "<namespace>/<VM network>" (a bridge: the address stays across live
                                    # migrations); None: the pod network (masquerade: it changes, kubevirt#7967)
    node: str | None = None         # pinned by a nodeSelector (kubernetes.io/hostname): Harvester's upgrade
                                    # webhook calls such a VM non-live-migratable
    disk_gib: int = 1
    cpus: int = 1
    memory_mib: int = 512


@dataclass
class GuestVm:
    namespace: str
    name: str
    user: str
    key_file: Path

    def vmi(self, kube: Kube) -> dict[str, Any] | None:
        return kube.find(KUBEVIRT, "VirtualMachineInstance", self.name, self.namespace)

    def placement(self, kube: Kube) -> tuple[str, str]:
        """(the node its VMI runs on, its first interface's address); empty strings when not running."""
        status = (self.vmi(kube) or {}).get("status") or {}
        interfaces = status.get("interfaces") or []
        return str(status.get("nodeName") or ""), str(interfaces[0].get("ipAddress") or "") if interfaces else ""

    def node(self, kube: Kube) -> str:
        return self.placement(kube)[0]

    def address(self, kube: Kube) -> str:
        return self.placement(kube)[1]


def image_storage_class(kube: Kube, image: str) -> str:
    """The StorageClass Harvester made for a VM image (its status.storageClassName): a disk in any other class
    starts blank."""
    namespace, _, name = image.partition("/")
    found = kube.find(HARVESTER, "VirtualMachineImage", name, namespace)
    if found is None:
        raise LookupError(f"no VM image {image} on the cluster; name an uploaded one (VirtualMachineImage)")
    storage_class = (found.get("status") or {}).get("storageClassName")
    if not storage_class:
        raise LookupError(f"VM image {image} has no status.storageClassName yet (is it imported?)")
    return str(storage_class)


def pvc_manifest(request: VmRequest, run_id: str, storage_class: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": f"{request.name}-disk-0", "namespace": request.namespace,
                         "labels": {RUN_ID_LABEL: run_id}, "annotations": {IMAGE_ANNOTATION: request.image}},
            "spec": {"accessModes": ["ReadWriteMany"], "volumeMode": "Block", "storageClassName": storage_class,
                     "resources": {"requests": {"storage": f"{request.disk_gib}Gi"}}}}


def vm_manifest(request: VmRequest, run_id: str) -> dict[str, Any]:
    """A VM as Harvester's UI makes one: RerunOnFailure, live migration on eviction, the disk on virtio."""
    user_data = "#cloud-config\n" + f"ssh_authorized_keys:\n  - {request.public_key}\n"
    if request.network:                 # as the UI makes a VM on a VM network: a bridge to the NAD
        interface: dict[str, Any] = {"name": "nic-1", "bridge": {}, "model": "virtio"}
        network: dict[str, Any] = {"name": "nic-1", "multus": {"networkName": request.network}}
    else:
        interface, network = {"name": "default", "masquerade": {}}, {"name": "default", "pod": {}}
    return {
        "apiVersion": KUBEVIRT, "kind": "VirtualMachine",
        "metadata": {"name": request.name, "namespace": request.namespace, "labels": {RUN_ID_LABEL: run_id}},
        "spec": {
            "runStrategy": "RerunOnFailure",
            "template": {
                "metadata": {"labels": {RUN_ID_LABEL: run_id, "harvesterhci.io/vmName": request.name}},
                "spec": {
                    **({"nodeSelector": {"kubernetes.io/hostname": request.node}} if request.node else {}),
                    "evictionStrategy": "LiveMigrate",
                    "domain": {"cpu": {"cores": request.cpus},
                               "resources": {"limits": {"cpu": str(request.cpus),
                                                        "memory": f"{request.memory_mib}Mi"}},
                               "devices": {"disks": [{"name": "disk-0", "bootOrder": 1, "disk": {"bus": "virtio"}},
                                                     {"name": "cloudinitdisk", "disk": {"bus": "virtio"}}],
                                           "interfaces": [interface]}},
                    "networks": [network],
                    "volumes": [{"name": "disk-0", "persistentVolumeClaim": {"claimName": f"{request.name}-disk-0"}},
                                {"name": "cloudinitdisk", "cloudInitNoCloud": {"userData": user_data}}],
                },
            },
        },
    }


def create_vm(kube: Kube, request: VmRequest, key_file: Path, *, run_id: str, cleanup: CleanupStack,
              gone: Budget) -> GuestVm:
    """The PVC and the VM, each registered for removal before it is created."""
    pvc = pvc_manifest(request, run_id, image_storage_class(kube, request.image))
    cleanup.delete_later(kube, "v1", "PersistentVolumeClaim", pvc["metadata"]["name"], request.namespace,
                         budget=gone, only_with_label=(RUN_ID_LABEL, run_id))
    kube.create(pvc)
    cleanup.delete_later(kube, KUBEVIRT, "VirtualMachine", request.name, request.namespace, budget=gone,
                         only_with_label=(RUN_ID_LABEL, run_id))
    kube.create(vm_manifest(request, run_id))
    return GuestVm(request.namespace, request.name, request.user, key_file)


def wait_running(kube: Kube, vm: GuestVm, budget: Budget) -> dict[str, Any]:
    """Until the VMI is Running and Ready with an address; returns it."""
    def running(vmi: dict[str, Any] | None) -> bool:
        status = (vmi or {}).get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        return status.get("phase") == "Running" and ready and bool((status.get("interfaces") or [{}])[0]
                                                                   .get("ipAddress"))
    found = kube.wait_for(KUBEVIRT, "VirtualMachineInstance", vm.name, running, budget=budget,
                          awaited=f"VMI {vm.namespace}/{vm.name} Running and Ready with an address",
                          namespace=vm.namespace)
    assert found is not None
    return found


def jump_session(cluster: Cluster, node_name: str, known_hosts: Path) -> SshNode:
    """A session of its own to a node (never the cluster's shared one: probes run on their own threads)."""
    node = cluster.node(node_name)
    assert node.ssh_host is not None and node.ssh_port is not None
    return SshNode(SshTarget(node.name, node.ssh_host, node.ssh_port, user=node.ssh_user, key_file=node.ssh_key_file,
                             password=node.ssh_password, host_key=node.ssh_host_key), KnownHosts(known_hosts))


def address_probe(cluster: Cluster, name: str, host: str, port: int, known_hosts: Path, *, interval_s: float = 1.0,
                  timeout_s: float = 3.0) -> CallableProbe:
    """A TCP connect to host:port from the cluster's own network (a LoadBalancer's address, as its users on that
    network reach it): a direct-tcpip channel through the first node that answers SSH. A node away for the
    upgrade is passed over, not counted against the address; the attempt fails when a node that answers cannot
    connect there, or when no node answers at all."""
    def attempt(timeout: float) -> None:
        for node in cluster.node_names():             # a new login each time, as for the VMs' probes
            session = jump_session(cluster, node, known_hosts)
            session.connect_timeout = timeout
            try:
                session.open_tunnel(host, port, timeout).close()
                return
            except ConnectionRefusedError:
                raise                                  # the node is up; the address did not take the connection
            except (OSError, EOFError, paramiko.SSHException):
                continue                               # this node is away: try the next one
            finally:
                session.close()
        raise ConnectionError(f"no node answered SSH to reach {host}:{port} from")

    return CallableProbe(name, attempt, interval_s=interval_s, timeout_s=timeout_s)


@contextlib.contextmanager
def guest_session(cluster: Cluster, vm: GuestVm, via_node: str, known_hosts: Path, *,
                  address: str | None = None) -> Iterator[SshNode]:
    """An SSH session to the guest at `address` (default: the VMI's now), through `via_node`'s session (its own,
    so a probe never shares a node's); both are closed on leaving. A pod-network address changes when the VM
    migrates (kubevirt#7967): open a new session after one."""
    address = address or vm.address(cluster.kube())
    if not address:
        raise RuntimeError(f"VM {vm.namespace}/{vm.name} has no address yet (is its VMI running?)")
    jump = jump_session(cluster, via_node, known_hosts)
    session = SshNode(SshTarget(f"vm {vm.namespace}/{vm.name}", address, 22, user=vm.user, key_file=vm.key_file),
                      KnownHosts(known_hosts), via=jump)
    try:
        yield session
    finally:
        session.close()
        jump.close()


def ssh_probe(cluster: Cluster, vm: GuestVm, known_hosts: Path, *, interval_s: float = 1.0,
              timeout_s: float = 3.0) -> CallableProbe:
    """What a user of the VM feels: each attempt logs in anew through the node the VMI runs on now (another node
    when that one is away), at its address now, and runs `true`. Node and address are read from the API with one
    quick request, never the cluster's client that rides through an API outage: while the API is away (the API
    probe's outage, not the VM's) the last ones known are used."""
    quick = Kube(cluster.kubeconfig, context=cluster.context, unavailable_budget=0, transport_attempts=0,
                 request_timeout=max(timeout_s / 3, 0.5))
    node, address = vm.placement(cluster.kube())
    last = {"node": node, "address": address}

    def attempt(timeout: float) -> None:
        try:
            node, address = vm.placement(quick)
            if node and address:
                last.update(node=node, address=address)
        except Exception:  # noqa: BLE001 - the API is away: the VM may still answer where it was
            pass
        # Through its node first; when that node is away (rebooting for the upgrade after the VM left it, while
        # the API could not say where the VM went), through any other node that answers.
        for via in [last["node"], *(n for n in cluster.node_names() if n != last["node"])]:
            jump = jump_session(cluster, via, known_hosts)
            jump.connect_timeout = timeout
            try:
                jump.open_tunnel(last["address"], 22, timeout).close()
            except ConnectionRefusedError:
                raise                                  # the node is up; the guest's sshd did not answer
            except (OSError, EOFError, paramiko.SSHException):
                continue                               # this node is away: try the next one
            finally:
                jump.close()
            with guest_session(cluster, vm, via, known_hosts, address=last["address"]) as session:
                session.connect_timeout = timeout
                session.run("true", timeout=timeout, check=True, budget=Budget("one probe attempt", timeout))
            return
        raise ConnectionError(f"no node answered SSH to reach VM {vm.namespace}/{vm.name} at {last['address']}")

    return CallableProbe(f"vm {vm.namespace}/{vm.name}", attempt, interval_s=interval_s, timeout_s=timeout_s)


def run_inside(cluster: Cluster, vm: GuestVm, known_hosts: Path, command: str, wait: Budget) -> str:
    """One command in the guest through the node it runs on now, once the guest answers (cloud-init and sshd
    come up after the VMI runs); its output. A failing command raises at once."""
    def attempt() -> str | None:
        try:
            with guest_session(cluster, vm, vm.node(cluster.kube()), known_hosts) as session:
                return session.run(command, check=True, timeout=120,
                                   budget=Budget("one guest login", 30)).stdout.strip()
        except (paramiko.SSHException, EOFError) as exc:      # not answering yet: retried within `wait`
            raise ConnectionError(f"{type(exc).__name__}: {exc}") from exc
    return poll_until(attempt, wait, f"VM {vm.namespace}/{vm.name} to run {command!r} over SSH", interval_s=1.0)
