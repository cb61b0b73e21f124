"""What a transfer is asked to do, and what it did."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import httpx2

from ..net import Credential

__all__ = ["FileSpec", "TransferResult"]


@dataclass(frozen=True, slots=True)
class FileSpec:
    """What to fetch and where it goes. ``key`` names the remote object for resume; it must not
    contain secrets (it is written to the state file)."""

    name: str
    url: str
    target: Path
    key: str
    size: int | None = None
    sha256: str | None = None
    git_sha1: str | None = None
    etag: str | None = None
    credential: Credential | None = None
    lock_path: Path | None = None
    #: Turns an error answer into the source's own error (e.g. the Hub's gated message).
    on_error: Callable[[httpx2.Response], Exception | None] | None = None

    def via(self, url: str, credential: Credential | None) -> FileSpec:
        """The same file fetched from another URL (a mirror, a peer): same target, size,
        digests and resume ``key``, so partial data from either source carries over (when the
        two serve the same validator) and the bytes are verified alike."""
        return replace(self, url=url, credential=credential, on_error=None)


@dataclass(slots=True)
class TransferResult:
    path: Path
    size: int
    sha256: str | None
    validator: str | None
    transferred: int
