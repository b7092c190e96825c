"""The appliance's unattended installer: what harvester-installer does with `harvester.install.automatic=true`,
for the appliance's own OS.

Run by the live system (busybox init's `once` entry, rc.install) when /proc/cmdline has
`harvester.install.automatic=true`:

1. the `harvester.*` kernel parameters (cmdline.py), then the document at `harvester.install.config_url`
   (http/https, fetched a bounded number of times once the NIC has an address), merged as harvester-installer
   merges them (config.py);
2. validation in harvester-installer's words; an invalid config is said on the console and nothing is
   installed (the machine stays up showing why, as the real installer's console does);
3. the preflight checks (preflight.py) unless `skipchecks`;
4. the install: one MBR partition on `install.device` (bootable, ext4, label COS_STATE), the live system's
   squashfs tree copied onto it, the node's identity written (hostname, rancher's password and keys,
   `os.write_files`, /etc/os-release for the ISO's version, the config at /oem/harvester.config, the node's
   VIP and management NIC for the services), the kernel and initrd from the ISO in /boot with extlinux and
   its MBR code;
5. `harvester-appliance: installed`, then power off (`install.poweroff`) or reboot.

`join` mode installs and records `server_url`, but the node joins nothing: the appliance is a one-node
cluster (the harness makes one node), and its API service does not start on a join node (rc scripts).
"""
from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from .cmdline import CmdlineError, read_cmdline
from .config import (MODE_JOIN, ConfigError, HarvesterConfig, Interface, SystemProbe, combine, load_config,
                     management_interface_name, parse_document, validate)
from .preflight import Machine, run_checks

PREFIX = "harvester-appliance:"
STATE_LABEL = "COS_STATE"
LIVE_MEDIUM = Path("/run/live/medium")
LIVE_ROOT = Path("/run/live/rootfs")
TARGET = Path("/run/harvester-installer/target")
INSTALL_LOG = Path("/run/harvester-installer/install.log")
RELEASE_FILE = "harvester-release.yaml"
NODE_ENV = "etc/harvester-appliance/node.env"
OEM_CONFIG = "oem/harvester.config"
MBR_CODE = Path("/usr/lib/EXTLINUX/mbr.bin")
CONFIG_FETCH_ATTEMPTS = 30
CONFIG_FETCH_TIMEOUT_S = 10.0
CONFIG_FETCH_PAUSE_S = 2.0
NETWORK_WAIT_S = 90.0
PARTITION_WAIT_S = 15.0


class InstallError(RuntimeError):
    """The install cannot go on; the message says why, for the console."""


def say(message: str) -> None:
    line = f"{PREFIX} installer: {message}"
    try:
        with open("/dev/console", "w") as console:
            console.write(line + "\n")
    except OSError:
        print(line, file=sys.stderr, flush=True)
    try:
        INSTALL_LOG.parent.mkdir(parents=True, exist_ok=True)
        with INSTALL_LOG.open("a") as log:
            log.write(f"{datetime.datetime.now().isoformat(timespec='seconds')} {message}\n")
    except OSError:
        pass


def announce(line: str) -> None:
    """A line on the console as it is (no `installer:` tag): the milestones the harness and tests wait for."""
    try:
        with open("/dev/console", "w") as console:
            console.write(line + "\n")
    except OSError:
        print(line, flush=True)


