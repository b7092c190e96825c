"""What runs in a simulated pod: its containers' filesystems, their main processes, and the ports they serve.

The simulator runs no containers. A container of a Running pod is instead:
* a filesystem (`PodFilesystem`): an in-memory root kept per pod, with its volumeMounts over it. A
  volume is what `VolumeSource` says (the guest's CSI volumes, bytes kept in the host Longhorn volume and
  reachable only while attached where the pod runs), else an emptyDir-like tree kept per pod (emptyDir,
  hostPath) or per claim (other PVCs), or a read-only tree of a ConfigMap's or Secret's keys;
* `exec`: the command, run by the shared shell (`infra/simulator/shell.py`) with the pod's commands;
* its main process, for `attach`: a shell reading stdin when the container is `sh` with `stdin: true`
  (each line runs; what it prints goes to the attached client and the container log), else a process
  that prints nothing;
* its listening ports, for `portforward`: busybox `httpd -f -p PORT [-h DIR]` in the container's command
  serves files of the pod's filesystem over HTTP/1.0.
All of it is asked on the API server's loop (`prepare`, `listener`) and runs on a thread of its own
(`run`), reaching the loop only through `LoopBridge`.
"""
from __future__ import annotations

import asyncio
import base64
import errno
import shlex
import threading
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Protocol

from ..apiserver.objects import ObjectApi
from ..shell import Output, Shell, normalise, to_text
from .commands import pod_shell
from .filesystem import FileTree, Mount, PodFilesystem, base_root

Obj = dict[str, Any]
SHELLS = ("sh", "/bin/sh", "ash", "/bin/ash", "bash", "/bin/bash")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class VolumeSource(Protocol):
    def __call__(self, pod: Obj, volume: Obj, mount: Obj) -> Mount | None: ...


class NotRunning(Exception):
    """The container has no process to exec in or attach to; the message is the kubelet's."""


