"""Harvester's image StorageClasses: how a VM disk gets a VM image's content.

harvester/harvester v1.4.x / v1.5.x `pkg/image/...` (`util.GetImageStorageClassName`,
`GetImageStorageClassParameters`, the backing-image handler): each VirtualMachineImage (Longhorn backend) has
a StorageClass `longhorn-<image name>` (provisioner `driver.longhorn.io`) whose parameters are the image's
`spec.storageClassParameters` (default numberOfReplicas 3, staleReplicaTimeout 30, migratable true) plus
`backingImage: <namespace>-<name>` (the Longhorn BackingImage holding the downloaded file), and the image's
`status.storageClassName` names it. A PVC of that class is a Longhorn volume cloned from the backing image;
a PVC of any other class (`harvester-longhorn`) is blank whatever annotations it has - Harvester's UI creates
a VM's root disk in the image's class, with `harvesterhci.io/imageId: <namespace>/<name>` for the record.
When the image goes, so does its StorageClass.

Not modelled: the download itself and the image's Imported/progress status (the upgrade's own image,
labelled `harvesterhci.io/upgrade`, is the upgrade controller's and is left alone here).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..apiserver import errors
from ..apiserver.objects import ObjectApi
from ..apiserver.store import StoredEvent
from ..controllers.base import Controller
from .common import HARVESTER_UPGRADE_LABEL, Obj

if TYPE_CHECKING:
    from ..simulator import Simulator

log = logging.getLogger(__name__)

IMAGE_KEY = ("harvesterhci.io", "virtualmachineimages")
LONGHORN_DRIVER = "driver.longhorn.io"
DEFAULT_PARAMETERS = {"numberOfReplicas": "3", "staleReplicaTimeout": "30", "migratable": "true"}


def storage_class_name(image: Obj) -> str:
    return f"longhorn-{image['metadata']['name']}"


def backing_image_name(image: Obj) -> str:
    return f"{image['metadata']['namespace']}-{image['metadata']['name']}"


def image_of_backing(api: ObjectApi, backing: str) -> Obj | None:
    """The VirtualMachineImage whose backing image this is."""
    images = api.lookup("harvesterhci.io", "v1beta1", "virtualmachineimages")
    return next((i for i in api.list(images).items if backing_image_name(i) == backing), None)


class ImageStorageClasses(Controller):
    watches = (IMAGE_KEY,)

    def __init__(self, simulator: "Simulator") -> None:
        super().__init__(simulator.api)
        self.images = self.api.lookup("harvesterhci.io", "v1beta1", "virtualmachineimages")
        self.classes = self.api.lookup("storage.k8s.io", "v1", "storageclasses")

    def resync(self) -> None:
        for image in self.api.list(self.images).items:
            self.ensure(image)

    async def handle(self, event: StoredEvent) -> None:
        image = event.object
        if event.type == "DELETED" or image["metadata"].get("deletionTimestamp"):
            self.remove(image)
        else:
            self.ensure(image)

    def ensure(self, image: Obj) -> None:
        meta = image["metadata"]
        if (meta.get("labels") or {}).get(HARVESTER_UPGRADE_LABEL) or meta.get("deletionTimestamp"):
            return
        name = storage_class_name(image)
        if self.api.find(self.classes, None, name) is None:
            parameters = {**DEFAULT_PARAMETERS, **{k: str(v) for k, v in ((image.get("spec") or {})
                                                                          .get("storageClassParameters") or {}).items()},
                          "backingImage": backing_image_name(image)}
            self.api.create(self.classes, {
                "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                "metadata": {"name": name},
                "provisioner": LONGHORN_DRIVER, "parameters": parameters, "reclaimPolicy": "Delete",
                "allowVolumeExpansion": True, "volumeBindingMode": "Immediate"})
        if (image.get("status") or {}).get("storageClassName") != name:
            def record(obj: Obj) -> None:
                obj.setdefault("status", {})["storageClassName"] = name
            try:
                self.api.mutate(self.images, meta["namespace"], meta["name"], record)
            except errors.ApiError as exc:
                log.debug("image %s/%s: %s", meta["namespace"], meta["name"], exc.message)

    def remove(self, image: Obj) -> None:
        klass = self.api.find(self.classes, None, storage_class_name(image))
        if klass is not None and (klass.get("parameters") or {}).get("backingImage") == backing_image_name(image):
            try:
                self.api.delete(self.classes, None, klass["metadata"]["name"])
            except errors.ApiError:
                pass


def install(simulator: "Simulator") -> ImageStorageClasses:
    controller = ImageStorageClasses(simulator)

    async def run() -> None:
        controller.resync()
        await controller.run()
    simulator.spawn(run, "image-storageclasses")
    return controller
