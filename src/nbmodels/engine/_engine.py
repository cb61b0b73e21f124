"""The engine: one daemon thread running its own asyncio loop (docs/public-api.md, "Where
things run").

Started lazily by the first download, closed at interpreter exit (running jobs keep their
partial data and show as ``interrupted``). Jobs queue for a limited number of slots; each job
resolves its reference into a plan, fetches the files that are not on disk yet, and publishes.

Exit order matters: the interpreter first runs ``threading``'s exit hooks, among them the one of
``concurrent.futures`` that stops every thread pool (the loop's default executor, which
``asyncio.to_thread`` uses, included), and only then ``atexit``. Stopping a job needs that
executor (the transfer's last checkpoint and the hasher's stop run on it), so the engines are
closed by a hook of the same stage that runs before the pools' (:func:`_close_engines_at_exit`).
A job a non-daemon thread still waits for then ends as ``interrupted``, and a download started
after that point is refused with a clear error (it could not run without the pools).

Nothing here runs on the caller's event loop (a notebook kernel's loop stays free), and
nest_asyncio is not needed: callers block on ``concurrent.futures.Future`` objects.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import concurrent.futures.thread  # registers its pools' exit hook before ours (see the docstring)
import contextlib
import dataclasses
import logging
import threading
import uuid
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TypeVar

import httpx2

from .._aio import pick_error
from .._config import Settings, env_flag, nbmodels_home
from .._options import Options
from .._progress import Status, format_bytes
from ..errors import CanceledError, NbmodelsError
from ..net import reporting_retries
from ..sources import Plan, PlannedFile, SourceContext, plan_hf, plan_url
from ..transfer import make_client
from ._fetch import discard, fetch_file
from ._job import Job, recorded_job
from ._network import Net, network
from ._registry import Registry
from ._run import FileRun, JobRun
from ._submission import Submission
from ._unpack import removed_after_unpacking, unpack, unpacked_already

__all__ = ["Engine", "get_engine", "set_engine", "shutdown"]

log = logging.getLogger("nbmodels")
T = TypeVar("T")

#: Files of one job fetched at the same time.
FILES_PER_JOB = 4


class Engine:
    """Owns the loop thread, the HTTP client, the job table and the registry."""

    def __init__(self, settings: Settings | None = None, home: Path | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self._home = home
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: httpx2.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None
        self._registry: Registry | None = None
        self._jobs: list[Job] = []
        #: The runs of jobs not ended yet, by job key (one per reference and options).
        self._active: dict[str, JobRun] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def home(self) -> Path:
        return self._home if self._home is not None else nbmodels_home()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def registry(self) -> Registry:
        with self._lock:
            if self._registry is None:
                self._registry = Registry(self.home)
            return self._registry

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise NbmodelsError("The nbmodels engine was closed; start a new Python process.")
            if self._loop is not None:
                return self._loop
            if _exiting.is_set():
                raise NbmodelsError(
                    "Python is exiting (the main thread has ended), so no download can start.",
                    hint="Wait for downloads before the main thread ends, e.g. with job.wait().",
                )
            ready = threading.Event()
            loop = asyncio.new_event_loop()

            def main() -> None:
                asyncio.set_event_loop(loop)
                self._client = make_client(self.settings)
                self._slots = asyncio.Semaphore(self.settings.max_concurrent_jobs)
                loop.call_soon(ready.set)
                try:
                    loop.run_forever()
                finally:
                    with contextlib.suppress(Exception):
                        loop.run_until_complete(loop.shutdown_asyncgens())
                    loop.close()

            self._thread = threading.Thread(target=main, name="nbmodels-engine", daemon=True)
            self._thread.start()
            ready.wait()
            self._loop = loop
            _live_engines.add(self)
            return loop

    def close(self, timeout: float = 10.0) -> None:
        """Stop every job (keeping partial data), close the client, join the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop = self._loop
        _live_engines.discard(self)
        if loop is not None and self._thread is not None:
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            with contextlib.suppress(Exception):
                fut.result(timeout)
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout)
        if self._registry is not None:
            self._registry.close()

    def close_at_exit(self) -> None:
        """:meth:`close`, then one warning line naming the downloads that were still running
        (a paused one was stopped on purpose, so it is not named)."""
        with self._lock:
            running = [
                r.job
                for r in self._active.values()
                if not r.job.done and r.job.status != Status.PAUSED
            ]
        self.close()
        stopped = [j for j in running if j.status == Status.INTERRUPTED]
        if stopped:
            log.warning("%s", _exit_note(stopped))

    async def _shutdown(self) -> None:
        for run in list(self._active.values()):
            run.request_shutdown()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.settings.read_timeout)
        if self._client is not None:
            await self._client.aclose()

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the loop thread and return its result (from any thread)."""
        loop = self._ensure_started()
        if threading.current_thread() is self._thread:
            return fn()
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                fut.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return fut.result()

    # -- jobs -----------------------------------------------------------------------------------

    def submit(self, ref: str, options: Options) -> Job:
        """Start (or find) the job for ``ref``; returns at once."""
        submission = Submission.of(ref, options)  # a RefError now, in the caller's thread
        loop = self._ensure_started()
        with self._lock:
            existing = self._active.get(submission.key)
            if existing is not None and not existing.job.done:
                if existing.job.status == Status.PAUSED:
                    existing.job.resume()
                return existing.job
            run = JobRun(
                uuid.uuid4().hex[:12],
                submission,
                options,
                settings=self.settings,
                controls=self,
                record=self.record,
            )
            self._active[submission.key] = run
            self._jobs.append(run.job)
        self.record(run.job, created=True)
        asyncio.run_coroutine_threadsafe(self._spawn(run), loop).result()
        return run.job

    async def _spawn(self, run: JobRun) -> None:
        task = asyncio.get_running_loop().create_task(self._run_job(run))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(reversed(self._jobs))

    def job(self, job_id: str) -> Job | None:
        """The job with this id: one of this process's, else a read-only one from the registry
        (an earlier session's); None if there is none."""
        with self._lock:
            for job in reversed(self._jobs):
                if job.id == job_id:
                    return job
        rec = self.registry.get(job_id)
        return None if rec is None else recorded_job(rec, self)

    def history(self, limit: int | None = None) -> list[Job]:
        """Every job of the registry (the newest ``limit``), this process's live ones as such."""
        live = {job.id: job for job in self.jobs()}
        out: list[Job] = []
        for rec in self.registry.rows(limit):
            job = live.pop(rec.id, None)
            if job is None:
                job = recorded_job(rec, self)
            out.append(job)
        if live:  # not in the registry (it could not be written), or older than the newest
            # ``limit`` rows (then sorting puts them after those, and the slice drops them)
            out = sorted([*out, *live.values()], key=_created_at, reverse=True)
        return out if limit is None else out[:limit]

    def record(self, job: Job, *, created: bool = False) -> None:
        """Write the job's current state to the registry (never a secret)."""
        options = job.options.record() if created else None
        try:
            self.registry.save(job.snapshot(), job.paths, options)
        except Exception:  # the registry is a record, never a reason to fail a download
            log.warning("nbmodels: could not update the job registry", exc_info=True)

    # -- controls (a Job's, from any thread; they run on the loop) ------------------------------

    def pause(self, job_id: str) -> bool:
        return self._control(job_id, JobRun.request_pause)

    def resume(self, job_id: str) -> bool:
        return self._control(job_id, JobRun.request_resume)

    def cancel(self, job_id: str) -> bool:
        return self._control(job_id, JobRun.request_cancel)

    def resubmit(self, job: Job) -> Job:
        """Submit ``job``'s reference and options again, to the process-wide engine (as
        :func:`nbmodels.download` does: this one may have been closed since)."""
        return get_engine().submit(job.ref, job.options)

    def _control(self, job_id: str, action: Callable[[JobRun], bool]) -> bool:
        with self._lock:
            run = next((r for r in self._active.values() if r.job.id == job_id), None)
        return run is not None and self.call(lambda: action(run))

    # -- running a job (loop thread) ------------------------------------------------------------

    async def _run_job(self, run: JobRun) -> None:
        try:
            while await self._run_attempt(run):
                pass
        finally:
            with self._lock:
                if self._active.get(run.submission.key) is run:
                    del self._active[run.submission.key]

    async def _run_attempt(self, run: JobRun) -> bool:
        """One attempt, to its end; True when the job goes on (resumed after a pause)."""
        attempt = asyncio.get_running_loop().create_task(self._attempt(run))
        run.attempt = attempt
        await asyncio.wait({attempt})
        run.attempt = None
        if attempt.cancelled() or (run.stop is not None and not run.job.done):
            _report_stop_error(run, attempt)
            return await self._stopped(run)
        exc = attempt.exception()
        if exc is not None:
            run.fail(exc)
        return False

    async def _stopped(self, run: JobRun) -> bool:
        """The attempt was stopped: pause (True once resumed), cancel, or end interrupted."""
        stop = run.take_stop()
        if stop == "pause":
            run.set_status(Status.PAUSED)
            await run.resume_event.wait()  # set at once if resume() came early
            stop = run.take_stop()
            if stop is None:
                run.set_status(Status.QUEUED)
                return True
        if stop == "cancel":
            await discard(run)
            message = f"Download of {run.job.ref} was canceled; its partial data was removed."
            run.end(Status.CANCELED, CanceledError(message))
            return False
        # shutdown (or an unexplained cancel): keep the partial data for later.
        error = NbmodelsError(
            "The Python process stopped while this job ran; its partial data was kept.",
            hint="Submit the same reference again to resume.",
        )
        run.end(Status.INTERRUPTED, error)
        return False

    async def _attempt(self, run: JobRun) -> None:
        assert self._slots is not None
        run.set_status(Status.QUEUED, record=False)
        assert self._client is not None
        async with self._slots, network(self._client, self.settings, run.job.options) as net:
            run.set_status(Status.RESOLVING)
            async with self._ticking(run):
                with reporting_retries(run.resolving_retry):
                    plan = await self._plan(run, net)
            unpacked = await unpacked_already(plan, run.job.options)
            todo = run.begin(plan, unpacked)
            if todo:
                await self._fetch_all(run, todo, net)
            if plan.finish is not None:
                await asyncio.to_thread(plan.finish)
            primary = plan.primary
            if run.job.options.extract:
                primary = await unpack(run, plan, unpacked)
            run.finish(primary)

    async def _plan(self, run: JobRun, net: Net) -> Plan:
        options = run.job.options
        if not options.offline and env_flag("HF_HUB_OFFLINE"):
            options = dataclasses.replace(options, offline=True)
        ref = run.submission
        if ref.parsed.kind == "url":
            removed = removed_after_unpacking(options)
            return await asyncio.to_thread(plan_url, ref.source, options, removed)
        return await plan_hf(ref.parsed, options, SourceContext(net.client, net.settings))

    async def _fetch_all(
        self, run: JobRun, todo: list[tuple[PlannedFile, FileRun]], net: Net
    ) -> None:
        """Fetch the files, :data:`FILES_PER_JOB` at a time, publishing progress meanwhile."""
        run.set_status(Status.DOWNLOADING)
        limit = asyncio.Semaphore(FILES_PER_JOB)

        async def one(planned: PlannedFile, state: FileRun) -> None:
            async with limit:
                await fetch_file(run, planned, state, net)

        try:
            async with self._ticking(run), asyncio.TaskGroup() as group:
                for item in todo:
                    group.create_task(one(*item))
        except BaseExceptionGroup as eg:
            raise pick_error(eg, asyncio.CancelledError, NbmodelsError) from None

    @contextlib.asynccontextmanager
    async def _ticking(self, run: JobRun) -> AsyncIterator[None]:
        """Publish ``run``'s state every progress interval meanwhile (speed, ETA, the countdown
        of an awaited retry)."""
        ticker = asyncio.get_running_loop().create_task(self._tick(run))
        try:
            yield
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker

    async def _tick(self, run: JobRun) -> None:
        interval = self.settings.progress_interval
        every = max(1, round(2.0 / interval))
        n = 0
        while True:
            await asyncio.sleep(interval)
            n += 1
            run.publish(record=n % every == 0)


def _report_stop_error(run: JobRun, attempt: asyncio.Task[None]) -> None:
    """An attempt that was being stopped may still end with an error of its own: a download
    error at the same moment is overtaken by the stop; anything else is a bug worth a log
    record (and the task's outcome is retrieved either way)."""
    exc = None if attempt.cancelled() else attempt.exception()
    if exc is not None and not isinstance(exc, NbmodelsError):
        log.error("nbmodels: unexpected error while stopping job %s", run.job.id, exc_info=exc)


def _exit_note(jobs: list[Job]) -> str:
    """The line printed when the process exits while downloads run."""
    first = jobs[0]
    p = first.progress
    if len(jobs) > 1:
        what = f"{len(jobs)} running downloads ({first.ref}, ...) were stopped"
    elif p.downloaded_bytes and p.total_bytes:
        got = f"{format_bytes(p.downloaded_bytes)} of {format_bytes(p.total_bytes)}"
        what = f"{first.ref} was stopped at {got}"
    elif p.downloaded_bytes:
        what = f"{first.ref} was stopped at {format_bytes(p.downloaded_bytes)}"
    else:
        what = f"{first.ref} was stopped before any data arrived"
    return (
        f"nbmodels: Python is exiting: {what}; partial data is kept. "
        "Download the same reference again to resume."
    )


def _created_at(job: Job) -> float:
    return job.snapshot().created_at or 0.0


# -- the process-wide engine ----------------------------------------------------------------------

#: Engines whose loop runs, closed at interpreter exit.
_live_engines: weakref.WeakSet[Engine] = weakref.WeakSet()
#: Set once the exit hook ran: thread pools are about to stop, no engine may start.
_exiting = threading.Event()


def _close_engines_at_exit() -> None:
    _exiting.set()
    for engine in list(_live_engines):
        engine.close_at_exit()


def _register_exit_hook() -> None:
    """Close the engines at the start of interpreter exit, while thread pools still work.

    ``threading._register_atexit`` is the hook ``concurrent.futures`` itself uses; hooks run in
    reverse order of registration, and ``concurrent.futures.thread`` was imported (and so
    registered) before this module. Plain ``atexit`` is the fallback for a Python without that
    hook (none of the supported ones)."""
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(_close_engines_at_exit)
            return
        except RuntimeError:  # the interpreter is already exiting
            pass
    atexit.register(_close_engines_at_exit)


_register_exit_hook()

_default: Engine | None = None
_default_lock = threading.Lock()


def get_engine() -> Engine:
    global _default
    with _default_lock:
        if _default is None or _default.closed:
            _default = Engine()
        return _default


def shutdown() -> None:
    """Close the process-wide engine now, if there is one: its running jobs stop as
    ``interrupted`` and keep their partial data. For a front end that ends the process on
    purpose (the CLI's Ctrl-C) and has said so itself, so the exit hook has nothing to add."""
    with _default_lock:
        engine = _default
    if engine is not None:
        engine.close()


def set_engine(engine: Engine | None) -> Engine | None:
    """Replace the process-wide engine (tests; custom settings). Returns the previous one."""
    global _default
    with _default_lock:
        previous, _default = _default, engine
        return previous
