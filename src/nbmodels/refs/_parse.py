"""Reference text -> :class:`ModelRef` (pure): the ``hf:``, bare, two-word and ``hf://`` forms
here, Hub page URLs in :mod:`._urls`; every error is a :class:`~nbmodels.errors.RefError` that
quotes the input without its secrets."""

from __future__ import annotations

import os
import re
from typing import Final

from .._redact import redact_reference, redact_text
from ..errors import RefError
from ._check import (
    HINT,
    PUBLIC_HOSTS,
    QUANT_RE,
    REPO_URL_PREFIX,
    SPECIAL_REF_RE,
    TYPE_PREFIXES,
    UNSUPPORTED_PREFIXES,
    Bad,
    RepoType,
    check_name,
    q,
    short,
)
from ._model import ModelRef, make, maybe
from ._urls import Origin, endpoint_origin, parse_url, unquote_segment

__all__ = ["parse_ref"]

_SCHEME_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


def parse_ref(text: str, *, endpoint: str | None = None) -> ModelRef:
    """Parse a reference string (see the module docstring for every accepted form).

    ``endpoint`` is a custom Hub endpoint whose page URLs are recognised like huggingface.co's
    (it may carry a port and a path prefix); when ``None``, ``$HF_ENDPOINT`` is read at call
    time; ``""`` means none. Surrounding whitespace is ignored.

    Raises :class:`RefError` (and nothing else) when the text is not a valid reference.
    """
    raw: object = text
    if not isinstance(raw, str):
        raise RefError(f"A model reference must be a string, not {type(raw).__name__}.", hint=HINT)
    if endpoint is None:
        endpoint = os.environ.get("HF_ENDPOINT", "")
    try:
        return _parse(text.strip(), endpoint_origin(endpoint))
    except Bad as exc:
        problem = redact_text(str(exc))
        raise RefError(
            f"Invalid model reference {_quote_input(text)}: {problem}.", hint=HINT
        ) from None


def _parse(text: str, origin: Origin | None) -> ModelRef:
    if not text:
        raise Bad("the reference is empty")
    if any(c.isspace() for c in text):
        return _parse_words(text, origin)
    return _parse_one(text, origin)


def _parse_words(text: str, origin: Origin | None) -> ModelRef:
    """Inner whitespace: ``owner/repo filename``, or a single form whose file path has spaces."""
    head, tail = text.split(None, 1)
    try:
        head_ref: ModelRef | None = _parse_one(head, origin)
    except Bad:
        head_ref = None
    if (
        head_ref is not None
        and head_ref.kind == "hf"
        and head_ref.path is None
        and head_ref.quant is None
    ):
        return _two_words(head_ref, tail)
    try:
        return _parse_one(text, origin)
    except Bad:
        if head_ref is not None and head_ref.path is not None:
            raise  # "hf:owner/repo/some file.gguf": the error is about that path
    if head_ref is not None and head_ref.kind == "url":
        raise Bad("a URL cannot contain whitespace (write a space as %20)")
    if _is_bare_name(head):
        raise Bad(
            f"expected owner/repo before the file name, got {q(head)} (a repository without "
            f"an owner is written hf:{short(head)})"
        )
    raise Bad("unexpected whitespace: a reference is one word, or two words 'owner/repo filename'")


def _two_words(repo: ModelRef, tail: str) -> ModelRef:
    if any(c.isspace() for c in tail):
        raise Bad(
            "too many words: the two-word form is 'owner/repo filename' "
            "(for a file name with spaces use hf:owner/repo/path)"
        )
    revision = repo.revision
    if "#" in tail:
        tail, revision_text = tail.split("#", 1)
        if revision is not None:
            raise Bad("two revisions given ('#...' after both words)")
        revision = revision_text
    if not tail or tail == "/":
        raise Bad("the file name (second word) is empty")
    is_dir = tail.endswith("/")
    path = tail[:-1] if is_dir else tail
    alternative = None
    if repo.alternative is not None and repo.alternative.path is not None:
        alt = repo.alternative
        alternative = maybe(alt.repo_id, alt.repo_type, revision, f"{alt.path}/{path}", is_dir)
    return make(
        repo.repo_id,
        repo.repo_type,
        revision=revision,
        path=path,
        is_dir=is_dir,
        alternative=alternative,
    )


def _parse_one(text: str, origin: Origin | None) -> ModelRef:
    """One word (or a single form whose file path contains spaces)."""
    low = text.lower()
    if low.startswith(("http://", "https://")):
        return parse_url(text, origin)
    if low.startswith("hf://"):
        return _parse_hf_uri(text[len("hf://") :])
    if text.split("/", 1)[0].lower() in PUBLIC_HOSTS:
        return parse_url("https://" + text, origin)
    if low.startswith("hf:"):
        return _parse_hf_form(text[len("hf:") :], explicit=True)
    m = _SCHEME_RE.match(text)
    if m is not None:
        scheme = m.group(1)
        rest = text[m.end() :]
        if len(scheme) == 1:
            raise Bad(
                "this looks like a local Windows path; a reference names a Hub repository "
                "or an http(s) URL"
            )
        if "/" not in text and QUANT_RE.fullmatch(rest):
            raise Bad(f"a quant needs a repository: write owner/repo:{short(rest)}")
        raise Bad(
            f"the scheme {q(scheme + ':')} is not supported (use hf:, hf://, http:// or https://)"
        )
    return _parse_hf_form(text, explicit=False)


