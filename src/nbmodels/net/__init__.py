"""HTTP for every request nbmodels makes: one client (:mod:`._client`), origins and their
credentials (:mod:`._origin`), redirects followed by hand (:mod:`._redirects`), retries
(:mod:`._retry`), and the one mapping of failures on the wire to the error tree
(:mod:`._errors`)."""

from ._client import USER_AGENT, make_client, tls_context
from ._errors import (
    TRANSLATED,
    RetryableError,
    classify,
    encoded_body,
    is_refused,
    parse_retry_after,
    retryable_status,
    status_failure,
    translate,
)
from ._origin import Credential, Origin, origin_of, split_userinfo
from ._redirects import open_stream
from ._retry import (
    backoff_delay,
    out_of_attempts,
    reporting_retries,
    retry_delay,
    with_retries,
)

__all__ = [
    "TRANSLATED",
    "USER_AGENT",
    "Credential",
    "Origin",
    "RetryableError",
    "backoff_delay",
    "classify",
    "encoded_body",
    "is_refused",
    "make_client",
    "open_stream",
    "origin_of",
    "out_of_attempts",
    "parse_retry_after",
    "reporting_retries",
    "retry_delay",
    "retryable_status",
    "split_userinfo",
    "status_failure",
    "tls_context",
    "translate",
    "with_retries",
]
