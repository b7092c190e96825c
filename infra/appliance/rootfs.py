"""The appliance's root file system, in three cached layers:

1. base: `debootstrap --variant=minbase` of Debian bookworm with python3, OpenSSH, sudo, busybox, the disk
   tools and extlinux, trimmed (apt caches and lists, docs, man pages, locales), its package-made SSH host
   keys removed (every node gets its own);
2. pylib: the simulator's Python dependencies as CPython 3.11 manylinux x86_64 wheels from PyPI, pinned to
   requirements.lock, precompiled for /opt/harvester-appliance/lib;
3. the image: base + pylib + this repository's `infra/__init__.py` and `infra/simulator/**` + the appliance's
   OS plumbing (infra/simulator/appliance/rootfs/: busybox init, rc scripts, sshd and sudo config), the
   rancher user, precompiled, squashed into `rootfs.squashfs`.

A change to infra/simulator rebuilds only layer 3 (~1 minute); the debootstrap (~1 minute) and the wheels
(seconds) are keyed by what goes into them.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parents[2]
SIMULATOR_DIR = REPO_ROOT / "infra" / "simulator"
PLUMBING_DIR = SIMULATOR_DIR / "appliance" / "rootfs"
LOCK_FILE = REPO_ROOT / "requirements.lock"
KUBE_PROTO_DIR = REPO_ROOT / ".cache" / "kube-proto"       # descriptors the simulator reads, when present
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "openssh-server", "sudo", "busybox", "e2fsprogs", "fdisk", "extlinux", "syslinux-common",
                 "iproute2", "ca-certificates")
LIB_DIR = "opt/harvester-appliance/lib"
# The simulator's imports beyond the standard library; pip resolves their dependencies, requirements.lock pins all.
PYTHON_ROOTS = ("aiohttp", "cryptography", "PyYAML", "paramiko", "pycdlib", "protobuf")
PYTHON_TARGET = ("--python-version", "3.11", "--implementation", "cp", "--abi", "cp311", "--abi", "abi3",
                 "--abi", "none", "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64",
                 "--platform", "manylinux_2_34_x86_64", "--platform", "manylinux_2_36_x86_64", "--platform", "any")
TRIM = ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/info",
        "usr/share/locale", "usr/share/lintian", "usr/share/linda", "var/cache/debconf/templates.dat-old",
        "var/log/apt", "var/log/dpkg.log", "var/log/bootstrap.log", "var/log/alternatives.log")
# Plumbing files whose mode is not "executable if it starts with #!, else 0644".
PLUMBING_MODES = {"etc/sudoers.d/admin": 0o440}
BASE_RECIPE_VERSION = "1"       # bump when the base layer's commands change
IMAGE_RECIPE_VERSION = "1"      # bump when the image layer's commands change (plumbing files are hashed anyway)
Log = Callable[[str], None]


class RootfsUnavailable(RuntimeError):
    """A tool the build needs is missing or failed; the message says what to do."""


def _run(command: list[str], log: Log, timeout: float = 1800, **kwargs: object) -> str:
    log("$ " + " ".join(command))
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]
    except FileNotFoundError:
        raise RootfsUnavailable(f"{command[0]} is not installed (see ci/bootstrap-system.sh)") from None
    if done.returncode != 0:
        raise RootfsUnavailable(f"{' '.join(command[:3])} ... exited {done.returncode}: "
                                f"{(done.stderr or done.stdout).strip()[-800:]}")
    return str(done.stdout)


def digest(*parts: str | bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        hasher.update(len(data).to_bytes(8, "big"))
        hasher.update(data)
    return hasher.hexdigest()[:16]


def tree_digest(*roots: tuple[Path, str]) -> str:
    """A digest of the files under each (directory, name) pair: paths, modes and contents, no __pycache__."""
    hasher = hashlib.sha256()
    for root, name in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*")
                                                     if p.is_file() and "__pycache__" not in p.parts
                                                     and p.suffix != ".pyc")
        for path in files:
            relative = f"{name}/{path.relative_to(root)}" if root.is_dir() else name
            hasher.update(relative.encode() + b"\0" + oct(path.stat().st_mode & 0o777).encode() + b"\0")
            hasher.update(hashlib.sha256(path.read_bytes()).digest())
    return hasher.hexdigest()[:16]


def debian_mirror(override: str | None = None) -> str:
    """The Debian mirror: `override`, $HARVESTER_APPLIANCE_MIRROR, this machine's apt sources, or deb.debian.org."""
    if override or os.environ.get("HARVESTER_APPLIANCE_MIRROR"):
        return (override or os.environ["HARVESTER_APPLIANCE_MIRROR"]).rstrip("/")
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for stanza in sources.read_text().split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1).rstrip("/")
    sources_list = Path("/etc/apt/sources.list")
    if sources_list.exists():
        for line in sources_list.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                return parts[1].rstrip("/")
    return DEFAULT_MIRROR


