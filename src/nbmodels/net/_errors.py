"""What a failure on the wire means for nbmodels: the one place it is decided.

An exception from httpx2 (every class it exports is in :data:`HTTPX2_ERRORS`; a test fails
when a new one appears), a socket, ssl or OS error of the fast path, or an error answer
becomes one of:

- :class:`RetryableError`: another attempt may succeed (a refused, dropped or idle
  connection, a host not found; an answer 408, 429 or 5xx). The retry loops back off and try
  again, and after the last attempt raise a NetworkError saying what was tried;
- an :class:`~nbmodels.errors.NbmodelsError` at once: the request cannot succeed as made (a
  URL httpx2 refuses; an answer 404 or 410, 401 or 403, or another 4xx);
- nothing (:func:`translate` returns None): a misuse of httpx2, such as a stream read twice,
  is a bug in nbmodels and is raised as it is, and so is an nbmodels error.

Callers catch :data:`TRANSLATED` (what httpx2 raises for a failed request) or ``OSError``
(sockets), and ``raise translate(exc, where) from exc``.
"""

from __future__ import annotations

import email.utils
import enum
import errno
import socket
import ssl
import time
from collections.abc import Mapping

import httpx2

from .._config import Settings
from .._redact import redact_text, redact_url
from ..errors import AccessError, NbmodelsError, NetworkError, NotFoundError

__all__ = [
    "HTTPX2_ERRORS",
    "SOCKET_ERRORS",
    "TRANSLATED",
    "Kind",
    "RetryableError",
    "classify",
    "encoded_body",
    "is_refused",
    "kind_of",
    "parse_retry_after",
    "retryable_status",
    "status_failure",
    "translate",
]


class RetryableError(Exception):
    """A failed attempt worth repeating (transport error, 408/429/5xx, truncated body).

    ``reason`` is the whole story for the final error; ``short`` the few words a progress line
    shows while waiting to retry ("connection refused", "HTTP 503"); ``refused`` says nothing
    listened at the address, which gets a smaller retry budget than a dropped connection.
    """

    def __init__(
        self,
        reason: str,
        *,
        retry_after: float | None = None,
        short: str | None = None,
        refused: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.short = short or reason
        self.refused = refused


class Kind(enum.Enum):
    """What a failure is, for the one who asked."""

    #: Nothing arrived in time: retry.
    TIMEOUT = "timeout"
    #: The connection failed, was refused or was lost, or the host is unknown: retry.
    CONNECTION = "connection"
    #: The request cannot succeed as made: a NetworkError at once.
    REQUEST = "request"
    #: A misuse of the client (a bug of nbmodels): raised as it is.
    BUG = "bug"


#: Every exception class httpx2 exports (its tree is drawn in ``httpx2/_exceptions.py``).
HTTPX2_ERRORS: dict[type[BaseException], Kind] = {
    httpx2.HTTPError: Kind.BUG,  # raised only as one of its subclasses
    httpx2.RequestError: Kind.REQUEST,
    httpx2.TransportError: Kind.CONNECTION,
    httpx2.TimeoutException: Kind.TIMEOUT,
    httpx2.ConnectTimeout: Kind.TIMEOUT,
    httpx2.ReadTimeout: Kind.TIMEOUT,
    httpx2.WriteTimeout: Kind.TIMEOUT,
    httpx2.PoolTimeout: Kind.TIMEOUT,
    httpx2.NetworkError: Kind.CONNECTION,
    httpx2.ConnectError: Kind.CONNECTION,
    httpx2.ReadError: Kind.CONNECTION,
    httpx2.WriteError: Kind.CONNECTION,
    httpx2.CloseError: Kind.CONNECTION,
    httpx2.ProtocolError: Kind.CONNECTION,
    httpx2.RemoteProtocolError: Kind.CONNECTION,  # e.g. the server closed in mid-body
    # Retried like every transport error, although another attempt cannot help: nbmodels
    # builds valid requests, and refuses a scheme other than http(s) before sending.
    httpx2.LocalProtocolError: Kind.CONNECTION,
    httpx2.UnsupportedProtocol: Kind.CONNECTION,
    httpx2.ProxyError: Kind.CONNECTION,
    httpx2.SSEError: Kind.CONNECTION,
    httpx2.DecodingError: Kind.REQUEST,  # never raised: bodies are read raw
    httpx2.TooManyRedirects: Kind.REQUEST,  # never raised: redirects are followed by hand
    httpx2.InvalidURL: Kind.REQUEST,
    httpx2.HTTPStatusError: Kind.BUG,  # raise_for_status is not used: see classify()
    httpx2.CookieConflict: Kind.BUG,
    httpx2.StreamError: Kind.BUG,
    httpx2.StreamConsumed: Kind.BUG,
    httpx2.StreamClosed: Kind.BUG,
    httpx2.ResponseNotRead: Kind.BUG,
    httpx2.RequestNotRead: Kind.BUG,
}

#: The errors of the fast path's own sockets (``transfer/_rawbody.py``).
SOCKET_ERRORS: dict[type[BaseException], Kind] = {
    OSError: Kind.CONNECTION,  # no route to the host, network down, ...
    ConnectionError: Kind.CONNECTION,  # refused, reset, aborted, broken pipe, closed early
    socket.gaierror: Kind.CONNECTION,  # the host name does not resolve
    ssl.SSLError: Kind.CONNECTION,  # the TLS handshake or a record failed
    TimeoutError: Kind.TIMEOUT,  # the connect timeout, or no data within the idle timeout
}

_KINDS: dict[type[BaseException], Kind] = {**HTTPX2_ERRORS, **SOCKET_ERRORS}

#: What a caller of httpx2 catches: every exception it raises for a request that failed.
TRANSLATED = (httpx2.RequestError, httpx2.InvalidURL)


def kind_of(exc: BaseException) -> Kind | None:
    """The kind of ``exc`` (by its nearest listed class); None for nbmodels' own errors and
    anything that is not a failure on the wire."""
    if isinstance(exc, NbmodelsError):
        return None
    for klass in type(exc).__mro__:
        kind = _KINDS.get(klass)
        if kind is not None:
            return kind
    return None


def translate(
    exc: BaseException, where: str, *, at: int | None = None, idle: float | None = None
) -> RetryableError | NbmodelsError | None:
    """The error to raise (``from exc``) for ``exc``, a failure talking to ``where`` (a
    redacted URL or a host); None: raise ``exc`` as it is.

    ``at``: the body was being received, and broke off at this byte; ``idle``: the read-idle
    timeout in seconds, named when a body stalled."""
    kind = kind_of(exc)
    if kind is None or kind is Kind.BUG:
        return None
    name = type(exc).__name__
    if kind is Kind.REQUEST:
        return NetworkError(f"Cannot request {where}: {name}.")
    if is_refused(exc):
        return RetryableError(
            f"connection to {where} refused", short="connection refused", refused=True
        )
    if kind is Kind.TIMEOUT and idle is not None:
        quiet = f"no data for {idle:.0f} s"
        return RetryableError(f"{quiet} from {where}", short=quiet)
    if at is not None:
        return RetryableError(
            f"connection to {where} lost at byte {at} ({name})", short="connection lost"
        )
    short = _short(kind, exc)
    return RetryableError(f"{short} talking to {where} ({name})", short=short)


def _short(kind: Kind, exc: BaseException) -> str:
    if kind is Kind.TIMEOUT:
        return "timed out"
    if any(isinstance(e, socket.gaierror) for e in _socket_errors(exc)):
        return "host not found"
    if isinstance(exc, httpx2.ConnectError):
        return "could not connect"
    return "connection lost"


def _socket_errors(exc: BaseException) -> list[OSError]:
    """The OS-level errors behind ``exc`` (its causes, contexts and grouped errors): httpx2
    reports "All connection attempts failed" with the socket errors as its causes."""
    seen: set[int] = set()
    found: list[OSError] = []
    stack: list[BaseException] = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, BaseExceptionGroup):
            stack.extend(e.exceptions)
        if isinstance(e, OSError) and e.errno is not None:
            found.append(e)
        stack.extend(x for x in (e.__cause__, e.__context__) if x is not None)
    return found


