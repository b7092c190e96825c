"""A node's sshd: a real paramiko SSH server on 127.0.0.1, in threads inside the simulator process.

One listening socket per node (its own port, its own ed25519 host key). Each connection gets a
paramiko Transport; its thread keeps accepting channels for as long as the transport lives (a
server that stops accepting makes the client's second exec hang). Each exec runs in its own thread.
Going dark (shutdown, reboot) closes the listener, so connecting is refused, and drops every session.

Port forwarding (`ssh -J`, `-L`): a `direct-tcpip` channel is opened only to what `forward` routes (the VM
guests on the cluster's networks, `kubevirt/guests.py`), which then serves the channel; anything else is
refused with "connect failed" (no real socket is ever opened).
"""
from __future__ import annotations

import base64
import hmac
import io
import logging
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..shell import Output, to_bytes, to_text

log = logging.getLogger(__name__)
USER = "rancher"
CLIENT_CLOSE_WAIT_SECONDS = 5.0
DROP_AFTER_EXEC_WAIT_SECONDS = 1.0


@dataclass(frozen=True)
class NodeLogin:
    """Who may log in as `rancher`: the authorized public keys, and a password (off unless given)."""

    authorized_keys: tuple[paramiko.PKey, ...] = ()
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_files(cls, authorized_keys: Path | None, password_file: Path | None) -> "NodeLogin":
        keys: list[paramiko.PKey] = []
        if authorized_keys is not None:
            for line in authorized_keys.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 2 and not line.startswith("#"):
                    keys.append(paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1])))
        password = password_file.read_text().rstrip("\n") if password_file is not None else None
        return cls(tuple(keys), password or None)


def new_host_key() -> paramiko.PKey:
    """A fresh ed25519 host key (paramiko reads ed25519 keys but cannot make them)."""
    pem = Ed25519PrivateKey.generate().private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                                     serialization.NoEncryption()).decode()
    return paramiko.Ed25519Key(file_obj=io.StringIO(pem))


RunCommand = Callable[[str, Callable[[], str], Callable[[], bool]], Output]   # (line, stdin, hung up?) -> output
# (host, port) -> what serves a direct-tcpip channel to it, or None: refused
Forward = Callable[[str, int], "Callable[[paramiko.Channel], None] | None"]


class _Interface(paramiko.ServerInterface):
    def __init__(self, sshd: "NodeSshd") -> None:
        self.sshd = sshd
        self.forwards: dict[int, Callable[[paramiko.Channel], None]] = {}   # channel id -> what serves it
        self.authenticated = False

    def get_allowed_auths(self, username: str) -> str:
        return "publickey,password" if self.sshd.login.password else "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if username == USER and any(key == known for known in self.sshd.login.authorized_keys):
            self.authenticated = True
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_auth_password(self, username: str, password: str) -> int:
        expected = self.sshd.login.password
        if expected and username == USER and hmac.compare_digest(password.encode(), expected.encode()):
            self.authenticated = True
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_direct_tcpip_request(self, chanid: int, origin: tuple[str, int],
                                           destination: tuple[str, int]) -> int:
        """`ssh -J` / `-L` through the node: only to what the cluster's network routes (a VM guest's sshd)."""
        if not self.authenticated or self.sshd.forward is None:
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        host, port = str(destination[0]), int(destination[1])
        try:
            serve = self.sshd.forward(host, port)
        except Exception:  # noqa: BLE001 - a routing bug refuses the channel, it must not kill the session
            log.exception("sshd %s: routing %s:%s failed", self.sshd.name, host, port)
            serve = None
        if serve is None:
            log.debug("sshd %s: direct-tcpip to %s:%s refused", self.sshd.name, host, port)
            return paramiko.OPEN_FAILED_CONNECT_FAILED
        self.forwards[chanid] = serve
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        text = command.decode(errors="replace")
        threading.Thread(target=self.sshd.exec, args=(channel, text), daemon=True,
                         name=f"sshd-{self.sshd.name}-exec").start()
        return True

    def check_channel_pty_request(self, *args: object) -> bool:
        return True

    def check_channel_env_request(self, channel: paramiko.Channel, name: bytes, value: bytes) -> bool:
        return True

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        return False        # commands only: the simulated node has no interactive shell


