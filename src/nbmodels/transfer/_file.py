"""Fetch one file to its final path, resumably and verified (docs/download-contract.md).

A :class:`FileSpec` says what to fetch and where it goes; :class:`FileTransfer` owns the partial
file and its state and runs *workers*, each a connection streaming one part (a byte range) and
writing it with ``pwrite`` at its offset into a partial file whose blocks are reserved up front:

- The first request (the probe) learns the size, the validator and whether the server honours
  ``Range`` (a 206, checked, not assumed). Only then do more connections join.
- A controller grows the number of connections while that raises the aggregate rate and stops
  when it does not; a connection that fails while others work simply leaves (shrinking under
  server pushback), its unfinished range going back to the pool.
- A free connection takes an unclaimed gap or steals the second half of the largest remaining
  part (:mod:`._parts`), so there is no slow tail.
- Checkpoints make written bytes durable (fdatasync) before the state file records them, in the
  background; a worker thread hashes the contiguous prefix as it grows (:mod:`._hasher`).
- Verify (exact size, sha256 / git SHA-1), fsync, ``os.replace``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx2

from .._aio import pick_error
from .._config import Settings
from .._progress import format_bytes
from .._redact import redact_url
from ..errors import InsufficientSpaceError, IntegrityError, NbmodelsError, NetworkError
from ..net import (
    TRANSLATED,
    USER_AGENT,
    Credential,
    RetryableError,
    open_stream,
    out_of_attempts,
    retry_delay,
    status_failure,
    translate,
)
from ._answer import (
    Accepted,
    Answer,
    Asked,
    Known,
    Restart,
    announced_size,
    check_answer,
    content_length,
)
from ._hasher import PrefixHasher
from ._partial import PartialFile
from ._parts import Part
from ._rawbody import RawConnection, RawHead, Unsupported, usable_for

__all__ = ["FileSpec", "FileTransfer", "TransferResult"]



@dataclass(frozen=True, slots=True)
class FileSpec:
    """What to fetch and where it goes. ``key`` names the remote object for resume; it must not
    contain secrets (it is written to the state file)."""

    name: str
    url: str
    target: Path
    key: str
    size: int | None = None
    sha256: str | None = None
    git_sha1: str | None = None
    etag: str | None = None
    credential: Credential | None = None
    lock_path: Path | None = None
    #: Turns an error answer into the source's own error (e.g. the Hub's gated message).
    on_error: Callable[[httpx2.Response], Exception | None] | None = None


@dataclass(slots=True)
class TransferResult:
    path: Path
    size: int
    sha256: str | None
    validator: str | None
    transferred: int


ProgressFn = Callable[[int, int | None], None]
StatusFn = Callable[[str], None]
#: ``on_retry(reason, attempt, delay)``: the transfer waits ``delay`` seconds before trying
#: again, after ``attempt`` failures in a row (the last one: ``reason``, a few words).
RetryFn = Callable[[str, int, float], None]

#: Below this size one connection does it all.
SMALL_FILE = 16 << 20
#: Automatic upper bound of connections per file.
AUTO_MAX_CONNECTIONS = 64
#: The automatic start: a first connection at least this fast stays alone...
FAST_STREAM = 600_000_000
#: ...a slower one gets as many companions as this aggregate rate needs.
START_RATE = 1_200_000_000
#: How the first connection's rate is measured (whichever comes first).
FIRST_RATE_BYTES = 16 << 20
FIRST_RATE_TIME = 0.1
#: The controller's measuring window, and the gain that justifies more connections.
CONTROL_INTERVAL = 0.5
GROWTH_GAIN = 1.15
#: Parts with at least this much left move to the fast path (a new connection).
FAST_PATH_MIN = 4 << 20
#: Pieces handed to connections in file order: bounds, and the time one should take.
PIECE_MIN = 4 << 20
PIECE_MAX = 64 << 20
PIECE_TIME = 0.5
PIECE_SPAN = 256 << 20
#: How often progress is reported (and checkpoints considered) for the fast path's writes.
REPORT_INTERVAL = 0.1
#: Writeback of new data starts whenever this much more was written.
WRITEBACK_STEP = 16 << 20


def auto_connections(size: int | None) -> int:
    """One connection for small or unknown-size files; more for big ones (up to 16)."""
    if size is None or size < SMALL_FILE:
        return 1
    return max(1, min(AUTO_MAX_CONNECTIONS, size // (4 << 20)))


def start_connections(first_rate: float, limit: int) -> int:
    """How many connections to start with, given the first one's rate (bytes/s)."""
    if first_rate >= FAST_STREAM:
        return 1
    if first_rate <= 0:
        return limit
    return max(2, min(limit, math.ceil(START_RATE / first_rate)))


