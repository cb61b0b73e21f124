"""The public :class:`Job`: the read-side handle on one download, usable from any thread.

A job's mutable state belongs to its run (:mod:`._run`), on the engine's loop thread. The run
publishes an immutable :class:`JobState` through the job's :class:`JobFeed`, replaced (never
edited) a few times per second and on every status change; the Job only reads the latest one.
Completion is a ``concurrent.futures.Future`` so sync code blocks on it and async code awaits it
through ``asyncio.wrap_future`` — never on the engine's loop. The controls (pause, resume,
cancel, retry) are posted to the engine (:class:`Controls`), which runs them on its loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as _dt
import json
import logging
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .._options import Options
from .._progress import FileProgress, JobSnapshot, Progress, Status, SubscriberFn, format_progress
from ..errors import NbmodelsError
from ._hooks import MimeBundle, front_end, load_front_end, show
from ._registry import JobRecord

__all__ = ["Controls", "Job", "JobEngine", "JobFeed", "JobState", "recorded_job", "state_of"]

log = logging.getLogger("nbmodels")


@dataclass(frozen=True, slots=True)
class JobState:
    """What a Job shows at one moment: its snapshot, and the objects a snapshot holds as text."""

    snapshot: JobSnapshot
    path: Path | None = None
    paths: tuple[Path, ...] = ()
    error: NbmodelsError | None = None


class JobFeed:
    """The one channel from a job's run (the engine's loop thread) to its :class:`Job` (any
    thread): the latest :class:`JobState`, the subscribers, and the outcome."""

    __slots__ = ("_lock", "_subscribers", "outcome", "state")

    def __init__(self, state: JobState) -> None:
        self.state = state
        self.outcome: concurrent.futures.Future[Path] = concurrent.futures.Future()
        self._subscribers: list[SubscriberFn] = []
        self._lock = threading.Lock()

    def publish(self, state: JobState) -> None:
        """Replace the state and deliver its snapshot to every subscriber."""
        self.state = state
        with self._lock:
            subscribers = list(self._subscribers)
        for fn in subscribers:
            _safe_call(fn, state.snapshot)

    def subscribe(self, callback: SubscriberFn) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(callback)
        _safe_call(callback, self.state.snapshot)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe


class Controls(Protocol):
    """What a Job's controls post to (the engine; they run on its loop)."""

    def pause(self, job_id: str) -> bool: ...

    def resume(self, job_id: str) -> bool: ...

    def cancel(self, job_id: str) -> bool: ...

    def resubmit(self, job: Job) -> Job: ...


class JobEngine(Controls, Protocol):
    """What the API uses of an engine: the local :class:`~._engine.Engine`, or a kernel's
    handle on its Jupyter server's engine (:class:`nbmodels.remote.RemoteEngine`)."""

    def submit(self, ref: str, options: Options) -> Job: ...

    def jobs(self) -> list[Job]: ...

    def history(self, limit: int | None = None) -> list[Job]: ...

    def job(self, job_id: str) -> Job | None: ...


