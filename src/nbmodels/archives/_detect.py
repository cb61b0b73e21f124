"""Telling an archive's format from its first bytes (never from its name alone)."""

from __future__ import annotations

import lzma
import tarfile
import zlib
from pathlib import Path

from ..errors import ArchiveError
from ._names import Format, shown
from ._read import open_stream

__all__ = ["archive_format", "not_an_archive"]

_KNOWN_NOT_ARCHIVES = (
    (b"\x1f\x8b", "gzip data that is not a tar archive"),
    (b"BZh", "bzip2 data that is not a tar archive"),
    (b"\xfd7zXZ\x00", "xz data that is not a tar archive"),
    (b"\x28\xb5\x2f\xfd", "a zstd stream"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"GGUF", "a GGUF model file"),
)


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
