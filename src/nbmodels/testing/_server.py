"""The one HTTP/1.1 server of :mod:`nbmodels.testing`: a listening socket on the loopback, an
accept thread, a thread per connection (tracked, numbered), and the parts of HTTP/1.1 that every
server here shares: reading a request (head, body, target, keep-alive), ranges, dates, and
writing a response head.

Two servers are built on it: the Hub emulator's origins (:mod:`._http`) and the tests' fault
server (``tests/faultserver.py``), which lies in its answers on purpose. So a response is bytes
its handler composes (:func:`head_bytes`) and sends on the raw socket; nothing here decides what
to answer.

:meth:`ThreadedServer.close` closes the listener, shuts down every open connection (a thread
waiting for its client's next request wakes at once) and joins every thread.
"""

from __future__ import annotations

import contextlib
import email.utils
import re
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import Literal, Protocol
from urllib.parse import urlsplit

__all__ = [
    "MAX_REQUEST_HEAD",
    "BadRequest",
    "ConnectionHandler",
    "Headers",
    "Reader",
    "RequestHead",
    "ThreadedServer",
    "head_bytes",
    "http_date",
    "keep_alive",
    "parse_range",
    "simple_response",
]

#: Largest request head (request line + headers) accepted; a bigger one gets 431.
MAX_REQUEST_HEAD = 64 * 1024
#: Seconds :meth:`ThreadedServer.close` waits for the threads, all together.
JOIN_TIMEOUT = 5.0

HeaderValue = str | bytes


# -- requests -------------------------------------------------------------------------------------


class Headers(Mapping[str, str]):
    """Request headers as sent: a case-insensitive, read-only mapping.

    ``headers["range"]`` joins repeated fields with ``", "``; :meth:`get_all` lists them; the
    original names, order and duplicates are kept in :attr:`raw` (also :meth:`pairs`).
    """

    __slots__ = ("_merged", "raw")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self.raw: tuple[tuple[str, str], ...] = tuple(items)
        merged: dict[str, str] = {}
        for name, value in self.raw:
            key = name.lower()
            merged[key] = f"{merged[key]}, {value}" if key in merged else value
        self._merged = merged

    def get_all(self, key: str) -> list[str]:
        """Every value of header ``key`` (any case), in order."""
        low = key.lower()
        return [v for k, v in self.raw if k.lower() == low]

    def pairs(self) -> tuple[tuple[str, str], ...]:
        """The headers as received, in order, with their original case."""
        return self.raw

    def __getitem__(self, key: str) -> str:
        return self._merged[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._merged

    def __iter__(self) -> Iterator[str]:
        return iter(self._merged)

    def __len__(self) -> int:
        return len(self._merged)

    def __repr__(self) -> str:
        return f"Headers({list(self.raw)!r})"


class BadRequest(Exception):
    """The request cannot be parsed: answer ``status`` and close the connection."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True)
class RequestHead:
    """A parsed request line and its headers. ``path`` is still percent-encoded (an
    absolute-form target is reduced to its path); ``query`` is the raw query string."""

    method: str
    target: str
    version: str
    headers: Headers

    @property
    def path(self) -> str:
        if self.target.startswith(("http://", "https://")):
            return urlsplit(self.target).path or "/"
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        if self.target.startswith(("http://", "https://")):
            return urlsplit(self.target).query
        return self.target.partition("?")[2]

    @property
    def content_length(self) -> int:
        """The body's length (BadRequest if the header is not a number; chunked bodies are
        not supported: 501)."""
        if "transfer-encoding" in self.headers:
            raise BadRequest(501)
        length = self.headers.get("content-length", "0").strip() or "0"
        if not length.isdigit():
            raise BadRequest(400)
        return int(length)


def keep_alive(head: RequestHead) -> bool:
    """Does the client keep the connection open after this request (HTTP/1.1 without
    ``Connection: close``)?"""
    tokens = {t.strip().lower() for t in head.headers.get("connection", "").split(",")}
    return head.version == "HTTP/1.1" and "close" not in tokens


def parse_head(head: bytes) -> RequestHead:
    """Parse a request head (without its final empty line). Raises :class:`BadRequest`."""
    lines = head.decode("latin-1").split("\r\n")
    while lines and not lines[0]:  # tolerate stray CRLFs before a request (RFC 9112 §2.2)
        lines.pop(0)
    if not lines:
        raise BadRequest(400)
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise BadRequest(400)
    method, target, version = parts
    items: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or line[0] in " \t":
            raise BadRequest(400)
        items.append((name, value.strip(" \t")))
    return RequestHead(method, target, version, Headers(items))


class Reader:
    """Buffered reads of requests from a blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _fill(self, limit: int) -> bool:
        """Read more (at most ``limit`` bytes); False at the end of the stream."""
        data = self.sock.recv(min(limit, 65536))
        self.buf += data
        return bool(data)

    def read_request(self) -> RequestHead | None:
        """The next request's head; None when the client closed the connection between
        requests. Raises :class:`BadRequest` (431 for a head over :data:`MAX_REQUEST_HEAD`)."""
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i > MAX_REQUEST_HEAD or (i < 0 and len(self.buf) > MAX_REQUEST_HEAD):
                raise BadRequest(431)
            if i >= 0:
                head = bytes(self.buf[:i])
                del self.buf[: i + 4]
                return parse_head(head)
            if not self._fill(65536):
                return None

    def read_body(self, n: int) -> bytes:
        """The next ``n`` bytes (fewer if the client closes the connection)."""
        while len(self.buf) < n and self._fill(n - len(self.buf)):
            pass
        body = bytes(self.buf[:n])
        del self.buf[:n]
        return body