def run(command: list[str], input_text: str | None = None, timeout: float = 1800) -> str:
    try:
        done = subprocess.run(command, input=input_text, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallError(f"{' '.join(command)}: {exc}") from None
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()[-400:]
        raise InstallError(f"{' '.join(command)} exited {done.returncode}: {detail}")
    return done.stdout


# --------------------------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------------------------

def probe_system(devices: tuple[str, ...] = (), sys_root: Path = Path("/sys")) -> SystemProbe:
    interfaces = []
    for entry in sorted((sys_root / "class" / "net").glob("*")):
        try:
            flags = int((entry / "flags").read_text().strip(), 16)
            mac = (entry / "address").read_text().strip()
        except (OSError, ValueError):
            continue
        interfaces.append(Interface(entry.name, mac, loopback=bool(flags & 0x8)))
    disks: dict[str, int] = {}
    for entry in sorted((sys_root / "block").glob("*")):
        if re.match(r"(loop|ram|sr|zram|dm-|md|fd)", entry.name):
            continue
        try:
            sectors = int((entry / "size").read_text().strip())
        except (OSError, ValueError):
            continue
        if sectors > 0:
            disks[f"/dev/{entry.name}"] = sectors * 512
    paths = {device: os.path.realpath(device) for device in devices if device and os.path.lexists(device)}
    return SystemProbe(interfaces=interfaces, disks=disks, paths=paths,
                       bios=not (sys_root / "firmware" / "efi").exists())


def has_ipv4_address() -> bool:
    try:
        output = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True,
                                text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return " inet " in output


def fetch_config(url: str, attempts: int = CONFIG_FETCH_ATTEMPTS, pause: float = CONFIG_FETCH_PAUSE_S,
                 opener: Callable[[str, float], bytes] | None = None) -> str:
    """The document at `url`, tried `attempts` times (the network may come up after the installer starts)."""
    def default_opener(target: str, timeout: float) -> bytes:
        with urllib.request.urlopen(target, timeout=timeout) as response:       # noqa: S310 (http/https only)
            return response.read()

    if not url.startswith(("http://", "https://")):
        raise InstallError(f"config_url {url!r}: only http:// and https:// URLs can be fetched")
    read = opener or default_opener
    last = ""
    for attempt in range(1, attempts + 1):
        try:
            return read(url, CONFIG_FETCH_TIMEOUT_S).decode()
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code} {exc.reason}"
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            last = str(getattr(exc, "reason", exc))
        say(f"fetching the config (attempt {attempt}/{attempts}) failed: {last}")
        if attempt < attempts:
            time.sleep(pause)
    raise InstallError(f"could not fetch the config from {url} after {attempts} attempts: {last}")


# --------------------------------------------------------------------------------------------
# The release on the ISO
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Release:
    version: str              # the simulator's version name: v1.5.1, master-ce188325-head
    pretty_name: str          # /etc/os-release PRETTY_NAME: "Harvester v1.5.1", "Harvester master"
    document: dict[str, Any]


def read_release(medium: Path = LIVE_MEDIUM) -> Release:
    from infra.simulator.harvester.versions import version_of_release

    path = medium / RELEASE_FILE
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InstallError(f"cannot read {path}: {exc}") from None
    if not isinstance(document, dict) or not document.get("harvester"):
        raise InstallError(f"{path} does not say which Harvester it is (no `harvester:` key)")
    harvester = str(document["harvester"])
    known = version_of_release(harvester)
    if known is not None:
        return Release(known.name, known.os_pretty_name, document)
    return Release(harvester, str(document.get("os") or f"Harvester {harvester}"), document)


# --------------------------------------------------------------------------------------------
# Writing the node
# --------------------------------------------------------------------------------------------

def inside(root: Path, path: str) -> Path:
    """`path` (absolute, in the installed system) under `root`, refusing anything that climbs out of it."""
    relative = os.path.normpath("/" + path.lstrip("/")).lstrip("/")
    if relative.startswith(".."):
        raise InstallError(f"{path!r} is outside the installed system")
    return root / relative


def _ids(root: Path, owner: str) -> tuple[int, int]:
    """uid, gid of `user[:group]` (names or numbers) in the installed system's passwd and group files."""
    def lookup(file: str, name: str, field: int) -> int | None:
        if name.isdigit():
            return int(name)
        for line in (root / "etc" / file).read_text().splitlines():
            parts = line.split(":")
            if parts and parts[0] == name and len(parts) > field:
                return int(parts[field])
        return None

    user, _, group = (owner or "root").partition(":")
    uid = lookup("passwd", user or "root", 2)
    if uid is None:
        raise InstallError(f"owner {owner!r}: no user {user!r} in the installed system")
    if group:
        gid = lookup("group", group, 2)
        if gid is None:
            raise InstallError(f"owner {owner!r}: no group {group!r} in the installed system")
    else:
        gid = lookup("passwd", user or "root", 3)
        assert gid is not None
    return uid, gid


