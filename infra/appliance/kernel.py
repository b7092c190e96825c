"""The appliance's kernel: Debian's cloud kernel (`linux-image-cloud-amd64`'s linux-image-6.1.0-*-cloud-amd64),
downloaded once with `apt-get download`, of which only the image and the modules the initramfs loads are kept.

Which modules those are is read from the package itself: a wanted driver that the kernel's config builds in
(`=y` in /boot/config-*) needs no file, a module's dependencies come from its `.modinfo` section (`depends=`),
so the load order is worked out here rather than written down (no depmod or modinfo on the build host needed).
"""
from __future__ import annotations

import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

KERNEL_META_PACKAGE = "linux-image-cloud-amd64"

# What the appliance's initramfs needs, by module name. Dependencies (scsi_mod, cdrom, libata, virtio_ring,
# ...) are found from .modinfo; those the cloud kernel builds in (ext4, jbd2, mbcache, crc16, crc32c, ...)
# are skipped. The order matters only where nothing says so: the PCI transport before the devices on it.
WANTED_MODULES = (
    "virtio_pci",             # the virtio PCI transport (virtio, virtio_ring, virtio_pci_*_dev come with it)
    "virtio_blk",             # the install disk: vda
    "virtio_net",             # the NIC (failover, net_failover come with it)
    "virtio_rng",             # libvirt's <rng model='virtio'>: entropy for sshd and Python at boot
    "ata_piix",               # libvirt's IDE cdrom (hdc) on the i440fx PIIX controller (libata, scsi_mod)
    "ata_generic",
    "sr_mod",                 # SCSI cdrom: /dev/sr0 (cdrom, scsi_mod)
    "isofs",                  # the ISO 9660 installer medium
    "loop",                   # rootfs.squashfs on the ISO is mounted through a loop device
    "squashfs",
    "overlay",                # the live system: squashfs below, tmpfs above
    "button",                 # ACPI power button: libvirt `shutdown` -> acpid -> poweroff
    "evdev",                  # /dev/input/event*, where busybox acpid reads the button
)
# Built in if the config says so; named here so the report says what was looked for.
NEEDED_BUILTIN = ("CONFIG_EXT4_FS", "CONFIG_JBD2", "CONFIG_FS_MBCACHE", "CONFIG_CRC16", "CONFIG_CRYPTO_CRC32C",
                  "CONFIG_DEVTMPFS", "CONFIG_TMPFS", "CONFIG_BLK_DEV_INITRD", "CONFIG_RD_GZIP",
                  "CONFIG_SERIAL_8250_CONSOLE", "CONFIG_MSDOS_PARTITION", "CONFIG_UNIX", "CONFIG_PACKET")
MODULE_CONFIG = {"virtio_pci": "CONFIG_VIRTIO_PCI", "virtio_blk": "CONFIG_VIRTIO_BLK",
                 "virtio_net": "CONFIG_VIRTIO_NET", "virtio_rng": "CONFIG_HW_RANDOM_VIRTIO",
                 "ata_piix": "CONFIG_ATA_PIIX", "ata_generic": "CONFIG_ATA_GENERIC", "sr_mod": "CONFIG_BLK_DEV_SR",
                 "isofs": "CONFIG_ISO9660_FS", "loop": "CONFIG_BLK_DEV_LOOP", "squashfs": "CONFIG_SQUASHFS",
                 "overlay": "CONFIG_OVERLAY_FS", "button": "CONFIG_ACPI_BUTTON", "evdev": "CONFIG_INPUT_EVDEV"}
# The squashfs compressor the build uses must be one the kernel reads.
SQUASHFS_COMPRESSOR_CONFIG = {"zstd": "CONFIG_SQUASHFS_ZSTD", "xz": "CONFIG_SQUASHFS_XZ",
                              "gzip": "CONFIG_SQUASHFS_ZLIB", "lz4": "CONFIG_SQUASHFS_LZ4"}


class KernelUnavailable(RuntimeError):
    """apt cannot give the kernel package; the message names the command that fixes it."""


@dataclass(frozen=True)
class Kernel:
    package: str                       # linux-image-6.1.0-57-cloud-amd64
    release: str                       # 6.1.0-57-cloud-amd64
    vmlinuz: Path
    config: dict[str, str]             # CONFIG_* -> y / m / value, from /boot/config-<release>
    modules: tuple[Path, ...]          # the .ko files to load, in load order (dependencies first)

    def builtin(self, option: str) -> bool:
        return self.config.get(option) == "y"


