"""A kernel's handle on its Jupyter server's engine: the engine surface the API and
:class:`~nbmodels.Job` use (submit, jobs, history, job(id), pause / resume / cancel, resubmit),
over the service's native HTTP API (docs/api.md, "Native").

Jobs stay the same public :class:`~nbmodels.Job` objects, one per job id for the life of the
process: each is fed through its :class:`~nbmodels.engine.JobFeed` from the service's event
stream (:mod:`._stream`, one connection per process, on its own thread), and its controls post
to the server. Requests run on the calling thread with one small HTTP client (loopback).

Which state wins: the stream is the only source of a job's changes once the job is known; a
request's answer (``POST api/jobs``, a listing, a control) only introduces a job, or ends one
that the stream has not ended yet (an ended job never changes again). So an older answer can
never overwrite a newer event, and a job that ended while the stream was down still ends
(the stream calls :meth:`RemoteEngine.catch_up` when it is up again).
"""

from __future__ import annotations

import atexit
import logging
import re
import threading
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx2

from .._config import env_flag
from .._options import Options
from .._progress import Status
from ..engine import (
    Job,
    JobFeed,
    JobState,
    Submission,
    options_from_payload,
    state_from_payload,
)
from ..errors import NbmodelsError, NotFoundError, RefError
from ._discover import ServerInfo
from ._stream import EventStream

__all__ = ["RemoteEngine", "submit_body"]

log = logging.getLogger("nbmodels")

_JOB_ID = re.compile(r"[0-9a-f]{12}")
#: The next step when the service stops answering.
_NEXT = (
    "If the Jupyter server was restarted, restart the kernel; NBMODELS_ENGINE=local "
    "downloads inside the kernel instead."
)


def submit_body(ref: str, options: Options) -> dict[str, Any]:
    """The ``POST api/jobs`` body: the reference as given and the options that are not
    defaults. ``dir`` is made absolute here (the kernel's working directory is not the
    server's); ``HF_HUB_OFFLINE`` of this process becomes ``offline``. Never a token."""
    body: dict[str, Any] = {"ref": ref, **options.record()}
    body.pop("token", None)
    if options.dir is not None:
        body["dir"] = str(Path(options.dir).resolve())
    if env_flag("HF_HUB_OFFLINE"):
        body["offline"] = True
    return body


