"""HTTP plumbing: a threaded HTTP/1.1 server per origin, the request/response types, and the body
writer that applies faults and per-connection throttling.

The server knows nothing about the Hub: it turns each request into a :class:`Request`, asks its
:class:`App` for a :class:`Response`, lets the fault switches alter it, and writes it out in
large chunks (memoryviews straight from the content, no per-byte Python work).
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import socketserver
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Protocol

from ._content import Content
from ._faults import ANY_KINDS, BODY_KINDS, Fault, Faults
from ._log import Headers, RequestLog, RequestRecord

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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms stalls
    server: OriginServer
    connection_id: int
    bucket: _TokenBucket
    _headers_sent: bool = False
    _announced: bool = False

    def setup(self) -> None:
        super().setup()
        self.connection_id = self.server.connection_id(self.request)
        self.bucket = _TokenBucket()

    def log_message(self, format: str, *args: object) -> None:
        """Silence the stdlib's stderr log: the emulator keeps its own request log."""

    def version_string(self) -> str:
        return "nbmodels-hub-emulator"

    def do_GET(self) -> None:
        self._serve()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    # -- one request ---------------------------------------------------------------------------

    def _serve(self) -> None:
        app = self.server.app
        started, t0 = time.time(), time.monotonic()
        path, _, query = self.path.partition("?")
        headers = Headers((k, v) for k, v in self.headers.items())
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        request = Request(self.server.origin, self.command, path, query, headers, body)
        status, sent = 0, 0
        self._headers_sent = False
        self._announced = False
        response: Response | None = None
        fired: list[Fault] = []
        try:
            response = app.handle(request, variant=False, ignore_range=False)
            fired = app.faults.take(
                origin=request.origin,
                method=request.method,
                url_path=request.path,
                file_path=response.file_path,
                repo_id=response.repo_id,
                kinds=self._applicable(request, response),
            )
            by_kind: dict[str, Fault] = {f.kind: f for f in fired}
            if "delay" in by_kind:
                by_kind["delay"].wait(app.closing)
            if "status" in by_kind:
                response = app.fault_response(request, by_kind["status"])
            elif "change" in by_kind or "ignore_range" in by_kind:
                response = app.handle(
                    request, variant="change" in by_kind, ignore_range="ignore_range" in by_kind
                )
            if "reset" in by_kind:
                self._drop()
            status = response.status
            sent = self._write(response, by_kind)
        except _Dropped as exc:
            sent = int(str(exc))
        except _NETWORK_ERRORS:
            self.close_connection = True
        except Exception:  # noqa: BLE001 - any emulator bug becomes a 500 and a recorded error
            app.record_error(traceback.format_exc())
            self.close_connection = True
            if not self._headers_sent:
                status = 500
                with contextlib.suppress(OSError):
                    self._write(Response(500, [], b"emulator error, see hub.server_errors"), {})
        finally:
            record = RequestRecord(
                origin=request.origin,
                method=request.method,
                path=request.path,
                query=request.query,
                headers=headers,
                status=status,
                bytes_sent=sent,
                range=headers.get("range"),
                started=started,
                duration=time.monotonic() - t0,
                connection=self.connection_id,
                repo_id=response.repo_id if response else None,
                file_path=response.file_path if response else None,
                faults=tuple(f.kind for f in fired),
            )
            app.log.append(record, self._announced)

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
        if not self._announced:
            self._announced = True
            self.server.app.log.finishing()

    def _drop(self, sent: int = 0) -> None:
        self._finishing()
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        raise _Dropped(str(sent))

    def _write(self, response: Response, by_kind: dict[str, Fault]) -> int:
        app = self.server.app
        body = response.body
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        quick = not {"stall", "drop", "trickle"} & set(by_kind) and len(body) <= _TAIL
        if self.command == "HEAD" or len(body) == 0 or quick:
            # A client may act on the headers alone (an error status) and never read a small
            # body: announce the end before they leave, so the log never misses this answer.
            self._finishing()
        self.end_headers()
        self._headers_sent = True
        if self.command == "HEAD" or len(body) == 0:
            return 0
        if (stall := by_kind.get("stall")) is not None:
            stall.wait(app.closing)
        drop, trickle, corrupt = by_kind.get("drop"), by_kind.get("trickle"), by_kind.get("corrupt")
        rate: int | None = None
        if trickle is not None:
            rate = trickle.rate
            chunk_size = max(1, trickle.rate // 20)
        elif isinstance(body, ContentBody):
            rate = app.throttle_rate(self.server.origin, response.file_path)
            chunk_size = _CHUNK if rate is None else _TokenBucket.burst(rate)
        else:
            chunk_size = _CHUNK
        limit = None if drop is None else drop.after_bytes
        corrupt_at = None
        if corrupt is not None and isinstance(body, ContentBody):
            size = body.content.size
            corrupt_at = size // 2 if corrupt.offset is None else corrupt.offset
        sent = 0
        for chunk in _chunks(body, chunk_size):
            n = len(chunk)
            if corrupt_at is not None and isinstance(body, ContentBody):
                pos = body.start + sent
                if pos <= corrupt_at < pos + n:
                    mutable = bytearray(chunk)
                    mutable[corrupt_at - pos] ^= 0xFF
                    chunk = bytes(mutable)
            if limit is not None and sent + n > limit:
                self._finishing()
                self.wfile.write(chunk[: limit - sent])
                self._drop(limit)
            if rate is not None:
                if trickle is not None:
                    app.closing.wait(n / rate)
                else:
                    self.bucket.consume(n, rate, app.closing)
                if app.closing.is_set():
                    self._drop(sent)
            if sent + n >= len(body):
                # Announce the end just before a final write small enough for the socket
                # buffer, so a reader who paused does not keep the log waiting.
                if n > _TAIL:
                    self.wfile.write(chunk[: n - _TAIL])
                    sent, n, chunk = sent + n - _TAIL, _TAIL, chunk[n - _TAIL :]
                self._finishing()
            self.wfile.write(chunk)
            sent += n
        if drop is not None:
            self._drop(sent)
        return sent


def _chunks(body: bytes | ContentBody, size: int) -> Iterator[bytes | memoryview]:
    if isinstance(body, ContentBody):
        yield from body.content.iter_chunks(body.start, body.end, size)
    else:
        view = memoryview(body)
        for i in range(0, len(body), size):
            yield view[i : i + size]


class OriginServer(socketserver.TCPServer):
    """One listening origin on ``host:port`` (0: ephemeral), a thread per connection, all tracked.

    :meth:`stop` closes the listener, shuts down every open connection (so keep-alive threads
    waiting for the next request wake up) and joins every thread.
    """

    request_queue_size = 128
    allow_reuse_address = False

    def __init__(self, app: App, origin: str, host: str, port: int = 0) -> None:
        self.app = app
        self.origin = origin
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._connections: dict[socket.socket, int] = {}
        self._threads: set[threading.Thread] = set()
        self._serving: threading.Thread | None = None
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        """``http://host:port`` of this origin."""
        host, port = self.socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        """Start accepting connections in a daemon thread."""
        self._serving = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"nbmodels-emulator-{self.origin}-accept",
            daemon=True,
        )
        self._serving.start()

    def connection_id(self, request: socket.socket) -> int:
        with self._lock:
            return self._connections.get(request, 0)

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        with self._lock:
            cid = next(self._ids)
            self._connections[request] = cid
            thread = threading.Thread(
                target=self._run,
                args=(request, client_address),
                name=f"nbmodels-emulator-{self.origin}-conn-{cid}",
                daemon=True,
            )
            self._threads.add(thread)
        thread.start()

    def _run(self, request: socket.socket, client_address: object) -> None:
        try:
            self.finish_request(request, client_address)
        except _NETWORK_ERRORS:
            pass
        except OSError:
            if not self.app.closing.is_set():
                self.app.record_error(traceback.format_exc())
        except Exception:  # noqa: BLE001 - keep the thread's failure for the tests to see
            self.app.record_error(traceback.format_exc())
        finally:
            self.shutdown_request(request)
            with self._lock:
                self._connections.pop(request, None)
                self._threads.discard(threading.current_thread())

    def stop(self, timeout: float = 5.0) -> list[str]:
        """Stop serving and join every thread; return the names of threads that did not end."""
        if self._serving is not None:
            self.shutdown()
            self._serving.join(timeout)
        self.server_close()
        with self._lock:
            connections = list(self._connections)
            threads = list(self._threads)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in threads if t.is_alive()]
        if self._serving is not None and self._serving.is_alive():
            stuck.append(self._serving.name)
        return stuck
