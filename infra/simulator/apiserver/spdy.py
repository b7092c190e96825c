"""The server side of a SPDY/3.1 session, as far as Kubernetes' streaming uses it (moby/spdystream).

kubectl >= 1.31 sends port-forward over a WebSocket whose subprotocol is `SPDY/3.1+portforward.k8s.io`
and whose binary messages carry a SPDY byte stream (KEP-4006; client-go tools/portforward
tunneling_connection.go, kube-apiserver pkg/util/proxy/streamtunnel.go). What is used of SPDY/3
(draft 3, "spdy-protocol-draft3"): SYN_STREAM from the client (header block zlib-compressed with the
draft's dictionary), SYN_REPLY, DATA with FLAG_FIN, RST_STREAM, PING (echoed), GOAWAY, and SETTINGS /
WINDOW_UPDATE, which spdystream sends but does not rely on and which are ignored here.
"""
from __future__ import annotations

import asyncio
import struct
import zlib
from dataclasses import dataclass, field
from typing import Awaitable, Callable

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
RST_PROTOCOL_ERROR, RST_CANCEL = 1, 5

# The header compression dictionary of SPDY/3 (draft 3, section 2.6.10.1): these words, each after its length
# as a 32-bit big-endian number, then the text that follows them.
_DICTIONARY_WORDS = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
    "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
    "content-base", "content-encoding", "content-language", "content-length", "content-location", "content-md5",
    "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host", "if-match",
    "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after",
    "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
    "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie",
    "keep-alive", "origin")
_DICTIONARY_TEXT = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.")
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _DICTIONARY_WORDS) + _DICTIONARY_TEXT.encode()


class SpdyError(Exception):
    pass


def _control(kind: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload


def _data(stream_id: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | len(payload)) + payload


@dataclass
class SpdyStream:
    session: "SpdySession"
    id: int
    headers: dict[str, str]
    inbox: "asyncio.Queue[bytes | None]" = field(default_factory=asyncio.Queue)
    remote_closed: bool = False
    local_closed: bool = False

    async def receive(self) -> bytes | None:
        """The next data the client sent on this stream, or None once it half-closed (or reset) it."""
        return await self.inbox.get()

    async def write(self, data: bytes) -> None:
        step = 32 * 1024
        for start in range(0, len(data), step):
            await self.session.send(_data(self.id, 0, data[start:start + step]))

    async def close(self) -> None:
        if not self.local_closed:
            self.local_closed = True
            await self.session.send(_data(self.id, FLAG_FIN, b""))


class SpdySession:
    """Frames in (`feed`), frames out (`send`); a new client stream goes to `on_stream` once replied to."""

    def __init__(self, send: Callable[[bytes], Awaitable[None]],
                 on_stream: Callable[[SpdyStream], Awaitable[None]]) -> None:
        self._send = send
        self._on_stream = on_stream
        self._buffer = b""
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)
        self._deflate = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zlib.DEFLATED, 15, 9, zdict=DICTIONARY)
        self.streams: dict[int, SpdyStream] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self.last_stream = 0
        self._gone = False

    async def send(self, frame: bytes) -> None:
        async with self._lock:
            await self._send(frame)

    def _header_block(self, headers: dict[str, str]) -> bytes:
        raw = struct.pack(">I", len(headers)) + b"".join(
            struct.pack(">I", len(k)) + k.encode() + struct.pack(">I", len(v)) + v.encode()
            for k, v in headers.items())
        return self._deflate.compress(raw) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    def _read_headers(self, block: bytes) -> dict[str, str]:
        try:
            raw = self._inflate.decompress(block)
        except zlib.error as exc:
            raise SpdyError(f"bad header block: {exc}") from None
        count, = struct.unpack_from(">I", raw, 0)
        offset, headers = 4, {}
        for _ in range(count):
            size, = struct.unpack_from(">I", raw, offset)
            name = raw[offset + 4:offset + 4 + size].decode()
            offset += 4 + size
            size, = struct.unpack_from(">I", raw, offset)
            value = raw[offset + 4:offset + 4 + size].decode()
            offset += 4 + size
            headers[name.lower()] = value.split("\x00")[0]
        return headers

    async def feed(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= 8:
            first, second = struct.unpack_from(">II", self._buffer, 0)
            length = second & 0xFFFFFF
            if len(self._buffer) < 8 + length:
                return
            flags, payload = second >> 24, self._buffer[8:8 + length]
            self._buffer = self._buffer[8 + length:]
            if first & 0x80000000:
                await self._control_frame((first >> 16) & 0x7FFF, first & 0xFFFF, flags, payload)
            else:
                self._data_frame(first & 0x7FFFFFFF, flags, payload)

    async def _control_frame(self, version: int, kind: int, flags: int, payload: bytes) -> None:
        if version != VERSION:
            raise SpdyError(f"unsupported SPDY version {version}")
        if kind == SYN_STREAM:
            stream_id = struct.unpack_from(">I", payload, 0)[0] & 0x7FFFFFFF
            stream = SpdyStream(self, stream_id, self._read_headers(payload[10:]))
            self.streams[stream_id] = stream
            self.last_stream = max(self.last_stream, stream_id)
            await self.send(_control(SYN_REPLY, 0, struct.pack(">I", stream_id) + self._header_block({})))
            if flags & FLAG_FIN:
                self._half_close(stream)
            task = asyncio.ensure_future(self._on_stream(stream))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        elif kind == RST_STREAM:
            reset = self.streams.get(struct.unpack_from(">I", payload, 0)[0] & 0x7FFFFFFF)
            if reset is not None:
                reset.local_closed = True
                self._half_close(reset)
        elif kind == PING:
            await self.send(_control(PING, 0, payload))
        elif kind == HEADERS:
            self._read_headers(payload[4:])          # keeps the shared zlib stream in step
        # SETTINGS, WINDOW_UPDATE, GOAWAY: nothing to do for the server

    def _data_frame(self, stream_id: int, flags: int, payload: bytes) -> None:
        stream = self.streams.get(stream_id)
        if stream is None or stream.remote_closed:
            return
        if payload:
            stream.inbox.put_nowait(payload)
        if flags & FLAG_FIN:
            self._half_close(stream)

    @staticmethod
    def _half_close(stream: SpdyStream) -> None:
        if not stream.remote_closed:
            stream.remote_closed = True
            stream.inbox.put_nowait(None)

    async def go_away(self) -> None:
        if self._gone:
            return
        self._gone = True
        for stream in self.streams.values():
            self._half_close(stream)
        try:
            await self.send(_control(GOAWAY, 0, struct.pack(">II", self.last_stream, 0)))
        except (ConnectionResetError, RuntimeError):
            pass