_RANGE_RE = re.compile(r"([0-9]*)[ \t]*-[ \t]*([0-9]*)")


def parse_range(value: str | None, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """One ``bytes`` range against a body of ``size`` bytes: ``(start, end)`` inclusive,
    ``"unsatisfiable"`` (answer 416), or None to ignore the header (absent, another unit,
    malformed, several ranges, last before first: a server may ignore ``Range``, RFC 9110)."""
    unit, sep, spec = (value or "").partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    m = _RANGE_RE.fullmatch(spec.strip())
    if m is None:
        return None
    first, last = m.group(1), m.group(2)
    if not first:  # a suffix range: the last N bytes
        if not last:
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            return "unsatisfiable"
        return max(size - suffix, 0), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size - 1)


# -- responses ------------------------------------------------------------------------------------


def http_date(when: float | datetime | None = None, *, from_now: float = 0.0) -> str:
    """An IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``) of ``when`` (a POSIX timestamp or an
    aware datetime; default: now) plus ``from_now`` seconds."""
    if isinstance(when, datetime):
        ts = when.timestamp()
    elif when is None:
        ts = time.time()
    else:
        ts = float(when)
    return email.utils.formatdate(ts + from_now, usegmt=True)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def head_bytes(
    status: int, headers: Iterable[tuple[str, HeaderValue]], extra: Iterable[bytes] = ()
) -> bytes:
    """A response head: the status line, ``headers`` (str values as UTF-8, bytes as they are),
    then ``extra`` raw lines, and the empty line."""
    out = [f"HTTP/1.1 {status} {_reason(status)}".encode("latin-1")]
    for name, value in headers:
        raw = value if isinstance(value, bytes) else value.encode("utf-8")
        out.append(name.encode("latin-1") + b": " + raw)
    out += list(extra)
    return b"\r\n".join(out) + b"\r\n\r\n"


