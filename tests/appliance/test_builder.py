"""The appliance builder's pieces that need no root, network or VM: the initramfs archive, the shell scripts'
syntax, the kernel module order, the cache keys."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from infra.appliance import initramfs
from infra.appliance.kernel import Kernel, load_order, modinfo
from infra.appliance.rootfs import PLUMBING_DIR, debian_mirror, lock_pins, tree_digest

CACHED_KERNELS = Path(__file__).resolve().parents[2] / ".cache" / "appliance" / "kernel"


def test_the_initramfs_is_a_newc_archive_with_a_console_device_and_an_init(tmp_path: Path) -> None:
    if shutil.which("cpio") is None:
        pytest.skip("cpio is not installed")
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF fake busybox")
    kernel = Kernel(package="linux-image-x", release="6.1.0-x", vmlinuz=tmp_path / "vmlinuz", config={}, modules=())
    target = tmp_path / "initrd.gz"
    initramfs.write_initramfs(kernel, target, busybox=busybox)
    listing = subprocess.run(f"gzip -dc {target} | cpio -itv --quiet", shell=True, capture_output=True, text=True,
                             check=True).stdout.splitlines()
    console = next(line for line in listing if line.endswith(" dev/console"))
    assert console.startswith("crw-------") and "5,   1" in console
    assert any(line.startswith("-rwxr-xr-x") and line.endswith(" init") for line in listing)
    assert any(line.endswith("bin/sh -> busybox") for line in listing)


def test_every_script_parses(tmp_path: Path) -> None:
    init = tmp_path / "init"
    init.write_text(initramfs.init_script())
    scripts = [init] + [path for path in PLUMBING_DIR.rglob("*") if path.is_file()
                        and path.read_bytes().startswith(b"#!")]
    scripts.append(PLUMBING_DIR / "usr/lib/harvester-appliance/functions")
    for script in scripts:
        shell = "/bin/busybox" if script == init and Path("/bin/busybox").exists() else None
        command = [shell, "sh", "-n", str(script)] if shell else ["sh", "-n", str(script)]
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0, f"{script}: {done.stderr}"


def test_inittab_names_scripts_that_exist() -> None:
    inittab = (PLUMBING_DIR / "etc/inittab").read_text()
    programs = [line.split(":", 3)[3].split()[0] for line in inittab.splitlines() if line and not line.startswith("#")]
    for program in programs:
        if program.startswith("/usr/lib/harvester-appliance/"):
            assert (PLUMBING_DIR / program.lstrip("/")).exists(), program


def test_the_cache_key_of_a_tree_follows_contents_and_modes_not_pycache(tmp_path: Path) -> None:
    tree = tmp_path / "simulator"
    (tree / "__pycache__").mkdir(parents=True)
    (tree / "a.py").write_text("x = 1\n")
    first = tree_digest((tree, "infra/simulator"))
    (tree / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"cache")
    assert tree_digest((tree, "infra/simulator")) == first
    (tree / "a.py").write_text("x = 2\n")
    assert tree_digest((tree, "infra/simulator")) != first


def test_the_lock_pins_and_the_mirror(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lock = tmp_path / "requirements.lock"
    lock.write_text("PyYAML==6.0.3\ntyping_extensions==4.16.0  # comment\n")
    assert lock_pins(lock) == {"pyyaml": "6.0.3", "typing-extensions": "4.16.0"}
    monkeypatch.setenv("HARVESTER_APPLIANCE_MIRROR", "http://mirror.example/debian/")
    assert debian_mirror() == "http://mirror.example/debian"
    assert debian_mirror("http://other/debian") == "http://other/debian"


def test_module_dependencies_come_before_the_modules_that_need_them() -> None:
    trees = sorted(CACHED_KERNELS.glob("linux-image-*/lib/modules/*")) if CACHED_KERNELS.exists() else []
    if not trees:
        pytest.skip("no cached appliance kernel (python -m infra.appliance build fetches one)")
    order = [path.name[:-3] for path in load_order(trees[-1], ("sr_mod", "virtio_net"))]
    assert order.index("scsi_mod") < order.index("sr_mod") and order.index("cdrom") < order.index("sr_mod")
    assert order.index("virtio") < order.index("virtio_net")
    assert modinfo(next(trees[-1].rglob("sr_mod.ko")))["depends"][0]
