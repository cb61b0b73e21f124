"""What a valid reference is made of: the vocabulary (repository types, Hub hosts, the
accepted forms) and the check of each field. Each check raises :class:`Bad` with what is
wrong; the caller quotes the input into a :class:`~nbmodels.errors.RefError`."""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import SplitResult, urlsplit

if TYPE_CHECKING:
    from ._model import ModelRef

__all__ = [
    "ACCEPTED_FORMS",
    "DEFAULT_PORTS",
    "HINT",
    "PUBLIC_HOSTS",
    "QUANT_RE",
    "REPO_URL_PREFIX",
    "SPECIAL_REF_RE",
    "TYPE_PREFIXES",
    "UNSUPPORTED_PREFIXES",
    "Bad",
    "RepoType",
    "check_alternative",
    "check_fields",
    "check_name",
    "check_url",
    "is_control",
    "q",
    "short",
]

RepoType = Literal["model", "dataset", "space"]

ACCEPTED_FORMS: Final[str] = """\
  hf:owner/repo:Q4_K_M              a GGUF quant (also owner/repo:Q4_K_M)
  hf:owner/repo/path/file.gguf      one file (a folder when it ends with "/")
  hf:owner/repo                     a whole repository (also owner/repo)
  hf:gpt2   hf:gpt2 config.json     a repository without an owner, and a file in it
  hf:owner/repo:Q4_K_M#v1.0         a revision after any of these: #v1.0, #refs/pr/2, #<commit>
  owner/repo file.gguf              two words: a repository and a file in it
  datasets/owner/repo               a dataset repository (spaces/owner/repo: a Space)
  https://huggingface.co/owner/repo/blob/main/file.gguf
                                    a Hub page: /blob/, /resolve/, /tree/ or the repository
                                    itself; also on hf.co and $HF_ENDPOINT
  hf://datasets/owner/repo@main/dir/  a huggingface_hub file-system URI
  https://example.com/model.bin     any other http(s) URL: a plain download"""

HINT: Final[str] = "Accepted forms:\n" + ACCEPTED_FORMS

PUBLIC_HOSTS: Final = frozenset({"huggingface.co", "www.huggingface.co", "hf.co", "www.hf.co"})
DEFAULT_PORTS: Final[dict[str, int]] = {"http": 80, "https": 443}
TYPE_PREFIXES: Final[dict[str, RepoType]] = {
    "models": "model",
    "datasets": "dataset",
    "spaces": "space",
}
#: URL path prefix of each repo type ("datasets/owner/name"); the one table the package uses.
REPO_URL_PREFIX: Final[dict[str, str]] = {"model": "", "dataset": "datasets/", "space": "spaces/"}
UNSUPPORTED_PREFIXES: Final = frozenset({"kernels", "buckets"})
_RESERVED_OWNERS: Final = frozenset(TYPE_PREFIXES) | UNSUPPORTED_PREFIXES
_MAX_NAME: Final = 96
_MAX_REVISION: Final = 255

QUANT_RE: Final = re.compile(r"[A-Za-z0-9_.-]+")
# refs/pr/N and refs/convert/NAME contain "/" but are matched eagerly (as huggingface_hub does).
SPECIAL_REF_RE: Final = re.compile(r"refs/(?:convert/[\w.-]+|pr/\d+)(?=/|$)", re.ASCII)
_BAD_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_GIT_FORBIDDEN: Final = "\\~^:?*["


class Bad(Exception):
    """Internal: what is wrong, before the input is quoted into a :class:`RefError`."""


def check_fields(
    kind: str,
    repo_id: str | None,
    repo_type: str,
    revision: str | None,
    path: str | None,
    is_dir: bool,
    quant: str | None,
    url: str | None,
) -> None:
    if kind == "url":
        if (repo_id, repo_type, revision, path, is_dir, quant) != (
            None,
            "model",
            None,
            None,
            False,
            None,
        ):
            raise Bad("a URL reference has only a url")
        if url is None:
            raise Bad("a URL reference needs a url")
        parts = check_url(url)
        if (parts.hostname or "").lower() in PUBLIC_HOSTS:
            raise Bad("a Hugging Face URL is a Hub reference (kind 'hf'); use parse_ref()")
        return
    if kind != "hf":
        raise Bad(f"kind must be 'hf' or 'url', not {q(str(kind))}")
    if url is not None:
        raise Bad("a Hub reference has no url")
    if repo_type not in REPO_URL_PREFIX:
        raise Bad(f"repo_type must be 'model', 'dataset' or 'space', not {q(str(repo_type))}")
    if not isinstance(repo_id, str):
        raise Bad("a Hub reference needs a repository id 'owner/name' (or 'name')")
    _check_repo_id(repo_id)
    if revision is not None:
        _check_revision(revision)
    if quant is not None:
        if path is not None:
            raise Bad("a reference names either a quant or a file path, not both")
        _check_quant(quant)
    if path is not None:
        _check_path(path)
    elif is_dir:
        raise Bad("is_dir needs a folder path")