class RemoteEngine:
    """The engine of the Jupyter server that launched this kernel (``server``)."""

    def __init__(self, server: ServerInfo, *, timeout: float = 30.0) -> None:
        self.server = server
        self._http = httpx2.Client(
            timeout=httpx2.Timeout(timeout, connect=5.0), trust_env=False, headers=server.headers
        )
        self._http_lock = threading.Lock()
        self._lock = threading.RLock()
        self._apply_lock = threading.RLock()
        self._known: dict[str, Job] = {}
        self._feeds: dict[str, JobFeed] = {}
        self._mine: list[str] = []
        self._stream: EventStream | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<nbmodels RemoteEngine {self.server.url}>"

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def stream(self) -> EventStream | None:
        """The event stream, once started."""
        return self._stream

    def close(self) -> None:
        """Stop following the server (its jobs go on there)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            stream = self._stream
        _open_engines.discard(self)
        if stream is not None:
            stream.stop()
        with self._http_lock:
            self._http.close()

    # -- the engine surface -------------------------------------------------------------------

    def submit(self, ref: str, options: Options) -> Job:
        """Start (or find: the server's submit is idempotent) the job; returns at once."""
        Submission.of(ref, options)  # a RefError or an option error now, as locally
        data = self._expect(self._request("POST", "api/jobs", submit_body(ref, options)))
        job = self._apply(data, options=options)
        with self._lock:
            if job.id not in self._mine:
                self._mine.append(job.id)
        self._follow()
        return job

    def jobs(self) -> list[Job]:
        """The jobs this process submitted (or attached to again), newest first."""
        with self._lock:
            return [self._known[i] for i in reversed(self._mine)]

    def history(self, limit: int | None = None) -> list[Job]:
        """The server's history (the newest ``limit``): every kernel's jobs, and earlier server
        processes'."""
        # The service lists at most 100,000 jobs per request (its own bound on ``limit``).
        path = "api/jobs" if limit is None else f"api/jobs?limit={min(int(limit), 100_000)}"
        data = self._expect(self._request("GET", path))
        rows = data.get("jobs") if isinstance(data, Mapping) else None
        jobs = [self._apply(row) for row in rows or () if isinstance(row, Mapping)]
        self._follow()
        return jobs

    def job(self, job_id: str) -> Job | None:
        if not _JOB_ID.fullmatch(job_id):
            return None
        status, data = self._request("GET", f"api/jobs/{job_id}")
        if status == 404:
            return None
        job = self._apply(self._expect((status, data)))
        self._follow()
        return job

    def pause(self, job_id: str) -> bool:
        return self._control(job_id, "pause")

    def resume(self, job_id: str) -> bool:
        return self._control(job_id, "resume")

    def cancel(self, job_id: str) -> bool:
        return self._control(job_id, "cancel")

    def resubmit(self, job: Job) -> Job:
        return self.submit(job.ref, job.options)

    def _control(self, job_id: str, action: str) -> bool:
        status, data = self._request("POST", f"api/jobs/{job_id}/{action}")
        if status in (404, 409):  # unknown, or ended meanwhile
            return False
        answer = self._expect((status, data))
        if isinstance(answer.get("job"), Mapping):
            self._apply(answer["job"])
        return bool(answer.get("ok"))

    # -- following the stream -----------------------------------------------------------------

    def _follow(self) -> None:
        """Start the event stream on first use."""
        with self._lock:
            if self._stream is not None or self._closed:
                return
            self._stream = EventStream(self.server, self._on_event, self.catch_up)
            stream = self._stream
            _open_engines.add(self)
        stream.start()

    def _on_event(self, data: dict[str, Any]) -> None:
        self._apply(data, live=True)

    def catch_up(self) -> None:
        """Ask for each job that has not ended here: one that ended while the stream was down
        ends now (the stream sends the state of running jobs only)."""
        with self._lock:
            waiting = [j.id for j in self._known.values() if not j.done]
        for job_id in waiting:
            status, data = self._request("GET", f"api/jobs/{job_id}")
            if status == 200 and isinstance(data, Mapping):
                self._apply(data)

    def _apply(
        self, data: Mapping[str, Any], *, options: Options | None = None, live: bool = False
    ) -> Job:
        """The Job of a payload, its state updated by the rule of the module docstring."""
        state = state_from_payload(data)
        job_id = state.snapshot.job_id
        if not _JOB_ID.fullmatch(job_id):
            raise ValueError(f"not a job id: {job_id[:40]!r}")
        with self._apply_lock:
            with self._lock:
                job = self._known.get(job_id)
                if job is None:
                    feed = JobFeed(state)
                    opts = options or options_from_payload(data)
                    read_only = bool(data.get("read_only"))
                    job = Job(job_id, state.snapshot.ref, opts, feed, self, read_only=read_only)
                    self._known[job_id] = job
                    self._feeds[job_id] = feed
                    _settle(feed, state)
                    return job
                feed = self._feeds[job_id]
            if not feed.state.snapshot.done and (live or state.snapshot.done):
                feed.publish(state)
                _settle(feed, state)
        return job

    # -- HTTP -----------------------------------------------------------------------------------

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, Any]:
        try:
            with self._http_lock:
                if self._closed:
                    raise NbmodelsError("This handle on the Jupyter server's engine was closed.")
                answer = self._http.request(method, self.server.url + path, json=body)
        except httpx2.HTTPError as exc:
            raise NbmodelsError(
                f"The Jupyter server's download service at {self.server.url} did not answer "
                f"({type(exc).__name__}).",
                hint=_NEXT,
            ) from None
        try:
            data = answer.json()
        except ValueError:
            data = None
        return answer.status_code, data

    def _expect(self, answer: tuple[int, Any]) -> Any:
        status, data = answer
        if status == 200 and isinstance(data, Mapping):
            return data
        raise _refusal(status, data)


def _refusal(status: int, data: Any) -> Exception:
    """The error of an answer other than 200: the service's own, as the local engine would
    raise it where there is one."""
    envelope = data.get("error") if isinstance(data, Mapping) else None
    code = str(envelope.get("code", "")) if isinstance(envelope, Mapping) else ""
    message = str(envelope.get("message", "")) if isinstance(envelope, Mapping) else ""
    if code == "invalid_reference":
        return RefError(message)
    if code in ("invalid_option", "invalid_field", "invalid_body"):
        return ValueError(message)
    if code == "not_found":
        details = envelope.get("details") if isinstance(envelope, Mapping) else None
        candidates = details.get("candidates", ()) if isinstance(details, Mapping) else ()
        return NotFoundError(message, candidates=[str(c) for c in candidates])
    what = f": {message}" if message else "."
    return NbmodelsError(
        f"The Jupyter server's download service answered HTTP {status}{what}", hint=_NEXT
    )


def _settle(feed: JobFeed, state: JobState) -> None:
    """An ended state resolves the job's outcome (once): its path, or its error."""
    snap = state.snapshot
    if not snap.done or feed.outcome.done():
        return
    if snap.status in Status.SUCCEEDED and state.path is not None:
        feed.outcome.set_result(state.path)
    else:
        feed.outcome.set_exception(
            state.error or NbmodelsError(f"Job {snap.job_id} ended as {snap.status}.")
        )


#: Engines whose stream runs, stopped at interpreter exit (their jobs go on in the server).
_open_engines: weakref.WeakSet[RemoteEngine] = weakref.WeakSet()


@atexit.register
def _close_at_exit() -> None:
    for engine in list(_open_engines):
        engine.close()
