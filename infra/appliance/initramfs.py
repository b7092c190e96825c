"""The appliance's one initramfs (busybox-static): the installer boot and the installed boot both start here.

`root=live:CDLABEL=<label>` (the installer, as harvester-installer's dracut module is given it): find the
ISO 9660 volume with that label (the IDE cdrom), mount it, mount its `rootfs.squashfs` read-only with a tmpfs
overlay on top and switch_root into it; the ISO and the squashfs stay visible at /run/live/medium and
/run/live/rootfs, where the installer copies the system from. `root=LABEL=<label>` (the installed system):
mount that ext4 file system read-write and switch_root. Whatever is missing is said on the console, and the
console gets a shell instead of a kernel panic.

The archive is written here (newc format) rather than by cpio(1), so /dev/console can be in it as a device
node without mknod.
"""
from __future__ import annotations

import gzip
import io
import os
import shutil
import stat
from pathlib import Path

from .kernel import Kernel

BUSYBOX_STATIC = Path("/bin/busybox")
ROOT_WAIT_SECONDS = 120          # a TCG guest is slow to probe the IDE bus; harvester.appliance.rootwait= overrides

INIT_SCRIPT = r"""#!/bin/busybox sh
# harvester-appliance initramfs /init (see infra/appliance/initramfs.py)
export PATH=/bin:/sbin
/bin/busybox mkdir -p /bin /sbin /proc /sys /dev /run /newroot /tmp
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
exec </dev/console >/dev/console 2>&1

say() { echo "harvester-appliance: initramfs: $*"; }

rescue() {
    say "BOOT FAILED: $*"
    say "kernel command line: $(cat /proc/cmdline)"
    say "modules that did not load:${failed_modules:- none}"
    say "block devices (/proc/partitions):"
    cat /proc/partitions
    for dev in /sys/class/block/*; do
        name=${dev##*/}
        say "  /dev/$name: label '$(label_of /dev/$name)'"
    done
    say "mounts:"
    cat /proc/mounts
    say "dropping to a shell on the console (no kernel panic); fix things and 'exit' to retry the boot"
    while true; do
        setsid cttyhack sh
        boot && return 0
    done
}

# The label of an ISO 9660 (primary volume descriptor) or ext2/3/4 (superblock) file system, or nothing.
label_of() {
    if [ "$(dd if="$1" bs=1 skip=32769 count=5 2>/dev/null)" = "CD001" ]; then
        dd if="$1" bs=1 skip=32808 count=32 2>/dev/null | tr -d '\000' | sed 's/ *$//'
    elif [ "$(od -An -tx1 -j1080 -N2 "$1" 2>/dev/null | tr -d ' ')" = "53ef" ]; then
        dd if="$1" bs=1 skip=1144 count=16 2>/dev/null | tr -d '\000'
    fi
}

find_label() {
    for dev in /sys/class/block/*; do
        name=${dev##*/}
        case "$name" in loop*|ram*) continue ;; esac
        [ -b "/dev/$name" ] || continue
        if [ "$(label_of /dev/$name)" = "$1" ]; then echo "/dev/$name"; return 0; fi
    done
    return 1
}

wait_for_label() {
    waited=0
    while [ "$waited" -lt "$rootwait" ]; do
        found=$(find_label "$1") && { echo "$found"; return 0; }
        sleep 1
        waited=$((waited + 1))
    done
    return 1
}

load_modules() {
    failed_modules=""
    for module in $(cat /etc/modules.order); do
        insmod "/lib/modules/$module.ko" 2>/dev/null || failed_modules="$failed_modules $module"
    done
}

boot() {
    case "$root" in
    live:CDLABEL=*)
        label=${root#live:CDLABEL=}
        say "looking for the installer medium labelled '$label'"
        device=$(wait_for_label "$label") || { rescue "no ISO 9660 volume labelled '$label' after ${rootwait}s (is the ISO attached as a cdrom?)"; return $?; }
        mkdir -p /run/live/medium /run/live/rootfs /run/live/overlay
        mount -t iso9660 -o ro "$device" /run/live/medium || { rescue "cannot mount $device (iso9660)"; return $?; }
        [ -f "/run/live/medium/$squashimg" ] || { rescue "$device has no /$squashimg"; return $?; }
        mount -t squashfs -o ro,loop "/run/live/medium/$squashimg" /run/live/rootfs || { rescue "cannot mount /$squashimg"; return $?; }
        mount -t tmpfs -o mode=0755 tmpfs /run/live/overlay
        mkdir -p /run/live/overlay/upper /run/live/overlay/work
        mount -t overlay overlay -o lowerdir=/run/live/rootfs,upperdir=/run/live/overlay/upper,workdir=/run/live/overlay/work /newroot \
            || { rescue "cannot mount the overlay root"; return $?; }
        say "live system from $device ($squashimg) with a tmpfs overlay"
        ;;
    LABEL=*)
        label=${root#LABEL=}
        say "looking for the root file system labelled '$label'"
        device=$(wait_for_label "$label") || { rescue "no file system labelled '$label' after ${rootwait}s"; return $?; }
        mount -t ext4 -o rw "$device" /newroot || { rescue "cannot mount $device (ext4)"; return $?; }
        say "root file system $device"
        ;;
    /dev/*)
        waited=0
        while [ ! -b "$root" ] && [ "$waited" -lt "$rootwait" ]; do sleep 1; waited=$((waited + 1)); done
        mount -t ext4 -o rw "$root" /newroot || { rescue "cannot mount $root"; return $?; }
        ;;
    "")
        rescue "no root= on the kernel command line (root=live:CDLABEL=<label> or root=LABEL=<label>)"; return $?
        ;;
    *)
        rescue "root=$root is not understood (root=live:CDLABEL=<label>, root=LABEL=<label> or root=/dev/...)"; return $?
        ;;
    esac
    if [ ! -x "/newroot$init" ] && [ ! -L "/newroot$init" ]; then
        umount /newroot 2>/dev/null
        rescue "the root file system has no $init"; return $?
    fi
    return 0
}

root=""
init=/sbin/init
squashimg=rootfs.squashfs
rootwait=__ROOT_WAIT__
for arg in $(cat /proc/cmdline); do
    case "$arg" in
    root=*) root=${arg#root=} ;;
    init=*) init=${arg#init=} ;;
    rd.live.squashimg=*) squashimg=${arg#rd.live.squashimg=} ;;
    harvester.appliance.rootwait=*) rootwait=${arg#harvester.appliance.rootwait=} ;;
    esac
done
say "loading modules"
load_modules
[ -z "$failed_modules" ] || say "modules that did not load:$failed_modules"
boot
mkdir -p /newroot/run /newroot/dev /newroot/proc /newroot/sys
mount -o move /run /newroot/run
mount -o move /dev /newroot/dev
mount -o move /sys /newroot/sys
mount -o move /proc /newroot/proc
say "switching to $init"
exec switch_root /newroot "$init"
"""


