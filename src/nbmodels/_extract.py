"""Unpacking a downloaded archive (``extract=True``), safely and atomically.

:func:`extract_archive` unpacks a ``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2`` or
``.tar.xz`` (told from its first bytes, not its name) into a folder beside it, named after it
without its archive suffixes (``model.tar.gz`` -> ``model/``).

**Atomic.** Members go into a hidden folder in the same directory (``.<name>.<pid>.<random>
.extracting``); each file is fsynced, then the folders, then the folder is renamed into place.
A failure at any point — an unsafe member, a limit, a full disk, a stop request — removes that
hidden folder: no half folder is ever visible and the archive is never touched. Hidden folders
left by a killed process are removed by the next extraction to the same place.

**Existing folder.** A folder unpacked earlier from the same archive (the marker file
``.nbmodels-extracted.json`` inside it records the archive's name, size, mtime and, when known,
sha256 and origin) is kept as it is: no work, so re-running a finished download costs nothing.
Any other existing folder (or file) is an :class:`~nbmodels.errors.ArchiveError` unless
``force=True``, which swaps the new folder in atomically (``renameat2(RENAME_EXCHANGE)`` where
the system has it; else a rename aside and back on failure) and then deletes the old one.

**Safe by construction** (:mod:`nbmodels._extract_members` enforces each; tarfile's ``data``
filter is consulted as a second opinion only: on Python 3.11.7 it bounds no size or count, does
not apply to zip, and has known escapes through long link chains fixed only in 3.11.13):

- names: no absolute paths, no ``..`` component, no drive letter; a zip's ``\\`` is a
  separator, a tar name with one is refused; no control characters; at most
  ``max_path_bytes`` per name and 255 bytes per component; ``.`` components are dropped.
- links: symbolic links are kept only when their target is relative and resolves inside the
  folder — checked as written, then through the archive's own links (at most 40 hops; a loop
  is refused), then on disk once made. They are made after every other member, so nothing is
  ever written through one. A hard link must name a regular file unpacked before it (made as a
  hard link, or a copy where the file system has none).
- types: device files, fifos, sockets and unknown member types are refused; encrypted zip
  members and zip compression methods other than stored / deflate (whose decompression
  zipfile does not bound) too.
- permissions: files ``0o644``, or ``0o755`` when the owner could execute; folders ``0o755``
  (less what the umask removes). Never setuid, setgid or sticky; owners are never changed.
- duplicates: a folder listed twice is one folder; any other name listed twice (or a member
  under a file or link) is refused rather than guessed at.
- sizes: a bounded member count, total size (``max_total_bytes`` and the free space less a
  margin) and zip compression ratio, checked from the headers before anything is written (zip:
  the central directory; plain tar: every header, by seeking; a compressed tar is checked
  header by header as they arrive, since reading them all first would decompress it twice) and
  again on the bytes actually written, since headers can lie. A single tar header may not ask
  for more than 16 MiB (a forged pax header), an xz stream for more than 512 MiB of memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import json
import logging
import lzma
import os
import shutil
import sys
import tarfile
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._extract_members import MARKER, ExtractLimits, Format, Totals, open_stream, shown, unpack
from ._paths import hidden_sibling
from .errors import ArchiveError, InsufficientSpaceError

__all__ = [
    "MARKER",
    "ExtractLimits",
    "archive_format",
    "default_dest",
    "extract_archive",
    "extracted_from",
    "not_an_archive",
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
_MARKER_MAX = 64 * 1024
_KNOWN_NOT_ARCHIVES = (
    (b"\x1f\x8b", "gzip data that is not a tar archive"),
    (b"BZh", "bzip2 data that is not a tar archive"),
    (b"\xfd7zXZ\x00", "xz data that is not a tar archive"),
    (b"\x28\xb5\x2f\xfd", "a zstd stream"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"GGUF", "a GGUF model file"),
)


def default_dest(archive: Path) -> Path:
    """The folder an archive unpacks into: beside it, its name without archive suffixes."""
    name = archive.name
    lower = name.lower()
    for suffix in ARCHIVE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return archive.with_name(name[: -len(suffix)])
    stem = Path(name).stem
    return archive.with_name(stem if stem and stem != name else f"{name}.d")


# -- format detection ---------------------------------------------------------------------------


def archive_format(path: Path) -> Format | None:
    """The archive format of ``path`` from its content (None: nothing nbmodels unpacks)."""
    with path.open("rb") as f:
        head = f.read(512)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    compressed: dict[bytes, Format] = {
        b"\x1f\x8b": "tar.gz",
        b"BZh": "tar.bz2",
        b"\xfd7zXZ\x00": "tar.xz",
    }
    for magic, fmt in compressed.items():
        if head.startswith(magic):
            return fmt if _is_tar_header(_first_block(path, fmt)) else None
    return "tar" if _is_tar_header(head) else None


def _first_block(path: Path, fmt: Format) -> bytes:
    """The first 512 decompressed bytes (empty when the stream cannot be read)."""
    try:
        with open_stream(path, fmt) as f:
            return f.read(512)
    except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error):
        return b""


def _is_tar_header(block: bytes) -> bool:
    if len(block) < 512:
        return False
    try:
        tarfile.TarInfo.frombuf(block[:512], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def not_an_archive(archive: Path) -> ArchiveError:
    """The error for content that is no archive nbmodels unpacks (says what it is instead)."""
    with archive.open("rb") as f:
        head = f.read(16)
    what = next((text for magic, text in _KNOWN_NOT_ARCHIVES if head.startswith(magic)), None)
    if what is None:
        what = f"content starting with {head[:8].hex(' ')}" if head else "an empty file"
    return ArchiveError(
        f"{shown(archive.name)} is not an archive nbmodels can unpack: it holds {what}. "
        "Supported: .zip, .tar, .tar.gz (.tgz), .tar.bz2, .tar.xz.",
        hint="Download it without extract.",
    )


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
    if os.path.lexists(dest) and not force:
        raise _taken(dest)
    fmt = archive_format(archive)
    if fmt is None:
        raise not_an_archive(archive)
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
            _fsync_dir(tmp)
            _publish(tmp, dest, source, force=force)
    finally:
        _remove(tmp, quiet=True)
    return dest


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
        hint="Move it away, or pass force=True (--force) to replace it.",
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
        _fsync_dir(dest.parent)
        return
    if not force:
        if source.matches(read_marker(dest)):
            return  # another process unpacked the same archive meanwhile
        raise _taken(dest)
    if _renameat2(tmp, dest, _RENAME_EXCHANGE):  # tmp now holds the old folder: removed later
        _fsync_dir(dest.parent)
        return
    old = dest.with_name(hidden_sibling(dest.name, f".{os.getpid()}.{uuid.uuid4().hex[:8]}{_OLD}"))
    dest.rename(old)
    try:
        tmp.rename(dest)
    except BaseException:
        old.rename(dest)
        raise
    _fsync_dir(dest.parent)
    _remove(old)


def _rename_noreplace(tmp: Path, dest: Path) -> bool:
    """Rename unless ``dest`` exists (FileExistsError then)."""
    if _renameat2(tmp, dest, _RENAME_NOREPLACE):
        return True
    if os.path.lexists(dest):
        raise FileExistsError(errno.EEXIST, "exists", str(dest))
    tmp.rename(dest)  # no renameat2 here: a narrow window in which an empty folder is replaced
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
        if not name.startswith(prefix) or not name.endswith((_TEMP, _OLD)):
            continue
        pid = name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
