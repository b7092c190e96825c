"""What the host (the Harvester simulator) does for its guest clusters' VMs and volumes.

Started with the first guest, it adds to the host what a Harvester cluster running guest VMs has:
* the default StorageClass `harvester-longhorn` (provisioner `driver.longhorn.io`) and the VM
  network `default/vm-network` whose DHCP server (`dhcp`) hands addresses to the VMs;
* Longhorn's CSI provisioner: a PVC of a Longhorn class gets a PV and a Longhorn Volume
  (`longhorn.io/v1beta2`, `longhorn-system`) both named `pvc-<PVC uid>`, and is bound. It serves the
  claims the guests make (their VMs' root disks, the CSI driver's host PVCs) and no others, so that
  PVCs and Volumes other parts of the simulator (or a test) create keep exactly the state they were given;
* Longhorn's attachment: a Volume is `attached` to the host node of the Running pod that uses its
  PVC (a VM's virt-launcher pod, or the `hp-volume-*` pod KubeVirt runs for a hotplugged disk),
  robustness `healthy`, `kubernetesStatus.workloadsStatus` naming that pod; otherwise `detached`;
* the bytes stored in each volume (`VolumeContents`): what a guest pod's processes write to a volume
  (see `infra/simulator/pods`) lives here, keyed by the Longhorn volume, and goes when the volume goes.
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from ..apiserver import errors
from ..apiserver.clock import rfc3339
from ..apiserver.store import StoredEvent
from ..pods import FileTree
from . import dhcp
from .dhcp import DhcpServer
from .objects import Obj, kind, mutate_if_changed, status_of

if TYPE_CHECKING:
    from ..simulator import Simulator

log = logging.getLogger(__name__)

LONGHORN_NAMESPACE = "longhorn-system"
LONGHORN_DRIVER = "driver.longhorn.io"
DEFAULT_CLASS = "harvester-longhorn"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
VM_NETWORK = ("default", "vm-network")
ROUTE_ANNOTATION = "network.harvesterhci.io/route"
LONGHORN_REPLICAS = 3
_WATCHED = {("", "persistentvolumeclaims"), ("", "pods"), ("longhorn.io", "volumes")}


class VolumeContents:
    """The files in each volume (a `FileTree` by Longhorn volume name), as the pods using it wrote them."""

    def __init__(self) -> None:
        self._trees: dict[str, FileTree] = {}

    def tree(self, volume: str) -> FileTree:
        return self._trees.setdefault(volume, FileTree())

    def write(self, volume: str, path: str, data: bytes) -> None:
        self.tree(volume).files[path] = bytes(data)

    def read(self, volume: str, path: str) -> bytes | None:
        return self._trees[volume].files.get(path) if volume in self._trees else None

    def drop(self, volume: str) -> None:
        self._trees.pop(volume, None)


class HostSide:
    def __init__(self, simulator: "Simulator") -> None:
        self.simulator = simulator
        self.api = simulator.api
        self.dhcp = DhcpServer()
        self.contents = VolumeContents()
        self._dirty = asyncio.Event()
        self._started = False
        self._claims: set[tuple[str, str]] = set()      # (namespace, name) of the claims guests made
        self._volumes: set[str] = set()                 # Longhorn volumes provisioned for them

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.ensure_infrastructure()
        self.api.store.listeners.append(self._offer)
        self.simulator.spawn(self._run, "guest-hostside")
        self._dirty.set()

    def _offer(self, event: StoredEvent) -> None:
        if event.type_key in _WATCHED:
            self._dirty.set()

    def poke(self) -> None:
        self._dirty.set()

    def serve_claim(self, namespace: str, name: str) -> None:
        """A guest made this host PVC: provision it (call before creating it)."""
        self._claims.add((namespace, name))

    async def _run(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                self.reconcile()
            except Exception:  # noqa: BLE001 - the host must keep serving
                log.exception("host-side guest support failed")
            await asyncio.sleep(0)

    def ensure_infrastructure(self) -> None:
        classes = kind(self.api, "storage.k8s.io/v1", "storageclasses")
        if self.api.find(classes, None, DEFAULT_CLASS) is None:
            self.api.create(classes, {
                "metadata": {"name": DEFAULT_CLASS, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
                "provisioner": LONGHORN_DRIVER, "allowVolumeExpansion": True, "reclaimPolicy": "Delete",
                "volumeBindingMode": "Immediate",
                "parameters": {"numberOfReplicas": str(LONGHORN_REPLICAS), "staleReplicaTimeout": "30",
                               "migratable": "true"}})
        nads = kind(self.api, "k8s.cni.cncf.io/v1", "network-attachment-definitions")
        namespace, name = VM_NETWORK
        if self.api.find(nads, namespace, name) is None:
            # Harvester's network controller records the DHCP-discovered addressing of a VM network in
            # the route annotation (harvester-network-controller pkg/utils/nad.go Layer3NetworkConf,
            # key network.harvesterhci.io/route; mode "auto" = learned from the network's DHCP server).
            route = {"mode": "auto", "serverIPAddr": str(dhcp.SERVER), "cidr": str(dhcp.NETWORK),
                     "gateway": str(dhcp.GATEWAY), "connectivity": "true"}
            self.api.create(nads, {
                "metadata": {"name": name, "namespace": namespace,
                             "labels": {"network.harvesterhci.io/type": "L2VlanNetwork",
                                        "network.harvesterhci.io/clusternetwork": "mgmt",
                                        "network.harvesterhci.io/ready": "true"},
                             "annotations": {ROUTE_ANNOTATION: json.dumps(route, separators=(",", ":"))}},
                "spec": {"config": '{"cniVersion":"0.3.1","name":"vm-network","type":"bridge",'
                                   '"bridge":"mgmt-br","promiscMode":true,"vlan":0,"ipam":{}}'}})

    # ---- Longhorn ------------------------------------------------------------------------------
    def reconcile(self) -> None:
        self._provision()
        self._attachments()

    def _longhorn_classes(self) -> tuple[set[str], str | None]:
        classes = self.api.list(kind(self.api, "storage.k8s.io/v1", "storageclasses")).items
        longhorn = {c["metadata"]["name"] for c in classes if c.get("provisioner") == LONGHORN_DRIVER}
        default = next((c["metadata"]["name"] for c in classes
                        if (c["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"), None)
        return longhorn, default

    def _provision(self) -> None:
        pvcs_kind = kind(self.api, "v1", "persistentvolumeclaims")
        volumes = kind(self.api, "longhorn.io/v1beta2", "volumes")
        pvs = kind(self.api, "v1", "persistentvolumes")
        longhorn, default = self._longhorn_classes()
        for pvc in self.api.list(pvcs_kind).items:
            spec, meta = pvc.get("spec") or {}, pvc["metadata"]
            if (meta["namespace"], meta["name"]) not in self._claims:
                continue
            if meta.get("deletionTimestamp") or (pvc.get("status") or {}).get("phase") == "Bound":
                continue
            klass = spec.get("storageClassName") or default
            if klass not in longhorn:
                continue
            name = f"pvc-{meta['uid']}"
            self._volumes.add(name)
            size = str((spec.get("resources") or {}).get("requests", {}).get("storage", "1Gi"))
            access = (spec.get("accessModes") or ["ReadWriteOnce"])[0]
            block = spec.get("volumeMode") == "Block"
            if self.api.find(volumes, LONGHORN_NAMESPACE, name) is None:
                self.api.create(volumes, {
                    "metadata": {"name": name, "namespace": LONGHORN_NAMESPACE,
                                 "labels": {"longhornvolume": name}},
                    "spec": {"size": str(_bytes(size)), "numberOfReplicas": LONGHORN_REPLICAS, "frontend": "blockdev",
                             "accessMode": "rwx" if access == "ReadWriteMany" else "rwo",
                             "migratable": access == "ReadWriteMany" and block, "dataEngine": "v1",
                             "dataLocality": "disabled", "staleReplicaTimeout": 30},
                    "status": {"state": "detached", "robustness": "unknown", "currentNodeID": "",
                               "kubernetesStatus": {"pvName": name, "pvStatus": "Bound",
                                                    "namespace": meta["namespace"], "pvcName": meta["name"],
                                                    "workloadsStatus": None},
                               "conditions": [{"type": "Scheduled", "status": "True", "reason": "",
                                               "lastTransitionTime": rfc3339()}]}}, keep_status=True)
            if self.api.find(pvs, None, name) is None:
                self.api.create(pvs, {
                    "metadata": {"name": name, "annotations": {"pv.kubernetes.io/provisioned-by": LONGHORN_DRIVER},
                                 "finalizers": ["kubernetes.io/pv-protection"]},
                    "spec": {"capacity": {"storage": size}, "accessModes": spec.get("accessModes") or [access],
                             "persistentVolumeReclaimPolicy": "Delete", "storageClassName": klass,
                             "volumeMode": spec.get("volumeMode") or "Filesystem",
                             "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                                          "namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]},
                             "csi": {"driver": LONGHORN_DRIVER, "volumeHandle": name, "fsType": "ext4",
                                     "volumeAttributes": {"numberOfReplicas": str(LONGHORN_REPLICAS),
                                                          "staleReplicaTimeout": "30", "migratable": "true"}}},
                    "status": {"phase": "Bound"}}, keep_status=True)

            def bind(obj: Obj, pv: str = name, capacity: str = size, access: str = access,
                     klass: str = klass) -> None:
                obj["spec"]["volumeName"] = pv
                if not obj["spec"].get("storageClassName"):
                    obj["spec"]["storageClassName"] = klass
                annotations = obj["metadata"].setdefault("annotations", {})
                annotations.update({"pv.kubernetes.io/bind-completed": "yes",
                                    "pv.kubernetes.io/bound-by-controller": "yes",
                                    "volume.kubernetes.io/storage-provisioner": LONGHORN_DRIVER,
                                    "volume.beta.kubernetes.io/storage-provisioner": LONGHORN_DRIVER})
                obj["status"] = {"phase": "Bound", "accessModes": obj["spec"].get("accessModes") or [access],
                                 "capacity": {"storage": capacity}}
            mutate_if_changed(self.api, pvcs_kind, pvc, bind)

    def _attachments(self) -> None:
        volumes = kind(self.api, "longhorn.io/v1beta2", "volumes")
        pvcs_kind = kind(self.api, "v1", "persistentvolumeclaims")
        pods = [p for p in self.api.list(kind(self.api, "v1", "pods")).items
                if (p.get("status") or {}).get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]
        for volume in self.api.list(volumes, LONGHORN_NAMESPACE).items:
            if volume["metadata"]["name"] not in self._volumes:
                continue
            k8s = (volume.get("status") or {}).get("kubernetesStatus") or {}
            namespace, claim = k8s.get("namespace", ""), k8s.get("pvcName", "")
            if not claim:
                continue
            pvc = self.api.find(pvcs_kind, namespace, claim)
            if pvc is None or pvc["spec"].get("volumeName") not in (None, volume["metadata"]["name"]):
                self._delete_volume(volume)
                continue
            users = [p for p in pods if p["metadata"].get("namespace") == namespace and any(
                (v.get("persistentVolumeClaim") or {}).get("claimName") == claim
                for v in (p.get("spec") or {}).get("volumes") or [])]
            users.sort(key=lambda p: p["metadata"].get("creationTimestamp", ""))

            def settle(obj: Obj, users: list[Obj] = users) -> None:
                status = status_of(obj)
                k8s_status = status.setdefault("kubernetesStatus", {})
                if users:
                    status.update(state="attached", currentNodeID=users[0]["spec"].get("nodeName", ""),
                                  robustness="healthy", ownerID=users[0]["spec"].get("nodeName", ""))
                    k8s_status["workloadsStatus"] = [
                        {"podName": p["metadata"]["name"], "podStatus": "Running",
                         "workloadName": next((r["name"] for r in p["metadata"].get("ownerReferences") or []), ""),
                         "workloadType": next((r["kind"] for r in p["metadata"].get("ownerReferences") or []), "")}
                        for p in users]
                    k8s_status["lastPodRefAt"] = ""
                else:
                    status.update(state="detached", currentNodeID="", robustness="unknown")
                    if k8s_status.get("workloadsStatus"):
                        k8s_status["lastPodRefAt"] = rfc3339()
                    k8s_status["workloadsStatus"] = None
            mutate_if_changed(self.api, volumes, volume, settle)

    def _delete_volume(self, volume: Obj) -> None:
        """reclaimPolicy Delete: the claim is gone, so are its PV, its Longhorn volume and its data."""
        name = volume["metadata"]["name"]
        pvs = kind(self.api, "v1", "persistentvolumes")
        pv = self.api.find(pvs, None, name)
        if pv is not None:
            mutate_if_changed(self.api, pvs, pv, lambda o: o["metadata"].__setitem__("finalizers", []))
            try:
                self.api.delete(pvs, None, name)
            except errors.ApiError:
                pass
        try:
            self.api.delete(kind(self.api, "longhorn.io/v1beta2", "volumes"), LONGHORN_NAMESPACE, name)
        except errors.ApiError:
            pass
        self.contents.drop(name)
        self._volumes.discard(name)
        k8s = (volume.get("status") or {}).get("kubernetesStatus") or {}
        self._claims.discard((k8s.get("namespace", ""), k8s.get("pvcName", "")))

    # ---- lookups guests use ----------------------------------------------------------------------
    def longhorn_volume_for(self, namespace: str, claim: str) -> Obj | None:
        pvc = self.api.find(kind(self.api, "v1", "persistentvolumeclaims"), namespace, claim)
        volume_name = ((pvc or {}).get("spec") or {}).get("volumeName")
        if not volume_name:
            return None
        return self.api.find(kind(self.api, "longhorn.io/v1beta2", "volumes"), LONGHORN_NAMESPACE, volume_name)


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for suffix in sorted(units, key=len, reverse=True):
        if quantity.endswith(suffix):
            return int(float(quantity[:-len(suffix)]) * units[suffix])
    return int(float(quantity))


def bytes_of(quantity: Any) -> int:
    return _bytes(str(quantity))
