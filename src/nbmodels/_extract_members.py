"""The member-level half of archive extraction: read an archive's members, decide whether each
is safe, and write the safe ones into a private folder (see :mod:`nbmodels._extract` for the
rules and for the atomic publish of that folder).

Nothing here trusts a header: names are cleaned and checked, declared sizes are checked before
a member's bytes are read and the bytes are counted again while they are written, links are
checked on the archive's own resolved structure and again on disk, and no member is ever written
through a link (links are made last).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import os
import posixpath
import re
import shutil
import stat
import tarfile
import threading
import time
import unicodedata
import zipfile
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import IO, Any, Literal

from ._progress import format_bytes
from .errors import ArchiveError, CanceledError, InsufficientSpaceError

__all__ = ["MARKER", "ExtractLimits", "Format", "Totals", "open_stream", "shown", "unpack"]

GIB = 1 << 30
MIB = 1 << 20
#: The file inside an extracted folder that says which archive produced it (a reserved name).
MARKER = ".nbmodels-extracted.json"
Format = Literal["zip", "tar", "tar.gz", "tar.bz2", "tar.xz"]
Kind = Literal["file", "dir", "symlink", "hardlink"]
#: A readable, seekable byte stream (a file, or a decompressing reader over one).
Stream = IO[bytes] | io.BufferedIOBase

_CHUNK = MIB
#: The largest single read tarfile may make (a pax or GNU long-name header is read whole: a
#: forged one must not fill the memory).
_MAX_READ = 16 * MIB
#: Memory an xz stream may ask for (a forged header can claim a 1.5 GiB dictionary).
_XZ_MEMLIMIT = 512 * MIB
#: Link hops followed when resolving a path through the archive's own links (as the kernel).
_MAX_HOPS = 40
_DRIVE = re.compile(r"[A-Za-z]:")
_MAX_COMPONENT_BYTES = 255
#: Zip compression methods read with bounded memory (bzip2 / lzma members are decompressed in
#: one unbounded step by zipfile: a few KB could become gigabytes in memory).
_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
#: What reading a damaged archive can raise (OSError: gzip / bz2 stream errors).
_DAMAGED = (
    zipfile.BadZipFile,
    tarfile.TarError,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,
    NotImplementedError,
    ValueError,
)


@dataclass(frozen=True, slots=True)
class ExtractLimits:
    """Bounds on what one archive may unpack to. Every limit is checked against the headers
    before any byte is written (zip, plain tar; compressed tars member by member, as their
    headers arrive) and again on the bytes actually written."""

    #: Total uncompressed bytes (also capped by the free space minus ``space_margin``).
    max_total_bytes: int = 100 * GIB
    #: Members (files, folders, links).
    max_members: int = 100_000
    #: Uncompressed / compressed size of a zip member larger than ``ratio_grace_bytes``.
    max_ratio: float = 200.0
    ratio_grace_bytes: int = MIB
    #: Bytes of a member's name (and of a link's target), once UTF-8 encoded.
    max_path_bytes: int = 1024
    #: Free space left over after unpacking.
    space_margin: int = 64 * MIB


@dataclass(frozen=True, slots=True)
class Totals:
    members: int
    bytes: int


@dataclass(frozen=True, slots=True)
class _Member:
    raw: str
    name: str  # cleaned, '/'-separated, relative; "" is the folder itself
    kind: Kind
    size: int
    packed: int | None = None  # compressed size (zip)
    executable: bool = False
    link: str = ""  # symlink: target as written; hardlink: the cleaned name it points to
    mtime: float | None = None


def shown(name: str, limit: int = 100) -> str:
    """A member name safe to print: control and invisible characters escaped, cut short."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _refuse(
    archive: str, message: str, *, member: str | None = None, hint: str = ""
) -> ArchiveError:
    return ArchiveError(
        f"Cannot unpack {archive}: {message}.",
        member=None if member is None else shown(member),
        hint=hint or "Nothing was unpacked; the archive itself was kept.",
    )


# -- names --------------------------------------------------------------------------------------


def _bad_char(part: str) -> bool:
    """Control, format and line-separator characters (undecodable bytes of a non-UTF-8 tar
    name arrive as surrogates: those are legal)."""
    return any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in part)


