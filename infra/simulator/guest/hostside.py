"""What the host (the Harvester simulator) does for its guest clusters' VMs and volumes.

Started with the first guest, it adds to the host what a Harvester cluster running guest VMs has:
* the default StorageClass `harvester-longhorn` (provisioner `driver.longhorn.io`) and the VM
  network `default/vm-network` whose DHCP server (`dhcp`) hands addresses to the VMs;
* Longhorn's CSI provisioner (`volumeBindingMode: Immediate`): every Pending PVC of a Longhorn class
  (provisioner `driver.longhorn.io`, or no class and the default one is) gets a PV and a Longhorn Volume
  (`longhorn.io/v1beta2`, `longhorn-system`) both named `pvc-<PVC uid>`, and is bound: the guests' claims
  (their VMs' root disks, the CSI driver's host PVCs) and the ones a user makes for VM disks alike. A
  class's `backingImage` parameter (a VM image's class, `longhorn-<image>`) becomes the Volume's
  `spec.backingImage`, and the volume starts with that image's content (`provisioned` hooks: the guest
  OS of `kubevirt/guest_os.py`); a claim whose `dataSource` is a VolumeSnapshot waits until the snapshot is
  ready and starts with its bytes (`kubevirt/backups.py`); any other volume starts blank. PVCs already Bound or pre-bound
  (`spec.volumeName`), PVCs of other classes and Volumes other parts of the simulator (or a test) create
  keep exactly the state they were given;
* Longhorn's attachment: a Volume is `attached` to the host node of the Running pod that uses its
  PVC (a VM's virt-launcher pod, or the `hp-volume-*` pod KubeVirt runs for a hotplugged disk),
  robustness `healthy`, `kubernetesStatus.workloadsStatus` naming that pod; otherwise `detached`
  (robustness `unknown`, as Longhorn reports a detached volume);
* the data stored in each volume (`VolumeContents`), keyed by the Longhorn volume and gone when the
  volume goes: a filesystem volume's files as a guest pod's processes write them (see
  `infra/simulator/pods`), a block volume's bytes as a VM's guest writes them (a VM's root disk holds
  its guest's filesystem serialized, `kubevirt/guest_disk.py`). Kept in memory only: a simulator
  restarted from its state directory has its volumes' objects but not their data.
"""
from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import TYPE_CHECKING, Any, Callable

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
_WATCHED = {("", "persistentvolumeclaims"), ("", "pods"), ("longhorn.io", "volumes"),
            ("snapshot.storage.k8s.io", "volumesnapshots")}


class VolumeContents:
    """What each volume holds, by Longhorn volume name: a filesystem volume's files (a `FileTree`, as the pods
    using it wrote them) and a block volume's bytes (`read_bytes`/`write_bytes`, as a VM's guest wrote them;
    `generation` counts the writes, so a reader caching a decoded copy knows when it is stale). The byte store
    is used from SSH threads: its calls are atomic."""

    def __init__(self) -> None:
        self._trees: dict[str, FileTree] = {}
        self._blocks: dict[str, tuple[int, bytes]] = {}          # volume -> (generation, bytes)
        self._lock = threading.Lock()
        self._generations = 0

    def tree(self, volume: str) -> FileTree:
        return self._trees.setdefault(volume, FileTree())

    def write(self, volume: str, path: str, data: bytes) -> None:
        self.tree(volume).files[path] = bytes(data)

    def read(self, volume: str, path: str) -> bytes | None:
        return self._trees[volume].files.get(path) if volume in self._trees else None

    def drop(self, volume: str) -> None:
        self._trees.pop(volume, None)
        with self._lock:
            self._blocks.pop(volume, None)

    # --- block volumes ----------------------------------------------------------------------------
    def read_bytes(self, volume: str) -> tuple[int, bytes]:
        """(generation, bytes) of a block volume; (0, b"") for a blank one."""
        with self._lock:
            return self._blocks.get(volume, (0, b""))

    def write_bytes(self, volume: str, data: bytes) -> int:
        """Replace the volume's bytes; returns their new generation."""
        with self._lock:
            self._generations += 1
            self._blocks[volume] = (self._generations, bytes(data))
            return self._generations

    def copy_bytes(self, source: str, target: str) -> None:
        """The target volume holds what the source holds (a clone, a restore)."""
        self.write_bytes(target, self.read_bytes(source)[1])


