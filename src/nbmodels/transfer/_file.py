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
import contextlib
import ctypes
import errno
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import httpx2

from .._aio import pick_error
from .._config import Settings
from .._progress import format_bytes
from .._redact import redact_url
from ..errors import InsufficientSpaceError, IntegrityError, NbmodelsError, NetworkError, Option
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
from ._parts import Part, PartPlan
from ._rawbody import RawConnection, RawHead, Unsupported, usable_for
from ._state import PartialState, partial_paths

__all__ = ["FileSpec", "FileTransfer", "TransferResult"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: The one place bytes hit the disk (tests replace it to simulate a full disk).
_pwrite = os.pwrite


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

    __slots__ = ("failed", "part", "transfer")

    def __init__(self, transfer: FileTransfer, part: Part) -> None:
        self.transfer = transfer
        self.part = part
        self.failed = False

    def room(self, limit: int) -> int:
        part = self.part
        with self.transfer.plan.lock:
            if part.end is None:
                return 0
            n = max(0, min(limit, part.end - part.pos))
            part.claim = part.pos + n
            return n

    def write(self, data: memoryview, release: Callable[[], None] | None) -> bool:
        part = self.part
        start, at = part.start, part.pos
        try:
            n = self.transfer._put(part, data)
        except BaseException:
            self.failed = True  # the caller reports this error, not a lost connection
            raise
        if release is None or n == 0:
            return False
        return self.transfer._hasher.offer(start, at, data[:n], release)


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
        self.part_path, self.state_path = partial_paths(spec.target)
        self.state = PartialState(key=spec.key, size=spec.size)
        self.size: int | None = spec.size
        self.plan = PartPlan(self.state.done, self.size)
        self.transferred = 0
        self.peak_connections = 0
        self._fd = -1
        self._hasher = PrefixHasher(self.expected_sha256 is not None, None)
        self._last_checkpoint = 0.0
        self._background: asyncio.Task[None] | None = None
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
        self._written = 0
        self._direct_url: str | None = None
        self._fast_path = True

    # -- public ---------------------------------------------------------------------------------

    @property
    def downloaded(self) -> int:
        """Bytes on disk for this file: durable ranges plus what parts wrote since."""
        return self.plan.written

    async def run(self) -> TransferResult:
        self.spec.target.parent.mkdir(parents=True, exist_ok=True)
        self._load_state()
        self._open_partial()
        try:
            self._check_space()
            self._written = self.plan.written
            self._on_progress(self._written, self.size)
            await self._download()
            self._on_status("verifying")
            size = self._check_complete()
            # The rest of the hash reads from a duplicate descriptor on a worker thread, so a
            # pause that closes ours meanwhile cannot pull the file out from under it.
            sha256, sha1 = await asyncio.to_thread(self._hasher.finish, os.dup(self._fd), size)
            self._check_digests(sha256, sha1)
            os.fsync(self._fd)
            self._publish()
        except BaseException:
            if self._fd >= 0 and self.downloaded == 0:
                self._close_partial()
                PartialState.discard(self.spec.target)  # nothing worth keeping
            else:
                self._checkpoint(force=True)
            raise
        finally:
            self._close_partial()
        return TransferResult(
            path=self.spec.target,
            size=size,
            sha256=sha256,
            validator=self.state.validator,
            transferred=self.transferred,
        )

    # -- state ----------------------------------------------------------------------------------

    def _load_state(self) -> None:
        spec = self.spec
        loaded = PartialState.load(self.state_path, self.part_path)
        if loaded is not None and loaded.matches(spec.key, spec.size, None):
            self.state = loaded
            self.size = spec.size if spec.size is not None else loaded.size
        else:
            PartialState.discard(spec.target)
        self.plan = PartPlan(self.state.done, self.size)
        self._hasher = PrefixHasher(
            self.expected_sha256 is not None,
            self.size if spec.git_sha1 is not None else None,
        )

    def _open_partial(self) -> None:
        # O_NOFOLLOW: a symlink planted at the partial path is never written through.
        flags = os.O_RDWR | os.O_CREAT | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        try:
            self._fd = os.open(self.part_path, flags, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self.part_path.unlink()
                self._fd = os.open(self.part_path, flags, 0o644)
            else:
                raise

    def _close_partial(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _checkpoint(self, force: bool = False) -> None:
        """Make written bytes durable, then record them. Never the other way round."""
        self._last_checkpoint = time.monotonic()
        if self._fd < 0:
            return
        marks = self.plan.marks()
        if not marks and not force:
            return
        try:
            _datasync(self._fd)
            self.plan.commit(marks)
            self.state.size = self.size
            if self._owns_partial():  # never describe another process's file
                self.state.save(self.state_path)
        except OSError:
            # Disk full or gone while saving: the previous state file still stands (atomic
            # replace) and claims only bytes that were durable when it was written.
            if not force:
                raise

    def _checkpoint_soon(self) -> None:
        """The periodic checkpoint of the hot path: sync and record in the background, so the
        streams keep flowing while the disk catches up."""
        now = time.monotonic()
        if now - self._last_checkpoint < self.settings.checkpoint_interval:
            return
        if self._background is not None and not self._background.done():
            return
        self._last_checkpoint = now
        marks = self.plan.marks()
        if marks:
            self._background = asyncio.get_running_loop().create_task(self._checkpoint_async(marks))

    async def _checkpoint_async(self, marks: list[tuple[Part, int]]) -> None:
        try:
            await asyncio.to_thread(_datasync_and_close, os.dup(self._fd))
            self.plan.commit(marks)
            self.state.size = self.size
            if self._owns_partial():
                await asyncio.to_thread(self.state.save, self.state_path)
        except OSError:
            pass  # the previous state stands; the write path reports a full disk itself

    async def _settle_background(self) -> None:
        """Wait for a running background checkpoint."""
        task, self._background = self._background, None
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    def _owns_partial(self) -> bool:
        """Is the partial path still the file this transfer writes? Not when another process
        (with file locks that do nothing) discarded, replaced or published it."""
        try:
            mine, there = os.fstat(self._fd), os.lstat(self.part_path)
        except OSError:
            return False
        return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)

    def _lost_partial(self) -> NbmodelsError:
        return NbmodelsError(
            f"{self.spec.name}: another process replaced the partial download at "
            f"{self.part_path} while this one ran (do file locks work on this file system?); "
            "nothing was published by this download.",
            hint="Re-run the download.",
        )

    def _restart(self) -> None:
        """Forget every byte: the remote object changed or refused to resume."""
        if not self._owns_partial():
            raise self._lost_partial()  # truncating would cut someone else's (or a final) file
        self.size = self.spec.size
        self.plan.reset()
        self.plan.size = self.size
        self.state.validator = None
        self._hasher.reset()
        self._direct_url = None
        os.ftruncate(self._fd, 0)
        self._written = 0
        self._on_progress(0, self.size)
        self._check_space()  # the truncate gave the reserved blocks back

    def _check_space(self, size: int | None = None) -> None:
        """Refuse at once when the rest of the file (``size`` bytes in all, default the known
        size) cannot fit, then reserve its blocks (``fallocate``, keeping the file's size), so
        that a disk filling up meanwhile cannot stop the download half way. Blocks already held
        (written, or reserved by an earlier attempt) are not asked for twice."""
        size = self.size if size is None else size
        if size is None:
            return
        needed = size - self._held_bytes()
        if needed <= 0:
            return
        where = self.part_path.parent
        available = shutil.disk_usage(where).free
        if needed + self.settings.space_margin > available:
            raise _space_error(where, needed, available, self.downloaded)
        if _fallocate is None or _fallocate(self._fd, _FALLOC_FL_KEEP_SIZE, 0, size) == 0:
            return
        err = ctypes.get_errno()
        if err in (errno.ENOSPC, errno.EDQUOT):
            # Give back what the failed call took past the end of the data; the data stays.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, os.fstat(self._fd).st_size)
            raise _space_error(where, needed, shutil.disk_usage(where).free, self.downloaded)
        # Any other answer (EOPNOTSUPP, ENOSYS, ...): this file system cannot reserve; the
        # file is written sparse and a full disk is reported when a write meets it.

    def _held_bytes(self) -> int:
        """Bytes of the partial file already on the disk: its allocated blocks where the
        system reports them, else the ranges recorded as written."""
        blocks = getattr(os.fstat(self._fd), "st_blocks", None)
        covered = self.state.done.covered
        return covered if blocks is None else max(covered, blocks * 512)

    # -- orchestration --------------------------------------------------------------------------

    async def _download(self) -> None:
        restarts = 0
        passes = 0
        while True:
            if self.size is not None and not self.state.done.gaps(self.size):
                return
            passes += 1
            if passes > 1 + restarts + self.settings.max_attempts:
                raise NetworkError(
                    f"{redact_url(self.spec.url)} ended every connection before the file was "
                    f"complete. {_kept(self.downloaded, self.size)}",
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
            self._hasher.start(os.dup(self._fd))
            helpers.append(loop.create_task(self._hash_loop()))
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                self._start_worker(self.plan.first_part())
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
            self._on_progress(self._written, self.size)
            await self._settle_background()
            self._checkpoint(force=True)
        if self.size is None:
            self.size = self.plan.written
            self.plan.size = self.size

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
        if limit == 1 or self.size is None:
            return None
        return _aligned(min(PIECE_MAX, max(PIECE_MIN, self.size // (limit * 4))))

    def _piece_for(self, rate: float) -> int:
        """Pieces of about PIECE_TIME at a connection's pace: fewer request turnarounds for a
        fast stream, small steps for a slow one. All pieces in flight together stay within
        PIECE_SPAN, so the contiguous prefix (and the hash) follows the transfer closely."""
        span_share = PIECE_SPAN // max(1, len(self._workers))
        return _aligned(max(PIECE_MIN, min(PIECE_MAX, span_share, int(rate * PIECE_TIME))))

    def _max_connections(self) -> int:
        if not self._accepts_ranges or self.size is None:
            return 1
        return self.connections or auto_connections(self.size)

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
                part = self.plan.next_part(self._piece) if self._accepts_ranges else None
                if part is None:
                    return
                self._start_worker(part)
            while len(self._workers) < self._target:
                part = self.plan.next_part(self._piece)
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
                part = self.plan.next_part(piece)
        finally:
            conn.close()
            me = asyncio.current_task()
            last = not any(w is not me for w in self._workers)
            work_left = self._accepts_ranges and self.plan.next_part_available()
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
        kept = _kept(self.downloaded, self.size)
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
            self._hasher.readable_to(self.plan.written_prefix())
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
        if part.end is not None or part.pos > 0 or self.size is None:
            last = "" if part.end is None else str(part.end - 1)
            headers["Range"] = f"bytes={part.pos}-{last}"
            if part.pos > 0 and self.state.validator:
                headers["If-Range"] = self.state.validator
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
        if self.state.validator:
            headers["If-Range"] = self.state.validator
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

        writer = _PartWriter(self, part)
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
        known = Known(
            name=self.spec.name,
            expected=self.spec.size,
            size=self.size,
            validator=self.state.validator,
            written=self.plan.written,
        )
        reserved = announced_size(answer, known)
        if reserved is not None:
            self._check_space(reserved)  # too big for the disk: that is the error to report
        outcome = check_answer(answer, Asked(part.pos, asked_end), known, redact_url(url))
        if not isinstance(outcome, Accepted):
            raise outcome
        if outcome.total != self.size:
            if outcome.total is not None and outcome.total != reserved:
                self._check_space(outcome.total)
            self.size = outcome.total
            self.plan.size = outcome.total
        if outcome.whole:
            part.end = outcome.total
        self.state.validator = outcome.validator
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
        self._put(part, chunk)
        self._on_progress(self._written, self.size)
        self._checkpoint_soon()
        return part.end is None or part.pos < part.end

    def _put(self, part: Part, chunk: bytes | memoryview) -> int:
        """Write ``chunk`` at the part's position (clipped at its end: a steal moved it, or the
        server sent extra bytes). The hot path of every transfer, on the loop or on a
        connection's thread: constant work per chunk."""
        end = part.end
        n = len(chunk)
        if end is not None and part.pos + n > end:
            n = max(0, end - part.pos)
            chunk = chunk[:n]
        if n == 0:
            return 0
        try:
            written = _pwrite(self._fd, chunk, part.pos)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                where = self.part_path.parent
                remaining = (self.size or part.pos + n) - self._written
                free = shutil.disk_usage(where).free
                raise _space_error(where, remaining, free, self.downloaded) from exc
            raise
        if written != n:  # short write: the disk filled up between checks
            raise _space_error(self.part_path.parent, n - written, 0, self.downloaded)
        with self.plan.lock:
            part.pos += n
            self.transferred += n
            self._written += n
        return n

    async def _report(self) -> None:
        """Progress and checkpoints for what the connections' threads write (they never call
        into the loop themselves), and early writeback: the disk writes the data while it
        arrives, so the fsync before publishing finds little left to do."""
        reported = -1
        flushed = self._written
        flushing: asyncio.Future[None] | None = None
        loop = asyncio.get_running_loop()
        while True:
            if self._written != reported:
                reported = self._written
                self._on_progress(reported, self.size)
                self._checkpoint_soon()
            if reported - flushed >= WRITEBACK_STEP and (flushing is None or flushing.done()):
                flushed = reported
                flushing = loop.run_in_executor(None, _start_writeback, os.dup(self._fd))
            await asyncio.sleep(REPORT_INTERVAL)

    # -- verify and publish ---------------------------------------------------------------------

    def _check_complete(self) -> int:
        size = self.size
        covered = self.state.done.covered
        on_disk = os.fstat(self._fd).st_size
        if size is None or on_disk != size or covered != size:
            self.discard_on_failure()
            raise IntegrityError(
                f"{self.spec.name}: expected {size} bytes but {covered} arrived; "
                "nothing was saved.",
                expected=size,
                actual=covered,
                hint="Re-run the download.",
            )
        return size

    def _check_digests(self, sha256: str | None, sha1: str | None) -> None:
        name = self.spec.name
        if self.expected_sha256 is not None and sha256 != self.expected_sha256:
            self.discard_on_failure()
            raise IntegrityError(
                f"{name}: sha256 mismatch (expected {self.expected_sha256}, got {sha256}); "
                "the corrupt download was discarded and nothing was saved.",
                expected=self.expected_sha256,
                actual=sha256,
                hint="Re-run to download it again; if it repeats, the source differs from the "
                "digest you were given.",
            )
        if self.spec.git_sha1 is not None and sha1 != self.spec.git_sha1:
            self.discard_on_failure()
            raise IntegrityError(
                f"{name}: git blob SHA-1 mismatch (expected {self.spec.git_sha1}, got {sha1}); "
                "the corrupt download was discarded and nothing was saved.",
                expected=self.spec.git_sha1,
                actual=sha1,
                hint="Re-run to download it again.",
            )

    def discard_on_failure(self) -> None:
        self.plan.reset()
        self._close_partial()
        PartialState.discard(self.spec.target)

    def _publish(self) -> None:
        target = self.spec.target
        if not self._owns_partial():
            raise self._lost_partial()  # what is there is not what was verified
        # os.replace swaps the directory entry: a symlink planted at the target is replaced,
        # never followed.
        os.replace(self.part_path, target)
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()
        _fsync_dir(target.parent)


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


def _linux_libc(name: str, *argtypes: type) -> Callable[..., int] | None:
    """A libc function taking ``argtypes`` and returning int (errno kept), Linux only."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes = list(argtypes)
    fn.restype = ctypes.c_int
    return cast(Callable[..., int], fn)


_sync_file_range = _linux_libc(
    "sync_file_range", ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint
)
#: Reserves a file's blocks (tests replace it to simulate a file system without it).
_fallocate = _linux_libc("fallocate64", ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
_FALLOC_FL_KEEP_SIZE = 1
_SYNC_FILE_RANGE_WRITE = 2


def _start_writeback(fd: int) -> None:
    """Start writing ``fd``'s dirty pages to disk (closes ``fd``). On Linux this does not wait
    for the disk; elsewhere it is a plain data sync."""
    try:
        if _sync_file_range is not None:
            _sync_file_range(fd, 0, 0, _SYNC_FILE_RANGE_WRITE)  # failure: nothing to do
        else:
            _datasync(fd)
    except OSError:
        pass  # only an early start; the fsync before publishing reports real trouble
    finally:
        os.close(fd)


def _datasync(fd: int) -> None:
    """Make ``fd``'s data durable (``fsync`` where there is no ``fdatasync``)."""
    if hasattr(os, "fdatasync"):
        os.fdatasync(fd)
    else:
        os.fsync(fd)


def _datasync_and_close(fd: int) -> None:
    try:
        _datasync(fd)
    finally:
        os.close(fd)


def _space_error(where: Path, needed: int, available: int, kept: int) -> InsufficientSpaceError:
    """``kept``: bytes of the partial file that stay on disk for a resume (0: nothing)."""
    missing = max(0, needed - available)
    outcome = (
        f"the partial download ({format_bytes(kept)}) is kept" if kept else "nothing was written"
    )
    again = "run the download again to resume" if kept else "run the download again"
    return InsufficientSpaceError(
        f"Not enough disk space in {where}: the download needs {format_bytes(needed)} more, "
        f"{format_bytes(available)} is free ({format_bytes(missing)} missing); {outcome}.",
        hint=(
            f"Free up space and {again}, or choose a directory on another disk with ",
            Option("dir"),
            ".",
        ),
        needed=needed,
        available=available,
        path=str(where),
    )


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
