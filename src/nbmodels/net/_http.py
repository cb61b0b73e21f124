"""HTTP for transfers: one client, manual redirects with origin-bound credentials, status
classification, Retry-After and backoff (docs/download-contract.md, rules 5, 6 and 7).

httpx2 exceptions are translated here and nowhere else.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import errno
import logging
import os
import random
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import httpx2

from .._config import Settings
from .._redact import redact_text, redact_url
from ..errors import AccessError, NetworkError, NotFoundError

__all__ = [
    "Credential",
    "RetryableError",
    "backoff_delay",
    "is_refused",
    "make_client",
    "open_stream",
    "origin_of",
    "parse_retry_after",
    "transport_failure",
    "with_retries",
]

T = TypeVar("T")
Origin = tuple[str, str, int]
USER_AGENT = "nbmodels/0.1"
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> Origin:
    """(scheme, host, port) with default ports filled in; raises ValueError for non-http(s)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"only http and https URLs are supported, not {scheme or 'no scheme'!r}")
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError("URL has no host")
    return scheme, host, parts.port or _DEFAULT_PORTS[scheme]


@dataclass(frozen=True, slots=True)
class Credential:
    """A secret that may be sent to exactly one origin: a bearer token (the Hub), or the
    user:password of a URL (``Basic``)."""

    token: str
    origin: Origin
    scheme: str = "Bearer"

    @classmethod
    def basic(cls, user: str, password: str, origin: Origin) -> Credential:
        raw = f"{unquote(user)}:{unquote(password)}".encode()
        return cls(base64.b64encode(raw).decode("ascii"), origin, "Basic")

    def __repr__(self) -> str:
        return f"Credential(origin={self.origin!r}, {self.scheme} <hidden>)"

    def headers_for(self, url: str) -> dict[str, str]:
        try:
            ok = origin_of(url) == self.origin
        except ValueError:
            ok = False
        return {"Authorization": f"{self.scheme} {self.token}"} if ok else {}


def split_userinfo(url: str) -> tuple[str, Credential | None]:
    """``http://user:pw@host/x`` -> (``http://host/x``, a Basic credential for that origin).

    The URL that travels (and that httpx2 logs) then never carries the password."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    netloc = parts.netloc.rsplit("@", 1)[1]
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    cred = Credential.basic(parts.username or "", parts.password or "", origin_of(clean))
    return clean, cred


class _RedactLog(logging.Filter):
    """httpx2 logs every request URL at INFO, signed query strings included: redact them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                redact_url(str(a)) if isinstance(a, httpx2.URL) else a for a in record.args
            )
        return True


_log_filter = _RedactLog()


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


def _short_transport(exc: BaseException) -> str:
    if isinstance(exc, httpx2.TimeoutException | TimeoutError):
        return "timed out"
    if any(isinstance(e, socket.gaierror) for e in _socket_errors(exc)):
        return "host not found"
    if isinstance(exc, httpx2.ConnectError):
        return "could not connect"
    return "connection lost"


def transport_failure(exc: BaseException, where: str) -> RetryableError:
    """The retryable error for a transport failure talking to ``where`` (a redacted URL or a
    host), with its short form and whether the connection was refused."""
    if is_refused(exc):
        return RetryableError(
            f"connection to {where} refused", short="connection refused", refused=True
        )
    short = _short_transport(exc)
    return RetryableError(f"{short} talking to {where} ({type(exc).__name__})", short=short)


_tls_lock = threading.Lock()
_tls_contexts: dict[tuple[str | None, str | None], ssl.SSLContext] = {}