class HostSide:
    def __init__(self, simulator: "Simulator") -> None:
        self.simulator = simulator
        self.api = simulator.api
        self.dhcp = DhcpServer()
        self.contents = VolumeContents()
        self._dirty = asyncio.Event()
        self._started = False
        self._claims: set[tuple[str, str]] = set()      # (namespace, name) of the claims guests made
        self._volumes: set[str] = set()                 # Longhorn volumes this provisioner made
        # Called once a claim's new volume exists: (PVC, its StorageClass, Longhorn volume name). What
        # fills a volume made from a backing image (a VM image) registers here.
        self.provisioned: list[Callable[[Obj, Obj, str], None]] = []
        # Whether a claim's data source (a VolumeSnapshot) is ready: until then its volume is not made.
        self.source_ready: Callable[[Obj], bool] = lambda pvc: True

    # ---- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.ensure_infrastructure()
        self._adopt_volumes()
        self.api.store.listeners.append(self._offer)
        self.simulator.spawn(self._run, "guest-hostside")
        self._dirty.set()

    def _offer(self, event: StoredEvent) -> None:
        if event.type_key in _WATCHED:
            self._dirty.set()

    def poke(self) -> None:
        self._dirty.set()

    def serve_claim(self, namespace: str, name: str) -> None:
        """A guest made this host PVC (provisioned like any claim of a Longhorn class; kept for the record)."""
        self._claims.add((namespace, name))

    def _adopt_volumes(self) -> None:
        """After a restart from a state directory: the Longhorn volumes this provisioner made before (their PV
        names the volume as its CSI handle) are attached and deleted as before."""
        pvs = kind(self.api, "v1", "persistentvolumes")
        volumes = kind(self.api, "longhorn.io/v1beta2", "volumes")
        for pv in self.api.list(pvs).items:
            csi = (pv.get("spec") or {}).get("csi") or {}
            name = pv["metadata"]["name"]
            if csi.get("driver") == LONGHORN_DRIVER and csi.get("volumeHandle") == name and \
                    self.api.find(volumes, LONGHORN_NAMESPACE, name) is not None:
                self._volumes.add(name)

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

    def _longhorn_classes(self) -> tuple[dict[str, Obj], str | None]:
        classes = self.api.list(kind(self.api, "storage.k8s.io/v1", "storageclasses")).items
        longhorn = {c["metadata"]["name"]: c for c in classes if c.get("provisioner") == LONGHORN_DRIVER}
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
            if meta.get("deletionTimestamp") or (pvc.get("status") or {}).get("phase") == "Bound":
                continue
            if spec.get("volumeName") and spec["volumeName"] != f"pvc-{meta['uid']}":
                continue                                 # pre-bound to a PV of someone else's making
            klass = spec.get("storageClassName") or default
            if klass not in longhorn or not self.source_ready(pvc):
                continue
            parameters = longhorn[klass].get("parameters") or {}
            name = f"pvc-{meta['uid']}"
            self._volumes.add(name)
            size = str((spec.get("resources") or {}).get("requests", {}).get("storage", "1Gi"))
            access = (spec.get("accessModes") or ["ReadWriteOnce"])[0]
            block = spec.get("volumeMode") == "Block"
            created = self.api.find(volumes, LONGHORN_NAMESPACE, name) is None
            if created:
                self.api.create(volumes, {
                    "metadata": {"name": name, "namespace": LONGHORN_NAMESPACE,
                                 "labels": {"longhornvolume": name}},
                    "spec": {"size": str(_bytes(size)),
                             "numberOfReplicas": int(parameters.get("numberOfReplicas") or LONGHORN_REPLICAS),
                             "frontend": "blockdev", "accessMode": "rwx" if access == "ReadWriteMany" else "rwo",
                             "migratable": access == "ReadWriteMany" and block, "dataEngine": "v1",
                             "dataLocality": "disabled", "staleReplicaTimeout": 30,
                             "backingImage": str(parameters.get("backingImage") or "")},
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
                                                          "staleReplicaTimeout": "30", "migratable": "true",
                                                          **{k: str(v) for k, v in parameters.items()}}}},
                    "status": {"phase": "Bound"}}, keep_status=True)
            if created:
                for hook in list(self.provisioned):
                    try:
                        hook(pvc, longhorn[klass], name)
                    except Exception:  # noqa: BLE001 - a content hook's bug must not stop provisioning
                        log.exception("filling volume %s failed", name)

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