class StdinPipe:
    """What the client sends on stdin, for a command on another thread: read whole, or line by line."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._closed = False
        self._ready = threading.Condition()

    def feed(self, data: bytes) -> None:
        with self._ready:
            self._data += data
            self._ready.notify_all()

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def read_all(self) -> str:
        with self._ready:
            while not self._closed:
                self._ready.wait(0.5)
            data, self._data = bytes(self._data), bytearray()
        return to_text(data)

    def readline(self) -> str | None:
        """One line (without its newline), or None once the client closed stdin and nothing is left."""
        with self._ready:
            while b"\n" not in self._data and not self._closed:
                self._ready.wait(0.5)
            if b"\n" in self._data:
                line, _, rest = bytes(self._data).partition(b"\n")
                self._data = bytearray(rest)
                return to_text(line)
            if self._data:
                line, self._data = bytes(self._data), bytearray()
                return to_text(line)
            return None


@dataclass
class Listener:
    """A port a container's main process serves: busybox httpd over the pod's filesystem."""

    port: int
    document_root: str
    filesystem: Callable[[], PodFilesystem]


@dataclass
class PodProcesses:
    """What one pod (by uid) keeps between requests: its root filesystem and its emptyDir volumes."""

    root: FileTree
    scratch: dict[str, FileTree] = field(default_factory=dict)


@dataclass
class Session:
    """One exec or attach, prepared on the loop."""

    pod: Obj
    container: Obj
    shell: Shell
    env: dict[str, str]
    cwd: str
    interactive: bool              # attach: the main process is a shell reading stdin


class PodRuntime:
    def __init__(self, api: ObjectApi, bridge: Any, volumes: VolumeSource | None = None) -> None:
        self.api = api
        self.bridge = bridge
        self.volumes = volumes
        self._pods: dict[str, PodProcesses] = {}
        self._claims: dict[tuple[str, str], FileTree] = {}

    # --- on the loop ------------------------------------------------------------------------------
    def _processes(self, pod: Obj) -> PodProcesses:
        uid = pod["metadata"].get("uid", pod["metadata"]["name"])
        if uid not in self._pods:
            live = {p["metadata"].get("uid") for p in self.api.list(self.api.lookup("", "v1", "pods")).items}
            for stale in [u for u in self._pods if u not in live]:
                del self._pods[stale]
            self._pods[uid] = PodProcesses(base_root(self._hostname(pod), {}))
        return self._pods[uid]

    @staticmethod
    def _hostname(pod: Obj) -> str:
        return (pod.get("spec") or {}).get("hostname") or pod["metadata"]["name"]

    @staticmethod
    def check_running(pod: Obj, container: str) -> None:
        """Like the kubelet's findContainer: only a started container of a Running pod has a process."""
        status = pod.get("status") or {}
        statuses = {s.get("name"): s for s in status.get("containerStatuses") or []}
        running = status.get("phase") == "Running" and (
            not statuses or "running" in ((statuses.get(container) or {}).get("state") or {}))
        if not running:
            raise NotRunning(f'container not found ("{container}")')

    def filesystem(self, pod: Obj, container: Obj) -> PodFilesystem:
        processes = self._processes(pod)
        volumes = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or []}
        mounts = []
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount.get("name"), {})
            found = self.volumes(pod, volume, mount) if self.volumes is not None else None
            mounts.append(found or self._local_volume(pod, processes, volume, mount))
        return PodFilesystem(processes.root, mounts)

    def _local_volume(self, pod: Obj, processes: PodProcesses, volume: Obj, mount: Obj) -> Mount:
        path, read_only = mount["mountPath"], bool(mount.get("readOnly"))
        namespace = pod["metadata"].get("namespace", "")
        for key, plural in (("configMap", "configmaps"), ("secret", "secrets")):
            source = volume.get(key)
            if source is not None:
                name = source.get("name") or source.get("secretName") or ""
                obj = self.api.find(self.api.lookup("", "v1", plural), namespace, name) or {}
                tree = FileTree()
                for item, value in (obj.get("data") or {}).items():
                    tree.files[item] = base64.b64decode(value) if key == "secret" else str(value).encode()
                return Mount(path, _always(tree), read_only=True)
        claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
        if claim:
            tree = self._claims.setdefault((namespace, claim), FileTree())
        else:
            tree = processes.scratch.setdefault(str(volume.get("name") or path), FileTree())
        return Mount(path, _always(tree), read_only)

    def environment(self, pod: Obj, container: Obj, tty: bool) -> dict[str, str]:
        env = {"PATH": DEFAULT_PATH, "HOSTNAME": self._hostname(pod), "HOME": "/root"}
        if tty:
            env["TERM"] = "xterm"
        service = self.api.find(self.api.lookup("", "v1", "services"), "default", "kubernetes")
        cluster_ip = ((service or {}).get("spec") or {}).get("clusterIP")
        if cluster_ip:
            env.update(KUBERNETES_SERVICE_HOST=cluster_ip, KUBERNETES_SERVICE_PORT="443")
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = str(item["value"])
        return env

    def prepare(self, pod: Obj, container_name: str, tty: bool = False) -> Session:
        self.check_running(pod, container_name)
        container = next(c for c in (pod.get("spec") or {}).get("containers") or []
                         if c.get("name") == container_name)
        env = self.environment(pod, container, tty)
        fs = self.filesystem(pod, container)
        shell = pod_shell(_BridgedFilesystem(fs, self.bridge), self._hostname(pod), env)  # type: ignore[arg-type]
        main = main_command(container)
        interactive = bool(main) and main[0] in SHELLS and "-c" not in main[1:] and bool(container.get("stdin"))
        return Session(pod, container, shell, env, container.get("workingDir") or "/", interactive)

    def listener(self, pod: Obj, port: int) -> Listener | None:
        for container in (pod.get("spec") or {}).get("containers") or []:
            served = httpd_port(main_command(container))
            if served is not None and served[0] == port:
                try:
                    self.check_running(pod, container["name"])
                except NotRunning:
                    return None
                fs = self.filesystem(pod, container)
                return Listener(port, served[1], lambda fs=fs: _BridgedFilesystem(fs, self.bridge))  # type: ignore
        return None

    # --- on a thread of the request's own -----------------------------------------------------------
    @staticmethod
    def run(session: Session, command: list[str], stdin: Callable[[], str], hung_up: Callable[[], bool]) -> Output:
        return session.shell.execute(command, stdin, 0, "sh", hung_up, env=session.env, cwd=session.cwd)

    def attach(self, session: Session, stdin: StdinPipe | None, write: Callable[[str, str], None],
               hung_up: Callable[[], bool]) -> None:
        """The main process as an attached client sees it, until the client leaves (or closes stdin)."""
        meta = session.pod["metadata"]
        while not hung_up():
            if not session.interactive or stdin is None:
                hung_up_event_wait(hung_up)
                return
            line = stdin.readline()
            if line is None:
                return
            result = session.shell.run(line, lambda: "", 0, "sh", hung_up, env=session.env, cwd=session.cwd)
            for text in (result.stdout, result.stderr):
                for logged in text.splitlines():
                    self.bridge.soon(self.api.logs.append, meta.get("namespace", ""), meta["name"],
                                     session.container["name"], logged)
            write(result.stdout, result.stderr)


