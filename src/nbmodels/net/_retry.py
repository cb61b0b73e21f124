"""Retries: capped exponential backoff with jitter, and the retry loop of small requests
(docs/download-contract.md, rule 6)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import random
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from .._config import Settings
from ..errors import NetworkError
from ._errors import TRANSLATED, RetryableError, translate

__all__ = ["backoff_delay", "out_of_attempts", "reporting_retries", "retry_delay", "with_retries"]

T = TypeVar("T")

#: Told ``(reason, failed attempts in a row, seconds until the next one)`` before each wait,
#: and ``None`` when an attempt after failures succeeded.
RetryListener = Callable[[tuple[str, int, float] | None], None]

_listener: contextvars.ContextVar[RetryListener | None] = contextvars.ContextVar(
    "nbmodels_retry_listener", default=None
)


@contextlib.contextmanager
def reporting_retries(listener: RetryListener) -> Iterator[None]:
    """Tell ``listener`` of every wait of :func:`with_retries` in this context (the asyncio
    task, and the tasks it starts), so a job still resolving can show "retrying in 4 s: HTTP
    503" as its transfers do, instead of waiting in silence."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


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
            result = await attempt_once()
        except RetryableError as exc:
            failure = exc
        except TRANSLATED as exc:
            mapped = translate(exc, where)
            if mapped is None:
                raise
            if not isinstance(mapped, RetryableError):
                raise mapped from exc  # the request cannot succeed as made
            failure = mapped
            failure.__cause__ = exc
        else:
            if attempt > 1:
                _tell(None)
            return result
        refused = refused + 1 if failure.refused else 0
        if out_of_attempts(attempt, refused, settings):
            raise NetworkError(
                f"Could not {what} after {attempt} attempts: {failure.reason}.", hint=hint
            ) from failure
        delay = retry_delay(failure, refused or attempt, settings)
        _tell((failure.reason, attempt, delay))
        await asyncio.sleep(delay)


def _tell(wait: tuple[str, int, float] | None) -> None:
    listener = _listener.get()
    if listener is not None:
        listener(wait)
