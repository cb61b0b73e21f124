"""Small remote reads for inspection and verification: byte ranges of a file and Hub listings,
over the transfer layer's HTTP stack (``make_client``, ``open_stream`` with its origin-bound
:class:`~nbmodels.transfer.Credential`, redirect cap and status mapping; :class:`HubApi`).

These calls run on a private event loop in a worker thread (:func:`run_sync`), never on the
caller's loop — a notebook kernel's loop stays free, as with downloads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import re
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import httpx2

from .._config import Settings
from .._options import Options
from .._redact import redact_url
from .._refs import REPO_URL_PREFIX, ModelRef
from ..errors import NetworkError
from ..hub._api import HubApi, find_repo
from ..net import Credential, make_client, open_stream, origin_of, with_retries
from ..sources._hf import hf_endpoint

__all__ = ["HubSession", "RemoteFile", "hub_session", "run_sync", "token_for"]

T = TypeVar("T")
_TYPE_PREFIX = REPO_URL_PREFIX
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
CHUNK = 64 * 1024


def run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``factory()`` to completion on a fresh event loop in a worker thread and return its
    result (works whether or not the calling thread runs a loop, e.g. in a notebook)."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="nbmodels-remote") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def token_for(options: Options) -> str | None:
    """The Hub token to send: ``token=`` (False: none), else HF_TOKEN or the saved login."""
    if options.token is False:
        return None
    if isinstance(options.token, str):
        return options.token
    from huggingface_hub import get_token  # the standard lookup: HF_TOKEN, login file, Colab

    return get_token()


class RemoteFile:
    """A remote file read by byte ranges (``Range: bytes=a-b``), through redirects.

    ``size`` is learnt from the first ``Content-Range`` when not given. ``bytes_read`` counts
    the body bytes received. A server that ignores ``Range`` (200) is read only as far as
    needed, then the connection is closed.
    """

    def __init__(
        self,
        client: httpx2.AsyncClient,
        settings: Settings,
        url: str,
        *,
        name: str,
        size: int | None = None,
        credential: Credential | None = None,
        on_error: Callable[[httpx2.Response], Exception | None] | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.url = url
        self.name = name
        self.size = size
        self.credential = credential
        self.on_error = on_error
        self.bytes_read = 0

    async def read(self, start: int, length: int) -> bytes:
        """Bytes ``[start, start + length)`` (fewer at the end of the file), with retries."""
        if length <= 0 or (self.size is not None and start >= self.size):
            return b""
        return await with_retries(
            lambda: self._read_once(start, length),
            self.settings,
            what=f"read {self.name}",
            where=redact_url(self.url),
            hint="Check the network (or HF_ENDPOINT) and try again.",
        )

    async def _read_once(self, start: int, length: int) -> bytes:
        headers = {"Range": f"bytes={start}-{start + length - 1}"}
        async with open_stream(
            self.client,
            self.url,
            headers,
            self.settings,
            credential=self.credential,
            on_error=self.on_error,
        ) as (response, final_url):
            skip = 0
            if response.status_code == 206:
                m = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
                if m is None or int(m.group(1)) != start:
                    raise NetworkError(
                        f"{redact_url(final_url)} answered a range request with a different "
                        "range; cannot read the header.",
                    )
                if m.group(3) != "*":
                    self.size = int(m.group(3))
            elif response.status_code == 200:
                skip = start  # the whole body: skip to ``start`` (bounded by the caller's cap)
                length_header = response.headers.get("Content-Length", "")
                if length_header.isdigit():
                    self.size = int(length_header)
            else:
                raise NetworkError(
                    f"{redact_url(final_url)} answered {response.status_code} to a range request."
                )
            encoding = response.headers.get("Content-Encoding", "").strip().lower()
            if encoding not in ("", "identity"):
                raise NetworkError(
                    f"{redact_url(final_url)} sent a {encoding}-encoded body although none was "
                    "asked for; cannot read the header."
                )
            out = bytearray()
            async for chunk in response.aiter_raw(CHUNK):
                self.bytes_read += len(chunk)
                if skip:
                    cut = min(skip, len(chunk))
                    chunk = chunk[cut:]
                    skip -= cut
                out += chunk
                if len(out) >= length:
                    break
            return bytes(out[:length])


@dataclass(slots=True)
class HubSession:
    """A Hub API for one repository, and the way to open its files by range."""

    api: HubApi
    client: httpx2.AsyncClient
    settings: Settings
    endpoint: str
    ref: ModelRef

    def file(self, commit: str, path: str, size: int | None) -> RemoteFile:
        """A repository file at ``commit`` (``resolve`` URL; LFS files redirect to a CDN that
        never receives the token)."""
        url = (
            f"{self.endpoint}/{_TYPE_PREFIX[self.ref.repo_type]}{self.ref.repo_id}/resolve/"
            f"{commit}/{quote(path)}"
        )
        api = self.api

        def on_error(response: httpx2.Response) -> Exception | None:
            if origin_of(str(response.request.url)) != origin_of(api.endpoint):
                return None
            return api.error_for(response, revision=commit, path=path)

        return RemoteFile(
            self.client,
            self.settings,
            url,
            name=path,
            size=size,
            credential=api.credential,
            on_error=on_error,
        )


@contextlib.asynccontextmanager
async def hub_session(
    ref: ModelRef, options: Options, settings: Settings
) -> AsyncIterator[HubSession]:
    """An HTTP client and a :class:`HubApi` for ``ref``'s repository (closed on exit).

    When the text has two readings (``hf:gpt2/config.json``) the Hub is asked which
    repository exists first (:func:`find_repo`); ``session.ref`` is the reading it knows, and
    its ``api.info`` is answered from that request.
    """
    assert ref.repo_id is not None
    endpoint = hf_endpoint()
    token = token_for(options)
    credential = Credential(token, origin_of(endpoint)) if token else None
    client = make_client(settings)

    def make_api(reading: ModelRef) -> HubApi:
        assert reading.repo_id is not None
        return HubApi(
            client,
            settings,
            endpoint=endpoint,
            repo_type=reading.repo_type,
            repo_id=reading.repo_id,
            credential=credential,
        )

    try:
        api = make_api(ref)
        if ref.alternative is not None:
            ref, api, _info = await find_repo(
                ref.readings, options.revision or ref.revision, make_api
            )
        yield HubSession(api, client, settings, endpoint, ref)
    finally:
        await client.aclose()