def clean_name(raw: str, archive: str, limits: ExtractLimits, *, is_zip: bool) -> str:
    """The member's path relative to the folder, or an :class:`ArchiveError` saying why it is
    refused. ``.`` and empty components are dropped; ``..``, absolute paths and drive letters
    are refused (a zip's ``\\`` is a separator, as the tools that wrote it meant; a tar name
    with one is refused)."""

    def no(why: str) -> ArchiveError:
        return _refuse(archive, f"member {shown(raw)} {why}", member=raw)

    if len(raw.encode("utf-8", "surrogateescape")) > limits.max_path_bytes:
        raise no(f"has a name longer than {limits.max_path_bytes} bytes (the limit)")
    name = raw.replace("\\", "/") if is_zip else raw
    if "\\" in name:
        raise no("has a backslash in its name")
    if name.startswith("/"):
        raise no("has an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if parts and _DRIVE.match(parts[0]):
        raise no("starts with a drive letter")
    if ".." in parts:
        raise no("has a '..' component")
    for part in parts:
        if _bad_char(part):
            raise no("has control characters in its name")
        if len(part.encode("utf-8", "surrogateescape")) > _MAX_COMPONENT_BYTES:
            raise no(f"has a path component longer than {_MAX_COMPONENT_BYTES} bytes")
    clean = "/".join(parts)
    if clean == MARKER:
        raise no("uses a name nbmodels reserves for its own record")
    return clean


def check_link_target(m: _Member, archive: str, limits: ExtractLimits) -> None:
    """A symlink's target must be relative and stay inside the folder when read as written."""

    def no(why: str) -> ArchiveError:
        return _refuse(archive, f"link {shown(m.raw)} {why}", member=m.raw)

    target = m.link
    if not target or len(target.encode("utf-8", "surrogateescape")) > limits.max_path_bytes:
        raise no(f"has an empty target or one longer than {limits.max_path_bytes} bytes")
    if _bad_char(target):
        raise no("has control characters in its target")
    if "\\" in target or target.startswith("/") or _DRIVE.match(target):
        raise no(f"points to an absolute path ({shown(target)})")
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(m.name), target))
    if joined == ".." or joined.startswith("../"):
        raise no(f"points outside the folder ({shown(target)})")


# -- reading members ----------------------------------------------------------------------------


class _Source(io.RawIOBase):
    """The archive's byte stream as tarfile / zipfile see it: counts what they read (a zip
    member's real compressed size) and refuses one huge read (a forged tar header)."""

    def __init__(self, raw: Stream, archive: str, *, max_read: int | None = None) -> None:
        super().__init__()
        self._raw = raw
        self._archive = archive
        self._max_read = max_read
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if self._max_read is not None and (size is None or not 0 <= size <= self._max_read):
            raise _refuse(self._archive, f"a header asks to read {size} bytes at once")
        data = self._raw.read(-1 if size is None else size)
        self.consumed += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


def _open_xz(path: Path) -> Stream:
    """An xz stream with a memory limit (``lzma.open`` takes none)."""
    try:
        import _compression
    except ImportError:  # pragma: no cover - Python 3.14 moved it; keep working without a limit
        return lzma.open(path, "rb")
    raw = path.open("rb")
    reader = _compression.DecompressReader(
        raw, lzma.LZMADecompressor, trailing_error=lzma.LZMAError, memlimit=_XZ_MEMLIMIT
    )
    return io.BufferedReader(reader, _CHUNK)


def open_stream(path: Path, fmt: Format) -> Stream:
    if fmt == "tar.gz":
        return gzip.open(path, "rb")
    if fmt == "tar.bz2":
        return bz2.open(path, "rb")
    if fmt == "tar.xz":
        return _open_xz(path)
    return path.open("rb")


Opener = Callable[[], IO[bytes]]


def _zip_members(
    zf: zipfile.ZipFile, archive: str, limits: ExtractLimits
) -> list[tuple[_Member, Opener]]:
    out: list[tuple[_Member, Opener]] = []
    for info in zf.infolist():
        m = _zip_member(info, archive, limits)
        if m.kind == "symlink":
            m = replace(m, link=_zip_link_target(zf, info, m, archive, limits))
        out.append((m, partial(zf.open, info)))
    return out