def _parse_hf_form(body: str, *, explicit: bool) -> ModelRef:
    """``[datasets/|spaces/]owner/repo[:QUANT | /path[/]][#rev]`` (after an optional ``hf:``);
    with ``hf:`` (``explicit``) also a repository without an owner: ``hf:name[:QUANT][#rev]``.

    ``owner/repo/path`` may also mean the file ``repo/path`` of the repository ``owner``: that
    reading is the :attr:`ModelRef.alternative`, for planning to ask the Hub (or the cache).
    """
    revision: str | None = None
    if "#" in body:
        body, revision = body.split("#", 1)
        if not revision:
            raise Bad("the revision after '#' is empty")
    repo_type, body = _split_type(body)
    segments = body.split("/")
    prefix = REPO_URL_PREFIX[repo_type]
    if len(segments) < 2 or segments[1:] == [""]:
        if not explicit:
            raise Bad(
                f"expected {prefix}owner/repo, got {q(body)} (a repository without an owner "
                f"is written hf:{prefix}{short(segments[0])})"
            )
        name, quant = _split_quant(segments[0])
        return make(name, repo_type, revision=revision, quant=quant)
    owner, name, rest = segments[0], segments[1], segments[2:]
    name, quant = _split_quant(name)
    if quant is not None and rest:
        raise Bad("a quant comes last: owner/repo:QUANT cannot be followed by a path")
    path, is_dir = _join_path(rest)
    alternative = None
    if quant is None:
        alt_path, alt_dir = _join_path(segments[1:])
        alternative = maybe(owner, repo_type, revision, alt_path, alt_dir)
    return make(
        f"{owner}/{name}",
        repo_type,
        revision=revision,
        path=path,
        is_dir=is_dir,
        quant=quant,
        alternative=alternative,
    )


def _split_quant(name: str) -> tuple[str, str | None]:
    """``repo:QUANT`` -> ("repo", "QUANT"); no quant -> (name, None)."""
    if ":" not in name:
        return name, None
    name, quant = name.split(":", 1)
    if not quant:
        raise Bad("the quant after ':' is empty")
    return name, quant


def _is_bare_name(text: str) -> bool:
    """A single word that could be a repository name (``gpt2``), for a helpful error."""
    try:
        check_name(text, "repository name")
    except Bad:
        return False
    return True


def _parse_hf_uri(body: str) -> ModelRef:
    """``[datasets/|spaces/]owner/repo[@rev][/path]`` (after ``hf://``)."""
    if not body:
        raise Bad("nothing follows 'hf://'")
    repo_type, location = _split_type(body)
    revision: str | None = None
    at = location.find("@")
    if at != -1 and location[:at].count("/") <= 1:
        repo_id, after = location[:at], location[at + 1 :]
        if repo_id.count("/") != 1:
            raise Bad(f"expected owner/repo before '@', got {q(repo_id)}")
        special = SPECIAL_REF_RE.match(after)
        if special is not None:
            raw_revision = special.group()
            rest = after[special.end() :].removeprefix("/")
        else:
            raw_revision, _, rest = after.partition("/")
        if not raw_revision:
            raise Bad("the revision after '@' is empty")
        revision = unquote_segment(raw_revision, "revision")
        path, is_dir = _join_path(rest.split("/") if rest else [])
    else:
        segments = location.split("/")
        if len(segments) < 2:
            raise Bad(f"expected owner/repo after 'hf://', got {q(location)}")
        repo_id = f"{segments[0]}/{segments[1]}"
        path, is_dir = _join_path(segments[2:])
        # As huggingface_hub's HfFileSystem: owner/repo first, else the repository "owner".
        alt_path, alt_dir = _join_path(segments[1:])
        alternative = maybe(segments[0], repo_type, None, alt_path, alt_dir)
        return make(repo_id, repo_type, path=path, is_dir=is_dir, alternative=alternative)
    return make(repo_id, repo_type, revision=revision, path=path, is_dir=is_dir)


def _split_type(body: str) -> tuple[RepoType, str]:
    first, sep, rest = body.partition("/")
    if sep and first in TYPE_PREFIXES:
        return TYPE_PREFIXES[first], rest
    if sep and first in UNSUPPORTED_PREFIXES:
        raise Bad(f"{first} are not supported; only models, datasets and spaces")
    return "model", body


def _join_path(segments: list[str]) -> tuple[str | None, bool]:
    """Path segments after ``owner/repo``; a trailing empty one (``dir/``) marks a folder."""
    is_dir = False
    if segments and segments[-1] == "":
        segments = segments[:-1]
        is_dir = True
    if not segments:
        return None, False
    return "/".join(segments), is_dir


def _quote_input(text: str, limit: int = 200) -> str:
    """The input as shown in errors: URL userinfo, queries, fragments and tokens removed."""
    return repr(short(redact_reference(text.strip()), limit))
