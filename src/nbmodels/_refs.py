"""Parse a model reference string into a :class:`ModelRef`. Pure: no I/O, no network.

Accepted forms (:data:`ACCEPTED_FORMS` is the short version every :class:`RefError` shows)::

    form                                              ModelRef
    ------------------------------------------------  ---------------------------------------------
    hf:owner/repo:Q4_K_M        owner/repo:Q4_K_M     quant="Q4_K_M" (case kept as typed)
    hf:owner/repo:Q4_K_M#v1.0                         ... with revision="v1.0"
    hf:owner/repo/path/in/repo.gguf#rev               path="path/in/repo.gguf", revision="rev"
    hf:owner/repo/folder/                             path="folder", is_dir=True
    hf:owner/repo               owner/repo            the whole repository (revision via "#rev")
    hf:gpt2   hf:gpt2:Q4_K_M    hf:gpt2 config.json   a repository without an owner (needs hf:)
    owner/repo/path.gguf                              like hf:owner/repo/path.gguf ("hf:" optional)
    datasets/owner/repo         spaces/owner/repo     repo_type="dataset" / "space" (also after hf:)
    owner/repo filename         hf:owner/repo a/b.gguf  two words: a repository and a file in it
    https://huggingface.co/owner/repo                 the repository (hf.co, www., $HF_ENDPOINT too)
    https://huggingface.co/owner/repo/blob/REV/path   one file (also /resolve/, /raw/, /blame/)
    https://huggingface.co/owner/repo/tree/REV/dir    a folder (is_dir=True); /tree/REV alone: repo
    https://huggingface.co/gpt2/resolve/REV/path      the same routes of a repository without owner
    https://huggingface.co/datasets/owner/repo/...    the same for datasets/ and spaces/
    huggingface.co/owner/repo/...                     a Hub URL without its scheme
    hf://[datasets/|spaces/]owner/repo[@rev][/path]   huggingface_hub's file-system URIs
    https://example.com/model.bin                     kind="url": any other http(s) URL, as given

Rules worth knowing:

- Repositories without an owner (``gpt2``, ``bert-base-uncased``, as huggingface_hub accepts
  them): a single name needs ``hf:`` (``hf:gpt2``), so that a typo or a forgotten ``{var}``
  in the magic is an error rather than a request for a repository; ``hf:gpt2 config.json``
  names its file unambiguously, and so do page URLs (``/gpt2/resolve/main/config.json``,
  ``/blob/``, ``/tree/``: the route word says where the repository id ends). Otherwise
  ``[hf:]a/b/c`` is read as the repository ``a/b`` (with the path ``c``) and, when that
  reading is valid, also as the file ``b/c`` of the repository ``a``: that second reading is
  :attr:`ModelRef.alternative`. Planning asks the cache, then the Hub, which repository
  exists (the owner/repo reading first, as huggingface_hub's ``HfFileSystem`` does; one
  request more only when it does not exist). ``hf://`` URIs read the same way.

- In ``hf:`` and bare forms ``#`` starts the revision (``refs/pr/2``, a tag, a branch or a 40-hex
  commit); in ``hf://`` URIs ``@`` does, percent-encoded (``@refs%2Fpr%2F1``) or a special ref
  (``@refs/pr/1``, ``@refs/convert/parquet``). In page URLs the revision is the segment after
  ``/blob/`` etc. (percent-decoded); ``refs/pr/N`` and ``refs/convert/NAME`` may appear unencoded.
- Query strings and fragments of Hub page URLs are dropped (``?download=true``); plain URLs are
  kept exactly as given.
- Hub URLs on huggingface.co, www.huggingface.co, hf.co and www.hf.co that do not name a repository,
  file or folder are a :class:`RefError`; on a custom endpoint (``endpoint=`` or ``$HF_ENDPOINT``,
  read at call time) they are plain URLs, since such a server may serve other files too.
- ``str(ref)`` is canonical: ``hf:[datasets/|spaces/]owner/repo[:QUANT][/path[/]][#rev]``, or
  ``hf://...`` when the path itself contains ``#``, or the URL of a plain URL reference;
  for a repository without an owner, ``hf:name[:QUANT][#rev]`` or the two words
  ``hf:name path[/][#rev]``. ``parse_ref(str(ref)) == ref``, except for the file of a
  repository without an owner whose path contains whitespace or ``#``: the two-word form
  cannot carry it (its page URL can, with a revision).

Everything wrong raises :class:`~nbmodels.errors.RefError` (also a ``ValueError``), whose message
says what is wrong, quotes the input (truncated, URL secrets removed) and lists the accepted forms.

GGUF file names (:func:`split_quant_name`, :func:`is_sidecar`) follow the llama.cpp conventions:
``Model-Q4_K_M.gguf``, split files ``Model-Q8_0-00001-of-00003.gguf``, quant-named folders, and
sidecars (``mmproj-*``, ``*imatrix*``) that are not quants.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Final, Literal, NamedTuple
from urllib.parse import SplitResult, quote, unquote, urlsplit

from nbmodels.errors import RefError

__all__ = [
    "ACCEPTED_FORMS",
    "ModelRef",
    "RepoType",
    "is_sidecar",
    "parse_ref",
    "split_quant_name",
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

_HINT: Final[str] = "Accepted forms:\n" + ACCEPTED_FORMS

_PUBLIC_HOSTS: Final = frozenset({"huggingface.co", "www.huggingface.co", "hf.co", "www.hf.co"})
_DEFAULT_PORTS: Final[dict[str, int]] = {"http": 80, "https": 443}
_TYPE_PREFIXES: Final[dict[str, RepoType]] = {
    "models": "model",
    "datasets": "dataset",
    "spaces": "space",
}
#: URL path prefix of each repo type ("datasets/owner/name"); the one table the package uses.
REPO_URL_PREFIX: Final[dict[str, str]] = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_PREFIX_OF_TYPE = REPO_URL_PREFIX
_UNSUPPORTED_PREFIXES: Final = frozenset({"kernels", "buckets"})
_RESERVED_OWNERS: Final = frozenset(_TYPE_PREFIXES) | _UNSUPPORTED_PREFIXES
_FILE_ROUTES: Final = frozenset({"blob", "resolve", "raw", "blame"})
_ROUTES: Final = _FILE_ROUTES | {"tree"}
_MAX_NAME: Final = 96
_MAX_REVISION: Final = 255

_QUANT_RE: Final = re.compile(r"[A-Za-z0-9_.-]+")
# refs/pr/N and refs/convert/NAME contain "/" but are matched eagerly (as huggingface_hub does).
_SPECIAL_REF_RE: Final = re.compile(r"refs/(?:convert/[\w.-]+|pr/\d+)(?=/|$)", re.ASCII)
_SCHEME_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_URL_TOKEN_RE: Final = re.compile(r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]*)://\S*")
_HF_TOKEN_RE: Final = re.compile(r"\bhf_[A-Za-z0-9]{30,}")
_BAD_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_GIT_FORBIDDEN: Final = "\\~^:?*["

_SPLIT_RE: Final = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_QUANT_TAG_RE: Final = re.compile(
    r"""
    I?Q[0-9]+(?:_[A-Z0-9]+)*      # Q4_K_M, Q8_0, IQ2_XXS, Q4_0_4_4, Q4_K_XL
    | TQ[0-9]+(?:_[0-9]+)?        # TQ1_0 (ternary)
    | B?FP?[0-9]+                 # F16, F32, BF16, FP16, FP8
    | MXFP[0-9]+(?:_MOE)?         # MXFP4, MXFP4_MOE
    | NVFP4
    """,
    re.IGNORECASE | re.VERBOSE | re.ASCII,
)
_SIDECAR_MARKERS: Final = ("mmproj", "imatrix")


class _Bad(Exception):
    """Internal: what is wrong, before the input is quoted into a :class:`RefError`."""


class _Origin(NamedTuple):
    scheme: str
    host: str
    port: int
    prefix: str  # path prefix of the endpoint without trailing "/", "" for none


@dataclass(frozen=True, slots=True)
class ModelRef:
    """A parsed reference: a Hub repository (optionally a quant, file or folder in it) or a URL.

    Constructing one validates it (:class:`RefError` when inconsistent or malformed), so every
    ``ModelRef`` has a canonical ``str()`` that parses back to an equal ``ModelRef``.

    Attributes:
        kind: ``"hf"`` (a Hub repository) or ``"url"`` (a plain http(s) download).
        repo_id: ``"owner/name"`` (or ``"name"`` for a repository without an owner) when
            ``kind == "hf"``.
        repo_type: ``"model"``, ``"dataset"`` or ``"space"``.
        revision: a branch, tag, ``refs/pr/N`` or 40-hex commit; None = the default branch.
        path: a file in the repository, or a folder when ``is_dir``; never with ``quant``.
        is_dir: ``path`` names a folder (``/tree/`` URLs, ``hf:`` paths ending in ``/``).
        quant: a GGUF quant as typed (``"Q4_K_M"``); matched case-insensitively later.
        url: the full URL as given when ``kind == "url"``.
        alternative: another reading of the same text, the file or folder of a repository
            without an owner (``hf:gpt2/config.json``: ``gpt2`` + ``config.json``); not part
            of equality. :attr:`readings` lists both, most likely first.
    """

    kind: Literal["hf", "url"]
    repo_id: str | None = None
    repo_type: RepoType = "model"
    revision: str | None = None
    path: str | None = None
    is_dir: bool = False
    quant: str | None = None
    url: str | None = None
    alternative: ModelRef | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        try:
            _check_fields(
                self.kind,
                self.repo_id,
                self.repo_type,
                self.revision,
                self.path,
                self.is_dir,
                self.quant,
                self.url,
            )
            _check_alternative(self)
        except _Bad as exc:
            raise RefError(f"Invalid ModelRef: {exc}.", hint=_HINT) from None

    @property
    def readings(self) -> tuple[ModelRef, ...]:
        """Every repository this text may mean, most likely first: the reference itself, then
        its :attr:`alternative` (a repository without an owner) when it has one."""
        return (self,) if self.alternative is None else (self, self.alternative)

    def __str__(self) -> str:
        """The canonical text form; ``parse_ref(str(ref)) == ref``."""
        if self.kind == "url":
            return self.url or ""
        repo = f"{_PREFIX_OF_TYPE[self.repo_type]}{self.repo_id}"
        if self.path is not None and "/" not in (self.repo_id or "/"):
            # "hf:gpt2/config.json" would read as the repository gpt2/config.json first.
            rev = f"#{self.revision}" if self.revision is not None else ""
            return f"hf:{repo} {self.path}{'/' if self.is_dir else ''}{rev}"
        tail = ""
        if self.path is not None:
            tail = "/" + self.path + ("/" if self.is_dir else "")
        if self.path is not None and "#" in self.path:
            # "#" would start the revision in the hf: form; hf:// URIs take paths literally.
            rev = ""
            if self.revision is not None:
                rev = "@" + (
                    self.revision
                    if _SPECIAL_REF_RE.fullmatch(self.revision)
                    else quote(self.revision, safe="")
                )
            return f"hf://{repo}{rev}{tail}"
        quant = f":{self.quant}" if self.quant is not None else ""
        rev = f"#{self.revision}" if self.revision is not None else ""
        return f"hf:{repo}{quant}{tail}{rev}"

    @property
    def pinned(self) -> bool:
        """True when the reference names a quant, a file or folder, or is a URL.

        A bare repository (even with a revision) is not pinned: which files it means depends on
        what the repository holds.
        """
        return self.kind == "url" or self.quant is not None or self.path is not None

    @property
    def repo_url_path(self) -> str:
        """``owner/name`` for models, ``datasets/owner/name``, ``spaces/owner/name``.

        Raises ``ValueError`` for a URL reference, which has no repository.
        """
        if self.kind != "hf" or self.repo_id is None:
            raise ValueError("a URL reference has no Hugging Face repository")
        return f"{_PREFIX_OF_TYPE[self.repo_type]}{self.repo_id}"


# --------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------


def parse_ref(text: str, *, endpoint: str | None = None) -> ModelRef:
    """Parse a reference string (see the module docstring for every accepted form).

    ``endpoint`` is a custom Hub endpoint whose page URLs are recognised like huggingface.co's
    (it may carry a port and a path prefix); when ``None``, ``$HF_ENDPOINT`` is read at call
    time; ``""`` means none. Surrounding whitespace is ignored.

    Raises :class:`RefError` (and nothing else) when the text is not a valid reference.
    """
    raw: object = text
    if not isinstance(raw, str):
        raise RefError(f"A model reference must be a string, not {type(raw).__name__}.", hint=_HINT)
    if endpoint is None:
        endpoint = os.environ.get("HF_ENDPOINT", "")
    try:
        return _parse(text.strip(), _endpoint_origin(endpoint))
    except _Bad as exc:
        problem = _HF_TOKEN_RE.sub("<redacted>", str(exc))
        raise RefError(
            f"Invalid model reference {_quote_input(text)}: {problem}.", hint=_HINT
        ) from None


def is_sidecar(filename: str) -> bool:
    """True for GGUF companion files that are not model weights (``mmproj-*``, ``*imatrix*``).

    Only the last path component is looked at; the match is case-insensitive.
    """
    base = filename.rsplit("/", 1)[-1].lower()
    return any(marker in base for marker in _SIDECAR_MARKERS)


def split_quant_name(filename: str) -> tuple[str | None, int | None, int | None]:
    """Split a GGUF file name into ``(quant tag, split part, split count)``.

    ``"Model-Q4_K_M.gguf"`` -> ``("Q4_K_M", None, None)``;
    ``"Model-Q8_0-00001-of-00003.gguf"`` -> ``("Q8_0", 1, 3)``;
    ``"Model-Q4_K_M/Model-00002-of-00004.gguf"`` -> ``("Q4_K_M", 2, 4)`` (quant-named folder);
    ``"mmproj-model-f16.gguf"`` -> ``(None, None, None)`` (sidecar); non-GGUF names -> all None.

    The quant tag is the last ``-``/``.``-separated word of the name (split suffix removed) when
    it looks like a llama.cpp quant type (``Q4_K_M``, ``IQ2_XXS``, ``Q8_0``, ``F16``, ``BF16``,
    ``TQ1_0``, ``MXFP4``...), with an unsloth ``UD-`` prefix kept (``UD-Q4_K_XL``); its case is kept
    as in the file name. Names like ``model.gguf`` or ``Llama-3-8B.gguf`` have no quant tag.
    A split suffix counts only when ``1 <= part <= count``.
    """
    base = filename.rsplit("/", 1)[-1]
    if not base.lower().endswith(".gguf"):
        return None, None, None
    part: int | None = None
    count: int | None = None
    stem = base[: -len(".gguf")]
    m = _SPLIT_RE.search(base)
    if m is not None:
        p, c = int(m.group(1)), int(m.group(2))
        if 1 <= p <= c:
            part, count = p, c
            stem = base[: m.start()]
    if is_sidecar(filename):
        return None, part, count
    quant = _quant_tag(stem)
    if quant is None and "/" in filename:
        quant = _quant_tag(filename.rsplit("/", 2)[-2])
    return quant, part, count


def _quant_tag(stem: str) -> str | None:
    """The quant tag that ends ``stem`` (``Model-Q4_K_M`` -> ``Q4_K_M``), or None."""
    words = re.split(r"[-.]", stem)
    last = words[-1]
    if not _QUANT_TAG_RE.fullmatch(last):
        return None
    if len(words) >= 2 and words[-2].upper() == "UD":
        return stem[-(len(last) + 3) :]
    return last


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


def _parse(text: str, origin: _Origin | None) -> ModelRef:
    if not text:
        raise _Bad("the reference is empty")
    if any(c.isspace() for c in text):
        return _parse_words(text, origin)
    return _parse_one(text, origin)


def _parse_words(text: str, origin: _Origin | None) -> ModelRef:
    """Inner whitespace: ``owner/repo filename``, or a single form whose file path has spaces."""
    head, tail = text.split(None, 1)
    try:
        head_ref: ModelRef | None = _parse_one(head, origin)
    except _Bad:
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
    except _Bad:
        if head_ref is not None and head_ref.path is not None:
            raise  # "hf:owner/repo/some file.gguf": the error is about that path
    if head_ref is not None and head_ref.kind == "url":
        raise _Bad("a URL cannot contain whitespace (write a space as %20)")
    if _is_bare_name(head):
        raise _Bad(
            f"expected owner/repo before the file name, got {_q(head)} (a repository without "
            f"an owner is written hf:{_short(head)})"
        )
    raise _Bad("unexpected whitespace: a reference is one word, or two words 'owner/repo filename'")


def _two_words(repo: ModelRef, tail: str) -> ModelRef:
    if any(c.isspace() for c in tail):
        raise _Bad(
            "too many words: the two-word form is 'owner/repo filename' "
            "(for a file name with spaces use hf:owner/repo/path)"
        )
    revision = repo.revision
    if "#" in tail:
        tail, revision_text = tail.split("#", 1)
        if revision is not None:
            raise _Bad("two revisions given ('#...' after both words)")
        revision = revision_text
    if not tail or tail == "/":
        raise _Bad("the file name (second word) is empty")
    is_dir = tail.endswith("/")
    path = tail[:-1] if is_dir else tail
    alternative = None
    if repo.alternative is not None and repo.alternative.path is not None:
        alt = repo.alternative
        alternative = _maybe(alt.repo_id, alt.repo_type, revision, f"{alt.path}/{path}", is_dir)
    return _make(
        repo.repo_id,
        repo.repo_type,
        revision=revision,
        path=path,
        is_dir=is_dir,
        alternative=alternative,
    )


def _parse_one(text: str, origin: _Origin | None) -> ModelRef:
    """One word (or a single form whose file path contains spaces)."""
    low = text.lower()
    if low.startswith(("http://", "https://")):
        return _parse_url(text, origin)
    if low.startswith("hf://"):
        return _parse_hf_uri(text[len("hf://") :])
    if text.split("/", 1)[0].lower() in _PUBLIC_HOSTS:
        return _parse_url("https://" + text, origin)
    if low.startswith("hf:"):
        return _parse_hf_form(text[len("hf:") :], explicit=True)
    m = _SCHEME_RE.match(text)
    if m is not None:
        scheme = m.group(1)
        rest = text[m.end() :]
        if len(scheme) == 1:
            raise _Bad(
                "this looks like a local Windows path; a reference names a Hub repository "
                "or an http(s) URL"
            )
        if "/" not in text and _QUANT_RE.fullmatch(rest):
            raise _Bad(f"a quant needs a repository: write owner/repo:{_short(rest)}")
        raise _Bad(
            f"the scheme {_q(scheme + ':')} is not supported (use hf:, hf://, http:// or https://)"
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
            raise _Bad("the revision after '#' is empty")
    repo_type, body = _split_type(body)
    segments = body.split("/")
    prefix = _PREFIX_OF_TYPE[repo_type]
    if len(segments) < 2 or segments[1:] == [""]:
        if not explicit:
            raise _Bad(
                f"expected {prefix}owner/repo, got {_q(body)} (a repository without an owner "
                f"is written hf:{prefix}{_short(segments[0])})"
            )
        name, quant = _split_quant(segments[0])
        return _make(name, repo_type, revision=revision, quant=quant)
    owner, name, rest = segments[0], segments[1], segments[2:]
    name, quant = _split_quant(name)
    if quant is not None and rest:
        raise _Bad("a quant comes last: owner/repo:QUANT cannot be followed by a path")
    path, is_dir = _join_path(rest)
    alternative = None
    if quant is None:
        alt_path, alt_dir = _join_path(segments[1:])
        alternative = _maybe(owner, repo_type, revision, alt_path, alt_dir)
    return _make(
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
        raise _Bad("the quant after ':' is empty")
    return name, quant


def _maybe(
    repo_id: str | None, repo_type: RepoType, revision: str | None, path: str | None, is_dir: bool
) -> ModelRef | None:
    """The reading of a repository without an owner, or None when it is not a valid one."""
    if path is None or repo_id is None:
        return None
    try:
        return _make(repo_id, repo_type, revision=revision, path=path, is_dir=is_dir)
    except _Bad:
        return None


def _is_bare_name(text: str) -> bool:
    """A single word that could be a repository name (``gpt2``), for a helpful error."""
    try:
        _check_name(text, "repository name")
    except _Bad:
        return False
    return True


def _parse_hf_uri(body: str) -> ModelRef:
    """``[datasets/|spaces/]owner/repo[@rev][/path]`` (after ``hf://``)."""
    if not body:
        raise _Bad("nothing follows 'hf://'")
    repo_type, location = _split_type(body)
    revision: str | None = None
    at = location.find("@")
    if at != -1 and location[:at].count("/") <= 1:
        repo_id, after = location[:at], location[at + 1 :]
        if repo_id.count("/") != 1:
            raise _Bad(f"expected owner/repo before '@', got {_q(repo_id)}")
        special = _SPECIAL_REF_RE.match(after)
        if special is not None:
            raw_revision = special.group()
            rest = after[special.end() :].removeprefix("/")
        else:
            raw_revision, _, rest = after.partition("/")
        if not raw_revision:
            raise _Bad("the revision after '@' is empty")
        revision = _unquote(raw_revision, "revision")
        path, is_dir = _join_path(rest.split("/") if rest else [])
    else:
        segments = location.split("/")
        if len(segments) < 2:
            raise _Bad(f"expected owner/repo after 'hf://', got {_q(location)}")
        repo_id = f"{segments[0]}/{segments[1]}"
        path, is_dir = _join_path(segments[2:])
        # As huggingface_hub's HfFileSystem: owner/repo first, else the repository "owner".
        alt_path, alt_dir = _join_path(segments[1:])
        alternative = _maybe(segments[0], repo_type, None, alt_path, alt_dir)
        return _make(repo_id, repo_type, path=path, is_dir=is_dir, alternative=alternative)
    return _make(repo_id, repo_type, revision=revision, path=path, is_dir=is_dir)


def _parse_url(text: str, origin: _Origin | None) -> ModelRef:
    """An http(s) URL: a Hub page when on a Hub host, else a plain URL."""
    parts = _check_url(text)
    host = (parts.hostname or "").lower()
    scheme = parts.scheme.lower()
    port = parts.port if parts.port is not None else _DEFAULT_PORTS[scheme]
    public = host in _PUBLIC_HOSTS
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
        raise _Bad(
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
    if segments and segments[0] in _TYPE_PREFIXES:
        repo_type = _TYPE_PREFIXES[segments[0]]
        segments = segments[1:]
    elif segments and segments[0] in _UNSUPPORTED_PREFIXES:
        return None
    if len(segments) < 2:
        return None
    if (len(segments) < 3 or segments[2] not in _ROUTES) and segments[1] in _ROUTES:
        # /gpt2/resolve/main/config.json: a repository without an owner.
        repo_id, rest = _unquote(segments[0], "repository name"), segments[1:]
    else:
        repo_id = _unquote(segments[0], "owner") + "/" + _unquote(segments[1], "repository name")
        rest = segments[2:]
    if not rest:
        return _make(repo_id, repo_type)
    route, tail = rest[0], [_unquote(s, "URL path") for s in rest[1:]]
    if route != "tree" and route not in _FILE_ROUTES:
        return None
    if not tail:
        if route == "tree":
            return _make(repo_id, repo_type)
        raise _Bad(f"the /{route}/ URL names no revision and file")
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
        raise _Bad(f"the /{route}/ URL names no file after the revision")
    return _make(
        repo_id,
        repo_type,
        revision=revision,
        path=file_path,
        is_dir=route == "tree" and file_path is not None,
    )


def _split_type(body: str) -> tuple[RepoType, str]:
    first, sep, rest = body.partition("/")
    if sep and first in _TYPE_PREFIXES:
        return _TYPE_PREFIXES[first], rest
    if sep and first in _UNSUPPORTED_PREFIXES:
        raise _Bad(f"{first} are not supported; only models, datasets and spaces")
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


def _make(
    repo_id: str | None,
    repo_type: RepoType,
    *,
    revision: str | None = None,
    path: str | None = None,
    is_dir: bool = False,
    quant: str | None = None,
    alternative: ModelRef | None = None,
) -> ModelRef:
    """Validate (raising :class:`_Bad`) and build a Hub reference."""
    _check_fields("hf", repo_id, repo_type, revision, path, is_dir, quant, None)
    return ModelRef(
        kind="hf",
        repo_id=repo_id,
        repo_type=repo_type,
        revision=revision,
        path=path,
        is_dir=is_dir,
        quant=quant,
        alternative=alternative,
    )


def _endpoint_origin(endpoint: str) -> _Origin | None:
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
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return _Origin(
        scheme,
        parts.hostname.lower(),
        port if port is not None else _DEFAULT_PORTS[scheme],
        parts.path.rstrip("/"),
    )


def _unquote(segment: str, what: str) -> str:
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise _Bad(f"the {what} {_q(segment)} is not valid percent-encoded UTF-8") from None


# --------------------------------------------------------------------------------------------
# Validation (each check raises _Bad with what is wrong)
# --------------------------------------------------------------------------------------------


def _check_fields(
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
            raise _Bad("a URL reference has only a url")
        if url is None:
            raise _Bad("a URL reference needs a url")
        parts = _check_url(url)
        if (parts.hostname or "").lower() in _PUBLIC_HOSTS:
            raise _Bad("a Hugging Face URL is a Hub reference (kind 'hf'); use parse_ref()")
        return
    if kind != "hf":
        raise _Bad(f"kind must be 'hf' or 'url', not {_q(str(kind))}")
    if url is not None:
        raise _Bad("a Hub reference has no url")
    if repo_type not in _PREFIX_OF_TYPE:
        raise _Bad(f"repo_type must be 'model', 'dataset' or 'space', not {_q(str(repo_type))}")
    if not isinstance(repo_id, str):
        raise _Bad("a Hub reference needs a repository id 'owner/name' (or 'name')")
    _check_repo_id(repo_id)
    if revision is not None:
        _check_revision(revision)
    if quant is not None:
        if path is not None:
            raise _Bad("a reference names either a quant or a file path, not both")
        _check_quant(quant)
    if path is not None:
        _check_path(path)
    elif is_dir:
        raise _Bad("is_dir needs a folder path")


def _check_alternative(ref: ModelRef) -> None:
    alt = ref.alternative
    if alt is None:
        return
    if ref.kind != "hf" or alt.kind != "hf" or alt.repo_id is None or "/" in alt.repo_id:
        raise _Bad("an alternative reading is a Hub repository without an owner")
    if alt.alternative is not None:
        raise _Bad("an alternative reading has no alternative of its own")


def _check_repo_id(repo_id: str) -> None:
    if repo_id.count("/") > 1:
        raise _Bad(f"expected a repository id 'owner/name' (or 'name'), got {_q(repo_id)}")
    owner, _, name = repo_id.rpartition("/")
    if "/" in repo_id:
        _check_name(owner, "owner")
    first = owner if "/" in repo_id else name
    if first in _RESERVED_OWNERS:
        raise _Bad(
            f"{_q(first)} names a repository type, not an owner: expected {first}/owner/name"
        )
    _check_name(name, "repository name")
    if name.endswith(".git"):
        raise _Bad(f"the repository name {_q(name)} must not end with '.git'")


def _check_name(value: str, what: str) -> None:
    """Hub rules for owners and repository names."""
    if not value:
        raise _Bad(f"the {what} is empty")
    for c in value:
        if not (c.isascii() and (c.isalnum() or c in "-_.")):
            extra = ""
            if c == "@":
                extra = " (a revision goes after '#': owner/repo#revision, or hf://owner/repo@rev)"
            elif c == ":":
                extra = " (a quant goes last: owner/repo:QUANT)"
            raise _Bad(
                f"the {what} {_q(value)} contains {_q(c)}; use letters, digits, '-', '_' "
                f"and '.'{extra}"
            )
    if len(value) > _MAX_NAME:
        raise _Bad(f"the {what} {_q(value)} is longer than {_MAX_NAME} characters")
    if value[0] in "-." or value[-1] in "-.":
        raise _Bad(f"the {what} {_q(value)} must not start or end with '-' or '.'")
    if "--" in value or ".." in value:
        raise _Bad(f"the {what} {_q(value)} must not contain '--' or '..'")


def _check_revision(revision: str) -> None:
    if not revision:
        raise _Bad("the revision is empty")
    if len(revision) > _MAX_REVISION:
        raise _Bad(f"the revision is longer than {_MAX_REVISION} characters")
    if any(c.isspace() or _is_control(c) for c in revision):
        raise _Bad(f"the revision {_q(revision)} contains whitespace or a control character")
    if ".." in revision:
        raise _Bad(f"the revision {_q(revision)} must not contain '..'")
    if "@{" in revision:
        raise _Bad(f"the revision {_q(revision)} must not contain '@{{'")
    for c in revision:
        if c in _GIT_FORBIDDEN:
            raise _Bad(f"the revision {_q(revision)} contains {_q(c)}, which git does not allow")
    if revision.startswith("/") or revision.endswith("/") or "//" in revision:
        raise _Bad(f"the revision {_q(revision)} has an empty '/'-separated part")


def _check_quant(quant: str) -> None:
    if not quant:
        raise _Bad("the quant is empty")
    if not _QUANT_RE.fullmatch(quant):
        bad = next(c for c in quant if not _QUANT_RE.fullmatch(c))
        raise _Bad(
            f"the quant {_q(quant)} contains {_q(bad)}; a quant is letters, digits, '_', '.' "
            "and '-' (like Q4_K_M)"
        )


def _check_path(path: str) -> None:
    if not path:
        raise _Bad("the file path is empty")
    if "\\" in path:
        raise _Bad(f"the file path {_q(path)} contains a backslash; separate folders with '/'")
    if path.startswith("/"):
        raise _Bad(f"the file path {_q(path)} is absolute; give the path inside the repository")
    if any(_is_control(c) for c in path):
        raise _Bad(f"the file path {_q(path)} contains a control character")
    segments = path.split("/")
    first = segments[0]
    if len(first) == 2 and first[1] == ":" and first[0].isascii() and first[0].isalpha():
        raise _Bad(f"the file path {_q(path)} looks like an absolute Windows path")
    for segment in segments:
        if not segment:
            raise _Bad(f"the file path {_q(path)} has an empty part ('//')")
        if segment in (".", ".."):
            raise _Bad(f"the file path {_q(path)} must not contain a {_q(segment)} part")
        if segment[0].isspace() or segment[-1].isspace():
            raise _Bad(f"a part of the file path {_q(path)} starts or ends with whitespace")


def _check_url(url: str) -> SplitResult:
    """An absolute http(s) URL with a host and no whitespace; returns its parts."""
    if any(c.isspace() or _is_control(c) for c in url):
        raise _Bad("a URL cannot contain whitespace or control characters (write a space as %20)")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a bad port
    except ValueError as exc:
        raise _Bad(f"the URL is malformed ({exc})") from None
    if parts.scheme.lower() not in _DEFAULT_PORTS:
        raise _Bad(f"the scheme {_q(parts.scheme + ':')} is not supported (only http and https)")
    if not parts.hostname:
        raise _Bad("the URL has no host")
    return parts


def _is_control(c: str) -> bool:
    return unicodedata.category(c) in _BAD_CATEGORIES


# --------------------------------------------------------------------------------------------
# Message helpers
# --------------------------------------------------------------------------------------------


def _short(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[:limit] + "…"


def _q(value: str) -> str:
    """A part of the input, quoted for a message (escapes control characters, truncates)."""
    return repr(_short(value))


def _redact_url_token(m: re.Match[str]) -> str:
    token = m.group(0)
    if m.group(1).lower() == "hf":
        return token
    scheme_end = token.index("://") + 3
    rest = token[scheme_end:]
    authority_end = min((i for i in (rest.find(ch) for ch in "/?#") if i != -1), default=len(rest))
    authority = rest[:authority_end].rsplit("@", 1)[-1]  # drop user:password@
    rest = authority + rest[authority_end:]
    rest = rest.split("#", 1)[0]
    if "?" in rest:
        rest = rest.split("?", 1)[0] + "?…"
    return token[:scheme_end] + rest


def _quote_input(text: str, limit: int = 200) -> str:
    """The input as shown in errors: URL userinfo, queries, fragments and tokens removed."""
    text = text.strip()
    shown = _URL_TOKEN_RE.sub(_redact_url_token, text)
    if any(m.group(1).lower() != "hf" for m in _URL_TOKEN_RE.finditer(text)):
        # A URL is involved: drop query strings and fragments wherever they are.
        shown = re.sub(r"#\S*", "", re.sub(r"\?[^\s#]*", "?…", shown))
    shown = _HF_TOKEN_RE.sub("<redacted>", shown)
    return repr(_short(shown, limit))
