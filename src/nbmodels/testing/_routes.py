"""The Hub protocol (see HUB.md): resolve URLs, the listing API, errors, and the CDN origin.

:class:`Router` turns a :class:`Request` into a :class:`Response` from what the emulator holds
(:class:`~._store.HubStore`) and has no side effects other than registering CDN blobs; the
server applies faults and writes the answer.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol
from urllib.parse import parse_qs, parse_qsl, quote, unquote, urlencode

from ._content import Content
from ._http import ContentBody, Request, Response
from ._repo import URL_PREFIX, Commit, FileEntry, HubRepo, RepoType
from ._server import parse_range
from ._store import HubStore

__all__ = ["Router", "Site", "error"]

_TYPES: Mapping[str, RepoType] = {"models": "model", "datasets": "dataset", "spaces": "space"}
_API_ROUTES = frozenset({"revision", "tree", "paths-info", "refs", ""})
_LAST_MODIFIED = "Mon, 01 Jan 2024 00:00:00 GMT"


def _iso(date: datetime) -> str:
    return date.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _json(data: object, status: int = 200, headers: Sequence[tuple[str, str]] = ()) -> Response:
    body = json.dumps(data, separators=(",", ":")).encode()
    return Response(status, [("Content-Type", "application/json; charset=utf-8"), *headers], body)


def ascii_header(value: str) -> str:
    """A header-safe version of ``value`` (HTTP/1.1 headers are Latin-1: escape the rest)."""
    return (
        value.encode("ascii", "backslashreplace")
        .decode("ascii")
        .replace("\r", " ")
        .replace("\n", " ")
    )


def error(
    status: int,
    code: str | None,
    message: str,
    headers: Sequence[tuple[str, str]] = (),
) -> Response:
    """An error answer as the Hub sends it: ``X-Error-Code``, ``X-Error-Message``, JSON body."""
    extra = [("X-Error-Message", ascii_header(message))]
    if code is not None:
        extra.insert(0, ("X-Error-Code", code))
    return _json({"error": message}, status, [*extra, *headers])


def _content_type(path: str) -> str:
    if path.endswith((".json", ".jsonl")):
        return "application/json"
    if path.endswith((".md", ".txt", ".jinja", ".yaml", ".yml", ".py")):
        return "text/plain; charset=utf-8"
    guessed, _ = mimetypes.guess_type(path, strict=True)
    return guessed or "application/octet-stream"


def content_response(
    request: Request,
    content: Content,
    etag: str,
    *,
    path: str,
    headers: Sequence[tuple[str, str]] = (),
    ignore_range: bool = False,
) -> Response:
    """200 / 206 / 416 for (a range of) ``content``, with ETag and Accept-Ranges."""
    size = content.size
    base = [
        ("Accept-Ranges", "bytes"),
        ("ETag", f'"{etag}"'),
        ("Content-Type", _content_type(path)),
        *headers,
    ]
    wanted = None if ignore_range else request.headers.get("range")
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != f'"{etag}"':
        wanted = None  # the client's copy is stale: send the whole (new) file
    parsed = parse_range(wanted, size)
    if parsed == "unsatisfiable":
        return Response(416, [*base, ("Content-Range", f"bytes */{size}")], b"", is_file=True)
    if parsed is not None:
        start, end = parsed
        return Response(
            206,
            [*base, ("Content-Range", f"bytes {start}-{end}/{size}")],
            ContentBody(content, start, end + 1),
            is_file=True,
        )
    return Response(200, base, ContentBody(content, 0, size), is_file=True)


class Site(Protocol):
    """Where the emulator answers (the URLs in redirects, ``Link`` headers and messages) and
    how long a page of the listing API is."""

    @property
    def endpoint(self) -> str: ...

    @property
    def cdn_url(self) -> str: ...

    @property
    def page_size(self) -> int: ...


class Router:
    """Answers requests for both origins of one emulator: reads ``store`` (and registers CDN
    blobs in it), builds URLs from ``site``."""

    def __init__(self, store: HubStore, site: Site) -> None:
        self.store = store
        self.site = site

    def handle(self, request: Request, *, variant: bool, ignore_range: bool) -> Response:
        """Route a request to the hub or CDN handlers."""
        if request.origin == "cdn":
            response = self._cdn(request, variant=variant, ignore_range=ignore_range)
        else:
            response = self._hub(request, variant=variant, ignore_range=ignore_range)
        return response

    # -- the Hub origin ------------------------------------------------------------------------

    def _hub(self, request: Request, *, variant: bool, ignore_range: bool) -> Response:
        path = request.path
        if path.startswith("/api/"):
            segs = path[len("/api/") :].split("/")
            if segs[0] in _TYPES and len(segs) >= 2 and segs[1]:
                return self._api(request, _TYPES[segs[0]], segs[1:])
            if segs == ["whoami-v2"]:
                return self._whoami(request)
            return error(404, None, "Not Found")
        segs = path.lstrip("/").split("/")
        repo_type: RepoType = "model"
        if segs[0] in ("datasets", "spaces") and len(segs) > 3:
            repo_type = _TYPES[segs[0]]
            segs = segs[1:]
        n = self._repo_segments(repo_type, segs, marker="resolve")
        if n is None or len(segs) < n + 3:
            return error(404, None, "Not Found")
        repo_id = unquote("/".join(segs[:n]))
        revision = unquote(segs[n + 1])
        file_path = unquote("/".join(segs[n + 2 :]))
        return self._resolve(
            request, repo_type, repo_id, revision, file_path, variant, ignore_range
        )

    def _repo_segments(self, repo_type: RepoType, segs: list[str], marker: str) -> int | None:
        """How many leading segments form the repo id (1 or 2), preferring an existing repo."""
        options = [n for n in (2, 1) if len(segs) > n and segs[n] == marker]
        for n in options:
            if self.store.find(repo_type, unquote("/".join(segs[:n]))) is not None:
                return n
        return options[0] if options else None

    def _gate(
        self, request: Request, repo_type: RepoType, repo_id: str, *, content: bool
    ) -> HubRepo | Response:
        """The repo, or the error a client without access gets (RepoNotFound, GatedRepo...)."""
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        if token is not None and not self.store.token_known(token):
            return error(401, None, "Invalid credentials in Authorization header")
        repo = self.store.find(repo_type, repo_id)
        not_found = error(401, "RepoNotFound", "Repository not found")
        if repo is None:
            return not_found
        granted = token is not None and self.store.granted(token, repo)
        if repo.private and not granted:
            return not_found
        if repo.disabled:
            return error(403, None, "Access to this resource is disabled.")
        if content and repo.gated and not granted:
            kind = {"model": "model", "dataset": "dataset", "space": "space"}[repo.repo_type]
            if token is None:
                message = (
                    f"Access to {kind} {repo_id} is restricted. You must have access to it and be "
                    "authenticated to access it. Please log in."
                )
                return error(401, "GatedRepo", message)
            page = f"{self.site.endpoint}/{URL_PREFIX[repo_type]}{repo_id}"
            message = (
                f"Access to {kind} {repo_id} is restricted and you are not in the authorized "
                f"list. Visit {page} to ask for access."
            )
            return error(403, "GatedRepo", message)
        return repo

    def _renamed(self, request: Request, repo_type: RepoType, repo_id: str) -> Response | None:
        """A relative 307 to the new name if ``repo_id`` was renamed, as the Hub does."""
        new_id = self.store.renamed_to(repo_type, repo_id)
        if new_id is None:
            return None
        old = re.escape(quote(repo_id, safe="/"))
        location = re.sub(f"/{old}(?=/|$)", f"/{quote(new_id, safe='/')}", request.path, count=1)
        if request.query:
            location += "?" + request.query
        return Response(307, [("Location", location)], b"", repo_id=repo_id)

    def _resolve(
        self,
        request: Request,
        repo_type: RepoType,
        repo_id: str,
        revision: str,
        file_path: str,
        variant: bool,
        ignore_range: bool,
    ) -> Response:
        if (moved := self._renamed(request, repo_type, repo_id)) is not None:
            return moved
        repo = self._gate(request, repo_type, repo_id, content=True)
        if isinstance(repo, Response):
            repo.repo_id, repo.file_path = repo_id, file_path
            return repo
        sha = repo.resolve(revision)
        if sha is None:
            answer = error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        else:
            entry = repo.get_commit(sha).files.get(file_path)
            if entry is None:
                answer = error(
                    404, "EntryNotFound", "Entry not found", headers=[("X-Repo-Commit", sha)]
                )
            elif entry.lfs:
                answer = self._redirect(repo, entry, sha, variant)
                answer.changeable = True
            else:
                content = self.store.variant(entry.content) if variant else entry.content
                answer = content_response(
                    request,
                    content,
                    content.git_sha1,
                    path=file_path,
                    headers=[("X-Repo-Commit", sha)],
                    ignore_range=ignore_range,
                )
                answer.changeable = True
        answer.repo_id, answer.file_path = repo_id, file_path
        return answer

    def _redirect(self, repo: HubRepo, entry: FileEntry, sha: str, variant: bool) -> Response:
        content = self.store.variant(entry.content) if variant else entry.content
        key = self.store.register_blob(repo, entry.path, content)
        location = f"{self.site.cdn_url}/lfs/{key}/{quote(entry.path)}"
        return Response(
            302,
            [
                ("Location", location),
                ("X-Repo-Commit", sha),
                ("X-Linked-Etag", f'"{content.sha256}"'),
                ("X-Linked-Size", str(content.size)),
                ("Accept-Ranges", "bytes"),
            ],
            b"",
        )

    # -- the listing API -----------------------------------------------------------------------

    def _api(self, request: Request, repo_type: RepoType, segs: list[str]) -> Response:
        n = 1
        if len(segs) >= 2:
            # A one-segment id (``gpt2``) only when a route follows it, as on the Hub:
            # /api/models/gpt2/config.json asks for the repository "gpt2/config.json".
            two = unquote("/".join(segs[:2]))
            known = self.store.find(repo_type, two) or self.store.renamed_to(repo_type, two)
            first = unquote(segs[0])
            one = self.store.find(repo_type, first) or self.store.renamed_to(repo_type, first)
            n = 2 if known or not one or segs[1] not in _API_ROUTES else 1
        repo_id = unquote("/".join(segs[:n]))
        rest = [unquote(s) for s in segs[n:]]
        if (moved := self._renamed(request, repo_type, repo_id)) is not None:
            return moved
        repo = self._gate(request, repo_type, repo_id, content=False)
        if isinstance(repo, Response):
            repo.repo_id = repo_id
            return repo
        response = self._api_route(request, repo, rest)
        response.repo_id = repo_id
        return response

    def _api_route(self, request: Request, repo: HubRepo, rest: list[str]) -> Response:
        method = request.method
        if rest in ([], [""]) and method in ("GET", "HEAD"):
            return self._info(request, repo, "main")
        if len(rest) == 2 and rest[0] == "revision" and method in ("GET", "HEAD"):
            return self._info(request, repo, rest[1])
        if len(rest) >= 2 and rest[0] == "tree" and method in ("GET", "HEAD"):
            return self._tree(request, repo, rest[1], "/".join(rest[2:]).strip("/"))
        if len(rest) == 2 and rest[0] == "paths-info" and method == "POST":
            return self._paths_info(request, repo, rest[1])
        if rest == ["refs"] and method in ("GET", "HEAD"):
            return _json(repo.refs())
        return error(404, None, "Not Found")

    def _commit(self, repo: HubRepo, revision: str) -> Commit | Response:
        sha = repo.resolve(revision)
        if sha is None:
            return error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return repo.get_commit(sha)

    def _info(self, request: Request, repo: HubRepo, revision: str) -> Response:
        commit = self._commit(repo, revision)
        if isinstance(commit, Response):
            return commit
        blobs = parse_qs(request.query).get("blobs", ["false"])[-1].lower() in ("true", "1")
        siblings = []
        for entry in commit.files.values():
            sibling: dict[str, object] = {"rfilename": entry.path}
            if blobs:
                sibling["size"] = entry.size
                sibling["blobId"] = entry.blob_id
                if entry.lfs:
                    sibling["lfs"] = {
                        "sha256": entry.sha256,
                        "size": entry.size,
                        "pointerSize": len(entry.pointer),
                    }
            siblings.append(sibling)
        first = repo.get_commit(commit.sha)
        while first.parent is not None:
            first = repo.get_commit(first.parent)
        info: dict[str, object] = {
            "_id": hashlib.sha1(repo.repo_id.encode(), usedforsecurity=False).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0] if "/" in repo.repo_id else None,
            "sha": commit.sha,
            "lastModified": _iso(commit.date),
            "createdAt": _iso(first.date),
            "private": repo.private,
            "gated": repo.gated,
            "disabled": repo.disabled,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
        info.update(repo.info)
        return _json(info)

    def _entry(self, commit: Commit, path: str, expand: bool) -> dict[str, object] | None:
        entry = commit.files.get(path)
        if entry is not None:
            data = entry.tree_entry()
        elif path in commit.directories():
            data = {"type": "directory", "oid": commit.tree_oid(path), "size": 0, "path": path}
        else:
            return None
        if expand:
            data["lastCommit"] = {
                "id": commit.sha,
                "title": commit.message,
                "date": _iso(commit.date),
            }
        return data

    def _tree(self, request: Request, repo: HubRepo, revision: str, path: str) -> Response:
        commit = self._commit(repo, revision)
        if isinstance(commit, Response):
            return commit
        query = dict(parse_qsl(request.query))
        recursive = query.get("recursive", "false").lower() in ("true", "1")
        expand = query.get("expand", "false").lower() in ("true", "1")
        directories = commit.directories()
        if path and path not in directories:
            return error(
                404,
                "EntryNotFound",
                f"{path} does not exist on {revision}",
                [("X-Repo-Commit", commit.sha)],
            )
        prefix = f"{path}/" if path else ""

        def wanted(p: str) -> bool:
            return p.startswith(prefix) and (recursive or "/" not in p[len(prefix) :])

        paths = sorted(
            [d for d in directories if wanted(d)] + [f for f in commit.files if wanted(f)]
        )
        try:
            start = max(0, int(query.get("cursor", "0")))
            limit = max(1, int(query.get("limit", str(self.site.page_size))))
        except ValueError:
            return error(400, None, "Invalid cursor or limit")
        page = [self._entry(commit, p, expand) for p in paths[start : start + limit]]
        headers: list[tuple[str, str]] = []
        if start + limit < len(paths):
            query["cursor"] = str(start + limit)
            link = f"{self.site.endpoint}{request.path}?{urlencode(query)}"
            headers.append(("Link", f'<{link}>; rel="next"'))
        return _json(page, headers=headers)

    def _paths_info(self, request: Request, repo: HubRepo, revision: str) -> Response:
        commit = self._commit(repo, revision)
        if isinstance(commit, Response):
            return commit
        paths: list[str]
        expand = False
        ctype = request.headers.get("content-type", "")
        if "json" in ctype:
            data = json.loads(request.body or b"{}")
            paths = list(data.get("paths", []))
            expand = bool(data.get("expand", False))
        else:
            form = parse_qs(request.body.decode("utf-8"))
            paths = form.get("paths", [])
            expand = form.get("expand", ["false"])[-1].lower() in ("true", "1")
        found = [self._entry(commit, p.strip("/"), expand) for p in paths]
        return _json([e for e in found if e is not None])

    def _whoami(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        if token is None or not self.store.token_known(token):
            return error(401, None, "Invalid credentials in Authorization header")
        name = "user-" + hashlib.sha1(token.encode(), usedforsecurity=False).hexdigest()[:8]
        return _json({"type": "user", "name": name, "auth": {"type": "access_token"}})

    # -- the CDN origin ------------------------------------------------------------------------

    def _cdn(self, request: Request, *, variant: bool, ignore_range: bool) -> Response:
        if request.method not in ("GET", "HEAD"):
            return error(405, None, "Method Not Allowed")
        segs = request.path.lstrip("/").split("/")
        if len(segs) >= 3 and segs[0] == "lfs":
            blob = self.store.blob(segs[1])
            if blob is None:
                return error(404, None, "NoSuchKey")
            content, repo_id, file_path = blob
        elif len(segs) >= 2 and segs[0] == "files":
            file_path = unquote("/".join(segs[1:]))
            repo_id = None
            static = self.store.static_file(file_path)
            if static is None:
                return error(404, None, "NoSuchKey")
            content = static
        else:
            return error(404, None, "NoSuchKey")
        if variant:
            content = self.store.variant(content)
        name = file_path.rsplit("/", 1)[-1]
        fallback = ascii_header(name).replace('"', "")
        disposition = f"attachment; filename*=UTF-8''{quote(name)}; filename=\"{fallback}\""
        response = content_response(
            request,
            content,
            content.sha256,
            path=file_path,
            headers=[("Content-Disposition", disposition), ("Last-Modified", _LAST_MODIFIED)],
            ignore_range=ignore_range,
        )
        response.repo_id, response.file_path, response.changeable = repo_id, file_path, True
        return response
