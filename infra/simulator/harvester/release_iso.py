"""The ISO of each simulated release, and the release server that publishes it.

A real Harvester ISO (harvester-installer `scripts/package-harvester-os`, `scripts/build-bundle`) holds,
at its root, `harvester-release.yaml`, `bundle/metadata.yaml` with the image lists and archives it names,
`bundle/harvester/images-lists-archive/<version>/image_list_all.txt` for this and every earlier release
(`scripts/archive-images-lists.sh`), `boot/grub2/harvester.cfg`, and the OS (`rootfs.squashfs`, boot
files). The simulator's ISO is a real ISO9660 image (Rock Ridge and Joliet names, volume `COS_LIVE` like the
installer's manifest) with the small files only:

* `harvester-release.yaml`, `boot/grub2/harvester.cfg` and `bundle/metadata.yaml` as the installer writes them;
* the image lists `bundle/metadata.yaml` names, and the images-lists archive, holding the images the simulator's
  pods of that version run (a real list names every image of the release);
* no image archives (`*.tar.zst`) and no `rootfs.squashfs`: gigabytes that nothing in the simulator reads.

`ReleaseServer` serves them on the simulator's own HTTPS listener, laid out like releases.rancher.com/harvester:
`/harvester-releases/<channel>/harvester-<channel>-amd64.iso`, the `harvester-<channel>-amd64.sha512`
checksum file (sha512sum format) and, for tagged releases, `version.yaml`. It is public (no token) and
answers HEAD and HTTP Range requests like any static file server.
"""
from __future__ import annotations

import hashlib
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import pycdlib
import yaml
from aiohttp import web

from .versions import RELEASES_PATH, VERSIONS, HarvesterVersion, version_of_channel

if TYPE_CHECKING:
    from ..apiserver.server import ApiServer
    from ..apiserver.tls import TlsMaterial

VOLUME_LABEL = "COS_LIVE"         # harvester-installer package/harvester-os manifest.yaml `iso.label`
RELEASE_FILE = "harvester-release.yaml"
BUNDLE_METADATA = "bundle/metadata.yaml"


class IsoError(ValueError):
    """Bytes that are not an ISO9660 image, or an ISO without a file asked for."""


# ---- what goes into a version's ISO --------------------------------------------------------------

def _images_of(version: HarvesterVersion) -> dict[str, list[str]]:
    """Images of a version by bundle list, as the simulator's seeded pods of that version run them."""
    deps = version.rancher_dependencies
    fleet, webhook = deps["fleet"].app_version, deps["rancher-webhook"].app_version
    rke2 = version.rke2_version.replace("+", "-")
    return {
        "harvester": [f"docker.io/rancher/harvester:{version.image_tag}",
                      f"docker.io/rancher/harvester-webhook:{version.image_tag}",
                      f"docker.io/rancher/harvester-upgrade:{version.image_tag}",
                      f"docker.io/rancher/harvester-load-balancer:{version.load_balancer_version}",
                      f"docker.io/longhornio/longhorn-manager:v{version.longhorn_version}",
                      f"docker.io/longhornio/longhorn-instance-manager:v{version.longhorn_version}"],
        "rancher": [f"docker.io/rancher/rancher:{version.rancher_version}",
                    f"docker.io/rancher/rancher-webhook:v{webhook}",
                    f"docker.io/rancher/fleet:v{fleet}", f"docker.io/rancher/fleet-agent:v{fleet}"],
        "rke2": [f"docker.io/rancher/hardened-kubernetes:{rke2}-build20250101"],
        "agent": [f"docker.io/rancher/system-agent-installer-rancher:{version.rancher_version}"],
    }


def _bundle_lists(version: HarvesterVersion) -> dict[str, tuple[str, str, str]]:
    """list name -> (metadata section, list path, archive path); paths relative to bundle/ with the leading "/"
    that add_image_list_to_metadata leaves (hence `bundle//rancherd/...` in the scripts' download lines)."""
    v, rke2 = version.installer_version, version.rke2_version.replace("+", "-")
    return {
        "agent": ("agent", f"/rancherd/images/rancherd-bootstrap-images-{v}.txt",
                  f"/rancherd/images/rancherd-bootstrap-images-{v}.tar.zst"),
        "rancher": ("common", f"/harvester/images-lists/rancher-images-{version.rancher_version}.txt",
                    f"/harvester/images/rancher-images-{version.rancher_version}.tar.zst"),
        "rke2": ("rke2", f"/harvester/images-lists/rke2-images.linux-amd64-{rke2}.txt",
                 f"/harvester/images/rke2-images.linux-amd64-{rke2}.tar.zst"),
        "harvester": ("common", f"/harvester/images-lists/harvester-images-{v}.txt",
                      f"/harvester/images/harvester-images-{v}.tar.zst"),
    }


