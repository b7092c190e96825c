"""The upgrade image and the upgrade repo: the ISO a Version names, downloaded, mounted and served.

harvester/harvester `pkg/controller/master/upgrade/upgrade_repo.go` and `image_controller.go` (same at
every simulated tag and ce188325, but v1.4.x's repo VM uses `running: true` where later tags use
`runStrategy: RerunOnFailure`), the image operator `pkg/image/common/operator.go`, the backing-image
handler `pkg/image/backingimage/backing_image_controller.go`, and the download in Longhorn's
backing-image-manager (`pkg/sync/handler.go`, `sync_file.go`):

* `CreateImageFromISO` makes VirtualMachineImage `<upgrade>` (displayName `<upgrade>-<version>`, url =
  the Version's isoURL, checksum = its isoChecksum, retry 3, owned by the Upgrade);
* the download is a HEAD then a GET; a non-200 answer is `expected status code 200 from <url>, got
  <status>`; the file's sha512 must equal the expected checksum; a failure reads `failed to process sync
  file: <error>` and is retried 10 s later until `status.failed` exceeds `spec.retry`;
* `Bootstrap` makes the repo VM `upgrade-repo-<upgrade>` and Service `upgrade-repo-<upgrade>` (port 80,
  selecting the VM's pods by upgrade and component); the VM serves the ISO at `/harvester-iso/` and its pod
  is Ready once `/harvester-iso/harvester-release.yaml` answers (the VM's readiness probe);
* `getInfo` reads `http://upgrade-repo-<upgrade>.harvester-system/harvester-iso/harvester-release.yaml`.

The simulator is an air-gapped cluster: its nodes reach only loopback addresses (the simulator's own release
server among them). Any other host fails as it would without a route, and no traffic is sent.
"""
from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import ssl
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import yaml
from aiohttp import web

from ..apiserver.clock import rfc3339
from ..harvester.release_iso import IsoError, read_iso
from .upgrade_common import COMPONENT, CREATOR, NAMESPACE, UPGRADE_LABEL, Obj, UpgradeObjects, owner_reference, \
    pod_suffix

if TYPE_CHECKING:
    from ..simulator import Simulator

ISO_PREFIX = "harvester-iso/"
RELEASE_PATH = ISO_PREFIX + "harvester-release.yaml"
MAX_ISO_BYTES = 512 * 1024 * 1024         # the simulator holds downloads in memory; a real ISO is ~6 GiB
CLUSTER_DNS = "10.53.0.10:53"             # Harvester's default cluster DNS (service CIDR 10.53.0.0/16)
IMAGE_RETRY_DELAY = 10                    # vmImageHandler.handleRetry: re-initialise 10 s after a failure
DOWNLOAD_SECONDS = 120                    # ILLUSTRATIVE: simulated download time of an ISO
REPO_BOOT_SECONDS = 90                    # ILLUSTRATIVE: the repo VM boots and mounts the ISO
REPO_COMPONENT = "repo"


class DownloadError(Exception):
    """A failed download, with the text the backing-image manager reports."""


class IsoDownloader:
    """The backing-image data source's HTTP download (Go net/http error texts)."""

    def __init__(self, simulator: "Simulator") -> None:
        self._ssl = ssl.create_default_context(cadata=simulator.tls.ca_cert_pem.decode())

    async def fetch(self, url: str) -> bytes:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise DownloadError(f'Head "{url}": unsupported protocol scheme "{parts.scheme}"')
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if not _is_loopback(host):
            raise DownloadError(_unreachable(url, host, port))
        timeout = aiohttp.ClientTimeout(total=120, connect=10)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.head(url, ssl=self._ssl, allow_redirects=True) as head:
                    _expect_ok(url, head)
                async with session.get(url, ssl=self._ssl) as response:
                    _expect_ok(url, response)
                    chunks, size = [], 0
                    async for chunk in response.content.iter_chunked(1 << 20):
                        chunks.append(chunk)
                        size += len(chunk)
                        if size > MAX_ISO_BYTES:
                            break
                    data = b"".join(chunks)
        except aiohttp.ClientConnectorCertificateError:
            raise DownloadError(f'Head "{url}": tls: failed to verify certificate: x509: certificate signed by '
                                'unknown authority') from None
        except aiohttp.ClientConnectorError:
            raise DownloadError(f'Head "{url}": dial tcp {host}:{port}: connect: connection refused') from None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise DownloadError(f'Get "{url}": {type(exc).__name__}: {exc}') from None
        if len(data) > MAX_ISO_BYTES:
            raise DownloadError(f"the simulator keeps ISOs up to {MAX_ISO_BYTES} bytes; {url} is larger")
        return data


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _unreachable(url: str, host: str, port: int) -> str:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return f'Head "{url}": dial tcp: lookup {host} on {CLUSTER_DNS}: no such host'
    return f'Head "{url}": dial tcp {host}:{port}: connect: network is unreachable'


