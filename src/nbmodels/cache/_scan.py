"""What is on disk: the Hugging Face cache read without following links out of it, safe removal
from it, and the files nbmodels downloaded into ``dir=`` folders or for plain URLs.

The cache layout (docs/storage.md)::

    <cache>/models--org--name/blobs/<etag>                 sha256 (LFS) or git SHA-1 of the bytes
    <cache>/models--org--name/refs/<revision>              40-hex commit
    <cache>/models--org--name/snapshots/<commit>/<path> -> ../../blobs/<etag>  (or a copy)

Snapshot entries are listed with ``os.walk(followlinks=False)``; a link's blob is found by
resolving it and checking, on resolved paths, that it lies in the repo's ``blobs`` folder. Links
that point anywhere else are reported, never read or deleted through.

Removal is :mod:`nbmodels.cache._remove`; verification :mod:`nbmodels.cache._verify`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .._config import hf_cache_dir
from .._options import Options
from .._progress import Status
from ..archives import extract_dest, unpacked_bytes
from ..errors import NotFoundError, RefError
from ..hub import LocalDirRepo, folder_repo, repo_folder, select_quant
from ..refs import REPO_URL_PREFIX, ModelRef, parse_ref, split_siblings

__all__ = [
    "CachedFile",
    "CachedRepo",
    "LocalEntry",
    "local_entries",
    "repo_name",
    "resolve_cached",
    "scan_cache",
    "scan_repo",
    "select_cached",
]

_HEX40 = re.compile(r"[0-9a-f]{40}")
_PREFIX = REPO_URL_PREFIX


def repo_name(repo_type: str, repo_id: str) -> str:
    """``owner/name``, ``datasets/owner/name``, ``spaces/owner/name``."""
    return f"{_PREFIX.get(repo_type, '')}{repo_id}"


@dataclass(frozen=True, slots=True)
class CachedFile:
    """One snapshot entry of the cache.

    ``blob`` is the blob it links to inside the repo's ``blobs`` folder (None for a copy, a
    dangling link, or a link out of the cache: ``outside``). ``size`` and ``last_used``
    (the later of access and modification time) are the blob's, or the copy's. ``unpacked``
    is the folder an archive was unpacked into by ``extract=True`` (``<repo folder>/extracted/
    <commit>/...``), holding ``unpacked_size`` bytes; None for a file never unpacked.
    """

    repo_type: str
    repo_id: str
    commit: str
    file: str
    path: Path
    blob: Path | None
    size: int | None
    refs: tuple[str, ...]
    last_used: float | None
    outside: bool = False
    unpacked: Path | None = None
    unpacked_size: int | None = None

    @property
    def repo(self) -> str:
        return repo_name(self.repo_type, self.repo_id)

    @property
    def blob_name(self) -> str | None:
        return None if self.blob is None else self.blob.name

    @property
    def is_copy(self) -> bool:
        return not self.path.is_symlink()


@dataclass(frozen=True, slots=True)
class CachedRepo:
    """One repository folder of the cache."""

    repo_type: str
    repo_id: str
    root: Path
    refs: dict[str, str] = field(default_factory=dict)
    commits: tuple[str, ...] = ()
    files: tuple[CachedFile, ...] = ()

    @property
    def repo(self) -> str:
        return repo_name(self.repo_type, self.repo_id)


def _read_refs(root: Path) -> dict[str, str]:
    refs: dict[str, str] = {}
    base = root / "refs"
    for dirpath, _dirs, names in os.walk(base, followlinks=False):
        for name in names:
            path = Path(dirpath) / name
            if path.is_symlink():
                continue
            with contextlib.suppress(OSError, UnicodeDecodeError):
                value = path.read_text(encoding="utf-8").strip()
                if _HEX40.fullmatch(value):
                    refs[path.relative_to(base).as_posix()] = value
    return refs


def _stat_times(st: os.stat_result) -> float:
    return max(st.st_atime, st.st_mtime)


def _entry(
    repo_type: str,
    repo_id: str,
    commit: str,
    file: str,
    path: Path,
    blobs: Path,
    refs: tuple[str, ...],
) -> CachedFile:
    blob: Path | None = None
    outside = False
    size: int | None = None
    last: float | None = None
    if path.is_symlink():
        resolved = path.resolve()
        if resolved.parent == blobs:
            blob = resolved
            with contextlib.suppress(OSError):
                st = blob.lstat()
                if blob.is_file() and not blob.is_symlink():
                    size, last = st.st_size, _stat_times(st)
        else:
            outside = True
    else:
        with contextlib.suppress(OSError):
            st = path.lstat()
            size, last = st.st_size, _stat_times(st)
    return CachedFile(repo_type, repo_id, commit, file, path, blob, size, refs, last, outside)


def _with_unpacked(entry: CachedFile, cache: Path) -> CachedFile:
    """``entry``, with the folder nbmodels unpacked it into, if there is one."""
    folder = extract_dest(entry.path, cache)
    size = unpacked_bytes(folder)
    if size is None:
        return entry
    return dataclasses.replace(entry, unpacked=folder, unpacked_size=size)


def scan_repo(root: Path) -> CachedRepo | None:
    """One ``models--org--name`` folder; None when the name is not a cache repo folder."""
    parsed = folder_repo(root.name)
    if parsed is None or root.is_symlink() or not root.is_dir():
        return None
    repo_type, repo_id = parsed
    refs = _read_refs(root)
    names_of: dict[str, list[str]] = {}
    for name, commit in sorted(refs.items()):
        names_of.setdefault(commit, []).append(name)
    blobs = (root / "blobs").resolve()
    snapshots = root / "snapshots"
    commits: list[str] = []
    files: list[CachedFile] = []
    with contextlib.suppress(OSError):
        for snap in sorted(snapshots.iterdir()):
            if not _HEX40.fullmatch(snap.name) or snap.is_symlink() or not snap.is_dir():
                continue
            commits.append(snap.name)
            refs_here = tuple(names_of.get(snap.name, ()))
            for dirpath, _dirs, names in os.walk(snap, followlinks=False):
                for name in sorted(names):
                    path = Path(dirpath) / name
                    rel = path.relative_to(snap).as_posix()
                    entry = _entry(repo_type, repo_id, snap.name, rel, path, blobs, refs_here)
                    files.append(_with_unpacked(entry, root.parent))
    files.sort(key=lambda f: (f.commit, f.file))
    return CachedRepo(repo_type, repo_id, root, refs, tuple(commits), tuple(files))


def scan_cache(cache_dir: Path | None = None) -> list[CachedRepo]:
    """Every repository in the Hugging Face cache, sorted by type and id."""
    base = cache_dir or hf_cache_dir()
    out: list[CachedRepo] = []
    with contextlib.suppress(OSError):
        for child in base.iterdir():
            repo = scan_repo(child)
            if repo is not None:
                out.append(repo)
    out.sort(key=lambda r: (r.repo_type, r.repo_id.lower()))
    return out


# -- selection -------------------------------------------------------------------------------


def _chosen(ref: ModelRef, names: list[str], repo: str) -> list[str]:
    if ref.path is None and ref.quant is None:
        return names
    if ref.path is not None and ref.is_dir:
        prefix = ref.path.rstrip("/") + "/"
        return [n for n in names if n.startswith(prefix)]
    if ref.path is not None:
        return split_siblings(ref.path, names) if ref.path in names else []
    try:
        return select_quant(names, ref.quant, repo)
    except NotFoundError:
        return []


def select_cached(repo: CachedRepo, ref: ModelRef, revision: str | None = None) -> list[CachedFile]:
    """The snapshot entries ``ref`` names: of one revision when one is given (the ref's or
    ``revision``), else of every cached snapshot. Raises NotFoundError for an uncached
    revision."""
    rev = revision or ref.revision
    commits = list(repo.commits)
    if rev is not None:
        commit = rev if _HEX40.fullmatch(rev) else repo.refs.get(rev)
        if commit is None or commit not in repo.commits:
            known = sorted(repo.refs) + [c[:12] for c in repo.commits]
            raise NotFoundError(
                f"Revision {rev!r} of {repo.repo} is not in the cache.",
                candidates=known,
                hint=f"Cached: {', '.join(known) or 'nothing'}.",
            )
        commits = [commit]
    out: list[CachedFile] = []
    for commit in commits:
        files = [f for f in repo.files if f.commit == commit]
        chosen = set(_chosen(ref, [f.file for f in files], repo.repo))
        out += [f for f in files if f.file in chosen]
    return out


def resolve_cached(
    ref_text: str, revision: str | None = None, cache_dir: Path | None = None
) -> tuple[CachedRepo, ModelRef, list[CachedFile]]:
    """Parse a Hub reference and find its cached entries (NotFoundError when there are none).

    The cache decides between the readings of a text (``hf:gpt2/config.json``: the repository
    ``gpt2/config.json``, or ``config.json`` of ``gpt2``): the first whose repository folder
    holds what it names, else the first whose folder exists. A bare name (``gpt2``, as
    ``nbmodels ls`` shows it) is taken as ``hf:gpt2`` when that repository is in the cache.
    The :class:`ModelRef` returned is the reading chosen.
    """
    base = cache_dir or hf_cache_dir()
    ref = _parse_cached(ref_text, base)
    if ref.kind != "hf" or ref.repo_id is None:
        raise NotFoundError(
            f"{ref_text} is a plain URL; only Hub references live in the Hugging Face cache.",
            hint="Delete a URL download's file directly (see `nbmodels ls`).",
        )
    found: list[tuple[CachedRepo, ModelRef]] = []
    for reading in ref.readings:
        assert reading.repo_id is not None
        repo = scan_repo(base / repo_folder(reading.repo_type, reading.repo_id))
        if repo is not None:
            found.append((repo, reading))
    if not found:
        raise NotFoundError(
            f"{ref.repo_url_path} is not in the Hugging Face cache ({base}).",
            hint="See what is there with `nbmodels ls`.",
        )
    for repo, reading in found:
        files = select_cached(repo, reading, revision)
        if files:
            return repo, reading, files
    repo, reading = found[0]
    raise NotFoundError(
        f"Nothing of {reading} is in the cache.",
        candidates=sorted({f.file for f in repo.files})[:20],
        hint=f"See what is cached with `nbmodels ls {repo.repo_id}`.",
    )


def _parse_cached(text: str, base: Path) -> ModelRef:
    """``parse_ref``, and a bare repository name without an owner that the cache holds."""
    try:
        return parse_ref(text)
    except RefError:
        bare = text.strip()
        if "/" not in bare and ":" not in bare and "#" not in bare:
            with contextlib.suppress(RefError):
                ref = parse_ref(f"hf:{bare}")
                if ref.repo_id is not None and (base / repo_folder("model", ref.repo_id)).is_dir():
                    return ref
        raise


# -- files outside the cache (dir= and URL downloads, from the job registry) ------------------


class FinishedJob(Protocol):
    """What :func:`local_entries` reads of a job (a :class:`nbmodels.Job` has it)."""

    @property
    def id(self) -> str: ...
    @property
    def ref(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def options(self) -> Options: ...
    @property
    def paths(self) -> list[Path]: ...


@dataclass(frozen=True, slots=True)
class LocalEntry:
    """A file a finished job put outside the Hugging Face cache."""

    repo: str  # owner/name, or the (redacted) URL of a plain download
    repo_type: str | None  # "model", "dataset", "space"; None for a URL
    file: str
    path: Path
    size: int
    commit: str | None
    revision: str | None
    last_used: float
    job_id: str


def _local_entry(job: FinishedJob, path: Path) -> LocalEntry | None:
    try:
        st = path.stat()
    except OSError:
        return None
    try:
        ref: ModelRef | None = parse_ref(job.ref)
    except RefError:
        ref = None
    repo, file, commit = job.ref, path.name, None
    repo_type: str | None = None
    directory = job.options.dir
    if ref is not None and ref.kind == "hf" and ref.repo_id is not None:
        repo, repo_type = ref.repo_url_path, ref.repo_type
        if directory is not None and path.is_relative_to(directory):
            file = path.relative_to(directory).as_posix()
            meta = LocalDirRepo(directory).recorded(file)
            commit = meta[0] if meta else None
    revision = job.options.revision or (ref.revision if ref is not None else None)
    return LocalEntry(
        repo, repo_type, file, path, st.st_size, commit, revision, _stat_times(st), job.id
    )


def local_entries(jobs: Iterable[FinishedJob], cache_dir: Path | None = None) -> list[LocalEntry]:
    """Files of finished jobs that exist outside the Hugging Face cache (newest job wins)."""
    cache = (cache_dir or hf_cache_dir()).resolve()
    seen: set[Path] = set()
    out: list[LocalEntry] = []
    for job in jobs:
        if job.status not in Status.SUCCEEDED:
            continue
        for path in job.paths:
            with contextlib.suppress(OSError):
                real = path.resolve()
                if real in seen or real.is_relative_to(cache) or not path.is_file():
                    continue
                seen.add(real)
                entry = _local_entry(job, path)
                if entry is not None:
                    out.append(entry)
    return out
