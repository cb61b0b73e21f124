"""A fault-injecting HTTP/1.1 server on 127.0.0.1 for nbmodels' download tests.

It runs on the threaded HTTP/1.1 server of ``nbmodels.testing`` (``nbmodels/testing/_server.py``,
also under the Hub emulator): one accept thread plus one daemon thread per connection, raw
sockets and a minimal HTTP/1.1 request parser, so a response can lie in its headers, stall, be
cut mid-body (FIN or RST) or be malformed on purpose.

Normal behaviour of ``/files/<name>``: GET and HEAD; ``Range: bytes=S-E``, ``bytes=S-`` and
``bytes=-N`` give ``206`` with ``Content-Range``; an ``If-Range`` that does not match the strong
ETag (or the exact ``Last-Modified`` date) gives ``200`` with the full body; an unsatisfiable range
gives ``416`` with ``Content-Range: bytes */N``; a matching ``If-None-Match`` gives ``304``; an
unknown file gives ``404``; other methods ``405``. Keep-alive is the default for HTTP/1.1.

Faults are queued per file (FIFO) with :meth:`FaultServer.add_fault` and consumed by the next
matching requests of that file. A :class:`Fault` is a frozen dataclass; build one with its
class-method constructors (``Fault.drop(after=100)``, ``Fault.error(503, retry_after=2)``...) and
combine several with ``|`` (``Fault.trickle(1000) | Fault.drop(after=5000)``).

Example::

    with FaultServer() as srv:
        srv.add_file("m.bin", data)
        srv.add_fault("m.bin", Fault.drop(after=1024, rst=True))
        httpx2.get(srv.url("m.bin"))        # -> ReadError after 1 KiB
        assert srv.requests_for("m.bin")[0].body_bytes_sent == 1024
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Literal, NoReturn, Self
from urllib.parse import quote, unquote

from nbmodels.testing._server import (
    BadRequest,
    Headers,
    Reader,
    RequestHead,
    ThreadedServer,
    head_bytes,
    http_date,
    keep_alive,
    parse_range,
    simple_response,
)

__all__ = [
    "Fault",
    "FaultServer",
    "FaultServerError",
    "Headers",
    "Request",
    "http_date",
]

#: Size of each ``sendall`` slice of a body (no per-byte Python work).
SEND_CHUNK = 1 << 20
#: How long :meth:`FaultServer.close` waits for the threads.
JOIN_TIMEOUT = 5.0

HeaderValue = str | bytes


class FaultServerError(AssertionError):
    """The server hit an unexpected internal error (a bug in the server or a bad Fault)."""


# --------------------------------------------------------------------------------------------
# Request log


@dataclass(frozen=True)
class Request:
    """One request as the server saw it, plus what it answered.

    ``status`` is set just before the status line is sent (``None`` when no response was sent:
    hang-ups, raw responses, bad requests before parsing). ``body_bytes_sent`` counts body bytes
    handed to the socket; it is updated *before* each send, so it is never less than what the
    client received (for a dropped connection it is exact). ``done`` turns true once the server
    finished with the request. ``time`` is ``time.monotonic()`` when the request head was parsed.
    """

    method: str
    target: str
    path: str
    query: str
    http_version: str
    headers: Headers
    connection_id: int
    time: float
    name: str | None = None
    fault: Fault | None = None
    status: int | None = None
    body_bytes_sent: int = 0
    done: bool = False

    @property
    def range(self) -> str | None:
        """The ``Range`` header, if any."""
        return self.headers.get("range")

    @property
    def if_range(self) -> str | None:
        """The ``If-Range`` header, if any."""
        return self.headers.get("if-range")


class _Slot:
    """Mutable holder for the current version of one log entry."""

    __slots__ = ("req",)

    def __init__(self, req: Request) -> None:
        self.req = req


# --------------------------------------------------------------------------------------------
# Faults


@dataclass(frozen=True, kw_only=True)
class Fault:
    """What to do wrong on one response. Every field's default means "behave normally".

    Prefer the class-method constructors; combine faults with ``a | b`` (non-default fields of
    ``b`` win, tuple fields are concatenated).

    Fields, in the order they act:

    - ``update_data`` / ``update_etag``: replace the file's content (and ETag: ``"auto"``, a
      literal value, or ``None``) right before this response, like an upstream update. The new
      file has no ``Last-Modified``.
    - ``raw``: send exactly these bytes instead of a response, then close.
    - ``hangup``: close the connection without sending anything.
    - ``delay``: wait this many seconds before the status line (a slow first byte).
    - ``status`` / ``retry_after`` / ``error_body``: answer with this status and a small body
      instead of the file; ``retry_after`` is sent as ``Retry-After`` (seconds as int/float, an
      aware datetime becomes an HTTP date, a str is sent verbatim).
    - ``ignore_range``: answer 200 with the full body even to a Range request.
    - ``content_range_delta``: ``(start, end, total)`` added to the numbers of the 206
      ``Content-Range``; ``range_bytes`` says which bytes follow: ``"requested"`` (the right bytes
      under a lying header) or ``"claimed"`` (the bytes the lying header names).
    - ``etag``: replace (or add) the ``ETag`` header with this value.
    - ``drop_headers``: remove these response headers (any case).
    - ``headers``: extra header lines appended verbatim (duplicates allowed; bytes values are sent
      as-is, str values as UTF-8).
    - ``malformed``: raw header lines (bytes, without CRLF) inserted into the header block.
    - ``header_padding``: add an ``X-Padding`` header with this many bytes of value.
    - ``gzip``: gzip the body and send ``Content-Encoding: gzip`` whatever the client asked.
    - ``chunked``: ``Transfer-Encoding: chunked`` without ``Content-Length``.
    - ``content_length_delta``: add this to ``Content-Length``; the real body is sent and then
      the connection is closed (positive: claims more than sent; negative: fewer than sent).
    - ``rate``: trickle the body at this many bytes per second.
    - ``stall_at`` / ``stall_seconds`` / ``stall_then``: after ``stall_at`` body bytes (0 = right
      after the headers) wait ``stall_seconds``, then ``"continue"`` or ``"close"``. Stalls end
      at once when the server is closed.
    - ``drop_after``: close the connection after this many body bytes (0 = right after the
      headers); ``rst`` makes this (and ``hangup``, ``raw`` and a stall close) an RST instead of
      a FIN.
    - ``close``: send ``Connection: close`` and close after the response.
    """

    update_data: bytes | None = None
    update_etag: str | None = "auto"
    raw: bytes | None = None
    hangup: bool = False
    delay: float = 0.0
    status: int | None = None
    retry_after: int | float | str | datetime | None = None
    error_body: bytes | None = None
    ignore_range: bool = False
    content_range_delta: tuple[int, int, int] = (0, 0, 0)
    range_bytes: Literal["requested", "claimed"] = "requested"
    etag: str | None = None
    drop_headers: tuple[str, ...] = ()
    headers: tuple[tuple[str, HeaderValue], ...] = ()
    malformed: tuple[bytes, ...] = ()
    header_padding: int = 0
    gzip: bool = False
    chunked: bool = False
    content_length_delta: int = 0
    rate: float | None = None
    stall_at: int | None = None
    stall_seconds: float = 0.0
    stall_then: Literal["continue", "close"] = "continue"
    drop_after: int | None = None
    rst: bool = False
    close: bool = False

    def __repr__(self) -> str:
        """Only the non-default fields, e.g. ``Fault(drop_after=100, rst=True)``."""
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                if isinstance(value, bytes) and len(value) > 40:
                    parts.append(f"{f.name}=<{len(value)} bytes>")
                else:
                    parts.append(f"{f.name}={value!r}")
        return f"Fault({', '.join(parts)})"

    # -- combination ---------------------------------------------------------------------------

    def __or__(self, other: Fault) -> Fault:
        """Merge two faults: ``other``'s non-default fields win; tuple fields concatenate."""
        if not isinstance(other, Fault):
            return NotImplemented
        changes: dict[str, object] = {}
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(f.default, tuple) and f.name != "content_range_delta":
                changes[f.name] = (*mine, *theirs)
            elif theirs != f.default:
                changes[f.name] = theirs
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    # -- constructors --------------------------------------------------------------------------

    @classmethod
    def drop(cls, after: int = 0, *, rst: bool = False) -> Fault:
        """Close the connection after ``after`` body bytes: FIN, or RST with ``rst=True``."""
        return cls(drop_after=after, rst=rst)

    @classmethod
    def hang_up(cls, *, rst: bool = False) -> Fault:
        """Read the request, then close without any response (FIN, or RST)."""
        return cls(hangup=True, rst=rst)

    @classmethod
    def error(
        cls,
        status: int,
        *,
        retry_after: int | float | str | datetime | None = None,
        body: bytes | None = None,
    ) -> Fault:
        """Answer ``status`` (500, 502, 503, 408, 429, 403...) with an optional ``Retry-After``."""
        return cls(status=status, retry_after=retry_after, error_body=body)

    @classmethod
    def delay_headers(cls, seconds: float) -> Fault:
        """Wait ``seconds`` before sending anything (slow time-to-first-byte)."""
        return cls(delay=seconds)

    @classmethod
    def stall(
        cls, seconds: float, *, at: int = 0, then: Literal["continue", "close"] = "continue"
    ) -> Fault:
        """After ``at`` body bytes (0 = after the headers) stall ``seconds``; then go on or
        close."""
        return cls(stall_at=at, stall_seconds=seconds, stall_then=then)

    @classmethod
    def trickle(cls, bytes_per_second: float) -> Fault:
        """Send the body at about ``bytes_per_second``."""
        if bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive")
        return cls(rate=bytes_per_second)

    @classmethod
    def no_range(cls) -> Fault:
        """Ignore ``Range``: answer 200 with the full body."""
        return cls(ignore_range=True)

    @classmethod
    def bad_content_range(
        cls,
        *,
        start: int = 0,
        end: int = 0,
        total: int = 0,
        send: Literal["requested", "claimed"] = "requested",
    ) -> Fault:
        """Offset the 206 ``Content-Range`` numbers by these deltas.

        ``send="requested"`` sends the requested bytes under the wrong header; ``"claimed"``
        sends the bytes the wrong header names (wrong bytes for the request).
        """
        return cls(content_range_delta=(start, end, total), range_bytes=send)

    @classmethod
    def update(cls, data: bytes, *, etag: str | None = "auto") -> Fault:
        """Replace the file's content (and ETag) just before this response."""
        return cls(update_data=bytes(data), update_etag=etag)

    @classmethod
    def length_lie(cls, delta: int) -> Fault:
        """``Content-Length`` off by ``delta``; the real body is sent, then the socket closes."""
        return cls(content_length_delta=delta)

    @classmethod
    def gzipped(cls) -> Fault:
        """Gzip the body with ``Content-Encoding: gzip`` even if the client asked for identity."""
        return cls(gzip=True)

    @classmethod
    def wrong_etag(cls, etag: str = '"not-the-right-etag"') -> Fault:
        """Send this ``ETag`` instead of the file's."""
        return cls(etag=etag)

    @classmethod
    def chunked_body(cls) -> Fault:
        """Chunked transfer encoding, no ``Content-Length``."""
        return cls(chunked=True)

    @classmethod
    def malformed_headers(cls, *lines: bytes) -> Fault:
        """Insert raw malformed header lines (default: a line without a colon and a NUL)."""
        return cls(malformed=lines or (b"This line is not a header", b"X-Nul: a\x00b"))

    @classmethod
    def huge_header(cls, size: int = 100_000) -> Fault:
        """Add one header whose value is ``size`` bytes long."""
        return cls(header_padding=size)

    @classmethod
    def with_headers(
        cls,
        headers: Mapping[str, HeaderValue] | Iterable[tuple[str, HeaderValue]] = (),
        *,
        drop: Iterable[str] = (),
    ) -> Fault:
        """Remove the ``drop`` headers, then append ``headers`` (e.g. a hostile
        ``Content-Disposition``, a second ``ETag``, a ``Link``)."""
        items = headers.items() if isinstance(headers, Mapping) else headers
        return cls(headers=tuple(items), drop_headers=tuple(drop))

    @classmethod
    def raw_response(cls, data: bytes) -> Fault:
        """Send exactly ``data`` (any bytes: a bad status line, HTTP/1.0...), then close."""
        return cls(raw=bytes(data))

    @classmethod
    def close_connection(cls) -> Fault:
        """Answer normally with ``Connection: close`` and close."""
        return cls(close=True)


