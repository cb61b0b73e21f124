"""The bulk data path: a ranged GET read straight into one reused buffer and written to disk.

httpx2 stays in charge of everything that needs judgement — the first request of a file,
redirects, credentials, error answers. Once that probe has shown a plain ``206`` from a final
URL, the parts' bodies come through here: an ``asyncio.BufferedProtocol`` receives into a 1 MiB
buffer that is reused for the whole connection, and each filled slice goes to ``pwrite`` at
its offset from the protocol callback. No per-chunk allocation, no copies between layers
(httpcore2 reads 64 KiB at a time and copies each body byte several times before a client sees
it; this is the gap the benchmark showed between httpx2 and curl).

The contract is the same as the probe's: exactly the asked range, checked ``Content-Range``,
``Content-Length`` and validator, ``Accept-Encoding: identity``, no credential (the final URL is
a different origin or the credential is not passed), connect and idle timeouts. Anything
unusual — chunked bodies, redirects, proxies, unexpected statuses — raises
:class:`Unsupported` and the caller goes back to httpx2 for that file.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import urllib.request
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import SplitResult, urlsplit

import httpx2

__all__ = ["BodySink", "RawConnection", "RawHead", "Unsupported", "usable_for"]

T = TypeVar("T")
BUFFER_SIZE = 1 << 20
MAX_HEAD = 64 * 1024

#: Called with each received slice of the body; returns False to stop reading (part complete).
BodySink = Callable[[memoryview], bool]

_ssl_context: ssl.SSLContext | None = None


class Unsupported(Exception):
    """This response is not for the fast path; use httpx2 for the file instead."""


class RawHead:
    """Status and headers of a raw response, shaped like what the probe checks."""

    def __init__(self, status: int, headers: httpx2.Headers) -> None:
        self.status_code = status
        self.headers = headers


def usable_for(url: str) -> bool:
    """http(s) URLs that no proxy setting applies to."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    proxies = urllib.request.getproxies()
    if parts.scheme in proxies or "all" in proxies:
        return bool(urllib.request.proxy_bypass(parts.hostname))
    return True


