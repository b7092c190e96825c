"""A tiny Linux guest for the real-VM test, built from Debian packages: the cloud kernel, static busybox
and dropbear in an initramfs that configures slirp networking and serves SSH on port 22.

Artefacts are cached under `.cache/tiny-guest/` in the repository (git-ignored), keyed by the kernel
package, so a rerun only rebuilds the initramfs when its inputs are missing (~3 s).
"""
from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / ".cache" / "tiny-guest"
KERNEL_META_PACKAGE = "linux-image-cloud-amd64"
# The order the modules must load in for a virtio NIC and disk (dependencies first).
VIRTIO_MODULES = ("virtio_ring", "virtio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci",
                  "failover", "net_failover", "virtio_net", "virtio_blk")
GUEST_TOOLS = {"busybox": Path("/bin/busybox"), "dropbear": Path("/usr/sbin/dropbear"),
               "dropbearkey": Path("/usr/bin/dropbearkey"), "cpio": Path("/usr/bin/cpio")}
KERNEL_CMDLINE = "console=ttyS0 panic=-1"
READY_LINE = "tiny-guest: sshd started"


class TinyGuestUnavailable(RuntimeError):
    """A tool or package the tiny guest needs is missing; the message names the command that fixes it."""


@dataclass(frozen=True)
class TinyGuest:
    kernel: Path
    initrd: Path
    client_key: Path          # OpenSSH private key whose public half is root's authorized key
    host_key_line: str        # "ssh-ed25519 AAAA..." of the guest's host key, for pinning
    cmdline: str = KERNEL_CMDLINE


INIT_SCRIPT = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /tmp /root
mount -t devpts devpts /dev/pts
for module in {modules}; do insmod /lib/modules/$module.ko 2>/dev/null; done
hostname tiny-guest
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
/usr/sbin/dropbear -s -p 22 -r /etc/dropbear/dropbear_ed25519_host_key
# the host key on the console, framed as cloud-init frames it, so provisioning can pin it
echo "-----BEGIN SSH HOST KEY KEYS-----" > /dev/console
echo "{host_key} root@tiny-guest" > /dev/console
echo "-----END SSH HOST KEY KEYS-----" > /dev/console
echo "{ready}" > /dev/console
# init must never exit (the kernel would panic): idle for ever
while true; do sleep 3600; done
"""


def _run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=300, **kwargs)  # type: ignore[call-overload]


def check_tools() -> None:
    missing = [name for name, path in GUEST_TOOLS.items() if not path.exists()]
    if missing or not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise TinyGuestUnavailable(
            f"the tiny guest needs busybox-static, dropbear-bin and cpio (missing: {', '.join(missing) or 'apt'}); "
            "run: sudo apt-get install -y busybox-static dropbear-bin cpio")


def kernel_package() -> str:
    """The exact kernel package Debian's cloud meta-package points at (e.g. linux-image-6.1.0-56-cloud-amd64)."""
    output = _run(["apt-cache", "depends", KERNEL_META_PACKAGE]).stdout
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("Depends:") and "linux-image-" in line:
            return line.split(":", 1)[1].strip()
    raise TinyGuestUnavailable(f"apt-cache knows no {KERNEL_META_PACKAGE}; run: sudo apt-get update")


def _fetch_kernel(cache: Path) -> tuple[Path, Path]:
    """(vmlinuz, modules dir) of the cloud kernel, downloaded once with `apt-get download`."""
    package = kernel_package()
    root = cache / package
    if not (root / ".extracted").exists():
        downloads = cache / "debs"
        downloads.mkdir(parents=True, exist_ok=True)
        if not list(downloads.glob(f"{package}_*.deb")):
            try:
                _run(["apt-get", "download", package], cwd=downloads)
            except subprocess.CalledProcessError as exc:
                raise TinyGuestUnavailable(f"apt-get download {package} failed: {exc.stderr.strip()[-300:]}") from None
        deb = max(downloads.glob(f"{package}_*.deb"))
        shutil.rmtree(root, ignore_errors=True)
        _run(["dpkg-deb", "-x", str(deb), str(root)])
        _keep_only_what_boots(root)
        (root / ".extracted").touch()
        deb.unlink()
    vmlinuz = next((root / "boot").glob("vmlinuz-*"))
    modules = next((root / "lib" / "modules").iterdir()) / "kernel"
    return vmlinuz, modules


def _keep_only_what_boots(root: Path) -> None:
    """Of the ~110 MB package keep the kernel image and the few modules the initramfs loads."""
    wanted = {f"{name}{suffix}" for name in VIRTIO_MODULES for suffix in (".ko", ".ko.xz", ".ko.zst")}
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file() and not (path.name in wanted or path.name.startswith("vmlinuz-")):
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _module_file(modules: Path, name: str) -> Path | None:
    for suffix in (".ko", ".ko.xz", ".ko.zst"):
        found = next(modules.rglob(name + suffix), None)
        if found is not None:
            return found
    return None


