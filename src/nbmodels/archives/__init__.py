"""Unpacking a downloaded archive (``extract=True``), safely and atomically.

:func:`extract_archive` unpacks a ``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2`` or
``.tar.xz`` (told from its first bytes, not its name) into a folder beside it, named after it
without its archive suffixes (``model.tar.gz`` -> ``model/``).

**Atomic.** Members go into a hidden folder in the same directory (``.<name>.<pid>.<random>
.extracting``); once everything is written it is flushed to disk (one ``syncfs``, else an
fsync per file and folder) and renamed into place.
A failure at any point — an unsafe member, a limit, a full disk, a stop request — removes that
hidden folder: no half folder is ever visible and the archive is never touched. Hidden folders
left by a killed process are removed by the next extraction to the same place.

**Existing folder.** A folder unpacked earlier from the same archive (the marker file
``.nbmodels-extracted.json`` inside it records the archive's name, size, mtime and, when known,
sha256 and origin) is kept as it is: no work, so re-running a finished download costs nothing.
Any other existing folder (or file) is an :class:`~nbmodels.errors.ArchiveError` unless
``force=True``, which swaps the new folder in atomically (``renameat2(RENAME_EXCHANGE)`` where
the system has it; else a rename aside and back on failure) and then deletes the old one.

**Safe by construction** (``_names`` checks names and link targets, ``_read`` member types and
header sizes, ``_write`` the budget, the tree of names and the links; tarfile's ``data`` filter
is consulted as a second opinion only: it bounds no size or count, does not apply to zip, and
on Python 3.11.7 it has known escapes through long link chains, CVE-2025-4517 and its siblings,
fixed in later security releases):

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
  again on the bytes actually written, since headers can lie (no member yields more than it
  declared; a negative tar size is refused). A single tar header may not ask for more than
  16 MiB (a forged pax header), an xz stream for more than 512 MiB of memory.

The layout: ``_names`` (pure rules), ``_read`` (streams, members, the headers-first driver),
``_write`` (budget, tree, files, links), ``_detect`` (the format) and ``_folder`` (marker,
lock, atomic publish). The engine's step that unpacks a job's files is ``engine/_unpack.py``.
"""

from __future__ import annotations

from ._detect import archive_format, not_an_archive
from ._folder import (
    ARCHIVE_SUFFIXES,
    default_dest,
    extract_archive,
    extract_dest,
    extracted_from,
    is_archive_name,
    read_marker,
    unpacked_bytes,
)
from ._names import MARKER, ExtractLimits

__all__ = [
    "ARCHIVE_SUFFIXES",
    "MARKER",
    "ExtractLimits",
    "archive_format",
    "default_dest",
    "extract_archive",
    "extract_dest",
    "extracted_from",
    "is_archive_name",
    "not_an_archive",
    "read_marker",
    "unpacked_bytes",
]
