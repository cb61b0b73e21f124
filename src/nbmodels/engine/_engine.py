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
from typing import Any, TypeVar

import filelock
import httpx2

from .._aio import pick_error
from .._config import Settings, env_flag, nbmodels_home
from .._fserrors import fs_error
from .._options import Options, OptionValueError
from .._paths import hidden_sibling
from .._progress import INTERRUPTED, format_bytes
from .._redact import redact_text, redact_url
from ..archives._job import unpack_job, unpacked_already
from ..errors import CanceledError, NbmodelsError, RefError
from ..refs import parse_ref
from ..sources import Plan, PlannedFile, SourceContext, plan_hf, plan_url
from ..transfer import FileTransfer, PartialState, make_client
from ._job import Job, _FileState
from ._registry import Registry

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
        self._active: dict[str, Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def home(self) -> Path:
        return self._home if self._home is not None else nbmodels_home()

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
            running = [j for j in self._active.values() if not j.done and j.status != "paused"]
        self.close()
        stopped = [j for j in running if j.status == INTERRUPTED]
        if stopped:
            log.warning("%s", _exit_note(stopped))

    async def _shutdown(self) -> None:
        for job in list(self._active.values()):
            job._stop = "shutdown"
            if job._attempt is not None:
                job._attempt.cancel()
            if job._resume_event is not None:
                job._resume_event.set()
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
        ref = _clean_ref(ref)
        parsed = parse_ref(ref)  # RefError now, in the caller's thread, for bad syntax
        if options.remove_archive and parsed.kind != "url" and options.dir is None:
            raise OptionValueError(
                "remove_archive",
                "cannot delete a file from the Hugging Face cache (other snapshots may share "
                "its blob, and huggingface_hub would fetch it again): download into a folder "
                "of your own with dir, or keep the archive",
            )
        key = _job_key(ref if parsed.kind == "url" else str(parsed), options)
        loop = self._ensure_started()
        with self._lock:
            existing = self._active.get(key)
            if existing is not None and not existing.done:
                if existing.status == "paused":
                    existing.resume()
                return existing
            shown = redact_url(ref) if "://" in ref else ref
            job = Job(self, shown, options, job_id=uuid.uuid4().hex[:12], key=key)
            job._source = ref  # may carry a signed query string: never shown or stored
            self._active[key] = job
            self._jobs.append(job)
        self.record(job, created=True)
        asyncio.run_coroutine_threadsafe(self._spawn(job), loop).result()
        return job

    async def _spawn(self, job: Job) -> None:
        job._resume_event = asyncio.Event()
        task = asyncio.get_running_loop().create_task(self._run_job(job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(reversed(self._jobs))

    def history(self) -> list[Job]:
        live = {job.id: job for job in self.jobs()}
        out: list[Job] = []
        for rec in self.registry.rows():
            job = live.pop(rec.id, None)
            if job is None:
                opts = Options.from_record(_safe_options(rec.options))
                job = Job(None, rec.ref, opts, job_id=rec.id, record=rec)
            out.append(job)
        if live:  # not in the registry (it could not be written): this process still knows them
            out = sorted([*out, *live.values()], key=_created_at, reverse=True)
        return out

    def record(self, job: Job, *, created: bool = False) -> None:
        """Write the job's current state to the registry (never a secret)."""
        snap = job.snapshot()
        fields: dict[str, Any] = {
            "id": job.id,
            "ref": job.ref,
            "status": snap.status,
            "total_bytes": snap.progress.total_bytes,
            "downloaded_bytes": snap.progress.downloaded_bytes,
            "path": snap.path,
            "paths": [str(p) for p in job._paths],
            "files": [
                {
                    "name": f.name,
                    "path": f.path,
                    "status": f.status,
                    "downloaded_bytes": f.progress.downloaded_bytes,
                    "total_bytes": f.progress.total_bytes,
                    "error": f.error,
                }
                for f in snap.files
            ],
            "error": snap.error,
            "error_type": snap.error_type,
            "error_hint": snap.error_hint,
            "created_at": snap.created_at,
            "started_at": snap.started_at,
            "completed_at": snap.completed_at,
        }
        if created:
            fields["options"] = job.options.record()
        try:
            self.registry.upsert(**fields)
        except Exception:  # the registry is a record, never a reason to fail a download
            log.warning("nbmodels: could not update the job registry", exc_info=True)

    # -- running a job (loop thread) ------------------------------------------------------------

    async def _run_job(self, job: Job) -> None:
        assert job._resume_event is not None
        try:
            while True:
                attempt = asyncio.get_running_loop().create_task(self._attempt(job))
                job._attempt = attempt
                await asyncio.wait({attempt})
                job._attempt = None
                if attempt.cancelled() or (job._stop is not None and not job.done):
                    _report_stop_error(job, attempt)
                    stop = job._take_stop()
                    if stop == "pause":
                        job._set_status("paused")
                        await job._resume_event.wait()  # set at once if resume() came early
                        stop = job._take_stop()
                        if stop is None:
                            job._set_status("queued")
                            continue
                    if stop == "cancel":
                        await self._discard(job)
                        job._error = CanceledError(
                            f"Download of {job.ref} was canceled; its partial data was removed."
                        )
                        job._set_status("canceled")
                        job._future.set_exception(job._error)
                        return
                    # shutdown (or an unexplained cancel): keep the partial data for later.
                    job._error = NbmodelsError(
                        "The Python process stopped while this job ran; its partial data was kept.",
                        hint="Submit the same reference again to resume.",
                    )
                    job._set_status(INTERRUPTED)
                    job._future.set_exception(job._error)
                    return
                exc = attempt.exception()
                if exc is None:
                    return
                job._error = _as_nbmodels_error(exc)
                if not isinstance(exc, NbmodelsError | OSError):
                    log.error("nbmodels: unexpected error in job %s", job.id, exc_info=exc)
                elif isinstance(exc, OSError):  # its message says it all; the trace is for us
                    log.debug("nbmodels: job %s: %s", job.id, job._error, exc_info=exc)
                job._set_status("failed")
                job._future.set_exception(job._error)
                return
        finally:
            with self._lock:
                if self._active.get(job._key) is job:
                    del self._active[job._key]

    async def _attempt(self, job: Job) -> None:
        assert self._slots is not None
        job._set_status("queued", record=False)
        async with self._slots:
            job._set_status("resolving")
            plan = await self._plan(job)
            unpacked = await unpacked_already(plan, job.options)
            job._path = plan.primary
            job._paths = [f.path for f in plan.files]
            job._files = [
                _FileState(
                    f.name,
                    f.path,
                    f.size,
                    "already_downloaded" if f.present or f.path in unpacked else "queued",
                    self.settings.stall_after,
                )
                for f in plan.files
            ]
            job._downloaded = sum(f.downloaded for f in job._files)
            todo = [
                (f, state)
                for f, state in zip(plan.files, job._files, strict=True)
                if not f.present and f.path not in unpacked
            ]
            if todo:
                job._set_status("downloading")
                ticker = asyncio.get_running_loop().create_task(self._tick(job))
                try:
                    limit = asyncio.Semaphore(FILES_PER_JOB)

                    async def one(item: tuple[PlannedFile, _FileState]) -> None:
                        async with limit:
                            await self._fetch(job, *item)

                    async with asyncio.TaskGroup() as group:
                        for item in todo:
                            group.create_task(one(item))
                except BaseExceptionGroup as eg:
                    raise pick_error(eg, asyncio.CancelledError, NbmodelsError) from None
                finally:
                    ticker.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await ticker
            if plan.finish is not None:
                await asyncio.to_thread(plan.finish)
            primary = plan.primary
            if job.options.extract:
                primary = await unpack_job(job, plan, unpacked)
            final = (
                "completed"
                if job._transferred or any(f.status == "completed" for f in job._files)
                else "already_downloaded"
            )
            job._set_status(final)
            job._future.set_result(primary)

    async def _plan(self, job: Job) -> Plan:
        options = job.options
        if not options.offline and env_flag("HF_HUB_OFFLINE"):
            options = dataclasses.replace(options, offline=True)
        parsed = parse_ref(job._source)
        if parsed.kind == "url":
            return await asyncio.to_thread(plan_url, job._source, options)
        assert self._client is not None
        return await plan_hf(parsed, options, SourceContext(self._client, self.settings))

    async def _tick(self, job: Job) -> None:
        interval = self.settings.progress_interval
        every = max(1, round(2.0 / interval))
        n = 0
        while True:
            await asyncio.sleep(interval)
            n += 1
            job._publish(record=n % every == 0)

    async def _fetch(self, job: Job, planned: PlannedFile, state: _FileState) -> None:
        spec = planned.spec
        assert spec is not None and self._client is not None
        lock_path = spec.lock_path or _lock_path(spec.target)
        state.status = "queued"
        state.target = spec.target
        async with _file_lock(lock_path):
            state.touched = True
            if planned.recheck is not None and await asyncio.to_thread(planned.recheck):
                state.status = "already_downloaded"
                job._downloaded += (state.total or 0) - state.downloaded
                state.downloaded = state.total or 0
                return
            base = job._transferred

            first = True

            def on_progress(downloaded: int, total: int | None) -> None:
                # Called per chunk: constant work. A resume's starting bytes and a restart's
                # rollback re-base the meters instead of counting as speed.
                nonlocal first
                delta = downloaded - state.downloaded
                if delta > 0:
                    state.retry = None  # bytes arrive again
                state.downloaded = downloaded
                state.total = total
                job._downloaded += delta
                if first or delta < 0:
                    first = False
                    state.meter.reset(downloaded)
                    job._meter.reset(job._downloaded)
                else:
                    state.meter.add(downloaded)
                    job._meter.add(job._downloaded)

            def on_status(status: str) -> None:
                state.status = status
                job._publish()

            def on_retry(reason: str, attempt: int, delay: float) -> None:
                state.retrying(reason, attempt, delay)
                job._publish()

            transfer = FileTransfer(
                spec,
                self._client,
                self.settings,
                connections=job.options.connections,
                on_progress=on_progress,
                on_status=on_status,
                on_retry=on_retry,
            )
            state.status = "downloading"
            state.meter.reset(0)
            try:
                result = await transfer.run()
            except asyncio.CancelledError:
                state.status = "paused"
                raise
            except BaseException as exc:
                state.status = "failed"
                state.error = str(_as_nbmodels_error(exc)) if isinstance(exc, Exception) else None
                raise
            finally:
                job._transferred = base + transfer.transferred
            if planned.after is not None:
                await asyncio.to_thread(planned.after, result)
            job._downloaded += result.size - state.downloaded
            state.downloaded = result.size
            state.total = result.size
            state.status = "completed"
            job._publish()

    async def _discard(self, job: Job) -> None:
        """Remove the partial data of the files this job worked on (cancel)."""
        for state in job._files:
            if not state.touched or state.target is None:
                continue
            lock = filelock.FileLock(_lock_path(state.target), thread_local=False)
            try:
                lock.acquire(timeout=0)
            except filelock.Timeout:
                continue  # another process is working on it: its data is not ours to delete
            try:
                PartialState.discard(state.target)
            finally:
                lock.release()


def _report_stop_error(job: Job, attempt: asyncio.Task[None]) -> None:
    """An attempt that was being stopped may still end with an error of its own: a download
    error at the same moment is overtaken by the stop; anything else is a bug worth a log
    record (and the task's outcome is retrieved either way)."""
    exc = None if attempt.cancelled() else attempt.exception()
    if exc is not None and not isinstance(exc, NbmodelsError):
        log.error("nbmodels: unexpected error while stopping job %s", job.id, exc_info=exc)


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


def _lock_path(target: Path) -> Path:
    """Where the cross-process lock of a non-cache target lives (Hub cache blobs use
    huggingface_hub's own lock paths, passed in ``FileSpec.lock_path``)."""
    return target.parent / ".nbmodels" / hidden_sibling(target.name, ".lock")[1:]


@contextlib.asynccontextmanager
async def _file_lock(path: Path) -> AsyncIterator[None]:
    """A cross-process file lock acquired without blocking the loop."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(path, thread_local=False)
    while True:
        try:
            lock.acquire(timeout=0)
            break
        except filelock.Timeout:
            await asyncio.sleep(0.2)
    try:
        yield
    finally:
        lock.release()


def _as_nbmodels_error(exc: BaseException) -> NbmodelsError:
    if isinstance(exc, NbmodelsError):
        return exc
    if isinstance(exc, OSError):
        return fs_error(exc)
    return NbmodelsError(f"Unexpected error: {type(exc).__name__}: {redact_text(str(exc))}")


def _created_at(job: Job) -> float:
    return job.snapshot().created_at or 0.0


def _clean_ref(ref: str) -> str:
    if not isinstance(ref, str):
        raise RefError(f"A reference must be a string, not {type(ref).__name__}.")
    ref = ref.strip()
    if not ref:
        raise RefError("The reference is empty.", hint="Pass a URL or a Hugging Face reference.")
    return ref


def _job_key(ref: str, options: Options) -> str:
    return "\x00".join(
        str(x)
        for x in (
            ref.split("#", 1)[0] if "://" in ref else ref,
            options.dir.resolve() if options.dir is not None else "",
            options.revision or "",
            ",".join(options.include),
            ",".join(options.exclude),
            options.sha256 or "",
            options.force,
            options.extract,
            options.remove_archive,
        )
    )


def _safe_options(data: dict[str, Any]) -> dict[str, Any]:
    try:
        Options.from_record(data)
    except (TypeError, ValueError):
        return {}
    return data


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
        if _default is None or _default._closed:
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
