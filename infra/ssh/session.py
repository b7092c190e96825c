"""`SshNode`: one node reached over SSH, with a session that survives the node rebooting.

Every command gets its own channel on a long-lived transport. Before a command the transport is
checked; a dropped one (node rebooted, connection reset) is rebuilt under the `ssh_transport_dropped`
retry policy within a Budget, and a read-only command cut off by a drop runs again on the new
transport. A command that must not run twice (`idempotent=False`, e.g. `reboot`) is never re-run.
"""
from __future__ import annotations

import logging
import select
import shlex
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

import paramiko
import tenacity
from pydantic import SecretStr

from infra.report.redact import register_secret
from infra.waits.budget import Budget, Deadline, WaitTimeout
from infra.waits.retry import is_ssh_transport_dropped, retry_ssh_transport_dropped

from .known_hosts import KnownHosts, entry_name
from .result import CommandInterrupted, CommandResult, CommandTimeout, RemoteFileError

log = logging.getLogger("harvester_e2e.ssh")
T = TypeVar("T")

DEFAULT_RECONNECT_BUDGET = Budget("SSH session rebuilt", 300)
BOOT_ID_COMMAND = "cat /proc/sys/kernel/random/boot_id"     # changes on every boot; kubelet reports it too
_NEEDS_PASSWORD = "a password is required"                 # sudo -n's words when the user has no NOPASSWD
TRANSPORT_SETTLE_SECONDS = 1.0          # a dropped transport's thread ends within this of closing its channels


@dataclass(frozen=True)
class SshTarget:
    """How to reach one node: address, login, and the host key provisioning knows (if it does)."""

    name: str
    host: str
    port: int = 22
    user: str = "rancher"
    key_file: Path | None = None
    password: SecretStr | None = field(default=None, repr=False)
    host_key: str | None = None        # "ssh-ed25519 AAAA..." pinned from provisioning

    @property
    def address(self) -> str:
        return f"{self.user}@{entry_name(self.host, self.port)}"


class TransportDropped(ConnectionError):
    """The SSH transport went away under us (transient: the session is rebuilt and retried)."""


@dataclass
class SshAuthFailed(Exception):
    """The node refused the key or password (not retried; the credentials are never shown)."""

    node: str
    address: str
    method: str

    def __str__(self) -> str:
        return f"{self.node} ({self.address}) refused authentication with {self.method}"