def _expect_ok(url: str, response: aiohttp.ClientResponse) -> None:
    if response.status != 200:
        raise DownloadError(f"expected status code 200 from {url}, got {response.status} {response.reason}")


# ---- the upgrade image ----------------------------------------------------------------------------

class UpgradeImage:
    """VirtualMachineImage `<upgrade>` and the Upgrade's ImageReady, as their two controllers keep them."""

    def __init__(self, objects: UpgradeObjects, downloader: IsoDownloader) -> None:
        self.objects = objects
        self.downloader = downloader
        self.images = objects.rtype("harvesterhci.io", "v1beta1", "virtualmachineimages")

    def create(self, upgrade: Obj, version: Obj) -> Obj:
        """`CreateImageFromISO(version.Spec.ISOURL, version.Spec.ISOChecksum)`."""
        name = upgrade["metadata"]["name"]
        spec = version.get("spec") or {}
        return self.objects.create("harvesterhci.io", "v1beta1", "virtualmachineimages", {
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {UPGRADE_LABEL: name},
                         "ownerReferences": [owner_reference(upgrade)]},
            "spec": {"displayName": f"{name}-{upgrade['spec'].get('version', '')}", "sourceType": "download",
                     "url": spec.get("isoURL", ""), "checksum": spec.get("isoChecksum", ""), "retry": 3}})

    async def import_iso(self, upgrade_name: str) -> bytes | None:
        """Download until imported or out of retries; mirror each image change onto ImageReady."""
        clock = self.objects.simulator.clock
        while True:
            image = self._update(upgrade_name, self._initialized)
            try:                 # an unreachable server fails at once; a transfer takes its time
                data = await self.downloader.fetch(image["spec"].get("url", ""))
                await clock.sleep(DOWNLOAD_SECONDS / 2)
                self._update(upgrade_name, lambda o: self._importing(o, 50))
                await clock.sleep(DOWNLOAD_SECONDS / 2)
                expected = image["spec"].get("checksum") or ""
                actual = hashlib.sha512(data).hexdigest()
                if expected and expected != actual:
                    raise DownloadError(f"the expected checksum {expected} doesn't match the file actual "
                                        f"checksum {actual}")
            except DownloadError as exc:
                reason = f"failed to process sync file: {exc}"
                failed = self._update(upgrade_name, lambda o, why=reason: self._fail(o, why))
                if _cond(failed, "RetryLimitExceeded").get("status") == "True":
                    return None
                await clock.sleep(IMAGE_RETRY_DELAY)
                continue
            self._update(upgrade_name, lambda o: self._imported(o, len(data)))
            return data

    def _update(self, upgrade_name: str, change: Any) -> Obj:
        image = self.objects.api.mutate(self.images, NAMESPACE, upgrade_name, change)
        self._sync_upgrade(upgrade_name, image)
        return image

    # operator.go stateTransit, per state
    @staticmethod
    def _initialized(image: Obj) -> None:
        status = image.setdefault("status", {})
        status.update(appliedUrl=image["spec"].get("url", ""), progress=0,
                      storageClassName=f"longhorn-{image['metadata']['name']}")
        _set(image, "Imported", "Unknown", reason="Importing")
        _set(image, "Initialized", "True", reason="Initialized", message="")

    @staticmethod
    def _importing(image: Obj, progress: int) -> None:
        image.setdefault("status", {})["progress"] = progress
        _set(image, "Imported", "Unknown", reason="Importing", message="")

    @staticmethod
    def _imported(image: Obj, size: int) -> None:
        image.setdefault("status", {}).update(progress=100, size=size, virtualSize=size)
        _set(image, "Imported", "True", reason="Imported", message="")
        _set(image, "RetryLimitExceeded", "False", reason="", message="")

    @staticmethod
    def _fail(image: Obj, message: str) -> None:
        """failStateTransit for ImageImported: count the failure; past spec.retry both conditions fail."""
        status = image.setdefault("status", {})
        status["failed"] = int(status.get("failed", 0)) + 1
        status["lastFailedTime"] = rfc3339()
        error = f"failed due to error: {message}"
        if status["failed"] > 1:
            error = f"retry attempted {status['failed'] - 1}/{image['spec'].get('retry', 0)} {error}"
        if status["failed"] > int(image["spec"].get("retry", 0)):
            _set(image, "RetryLimitExceeded", "True", message=error)
            _set(image, "Imported", "False", message=error)
        else:
            _set(image, "RetryLimitExceeded", "False", message=error)

    def _sync_upgrade(self, upgrade_name: str, image: Obj) -> None:
        """vmImageHandler.OnChanged: ImageImported decides ImageReady, retry failures keep it Unknown."""
        imported, limit = _cond(image, "Imported"), _cond(image, "RetryLimitExceeded")
        upgrade = self.objects.upgrade(upgrade_name)
        ready = next((c for c in upgrade.get("status", {}).get("conditions", []) if c["type"] == "ImageReady"), {})
        if imported.get("status") == "True":
            wanted = ("True", "", "")
        elif imported.get("status") == "False":
            wanted = ("False", imported.get("reason", ""), imported.get("message", ""))
        elif limit.get("status") == "True":
            wanted = ("False", limit.get("reason", ""), limit.get("message", ""))
        elif limit.get("status") == "False" and (limit.get("reason", "") != ready.get("reason", "") or
                                                 limit.get("message", "") != ready.get("message", "")):
            wanted = ("Unknown", limit.get("reason", ""), limit.get("message", ""))
        else:
            return
        if (ready.get("status"), ready.get("reason", ""), ready.get("message", "")) != wanted:
            self.objects.set_condition(upgrade_name, "ImageReady", *wanted)


