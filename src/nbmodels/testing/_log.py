"""The request log: one immutable record per HTTP request the emulator answered (or dropped)."""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass

from ._server import Headers

__all__ = ["Headers", "RequestLog", "RequestRecord"]


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """What one request asked for and what the emulator answered.

    Attributes:
        origin: ``"hub"`` or ``"cdn"``.
        method: ``"GET"``, ``"HEAD"``, ``"POST"``...
        path: the URL path as sent (still percent-encoded), without the query.
        query: the raw query string (``""`` if none).
        headers: the request headers (case-insensitive lookup; ``.pairs()`` for the raw list).
        status: the status code sent (``0`` if the connection was dropped before answering).
        bytes_sent: body bytes written (not counting headers).
        range: the ``Range`` header sent, if any.
        started: ``time.time()`` when the request line arrived.
        duration: seconds until the answer was complete (or the connection dropped).
        connection: an id of the TCP connection (equal ids: a reused keep-alive connection).
        repo_id: the repository the request was about, if any.
        file_path: the repo file path the request was about, if any.
        faults: the kinds of the faults that fired for this request.
    """

    origin: str
    method: str
    path: str
    query: str
    headers: Headers
    status: int
    bytes_sent: int
    range: str | None
    started: float
    duration: float
    connection: int
    repo_id: str | None
    file_path: str | None
    faults: tuple[str, ...]

    @property
    def authorization(self) -> str | None:
        """The ``Authorization`` header of the request, if one was sent."""
        return self.headers.get("authorization")


class RequestLog:
    """A thread-safe, append-only list of :class:`RequestRecord`, in the order the answers ended.

    A client can see the end of an answer before the server thread has logged it. So the server
    announces each answer just before its last bytes (or a drop) go out (:meth:`finishing`),
    which also gives the answer its place in the log, and :meth:`snapshot` waits, briefly, for
    announced answers to be logged: a test that reads the log right after a request finished
    always finds that request, after the requests that finished before it (a redirect before
    the request it led to, even when the second one's thread logs first).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._entries: list[tuple[int, RequestRecord]] = []
        self._finishing = 0
        self._places = 0

    def finishing(self) -> int:
        """An answer is about to complete: its place in the log, for :meth:`append`."""
        with self._cond:
            self._finishing += 1
            self._places += 1
            return self._places

    def append(self, record: RequestRecord, place: int | None = None) -> None:
        """Add a record (called by the server when a request ends) at the ``place``
        :meth:`finishing` gave it, or last if it was not announced."""
        with self._cond:
            if place is None:
                self._places += 1
                place = self._places
            else:
                self._finishing -= 1
            bisect.insort(self._entries, (place, record), key=lambda entry: entry[0])
            self._cond.notify_all()

    def snapshot(self, timeout: float = 2.0) -> list[RequestRecord]:
        """A copy of the records so far, oldest first (after announced answers are logged)."""
        with self._cond:
            self._cond.wait_for(lambda: self._finishing <= 0, timeout)
            return [record for _, record in self._entries]

    def clear(self) -> None:
        """Forget every record (waiting, like :meth:`snapshot`, for announced ones first)."""
        with self._cond:
            self._cond.wait_for(lambda: self._finishing <= 0, 2.0)
            self._entries.clear()
