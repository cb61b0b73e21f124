"""The answer check (``transfer/_answer.py``) from a table, without sockets: every way a
server can answer a ranged GET, against what was asked and what is known, and what the
transfer makes of it (docs/download-contract.md, rules 2, 3 and 7). The same answers over real
connections are in test_hostile.py and test_resume.py."""

from __future__ import annotations

from dataclasses import dataclass, replace

import httpx2
import pytest

from nbmodels.errors import IntegrityError, NetworkError
from nbmodels.net import RetryableError
from nbmodels.transfer._answer import (
    Accepted,
    Asked,
    Known,
    Outcome,
    Restart,
    announced_size,
    check_answer,
    content_length,
)

SHOWN = "http://cdn.test/m.bin?…"
SIZE = 1000
TAG = '"v1"'
#: Resuming a 1000-byte file with a recorded validator; 400 bytes are on disk.
RESUMING = Known(name="m.bin", expected=SIZE, size=SIZE, validator=TAG, written=400)
#: The first request for a file of a promised size.
FRESH = Known(name="m.bin", expected=SIZE, size=SIZE, validator=None, written=0)
#: A plain URL: nothing is known.
UNKNOWN = Known(name="m.bin", expected=None, size=None, validator=None, written=0)


@dataclass(frozen=True)
class Head:
    status_code: int
    headers: httpx2.Headers


def answer(status: int, **headers: str) -> Head:
    fields = {name.replace("_", "-"): value.encode() for name, value in headers.items()}
    return Head(status, httpx2.Headers(fields))


def ranged(first: int, last: int, total: int = SIZE, **headers: str) -> Head:
    return answer(206, Content_Range=f"bytes {first}-{last}/{total}", **headers)


def ok(total: int | None, validator: str | None, *, ranges: bool, whole: bool) -> Accepted:
    return Accepted(total=total, validator=validator, ranges_ok=ranges, whole=whole)


