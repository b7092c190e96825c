"""The Harvester CSI driver at work in a guest, and what it does on the host (docs/harvester-facts.md §3.2).

Only while the chart's pods run: provisioning and attaching need a Ready controller pod
(csi-provisioner, csi-attacher); mounting needs the node plugin pod on that node.
* A guest PVC of a StorageClass whose provisioner is `driver.harvesterhci.io` becomes a host PVC
  named after the CSI volume, `pvc-<guest PVC uid>`, in the guest's host namespace (ReadWriteMany;
  Block for a ReadWriteOnce claim; the StorageClass's `hostStorageClass`, else the chart's, else
  the host default). Longhorn provisions that one as `pvc-<host PVC uid>`. Then the guest gets a PV
  `pvc-<guest PVC uid>` whose `volumeHandle` is the host PVC name, and the claim is bound.
* A pod using the claim on guest node N gets a VolumeAttachment `csi-<sha256(handle+driver+N)>`;
  ControllerPublishVolume hotplugs the host PVC into the VirtualMachine N (`spec.template`,
  the VMI's `volumeStatus`, KubeVirt's `hp-volume-*` pod on the VMI's host node), and the
  attachment is reported once Longhorn says `attached` on that host node (`waitForVolSettled`).
  With no pod left on N, the volume is unpublished (removed from the VM) and Longhorn detaches.
* Deleting the claim (reclaimPolicy Delete) deletes the guest PV and the host PVC.
* Pod filesystem: a pod's processes (exec, see `infra/simulator/pods`) see such a claim's mount as the
  host Longhorn volume's files, and only while it is attached where the pod runs (EIO otherwise).
"""
from __future__ import annotations

import errno
import hashlib
import os
from typing import TYPE_CHECKING, Any

from ..apiserver import errors
from ..apiserver.clock import rfc3339
from ..pods import FileTree, Mount
from .csi_chart import CHART as CSI_CHART
from .csi_chart import DRIVER
from .hostside import DEFAULT_CLASS_ANNOTATION, bytes_of
from .objects import (
    Obj,
    is_active,
    kind,
    mutate_if_changed,
    owner_reference,
    random_suffix,
    running_ready_pods,
    status_of,
)

if TYPE_CHECKING:
    from .cluster import SimulatedGuestCluster

PVC_PROTECTION = "kubernetes.io/pvc-protection"
CONTROLLER_LABELS = {"app.kubernetes.io/name": CSI_CHART, "component": "csi-controllers"}
NODE_PLUGIN_LABELS = {"app.kubernetes.io/name": CSI_CHART, "component": "csi-driver"}
SIZE_STEP = 2 * 1024 * 1024


def attachment_name(volume_handle: str, node: str) -> str:
    return "csi-" + hashlib.sha256(f"{volume_handle}{DRIVER}{node}".encode()).hexdigest()


