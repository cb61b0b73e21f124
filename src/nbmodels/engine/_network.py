"""What one attempt of a job talks to the network with: the engine's client and settings, or,
for a job with its own ``timeout`` / ``retries`` / ``verify_tls``, a copy of the settings and
(when the timeouts or the TLS checks differ) a client of its own, closed when the attempt ends.

- ``timeout``: the connect and read-idle limit of every request (not a deadline for the whole
  download, which would fail every large file on a slow link).
- ``retries``: attempts after the first one fails.
- ``verify_tls=False``: a client that skips certificate checks, and no fast path (whose
  connections always verify). :mod:`._submission` allows it only where a digest still proves the
  bytes.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator

import httpx2

from .._config import Settings
from .._options import Options
from ..transfer import make_client

__all__ = ["Net", "network"]


@dataclasses.dataclass(frozen=True, slots=True)
class Net:
    settings: Settings
    client: httpx2.AsyncClient
    fast_path: bool


@contextlib.asynccontextmanager
async def network(
    client: httpx2.AsyncClient, settings: Settings, options: Options
) -> AsyncIterator[Net]:
    if options.timeout is not None:
        settings = dataclasses.replace(
            settings, connect_timeout=options.timeout, read_timeout=options.timeout
        )
    if options.retries is not None:
        settings = dataclasses.replace(settings, max_attempts=options.retries + 1)
    if options.timeout is None and options.verify_tls:
        yield Net(settings, client, fast_path=True)
        return
    own = make_client(settings, verify=options.verify_tls)
    try:
        yield Net(settings, own, fast_path=options.verify_tls)
    finally:
        await own.aclose()
