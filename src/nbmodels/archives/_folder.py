"""The folder: where it goes, the marker that says which archive made it, and its atomic
publish (a hidden folder renamed into place; with ``force``, swapped in)."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import json
import logging
import os
import re
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._paths import hidden_sibling
from ..errors import ArchiveError, CanceledError, InsufficientSpaceError, Option
from ._detect import archive_format, not_an_archive
from ._names import MARKER, ExtractLimits, Format, Totals, shown
from ._read import unpack
from ._write import fsync_dir

__all__ = [
    "ARCHIVE_SUFFIXES",
    "default_dest",
    "extract_archive",
    "extracted_from",
    "is_archive_name",
    "read_marker",
]

#: Name endings taken off to name the folder (longest first).
ARCHIVE_SUFFIXES = (
    ".tar.gz",
    ".tar.bz2",
    ".tar.xz",
    ".tgz",
    ".tbz2",
    ".tbz",
    ".txz",
    ".tar",
    ".zip",
)
log = logging.getLogger("nbmodels")

_TEMP = ".extracting"
_OLD = ".replaced"
#: What follows ``.<name>.`` in the hidden folders of an unpacking: pid, random, role.
_LEFTOVER = re.compile(r"(\d+)\.[0-9a-f]{8}\.(?:extracting|replaced)")
_MARKER_MAX = 64 * 1024
#: Seconds between two tries of the lock another process holds.
_LOCK_POLL = 0.1


def is_archive_name(name: str) -> bool:
    """Does ``name`` end like an archive nbmodels unpacks? (For callers that must decide before
    downloading, e.g. an API whose ``extract_after_download`` defaults to true; the content
    still decides in the end.)"""
    lower = name.lower()
    return any(lower.endswith(s) and len(lower) > len(s) for s in ARCHIVE_SUFFIXES)


def default_dest(archive: Path) -> Path:
    """The folder an archive unpacks into: beside it, its name without archive suffixes."""
    name = archive.name
    lower = name.lower()
    for suffix in ARCHIVE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return archive.with_name(name[: -len(suffix)])
    stem = Path(name).stem
    return archive.with_name(stem if stem and stem != name else f"{name}.d")


def extract_dest(path: Path, cache: Path) -> Path:
    """The folder the archive at ``path`` (as a download plan names it) unpacks into:
    :func:`default_dest`, except for a file of the Hugging Face cache at ``cache``, whose folder
    goes to ``<repo folder>/extracted/<commit>/<path in the snapshot, less its suffix>``: never
    inside a snapshot, which huggingface_hub and ``nbmodels ls`` read as the repo's own files."""
    try:
        rel = path.relative_to(cache)
    except ValueError:
        return default_dest(path)
    parts = rel.parts
    if len(parts) >= 4 and parts[1] == "snapshots":
        return default_dest(cache.joinpath(parts[0], "extracted", *parts[2:]))
    return default_dest(path)


# -- the marker ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Origin:
    """Which archive a folder comes from."""

    name: str
    size: int
    mtime_ns: int
    sha256: str | None
    origin: str | None

    def matches(self, marker: dict[str, Any] | None) -> bool:
        if marker is None or marker.get("size") != self.size:
            return False
        if self.origin and marker.get("origin") and marker["origin"] != self.origin:
            return False
        if self.sha256 and marker.get("sha256"):
            return bool(marker["sha256"] == self.sha256)
        return marker.get("mtime_ns") == self.mtime_ns and marker.get("archive") == self.name