def _cond(obj: Obj, ctype: str) -> Obj:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == ctype), {})


def _set(obj: Obj, ctype: str, status: str, *, reason: str | None = None, message: str | None = None) -> None:
    conditions = obj.setdefault("status", {}).setdefault("conditions", [])
    cond = next((c for c in conditions if c.get("type") == ctype), None)
    if cond is None:
        cond = {"type": ctype}
        conditions.append(cond)
    now = rfc3339()
    if cond.get("status") != status:
        cond["lastTransitionTime"] = now
    cond.update(status=status, lastUpdateTime=now)
    if reason is not None:
        cond["reason"] = reason
    if message is not None:
        cond["message"] = message


# ---- the repo ----------------------------------------------------------------------------------------

class UpgradeRepo:
    """Repo VM, its pod and Service, and the files it serves from the mounted ISO."""

    def __init__(self, objects: UpgradeObjects, upgrade: Obj) -> None:
        self.objects = objects
        self.upgrade_name = upgrade["metadata"]["name"]
        self.name = f"upgrade-repo-{self.upgrade_name}"
        self.files: dict[str, bytes] = {}
        self.root: Path | None = None
        self._mounted: tempfile.TemporaryDirectory[str] | None = None    # removed at deleteVM (or exit)
        self.pod = ""

    # --- Bootstrap --------------------------------------------------------------------------------
    def bootstrap(self, upgrade: Obj, image: Obj, running_version_tag: str) -> None:
        """`Bootstrap`: the repo VM (createVM) and its Service (createService)."""
        labels = {CREATOR: "harvester", UPGRADE_LABEL: self.upgrade_name, COMPONENT: REPO_COMPONENT}
        disk = f"{self.name}-disk-0"
        pvc = [{"metadata": {"name": disk, "annotations": {"harvesterhci.io/imageId": f"{NAMESPACE}/"
                                                                                       f"{image['metadata']['name']}"}},
                "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "10Gi"}},
                         "volumeMode": "Block",
                         "storageClassName": (image.get("status") or {}).get("storageClassName", "")}}]
        # v1.4.x's createVM sets `running: true`; v1.5.0-rc2 on (and ce188325) the RerunOnFailure strategy
        run = {"running": True} if running_version_tag.startswith("v1.4.") else {"runStrategy": "RerunOnFailure"}
        self.objects.create("kubevirt.io", "v1", "virtualmachines", {
            "metadata": {"name": self.name, "namespace": NAMESPACE, "labels": labels,
                         "annotations": {"harvesterhci.io/volumeClaimTemplates": _json(pvc),
                                         "network.harvesterhci.io/ips": "[]",
                                         "harvesterhci.io/removedPersistentVolumeClaims": disk},
                         "ownerReferences": [owner_reference(upgrade)]},
            "spec": {**run, "template": {
                "metadata": {"labels": {**labels, "harvesterhci.io/vmName": self.name}},
                "spec": {"hostname": self.name, "evictionStrategy": "LiveMigrateIfPossible",
                         "domain": {"cpu": {"cores": 1, "sockets": 1, "threads": 1, "model": "host-passthrough"},
                                    "resources": {"limits": {"cpu": "1", "memory": "1G"},
                                                  "requests": {"cpu": "1", "memory": "1G"}},
                                    "devices": {"disks": [{"name": "disk-0", "bootOrder": 1,
                                                           "cdrom": {"bus": "scsi"}},
                                                          {"name": "cloudinitdisk", "cdrom": {"bus": "scsi"}}]}},
                         "networks": [{"name": "default", "pod": {}}],
                         "volumes": [{"name": "disk-0", "persistentVolumeClaim": {"claimName": disk}},
                                     {"name": "cloudinitdisk", "cloudInitNoCloud": {
                                         "userData": 'name: "enable repo mode"\nstages:\n  rootfs:\n  - commands:\n'
                                                     '    - echo > /sysroot/harvester-serve-iso\n'}}],
                         "readinessProbe": {"httpGet": {"path": "/harvester-iso/harvester-release.yaml",
                                                        "port": 80},
                                            "timeoutSeconds": 30, "failureThreshold": 5}}}},
            "status": {"printableStatus": "Starting"}})
        self.objects.create("", "v1", "services", {
            "metadata": {"name": self.name, "namespace": NAMESPACE, "labels": labels,
                         "ownerReferences": [owner_reference(upgrade)]},
            "spec": {"selector": {UPGRADE_LABEL: self.upgrade_name, COMPONENT: REPO_COMPONENT},
                     "ports": [{"protocol": "TCP", "port": 80, "targetPort": 80}]}})

    async def boot(self, iso: bytes) -> bool:
        """The VM boots from the image; True once its pod is Ready (the release file answers)."""
        vms = self.objects.rtype("kubevirt.io", "v1", "virtualmachines")
        vm = self.objects.api.get(vms, NAMESPACE, self.name)
        self.pod = f"virt-launcher-{self.name}-{pod_suffix()}"
        template_labels = vm["spec"]["template"]["metadata"]["labels"]
        now = rfc3339()
        # the real chain is VM -> VMI -> virt-launcher pod; the simulator owns the pod by the VM directly
        self.objects.create("", "v1", "pods", {
            "metadata": {"name": self.pod, "namespace": NAMESPACE,
                         "labels": {**template_labels, "kubevirt.io": "virt-launcher"},
                         "ownerReferences": [owner_reference(vm, controller=True)]},
            "spec": {"containers": [{"name": "compute", "image": "registry.suse.com/suse/sles/15.6/virt-launcher"}],
                     "restartPolicy": "Never"},
            "status": {"phase": "Running", "startTime": now,
                       "containerStatuses": [{"name": "compute", "ready": False, "restartCount": 0,
                                              "started": True, "state": {"running": {"startedAt": now}}}]}})
        self.objects.api.mutate(vms, NAMESPACE, self.name,
                                lambda o: o.setdefault("status", {}).update(printableStatus="Running", ready=True))
        await self.objects.simulator.clock.sleep(REPO_BOOT_SECONDS)
        try:
            self.mount(iso)
        except IsoError:
            return False           # nothing to serve: the readiness probe never passes
        if RELEASE_PATH[len(ISO_PREFIX):] not in self.files:
            return False
        self._set_pod_ready()
        self.objects.simulator.server.add_service_proxy(NAMESPACE, self.name, self.serve)
        return True

    def mount(self, iso: bytes) -> None:
        self.files = read_iso(iso)
        self._mounted = tempfile.TemporaryDirectory(prefix=f"{self.name}-")
        self.root = Path(self._mounted.name)
        for path, data in self.files.items():
            target = self.root / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)

    def _set_pod_ready(self) -> None:
        pods = self.objects.rtype("", "v1", "pods")

        def ready(obj: Obj) -> None:
            for status in obj["status"]["containerStatuses"]:
                status["ready"] = True
            now = rfc3339()
            obj["status"]["conditions"] = [{"type": t, "status": "True", "lastTransitionTime": now}
                                           for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")]
        self.objects.api.mutate(pods, NAMESPACE, self.pod, ready)

    # --- what it serves ----------------------------------------------------------------------------
    def read(self, path: str) -> bytes | None:
        """GET http://upgrade-repo-<upgrade>.harvester-system/<path> from inside the cluster."""
        if not path.startswith(ISO_PREFIX):
            return None
        return self.files.get(path[len(ISO_PREFIX):])

    async def serve(self, request: web.Request, port: str, path: str) -> web.StreamResponse:
        """What answers behind the Service's port 80 (a static file server of the mounted ISO)."""
        if port not in ("", "80", "http"):
            return web.json_response(_status(503, "ServiceUnavailable",
                                             f'no service port "{port}" found for service "{self.name}"'), status=503)
        relative = path[len(ISO_PREFIX):] if path.startswith(ISO_PREFIX) else None
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405, text="405 Not Allowed\n")
        if relative is None or relative not in self.files or self.root is None:
            return web.Response(status=404, text="404 Not Found\n", content_type="text/html")
        return web.FileResponse(self.root / relative)

    def info(self) -> Obj:
        """`getInfo`: the release file, decoded (yaml.v3 into HarvesterRelease)."""
        data = self.read(RELEASE_PATH)
        if data is None:
            raise RepoInfoError("unexpected status: 404 Not Found")
        try:
            loaded = yaml.safe_load(data)
        except yaml.YAMLError as exc:
            raise RepoInfoError(f"yaml: {exc}") from None
        if not isinstance(loaded, dict):
            raise RepoInfoError("yaml: unmarshal errors: cannot unmarshal into Go value of type "
                                "repoinfo.HarvesterRelease")
        return loaded

    # --- teardown (`deleteVM`) --------------------------------------------------------------------
    def delete_vm(self, image_id: str) -> None:
        """deleteVM: the VM goes; the image with it (no PVC of it exists in the simulator, so deleteImage deletes it)."""
        self.objects.simulator.server.remove_service_proxy(NAMESPACE, self.name)
        self.objects.delete_if_present("kubevirt.io", "v1", "virtualmachines", NAMESPACE, self.name)
        if image_id:
            namespace, _, image = image_id.partition("/")
            self.objects.delete_if_present("harvesterhci.io", "v1beta1", "virtualmachineimages", namespace, image)
        if self._mounted is not None:
            self._mounted.cleanup()
            self._mounted, self.root = None, None


class RepoInfoError(Exception):
    """repo.getInfo failed; str() is the reason Completed carries."""


def _json(value: Any) -> str:
    import json
    return json.dumps(value, separators=(",", ":"))


def _status(code: int, reason: str, message: str) -> Obj:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
