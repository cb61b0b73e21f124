"""The parsed reference: :class:`ModelRef`, and :func:`make`, which validates and builds the
Hub ones (the parsers' single way to create one)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import quote

from ..errors import RefError
from ._check import (
    HINT,
    REPO_URL_PREFIX,
    SPECIAL_REF_RE,
    Bad,
    RepoType,
    check_alternative,
    check_fields,
)

__all__ = ["ModelRef", "make", "maybe"]


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
            check_fields(
                self.kind,
                self.repo_id,
                self.repo_type,
                self.revision,
                self.path,
                self.is_dir,
                self.quant,
                self.url,
            )
            check_alternative(self)
        except Bad as exc:
            raise RefError(f"Invalid ModelRef: {exc}.", hint=HINT) from None

    @property
    def readings(self) -> tuple[ModelRef, ...]:
        """Every repository this text may mean, most likely first: the reference itself, then
        its :attr:`alternative` (a repository without an owner) when it has one."""
        return (self,) if self.alternative is None else (self, self.alternative)

    def __str__(self) -> str:
        """The canonical text form; ``parse_ref(str(ref)) == ref``."""
        if self.kind == "url":
            return self.url or ""
        repo = f"{REPO_URL_PREFIX[self.repo_type]}{self.repo_id}"
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
                    if SPECIAL_REF_RE.fullmatch(self.revision)
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
        return f"{REPO_URL_PREFIX[self.repo_type]}{self.repo_id}"


def make(
    repo_id: str | None,
    repo_type: RepoType,
    *,
    revision: str | None = None,
    path: str | None = None,
    is_dir: bool = False,
    quant: str | None = None,
    alternative: ModelRef | None = None,
) -> ModelRef:
    """Validate (raising :class:`Bad`) and build a Hub reference."""
    check_fields("hf", repo_id, repo_type, revision, path, is_dir, quant, None)
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


def maybe(
    repo_id: str | None, repo_type: RepoType, revision: str | None, path: str | None, is_dir: bool
) -> ModelRef | None:
    """The reading of a repository without an owner, or None when it is not a valid one."""
    if path is None or repo_id is None:
        return None
    try:
        return make(repo_id, repo_type, revision=revision, path=path, is_dir=is_dir)
    except Bad:
        return None