def unpacked_bytes(folder: Path) -> int | None:
    """The bytes nbmodels unpacked into ``folder`` (as its marker records them); None when it
    is not a folder nbmodels unpacked."""
    marker = read_marker(folder)
    if marker is None:
        return None
    value = marker.get("bytes")
    return value if isinstance(value, int) and value >= 0 else 0


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The record inside a folder nbmodels unpacked (None: not one of ours, or unreadable).
    Never follows a link: not at the folder, not at the record."""
    try:
        if not folder.is_dir() or folder.is_symlink():
            return None
        fd = os.open(folder / MARKER, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as f:
            data = json.loads(f.read(_MARKER_MAX))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("version") == 1 else None


def extracted_from(
    folder: Path, *, origin: str, sha256: str | None = None, size: int | None = None
) -> bool:
    """Was ``folder`` unpacked from the archive downloaded from ``origin`` (a download's key,
    never a secret) — with that digest and size when they are given? For a download whose
    archive was removed after unpacking: nothing to fetch again."""
    marker = read_marker(folder)
    if marker is None or marker.get("origin") != origin:
        return False
    if sha256 is not None and marker.get("sha256") != sha256:
        return False
    return size is None or marker.get("size") == size


def _write_marker(root: Path, source: _Origin, fmt: Format, totals: Totals) -> None:
    data = {
        "version": 1,
        "archive": source.name,
        "size": source.size,
        "mtime_ns": source.mtime_ns,
        "sha256": source.sha256,
        "origin": source.origin,
        "format": fmt,
        "members": totals.members,
        "bytes": totals.bytes,
    }
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    with os.fdopen(os.open(root / MARKER, flags, 0o644), "wb") as f:
        f.write(json.dumps(data).encode())
        f.flush()
        os.fsync(f.fileno())


# -- the public function ------------------------------------------------------------------------


def extract_archive(
    archive: Path,
    dest: Path | None = None,
    *,
    limits: ExtractLimits | None = None,
    force: bool = False,
    sha256: str | None = None,
    origin: str | None = None,
    stop: threading.Event | None = None,
) -> Path:
    """Unpack ``archive`` into ``dest`` (default: :func:`default_dest`) and return ``dest``.

    ``sha256`` (the archive's digest, when the caller knows it) and ``origin`` (where it was
    downloaded from: a download key, never a secret) are recorded in the folder and make the
    "already unpacked" check exact. ``stop`` set from another thread ends the work early with
    :class:`~nbmodels.errors.CanceledError`, leaving nothing behind. Raises
    :class:`~nbmodels.errors.ArchiveError` (unsafe, damaged, too large, not an archive, folder
    taken) or :class:`~nbmodels.errors.InsufficientSpaceError`.
    """
    archive = Path(archive)
    limits = limits or ExtractLimits()
    dest = Path(dest) if dest is not None else default_dest(archive)
    try:
        st = archive.stat()
    except FileNotFoundError:
        raise ArchiveError(
            f"There is no archive at {archive}.", hint="Download it first."
        ) from None
    source = _Origin(archive.name, st.st_size, st.st_mtime_ns, sha256, origin)
    if not force and source.matches(read_marker(dest)):
        return dest
    with _exclusive(archive, stop):  # another process unpacking it: wait, then maybe no work
        if not force and source.matches(read_marker(dest)):
            return dest
        if os.path.lexists(dest) and not force:
            raise _taken(dest)
        fmt = archive_format(archive)
        if fmt is None:
            raise not_an_archive(archive)
        _unpack_into(archive, fmt, dest, source, limits=limits, force=force, stop=stop)
    return dest


def _unpack_into(
    archive: Path,
    fmt: Format,
    dest: Path,
    source: _Origin,
    *,
    limits: ExtractLimits,
    force: bool,
    stop: threading.Event | None,
) -> None:
    """Unpack into a hidden folder beside ``dest``, then publish it; on any failure the hidden
    folder goes."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    _sweep(dest)
    tmp = dest.with_name(hidden_sibling(dest.name, f".{os.getpid()}.{uuid.uuid4().hex[:8]}{_TEMP}"))
    tmp.mkdir(mode=0o700)
    try:
        with _space_errors(archive, dest):
            free = shutil.disk_usage(dest.parent).free
            totals = unpack(archive, fmt, tmp, limits=limits, free=free, stop=stop)
            _write_marker(tmp, source, fmt, totals)
            tmp.chmod(0o755)
            fsync_dir(tmp)
            _publish(tmp, dest, source, force=force)
    finally:
        _remove(tmp, quiet=True)


