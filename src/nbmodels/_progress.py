"""Progress as data: immutable snapshots, the subscriber protocol, a speed meter, and the one
formatting function every front end shares ("1.2 GB / 4.5 GB · 27% · 35.2 MB/s · ETA 1:42").

Nothing here does I/O or knows about a UI.
"""

from __future__ import annotations

import enum
import math
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "FileProgress",
    "JobSnapshot",
    "Progress",
    "RetryNotice",
    "SpeedMeter",
    "Status",
    "Subscriber",
    "format_bytes",
    "format_duration",
    "format_progress",
    "format_retry",
    "format_speed",
    "group_retry",
    "joined",
]


class Status(enum.StrEnum):
    """The status of a job, or of one of its files (docs/public-api.md, "Statuses").

    A job moves through the active ones (``extracting``: unpacking an archive, with
    ``extract=True``) and ends with a terminal one; only :func:`nbmodels.history` shows
    ``interrupted``: the process died while the job ran. Members compare equal to their values,
    which are what snapshots, JSON and the registry carry (plain strings, from ``.value``).
    """

    QUEUED = "queued"
    RESOLVING = "resolving"
    DOWNLOADING = "downloading"
    PAUSED = "paused"
    VERIFYING = "verifying"
    EXTRACTING = "extracting"
    COMPLETED = "completed"
    ALREADY_DOWNLOADED = "already_downloaded"
    FAILED = "failed"
    CANCELED = "canceled"
    INTERRUPTED = "interrupted"

    #: Still under way (or paused): the job may change.
    ACTIVE = enum.nonmember(
        frozenset({QUEUED, RESOLVING, DOWNLOADING, PAUSED, VERIFYING, EXTRACTING})
    )
    #: How a job of this process ends.
    TERMINAL = enum.nonmember(frozenset({COMPLETED, ALREADY_DOWNLOADED, FAILED, CANCELED}))
    #: Ended, by any way (terminal, or interrupted): nothing will change any more.
    ENDED = enum.nonmember(
        frozenset({COMPLETED, ALREADY_DOWNLOADED, FAILED, CANCELED, INTERRUPTED})
    )
    #: Ended with the files on disk.
    SUCCEEDED = enum.nonmember(frozenset({COMPLETED, ALREADY_DOWNLOADED}))


@dataclass(frozen=True, slots=True)
class RetryNotice:
    """A transfer waiting to try again after a failed attempt ("retrying in 4 s: connection
    refused"). ``reason`` is short ("connection refused", "HTTP 503", "connection lost");
    ``attempt`` counts the failed attempts in a row; ``delay_seconds`` is the wait left at the
    snapshot's moment (0 once the next attempt is under way)."""

    reason: str
    attempt: int
    delay_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "attempt": self.attempt,
            "delay_seconds": round(self.delay_seconds, 1),
        }


@dataclass(frozen=True, slots=True)
class Progress:
    """A moment of a transfer. ``total_bytes`` is None while the size is unknown; ``retry`` is
    set while the transfer waits to try again after a failure."""

    downloaded_bytes: int = 0
    total_bytes: int | None = None
    bytes_per_second: float = 0.0
    eta_seconds: float | None = None
    stalled: bool = False
    retry: RetryNotice | None = None

    @property
    def fraction(self) -> float | None:
        """Share done in [0, 1], or None while the size is unknown."""
        if self.total_bytes is None:
            return None
        if self.total_bytes == 0:
            return 1.0
        return min(1.0, self.downloaded_bytes / self.total_bytes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "downloaded_bytes": self.downloaded_bytes,
            "total_bytes": self.total_bytes,
            "bytes_per_second": round(self.bytes_per_second, 1),
            "eta_seconds": None if self.eta_seconds is None else round(self.eta_seconds, 1),
            "fraction": self.fraction,
            "stalled": self.stalled,
            "retry": None if self.retry is None else self.retry.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class FileProgress:
    """One file of a job: its name in the repo (or URL file name), where it goes, and how far."""

    name: str
    status: str
    progress: Progress = field(default_factory=Progress)
    path: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "path": self.path,
            "error": self.error,
            **self.progress.to_dict(),
        }


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    """Everything a front end needs to draw a job, at one moment. Safe to share across threads."""

    job_id: str
    ref: str
    status: str
    progress: Progress
    files: tuple[FileProgress, ...] = ()
    path: str | None = None
    error: str | None = None
    error_type: str | None = None
    error_hint: str | None = None
    created_at: float | None = None
    started_at: float | None = None
    completed_at: float | None = None

    @property
    def done(self) -> bool:
        return self.status in Status.ENDED

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "ref": self.ref,
            "status": self.status,
            "done": self.done,
            "path": self.path,
            "error": self.error,
            "error_type": self.error_type,
            "error_hint": self.error_hint,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "text": format_progress(self.progress, status=self.status),
            "files": [f.to_dict() for f in self.files],
            **self.progress.to_dict(),
        }