def _always(tree: FileTree) -> Callable[[], FileTree]:
    """A mount whose storage is always there (in memory, kept by the runtime)."""
    return lambda: tree


def hung_up_event_wait(hung_up: Callable[[], bool]) -> None:
    event = threading.Event()
    while not hung_up():
        event.wait(0.2)


def main_command(container: Obj) -> list[str]:
    """The container's process as the runtime starts it; busybox images start `sh` when nothing is given."""
    argv = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
    if not argv and "busybox" in str(container.get("image", "")):
        argv = ["sh"]
    return argv


def httpd_port(argv: list[str]) -> tuple[int, str] | None:
    """(port, document root) when the main process is (or its `sh -c` script runs) `httpd -f -p PORT`."""
    words = list(argv)
    if len(words) >= 3 and words[0] in SHELLS and words[1] == "-c":
        try:
            words = shlex.split(words[2])
        except ValueError:
            return None
    for index, word in enumerate(words):
        if word.rsplit("/", 1)[-1] != "httpd":
            continue
        port, root, rest = 80, "/var/www", words[index + 1:]
        while rest:
            option = rest.pop(0)
            if option == "-p" and rest:
                value = rest.pop(0).rsplit(":", 1)[-1]
                port = int(value) if value.isdigit() else port
            elif option == "-h" and rest:
                root = normalise(rest.pop(0))
            elif option in (";", "&&", "||", "|"):
                break
        return port, root
    return None


class _BridgedFilesystem:
    """A PodFilesystem whose mounts ask the loop (through the bridge) when called from another thread."""

    def __init__(self, fs: PodFilesystem, bridge: Any) -> None:
        self._fs = fs
        self._bridge = bridge

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._fs, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if _on_loop(self._bridge):
                return method(*args, **kwargs)
            return self._bridge.call(lambda: method(*args, **kwargs))
        return call


def _on_loop(bridge: Any) -> bool:
    try:
        return asyncio.get_running_loop() is bridge.loop
    except RuntimeError:
        return False


async def serve_http(listener: Listener, receive: Callable[[], Awaitable[bytes | None]],
                     send: Callable[[bytes], Awaitable[None]]) -> None:
    """busybox httpd's answer to one connection: GET/HEAD of a file under the document root (HTTP/1.0)."""
    request = b""
    while b"\r\n\r\n" not in request and b"\n\n" not in request and len(request) < 65536:
        chunk = await receive()
        if not chunk:
            break
        request += chunk
    line = request.split(b"\n", 1)[0].decode("latin-1").strip().split()
    if len(line) < 2:
        await send(_http(400, "Bad Request", b"<HTML><HEAD><TITLE>400 Bad Request</TITLE></HEAD>\n"))
        return
    method, target = line[0], line[1].split("?", 1)[0]
    if method not in ("GET", "HEAD"):
        await send(_http(501, "Not Implemented", b"<HTML><HEAD><TITLE>501 Not Implemented</TITLE></HEAD>\n"))
        return
    path = normalise(f"{listener.document_root}/{target}")
    fs = listener.filesystem()                # on the loop: the mounts are asked directly
    try:
        found = fs.stat(path)
        if found is not None and found[0] == "dir":
            path = normalise(f"{path}/index.html")
        body = fs.read(path)
    except OSError as exc:
        code, reason = (404, "Not Found") if exc.errno in (errno.ENOENT, errno.EISDIR) else (500, "Internal Server Error")
        await send(_http(code, reason, f"<HTML><HEAD><TITLE>{code} {reason}</TITLE></HEAD>\n".encode()))
        return
    await send(_http(200, "OK", body, head_only=method == "HEAD"))


def _http(code: int, reason: str, body: bytes, head_only: bool = False) -> bytes:
    kind = "text/html" if body.startswith(b"<HTML>") or body.lstrip().lower().startswith(b"<!doctype") else \
        "application/octet-stream"
    head = (f"HTTP/1.0 {code} {reason}\r\nContent-type: {kind}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    return head + (b"" if head_only else body)
