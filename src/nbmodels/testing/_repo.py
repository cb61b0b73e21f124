"""The emulator's repository model: immutable commits of files, plus branches, tags and PRs.

A :class:`HubRepo` is a tiny git: each commit maps paths to :class:`FileEntry` objects and has a
deterministic 40-hex sha derived from the repo, the parent sha, the message and each file's
content identity (never the bytes themselves, so committing a 10 GB generated file is instant).
All methods are thread-safe; the server reads commits while tests add new ones.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from ._content import Content, as_content

__all__ = [
    "DEFAULT_LFS_PATTERNS",
    "DEFAULT_LFS_THRESHOLD",
    "URL_PREFIX",
    "Commit",
    "FileEntry",
    "FileValue",
    "HubFile",
    "HubRepo",
    "RepoType",
    "gitattributes",
]

RepoType = Literal["model", "dataset", "space"]

URL_PREFIX: Mapping[str, str] = {"model": "", "dataset": "datasets/", "space": "spaces/"}
"""What comes before a repo id in its URLs (``/datasets/owner/name/resolve/...``)."""

DEFAULT_LFS_THRESHOLD = 10 * 1024 * 1024
"""Files of at least this many bytes are stored with LFS (the Hub's limit for plain git files)."""

DEFAULT_LFS_PATTERNS: tuple[str, ...] = (
    "*.gguf", "*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.onnx", "*.h5", "*.msgpack",
    "*.npy", "*.npz", "*.parquet", "*.arrow", "*.zip", "*.tar", "*.tar.*", "*.gz", "*.zst",
    "*.tflite", "*.pb", "*.model", "*.wasm",
)  # fmt: skip
"""Like the default ``.gitattributes`` of a Hub repo: these go to LFS whatever their size."""

_GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in DEFAULT_LFS_PATTERNS)

_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_PR_RE = re.compile(r"refs/pr/(\d+)")
_SHA_RE = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class HubFile:
    """A file value with an explicit storage choice: ``HubFile(content, lfs=True)``.

    ``lfs=None`` (what a bare ``bytes``/``GeneratedFile`` gets) means automatic: LFS when the
    size reaches the repo's ``lfs_threshold`` or the name matches ``DEFAULT_LFS_PATTERNS``.
    """

    content: bytes | str | Content
    lfs: bool | None = None


FileValue = bytes | str | Content | HubFile
"""What may be passed for a file: bytes, str (UTF-8), :class:`GeneratedFile`, :class:`HubFile`."""


@dataclass(frozen=True)
class FileEntry:
    """One file at one commit: its path, content and whether the Hub stores it with LFS."""

    path: str
    content: Content
    lfs: bool

    @property
    def size(self) -> int:
        """Size of the file's real content in bytes."""
        return self.content.size

    @property
    def sha256(self) -> str:
        """SHA-256 of the content (the LFS oid; computed once, lazily)."""
        return self.content.sha256

    @property
    def pointer(self) -> bytes:
        """The git-lfs pointer file that git stores for an LFS file."""
        return (
            b"version https://git-lfs.github.com/spec/v1\n"
            + f"oid sha256:{self.sha256}\nsize {self.size}\n".encode()
        )

    @property
    def blob_id(self) -> str:
        """The git blob id the Hub lists as ``oid``: of the pointer for LFS files."""
        if self.lfs:
            return hashlib.sha1(
                b"blob %d\0" % len(self.pointer) + self.pointer, usedforsecurity=False
            ).hexdigest()
        return self.content.git_sha1

    @property
    def etag(self) -> str:
        """The unquoted etag clients see: sha256 for LFS files, git blob sha1 otherwise."""
        return self.sha256 if self.lfs else self.content.git_sha1

    def read(self, start: int = 0, end: int | None = None) -> bytes:
        """The bytes of ``[start, end)`` (the whole file by default)."""
        end = self.size if end is None else end
        return self.content.read(start, max(0, end - start))

    def tree_entry(self) -> dict[str, object]:
        """This file as the tree / paths-info APIs list it."""
        entry: dict[str, object] = {
            "type": "file",
            "oid": self.blob_id,
            "size": self.size,
            "path": self.path,
        }
        if self.lfs:
            entry["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": len(self.pointer)}
        return entry