def parse_os_release(text: str) -> dict[str, str]:
    """`/etc/os-release` as a mapping (shell-style quoting, per os-release(5))."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, raw = line.partition("=")
        try:
            parts = shlex.split(raw)
        except ValueError:
            parts = [raw]
        values[key] = parts[0] if parts else ""
    return values


class SshNode:
    """Run commands on a node, `sudo` them, fetch files; reconnects by itself after a drop or reboot."""

    def __init__(self, target: SshTarget, known_hosts: KnownHosts, *, connect_timeout: float = 15.0,
                 command_timeout: float = 300.0, reconnect_budget: Budget = DEFAULT_RECONNECT_BUDGET,
                 keepalive_seconds: int = 10, via: "SshNode | None" = None) -> None:
        """`via`: a jump host (`ssh -J`): the connection is a direct-tcpip channel through that node's session,
        as a VM's address on the cluster's pod or VM network is reached from outside."""
        if target.key_file is None and target.password is None:
            raise ValueError(f"node {target.name}: give a key_file or a password to log in as {target.user}")
        self.target = target
        self.known_hosts = known_hosts
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.reconnect_budget = reconnect_budget
        self.keepalive_seconds = keepalive_seconds
        self.via = via
        self.reconnects = 0                 # transports rebuilt after one dropped (not after close())
        self._dropped = False
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.RLock()
        self._sudo_needs_password = False
        if target.password is not None:
            register_secret(target.password.get_secret_value())
        if target.host_key:
            known_hosts.pin(target.host, target.port, target.host_key)

    @property
    def name(self) -> str:
        return self.target.name

    def __repr__(self) -> str:
        return f"SshNode({self.name}, {self.target.address})"

    def __enter__(self) -> "SshNode":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the transport -----------------------------------------------------------------------------
    def _connect(self, timeout: float | None = None) -> paramiko.SSHClient:
        """`timeout`: for each stage of the login (TCP, banner, auth), default `connect_timeout`."""
        target = self.target
        timeout = self.connect_timeout if timeout is None else timeout
        client = paramiko.SSHClient()        # keeps no host keys of its own: every key goes through the policy
        client.set_missing_host_key_policy(self.known_hosts.policy(target.name, target.host, target.port))
        pkey = paramiko.PKey.from_path(target.key_file) if target.key_file else None
        password = target.password.get_secret_value() if target.password else None
        try:
            sock = self.via.open_tunnel(target.host, target.port, timeout) if self.via is not None else None
            client.connect(target.host, target.port, username=target.user, pkey=pkey, password=password,
                           timeout=timeout, banner_timeout=timeout, auth_timeout=timeout, channel_timeout=timeout,
                           look_for_keys=False, allow_agent=False, sock=sock)
        except paramiko.AuthenticationException:
            client.close()
            method = f"key {target.key_file}" if pkey else "the configured password"
            if pkey and password:
                method += " and the configured password"
            raise SshAuthFailed(target.name, target.address, method) from None
        except BaseException:
            client.close()
            raise
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(self.keepalive_seconds)    # notices a peer that vanished without a FIN
        if self.via is None:
            transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # no 40 ms delayed-ACK stalls
        return client

    def open_tunnel(self, host: str, port: int, timeout: float | None = None) -> paramiko.Channel:
        """A direct-tcpip channel from this node to host:port (what `ssh -J` asks of a jump host)."""
        try:
            return self._transport().open_channel("direct-tcpip", (host, port), ("127.0.0.1", 0),
                                                  timeout=timeout or self.connect_timeout)
        except paramiko.ChannelException as exc:       # the node could not connect there (refused, unreachable)
            raise ConnectionRefusedError(f"{self.name} cannot reach {host}:{port}: {exc}") from None

    def _transport(self, connect_timeout: float | None = None) -> paramiko.Transport:
        """The live transport, rebuilt (one attempt, within `connect_timeout`) if the last one dropped."""
        with self._lock:
            client = self._client
            transport = client.get_transport() if client else None
            if transport is not None and transport.is_active():
                return transport
            if client is not None:
                log.warning("ssh %s: the transport dropped; rebuilding it", self.name)
                client.close()
                self._client = None
                self._dropped = True
            self._client = self._connect(connect_timeout)
            if self._dropped:
                self._dropped = False
                self.reconnects += 1
                log.info("ssh %s: session rebuilt (reconnect #%d)", self.name, self.reconnects)
            transport = self._client.get_transport()
            assert transport is not None
            return transport

    def close(self) -> None:
        """End the transport; a later command opens a new one."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _with_reconnect(self, attempt: Callable[[], T], budget: Budget | None, awaited: str) -> T:
        budget = budget or self.reconnect_budget
        deadline = budget.start()
        try:
            return retry_ssh_transport_dropped(budget.seconds)(attempt)
        except Exception as exc:
            if is_ssh_transport_dropped(exc):
                raise self._unreachable(budget, deadline, awaited, exc) from exc
            raise

    def _unreachable(self, budget: Budget, deadline: Deadline, awaited: str, exc: BaseException) -> WaitTimeout:
        last = f"{type(exc).__name__}: {exc}"
        return WaitTimeout(budget, f"{awaited} on {self.name} ({self.target.address})", deadline.elapsed, last,
                           evidence={"node": self.name, "address": self.target.address, "last error": last,
                                     "reconnects so far": str(self.reconnects)})

    # --- commands ----------------------------------------------------------------------------------
    def run(self, command: str, *, input: str | None = None, timeout: float | None = None, check: bool = False,
            idempotent: bool = True, budget: Budget | None = None) -> CommandResult:
        """Run `command`; on a dropped transport rebuild it within `budget` (and re-run if `idempotent`)."""
        timeout = self.command_timeout if timeout is None else timeout

        def attempt() -> CommandResult:
            return self._exec(self._transport(), command, input, timeout, idempotent)

        result = self._with_reconnect(attempt, budget, f"`{command}`")
        return result.check() if check else result

    def sudo(self, command: str, *, input: str | None = None, timeout: float | None = None, check: bool = False,
             idempotent: bool = True, budget: Budget | None = None) -> CommandResult:
        """Run `command` as root: `sudo -n` first; `sudo -S` with the login password if the node asks for it."""
        options: dict[str, Any] = {"timeout": timeout, "idempotent": idempotent, "budget": budget}
        if self.target.user == "root":
            return self.run(command, input=input, check=check, **options)
        shell = f"sh -c {shlex.quote(command)}"
        password = self.target.password
        if not (self._sudo_needs_password and password is not None):
            result = self.run(f"sudo -n -- {shell}", input=input, **options)
            if result.ok or password is None or _NEEDS_PASSWORD not in result.stderr:
                return result.check() if check else result
            self._sudo_needs_password = True
        assert password is not None
        secret_input = password.get_secret_value() + "\n" + (input or "")
        result = self.run(f"sudo -S -p '' -- {shell}", input=secret_input, **options)
        return result.check() if check else result

    def _exec(self, transport: paramiko.Transport, command: str, input: str | None, timeout: float,
              idempotent: bool) -> CommandResult:
        started = time.monotonic()
        try:
            channel = transport.open_session(timeout=self.connect_timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise TransportDropped(f"could not open a session: {exc}") from exc
        try:
            channel.exec_command(command)
            if input:
                channel.sendall(input.encode())
            channel.shutdown_write()
            exit_status, stdout, stderr = self._collect(channel, transport, command, started + timeout, timeout)
        except (TransportDropped, paramiko.SSHException, EOFError, OSError) as exc:
            if idempotent:
                raise TransportDropped(f"the connection dropped during `{command}`: {exc}") from exc
            raise CommandInterrupted(f"the connection to {self.name} dropped while `{command}` ran; it may or may "
                                     f"not have completed ({exc})") from exc
        finally:
            channel.close()
        log.info("ssh %s: `%s` -> exit %d in %.0f ms", self.name, command, exit_status,
                 (time.monotonic() - started) * 1000)
        return CommandResult(exit_status, stdout, stderr, command=command, node=self.name)

    def _collect(self, channel: paramiko.Channel, transport: paramiko.Transport, command: str, deadline: float,
                 timeout: float) -> tuple[int, str, str]:
        out: list[bytes] = []
        err: list[bytes] = []

        def drain() -> None:
            while channel.recv_ready():
                out.append(channel.recv(65536))
            while channel.recv_stderr_ready():
                err.append(channel.recv_stderr(65536))

        while True:
            drain()
            finished = channel.exit_status_ready() and (channel.eof_received or channel.closed)
            if finished and not channel.recv_ready() and not channel.recv_stderr_ready():
                break
            if channel.closed and not channel.exit_status_ready():
                if not transport.is_active():
                    raise TransportDropped("the channel closed with the transport")
                drain()
                return -1, b"".join(out).decode(errors="replace"), b"".join(err).decode(errors="replace")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CommandTimeout(self.name, command, timeout, b"".join(out).decode(errors="replace"),
                                     b"".join(err).decode(errors="replace"))
            if channel.eof_received:          # output is complete; only the exit status is still to come
                channel.status_event.wait(min(remaining, 0.25))
            else:
                select.select([channel], [], [], min(remaining, 0.25))
        if channel.exit_status == -1:         # closed with no exit status: the command was cut off
            self._raise_if_transport_dropped(transport)
        return channel.recv_exit_status(), b"".join(out).decode(errors="replace"), b"".join(err).decode(errors="replace")

    @staticmethod
    def _raise_if_transport_dropped(transport: paramiko.Transport) -> None:
        """A channel closed without an exit status because its connection dropped is a drop, not "exit -1".
        paramiko closes a dead transport's channels (which also marks their status ready) before it marks
        the transport inactive, so give its thread a moment to finish (bounded: a live transport whose
        server closed the channel, e.g. after a signal, costs at most this wait)."""
        if transport.is_active():
            transport.join(TRANSPORT_SETTLE_SECONDS)
        if not transport.is_active():
            raise TransportDropped("the connection dropped before the command's exit status arrived")

    # --- files -------------------------------------------------------------------------------------
    def get(self, remote_path: str, local_path: Path, *, budget: Budget | None = None) -> Path:
        """Copy a remote file here over SFTP (re-tried after a drop; a missing file is `RemoteFileError`)."""
        local_path = Path(local_path)
        local_path.parent.mkdir(parents=True, exist_ok=True)

        def attempt() -> Path:
            transport = self._transport()
            try:
                sftp = paramiko.SFTPClient.from_transport(transport)
            except (paramiko.SSHException, EOFError, OSError) as exc:
                raise TransportDropped(f"could not open SFTP: {exc}") from exc
            assert sftp is not None
            try:
                sftp.get(remote_path, str(local_path))
            except (paramiko.SSHException, EOFError) as exc:
                raise TransportDropped(f"the connection dropped fetching {remote_path}: {exc}") from exc
            except OSError as exc:
                if not transport.is_active():
                    raise TransportDropped(f"the connection dropped fetching {remote_path}: {exc}") from exc
                reason = exc.strerror or str(exc) or type(exc).__name__
                raise RemoteFileError(f"{self.name}: cannot fetch {remote_path}: {reason}") from None
            finally:
                sftp.close()
            log.info("ssh %s: fetched %s to %s", self.name, remote_path, local_path)
            return local_path

        return self._with_reconnect(attempt, budget, f"SFTP get {remote_path}")

    # --- node facts and power ---------------------------------------------------------------------
    def os_release(self) -> dict[str, str]:
        return parse_os_release(self.run("cat /etc/os-release", check=True).stdout)

    def boot_id(self) -> str:
        return self.run(BOOT_ID_COMMAND, check=True).stdout.strip()

    def wait_reachable(self, budget: Budget) -> None:
        """Until a session can be opened (e.g. after the node was powered on), within `budget`."""
        self.run("true", budget=budget, check=True)

    def reboot(self, budget: Budget) -> str:
        """`sudo reboot`, then wait within `budget` until the node answers with a new boot id; return it."""
        before = self.boot_id()
        try:
            self.sudo("reboot", idempotent=False, check=True)
        except CommandInterrupted:
            pass                      # the node went down before it said so: what a reboot looks like
        deadline = budget.start()
        seen = {"last": "nothing yet"}

        def new_boot_id() -> str:
            # One attempt never outlasts the budget by more than a second: a login to a node that is still
            # booting may hang in the banner for the whole connect timeout.
            left = max(1.0, deadline.remaining)
            result = self._exec(self._transport(min(self.connect_timeout, left)), BOOT_ID_COMMAND, None,
                                min(self.command_timeout, left), True)
            boot_id = result.check().stdout.strip()
            if boot_id == before:
                seen["last"] = f"boot id still {before} (the node has not gone down yet)"
            return boot_id

        def note(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if exc is not None:
                seen["last"] = f"{type(exc).__name__}: {exc}"
            log.warning("ssh_transport_dropped: %s: attempt %d: %s", self.name, state.attempt_number, seen["last"])

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_ssh_transport_dropped) | tenacity.retry_if_result(
                lambda boot_id: boot_id == before),
            wait=tenacity.wait_exponential(multiplier=0.1, max=2.0),
            stop=tenacity.stop_after_delay(budget.seconds), before_sleep=note)
        try:
            after = retrying(new_boot_id)
        except tenacity.RetryError as exc:
            raise WaitTimeout(budget, f"{self.name} to come back from a reboot with a new boot id",
                              deadline.elapsed, seen["last"],
                              evidence={"node": self.name, "boot id before": before, "last seen": seen["last"],
                                        "reconnects": str(self.reconnects)}) from exc.last_attempt.exception()
        log.info("ssh %s: rebooted in %.1fs (boot id %s -> %s)", self.name, deadline.elapsed, before, after)
        return after
