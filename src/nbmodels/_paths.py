"""Turning untrusted names into paths (docs/download-contract.md, rule 4).

Every name that came from a server or a user (URL path segments, repo file paths,
``Content-Disposition``, commit hashes) passes through here before it touches the filesystem.
Containment is checked on resolved paths, never with string prefixes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import unicodedata
import uuid
from pathlib import Path

__all__ = [
    "UnsafePathError",
    "contained",
    "hidden_sibling",
    "safe_filename",
    "safe_relpath",
    "write_atomic",
]

_MAX_NAME_BYTES = 255
_HEX40 = re.compile(r"[0-9a-f]{40}")


class UnsafePathError(ValueError):
    """A name that must not become a path."""


def safe_filename(name: str) -> str:
    """Validate a single path component; raise :class:`UnsafePathError` when unusable."""
    if not name or name in (".", ".."):
        raise UnsafePathError(f"unusable file name {name!r}")
    if "/" in name or "\\" in name:
        raise UnsafePathError(f"file name {name[:80]!r} contains a path separator")
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        raise UnsafePathError(f"file name {name[:80]!r} contains control characters")
    if len(name.encode("utf-8", "surrogatepass")) > _MAX_NAME_BYTES:
        raise UnsafePathError(f"file name {name[:40]!r}… is longer than {_MAX_NAME_BYTES} bytes")
    if name != name.strip():
        raise UnsafePathError(f"file name {name[:80]!r} starts or ends with white space")
    return name


def safe_relpath(path: str) -> str:
    """Validate a '/'-separated relative path (e.g. a file in a repo), component by component."""
    if not path or path.startswith("/"):
        raise UnsafePathError(f"unusable relative path {path[:80]!r}")
    for part in path.split("/"):
        safe_filename(part)
    return path


def safe_commit(commit: str) -> str:
    if not _HEX40.fullmatch(commit):
        raise UnsafePathError(f"not a 40-hex commit hash: {commit[:60]!r}")
    return commit


def contained(base: Path, relative: str) -> Path:
    """``base / relative`` after checking, on resolved paths, that it stays inside ``base``."""
    safe_relpath(relative)
    candidate = base / relative
    root = base.resolve()
    # Resolve the parent (the file itself may not exist yet, or may be a planted symlink that
    # the publish step will replace rather than follow).
    parent = candidate.parent.resolve()
    if parent != root and not parent.is_relative_to(root):
        raise UnsafePathError(f"{relative[:80]!r} escapes {base}")
    return parent / candidate.name


#: Our own files beside a target are named from the target's name; long names are shortened
#: (and made unique with a digest) so that prefix + suffix always fit in one path component.
_MAX_STEM_BYTES = 120


def hidden_sibling(name: str, suffix: str) -> str:
    """``.<name><suffix>``, short enough for any file system whatever the length of ``name``."""
    stem = name
    if len(name.encode("utf-8", "surrogatepass")) > _MAX_STEM_BYTES:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        stem = name.encode("utf-8", "surrogatepass")[:60].decode("utf-8", "ignore") + "~" + digest
    return f".{stem}{suffix}"


def write_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` all at once. The temporary file is created exclusively
    and never through a symlink, so nothing planted beside the target is written through."""
    tmp = path.with_name(hidden_sibling(path.name, f".{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, 0o644)
    try:
        try:
            os.write(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
