"""A job's run: all of a job's mutable state, owned by the engine and touched only on its loop
thread.

The engine creates one :class:`JobRun` per submitted job and drives it (``_engine.py``); the run
keeps the files' bookkeeping (:class:`FileRun`), the speed meters, the byte counters, the pending
stop request, the attempt task and the resume event, and it is the only writer of the job's
status. Each change that readers should see is published as a new immutable
:class:`~._job.JobState` through the job's :class:`~._job.JobFeed`; the :class:`~._job.Job`
handle only reads it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from .._config import Settings
from .._fserrors import fs_error
from .._options import Options
from .._progress import (
    FileProgress,
    JobSnapshot,
    Progress,
    RetryNotice,
    SpeedMeter,
    Status,
    group_retry,
)
from .._redact import redact_text
from ..errors import NbmodelsError
from ..sources import Plan, PlannedFile
from ..transfer import FileSpec
from ._job import Controls, Job, JobFeed, JobState
from ._submission import Submission

__all__ = ["FileRun", "JobRun", "StopRequest", "as_nbmodels_error"]

log = logging.getLogger("nbmodels")

#: Why a running attempt is being stopped.
StopRequest = Literal["pause", "cancel", "shutdown"]

#: The callbacks a transfer reports to: per chunk, per phase, before a retry.
ProgressFn = Callable[[int, int | None], None]
StatusFn = Callable[[str], None]
RetryFn = Callable[[str, int, float], None]


class FileRun:
    """The bookkeeping of one file of a job."""

    __slots__ = (
        "downloaded",
        "error",
        "meter",
        "name",
        "path",
        "retry",
        "spec",
        "status",
        "total",
        "touched",
    )

    def __init__(
        self, name: str, path: Path, total: int | None, status: Status, stall_after: float = 5.0
    ) -> None:
        self.name = name
        self.path = path
        self.total = total
        self.downloaded = (total or 0) if status == Status.ALREADY_DOWNLOADED else 0
        self.status = status
        self.error: str | None = None
        self.meter = SpeedMeter(stall_after=stall_after)
        #: The transfer got as far as taking the file's lock (cancel then removes its data).
        self.touched = False
        #: What its transfer fetches (set when it is queued for one): cancel removes its data.
        self.spec: FileSpec | None = None
        #: Waiting to try again: (reason, failed attempts, monotonic time of the next attempt).
        self.retry: tuple[str, int, float] | None = None

    def retrying(self, reason: str, attempt: int, delay: float) -> None:
        self.retry = _awaited(reason, attempt, delay)

    def progress(self) -> FileProgress:
        p = (
            self.meter.snapshot(self.downloaded, self.total, _notice(self.retry))
            if self.status == Status.DOWNLOADING
            else Progress(self.downloaded, self.total)
        )
        return FileProgress(
            name=self.name,
            status=self.status.value,
            progress=p,
            path=str(self.path),
            error=self.error,
        )


def _awaited(reason: str, attempt: int, delay: float) -> tuple[str, int, float]:
    """A retry awaited: (reason, failed attempts in a row, monotonic time of the next)."""
    return (reason, attempt, time.monotonic() + delay)


def _notice(retry: tuple[str, int, float] | None) -> RetryNotice | None:
    """The notice of an awaited retry, as of now (its wait counts down to 0)."""
    if retry is None:
        return None
    reason, attempt, at = retry
    return RetryNotice(reason, attempt, max(0.0, at - time.monotonic()))


class JobRun:
    """The mutable state of one job (engine side; loop thread only, once submitted)."""

    __slots__ = (
        "_record",
        "attempt",
        "completed_at",
        "created_at",
        "downloaded",
        "error",
        "feed",
        "files",
        "job",
        "meter",
        "path",
        "paths",
        "resume_event",
        "retry",
        "settings",
        "started_at",
        "status",
        "stop",
        "submission",
        "transferred",
    )

    def __init__(
        self,
        job_id: str,
        submission: Submission,
        options: Options,
        *,
        settings: Settings,
        controls: Controls,
        record: Callable[[Job], None],
    ) -> None:
        self.submission = submission
        self.settings = settings
        self._record = record
        self.status = Status.QUEUED
        self.created_at = time.time()
        self.started_at: float | None = None
        self.completed_at: float | None = None
        self.path: Path | None = None
        self.paths: list[Path] = []
        self.error: NbmodelsError | None = None
        self.files: list[FileRun] = []
        self.meter = SpeedMeter(stall_after=settings.stall_after)
        self.stop: StopRequest | None = None
        self.attempt: asyncio.Task[None] | None = None
        self.resume_event = asyncio.Event()  # bound to the engine's loop on first use
        self.transferred = 0
        self.downloaded = 0  # sum of the files' bytes, kept up to date per chunk
        #: A Hub request of the plan waits to try again (see :meth:`resolving_retry`).
        self.retry: tuple[str, int, float] | None = None
        shown = submission.shown
        first = JobSnapshot(
            job_id, shown, self.status.value, Progress(), created_at=self.created_at
        )
        self.feed = JobFeed(JobState(first))
        self.job = Job(job_id, shown, options, self.feed, controls)

    # -- status and publishing ------------------------------------------------------------------

    def resolving_retry(self, wait: tuple[str, int, float] | None) -> None:
        """While resolving: a request of the plan failed and waits ``(reason, attempt, delay)``
        to try again, or (None) a later attempt succeeded. Shown as a transfer's retries are."""
        self.retry = None if wait is None else _awaited(*wait)
        self.publish()

    def set_status(self, status: Status, *, record: bool = True) -> None:
        self.status = status
        self.retry = None
        now = time.time()
        if status in (Status.RESOLVING, Status.DOWNLOADING) and self.started_at is None:
            self.started_at = now
        if status in Status.TERMINAL:
            self.completed_at = now
            if status in (Status.FAILED, Status.CANCELED):
                for f in self.files:  # files still in flight end with the job
                    if f.status not in Status.TERMINAL:
                        f.status = status
        self.publish(record=record)

    def publish(self, *, record: bool = False) -> None:
        """Build and deliver a new state; with ``record``, write it to the registry too."""
        files = tuple(f.progress() for f in self.files)
        totals = [f.total for f in self.files]
        total = (
            None
            if not totals or any(t is None for t in totals)
            else sum(t for t in totals if t is not None)
        )
        if self.status == Status.DOWNLOADING:
            running = [f.progress for f in files if f.status == Status.DOWNLOADING]
            progress = self.meter.snapshot(self.downloaded, total, group_retry(running))
        elif self.status == Status.RESOLVING:
            progress = Progress(self.downloaded, total, retry=_notice(self.retry))
        else:
            progress = Progress(self.downloaded, total)
        err = self.error
        snap = JobSnapshot(
            job_id=self.job.id,
            ref=self.job.ref,
            status=self.status.value,
            progress=progress,
            files=files,
            path=None if self.path is None else str(self.path),
            error=None if err is None else str(err),
            error_type=None if err is None else type(err).__name__,
            error_hint=None if err is None else err.hint,
            created_at=self.created_at,
            started_at=self.started_at,
            completed_at=self.completed_at,
        )
        self.feed.publish(JobState(snap, self.path, tuple(self.paths), err))
        if record:
            self._record(self.job)

    # -- the steps of an attempt ----------------------------------------------------------------

    def begin(self, plan: Plan, unpacked: set[Path]) -> list[tuple[PlannedFile, FileRun]]:
        """Take the plan's files; return those to fetch (not on disk, not unpacked already)."""
        self.path = plan.primary
        self.paths = [f.path for f in plan.files]
        self.files = [
            FileRun(
                f.name,
                f.path,
                f.size,
                Status.ALREADY_DOWNLOADED if f.present or f.path in unpacked else Status.QUEUED,
                self.settings.stall_after,
            )
            for f in plan.files
        ]
        self.downloaded = sum(f.downloaded for f in self.files)
        return [
            (f, state)
            for f, state in zip(plan.files, self.files, strict=True)
            if not f.present and f.path not in unpacked
        ]

    def reporters(self, state: FileRun) -> tuple[ProgressFn, StatusFn, RetryFn]:
        """The callbacks of ``state``'s transfer."""
        first = True

        def on_progress(downloaded: int, total: int | None) -> None:
            # Called per chunk: constant work. A resume's starting bytes and a restart's
            # rollback re-base the meters instead of counting as speed: the file's starts
            # afresh, the job's keeps the other files' history (it would show 0 B/s a moment
            # each time one of its files starts).
            nonlocal first
            delta = downloaded - state.downloaded
            if delta > 0:
                state.retry = None  # bytes arrive again
            state.downloaded = downloaded
            state.total = total
            self.downloaded += delta
            if first or delta < 0:
                first = False
                state.meter.reset(downloaded)
                self.meter.rebase(self.downloaded)
            else:
                state.meter.add(downloaded)
                self.meter.add(self.downloaded)

        def on_status(status: str) -> None:
            state.status = Status(status)
            self.publish()

        def on_retry(reason: str, attempt: int, delay: float) -> None:
            state.retrying(reason, attempt, delay)
            self.publish()

        return on_progress, on_status, on_retry

    def file_found(self, state: FileRun) -> None:
        """Another process finished ``state``'s file while this one waited for its lock."""
        size = state.total or 0
        self.downloaded += size - state.downloaded
        state.downloaded = size
        state.status = Status.ALREADY_DOWNLOADED

    def file_done(self, state: FileRun, size: int) -> None:
        """``state``'s file was fetched: ``size`` bytes, published and verified."""
        self.downloaded += size - state.downloaded
        state.downloaded = size
        state.total = size
        state.status = Status.COMPLETED
        self.publish()

    def unpacked(self, paths: list[Path], primary: Path) -> None:
        """After extraction: the folders that replace the archives."""
        self.paths = paths
        self.path = primary

    def finish(self, primary: Path) -> None:
        """Every file is in place: ``completed``, or ``already_downloaded`` when not a byte
        was fetched."""
        fetched = self.transferred or any(f.status == Status.COMPLETED for f in self.files)
        self.set_status(Status.COMPLETED if fetched else Status.ALREADY_DOWNLOADED)
        self.feed.outcome.set_result(primary)

    def end(self, status: Status, error: NbmodelsError) -> None:
        """End without the files: ``failed``, ``canceled`` or ``interrupted``."""
        self.error = error
        self.set_status(status)
        self.feed.outcome.set_exception(error)

    def fail(self, exc: BaseException) -> None:
        """The attempt raised ``exc``: the job fails with it (as an NbmodelsError)."""
        error = as_nbmodels_error(exc)
        if not isinstance(exc, NbmodelsError | OSError):
            log.error("nbmodels: unexpected error in job %s", self.job.id, exc_info=exc)
        elif isinstance(exc, OSError):  # its message says it all; the trace is for us
            log.debug("nbmodels: job %s: %s", self.job.id, error, exc_info=exc)
        self.end(Status.FAILED, error)

    # -- stop requests (the controls, posted to the loop) ---------------------------------------

    def take_stop(self) -> StopRequest | None:
        """The pending stop request, cleared."""
        stop, self.stop = self.stop, None
        return stop

    def request_pause(self) -> bool:
        if self.job.done or self.status == Status.PAUSED or self.stop is not None:
            return False
        self.stop = "pause"
        self.resume_event.clear()
        if self.attempt is not None:
            self.attempt.cancel()
        return True

    def request_resume(self) -> bool:
        # Also when the pause has been asked for but has not landed yet: the job then goes
        # straight back to the queue instead of staying paused.
        if self.status != Status.PAUSED and self.stop != "pause":
            return False
        self.resume_event.set()
        return True

    def request_cancel(self) -> bool:
        if self.job.done or self.stop == "cancel":
            return False
        self.stop = "cancel"
        if self.attempt is not None:
            self.attempt.cancel()
        self.resume_event.set()
        return True

    def request_shutdown(self) -> None:
        self.stop = "shutdown"
        if self.attempt is not None:
            self.attempt.cancel()
        self.resume_event.set()


def as_nbmodels_error(exc: BaseException) -> NbmodelsError:
    if isinstance(exc, NbmodelsError):
        return exc
    if isinstance(exc, OSError):
        return fs_error(exc)
    return NbmodelsError(f"Unexpected error: {type(exc).__name__}: {redact_text(str(exc))}")
