"""Terminal progress for ``nbmodels pull``: drawn by the waiting (main) thread from the jobs'
snapshots, never by the engine's thread. The text of every row comes from
:mod:`nbmodels._present` (:func:`~nbmodels._present.job_text`,
:func:`~nbmodels._present.file_text`), on the formatter the widget and the notebook's text
fallback use.

- :class:`BarView` (stdout is a terminal): a row per file — bar, bytes, percentage, speed,
  ETA — under a row per job, redrawn in place (ANSI cursor movement), at most a screenful.
- :class:`PlainView` (a pipe, a file, CI logs): append-only lines — one whenever a job or a
  file changes status or starts waiting to retry, and one per downloading file every
  few seconds.
- :class:`QuietView` (``-q``): nothing.
"""

from __future__ import annotations

import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol, TextIO

from .._present import file_text, job_text
from .._progress import FileProgress, JobSnapshot, Status
from ..engine import Job

__all__ = ["BarView", "PlainView", "QuietView", "View", "make_view"]

BAR_WIDTH = 20
NAME_WIDTH = 40
#: Seconds between two progress lines of one downloading file (plain output).
PLAIN_EVERY = 5.0


def bar(fraction: float | None, width: int = BAR_WIDTH) -> str:
    """``██████░░░░`` (an unknown size shows an empty bar)."""
    filled = 0 if fraction is None else round(max(0.0, min(1.0, fraction)) * width)
    return "█" * filled + "░" * (width - filled)


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` columns, keeping its end (``…odel-Q4_K_M.gguf``)."""
    if len(text) <= width:
        return text
    return "…" + text[len(text) - width + 1 :] if width > 1 else text[:width]


class View(Protocol):
    def update(self) -> None: ...
    def close(self) -> None: ...


class QuietView:
    def update(self) -> None:
        return None

    def close(self) -> None:
        return None


class PlainView:
    """Append-only progress lines for pipes and logs.

    Every status change is printed, even one that lasts less than a redraw: the view
    subscribes to the jobs and keeps the snapshots where a status changed (the engine's thread
    only appends them to a queue; the waiting thread prints).
    """

    def __init__(
        self,
        jobs: Sequence[Job],
        out: TextIO,
        every: float = PLAIN_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jobs = list(jobs)
        self.out = out
        self.every = every
        self.clock = clock
        self._job_status: dict[str, str] = {}
        self._file_status: dict[tuple[str, str], str] = {}
        self._file_time: dict[tuple[str, str], float] = {}
        self._changes: deque[JobSnapshot] = deque()
        self._seen: dict[str, tuple[str, ...]] = {}
        self._stops = [job.subscribe(self._on_snapshot) for job in self.jobs]

    def _on_snapshot(self, snap: JobSnapshot) -> None:
        """(Engine thread.) Keep the snapshot when a job or file status changed."""
        statuses = (snap.status, *(_state(f) for f in snap.files))
        if self._seen.get(snap.job_id) != statuses:
            self._seen[snap.job_id] = statuses
            self._changes.append(snap)

    def _lines(self, snap: JobSnapshot, now: float) -> list[str]:
        lines: list[str] = []
        for f in snap.files:
            key = (snap.job_id, f.name)
            changed = self._file_status.get(key) != _state(f)
            due = (
                f.status == Status.DOWNLOADING and now - self._file_time.get(key, now) >= self.every
            )
            if changed or due:
                self._file_status[key] = _state(f)
                self._file_time[key] = now
                lines.append(f"  {f.name}: {file_text(f, label=True)}")
        if self._job_status.get(snap.job_id) != _state(snap):
            self._job_status[snap.job_id] = _state(snap)
            lines.append(job_text(snap))
        return lines

    def update(self) -> None:
        now = self.clock()
        lines: list[str] = []
        while self._changes:
            lines += self._lines(self._changes.popleft(), now)
        for job in self.jobs:
            lines += self._lines(job.snapshot(), now)
        if lines:
            self.out.write("\n".join(lines) + "\n")
            self.out.flush()

    def close(self) -> None:
        for stop in self._stops:
            stop()
        self.update()


def _state(f: FileProgress | JobSnapshot) -> str:
    """A file's or a job's status, and which retry it waits for (each retry is worth a line:
    a job's own are those of the Hub requests of its plan, while resolving)."""
    retry = f.progress.retry
    return f.status if retry is None else f"{f.status} retry {retry.attempt}"


class BarView:
    """Rows redrawn in place on a terminal."""

    def __init__(
        self,
        jobs: Sequence[Job],
        out: TextIO,
        size: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        self.jobs = list(jobs)
        self.out = out
        self._size = size or _terminal_size
        self._drawn = 0

    def rows(self, width: int, height: int) -> list[str]:
        """The lines to show (at most ``height - 1``), each at most ``width - 1`` columns."""
        snaps = [job.snapshot() for job in self.jobs]
        budget = max(len(snaps), height - 1)
        spare = max(0, budget - len(snaps))
        out: list[str] = []
        for snap in snaps:
            out.append(job_text(snap))
            files = list(snap.files)
            if len(files) <= 1 and snap.status not in (Status.DOWNLOADING, Status.PAUSED):
                continue
            order = sorted(
                files, key=lambda f: (f.status != Status.DOWNLOADING, f.status == Status.QUEUED)
            )
            shown = order if len(order) <= spare else order[: max(0, spare - 1)]
            names = max((len(f.name) for f in shown), default=0)
            name_w = min(NAME_WIDTH, names, max(8, width // 3))
            for f in shown:
                out.append(
                    f"  {fit(f.name, name_w):<{name_w}}  {bar(f.progress.fraction)}  {file_text(f)}"
                )
            hidden = len(order) - len(shown)
            if hidden:
                done = sum(1 for f in order[len(shown) :] if f.status in Status.SUCCEEDED)
                out.append(f"  … {hidden} more files ({done} done)")
            spare = max(0, spare - len(shown) - (1 if hidden else 0))
        return [fit_left(line, width - 1) for line in out]

    def update(self) -> None:
        width, height = self._size()
        lines = self.rows(width, height)
        parts = [f"\x1b[{self._drawn}F"] if self._drawn else []
        parts += [f"\x1b[2K{line}\n" for line in lines]
        parts.append("\x1b[J")
        self.out.write("".join(parts))
        self.out.flush()
        self._drawn = len(lines)

    def close(self) -> None:
        self.update()


def _terminal_size() -> tuple[int, int]:
    size = shutil.get_terminal_size((100, 24))
    return size.columns, size.lines


def fit_left(text: str, width: int) -> str:
    """``text`` cut to ``width`` columns, keeping its start."""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def make_view(jobs: Sequence[Job], out: TextIO, *, quiet: bool = False) -> View:
    """Bars on a terminal, plain lines otherwise, nothing when ``quiet``."""
    if quiet:
        return QuietView()
    isatty = getattr(out, "isatty", None)
    if isatty is not None and isatty() and not _dumb_terminal():
        return BarView(jobs, out)
    return PlainView(jobs, out)


def _dumb_terminal() -> bool:
    return os.environ.get("TERM", "") == "dumb"