class _Protocol(asyncio.BufferedProtocol):
    """One HTTP/1.1 connection, one request at a time (keep-alive between requests)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._buf = bytearray(BUFFER_SIZE)
        self._view = memoryview(self._buf)
        self.transport: asyncio.Transport | None = None
        self.last_activity = loop.time()
        self.closed = False
        self._abandoned = False
        self._begin()

    def _begin(self) -> None:
        self._head = bytearray()
        self._pending: memoryview = memoryview(b"")
        self._sink: BodySink | None = None
        self._remaining = 0
        self.stopped_early = False
        self.head: asyncio.Future[RawHead] = self._loop.create_future()
        self.done: asyncio.Future[None] = self._loop.create_future()

    def next_request(self) -> None:
        """Reset for the next request on this connection."""
        self._begin()
        self.last_activity = self._loop.time()
        if self.transport is not None:
            self.transport.resume_reading()

    def abandon(self) -> None:
        """Close without reporting anything more (the caller has stopped listening)."""
        self._abandoned = True
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        self.last_activity = self._loop.time()
        data = self._view[:nbytes]
        if not self.head.done():
            self._read_head(nbytes)
        elif self.done.done():
            self._fail(Unsupported("bytes after the end of a response"))
        else:
            self._deliver(data)

    def _read_head(self, nbytes: int) -> None:
        if not self._head:
            # Usual case: the whole head is in this read. Copy only the head; the body bytes
            # behind it stay in the buffer, which is not refilled while reading is paused.
            end = self._buf.find(b"\r\n\r\n", 0, nbytes)
            if end >= 0:
                raw = bytes(self._buf[:end])
                self._pending = self._view[end + 4 : nbytes]
                self._got_head(raw)
                return
        self._head += self._view[:nbytes]
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_HEAD:
                self._fail(Unsupported("response head too large"))
            return
        raw, self._pending = bytes(self._head[:end]), memoryview(bytes(self._head[end + 4 :]))
        self._head = bytearray()
        self._got_head(raw)

    def _got_head(self, raw: bytes) -> None:
        try:
            head = _parse_head(raw)
        except ValueError as exc:
            self._fail(Unsupported(f"malformed response head: {exc}"))
            return
        assert self.transport is not None
        self.transport.pause_reading()  # until the caller has checked the head
        self.head.set_result(head)

    def start_body(self, sink: BodySink, length: int) -> None:
        """Deliver ``length`` body bytes to ``sink`` (the head has been accepted)."""
        assert self.transport is not None
        self._sink = sink
        self._remaining = length
        pending, self._pending = self._pending, memoryview(b"")
        if pending:
            self._deliver(pending)
        elif length == 0:
            self.done.set_result(None)
        if not self.done.done():
            self.last_activity = self._loop.time()
            self.transport.resume_reading()

    def _deliver(self, data: memoryview) -> None:
        if self._sink is None or self.done.done():
            return
        extra = len(data) > self._remaining
        if extra:
            data = data[: self._remaining]  # never more than the declared length
        self._remaining -= len(data)
        keep_going = self._sink(data) if len(data) else True
        if not keep_going or self._remaining == 0:
            self.stopped_early = self._remaining > 0 or extra
            self.done.set_result(None)
            assert self.transport is not None
            if self.stopped_early:
                self.abandon()  # unread body on the wire: this connection is spent
            else:
                self.transport.pause_reading()

    def _fail(self, exc: BaseException) -> None:
        for fut in (self.head, self.done):
            if not fut.done():
                fut.set_exception(exc)
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._abandoned:
            return
        if not self.head.done() or not self.done.done():
            self._fail(ConnectionError(f"connection closed early ({exc or 'EOF'})"))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost reports what was missing


def _parse_head(raw: bytes) -> RawHead:
    lines = raw.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    if not version.startswith(b"HTTP/1."):
        raise ValueError("not HTTP/1.x")
    status = int(rest.split(b" ", 1)[0])
    pairs: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise ValueError("bad header line")
        pairs.append((name.decode("latin-1"), value.strip().decode("latin-1")))
    return RawHead(status, httpx2.Headers(pairs))


class RawConnection:
    """A keep-alive connection to one origin for ranged GETs (one at a time)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.origin = (parts.scheme, parts.hostname or "", parts.port)
        self._proto: _Protocol | None = None

    def matches(self, url: str) -> bool:
        parts = urlsplit(url)
        alive = self._proto is not None and not self._proto.closed
        return alive and (parts.scheme, parts.hostname or "", parts.port) == self.origin

    def close(self) -> None:
        if self._proto is not None:
            self._proto.abandon()
            self._proto = None

    async def get(
        self,
        url: str,
        headers: dict[str, str],
        *,
        connect_timeout: float,
        read_timeout: float,
        check: Callable[[RawHead], int],
        sink: BodySink,
    ) -> None:
        """GET ``url`` with ``headers``; ``check(head)`` validates the answer (raising what the
        caller wants) and returns the body length to read; each slice goes to ``sink``.

        Raises :class:`Unsupported`, ``TimeoutError`` (no data for ``read_timeout``) or
        ``ConnectionError`` (closed early). The connection stays open for the next request
        when the whole body was read and the server allows it.
        """
        parts = urlsplit(url)
        proto = self._proto
        if proto is None or proto.closed:
            proto = self._proto = await _connect(parts, connect_timeout)
        else:
            proto.next_request()
        assert proto.transport is not None
        ok = False
        try:
            target = parts.path or "/"
            if parts.query:
                target += "?" + parts.query
            host = parts.hostname or ""
            host_header = host if parts.port is None else f"{host}:{parts.port}"
            if ":" in host:
                host_header = f"[{host}]" + (f":{parts.port}" if parts.port else "")
            lines = [f"GET {target} HTTP/1.1", f"Host: {host_header}"]
            lines += [f"{k}: {v}" for k, v in headers.items()]
            proto.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            head = await _watch(proto, proto.head, read_timeout)
            length = check(head)
            proto.start_body(sink, length)
            await _watch(proto, proto.done, read_timeout)
            ok = "close" not in head.headers.get("Connection", "").lower()
        finally:
            if not ok or proto.stopped_early:
                self.close()


async def _connect(parts: SplitResult, connect_timeout: float) -> _Protocol:
    global _ssl_context
    host = parts.hostname or ""
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    ctx = None
    if secure:
        if _ssl_context is None:
            _ssl_context = httpx2.create_ssl_context()
        ctx = _ssl_context
    loop = asyncio.get_running_loop()
    _transport, proto = await asyncio.wait_for(
        loop.create_connection(
            lambda: _Protocol(loop), host, port, ssl=ctx, server_hostname=host if secure else None
        ),
        connect_timeout,
    )
    return proto


async def _watch(proto: _Protocol, fut: asyncio.Future[T], idle: float) -> T:
    """Wait for ``fut`` while data keeps arriving; TimeoutError after ``idle`` s of silence."""
    while True:
        remaining = proto.last_activity + idle - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise TimeoutError(f"no data for {idle:.0f} s")
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(asyncio.shield(fut), min(remaining, 1.0))