def _round_up(size: int) -> int:
    return -(-size // SIZE_STEP) * SIZE_STEP


class GuestStorage:
    def __init__(self, guest: "SimulatedGuestCluster") -> None:
        self.guest = guest
        self.api = guest.api
        self.host = guest.host.api
        self.pvcs = kind(self.api, "v1", "persistentvolumeclaims")
        self.pvs = kind(self.api, "v1", "persistentvolumes")
        self.pods = kind(self.api, "v1", "pods")
        self.attachments = kind(self.api, "storage.k8s.io/v1", "volumeattachments")
        self.api.add_admission("", "persistentvolumeclaims", self._admit_claim, mutating=True)

    # ---- admission: DefaultStorageClass and StorageObjectInUseProtection ------------------------
    def _admit_claim(self, request: Any) -> None:
        if request.operation != "CREATE" or request.object is None:
            return
        claim = request.object
        finalizers = claim["metadata"].setdefault("finalizers", [])
        if PVC_PROTECTION not in finalizers:
            finalizers.append(PVC_PROTECTION)
        spec = claim.setdefault("spec", {})
        if "storageClassName" not in spec:
            default = self._default_class()
            if default:
                spec["storageClassName"] = default
        spec.setdefault("volumeMode", "Filesystem")
        claim.setdefault("status", {"phase": "Pending"})

    def _default_class(self) -> str | None:
        for klass in self.api.list(kind(self.api, "storage.k8s.io/v1", "storageclasses")).items:
            if (klass["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true":
                return klass["metadata"]["name"]
        return None

    # ---- who is running ----------------------------------------------------------------------------
    def _all_pods(self) -> list[Obj]:
        return self.api.list(self.pods).items

    def controller_running(self, pods: list[Obj] | None = None) -> bool:
        return bool(running_ready_pods(pods if pods is not None else self._all_pods(), CONTROLLER_LABELS))

    def node_plugin_running(self, node: str, pods: list[Obj] | None = None) -> bool:
        return bool(running_ready_pods(pods if pods is not None else self._all_pods(), NODE_PLUGIN_LABELS, node))

    # ---- reconcile -----------------------------------------------------------------------------------
    def reconcile(self) -> None:
        pods = self._all_pods()
        controller = self.controller_running(pods)
        self._provision(controller)
        self._reclaim(controller)
        self._attach(controller, pods)
        self._release_protection(pods)

    def _class(self, name: str | None) -> Obj | None:
        if not name:
            return None
        return self.api.find(kind(self.api, "storage.k8s.io/v1", "storageclasses"), None, name)

    def _host_storage_class(self, klass: Obj) -> str:
        parameter = (klass.get("parameters") or {}).get("hostStorageClass")
        if parameter:
            return parameter
        for ds in self.api.list(kind(self.api, "apps/v1", "daemonsets")).items:
            for container in (((ds.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []:
                for arg in container.get("args") or []:
                    if arg.startswith("--host-storage-class="):
                        return arg.split("=", 1)[1]
        return ""

    def _host_claim(self, guest_uid: str) -> Obj | None:
        return self.host.find(kind(self.host, "v1", "persistentvolumeclaims"), self.guest.host_namespace,
                              f"pvc-{guest_uid}")

    def _provision(self, controller: bool) -> None:
        host_pvcs = kind(self.host, "v1", "persistentvolumeclaims")
        for claim in self.api.list(self.pvcs).items:
            meta, spec = claim["metadata"], claim.get("spec") or {}
            if meta.get("deletionTimestamp") or spec.get("volumeName"):
                continue
            klass = self._class(spec.get("storageClassName"))
            if klass is None or klass.get("provisioner") != DRIVER:
                continue

            def annotate(obj: Obj) -> None:
                annotations = obj["metadata"].setdefault("annotations", {})
                annotations["volume.kubernetes.io/storage-provisioner"] = DRIVER
                annotations["volume.beta.kubernetes.io/storage-provisioner"] = DRIVER
            claim = mutate_if_changed(self.api, self.pvcs, claim, annotate)
            if not controller:
                self.guest.event_once(claim, "Normal", "ExternalProvisioning",
                                      f"Waiting for a volume to be created either by the external provisioner "
                                      f"'{DRIVER}' or manually by the system administrator. If volume creation is "
                                      "delayed, please verify that the provisioner is running and correctly "
                                      "registered.", "persistentvolume-controller")
                continue
            host_claim = self._host_claim(meta["uid"])
            access = spec.get("accessModes") or ["ReadWriteOnce"]
            requested = bytes_of((spec.get("resources") or {}).get("requests", {}).get("storage", "1Gi"))
            if host_claim is None:
                self.guest.event_once(claim, "Normal", "Provisioning",
                                      f'External provisioner is provisioning volume for claim "{meta["namespace"]}/'
                                      f'{meta["name"]}"', f"{DRIVER}_csi-provisioner")
                host_spec: Obj = {"accessModes": ["ReadWriteMany"],
                                  "volumeMode": "Filesystem" if "ReadWriteMany" in access else "Block",
                                  "resources": {"requests": {"storage": str(_round_up(requested))}}}
                host_class = self._host_storage_class(klass)
                if host_class:
                    host_spec["storageClassName"] = host_class
                self.guest.hostside.serve_claim(self.guest.host_namespace, f"pvc-{meta['uid']}")
                self.host.create(host_pvcs, {
                    "metadata": {"name": f"pvc-{meta['uid']}", "namespace": self.guest.host_namespace},
                    "spec": host_spec, "status": {"phase": "Pending"}}, keep_status=True)
                continue
            if (host_claim.get("status") or {}).get("phase") != "Bound":
                continue
            pv_name = f"pvc-{meta['uid']}"
            capacity = str(_round_up(requested))
            if self.api.find(self.pvs, None, pv_name) is None:
                self.api.create(self.pvs, {
                    "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": DRIVER},
                                 "finalizers": ["kubernetes.io/pv-protection"]},
                    "spec": {"capacity": {"storage": capacity}, "accessModes": access,
                             "persistentVolumeReclaimPolicy": klass.get("reclaimPolicy", "Delete"),
                             "storageClassName": klass["metadata"]["name"],
                             "volumeMode": spec.get("volumeMode", "Filesystem"),
                             "claimRef": {"kind": "PersistentVolumeClaim", "apiVersion": "v1",
                                          "namespace": meta["namespace"], "name": meta["name"], "uid": meta["uid"]},
                             "csi": {"driver": DRIVER, "volumeHandle": host_claim["metadata"]["name"],
                                     "fsType": "ext4"}},
                    "status": {"phase": "Bound"}}, keep_status=True)

            def bind(obj: Obj, pv_name: str = pv_name, access: list[str] = access, capacity: str = capacity) -> None:
                obj["spec"]["volumeName"] = pv_name
                obj["metadata"].setdefault("annotations", {}).update({
                    "pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes"})
                obj["status"] = {"phase": "Bound", "accessModes": access, "capacity": {"storage": capacity}}
            mutate_if_changed(self.api, self.pvcs, claim, bind)
            self.guest.event_once(claim, "Normal", "ProvisioningSucceeded",
                                  f"Successfully provisioned volume {pv_name}", f"{DRIVER}_csi-provisioner")

    def _reclaim(self, controller: bool) -> None:
        for pv in self.api.list(self.pvs).items:
            spec = pv.get("spec") or {}
            if (spec.get("csi") or {}).get("driver") != DRIVER:
                continue
            ref = spec.get("claimRef") or {}
            claim = self.api.find(self.pvcs, ref.get("namespace"), ref.get("name", ""))
            if claim is not None and claim["metadata"]["uid"] == ref.get("uid"):
                continue
            if spec.get("persistentVolumeReclaimPolicy") == "Delete" and controller:
                handle = spec["csi"]["volumeHandle"]
                try:
                    self.host.delete(kind(self.host, "v1", "persistentvolumeclaims"), self.guest.host_namespace, handle)
                except errors.ApiError:
                    pass
                mutate_if_changed(self.api, self.pvs, pv, lambda o: o["metadata"].__setitem__("finalizers", []))
                try:
                    self.api.delete(self.pvs, None, pv["metadata"]["name"])
                except errors.ApiError:
                    pass
            else:
                mutate_if_changed(self.api, self.pvs, pv, lambda o: status_of(o).__setitem__(
                    "phase", "Released"))

    def _release_protection(self, pods: list[Obj]) -> None:
        for claim in self.api.list(self.pvcs).items:
            meta = claim["metadata"]
            if not meta.get("deletionTimestamp") or PVC_PROTECTION not in (meta.get("finalizers") or []):
                continue
            in_use = any(p["metadata"].get("namespace") == meta["namespace"] and is_active(p) and any(
                (v.get("persistentVolumeClaim") or {}).get("claimName") == meta["name"]
                for v in (p.get("spec") or {}).get("volumes") or []) for p in pods)
            if not in_use:
                self.api.mutate(self.pvcs, meta["namespace"], meta["name"], lambda o: o["metadata"].__setitem__(
                    "finalizers", [f for f in o["metadata"].get("finalizers") or [] if f != PVC_PROTECTION]))

    # ---- attach / detach -----------------------------------------------------------------------------
    def _driver_pv(self, namespace: str, claim_name: str) -> Obj | None:
        claim = self.api.find(self.pvcs, namespace, claim_name)
        volume = ((claim or {}).get("spec") or {}).get("volumeName")
        if not volume:
            return None
        pv = self.api.find(self.pvs, None, volume)
        if pv is None or ((pv.get("spec") or {}).get("csi") or {}).get("driver") != DRIVER:
            return None
        return pv

    def _needed(self, pods: list[Obj]) -> dict[tuple[str, str], Obj]:
        needed: dict[tuple[str, str], Obj] = {}
        for pod in pods:
            node = (pod.get("spec") or {}).get("nodeName")
            if not node or not is_active(pod):
                continue
            for volume in (pod.get("spec") or {}).get("volumes") or []:
                claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
                pv = self._driver_pv(pod["metadata"]["namespace"], claim) if claim else None
                if pv is not None:
                    needed[(pv["metadata"]["name"], node)] = pv
        return needed

    def _attach(self, controller: bool, pods: list[Obj]) -> None:
        needed = self._needed(pods)
        existing = {(va["spec"]["source"].get("persistentVolumeName"), va["spec"]["nodeName"]): va
                    for va in self.api.list(self.attachments).items if va["spec"].get("attacher") == DRIVER}
        for (pv_name, node), pv in needed.items():
            handle = pv["spec"]["csi"]["volumeHandle"]
            va = existing.get((pv_name, node))
            if va is None:
                va = self.api.create(self.attachments, {
                    "metadata": {"name": attachment_name(handle, node)},
                    "spec": {"attacher": DRIVER, "nodeName": node, "source": {"persistentVolumeName": pv_name}},
                    "status": {"attached": False}}, keep_status=True)
            if controller and not (va.get("status") or {}).get("attached"):
                self._publish(va, handle, node)
        for key, va in existing.items():
            if key in needed or not controller:
                continue                         # without csi-attacher nothing detaches
            self._unpublish(va["spec"]["nodeName"], self._handle_of(key[0]) or "")
            try:
                self.api.delete(self.attachments, None, va["metadata"]["name"])
            except errors.ApiError:
                pass

    def _handle_of(self, pv_name: str) -> str | None:
        pv = self.api.find(self.pvs, None, pv_name)
        return (((pv or {}).get("spec") or {}).get("csi") or {}).get("volumeHandle")

    def _publish(self, va: Obj, handle: str, node: str) -> None:
        """ControllerPublishVolume: hotplug the host PVC into the node's VM, then wait for Longhorn."""
        host_claim = self.host.find(kind(self.host, "v1", "persistentvolumeclaims"), self.guest.host_namespace, handle)
        phase = ((host_claim or {}).get("status") or {}).get("phase", "")
        if host_claim is None or phase != "Bound":
            message = (f"rpc error: code = Internal desc = The PVC {handle} in phase {phase or 'Pending'} "
                       "is not ready to be attached")
            mutate_if_changed(self.api, self.attachments, va, lambda o: status_of(o).__setitem__(
                "attachError", {"time": rfc3339(), "message": message}))
            return
        vmi = self.guest.host_vmi(node)
        if vmi is None:
            return
        host_node = (vmi.get("status") or {}).get("nodeName", "")
        self._hotplug(node, handle, host_claim, host_node)
        volume = self.guest.hostside.longhorn_volume_for(self.guest.host_namespace, handle)
        status = (volume or {}).get("status") or {}
        if status.get("state") == "attached" and status.get("currentNodeID") == host_node:
            def attached(obj: Obj) -> None:
                obj["status"] = {"attached": True, "attachmentMetadata": {"serial": handle[:20]}}
            mutate_if_changed(self.api, self.attachments, va, attached)

    def _hotplug(self, vm_name: str, handle: str, host_claim: Obj, host_node: str) -> None:
        ns = self.guest.host_namespace
        vms = kind(self.host, "kubevirt.io/v1", "virtualmachines")
        vmis = kind(self.host, "kubevirt.io/v1", "virtualmachineinstances")
        pods = kind(self.host, "v1", "pods")
        vm = self.host.find(vms, ns, vm_name)
        vmi = self.host.find(vmis, ns, vm_name)
        if vm is None or vmi is None:
            return

        def add_to_template(obj: Obj) -> None:
            spec = obj["spec"]["template"].setdefault("spec", {})
            if not any(v.get("name") == handle for v in spec.setdefault("volumes", [])):
                spec["volumes"].append({"name": handle, "persistentVolumeClaim": {"claimName": handle,
                                                                                  "hotpluggable": True}})
            disks = spec.setdefault("domain", {}).setdefault("devices", {}).setdefault("disks", [])
            if not any(d.get("name") == handle for d in disks):
                disks.append({"name": handle, "disk": {"bus": "scsi"}, "serial": handle[:20]})
        mutate_if_changed(self.host, vms, vm, add_to_template)
        attach_pod = next((p for p in self.host.list(pods, ns, label_selector="kubevirt.io=hotplug-disk").items
                           if any((v.get("persistentVolumeClaim") or {}).get("claimName") == handle
                                  for v in p["spec"].get("volumes") or [])), None)
        if attach_pod is None:
            launcher = next((p for p in self.host.list(pods, ns, label_selector=f"vm.kubevirt.io/name={vm_name}").items
                             if p["metadata"]["name"].startswith("virt-launcher-")), None)
            attach_pod = self.host.create(pods, {
                "metadata": {"name": f"hp-volume-{random_suffix()}", "namespace": ns,
                             "labels": {"kubevirt.io": "hotplug-disk", "vm.kubevirt.io/name": vm_name},
                             "ownerReferences": [owner_reference(launcher)] if launcher else []},
                "spec": {"nodeName": host_node,
                         "containers": [{"name": "hotplug-disk", "image": "registry.suse.com/suse/sles/15.6/"
                                                                           "virt-launcher:1.3.1"}],
                         "volumes": [{"name": handle, "persistentVolumeClaim": {"claimName": handle}}]},
                "status": {"phase": "Running", "hostIP": "", "startTime": rfc3339()}}, keep_status=True)

        def add_to_instance(obj: Obj, pod: Obj = attach_pod) -> None:
            spec = obj.setdefault("spec", {})
            if not any(v.get("name") == handle for v in spec.setdefault("volumes", [])):
                spec["volumes"].append({"name": handle, "persistentVolumeClaim": {"claimName": handle,
                                                                                  "hotpluggable": True}})
            statuses = status_of(obj).setdefault("volumeStatus", [])
            if not any(s.get("name") == handle for s in statuses):
                target = "sd" + "abcdefghijklmnopqrstuvwxyz"[len([s for s in statuses if s.get("hotplugVolume")]) % 26]
                statuses.append({
                    "name": handle, "target": target, "phase": "Ready", "reason": "VolumeReady",
                    "message": f"Successfully attach hotplugged volume {handle} to VM",
                    "hotplugVolume": {"attachPodName": pod["metadata"]["name"],
                                      "attachPodUID": pod["metadata"]["uid"]},
                    "persistentVolumeClaimInfo": {
                        "claimName": handle, "accessModes": host_claim["spec"].get("accessModes", []),
                        "volumeMode": host_claim["spec"].get("volumeMode", "Block"),
                        "capacity": (host_claim.get("status") or {}).get("capacity", {})}})
        mutate_if_changed(self.host, vmis, vmi, add_to_instance)

    def _unpublish(self, vm_name: str, handle: str) -> None:
        """ControllerUnpublishVolume: RemoveVolume from the VM; KubeVirt stops the hotplug pod."""
        if not handle:
            return
        ns = self.guest.host_namespace
        vms = kind(self.host, "kubevirt.io/v1", "virtualmachines")
        vmis = kind(self.host, "kubevirt.io/v1", "virtualmachineinstances")
        pods = kind(self.host, "v1", "pods")
        vm = self.host.find(vms, ns, vm_name)
        if vm is not None:
            def remove(obj: Obj) -> None:
                spec = obj["spec"]["template"].get("spec") or {}
                spec["volumes"] = [v for v in spec.get("volumes") or [] if v.get("name") != handle]
                devices = (spec.get("domain") or {}).get("devices") or {}
                devices["disks"] = [d for d in devices.get("disks") or [] if d.get("name") != handle]
            mutate_if_changed(self.host, vms, vm, remove)
        vmi = self.host.find(vmis, ns, vm_name)
        if vmi is not None:
            def remove_instance(obj: Obj) -> None:
                obj["spec"]["volumes"] = [v for v in obj["spec"].get("volumes") or [] if v.get("name") != handle]
                status = status_of(obj)
                status["volumeStatus"] = [s for s in status.get("volumeStatus") or [] if s.get("name") != handle]
            mutate_if_changed(self.host, vmis, vmi, remove_instance)
        for pod in self.host.list(pods, ns, label_selector=f"kubevirt.io=hotplug-disk,vm.kubevirt.io/name={vm_name}").items:
            if any((v.get("persistentVolumeClaim") or {}).get("claimName") == handle for v in pod["spec"].get("volumes") or []):
                try:
                    self.host.delete(pods, ns, pod["metadata"]["name"])
                except errors.ApiError:
                    pass

    # ---- what the kubelet asks ----------------------------------------------------------------------------
    def volumes_ready(self, pod: Obj) -> tuple[bool, str]:
        """Can the kubelet start this pod: every claim bound, attached to its node and mountable there?"""
        namespace = pod["metadata"]["namespace"]
        node = (pod.get("spec") or {}).get("nodeName", "")
        pods: list[Obj] | None = None
        for volume in (pod.get("spec") or {}).get("volumes") or []:
            claim_name = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if not claim_name:
                continue
            claim = self.api.find(self.pvcs, namespace, claim_name)
            if claim is None:
                return False, f'persistentvolumeclaim "{claim_name}" not found'
            if (claim.get("status") or {}).get("phase") != "Bound":
                return False, f'persistentvolumeclaim "{claim_name}" is not bound'
            pv = self._driver_pv(namespace, claim_name)
            if pv is None:
                continue
            va = self.api.find(self.attachments, None, attachment_name(pv["spec"]["csi"]["volumeHandle"], node))
            if va is None or not (va.get("status") or {}).get("attached"):
                error = (((va or {}).get("status") or {}).get("attachError") or {}).get("message", "")
                return False, (f'AttachVolume.Attach failed for volume "{pv["metadata"]["name"]}" : {error}' if error
                               else f'AttachVolume.Attach pending for volume "{pv["metadata"]["name"]}"')
            pods = pods if pods is not None else self._all_pods()
            if not self.node_plugin_running(node, pods):
                return False, (f'MountVolume.MountDevice failed for volume "{pv["metadata"]["name"]}" : '
                               f"kubernetes.io/csi: attacher.MountDevice failed to create newCsiDriverClient: "
                               f"driver name {DRIVER} not found in the list of registered CSI drivers")
        return True, ""

    # ---- what a pod's processes see under the mount ---------------------------------------------------------
    def pod_volume(self, pod: Obj, volume: Obj, mount: Obj) -> Mount | None:
        """The mount of a claim on this driver: the host Longhorn volume's files, while attached here."""
        claim_name = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        namespace = pod["metadata"]["namespace"]
        if not claim_name or self._driver_pv(namespace, claim_name) is None:
            return None
        node = (pod.get("spec") or {}).get("nodeName", "")
        return Mount(mount["mountPath"], lambda: self._attached_tree(namespace, claim_name, node),
                     read_only=bool(mount.get("readOnly") or (volume.get("persistentVolumeClaim") or {}).get("readOnly")))

    def _attached_tree(self, namespace: str, claim_name: str, node: str) -> FileTree:
        pv = self._driver_pv(namespace, claim_name)
        if pv is None:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        handle = pv["spec"]["csi"]["volumeHandle"]
        va = self.api.find(self.attachments, None, attachment_name(handle, node))
        longhorn = self.guest.hostside.longhorn_volume_for(self.guest.host_namespace, handle)
        host_node = ((self.guest.host_vmi(node) or {}).get("status") or {}).get("nodeName")
        state = (longhorn or {}).get("status") or {}
        if not ((va or {}).get("status") or {}).get("attached") or longhorn is None or \
                state.get("state") != "attached" or state.get("currentNodeID") != host_node:
            raise OSError(errno.EIO, os.strerror(errno.EIO))      # the disk went from under the mount
        return self.guest.hostside.contents.tree(longhorn["metadata"]["name"])