@contextlib.contextmanager
def _exclusive(archive: Path, stop: threading.Event | None) -> Iterator[None]:
    """Hold an advisory lock on the archive file while unpacking it, so that two processes
    (a kernel and a server) do not both do the work; a stop request ends the wait. Only an
    optimisation: where locks do nothing, both unpack and the second finds the first's folder
    (see :func:`_publish`)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX
        yield
        return
    fd = os.open(archive, os.O_RDONLY)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if stop is not None and stop.wait(_LOCK_POLL):
                    raise CanceledError(
                        f"Unpacking {shown(archive.name)} was stopped while it waited for "
                        "another unpacking of it; nothing was left behind."
                    ) from None
                if stop is None:
                    time.sleep(_LOCK_POLL)
        yield
    finally:
        os.close(fd)  # releases the lock


def _taken(dest: Path) -> ArchiveError:
    marker = read_marker(dest)
    if marker is not None:
        why = f"was unpacked from another archive ({shown(str(marker.get('archive')))})"
    elif dest.is_dir() and not dest.is_symlink():
        why = "is a folder nbmodels did not unpack"
    else:
        why = "is taken by a file or link"
    return ArchiveError(
        f"Cannot unpack into {dest}: it already exists and {why}.",
        hint=("Move it away, or pass ", Option("force", switch=True), " to replace it."),
    )


@contextlib.contextmanager
def _space_errors(archive: Path, dest: Path) -> Iterator[None]:
    """A full disk mid-way is an InsufficientSpaceError (the hidden folder goes with it)."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT) or isinstance(exc, InsufficientSpaceError):
            raise
        free = shutil.disk_usage(dest.parent).free
        raise InsufficientSpaceError(
            f"The disk filled up while unpacking {shown(archive.name)} into {dest.parent}; "
            "nothing was unpacked. Free some space and try again.",
            needed=0,
            available=free,
            path=str(dest.parent),
        ) from exc


# -- publishing the folder ----------------------------------------------------------------------


def _publish(tmp: Path, dest: Path, source: _Origin, *, force: bool) -> None:
    """Rename ``tmp`` to ``dest``: never over anything unless ``force``; with ``force``, swap
    atomically and delete what was there. A concurrent identical extraction that got there
    first wins (ours is dropped)."""
    try:
        placed = _rename_noreplace(tmp, dest)
    except FileExistsError:
        placed = False
    if placed:
        fsync_dir(dest.parent)
        return
    if not force:
        if source.matches(read_marker(dest)):
            return  # another process unpacked the same archive meanwhile
        raise _taken(dest)
    if _renameat2(tmp, dest, _RENAME_EXCHANGE):  # tmp now holds the old folder: removed later
        fsync_dir(dest.parent)
        return
    old = dest.with_name(hidden_sibling(dest.name, f".{os.getpid()}.{uuid.uuid4().hex[:8]}{_OLD}"))
    dest.rename(old)
    try:
        tmp.rename(dest)
    except BaseException:
        old.rename(dest)
        raise
    fsync_dir(dest.parent)
    _remove(old)


def _rename_noreplace(tmp: Path, dest: Path) -> bool:
    """Rename unless ``dest`` exists (FileExistsError then)."""
    if _renameat2(tmp, dest, _RENAME_NOREPLACE):
        return True
    if os.path.lexists(dest):
        raise FileExistsError(errno.EEXIST, "exists", str(dest))
    try:
        tmp.rename(dest)  # no renameat2 here: a narrow window in which an empty folder goes
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise FileExistsError(errno.EEXIST, "exists", str(dest)) from exc
        raise
    return True


_RENAME_NOREPLACE = 1
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


@functools.cache
def _libc_renameat2() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """``renameat2(2)`` with ``flags``: True when done, False when this system or file system
    cannot (the caller falls back); other failures raise OSError (EEXIST: FileExistsError)."""
    fn = _libc_renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(dst))


def _remove(path: Path, *, quiet: bool = False) -> None:
    """Delete a folder (never following a link in it) or a file; nothing if absent. ``quiet``:
    a failure is logged, not raised (clean-up must not hide the error being reported)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        if not quiet:
            raise
        log.warning("nbmodels: could not remove %s", path, exc_info=True)


def _sweep(dest: Path) -> None:
    """Remove hidden folders a killed process left while unpacking into ``dest``."""
    prefix = hidden_sibling(dest.name, ".")
    try:
        entries = list(dest.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        name = entry.name
        found = _LEFTOVER.fullmatch(name[len(prefix) :]) if name.startswith(prefix) else None
        if found is None:  # not ours, or another folder's (".m.5.<pid>..." is not "m"'s)
            continue
        pid = int(found[1])
        if pid != os.getpid() and not _alive(pid):
            with contextlib.suppress(OSError):
                _remove(entry)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process
    return True