def _zip_link_target(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, m: _Member, archive: str, limits: ExtractLimits
) -> str:
    """A zip symlink's target is its content (Info-ZIP's convention)."""
    if info.file_size > limits.max_path_bytes:
        raise _refuse(
            archive,
            f"link {shown(m.raw)} has a target longer than {limits.max_path_bytes} bytes",
            member=m.raw,
        )
    try:
        return zf.read(info).decode("utf-8")
    except UnicodeDecodeError:
        raise _refuse(
            archive, f"link {shown(m.raw)} has a target that is not UTF-8", member=m.raw
        ) from None
    except _DAMAGED as exc:
        raise _damaged(archive, exc) from None


def _zip_member(info: zipfile.ZipInfo, archive: str, limits: ExtractLimits) -> _Member:
    name = clean_name(info.filename, archive, limits, is_zip=True)
    if info.flag_bits & 0x1:
        raise _refuse(archive, f"member {shown(info.filename)} is encrypted", member=info.filename)
    if info.compress_type not in _ZIP_METHODS:
        raise _refuse(
            archive,
            f"member {shown(info.filename)} uses compression method {info.compress_type} "
            "(nbmodels unpacks stored and deflate zip members)",
            member=info.filename,
            hint="Unpack it with another tool; the archive itself was kept.",
        )
    mode = (info.external_attr >> 16) if info.create_system == 3 else 0
    kind: Kind = "file"
    if info.filename.replace("\\", "/").endswith("/") or stat.S_ISDIR(mode):
        kind = "dir"
    elif stat.S_ISLNK(mode):
        kind = "symlink"
    elif stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        raise _special(archive, info.filename)
    try:
        mtime: float | None = time.mktime((*info.date_time, 0, 0, -1))
    except (OverflowError, ValueError):
        mtime = None
    size = 0 if kind == "dir" else info.file_size
    return _Member(
        info.filename, name, kind, size, info.compress_size, bool(mode & 0o100), mtime=mtime
    )


def _special(archive: str, raw: str) -> ArchiveError:
    return _refuse(archive, f"member {shown(raw)} is a device file, fifo or socket", member=raw)


def _tar_member(ti: tarfile.TarInfo, archive: str, limits: ExtractLimits) -> _Member:
    name = clean_name(ti.name, archive, limits, is_zip=False)
    mtime = float(ti.mtime) if isinstance(ti.mtime, int | float) else None
    if ti.isreg():
        return _Member(ti.name, name, "file", ti.size, None, bool(ti.mode & 0o100), mtime=mtime)
    if ti.isdir():
        return _Member(ti.name, name, "dir", 0)
    if ti.issym():
        return _Member(ti.name, name, "symlink", 0, link=ti.linkname)
    if ti.islnk():
        target = clean_name(ti.linkname, archive, limits, is_zip=False)
        return _Member(ti.name, name, "hardlink", 0, link=target)
    if ti.ischr() or ti.isblk() or ti.isfifo():
        raise _special(archive, ti.name)
    raise _refuse(archive, f"member {shown(ti.name)} has an unknown type", member=ti.name)


def _second_opinion(ti: tarfile.TarInfo, root: Path, archive: str) -> None:
    """tarfile's own ``data`` filter, as a second opinion (never the only check: it bounds no
    size or count, and on this Python it has known escapes through long link chains)."""
    try:
        tarfile.data_filter(ti, str(root))
    except tarfile.FilterError as exc:
        raise _refuse(
            archive,
            f"member {shown(ti.name)} is refused by tarfile's data filter ({type(exc).__name__})",
            member=ti.name,
        ) from None


def _iter_tar(tf: tarfile.TarFile, archive: str) -> Iterator[tarfile.TarInfo]:
    while True:
        try:
            ti = tf.next()
        except ArchiveError:
            raise
        except _DAMAGED as exc:
            raise _damaged(archive, exc) from None
        if ti is None:
            return
        yield ti