class _ChannelStdin:
    """The command's stdin, read to EOF on first use only (a command that ignores stdin never waits)."""

    def __init__(self, channel: paramiko.Channel, timeout: float = 30.0) -> None:
        self.channel, self.timeout = channel, timeout
        self._text: str | None = None

    def __call__(self) -> str:
        if self._text is None:
            chunks: list[bytes] = []
            self.channel.settimeout(self.timeout)
            try:
                while chunk := self.channel.recv(65536):
                    chunks.append(chunk)
            except (socket.timeout, OSError):
                pass
            self._text = to_text(b"".join(chunks))
        return self._text


def answer_exec(channel: paramiko.Channel, output: Output) -> None:
    """An exec channel's answer: stdout, stderr, the exit status, EOF; then the channel is closed."""
    try:
        if output.stdout:
            channel.sendall(to_bytes(output.stdout))
        if output.stderr:
            channel.sendall_stderr(to_bytes(output.stderr))
        channel.send_exit_status(output.status)
        channel.shutdown_write()
        # The client closes the channel once it has the status and EOF. Closing first could overtake the
        # server's reply to the exec request, which paramiko clients take for a failed exec.
        channel.status_event.wait(CLIENT_CLOSE_WAIT_SECONDS)
    except (OSError, EOFError, paramiko.SSHException):
        pass                                  # the session dropped (the machine going down): nothing to answer
    finally:
        channel.close()


