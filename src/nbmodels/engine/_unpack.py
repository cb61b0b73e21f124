"""The engine's extraction step (``extract=True``): once a job's files are published and
verified, the archives among them are unpacked on a worker thread (never on the loop), the job
shows ``extracting`` meanwhile, and its ``path`` becomes the folder.

Where a folder goes (:func:`nbmodels.archives.extract_dest`): beside its archive, except for a
file of the Hugging Face cache, whose folder goes to ``<repo folder>/extracted/<commit>/...``:
never inside a snapshot, which huggingface_hub and ``nbmodels ls`` read as the repo's own files.

A pause, a cancel or the engine's shutdown sets the extraction's stop event; the worker then
removes its hidden folder and the job's task waits for that before it goes on.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

from .._aio import run_blocking
from .._config import hf_cache_dir
from .._options import Options
from .._progress import Status
from ..archives import (
    archive_format,
    extract_archive,
    extracted_from,
    not_an_archive,
)
from ..archives import extract_dest as archive_dest
from ..errors import ArchiveError
from ..sources import Plan, PlannedFile
from ._run import FileRun, JobRun

__all__ = ["extract_dest", "removed_after_unpacking", "unpack", "unpacked_already"]


def extract_dest(path: Path) -> Path:
    """The folder the archive at ``path`` (as a plan names it) unpacks into."""
    return archive_dest(path, hf_cache_dir())


def removed_after_unpacking(options: Options) -> Callable[[Path, str], bool] | None:
    """For :func:`nbmodels.sources.plan_url`: was the archive at a target (from the download
    with that key) unpacked and then removed by an earlier download like this one? None when
    this download keeps its archive (or forces a fresh one)."""
    if not (options.extract and options.remove_archive) or options.force:
        return None

    def removed(target: Path, key: str) -> bool:
        return extracted_from(extract_dest(target), origin=key, sha256=options.sha256)

    return removed


async def unpacked_already(plan: Plan, options: Options) -> set[Path]:
    """Files whose archive was removed after an earlier extraction (``remove_archive``) and
    whose folder still says it came from the same download: nothing to fetch for them."""
    if not (options.extract and options.remove_archive) or options.force:
        return set()
    out: set[Path] = set()
    for f in plan.files:
        spec = f.spec
        if spec is None:
            continue
        done = await asyncio.to_thread(
            extracted_from,
            extract_dest(f.path),
            origin=spec.key,
            sha256=spec.sha256,
            size=spec.size,
        )
        if done:
            out.add(f.path)
    return out


async def unpack(run: JobRun, plan: Plan, skipped: set[Path]) -> Path:
    """Unpack the archives among the job's files; return the job's new primary path."""
    run.set_status(Status.EXTRACTING)
    options = run.job.options
    primary = plan.primary
    paths = list(run.paths)
    found = False
    for f, state in zip(plan.files, run.files, strict=True):
        folder = extract_dest(f.path)
        if f.path not in skipped:
            if await asyncio.to_thread(archive_format, f.path) is None:
                continue
            await _unpack_one(run, f, state, folder)
        found = True
        if options.remove_archive:
            await asyncio.to_thread(f.path.unlink, missing_ok=True)
            paths = [folder if p == f.path else p for p in paths]
            state.path = folder
        if f.path == plan.primary:
            primary = folder
    if not found:
        raise await _nothing_to_unpack(plan)
    run.unpacked(paths, primary)
    return primary


async def _unpack_one(run: JobRun, f: PlannedFile, state: FileRun, folder: Path) -> None:
    stop = threading.Event()
    before = state.status
    state.status = Status.EXTRACTING
    run.publish()
    spec = f.spec
    work = partial(
        extract_archive,
        f.path,
        folder,
        force=run.job.options.force,
        sha256=None if spec is None else spec.sha256,
        origin=None if spec is None else spec.key,
        stop=stop,
    )
    try:
        await run_blocking(work, stop.set, "nbmodels-extract")
    finally:
        state.status = before
        run.publish()


async def _nothing_to_unpack(plan: Plan) -> ArchiveError:
    if len(plan.files) == 1:
        return await asyncio.to_thread(not_an_archive, plan.files[0].path)
    return ArchiveError(
        f"None of the {len(plan.files)} files of {plan.description or 'this download'} is an "
        "archive nbmodels can unpack (.zip, .tar, .tar.gz, .tar.bz2, .tar.xz).",
        hint="Download it without extract.",
    )
