"""Is this answer the bytes that were asked for? A pure check: no I/O, nothing changed.

A transfer asks for a range of a file it may already hold part of. The answer's status and
headers, weighed against what was asked (:class:`Asked`) and what is known (:class:`Known`),
give :class:`Accepted` — what the transfer learns: the file's size, the validator to record,
whether more connections may ask for ranges — or the outcome that ends this request
(docs/download-contract.md, rules 2, 3 and 7):

- :class:`Restart`: the remote object is not the one the partial data came from (another
  size or validator, a whole body for a range, a range that no longer exists): start again
  from zero;
- :class:`~nbmodels.net.RetryableError`: a broken answer (another range than asked, a
  missing or contradicting ``Content-Range`` / ``Content-Length``, an unexpected status);
- :class:`~nbmodels.errors.IntegrityError`: the server offers another size than the source
  promised, from the first byte on: nothing can be saved;
- :class:`~nbmodels.errors.NetworkError`: an encoded body (bytes are written as stored).

The transfer raises the outcome, or applies what was accepted. One thing it does before:
when the size is not known yet, it reserves the blocks of the size a 206 announces
(:func:`announced_size`), so that an answer too big for the disk ends the download at once,
whatever else is wrong with it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

import httpx2

from ..errors import IntegrityError, NbmodelsError
from ..net import RetryableError, encoded_body

__all__ = [
    "Accepted",
    "Answer",
    "Asked",
    "Known",
    "Outcome",
    "Restart",
    "announced_size",
    "check_answer",
    "content_length",
    "size_error",
]

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
_UNSATISFIED = re.compile(r"bytes \*/(\d+)")


class Answer(Protocol):
    """What the check reads from an answer (an httpx2 response or a raw head)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> httpx2.Headers: ...


@dataclass(frozen=True, slots=True)
class Asked:
    """The request: bytes ``[pos, end)`` (``end`` None: to the end of the file)."""

    pos: int
    end: int | None


@dataclass(frozen=True, slots=True)
class Known:
    """What the transfer knows before the answer."""

    #: The file, for messages.
    name: str
    #: The size the source promised (None: it did not say).
    expected: int | None
    #: The size known now: promised, learnt from an earlier answer, or recorded with the
    #: partial data.
    size: int | None
    #: The validator recorded with the partial data (None: none yet).
    validator: str | None
    #: Bytes of the partial file on disk.
    written: int


@dataclass(frozen=True, slots=True)
class Accepted:
    """The answer carries the bytes asked for."""

    #: The file's size (None: still unknown, a whole body without a length).
    total: int | None
    #: The validator to record with the partial data.
    validator: str | None
    #: More connections may ask for ranges (the answer was a 206 with a strong validator).
    ranges_ok: bool
    #: The body runs to the end of the file: the request's part ends at ``total``.
    whole: bool


class Restart(Exception):
    """The remote object is not the one the partial data came from: start again from zero."""


Outcome = Accepted | Restart | RetryableError | NbmodelsError


def announced_size(answer: Answer, known: Known) -> int | None:
    """The size of the file as a 206 announces it, when none is known yet (else None)."""
    if known.size is not None or answer.status_code != 206 or encoded_body(answer.headers, ""):
        return None
    match = _CONTENT_RANGE.fullmatch(answer.headers.get("Content-Range", "").strip())
    return None if match is None else int(match.group(3))


def check_answer(answer: Answer, asked: Asked, known: Known, shown: str) -> Outcome:
    """Check ``answer`` to ``asked`` from ``shown`` (the redacted URL, for messages)."""
    encoded = encoded_body(answer.headers, shown)
    if encoded is not None:
        return encoded
    status = answer.status_code
    if status == 206:
        return _partial_content(answer, asked, known, shown)
    if status == 200:
        return _whole_body(answer, asked, known)
    if status == 416:
        return _unsatisfiable(answer, asked, known)
    return RetryableError(f"{shown} answered an unexpected HTTP {status}", short=f"HTTP {status}")