def _damaged(archive: str, exc: BaseException) -> ArchiveError:
    return ArchiveError(
        f"Cannot unpack {archive}: it is damaged or not what its format says "
        f"({type(exc).__name__}).",
        hint="Download it again with force=True; nothing was unpacked.",
    )


# -- the budget ---------------------------------------------------------------------------------


class _Budget:
    """Counts members and bytes against the limits and the free space."""

    def __init__(self, limits: ExtractLimits, free: int, where: Path, archive: str) -> None:
        self.limits = limits
        self.free = free
        self.where = where
        self.archive = archive
        self.members = 0
        self.declared = 0
        self.written = 0

    def declare(self, m: _Member) -> None:
        """Before a member's bytes are read: its count, declared size and (zip) ratio."""
        self.members += 1
        if self.members > self.limits.max_members:
            raise _refuse(
                self.archive,
                f"it has more than {self.limits.max_members} members (the limit)",
                hint="If you trust it, raise ExtractLimits.max_members; nothing was unpacked.",
            )
        self.declared += m.size
        self._check_total(self.declared, m)
        if m.packed is not None:
            self._check_ratio(m, m.size, m.packed)

    def wrote(self, m: _Member, n: int, so_far: int, packed: int | None) -> None:
        """While writing: the bytes really produced."""
        self.written += n
        if so_far > m.size:
            raise _refuse(
                self.archive,
                f"member {shown(m.raw)} holds more than the {m.size} bytes its header says",
                member=m.raw,
            )
        self._check_total(self.written, m)
        if packed is not None:
            self._check_ratio(m, so_far, packed)

    def _check_total(self, total: int, m: _Member) -> None:
        limit = self.limits.max_total_bytes
        if total > limit:
            raise _refuse(
                self.archive,
                f"with member {shown(m.raw)} it unpacks to more than {format_bytes(limit)} "
                "(the limit)",
                member=m.raw,
                hint="If you trust it, raise ExtractLimits.max_total_bytes; nothing was unpacked.",
            )
        if total + self.limits.space_margin > self.free:
            raise InsufficientSpaceError(
                f"Not enough free space to unpack {self.archive} in {self.where}: it needs "
                f"{format_bytes(total)} or more (+ {format_bytes(self.limits.space_margin)} "
                f"to spare), {format_bytes(self.free)} is free. Free some space, or unpack "
                "it elsewhere; nothing was unpacked.",
                needed=total + self.limits.space_margin,
                available=self.free,
                path=str(self.where),
            )

    def _check_ratio(self, m: _Member, size: int, packed: int) -> None:
        if size <= self.limits.ratio_grace_bytes or size <= self.limits.max_ratio * max(packed, 1):
            return
        raise _refuse(
            self.archive,
            f"member {shown(m.raw)} expands more than {self.limits.max_ratio:g} times "
            f"({format_bytes(packed)} to {format_bytes(size)} or more): a zip bomb",
            member=m.raw,
            hint="If you trust it, raise ExtractLimits.max_ratio; nothing was unpacked.",
        )


# -- writing ------------------------------------------------------------------------------------