@dataclass
class _FaultEntry:
    fault: Fault
    remaining: int
    methods: frozenset[str] | None
    when: Callable[[Request], bool] | None


@dataclass(frozen=True)
class _File:
    data: bytes
    etag: str | None
    last_modified: str | None
    accept_ranges: bool
    content_disposition: str | None
    content_type: str


class _Drop(Exception):
    """Unwind a connection handler and close the socket (RST if ``rst``)."""

    def __init__(self, rst: bool = False) -> None:
        super().__init__()
        self.rst = rst


# --------------------------------------------------------------------------------------------
# Helpers


def _if_range_matches(value: str, f: _File) -> bool:
    value = value.strip()
    if value.startswith(('"', "W/")):
        return f.etag is not None and not f.etag.startswith("W/") and value == f.etag
    return f.last_modified is not None and value == f.last_modified


def _if_none_match(value: str, f: _File) -> bool:
    if value.strip() == "*":
        return True
    if f.etag is None:
        return False
    mine = f.etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == mine for tag in value.split(","))


def _unsent_bytes(conn: socket.socket) -> int:
    """Bytes still in the socket's send queue (Linux ``SIOCOUTQ``; 0 where unsupported)."""
    try:
        import fcntl  # POSIX only
        import termios

        buf = fcntl.ioctl(conn.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
        return int(struct.unpack("i", buf)[0])
    except (ImportError, OSError, AttributeError):
        return 0


def _auto_etag(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest() + '"'


def _retry_after_value(value: int | float | str | datetime) -> str:
    if isinstance(value, datetime):
        return http_date(value)
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not value.is_integer():
        return repr(value)
    return str(int(value))


# --------------------------------------------------------------------------------------------
# The server


class FaultServer:
    """A fault-injecting HTTP/1.1 server bound to ``127.0.0.1:<free port>``.

    It starts serving on construction; use it as a context manager (or call :meth:`close`).
    ``close()`` wakes every stall, closes every connection and joins every thread; leaving the
    ``with`` block raises :class:`FaultServerError` if the server had an internal error (and the
    block itself did not raise).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed = False
        self._files: dict[str, _File] = {}
        self._faults: dict[str, list[_FaultEntry]] = {}
        self._redirects: dict[str, tuple[int, str]] = {}
        self._log: list[_Slot] = []
        #: Unexpected exceptions raised inside server threads (client disconnects are not errors).
        self.errors: list[BaseException] = []
        self._server = ThreadedServer(self._serve_connection, on_error=self._record_error)
        self._stop = self._server.closing
        self.port: int = self._server.port
        #: ``http://127.0.0.1:PORT``
        self.base_url: str = self._server.url
        self._server.start(f"faultserver-{self.port}")

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        if exc_type is None:
            self.check()

    def __repr__(self) -> str:
        return f"<FaultServer {self.base_url}{' closed' if self._closed else ''}>"

    def check(self) -> None:
        """Raise :class:`FaultServerError` if a server thread had an unexpected exception."""
        if self.errors:
            raise FaultServerError(f"fault server internal errors: {self.errors!r}")

    def close(self) -> None:
        """Stop serving: wake stalls, close all connections and sockets, join all threads.

        Idempotent; returns promptly even while clients are stalled or not reading.
        """
        with self._lock:
            already = self._closed
            self._closed = True
        alive = self._server.close(JOIN_TIMEOUT)
        if alive and not already:
            self._record_error(RuntimeError(f"threads still alive after close: {alive}"))

    # -- configuration -------------------------------------------------------------------------

    def url(self, name: str, *, query: str = "") -> str:
        """``base_url + "/files/" + name`` (percent-quoted, ``/`` kept) ``+ "?" + query``."""
        u = f"{self.base_url}/files/{quote(name, safe='/')}"
        return f"{u}?{query}" if query else u

    def add_file(
        self,
        name: str,
        data: bytes,
        *,
        etag: str | None = "auto",
        last_modified: str | None = None,
        accept_ranges: bool = True,
        content_disposition: str | None = None,
        content_type: str = "application/octet-stream",
    ) -> None:
        """Serve ``data`` at ``/files/<name>`` (replacing any file of that name).

        ``etag="auto"`` is a strong quoted ETag from the sha256 of ``data``; ``None`` sends no
        ETag; any other string is sent verbatim. ``last_modified`` is an HTTP date string (see
        :func:`http_date`). ``accept_ranges=False`` ignores ``Range`` and omits
        ``Accept-Ranges``.
        """
        data = bytes(data)
        f = _File(
            data=data,
            etag=_auto_etag(data) if etag == "auto" else etag,
            last_modified=last_modified,
            accept_ranges=accept_ranges,
            content_disposition=content_disposition,
            content_type=content_type,
        )
        with self._lock:
            self._files[name] = f

    def set_file(
        self, name: str, data: bytes, *, etag: str | None = "auto", last_modified: str | None = None
    ) -> None:
        """Change an existing file's content and ETag (and ``Last-Modified``, default none),
        keeping its other settings. Responses already under way keep their old snapshot."""
        data = bytes(data)
        with self._lock:
            old = self._files[name]
            self._files[name] = dataclasses.replace(
                old,
                data=data,
                etag=_auto_etag(data) if etag == "auto" else etag,
                last_modified=last_modified,
            )

    def remove_file(self, name: str) -> None:
        """Stop serving ``name`` (404 from now on)."""
        with self._lock:
            self._files.pop(name, None)

    def file_etag(self, name: str) -> str | None:
        """The ETag currently served for ``name``."""
        with self._lock:
            return self._files[name].etag

    def add_fault(
        self,
        name: str,
        fault: Fault,
        *,
        times: int = 1,
        methods: Collection[str] | None = None,
        when: Callable[[Request], bool] | None = None,
    ) -> None:
        """Apply ``fault`` to the next ``times`` requests of file ``name`` (``-1``: forever).

        Faults of one file queue FIFO: each request uses the first queued fault whose
        ``methods`` (e.g. ``{"GET"}``) and ``when(request)`` predicate accept it.
        """
        if times == 0 or times < -1:
            raise ValueError("times must be positive or -1")
        entry = _FaultEntry(
            fault=fault,
            remaining=times,
            methods=frozenset(m.upper() for m in methods) if methods is not None else None,
            when=when,
        )
        with self._lock:
            self._faults.setdefault(name, []).append(entry)

    def clear_faults(self, name: str | None = None) -> None:
        """Drop the queued faults of ``name`` (or of every file)."""
        with self._lock:
            if name is None:
                self._faults.clear()
            else:
                self._faults.pop(name, None)

    def faults_pending(self, name: str) -> int:
        """How many uses remain in ``name``'s fault queue (-1 if one is forever)."""
        with self._lock:
            entries = self._faults.get(name, [])
            if any(e.remaining < 0 for e in entries):
                return -1
            return sum(e.remaining for e in entries)

    def add_redirect(self, path: str, location: str, *, status: int = 302) -> None:
        """Answer requests for ``path`` with ``status`` and ``Location: location`` (verbatim).

        ``path`` is matched against the request target without its query, unless ``path``
        contains ``?`` (then the whole target must match). Redirects take precedence over
        files, so ``/files/x`` can redirect too.
        """
        if not path.startswith("/"):
            raise ValueError("path must start with '/'")
        with self._lock:
            self._redirects[path] = (status, location)

    # -- log -----------------------------------------------------------------------------------

    @property
    def log(self) -> list[Request]:
        """A snapshot of every request so far, oldest first."""
        with self._lock:
            return [s.req for s in self._log]

    def requests_for(self, name: str) -> list[Request]:
        """The logged requests of file ``name``."""
        return [r for r in self.log if r.name == name]

    def clear_log(self) -> None:
        """Forget the logged requests."""
        with self._lock:
            self._log = []

    @property
    def connection_count(self) -> int:
        """How many TCP connections were accepted so far."""
        return self._server.connection_count

    def wait_for_requests(
        self,
        count: int,
        *,
        name: str | None = None,
        done: bool = False,
        timeout: float = 10.0,
    ) -> list[Request]:
        """Wait until ``count`` requests (of ``name``, if given; finished, if ``done``) are
        logged; return them. Raises ``TimeoutError``."""
        deadline = time.monotonic() + timeout
        while True:
            reqs = [
                r for r in self.log if (name is None or r.name == name) and (r.done or not done)
            ]
            if len(reqs) >= count:
                return reqs
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(reqs)} of {count} requests after {timeout} s")
            time.sleep(0.005)

    # -- internals: threads --------------------------------------------------------------------

    def _record_error(self, exc: BaseException) -> None:
        with self._lock:
            self.errors.append(exc)

    def _serve_connection(self, conn: socket.socket, cid: int) -> bool:
        """Serve the requests of one connection; True to end it with an RST."""
        try:
            reader = Reader(conn)
            while not self._stop.is_set() and self._handle_one(cid, conn, reader):
                pass
        except _Drop as drop:
            return drop.rst
        except OSError:
            pass
        return False

    def _sleep(self, seconds: float) -> None:
        """Sleep, but abort the connection at once if the server closes."""
        if seconds > 0 and self._stop.wait(seconds):
            raise _Drop()

    def _drop(self, conn: socket.socket, rst: bool) -> NoReturn:
        """End the connection now; before an RST, let the bytes already sent reach the client
        (an RST discards unsent data), waiting at most 2 s for it to read them."""
        if rst:
            deadline = time.monotonic() + 2.0
            while _unsent_bytes(conn) > 0 and time.monotonic() < deadline:
                self._sleep(0.002)
        raise _Drop(rst)

    def _update(self, slot: _Slot, **changes: object) -> None:
        with self._lock:
            slot.req = dataclasses.replace(slot.req, **changes)  # type: ignore[arg-type]

    def _add_sent(self, slot: _Slot, n: int) -> None:
        with self._lock:
            slot.req = dataclasses.replace(slot.req, body_bytes_sent=slot.req.body_bytes_sent + n)

    def _take_fault(self, name: str, req: Request) -> Fault | None:
        with self._lock:
            entries = list(self._faults.get(name, []))
        for e in entries:
            if e.methods is not None and req.method.upper() not in e.methods:
                continue
            if e.when is not None and not e.when(req):
                continue
            with self._lock:
                if e.remaining == 0:
                    continue
                if e.remaining > 0:
                    e.remaining -= 1
                    if e.remaining == 0:
                        queue = self._faults.get(name, [])
                        if e in queue:
                            queue.remove(e)
                return e.fault
        return None

    # -- internals: one request ----------------------------------------------------------------

    def _handle_one(self, cid: int, conn: socket.socket, reader: Reader) -> bool:
        """Serve one request; return whether to keep the connection open."""
        try:
            head = reader.read_request()
        except BadRequest as bad:
            conn.sendall(simple_response(bad.status, b"bad request\n"))
            return False
        if head is None:
            return False
        path = head.path
        name = unquote(path[len("/files/") :]) if path.startswith("/files/") else None
        slot = _Slot(
            Request(
                method=head.method,
                target=head.target,
                path=path,
                query=head.query,
                http_version=head.version,
                headers=head.headers,
                connection_id=cid,
                time=time.monotonic(),
                name=name,
            )
        )
        with self._lock:
            self._log.append(slot)
        try:
            return self._dispatch(conn, reader, head, slot)
        finally:
            self._update(slot, done=True)

    def _dispatch(
        self, conn: socket.socket, reader: Reader, head: RequestHead, slot: _Slot
    ) -> bool:
        try:
            reader.read_body(head.content_length)
        except BadRequest as bad:
            self._send_simple(conn, bad.status, _BAD_BODY[bad.status], slot)
            return False
        req = slot.req
        keep = keep_alive(head)
        with self._lock:
            redirect = self._redirects.get(req.target) or self._redirects.get(req.path)
        if redirect is not None:
            status, location = redirect
            hdrs: list[tuple[str, HeaderValue]] = [("Location", location), ("Content-Length", "0")]
            if not keep:
                hdrs.append(("Connection", "close"))
            self._update(slot, status=status)
            conn.sendall(head_bytes(status, hdrs))
            return keep
        fault = self._take_fault(req.name, req) if req.name is not None else None
        if fault is not None:
            self._update(slot, fault=fault)
        return self._respond(conn, slot, fault or Fault(), keep)

    def _respond(self, conn: socket.socket, slot: _Slot, fault: Fault, keep: bool) -> bool:
        """Answer a file request as ``fault`` says; return whether to keep the connection."""
        req = slot.req
        self._before_answer(conn, req.name, fault)
        status, hdrs, body = self._answer(req, fault)
        hdrs, extra, body = _header_faults(status, hdrs, body, fault, keep)
        # After a Content-Length lie the stream is out of step: close (without announcing it).
        close_after = not keep or fault.close or fault.content_length_delta != 0
        head = head_bytes(status, hdrs, extra)
        self._update(slot, status=status)
        if req.method == "HEAD" or status == 304:
            body = b""
        view = memoryview(body)
        plain = (
            not fault.chunked
            and fault.rate is None
            and fault.stall_at is None
            and fault.drop_after is None
        )
        if plain and len(view) <= 64 * 1024:
            self._add_sent(slot, len(view))
            conn.sendall(head + view)
        else:
            conn.sendall(head)
            self._send_body(conn, slot, view, fault)
        return not close_after

    def _before_answer(self, conn: socket.socket, name: str | None, fault: Fault) -> None:
        """The faults that act before any answer: an upstream update, a raw answer, a hang-up,
        a delay."""
        if fault.update_data is not None and name is not None:
            with self._lock:
                old = self._files.get(name)
            if old is not None:
                self.set_file(name, fault.update_data, etag=fault.update_etag)
            else:
                self.add_file(name, fault.update_data, etag=fault.update_etag)
        if fault.raw is not None:
            conn.sendall(fault.raw)
            self._drop(conn, fault.rst)
        if fault.hangup:
            raise _Drop(fault.rst)
        self._sleep(fault.delay)

    def _answer(
        self, req: Request, fault: Fault
    ) -> tuple[int, list[tuple[str, HeaderValue]], bytes | memoryview]:
        """Status, headers and body: the injected error, 404, 405, or (a range of) the file."""
        with self._lock:
            f = self._files.get(req.name) if req.name is not None else None
        hdrs: list[tuple[str, HeaderValue]] = [("Date", http_date()), ("Server", "faultserver")]
        body: bytes | memoryview
        if fault.status is not None:
            status = fault.status
            body = fault.error_body if fault.error_body is not None else b"injected %d\n" % status
            hdrs.append(("Content-Type", "text/plain"))
            if fault.retry_after is not None:
                hdrs.append(("Retry-After", _retry_after_value(fault.retry_after)))
        elif f is None:
            status, body = 404, b"not found\n"
            hdrs.append(("Content-Type", "text/plain"))
        elif req.method not in ("GET", "HEAD"):
            status, body = 405, b"method not allowed\n"
            hdrs += [("Content-Type", "text/plain"), ("Allow", "GET, HEAD")]
        else:
            status, body = self._file_response(req, f, fault, hdrs)
        return status, hdrs, body

    def _file_response(
        self, req: Request, f: _File, fault: Fault, hdrs: list[tuple[str, HeaderValue]]
    ) -> tuple[int, bytes | memoryview]:
        size = len(f.data)
        hdrs.append(("Content-Type", f.content_type))
        if f.etag is not None:
            hdrs.append(("ETag", f.etag))
        if f.last_modified is not None:
            hdrs.append(("Last-Modified", f.last_modified))
        if f.accept_ranges:
            hdrs.append(("Accept-Ranges", "bytes"))
        if f.content_disposition is not None:
            hdrs.append(("Content-Disposition", f.content_disposition))

        inm = req.headers.get("if-none-match")
        if inm is not None and _if_none_match(inm, f):
            return 304, b""

        rng: tuple[int, int] | Literal["unsatisfiable"] | None = None
        range_header = req.range
        if range_header is not None and f.accept_ranges and not fault.ignore_range:
            if_range = req.if_range
            if if_range is None or _if_range_matches(if_range, f):
                rng = parse_range(range_header, size)
        if rng is None:
            return 200, memoryview(f.data)
        if rng == "unsatisfiable":
            hdrs.append(("Content-Range", f"bytes */{size}"))
            return 416, b""
        start, end = rng
        ds, de, dt = fault.content_range_delta
        cs, ce, ct = start + ds, end + de, size + dt
        hdrs.append(("Content-Range", f"bytes {cs}-{ce}/{ct}"))
        if fault.range_bytes == "claimed":
            return 206, memoryview(f.data)[max(cs, 0) : max(ce + 1, 0)]
        return 206, memoryview(f.data)[start : end + 1]

    def _send_body(self, conn: socket.socket, slot: _Slot, body: memoryview, fault: Fault) -> None:
        total = len(body)
        limit = total if fault.drop_after is None else min(total, max(fault.drop_after, 0))
        stall_at = fault.stall_at
        rate = fault.rate
        piece = SEND_CHUNK if rate is None else max(1, min(SEND_CHUNK, int(rate / 20)))
        pos = 0
        base_pos, base_t = 0, time.monotonic()
        while True:
            if stall_at is not None and pos >= stall_at:
                stall_at = None
                self._sleep(fault.stall_seconds)
                if fault.stall_then == "close":
                    self._drop(conn, fault.rst)
                base_pos, base_t = pos, time.monotonic()
            if pos >= limit:
                break
            end = min(pos + piece, limit)
            if stall_at is not None and stall_at > pos:
                end = min(end, stall_at)
            chunk = body[pos:end]
            self._add_sent(slot, len(chunk))
            if fault.chunked:
                conn.sendall(b"%x\r\n" % len(chunk))
                conn.sendall(chunk)
                conn.sendall(b"\r\n")
            else:
                conn.sendall(chunk)
            pos = end
            if rate is not None:
                self._sleep(base_t + (pos - base_pos) / rate - time.monotonic())
        if fault.drop_after is not None:
            self._drop(conn, fault.rst)
        if fault.chunked:
            conn.sendall(b"0\r\n\r\n")

    def _send_simple(
        self, conn: socket.socket, status: int, body: bytes, slot: _Slot | None = None
    ) -> None:
        """A small error response followed by ``Connection: close``."""
        if slot is not None:
            self._update(slot, status=status, body_bytes_sent=len(body))
        conn.sendall(simple_response(status, body))


#: The answer to a request body the server cannot read.
_BAD_BODY = {
    400: b"bad content-length\n",
    501: b"chunked request bodies are not supported\n",
}


def _header_faults(
    status: int,
    hdrs: list[tuple[str, HeaderValue]],
    body: bytes | memoryview,
    fault: Fault,
    keep: bool,
) -> tuple[list[tuple[str, HeaderValue]], list[bytes], bytes | memoryview]:
    """Apply the header faults (and the framing headers they change): the headers, raw extra
    header lines, and the body (gzipped on request)."""
    if fault.etag is not None:
        hdrs = [(k, v) for k, v in hdrs if k.lower() != "etag"]
        hdrs.append(("ETag", fault.etag))
    if fault.gzip and status != 304:
        body = gzip.compress(bytes(body), mtime=0)
        hdrs.append(("Content-Encoding", "gzip"))
    if fault.chunked:
        hdrs.append(("Transfer-Encoding", "chunked"))
    elif status != 304:
        hdrs.append(("Content-Length", str(len(body) + fault.content_length_delta)))
    if not keep or fault.close:
        hdrs.append(("Connection", "close"))
    if fault.drop_headers:
        gone = {h.lower() for h in fault.drop_headers}
        hdrs = [(k, v) for k, v in hdrs if k.lower() not in gone]
    hdrs += fault.headers
    extra = list(fault.malformed)
    if fault.header_padding:
        extra.append(b"X-Padding: " + b"a" * fault.header_padding)
    return hdrs, extra, body
