"""The request log: one immutable record per HTTP request the emulator answered (or dropped)."""

from __future__ import annotations

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
    """A thread-safe, append-only list of :class:`RequestRecord`.

    A client can see the end of an answer before the server thread has logged it. So the server
    announces each answer just before its last bytes (or a drop) go out (:meth:`finishing`), and
    :meth:`snapshot` waits, briefly, for announced answers to be logged: a test that reads the
    log right after a request finished always finds that request.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._records: list[RequestRecord] = []
        self._finishing = 0

    def finishing(self) -> None:
        """An answer is about to complete; its record follows with ``append(..., True)``."""
        with self._cond:
            self._finishing += 1

    def append(self, record: RequestRecord, announced: bool = False) -> None:
        """Add a record (called by the server when a request ends)."""
        with self._cond:
            self._records.append(record)
            if announced:
                self._finishing -= 1
            self._cond.notify_all()

    def snapshot(self, timeout: float = 2.0) -> list[RequestRecord]:
        """A copy of the records so far, oldest first (after announced answers are logged)."""
        with self._cond:
            self._cond.wait_for(lambda: self._finishing <= 0, timeout)
            return list(self._records)

    def clear(self) -> None:
        """Forget every record (waiting, like :meth:`snapshot`, for announced ones first)."""
        with self._cond:
            self._cond.wait_for(lambda: self._finishing <= 0, 2.0)
            self._records.clear()