class _Conn:
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


class FileTransfer:
    """Download ``spec`` to ``spec.target``. Call :meth:`run` on the engine's loop.

    ``on_progress(downloaded, total)`` is called on every chunk (keep it cheap);
    ``on_status(status)`` when the phase changes ("downloading", "verifying");
    ``on_retry(reason, attempt, delay)`` before it waits to try again after a failure.
    ``connections`` caps the connections for this file (None: automatic).
    """

    def __init__(
        self,
        spec: FileSpec,
        client: httpx2.AsyncClient,
        settings: Settings,
        *,
        expected_sha256: str | None = None,
        connections: int | None = None,
        on_progress: ProgressFn | None = None,
        on_status: StatusFn | None = None,
        on_retry: RetryFn | None = None,
    ) -> None:
        self.spec = spec
        self.client = client
        self.settings = settings
        self.expected_sha256 = expected_sha256 or spec.sha256
        self.connections = connections
        self._on_progress = on_progress or (lambda _d, _t: None)
        self._on_status = on_status or (lambda _s: None)
        self._on_retry = on_retry or (lambda _r, _a, _d: None)
        self.partial = PartialFile(
            spec.target, name=spec.name, key=spec.key, size=spec.size, settings=settings
        )
        self.peak_connections = 0
        self._hasher = PrefixHasher(self.expected_sha256 is not None, None)
        # Per attempt (reset by _download_once).
        self._ranged = asyncio.Event()
        self._accepts_ranges = False
        self._workers: set[asyncio.Task[None]] = set()
        self._group: asyncio.TaskGroup | None = None
        self._controller: asyncio.Task[None] | None = None
        self._failures = 0
        #: Refused connections in a row with no byte arriving in between (on any connection).
        self._refused = 0
        self._refused_at = 0
        self._grow = True
        self._target = 1
        self._piece: int | None = None
        self._direct_url: str | None = None
        self._fast_path = True

    # -- public ---------------------------------------------------------------------------------

    @property
    def downloaded(self) -> int:
        """Bytes on disk for this file: durable ranges plus what parts wrote since."""
        return self.partial.downloaded

    @property
    def transferred(self) -> int:
        """Bytes this run received and wrote."""
        return self.partial.transferred

    async def run(self) -> TransferResult:
        partial = self.partial
        partial.open()
        git_size = partial.size if self.spec.git_sha1 is not None else None
        self._hasher = PrefixHasher(self.expected_sha256 is not None, git_size)
        try:
            partial.reserve()
            self._on_progress(partial.written, partial.size)
            await self._download()
            self._on_status("verifying")
            size, sha256 = await partial.verify(
                self._hasher, self.expected_sha256, self.spec.git_sha1
            )
            partial.publish()
        except BaseException:
            partial.keep()
            raise
        finally:
            partial.close()
        return TransferResult(
            path=self.spec.target,
            size=size,
            sha256=sha256,
            validator=partial.state.validator,
            transferred=partial.transferred,
        )

    def _restart(self) -> None:
        """Forget every byte: the remote object changed or refused to resume."""
        self.partial.forget()
        self._hasher.reset()
        self._direct_url = None
        self._on_progress(0, self.partial.size)
        self.partial.reserve()  # the truncate gave the reserved blocks back

    # -- orchestration --------------------------------------------------------------------------

    async def _download(self) -> None:
        restarts = 0
        passes = 0
        while True:
            size = self.partial.size
            if size is not None and not self.partial.state.done.gaps(size):
                return
            passes += 1
            if passes > 1 + restarts + self.settings.max_attempts:
                raise NetworkError(
                    f"{redact_url(self.spec.url)} ended every connection before the file was "
                    f"complete. {_kept(self.downloaded, self.partial.size)}",
                    hint=None if self.downloaded else "Try again later.",
                )
            try:
                await self._download_once()  # then the loop checks that nothing is missing
            except Restart as exc:
                restarts += 1
                if restarts > 3:
                    raise NetworkError(
                        f"Could not download {redact_url(self.spec.url)} consistently: {exc} "
                        f"({restarts} restarts from zero). Try again later."
                    ) from None
                self._restart()

    async def _download_once(self) -> None:
        """One pass with the current validator: probe, then as many workers as pay off."""
        self._ranged = asyncio.Event()
        self._accepts_ranges = False
        self._failures = 0
        self._refused = 0
        self._grow = True
        loop = asyncio.get_running_loop()
        helpers = [loop.create_task(self._report())]
        if self._hasher.active:
            self._hasher.start(self.partial.dup())
            helpers.append(loop.create_task(self._hash_loop()))
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                self._start_worker(self.partial.plan.first_part())
                self._controller = group.create_task(self._control())
        except BaseExceptionGroup as eg:
            raise pick_error(
                eg, asyncio.CancelledError, Restart, IntegrityError, InsufficientSpaceError
            ) from None
        finally:
            self._group = None
            self._controller = None
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await asyncio.to_thread(self._hasher.stop)
            self._on_progress(self.partial.written, self.partial.size)
            await self.partial.settle()
            self.partial.checkpoint(force=True)
        if self.partial.size is None:
            self.partial.resize(self.partial.plan.written)

    def _start_worker(self, part: Part) -> None:
        assert self._group is not None
        task = self._group.create_task(self._worker(part))
        self._workers.add(task)
        task.add_done_callback(self._workers.discard)
        self.peak_connections = max(self.peak_connections, len(self._workers))

    def _piece_size(self) -> int | None:
        """Connections take the file in order, a piece at a time, so the contiguous prefix —
        what the hasher can digest — grows while the transfer runs. None: one connection."""
        limit = self._max_connections()
        if limit == 1 or self.partial.size is None:
            return None
        return _aligned(min(PIECE_MAX, max(PIECE_MIN, self.partial.size // (limit * 4))))

    def _piece_for(self, rate: float) -> int:
        """Pieces of about PIECE_TIME at a connection's pace: fewer request turnarounds for a
        fast stream, small steps for a slow one. All pieces in flight together stay within
        PIECE_SPAN, so the contiguous prefix (and the hash) follows the transfer closely."""
        span_share = PIECE_SPAN // max(1, len(self._workers))
        return _aligned(max(PIECE_MIN, min(PIECE_MAX, span_share, int(rate * PIECE_TIME))))

    def _max_connections(self) -> int:
        if not self._accepts_ranges or self.partial.size is None:
            return 1
        return self.connections or auto_connections(self.partial.size)

    async def _control(self) -> None:
        """Choose the number of connections, then add more while they pay off (a hill climb
        on the aggregate rate) and give back the last step when it did not.

        The automatic start follows from the first connection's rate: one fast stream (a
        local mirror, a fat pipe; FAST_STREAM) stays alone and does not climb: one stream is
        the cheapest way to receive and hash in order, and more would only compete for the
        same cores. A stream held to a per-connection limit (a CDN) gets enough company to
        reach START_RATE at once, since a slow climb would cost a small file most of its time.

        Also the safety net that keeps the file going: if every connection left (each gave
        its part back under pushback) while work remains, it starts one again."""
        await self._ranged.wait()
        limit = self._max_connections()
        if self.connections is not None or limit == 1:
            self._target = limit
        else:
            self._target = start_connections(await self._first_rate(), limit)
            self._grow = self._target > 1
        best = 0.0
        settled = self._target
        while True:
            if not self._workers:
                part = self.partial.plan.next_part(self._piece) if self._accepts_ranges else None
                if part is None:
                    return
                self._start_worker(part)
            while len(self._workers) < self._target:
                part = self.partial.plan.next_part(self._piece)
                if part is None:
                    break
                self._start_worker(part)
            before = self.transferred
            await asyncio.sleep(CONTROL_INTERVAL)
            rate = (self.transferred - before) / CONTROL_INTERVAL
            if not self._grow or len(self._workers) < self._target:
                continue  # not measuring a full step (the tail, or connections left)
            if rate > best * GROWTH_GAIN:
                best, settled = rate, self._target
                self._target = min(limit, math.ceil(self._target * 1.5))
                self._grow = self._target > settled
            else:
                # The last step did not pay: back to what did, and hold there.
                self._target = settled
                self._grow = False

    async def _first_rate(self) -> float:
        """Bytes per second of the first connection, over its first FIRST_RATE_BYTES or
        FIRST_RATE_TIME (from its first byte)."""
        start_bytes = self.transferred
        deadline = time.monotonic() + self.settings.read_timeout
        while self.transferred == start_bytes and time.monotonic() < deadline:
            if not self._workers:
                return 0.0
            await asyncio.sleep(0.005)
        started, base = time.monotonic(), self.transferred
        while True:
            elapsed = time.monotonic() - started
            got = self.transferred - base
            if got >= FIRST_RATE_BYTES or elapsed >= FIRST_RATE_TIME or not self._workers:
                return got / max(elapsed, 1e-3)
            await asyncio.sleep(0.005)

    async def _worker(self, part: Part | None) -> None:
        """One connection: stream a part; when it is done, take more work until none is left."""
        conn = _Conn()
        piece: int | None = None  # this connection's own piece size, once it has a pace
        try:
            while part is not None:
                started, first = time.monotonic(), part.pos
                try:
                    finished = await self._run_part(part, conn)
                finally:
                    part.active = False
                if not finished or not self._accepts_ranges:
                    return
                if len(self._workers) > self._target:
                    return  # the controller wants fewer connections
                if self._piece is not None:
                    rate = (part.pos - first) / max(time.monotonic() - started, 1e-3)
                    piece = self._piece_for(rate)
                part = self.partial.plan.next_part(piece)
        finally:
            conn.close()
            me = asyncio.current_task()
            last = not any(w is not me for w in self._workers)
            work_left = self._accepts_ranges and self.partial.plan.next_part_available()
            if self._controller is not None and last and not work_left:
                self._controller.cancel()  # the last connection is done: so is the file

    async def _run_part(self, part: Part, conn: _Conn) -> bool:
        """Stream ``part`` to its end, retrying transient failures with backoff. False when
        this connection gave up its part to the others."""
        while True:
            before = self.transferred
            try:
                await self._fetch(part, conn)
                return True
            except RetryableError as exc:
                failure = exc
            self._failures = 0 if self.transferred > before else self._failures + 1
            self._count_refused(failure)
            if out_of_attempts(self._failures, self._refused, self.settings):
                raise self._gave_up(failure) from failure
            others = [w for w in self._workers if w is not asyncio.current_task()]
            if others and self._accepts_ranges:
                # Other connections carry on: this one leaves (fewer connections under
                # pushback) and its unfinished range goes back to the pool.
                self._grow = False
                return False
            attempt = max(1, self._failures)
            delay = retry_delay(failure, self._refused or attempt, self.settings)
            self._on_retry(failure.short, attempt, delay)
            await asyncio.sleep(delay)

    def _count_refused(self, failure: RetryableError) -> None:
        if not failure.refused:
            self._refused = 0
            return
        moved = self.transferred > self._refused_at
        self._refused = 1 if moved else self._refused + 1
        self._refused_at = self.transferred

    def _gave_up(self, failure: RetryableError) -> NetworkError:
        """The error after the last attempt: what failed, how often, and what is kept."""
        kept = _kept(self.downloaded, self.partial.size)
        if failure.refused:
            reason = f"{failure.reason[:1].upper()}{failure.reason[1:]}"
            refused = f"{reason} {self._refused} times in a row"
            if self.downloaded:
                return NetworkError(f"{refused}; the server went away. {kept}")
            return NetworkError(
                f"{refused}; nothing is listening there. {kept}",
                hint="Check the URL (host and port) and that the server is running, then try "
                "again.",
            )
        return NetworkError(
            f"Gave up on {redact_url(self.spec.url)} after {self._failures} attempts without "
            f"progress; last error: {failure.reason}. {kept}",
            hint=None if self.downloaded else "Try again later.",
        )

    async def _hash_loop(self) -> None:
        """Tell the hasher how far the contiguous written prefix reaches, as it grows."""
        while True:
            self._hasher.readable_to(self.partial.plan.written_prefix())
            await asyncio.sleep(0.05)

    # -- one request ----------------------------------------------------------------------------

    async def _fetch(self, part: Part, conn: _Conn) -> None:
        """One request for the rest of ``part``: the fast path once the probe has found a
        plain final URL, httpx2 otherwise."""
        if self._direct_url is not None and part.end is not None:
            try:
                await self._fetch_raw(part, self._direct_url, conn)
                return
            except Unsupported:
                self._direct_url = None  # e.g. an expired signed URL: back through httpx2
        await self._fetch_httpx(part, conn)

    async def _fetch_httpx(self, part: Part, conn: _Conn) -> None:
        headers = {"Accept-Encoding": "identity"}
        asked_end = part.end
        if part.end is not None or part.pos > 0 or self.partial.size is None:
            last = "" if part.end is None else str(part.end - 1)
            headers["Range"] = f"bytes={part.pos}-{last}"
            if part.pos > 0 and self.partial.state.validator:
                headers["If-Range"] = self.partial.state.validator
        switch_to: str | None = None
        async with open_stream(
            self.client,
            self.spec.url,
            headers,
            self.settings,
            self.spec.credential,
            passthrough=frozenset({416}),
            on_error=self.spec.on_error,
        ) as (response, final_url):
            self._accept(response, part, asked_end, final_url)
            if not self._ranged.is_set():
                self._ranged.set()
                self._piece = self._piece_size()
                if self._piece is not None and part.end is not None:
                    part.end = min(part.end, part.pos + self._piece)  # the probe: one piece
            if self._fast_path_for(part, final_url):
                switch_to = self._direct_url = final_url
            else:
                await self._stream(response, part)
        if switch_to is not None:
            try:
                await self._fetch_raw(part, switch_to, conn)
                return
            except Unsupported:
                self._direct_url = None
                self._fast_path = False
                await self._fetch_httpx(part, conn)
                return
        if part.end is not None and part.pos < part.end:
            raise _closed_early(part, redact_url(final_url))

    def _fast_path_for(self, part: Part, url: str) -> bool:
        """Bulk bytes take the fast path when ranges work, the rest is big enough to be worth
        a new connection, and no credential would be needed for the final URL."""
        if not (self._fast_path and self._accepts_ranges and part.end is not None):
            return False
        if part.end - part.pos < FAST_PATH_MIN and self._max_connections() == 1:
            return False
        if self.spec.credential is not None and self.spec.credential.headers_for(url):
            return False
        return usable_for(url)

    async def _fetch_raw(self, part: Part, url: str, conn: _Conn) -> None:
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
            self._accept(head, part, asked_end, url)
            length = content_length(head)
            if length is None:
                raise Unsupported("no Content-Length")
            return length

        writer = _PartWriter(self.partial, self._hasher, part)
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

    def _accept(self, answer: Answer, part: Part, asked_end: int | None, url: str) -> None:
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
        self._accepts_ranges = outcome.ranges_ok

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

    def _lost(
        self, exc: BaseException, shown: str, part: Part
    ) -> RetryableError | NbmodelsError | None:
        """What a body that broke off at the part's position becomes (:func:`translate`)."""
        return translate(exc, shown, at=part.pos, idle=self.settings.read_timeout)

    def _write(self, part: Part, chunk: bytes | memoryview) -> bool:
        """Write one chunk received on the loop at the part's position; False once the part is
        complete."""
        partial = self.partial
        partial.put(part, chunk)
        self._on_progress(partial.written, partial.size)
        partial.checkpoint_soon()
        return part.end is None or part.pos < part.end

    async def _report(self) -> None:
        """Progress and checkpoints for what the connections' threads write (they never call
        into the loop themselves), and early writeback: the disk writes the data while it
        arrives, so the fsync before publishing finds little left to do."""
        partial = self.partial
        reported = -1
        flushed = partial.written
        flushing: asyncio.Future[None] | None = None
        while True:
            if partial.written != reported:
                reported = partial.written
                self._on_progress(reported, partial.size)
                partial.checkpoint_soon()
            if reported - flushed >= WRITEBACK_STEP and (flushing is None or flushing.done()):
                flushed = reported
                flushing = partial.start_writeback()
            await asyncio.sleep(REPORT_INTERVAL)

def _closed_early(part: Part, shown: str) -> RetryableError:
    return RetryableError(
        f"connection closed at byte {part.pos} of {part.end} from {shown}",
        short="connection closed early",
    )


def _kept(downloaded: int, size: int | None) -> str:
    """What a failed transfer leaves for the next run, as the end of its message."""
    if not downloaded:
        return "Nothing was downloaded."
    of = f" of {format_bytes(size)}" if size else ""
    return f"{format_bytes(downloaded)}{of} is kept: run the same download again to resume."


def _aligned(piece: int) -> int:
    return piece - piece % (64 << 10)
