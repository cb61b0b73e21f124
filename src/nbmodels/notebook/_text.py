"""The text fallback (terminal IPython, front ends without widgets): a progress line written
by the thread that waits — the magic's, or the user's in :meth:`nbmodels.Job.wait` — never by a
background thread, whose output could land in an unrelated cell or break the prompt.

On a terminal (and in a Jupyter kernel, whose front ends honour ``\\r``) the line is redrawn in
place; elsewhere (a pipe, a log) a line is printed when a status changes, so logs stay readable.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from .. import _present
from .._present import REASON_WIDTH, SHOWN, newest, older_line, plain_text
from ..engine import Job
from ._context import current_shell, is_kernel

__all__ = ["TextProgress", "panel_text", "progress_line", "wait_with_progress", "watch"]

#: Seconds between two redraws (2 per second).
REDRAW = 0.5
#: Seconds per wait step of :func:`wait_with_progress` (the line is redrawn between steps).
WAIT_STEP = 0.5

#: Ids of the jobs shown as text (by ``download()`` or ``%model_download -b``): waiting for
#: one of them in the main thread draws its progress line.
_watched: set[str] = set()
_watched_lock = threading.Lock()


def progress_line(jobs: Sequence[Job]) -> str:
    """The jobs' line now (:func:`nbmodels._present.progress_line`)."""
    return _present.progress_line([job.snapshot() for job in jobs])


def _in_place(stream: TextIO) -> bool:
    """Redraw in place on a terminal and in a kernel; append lines elsewhere."""
    isatty = getattr(stream, "isatty", None)
    try:
        tty = bool(isatty()) if isatty is not None else False
    except ValueError:  # a closed stream
        tty = False
    return tty or is_kernel(current_shell())


class TextProgress:
    """Draws :func:`progress_line` on ``stream`` (default: ``sys.stdout`` at the time of each
    write, which in a kernel is the running cell's output): redrawn in place when
    ``in_place`` (default: on a terminal or in a kernel), else one line per status change."""

    def __init__(
        self, jobs: Sequence[Job], stream: TextIO | None = None, *, in_place: bool | None = None
    ) -> None:
        self._jobs = list(jobs)
        self._stream = stream
        self._in_place = _in_place(self._out()) if in_place is None else in_place
        self._width = 0
        self._last = 0.0
        self._statuses: tuple[str, ...] | None = None

    def _out(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    def update(self, *, force: bool = False) -> None:
        if not self._in_place:
            self._append()
            return
        now = time.monotonic()
        if not force and now - self._last < REDRAW:
            return
        self._last = now
        line = progress_line(self._jobs)
        pad = " " * max(0, self._width - len(line))
        self._width = len(line)
        out = self._out()
        out.write("\r" + line + pad)
        out.flush()

    def _append(self) -> None:
        """A line when a job's status changed since the last one."""
        statuses = tuple(job.status for job in self._jobs)
        if statuses == self._statuses:
            return
        self._statuses = statuses
        out = self._out()
        out.write(progress_line(self._jobs) + "\n")
        out.flush()

    def close(self) -> None:
        """Draw the last state and end the line."""
        if self._jobs:
            self.update(force=True)
            if self._in_place:
                self._out().write("\n")
                self._out().flush()
            self._jobs = []


def watch(job: Job) -> None:
    """From now on, waiting for ``job`` in the main thread draws its progress line."""
    with _watched_lock:
        _watched.add(job.id)


def wait_with_progress(job: Job, result: Callable[[float | None], Path]) -> Path:
    """``job.wait()`` (``result`` is its plain wait): for a watched job, in the main thread,
    wait in steps and draw the text progress line between them; else just wait."""
    with _watched_lock:
        watched = job.id in _watched
    if not watched or threading.current_thread() is not threading.main_thread():
        return result(None)
    progress = TextProgress([job])
    try:
        while True:
            progress.update()
            try:
                return result(WAIT_STEP)
            except TimeoutError:
                continue
    finally:
        progress.close()


def panel_text(jobs: Sequence[Job], limit: int | None = SHOWN) -> str:
    """``%model_panel`` without widgets: one line per job, the newest ``limit`` (None: all),
    then how many older ones there are."""
    if not jobs:
        return "No downloads yet."
    shown, hidden = newest(jobs, limit)
    lines = [plain_text(job.snapshot(), reason_width=REASON_WIDTH) for job in shown]
    if hidden:
        lines.append(older_line(hidden, "%model_panel --all"))
    return "\n".join(lines)