def tls_context() -> ssl.SSLContext:
    """The TLS context of every connection: httpx2's default (the system's CA store, or
    ``SSL_CERT_FILE`` / ``SSL_CERT_DIR``), built once per value of those variables. Loading a
    CA store costs about 50 ms of CPU, once per client otherwise."""
    key = (os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    with _tls_lock:
        ctx = _tls_contexts.get(key)
        if ctx is None:
            ctx = _tls_contexts[key] = httpx2.create_ssl_context()
        return ctx


def make_client(settings: Settings, *, verify: bool = True) -> httpx2.AsyncClient:
    """The HTTP client of the engine (or of one job with its own timeouts). ``verify=False``
    skips certificate checks: only for a job that asked for it (see ``Options.verify_tls``)."""
    logger = logging.getLogger("httpx2")
    if _log_filter not in logger.filters:
        logger.addFilter(_log_filter)
    timeout = httpx2.Timeout(
        connect=settings.connect_timeout,
        read=settings.read_timeout,
        write=settings.read_timeout,
        pool=None,
    )
    limits = httpx2.Limits(max_connections=None, max_keepalive_connections=32)
    return httpx2.AsyncClient(
        verify=tls_context() if verify else False,
        timeout=timeout,
        limits=limits,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
    )


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


def backoff_delay(attempt: int, settings: Settings, retry_after: float | None = None) -> float:
    """Capped exponential backoff with full jitter; a server's Retry-After wins when given."""
    if retry_after is not None:
        return retry_after
    ceiling = min(settings.backoff_cap, settings.backoff_base * (2 ** max(0, attempt - 1)))
    return random.uniform(ceiling / 2, ceiling)


def retry_delay(failure: RetryableError, attempt: int, settings: Settings) -> float:
    """How long to wait after the ``attempt``-th failure in a row: a refused connection backs
    off from its own base, everything else from :func:`backoff_delay`."""
    if failure.refused and failure.retry_after is None:
        ceiling = min(settings.backoff_cap, settings.refused_backoff_base * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)
    return backoff_delay(attempt, settings, failure.retry_after)


def out_of_attempts(failures: int, refused: int, settings: Settings) -> bool:
    """Give up? After ``settings.max_attempts`` failures in a row, or sooner when the last
    ``refused`` of them were refused connections (nobody listening)."""
    return failures >= settings.max_attempts or refused >= settings.refused_attempts


async def with_retries(
    attempt_once: Callable[[], Awaitable[T]],
    settings: Settings,
    *,
    what: str,
    where: str,
    hint: str | None = None,
) -> T:
    """Run ``attempt_once`` until it succeeds, retrying :class:`RetryableError` and transport
    errors with capped backoff (honouring Retry-After); after ``settings.max_attempts`` raise
    a NetworkError saying what was tried. Other errors pass through at once.

    The one retry loop for small requests (Hub listings, header reads); the transfer has its
    own, which also counts progress between failures.
    """
    attempt = refused = 0
    while True:
        attempt += 1
        try:
            return await attempt_once()
        except RetryableError as exc:
            failure = exc
        except httpx2.TransportError as exc:
            failure = transport_failure(exc, where)
            failure.__cause__ = exc
        refused = refused + 1 if failure.refused else 0
        if out_of_attempts(attempt, refused, settings):
            raise NetworkError(
                f"Could not {what} after {attempt} attempts: {failure.reason}.", hint=hint
            ) from failure
        await asyncio.sleep(retry_delay(failure, refused or attempt, settings))


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
    if status in (408, 429) or 500 <= status <= 599:
        wait = parse_retry_after(response.headers.get("Retry-After"), cap=settings.retry_after_cap)
        return RetryableError(
            f"HTTP {status} from {shown}{suffix}", retry_after=wait, short=f"HTTP {status}"
        )
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


@asynccontextmanager
async def open_stream(
    client: httpx2.AsyncClient,
    url: str,
    headers: dict[str, str],
    settings: Settings,
    credential: Credential | None = None,
    method: str = "GET",
    passthrough: frozenset[int] = frozenset(),
    on_error: Callable[[httpx2.Response], Exception | None] | None = None,
) -> AsyncIterator[tuple[httpx2.Response, str]]:
    """Send a request, following redirects by hand; yield (open response, final URL).

    Every hop must be http(s); a hop to another origin never carries the credential, and an
    https -> http downgrade is refused outright. Non-2xx answers are raised as nbmodels errors
    or :class:`RetryableError`; 3xx beyond ``settings.max_redirects`` is a NetworkError.
    """
    current = url
    start_scheme = urlsplit(url).scheme.lower()
    for _hop in range(settings.max_redirects + 1):
        try:
            origin_of(current)
        except ValueError as exc:
            raise NetworkError(f"Refusing to fetch {redact_url(current)}: {exc}.") from exc
        req_headers = dict(headers)
        if credential is not None:
            req_headers.update(credential.headers_for(current))
        try:
            request = client.build_request(method, current, headers=req_headers)
        except (httpx2.InvalidURL, ValueError) as exc:
            raise NetworkError(
                f"Cannot request {redact_url(current)}: {type(exc).__name__}."
            ) from None
        try:
            response = await client.send(request, stream=True)
        except httpx2.TransportError as exc:
            raise transport_failure(exc, redact_url(current)) from exc
        try:
            if response.is_redirect:
                location = response.headers.get("Location", "").strip()
                if not location:
                    raise NetworkError(
                        f"{redact_url(current)} answered {response.status_code} without a Location."
                    )
                try:
                    nxt = urljoin(current, location)
                    origin_of(nxt)
                except ValueError as exc:
                    raise NetworkError(
                        f"{redact_url(current)} redirected to an unusable address "
                        f"({redact_text(str(exc))[:100]})."
                    ) from None
                scheme = urlsplit(nxt).scheme.lower()
                if start_scheme == "https" and scheme == "http":
                    raise NetworkError(
                        f"{redact_url(current)} redirected from https to plain http "
                        f"({redact_url(nxt)}); refusing the downgrade."
                    )
                current = nxt
                continue
            status = response.status_code
            if (status >= 400 or status < 200) and status not in passthrough:
                mapped = on_error(response) if on_error is not None else None
                raise mapped if mapped is not None else classify(response, current, settings)
            yield response, current
            return
        finally:
            await response.aclose()
    raise NetworkError(
        f"Too many redirects (more than {settings.max_redirects}) starting at {redact_url(url)}."
    )