def is_refused(exc: BaseException) -> bool:
    """Was ``exc`` a refused connection, on every address tried (nothing listens there)?"""
    errors = _socket_errors(exc)
    return bool(errors) and all(e.errno == errno.ECONNREFUSED for e in errors)


# -- answers --------------------------------------------------------------------------------


def parse_retry_after(value: str | None, *, cap: float, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), cap)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    delay = when.timestamp() - (time.time() if now is None else now)
    return min(max(delay, 0.0), cap)


def retryable_status(status: int) -> bool:
    """408, 429 and 5xx: the server asks to come back later."""
    return status in (408, 429) or 500 <= status <= 599


def status_failure(
    status: int, headers: httpx2.Headers, where: str, settings: Settings, detail: str = ""
) -> RetryableError | None:
    """The retryable error for an answer that asks to come back later (honouring its
    Retry-After), else None."""
    if not retryable_status(status):
        return None
    wait = parse_retry_after(headers.get("Retry-After"), cap=settings.retry_after_cap)
    return RetryableError(
        f"HTTP {status} from {where}{detail}", retry_after=wait, short=f"HTTP {status}"
    )


def _error_detail(response: httpx2.Response) -> str:
    code = response.headers.get("X-Error-Code")
    msg = response.headers.get("X-Error-Message")
    detail = ": ".join(x for x in (code, msg) if x)
    query = response.request.url.query.decode("ascii", "replace")
    if query:
        detail = detail.replace(query, "…")  # a server echoing the signed URL back
    return redact_text(detail)[:300]


def classify(response: httpx2.Response, url: str, settings: Settings) -> Exception:
    """The error for a non-success status (the caller raises it)."""
    status = response.status_code
    shown = redact_url(url)
    detail = _error_detail(response)
    suffix = f" ({detail})" if detail else ""
    retry = status_failure(status, response.headers, shown, settings, suffix)
    if retry is not None:
        return retry
    if status == 404 or status == 410:
        return NotFoundError(
            f"{shown} answered {status} Not Found{suffix}.",
            hint="Check the URL (or the repository, revision and file name).",
        )
    if status in (401, 403):
        return AccessError(
            f"{shown} answered {status}: access denied{suffix}.",
            hint="If the file needs credentials, pass a token or download it in a browser first.",
        )
    return NetworkError(f"{shown} answered HTTP {status}{suffix}; not retrying a client error.")


def encoded_body(headers: Mapping[str, str], shown: str) -> NetworkError | None:
    """The error for an answer whose body is content-coded (gzip, br, ...) although identity
    was asked for: nbmodels takes bytes exactly as stored and never decodes them (a bounded
    size could not be enforced on an inflating body). None for an identity body."""
    coding = headers.get("Content-Encoding", "identity").strip().lower()
    if coding in ("", "identity"):
        return None
    return NetworkError(
        f"{shown} sent a {coding[:20]}-encoded body although identity was requested; "
        "nbmodels reads bytes exactly as stored and will not decode them."
    )