# --------------------------------------------------------------------------------------------
# Layer 1: the Debian base
# --------------------------------------------------------------------------------------------

def base_key(mirror: str) -> str:
    return digest("base", BASE_RECIPE_VERSION, SUITE, mirror, ",".join(BASE_PACKAGES))


def build_base(cache: Path, mirror: str, log: Log) -> tuple[Path, str]:
    """The trimmed debootstrap tree, built once per key under cache/base/<key>/rootfs."""
    key = base_key(mirror)
    home = cache / "base" / key
    rootfs = home / "rootfs"
    if (home / ".complete").exists():
        return rootfs, key
    if os.geteuid() != 0:
        raise RootfsUnavailable("debootstrap needs root (it creates device nodes and chroots); run as root")
    if shutil.which("debootstrap") is None:
        raise RootfsUnavailable("debootstrap is missing; run: apt-get install -y debootstrap")
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    log(f"base layer {key}: debootstrap {SUITE} from {mirror} (about a minute)")
    _run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, str(rootfs), mirror],
         log, timeout=3600)
    for relative in TRIM:
        path = rootfs / relative
        if path.is_dir() and not path.is_symlink():
            for child in path.iterdir():
                if child.name in ("locale.alias",):
                    continue
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        elif path.exists():
            path.unlink()
    for key_file in (rootfs / "etc" / "ssh").glob("ssh_host_*"):
        key_file.unlink()
    (rootfs / "etc" / "machine-id").write_text("")
    for missing in ("usr/lib/EXTLINUX/mbr.bin", "usr/bin/extlinux", "usr/bin/python3", "usr/sbin/sshd",
                    "usr/sbin/sfdisk", "usr/sbin/mkfs.ext4", "bin/busybox"):
        if not (rootfs / missing).exists():
            raise RootfsUnavailable(f"the base system has no /{missing}; the package list is wrong")
    (home / "packages.txt").write_text(_run(["chroot", str(rootfs), "dpkg-query", "-W"], log))
    (home / ".complete").write_text(json.dumps({"mirror": mirror, "suite": SUITE, "packages": BASE_PACKAGES}))
    _prune(cache / "base", keep=key, log=log)
    return rootfs, key


# --------------------------------------------------------------------------------------------
# Layer 2: the Python dependencies
# --------------------------------------------------------------------------------------------

def lock_pins(lock: Path = LOCK_FILE) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


def pylib_key(lock: Path = LOCK_FILE) -> str:
    return digest("pylib", ",".join(PYTHON_ROOTS), ",".join(PYTHON_TARGET), lock.read_text())


