"""An emulator origin: the request/response types, and the connection handler that runs on the
shared threaded server (:mod:`._server`), applies faults and per-connection throttling.

It knows nothing about the Hub: it turns each request into a :class:`Request`, asks its
:class:`App` for a :class:`Response`, lets the fault switches alter it, and writes it out in
large chunks (memoryviews straight from the content, no per-byte Python work).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

from ._content import Content
from ._faults import ANY_KINDS, BODY_KINDS, Fault, Faults
from ._log import Headers, RequestLog, RequestRecord
from ._server import (
    BadRequest,
    Reader,
    RequestHead,
    ThreadedServer,
    head_bytes,
    http_date,
    keep_alive,
    simple_response,
)

__all__ = ["App", "ContentBody", "OriginServer", "Request", "Response"]

_CHUNK = 1 << 20
_TAIL = 16 * 1024
_NETWORK_ERRORS = (ConnectionError, TimeoutError, BrokenPipeError)


@dataclass(frozen=True)
class Request:
    """An incoming request: ``path`` is still percent-encoded; ``query`` is the raw query."""

    origin: str
    method: str
    path: str
    query: str
    headers: Headers
    body: bytes


@dataclass(frozen=True)
class ContentBody:
    """The bytes ``[start, end)`` of a content, to be streamed."""

    content: Content
    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start


@dataclass
class Response:
    """What to answer. ``is_file``: the body is (a range of) a repo file or CDN blob, so the
    file faults apply; ``changeable``: the "change" fault applies (file answers and resolve
    metadata)."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes | ContentBody = b""
    repo_id: str | None = None
    file_path: str | None = None
    is_file: bool = False
    changeable: bool = False


class App(Protocol):
    """What the server needs from the emulator."""

    faults: Faults
    log: RequestLog
    closing: threading.Event

    def handle(self, request: Request, *, variant: bool, ignore_range: bool) -> Response:
        """Answer a request (``variant``: serve the changed file; ``ignore_range``: 200)."""
        ...

    def fault_response(self, request: Request, fault: Fault) -> Response:
        """The answer a ``"status"`` fault gives."""
        ...

    def throttle_rate(self, origin: str, file_path: str | None) -> int | None:
        """Bytes/s for file bodies on this origin and path, or None (unthrottled)."""
        ...

    def record_error(self, text: str) -> None:
        """Keep an unexpected server-side exception for the tests to see."""
        ...


class _Dropped(Exception):
    """The connection was closed on purpose by a ``"drop"`` fault."""