def password_hash(password: str) -> str:
    """A crypt(3) hash for /etc/shadow; a password given already hashed ($6$..., $y$...) is kept."""
    if re.match(r"^\$(1|2[aby]?|5|6|y|gy|7)\$", password):
        return password
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt            # Python 3.11 has it (the appliance's Debian python3.11); gone in 3.13
    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))


def set_password(root: Path, user: str, password: str) -> None:
    shadow = root / "etc" / "shadow"
    hashed = password_hash(password) if password else "*"
    days = int(time.time() // 86400)
    lines = []
    for line in shadow.read_text().splitlines():
        parts = line.split(":")
        if parts[0] == user:
            parts[1] = hashed
            parts[2] = str(days)
            line = ":".join(parts)
        lines.append(line)
    shadow.write_text("\n".join(lines) + "\n")


def write_node_files(root: Path, config: HarvesterConfig, release: Release, probe: SystemProbe,
                     console: str, kernel_args: str) -> None:
    """Everything that makes the copied system this node (no disk or bootloader work: testable on a tree)."""
    hostname = config.hostname
    (root / "etc" / "hostname").write_text(hostname + "\n")
    (root / "etc" / "hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n"
                                        "::1\tlocalhost ip6-localhost ip6-loopback\n")
    os_release = root / "etc" / "os-release"
    if os_release.is_symlink() or os_release.exists():
        os_release.unlink()
    version_id = release.version.lstrip("v")
    os_release.write_text(
        'NAME="Harvester"\n'
        f'VERSION="{release.version}"\n'
        f'VERSION_ID="{version_id}"\n'
        f'PRETTY_NAME="{release.pretty_name}"\n'
        "ID=harvester-appliance\n"
        "ID_LIKE=debian\n"
        'HOME_URL="https://harvesterhci.io/"\n'
        'VARIANT="harvester-e2e appliance (Debian bookworm underneath)"\n')

    set_password(root, "rancher", config.password)
    uid, gid = _ids(root, "rancher")
    ssh_dir = root / "home" / "rancher" / ".ssh"
    ssh_dir.mkdir(parents=True, exist_ok=True)
    keys = []
    for key in config.ssh_authorized_keys:
        if key.startswith(("github:", "gitlab:")):
            say(f"ssh_authorized_keys: {key.split(':')[0]} keys need the internet; {key!r} skipped")
            continue
        keys.append(key.strip())
    authorized = ssh_dir / "authorized_keys"
    authorized.write_text("".join(k + "\n" for k in keys))
    for path, mode in ((ssh_dir, 0o700), (authorized, 0o600)):
        os.chown(path, uid, gid)
        path.chmod(mode)

    for entry in config.write_files:
        if not entry.path:
            raise InstallError("write_files: an entry has no path")
        target = inside(root, entry.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():
            target.unlink()
        target.write_bytes(entry.data())
        file_uid, file_gid = _ids(root, entry.owner)
        os.chown(target, file_uid, file_gid)
        target.chmod(entry.mode())
        say(f"write_files: {entry.path} ({entry.permissions or '0644'}, {entry.owner or 'root'})")

    oem = inside(root, OEM_CONFIG)
    oem.parent.mkdir(parents=True, exist_ok=True)
    oem.write_text(yaml.safe_dump(config.document, sort_keys=False))
    oem.chmod(0o600)

    network = config.management_interface
    interface = management_interface_name(config, probe)
    hw_addr = next((i.hw_addr for i in network.interfaces if i.hw_addr), "")
    if not hw_addr:
        hw_addr = next((i.mac for i in probe.interfaces if i.name == interface), "")
    values = {
        "HARVESTER_VERSION": release.version, "OS_PRETTY_NAME": release.pretty_name, "INSTALL_MODE": config.mode,
        "INSTALL_ROLE": config.role, "SERVER_URL": config.server_url, "NODE_HOSTNAME": hostname,
        "VIP": config.vip, "VIP_MODE": config.vip_mode, "VIP_HW_ADDR": config.vip_hw_addr,
        "MGMT_IFACE": interface, "MGMT_HWADDR": hw_addr, "MGMT_METHOD": network.method, "MGMT_IP": network.ip,
        "MGMT_NETMASK": network.subnet_mask, "MGMT_GATEWAY": network.gateway, "MGMT_MTU": str(network.mtu or ""),
        "DNS_NAMESERVERS": " ".join(config.dns_nameservers), "NTP_SERVERS": " ".join(config.ntp_servers),
        "INSTALLED_AT": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    node_env = inside(root, NODE_ENV)
    node_env.parent.mkdir(parents=True, exist_ok=True)
    node_env.write_text("# written by the harvester-appliance installer; read by its rc scripts\n"
                        + "".join(f"{key}={shlex.quote(value)}\n" for key, value in values.items()))
    (node_env.parent / RELEASE_FILE).write_text(yaml.safe_dump(release.document, sort_keys=False))
    (root / "etc" / "fstab").write_text(f"LABEL={STATE_LABEL}\t/\text4\tdefaults,errors=remount-ro\t0 1\n")
    for directory in ("var/lib/harvester-appliance/state", "etc/rancher/rke2"):
        (root / directory).mkdir(parents=True, exist_ok=True)

    boot = root / "boot"
    extlinux = boot / "extlinux"
    extlinux.mkdir(parents=True, exist_ok=True)
    append = f"root=LABEL={STATE_LABEL} {console} net.ifnames=1 panic=10 {kernel_args}".strip()
    (extlinux / "extlinux.conf").write_text(
        "# written by the harvester-appliance installer\n"
        "SERIAL 0 115200\n"
        "DEFAULT harvester\n"
        "PROMPT 0\n"
        "TIMEOUT 1\n"
        "LABEL harvester\n"
        f"  MENU LABEL {release.pretty_name}\n"
        "  KERNEL /boot/vmlinuz\n"
        "  INITRD /boot/initrd\n"
        f"  APPEND {append}\n")


def console_arguments(config: HarvesterConfig, cmdline_text: str) -> str:
    """`console=tty1 console=<install.tty>`, as Harvester's grub config has it; without install.tty, the
    live system's last console= (the one /dev/console is), else ttyS0."""
    tty = config.tty.strip()
    if not tty:
        consoles = re.findall(r"(?:^|\s)console=(\S+)", cmdline_text)
        tty = consoles[-1] if consoles else "ttyS0"
    if tty == "tty1":
        return "console=tty1"
    return f"console=tty1 console={tty}"


# --------------------------------------------------------------------------------------------
# Disk work
# --------------------------------------------------------------------------------------------

def partition_path(disk: str, number: int) -> str:
    return f"{disk}p{number}" if disk[-1].isdigit() else f"{disk}{number}"


def unmount_everything_on(disk: str) -> None:
    mounts = Path("/proc/mounts").read_text().splitlines()
    for line in reversed(mounts):
        source, mountpoint = line.split()[:2]
        if source == disk or source.startswith(disk):
            subprocess.run(["umount", "-l", mountpoint], capture_output=True, timeout=60)


def partition_and_format(disk: str) -> str:
    unmount_everything_on(disk)
    with open(disk, "r+b") as device:                # no old signatures for anything to find
        device.write(b"\0" * (1024 * 1024))
        device.flush()
        os.fsync(device.fileno())
    say(f"partitioning {disk}: MBR, one bootable ext4 partition labelled {STATE_LABEL}")
    run(["sfdisk", "--quiet", "--wipe", "always", "--wipe-partitions", "always", disk],
        input_text="label: dos\nstart=2048, type=83, bootable\n", timeout=120)
    partition = partition_path(disk, 1)
    deadline = time.monotonic() + PARTITION_WAIT_S
    while not Path(partition).exists():
        if time.monotonic() > deadline:
            raise InstallError(f"{partition} did not appear after partitioning {disk}")
        time.sleep(0.5)
    run(["mkfs.ext4", "-F", "-q", "-L", STATE_LABEL, "-E", "lazy_itable_init=1,lazy_journal_init=1", partition],
        timeout=600)
    return partition


def install_bootloader(disk: str, root: Path, medium: Path) -> None:
    boot = root / "boot"
    for source, name in ((medium / "boot" / "vmlinuz", "vmlinuz"), (medium / "boot" / "initrd", "initrd")):
        if not source.exists():
            raise InstallError(f"the installer medium has no {source.relative_to(medium)}")
        shutil.copyfile(source, boot / name)
    run(["extlinux", "--install", str(boot / "extlinux")], timeout=300)
    mbr = MBR_CODE.read_bytes()[:440]
    with open(disk, "r+b") as device:
        device.write(mbr)
        device.flush()
        os.fsync(device.fileno())


def install(config: HarvesterConfig, probe: SystemProbe, release: Release, cmdline_text: str,
            live_root: Path = LIVE_ROOT, medium: Path = LIVE_MEDIUM, target: Path = TARGET) -> None:
    disk = probe.resolve(config.device) or config.device
    partition = partition_and_format(disk)
    target.mkdir(parents=True, exist_ok=True)
    run(["mount", "-t", "ext4", partition, str(target)])
    try:
        started = time.monotonic()
        say(f"copying the system onto {partition}")
        run(["cp", "-a", f"{live_root}/.", f"{target}/"], timeout=3600)
        say(f"copied in {time.monotonic() - started:.0f}s")
        write_node_files(target, config, release, probe, console_arguments(config, cmdline_text),
                         config.additional_kernel_arguments)
        install_bootloader(disk, target, medium)
        say(f"installed {release.pretty_name} on {disk} (extlinux, root=LABEL={STATE_LABEL})")
        log = target / "var" / "log" / "harvester-installer.log"
        if INSTALL_LOG.exists():
            shutil.copyfile(INSTALL_LOG, log)
    finally:
        os.sync()
        subprocess.run(["umount", str(target)], capture_output=True, timeout=120)


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------

def gather_config(cmdline_path: Path) -> tuple[HarvesterConfig, str]:
    cmdline_text = cmdline_path.read_text() if cmdline_path.exists() else ""
    try:
        from_cmdline = read_cmdline(cmdline_path)
    except CmdlineError as exc:
        raise ConfigError(str(exc)) from None
    base = load_config(from_cmdline)
    remote = None
    if base.config_url:
        deadline = time.monotonic() + NETWORK_WAIT_S
        while not has_ipv4_address() and time.monotonic() < deadline:
            time.sleep(1)
        say(f"fetching the config from {base.config_url}")
        remote = parse_document(fetch_config(base.config_url))
    config = combine(from_cmdline, remote)
    if config.unknown_keys:
        say(f"ignoring keys harvester-installer does not know: {', '.join(config.unknown_keys)}")
    return config, cmdline_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m infra.simulator.appliance.installer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cmdline", type=Path, default=Path("/proc/cmdline"))
    parser.add_argument("--validate-only", action="store_true", help="fetch, merge and validate; install nothing")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        config, cmdline_text = gather_config(args.cmdline)
        probe = probe_system((config.device, config.data_disk))
        validate(config, probe)
        mode = f"{config.mode}" + (f" (server_url {config.server_url})" if config.mode == MODE_JOIN else "")
        say(f"config accepted: mode {mode}, hostname {config.hostname}, device {config.device}, "
            f"management interface {management_interface_name(config, probe) or '-'}")
        if config.skipchecks:
            say("preflight checks skipped (skipchecks)")
        else:
            failures = run_checks(Machine.probe())
            for failure in failures:
                say(f"preflight check failed: {failure}")
            if failures:
                raise InstallError("preflight checks failed; installation aborted "
                                   "(harvester.install.skipchecks=true bypasses them for testing)")
            say("preflight checks passed")
        if args.validate_only:
            return 0
        release = read_release()
        if config.mode == MODE_JOIN:
            say(f"join mode: installing; this node records server_url {config.server_url} but joins nothing "
                "(the appliance is a one-node cluster)")
        install(config, probe, release, cmdline_text)
    except ConfigError as exc:
        say(f"invalid config: {exc}")
        say("install FAILED: nothing was written to any disk; the machine stays up so this can be read")
        return 2
    except InstallError as exc:
        say(f"install FAILED: {exc}")
        return 1
    say(f"took {time.monotonic() - started:.0f}s")
    announce(f"{PREFIX} installed")
    if config.poweroff:
        say("powering off (install.poweroff)")
        subprocess.run(["/sbin/poweroff"], timeout=60)
    else:
        say("rebooting into the installed system")
        subprocess.run(["/sbin/reboot"], timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
