"""What one submission names: the reference cleaned and parsed once (a malformed one fails at
once, in the caller's thread), the options checked against it, the form a job shows, and the
key under which submitting the same thing again finds the job still running."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from .._options import Options, OptionValueError
from .._redact import redact_url
from ..errors import RefError
from ..refs import ModelRef, parse_ref

__all__ = ["Submission"]


@dataclass(frozen=True, slots=True)
class Submission:
    #: The reference as given (stripped): it may carry a signed query string, so it is never
    #: shown or stored; only planning reads it.
    source: str
    parsed: ModelRef
    #: What the job shows and the registry keeps (a URL without its query string).
    shown: str
    key: str

    @classmethod
    def of(cls, ref: str, options: Options) -> Submission:
        """Raises ``RefError`` for a malformed reference, ``OptionValueError`` for options that
        do not fit it."""
        ref = _clean_ref(ref)
        parsed = parse_ref(ref)
        _check_options(parsed, options, ref)
        key = _job_key(ref if parsed.kind == "url" else str(parsed), options)
        return cls(ref, parsed, redact_url(ref) if "://" in ref else ref, key)


def _clean_ref(ref: str) -> str:
    if not isinstance(ref, str):
        raise RefError(f"A reference must be a string, not {type(ref).__name__}.")
    ref = ref.strip()
    if not ref:
        raise RefError("The reference is empty.", hint="Pass a URL or a Hugging Face reference.")
    return ref


def _check_options(parsed: ModelRef, options: Options, ref: str) -> None:
    if options.remove_archive and parsed.kind != "url" and options.dir is None:
        raise OptionValueError(
            "remove_archive",
            "cannot delete a file from the Hugging Face cache (other snapshots may share "
            "its blob, and huggingface_hub would fetch it again): download into a folder "
            "of your own with dir, or keep the archive",
        )
    if not options.verify_tls:
        _check_insecure_allowed(ref, parsed.kind)


def _check_insecure_allowed(ref: str, kind: str) -> None:
    """``verify_tls=False`` only where a digest still proves the bytes and no secret could be
    read on the way: a plain URL (never the Hub, whose token and file digests would then travel
    unchecked) without credentials in it. ``Options`` already demands the ``sha256``."""
    if kind != "url":
        raise ValueError(
            "verify_tls=False is only for plain http(s) URLs: Hub downloads always check "
            "certificates (the token and the files' digests travel on those connections)"
        )
    if "@" in urlsplit(ref).netloc:
        raise ValueError(
            "verify_tls=False is refused for a URL with credentials in it: an unchecked "
            "connection could hand them to anyone on the way"
        )


def _job_key(ref: str, options: Options) -> str:
    return "\x00".join(
        str(x)
        for x in (
            ref.split("#", 1)[0] if "://" in ref else ref,
            options.dir.resolve() if options.dir is not None else "",
            options.revision or "",
            ",".join(options.include),
            ",".join(options.exclude),
            options.sha256 or "",
            options.force,
            options.extract,
            options.remove_archive,
        )
    )
