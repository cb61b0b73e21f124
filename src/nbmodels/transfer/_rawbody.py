"""The bulk data path: a ranged GET read straight into one reused buffer and written to disk.

httpx2 stays in charge of everything that needs judgement — the first request of a file,
redirects, credentials, error answers. Once that probe has shown a plain ``206`` from a final
URL, the parts' bodies come through here: each connection is a blocking socket served by its
own thread, which receives into a buffer reused for the whole connection and hands each filled
slice to a :class:`BodyWriter` (``pwrite`` at its offset). On plain TCP one ``recv`` with
``MSG_WAITALL`` fills up to 1 MiB (sized so that one wait stays short on a slow link), so the
per-byte work in Python is one call per buffer; the kernel's copy and the write run without
the GIL, in parallel with the hasher and the event loop. (httpcore2 reads 64 KiB at a time
and copies each body byte several times; an asyncio protocol costs a loop iteration per socket
read. Both left the loop's core saturated well
below what the disk and the hash could take; this is the gap the benchmark showed.)

The contract is the same as the probe's: exactly the asked range, checked ``Content-Range``,
``Content-Length`` and validator, ``Accept-Encoding: identity``, no credential (the final URL is
a different origin or the credential is not passed), connect and idle timeouts. Anything
unusual — chunked bodies, redirects, proxies, unexpected statuses — raises
:class:`Unsupported` and the caller goes back to httpx2 for that file.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import select
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Protocol
from urllib.parse import SplitResult, urlsplit

import httpx2

from .._aio import run_blocking
from ..net import tls_context

__all__ = ["BodyWriter", "RawConnection", "RawHead", "Unsupported", "usable_for"]

BUFFER_SIZE = 1 << 20
#: Receives start at this size and adapt so that one takes about RECV_WAIT seconds at most.
MIN_RECV = 64 << 10
RECV_WAIT = 0.05
#: How much the receiving threads lower their priority (see _yielding_priority).
RECEIVE_NICENESS = 5
MAX_HEAD = 64 * 1024

#: Blocking sockets with a kernel receive timeout (POSIX); elsewhere Python's timeout mode,
#: in which MSG_WAITALL is not available.
_WAIT_ALL = os.name == "posix"


class BodyWriter(Protocol):
    """Where a body goes. Both methods run on the connection's thread."""

    def room(self, limit: int) -> int:
        """How many more bytes (at most ``limit``) this part takes now; 0 stops reading."""

    def write(self, data: memoryview, release: Callable[[], None] | None) -> bool:
        """Store ``data``, the next bytes of the part (raises to stop, e.g. a full disk).
        True when the writer keeps the buffer behind ``data`` for a while (the hasher reads it
        from memory) and calls ``release()`` when done; the caller receives into another one
        meanwhile."""


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


