"""A tiny Linux guest for the real-VM test, built from Debian packages: the cloud kernel, static busybox
and dropbear in an initramfs that configures slirp networking and serves SSH on port 22.

Artefacts are cached under `.cache/tiny-guest/` in the repository (git-ignored), keyed by the kernel
package, so a rerun only rebuilds the initramfs when its inputs are missing (~3 s).
"""
from __future__ import annotations

import gzip
import hashlib
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
# The drivers for a virtio NIC and disk (what they depend on is loaded first, found from the modules).
VIRTIO_MODULES = ("virtio_pci", "virtio_net", "virtio_blk")
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
for module in {modules}; do insmod /lib/modules/$module 2>/dev/null; done
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


def _fetch_kernel(cache: Path) -> tuple[Path, tuple[Path, ...]]:
    """(vmlinuz, the .ko files in load order) of Debian's cloud kernel, as the appliance fetches it."""
    from infra.appliance.kernel import KernelUnavailable, fetch_kernel

    try:
        kernel = fetch_kernel(cache / "kernel", VIRTIO_MODULES)
    except KernelUnavailable as exc:
        raise TinyGuestUnavailable(str(exc)) from None
    return kernel.vmlinuz, kernel.modules


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


def _write_initramfs(staging: Path, modules: tuple[Path, ...], host_key: Path, host_key_line: str,
                     authorized: str, target: Path) -> None:
    for directory in ("bin", "sbin", "usr/sbin", "etc/dropbear", "root/.ssh", "proc", "sys", "dev", "lib/modules",
                      "lib64", "lib/x86_64-linux-gnu", "tmp", "var/log", "run"):
        (staging / directory).mkdir(parents=True, exist_ok=True)
    shutil.copy2(GUEST_TOOLS["busybox"], staging / "bin" / "busybox")
    shutil.copy2(GUEST_TOOLS["dropbear"], staging / "usr" / "sbin" / "dropbear")
    for library in _libraries_of(GUEST_TOOLS["dropbear"]):
        destination = staging / library.relative_to("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(library.resolve(), destination)
    for module in modules:               # none for a driver built into the kernel
        shutil.copyfile(module, staging / "lib" / "modules" / module.name)
    shutil.copy2(host_key, staging / "etc" / "dropbear" / "dropbear_ed25519_host_key")
    (staging / "root" / ".ssh" / "authorized_keys").write_text(authorized + "\n")
    (staging / "root" / ".ssh").chmod(0o700)
    (staging / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (staging / "etc" / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (staging / "etc" / "group").write_text("root:x:0:\n")
    (staging / "etc" / "shells").write_text("/bin/sh\n")
    init = staging / "init"
    init.write_text(_init_script(host_key_line, modules))
    init.chmod(0o755)
    names = sorted(str(p.relative_to(staging)) for p in staging.rglob("*"))
    archive = subprocess.run([str(GUEST_TOOLS["cpio"]), "-o", "-H", "newc", "--quiet"], cwd=staging, check=True,
                             input=("\n".join(names) + "\n").encode(), capture_output=True, timeout=60).stdout
    target.write_bytes(gzip.compress(archive, compresslevel=1))


def _init_script(host_key_line: str, modules: tuple[Path, ...]) -> str:
    return INIT_SCRIPT.format(modules=" ".join(m.name for m in modules), ready=READY_LINE, host_key=host_key_line)


def build_tiny_guest(cache: Path = CACHE_DIR) -> TinyGuest:
    check_tools()
    cache.mkdir(parents=True, exist_ok=True)
    vmlinuz, modules = _fetch_kernel(cache)
    client_key, authorized = _client_key(cache)
    host_key, host_key_line = _host_key(cache)
    script_hash = hashlib.sha256(_init_script(host_key_line, modules).encode()).hexdigest()[:8]   # new /init, new file
    initrd = cache / f"initrd-{vmlinuz.name.removeprefix('vmlinuz-')}-{script_hash}.gz"
    if not initrd.exists():
        with tempfile.TemporaryDirectory(prefix="tiny-guest-") as staging:
            partial = initrd.with_suffix(".partial")
            _write_initramfs(Path(staging), modules, host_key, host_key_line, authorized, partial)
            os.replace(partial, initrd)
    return TinyGuest(kernel=vmlinuz, initrd=initrd, client_key=client_key, host_key_line=host_key_line)