class Job:
    """One download. Returned at once by :func:`nbmodels.download`; thread-safe.

    Attributes (docs/public-api.md): ``id``, ``ref``, ``status``, ``done``, ``progress``, ``files``,
    ``path``, ``paths``, ``error``, ``started_at``, ``completed_at``.
    """

    def __init__(
        self,
        job_id: str,
        ref: str,
        options: Options,
        feed: JobFeed,
        controls: Controls,
        *,
        read_only: bool = False,
    ) -> None:
        self.id = job_id
        self.ref = ref
        self.options = options
        self._feed = feed
        self._controls = controls
        self._read_only = read_only

    # -- reading --------------------------------------------------------------------------------

    def snapshot(self) -> JobSnapshot:
        """The latest immutable snapshot (what every front end draws)."""
        return self._feed.state.snapshot

    @property
    def status(self) -> str:
        return self.snapshot().status

    @property
    def done(self) -> bool:
        return self.snapshot().done

    @property
    def progress(self) -> Progress:
        return self.snapshot().progress

    @property
    def files(self) -> list[FileProgress]:
        return list(self.snapshot().files)

    @property
    def path(self) -> Path | None:
        """The primary local path: the file; part 1 of a split GGUF; a snapshot folder."""
        return self._feed.state.path

    @property
    def paths(self) -> list[Path]:
        return list(self._feed.state.paths)

    @property
    def error(self) -> NbmodelsError | None:
        return self._feed.state.error

    @property
    def started_at(self) -> _dt.datetime | None:
        return _ts(self.snapshot().started_at)

    @property
    def completed_at(self) -> _dt.datetime | None:
        return _ts(self.snapshot().completed_at)

    @property
    def metadata(self) -> dict[str, Any] | None:
        """The ``metadata`` object given with the download (a fresh copy), or None."""
        text = self.options.metadata
        return None if text is None else dict(json.loads(text))

    @property
    def read_only(self) -> bool:
        """True for jobs of earlier sessions (from :func:`nbmodels.history`)."""
        return self._read_only

    def __repr__(self) -> str:
        text = format_progress(self.progress, status=self.status)
        tail = f" {text}" if text else ""
        return f"<nbmodels.Job {self.id} {self.ref!r} {self.status}{tail}>"

    def _repr_mimebundle_(self, **kwargs: Any) -> MimeBundle:
        """In a notebook, a Job displays as its live widget (the front end, loaded by name); the
        bundle may come with its metadata, as ``(data, metadata)``."""
        try:
            hooks = load_front_end()
        except ImportError:
            return {"text/plain": repr(self)}
        bundle: MimeBundle = hooks.mimebundle(self, **kwargs)
        return bundle

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with LM Studio-style names (``job_id``, ``total_size_bytes``, ...);
        ``metadata`` only when the download was given some."""
        state = self._feed.state
        snap = state.snapshot
        p = snap.progress
        eta = None
        if p.eta_seconds is not None and not snap.done:
            eta = _iso(time.time() + p.eta_seconds)
        out: dict[str, Any] = {
            "job_id": self.id,
            "ref": self.ref,
            "status": str(snap.status),
            "total_size_bytes": p.total_bytes,
            "downloaded_bytes": p.downloaded_bytes,
            "bytes_per_second": round(p.bytes_per_second, 1),
            "estimated_completion": eta,
            "started_at": _iso(snap.started_at),
            "completed_at": _iso(snap.completed_at),
            "path": None if state.path is None else str(state.path),
            "items": [
                {
                    "name": f.name,
                    "path": f.path,
                    "status": str(f.status),
                    "total_size_bytes": f.progress.total_bytes,
                    "downloaded_bytes": f.progress.downloaded_bytes,
                    "error": f.error,
                }
                for f in snap.files
            ],
            "error": None if state.error is None else str(state.error),
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
        outcome = self._feed.outcome
        hooks = front_end()
        if timeout is None and not outcome.done() and hooks is not None:
            return hooks.waiter(self, outcome.result)
        return outcome.result(timeout)

    def __await__(self) -> Generator[Any, None, Path]:
        return asyncio.wrap_future(self._feed.outcome).__await__()

    def subscribe(self, callback: SubscriberFn) -> Callable[[], None]:
        """Call ``callback(snapshot)`` on every update (on the engine's thread; keep it quick).

        The current snapshot is delivered at once. Returns a function that unsubscribes.
        """
        return self._feed.subscribe(callback)

    # -- control (any thread) -------------------------------------------------------------------

    def pause(self) -> bool:
        """Stop transferring and keep the partial data. True if the job was running."""
        return not (self._read_only or self.done) and self._controls.pause(self.id)

    def resume(self) -> bool:
        """Continue a paused job. True if it was paused."""
        return not (self._read_only or self.done) and self._controls.resume(self.id)

    def cancel(self) -> bool:
        """Stop and discard the partial data; ``wait()`` then raises ``CanceledError``."""
        return not (self._read_only or self.done) and self._controls.cancel(self.id)

    def retry(self) -> Job:
        """Submit this job's reference and options again (e.g. after ``failed`` or
        ``interrupted``); returns the new (or still running) job, shown as
        :func:`nbmodels.download` shows it."""
        job = self._controls.resubmit(self)
        show(job, self.options)
        return job


def state_of(job: Job) -> JobState:
    """The job's latest state (its snapshot with the paths and the error as objects)."""
    return job._feed.state


def recorded_job(rec: JobRecord, controls: Controls) -> Job:
    """A read-only Job for a registry row of an earlier session (or of this one)."""
    options = Options.from_record(_safe_options(rec.options))
    error = NbmodelsError(rec.error) if rec.error else None
    path = Path(rec.path) if rec.path else None
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
    snapshot = JobSnapshot(
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
    feed = JobFeed(JobState(snapshot, path, tuple(Path(p) for p in rec.paths), error))
    if rec.status in Status.SUCCEEDED and path is not None:
        feed.outcome.set_result(path)
    elif rec.status in Status.ENDED:
        feed.outcome.set_exception(error or NbmodelsError(f"job {rec.id} ended as {rec.status}"))
    return Job(rec.id, rec.ref, options, feed, controls, read_only=True)


def _safe_options(data: dict[str, Any]) -> dict[str, Any]:
    try:
        Options.from_record(data)
    except (TypeError, ValueError):
        return {}
    return data


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
