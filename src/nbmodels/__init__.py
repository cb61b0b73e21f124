"""nbmodels: get model files into notebooks — fast, resumable, verified.

    import nbmodels
    job = nbmodels.download("https://example.org/model.gguf")   # a Job, at once
    path = nbmodels.resolve("https://example.org/model.gguf")   # blocks; a Path

The public surface is this module (and :mod:`nbmodels.errors`); everything in ``_modules`` is
private.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import errors
from ._options import Options
from ._progress import (
    FileProgress,
    JobSnapshot,
    Progress,
    RetryNotice,
    Subscriber,
    format_progress,
)
from .engine import Job, load_front_end, show
from .errors import (
    AccessError,
    ArchiveError,
    CanceledError,
    InsufficientSpaceError,
    IntegrityError,
    NbmodelsError,
    NetworkError,
    NotFoundError,
    OfflineError,
    RefError,
    RepoNotFoundError,
)
from .remote import all_jobs, current_engine, engine_for

if TYPE_CHECKING:
    from .cards import ModelCard

__version__ = "0.1.0"

__all__ = [
    "AccessError",
    "ArchiveError",
    "CanceledError",
    "FileProgress",
    "InsufficientSpaceError",
    "IntegrityError",
    "Job",
    "JobSnapshot",
    "NbmodelsError",
    "NetworkError",
    "NotFoundError",
    "OfflineError",
    "Progress",
    "RefError",
    "RepoNotFoundError",
    "RetryNotice",
    "Subscriber",
    "__version__",
    "download",
    "errors",
    "format_progress",
    "history",
    "inspect",
    "jobs",
    "panel",
    "resolve",
]


def download(ref: str, **options: Any) -> Job:
    """Start downloading ``ref`` in the background and return its :class:`Job` at once.

    Options (docs/public-api.md): ``dir``, ``revision``, ``include``, ``exclude``, ``sha256``,
    ``force``, ``connections``, ``token``, ``offline``, ``display``; ``extract`` (unpack a
    downloaded ``.zip`` / ``.tar[.gz|.bz2|.xz]`` into a folder beside it, safely and atomically:
    the job's ``path`` is then that folder; :class:`ArchiveError` when it cannot be) with
    ``remove_archive`` (delete the archive once unpacked); and per job: ``timeout`` (connect and
    read-idle seconds), ``retries`` (attempts after the first), ``verify_tls=False`` (skip
    certificate checks: a plain URL with a ``sha256`` only), ``metadata`` (a small JSON object
    kept with the job, :attr:`Job.metadata`). Submitting a reference whose job is still
    running returns that job; a finished file comes back ``already_downloaded``.

    In a kernel of a Jupyter server with the nbmodels extension, the job runs in the server's
    engine, shared by every kernel (``NBMODELS_ENGINE=local`` keeps it in this process).
    """
    opts = Options.create(**options)
    job = engine_for(opts).submit(ref, opts)
    show(job, opts)  # in IPython, the notebook layer shows it (the core never imports IPython)
    return job


def resolve(ref: str, **options: Any) -> Path:
    """Download ``ref`` if needed and return its local path (blocks; shows no widget).

    A fully pinned reference that is already on disk resolves with no network request.
    """
    options["display"] = False
    return download(ref, **options).wait()


def jobs() -> list[Job]:
    """This process's jobs, newest first."""
    return all_jobs()


def history(limit: int | None = None) -> list[Job]:
    """Jobs of this and earlier sessions, newest first (the newest ``limit`` of them, if given).
    Jobs of earlier sessions are read-only; ones whose process died mid-way show as
    ``interrupted`` (submit the reference to resume)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a whole number of jobs, 1 or more; got {limit!r}")
    return current_engine().history(limit)


def inspect(
    ref: str | os.PathLike[str], *, context: int | None = None, **options: Any
) -> ModelCard:
    """What is in a model, without downloading it: a ``ModelCard`` (frozen dataclass).

    Reads a GGUF header (metadata + tensor table, every part of a split file) or a safetensors
    header (every shard) with a few HTTP range requests, or from disk for a local path or a
    pinned reference already downloaded. Options: ``revision``, ``dir``, ``token``,
    ``offline``; ``context`` is the context length for the memory estimate (default: the
    model's, at most 4096). ``card.summary()`` is one line, e.g. ``llama · 1.1B params ·
    Q4_K_M · ctx 2048 · 668.0 MB · fits (needs ~0.9 GB of 23 GB)``; ``card.to_dict()`` is the
    JSON of ``nbmodels inspect --json``. Raises the usual ``NbmodelsError`` subclasses.
    """
    from .cards import inspect as _inspect

    return _inspect(ref, context=context, **options)


def panel() -> Any:
    """A live widget with every job of this and earlier sessions, newest first: a form to submit
    a reference, retry for failed or interrupted jobs, pause / resume / cancel for running ones.
    Its libraries (anywidget, traitlets, IPython) are dependencies of nbmodels."""
    return load_front_end().panel()


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbmodels``."""
    load_front_end().load_extension(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    load_front_end().unload_extension(ipython)