class _Writer:
    """Writes safe members into ``root`` (a fresh private folder). Links come last."""

    def __init__(
        self,
        root: Path,
        budget: _Budget,
        limits: ExtractLimits,
        stop: threading.Event | None,
    ) -> None:
        self.root = root
        self.budget = budget
        self.limits = limits
        self.archive = budget.archive
        self.stop = stop
        self.kinds: dict[str, Kind] = {"": "dir"}
        self.links: list[_Member] = []
        self.made_dirs: list[Path] = [root]

    def check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise CanceledError(f"Unpacking {self.archive} was stopped; nothing was left behind.")

    def add(self, m: _Member, opener: Opener, consumed: Callable[[], int] | None = None) -> None:
        self.check_stop()
        if not self._claim(m):
            return
        parent, _, _ = m.name.rpartition("/")
        self._mkdirs(m.name if m.kind == "dir" else parent)
        path = self.root / m.name
        if m.kind == "file":
            self._write(m, path, opener, consumed)
        elif m.kind == "hardlink":
            self._hardlink(m, path)
        elif m.kind == "symlink":
            check_link_target(m, self.archive, self.limits)
            self.links.append(m)

    def _claim(self, m: _Member) -> bool:
        """Record ``m`` in the tree; False for a folder listed again (merged)."""
        if not m.name and m.kind != "dir":
            raise _refuse(self.archive, f"member {shown(m.raw)} has no usable name", member=m.raw)
        parts = m.name.split("/") if m.name else []
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            kind = self.kinds.setdefault(prefix, "dir")
            if kind != "dir":
                raise _refuse(
                    self.archive,
                    f"member {shown(m.raw)} lies under {shown(prefix)}, which is a {kind}",
                    member=m.raw,
                )
        old = self.kinds.get(m.name)
        if old is not None:
            if old == "dir" and m.kind == "dir":
                return False
            raise _refuse(
                self.archive,
                f"member {shown(m.raw)} appears more than once (as a {old} and a {m.kind})",
                member=m.raw,
            )
        self.kinds[m.name] = m.kind
        return True

    def _mkdirs(self, name: str) -> None:
        if not name:
            return
        path = self.root
        for part in name.split("/"):
            path = path / part
            try:
                path.mkdir(mode=0o755)
            except FileExistsError:
                continue  # made for an earlier member (the claims say it is a folder of ours)
            self.made_dirs.append(path)

    def _write(
        self, m: _Member, path: Path, opener: Opener, consumed: Callable[[], int] | None
    ) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags, 0o755 if m.executable else 0o644)
        with os.fdopen(fd, "wb") as out:
            start = consumed() if consumed is not None else 0
            done = 0
            try:
                src = opener()
            except ArchiveError:
                raise
            except _DAMAGED as exc:
                raise _damaged(self.archive, exc) from None
            with src:
                while chunk := self._read(src):
                    done += len(chunk)
                    packed = None if consumed is None else consumed() - start
                    self.budget.wrote(m, len(chunk), done, packed)
                    out.write(chunk)
            if done != m.size:
                raise _refuse(
                    self.archive,
                    f"member {shown(m.raw)} ended after {done} of the {m.size} bytes its header "
                    "promises (the archive is damaged)",
                    member=m.raw,
                )
            out.flush()
            os.fsync(out.fileno())
        if m.mtime is not None:
            # An odd timestamp is not worth failing for.
            with contextlib.suppress(OverflowError, ValueError, OSError):
                os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)

    def _read(self, src: IO[bytes]) -> bytes:
        self.check_stop()
        try:
            return src.read(_CHUNK)
        except ArchiveError:
            raise
        except _DAMAGED as exc:
            raise _damaged(self.archive, exc) from None

    def _hardlink(self, m: _Member, path: Path) -> None:
        if self.kinds.get(m.link) != "file":
            raise _refuse(
                self.archive,
                f"member {shown(m.raw)} is a hard link to {shown(m.link)}, which is not a "
                "regular file unpacked before it",
                member=m.raw,
            )
        target = self.root / m.link
        try:
            os.link(target, path, follow_symlinks=False)
        except OSError:  # a file system without hard links: a copy, counted like any bytes
            size = target.stat().st_size
            self.budget.wrote(replace(m, size=size), size, size, None)
            shutil.copyfile(target, path, follow_symlinks=False)

    def finish(self) -> None:
        """Make the links (each checked on the archive's resolved structure first, then on
        disk) and flush every folder."""
        targets = {m.name: m.link for m in self.links}
        for m in self.links:
            if not _resolves_inside(m.name, targets):
                raise _refuse(
                    self.archive,
                    f"link {shown(m.raw)} resolves outside the folder (or through a loop)",
                    member=m.raw,
                )
        for m in self.links:
            self.check_stop()
            (self.root / m.name).symlink_to(m.link)
        root = self.root.resolve()
        for m in self.links:
            if not (self.root / m.name).resolve().is_relative_to(root):
                raise _refuse(
                    self.archive, f"link {shown(m.raw)} resolves outside the folder", member=m.raw
                )
        for d in reversed(self.made_dirs):
            _fsync_dir(d)


