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

__all__ = ["discard", "discard_file", "fetch_file", "file_lock"]


async def fetch_file(run: JobRun, planned: PlannedFile, state: FileRun, net: Net) -> None:
    """Fetch ``planned`` (a file not on disk yet) into place, reporting to ``state``."""
    spec = planned.spec
    assert spec is not None
    state.status = Status.QUEUED
    state.spec = spec
    async with file_lock(spec):
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
        if state.touched and state.spec is not None:
            discard_file(state.spec)


def discard_file(spec: FileSpec) -> bool:
    """Remove the partial data of ``spec``'s file, unless another process holds the file's lock
    (it is working on it: its data is not ours to delete). Whether it was removed."""
    lock = filelock.FileLock(spec.lock_path or _lock_path(spec.target), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return False
    try:
        PartialState.discard(spec.target)
    finally:
        lock.release()
    return True


def _lock_path(target: Path) -> Path:
    """Where the cross-process lock of a non-cache target lives (Hub cache blobs use
    huggingface_hub's own lock paths, passed in ``FileSpec.lock_path``)."""
    return target.parent / ".nbmodels" / hidden_sibling(target.name, ".lock")[1:]


@contextlib.asynccontextmanager
async def file_lock(spec: FileSpec) -> AsyncIterator[None]:
    """The file's cross-process lock, acquired without blocking the loop: huggingface_hub's
    lock path for a Hub cache blob, else one beside the target. Two processes fetching one file
    (engines, cluster nodes, ``huggingface_hub`` itself) take turns, and the second finds the
    file present."""
    path = spec.lock_path or _lock_path(spec.target)
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
