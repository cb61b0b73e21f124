"""The public :class:`Job`: a handle on one download, usable from any thread.

All mutation happens on the engine's loop thread; readers get the latest immutable
:class:`~nbmodels._progress.JobSnapshot`, replaced (never edited) a few times per second and on
every status change. Completion is a ``concurrent.futures.Future`` so sync code blocks on it and
async code awaits it through ``asyncio.wrap_future`` — never on the engine's loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as _dt
import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._options import Options, _is_default
from .._progress import (
    INTERRUPTED,
    TERMINAL_STATUSES,
    FileProgress,
    JobSnapshot,
    Progress,
    RetryNotice,
    SpeedMeter,
    SubscriberFn,
    format_progress,
    group_retry,
)
from ..errors import NbmodelsError

if TYPE_CHECKING:
    from ._engine import Engine
    from ._registry import JobRecord

__all__ = ["Job"]

log = logging.getLogger("nbmodels")


class _FileState:
    """Loop-thread-only bookkeeping of one file of a job."""

    __slots__ = (
        "downloaded",
        "error",
        "meter",
        "name",
        "path",
        "retry",
        "status",
        "target",
        "total",
        "touched",
    )

    def __init__(
        self, name: str, path: Path, total: int | None, status: str, stall_after: float = 5.0
    ) -> None:
        self.name = name
        self.path = path
        self.total = total
        self.downloaded = (total or 0) if status == "already_downloaded" else 0
        self.status = status
        self.error: str | None = None
        self.meter = SpeedMeter(stall_after=stall_after)
        self.touched = False
        self.target: Path | None = None
        #: Waiting to try again: (reason, failed attempts, monotonic time of the next attempt).
        self.retry: tuple[str, int, float] | None = None

    def retrying(self, reason: str, attempt: int, delay: float) -> None:
        self.retry = (reason, attempt, time.monotonic() + delay)

    def _retry_notice(self) -> RetryNotice | None:
        if self.retry is None:
            return None
        reason, attempt, at = self.retry
        return RetryNotice(reason, attempt, max(0.0, at - time.monotonic()))

    def progress(self) -> FileProgress:
        downloading = self.status == "downloading"
        p = (
            self.meter.snapshot(self.downloaded, self.total, self._retry_notice())
            if downloading
            else Progress(self.downloaded, self.total)
        )
        return FileProgress(
            name=self.name, status=self.status, progress=p, path=str(self.path), error=self.error
        )


class Job:
    """One download. Returned at once by :func:`nbmodels.download`; thread-safe.

    Attributes (docs/public-api.md): ``id``, ``ref``, ``status``, ``done``, ``progress``, ``files``,
    ``path``, ``paths``, ``error``, ``started_at``, ``completed_at``.
    """

    def __init__(
        self,
        engine: Engine | None,
        ref: str,
        options: Options,
        *,
        job_id: str,
        key: str = "",
        record: JobRecord | None = None,
    ) -> None:
        self.id = job_id
        self.ref = ref
        self._source = ref
        self.options = options
        self._engine = engine
        self._key = key
        self._future: concurrent.futures.Future[Path] = concurrent.futures.Future()
        self._subscribers: list[SubscriberFn] = []
        self._sub_lock = threading.Lock()
        self._created_at = time.time()
        self._started_at: float | None = None
        self._completed_at: float | None = None
        self._path: Path | None = None
        self._paths: list[Path] = []
        self._error: NbmodelsError | None = None
        self._status = "queued"
        # Loop-thread state.
        self._files: list[_FileState] = []
        self._meter = SpeedMeter(stall_after=engine.settings.stall_after if engine else 5.0)
        self._stop: str | None = None
        self._attempt: asyncio.Task[None] | None = None
        self._resume_event: asyncio.Event | None = None
        self._transferred = 0
        self._downloaded = 0  # sum of the files' bytes, kept up to date per chunk
        self._snapshot = JobSnapshot(
            job_id=self.id,
            ref=ref,
            status="queued",
            progress=Progress(),
            created_at=self._created_at,
        )
        if record is not None:
            self._load_record(record)

    # -- reading --------------------------------------------------------------------------------

    def snapshot(self) -> JobSnapshot:
        """The latest immutable snapshot (what every front end draws)."""
        return self._snapshot

    @property
    def status(self) -> str:
        return self._snapshot.status

    @property
    def done(self) -> bool:
        return self._snapshot.done

    @property
    def progress(self) -> Progress:
        return self._snapshot.progress

    @property
    def files(self) -> list[FileProgress]:
        return list(self._snapshot.files)

    @property
    def path(self) -> Path | None:
        """The primary local path: the file; part 1 of a split GGUF; a snapshot folder."""
        return self._path

    @property
    def paths(self) -> list[Path]:
        return list(self._paths)

    @property
    def error(self) -> NbmodelsError | None:
        return self._error

    @property
    def started_at(self) -> _dt.datetime | None:
        return _ts(self._started_at)

    @property
    def completed_at(self) -> _dt.datetime | None:
        return _ts(self._completed_at)

    @property
    def metadata(self) -> dict[str, Any] | None:
        """The ``metadata`` object given with the download (a fresh copy), or None."""
        text = self.options.metadata
        return None if text is None else dict(json.loads(text))

    @property
    def read_only(self) -> bool:
        """True for jobs of earlier sessions (from :func:`nbmodels.history`)."""
        return self._engine is None

    def __repr__(self) -> str:
        text = format_progress(self.progress, status=self.status)
        return f"<nbmodels.Job {self.id} {self.ref!r} {self.status} {text}>"

    def _repr_mimebundle_(
        self, **kwargs: Any
    ) -> dict[str, Any] | tuple[dict[str, Any], dict[str, Any]] | None:
        """In a notebook, a Job displays as its live widget (the notebook layer, loaded lazily);
        the bundle may come with its metadata, as ``(data, metadata)``."""
        try:
            from ..notebook import job_mimebundle  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            return {"text/plain": repr(self)}
        bundle: dict[str, Any] | tuple[dict[str, Any], dict[str, Any]] | None = job_mimebundle(
            self, **kwargs
        )
        return bundle

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with LM Studio-style names (``job_id``, ``total_size_bytes``, ...);
        ``metadata`` only when the download was given some."""
        snap = self._snapshot
        p = snap.progress
        eta = None
        if p.eta_seconds is not None and not snap.done:
            eta = _iso(time.time() + p.eta_seconds)
        out: dict[str, Any] = {
            "job_id": self.id,
            "ref": self.ref,
            "status": snap.status,
            "total_size_bytes": p.total_bytes,
            "downloaded_bytes": p.downloaded_bytes,
            "bytes_per_second": round(p.bytes_per_second, 1),
            "estimated_completion": eta,
            "started_at": _iso(self._started_at),
            "completed_at": _iso(self._completed_at),
            "path": None if self._path is None else str(self._path),
            "items": [
                {
                    "name": f.name,
                    "path": f.path,
                    "status": f.status,
                    "total_size_bytes": f.progress.total_bytes,
                    "downloaded_bytes": f.progress.downloaded_bytes,
                    "error": f.error,
                }
                for f in snap.files
            ],
            "error": None if self._error is None else str(self._error),
        }
        if self.options.metadata is not None:
            out["metadata"] = self.metadata
        return out

    # -- waiting --------------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> Path:
        """Block until the job ends; return :attr:`path` or raise the job's error.

        Raises ``TimeoutError`` when ``timeout`` passes first (the job goes on). In terminal
        IPython (and front ends without widgets), waiting without a timeout for a job that
        :func:`nbmodels.download` showed there draws its text progress line meanwhile.
        """
        if timeout is None and not self._future.done():
            shown = _text_waiter()
            if shown is not None:
                return shown(self, self._future.result)
        return self._future.result(timeout)

    def __await__(self) -> Generator[Any, None, Path]:
        return asyncio.wrap_future(self._future).__await__()

    def subscribe(self, callback: SubscriberFn) -> Callable[[], None]:
        """Call ``callback(snapshot)`` on every update (on the engine's thread; keep it quick).

        The current snapshot is delivered at once. Returns a function that unsubscribes.
        """
        with self._sub_lock:
            self._subscribers.append(callback)
        _safe_call(callback, self._snapshot)

        def unsubscribe() -> None:
            with self._sub_lock, contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    # -- control (any thread) -------------------------------------------------------------------

    def pause(self) -> bool:
        """Stop transferring and keep the partial data. True if the job was running."""
        if self._engine is None or self.done:
            return False
        return self._engine.call(self._pause_in_loop)

    def resume(self) -> bool:
        """Continue a paused job. True if it was paused."""
        if self._engine is None or self.done:
            return False
        return self._engine.call(self._resume_in_loop)

    def cancel(self) -> bool:
        """Stop and discard the partial data; ``wait()`` then raises ``CanceledError``."""
        if self._engine is None or self.done:
            return False
        return self._engine.call(self._cancel_in_loop)

    def retry(self) -> Job:
        """Submit this job's reference and options again (e.g. after ``failed`` or
        ``interrupted``); returns the new (or still running) job."""
        from .. import download

        return download(self.ref, **_options_kwargs(self.options))

    # -- engine side (loop thread) -------------------------------------------------------------

    def _take_stop(self) -> str | None:
        """The pending stop request (pause / cancel / shutdown), cleared."""
        stop, self._stop = self._stop, None
        return stop

    def _pause_in_loop(self) -> bool:
        if self._snapshot.done or self._status == "paused" or self._stop is not None:
            return False
        self._stop = "pause"
        if self._resume_event is not None:
            self._resume_event.clear()
        if self._attempt is not None:
            self._attempt.cancel()
        return True

    def _resume_in_loop(self) -> bool:
        # Also when the pause has been asked for but has not landed yet: the job then goes
        # straight back to the queue instead of staying paused.
        pausing = self._status == "paused" or self._stop == "pause"
        if not pausing or self._resume_event is None:
            return False
        self._resume_event.set()
        return True

    def _cancel_in_loop(self) -> bool:
        if self._snapshot.done or self._stop == "cancel":
            return False
        self._stop = "cancel"
        if self._attempt is not None:
            self._attempt.cancel()
        if self._resume_event is not None:
            self._resume_event.set()
        return True

    def _set_status(self, status: str, *, record: bool = True) -> None:
        self._status = status
        now = time.time()
        if status in ("resolving", "downloading") and self._started_at is None:
            self._started_at = now
        if status in TERMINAL_STATUSES:
            self._completed_at = now
            if status in ("failed", "canceled"):
                for f in self._files:  # files still in flight end with the job
                    if f.status not in TERMINAL_STATUSES:
                        f.status = status
        self._publish(record=record)

    def _publish(self, *, record: bool = False) -> None:
        """Build and deliver a new snapshot (loop thread)."""
        files = tuple(f.progress() for f in self._files)
        downloaded = self._downloaded
        totals = [f.total for f in self._files]
        total = (
            None
            if not totals or any(t is None for t in totals)
            else sum(t for t in totals if t is not None)
        )
        if self._status == "downloading":
            running = [f.progress for f in files if f.status == "downloading"]
            progress = self._meter.snapshot(downloaded, total, group_retry(running))
        else:
            progress = Progress(downloaded, total)
        err = self._error
        snap = JobSnapshot(
            job_id=self.id,
            ref=self.ref,
            status=self._status,
            progress=progress,
            files=files,
            path=None if self._path is None else str(self._path),
            error=None if err is None else str(err),
            error_type=None if err is None else type(err).__name__,
            error_hint=None if err is None else err.hint,
            created_at=self._created_at,
            started_at=self._started_at,
            completed_at=self._completed_at,
        )
        self._snapshot = snap
        with self._sub_lock:
            subscribers = list(self._subscribers)
        for fn in subscribers:
            _safe_call(fn, snap)
        if record and self._engine is not None:
            self._engine.record(self)

    def _load_record(self, rec: JobRecord) -> None:
        self._status = rec.status
        self._created_at = rec.created_at
        self._started_at = rec.started_at
        self._completed_at = rec.completed_at
        self._path = Path(rec.path) if rec.path else None
        self._paths = [Path(p) for p in rec.paths]
        if rec.error:
            self._error = NbmodelsError(rec.error)
        files = tuple(
            FileProgress(
                name=str(f.get("name", "")),
                status=str(f.get("status", rec.status)),
                progress=Progress(int(f.get("downloaded_bytes") or 0), f.get("total_bytes")),
                path=f.get("path"),
                error=f.get("error"),
            )
            for f in rec.files
        )
        self._snapshot = JobSnapshot(
            job_id=rec.id,
            ref=rec.ref,
            status=rec.status,
            progress=Progress(rec.downloaded_bytes, rec.total_bytes),
            files=files,
            path=rec.path,
            error=rec.error,
            error_type=rec.error_type,
            error_hint=rec.error_hint,
            created_at=rec.created_at,
            started_at=rec.started_at,
            completed_at=rec.completed_at,
        )
        if rec.status in ("completed", "already_downloaded") and self._path is not None:
            self._future.set_result(self._path)
        elif rec.status in TERMINAL_STATUSES or rec.status == INTERRUPTED:
            self._future.set_exception(
                self._error or NbmodelsError(f"job {rec.id} ended as {rec.status}")
            )


def _text_waiter() -> Callable[[Job, Callable[[float | None], Path]], Path] | None:
    """The notebook layer's wait with a text progress line, when that layer is loaded (the core
    never imports it: docs/notebook.md)."""
    module = sys.modules.get("nbmodels.notebook")
    waiter = getattr(module, "wait_with_progress", None)
    return waiter if callable(waiter) else None


def _safe_call(fn: SubscriberFn, snap: JobSnapshot) -> None:
    try:
        fn(snap)
    except Exception:
        log.exception("nbmodels: a progress subscriber raised; ignoring it")


def _ts(value: float | None) -> _dt.datetime | None:
    return None if value is None else _dt.datetime.fromtimestamp(value, tz=_dt.UTC)


def _iso(value: float | None) -> str | None:
    ts = _ts(value)
    return None if ts is None else ts.isoformat(timespec="seconds")


def _options_kwargs(options: Options) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in options.__slots__:
        value = getattr(options, name)
        if (name == "token" and value is not None) or (
            name != "token" and not _is_default(name, value)
        ):
            out[name] = value
    return out