class _TokenBucket:
    """Per-connection rate limiter with a small burst (50 ms worth, at least 4 KiB)."""

    def __init__(self) -> None:
        self.tokens: float | None = None
        self.stamp = 0.0

    @staticmethod
    def burst(rate: int) -> int:
        return max(4096, min(rate // 20, _CHUNK))

    def consume(self, n: int, rate: int, closing: threading.Event) -> None:
        burst = self.burst(rate)
        now = time.monotonic()
        if self.tokens is None:
            self.tokens = float(burst)
        else:
            self.tokens = min(float(burst), self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        self.tokens -= n
        if self.tokens < 0:
            # The deficit stays on the books: the next refill counts from `now`, so time
            # overslept here is not lost and the long-run rate is exact.
            closing.wait(-self.tokens / rate)


@dataclass
class _Outcome:
    """What one request got, for its log record."""

    status: int = 0
    sent: int = 0
    response: Response | None = None
    fired: list[Fault] = field(default_factory=list)


@dataclass
class _BodyPlan:
    """How a body goes out: chunk size, pacing, where it is cut or corrupted."""

    chunk_size: int = _CHUNK
    rate: int | None = None
    trickle: bool = False
    limit: int | None = None
    corrupt_at: int | None = None


class _Connection:
    """One client connection of an origin: its requests in turn (keep-alive) until either side
    ends it."""

    def __init__(self, server: OriginServer, conn: socket.socket, connection_id: int) -> None:
        self.server = server
        self.app = server.app
        self.conn = conn
        self.connection_id = connection_id
        self.reader = Reader(conn)
        self.bucket = _TokenBucket()
        self.close_connection = False
        self.method = ""
        self._headers_sent = False
        self._place: int | None = None
        #: Body bytes of the current answer written so far (logged if the client goes away).
        self._body_sent = 0

    def serve(self) -> None:
        while not self.close_connection:
            try:
                head = self.reader.read_request()
                if head is None:
                    return
                body = self.reader.read_body(head.content_length)
            except BadRequest as bad:
                self.conn.sendall(simple_response(bad.status, b"bad request\n"))
                return
            self.close_connection = not keep_alive(head)
            self._serve(head, body)

    # -- one request ---------------------------------------------------------------------------

    def _serve(self, head: RequestHead, body: bytes) -> None:
        started, t0 = time.time(), time.monotonic()
        self.method = head.method
        origin = self.server.origin
        request = Request(origin, head.method, head.path, head.query, head.headers, body)
        self._headers_sent = False
        self._place = None
        self._body_sent = 0
        outcome = _Outcome()
        try:
            self._answer(request, outcome)
        except _Dropped as exc:
            outcome.sent = int(str(exc))
        except _NETWORK_ERRORS:
            outcome.sent = self._body_sent  # the client went away: what it was sent until then
            self.close_connection = True
        except Exception:  # noqa: BLE001 - any emulator bug becomes a 500 and a recorded error
            self.app.record_error(traceback.format_exc())
            self.close_connection = True
            if not self._headers_sent:
                outcome.status = 500
                with contextlib.suppress(OSError):
                    self._write(Response(500, [], b"emulator error, see hub.server_errors"), {})
        finally:
            self._record(request, outcome, started, time.monotonic() - t0)

    def _answer(self, request: Request, outcome: _Outcome) -> None:
        """Ask the app, apply the faults that fire, write the answer."""
        app = self.app
        response = outcome.response = app.handle(request, variant=False, ignore_range=False)
        outcome.fired = app.faults.take(
            origin=request.origin,
            method=request.method,
            url_path=request.path,
            file_path=response.file_path,
            repo_id=response.repo_id,
            kinds=self._applicable(request, response),
        )
        by_kind: dict[str, Fault] = {f.kind: f for f in outcome.fired}
        if "delay" in by_kind:
            by_kind["delay"].wait(app.closing)
        if "status" in by_kind:
            response = app.fault_response(request, by_kind["status"])
        elif "change" in by_kind or "ignore_range" in by_kind:
            response = app.handle(
                request, variant="change" in by_kind, ignore_range="ignore_range" in by_kind
            )
        outcome.response = response
        if "reset" in by_kind:
            self._drop()
        outcome.status = response.status
        outcome.sent = self._write(response, by_kind)

    def _record(self, request: Request, outcome: _Outcome, started: float, took: float) -> None:
        response = outcome.response
        record = RequestRecord(
            origin=request.origin,
            method=request.method,
            path=request.path,
            query=request.query,
            headers=request.headers,
            status=outcome.status,
            bytes_sent=outcome.sent,
            range=request.headers.get("range"),
            started=started,
            duration=took,
            connection=self.connection_id,
            repo_id=response.repo_id if response else None,
            file_path=response.file_path if response else None,
            faults=tuple(f.kind for f in outcome.fired),
        )
        self.app.log.append(record, self._place)

    @staticmethod
    def _applicable(request: Request, response: Response) -> set[str]:
        kinds = set(ANY_KINDS)
        has_body = request.method != "HEAD" and len(response.body) > 0
        if has_body:
            kinds |= BODY_KINDS
        if response.is_file and request.method != "HEAD":
            kinds.add("corrupt")
            if "range" in request.headers:
                kinds.add("ignore_range")
        if response.changeable:
            kinds.add("change")
        return kinds

    def _finishing(self) -> None:
        """Tell the log this answer is about to end (see :class:`RequestLog`)."""
        if self._place is None:
            self._place = self.app.log.finishing()

    def _drop(self, sent: int = 0) -> None:
        self._finishing()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.conn.shutdown(socket.SHUT_RDWR)
        raise _Dropped(str(sent))

    # -- writing -------------------------------------------------------------------------------

    def _write(self, response: Response, by_kind: dict[str, Fault]) -> int:
        body = response.body
        headers = [("Server", "nbmodels-hub-emulator"), ("Date", http_date()), *response.headers]
        headers.append(("Content-Length", str(len(body))))
        quick = not {"stall", "drop", "trickle"} & set(by_kind) and len(body) <= _TAIL
        if self.method == "HEAD" or len(body) == 0 or quick:
            # A client may act on the headers alone (an error status) and never read a small
            # body: announce the end before they leave, so the log never misses this answer.
            self._finishing()
        self.conn.sendall(head_bytes(response.status, headers))
        self._headers_sent = True
        if self.method == "HEAD" or len(body) == 0:
            return 0
        if (stall := by_kind.get("stall")) is not None:
            stall.wait(self.app.closing)
        return self._send_body(body, self._plan(response, by_kind))

    def _plan(self, response: Response, by_kind: dict[str, Fault]) -> _BodyPlan:
        body = response.body
        plan = _BodyPlan()
        drop, trickle, corrupt = by_kind.get("drop"), by_kind.get("trickle"), by_kind.get("corrupt")
        if trickle is not None:
            plan.rate, plan.trickle = trickle.rate, True
            plan.chunk_size = max(1, trickle.rate // 20)
        elif isinstance(body, ContentBody):
            plan.rate = self.app.throttle_rate(self.server.origin, response.file_path)
            plan.chunk_size = _CHUNK if plan.rate is None else _TokenBucket.burst(plan.rate)
        plan.limit = None if drop is None else drop.after_bytes
        if corrupt is not None and isinstance(body, ContentBody):
            size = body.content.size
            plan.corrupt_at = size // 2 if corrupt.offset is None else corrupt.offset
        return plan

    def _send_body(self, body: bytes | ContentBody, plan: _BodyPlan) -> int:
        app, limit = self.app, plan.limit
        sent = 0
        for piece in _chunks(body, plan.chunk_size):
            chunk, n = piece, len(piece)
            if plan.corrupt_at is not None and isinstance(body, ContentBody):
                chunk = _flip(piece, plan.corrupt_at - (body.start + sent))
            if limit is not None and sent + n > limit:
                self._finishing()
                self.conn.sendall(chunk[: limit - sent])
                self._drop(limit)
            if plan.rate is not None:
                if plan.trickle:
                    app.closing.wait(n / plan.rate)
                else:
                    self.bucket.consume(n, plan.rate, app.closing)
                if app.closing.is_set():
                    self._drop(sent)
            if sent + n >= len(body):
                # Announce the end just before a final write small enough for the socket
                # buffer, so a reader who paused does not keep the log waiting.
                if n > _TAIL:
                    self.conn.sendall(chunk[: n - _TAIL])
                    sent, n, chunk = sent + n - _TAIL, _TAIL, chunk[n - _TAIL :]
                self._finishing()
            self.conn.sendall(chunk)
            sent += n
            self._body_sent = sent
        if limit is not None:
            self._drop(sent)
        return sent


def _flip(chunk: bytes | memoryview, index: int) -> bytes | memoryview:
    """``chunk`` with the byte at ``index`` inverted (as it is when ``index`` is outside)."""
    if not 0 <= index < len(chunk):
        return chunk
    mutable = bytearray(chunk)
    mutable[index] ^= 0xFF
    return bytes(mutable)


def _chunks(body: bytes | ContentBody, size: int) -> Iterator[bytes | memoryview]:
    if isinstance(body, ContentBody):
        yield from body.content.iter_chunks(body.start, body.end, size)
    else:
        view = memoryview(body)
        for i in range(0, len(body), size):
            yield view[i : i + size]


class OriginServer:
    """One origin (``"hub"`` or ``"cdn"``) of the emulator on ``host:port`` (0: a free port):
    the shared :class:`~._server.ThreadedServer` running this module's connection handler."""

    def __init__(self, app: App, origin: str, host: str, port: int = 0) -> None:
        self.app = app
        self.origin = origin
        self._server = ThreadedServer(self._connection, host=host, port=port, on_error=self._error)

    @property
    def url(self) -> str:
        """``http://host:port`` of this origin."""
        return self._server.url

    def start(self) -> None:
        """Start accepting connections (daemon threads)."""
        self._server.start(f"nbmodels-emulator-{self.origin}")

    def stop(self, timeout: float = 5.0) -> list[str]:
        """Stop serving and join every thread; return the names of threads that did not end."""
        return self._server.close(timeout)

    def _connection(self, conn: socket.socket, connection_id: int) -> bool:
        try:
            _Connection(self, conn, connection_id).serve()
        except _NETWORK_ERRORS:
            pass
        except OSError:
            if not self.app.closing.is_set():
                raise
        return False

    def _error(self, exc: BaseException) -> None:
        self.app.record_error("".join(traceback.format_exception(exc)))
