"""A node's peer server: the files this node has verified, for the other nodes of one prefetch.

- It serves only what was :meth:`PeerServer.add`-ed (a blob published and verified here), by
  its cache blob name: ``GET`` / ``HEAD /blobs/<etag>``. Anything else is a 404.
- Only with the prefetch's secret (``Authorization: Bearer <secret>``, compared in constant
  time); without it, a 401 that says nothing about what is served.
- One byte range per request (``Range: bytes=S-E`` or ``S-``) answered with exactly that range
  (206 + ``Content-Range``), ``If-Range`` with another validator gets the whole file (200), a
  range past the end a 416; ``ETag`` is the prefetch's validator of the file, so a transfer can
  resume across peers and the Hub (:mod:`nbmodels.transfer`, rule 2 of the download contract).
  Bodies are never encoded.
- Bound to the node's cluster address; a thread per connection; :meth:`PeerServer.stop` closes
  the listening socket, ends the open connections and joins the threads.
- It answers as many requests at once as ``uploads`` downloads may open (the coordinator lets
  that many nodes copy from it; each opens at most :data:`MAX_CONNECTIONS`); beyond, a 503 with
  ``Retry-After``, which a transfer takes as pushback. ``rate`` throttles each connection
  (bytes/s), as the Hub emulator can: for tests and the simulation in docs/cluster.md.
"""

from __future__ import annotations

import contextlib
import hmac
import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .._options import MAX_CONNECTIONS as MAX_OPTION_CONNECTIONS
from ._coordinator import UPLOADS_PER_PEER

__all__ = ["PeerServer", "Served"]

#: Connections one download may open to a peer (``connections=`` allows at most this).
MAX_CONNECTIONS = MAX_OPTION_CONNECTIONS

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")
_BLOB = re.compile(r"/blobs/([0-9a-f]{40}|[0-9a-f]{64})")
_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class Served:
    """One verified file a peer offers: where its bytes are, how many, under which validator."""

    path: Path
    size: int
    validator: str


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    #: The listen backlog (socketserver's default, 5, makes a burst of connections wait for
    #: SYN retransmits: seconds).
    request_queue_size = 1024
    peer: PeerServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection the other side dropped (or :meth:`PeerServer.stop` ended) is not an
        error worth a traceback on the node's log."""


class PeerServer:
    """The HTTP server of one node for one prefetch (see the module's docstring)."""

    def __init__(
        self,
        host: str,
        secret: str,
        *,
        uploads: int = UPLOADS_PER_PEER,
        rate: int | None = None,
    ) -> None:
        self.secret = secret.encode()
        self.max_uploads = uploads * MAX_CONNECTIONS
        self.rate = rate
        self.bytes_sent = 0
        self._files: dict[str, Served] = {}
        self._lock = threading.Lock()
        self._uploads = 0
        self._open: set[socket.socket] = set()
        self._server = _Server((host, 0), _Handler)
        self._server.peer = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="nbmodels-peer", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{name}]" if ":" in name else name
        return f"http://{shown}:{port}"

    def blob_url(self, etag: str) -> str:
        return f"{self.url}/blobs/{etag}"

    def add(self, etag: str, served: Served) -> str:
        """Offer a verified file from now on; returns its URL."""
        with self._lock:
            self._files[etag] = served
        return self.blob_url(etag)

    def stop(self) -> None:
        """Stop listening, end every open connection, join the server's thread."""
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)

    # -- used by the handler (its threads) ------------------------------------------------------

    def authorized(self, header: str | None) -> bool:
        scheme, _, token = (header or "").partition(" ")
        given = token.strip().encode()
        return scheme.lower() == "bearer" and hmac.compare_digest(given, self.secret)

    def lookup(self, path: str) -> Served | None:
        match = _BLOB.fullmatch(path)
        if match is None:
            return None
        with self._lock:
            return self._files.get(match.group(1))

    def take_upload(self) -> bool:
        with self._lock:
            if self._uploads >= self.max_uploads:
                return False
            self._uploads += 1
            return True

    def end_upload(self, sent: int) -> None:
        with self._lock:
            self._uploads -= 1
            self.bytes_sent += sent

    def track(self, sock: socket.socket, open_: bool) -> None:
        with self._lock:
            if open_:
                self._open.add(sock)
            else:
                self._open.discard(sock)


class Unsatisfiable(Exception):
    """A range that starts past the end of the file (a 416)."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` of a single ``Range``; None: the whole file. Raises
    :class:`Unsatisfiable` for a range past the end."""
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None  # not a single byte range: answer with the whole file
    first = int(match.group(1))
    last = int(match.group(2)) if match.group(2) else size - 1
    if first >= size or last < first:
        raise Unsatisfiable
    return first, min(last, size - 1)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.peer.track(self.connection, True)

    def finish(self) -> None:
        self.server.peer.track(self.connection, False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: a node's log is not the place for every range request."""

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, *, body: bool) -> None:
        peer = self.server.peer
        if not peer.authorized(self.headers.get("Authorization")):
            self._empty(401, [("WWW-Authenticate", "Bearer")])
            return
        served = peer.lookup(self.path)
        if served is None:
            self._empty(404)
            return
        if not peer.take_upload():
            self._empty(503, [("Retry-After", "1")])
            return
        sent = 0
        try:
            sent = self._send(served, body=body)
        finally:
            peer.end_upload(sent)

    def _send(self, served: Served, *, body: bool) -> int:
        wanted = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range.strip() != served.validator:
            wanted = None  # the asker's copy is of another object: the whole file
        base = [("ETag", served.validator), ("Accept-Ranges", "bytes")]
        try:
            parsed = byte_range(wanted, served.size)
        except Unsatisfiable:
            self._empty(416, [*base, ("Content-Range", f"bytes */{served.size}")])
            return 0
        first, last = (0, served.size - 1) if parsed is None else parsed
        length = max(0, last - first + 1)
        self.send_response(200 if parsed is None else 206)
        for name, value in base:
            self.send_header(name, value)
        if parsed is not None:
            self.send_header("Content-Range", f"bytes {first}-{last}/{served.size}")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if not body or length == 0:
            return 0
        return self._body(served.path, first, length)

    def _body(self, path: Path, first: int, length: int) -> int:
        """Send ``length`` bytes from ``first``; a connection that goes away just ends it."""
        rate = self.server.peer.rate
        sent = 0
        try:
            with path.open("rb") as f:
                if rate is None:
                    return int(self.connection.sendfile(f, first, length))
                started = time.monotonic()
                while sent < length:
                    chunk = os.pread(f.fileno(), min(_CHUNK, length - sent, rate), first + sent)
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    sent += len(chunk)
                    ahead = sent / rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
        except OSError:
            self.close_connection = True
        return sent

    def _empty(self, status: int, headers: list[tuple[str, str]] | None = None) -> None:
        self.send_response(status)
        for name, value in headers or []:
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()
