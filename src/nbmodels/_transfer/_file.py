"""Fetch one file to its final path, resumably and verified (DESIGN §5).

The shape: a :class:`FileSpec` says what to fetch and where it goes; :class:`FileTransfer` owns
the partial file and its state, runs one or more *parts* (each a byte range streamed by one
connection and written with ``pwrite`` at its offset), checkpoints durable progress, hashes the
contiguous prefix as it grows, verifies, and publishes with fsync + ``os.replace``.

Today one part runs at a time; the bookkeeping (a :class:`RangeSet` of durable bytes, parts that
know their own range and write position) is what several connections per file build on.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx2

from .._config import Settings
from .._progress import SpeedMeter, format_bytes
from .._redact import redact_url
from ..errors import InsufficientSpaceError, IntegrityError, NetworkError
from ._http import Credential, RetryableError, backoff_delay, open_stream
from ._state import PartialState, partial_paths

__all__ = ["FileSpec", "FileTransfer", "TransferResult"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
_READ_CHUNK = 1 << 20
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


class _Restart(Exception):
    """The remote object is not the one the partial data came from: start again from zero."""


@dataclass(slots=True)
class _Part:
    """One connection's share: bytes ``[start, end)``; ``pos`` is the next byte to write and
    ``committed`` how far the durable state already records."""

    start: int
    end: int | None
    pos: int = field(init=False)
    committed: int = field(init=False)

    def __post_init__(self) -> None:
        self.pos = self.start
        self.committed = self.start


class _PrefixHasher:
    """Hashes bytes ``[0, offset)`` in order; parts feed it when they write at ``offset``, and
    ``catch_up`` reads the rest back from disk (after a resume, or bytes from other parts)."""

    def __init__(self, sha256: bool, git_size: int | None) -> None:
        self._want_sha256 = sha256
        self._git_size = git_size
        self.reset()

    def reset(self) -> None:
        self.offset = 0
        self.sha256 = hashlib.sha256() if self._want_sha256 else None
        self.sha1 = None
        if self._git_size is not None:
            self.sha1 = hashlib.sha1(usedforsecurity=False)
            self.sha1.update(b"blob %d\0" % self._git_size)

    @property
    def active(self) -> bool:
        return self.sha256 is not None or self.sha1 is not None

    def feed(self, offset: int, data: bytes | memoryview) -> None:
        if offset != self.offset or not self.active:
            return
        if self.sha256 is not None:
            self.sha256.update(data)
        if self.sha1 is not None:
            self.sha1.update(data)
        self.offset += len(data)

    def catch_up(self, fd: int, upto: int) -> None:
        while self.active and self.offset < upto:
            chunk = os.pread(fd, min(_READ_CHUNK, upto - self.offset), self.offset)
            if not chunk:
                raise OSError(errno.EIO, "partial file is shorter than its recorded state")
            self.feed(self.offset, chunk)

    def finish(self, fd: int, size: int) -> tuple[str | None, str | None]:
        """Hash the rest of ``[0, size)`` from ``fd`` (which this closes); return the digests."""
        try:
            self.catch_up(fd, size)
        finally:
            os.close(fd)
        return (
            self.sha256.hexdigest() if self.sha256 is not None else None,
            self.sha1.hexdigest() if self.sha1 is not None else None,
        )


ProgressFn = Callable[[int, int | None], None]
StatusFn = Callable[[str], None]


class FileTransfer:
    """Download ``spec`` to ``spec.target``. Call :meth:`run` on the engine's loop.

    ``on_progress(downloaded, total)`` is called on every chunk (keep it cheap);
    ``on_status(status)`` when the phase changes ("downloading", "verifying").
    """

    def __init__(
        self,
        spec: FileSpec,
        client: httpx2.AsyncClient,
        settings: Settings,
        *,
        expected_sha256: str | None = None,
        on_progress: ProgressFn | None = None,
        on_status: StatusFn | None = None,
    ) -> None:
        self.spec = spec
        self.client = client
        self.settings = settings
        self.expected_sha256 = expected_sha256 or spec.sha256
        self._on_progress = on_progress or (lambda _d, _t: None)
        self._on_status = on_status or (lambda _s: None)
        self.part_path, self.state_path = partial_paths(spec.target)
        self.state = PartialState(key=spec.key, size=spec.size)
        self.size: int | None = spec.size
        self.transferred = 0
        self.meter = SpeedMeter()
        self._fd = -1
        self._parts: list[_Part] = []
        self._hasher = _PrefixHasher(self.expected_sha256 is not None, None)
        self._last_checkpoint = 0.0
        self._background: asyncio.Task[None] | None = None

    # -- public ---------------------------------------------------------------------------------

    @property
    def downloaded(self) -> int:
        """Bytes on disk for this file: durable ranges plus what parts wrote since."""
        return self.state.done.covered + sum(p.pos - p.committed for p in self._parts)

    async def run(self) -> TransferResult:
        self.spec.target.parent.mkdir(parents=True, exist_ok=True)
        self._load_state()
        self._open_partial()
        try:
            self._check_space()
            self._on_progress(self.downloaded, self.size)
            await self._transfer_all()
            self._on_status("verifying")
            size = self._check_complete()
            # The hash catch-up reads from a duplicate descriptor on a worker thread, so a pause
            # that closes ours meanwhile cannot pull the file out from under it.
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
        assert self.size is not None
        return TransferResult(
            path=self.spec.target,
            size=self.size,
            sha256=sha256,
            validator=self.state.validator,
            transferred=self.transferred,
        )

    def discard(self) -> None:
        """Delete partial data and state (cancel)."""
        PartialState.discard(self.spec.target)

    # -- state ----------------------------------------------------------------------------------

    def _load_state(self) -> None:
        spec = self.spec
        loaded = PartialState.load(self.state_path, self.part_path)
        if loaded is not None and loaded.matches(spec.key, spec.size, None):
            self.state = loaded
            self.size = spec.size if spec.size is not None else loaded.size
        else:
            PartialState.discard(spec.target)
        self._hasher = _PrefixHasher(
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
        now = time.monotonic()
        if not force and now - self._last_checkpoint < self.settings.checkpoint_interval:
            return
        self._last_checkpoint = now
        if self._fd < 0 or (not any(p.pos > p.committed for p in self._parts) and not force):
            return
        try:
            if self._fd >= 0:
                os.fdatasync(self._fd) if hasattr(os, "fdatasync") else os.fsync(self._fd)
            for part in self._parts:
                if part.pos > part.committed:
                    self.state.done.add(part.committed, part.pos)
                    part.committed = part.pos
            self.state.size = self.size
            self.state.save(self.state_path)
        except OSError:
            # Disk full or gone while saving: the previous state file still stands (atomic
            # replace) and claims only bytes that were durable when it was written.
            if not force:
                raise

    def _checkpoint_soon(self) -> None:
        """The periodic checkpoint of the hot path: sync and record in the background, so the
        stream keeps flowing while the disk catches up."""
        now = time.monotonic()
        if now - self._last_checkpoint < self.settings.checkpoint_interval:
            return
        if self._background is not None and not self._background.done():
            return
        self._last_checkpoint = now
        marks = [(p, p.pos) for p in self._parts if p.pos > p.committed]
        if marks:
            self._background = asyncio.get_running_loop().create_task(self._checkpoint_async(marks))

    async def _checkpoint_async(self, marks: list[tuple[_Part, int]]) -> None:
        try:
            await asyncio.to_thread(_datasync_and_close, os.dup(self._fd))
            for part, pos in marks:
                if pos > part.committed:
                    self.state.done.add(part.committed, pos)
                    part.committed = pos
            self.state.size = self.size
            await asyncio.to_thread(self.state.save, self.state_path)
        except OSError:
            pass  # the previous state stands; the write path reports a full disk itself

    async def _settle_background(self) -> None:
        """Wait for a running background checkpoint (its errors surface here)."""
        task, self._background = self._background, None
        if task is not None:
            await task

    def _restart(self) -> None:
        """Forget every byte: the remote object changed or refused to resume."""
        self.size = self.spec.size
        self._parts.clear()
        self.state.done.clear()
        self.state.validator = None
        self._hasher.reset()
        os.ftruncate(self._fd, 0)
        self.meter.reset(0)
        self._on_progress(0, self.size)

    def _check_space(self, extra_needed: int | None = None) -> None:
        if extra_needed is None:
            if self.size is None:
                return
            extra_needed = self.size - self.state.done.covered
        needed = extra_needed
        if needed <= 0:
            return
        available = shutil.disk_usage(self.part_path.parent).free
        if needed + self.settings.space_margin > available:
            raise _space_error(self.part_path.parent, needed, available)

    # -- transfer -------------------------------------------------------------------------------

    async def _transfer_all(self) -> None:
        failures = 0
        restarts = 0
        while True:
            gaps = (
                self.state.done.gaps(self.size)
                if self.size is not None
                else [(self.state.done.prefix(), -1)]
            )
            if self.size is not None and not gaps:
                return
            start, end = gaps[0]
            part = _Part(start, None if end < 0 else end)
            before = self.downloaded
            try:
                complete = await self._fetch_part(part)
            except _Restart as exc:
                restarts += 1
                if restarts > 3:
                    raise NetworkError(
                        f"Could not download {redact_url(self.spec.url)} consistently: {exc} "
                        f"({restarts} restarts from zero). Try again later."
                    ) from None
                self._restart()
                continue
            except RetryableError as exc:
                self._checkpoint(force=True)
                failures = 0 if self.downloaded > before else failures + 1
                if failures >= self.settings.max_attempts:
                    raise NetworkError(
                        f"Gave up on {redact_url(self.spec.url)} after {failures} attempts "
                        f"without progress; last error: {exc.reason}. Re-run to resume from "
                        f"{format_bytes(self.downloaded)}."
                    ) from exc
                await asyncio.sleep(backoff_delay(failures or 1, self.settings, exc.retry_after))
                continue
            finally:
                await self._settle_background()
                self._checkpoint(force=True)
                self._parts.clear()
            if complete and self.size is None:
                self.size = self.downloaded
                return

    async def _fetch_part(self, part: _Part) -> bool:
        """Stream ``part`` into the partial file. True when the server signalled the end of an
        open-ended body of unknown size."""
        headers = {"Accept-Encoding": "identity"}
        ranged = part.start > 0 or self.size is None or self.size > 0
        if ranged:
            last = "" if part.end is None else str(part.end - 1)
            headers["Range"] = f"bytes={part.start}-{last}"
            if part.start > 0 and self.state.validator:
                headers["If-Range"] = self.state.validator
        async with open_stream(
            self.client,
            self.spec.url,
            headers,
            self.settings,
            self.spec.credential,
            passthrough=frozenset({416}),
            on_error=self.spec.on_error,
        ) as (response, final_url):
            limit = self._accept(response, part, final_url)
            self._parts.append(part)
            if self.state.done.covered == 0 and part.start == 0:
                self.meter.reset(0)
            await self._stream(response, part, limit)
            if limit is None:
                return True
            if part.pos < limit:
                raise RetryableError(
                    f"connection closed after {format_bytes(part.pos)} of "
                    f"{format_bytes(limit)} from {redact_url(final_url)}"
                )
            return False

    def _accept(self, response: httpx2.Response, part: _Part, url: str) -> int | None:
        """Check an answer against what was asked. Returns the byte offset where this part's
        body must end (None: unknown size, read to EOF)."""
        shown = redact_url(url)
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise NetworkError(
                f"{shown} sent a {encoding}-encoded body although identity was requested; "
                "nbmodels writes bytes exactly as stored and will not decode them."
            )
        validator = _strong_validator(response)
        length = _content_length(response)
        if response.status_code == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
            if match is None:
                raise RetryableError(f"{shown} answered 206 without a valid Content-Range")
            first, last, total = (int(g) for g in match.groups())
            if self.size is None:
                self._check_space(total - self.state.done.covered)
            if self.size is not None and total != self.size:
                if self.spec.size is not None and part.start == 0:
                    raise _size_error(self.spec, total)
                raise _Restart("the remote file changed size")
            if self.state.validator and validator and validator != self.state.validator:
                raise _Restart("the remote file changed (its validator differs)")
            expected_last = (part.end if part.end is not None else total) - 1
            if first != part.start or last != expected_last:
                raise RetryableError(
                    f"{shown} answered bytes {first}-{last} to a request for bytes "
                    f"{part.start}-{expected_last}"
                )
            if length is not None and length != last - first + 1:
                raise RetryableError(f"{shown} sent a Content-Length that contradicts its range")
            if self.size is None:
                self.size = total
            if self.state.validator is None:
                if part.start > 0:
                    raise _Restart("the server offers no validator to prove the bytes match")
                self.state.validator = validator
            return last + 1
        if response.status_code == 200:
            if part.start > 0:
                # Range ignored or If-Range failed: the only safe thing is to begin again.
                raise _Restart("the server answered a range request with the whole file")
            if self.spec.size is not None and length is not None and length != self.spec.size:
                raise _size_error(self.spec, length)
            if self.state.done.covered:
                self._restart()  # a whole new body: nothing written before may be kept
            if self.spec.size is None:
                self.size = length
                self._check_space()
            self.state.validator = validator
            part.end = self.size
            return self.size
        if response.status_code == 416:
            match = re.fullmatch(r"bytes \*/(\d+)", response.headers.get("Content-Range", ""))
            if part.start == 0 and match is not None and int(match.group(1)) == 0:
                if self.spec.size not in (None, 0):
                    raise _size_error(self.spec, 0)
                self.size = 0
                return 0
            raise _Restart("the server says the recorded range no longer exists")
        raise RetryableError(f"{shown} answered an unexpected HTTP {response.status_code}")

    async def _stream(self, response: httpx2.Response, part: _Part, limit: int | None) -> None:
        fd = self._fd
        hasher = self._hasher
        meter = self.meter
        on_progress = self._on_progress
        try:
            async for chunk in response.aiter_raw():
                n = len(chunk)
                if limit is not None and part.pos + n > limit:
                    chunk = chunk[: limit - part.pos]
                    n = len(chunk)
                    if n == 0:
                        break
                try:
                    written = _pwrite(fd, chunk, part.pos)
                except OSError as exc:
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                        remaining = (self.size or part.pos + n) - self.downloaded
                        raise _space_error(
                            self.part_path.parent,
                            remaining,
                            shutil.disk_usage(self.part_path.parent).free,
                        ) from exc
                    raise
                if written != n:  # short write: the disk filled up between checks
                    raise _space_error(self.part_path.parent, n - written, 0)
                hasher.feed(part.pos, chunk)
                part.pos += n
                self.transferred += n
                downloaded = self.downloaded
                meter.add(downloaded)
                on_progress(downloaded, self.size)
                self._checkpoint_soon()
                if limit is not None and part.pos >= limit:
                    break
        except httpx2.TimeoutException as exc:
            raise RetryableError(
                f"no data for {self.settings.read_timeout:.0f} s from {redact_url(self.spec.url)}"
            ) from exc
        except httpx2.TransportError as exc:
            raise RetryableError(
                f"connection lost after {format_bytes(part.pos)} ({type(exc).__name__})"
            ) from exc

    # -- verify and publish ---------------------------------------------------------------------

    def _check_complete(self) -> int:
        assert self.size is not None
        on_disk = os.fstat(self._fd).st_size
        covered = self.state.done.covered
        if on_disk != self.size or covered != self.size:
            self.discard_on_failure()
            raise IntegrityError(
                f"{self.spec.name}: expected {self.size} bytes but {covered} arrived; "
                "nothing was saved.",
                expected=self.size,
                actual=covered,
                hint="Re-run the download.",
            )
        return self.size

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
        self.state.done.clear()
        self._parts.clear()
        self._close_partial()
        PartialState.discard(self.spec.target)

    def _publish(self) -> None:
        target = self.spec.target
        # os.replace swaps the directory entry: a symlink planted at the target is replaced,
        # never followed.
        os.replace(self.part_path, target)
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()
        _fsync_dir(target.parent)


def _datasync_and_close(fd: int) -> None:
    try:
        os.fdatasync(fd) if hasattr(os, "fdatasync") else os.fsync(fd)
    finally:
        os.close(fd)


def _strong_validator(response: httpx2.Response) -> str | None:
    etag = response.headers.get("ETag")
    if etag and not etag.startswith("W/") and len(etag) <= 512:
        return etag
    last_modified = response.headers.get("Last-Modified")
    if last_modified and len(last_modified) <= 64:
        return last_modified
    return None


def _content_length(response: httpx2.Response) -> int | None:
    raw = response.headers.get("Content-Length")
    if raw is None or not raw.strip().isdigit():
        return None
    return int(raw)


def _size_error(spec: FileSpec, got: int) -> IntegrityError:
    return IntegrityError(
        f"{spec.name}: the server offers {got} bytes but {spec.size} were expected; "
        "nothing was saved.",
        expected=spec.size,
        actual=got,
        hint="The file may have changed upstream; refresh the reference or try again later.",
    )


def _space_error(where: Path, needed: int, available: int) -> InsufficientSpaceError:
    missing = max(0, needed - available)
    return InsufficientSpaceError(
        f"Not enough disk space in {where}: the download needs {format_bytes(needed)} more, "
        f"{format_bytes(available)} is free ({format_bytes(missing)} missing). Free up space "
        "or pass dir= on another disk; the partial download is kept and will resume.",
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
