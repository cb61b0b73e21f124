"""The download options, shared by the API, the magic and the CLI (docs/public-api.md)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import NbmodelsError, Option, Style

__all__ = ["OPTION_NAMES", "OptionValueError", "Options"]

_HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_CONNECTIONS = 64


class OptionValueError(ValueError):
    """An option given a value it cannot take: ``option`` names it, ``problem`` says why.
    ``str()`` is the Python form (``connections must be ...``); :meth:`render` gives the form of
    a command line (``argument --connections: must be ...``, as argparse words its own)."""

    def __init__(self, option: str, problem: str) -> None:
        self.option = option
        self.problem = problem
        super().__init__(f"{option} {problem}")

    def render(self, style: Style = "api") -> str:
        if style == "flags":
            return f"argument {Option(self.option).render(style)}: {self.problem}"
        return str(self)


@dataclass(frozen=True, slots=True)
class Options:
    """Validated options of one download. ``token`` never appears in ``repr`` or records."""

    dir: Path | None = None
    revision: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    sha256: str | None = None
    force: bool = False
    connections: int | None = None
    extract: bool = False
    remove_archive: bool = False
    token: str | bool | None = field(default=None, repr=False)
    offline: bool = False
    display: bool | None = None

    @classmethod
    def create(cls, **kwargs: Any) -> Options:
        """Build from user input, raising a clear ``ValueError`` for anything malformed."""
        unknown = set(kwargs) - set(OPTION_NAMES)
        if unknown:
            raise TypeError(
                f"unknown option(s): {', '.join(sorted(unknown))}; "
                f"the options are: {', '.join(OPTION_NAMES)}"
            )
        opts = cls()
        values: dict[str, Any] = {}
        for key, value in kwargs.items():
            if value is None and key not in ("token", "display"):
                continue
            values[key] = _normalize(key, value)
        opts = replace(opts, **values)
        if opts.remove_archive and not opts.extract:
            raise ValueError(
                "remove_archive=True deletes the archive once it is unpacked: "
                "it needs extract=True (--extract) too"
            )
        return opts

    def record(self) -> dict[str, Any]:
        """A JSON-safe description for the registry: no secrets (only whether a token was set)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "token":
                if value is False:
                    out["token"] = False
                continue
            if f.name == "display" or value in (None, (), False):
                continue
            out[f.name] = (
                str(value)
                if isinstance(value, Path)
                else (list(value) if isinstance(value, tuple) else value)
            )
        return out

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> Options:
        known = {k: v for k, v in data.items() if k in OPTION_NAMES}
        return cls.create(**known)


OPTION_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Options))


def _patterns(key: str, value: str | Iterable[str]) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise OptionValueError(key, f"patterns must be non-empty strings, got {item!r}")
        out.extend(p.strip() for p in item.split(",") if p.strip())
    return tuple(out)


def _normalize(key: str, value: Any) -> Any:
    if key == "dir":
        return Path(value).expanduser()
    if key == "revision":
        if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
            raise OptionValueError(key, f"must be a branch, tag or commit name, got {value!r}")
        return value
    if key in ("include", "exclude"):
        return _patterns(key, value)
    if key == "sha256":
        digest = str(value).strip().lower()
        digest = digest.removeprefix("sha256:")
        if not _HEX64.fullmatch(digest):
            raise OptionValueError(
                key,
                "must be 64 hexadecimal digits (optionally prefixed 'sha256:'), "
                f"got {str(value)[:80]!r}",
            )
        return digest
    if key in ("force", "offline", "extract", "remove_archive"):
        return bool(value)
    if key == "connections":
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise OptionValueError(key, f"must be a whole number, got {value!r}")
        try:
            n = int(value)
        except ValueError:
            raise OptionValueError(key, f"must be a whole number, got {value!r}") from None
        if not 1 <= n <= MAX_CONNECTIONS:
            raise OptionValueError(key, f"must be between 1 and {MAX_CONNECTIONS}, got {n}")
        return n
    if key == "token":
        if value is None or value is False or value is True:
            return value
        if not isinstance(value, str) or not value.strip():
            raise OptionValueError(key, "must be a string, False (send none) or None (automatic)")
        return value.strip()
    if key == "display":
        return None if value is None else bool(value)
    raise NbmodelsError(f"unhandled option {key}")  # pragma: no cover - guarded by create()