def _resolves_inside(name: str, links: dict[str, str]) -> bool:
    """Does ``name`` resolve inside the folder, following the archive's own links? (Resolved
    from what the archive says, so no path-length limit of the file system can cut it short.)"""
    todo = deque(name.split("/"))
    done: list[str] = []
    hops = 0
    while todo:
        part = todo.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            if not done:
                return False
            done.pop()
            continue
        done.append(part)
        target = links.get("/".join(done))
        if target is not None:
            hops += 1
            if hops > _MAX_HOPS:
                return False
            done.pop()
            todo.extendleft(reversed(target.split("/")))
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the whole archive --------------------------------------------------------------------------


def unpack(
    archive: Path,
    fmt: Format,
    root: Path,
    *,
    limits: ExtractLimits,
    free: int,
    stop: threading.Event | None,
) -> Totals:
    """Unpack ``archive`` into the empty folder ``root``; raise on the first unsafe member."""
    name = shown(archive.name)
    budget = _Budget(limits, free, root.parent, name)
    writer = _Writer(root, budget, limits, stop)
    if fmt == "zip":
        _unpack_zip(archive, writer, budget, limits)
    else:
        _unpack_tar(archive, fmt, writer, budget, limits)
    writer.finish()
    return Totals(budget.members, budget.written)


def _unpack_zip(archive: Path, writer: _Writer, budget: _Budget, limits: ExtractLimits) -> None:
    with _Source(archive.open("rb"), budget.archive) as src:
        _check_zip_count(src, budget.archive, limits)
        try:
            zf = zipfile.ZipFile(src)
        except ArchiveError:
            raise
        except _DAMAGED as exc:
            raise _damaged(budget.archive, exc) from None
        with zf:
            members = _zip_members(zf, budget.archive, limits)
            for m, _opener in members:  # every header first: nothing is written for a bomb
                budget.declare(m)
            for m, opener in members:
                writer.add(m, opener, lambda: src.consumed)


def _check_zip_count(src: _Source, archive: str, limits: ExtractLimits) -> None:
    """The member count from the end record, before zipfile builds an object per member."""
    end_record = getattr(zipfile, "_EndRecData", None)
    if end_record is None:  # pragma: no cover - a private helper; the count is checked later too
        return
    try:
        rec = end_record(src)
    except _DAMAGED:
        return  # zipfile itself says what is wrong next
    finally:
        src.seek(0)
    if rec and rec[4] > limits.max_members:
        raise _refuse(
            archive,
            f"it has {rec[4]} members, more than {limits.max_members} (the limit)",
            hint="If you trust it, raise ExtractLimits.max_members; nothing was unpacked.",
        )


def _unpack_tar(
    archive: Path, fmt: Format, writer: _Writer, budget: _Budget, limits: ExtractLimits
) -> None:
    name = budget.archive
    with _Source(open_stream(archive, fmt), name, max_read=_MAX_READ) as src:
        try:
            tf = tarfile.open(fileobj=src, mode="r:")  # noqa: SIM115 - closed below
        except ArchiveError:
            raise
        except _DAMAGED as exc:
            raise _damaged(name, exc) from None
        with tf:
            if fmt == "tar":  # headers sit between the data: read them all first (seeks only)
                members = []
                for ti in _iter_tar(tf, name):
                    m = _tar_member(ti, name, limits)
                    budget.declare(m)
                    members.append((m, ti))
                pending: Iterator[tuple[_Member, tarfile.TarInfo]] = iter(members)
            else:  # compressed: one pass, each header checked before its bytes are read
                pending = _declared(tf, name, budget, limits)
            for m, ti in pending:
                _second_opinion(ti, writer.root, name)
                writer.add(m, partial(_extract_file, tf, ti))


def _declared(
    tf: tarfile.TarFile, archive: str, budget: _Budget, limits: ExtractLimits
) -> Iterator[tuple[_Member, tarfile.TarInfo]]:
    for ti in _iter_tar(tf, archive):
        m = _tar_member(ti, archive, limits)
        budget.declare(m)
        yield m, ti


def _extract_file(tf: tarfile.TarFile, ti: tarfile.TarInfo) -> IO[bytes]:
    f = tf.extractfile(ti)
    if f is None:  # pragma: no cover - only regular members are opened
        raise tarfile.ReadError(f"member {ti.name!r} has no data")
    return f
