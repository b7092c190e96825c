"""`build_appliance(versions)`: the Harvester appliance, from registry packages only, cached and content-addressed
under .cache/appliance/ (git-ignored).

    kernel/<package>/            Debian's cloud kernel, unpacked; only vmlinuz, config and the needed modules
    initrd/initrd-<release>-<hash>.gz
                                 the busybox-static initramfs (installer boot and installed boot)
    base/<key>/rootfs            debootstrap layer (key: suite, mirror, packages)
    pylib/<key>/lib              the simulator's wheels (key: requirements.lock)
    image/<key>/rootfs.squashfs  base + pylib + infra/simulator + plumbing (key: all of those)
    iso/<key>/harvester-appliance-<version>.iso
                                 one per version (key: squashfs, kernel, initrd, release file)

A rerun with unchanged inputs only hashes files (seconds). A change under infra/simulator rebuilds the
squashfs and the ISOs, not the debootstrap.
"""
from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from . import initramfs as initramfs_module
from .initramfs import write_initramfs
from .iso import VOLUME_LABEL, write_iso
from .kernel import SQUASHFS_COMPRESSOR_CONFIG, fetch_kernel
from .kernel import KernelUnavailable
from .rootfs import (REPO_ROOT, RootfsUnavailable, base_key, build_base, build_image, build_pylib, debian_mirror,
                     digest, image_key, pylib_key, tree_digest)

CACHE_DIR = REPO_ROOT / ".cache" / "appliance"
SQUASHFS_COMPRESSOR = "zstd"
STATE_LABEL = "COS_STATE"
# What the appliance expects of the machine that boots it (see infra/appliance/README.md).
INSTALLER_CMDLINE_BASE = "console=ttyS0"
INSTALLED_CMDLINE = f"root=LABEL={STATE_LABEL} console=tty1 console=ttyS0 net.ifnames=1 panic=10"


class ApplianceUnavailable(RuntimeError):
    """Something the build needs is missing (the message says what to install) or a step failed."""


@dataclass(frozen=True)
class VersionIso:
    version: str
    iso: Path
    os_pretty_name: str
    release_file: str

    @property
    def size(self) -> int:
        return self.iso.stat().st_size


@dataclass(frozen=True)
class ApplianceArtifacts:
    kernel: Path                    # vmlinuz (the installer's -kernel; the ISO carries it too)
    initrd: Path                    # the one initramfs (the installer's -initrd; the ISO carries it too)
    squashfs: Path                  # the live system every ISO carries
    isos: dict[str, VersionIso]     # version -> its ISO
    volume_label: str               # the ISOs' volume label: root=live:CDLABEL=<this>
    kernel_release: str
    keys: dict[str, str] = field(default_factory=dict)     # layer -> content key
    built: tuple[str, ...] = ()     # the layers this call (re)built; empty when everything was cached
    seconds: float = 0.0

    def iso(self, version: str) -> Path:
        return self.isos[version].iso

    def installer_cmdline(self, config_url: str, extra: str = "") -> str:
        """A kernel command line that installs unattended from `config_url` (what the harness's
        installer_cmdline produces, reduced to what the appliance reads)."""
        parts = [f"root=live:CDLABEL={self.volume_label}", INSTALLER_CMDLINE_BASE,
                 "harvester.install.automatic=true", f"harvester.install.config_url={config_url}", extra]
        return " ".join(part for part in parts if part)

    def describe(self) -> dict[str, object]:
        return {"kernel": str(self.kernel), "initrd": str(self.initrd), "squashfs": str(self.squashfs),
                "volume_label": self.volume_label, "kernel_release": self.kernel_release, "keys": self.keys,
                "built": list(self.built), "seconds": round(self.seconds, 1),
                "isos": {v: {"iso": str(i.iso), "bytes": i.size, "os_pretty_name": i.os_pretty_name}
                         for v, i in self.isos.items()},
                "sizes": {"kernel": self.kernel.stat().st_size, "initrd": self.initrd.stat().st_size,
                          "squashfs": self.squashfs.stat().st_size}}


def _complete(layer: Path) -> bool:
    return (layer / ".complete").exists()


def _stderr_log(message: str) -> None:
    print(f"appliance: {message}", file=sys.stderr, flush=True)


