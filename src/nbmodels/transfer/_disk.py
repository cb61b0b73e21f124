"""The system calls of durable writes, where the platform has them: ``fdatasync``,
``sync_file_range`` (Linux), a folder's ``fsync``, and libc functions by name."""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

__all__ = ["datasync", "datasync_and_close", "fsync_dir", "linux_libc", "start_writeback"]


def linux_libc(name: str, *argtypes: type) -> Callable[..., int] | None:
    """A libc function taking ``argtypes`` and returning int (errno kept), Linux only."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes = list(argtypes)
    fn.restype = ctypes.c_int
    return cast(Callable[..., int], fn)


_sync_file_range = linux_libc(
    "sync_file_range", ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint
)
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int) -> None:
    """Start writing ``fd``'s dirty pages to disk (closes ``fd``). On Linux this does not wait
    for the disk; elsewhere it is a plain data sync."""
    try:
        if _sync_file_range is not None:
            _sync_file_range(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)  # failure: nothing to do
        else:
            datasync(fd)
    except OSError:
        pass  # only an early start; the fsync before publishing reports real trouble
    finally:
        os.close(fd)


def datasync(fd: int) -> None:
    """Make ``fd``'s data durable (``fsync`` where there is no ``fdatasync``)."""
    if hasattr(os, "fdatasync"):
        os.fdatasync(fd)
    else:
        os.fsync(fd)


def datasync_and_close(fd: int) -> None:
    try:
        datasync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a folder's entries durable (a rename in it); best effort."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