class Subscriber(Protocol):
    """Receives a job's snapshots. Called on the engine's thread: return quickly, never block."""

    def __call__(self, snapshot: JobSnapshot, /) -> None: ...


SubscriberFn = Callable[[JobSnapshot], None]


class SpeedMeter:
    """Bytes per second as a moving average over the last ``window`` seconds.

    ``add`` is called from the hot path with a running byte count; it keeps at most one sample
    per ``resolution`` seconds, so it costs a clock read and a comparison per chunk.
    A transfer that receives nothing decays to 0 B/s within the window, and is ``stalled``
    after ``stall_after`` seconds without a byte.
    """

    def __init__(
        self,
        window: float = 5.0,
        resolution: float = 0.2,
        stall_after: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self.resolution = resolution
        self.stall_after = stall_after
        self._clock = clock
        self._samples: deque[tuple[float, int]] = deque()
        self._last_bytes = 0
        self._last_change = clock()

    def reset(self, total: int = 0) -> None:
        """Forget history (after a restart from zero or a resume): speed starts afresh."""
        now = self._clock()
        self._samples.clear()
        self._samples.append((now, total))
        self._last_bytes = total
        self._last_change = now

    def rebase(self, total: int) -> None:
        """Jump to ``total`` without counting the jump as speed, keeping the window's history:
        for a running sum when one of its parts starts (a resume's starting bytes) or rolls
        back. (``reset`` would show 0 B/s until the window fills again.)"""
        shift = total - self._last_bytes
        self._samples = deque((t, b + shift) for t, b in self._samples)
        self._last_bytes = total

    def add(self, total: int) -> None:
        now = self._clock()
        if total != self._last_bytes:
            self._last_bytes = total
            self._last_change = now
        samples = self._samples
        if not samples or now - samples[-1][0] >= self.resolution:
            samples.append((now, total))
        # Keep the newest sample at or before the window's start, and everything after it.
        horizon = now - self.window
        while len(samples) > 1 and samples[1][0] <= horizon:
            samples.popleft()

    def rate(self) -> float:
        self.add(self._last_bytes)
        t0, b0 = self._samples[0]
        span = self._clock() - t0
        if span < self.resolution:
            return 0.0
        return max(0.0, (self._last_bytes - b0) / span)

    def stalled(self) -> bool:
        return self._clock() - self._last_change >= self.stall_after

    def snapshot(
        self, downloaded: int, total: int | None, retry: RetryNotice | None = None
    ) -> Progress:
        speed = self.rate()
        stalled = self.stalled()
        if stalled:
            speed = 0.0
        eta: float | None = None
        if total is not None and speed > 0:
            eta = max(0.0, (total - downloaded) / speed)
        return Progress(
            downloaded_bytes=downloaded,
            total_bytes=total,
            bytes_per_second=speed,
            eta_seconds=eta,
            stalled=stalled,
            retry=retry,
        )


# ---------------------------------------------------------------------------------------------
# Formatting (pure; shared by the widget's text/plain, the CLI and the terminal fallback)

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def format_bytes(n: float) -> str:
    """Decimal units, as download tools and the Hub show sizes: 1234567 -> '1.2 MB'."""
    if n < 1000:
        return f"{int(n)} B"
    exp = min(int(math.log10(n) // 3), len(_UNITS) - 1)
    value = n / 1000**exp
    if round(value, 1) >= 1000 and exp < len(_UNITS) - 1:
        exp += 1
        value = n / 1000**exp
    return f"{value:.1f} {_UNITS[exp]}"


def format_speed(bps: float) -> str:
    return f"{format_bytes(bps)}/s"


def format_duration(seconds: float) -> str:
    """'0:07', '1:42', '1:02:03'."""
    s = max(0, math.ceil(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def group_retry(running: Sequence[Progress]) -> RetryNotice | None:
    """The notice of several running transfers (a job's files, several jobs): when every one
    waits to retry, the soonest retry; None while any of them is moving."""
    retries = [p.retry for p in running if p.retry is not None]
    if not running or len(retries) < len(running):
        return None
    return min(retries, key=lambda r: r.delay_seconds)


def format_retry(retry: RetryNotice) -> str:
    """'retrying in 4 s: connection refused' ('retrying: ...' once the attempt is under way)."""
    if retry.delay_seconds > 0:
        return f"retrying in {math.ceil(retry.delay_seconds)} s: {retry.reason}"
    return f"retrying: {retry.reason}"


def format_progress(progress: Progress, *, status: str = Status.DOWNLOADING.value) -> str:
    """'1.2 GB / 4.5 GB · 27% · 35.2 MB/s · ETA 1:42' (parts that are unknown are left out);
    a transfer or a resolution waiting to retry shows why instead of its speed: '0 B ·
    retrying in 4 s: connection refused'. Empty when nothing is known yet (or ever was: a
    job queued, resolving, or failed before its size was known)."""
    parts: list[str] = []
    if progress.total_bytes is not None:
        parts.append(
            f"{format_bytes(progress.downloaded_bytes)} / {format_bytes(progress.total_bytes)}"
        )
        fraction = progress.fraction or 0.0
        parts.append(f"{math.floor(fraction * 100)}%")
    elif progress.downloaded_bytes or status in (Status.DOWNLOADING, Status.PAUSED):
        parts.append(format_bytes(progress.downloaded_bytes))
    if progress.retry is not None and status in (Status.DOWNLOADING, Status.RESOLVING):
        parts.append(format_retry(progress.retry))
    elif status == Status.DOWNLOADING:
        if progress.stalled:
            parts.append("stalled")
        else:
            parts.append(format_speed(progress.bytes_per_second))
            if progress.eta_seconds is not None:
                parts.append(f"ETA {format_duration(progress.eta_seconds)}")
    return " · ".join(parts)


def joined(*parts: str) -> str:
    """``a · b``, leaving out empty parts (an empty :func:`format_progress`)."""
    return " · ".join(p for p in parts if p)


def snapshot_from_dict(data: Mapping[str, Any]) -> Progress:
    """Inverse of :meth:`Progress.to_dict` (for rows read back from the registry)."""
    return Progress(
        downloaded_bytes=int(data.get("downloaded_bytes") or 0),
        total_bytes=None if data.get("total_bytes") is None else int(data["total_bytes"]),
        bytes_per_second=float(data.get("bytes_per_second") or 0.0),
        eta_seconds=None if data.get("eta_seconds") is None else float(data["eta_seconds"]),
        stalled=bool(data.get("stalled", False)),
        retry=_retry_from_dict(data.get("retry")),
    )


def _retry_from_dict(data: Any) -> RetryNotice | None:
    if not isinstance(data, Mapping):
        return None
    return RetryNotice(
        reason=str(data.get("reason", "")),
        attempt=int(data.get("attempt") or 0),
        delay_seconds=float(data.get("delay_seconds") or 0.0),
    )
