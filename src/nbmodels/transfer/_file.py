"""Fetch one file to its final path, resumably and verified (docs/download-contract.md).

A :class:`FileSpec` says what to fetch and where it goes. :class:`FileTransfer` tells the
story of one download; the rest is told elsewhere: the partial file, its state, verification
and publishing (:mod:`._partial`), one request and its answer (:mod:`._fetch`,
:mod:`._answer`), how many connections and how big their pieces (:mod:`._pacing`), who takes
which bytes (:mod:`._parts`), the bulk bytes (:mod:`._rawbody`), the hash (:mod:`._hasher`).

1. Open the partial file, taking up an earlier run's bytes when provably the same object.
2. A pass (:class:`~._fetch.Attempt`): the first request (the probe) learns the size, the validator
   and whether the server honours ``Range`` (a 206, checked, not assumed). Only then does a
   controller let more connections (*workers*) join, each streaming one part (a byte range)
   into the file at its offset, taking the next piece when done; a connection that fails
   while others work leaves (shrinking under pushback), its range going back to the pool, and
   a lone one retries with backoff. Once the probe has found a plain final URL, bulk bytes take
   the fast path (:mod:`._rawbody`) instead of httpx2.
3. When the remote object turns out to have changed, forget every byte and pass again; when a
   pass ends with bytes missing, pass again (both bounded).
4. Verify (exact size, sha256 / git SHA-1), fsync, ``os.replace``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx2

from .._aio import pick_error
from .._config import Settings
from .._progress import format_bytes
from .._redact import redact_url
from ..errors import InsufficientSpaceError, IntegrityError, NetworkError
from ..net import RetryableError, out_of_attempts, retry_delay
from ._answer import Restart
from ._fetch import Attempt, Conn, Fetcher
from ._hasher import PrefixHasher
from ._pacing import (
    CONTROL_INTERVAL,
    FIRST_RATE_BYTES,
    FIRST_RATE_TIME,
    Climb,
    piece_for,
    start_connections,
)
from ._partial import PartialFile
from ._parts import Part
from ._spec import FileSpec, TransferResult

__all__ = ["FileTransfer"]

#: How often progress is reported (and checkpoints considered) for the fast path's writes.
REPORT_INTERVAL = 0.1
#: Writeback of new data starts whenever this much more was written.
WRITEBACK_STEP = 16 << 20
#: Restarts from zero (the remote object changed) before giving up.
MAX_RESTARTS = 3


ProgressFn = Callable[[int, int | None], None]
StatusFn = Callable[[str], None]
#: ``on_retry(reason, attempt, delay)``: the transfer waits ``delay`` seconds before trying
#: again, after ``attempt`` failures in a row (the last one: ``reason``, a few words).
RetryFn = Callable[[str, int, float], None]


class FileTransfer:
    """Download ``spec`` to ``spec.target``. Call :meth:`run` on the engine's loop.

    ``on_progress(downloaded, total)`` is called on every chunk (keep it cheap);
    ``on_status(status)`` when the phase changes ("downloading", "verifying");
    ``on_retry(reason, attempt, delay)`` before it waits to try again after a failure.
    ``connections`` caps the connections for this file (None: automatic).
    ``fast_path=False`` keeps every byte on ``client`` (e.g. a client that skips TLS checks:
    the fast path's connections always verify).
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
        fast_path: bool = True,
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
        self._fetcher = Fetcher(
            spec,
            client,
            settings,
            self.partial,
            self._hasher,
            connections=connections,
            fast_path=fast_path,
            on_progress=self._on_progress,
        )
        self._attempt = Attempt()

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
        self._hasher = self._fetcher.hasher = PrefixHasher(
            self.expected_sha256 is not None, git_size
        )
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

    # -- passes ---------------------------------------------------------------------------------

    async def _download(self) -> None:
        """Pass until no byte is missing: again after a restart from zero (bounded), and
        again when a pass ended with bytes missing (bounded)."""
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
                    f"complete. {_kept(self.downloaded, size)}",
                    hint=None if self.downloaded else "Try again later.",
                )
            try:
                await self._download_once()  # then the loop checks that nothing is missing
            except Restart as exc:
                restarts += 1
                if restarts > MAX_RESTARTS:
                    raise NetworkError(
                        f"Could not download {redact_url(self.spec.url)} consistently: {exc} "
                        f"({restarts} restarts from zero). Try again later."
                    ) from None
                self._restart()

    def _restart(self) -> None:
        """Forget every byte: the remote object changed or refused to resume."""
        self.partial.forget()
        self._hasher.reset()
        self._fetcher.direct_url = None
        self._on_progress(0, self.partial.size)
        self.partial.reserve()  # the truncate gave the reserved blocks back

    async def _download_once(self) -> None:
        """One pass with the current validator: probe, then as many workers as pay off."""
        attempt = self._attempt = Attempt()
        partial = self.partial
        loop = asyncio.get_running_loop()
        helpers = [loop.create_task(self._report())]
        if self._hasher.active:
            self._hasher.start(partial.dup())
            helpers.append(loop.create_task(self._hash_loop()))
        try:
            async with asyncio.TaskGroup() as group:
                attempt.group = group
                self._start_worker(partial.plan.first_part())
                attempt.controller = group.create_task(self._control())
        except BaseExceptionGroup as eg:
            raise pick_error(
                eg, asyncio.CancelledError, Restart, IntegrityError, InsufficientSpaceError
            ) from None
        finally:
            attempt.group = None
            attempt.controller = None
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await asyncio.to_thread(self._hasher.stop)
            self._on_progress(partial.written, partial.size)
            await partial.settle()
            partial.checkpoint(force=True)
        if partial.size is None:
            partial.resize(partial.plan.written)

    # -- connections ----------------------------------------------------------------------------

    def _start_worker(self, part: Part) -> None:
        attempt = self._attempt
        assert attempt.group is not None
        task = attempt.group.create_task(self._worker(part))
        attempt.workers.add(task)
        task.add_done_callback(attempt.workers.discard)
        self.peak_connections = max(self.peak_connections, len(attempt.workers))

    async def _control(self) -> None:
        """Choose the number of connections (:mod:`._pacing`), then add more while they pay
        off and give back the last step when it did not.

        Also the safety net that keeps the file going: if every connection left (each gave
        its part back under pushback) while work remains, it starts one again."""
        attempt = self._attempt
        plan = self.partial.plan
        await attempt.ranged.wait()
        limit = self._fetcher.max_connections(attempt)
        if self.connections is not None or limit == 1:
            attempt.climb = Climb.start(limit, growing=attempt.climb.growing)
        else:
            target = start_connections(await self._first_rate(), limit)
            attempt.climb = Climb.start(target, growing=target > 1)
        while True:
            if not attempt.workers:
                part = plan.next_part(attempt.piece) if attempt.ranges_ok else None
                if part is None:
                    return
                self._start_worker(part)
            while len(attempt.workers) < attempt.climb.target:
                part = plan.next_part(attempt.piece)
                if part is None:
                    break
                self._start_worker(part)
            before = self.transferred
            await asyncio.sleep(CONTROL_INTERVAL)
            rate = (self.transferred - before) / CONTROL_INTERVAL
            if not attempt.climb.growing or len(attempt.workers) < attempt.climb.target:
                continue  # not measuring a full step (the tail, or connections left)
            attempt.climb = attempt.climb.step(rate, limit)

    async def _first_rate(self) -> float:
        """Bytes per second of the first connection, over its first FIRST_RATE_BYTES or
        FIRST_RATE_TIME (from its first byte)."""
        workers = self._attempt.workers
        start_bytes = self.transferred
        deadline = time.monotonic() + self.settings.read_timeout
        while self.transferred == start_bytes and time.monotonic() < deadline:
            if not workers:
                return 0.0
            await asyncio.sleep(0.005)
        started, base = time.monotonic(), self.transferred
        while True:
            elapsed = time.monotonic() - started
            got = self.transferred - base
            if got >= FIRST_RATE_BYTES or elapsed >= FIRST_RATE_TIME or not workers:
                return got / max(elapsed, 1e-3)
            await asyncio.sleep(0.005)

    async def _worker(self, part: Part | None) -> None:
        """One connection: stream a part; when it is done, take more work until none is left."""
        attempt = self._attempt
        plan = self.partial.plan
        conn = Conn()
        piece: int | None = None  # this connection's own piece size, once it has a pace
        try:
            while part is not None:
                started, first = time.monotonic(), part.pos
                try:
                    finished = await self._run_part(part, conn)
                finally:
                    part.active = False
                if not finished or not attempt.ranges_ok:
                    return
                if len(attempt.workers) > attempt.climb.target:
                    return  # the controller wants fewer connections
                if attempt.piece is not None:
                    rate = (part.pos - first) / max(time.monotonic() - started, 1e-3)
                    piece = piece_for(rate, len(attempt.workers))
                part = plan.next_part(piece)
        finally:
            conn.close()
            me = asyncio.current_task()
            last = not any(w is not me for w in attempt.workers)
            work_left = attempt.ranges_ok and plan.next_part_available()
            if attempt.controller is not None and last and not work_left:
                attempt.controller.cancel()  # the last connection is done: so is the file

    async def _run_part(self, part: Part, conn: Conn) -> bool:
        """Stream ``part`` to its end, retrying transient failures with backoff. False when
        this connection gave up its part to the others."""
        attempt = self._attempt
        while True:
            before = self.transferred
            try:
                await self._fetcher.fetch(part, conn, attempt)
                return True
            except RetryableError as exc:
                failure = exc
            attempt.failures = 0 if self.transferred > before else attempt.failures + 1
            self._count_refused(failure)
            if out_of_attempts(attempt.failures, attempt.refused, self.settings):
                raise self._gave_up(failure) from failure
            others = [w for w in attempt.workers if w is not asyncio.current_task()]
            if others and attempt.ranges_ok:
                # Other connections carry on: this one leaves (fewer connections under
                # pushback) and its unfinished range goes back to the pool.
                attempt.climb = attempt.climb.hold()
                return False
            tries = max(1, attempt.failures)
            delay = retry_delay(failure, attempt.refused or tries, self.settings)
            self._on_retry(failure.short, tries, delay)
            await asyncio.sleep(delay)

    def _count_refused(self, failure: RetryableError) -> None:
        attempt = self._attempt
        if not failure.refused:
            attempt.refused = 0
            return
        moved = self.transferred > attempt.refused_at
        attempt.refused = 1 if moved else attempt.refused + 1
        attempt.refused_at = self.transferred

    def _gave_up(self, failure: RetryableError) -> NetworkError:
        """The error after the last attempt: what failed, how often, and what is kept."""
        kept = _kept(self.downloaded, self.partial.size)
        if failure.refused:
            reason = f"{failure.reason[:1].upper()}{failure.reason[1:]}"
            refused = f"{reason} {self._attempt.refused} times in a row"
            if self.downloaded:
                return NetworkError(f"{refused}; the server went away. {kept}")
            return NetworkError(
                f"{refused}; nothing is listening there. {kept}",
                hint="Check the URL (host and port) and that the server is running, then try "
                "again.",
            )
        return NetworkError(
            f"Gave up on {redact_url(self.spec.url)} after {self._attempt.failures} attempts "
            f"without progress; last error: {failure.reason}. {kept}",
            hint=None if self.downloaded else "Try again later.",
        )

    async def _hash_loop(self) -> None:
        """Tell the hasher how far the contiguous written prefix reaches, as it grows."""
        while True:
            self._hasher.readable_to(self.partial.plan.written_prefix())
            await asyncio.sleep(0.05)

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


def _kept(downloaded: int, size: int | None) -> str:
    """What a failed transfer leaves for the next run, as the end of its message."""
    if not downloaded:
        return "Nothing was downloaded."
    of = f" of {format_bytes(size)}" if size else ""
    return f"{format_bytes(downloaded)}{of} is kept: run the same download again to resume."
