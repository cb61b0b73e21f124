"""HTTP for every request nbmodels makes: one client, redirects with origin-bound credentials,
retries."""

from ._http import (
    Credential,
    RetryableError,
    make_client,
    open_stream,
    origin_of,
    parse_retry_after,
    split_userinfo,
    with_retries,
)

__all__ = [
    "Credential",
    "RetryableError",
    "make_client",
    "open_stream",
    "origin_of",
    "parse_retry_after",
    "split_userinfo",
    "with_retries",
]