def _run(command: list[str], cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def kernel_package() -> str:
    """The exact kernel package Debian's cloud meta-package points at (e.g. linux-image-6.1.0-57-cloud-amd64)."""
    try:
        output = _run(["apt-cache", "depends", KERNEL_META_PACKAGE]).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise KernelUnavailable(f"apt-cache depends {KERNEL_META_PACKAGE} failed ({exc}); run: apt-get update") from None
    for line in output.splitlines():
        line = line.strip()
        if line.startswith("Depends:") and "linux-image-" in line:
            return line.split(":", 1)[1].strip()
    raise KernelUnavailable(f"apt-cache knows no {KERNEL_META_PACKAGE}; run: apt-get update")


def read_config(path: Path) -> dict[str, str]:
    config: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            key, value = line.split("=", 1)
            config[key] = value
    return config


def modinfo(module: Path) -> dict[str, list[str]]:
    """The `.modinfo` section of an (uncompressed) ELF64 kernel module: key -> values."""
    data = module.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise ValueError(f"{module} is not an ELF64 module")
    endian = "<" if data[5] == 1 else ">"
    shoff, = struct.unpack_from(endian + "Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from(endian + "HHH", data, 0x3A)

    def section(index: int) -> tuple[int, int, int]:
        name, _type, _flags, _addr, offset, size = struct.unpack_from(endian + "IIQQQQ", data, shoff + index * shentsize)
        return name, offset, size

    _, strtab_offset, _ = section(shstrndx)
    info: dict[str, list[str]] = {}
    for index in range(shnum):
        name_offset, offset, size = section(index)
        end = data.index(b"\0", strtab_offset + name_offset)
        if data[strtab_offset + name_offset:end] != b".modinfo":
            continue
        for entry in data[offset:offset + size].split(b"\0"):
            if b"=" in entry:
                key, value = entry.decode("utf-8", "replace").split("=", 1)
                info.setdefault(key, []).append(value)
    return info


def module_dependencies(module: Path) -> list[str]:
    depends = modinfo(module).get("depends", [""])[0]
    return [name for name in depends.split(",") if name]


def load_order(tree: Path, wanted: tuple[str, ...]) -> list[Path]:
    """The .ko files under `tree` for `wanted` and everything they depend on, dependencies first.

    A wanted module with no file is taken to be built in (the caller checks that against the config).
    """
    files: dict[str, Path] = {}
    for path in tree.rglob("*.ko"):
        files[path.name[:-3].replace("-", "_")] = path
    order: list[Path] = []
    placed: set[str] = set()

    def place(name: str, chain: tuple[str, ...]) -> None:
        name = name.replace("-", "_")
        if name in placed or name not in files:
            return
        if name in chain:
            raise ValueError(f"module dependency cycle: {' -> '.join(chain + (name,))}")
        for dependency in module_dependencies(files[name]):
            place(dependency, chain + (name,))
        placed.add(name)
        order.append(files[name])

    for name in wanted:
        place(name, ())
    return order


def fetch_kernel(cache: Path, wanted: tuple[str, ...] = WANTED_MODULES) -> Kernel:
    """The cloud kernel, unpacked once under `cache/<package>/` with only the image, config and needed modules."""
    package = kernel_package()
    root = cache / package
    if not (root / ".extracted").exists():
        downloads = cache / "debs"
        downloads.mkdir(parents=True, exist_ok=True)
        if not list(downloads.glob(f"{package}_*.deb")):
            try:
                _run(["apt-get", "download", package], cwd=downloads)
            except (OSError, subprocess.CalledProcessError) as exc:
                detail = getattr(exc, "stderr", "") or str(exc)
                raise KernelUnavailable(f"apt-get download {package} failed: {detail.strip()[-300:]}") from None
        deb = max(downloads.glob(f"{package}_*.deb"))
        shutil.rmtree(root, ignore_errors=True)
        unpacked = root.with_name(root.name + ".partial")
        shutil.rmtree(unpacked, ignore_errors=True)
        _run(["dpkg-deb", "-x", str(deb), str(unpacked)])
        modules_tree = next((unpacked / "lib" / "modules").iterdir())
        keep = set(load_order(modules_tree, wanted))
        for path in sorted(unpacked.rglob("*"), reverse=True):
            if path.is_file() and not (path in keep or path.name.startswith(("vmlinuz-", "config-"))):
                path.unlink()
            elif path.is_symlink():
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        unpacked.rename(root)
        (root / ".extracted").touch()
        deb.unlink()
        for old in cache.iterdir():          # an older kernel's tree (Debian moved the meta-package on)
            if old.is_dir() and old.name.startswith("linux-image-") and old != root:
                shutil.rmtree(old, ignore_errors=True)
    vmlinuz = next((root / "boot").glob("vmlinuz-*"))
    release = vmlinuz.name.removeprefix("vmlinuz-")
    config = read_config(root / "boot" / f"config-{release}")
    modules_tree = root / "lib" / "modules" / release
    modules = tuple(load_order(modules_tree, wanted)) if modules_tree.exists() else ()
    missing = [name for name in wanted
               if not any(m.name[:-3].replace("-", "_") == name for m in modules)
               and config.get(MODULE_CONFIG.get(name, ""), "") != "y"]
    if missing:
        raise KernelUnavailable(f"{package} has neither a module nor a built-in driver for: {', '.join(missing)}")
    not_built_in = [option for option in NEEDED_BUILTIN if config.get(option) != "y"]
    if not_built_in:
        raise KernelUnavailable(f"{package} does not build in {', '.join(not_built_in)}; the initramfs would need "
                                "them as modules (extend WANTED_MODULES)")
    return Kernel(package=package, release=release, vmlinuz=vmlinuz, config=config, modules=modules)