class NodeSshd:
    def __init__(self, name: str, login: NodeLogin, host_key: paramiko.PKey, run_command: RunCommand,
                 sftp_interface: type[paramiko.SFTPServerInterface] | None = None, sftp_view: object = None,
                 drop_mid_command: Callable[[], bool] = lambda: False, forward: Forward | None = None) -> None:
        self.name = name
        self.forward = forward                        # direct-tcpip: where a forwarded connection goes
        self.drop_mid_command = drop_mid_command      # fault injection: lose this command's connection
        self.login = login
        self.host_key = host_key
        self.run_command = run_command
        self.sftp_interface = sftp_interface
        self.sftp_view = sftp_view              # what the SFTP subsystem serves (see sftp.py)
        self.host = "127.0.0.1"
        self.port = 0
        self._listener: socket.socket | None = None
        self._placeholder: socket.socket | None = None    # holds the port while the node is dark
        self._transports: set[paramiko.Transport] = set()
        self._lock = threading.Lock()
        self.commands_served = 0

    @property
    def public_key(self) -> str:
        return f"{self.host_key.get_name()} {self.host_key.get_base64()}"

    @property
    def accepting(self) -> bool:
        return self._listener is not None

    # --- lifecycle ------------------------------------------------------------------------------------
    def _socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)   # the placeholder and the listener share it
        return sock

    def listen(self) -> None:
        """Accept connections (again) on this node's port; the first call picks a free port."""
        with self._lock:
            if self._listener is not None:
                return
            listener = self._socket()
            listener.bind((self.host, self.port))
            listener.listen(16)
            self.port = listener.getsockname()[1]
            self._listener = listener
            if self._placeholder is not None:
                self._placeholder.close()
                self._placeholder = None
        threading.Thread(target=self._accept_loop, args=(listener,), daemon=True,
                         name=f"sshd-{self.name}-accept").start()

    def go_dark(self) -> None:
        """Refuse new connections and drop every session (the node is shutting down). The port stays bound (not
        listening: connecting is refused), or another socket on the machine could take it while the node is
        down, and the node could not listen on it again after the reboot."""
        with self._lock:
            listener, self._listener = self._listener, None
            if listener is not None and self._placeholder is None:
                self._placeholder = self._socket()
                self._placeholder.bind((self.host, self.port))
        if listener is not None:
            try:
                # close() alone leaves a thread blocked in accept() holding the port in LISTEN,
                # so the node could not listen again after a reboot; shutdown() wakes it.
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        self.drop_sessions()

    def close(self) -> None:
        """The node is gone for good (the simulator stops): dark, and its port released."""
        self.go_dark()
        with self._lock:
            if self._placeholder is not None:
                self._placeholder.close()
                self._placeholder = None

    def drop_sessions(self) -> int:
        with self._lock:
            transports = list(self._transports)
        for transport in transports:
            transport.close()
        return len(transports)

    # --- connections --------------------------------------------------------------------------------
    def _accept_loop(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                ready, _, _ = select.select([listener], [], [], 0.5)
                if not ready:
                    continue
                connection, _ = listener.accept()
            except (OSError, ValueError):
                return                       # closed by go_dark
            threading.Thread(target=self._serve, args=(connection,), daemon=True,
                             name=f"sshd-{self.name}-conn").start()

    def _serve(self, connection: socket.socket) -> None:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # small replies, not 40 ms ACK waits
        transport = paramiko.Transport(connection)
        transport.add_server_key(self.host_key)
        if self.sftp_interface is not None:
            transport.set_subsystem_handler("sftp", paramiko.SFTPServer, self.sftp_interface)
        with self._lock:
            if self._listener is None:           # went dark between accept and here
                transport.close()
                return
            self._transports.add(transport)
        open_channels: list[paramiko.Channel] = []
        interface = _Interface(self)
        try:
            transport.start_server(server=interface)
            while transport.is_active():
                # Keep accepting channels, or a second exec would hang; and keep them referenced: the
                # transport holds channels weakly, and a collected channel closes itself under the client.
                channel = transport.accept(1.0)
                open_channels = [c for c in open_channels if not c.closed]
                if channel is not None:
                    open_channels.append(channel)
                    serve = interface.forwards.pop(channel.get_id(), None)
                    if serve is not None:         # a forwarded connection: served for as long as it lasts
                        threading.Thread(target=self._forwarded, args=(serve, channel), daemon=True,
                                         name=f"sshd-{self.name}-forward").start()
        except (paramiko.SSHException, EOFError, OSError) as exc:
            log.debug("sshd %s: connection ended: %s", self.name, exc)
        finally:
            with self._lock:
                self._transports.discard(transport)
            transport.close()

    def _forwarded(self, serve: Callable[[paramiko.Channel], None], channel: paramiko.Channel) -> None:
        try:
            serve(channel)
        except Exception:  # noqa: BLE001 - the far end crashing closes the connection, as a reset would
            log.exception("sshd %s: forwarded connection failed", self.name)
        finally:
            channel.close()

    def exec(self, channel: paramiko.Channel, command: str) -> None:
        drop = self.drop_mid_command()
        try:
            output = self.run_command(command, _ChannelStdin(channel), lambda: channel.closed)
        except Exception:  # noqa: BLE001 - a command bug must answer like a crashed program, not hang
            log.exception("sshd %s: command failed: %s", self.name, command)
            output = Output(1, "", "simulated node: internal error running the command\n")
        self.commands_served += 1
        if drop:
            self._drop_mid_command(channel, command, output)
            return
        answer_exec(channel, output)

    def _drop_mid_command(self, channel: paramiko.Channel, command: str, output: Output) -> None:
        """Injected: the command ran, half its output went out, then the connection is lost (no exit status)."""
        log.info("sshd %s: injected fault: dropping the connection mid-command: %s", self.name, command)
        # Mid-command means after the exec request was answered: dropping sooner would look like a failed
        # exec. The client closes its stdin once it has the answer (the harness does at once); wait for that,
        # a bounded while (a client that keeps stdin open is dropped after it).
        waited = 0.0
        while not channel.eof_received and not channel.closed and waited < DROP_AFTER_EXEC_WAIT_SECONDS:
            time.sleep(0.01)
            waited += 0.01
        stdout = to_bytes(output.stdout)
        try:
            if stdout[:len(stdout) // 2]:
                channel.sendall(stdout[:len(stdout) // 2])
        except (OSError, EOFError, paramiko.SSHException):
            pass
        transport = channel.get_transport()
        if transport is not None:
            transport.close()
        channel.close()
