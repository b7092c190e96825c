"""A private libvirt daemon for machines without one (the real-VM tests, `make e2e-libvirt` here): started by
hand (no systemd), stopped by PID. A lab's KVM host has its own libvirtd; this is not for it.

virtlogd and libvirtd run in their own mount namespace in which /etc/libvirt, /run/libvirt,
/var/lib/libvirt and /var/log/libvirt are bind mounts of a temporary directory: their configuration
(qemu runs as root, no dynamic ownership, no security driver, no cgroups) and state stay there, and
the host's own libvirt files are never touched. The client connects through the socket in that
directory. libvirt's qemu driver insists that its compiled-in user `libvirt-qemu` exists; where it
does not, the namespace sees a copy of /etc/passwd and /etc/group with it added, instead of the host
gaining a user. The qemu capabilities cache is kept under .cache/ so later starts skip the probe.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
CAPABILITIES_CACHE = REPO_ROOT / ".cache" / "libvirt-cache"
NEEDED = {"libvirtd": "libvirt-daemon", "virtlogd": "libvirt-daemon", "qemu-system-x86_64": "qemu-system-x86",
          "qemu-img": "qemu-utils", "unshare": "util-linux"}
APT_COMMAND = ("sudo apt-get install -y --no-install-recommends qemu-system-x86 qemu-utils libvirt-daemon "
               "libvirt-daemon-driver-qemu libvirt-clients dnsmasq-base iptables")

QEMU_CONF = """user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
cgroup_controllers = [ ]
"""

LAUNCH = """set -e
D="$1"
mkdir -p /run/libvirt /var/lib/libvirt /var/log/libvirt /var/cache/libvirt /etc/libvirt
for pair in etc:/etc/libvirt run:/run/libvirt lib:/var/lib/libvirt log:/var/log/libvirt; do
  mount --bind "$D/${pair%%:*}" "${pair#*:}"
done
mount --bind "$2" /var/cache/libvirt
if ! getent passwd libvirt-qemu >/dev/null; then
  cp /etc/passwd "$D/passwd"; cp /etc/group "$D/group"
  echo 'libvirt-qemu:x:64055:64055:libvirt qemu:/var/lib/libvirt:/usr/sbin/nologin' >> "$D/passwd"
  getent group libvirt-qemu >/dev/null || echo 'libvirt-qemu:x:64055:' >> "$D/group"
  getent group kvm >/dev/null || echo 'kvm:x:64056:' >> "$D/group"
  mount --bind "$D/passwd" /etc/passwd
  mount --bind "$D/group" /etc/group
fi
virtlogd -d -p "$D/virtlogd.pid"
exec libvirtd -p "$D/libvirtd.pid"
"""


class LibvirtdUnavailable(RuntimeError):
    """libvirtd cannot run here; the message says why (the real-VM tests skip with it)."""


@dataclass
class LocalLibvirtd:
    root: Path
    process: subprocess.Popen[bytes]

    @property
    def socket(self) -> Path:
        return self.root / "sock" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu:///system?socket={self.socket}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.root / "libvirtd.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _virtlogd_pid(self) -> int | None:
        try:
            return int((self.root / "virtlogd.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _qemu_pids(self) -> list[int]:
        """qemu processes of this daemon's domains (their pid files live in its private run directory)."""
        pids = []
        for pid_file in (self.root / "run" / "qemu").glob("*.pid"):
            try:
                pids.append(int(pid_file.read_text().strip()))
            except (OSError, ValueError):
                continue
        return pids

    def stop(self) -> None:
        """Stop libvirtd and virtlogd by PID; any qemu this daemon still runs (a test that failed before its
        teardown) goes first, also by the PID libvirt recorded for it."""
        for pid in self._qemu_pids():
            _terminate(pid)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        virtlogd = self._virtlogd_pid()
        if virtlogd is not None:
            _terminate(virtlogd)
        shutil.rmtree(self.root, ignore_errors=True)


def _terminate(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        os.waitpid(pid, 0)       # only our children can be reaped; others just get the signal
    except ChildProcessError:
        pass


def why_not() -> str | None:
    """Why a private libvirtd cannot run here (None when it can)."""
    if os.geteuid() != 0:
        return "a private libvirtd needs root (it bind-mounts libvirt's directories)"
    missing = sorted({package for binary, package in NEEDED.items() if shutil.which(binary) is None
                      and not Path("/usr/sbin", binary).exists()})
    if missing:
        return f"missing {', '.join(missing)}; run: {APT_COMMAND}"
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True,
                           text=True, timeout=30)
    if probe.returncode != 0:
        return f"cannot make a mount namespace here (unshare: {probe.stderr.strip()})"
    return None


def start_libvirtd(wait_s: float = 60.0) -> LocalLibvirtd:
    reason = why_not()
    if reason:
        raise LibvirtdUnavailable(reason)
    root = Path(tempfile.mkdtemp(prefix="e2e-libvirtd-"))
    for directory in ("etc", "run", "lib", "log", "sock"):
        (root / directory).mkdir()
    CAPABILITIES_CACHE.mkdir(parents=True, exist_ok=True)
    (root / "etc" / "qemu.conf").write_text(QEMU_CONF)
    (root / "etc" / "libvirtd.conf").write_text(
        f'unix_sock_dir = "{root / "sock"}"\nlog_outputs = "3:file:{root / "libvirtd.log"}"\n')
    (root / "etc" / "virtlogd.conf").write_text(f'log_outputs = "3:file:{root / "virtlogd.log"}"\n')
    script = root / "launch.sh"
    script.write_text(LAUNCH)
    with open(root / "daemon.out", "wb") as out:
        process = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", str(script), str(root),
                                    str(CAPABILITIES_CACHE)], stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    daemon = LocalLibvirtd(root, process)
    try:
        _wait_for_socket(daemon, wait_s)
    except BaseException:
        daemon.stop()
        raise
    return daemon


def _wait_for_socket(daemon: LocalLibvirtd, wait_s: float) -> None:
    import tenacity

    def ready() -> bool:
        if daemon.process.poll() is not None:
            output = (daemon.root / "daemon.out").read_text(errors="replace")
            raise LibvirtdUnavailable(f"libvirtd exited with status {daemon.process.returncode}: "
                                      f"{output.strip()[-500:]}\n{daemon.log_tail()}")
        return daemon.socket.exists()

    try:
        tenacity.Retrying(retry=tenacity.retry_if_result(lambda ok: not ok), wait=tenacity.wait_fixed(0.2),
                          stop=tenacity.stop_after_delay(wait_s))(ready)
    except tenacity.RetryError:
        raise LibvirtdUnavailable(f"libvirtd did not open its socket within {wait_s:.0f}s:\n"
                                  f"{daemon.log_tail()}") from None
