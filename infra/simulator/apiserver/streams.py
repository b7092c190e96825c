"""pods/exec, pods/attach and pods/portforward, as kube-apiserver and the kubelet behind it serve them.

Checks the API server makes before anything is proxied (kubernetes pkg/registry/core/pod/strategy.go,
streamLocation, v1.32): the pod exists (404), the container is named when the pod has several and exists
(400 "a container name must be specified for pod P, choose one of: [...]", "container C is not valid for
pod P"), the pod has a node (400 "pod P does not have a host assigned").

Then the WebSocket protocols, chosen from what the client offers, in its order:
* `v5.channel.k8s.io`, which kube-apiserver (>= 1.30, TranslateStreamCloseWebsocketRequests) serves itself
  and translates to SPDY towards the kubelet (staging/src/k8s.io/apiserver/pkg/util/proxy/
  streamtranslator.go, websocket.go): channel 255 carries "close stream N" from the client; a failure on
  the kubelet's side arrives as an InternalError Status on the error channel after the upgrade.
* `v4.channel.k8s.io`, `v4.base64.channel.k8s.io`, `channel.k8s.io`, `base64.channel.k8s.io` or none,
  which the API server proxies to the kubelet's CRI streaming server (pkg/kubelet/cri/streaming/
  remotecommand/websocket.go): a container without a process is refused before the upgrade (HTTP 500,
  `container not found ("C")`), v4 writes a metav1.Status on the error channel, v1 its message only on
  failure. Another offered protocol is refused (403) as golang.org/x/net/websocket's handshake does.
Channels 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize; the server first sends an empty frame on the
lowest writable channel (stdout, else stderr, else error). A non-zero exit is reported as the container
runtime and kubelet do: Status Failure, reason NonZeroExitCode, details.causes [{reason ExitCode, message N}].

Port forwarding (pkg/kubelet/cri/streaming/portforward/websocket.go): per requested port a data channel
(2i) and an error channel (2i+1), each first sent the port as a little-endian uint16; a port nothing
serves gets containerd's "connection refused" message on its error channel. kubectl >= 1.31 port-forward
tunnels SPDY through a WebSocket (`SPDY/3.1+portforward.k8s.io`, see `spdy`); older ones, and exec and
attach from kubectl < 1.30, upgrade the request itself to SPDY/3.1.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

from aiohttp import WSMsgType, web

from ..pods import NotRunning, PodRuntime, StdinPipe, serve_http
from ..shell import Output, to_bytes
from . import errors
from .objects import ObjectApi
from .spdy import SpdyError, SpdySession, SpdyStream

log = logging.getLogger(__name__)
T = TypeVar("T")

STREAM_SUBRESOURCES = ("attach", "exec", "portforward")
V5 = "v5.channel.k8s.io"
KUBELET_REMOTECOMMAND = ("v4.channel.k8s.io", "v4.base64.channel.k8s.io", "channel.k8s.io",
                         "base64.channel.k8s.io")
KUBELET_PORTFORWARD = ("v4.channel.k8s.io", "v4.base64.channel.k8s.io")
REMOTECOMMAND_SPDY = ("v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io")
STREAM_CREATION_SECONDS = 30.0        # the kubelet's streamCreationTimeout
PORTFORWARD_TUNNEL = "SPDY/3.1+portforward.k8s.io"        # kube-apiserver >= 1.31, PortForwardWebsockets
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
CHUNK = 32 * 1024
MAX_MESSAGE = 32 * 1024 * 1024
_BOOL_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_BOOL_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def _flag(query: Any, name: str) -> bool:
    value = query.get(name)
    if value is None or value == "":
        return False
    if value in _BOOL_TRUE:
        return True
    if value in _BOOL_FALSE:
        return False
    raise errors.bad_request(f'strconv.ParseBool: parsing "{value}": invalid syntax')


def _status(status: str, message: str = "", reason: str = "", causes: list[dict[str, str]] | None = None,
            code: int = 0) -> dict[str, Any]:
    """A metav1.Status as json.Marshal(status.Status()) writes it: no kind/apiVersion, empty fields left out."""
    body: dict[str, Any] = {"metadata": {}, "status": status}
    if message:
        body["message"] = message
    if reason:
        body["reason"] = reason
    if causes:
        body["details"] = {"causes": causes}
    if code:
        body["code"] = code
    return body


def exit_status(command: list[str], result: Output) -> dict[str, Any]:
    if result.status == 0:
        return _status("Success")
    return _status("Failure", f"command terminated with non-zero exit code: error executing command "
                              f"[{' '.join(command)}], exit code {result.status}", "NonZeroExitCode",
                   [{"reason": "ExitCode", "message": str(result.status)}])


def internal_status(message: str) -> dict[str, Any]:
    return _status("Failure", f"Internal error occurred: {message}", "InternalError", [{"message": message}], 500)


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking work on a thread of its own (a long exec must not take a shared pool's worker)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, failure: BaseException | None) -> None:
        if future.done():
            return
        if failure is not None:
            future.set_exception(failure)
        else:
            future.set_result(result)

    def target() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            loop.call_soon_threadsafe(settle, None, exc)
            return
        loop.call_soon_threadsafe(settle, result, None)
    threading.Thread(target=target, daemon=True, name="pod-stream").start()
    return await future


@dataclass
class Channels:
    """A WebSocket carrying numbered channels, binary or base64 as the negotiated protocol says."""

    ws: web.WebSocketResponse
    base64: bool

    async def send(self, channel: int, data: bytes) -> None:
        if self.ws.closed:
            return
        if self.base64:
            await self.ws.send_str(chr(ord("0") + channel) + base64.b64encode(data).decode())
        else:
            await self.ws.send_bytes(bytes([channel]) + data)

    async def send_all(self, channel: int, data: bytes) -> None:
        for start in range(0, len(data), CHUNK):
            await self.send(channel, data[start:start + CHUNK])

    def decode(self, message: Any) -> tuple[int, bytes] | None:
        if message.type == WSMsgType.BINARY:
            raw = bytes(message.data)
        elif message.type == WSMsgType.TEXT:
            raw = message.data.encode("utf-8")
        else:
            return None
        if not raw:
            return None
        if self.base64:
            try:
                return raw[0] - ord("0"), base64.b64decode(raw[1:])
            except ValueError:
                return None
        return raw[0], raw[1:]


def _offered(request: web.Request) -> list[str]:
    header = ",".join(request.headers.getall("Sec-WebSocket-Protocol", []))
    return [p.strip() for p in header.split(",") if p.strip()]


def _is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket" and \
        bool(re.search(r"(^|,)\s*upgrade\s*($|,)", request.headers.get("Connection", "").lower()))


class PodStreams:
    def __init__(self, api: ObjectApi, runtime: PodRuntime | None, minor: int = 32) -> None:
        self.api = api
        self.runtime = runtime
        # Kubernetes feature gates on by default from these minors on (beta): the API server itself serves
        # RemoteCommand v5 (TranslateStreamCloseWebsocketRequests, 1.30) and the port-forward tunnel
        # (PortForwardWebsockets, 1.31). Before, such requests go to the kubelet, which refuses them (403),
        # and kubectl falls back to SPDY.
        self.translates_v5 = minor >= 30
        self.tunnels_port_forward = minor >= 31

    async def handle(self, request: web.Request, namespace: str, name: str, sub: str) -> web.StreamResponse:
        if request.method not in ("GET", "POST"):
            raise errors.method_not_allowed()
        pods = self.api.lookup("", "v1", "pods")
        pod = self.api.get(pods, namespace, name)
        if sub == "portforward":
            return await self._portforward(request, pod)
        container = self._container(pod, request.query.get("container", ""))
        if not (pod.get("spec") or {}).get("nodeName"):
            raise errors.bad_request(f"pod {name} does not have a host assigned")
        query = request.query
        tty = _flag(query, "tty")
        stdin, stdout, stderr = _flag(query, "stdin"), _flag(query, "stdout"), _flag(query, "stderr") and not tty
        command = query.getall("command", []) if sub == "exec" else []
        if not (stdin or stdout or stderr):
            raise errors.bad_request("you must specify at least 1 of stdin, stdout, stderr")
        if sub == "exec" and not command:
            raise errors.bad_request("you must specify at least one command for the container")
        if self.runtime is None:
            raise errors.internal("this cluster runs no pod processes")
        if not _is_websocket(request):
            if request.headers.get("Upgrade", "").lower() == "spdy/3.1":
                return await self._remotecommand_spdy(request, sub, pod, container, command, stdin, stdout, stderr,
                                                      tty)
            raise errors.bad_request("Upgrade request required")
        offered = _offered(request)
        translated = V5 in offered and self.translates_v5
        protocol = V5 if translated else next((p for p in offered if p in KUBELET_REMOTECOMMAND), "" if not offered
                                              else None)
        if protocol is None:
            return web.Response(status=403)
        problem = ""
        session = None
        try:
            session = self.runtime.prepare(pod, container["name"], tty)
        except NotRunning as exc:
            if not translated:
                return web.Response(status=500, text=str(exc))
            problem = f"unable to upgrade connection: {exc}"
        ws = web.WebSocketResponse(protocols=[protocol] if protocol else (), max_msg_size=MAX_MESSAGE,
                                   autoclose=False)
        await ws.prepare(request)
        channels = Channels(ws, "base64" in protocol)
        await channels.send(STDOUT if stdout else STDERR if stderr else ERROR, b"")
        status_json = protocol.startswith(("v4.", "v5."))

        async def finish(status: dict[str, Any]) -> None:
            if status_json:
                await channels.send(ERROR, json.dumps(status, separators=(",", ":")).encode())
            elif status["status"] != "Success":
                await channels.send(ERROR, status.get("message", "").encode())
            await ws.close()

        if session is None:
            await finish(internal_status(problem))
            return ws
        pipe = StdinPipe() if stdin else None
        hung_up = threading.Event()
        reader = asyncio.ensure_future(self._read(ws, channels, pipe, hung_up, translated))

        async def out(data: bytes) -> None:
            await channels.send_all(STDOUT, data)

        async def err(data: bytes) -> None:
            await channels.send_all(STDERR, data)
        try:
            await self._run(sub, session, command, pipe, hung_up, out if stdout else None, err if stderr else None,
                            finish, tty)
        finally:
            reader.cancel()
            if not ws.closed:
                await ws.close()
        return ws

    async def _run(self, sub: str, session: Any, command: list[str], pipe: StdinPipe | None, hung_up: threading.Event,
                   out: Callable[[bytes], Awaitable[None]] | None, err: Callable[[bytes], Awaitable[None]] | None,
                   finish: Callable[[dict[str, Any]], Awaitable[None]], tty: bool) -> None:
        """The exec or attach itself, whatever carries its streams; `finish` reports the status."""
        assert self.runtime is not None
        try:
            if sub == "exec":
                result = await _in_thread(self.runtime.run, session, command,
                                          pipe.read_all if pipe is not None else (lambda: ""), hung_up.is_set)
                stdout = result.stdout.replace("\n", "\r\n") if tty else result.stdout
                if out is not None and stdout:
                    await out(to_bytes(stdout))
                if err is not None and result.stderr:
                    await err(to_bytes(result.stderr))
                if not hung_up.is_set():
                    await finish(exit_status(command, result))
            else:
                await self._attach(session, pipe, hung_up, out, err, tty)
                if not hung_up.is_set():
                    await finish(_status("Success"))
        except (ConnectionResetError, asyncio.CancelledError):
            hung_up.set()
        except Exception as exc:  # noqa: BLE001 - a simulator bug must reach the client as the kubelet's error would
            log.exception("pods/%s failed", sub)
            if not hung_up.is_set():
                await finish(internal_status(f"error executing command in container: {exc}"))
        finally:
            hung_up.set()
            if pipe is not None:
                pipe.close()

    async def _remotecommand_spdy(self, request: web.Request, sub: str, pod: dict[str, Any],
                                  container: dict[str, Any], command: list[str], stdin: bool, stdout: bool,
                                  stderr: bool, tty: bool) -> web.StreamResponse:
        """exec/attach over a SPDY/3.1 upgrade (kubectl < 1.30, or with KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false):
        the client opens one stream per channel, typed by its `streamtype` header; v4 writes a metav1.Status
        on the error stream (pkg/kubelet/cri/streaming/remotecommand/httpstream.go)."""
        assert self.runtime is not None
        try:
            session = self.runtime.prepare(pod, container["name"], tty)
        except NotRunning as exc:
            return web.Response(status=500, text=str(exc))
        upgraded = await _upgrade_spdy(request, REMOTECOMMAND_SPDY)
        if isinstance(upgraded, web.Response):
            return upgraded
        response, protocol, frames = upgraded
        expected = 1 + stdin + stdout + stderr + (tty and protocol in REMOTECOMMAND_SPDY[:2])
        streams: dict[str, SpdyStream] = {}
        complete = asyncio.Event()

        async def on_stream(stream: SpdyStream) -> None:
            streams[stream.headers.get("streamtype", "")] = stream
            if len(streams) >= expected:
                complete.set()

        spdy = SpdySession(_transport_writer(request), on_stream)
        hung_up = threading.Event()
        pipe = StdinPipe() if stdin else None
        feeding = asyncio.ensure_future(_feed(spdy, frames, hung_up))
        try:
            await asyncio.wait_for(complete.wait(), STREAM_CREATION_SECONDS)
        except asyncio.TimeoutError:
            feeding.cancel()
            return response                        # the kubelet gives up on a client that opens too few streams

        async def pump_stdin(stream: SpdyStream) -> None:
            while (data := await stream.receive()) is not None:
                assert pipe is not None
                pipe.feed(data)
            if pipe is not None:
                pipe.close()
        pumping = asyncio.ensure_future(pump_stdin(streams["stdin"])) if "stdin" in streams else None

        def writer(kind: str) -> Callable[[bytes], Awaitable[None]] | None:
            stream = streams.get(kind)
            return stream.write if stream is not None else None

        async def finish(status: dict[str, Any]) -> None:
            for kind in ("stdout", "stderr"):
                if kind in streams:
                    await streams[kind].close()
            error = streams.get("error")
            if error is not None:
                if protocol == REMOTECOMMAND_SPDY[0]:
                    await error.write(json.dumps(status, separators=(",", ":")).encode())
                elif status["status"] != "Success":
                    await error.write(status.get("message", "").encode())
                await error.close()

        try:
            await self._run(sub, session, command, pipe, hung_up, writer("stdout"), writer("stderr"), finish, tty)
        finally:
            if pumping is not None:
                pumping.cancel()
            await spdy.go_away()
            feeding.cancel()
        return response

    def _container(self, pod: dict[str, Any], requested: str) -> dict[str, Any]:
        name = pod["metadata"]["name"]
        spec = pod.get("spec") or {}
        containers = spec.get("containers") or []
        if not requested:
            if len(containers) == 1:
                return containers[0]
            if not containers:
                raise errors.bad_request(f"a container name must be specified for pod {name}")
            message = (f"a container name must be specified for pod {name}, choose one of: "
                       f"[{' '.join(c['name'] for c in containers)}]")
            init = spec.get("initContainers") or []
            if init:
                message += f" or one of the init containers: [{' '.join(c['name'] for c in init)}]"
            raise errors.bad_request(message)
        for container in (*containers, *(spec.get("initContainers") or []), *(spec.get("ephemeralContainers") or [])):
            if container.get("name") == requested:
                return container
        raise errors.bad_request(f"container {requested} is not valid for pod {name}")

    async def _read(self, ws: web.WebSocketResponse, channels: Channels, pipe: StdinPipe | None,
                    hung_up: threading.Event, close_signals: bool) -> None:
        try:
            async for message in ws:
                if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.ERROR):
                    break
                frame = channels.decode(message)
                if frame is None:
                    continue
                channel, data = frame
                if channel == STDIN and pipe is not None:
                    pipe.feed(data)
                elif channel == CLOSE and close_signals and data[:1] == bytes([STDIN]) and pipe is not None:
                    pipe.close()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            hung_up.set()                    # the client is gone: a running command stops as on SIGHUP
            if pipe is not None:
                pipe.close()

    async def _attach(self, session: Any, pipe: StdinPipe | None, hung_up: threading.Event,
                      out: Callable[[bytes], Awaitable[None]] | None, err: Callable[[bytes], Awaitable[None]] | None,
                      tty: bool) -> None:
        assert self.runtime is not None
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()

        def write(stdout: str, stderr: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (stdout, stderr))

        async def pump() -> None:
            while (item := await queue.get()) is not None:
                stdout, stderr = item
                if out is not None and stdout:
                    await out(to_bytes(stdout.replace("\n", "\r\n") if tty else stdout))
                if err is not None and stderr:
                    await err(to_bytes(stderr))
        pumping = asyncio.ensure_future(pump())
        try:
            await _in_thread(self.runtime.attach, session, pipe, write, hung_up.is_set)
        finally:
            queue.put_nowait(None)
            await pumping

    # --- port forwarding --------------------------------------------------------------------------------
    async def _portforward(self, request: web.Request, pod: dict[str, Any]) -> web.StreamResponse:
        name = pod["metadata"]["name"]
        if not (pod.get("spec") or {}).get("nodeName"):
            raise errors.bad_request(f"pod {name} does not have a host assigned")
        if self.runtime is None:
            raise errors.internal("this cluster runs no pod processes")
        if not _is_websocket(request):
            if request.headers.get("Upgrade", "").lower() == "spdy/3.1":
                return await self._portforward_spdy(request, pod)
            raise errors.bad_request("Upgrade request required")
        offered = _offered(request)
        if PORTFORWARD_TUNNEL in offered and self.tunnels_port_forward:
            return await self._portforward_tunnel(request, pod)
        protocol = next((p for p in offered if p in KUBELET_PORTFORWARD), "" if not offered else None)
        if protocol is None:
            return web.Response(status=403)
        ports = _ports(request.query.getall("ports", []) or request.query.getall("port", []))
        ws = web.WebSocketResponse(protocols=[protocol] if protocol else (), max_msg_size=MAX_MESSAGE,
                                   autoclose=False)
        await ws.prepare(request)
        channels = Channels(ws, "base64" in protocol)
        inboxes: list[asyncio.Queue[bytes | None]] = []
        for index, port in enumerate(ports):
            number = port.to_bytes(2, "little")
            await channels.send(2 * index, number)
            await channels.send(2 * index + 1, number)
            inboxes.append(asyncio.Queue())

        async def route() -> None:
            try:
                async for message in ws:
                    if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.ERROR):
                        break
                    frame = channels.decode(message)
                    if frame is not None and frame[0] % 2 == 0 and frame[0] // 2 < len(inboxes):
                        inboxes[frame[0] // 2].put_nowait(frame[1])
            finally:
                for inbox in inboxes:
                    inbox.put_nowait(None)
        routing = asyncio.ensure_future(route())

        def forward(index: int, port: int) -> Awaitable[None]:
            async def send(data: bytes) -> None:
                await channels.send_all(2 * index, data)

            async def send_error(message: str) -> None:
                await channels.send(2 * index + 1, message.encode())
            return self._forward(pod, port, inboxes[index].get, send, send_error)
        try:
            await asyncio.gather(*(forward(index, port) for index, port in enumerate(ports)))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            routing.cancel()
            if not ws.closed:
                await ws.close()
        return ws

    async def _portforward_tunnel(self, request: web.Request, pod: dict[str, Any]) -> web.StreamResponse:
        """kubectl's SPDY-over-WebSocket port forwarding (kube-apiserver >= 1.31)."""
        ws = web.WebSocketResponse(protocols=[PORTFORWARD_TUNNEL], max_msg_size=MAX_MESSAGE, autoclose=False)
        await ws.prepare(request)

        async def send_frame(frame: bytes) -> None:
            if not ws.closed:
                await ws.send_bytes(frame)

        session = SpdySession(send_frame, self._spdy_port_streams(pod))
        try:
            async for message in ws:
                if message.type == WSMsgType.BINARY:
                    await session.feed(bytes(message.data))
                elif message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.ERROR):
                    break
        except (ConnectionResetError, asyncio.CancelledError, SpdyError) as exc:
            log.debug("port-forward tunnel to %s ended: %s", pod["metadata"]["name"], exc)
        finally:
            await session.go_away()
            for task in list(session.tasks):
                task.cancel()
            if not ws.closed:
                await ws.close()
        return ws

    async def _portforward_spdy(self, request: web.Request, pod: dict[str, Any]) -> web.StreamResponse:
        """Port forwarding over a plain SPDY/3.1 upgrade (kubectl < 1.31, or with websockets turned off)."""
        upgraded = await _upgrade_spdy(request, ("portforward.k8s.io",))
        if isinstance(upgraded, web.Response):
            return upgraded
        response, _, frames = upgraded
        spdy = SpdySession(_transport_writer(request), self._spdy_port_streams(pod))
        await _feed(spdy, frames, threading.Event())
        return response

    def _spdy_port_streams(self, pod: dict[str, Any]) -> Callable[[SpdyStream], Awaitable[None]]:
        """Per connection an error and a data stream, paired by their `requestid` header
        (pkg/kubelet/cri/streaming/portforward/httpstream.go)."""
        pairs: dict[str, dict[str, SpdyStream]] = {}

        async def on_stream(stream: SpdyStream) -> None:
            pair = pairs.setdefault(stream.headers.get("requestid", ""), {})
            pair[stream.headers.get("streamtype", "")] = stream
            if "data" not in pair or "error" not in pair:
                return
            data, error = pair["data"], pair["error"]
            try:
                port = int(data.headers.get("port", "0"))
            except ValueError:
                port = 0

            async def send_error(message: str) -> None:
                await error.write(message.encode())
            try:
                await self._forward(pod, port, data.receive, data.write, send_error)
            finally:
                await data.close()
                await error.close()
        return on_stream

    async def _forward(self, pod: dict[str, Any], port: int, receive: Callable[[], Awaitable[bytes | None]],
                       send: Callable[[bytes], Awaitable[None]], send_error: Callable[[str], Awaitable[None]]) -> None:
        """One connection to a pod's port, as the kubelet makes it: what serves it, or containerd's refusal."""
        assert self.runtime is not None
        listener = None
        try:
            self.runtime.check_running(pod, ((pod.get("spec") or {}).get("containers") or [{}])[0].get("name", ""))
            listener = self.runtime.listener(pod, port)
        except NotRunning:
            listener = None
        if listener is None:
            sandbox = pod["metadata"].get("uid", "").replace("-", "")[:12] or pod["metadata"]["name"]
            netns = f"/var/run/netns/cni-{pod['metadata'].get('uid', '')}"
            await send_error(f"error forwarding port {port} to pod {sandbox}, uid : failed to execute portforward in "
                             f"network namespace \"{netns}\": failed to connect to localhost:{port} inside namespace "
                             f"\"{sandbox}\", IPv4: dial tcp4 127.0.0.1:{port}: connect: connection refused IPv6 "
                             f"dial tcp6 [::1]:{port}: connect: connection refused ")
            return
        await serve_http(listener, receive, send)


