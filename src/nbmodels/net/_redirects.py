"""One request, its redirects followed by hand: every hop http(s), the credential only on
its own origin, no downgrade to plain http (docs/download-contract.md, rules 4 to 6)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import urljoin, urlsplit

import httpx2

from .._config import Settings
from .._redact import redact_text, redact_url
from ..errors import NetworkError
from ._errors import TRANSLATED, classify, translate
from ._origin import Credential, origin_of

__all__ = ["open_stream"]


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
        response = await _send(client, method, current, headers, credential)
        try:
            if response.is_redirect:
                current = _next_hop(current, response, start_scheme)
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


async def _send(
    client: httpx2.AsyncClient,
    method: str,
    url: str,
    headers: dict[str, str],
    credential: Credential | None,
) -> httpx2.Response:
    """One hop: the request to ``url``, its credential only if ``url`` is on its origin."""
    shown = redact_url(url)
    try:
        origin_of(url)
    except ValueError as exc:
        raise NetworkError(f"Refusing to fetch {shown}: {exc}.") from exc
    req_headers = dict(headers)
    if credential is not None:
        req_headers.update(credential.headers_for(url))
    try:
        request = client.build_request(method, url, headers=req_headers)
    except (httpx2.InvalidURL, ValueError) as exc:
        raise NetworkError(f"Cannot request {shown}: {type(exc).__name__}.") from None
    try:
        return await client.send(request, stream=True)
    except TRANSLATED as exc:
        failure = translate(exc, shown)
        if failure is None:
            raise
        raise failure from exc


def _next_hop(current: str, response: httpx2.Response, start_scheme: str) -> str:
    """Where a redirect leads: an http(s) URL, never from https down to plain http."""
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
    return nxt