@dataclass(frozen=True)
class Commit:
    """An immutable snapshot of a repo: ``files`` maps each path to its :class:`FileEntry`."""

    sha: str
    parent: str | None
    message: str
    files: Mapping[str, FileEntry]
    date: datetime

    def directories(self) -> set[str]:
        """Every directory path that contains a file at this commit (not the root)."""
        dirs: set[str] = set()
        for path in self.files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        return dirs

    def tree_oid(self, directory: str) -> str:
        """A deterministic oid for a directory (a digest of what is under it)."""
        h = hashlib.sha1(b"tree\0" + directory.encode(), usedforsecurity=False)
        prefix = directory + "/"
        for path in sorted(p for p in self.files if p.startswith(prefix)):
            h.update(f"{path}\0{self.files[path].content.identity}\0".encode())
        return h.hexdigest()


@dataclass
class _Refs:
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    prs: list[str] = field(default_factory=list)  # index n-1 holds the head of refs/pr/n


class HubRepo:
    """A repository in the emulator. Create with :meth:`HubEmulator.add_repo`.

    Attributes ``gated`` (False, ``"auto"`` or ``"manual"``), ``private`` and ``disabled`` may be
    changed at any time. ``info`` holds extra keys merged into the ``/api/{type}s/{id}`` answer.
    """

    def __init__(
        self,
        repo_id: str,
        *,
        repo_type: RepoType = "model",
        gated: bool | str = False,
        private: bool = False,
        disabled: bool = False,
        lfs_threshold: int = DEFAULT_LFS_THRESHOLD,
        lfs_patterns: Iterable[str] = DEFAULT_LFS_PATTERNS,
        info: Mapping[str, object] | None = None,
    ) -> None:
        if repo_type not in ("model", "dataset", "space"):
            raise ValueError(f"repo_type must be 'model', 'dataset' or 'space', not {repo_type!r}")
        if not repo_id or repo_id.count("/") > 1 or repo_id.startswith("/"):
            raise ValueError(f"repo_id must look like 'name' or 'org/name', not {repo_id!r}")
        self.repo_id = repo_id
        self.repo_type: RepoType = repo_type
        self.gated: bool | str = "manual" if gated is True else gated
        self.private = private
        self.disabled = disabled
        self.lfs_threshold = lfs_threshold
        self.lfs_patterns = tuple(lfs_patterns)
        self.info: dict[str, object] = dict(info or {})
        self._lock = threading.RLock()
        self._commits: dict[str, Commit] = {}
        self._refs = _Refs()

    def __repr__(self) -> str:
        return f"HubRepo({self.repo_type}:{self.repo_id}, main={self._refs.branches.get('main')})"

    # -- writing -------------------------------------------------------------------------------

    def _entry(self, path: str, value: FileValue) -> FileEntry:
        if path.startswith("/") or path.endswith("/") or "//" in path or not path:
            raise ValueError(f"invalid file path {path!r}")
        lfs: bool | None = None
        if isinstance(value, HubFile):
            lfs, value = value.lfs, value.content
        content = as_content(value)
        if lfs is None:
            name = path.rsplit("/", 1)[-1]
            lfs = content.size >= self.lfs_threshold or any(
                fnmatch.fnmatchcase(name, p) for p in self.lfs_patterns
            )
        return FileEntry(path, content, lfs)

    def commit(
        self,
        files: Mapping[str, FileValue] | None = None,
        *,
        delete: Iterable[str] = (),
        branch: str = "main",
        message: str = "Update files",
    ) -> str:
        """Add/replace ``files`` and remove ``delete`` on ``branch``; return the new commit sha.

        The branch is created from nothing if the repo has no commit yet. A ``refs/pr/N``
        branch may be given to push to a pull request.
        """
        with self._lock:
            parent = self._head_of(branch, create=not self._commits)
            current = dict(self._commits[parent].files) if parent else {}
            for path in delete:
                if current.pop(path, None) is None:
                    raise KeyError(f"cannot delete {path!r}: not in {self.repo_id}@{branch}")
            for path, value in (files or {}).items():
                current[path] = self._entry(path, value)
            sha = self._make_commit(parent, message, current)
            self._set_head(branch, sha)
            return sha

    def _make_commit(self, parent: str | None, message: str, files: dict[str, FileEntry]) -> str:
        h = hashlib.sha1(usedforsecurity=False)
        h.update(f"{self.repo_type}/{self.repo_id}\0{parent or ''}\0{message}\0".encode())
        for path in sorted(files):
            entry = files[path]
            h.update(f"{path}\0{entry.content.identity}\0{int(entry.lfs)}\0".encode())
        sha = h.hexdigest()
        if sha not in self._commits:
            date = _EPOCH + timedelta(minutes=len(self._commits))
            ordered = {p: files[p] for p in sorted(files)}
            self._commits[sha] = Commit(sha, parent, message, ordered, date)
        return sha

    def _head_of(self, branch: str, *, create: bool = False) -> str | None:
        if (m := _PR_RE.fullmatch(branch)) and 0 < int(m[1]) <= len(self._refs.prs):
            return self._refs.prs[int(m[1]) - 1]
        if branch in self._refs.branches:
            return self._refs.branches[branch]
        if create:
            return None
        raise KeyError(f"no branch {branch!r} in {self.repo_id}; use create_branch() first")

    def _set_head(self, branch: str, sha: str) -> None:
        if m := _PR_RE.fullmatch(branch):
            self._refs.prs[int(m[1]) - 1] = sha
        else:
            self._refs.branches[branch] = sha

    def create_branch(self, name: str, from_rev: str = "main") -> str:
        """Create branch ``name`` at revision ``from_rev``; return its commit sha."""
        with self._lock:
            if name in self._refs.branches:
                raise ValueError(f"branch {name!r} already exists in {self.repo_id}")
            sha = self._require(from_rev)
            self._refs.branches[name] = sha
            return sha

    def create_tag(self, name: str, rev: str = "main") -> str:
        """Create tag ``name`` pointing at revision ``rev``; return its commit sha."""
        with self._lock:
            if name in self._refs.tags:
                raise ValueError(f"tag {name!r} already exists in {self.repo_id}")
            sha = self._require(rev)
            self._refs.tags[name] = sha
            return sha

    def create_pr(
        self,
        files: Mapping[str, FileValue] | None = None,
        *,
        delete: Iterable[str] = (),
        base: str = "main",
        message: str = "Pull request",
    ) -> str:
        """Open a pull request on top of ``base`` with these changes; return ``"refs/pr/N"``."""
        with self._lock:
            self._refs.prs.append(self._require(base))
            ref = f"refs/pr/{len(self._refs.prs)}"
            self.commit(files, delete=delete, branch=ref, message=message)
            return ref

    def _require(self, rev: str) -> str:
        sha = self.resolve(rev)
        if sha is None:
            raise KeyError(f"no revision {rev!r} in {self.repo_id}")
        return sha

    # -- reading -------------------------------------------------------------------------------

    def resolve(self, rev: str) -> str | None:
        """The commit sha for a branch, tag, ``refs/pr/N``, ``refs/heads/x`` or full sha."""
        with self._lock:
            refs = self._refs
            if rev in refs.branches:
                return refs.branches[rev]
            if rev in refs.tags:
                return refs.tags[rev]
            if (m := _PR_RE.fullmatch(rev)) and 0 < int(m[1]) <= len(refs.prs):
                return refs.prs[int(m[1]) - 1]
            if rev.startswith("refs/heads/"):
                return refs.branches.get(rev.removeprefix("refs/heads/"))
            if rev.startswith("refs/tags/"):
                return refs.tags.get(rev.removeprefix("refs/tags/"))
            if _SHA_RE.fullmatch(rev) and rev in self._commits:
                return rev
            return None

    def get_commit(self, rev: str = "main") -> Commit:
        """The :class:`Commit` at revision ``rev`` (KeyError if unknown)."""
        with self._lock:
            return self._commits[self._require(rev)]

    @property
    def sha(self) -> str:
        """The commit sha of ``main``."""
        return self._require("main")

    def file(self, path: str, rev: str = "main") -> FileEntry:
        """The :class:`FileEntry` of ``path`` at ``rev`` (KeyError if absent)."""
        return self.get_commit(rev).files[path]

    def files(self, rev: str = "main") -> Mapping[str, FileEntry]:
        """All files at ``rev``, by path, sorted."""
        return self.get_commit(rev).files

    def refs(self) -> dict[str, list[dict[str, str]]]:
        """The ``/refs`` API answer: branches, tags, converts and pull requests."""
        with self._lock:
            refs = self._refs
            return {
                "branches": [
                    {"name": n, "ref": f"refs/heads/{n}", "targetCommit": s}
                    for n, s in sorted(refs.branches.items())
                ],
                "converts": [],
                "tags": [
                    {"name": n, "ref": f"refs/tags/{n}", "targetCommit": s}
                    for n, s in sorted(refs.tags.items())
                ],
                "pullRequests": [
                    {"name": f"refs/pr/{i}", "ref": f"refs/pr/{i}", "targetCommit": s}
                    for i, s in enumerate(refs.prs, start=1)
                ],
            }


def gitattributes() -> str:
    """A ``.gitattributes`` like the one the Hub puts in new repos."""
    return _GITATTRIBUTES
