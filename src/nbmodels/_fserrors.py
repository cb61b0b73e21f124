"""File-system errors as a user should read them: the one translation of an ``OSError`` (a
read-only disk, a path that is a file, a permission, a directory that cannot be created) into an
:class:`~nbmodels.errors.NbmodelsError` whose message says which path and what to do.

Used where such errors end a job (the engine), a command (the CLI) or the job history (the
registry), so the same cause reads the same everywhere, and never as a traceback.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ._config import hf_cache_dir, nbmodels_home
from .errors import NbmodelsError, Option

__all__ = ["describe_os_error", "fs_error"]

_READ_ONLY = (errno.EROFS,)
_DENIED = (errno.EACCES, errno.EPERM)
_NOT_A_DIR = (errno.ENOTDIR, errno.EEXIST)
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (what a failed ``mkdir`` ran into)."""
    for candidate in (path, *path.parents):
        if os.path.lexists(candidate):
            return candidate
    return path


def _blocking_file(path: Path) -> Path | None:
    """The part of ``path`` that exists but is not a directory, if any."""
    here = _existing(path)
    if here.is_dir():
        return None
    return here


def describe_os_error(exc: OSError) -> str:
    """The fact, on one line: ``/data/m is a file, not a directory.``, ``/mnt/ro is
    read-only.``, ``Permission denied: /srv/models.``, ``Cannot create /proc/x (...).``"""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if not exc.filename:
        return f"File system error: {reason}."
    path = Path(os.fsdecode(exc.filename))
    if exc.errno in _NOT_A_DIR:
        blocker = _blocking_file(path)
        if blocker is not None:
            return f"{blocker} is a file, not a directory."
    if exc.errno in _READ_ONLY:
        return f"{_existing(path)} is read-only."
    if exc.errno in _DENIED:
        return f"Permission denied: {_existing(path)}."
    if exc.errno in _NO_SPACE:
        return f"No space left on the disk of {_existing(path)}."
    if exc.errno == errno.ENOENT and not os.path.lexists(path):
        return f"Cannot create {path} ({reason})."
    return f"File system error at {path}: {reason}."


def _under(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):
        return False


def _hint(path: Path | None, exc: OSError) -> tuple[str | Option, ...]:
    """The next step: which setting chose this place, and the option that chooses another."""
    if exc.errno in _NO_SPACE:
        return ("Free up space, or choose a directory on another disk with ", Option("dir"), ".")
    writable = "a directory you can write to"
    if path is not None and _under(path, hf_cache_dir()):
        return (
            f"Set HF_HOME (or HF_HUB_CACHE) to {writable}, or download into one with ",
            Option("dir"),
            ".",
        )
    if path is not None and _under(path, nbmodels_home()):
        return (f"Set NBMODELS_HOME to {writable}, or choose one with ", Option("dir"), ".")
    return (f"Choose {writable} with ", Option("dir"), ".")


def fs_error(exc: OSError, *, downloading: bool = True) -> NbmodelsError:
    """``exc`` as an :class:`NbmodelsError`: :func:`describe_os_error` and the next step (for a
    download: where else to put it; for other work, e.g. removing cached files: what to check)."""
    path = Path(os.fsdecode(exc.filename)) if exc.filename else None
    if not downloading:
        return NbmodelsError(
            describe_os_error(exc), hint="Check the permissions of that place (and its mount)."
        )
    return NbmodelsError(describe_os_error(exc), hint=_hint(path, exc))