class RawConnection:
    """A keep-alive connection to one origin for ranged GETs (one at a time).

    The event loop awaits each blocking step on the connection's thread; a cancelled await
    shuts the socket down and waits until the thread has stopped writing.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.origin = (parts.scheme, parts.hostname or "", parts.port)
        self._sock: socket.socket | None = None
        self._buf = bytearray(BUFFER_SIZE)
        self._view = memoryview(self._buf)
        # Buffers handed back by the hasher, for the next receive (see BodyWriter.write).
        self._spare: list[bytearray] = []
        self._spare_lock = threading.Lock()
        self._pending = (0, 0)  # body bytes that arrived with the head: buf[start:stop]
        self._stopping = False
        self._fresh = False  # connected, not yet set up (TLS, timeouts)

    def matches(self, url: str) -> bool:
        """Is this an open connection to the origin of ``url``? An idle connection that has
        something to read was closed by the server (or is out of step): not reusable."""
        parts = urlsplit(url)
        if self._sock is None or (parts.scheme, parts.hostname or "", parts.port) != self.origin:
            return False
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
        except (OSError, ValueError):
            readable = [self._sock]
        if readable:
            self.close()
            return False
        return True

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _abort(self) -> None:
        """From the loop: make the thread's blocking call return now."""
        self._stopping = True
        sock = self._sock
        if sock is not None:
            # The plain socket's shutdown, also for TLS: it wakes a blocked read without
            # touching the TLS object the thread is using.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)

    async def get(
        self,
        url: str,
        headers: dict[str, str],
        *,
        connect_timeout: float,
        read_timeout: float,
        check: Callable[[RawHead], int],
        writer: BodyWriter,
    ) -> None:
        """GET ``url`` with ``headers``; ``check(head)`` (on the loop) validates the answer,
        raising what the caller wants, and returns the body length to read; the body goes to
        ``writer`` (on the connection's thread).

        Raises :class:`Unsupported`, ``TimeoutError`` (no data for ``read_timeout``) or
        ``ConnectionError`` (closed early). The connection stays open for the next request
        when the whole body was read and the server allows it.
        """
        parts = urlsplit(url)
        self._stopping = False
        ok = False
        try:
            if self._sock is None:
                self._sock = await _open(parts, connect_timeout)
                self._fresh = True
            head = await run_blocking(
                lambda: self._request(parts, headers, connect_timeout, read_timeout),
                self._abort,
                "nbmodels-connection",
            )
            length = check(head)
            whole = await run_blocking(
                lambda: self._body(length, writer), self._abort, "nbmodels-connection"
            )
            ok = whole and "close" not in head.headers.get("Connection", "").lower()
        finally:
            if not ok:
                self.close()

    # -- on the connection's thread -------------------------------------------------------------

    def _request(
        self, parts: SplitResult, headers: dict[str, str], connect_timeout: float, idle: float
    ) -> RawHead:
        sock = self._sock
        if sock is None:
            raise ConnectionError("connection closed")
        if self._fresh:
            self._fresh = False
            sock = self._sock = _ready(sock, parts, connect_timeout, idle)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        host = parts.hostname or ""
        host_header = host if parts.port is None else f"{host}:{parts.port}"
        if ":" in host:
            host_header = f"[{host}]" + (f":{parts.port}" if parts.port else "")
        lines = [f"GET {target} HTTP/1.1", f"Host: {host_header}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        filled = 0
        while True:
            n = self._recv(filled, min(BUFFER_SIZE, MAX_HEAD + 4) - filled, wait_all=False)
            if n == 0:
                raise ConnectionError("connection closed early (EOF before the response head)")
            filled += n
            end = self._buf.find(b"\r\n\r\n", 0, filled)
            if end >= 0:
                break
            if filled >= MAX_HEAD:
                raise Unsupported("response head too large")
        try:
            head = _parse_head(bytes(self._buf[:end]))
        except ValueError as exc:
            raise Unsupported(f"malformed response head: {exc}") from None
        self._pending = (end + 4, filled)
        return head

    def _body(self, length: int, writer: BodyWriter) -> bool:
        """Read ``length`` body bytes into the writer. False when the writer stopped early or
        the server sent more than it declared (the connection cannot be reused)."""
        _yielding_priority()
        view = self._view
        start, stop = self._pending
        self._pending = (0, 0)
        remaining = length
        while start < stop and remaining:
            n = writer.room(min(stop - start, remaining))
            if n == 0:
                return False
            writer.write(view[start : start + n], None)
            start += n
            remaining -= n
        if start < stop:
            return False  # bytes beyond the declared length: this connection is spent
        size = MIN_RECV  # grows while whole buffers arrive quickly, shrinks on slow links
        while remaining:
            if self._stopping:
                raise ConnectionError("connection shut down")
            want = writer.room(min(size, remaining))
            if want == 0:
                return False  # unread body on the wire: this connection is spent
            started = time.monotonic()
            n = self._recv(0, want, wait_all=True)
            if n == 0:
                raise ConnectionError("connection closed early (EOF)")
            if writer.write(self._view[:n], functools.partial(self._give_back, self._buf)):
                self._switch_buffer()
            remaining -= n
            # Keep each wait short, so bytes reach the disk (and the progress display)
            # steadily even on a slow link, and a killed process loses little.
            took = time.monotonic() - started
            if took > RECV_WAIT and size > MIN_RECV:
                size //= 2
            elif n == want and took < RECV_WAIT / 4 and size < BUFFER_SIZE:
                size *= 2
        return True

    def _give_back(self, buf: bytearray) -> None:
        """From the hasher: a buffer kept by the writer is free again."""
        with self._spare_lock:
            self._spare.append(buf)

    def _switch_buffer(self) -> None:
        """The current buffer is lent out: receive into a spare one (or a new one; the
        hasher keeps only a few at a time)."""
        with self._spare_lock:
            buf = self._spare.pop() if self._spare else bytearray(BUFFER_SIZE)
        self._buf = buf
        self._view = memoryview(buf)

    def _recv(self, offset: int, want: int, *, wait_all: bool) -> int:
        """Receive into the buffer at ``offset``: up to ``want`` bytes (all of them with
        ``wait_all`` on plain TCP, unless the idle timeout or the peer ends it first)."""
        sock = self._sock
        if sock is None:
            raise ConnectionError("connection closed")
        view = self._view[offset : offset + want]
        try:
            if isinstance(sock, ssl.SSLSocket):
                got = 0  # TLS hands over one record (16 KiB) per read
                while got < want:
                    n = sock.recv_into(view[got:], want - got)
                    if n == 0 or not wait_all:
                        return got + n
                    got += n
                return got
            return sock.recv_into(view, want, socket.MSG_WAITALL if wait_all and _WAIT_ALL else 0)
        except (BlockingIOError, ssl.SSLWantReadError) as exc:
            # SO_RCVTIMEO expired with nothing received.
            raise TimeoutError("no data within the idle timeout") from exc


def _yielding_priority() -> None:
    """Run this thread at a lower priority (Linux: per thread): bulk receiving gives way to
    the hasher, the event loop and the rest of the process (the notebook kernel) whenever they
    want a core, and takes everything that is left."""
    if sys.platform.startswith("linux") and RECEIVE_NICENESS:
        with contextlib.suppress(OSError):
            tid = threading.get_native_id()
            current = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, min(19, current + RECEIVE_NICENESS))


async def _open(parts: SplitResult, connect_timeout: float) -> socket.socket:
    """A TCP connection to the URL's host, made on the loop (so a pause or cancel never waits
    for a connect to time out)."""
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), connect_timeout
    )
    error: BaseException = ConnectionError(f"no address for {host}")
    for family, kind, proto, _name, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await asyncio.wait_for(loop.sock_connect(sock, address), connect_timeout)
        except (OSError, TimeoutError) as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise error


def _ready(
    sock: socket.socket, parts: SplitResult, connect_timeout: float, idle: float
) -> socket.socket:
    """Set a fresh connection up for its thread (TLS handshake included); closes it on
    failure."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if parts.scheme == "https":
            sock.settimeout(connect_timeout)
            sock = tls_context().wrap_socket(sock, server_hostname=parts.hostname or "")
            # Python's own timeout mode for TLS (one record per read anyway).
            sock.settimeout(idle)
        elif not _WAIT_ALL:
            sock.settimeout(idle)  # SO_RCVTIMEO takes another form there; Python's own timeout
        else:
            # Blocking, so MSG_WAITALL fills whole buffers; the kernel enforces the idle limit.
            sock.settimeout(None)
            seconds = int(idle)
            timeval = struct.pack("ll", seconds, int((idle - seconds) * 1e6))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    except BaseException:
        sock.close()
        raise
    return sock


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
