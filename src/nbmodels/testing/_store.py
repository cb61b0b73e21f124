"""What a :class:`~nbmodels.testing.HubEmulator` holds: its repos (and their old names), the
tokens and what they may read, and what the CDN origin serves (LFS blobs, plain files, the
changed versions the "change" fault serves).

The emulator's methods fill it; the router (:mod:`._routes`) reads it. Thread-safe.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable

from ._content import Content, VariantContent
from ._repo import HubRepo

__all__ = ["HubStore"]

_Key = tuple[str, str]  # (repo type, repo id)


class HubStore:
    """The emulator's state, behind one lock."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._repos: dict[_Key, HubRepo] = {}
        self._renames: dict[_Key, str] = {}
        self._tokens: dict[str, set[_Key] | None] = {}
        self._blobs: dict[str, tuple[Content, str, str]] = {}
        self._static: dict[str, Content] = {}
        self._variants: dict[str, Content] = {}

    # -- repos -----------------------------------------------------------------------------------

    def add_repo(self, repo: HubRepo) -> None:
        """Register a new repo (ValueError if one of that type and id exists)."""
        key = (repo.repo_type, repo.repo_id)
        with self._lock:
            if key in self._repos:
                raise ValueError(f"{repo.repo_type} repo {repo.repo_id!r} already exists")
            self._repos[key] = repo
            self._renames.pop(key, None)

    def repo(self, repo_type: str, repo_id: str) -> HubRepo:
        """The repo (KeyError if absent)."""
        with self._lock:
            return self._repos[(repo_type, repo_id)]

    def find(self, repo_type: str, repo_id: str) -> HubRepo | None:
        with self._lock:
            return self._repos.get((repo_type, repo_id))

    def repos(self) -> list[HubRepo]:
        """Every repo, in creation order."""
        with self._lock:
            return list(self._repos.values())

    def remove_repo(self, repo_type: str, repo_id: str) -> None:
        with self._lock:
            del self._repos[(repo_type, repo_id)]

    def rename_repo(self, repo_type: str, old_id: str, new_id: str) -> HubRepo:
        """Give a repo a new id; the old one is remembered for the rename redirect."""
        with self._lock:
            if (repo_type, new_id) in self._repos:
                raise ValueError(f"{repo_type} repo {new_id!r} already exists")
            repo = self._repos.pop((repo_type, old_id))
            repo.repo_id = new_id
            self._repos[(repo_type, new_id)] = repo
            self._renames[(repo_type, old_id)] = new_id
            return repo

    def renamed_to(self, repo_type: str, repo_id: str) -> str | None:
        """The new id of a renamed repo (None if it exists under ``repo_id`` or never did)."""
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                return None
            return self._renames.get((repo_type, repo_id))

    # -- tokens ----------------------------------------------------------------------------------

    def add_token(self, token: str, grants: Iterable[_Key] | None) -> None:
        """Accept ``token``; it may read the gated or private repos ``grants`` (more of them on
        each call), or every repo (``None``)."""
        with self._lock:
            if grants is None:
                self._tokens[token] = None
                return
            current = self._tokens.setdefault(token, set())
            if current is not None:
                current.update(grants)

    def token_known(self, token: str) -> bool:
        with self._lock:
            return token in self._tokens

    def granted(self, token: str, repo: HubRepo) -> bool:
        """May ``token`` read the gated or private ``repo``?"""
        with self._lock:
            if token not in self._tokens:
                return False
            grants = self._tokens[token]
            return grants is None or (repo.repo_type, repo.repo_id) in grants

    # -- the CDN ---------------------------------------------------------------------------------

    def register_blob(self, repo: HubRepo, path: str, content: Content) -> str:
        """The CDN key of an LFS file's content (registered on first use)."""
        raw = f"{repo.repo_type}/{repo.repo_id}\0{content.identity}".encode()
        key = hashlib.sha1(raw, usedforsecurity=False).hexdigest()
        with self._lock:
            self._blobs.setdefault(key, (content, repo.repo_id, path))
        return key

    def blob(self, key: str) -> tuple[Content, str, str] | None:
        """(content, repo id, file path) of a CDN key."""
        with self._lock:
            return self._blobs.get(key)

    def variant(self, content: Content) -> Content:
        """The changed version of ``content`` served by the "change" fault (cached: its
        digests are computed once)."""
        with self._lock:
            return self._variants.setdefault(content.identity, VariantContent(content))

    def set_static_file(self, name: str, content: Content) -> None:
        """Serve ``content`` as the plain file ``name`` (replacing one of that name)."""
        with self._lock:
            self._static[name] = content

    def static_file(self, name: str) -> Content | None:
        with self._lock:
            return self._static.get(name)

    def __len__(self) -> int:
        with self._lock:
            return len(self._repos)
