"""Names and limits: what a member may be called, where a link may point, how much an archive
may unpack to, and how a refusal reads. Pure: no I/O."""

from __future__ import annotations

import lzma
import posixpath
import re
import tarfile
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from typing import Literal

from ..errors import ArchiveError, Option

__all__ = [
    "CHUNK",
    "DAMAGED",
    "MARKER",
    "ExtractLimits",
    "Format",
    "Kind",
    "Member",
    "Totals",
    "check_link_target",
    "clean_name",
    "damaged",
    "refuse",
    "shown",
]

GIB = 1 << 30
MIB = 1 << 20
CHUNK = MIB
#: The file inside an extracted folder that says which archive produced it (a reserved name).
MARKER = ".nbmodels-extracted.json"
Format = Literal["zip", "tar", "tar.gz", "tar.bz2", "tar.xz"]
Kind = Literal["file", "dir", "symlink", "hardlink"]
_DRIVE = re.compile(r"[A-Za-z]:")
_MAX_COMPONENT_BYTES = 255
#: What reading a damaged archive can raise (OSError: gzip / bz2 stream errors).
DAMAGED = (
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
class Member:
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
    return "'" + (text if len(text) <= limit else text[: limit - 1] + "…") + "'"


def refuse(
    archive: str, message: str, *, member: str | None = None, hint: str = ""
) -> ArchiveError:
    return ArchiveError(
        f"Cannot unpack {archive}: {message}.",
        member=None if member is None else shown(member),
        hint=hint or "Nothing was unpacked; the archive itself was kept.",
    )


# -- names --------------------------------------------------------------------------------------


def bad_char(part: str) -> bool:
    """Control, format and line-separator characters (undecodable bytes of a non-UTF-8 tar
    name arrive as surrogates: those are legal)."""
    return any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in part)


def clean_name(raw: str, archive: str, limits: ExtractLimits, *, is_zip: bool) -> str:
    """The member's path relative to the folder, or an :class:`ArchiveError` saying why it is
    refused. ``.`` and empty components are dropped; ``..``, absolute paths and drive letters
    are refused (a zip's ``\\`` is a separator, as the tools that wrote it meant; a tar name
    with one is refused)."""

    def no(why: str) -> ArchiveError:
        return refuse(archive, f"member {shown(raw)} {why}", member=raw)

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
        if bad_char(part):
            raise no("has control characters in its name")
        if len(part.encode("utf-8", "surrogateescape")) > _MAX_COMPONENT_BYTES:
            raise no(f"has a path component longer than {_MAX_COMPONENT_BYTES} bytes")
    clean = "/".join(parts)
    if clean == MARKER:
        raise no("uses a name nbmodels reserves for its own record")
    return clean


def check_link_target(m: Member, archive: str, limits: ExtractLimits) -> None:
    """A symlink's target must be relative and stay inside the folder when read as written."""

    def no(why: str) -> ArchiveError:
        return refuse(archive, f"link {shown(m.raw)} {why}", member=m.raw)

    target = m.link
    if not target or len(target.encode("utf-8", "surrogateescape")) > limits.max_path_bytes:
        raise no(f"has an empty target or one longer than {limits.max_path_bytes} bytes")
    if bad_char(target):
        raise no("has control characters in its target")
    if "\\" in target or target.startswith("/") or _DRIVE.match(target):
        raise no(f"points to an absolute path ({shown(target)})")
    joined = posixpath.normpath(posixpath.join(posixpath.dirname(m.name), target))
    if joined == ".." or joined.startswith("../"):
        raise no(f"points outside the folder ({shown(target)})")


def damaged(archive: str, exc: BaseException) -> ArchiveError:
    return ArchiveError(
        f"Cannot unpack {archive}: it is damaged or not what its format says "
        f"({type(exc).__name__}).",
        hint=("Download it again with ", Option("force", switch=True), "; nothing was unpacked."),
    )
