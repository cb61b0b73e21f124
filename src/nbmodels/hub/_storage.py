"""Where Hub files live on disk, exactly as huggingface_hub lays them out (docs/storage.md).

Cache mode (the default)::

    <cache>/.locks/models--org--name/<etag>.lock
    <cache>/models--org--name/blobs/<etag>                    sha256 (LFS) or git SHA-1
    <cache>/models--org--name/refs/<revision>                 40-hex commit
    <cache>/models--org--name/snapshots/<commit>/<path>  ->   ../../blobs/<etag> (or a copy)

``dir=`` mode (huggingface_hub's ``local_dir``)::

    <dir>/<path>
    <dir>/.cache/huggingface/download/<path>.metadata         commit, etag, timestamp
    <dir>/.cache/huggingface/download/<path>.lock
    <dir>/.cache/huggingface/.gitignore                        "*": git skips the bookkeeping
    <dir>/.cache/huggingface/CACHEDIR.TAG                      backup tools skip it too

Both modes tag the folder that holds bookkeeping with ``CACHEDIR.TAG`` (the cache directory
itself in cache mode), with the bytes huggingface_hub writes (its ``_local_folder.py``).

Paths are computed at call time from the environment (``HF_HUB_CACHE``, ``HF_HOME``), so a
process can change them after importing huggingface_hub.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .._config import hf_cache_dir
from .._options import Options
from .._paths import UnsafePathError, contained, hidden_sibling, safe_commit, write_atomic
from ..errors import NbmodelsError
from ..refs import REPO_URL_PREFIX, ModelRef

__all__ = [
    "CACHEDIR_TAG_CONTENT",
    "CacheRepo",
    "LocalDirRepo",
    "OnDisk",
    "Placement",
    "Storage",
    "folder_repo",
    "repo_folder",
    "storage_for",
]

_HEX40 = re.compile(r"[0-9a-f]{40}")
#: ``models`` -> ``model``: the first word of a cache folder's name.
_FOLDER_TYPES = {f"{kind}s": kind for kind in REPO_URL_PREFIX}

#: The Cache Directory Tagging Standard file, byte for byte as huggingface_hub writes it.
CACHEDIR_TAG_CONTENT = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by huggingface_hub.\n"
    "# For information about cache directory tags, see:\n"
    "#\thttps://bford.info/cachedir/\n"
)


def _write_once(path: Path, text: str) -> None:
    """Create ``path`` with ``text`` unless something is already there (best effort, as
    huggingface_hub does: a read-only folder only loses the tag)."""
    if os.path.lexists(path):
        return
    with contextlib.suppress(OSError):
        write_atomic(path, text.encode(), durable=False)


def repo_folder(repo_type: str, repo_id: str) -> str:
    """``("model", "org/name")`` -> ``models--org--name`` (``models--name`` without owner)."""
    return f"{repo_type}s--{repo_id.replace('/', '--')}"


def folder_repo(name: str) -> tuple[str, str] | None:
    """The inverse of :func:`repo_folder`: ``models--org--name`` -> ``("model", "org/name")``;
    None for any other name."""
    parts = name.split("--")
    if len(parts) not in (2, 3) or parts[0] not in _FOLDER_TYPES or not all(parts[1:]):
        return None
    return _FOLDER_TYPES[parts[0]], "/".join(parts[1:])


@dataclass(frozen=True, slots=True)
class Placement:
    """One file of a commit (``name`` in the repository, its ``etag``): where its bytes are
    written (``target``), where the user finds it (``path``) and which lock guards it."""

    name: str
    commit: str
    etag: str
    target: Path
    path: Path
    lock: Path


@dataclass(frozen=True, slots=True)
class OnDisk:
    """What the disk alone holds of a repository: the folder of its files and their repository
    paths; ``commit`` when the layout records one for the whole folder (the cache)."""

    root: Path
    files: list[str]
    commit: str | None


class Storage(Protocol):
    """Where a repository's files live (:class:`CacheRepo` or :class:`LocalDirRepo`): what
    planning, inspection and verification ask of either, without knowing which."""

    @property
    def root(self) -> Path: ...

    def files_at(self, commit: str) -> Path:
        """The folder the repository paths of ``commit`` are relative to."""
        ...

    def on_disk(self, revision: str | None) -> OnDisk | None:
        """The files on disk for ``revision`` (no network); None when there is no record."""
        ...

    def placement(self, commit: str, path: str, etag: str) -> Placement: ...

    def present(self, place: Placement, size: int) -> bool:
        """Is the file there, with this size (no network)?"""
        ...

    def known_blob(self, place: Placement) -> str | None:
        """The digest the layout vouches for a present file (None: read the link, or hash)."""
        ...

    def holds(self, commit: str, path: str) -> bool:
        """Is ``path`` in place for ``commit``?"""
        ...

    def recorded(self, path: str) -> tuple[str, str] | None:
        """(commit, etag) the layout records for one file, when it records files one by one."""
        ...

    def prepare(self) -> None:
        """Create the bookkeeping folders and their tags before the first write."""
        ...

    def record(self, place: Placement) -> None:
        """After a transfer published ``place.target``: make it findable at ``place.path``."""
        ...

    def remember(self, revision: str | None, commit: str) -> None:
        """Every file of ``commit`` is in place: record what ``revision`` points to."""
        ...


def storage_for(ref: ModelRef, options: Options) -> Storage:
    """The ``dir=`` folder (``local_dir`` layout) when one is given, else the cache."""
    if options.dir is not None:
        return LocalDirRepo(options.dir)
    assert ref.repo_id is not None
    return CacheRepo(ref.repo_type, ref.repo_id)


class CacheRepo:
    """One repo in the Hugging Face cache."""

    def __init__(self, repo_type: str, repo_id: str, cache_dir: Path | None = None) -> None:
        self.cache_dir = cache_dir or hf_cache_dir()
        self.folder_name = repo_folder(repo_type, repo_id)
        self.root = self.cache_dir / self.folder_name

    # -- reading ------------------------------------------------------------------------------

    def cached_commit(self, revision: str | None) -> str | None:
        """The commit a revision pointed to when last resolved (no network)."""
        rev = revision or "main"
        if _HEX40.fullmatch(rev):
            return rev
        try:
            ref_file = contained(self.root / "refs", rev)
            value = ref_file.read_text(encoding="utf-8").strip()
            return safe_commit(value)
        except (OSError, UnsafePathError):
            return None

    def snapshot_dir(self, commit: str) -> Path:
        return self.root / "snapshots" / safe_commit(commit)

    def files_at(self, commit: str) -> Path:
        return self.snapshot_dir(commit)

    def on_disk(self, revision: str | None) -> OnDisk | None:
        """The snapshot ``refs/<revision>`` points to (a commit: that snapshot)."""
        commit = self.cached_commit(revision)
        if commit is None:
            return None
        return OnDisk(self.snapshot_dir(commit), self.snapshot_files(commit), commit)

    def holds(self, commit: str, path: str) -> bool:
        return (self.snapshot_dir(commit) / path).is_file()

    def recorded(self, path: str) -> tuple[str, str] | None:
        return None  # the snapshot folder is the record

    def known_blob(self, place: Placement) -> str | None:
        return None  # a snapshot path may be a copy: the link (or the bytes) tell

    def snapshot_files(self, commit: str) -> list[str]:
        """Repo paths present in a snapshot folder (no network)."""
        base = self.snapshot_dir(commit)
        out: list[str] = []
        if not base.is_dir():
            return out
        for path in base.rglob("*"):
            if path.is_file():
                out.append(path.relative_to(base).as_posix())
        return sorted(out)

    def prepare(self) -> None:
        """Tag the cache directory (``CACHEDIR.TAG``) before writing into it, as
        ``hf_hub_download`` does."""
        with contextlib.suppress(OSError):
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            _write_once(self.cache_dir / "CACHEDIR.TAG", CACHEDIR_TAG_CONTENT)

    def placement(self, commit: str, path: str, etag: str) -> Placement:
        blob = contained(self.root / "blobs", _safe_etag(etag))
        pointer = contained(self.snapshot_dir(commit), path)
        lock = self.cache_dir / ".locks" / self.folder_name / f"{_safe_etag(etag)}.lock"
        return Placement(path, commit, etag, target=blob, path=pointer, lock=lock)

    def present(self, place: Placement, size: int) -> bool:
        """Is the file there? Links a blob huggingface_hub (or we) already have into the
        snapshot when only the link is missing. No network."""
        with contextlib.suppress(OSError):
            if place.path.exists() and place.path.stat().st_size == size:
                return True
        try:
            st = place.target.lstat()
        except OSError:
            return False
        if not place.target.is_file() or place.target.is_symlink() or st.st_size != size:
            return False
        self.link(place)
        return True

    # -- writing ------------------------------------------------------------------------------

    def record(self, place: Placement) -> None:
        self.link(place)

    def remember(self, revision: str | None, commit: str) -> None:
        self.write_ref(revision, commit)

    def link(self, place: Placement) -> None:
        """Point the snapshot path at the blob: a relative symlink, or a copy where symlinks
        are impossible. Replaces whatever was at the snapshot path, atomically."""
        place.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = place.path.with_name(
            hidden_sibling(place.path.name, f".{os.getpid()}.{uuid.uuid4().hex[:8]}.link")
        )
        relative = os.path.relpath(place.target, place.path.parent)
        try:
            tmp.symlink_to(relative)
        except OSError:
            shutil.copyfile(place.target, tmp)
        os.replace(tmp, place.path)

    def write_ref(self, revision: str | None, commit: str) -> None:
        """Record ``refs/<revision>`` (not when the revision is the commit itself)."""
        rev = revision or "main"
        if rev == commit:
            return
        ref_file = contained(self.root / "refs", rev)
        ref_file.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            if ref_file.read_text(encoding="utf-8").strip() == commit:
                return
        write_atomic(ref_file, commit.encode())


class LocalDirRepo:
    """huggingface_hub's ``local_dir`` layout under a user-chosen directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _meta_base(self) -> Path:
        return self.root / ".cache" / "huggingface" / "download"

    def prepare(self) -> None:
        """Create ``.cache/huggingface`` with the ``.gitignore`` (``*``) and ``CACHEDIR.TAG``
        huggingface_hub puts there, so the metadata and lock files stay out of git and
        backups (``dir=.`` in a checkout)."""
        base = self.root / ".cache" / "huggingface"
        with contextlib.suppress(OSError):  # an unwritable dir fails later, where it is written
            base.mkdir(parents=True, exist_ok=True)
            _write_once(base / "CACHEDIR.TAG", CACHEDIR_TAG_CONTENT)
            _write_once(base / ".gitignore", "*")

    def files_at(self, commit: str) -> Path:
        return self.root

    def on_disk(self, revision: str | None) -> OnDisk:
        """Every file recorded here (the folder records no revision: each file its commit)."""
        return OnDisk(self.root, self.files_on_disk(), None)

    def holds(self, commit: str, path: str) -> bool:
        meta = self.recorded(path)
        return meta is not None and meta[0] == commit

    def known_blob(self, place: Placement) -> str | None:
        return place.etag  # present() checked the record's etag

    def placement(self, commit: str, path: str, etag: str) -> Placement:
        target = contained(self.root, path)
        meta = contained(self._meta_base(), path)
        lock = meta.with_name(meta.name + ".lock")
        return Placement(path, commit, etag, target=target, path=target, lock=lock)

    def metadata_path(self, path: str) -> Path:
        meta = contained(self._meta_base(), path)
        return meta.with_name(meta.name + ".metadata")

    def recorded(self, path: str) -> tuple[str, str] | None:
        """(commit, etag) when the file is there and not modified since it was recorded."""
        try:
            lines = self.metadata_path(path).read_text(encoding="utf-8").splitlines()
            commit, etag, stamp = lines[0].strip(), lines[1].strip(), float(lines[2])
            st = contained(self.root, path).stat()
        except (OSError, ValueError, IndexError, UnsafePathError):
            return None
        if st.st_mtime - 1 > stamp:
            return None  # edited after download: do not trust the record
        return commit, etag

    def present(self, place: Placement, size: int) -> bool:
        meta = self.recorded(place.name)
        if meta is None or meta[1] != place.etag:
            return False
        with contextlib.suppress(OSError):
            return place.target.stat().st_size == size
        return False

    def record(self, place: Placement) -> None:
        self.write_metadata(place.name, place.commit, place.etag)

    def remember(self, revision: str | None, commit: str) -> None:
        pass  # nothing records revisions in a local_dir

    def write_metadata(self, path: str, commit: str, etag: str) -> None:
        """The three-line record huggingface_hub reads (written while we hold its lock)."""
        meta = self.metadata_path(path)
        meta.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(meta, f"{commit}\n{etag}\n{time.time()}\n".encode())

    def files_on_disk(self) -> list[str]:
        """Repo paths recorded under this directory (no network)."""
        base = self._meta_base()
        out: list[str] = []
        if not base.is_dir():
            return out
        for meta in base.rglob("*.metadata"):
            rel = meta.relative_to(base).as_posix().removesuffix(".metadata")
            if self.recorded(rel) is not None:
                out.append(rel)
        return sorted(out)


def _safe_etag(etag: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", etag):
        raise NbmodelsError(f"Refusing an invalid blob name from the Hub: {etag[:80]!r}.")
    return etag
