"""One request for the rest of a part: what a worker does between retries.

The request goes through httpx2 (redirects, credentials, error answers) until a probe has
found a plain final URL that serves ranges; then bulk bytes take the fast path
(:mod:`._rawbody`), back to httpx2 when it meets anything unusual. Either way the answer is
checked (:mod:`._answer`), what it teaches is recorded (the size, the validator, whether
ranges work), and the body is written at the part's offsets (:class:`PartialFile`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx2

from .._config import Settings
from .._redact import redact_url
from ..errors import NbmodelsError
from ..net import (
    TRANSLATED,
    USER_AGENT,
    RetryableError,
    open_stream,
    status_failure,
    translate,
)
from ._answer import (
    Accepted,
    Answer,
    Asked,
    Known,
    announced_size,
    check_answer,
    content_length,
)
from ._hasher import PrefixHasher
from ._pacing import Climb, fast_path_worth, max_connections, piece_size
from ._partial import PartialFile
from ._parts import Part
from ._rawbody import RawConnection, RawHead, Unsupported, usable_for
from ._spec import FileSpec

__all__ = ["Attempt", "Conn", "Fetcher"]


@dataclass(eq=False, slots=True)
class Attempt:
    """One pass over the missing bytes: its probe, workers and controller, and what they have
    learnt so far. Every pass starts from a new one."""

    #: Set when the probe's answer came: the controller may add connections.
    ranged: asyncio.Event = field(default_factory=asyncio.Event)
    #: The server honours ranges with a strong validator: more connections may join.
    ranges_ok: bool = False
    #: The size of the next pieces (None: one connection takes all).
    piece: int | None = None
    climb: Climb = field(default_factory=lambda: Climb.start(1))
    workers: set[asyncio.Task[None]] = field(default_factory=set)
    group: asyncio.TaskGroup | None = None
    controller: asyncio.Task[None] | None = None
    #: Failures in a row without a byte arriving (on any connection).
    failures: int = 0
    #: Refused connections in a row with no byte arriving in between (on any connection),
    #: and the byte count at the last one.
    refused: int = 0
    refused_at: int = 0


class Conn:
    """A worker's fast-path connection, kept alive from one piece to the next."""

    def __init__(self) -> None:
        self._raw: RawConnection | None = None

    def for_url(self, url: str) -> RawConnection:
        if self._raw is None or not self._raw.matches(url):
            self.close()
            self._raw = RawConnection(url)
        return self._raw

    def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = None


class _PartWriter:
    """Where a fast-path body goes: the part's next bytes, reserved before each receive so a
    concurrent steal (on the loop) never takes bytes this thread is about to write."""

    __slots__ = ("failed", "hasher", "part", "partial")

    def __init__(self, partial: PartialFile, hasher: PrefixHasher, part: Part) -> None:
        self.partial = partial
        self.hasher = hasher
        self.part = part
        self.failed = False

    def room(self, limit: int) -> int:
        part = self.part
        with self.partial.plan.lock:
            if part.end is None:
                return 0
            n = max(0, min(limit, part.end - part.pos))
            part.claim = part.pos + n
            return n

    def write(self, data: memoryview, release: Callable[[], None] | None) -> bool:
        part = self.part
        start, at = part.start, part.pos
        try:
            n = self.partial.put(part, data)
        except BaseException:
            self.failed = True  # the caller reports this error, not a lost connection
            raise
        if release is None or n == 0:
            return False
        return self.hasher.offer(start, at, data[:n], release)