#: (what happens, the answer, what was asked, what was known, the outcome: an Accepted, or
#: the kind of outcome and a few words of its message).
TABLE: list[tuple[str, Head, Asked, Known, Accepted | tuple[type[Exception], str]]] = [
    # -- 206 ---------------------------------------------------------------------------------
    (
        "206 exact range of a resumed file",
        ranged(400, 999, ETag=TAG),
        Asked(400, SIZE),
        RESUMING,
        ok(SIZE, TAG, ranges=True, whole=False),
    ),
    (
        "206 exact piece in the middle",
        ranged(400, 499, ETag=TAG, Content_Length="100"),
        Asked(400, 500),
        RESUMING,
        ok(SIZE, TAG, ranges=True, whole=False),
    ),
    (
        "206 to the probe of a fresh file: its validator is recorded",
        ranged(0, 999, ETag=TAG),
        Asked(0, SIZE),
        FRESH,
        ok(SIZE, TAG, ranges=True, whole=False),
    ),
    (
        "206 to an open-ended probe: the size is learnt",
        ranged(0, 4999, total=5000, ETag=TAG),
        Asked(0, None),
        UNKNOWN,
        ok(5000, TAG, ranges=True, whole=True),
    ),
    (
        "206 with Last-Modified only: that is the validator",
        ranged(0, 999, Last_Modified="Wed, 21 Oct 2015 07:28:00 GMT"),
        Asked(0, SIZE),
        FRESH,
        ok(SIZE, "Wed, 21 Oct 2015 07:28:00 GMT", ranges=True, whole=False),
    ),
    (
        "206 with a weak ETag and no Last-Modified: no validator, no more ranges",
        ranged(0, 999, ETag='W/"v1"'),
        Asked(0, SIZE),
        FRESH,
        ok(SIZE, None, ranges=False, whole=False),
    ),
    (
        "206 with an ETag that cannot be sent back: Last-Modified instead",
        ranged(0, 999, ETag='"v\x7f"', Last_Modified="yesterday"),
        Asked(0, SIZE),
        FRESH,
        ok(SIZE, "yesterday", ranges=True, whole=False),
    ),
    (
        "206 with an ETag too long to send back",
        ranged(0, 999, ETag='"' + "a" * 600 + '"'),
        Asked(0, SIZE),
        FRESH,
        ok(SIZE, None, ranges=False, whole=False),
    ),
    (
        "206 without a validator while one is recorded: the recorded one stays",
        ranged(400, 999),
        Asked(400, SIZE),
        RESUMING,
        ok(SIZE, TAG, ranges=False, whole=False),
    ),
    (
        "206 with a Content-Length that is not a number: ignored",
        ranged(400, 999, ETag=TAG, Content_Length="six hundred"),
        Asked(400, SIZE),
        RESUMING,
        ok(SIZE, TAG, ranges=True, whole=False),
    ),
    (
        "206 with spaces around its Content-Range",
        answer(206, Content_Range="  bytes 400-999/1000 ", ETag=TAG),
        Asked(400, SIZE),
        RESUMING,
        ok(SIZE, TAG, ranges=True, whole=False),
    ),
    (
        "206 without a Content-Range",
        answer(206, ETag=TAG),
        Asked(400, SIZE),
        RESUMING,
        (RetryableError, "without a valid Content-Range"),
    ),
    (
        "206 with an unknown total",
        answer(206, Content_Range="bytes 400-999/*", ETag=TAG),
        Asked(400, SIZE),
        RESUMING,
        (RetryableError, "without a valid Content-Range"),
    ),
    (
        "206 with a Content-Range in another unit",
        answer(206, Content_Range="items 400-999/1000", ETag=TAG),
        Asked(400, SIZE),
        RESUMING,
        (RetryableError, "without a valid Content-Range"),
    ),
    (
        "206 starting elsewhere",
        ranged(0, 999, ETag=TAG),
        Asked(400, SIZE),
        RESUMING,
        (RetryableError, "answered bytes 0-999 to a request for bytes 400-999"),
    ),
    (
        "206 ending elsewhere",
        ranged(400, 998, ETag=TAG),
        Asked(400, SIZE),
        RESUMING,
        (RetryableError, "answered bytes 400-998 to a request for bytes 400-999"),
    ),
    (
        "206 running past the piece asked for",
        ranged(400, 999, ETag=TAG),
        Asked(400, 500),
        RESUMING,
        (RetryableError, "to a request for bytes 400-499"),
    ),
    (
        "206 with a Content-Length that contradicts its range",
        ranged(400, 999, ETag=TAG, Content_Length="601"),
        Asked(400, SIZE),
        RESUMING,
        (RetryableError, "Content-Length that contradicts its range"),
    ),
    (
        "206 of another size, from byte 0 of a promised size: nothing can be saved",
        ranged(0, 1999, total=2000, ETag=TAG),
        Asked(0, SIZE),
        FRESH,
        (IntegrityError, "offers 2000 bytes but 1000 were expected"),
    ),
    (
        "206 of another size, resuming: start again",
        ranged(400, 999, total=2000, ETag=TAG),
        Asked(400, SIZE),
        RESUMING,
        (Restart, "changed size"),
    ),
    (
        "206 of another size than learnt (no size promised): start again",
        ranged(0, 999, total=2000, ETag=TAG),
        Asked(0, SIZE),
        replace(UNKNOWN, size=SIZE),
        (Restart, "changed size"),
    ),
    (
        "206 with another validator: start again",
        ranged(400, 999, ETag='"v2"'),
        Asked(400, SIZE),
        RESUMING,
        (Restart, "its validator differs"),
    ),
    (
        "206 past byte 0 with no validator to prove the bytes match: start again",
        ranged(400, 999),
        Asked(400, SIZE),
        replace(RESUMING, validator=None),
        (Restart, "no validator"),
    ),
    # -- 200 ---------------------------------------------------------------------------------
    (
        "200 to the first request: the whole file, no ranges",
        answer(200, Content_Length="1000", ETag=TAG),
        Asked(0, SIZE),
        FRESH,
        ok(SIZE, TAG, ranges=False, whole=True),
    ),
    (
        "200 without a length to a promised size: the promise stands",
        answer(200, ETag=TAG),
        Asked(0, SIZE),
        FRESH,
        ok(SIZE, TAG, ranges=False, whole=True),
    ),
    (
        "200 of a plain URL: its length is the size",
        answer(200, Content_Length="777"),
        Asked(0, None),
        UNKNOWN,
        ok(777, None, ranges=False, whole=True),
    ),
    (
        "200 of a plain URL without a length: the size stays unknown",
        answer(200),
        Asked(0, None),
        UNKNOWN,
        ok(None, None, ranges=False, whole=True),
    ),
    (
        "200 to a range past byte 0: never appended, start again",
        answer(200, Content_Length="1000", ETag=TAG),
        Asked(400, SIZE),
        RESUMING,
        (Restart, "whole file"),
    ),
    (
        "200 of another length than promised",
        answer(200, Content_Length="999"),
        Asked(0, SIZE),
        FRESH,
        (IntegrityError, "offers 999 bytes but 1000 were expected"),
    ),
    (
        "200 from byte 0 while other parts are on disk: start again",
        answer(200, Content_Length="1000", ETag=TAG),
        Asked(0, 400),
        replace(RESUMING, written=300),
        (Restart, "whole new body"),
    ),
    # -- 416 ---------------------------------------------------------------------------------
    (
        "416 */0 from byte 0: an empty file",
        answer(416, Content_Range="bytes */0"),
        Asked(0, None),
        UNKNOWN,
        ok(0, None, ranges=False, whole=True),
    ),
    (
        "416 */0 for a file promised empty",
        answer(416, Content_Range="bytes */0"),
        Asked(0, 0),
        replace(FRESH, expected=0, size=0),
        ok(0, None, ranges=False, whole=True),
    ),
    (
        "416 */0 for a file promised 1000 bytes",
        answer(416, Content_Range="bytes */0"),
        Asked(0, SIZE),
        FRESH,
        (IntegrityError, "offers 0 bytes but 1000 were expected"),
    ),
    (
        "416 for a recorded range: it no longer exists",
        answer(416, Content_Range="bytes */1000"),
        Asked(400, SIZE),
        RESUMING,
        (Restart, "no longer exists"),
    ),
    (
        "416 */0 past byte 0",
        answer(416, Content_Range="bytes */0"),
        Asked(400, SIZE),
        RESUMING,
        (Restart, "no longer exists"),
    ),
    (
        "416 without a Content-Range",
        answer(416),
        Asked(0, None),
        UNKNOWN,
        (Restart, "no longer exists"),
    ),
    # -- encodings and other statuses --------------------------------------------------------
    (
        "gzip body nobody asked for",
        ranged(400, 999, ETag=TAG, Content_Encoding="gzip"),
        Asked(400, SIZE),
        RESUMING,
        (NetworkError, "sent a gzip-encoded body"),
    ),
    (
        "any encoding but identity, on any status",
        answer(416, Content_Range="bytes */0", Content_Encoding="br"),
        Asked(0, None),
        UNKNOWN,
        (NetworkError, "sent a br-encoded body"),
    ),
    (
        "identity spelt out",
        ranged(400, 999, ETag=TAG, Content_Encoding=" Identity "),
        Asked(400, SIZE),
        RESUMING,
        ok(SIZE, TAG, ranges=True, whole=False),
    ),
    (
        "an empty Content-Encoding",
        ranged(400, 999, ETag=TAG, Content_Encoding=""),
        Asked(400, SIZE),
        RESUMING,
        ok(SIZE, TAG, ranges=True, whole=False),
    ),
    (
        "204 No Content",
        answer(204),
        Asked(0, SIZE),
        FRESH,
        (RetryableError, "unexpected HTTP 204"),
    ),
    (
        "a redirect where none is expected",
        answer(302, Location="/elsewhere"),
        Asked(0, SIZE),
        FRESH,
        (RetryableError, "unexpected HTTP 302"),
    ),
]


