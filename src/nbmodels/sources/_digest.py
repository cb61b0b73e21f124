"""The sha256 a user gives (``sha256=``, ``--sha256``) for a Hub reference
(docs/download-contract.md, rule 3).

Which file it applies to: the one file the reference means.

- A reference that names a file path applies it to that file. Naming a part of a split GGUF
  brings every part: the digest is the named part's, the other parts are checked against the
  Hub's own digests (as every file always is).
- A quant, folder, repository or include/exclude filter must select exactly one file; a
  reference that means several files is refused with a :class:`RefError` before any request
  for bytes, naming the files and how to name one.

When it is checked, always before anything is published:

- an LFS file: the Hub's sha256 must equal it, or :class:`IntegrityError` before a byte is
  transferred;
- a small git file (the Hub lists no sha256): the transfer hashes the bytes and checks both the
  git blob SHA-1 and the user's sha256;
- a file already on disk: the cache blob's name when it is a sha256 (as huggingface_hub names
  LFS blobs), else the bytes on disk are hashed; a difference is an :class:`IntegrityError`,
  never ``already_downloaded``, also with ``offline=True`` and on the zero-request path.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from pathlib import Path

from ..errors import IntegrityError, Option, RefError
from ..refs import ModelRef

__all__ = ["check_hub_sha256", "check_on_disk", "digest_target", "disk_sha256"]

_HEX64 = re.compile(r"[0-9a-f]{64}")
_SHOWN = 3


def digest_target(ref: ModelRef, files: list[str]) -> str:
    """The file of ``files`` (what ``ref`` means, part 1 first) the user's sha256 is for.

    Raises :class:`RefError` when the reference means several files and names none of them.
    """
    if ref.path is not None and not ref.is_dir and ref.path in files:
        return ref.path
    if len(files) == 1:
        return files[0]
    more = len(files) - _SHOWN
    shown = ", ".join(files[:_SHOWN]) + (f" and {more} more" if more > 0 else "")
    named = next((f for f in files if not f.rsplit("/", 1)[-1].startswith(".")), files[0])
    example = ModelRef("hf", ref.repo_id, ref.repo_type, revision=ref.revision, path=named)
    raise RefError(
        f"sha256 applies to one file, but {ref} means {len(files)} files ({shown}).",
        hint=(
            f"Name the file the digest belongs to, e.g. {example} (for a split GGUF, the part: "
            "the other parts are checked against the Hub's digests), or leave out ",
            Option("sha256"),
            ".",
        ),
    )


def check_hub_sha256(name: str, hub_sha256: str | None, expected: str) -> None:
    """Before any transfer: the Hub's own sha256 of an LFS file must be the user's."""
    if hub_sha256 is not None and hub_sha256 != expected:
        raise IntegrityError(
            f"{name}: the Hub's sha256 is {hub_sha256}, not the expected {expected}; "
            "nothing was downloaded.",
            expected=expected,
            actual=hub_sha256,
            hint=(
                "Check the digest and the revision (a new commit may have changed the file), "
                "or leave out ",
                Option("sha256"),
                ".",
            ),
        )


def disk_sha256(path: Path, blob_name: str | None = None) -> str:
    """The sha256 of a file on disk: ``blob_name`` when it is one (huggingface_hub names LFS
    blobs by their sha256), else the hash of the bytes."""
    if blob_name is not None and _HEX64.fullmatch(blob_name):
        return blob_name
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def link_blob_name(path: Path) -> str | None:
    """The name a snapshot link points at (its blob), or None for a copy."""
    with contextlib.suppress(OSError):
        if path.is_symlink():
            return path.readlink().name
    return None


def check_on_disk(name: str, path: Path, expected: str, blob_name: str | None = None) -> None:
    """A file already on disk must have the user's sha256 (:class:`IntegrityError` if not)."""
    actual = disk_sha256(path, blob_name if blob_name is not None else link_blob_name(path))
    if actual != expected:
        raise IntegrityError(
            f"{name} on disk has sha256 {actual}, not the expected {expected}; "
            "it was left as it is.",
            expected=expected,
            actual=actual,
            hint=(
                "Check the digest and the revision; if the file on disk is damaged, "
                "download it again with ",
                Option("force", switch=True),
                ".",
            ),
        )
