"""The text fallback: one carriage-return-updated progress line (terminal IPython, front ends
without widgets), written by the thread that waits — never by a background thread, whose output
could land in an unrelated cell."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO

from .._job import Job
from .._listing import REASON_WIDTH, SHOWN, newest, older_line
from .._progress import Progress, format_progress
from ._state import display_name, plain_text, status_label

__all__ = ["TextProgress", "panel_text", "progress_line"]

#: Seconds between two redraws (2 per second).
REDRAW = 0.5


def progress_line(jobs: Sequence[Job]) -> str:
    """``model.gguf: downloading · 1.2 GB / 4.5 GB · 27% · 35.2 MB/s · ETA 1:42``; several
    jobs are summed: ``2 downloads (1 done): 1.2 GB / 4.5 GB · ...``."""
    snaps = [j.snapshot() for j in jobs]
    if len(snaps) == 1:
        s = snaps[0]
        return f"{display_name(s)}: {status_label(s.status)} · " + format_progress(
            s.progress, status=s.status
        )
    done = sum(1 for s in snaps if s.done)
    totals = [s.progress.total_bytes for s in snaps]
    downloaded = sum(s.progress.downloaded_bytes for s in snaps)
    total = None if any(t is None for t in totals) else sum(t or 0 for t in totals)
    speed = sum(s.progress.bytes_per_second for s in snaps)
    running = [s for s in snaps if s.status == "downloading"]
    eta = (total - downloaded) / speed if total is not None and speed > 0 else None
    stalled = bool(running) and all(s.progress.stalled for s in running)
    agg = Progress(downloaded, total, speed, eta, stalled)
    status = "downloading" if running else "waiting"
    return f"{len(snaps)} downloads ({done} done): " + format_progress(agg, status=status)


class TextProgress:
    """Redraws :func:`progress_line` in place on ``stream`` (default: ``sys.stdout`` at the time
    of each write, which in a kernel is the running cell's output)."""

    def __init__(self, jobs: Sequence[Job], stream: TextIO | None = None) -> None:
        self._jobs = list(jobs)
        self._stream = stream
        self._width = 0
        self._last = 0.0

    def _out(self) -> TextIO:
        return self._stream if self._stream is not None else sys.stdout

    def update(self, *, force: bool = False) -> None:
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

    def close(self) -> None:
        """Draw the last state and end the line."""
        if self._jobs:
            self.update(force=True)
            self._out().write("\n")
            self._out().flush()
            self._jobs = []


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