def init_script(root_wait: int = ROOT_WAIT_SECONDS) -> str:
    return INIT_SCRIPT.replace("__ROOT_WAIT__", str(root_wait))


class _Newc:
    """A cpio archive in the kernel's initramfs ("newc") format."""

    def __init__(self) -> None:
        self._out = io.BytesIO()
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        fields = (self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
        header = "070701" + "".join(f"{value:08x}" for value in fields)
        self._ino += 1
        self._out.write(header.encode() + name.encode() + b"\0")
        self._pad()
        self._out.write(data)
        self._pad()

    def _pad(self) -> None:
        self._out.write(b"\0" * (-self._out.tell() % 4))

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def char_device(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | mode, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self._out.getvalue()


def write_initramfs(kernel: Kernel, target: Path, busybox: Path = BUSYBOX_STATIC,
                    root_wait: int = ROOT_WAIT_SECONDS) -> None:
    """The gzip'd initramfs at `target` (written to a .partial file, then renamed)."""
    archive = _Newc()
    for directory in ("bin", "sbin", "dev", "etc", "lib", "lib/modules", "proc", "sys", "run", "newroot", "tmp"):
        archive.directory(directory)
    archive.char_device("dev/console", 5, 1)
    archive.char_device("dev/null", 1, 3, 0o666)
    archive.file("bin/busybox", busybox.read_bytes(), 0o755)
    archive.symlink("bin/sh", "busybox")
    names = []
    for module in kernel.modules:
        name = module.name[:-3]
        names.append(name)
        archive.file(f"lib/modules/{name}.ko", module.read_bytes())
    archive.file("etc/modules.order", ("\n".join(names) + "\n").encode())
    archive.file("etc/harvester-appliance-kernel", f"{kernel.release}\n".encode())
    archive.file("init", init_script(root_wait).encode(), 0o755)
    partial = target.with_name(target.name + ".partial")
    partial.write_bytes(gzip.compress(archive.finish(), compresslevel=6, mtime=0))
    os.replace(partial, target)


def check_busybox(busybox: Path = BUSYBOX_STATIC) -> str | None:
    """None when the static busybox is usable, else what to install."""
    if not busybox.exists() or shutil.which("apt-get") is None:
        return "the initramfs needs a static busybox; run: apt-get install -y busybox-static"
    return None
