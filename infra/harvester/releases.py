"""Releases an upgrade can go to: the Version that offers one, and the release file inside its ISO.

One Version creator for the harness: a Version named after the release, pointing at the release's ISO
(and checksum) exactly as the catalogue of the cluster names it (`Cluster.release`). A Version that
exists (made by Harvester's upgrade responder, or by a person) is used and left alone; one this run
makes carries the run's label and its deletion is registered before it is created.

The release file (`harvester-release.yaml`) is read where Harvester itself reads it: from the ISO the
Version names (ISO9660, through HTTP Range requests: a real ISO is several GB, the file a few hundred
bytes), or, during an upgrade, from the upgrade repo behind Service `upgrade-repo-<upgrade>`, as
`upgrade_manifests.sh` downloads it (through the API server's service proxy from outside the cluster).
"""
from __future__ import annotations

import io
from typing import Any

import yaml

from infra.cleanup import CleanupStack
from infra.cluster import Release
from infra.https import Endpoint
from infra.kube import ApiFailure, Kube
from infra.waits.budget import Budget

from .names import HARVESTER, RUN_ID_LABEL, SYSTEM_NAMESPACE

Obj = dict[str, Any]
RELEASE_FILE = "harvester-release.yaml"
UPGRADE_REPO_PORT = "80"


def version_manifest(release: Release, run_id: str, *, namespace: str = SYSTEM_NAMESPACE) -> Obj:
    spec: Obj = {"isoURL": release.iso_url}
    if release.iso_checksum:
        spec["isoChecksum"] = release.iso_checksum
    return {"apiVersion": HARVESTER, "kind": "Version",
            "metadata": {"name": release.version, "namespace": namespace, "labels": {RUN_ID_LABEL: run_id}},
            "spec": spec}


def ensure_version(kube: Kube, release: Release, run_id: str, cleanup: CleanupStack, gone: Budget, *,
                   namespace: str = SYSTEM_NAMESPACE) -> Obj:
    """The Version of `release`: reused if it exists, else created with the run's label (undo registered first;
    it deletes the Version only if it still carries this run's label)."""
    existing = kube.find(HARVESTER, "Version", release.version, namespace)
    if existing is not None:
        return existing
    cleanup.delete_later(kube, HARVESTER, "Version", release.version, namespace, budget=gone,
                         only_with_label=(RUN_ID_LABEL, run_id))
    try:
        return kube.create(version_manifest(release, run_id, namespace=namespace))
    except ApiFailure as exc:
        if exc.reason == "AlreadyExists":           # someone made it meanwhile: reuse theirs, leave it be
            return kube.get(HARVESTER, "Version", release.version, namespace)
        raise


class ReleaseFileUnreadable(RuntimeError):
    """The release file could not be read from where it should be (the ISO, or the upgrade repo)."""


class _RangeReader(io.RawIOBase):
    """A seekable file over HTTP Range requests, so an ISO is read without downloading it."""

    def __init__(self, endpoint: Endpoint, path: str) -> None:
        self.endpoint, self.path = endpoint, path
        self.size = endpoint.size_of(path)
        self.position = 0
        self.cache: dict[int, bytes] = {}

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer: Any) -> int:
        length = min(len(buffer), max(0, self.size - self.position))
        if length == 0:
            return 0
        data = b""
        block_size = 64 * 1024          # whole blocks, cached: pycdlib reads many small records
        while len(data) < length:
            at = self.position + len(data)
            block = at // block_size
            if block not in self.cache:
                self.cache[block] = self.endpoint.get_range(self.path, block * block_size, block_size)
            chunk = self.cache[block][at - block * block_size:]
            if not chunk:
                break
            data += chunk[:length - len(data)]
        buffer[:len(data)] = data
        self.position += len(data)
        return len(data)


def release_file_from_iso(release: Release) -> Obj:
    """`harvester-release.yaml` at the root of the release's ISO (ISO9660), read over HTTP Range requests."""
    import pycdlib

    endpoint = release.iso()
    iso = pycdlib.PyCdlib()
    try:
        iso.open_fp(_RangeReader(endpoint, release.iso_url))  # type: ignore[arg-type]  # a seekable raw stream
        found = io.BytesIO()
        iso.get_file_from_iso_fp(found, **_path_in(iso))
    except Exception as exc:  # noqa: BLE001 - pycdlib raises its own and I/O errors alike
        raise ReleaseFileUnreadable(f"could not read {RELEASE_FILE} from the ISO {release.iso_url}: "
                                    f"{type(exc).__name__}: {exc}") from None
    finally:
        try:
            iso.close()
        except Exception:  # noqa: BLE001 - nothing was opened
            pass
    return _parse(found.getvalue(), release.iso_url)


def _path_in(iso: Any) -> dict[str, str]:
    """The file's name in the richest naming the ISO carries (real ISOs: Rock Ridge, as xorriso writes)."""
    if iso.has_rock_ridge():
        return {"rr_path": f"/{RELEASE_FILE}"}
    if iso.has_joliet():
        return {"joliet_path": f"/{RELEASE_FILE}"}
    return {"iso_path": "/HARVESTER_RELEASE.YAML;1"}


def release_file_from_repo(kube: Kube, upgrade: str, *, namespace: str = SYSTEM_NAMESPACE) -> Obj:
    """The release file the upgrade repo serves (`upgrade_manifests.sh` downloads it the same way)."""
    import kubernetes

    service = f"upgrade-repo-{upgrade}:{UPGRADE_REPO_PORT}"
    core = kubernetes.client.CoreV1Api(kube.api_client)
    try:
        # Raw bytes: the repo's nginx serves .yaml as application/octet-stream, which the client will not decode.
        response = core.connect_get_namespaced_service_proxy_with_path(service, namespace,
                                                                       f"harvester-iso/{RELEASE_FILE}",
                                                                       _preload_content=False,
                                                                       _request_timeout=kube.request_timeout)
        data = response.data      # type: ignore[attr-defined]  # an HTTPResponse with _preload_content=False
    except kubernetes.client.exceptions.ApiException as exc:
        raise ReleaseFileUnreadable(f"the upgrade repo of {upgrade} did not serve {RELEASE_FILE}: "
                                    f"{ApiFailure.from_exception(exc)}") from None
    return _parse(bytes(data), f"upgrade-repo-{upgrade}")


def _parse(data: bytes, where: str) -> Obj:
    try:
        parsed = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ReleaseFileUnreadable(f"{RELEASE_FILE} from {where} is not YAML: {exc}") from None
    if not isinstance(parsed, dict) or "harvester" not in parsed:
        raise ReleaseFileUnreadable(f"{RELEASE_FILE} from {where} has no 'harvester' key: {str(parsed)[:200]}")
    return parsed
