"""Fault switches: make the next requests fail in a chosen, deterministic way.

Add a :class:`Fault` to ``hub.faults``; each request that matches its filters (origin, method,
path glob, repo) and that the kind applies to uses up one of its ``times``::

    hub.faults.add(Fault("drop", after_bytes=1000, path_glob="*.gguf", origin="cdn"))
    hub.faults.add(Fault("status", status=503, retry_after=2, times=3))
    stall = hub.faults.add(Fault("stall", seconds=None))   # until stall.release()

Kinds (which requests they apply to in brackets):

- ``"status"``: answer ``status`` (e.g. 500, 503, 429, 408) instead, with ``Retry-After`` if
  ``retry_after`` is given (seconds, a datetime sent as an HTTP date, or a raw string) and
  ``X-Error-Code`` if ``error_code`` is given. [every request]
- ``"delay"``: wait ``seconds`` before answering at all. [every request]
- ``"reset"``: close the TCP connection without answering. [every request]
- ``"stall"``: send the status line and headers, then wait ``seconds`` (``None``: until
  :meth:`Fault.release` or the emulator closes) before the body. [responses with a body]
- ``"drop"``: send the headers and ``after_bytes`` body bytes, then close the TCP connection.
  [responses with a body]
- ``"trickle"``: send the body at ``rate`` bytes/s in small writes. [responses with a body]
- ``"ignore_range"``: answer ``200`` with the full body even if ``Range`` was sent. [files]
- ``"corrupt"``: flip the byte at file offset ``offset`` (default: the middle) while the
  metadata (ETag, X-Linked-Etag, sizes) still describes the true content. [files]
- ``"change"``: serve a changed version of the file (same size, every byte different) with
  its own ETag / X-Linked-Etag, as if it had changed upstream between two requests. For a
  lasting upstream change, commit new content with :meth:`HubRepo.commit` instead. [files and
  their ``resolve`` metadata]

"files" means resolve answers for git files and CDN answers; ``path_glob`` is matched (fnmatch)
against the repo file path (``"Model-Q8_0/*.gguf"``) and against the URL path (``"/api/*"``).
``skip`` lets that many matching requests through first. ``times=None`` means forever.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from typing import Literal

__all__ = ["ANY_KINDS", "BODY_KINDS", "FILE_KINDS", "Fault", "FaultKind", "Faults", "Origin"]

FaultKind = Literal[
    "status", "delay", "reset", "stall", "drop", "trickle", "ignore_range", "corrupt", "change"
]
Origin = Literal["hub", "cdn", "any"]

BODY_KINDS: frozenset[str] = frozenset({"stall", "drop", "trickle"})
FILE_KINDS: frozenset[str] = frozenset({"ignore_range", "corrupt", "change"})
ANY_KINDS: frozenset[str] = frozenset({"status", "delay", "reset"})
_KINDS = ANY_KINDS | BODY_KINDS | FILE_KINDS


@dataclass(eq=False)
class Fault:
    """One fault switch; see the module docstring for the kinds and what they do.

    Args:
        kind: what goes wrong.
        times: how many matching requests it affects (``None``: all of them).
        skip: how many matching requests pass untouched before it starts.
        origin: ``"hub"``, ``"cdn"`` or ``"any"``.
        method: only this HTTP method (e.g. ``"GET"``), or any.
        path_glob: fnmatch pattern for the repo file path or the URL path.
        repo_id: only requests for this repo.
        status, retry_after, error_code, message: for ``"status"``.
        after_bytes: for ``"drop"``.
        seconds: for ``"delay"`` and ``"stall"``.
        rate: bytes per second for ``"trickle"``.
        offset: file offset of the flipped byte for ``"corrupt"``.
    """

    kind: FaultKind
    times: int | None = 1
    skip: int = 0
    origin: Origin = "any"
    method: str | None = None
    path_glob: str = "*"
    repo_id: str | None = None
    status: int = 503
    retry_after: float | str | datetime | None = None
    error_code: str | None = None
    message: str | None = None
    after_bytes: int = 0
    seconds: float | None = 1.0
    rate: int = 1024
    offset: int | None = None
    hits: int = field(default=0, init=False)
    """How many requests this fault has affected so far."""
    _seen: int = field(default=0, init=False, repr=False)
    _released: threading.Event = field(default_factory=threading.Event, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; choose one of {sorted(_KINDS)}")
        if self.origin not in ("hub", "cdn", "any"):
            raise ValueError(f"origin must be 'hub', 'cdn' or 'any', not {self.origin!r}")
        if self.kind == "trickle" and self.rate <= 0:
            raise ValueError("trickle rate must be > 0 bytes/s")
        if self.after_bytes < 0:
            raise ValueError("after_bytes must be >= 0")

    def release(self) -> None:
        """End a ``"stall"`` or ``"delay"`` now (for every request waiting on it)."""
        self._released.set()

    def wait(self, closing: threading.Event) -> None:
        """Block for ``seconds`` or until released or ``closing`` is set (used by the server)."""
        end = None if self.seconds is None else time.monotonic() + self.seconds
        while not (self._released.is_set() or closing.is_set()):
            remaining = None if end is None else end - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            self._released.wait(0.02 if remaining is None else min(0.02, remaining))

    def retry_after_header(self) -> str | None:
        """The ``Retry-After`` value to send, or None."""
        value = self.retry_after
        if value is None:
            return None
        if isinstance(value, datetime):
            return format_datetime(value, usegmt=True)
        if isinstance(value, float | int):
            return str(round(value))
        return value

    @property
    def exhausted(self) -> bool:
        """True once it has affected ``times`` requests."""
        return self.times is not None and self.hits >= self.times

    def _matches(
        self, origin: str, method: str, url_path: str, file_path: str | None, repo_id: str | None
    ) -> bool:
        if self.origin != "any" and self.origin != origin:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        if self.repo_id is not None and self.repo_id != repo_id:
            return False
        if self.path_glob == "*":
            return True
        if file_path is not None and fnmatch.fnmatchcase(file_path, self.path_glob):
            return True
        return fnmatch.fnmatchcase(url_path, self.path_glob)


class Faults:
    """The thread-safe set of active faults of one emulator (``hub.faults``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault | None = None, /, **kwargs: object) -> Fault:
        """Activate a fault and return it: ``add(Fault(...))`` or ``add(kind="drop", ...)``."""
        if fault is None:
            fault = Fault(**kwargs)  # type: ignore[arg-type]
        elif kwargs:
            raise TypeError("pass either a Fault or keyword arguments, not both")
        with self._lock:
            self._faults.append(fault)
        return fault

    def remove(self, fault: Fault) -> None:
        """Deactivate one fault (releasing anything it stalls)."""
        fault.release()
        with self._lock:
            self._faults = [f for f in self._faults if f is not fault]

    def clear(self) -> None:
        """Deactivate every fault (releasing anything stalled)."""
        with self._lock:
            faults, self._faults = self._faults, []
        for f in faults:
            f.release()

    def __iter__(self) -> Iterator[Fault]:
        with self._lock:
            return iter(list(self._faults))

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)

    def take(
        self,
        *,
        origin: str,
        method: str,
        url_path: str,
        file_path: str | None,
        repo_id: str | None,
        kinds: Iterable[str],
    ) -> list[Fault]:
        """Faults that fire for this request (at most one per kind), using up one of each.

        Only faults whose kind is in ``kinds`` (what applies to this response) are considered,
        so a ``"drop"`` is not used up by a HEAD request.
        """
        allowed = set(kinds)
        fired: list[Fault] = []
        with self._lock:
            for f in self._faults:
                if f.kind not in allowed or f.exhausted:
                    continue
                if not f._matches(origin, method, url_path, file_path, repo_id):
                    continue
                f._seen += 1
                if f._seen <= f.skip:
                    continue
                f.hits += 1
                allowed.discard(f.kind)
                fired.append(f)
        return fired