class Fetcher:
    """Requests for the parts of one file (``spec``): ``fetch`` streams the rest of a part.

    ``direct_url`` is the final URL the fast path fetches (None: through httpx2);
    ``hasher`` receives the bytes written at the hashed frontier from memory."""

    def __init__(
        self,
        spec: FileSpec,
        client: httpx2.AsyncClient,
        settings: Settings,
        partial: PartialFile,
        hasher: PrefixHasher,
        *,
        connections: int | None,
        fast_path: bool,
        on_progress: Callable[[int, int | None], None],
    ) -> None:
        self.spec = spec
        self.client = client
        self.settings = settings
        self.partial = partial
        self.hasher = hasher
        self.connections = connections
        self._on_progress = on_progress
        self.direct_url: str | None = None
        #: False when the caller keeps every byte on ``client``, or once the fast path failed
        #: for this file.
        self._fast_path = fast_path

    def max_connections(self, attempt: Attempt) -> int:
        return max_connections(self.partial.size, attempt.ranges_ok, self.connections)

    # -- one request ----------------------------------------------------------------------------

    async def fetch(self, part: Part, conn: Conn, attempt: Attempt) -> None:
        """One request for the rest of ``part``: the fast path once the probe has found a
        plain final URL, httpx2 otherwise."""
        if self.direct_url is not None and part.end is not None:
            try:
                await self._fetch_raw(part, self.direct_url, conn, attempt)
                return
            except Unsupported:
                self.direct_url = None  # e.g. an expired signed URL: back through httpx2
        await self._fetch_httpx(part, conn, attempt)

    async def _fetch_httpx(self, part: Part, conn: Conn, attempt: Attempt) -> None:
        """The request through httpx2 (redirects, credentials, error answers); the probe of
        a pass, which then switches to the fast path when it can."""
        asked_end = part.end
        switch_to: str | None = None
        async with open_stream(
            self.client,
            self.spec.url,
            self._range_headers(part),
            self.settings,
            self.spec.credential,
            passthrough=frozenset({416}),
            on_error=self.spec.on_error,
        ) as (response, final_url):
            self._accept(response, part, asked_end, final_url, attempt)
            if not attempt.ranged.is_set():
                attempt.ranged.set()
                attempt.piece = piece_size(self.partial.size, self.max_connections(attempt))
                if attempt.piece is not None and part.end is not None:
                    part.end = min(part.end, part.pos + attempt.piece)  # the probe: one piece
            if self._fast_path_for(part, final_url, attempt):
                switch_to = self.direct_url = final_url
            else:
                await self._stream(response, part)
        if switch_to is not None:
            try:
                await self._fetch_raw(part, switch_to, conn, attempt)
                return
            except Unsupported:
                self.direct_url = None
                self._fast_path = False
                await self._fetch_httpx(part, conn, attempt)
                return
        if part.end is not None and part.pos < part.end:
            raise _closed_early(part, redact_url(final_url))

    def _range_headers(self, part: Part) -> dict[str, str]:
        """What to ask httpx2 for: the rest of ``part`` as a range (no range for an
        open-ended part from byte 0 of a file of known size), with ``If-Range`` from byte 1 on."""
        headers = {"Accept-Encoding": "identity"}
        validator = self.partial.state.validator
        if part.end is not None or part.pos > 0 or self.partial.size is None:
            last = "" if part.end is None else str(part.end - 1)
            headers["Range"] = f"bytes={part.pos}-{last}"
            if part.pos > 0 and validator:
                headers["If-Range"] = validator
        return headers

    def _fast_path_for(self, part: Part, url: str, attempt: Attempt) -> bool:
        """Bulk bytes take the fast path when ranges work, the rest is big enough to be worth
        a new connection, and no credential would be needed for the final URL."""
        if not (self._fast_path and attempt.ranges_ok and part.end is not None):
            return False
        if not fast_path_worth(part.end - part.pos, self.max_connections(attempt)):
            return False
        if self.spec.credential is not None and self.spec.credential.headers_for(url):
            return False
        return usable_for(url)

    async def _fetch_raw(self, part: Part, url: str, conn: Conn, attempt: Attempt) -> None:
        """The request on the fast path: exactly the rest of ``part``, checked as the probe
        was; anything unusual raises :class:`Unsupported` (back to httpx2)."""
        assert part.end is not None
        asked_end = part.end
        headers = {
            "User-Agent": USER_AGENT,
            "Accept-Encoding": "identity",
            "Range": f"bytes={part.pos}-{part.end - 1}",
        }
        if self.partial.state.validator:
            headers["If-Range"] = self.partial.state.validator
        shown = redact_url(url)

        def check(head: RawHead) -> int:
            status = head.status_code
            retry = status_failure(status, head.headers, shown, self.settings)
            if retry is not None:
                raise retry
            if status != 206 or "chunked" in head.headers.get("Transfer-Encoding", "").lower():
                raise Unsupported(f"HTTP {status}")
            self._accept(head, part, asked_end, url, attempt)
            length = content_length(head)
            if length is None:
                raise Unsupported("no Content-Length")
            return length

        writer = _PartWriter(self.partial, self.hasher, part)
        try:
            await conn.for_url(url).get(
                url,
                headers,
                connect_timeout=self.settings.connect_timeout,
                read_timeout=self.settings.read_timeout,
                check=check,
                writer=writer,
            )
        except OSError as exc:  # the connection's (a full disk is the writer's: as it is)
            failure = None if writer.failed else self._lost(exc, shown, part)
            if failure is None:
                raise
            raise failure from exc
        if part.end is not None and part.pos < part.end:
            raise _closed_early(part, shown)

    def _accept(
        self, answer: Answer, part: Part, asked_end: int | None, url: str, attempt: Attempt
    ) -> None:
        """Check an answer against what was asked (:mod:`._answer`), then learn from it: the
        size (reserving its blocks), the validator, whether ranges work, where the part ends."""
        partial = self.partial
        known = Known(
            name=self.spec.name,
            expected=self.spec.size,
            size=partial.size,
            validator=partial.state.validator,
            written=partial.plan.written,
        )
        reserved = announced_size(answer, known)
        if reserved is not None:
            partial.reserve(reserved)  # too big for the disk: that is the error to report
        outcome = check_answer(answer, Asked(part.pos, asked_end), known, redact_url(url))
        if not isinstance(outcome, Accepted):
            raise outcome
        if outcome.total != partial.size:
            if outcome.total is not None and outcome.total != reserved:
                partial.reserve(outcome.total)
            partial.resize(outcome.total)
        if outcome.whole:
            part.end = outcome.total
        partial.state.validator = outcome.validator
        attempt.ranges_ok = outcome.ranges_ok

    async def _stream(self, response: httpx2.Response, part: Part) -> None:
        """Write the body at the part's offsets until the part's (possibly shrinking) end."""
        try:
            async for chunk in response.aiter_raw():
                if not self._write(part, chunk):
                    return
        except TRANSLATED as exc:
            failure = self._lost(exc, redact_url(self.spec.url), part)
            if failure is None:
                raise
            raise failure from exc

    def _write(self, part: Part, chunk: bytes | memoryview) -> bool:
        """Write one chunk received on the loop at the part's position; False once the part is
        complete."""
        partial = self.partial
        partial.put(part, chunk)
        self._on_progress(partial.written, partial.size)
        partial.checkpoint_soon()
        return part.end is None or part.pos < part.end

    def _lost(
        self, exc: BaseException, shown: str, part: Part
    ) -> RetryableError | NbmodelsError | None:
        """What a body that broke off at the part's position becomes (:func:`translate`)."""
        return translate(exc, shown, at=part.pos, idle=self.settings.read_timeout)


def _closed_early(part: Part, shown: str) -> RetryableError:
    return RetryableError(
        f"connection closed at byte {part.pos} of {part.end} from {shown}",
        short="connection closed early",
    )