@pytest.mark.parametrize(
    ("head", "asked", "known", "expected"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_answer_check(
    head: Head,
    asked: Asked,
    known: Known,
    expected: Accepted | tuple[type[Exception], str],
) -> None:
    outcome: Outcome = check_answer(head, asked, known, SHOWN)
    if isinstance(expected, Accepted):
        assert outcome == expected
        return
    kind, words = expected
    assert type(outcome) is kind, outcome
    assert words in str(outcome)


def test_messages_name_the_redacted_url_and_the_retry_says_few_words() -> None:
    outcome = check_answer(ranged(0, 999, ETag=TAG), Asked(400, SIZE), RESUMING, SHOWN)
    assert isinstance(outcome, RetryableError)
    assert outcome.reason.startswith(SHOWN)
    assert outcome.short == "wrong byte range"
    size = check_answer(answer(200, Content_Length="9"), Asked(0, SIZE), FRESH, SHOWN)
    assert isinstance(size, IntegrityError)
    assert (size.expected, size.actual) == (SIZE, 9)
    assert str(size).startswith("m.bin: ")


@pytest.mark.parametrize(
    ("raw", "length"),
    [("10", 10), (" 10 ", 10), ("0", 0), ("-1", None), ("1e3", None), ("١٠", None), ("", None)],
)
def test_content_length_is_a_plain_ascii_number(raw: str, length: int | None) -> None:
    assert content_length(answer(200, Content_Length=raw)) == length


@pytest.mark.parametrize(
    ("head", "known", "size"),
    [
        (ranged(0, 9, total=1 << 60), UNKNOWN, 1 << 60),  # even with the wrong range
        (ranged(0, 999), FRESH, None),  # the size is known: nothing new to reserve
        (answer(200, Content_Length="1000"), UNKNOWN, None),
        (answer(206, Content_Range="bytes 0-9/*"), UNKNOWN, None),
        (ranged(0, 999, Content_Encoding="gzip"), UNKNOWN, None),
    ],
    ids=["unknown size", "known size", "200", "no total", "encoded"],
)
def test_the_size_to_reserve_before_checking_the_rest(
    head: Head, known: Known, size: int | None
) -> None:
    """An answer too big for the disk is reported as that, whatever else is wrong with it
    (test_download.py::test_insufficient_space_is_reported_before_writing)."""
    assert announced_size(head, known) == size