async def _upgrade_spdy(request: web.Request, supported: tuple[str, ...]
                        ) -> web.Response | tuple[web.StreamResponse, str, "asyncio.Queue[bytes | None]"]:
    """httpstream.Handshake and the SPDY response upgrader: pick a protocol from X-Stream-Protocol-Version,
    answer 101, and hand over the connection's bytes."""
    offered = [p.strip() for v in request.headers.getall("X-Stream-Protocol-Version", []) for p in v.split(",")
               if p.strip()]
    chosen = next((p for p in offered if p in supported), None) if offered else ""
    if chosen is None:
        return web.Response(status=403, text=f"unable to upgrade: unable to negotiate protocol: client supports "
                                             f"{offered}, server supports {list(supported)}")
    frames: asyncio.Queue[bytes | None] = asyncio.Queue()
    request.protocol.set_parser(_RawBytes(frames))        # type: ignore[arg-type]  # aiohttp's upgrade hook
    headers = {"Connection": "Upgrade", "Upgrade": "SPDY/3.1"}
    if chosen:
        headers["X-Stream-Protocol-Version"] = chosen
    response = web.StreamResponse(status=101, headers=headers)
    response.force_close()
    await response.prepare(request)
    return response, chosen, frames


def _transport_writer(request: web.Request) -> Callable[[bytes], Awaitable[None]]:
    transport = request.transport

    async def write(frame: bytes) -> None:
        if transport is not None and not transport.is_closing():
            transport.write(frame)
    return write


