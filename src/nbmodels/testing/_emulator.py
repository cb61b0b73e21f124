"""The :class:`HubEmulator`: repos, tokens, faults, throttling and the two HTTP origins."""

from __future__ import annotations

import fnmatch
import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

from ._builders import RepoLayouts
from ._content import Content, as_content
from ._demo import StandardRepos, standard_repos
from ._faults import Fault, Faults, Origin
from ._http import OriginServer, Request, Response
from ._log import RequestLog, RequestRecord
from ._repo import (
    DEFAULT_LFS_PATTERNS,
    DEFAULT_LFS_THRESHOLD,
    URL_PREFIX,
    FileValue,
    HubRepo,
    RepoType,
)
from ._routes import Router, error
from ._store import HubStore

__all__ = ["HubEmulator"]


class _ServerApp:
    """The face the HTTP servers see (keeps server plumbing out of the public class)."""

    def __init__(self, hub: HubEmulator) -> None:
        self.hub = hub
        self.faults = hub.faults
        self.log = hub._log
        self.closing = hub._closing
        self.router = Router(hub._store, hub)

    def handle(self, request: Request, *, variant: bool, ignore_range: bool) -> Response:
        return self.router.handle(request, variant=variant, ignore_range=ignore_range)

    def fault_response(self, request: Request, fault: Fault) -> Response:
        headers = []
        if (retry_after := fault.retry_after_header()) is not None:
            headers.append(("Retry-After", retry_after))
        message = fault.message or f"Injected fault: HTTP {fault.status}"
        return error(fault.status, fault.error_code, message, headers)

    def throttle_rate(self, origin: str, file_path: str | None) -> int | None:
        return self.hub._throttle_rate(origin, file_path)

    def record_error(self, text: str) -> None:
        with self.hub._lock:
            self.hub.server_errors.append(text)


