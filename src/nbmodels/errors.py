"""The errors nbmodels raises.

Every error says what happened and what to do next. The tree::

    NbmodelsError
    ├── RefError                 (also ValueError)  the reference string is malformed
    ├── NotFoundError                                repo / revision / file / quant / URL absent
    ├── AccessError                                  gated or private: accept terms / set a token
    │   └── RepoNotFoundError   (also NotFoundError) missing, or private to others: the Hub
    │                                                cannot say which
    ├── IntegrityError                               size or digest mismatch: expected vs actual
    ├── InsufficientSpaceError   (also OSError)      not enough free disk space: needed vs available
    ├── NetworkError                                 gave up after retries: says what was tried
    ├── OfflineError                                 offline and the file is not on disk
    ├── ArchiveError                                 an archive cannot be unpacked safely
    │                                                (extract=True): unsafe or damaged member,
    │                                                a limit passed, not an archive, folder taken
    └── CanceledError                                the job was canceled

Third-party exceptions (httpx2, huggingface_hub, OSError) are translated at the one place where
they are caught, with ``raise ... from exc``. No message ever contains a token or the query string
of a URL: use :func:`nbmodels._redact.redact_url` before putting a URL into a message.

A hint that suggests an option names it with :class:`Option` (``hint=("Choose another disk with
", Option("dir"), ".")``), never as text: each front end shows the option in its own form through
:meth:`NbmodelsError.render` (``dir=`` in Python, ``--dir`` on the command line of the CLI and
the magic). ``str(err)`` is the Python form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "AccessError",
    "ArchiveError",
    "CanceledError",
    "InsufficientSpaceError",
    "IntegrityError",
    "NbmodelsError",
    "NetworkError",
    "NotFoundError",
    "OfflineError",
    "Option",
    "RefError",
    "RepoNotFoundError",
]

#: How a front end writes options: ``"api"`` (keyword arguments: ``dir=``, ``offline=True``) or
#: ``"flags"`` (the command line of ``nbmodels`` and ``%model_download``: ``--dir``, ``--offline``).
Style = Literal["api", "flags"]


@dataclass(frozen=True, slots=True)
class Option:
    """A download option named in an error's hint; ``switch`` options are given as ``True``
    (``offline=True`` / ``--offline``), the others take a value (``dir=`` / ``--dir``)."""

    name: str
    switch: bool = False

    def render(self, style: Style) -> str:
        if style == "flags":
            return "--" + self.name.replace("_", "-")
        return f"{self.name}=True" if self.switch else f"{self.name}="


#: A hint: plain text, or text and :class:`Option` parts.
Hint = str | Sequence[str | Option] | None


class NbmodelsError(Exception):
    """Base class of every nbmodels error.

    ``str(err)`` is the one-line message (fact and next step) in the Python form;
    :meth:`render` gives it in another front end's form. ``err.fact`` is the fact alone,
    ``err.hint`` the next step alone when there is one, and :attr:`suggests` the options the
    hint names.
    """

    hint: str | None = None
    hint_parts: tuple[str | Option, ...] = ()

    def __init__(self, message: str, *, hint: Hint = None) -> None:
        self.fact = message
        if hint is not None:
            self.hint_parts = (hint,) if isinstance(hint, str) else tuple(hint)
            self.hint = _join(self.hint_parts, "api")
        super().__init__(self.render("api"))

    @property
    def message(self) -> str:
        return str(self)

    @property
    def suggests(self) -> tuple[str, ...]:
        """The names of the options the hint suggests (e.g. ``("dir",)``)."""
        return tuple(p.name for p in self.hint_parts if isinstance(p, Option))

    def render(self, style: Style = "api") -> str:
        """The message with every option the hint names written in ``style``."""
        hint = _join(self.hint_parts, style) if self.hint_parts else self.hint
        return self.fact if not hint else f"{self.fact} {hint}"


def _join(parts: Sequence[str | Option], style: Style) -> str:
    return "".join(p if isinstance(p, str) else p.render(style) for p in parts)


class RefError(NbmodelsError, ValueError):
    """The reference string does not have one of the accepted forms."""


class NotFoundError(NbmodelsError):
    """The repository, revision, file, quant or URL does not exist.

    ``candidates`` lists what does exist when that is known (e.g. the quants of a repo).
    """

    def __init__(
        self,
        message: str,
        *,
        candidates: Sequence[str] = (),
        hint: Hint = None,
    ) -> None:
        self.candidates: tuple[str, ...] = tuple(candidates)
        super().__init__(message, hint=hint)


class AccessError(NbmodelsError):
    """The resource is gated or private and the credentials do not grant access."""


class RepoNotFoundError(NotFoundError, AccessError):
    """The Hub says "repository not found", which it also says of private repos to anyone
    without access: catch it as either :class:`NotFoundError` or :class:`AccessError`."""


class IntegrityError(NbmodelsError):
    """What arrived is not what was expected (size or digest). Nothing was published."""

    def __init__(
        self,
        message: str,
        *,
        expected: str | int | None = None,
        actual: str | int | None = None,
        hint: Hint = None,
    ) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(message, hint=hint)


class InsufficientSpaceError(NbmodelsError, OSError):
    """Not enough free space where the file must go."""

    def __init__(
        self,
        message: str,
        *,
        needed: int,
        available: int,
        path: str,
        hint: Hint = None,
    ) -> None:
        self.needed = needed
        self.available = available
        self.path = path
        NbmodelsError.__init__(self, message, hint=hint)

    def __str__(self) -> str:  # OSError.__str__ would print errno-style text
        return self.args[0] if self.args else ""


class NetworkError(NbmodelsError):
    """The server could not be reached or kept failing after retries."""


class OfflineError(NbmodelsError):
    """Offline mode (``offline=True`` or ``HF_HUB_OFFLINE=1``) and the file is not on disk."""


class CanceledError(NbmodelsError):
    """The job was canceled; its partial data was discarded."""


class ArchiveError(NbmodelsError):
    """A downloaded archive could not be unpacked safely (``extract=True``): a member with an
    unsafe name, link or type, a damaged archive, a limit passed (size, member count,
    compression ratio), content that is no archive, or a destination folder already taken.
    Nothing was unpacked and the archive itself was kept.

    ``member`` is the offending member's name, quoted and with control characters escaped,
    when one member is to blame.
    """

    def __init__(
        self,
        message: str,
        *,
        member: str | None = None,
        hint: Hint = None,
    ) -> None:
        self.member = member
        super().__init__(message, hint=hint)