def build_pylib(cache: Path, log: Log, lock: Path = LOCK_FILE) -> tuple[Path, str]:
    """The wheels installed for CPython 3.11 at cache/pylib/<key>/lib, each at its requirements.lock version."""
    key = pylib_key(lock)
    home = cache / "pylib" / key
    lib = home / "lib"
    if (home / ".complete").exists():
        return lib, key
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    log(f"pylib layer {key}: {', '.join(PYTHON_ROOTS)} and their dependencies as cp311 manylinux wheels")
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
          "--target", str(lib), "--only-binary=:all:", *PYTHON_TARGET, "-c", str(lock), *PYTHON_ROOTS], log,
         timeout=1800)
    pins = lock_pins(lock)
    installed = {}
    for info in lib.glob("*.dist-info"):
        name, _, version = info.name[:-len(".dist-info")].rpartition("-")
        installed[re.sub(r"[-_.]+", "-", name).lower()] = version
    unpinned = {name: version for name, version in installed.items() if pins.get(name) != version}
    if unpinned:
        raise RootfsUnavailable(f"wheels not at their requirements.lock versions: {unpinned}")
    for extra in ("bin", "share"):
        shutil.rmtree(lib / extra, ignore_errors=True)
    _compile(lib, "/" + LIB_DIR, log)
    (home / "installed.json").write_text(json.dumps(installed, indent=1, sort_keys=True))
    (home / ".complete").touch()
    _prune(cache / "pylib", keep=key, log=log)
    return lib, key


def _compile(tree: Path, guest_path: str, log: Log) -> None:
    """Byte-compile with this (3.11) interpreter, recording the paths the guest will see in tracebacks."""
    if sys.version_info[:2] != (3, 11):
        raise RootfsUnavailable(f"the appliance runs CPython 3.11; precompiling needs 3.11, not {sys.version}")
    _run([sys.executable, "-m", "compileall", "-q", "-j", "2", "-s", str(tree), "-p", guest_path, str(tree)], log,
         timeout=1800)


# --------------------------------------------------------------------------------------------
# Layer 3: the image
# --------------------------------------------------------------------------------------------

def simulator_key() -> str:
    sources = [(REPO_ROOT / "infra" / "__init__.py", "infra/__init__.py"), (SIMULATOR_DIR, "infra/simulator")]
    if (KUBE_PROTO_DIR / "descriptors.binpb").exists():
        sources.append((KUBE_PROTO_DIR, ".cache/kube-proto"))
    return tree_digest(*sources)


def image_key(base: str, pylib: str) -> str:
    return digest("image", IMAGE_RECIPE_VERSION, base, pylib, simulator_key(),
                  (Path(__file__).read_bytes()))


def _in_root(root: Path, path: str) -> Path:
    """`path` of the image under `root`, following the merged-/usr symlinks (/sbin -> usr/sbin) inside it."""
    current = root
    for part in Path(path.lstrip("/")).parts:
        candidate = current / part
        if candidate.is_symlink():
            target = os.readlink(candidate)
            candidate = (root / target.lstrip("/")) if target.startswith("/") else (current / target)
        current = candidate
    return current


def _ignore_caches(directory: str, names: list[str]) -> set[str]:
    return {name for name in names if name == "__pycache__" or name.endswith(".pyc")}


