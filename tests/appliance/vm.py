"""Plain qemu for the appliance tests (no libvirt): a VM shaped like the libvirt backend's domains (i440fx `pc`,
BIOS, virtio disk, IDE cdrom, serial console to a file, user-mode NIC with SSH forwarded to 127.0.0.1 only at
the PCI slot the backend uses), an HTTP server on 127.0.0.1 for the install config, and bounded waits that
end in a diagnosis (the console's tail)."""
from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from infra.waits.poll import poll_until
from infra.waits.budget import Budget, WaitTimeout

USER_NIC_PCI_SLOT = "0x1e"          # infra/provision/xmlgen.py USER_NIC_PCI_SLOT: the guest names it ens30
NIC_MAC = "52:54:00:e2:e0:01"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ConfigServer:
    """Serves documents on 127.0.0.1 (the guest reaches it as 10.0.2.2 through slirp)."""

    def __init__(self) -> None:
        documents: dict[str, bytes] = {}
        fetched: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                body = documents.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                fetched.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "application/yaml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.documents, self.fetched = documents, fetched
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def guest_url(self, path: str) -> str:
        return f"http://10.0.2.2:{self.port}{path}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class QemuVM:
    """One qemu process; `console` is its serial console (ttyS0) log."""

    workdir: Path
    disk: Path
    ssh_port: int
    memory_mib: int = 1024
    api_port: int | None = None       # 127.0.0.1:<api_port> -> <api_ip>:6443 (the VIP's Harvester API)
    api_ip: str = "10.0.2.10"
    process: subprocess.Popen[bytes] | None = None
    console: Path = field(init=False)
    monitor: Path = field(init=False)
    boots: int = 0

    def __post_init__(self) -> None:
        self.console = self.workdir / "console.log"
        self.monitor = self.workdir / "monitor.sock"

    def start(self, kernel: Path | None = None, initrd: Path | None = None, append: str = "",
              cdrom: Path | None = None) -> None:
        assert self.process is None or self.process.poll() is not None, "the VM is still running"
        self.boots += 1
        command = ["qemu-system-x86_64", "-machine", "pc", "-accel", "tcg", "-m", str(self.memory_mib),
                   "-smp", "1", "-nographic", "-no-user-config", "-nodefaults",
                   "-chardev", f"file,id=console,path={self.console},append=on",
                   "-serial", "chardev:console",
                   "-monitor", f"unix:{self.monitor},server=on,wait=off",
                   "-drive", f"file={self.disk},if=virtio,format=qcow2,discard=unmap",
                   "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22"
                              + (f",hostfwd=tcp:127.0.0.1:{self.api_port}-{self.api_ip}:6443" if self.api_port else ""),
                   "-device", f"virtio-net-pci,netdev=net0,mac={NIC_MAC},addr={USER_NIC_PCI_SLOT}",
                   "-object", "rng-random,id=rng0,filename=/dev/urandom",
                   "-device", "virtio-rng-pci,rng=rng0"]
        if cdrom is not None:
            command += ["-drive", f"file={cdrom},if=ide,index=2,media=cdrom,readonly=on"]   # hdc, as libvirt
        if kernel is not None:
            command += ["-kernel", str(kernel), "-initrd", str(initrd), "-append", append]
        else:   # BIOS boot, as libvirt's <boot dev='cdrom'/><boot dev='hd'/> (the ISO is not bootable: on to hd)
            command += ["-boot", "order=dc" if cdrom is not None else "order=c"]
        with (self.workdir / "console.log").open("a") as log:
            log.write(f"\n===== boot {self.boots}: {' '.join(command[-6:])} =====\n")
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=(self.workdir / f"qemu-{self.boots}.stderr").open("wb"),
                                        start_new_session=True)

    def console_text(self) -> str:
        try:
            return self.console.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def console_tail(self, lines: int = 60) -> str:
        return "\n".join(self.console_text().splitlines()[-lines:])

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_for(self, what: str, budget: Budget, check: Callable[[], bool], interval: float = 2.0) -> float:
        """Poll `check` until true; on the budget's end a WaitTimeout carrying the console tail. Returns seconds."""
        deadline = budget.start()

        def settled() -> bool | None:
            if check():
                return True
            if self.process is not None and self.process.poll() is not None and what != "qemu to exit":
                raise WaitTimeout(budget, what, deadline.elapsed,
                                  last_seen=f"qemu exited ({self.process.returncode}); console tail:\n"
                                            f"{self.console_tail()}")
            return None

        poll_until(settled, budget, what, evidence=lambda: {"console tail": self.console_tail()}, interval_s=interval)
        return deadline.elapsed

    def wait_for_console(self, needle: str, budget: Budget, after: int = 0) -> float:
        return self.wait_for(f"{needle!r} on the console", budget, lambda: needle in self.console_text()[after:])

    def wait_exit(self, budget: Budget) -> float:
        return self.wait_for("qemu to exit", budget, lambda: not self.running())

    def monitor_command(self, command: str) -> None:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(str(self.monitor))
            sock.sendall(command.encode() + b"\n")
            seen = b""
            while seen.count(b"(qemu)") < 2:        # the banner's prompt, then the one after the command ran
                chunk = sock.recv(4096)             # bounded by the socket's timeout
                if not chunk:
                    break
                seen += chunk

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