def _copy_module(source: Path, target: Path) -> None:
    if source.name.endswith(".ko.xz"):
        target.write_bytes(lzma.decompress(source.read_bytes()))
    elif source.name.endswith(".ko.zst"):
        target.write_bytes(subprocess.run(["zstd", "-dc", str(source)], check=True, capture_output=True,
                                          timeout=60).stdout)
    else:
        shutil.copyfile(source, target)


def _libraries_of(binary: Path) -> list[Path]:
    found: list[Path] = []
    for line in _run(["ldd", str(binary)]).stdout.splitlines():
        parts = line.split()
        for part in parts:
            if part.startswith("/"):
                found.append(Path(part))
                break
    return found


def _client_key(cache: Path) -> tuple[Path, str]:
    key_path = cache / "client_ed25519"
    if not key_path.exists():
        key = Ed25519PrivateKey.generate()
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                               serialization.NoEncryption()))
        key_path.chmod(0o600)
    key = serialization.load_ssh_private_key(key_path.read_bytes(), password=None)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return key_path, public.decode()


def _host_key(cache: Path) -> tuple[Path, str]:
    key_path = cache / "dropbear_ed25519_host_key"
    if not key_path.exists():
        _run([str(GUEST_TOOLS["dropbearkey"]), "-t", "ed25519", "-f", str(key_path)])
    public = _run([str(GUEST_TOOLS["dropbearkey"]), "-y", "-f", str(key_path)]).stdout
    line = next(text for text in public.splitlines() if text.startswith("ssh-ed25519 "))
    return key_path, " ".join(line.split()[:2])


def _write_initramfs(staging: Path, modules: Path, host_key: Path, host_key_line: str, authorized: str,
                     target: Path) -> None:
    for directory in ("bin", "sbin", "usr/sbin", "etc/dropbear", "root/.ssh", "proc", "sys", "dev", "lib/modules",
                      "lib64", "lib/x86_64-linux-gnu", "tmp", "var/log", "run"):
        (staging / directory).mkdir(parents=True, exist_ok=True)
    shutil.copy2(GUEST_TOOLS["busybox"], staging / "bin" / "busybox")
    shutil.copy2(GUEST_TOOLS["dropbear"], staging / "usr" / "sbin" / "dropbear")
    for library in _libraries_of(GUEST_TOOLS["dropbear"]):
        destination = staging / library.relative_to("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(library.resolve(), destination)
    for name in VIRTIO_MODULES:
        source = _module_file(modules, name)
        if source is not None:          # built into some kernels: nothing to load then
            _copy_module(source, staging / "lib" / "modules" / f"{name}.ko")
    shutil.copy2(host_key, staging / "etc" / "dropbear" / "dropbear_ed25519_host_key")
    (staging / "root" / ".ssh" / "authorized_keys").write_text(authorized + "\n")
    (staging / "root" / ".ssh").chmod(0o700)
    (staging / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (staging / "etc" / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (staging / "etc" / "group").write_text("root:x:0:\n")
    (staging / "etc" / "shells").write_text("/bin/sh\n")
    init = staging / "init"
    init.write_text(_init_script(host_key_line))
    init.chmod(0o755)
    names = sorted(str(p.relative_to(staging)) for p in staging.rglob("*"))
    archive = subprocess.run([str(GUEST_TOOLS["cpio"]), "-o", "-H", "newc", "--quiet"], cwd=staging, check=True,
                             input=("\n".join(names) + "\n").encode(), capture_output=True, timeout=60).stdout
    target.write_bytes(gzip.compress(archive, compresslevel=1))


def _init_script(host_key_line: str) -> str:
    return INIT_SCRIPT.format(modules=" ".join(VIRTIO_MODULES), ready=READY_LINE, host_key=host_key_line)


def build_tiny_guest(cache: Path = CACHE_DIR) -> TinyGuest:
    check_tools()
    cache.mkdir(parents=True, exist_ok=True)
    vmlinuz, modules = _fetch_kernel(cache)
    client_key, authorized = _client_key(cache)
    host_key, host_key_line = _host_key(cache)
    script_hash = hashlib.sha256(_init_script(host_key_line).encode()).hexdigest()[:8]   # a new /init, a new file
    initrd = cache / f"initrd-{vmlinuz.name.removeprefix('vmlinuz-')}-{script_hash}.gz"
    if not initrd.exists():
        with tempfile.TemporaryDirectory(prefix="tiny-guest-") as staging:
            partial = initrd.with_suffix(".partial")
            _write_initramfs(Path(staging), modules, host_key, host_key_line, authorized, partial)
            os.replace(partial, initrd)
    return TinyGuest(kernel=vmlinuz, initrd=initrd, client_key=client_key, host_key_line=host_key_line)