def populate_image(staging: Path, base: Path, pylib: Path, log: Log) -> None:
    log(f"image: copying the base layer into {staging}")
    _run(["cp", "-a", "--reflink=auto", f"{base}/.", f"{staging}/"], log, timeout=1800)
    lib = staging / LIB_DIR
    lib.parent.mkdir(parents=True, exist_ok=True)
    _run(["cp", "-a", "--reflink=auto", str(pylib), str(lib)], log, timeout=1800)
    (lib / "infra").mkdir()
    shutil.copy2(REPO_ROOT / "infra" / "__init__.py", lib / "infra" / "__init__.py")
    shutil.copytree(SIMULATOR_DIR, lib / "infra" / "simulator", ignore=_ignore_caches)
    if (KUBE_PROTO_DIR / "descriptors.binpb").exists():
        shutil.copytree(KUBE_PROTO_DIR, lib / ".cache" / "kube-proto")
    _compile(lib / "infra", f"/{LIB_DIR}/infra", log)

    for source in sorted(PLUMBING_DIR.rglob("*")):
        if not source.is_file() or "__pycache__" in source.parts:
            continue
        relative = source.relative_to(PLUMBING_DIR).as_posix()
        target = _in_root(staging, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            target.unlink()
        data = source.read_bytes()
        target.write_bytes(data)
        target.chmod(PLUMBING_MODES.get(relative, 0o755 if data.startswith(b"#!") else 0o644))
    for name in ("init", "reboot", "poweroff", "halt"):
        link = _in_root(staging, f"/sbin/{name}")
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to("/bin/busybox")
    (staging / "etc" / "hostname").write_text("harvester-installer\n")
    os_release = staging / "etc" / "os-release"
    if os_release.is_symlink() or os_release.exists():
        os_release.unlink()
    os_release.write_text('NAME="Harvester"\nPRETTY_NAME="Harvester appliance installer (live)"\n'
                          "ID=harvester-appliance\nID_LIKE=debian\n")
    group = (staging / "etc" / "group").read_text()
    if not re.search(r"^admin:", group, re.M):
        _run(["chroot", str(staging), "groupadd", "--system", "admin"], log)
    passwd = (staging / "etc" / "passwd").read_text()
    if not re.search(r"^rancher:", passwd, re.M):
        _run(["chroot", str(staging), "useradd", "--create-home", "--shell", "/bin/bash", "--user-group",
              "--groups", "admin", "--password", "*", "rancher"], log)
    for directory in ("run", "tmp", "var/lib/harvester-appliance/state", "etc/rancher/rke2",
                      "etc/harvester-appliance", "oem"):
        (staging / directory).mkdir(parents=True, exist_ok=True)
    (staging / "oem").chmod(0o700)
    for stale in ("etc/resolv.conf",):
        path = staging / stale
        if path.exists() or path.is_symlink():
            path.unlink()
    (staging / "etc" / "resolv.conf").write_text("")


@dataclass(frozen=True)
class Image:
    squashfs: Path
    key: str
    manifest: dict[str, object]


def build_image(cache: Path, base: Path, base_key_: str, pylib: Path, pylib_key_: str, compressor: str,
                log: Log) -> Image:
    """rootfs.squashfs at cache/image/<key>/ (the staging tree is removed once squashed)."""
    key = image_key(base_key_, pylib_key_)
    home = cache / "image" / key
    squashfs = home / "rootfs.squashfs"
    if (home / ".complete").exists():
        return Image(squashfs, key, json.loads((home / ".complete").read_text()))
    if shutil.which("mksquashfs") is None:
        raise RootfsUnavailable("mksquashfs is missing; run: apt-get install -y squashfs-tools")
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    staging = home / "staging"
    staging.mkdir()
    try:
        populate_image(staging, base, pylib, log)
        manifest: dict[str, object] = {"key": key, "base": base_key_, "pylib": pylib_key_,
                                       "simulator": simulator_key(), "compressor": compressor}
        (staging / "etc" / "harvester-appliance" / "image.json").write_text(json.dumps(manifest, indent=1))
        log(f"image layer {key}: mksquashfs ({compressor})")
        options = ["-Xcompression-level", "15"] if compressor == "zstd" else []
        _run(["nice", "-n", "10", "mksquashfs", str(staging), str(squashfs), "-noappend", "-comp", compressor,
              *options, "-processors", "2", "-no-progress", "-quiet"], log, timeout=3600)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    manifest["squashfs_bytes"] = squashfs.stat().st_size
    (home / ".complete").write_text(json.dumps(manifest, indent=1))
    _prune(cache / "image", keep=key, log=log)
    return Image(squashfs, key, manifest)


def _prune(directory: Path, keep: str, log: Log) -> None:
    """Older builds of a layer go (one generation is kept per layer: the cache stays a few hundred MB)."""
    for old in directory.iterdir():
        if old.name != keep and old.is_dir():
            log(f"pruning {old}")
            shutil.rmtree(old, ignore_errors=True)