def build_appliance(versions: Iterable[str], cache: Path = CACHE_DIR, mirror: str | None = None,
                    log: Callable[[str], None] = _stderr_log) -> ApplianceArtifacts:
    """Build (or reuse) the appliance's kernel, initrd, squashfs and one ISO per version.

    One build at a time per cache (an exclusive lock on cache/.lock): a second caller waits, then finds
    everything built."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build(versions, cache, mirror, log)


def _releases(versions: list[str]) -> dict[str, dict[str, str]]:
    """Each version's release file and OS name, from the simulator run as a process (infra.simulator.appliance
    .release): the builder packs the simulator, it does not import it."""
    done = subprocess.run([sys.executable, "-m", "infra.simulator.appliance.release", *versions], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise ApplianceUnavailable(done.stderr.strip() or f"infra.simulator.appliance.release exited {done.returncode}")
    found: dict[str, dict[str, str]] = json.loads(done.stdout)
    return found


def _build(versions: Iterable[str], cache: Path, mirror: str | None,
           log: Callable[[str], None]) -> ApplianceArtifacts:
    started = time.monotonic()
    wanted = list(dict.fromkeys(versions))
    if not wanted:
        raise ApplianceUnavailable("name at least one version (--version v1.5.1)")
    releases = _releases(wanted)
    problem = initramfs_module.check_busybox()
    if problem:
        raise ApplianceUnavailable(problem)
    cache.mkdir(parents=True, exist_ok=True)
    built: list[str] = []
    try:
        kernel_dir_before = set((cache / "kernel").glob("*")) if (cache / "kernel").exists() else set()
        kernel = fetch_kernel(cache / "kernel")
        if set((cache / "kernel").glob("*")) != kernel_dir_before:
            built.append("kernel")
        option = SQUASHFS_COMPRESSOR_CONFIG[SQUASHFS_COMPRESSOR]
        if not kernel.builtin(option):
            raise ApplianceUnavailable(f"{kernel.package} cannot read {SQUASHFS_COMPRESSOR} squashfs ({option})")

        initrd_key = digest("initrd", initramfs_module.init_script(), Path(initramfs_module.__file__).read_text(),
                            kernel.release, *[m.name for m in kernel.modules],
                            tree_digest((initramfs_module.BUSYBOX_STATIC, "busybox")))
        initrd = cache / "initrd" / f"initrd-{kernel.release}-{initrd_key}.gz"
        if not initrd.exists():
            initrd.parent.mkdir(parents=True, exist_ok=True)
            log(f"initrd {initrd.name}: busybox-static and {len(kernel.modules)} modules")
            write_initramfs(kernel, initrd)
            built.append("initrd")
            for old in initrd.parent.glob("initrd-*.gz"):
                if old != initrd:
                    old.unlink()

        resolved_mirror = debian_mirror(mirror)
        if not _complete(cache / "base" / base_key(resolved_mirror)):
            built.append("base")
        base, base_key_ = build_base(cache, resolved_mirror, log)
        if not _complete(cache / "pylib" / pylib_key()):
            built.append("pylib")
        pylib, pylib_key_ = build_pylib(cache, log)
        if not _complete(cache / "image" / image_key(base_key_, pylib_key_)):
            built.append("image")
        image = build_image(cache, base, base_key_, pylib, pylib_key_, SQUASHFS_COMPRESSOR, log)
    except (KernelUnavailable, RootfsUnavailable) as exc:
        raise ApplianceUnavailable(str(exc)) from None

    kernel_digest = tree_digest((kernel.vmlinuz, "vmlinuz"))
    isos: dict[str, VersionIso] = {}
    keep: set[str] = set()
    for name, release in releases.items():
        release_text = release["releaseFile"]
        key = digest("iso", image.key, kernel_digest, initrd.name, release_text, VOLUME_LABEL,
                     Path(__file__).with_name("iso.py").read_text())
        home = cache / "iso" / key
        iso = home / f"harvester-appliance-{name}.iso"
        keep.add(key)
        if not iso.exists():
            home.mkdir(parents=True, exist_ok=True)
            log(f"ISO {iso.name} ({key})")
            write_iso(iso, image.squashfs, kernel.vmlinuz, initrd, release_text)
            (home / "harvester-release.yaml").write_text(release_text)
            (home / "image.key").write_text(image.key)
            built.append(f"iso:{name}")
        isos[name] = VersionIso(name, iso, release["osPrettyName"], release_text)
    # ISOs of another squashfs are stale whatever their version: they go.
    for old in (cache / "iso").glob("*"):
        if old.name not in keep and (old / "image.key").exists() and (old / "image.key").read_text() != image.key:
            log(f"pruning {old}")
            shutil.rmtree(old, ignore_errors=True)

    artifacts = ApplianceArtifacts(kernel=kernel.vmlinuz, initrd=initrd, squashfs=image.squashfs, isos=isos,
                                   volume_label=VOLUME_LABEL, kernel_release=kernel.release,
                                   keys={"base": base_key_, "pylib": pylib_key_, "image": image.key,
                                         "initrd": initrd.name},
                                   built=tuple(built), seconds=time.monotonic() - started)
    (cache / "latest.json").write_text(json.dumps(artifacts.describe(), indent=1))
    return artifacts


__all__ = ["ApplianceArtifacts", "ApplianceUnavailable", "VersionIso", "build_appliance", "CACHE_DIR",
           "INSTALLED_CMDLINE", "STATE_LABEL"]
