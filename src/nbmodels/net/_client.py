"""The one HTTP client of nbmodels and the TLS context every connection shares."""

from __future__ import annotations

import logging
import os
import ssl
import threading

import httpx2

from .._config import Settings
from .._redact import redact_url

__all__ = ["USER_AGENT", "make_client", "tls_context"]

USER_AGENT = "nbmodels/0.1"


class _RedactLog(logging.Filter):
    """httpx2 logs every request URL at INFO, signed query strings included: redact them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                redact_url(str(a)) if isinstance(a, httpx2.URL) else a for a in record.args
            )
        return True


_log_filter = _RedactLog()

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
    """The HTTP client of the engine (or of one job with its own timeouts): nbmodels'
    timeouts, no automatic redirects (:func:`open_stream` follows them by hand),
    ``Accept-Encoding: identity``, its log lines redacted. ``verify=False`` skips certificate
    checks: only for a job that asked for it (see ``Options.verify_tls``)."""
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
