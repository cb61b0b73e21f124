"""Fetching one file of a job, under a cross-process lock, and discarding a canceled job's
partial data.

Two processes that want the same file take turns: the lock is taken without blocking the loop,
and whoever comes second asks the plan (``recheck``) whether the first one finished it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import filelock

from .._paths import hidden_sibling
from .._progress import Status
from ..sources import PlannedFile
from ..transfer import FileSpec, FileTransfer, PartialState, TransferResult
from ._network import Net
from ._run import FileRun, JobRun, as_nbmodels_error

__all__ = ["discard", "fetch_file"]


async def fetch_file(run: JobRun, planned: PlannedFile, state: FileRun, net: Net) -> None:
    """Fetch ``planned`` (a file not on disk yet) into place, reporting to ``state``."""
    spec = planned.spec
    assert spec is not None
    state.status = Status.QUEUED
    state.target = spec.target
    async with _file_lock(spec.lock_path or _lock_path(spec.target)):
        state.touched = True
        if planned.recheck is not None and await asyncio.to_thread(planned.recheck):
            run.file_found(state)
            return
        result = await _transfer(run, spec, state, net)
        if planned.after is not None:
            await asyncio.to_thread(planned.after, result)
        run.file_done(state, result.size)


async def _transfer(run: JobRun, spec: FileSpec, state: FileRun, net: Net) -> TransferResult:
    on_progress, on_status, on_retry = run.reporters(state)
    transfer = FileTransfer(
        spec,
        net.client,
        net.settings,
        connections=run.job.options.connections,
        on_progress=on_progress,
        on_status=on_status,
        on_retry=on_retry,
        fast_path=net.fast_path,
    )
    state.status = Status.DOWNLOADING
    state.meter.reset(0)
    try:
        return await transfer.run()
    except asyncio.CancelledError:
        state.status = Status.PAUSED
        raise
    except BaseException as exc:
        state.status = Status.FAILED
        state.error = str(as_nbmodels_error(exc)) if isinstance(exc, Exception) else None
        raise
    finally:
        run.transferred += transfer.transferred


async def discard(run: JobRun) -> None:
    """Remove the partial data of the files this job worked on (cancel)."""
    for state in run.files:
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
