"""Hub page URLs (pure): ``https://huggingface.co/owner/repo/blob/REV/path``, ``/resolve/``,
``/tree/``, the repository page, on huggingface.co, hf.co or a custom endpoint
(``$HF_ENDPOINT``, with its port and path prefix). Any other http(s) URL is a plain download."""

from __future__ import annotations

import re
from typing import Final, NamedTuple
from urllib.parse import unquote, urlsplit

from ._check import (
    DEFAULT_PORTS,
    PUBLIC_HOSTS,
    TYPE_PREFIXES,
    UNSUPPORTED_PREFIXES,
    Bad,
    RepoType,
    check_url,
    q,
)
from ._model import ModelRef, make

__all__ = ["Origin", "endpoint_origin", "parse_url", "unquote_segment"]

_FILE_ROUTES: Final = frozenset({"blob", "resolve", "raw", "blame"})
_ROUTES: Final = _FILE_ROUTES | {"tree"}


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int
    prefix: str  # path prefix of the endpoint without trailing "/", "" for none


def parse_url(text: str, origin: Origin | None) -> ModelRef:
    """An http(s) URL: a Hub page when on a Hub host, else a plain URL."""
    parts = check_url(text)
    host = (parts.hostname or "").lower()
    scheme = parts.scheme.lower()
    port = parts.port if parts.port is not None else DEFAULT_PORTS[scheme]
    public = host in PUBLIC_HOSTS
    custom = origin is not None and (scheme, host, port) == origin[:3]
    path = parts.path
    if custom and origin is not None and origin.prefix:
        if path == origin.prefix or path.startswith(origin.prefix + "/"):
            path = path[len(origin.prefix) :]
        elif not public:
            custom = False
    if not (public or custom):
        return ModelRef(kind="url", url=text)
    ref = _parse_hub_path(path)
    if ref is not None:
        return ref
    if public:
        raise Bad(
            "this Hugging Face URL is not a repository, file or folder page (expected "
            "/owner/repo, /owner/repo/blob/REV/path, /resolve/REV/path or /tree/REV/dir)"
        )
    return ModelRef(kind="url", url=text)


def _parse_hub_path(path: str) -> ModelRef | None:
    """The path of a Hub page URL; None when it is not a repository/file/folder route."""
    segments = path.split("/")
    if segments and segments[0] == "":
        segments = segments[1:]
    if segments and segments[-1] == "":
        segments = segments[:-1]
    repo_type: RepoType = "model"
    if segments and segments[0] in TYPE_PREFIXES:
        repo_type = TYPE_PREFIXES[segments[0]]
        segments = segments[1:]
    elif segments and segments[0] in UNSUPPORTED_PREFIXES:
        return None
    if len(segments) < 2:
        return None
    if (len(segments) < 3 or segments[2] not in _ROUTES) and segments[1] in _ROUTES:
        # /gpt2/resolve/main/config.json: a repository without an owner.
        repo_id, rest = unquote_segment(segments[0], "repository name"), segments[1:]
    else:
        repo_id = (
            unquote_segment(segments[0], "owner")
            + "/"
            + unquote_segment(segments[1], "repository name")
        )
        rest = segments[2:]
    if not rest:
        return make(repo_id, repo_type)
    route, tail = rest[0], [unquote_segment(s, "URL path") for s in rest[1:]]
    if route != "tree" and route not in _FILE_ROUTES:
        return None
    if not tail:
        if route == "tree":
            return make(repo_id, repo_type)
        raise Bad(f"the /{route}/ URL names no revision and file")
    if (
        len(tail) >= 3
        and tail[0] == "refs"
        and (
            (tail[1] == "pr" and tail[2].isascii() and tail[2].isdigit())
            or (tail[1] == "convert" and re.fullmatch(r"[\w.-]+", tail[2], re.ASCII))
        )
    ):
        revision, path_segments = "/".join(tail[:3]), tail[3:]
    else:
        revision, path_segments = tail[0], tail[1:]
    file_path = "/".join(path_segments) or None
    if route != "tree" and file_path is None:
        raise Bad(f"the /{route}/ URL names no file after the revision")
    return make(
        repo_id,
        repo_type,
        revision=revision,
        path=file_path,
        is_dir=route == "tree" and file_path is not None,
    )


def endpoint_origin(endpoint: str) -> Origin | None:
    """Host, port and path prefix of a custom endpoint; None when empty or not an http(s) URL."""
    endpoint = endpoint.strip()
    if not endpoint:
        return None
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    return Origin(
        scheme,
        parts.hostname.lower(),
        port if port is not None else DEFAULT_PORTS[scheme],
        parts.path.rstrip("/"),
    )


def unquote_segment(segment: str, what: str) -> str:
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise Bad(f"the {what} {q(segment)} is not valid percent-encoded UTF-8") from None
