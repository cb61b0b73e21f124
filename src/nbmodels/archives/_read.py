"""Reading archives: the compressed streams, each format's members turned into
:class:`~nbmodels.archives._names.Member` records (refusing what is unsafe as it is read), and
the driver that feeds them, headers first, to the budget and the writer."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import stat
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import IO, Any

from ..errors import ArchiveError
from ._names import (
    CHUNK,
    DAMAGED,
    MIB,
    ExtractLimits,
    Format,
    Kind,
    Member,
    Totals,
    check_link_target,
    clean_name,
    damaged,
    refuse,
    shown,
)
from ._write import Budget, Opener, Writer

__all__ = ["open_stream", "unpack"]

#: A readable, seekable byte stream (a file, or a decompressing reader over one).
Stream = IO[bytes] | io.BufferedIOBase
#: The largest single read tarfile may make (a pax or GNU long-name header is read whole: a
#: forged one must not fill the memory).
_MAX_READ = 16 * MIB
#: Memory an xz stream may ask for (a forged header can claim a 1.5 GiB dictionary).
_XZ_MEMLIMIT = 512 * MIB
#: Zip compression methods read with bounded memory (bzip2 / lzma members are decompressed in
#: one unbounded step by zipfile: a few KB could become gigabytes in memory).
_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}


# -- reading members ----------------------------------------------------------------------------


class _Guarded(io.RawIOBase):
    """A tar stream as tarfile sees it, refusing one huge read: tarfile reads a pax or GNU
    long-name header whole, so a forged one could otherwise fill the memory."""

    def __init__(self, raw: Stream, archive: str) -> None:
        super().__init__()
        self._raw = raw
        self._archive = archive

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or not 0 <= size <= _MAX_READ:
            raise refuse(self._archive, f"a header asks to read {size} bytes at once")
        return self._raw.read(size)

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


class _XzReader(io.BufferedReader):
    """An xz stream with a memory limit (``lzma.open`` takes none); closes its file."""

    def __init__(self, path: Path) -> None:
        import _compression

        self._file = path.open("rb")
        reader = _compression.DecompressReader(
            self._file, lzma.LZMADecompressor, trailing_error=lzma.LZMAError, memlimit=_XZ_MEMLIMIT
        )
        super().__init__(reader, CHUNK)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._file.close()


def _open_xz(path: Path) -> Stream:
    try:
        return _XzReader(path)
    except ImportError:  # pragma: no cover - Python 3.14 moved _compression: no memory limit
        return lzma.open(path, "rb")


def open_stream(path: Path, fmt: Format) -> Stream:
    if fmt == "tar.gz":
        return gzip.open(path, "rb")
    if fmt == "tar.bz2":
        return bz2.open(path, "rb")
    if fmt == "tar.xz":
        return _open_xz(path)
    return path.open("rb")


def _zip_members(
    zf: zipfile.ZipFile, archive: str, limits: ExtractLimits
) -> list[tuple[Member, Opener]]:
    out: list[tuple[Member, Opener]] = []
    for info in zf.infolist():
        m = _zip_member(info, archive, limits)
        if m.kind == "symlink":
            m = replace(m, link=_zip_link_target(zf, info, m, archive, limits))
            check_link_target(m, archive, limits)
        out.append((m, partial(zf.open, info)))
    return out


def _zip_link_target(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, m: Member, archive: str, limits: ExtractLimits
) -> str:
    """A zip symlink's target is its content (Info-ZIP's convention)."""
    if info.file_size > limits.max_path_bytes:
        raise refuse(
            archive,
            f"link {shown(m.raw)} has a target longer than {limits.max_path_bytes} bytes",
            member=m.raw,
        )
    try:
        return zf.read(info).decode("utf-8")
    except UnicodeDecodeError:
        raise refuse(
            archive, f"link {shown(m.raw)} has a target that is not UTF-8", member=m.raw
        ) from None
    except DAMAGED as exc:
        raise damaged(archive, exc) from None


def _zip_member(info: zipfile.ZipInfo, archive: str, limits: ExtractLimits) -> Member:
    name = clean_name(info.filename, archive, limits, is_zip=True)
    if info.flag_bits & 0x1:
        raise refuse(archive, f"member {shown(info.filename)} is encrypted", member=info.filename)
    if info.compress_type not in _ZIP_METHODS:
        raise refuse(
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
    except (OverflowError, ValueError, OSError):
        mtime = None
    size = 0 if kind == "dir" else info.file_size
    return Member(
        info.filename, name, kind, size, info.compress_size, bool(mode & 0o100), mtime=mtime
    )


def _special(archive: str, raw: str) -> ArchiveError:
    return refuse(archive, f"member {shown(raw)} is a device file, fifo or socket", member=raw)


def _tar_member(ti: tarfile.TarInfo, archive: str, limits: ExtractLimits) -> Member:
    name = clean_name(ti.name, archive, limits, is_zip=False)
    if ti.size < 0:  # base-256 header fields can be negative: it would offset other sizes
        raise refuse(archive, f"member {shown(ti.name)} has a negative size", member=ti.name)
    mtime = float(ti.mtime) if isinstance(ti.mtime, int | float) else None
    if ti.isreg():
        return Member(ti.name, name, "file", ti.size, None, bool(ti.mode & 0o100), mtime=mtime)
    if ti.isdir():
        return Member(ti.name, name, "dir", 0)
    if ti.issym():
        link = Member(ti.name, name, "symlink", 0, link=ti.linkname)
        check_link_target(link, archive, limits)
        return link
    if ti.islnk():
        target = clean_name(ti.linkname, archive, limits, is_zip=False)
        return Member(ti.name, name, "hardlink", 0, link=target)
    if ti.ischr() or ti.isblk() or ti.isfifo():
        raise _special(archive, ti.name)
    raise refuse(archive, f"member {shown(ti.name)} has an unknown type", member=ti.name)


def _second_opinion(ti: tarfile.TarInfo, root: Path, archive: str) -> None:
    """tarfile's own ``data`` filter, as a second opinion (never the only check: it bounds no
    size or count, and on this Python it has known escapes through long link chains)."""
    try:
        tarfile.data_filter(ti, str(root))
    except tarfile.FilterError as exc:
        raise refuse(
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
        except DAMAGED as exc:
            raise damaged(archive, exc) from None
        if ti is None:
            return
        yield ti


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
    budget = Budget(limits, free, root.parent, name)
    writer = Writer(root, budget, limits, stop)
    if fmt == "zip":
        _unpack_zip(archive, writer, budget, limits)
    else:
        _unpack_tar(archive, fmt, writer, budget, limits)
    writer.finish()
    return Totals(budget.members, budget.written)


def _unpack_zip(archive: Path, writer: Writer, budget: Budget, limits: ExtractLimits) -> None:
    with archive.open("rb") as src:
        _check_zip_count(src, budget.archive, limits)
        try:
            zf = zipfile.ZipFile(src)
        except ArchiveError:
            raise
        except DAMAGED as exc:
            raise damaged(budget.archive, exc) from None
        with zf:
            members = _zip_members(zf, budget.archive, limits)
            for m, _opener in members:  # every header first: nothing is written for a bomb
                budget.declare(m)
            for m, opener in members:
                writer.add(m, opener)


def _check_zip_count(src: IO[bytes], archive: str, limits: ExtractLimits) -> None:
    """The member count from the end record, before zipfile builds an object per member."""
    end_record = getattr(zipfile, "_EndRecData", None)
    if end_record is None:  # pragma: no cover - a private helper; the count is checked later too
        return
    try:
        rec = end_record(src)
    except DAMAGED:
        return  # zipfile itself says what is wrong next
    finally:
        src.seek(0)
    if rec and rec[4] > limits.max_members:
        raise refuse(
            archive,
            f"it has {rec[4]} members, more than {limits.max_members} (the limit)",
            hint="If you trust it, raise ExtractLimits.max_members; nothing was unpacked.",
        )


def _unpack_tar(
    archive: Path, fmt: Format, writer: Writer, budget: Budget, limits: ExtractLimits
) -> None:
    name = budget.archive
    with _Guarded(open_stream(archive, fmt), name) as src:
        try:
            tf = tarfile.open(fileobj=src, mode="r:")  # noqa: SIM115 - closed below
        except ArchiveError:
            raise
        except DAMAGED as exc:
            raise damaged(name, exc) from None
        with tf:
            if fmt == "tar":  # headers sit between the data: read them all first (seeks only)
                members = []
                for ti in _iter_tar(tf, name):
                    m = _tar_member(ti, name, limits)
                    budget.declare(m)
                    members.append((m, ti))
                pending: Iterator[tuple[Member, tarfile.TarInfo]] = iter(members)
            else:  # compressed: one pass, each header checked before its bytes are read
                pending = _declared(tf, name, budget, limits)
            for m, ti in pending:
                _second_opinion(ti, writer.root, name)
                writer.add(m, partial(_extract_file, tf, ti))


def _declared(
    tf: tarfile.TarFile, archive: str, budget: Budget, limits: ExtractLimits
) -> Iterator[tuple[Member, tarfile.TarInfo]]:
    for ti in _iter_tar(tf, archive):
        m = _tar_member(ti, archive, limits)
        budget.declare(m)
        yield m, ti


def _extract_file(tf: tarfile.TarFile, ti: tarfile.TarInfo) -> IO[bytes]:
    f = tf.extractfile(ti)
    if f is None:  # pragma: no cover - only regular members are opened
        raise tarfile.ReadError(f"member {ti.name!r} has no data")
    return f
