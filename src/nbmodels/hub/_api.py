"""The few Hub API calls resolution needs (HUB.md): the commit of a revision, the file tree, and
paths-info — over our own httpx2 client.

Why not ``HfApi``: huggingface_hub follows a tree listing's ``Link: rel="next"`` with the same
headers wherever it points, so a hostile or misconfigured endpoint could collect the token from
another origin. Here every request (first page or next) carries the credential only when its
origin is the endpoint's (docs/download-contract.md, rule 5). Token lookup and the cache layout
still come from huggingface_hub.

Every value from the server is validated before it is used: commit hashes are 40 hex digits,
paths are safe relative paths, sizes are non-negative integers, digests are hex.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httpx2

from .._config import Settings
from .._paths import UnsafePathError, safe_commit, safe_relpath
from .._redact import redact_text, redact_url
from ..errors import AccessError, NbmodelsError, NetworkError, NotFoundError, RepoNotFoundError
from ..net import (
    Credential,
    RetryableError,
    encoded_body,
    origin_of,
    parse_retry_after,
    retryable_status,
    with_retries,
)
from ..refs import REPO_URL_PREFIX, ModelRef

__all__ = [
    "LARGE_REPO",
    "HubApi",
    "HubEntry",
    "RepoInfo",
    "find_repo",
    "gated_error",
    "hub_error",
]

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX40 = re.compile(r"[0-9a-f]{40}")
_TYPE_PLURAL = {"model": "models", "dataset": "datasets", "space": "spaces"}
_TYPE_PREFIX = REPO_URL_PREFIX
MAX_PAGES = 1000
MAX_BODY = 64 * 1024 * 1024
#: From this many files on, the Hub may truncate a repository's ``siblings`` (huggingface_hub
#: stops trusting them there too: its ``snapshot_download`` then lists the tree).
LARGE_REPO = 1000


@dataclass(frozen=True, slots=True)
class HubEntry:
    """A file of a repo at a commit, with what verification needs."""

    path: str
    size: int
    blob_id: str  # git blob SHA-1
    sha256: str | None  # LFS files only

    @property
    def etag(self) -> str:
        """The cache blob name huggingface_hub uses: sha256 for LFS files, else the git SHA-1."""
        return self.sha256 or self.blob_id


@dataclass(frozen=True, slots=True)
class RepoInfo:
    """What one ``GET /api/{type}/{repo}[/revision/{rev}]`` says.

    ``files`` is the repository's file list (its ``siblings``) when the Hub sent a usable one:
    present, not empty and shorter than :data:`LARGE_REPO`; None means "list the tree".
    """

    commit: str
    gated: bool
    files: tuple[str, ...] | None


def repo_page(endpoint: str, repo_type: str, repo_id: str) -> str:
    return f"{endpoint}/{_TYPE_PREFIX[repo_type]}{repo_id}"


def hub_error(
    response: httpx2.Response,
    *,
    endpoint: str,
    repo_type: str,
    repo_id: str,
    revision: str | None = None,
    path: str | None = None,
    token_sent: bool,
    retry_after_cap: float = 60.0,
) -> NbmodelsError | RetryableError:
    """Map a Hub error response to the nbmodels error (the one place this is decided); which
    answers are worth another try is :func:`nbmodels.net.retryable_status`'s rule, as for every
    other request."""
    status = response.status_code
    code = response.headers.get("X-Error-Code", "")
    message = redact_text(response.headers.get("X-Error-Message", ""))[:300]
    page = repo_page(endpoint, repo_type, repo_id)
    what = f"{_TYPE_PREFIX[repo_type]}{repo_id}"
    if retryable_status(status):
        wait = parse_retry_after(response.headers.get("Retry-After"), cap=retry_after_cap)
        reason = "rate limited by the Hub" if status == 429 else f"the Hub answered {status}"
        return RetryableError(reason, retry_after=wait)
    if code == "GatedRepo":
        return gated_error(endpoint, repo_type, repo_id, token_sent=token_sent)
    if message == "Access to this resource is disabled.":
        return AccessError(f"{what} has been disabled on the Hub.", hint="Choose another repo.")
    if code == "RepoNotFound" or (status in (401, 404) and not code and path is None):
        hint = (
            "Check the spelling. If it is private, your token has no access to it."
            if token_sent
            else "Check the spelling. If it is private or gated, set HF_TOKEN "
            "(or run `hf auth login`) and try again."
        )
        return RepoNotFoundError(
            f"Repository {what} was not found on {endpoint} (or it is private).", hint=hint
        )
    if code == "RevisionNotFound":
        return NotFoundError(
            f"Revision {revision!r} does not exist in {what}.",
            hint="Use a branch, tag or commit that exists (see the repo's 'Files and versions').",
        )
    if code == "EntryNotFound" or status == 404:
        return NotFoundError(
            f"{path or 'The file'} does not exist in {what} at {revision or 'main'}.",
            hint=f"See the files at {page}/tree/{quote(revision or 'main', safe='')}.",
        )
    if status in (401, 403):
        return AccessError(
            f"The Hub refused access to {what} ({status}{': ' + message if message else ''}).",
            hint="Set HF_TOKEN (or run `hf auth login`) with a token that can read it.",
        )
    return NetworkError(
        f"The Hub answered HTTP {status} for {what}{': ' + message if message else ''}."
    )


def gated_error(endpoint: str, repo_type: str, repo_id: str, *, token_sent: bool) -> AccessError:
    """A gated repository the caller may not read (yet): where to accept its terms."""
    page = repo_page(endpoint, repo_type, repo_id)
    return AccessError(
        f"{_TYPE_PREFIX[repo_type]}{repo_id} is gated: you must accept its terms before "
        "downloading.",
        hint=(
            f"Open {page}, accept the conditions while logged in, then "
            + (
                "check that your token belongs to that account."
                if token_sent
                else "set HF_TOKEN (or run `hf auth login`) with a token of that account."
            )
        ),
    )


class HubApi:
    """Async calls to one Hub endpoint for one repo."""

    def __init__(
        self,
        client: httpx2.AsyncClient,
        settings: Settings,
        *,
        endpoint: str,
        repo_type: str,
        repo_id: str,
        credential: Credential | None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.endpoint = endpoint
        self.repo_type = repo_type
        self.repo_id = repo_id
        self.credential = credential
        self.requests = 0
        self._base = f"{endpoint}/api/{_TYPE_PLURAL[repo_type]}/{repo_id}"
        self._info: dict[str | None, RepoInfo] = {}

    @property
    def token_sent(self) -> bool:
        """Whether requests to the endpoint carry a token."""
        return self.credential is not None and bool(self.credential.headers_for(self._base))

    def error_for(self, response: httpx2.Response, **ctx: Any) -> NbmodelsError | RetryableError:
        return hub_error(
            response,
            endpoint=self.endpoint,
            repo_type=self.repo_type,
            repo_id=self.repo_id,
            token_sent=self.credential is not None
            and bool(self.credential.headers_for(str(response.request.url))),
            retry_after_cap=self.settings.retry_after_cap,
            **ctx,
        )

    def file_url(self, commit: str, path: str) -> str:
        """The ``resolve`` URL of a file at a commit (LFS files redirect to a CDN, which never
        receives the credential)."""
        return f"{self.endpoint}/{_TYPE_PREFIX[self.repo_type]}{self.repo_id}/resolve/{commit}/" + (
            quote(path)
        )

    def file_errors(self, commit: str, path: str) -> Callable[[httpx2.Response], Exception | None]:
        """How to read an error answer for that file: the Hub's own answers (gated, missing,
        rate limited) get the Hub's messages; a CDN's are left to the HTTP layer (None)."""
        endpoint = origin_of(self.endpoint)

        def on_error(response: httpx2.Response) -> Exception | None:
            if origin_of(str(response.request.url)) != endpoint:
                return None
            return self.error_for(response, revision=commit, path=path)

        return on_error

    async def _request(self, method: str, url: str, **kwargs: Any) -> tuple[Any, httpx2.Response]:
        """One JSON request with retries on transient failures; redirects are not followed."""
        ctx = kwargs.pop("ctx", {})
        try:
            origin_of(url)
        except ValueError as exc:  # not http(s)
            raise NetworkError(f"Refusing to call {redact_url(url)}: {exc}.") from exc
        return await with_retries(
            lambda: self._request_once(method, url, ctx, **kwargs),
            self.settings,
            what=f"list {self.repo_id}",
            where=redact_url(self.endpoint),
            hint="Check the network (or HF_ENDPOINT) and try again; "
            "files already on disk stay usable offline.",
        )

    async def _request_once(
        self, method: str, url: str, ctx: dict[str, Any], **kwargs: Any
    ) -> tuple[Any, httpx2.Response]:
        response = await self._send_following_renames(method, url, kwargs)
        url = str(response.url)
        try:
            if response.status_code >= 400:
                raise self.error_for(response, **ctx)
            if response.status_code != 200:
                raise NetworkError(
                    f"The Hub answered {response.status_code} to {redact_url(url)}; expected 200."
                )
            if (encoded := encoded_body(response.headers, redact_url(url))) is not None:
                raise encoded
            body = bytearray()
            async for chunk in response.aiter_raw():  # bounded while reading
                body += chunk
                if len(body) > MAX_BODY:
                    raise NetworkError(f"The Hub's answer to {redact_url(url)} is too large.")
        finally:
            await response.aclose()
        try:
            return json.loads(body), response
        except ValueError as exc:
            raise NetworkError(f"The Hub's answer to {redact_url(url)} is not valid JSON.") from exc

    async def _send_following_renames(
        self, method: str, url: str, kwargs: dict[str, Any]
    ) -> httpx2.Response:
        """Send, following redirects that stay on the endpoint's origin: the Hub's answer for a
        renamed repository (``gpt2`` -> ``openai-community/gpt2``). A redirect elsewhere is
        not followed (the caller reports the 3xx)."""
        endpoint = origin_of(self.endpoint)
        for _hop in range(self.settings.max_redirects + 1):
            headers = {"Accept": "application/json"}
            if self.credential is not None:
                headers.update(self.credential.headers_for(url))
            self.requests += 1
            request = self.client.build_request(method, url, headers=headers, **kwargs)
            response = await self.client.send(request, stream=True)
            location = response.headers.get("Location")
            if not response.is_redirect or location is None:
                return response
            try:
                target = urljoin(url, location)
                same = origin_of(target) == endpoint
            except ValueError:
                same = False
            if not same:
                return response
            await response.aclose()
            url = target
        raise NetworkError(
            f"Too many redirects (more than {self.settings.max_redirects}) from the Hub for "
            f"{self.repo_id}."
        )

    async def commit(self, revision: str | None) -> str:
        """The 40-hex commit a revision points to (the default branch when None)."""
        return (await self.info(revision)).commit

    async def info(self, revision: str | None) -> RepoInfo:
        """The repository at a revision (the default branch when None): its commit, whether it
        is gated, and its file list when usable. Asked once per revision and HubApi."""
        if revision in self._info:
            return self._info[revision]
        url = (
            self._base if revision is None else f"{self._base}/revision/{quote(revision, safe='')}"
        )
        data, _ = await self._request("GET", url, ctx={"revision": revision})
        if not isinstance(data, dict):
            raise NetworkError(f"The Hub's description of {self.repo_id} is not an object.")
        try:
            commit = safe_commit(str(data.get("sha")))
        except UnsafePathError as exc:
            raise NetworkError(
                f"The Hub returned an invalid commit for {self.repo_id}: {exc}."
            ) from exc
        gated = data.get("gated")
        info = RepoInfo(commit, bool(gated) and gated != "false", _siblings(data.get("siblings")))
        self._info[revision] = info
        return info

    async def tree(
        self, commit: str, folder: str | None = None, recursive: bool = True
    ) -> list[HubEntry]:
        """Every file under ``folder`` (the whole repo when None) at ``commit``, following
        pagination (its ``Link`` may point anywhere; the token only goes to the endpoint)."""
        url = f"{self._base}/tree/{quote(commit, safe='')}"
        if folder:
            url += "/" + quote(folder, safe="")
        params: dict[str, str] | None = {"recursive": str(recursive).lower(), "expand": "false"}
        out: list[HubEntry] = []
        for _page in range(MAX_PAGES):
            data, response = await self._request(
                "GET", url, params=params, ctx={"revision": commit, "path": folder}
            )
            if not isinstance(data, list):
                raise NetworkError(f"The Hub's tree listing of {self.repo_id} is not a list.")
            out.extend(e for e in (_entry(x) for x in data) if e is not None)
            nxt = response.links.get("next", {}).get("url")
            if not nxt:
                return out
            try:
                url = urljoin(str(response.url), nxt)
                origin_of(url)
            except ValueError:
                raise NetworkError(
                    f"The Hub's tree listing of {self.repo_id} links to an unusable next page."
                ) from None
            if urlsplit(self.endpoint).scheme == "https" and urlsplit(url).scheme != "https":
                raise NetworkError(
                    f"The Hub's listing of {self.repo_id} continues over plain http "
                    f"({redact_url(url)}); refusing the downgrade."
                )
            params = None  # the next link carries its own query
        raise NetworkError(f"The Hub's tree listing of {self.repo_id} has too many pages.")

    async def paths_info(self, commit: str, paths: list[str]) -> list[HubEntry]:
        """Entries for exactly these paths (missing ones are left out)."""
        url = f"{self._base}/paths-info/{quote(commit, safe='')}"
        data, _ = await self._request(
            "POST",
            url,
            data={"paths": paths, "expand": "false"},
            ctx={"revision": commit, "path": paths[0] if paths else None},
        )
        if not isinstance(data, list):
            raise NetworkError(f"The Hub's paths-info answer for {self.repo_id} is not a list.")
        return [e for e in (_entry(x) for x in data) if e is not None]


async def find_repo(
    readings: Sequence[ModelRef],
    revision: str | None,
    make_api: Callable[[ModelRef], HubApi],
) -> tuple[ModelRef, HubApi, RepoInfo]:
    """The first reading whose repository the Hub knows, its API and its :class:`RepoInfo`.

    A reading the Hub answers "repository not found" for passes to the next (one request
    each); any other error (a missing revision, a network failure) is the answer. When no
    reading exists, the error names every repository that was tried.
    """
    missing: list[RepoNotFoundError] = []
    for reading in readings:
        api = make_api(reading)
        try:
            return reading, api, await api.info(revision)
        except RepoNotFoundError as exc:
            missing.append(exc)
    if len(missing) == 1:
        raise missing[0]
    tried = " nor ".join(
        f"{r.repo_url_path}" + (f" (with {r.path})" if r.path and r is not readings[0] else "")
        for r in readings
    )
    where = make_api(readings[0]).endpoint
    raise RepoNotFoundError(
        f"Neither repository {tried} was found on {where} (or they are private).",
        hint=missing[0].hint,
    )


def _siblings(raw: object) -> tuple[str, ...] | None:
    """The ``siblings`` file names, validated; None when absent, empty or possibly truncated."""
    if not isinstance(raw, list) or not 0 < len(raw) < LARGE_REPO:
        return None
    names: list[str] = []
    for item in raw:
        name = item.get("rfilename") if isinstance(item, dict) else None
        if not isinstance(name, str):
            raise NetworkError("The Hub returned a malformed file list.")
        try:
            names.append(safe_relpath(name))
        except UnsafePathError as exc:
            raise NetworkError(f"The Hub returned an unsafe file path: {exc}.") from None
    return tuple(names)


def _entry(raw: object) -> HubEntry | None:
    """Validate one tree / paths-info item; None for directories."""
    if not isinstance(raw, dict):
        raise NetworkError("The Hub returned a malformed file entry.")
    if raw.get("type") == "directory":
        return None
    path, size, oid = raw.get("path"), raw.get("size"), raw.get("oid")
    lfs = raw.get("lfs")
    try:
        safe_relpath(str(path))
    except UnsafePathError as exc:
        raise NetworkError(f"The Hub returned an unsafe file path: {exc}.") from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise NetworkError(f"The Hub returned an invalid size for {path!r}.")
    if not isinstance(oid, str) or not _HEX40.fullmatch(oid):
        raise NetworkError(f"The Hub returned an invalid blob id for {path!r}.")
    sha256: str | None = None
    if isinstance(lfs, dict):
        sha256 = lfs.get("oid") or lfs.get("sha256")
        lsize = lfs.get("size", size)
        if not isinstance(sha256, str) or not _HEX64.fullmatch(sha256):
            raise NetworkError(f"The Hub returned an invalid sha256 for {path!r}.")
        if lsize != size:
            if not isinstance(lsize, int) or lsize < 0:
                raise NetworkError(f"The Hub returned an invalid LFS size for {path!r}.")
            size = lsize
    return HubEntry(path=str(path), size=size, blob_id=oid, sha256=sha256)