class HubEmulator(RepoLayouts):
    """A local Hugging Face Hub over real HTTP on 127.0.0.1: a Hub origin and a CDN origin.

    Use it as a context manager (or call :meth:`start` / :meth:`close`)::

        with HubEmulator() as hub:
            hub.add_repo("org/model", {"model.bin": GeneratedFile(50_000_000, seed=1)})
            hf_hub_download("org/model", "model.bin", endpoint=hub.endpoint)

    It answers as HUB.md describes: ``resolve`` URLs (git files directly, LFS files with a 302 to
    the CDN origin), the listing API with small pages, refs, errors with ``X-Error-Code``, gated
    and private repos. Every request is logged (:attr:`requests`), faults can be injected
    (:attr:`faults`) and the CDN can be throttled per connection (:attr:`throttle`). It never
    contacts another host, and :meth:`close` joins every thread it started.

    Args:
        page_size: entries per page of the ``/tree`` API (the real Hub uses 1000).
        lfs_threshold: default size from which files are stored with LFS.
        host: the loopback address to bind (both origins).
        hub_port, cdn_port: fixed ports for the two origins (default 0: any free port).
    """

    def __init__(
        self,
        *,
        page_size: int = 50,
        lfs_threshold: int = DEFAULT_LFS_THRESHOLD,
        host: str = "127.0.0.1",
        hub_port: int = 0,
        cdn_port: int = 0,
    ) -> None:
        self.page_size = page_size
        self.lfs_threshold = lfs_threshold
        self.host = host
        self._ports = (hub_port, cdn_port)
        self.faults = Faults()
        """The active fault switches: ``hub.faults.add(Fault(...))``."""
        self.server_errors: list[str] = []
        """Tracebacks of unexpected exceptions inside the emulator (should stay empty)."""
        self.standard: StandardRepos | None = None
        """Set by :func:`standard_repos`: the ids and tokens of the standard test repos."""
        self._lock = threading.RLock()
        self._log = RequestLog()
        self._closing = threading.Event()
        self._store = HubStore()
        self._throttles: list[tuple[str, str, int]] = []
        self._hub_server: OriginServer | None = None
        self._cdn_server: OriginServer | None = None
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------------

    @classmethod
    def with_standard_repos(cls, **kwargs: Any) -> HubEmulator:
        """A new (not yet started) emulator holding :func:`standard_repos`."""
        hub = cls(**kwargs)
        standard_repos(hub)
        return hub

    def start(self) -> Self:
        """Bind both origins on ephemeral ports and start serving (idempotent)."""
        if self._closed:
            raise RuntimeError("this HubEmulator was closed; create a new one")
        if self._hub_server is None:
            app = _ServerApp(self)
            self._hub_server = OriginServer(app, "hub", self.host, self._ports[0])
            self._cdn_server = OriginServer(app, "cdn", self.host, self._ports[1])
            self._hub_server.start()
            self._cdn_server.start()
        return self

    def close(self) -> None:
        """Stop both origins, drop open connections, release stalls and join every thread.

        Raises RuntimeError if a thread did not end within a few seconds (an emulator bug).
        """
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        self.faults.clear()
        stuck: list[str] = []
        for server in (self._hub_server, self._cdn_server):
            if server is not None:
                stuck += server.stop()
        if stuck:
            raise RuntimeError(f"HubEmulator threads did not stop: {stuck}")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def endpoint(self) -> str:
        """The Hub origin, ``http://127.0.0.1:PORT`` (use as ``HF_ENDPOINT``)."""
        if self._hub_server is None:
            raise RuntimeError("HubEmulator is not started: use `with HubEmulator() as hub:`")
        return self._hub_server.url

    @property
    def cdn_url(self) -> str:
        """The CDN origin that LFS files redirect to (another port: no auth ever goes there)."""
        if self._cdn_server is None:
            raise RuntimeError("HubEmulator is not started: use `with HubEmulator() as hub:`")
        return self._cdn_server.url

    # -- repos ---------------------------------------------------------------------------------

    def add_repo(
        self,
        repo_id: str,
        files: Mapping[str, FileValue] | None = None,
        *,
        repo_type: RepoType = "model",
        gated: bool | str = False,
        private: bool = False,
        disabled: bool = False,
        branch: str = "main",
        lfs_threshold: int | None = None,
        lfs_patterns: Iterable[str] = DEFAULT_LFS_PATTERNS,
        message: str = "Initial commit",
        info: Mapping[str, object] | None = None,
    ) -> HubRepo:
        """Create a repo with one commit of ``files`` on ``branch`` and return it.

        Args:
            repo_id: ``"org/name"`` (or a legacy ``"name"``).
            files: path -> bytes, str, :class:`GeneratedFile` or :class:`HubFile` (to force
                ``lfs=True/False``).
            repo_type: ``"model"``, ``"dataset"`` or ``"space"``.
            gated: True (``"manual"``), ``"auto"`` or False; downloads need a granted token.
            private: invisible (401 RepoNotFound) without a granted token.
            disabled: answers 403 "Access to this resource is disabled.".
            branch: the branch of the first commit.
            lfs_threshold: files of this size or more are LFS (default: the emulator's).
            lfs_patterns: file name patterns that are LFS whatever their size.
            message: the commit message.
            info: extra keys for the ``/api/{type}s/{id}`` answer (e.g. ``{"gguf": {...}}``).
        """
        repo = HubRepo(
            repo_id,
            repo_type=repo_type,
            gated=gated,
            private=private,
            disabled=disabled,
            lfs_threshold=self.lfs_threshold if lfs_threshold is None else lfs_threshold,
            lfs_patterns=lfs_patterns,
            info=info,
        )
        if self._store.find(repo_type, repo_id) is not None:
            raise ValueError(f"{repo_type} repo {repo_id!r} already exists")
        repo.commit(files or {}, branch=branch, message=message)
        self._store.add_repo(repo)
        return repo

    def _add_layout(
        self,
        repo_id: str,
        files: Mapping[str, FileValue],
        info: Mapping[str, object],
        repo_kwargs: dict[str, Any],
    ) -> HubRepo:
        """(:class:`RepoLayouts`) Add a GGUF or safetensors repo."""
        info = {**info, **repo_kwargs.pop("info", {})}
        return self.add_repo(repo_id, files, info=info, **repo_kwargs)

    def repo(self, repo_id: str, repo_type: RepoType = "model") -> HubRepo:
        """The repo with this id (KeyError if absent)."""
        return self._store.repo(repo_type, repo_id)

    @property
    def repos(self) -> list[HubRepo]:
        """Every repo, in creation order."""
        return self._store.repos()

    def remove_repo(self, repo_id: str, repo_type: RepoType = "model") -> None:
        """Delete a repo: it answers 401 RepoNotFound from now on."""
        self._store.remove_repo(repo_type, repo_id)

    def rename_repo(self, old_id: str, new_id: str, repo_type: RepoType = "model") -> HubRepo:
        """Rename a repo; requests for ``old_id`` get a relative 307 to ``new_id`` (the Hub's
        rename hop)."""
        return self._store.rename_repo(repo_type, old_id, new_id)

    def serve_file(self, name: str, content: bytes | str | Content) -> str:
        """Serve a plain file on the CDN origin (for plain-URL downloads); return its URL.

        Calling it again with the same name replaces the content (and its ETag).
        """
        self._store.set_static_file(name, as_content(content))
        return f"{self.cdn_url}/files/{quote(name)}"

    def resolve_url(
        self, repo_id: str, path: str, *, revision: str = "main", repo_type: RepoType = "model"
    ) -> str:
        """The ``/resolve`` URL of a file, as huggingface_hub builds it."""
        return (
            f"{self.endpoint}/{URL_PREFIX[repo_type]}{repo_id}/resolve/"
            f"{quote(revision, safe='')}/{quote(path)}"
        )

    def precompute_digests(self) -> None:
        """Compute every file's digests now (they are otherwise computed on first request,
        which for multi-GB files takes a few seconds)."""
        for repo in self.repos:
            for sha in list(repo._commits):
                for entry in repo.get_commit(sha).files.values():
                    _ = entry.etag

    # -- tokens --------------------------------------------------------------------------------

    def add_token(
        self,
        token: str,
        grants: Iterable[str] = (),
        *,
        all_repos: bool = False,
        repo_type: RepoType = "model",
    ) -> None:
        """Accept ``Authorization: Bearer <token>``; it may read gated/private ``grants``
        (repo ids of ``repo_type``) or every repo (``all_repos``). Unknown tokens get 401."""
        self._store.add_token(token, None if all_repos else [(repo_type, g) for g in grants])

    def grant(self, token: str, repo_id: str, repo_type: RepoType = "model") -> None:
        """Let an existing token read a gated or private repo (accepting its terms)."""
        self.add_token(token, [repo_id], repo_type=repo_type)

    # -- throttling ----------------------------------------------------------------------------

    @property
    def throttle(self) -> int | None:
        """CDN rate limit in bytes/s per TCP connection (None: unlimited)."""
        with self._lock:
            for origin, glob, rate in self._throttles:
                if (origin, glob) == ("cdn", "*"):
                    return rate
            return None

    @throttle.setter
    def throttle(self, rate: int | None) -> None:
        self.set_throttle(rate)

    def set_throttle(
        self, rate: int | None, *, origin: Origin = "cdn", path_glob: str = "*"
    ) -> None:
        """Limit file bodies on ``origin`` (``"hub"`` for git files, ``"cdn"``, ``"any"``)
        matching ``path_glob`` to ``rate`` bytes/s per TCP connection (token bucket, 50 ms
        burst). The most recently set matching rule wins; ``rate=None`` removes the rule."""
        if rate is not None and rate <= 0:
            raise ValueError("throttle rate must be > 0 bytes/s (or None)")
        with self._lock:
            self._throttles = [t for t in self._throttles if t[:2] != (origin, path_glob)]
            if rate is not None:
                self._throttles.append((origin, path_glob, rate))

    def _throttle_rate(self, origin: str, file_path: str | None) -> int | None:
        with self._lock:
            for rule_origin, glob, rate in reversed(self._throttles):
                if rule_origin not in ("any", origin):
                    continue
                if glob == "*" or (file_path is not None and fnmatch.fnmatchcase(file_path, glob)):
                    return rate
        return None

    # -- the log -------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """Every request answered so far (a copy, oldest first)."""
        return self._log.snapshot()

    def clear_log(self) -> None:
        """Forget the logged requests."""
        self._log.clear()

    def reset(self) -> None:
        """Clear faults, throttles, the request log and recorded server errors (not repos)."""
        self.faults.clear()
        with self._lock:
            self._throttles.clear()
            self.server_errors.clear()
        self._log.clear()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("running" if self._hub_server else "not started")
        where = f" {self.endpoint}" if self._hub_server and not self._closed else ""
        return f"<HubEmulator {state}{where} repos={len(self._store)}>"