def _partial_content(answer: Answer, asked: Asked, known: Known, shown: str) -> Outcome:
    """A 206: exactly the range asked for, of the file of the known size and validator."""
    match = _CONTENT_RANGE.fullmatch(answer.headers.get("Content-Range", "").strip())
    if match is None:
        return RetryableError(
            f"{shown} answered 206 without a valid Content-Range", short="invalid Content-Range"
        )
    first, last, total = (int(g) for g in match.groups())
    if known.size is not None and total != known.size:
        if known.expected is not None and asked.pos == 0:
            return size_error(known.name, known.expected, total)
        return Restart("the remote file changed size")
    validator = strong_validator(answer)
    if known.validator and validator and validator != known.validator:
        return Restart("the remote file changed (its validator differs)")
    expected_last = (asked.end if asked.end is not None else total) - 1
    if first != asked.pos or last != expected_last:
        return RetryableError(
            f"{shown} answered bytes {first}-{last} to a request for bytes "
            f"{asked.pos}-{expected_last}",
            short="wrong byte range",
        )
    length = content_length(answer)
    if length is not None and length != last - first + 1:
        return RetryableError(
            f"{shown} sent a Content-Length that contradicts its range",
            short="invalid Content-Length",
        )
    if known.validator is None and asked.pos > 0:
        return Restart("the server offers no validator to prove the bytes match")
    return Accepted(
        total=total,
        validator=known.validator or validator,
        ranges_ok=validator is not None,
        whole=asked.end is None,
    )


def _whole_body(answer: Answer, asked: Asked, known: Known) -> Outcome:
    """A 200: the whole file, acceptable only from byte 0 into an empty partial file."""
    if asked.pos > 0:
        # Range ignored or If-Range failed: the only safe thing is to begin again.
        return Restart("the server answered a range request with the whole file")
    length = content_length(answer)
    if known.expected is not None and length is not None and length != known.expected:
        return size_error(known.name, known.expected, length)
    if known.written:
        return Restart("the server sent a whole new body")
    return Accepted(
        total=length if known.expected is None else known.size,
        validator=strong_validator(answer),
        ranges_ok=False,
        whole=True,
    )


def _unsatisfiable(answer: Answer, asked: Asked, known: Known) -> Outcome:
    """A 416: an empty file when asked from byte 0, else the recorded range is gone."""
    match = _UNSATISFIED.fullmatch(answer.headers.get("Content-Range", ""))
    if asked.pos == 0 and match is not None and int(match.group(1)) == 0:
        if known.expected not in (None, 0):
            return size_error(known.name, known.expected, 0)
        return Accepted(total=0, validator=known.validator, ranges_ok=False, whole=True)
    return Restart("the server says the recorded range no longer exists")




def strong_validator(answer: Answer) -> str | None:
    """A strong ETag, else Last-Modified, when it can be sent back in ``If-Range``."""
    etag = answer.headers.get("ETag")
    if etag and not etag.startswith("W/") and len(etag) <= 512 and _sendable(etag):
        return etag
    last_modified = answer.headers.get("Last-Modified")
    if last_modified and len(last_modified) <= 64 and _sendable(last_modified):
        return last_modified
    return None


def _sendable(value: str) -> bool:
    """A validator we can send back in If-Range: printable ASCII only."""
    return value.isascii() and value.isprintable()


def content_length(answer: Answer) -> int | None:
    raw = answer.headers.get("Content-Length")
    if raw is None or not (raw.strip().isascii() and raw.strip().isdigit()):
        return None
    return int(raw)


def size_error(name: str, expected: int | None, got: int) -> IntegrityError:
    return IntegrityError(
        f"{name}: the server offers {got} bytes but {expected} were expected; nothing was saved.",
        expected=expected,
        actual=got,
        hint="The file may have changed upstream; refresh the reference or try again later.",
    )
