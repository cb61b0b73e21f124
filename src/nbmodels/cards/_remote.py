"""Small remote reads for inspection: byte ranges of a file, over the HTTP stack of downloads
(``open_stream`` with its origin-bound credential, redirect cap and status mapping).

These calls run on a private event loop in a worker thread (:func:`nbmodels._aio.run_sync`),
never on the caller's loop — a notebook kernel's loop stays free, as with downloads.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx2

from .._config import Settings
from .._redact import redact_url
from ..errors import NetworkError
from ..hub import HubApi
from ..net import Credential, encoded_body, open_stream, with_retries

__all__ = ["RemoteFile"]

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
CHUNK = 64 * 1024


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

    @classmethod
    def on_hub(cls, api: HubApi, commit: str, path: str, size: int | None) -> RemoteFile:
        """A repository file at ``commit`` (its ``resolve`` URL; LFS files redirect to a CDN
        that never receives the token; the Hub's error answers get the Hub's messages)."""
        return cls(
            api.client,
            api.settings,
            api.file_url(commit, path),
            name=path,
            size=size,
            credential=api.credential,
            on_error=api.file_errors(commit, path),
        )

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
            if (encoded := encoded_body(response.headers, redact_url(final_url))) is not None:
                raise encoded
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
