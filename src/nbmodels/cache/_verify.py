"""Re-hash cached files and compare with what they should be (``nbmodels verify``).

Against the Hub (:func:`hub_expectations`): the sha256 of LFS files and the git blob SHA-1 of
small git files, from paths-info at the snapshot's commit. Offline (:func:`verify_offline`): the
blob's own name, which huggingface_hub sets to that same digest. Each blob is hashed once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .._aio import run_sync
from .._config import Settings
from .._options import Options
from ..hub import HubEntry, open_session
from ..refs import ModelRef
from ._scan import CachedFile

__all__ = ["Check", "Expected", "hash_file", "hub_expectations", "verify", "verify_offline"]

Algorithm = Literal["sha256", "git-sha1"]
Status = Literal["ok", "corrupt", "unverifiable"]
CHUNK = 4 << 20
_BATCH = 100


@dataclass(frozen=True, slots=True)
class Expected:
    """What a file should hash to (and its size, when known)."""

    algorithm: Algorithm
    digest: str
    size: int | None = None


@dataclass(frozen=True, slots=True)
class Check:
    """The verdict on one cached file."""

    file: CachedFile
    status: Status
    algorithm: Algorithm | None = None
    expected: str | None = None
    actual: str | None = None
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        f = self.file
        return {
            "repo": f.repo,
            "repo_type": f.repo_type,
            "commit": f.commit,
            "file": f.file,
            "path": str(f.path),
            "size_bytes": f.size,
            "status": self.status,
            "algorithm": self.algorithm,
            "expected": self.expected,
            "actual": self.actual,
            "detail": self.detail,
        }


def hash_file(path: Path, algorithm: Algorithm) -> str:
    """sha256 of the bytes, or git's blob SHA-1 (``sha1(b"blob <size>\\0" + bytes)``)."""
    with path.open("rb") as f:
        if algorithm == "sha256":
            return hashlib.file_digest(f, "sha256").hexdigest()
        size = path.stat().st_size
        h = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
        while chunk := f.read(CHUNK):
            h.update(chunk)
        return h.hexdigest()


def _from_blob_name(f: CachedFile) -> Expected | None:
    name = f.blob_name
    if name is None:
        return None
    if len(name) == 64:
        return Expected("sha256", name)
    if len(name) == 40:
        return Expected("git-sha1", name)
    return None


def _readable(f: CachedFile) -> Path | None:
    """The bytes to hash: the blob, or a copy; never through a link out of the cache."""
    if f.outside:
        return None
    if f.blob is not None:
        return f.blob
    return None if f.path.is_symlink() else f.path


def verify(
    files: Iterable[CachedFile], expected: Mapping[tuple[str, str], Expected | None]
) -> Iterator[Check]:
    """Check each file against ``expected[(commit, file)]`` (missing / None: unverifiable)."""
    memo: dict[tuple[Path, Algorithm], str] = {}
    for f in files:
        want = expected.get((f.commit, f.file))
        source = _readable(f)
        if f.outside:
            yield Check(f, "unverifiable", detail="links outside the cache; not followed")
            continue
        if want is None:
            detail = (
                "not a link to a cache blob; its digest is unknown offline"
                if f.blob is None
                else "no expected digest"
            )
            yield Check(f, "unverifiable", detail=detail)
            continue
        if source is None or not source.is_file():
            yield Check(f, "corrupt", want.algorithm, want.digest, detail="the file is missing")
            continue
        key = (source, want.algorithm)
        try:
            actual = memo.get(key) or hash_file(source, want.algorithm)
        except OSError as exc:
            yield Check(f, "corrupt", want.algorithm, want.digest, detail=f"unreadable: {exc}")
            continue
        memo[key] = actual
        if actual == want.digest:
            yield Check(f, "ok", want.algorithm, want.digest, actual)
            continue
        detail = "the bytes do not match the digest"
        size = source.stat().st_size
        if want.size is not None and size != want.size:
            detail = f"size {size} instead of {want.size}"
        yield Check(f, "corrupt", want.algorithm, want.digest, actual, detail)


def verify_offline(files: Iterable[CachedFile]) -> Iterator[Check]:
    """Check each file against its blob's name (no network)."""
    listed = list(files)
    return verify(listed, {(f.commit, f.file): _from_blob_name(f) for f in listed})


def _expected(entry: HubEntry) -> Expected:
    if entry.sha256:
        return Expected("sha256", entry.sha256, entry.size)
    return Expected("git-sha1", entry.blob_id, entry.size)


def hub_expectations(
    ref: ModelRef, options: Options, files: Iterable[CachedFile]
) -> dict[tuple[str, str], Expected | None]:
    """The Hub's digests for these files at their snapshots' commits (paths-info), from the
    repository of ``ref``: the reading the cache chose (no request decides between readings)."""
    wanted: dict[str, list[str]] = {}
    for f in files:
        wanted.setdefault(f.commit, []).append(f.file)

    async def fetch() -> dict[tuple[str, str], Expected | None]:
        out: dict[tuple[str, str], Expected | None] = {}
        async with open_session(options, Settings.from_env()) as session:
            api = session.api(ref)
            for commit, paths in wanted.items():
                for i in range(0, len(paths), _BATCH):
                    for entry in await api.paths_info(commit, paths[i : i + _BATCH]):
                        out[(commit, entry.path)] = _expected(entry)
        return out

    return run_sync(fetch)