def simple_response(status: int, body: bytes) -> bytes:
    """A small plain-text answer after which the connection closes (a request that cannot be
    parsed)."""
    headers = [
        ("Content-Type", "text/plain"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
    ]
    return head_bytes(status, headers) + body


# -- the server -----------------------------------------------------------------------------------


class ConnectionHandler(Protocol):
    """Serves one accepted connection (requests in turn, until either side ends it).

    Returns True to end it with a reset (RST) instead of an orderly close (FIN). Exceptions it
    lets escape are reported to the server's ``on_error``."""

    def __call__(self, conn: socket.socket, connection_id: int, /) -> bool: ...


class ThreadedServer:
    """A listening socket on ``host:port`` (0: a free port), started with :meth:`start`: an
    accept thread and a thread per connection, running ``handle``."""

    def __init__(
        self,
        handle: ConnectionHandler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        on_error: Callable[[BaseException], None],
    ) -> None:
        self._handle = handle
        self._on_error = on_error
        self.closing = threading.Event()
        """Set when :meth:`close` begins: handlers end their waits."""
        self._lock = threading.Lock()
        self._connections: dict[int, socket.socket] = {}
        self._threads: set[threading.Thread] = set()
        self._count = 0
        self._name = "server"
        self._acceptor: threading.Thread | None = None
        self._listener = socket.create_server((host, port), backlog=128)
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        try:
            self._listener.setblocking(False)
            self._selector.register(self._listener, selectors.EVENT_READ)
            self._selector.register(self._wake_r, selectors.EVENT_READ)
        except BaseException:
            self._close_sockets()
            raise

    @property
    def host(self) -> str:
        return str(self._listener.getsockname()[0])

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    @property
    def connection_count(self) -> int:
        """How many connections were accepted so far."""
        with self._lock:
            return self._count

    def start(self, name: str) -> None:
        """Accept connections from now on; threads are named ``{name}-accept`` and
        ``{name}-conn-{id}``."""
        self._name = name
        self._acceptor = threading.Thread(target=self._accept, name=f"{name}-accept", daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        try:
            while not self.closing.is_set():
                for key, _ in self._selector.select():
                    if key.fileobj is self._wake_r:
                        return
                    try:
                        conn, _addr = self._listener.accept()
                    except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                        continue
                    self._start_connection(conn)
        except BaseException as exc:  # noqa: BLE001 - reported, for the tests to see
            if not (isinstance(exc, OSError) and self.closing.is_set()):
                self._on_error(exc)

    def _start_connection(self, conn: socket.socket) -> None:
        with self._lock:
            if self.closing.is_set():
                conn.close()
                return
            self._count += 1
            cid = self._count
            self._connections[cid] = conn
            thread = threading.Thread(
                target=self._run, args=(cid, conn), name=f"{self._name}-conn-{cid}", daemon=True
            )
            self._threads.add(thread)
        thread.start()

    def _run(self, cid: int, conn: socket.socket) -> None:
        rst = False
        try:
            conn.setblocking(True)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no 40 ms stalls
            rst = self._handle(conn, cid)
        except BaseException as exc:  # noqa: BLE001 - reported, for the tests to see
            if not (isinstance(exc, OSError) and self.closing.is_set()):
                self._on_error(exc)
        finally:
            with self._lock:
                self._connections.pop(cid, None)
                self._threads.discard(threading.current_thread())
            _close(conn, rst)

    def close(self, timeout: float = JOIN_TIMEOUT) -> list[str]:
        """Stop accepting, shut down every connection, join every thread (idempotent). Returns
        the names of threads still alive after ``timeout`` seconds."""
        with self._lock:
            already = self.closing.is_set()
            self.closing.set()
            connections = list(self._connections.values())
            threads = list(self._threads)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if already:
            return []
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        deadline = time.monotonic() + timeout
        for thread in [self._acceptor, *threads]:
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        self._close_sockets()
        return [t.name for t in [self._acceptor, *threads] if t is not None and t.is_alive()]

    def _close_sockets(self) -> None:
        with contextlib.suppress(Exception):
            self._selector.close()
        for s in (self._listener, self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                s.close()


def _close(conn: socket.socket, rst: bool) -> None:
    """End a connection: FIN after the last bytes, or RST."""
    with contextlib.suppress(OSError):
        if rst:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            conn.shutdown(socket.SHUT_WR)
    conn.close()