def bundle_metadata_text(version: HarvesterVersion) -> str:
    """bundle/metadata.yaml: `images.{common,rke2,agent}` lists of {list, archive} (installer scripts/lib/image)."""
    images: dict[str, list[dict[str, str]]] = {"common": [], "rke2": [], "agent": []}
    for section, list_path, archive in _bundle_lists(version).values():
        images[section].append({"list": list_path, "archive": archive})
    return yaml.safe_dump({"images": images}, sort_keys=False, default_flow_style=False)


def _earlier_releases(version: HarvesterVersion) -> list[HarvesterVersion]:
    """Releases whose image lists the ISO archives: the simulated tags released before this build."""
    def date(v: HarvesterVersion) -> str:
        return v.release_date or "2025-04-03"          # the dev build's day (harvester/harvester#8001)
    return [v for v in VERSIONS.values() if not v.is_dev and v is not version and date(v) < date(version)]


def iso_files(version: HarvesterVersion) -> dict[str, bytes]:
    """Path (relative to the ISO root) -> content of every file in `version`'s ISO."""
    files: dict[str, bytes] = {
        RELEASE_FILE: version.release_file_text().encode(),
        "boot/grub2/harvester.cfg": f"set harvester_version={version.installer_version}\n".encode(),
        BUNDLE_METADATA: bundle_metadata_text(version).encode(),
    }
    images = _images_of(version)
    for name, (_, list_path, _) in _bundle_lists(version).items():
        files["bundle" + list_path] = "".join(f"{image}\n" for image in images[name]).encode()

    def all_images(v: HarvesterVersion) -> bytes:
        return "".join(f"{i}\n" for i in sorted({i for group in _images_of(v).values() for i in group})).encode()

    files["bundle/harvester/images-lists-archive/current/image_list_all.txt"] = all_images(version)
    for earlier in _earlier_releases(version):
        files[f"bundle/harvester/images-lists-archive/{earlier.name}/image_list_all.txt"] = all_images(earlier)
    return files


# ---- ISO9660 --------------------------------------------------------------------------------------