def check_alternative(ref: ModelRef) -> None:
    alt = ref.alternative
    if alt is None:
        return
    if ref.kind != "hf" or alt.kind != "hf" or alt.repo_id is None or "/" in alt.repo_id:
        raise Bad("an alternative reading is a Hub repository without an owner")
    if alt.alternative is not None:
        raise Bad("an alternative reading has no alternative of its own")


def _check_repo_id(repo_id: str) -> None:
    if repo_id.count("/") > 1:
        raise Bad(f"expected a repository id 'owner/name' (or 'name'), got {q(repo_id)}")
    owner, _, name = repo_id.rpartition("/")
    if "/" in repo_id:
        check_name(owner, "owner")
    first = owner if "/" in repo_id else name
    if first in _RESERVED_OWNERS:
        raise Bad(f"{q(first)} names a repository type, not an owner: expected {first}/owner/name")
    check_name(name, "repository name")
    if name.endswith(".git"):
        raise Bad(f"the repository name {q(name)} must not end with '.git'")


def check_name(value: str, what: str) -> None:
    """Hub rules for owners and repository names."""
    if not value:
        raise Bad(f"the {what} is empty")
    for c in value:
        if not (c.isascii() and (c.isalnum() or c in "-_.")):
            extra = ""
            if c == "@":
                extra = " (a revision goes after '#': owner/repo#revision, or hf://owner/repo@rev)"
            elif c == ":":
                extra = " (a quant goes last: owner/repo:QUANT)"
            raise Bad(
                f"the {what} {q(value)} contains {q(c)}; use letters, digits, '-', '_' "
                f"and '.'{extra}"
            )
    if len(value) > _MAX_NAME:
        raise Bad(f"the {what} {q(value)} is longer than {_MAX_NAME} characters")
    if value[0] in "-." or value[-1] in "-.":
        raise Bad(f"the {what} {q(value)} must not start or end with '-' or '.'")
    if "--" in value or ".." in value:
        raise Bad(f"the {what} {q(value)} must not contain '--' or '..'")


def _check_revision(revision: str) -> None:
    if not revision:
        raise Bad("the revision is empty")
    if len(revision) > _MAX_REVISION:
        raise Bad(f"the revision is longer than {_MAX_REVISION} characters")
    if any(c.isspace() or is_control(c) for c in revision):
        raise Bad(f"the revision {q(revision)} contains whitespace or a control character")
    if ".." in revision:
        raise Bad(f"the revision {q(revision)} must not contain '..'")
    if "@{" in revision:
        raise Bad(f"the revision {q(revision)} must not contain '@{{'")
    for c in revision:
        if c in _GIT_FORBIDDEN:
            raise Bad(f"the revision {q(revision)} contains {q(c)}, which git does not allow")
    if revision.startswith("/") or revision.endswith("/") or "//" in revision:
        raise Bad(f"the revision {q(revision)} has an empty '/'-separated part")


def _check_quant(quant: str) -> None:
    if not quant:
        raise Bad("the quant is empty")
    if not QUANT_RE.fullmatch(quant):
        bad = next(c for c in quant if not QUANT_RE.fullmatch(c))
        raise Bad(
            f"the quant {q(quant)} contains {q(bad)}; a quant is letters, digits, '_', '.' "
            "and '-' (like Q4_K_M)"
        )


def _check_path(path: str) -> None:
    if not path:
        raise Bad("the file path is empty")
    if "\\" in path:
        raise Bad(f"the file path {q(path)} contains a backslash; separate folders with '/'")
    if path.startswith("/"):
        raise Bad(f"the file path {q(path)} is absolute; give the path inside the repository")
    if any(is_control(c) for c in path):
        raise Bad(f"the file path {q(path)} contains a control character")
    segments = path.split("/")
    first = segments[0]
    if len(first) == 2 and first[1] == ":" and first[0].isascii() and first[0].isalpha():
        raise Bad(f"the file path {q(path)} looks like an absolute Windows path")
    for segment in segments:
        if not segment:
            raise Bad(f"the file path {q(path)} has an empty part ('//')")
        if segment in (".", ".."):
            raise Bad(f"the file path {q(path)} must not contain a {q(segment)} part")
        if segment[0].isspace() or segment[-1].isspace():
            raise Bad(f"a part of the file path {q(path)} starts or ends with whitespace")


def check_url(url: str) -> SplitResult:
    """An absolute http(s) URL with a host and no whitespace; returns its parts."""
    if any(c.isspace() or is_control(c) for c in url):
        raise Bad("a URL cannot contain whitespace or control characters (write a space as %20)")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a bad port
    except ValueError as exc:
        raise Bad(f"the URL is malformed ({exc})") from None
    if parts.scheme.lower() not in DEFAULT_PORTS:
        raise Bad(f"the scheme {q(parts.scheme + ':')} is not supported (only http and https)")
    if not parts.hostname:
        raise Bad("the URL has no host")
    return parts


def is_control(c: str) -> bool:
    return unicodedata.category(c) in _BAD_CATEGORIES


# -- message helpers ------------------------------------------------------------------------


def short(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[:limit] + "…"


def q(value: str) -> str:
    """A part of the input, quoted for a message (escapes control characters, truncates)."""
    return repr(short(value))
