"""The download options, shared by the API, the magic and the CLI (docs/public-api.md)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ._redact import redact_text
from .errors import NbmodelsError, Option, Style

__all__ = ["OPTION_NAMES", "OptionValueError", "Options"]

_HEX64 = re.compile(r"[0-9a-f]{64}")
MAX_CONNECTIONS = 64
#: Bounds of the per-job network settings.
MAX_TIMEOUT = 3600.0
MAX_RETRIES = 100
#: ``metadata`` is kept with the job (registry, ``to_dict``): a small JSON object.
MAX_METADATA_BYTES = 16 * 1024
MAX_METADATA_DEPTH = 8
#: Metadata keys that name a secret (compared without ``_``/``-``, case-insensitively).
_SECRET_KEYS = (
    "token", "password", "passwd", "secret", "apikey", "authorization", "credential",
    "privatekey", "cookie",
)  # fmt: skip


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
    #: Connect and read-idle timeout (seconds) of this job's requests; None: the engine's.
    timeout: float | None = None
    #: Retries after a failed attempt before giving up; None: the engine's, 0: none.
    retries: int | None = None
    #: False skips TLS certificate checks for this job only; allowed for a plain URL with a
    #: ``sha256`` (the digest, not the connection, then proves the bytes).
    verify_tls: bool = True
    #: A JSON object kept with the job (canonical JSON text; see :attr:`Job.metadata`).
    metadata: str | None = None

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
        if not opts.verify_tls and opts.sha256 is None:
            raise OptionValueError(
                "verify_tls",
                "is False, which needs sha256 too: without certificate checks only a known digest "
                "proves that the bytes are the right ones",
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
            if f.name == "display" or _is_default(f.name, value):
                continue
            if f.name == "metadata":
                out[f.name] = json.loads(value)
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
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(Options) if f.default is not MISSING}


def _is_default(name: str, value: Any) -> bool:
    default = _DEFAULTS.get(name, MISSING)
    if isinstance(value, bool) or isinstance(default, bool):
        return value is default
    return bool(value == default or value == ())


def _patterns(key: str, value: str | Iterable[str]) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise OptionValueError(key, f"patterns must be non-empty strings, got {item!r}")
        out.extend(p.strip() for p in item.split(",") if p.strip())
    return tuple(out)


def _normalize(key: str, value: Any) -> Any:
    check = _CHECKS.get(key)
    if check is None:  # pragma: no cover - guarded by create()
        raise NbmodelsError(f"unhandled option {key}")
    return check(key, value)


def _dir(_key: str, value: Any) -> Path:
    return Path(value).expanduser()


def _revision(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
        raise OptionValueError(key, f"must be a branch, tag or commit name, got {value!r}")
    return value


def _sha256(key: str, value: Any) -> str:
    digest = str(value).strip().lower().removeprefix("sha256:")
    if not _HEX64.fullmatch(digest):
        raise OptionValueError(
            key,
            "must be 64 hexadecimal digits (optionally prefixed 'sha256:'), "
            f"got {str(value)[:80]!r}",
        )
    return digest


def _whole(key: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise OptionValueError(key, f"must be a whole number, got {value!r}")
    try:
        n = int(value)
    except ValueError:
        raise OptionValueError(key, f"must be a whole number, got {value!r}") from None
    if not low <= n <= high:
        raise OptionValueError(key, f"must be between {low} and {high}, got {n}")
    return n


def _token(key: str, value: Any) -> str | bool | None:
    if value is None or value is False or value is True:
        return value
    if not isinstance(value, str) or not value.strip():
        raise OptionValueError(key, "must be a string, False (send none) or None (automatic)")
    return value.strip()


def _timeout(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise OptionValueError(key, f"must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not 0 < seconds <= MAX_TIMEOUT:
        raise OptionValueError(
            key, f"must be more than 0 and at most {MAX_TIMEOUT:.0f} seconds, got {value}"
        )
    return seconds


def _verify_tls(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise OptionValueError(key, f"must be True or False, got {value!r}")
    return value


_CHECKS: dict[str, Callable[[str, Any], Any]] = {
    "dir": _dir,
    "revision": _revision,
    "include": _patterns,
    "exclude": _patterns,
    "sha256": _sha256,
    **{k: lambda _k, v: bool(v) for k in ("force", "offline", "extract", "remove_archive")},
    "connections": lambda k, v: _whole(k, v, 1, MAX_CONNECTIONS),
    "retries": lambda k, v: _whole(k, v, 0, MAX_RETRIES),
    "token": _token,
    "display": lambda _k, v: None if v is None else bool(v),
    "timeout": _timeout,
    "verify_tls": _verify_tls,
    "metadata": lambda _k, v: _metadata(v),
}


def _metadata(value: Any) -> str:
    """Canonical JSON text of a metadata object, refusing what must not be kept: anything but a
    JSON object, more than ``MAX_METADATA_BYTES``, deep nesting, and secrets (keys that name
    one, values shaped like a token or a signed URL)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("metadata must be a JSON object, got text that is not JSON") from None
    if not isinstance(value, Mapping):
        raise ValueError(f"metadata must be a JSON object, got {type(value).__name__}")
    _check_metadata(value, "metadata", 1)
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata must hold only JSON values: {exc}") from None
    if len(text.encode()) > MAX_METADATA_BYTES:
        raise ValueError(
            f"metadata is {len(text.encode())} bytes of JSON; at most {MAX_METADATA_BYTES} "
            "are kept with a job"
        )
    return text


def _check_metadata(value: Any, where: str, depth: int) -> None:
    if depth > MAX_METADATA_DEPTH:
        raise ValueError(f"{where} is nested more than {MAX_METADATA_DEPTH} levels deep")
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where} has a key that is not a string: {key!r}")
            plain = re.sub(r"[^a-z0-9]", "", key.lower())
            if any(word in plain for word in _SECRET_KEYS):
                raise ValueError(
                    f"{where}.{key[:40]} looks like a secret; metadata is stored and shown "
                    "in clear, so keep credentials out of it"
                )
            _check_metadata(item, f"{where}.{key[:40]}", depth + 1)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_metadata(item, f"{where}[{i}]", depth + 1)
    elif isinstance(value, str) and redact_text(value) != value:
        raise ValueError(
            f"{where} holds a token or a signed URL; metadata is stored and shown in clear, "
            "so keep credentials out of it"
        )