def build_iso(files: Mapping[str, bytes], volume: str = VOLUME_LABEL) -> bytes:
    """An ISO9660 image with Rock Ridge (the names Linux mounts show) and Joliet names for `files`."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, vol_ident=volume, rock_ridge="1.09", joliet=3)
    made: dict[str, str] = {"": "/"}             # rock ridge dir -> ISO9660 dir
    counter = 0

    def short(name: str, is_dir: bool) -> str:
        nonlocal counter
        counter += 1
        return f"D{counter:07d}" if is_dir else f"F{counter:07d}.;1"

    for path in sorted(files):
        parts = path.split("/")
        for depth in range(1, len(parts)):
            directory = "/".join(parts[:depth])
            if directory not in made:
                parent = made["/".join(parts[:depth - 1])]
                iso_dir = parent.rstrip("/") + "/" + short(parts[depth - 1], True)
                iso.add_directory(iso_dir, rr_name=parts[depth - 1], joliet_path="/" + directory)
                made[directory] = iso_dir
        parent = made["/".join(parts[:-1])]
        data = files[path]
        iso.add_fp(io.BytesIO(data), len(data), parent.rstrip("/") + "/" + short(parts[-1], False),
                   rr_name=parts[-1], joliet_path="/" + path)
    out = io.BytesIO()
    iso.write_fp(out)
    iso.close()
    return out.getvalue()


def read_iso(data: bytes) -> dict[str, bytes]:
    """Every regular file of an ISO by its Rock Ridge path (Joliet, then ISO9660 names, without RR)."""
    iso = pycdlib.PyCdlib()
    try:
        iso.open_fp(io.BytesIO(data))
    except pycdlib.pycdlibexception.PyCdlibException as exc:
        raise IsoError(f"not an ISO9660 image: {exc}") from None
    try:
        if iso.has_rock_ridge():
            key, root = "rr_path", "/"
        elif iso.has_joliet():
            key, root = "joliet_path", "/"
        else:
            key, root = "iso_path", "/"
        files: dict[str, bytes] = {}
        for directory, _, names in iso.walk(**{key: root}):
            for name in names:
                path = directory.rstrip("/") + "/" + name
                out = io.BytesIO()
                iso.get_file_from_iso_fp(out, **{key: path})
                clean = path.lstrip("/")
                if key == "iso_path":
                    clean = clean.split(";")[0].rstrip(".").lower()
                files[clean] = out.getvalue()
        return files
    finally:
        iso.close()


def sha512_line(data: bytes, name: str) -> str:
    """One line of `sha512sum` output: hex digest, two spaces, file name."""
    return f"{hashlib.sha512(data).hexdigest()}  {name}\n"


# ---- the release server ------------------------------------------------------------------------------

@dataclass(frozen=True)
class PublishedRelease:
    version: HarvesterVersion
    iso: Path
    checksum: str                   # sha512 hex of the ISO


class ReleaseServer:
    """Publishes each simulated version's ISO (public, Range-capable) on a listener of its own, as a lab's
    release mirror is a server of its own: an API server restarting (an injected refused-connections fault)
    does not take the mirror down. The simulator's API listener serves the same paths too."""

    def __init__(self, server: "ApiServer") -> None:
        self.server = server
        self._tmp = tempfile.TemporaryDirectory(prefix="harvester-simulator-releases-")   # removed with the server
        self.directory = Path(self._tmp.name)
        self._published: dict[str, PublishedRelease] = {}
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    @property
    def base_url(self) -> str:
        return self._url or self.server.url

    def install(self) -> None:
        self.server.add_product_route(RELEASES_PATH, self.handle, public=True)

    async def start(self, tls: "TlsMaterial") -> None:
        """The mirror's own listener on 127.0.0.1 (the simulator's certificate, so the same CA trusts it)."""
        from ..apiserver.tls import server_ssl_context

        app = web.Application()
        app.router.add_route("*", RELEASES_PATH + "{rest:.*}",
                             lambda request: self.handle(request, request.match_info["rest"]))
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=server_ssl_context(tls))
        await site.start()
        server = site._server  # noqa: SLF001 - aiohttp exposes no public accessor for the bound port
        assert server is not None and server.sockets
        self._url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def close(self) -> None:
        self._tmp.cleanup()

    def publish(self, version: HarvesterVersion) -> PublishedRelease:
        """Build (once) and store the version's ISO."""
        if version.name not in self._published:
            data = build_iso(iso_files(version))
            folder = self.directory / version.release_channel
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / version.iso_name
            path.write_bytes(data)
            self._published[version.name] = PublishedRelease(version, path, hashlib.sha512(data).hexdigest())
        return self._published[version.name]

    def iso_url(self, version: HarvesterVersion) -> str:
        return version.iso_url(self.base_url)

    def version_manifest(self, version: HarvesterVersion) -> dict[str, object]:
        """The Version a tagged release's version.yaml holds (with the ISO's real sha512)."""
        return version.version_manifest(self.base_url, iso_checksum=self.publish(version).checksum)

    async def handle(self, request: web.Request, rest: str) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return _not_found(405, "Method Not Allowed")
        channel, _, name = rest.partition("/")
        version = version_of_channel(channel)
        if version is None or "/" in name:
            return _not_found()
        release = self.publish(version)
        stem = version.iso_name[: -len(".iso")]
        if name == version.iso_name:
            return web.FileResponse(release.iso, headers={"Content-Type": "application/x-iso9660-image"})
        if name == f"{stem}.sha512":
            return web.Response(text=f"{release.checksum}  {version.iso_name}\n", content_type="text/plain")
        if name == "version.yaml" and not version.is_dev:   # the installer writes it for tags only
            body = yaml.safe_dump(self.version_manifest(version), sort_keys=False)
            return web.Response(text=body, content_type="application/x-yaml")
        return _not_found()


def _not_found(status: int = 404, reason: str = "Not Found") -> web.Response:
    return web.Response(status=status, text=f"{status} {reason}\n", content_type="text/plain")
