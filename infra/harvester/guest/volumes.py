"""A guest volume from the host's side: the chain from guest PVC to Longhorn volume, attach and detach.

The chain (harvester-csi-driver, docs/harvester-facts.md §3.2): guest PVC -> guest PV `pvc-<guest PVC uid>`, whose
CSI `volumeHandle` is the host PVC `pvc-<guest PVC uid>` in the guest's host namespace -> host PV
and Longhorn Volume `pvc-<host PVC uid>` in `longhorn-system`. A pod using the claim on guest node
N hotplugs the host PVC into VM N; Longhorn then reports the volume `attached` with
`currentNodeID` = the host node running VM N. With no pod left, it is `detached`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.failures import ProductFailure
from infra.kube import Kube
from infra.waits.budget import Budget

from .cluster import KUBEVIRT, GuestCluster

LONGHORN = "longhorn.io/v1beta2"
LONGHORN_NAMESPACE = "longhorn-system"

Obj = dict[str, Any]


@dataclass(frozen=True)
class VolumeChain:
    namespace: str
    guest_pvc: str
    guest_pvc_uid: str
    guest_pv: str
    host_namespace: str
    host_pvc: str
    host_pvc_uid: str
    longhorn_volume: str

    def as_rows(self) -> dict[str, str]:
        return {"guest PVC": f"{self.namespace}/{self.guest_pvc} (uid {self.guest_pvc_uid})",
                "guest PV": self.guest_pv,
                "host PVC": f"{self.host_namespace}/{self.host_pvc} (uid {self.host_pvc_uid})",
                "Longhorn volume": f"{LONGHORN_NAMESPACE}/{self.longhorn_volume}"}


class VolumeChainBroken(ProductFailure):
    """The guest PVC -> host PVC -> Longhorn volume chain is not what the CSI driver builds."""


@dataclass(frozen=True)
class Attachment:
    state: str
    current_node: str
    robustness: str
    expected_node: str
    guest_node: str


def _bound(obj: Obj | None) -> bool:
    return ((obj or {}).get("status") or {}).get("phase") == "Bound"


def volume_chain(guest: GuestCluster, namespace: str, pvc: str, budget: Budget) -> VolumeChain:
    """Follow the claim to the host; every link must be named as upstream names it."""
    kube, host = guest.kube(), guest.host
    claim = kube.wait_for("v1", "PersistentVolumeClaim", pvc, _bound, budget=budget, namespace=namespace,
                          awaited=f"guest PVC {namespace}/{pvc} to be Bound")
    assert claim is not None
    uid, pv_name = claim["metadata"]["uid"], claim["spec"]["volumeName"]
    pv = kube.get("v1", "PersistentVolume", pv_name)
    handle = ((pv.get("spec") or {}).get("csi") or {}).get("volumeHandle", "")
    problems = []
    if pv_name != f"pvc-{uid}":
        problems.append(f"guest PV is {pv_name}, expected pvc-{uid}")
    if handle != f"pvc-{uid}":
        problems.append(f"guest PV's volumeHandle is {handle!r}, expected the host PVC pvc-{uid}")
    host_claim = host.wait_for("v1", "PersistentVolumeClaim", handle, _bound, budget=budget,
                               namespace=guest.host_namespace,
                               awaited=f"host PVC {guest.host_namespace}/{handle} to be Bound")
    assert host_claim is not None
    host_uid, host_volume = host_claim["metadata"]["uid"], host_claim["spec"].get("volumeName", "")
    if host_volume != f"pvc-{host_uid}":
        problems.append(f"host PVC is bound to {host_volume}, expected pvc-{host_uid}")
    longhorn = host.find(LONGHORN, "Volume", host_volume, LONGHORN_NAMESPACE)
    if longhorn is None:
        problems.append(f"no Longhorn volume {LONGHORN_NAMESPACE}/{host_volume}")
    chain = VolumeChain(namespace, pvc, uid, pv_name, guest.host_namespace, handle, host_uid, host_volume)
    if problems:
        raise VolumeChainBroken("the guest volume does not map to the host as the CSI driver maps it: "
                                + "; ".join(problems), evidence={"chain": chain.as_rows(), "guest PV": pv,
                                                                 "host PVC": host_claim, "Longhorn volume": longhorn})
    return chain


def _volume_status(volume: Obj | None) -> Obj:
    return (volume or {}).get("status") or {}


def wait_attached(guest: GuestCluster, chain: VolumeChain, guest_node: str, budget: Budget) -> Attachment:
    """Longhorn says attached, healthy, on the host node that runs the VM of `guest_node`."""
    host_node = guest.host_node_of(guest_node)
    if not host_node:
        raise VolumeChainBroken(f"no VirtualMachineInstance {guest.host_namespace}/{guest_node} on the host")

    def attached_there(volume: Obj | None) -> bool:
        status = _volume_status(volume)
        return status.get("state") == "attached" and status.get("currentNodeID") == host_node \
            and status.get("robustness") == "healthy"

    volume = guest.host.wait_for(LONGHORN, "Volume", chain.longhorn_volume, attached_there, budget=budget,
                                 namespace=LONGHORN_NAMESPACE,
                                 awaited=f"Longhorn volume {chain.longhorn_volume} to be attached to {host_node} "
                                         f"(host of guest node {guest_node})")
    vm = guest.host.get(KUBEVIRT, "VirtualMachine", guest_node, guest.host_namespace)
    hotplugged = [v.get("name") for v in ((vm["spec"].get("template") or {}).get("spec") or {}).get("volumes") or []
                  if (v.get("persistentVolumeClaim") or {}).get("claimName") == chain.host_pvc]
    if not hotplugged:
        raise VolumeChainBroken(f"Longhorn says attached, but VM {guest.host_namespace}/{guest_node} has no volume "
                                f"for host PVC {chain.host_pvc}", evidence={"VirtualMachine": vm})
    status = _volume_status(volume)
    return Attachment(status["state"], status["currentNodeID"], status["robustness"], host_node, guest_node)


def wait_detached(guest: GuestCluster, chain: VolumeChain, budget: Budget) -> Attachment:
    def detached(volume: Obj | None) -> bool:
        status = _volume_status(volume)
        return status.get("state") == "detached" and not status.get("currentNodeID")

    volume = guest.host.wait_for(LONGHORN, "Volume", chain.longhorn_volume, detached, budget=budget,
                                 namespace=LONGHORN_NAMESPACE,
                                 awaited=f"Longhorn volume {chain.longhorn_volume} to be detached")
    still = [n.vm for n in guest.nodes() if chain.host_pvc in vm_hotplug_volumes(guest.host, guest.host_namespace, n.vm)]
    if still:
        raise VolumeChainBroken(f"Longhorn says detached, but host PVC {chain.host_pvc} is still hotplugged into "
                                f"VM(s) {', '.join(still)}")
    status = _volume_status(volume)
    return Attachment(status.get("state", ""), "", status.get("robustness", ""), "", "")


def wait_host_side_gone(guest: GuestCluster, chain: VolumeChain, budget: Budget) -> None:
    """reclaimPolicy Delete: the host PVC and the Longhorn volume go with the guest claim."""
    guest.host.wait_for_gone("v1", "PersistentVolumeClaim", chain.host_pvc, namespace=chain.host_namespace,
                             budget=budget)
    guest.host.wait_for_gone(LONGHORN, "Volume", chain.longhorn_volume, namespace=LONGHORN_NAMESPACE, budget=budget)


def vm_hotplug_volumes(host: Kube, namespace: str, vm: str) -> list[str]:
    found = host.find(KUBEVIRT, "VirtualMachine", vm, namespace)
    volumes = (((found or {}).get("spec") or {}).get("template") or {}).get("spec", {}).get("volumes") or []
    return [v["name"] for v in volumes if (v.get("persistentVolumeClaim") or {}).get("hotpluggable")]
