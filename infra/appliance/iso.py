"""The installer ISO of one version: ISO 9660 with Rock Ridge and Joliet names, volume label COS_LIVE (the label
the real Harvester ISO has, and what the harness's installer_cmdline falls back to), laid out like the real one
where it matters:

    /rootfs.squashfs          the live system (shared by every version's ISO)
    /harvester-release.yaml   which Harvester this is (infra.simulator's version table)
    /boot/vmlinuz, /boot/initrd
                              the kernel and initramfs (the installer copies them onto the disk)

It is not bootable by BIOS (no El Torito): the harness boots the installer with -kernel/-initrd, and a domain
that keeps the cdrom first in its boot order falls through to the disk.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

VOLUME_LABEL = "COS_LIVE"


def write_iso(target: Path, squashfs: Path, kernel: Path, initrd: Path, release_text: str,
              label: str = VOLUME_LABEL) -> None:
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=4, joliet=3, rock_ridge="1.09", vol_ident=label, app_ident_str="harvester-e2e appliance")
    iso.add_directory("/BOOT", rr_name="boot", joliet_path="/boot")
    release = release_text.encode()
    iso.add_fp(io.BytesIO(release), len(release), "/HARVESTER_RELEASE.YAML;1", rr_name="harvester-release.yaml",
               joliet_path="/harvester-release.yaml")
    iso.add_file(str(squashfs), "/ROOTFS.SQUASHFS;1", rr_name="rootfs.squashfs", joliet_path="/rootfs.squashfs")
    iso.add_file(str(kernel), "/BOOT/VMLINUZ;1", rr_name="vmlinuz", joliet_path="/boot/vmlinuz")
    iso.add_file(str(initrd), "/BOOT/INITRD;1", rr_name="initrd", joliet_path="/boot/initrd")
    partial = target.with_name(target.name + ".partial")
    try:
        iso.write(str(partial))
    finally:
        iso.close()
    os.replace(partial, target)


def volume_label(path: Path) -> str:
    """The primary volume descriptor's volume identifier (what `root=live:CDLABEL=` names)."""
    with path.open("rb") as iso:
        iso.seek(32808)
        return iso.read(32).decode("ascii", "replace").strip()