async def _feed(spdy: SpdySession, frames: "asyncio.Queue[bytes | None]", hung_up: threading.Event) -> None:
    """The upgraded connection's bytes into the SPDY session, until the client goes."""
    try:
        while (data := await frames.get()) is not None:
            await spdy.feed(data)
    except (ConnectionResetError, asyncio.CancelledError, SpdyError) as exc:
        log.debug("SPDY connection ended: %s", exc)
    finally:
        hung_up.set()
        await spdy.go_away()
        for task in list(spdy.tasks):
            task.cancel()


class _RawBytes:
    """What aiohttp's protocol feeds an upgraded connection's bytes to (as it feeds its WebSocketReader)."""

    def __init__(self, queue: "asyncio.Queue[bytes | None]") -> None:
        self.queue = queue

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self.queue.put_nowait(bytes(data))
        return False, b""

    def feed_eof(self) -> None:
        self.queue.put_nowait(None)

    def set_exception(self, exc: BaseException, cause: BaseException | None = None) -> None:
        self.queue.put_nowait(None)


def _ports(values: list[str]) -> list[int]:
    if not values:
        raise errors.bad_request('query parameter "port" is required')
    ports = []
    for value in values:
        if not value:
            raise errors.bad_request('query parameter "port" cannot be empty')
        for part in value.split(","):
            if not part.isdigit() or not 0 < int(part) < 65536:
                if part.isdigit() and int(part) == 0:
                    raise errors.bad_request(f'port "{value}" must be > 0')
                raise errors.bad_request(f'unable to parse "{value}" as a port: strconv.ParseUint: parsing '
                                         f'"{part}": invalid syntax')
            ports.append(int(part))
    return ports
