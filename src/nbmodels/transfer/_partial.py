"""The partial file of one download and its state: the download contract on disk
(docs/download-contract.md, rules 1, 3 and 8), pooch's write-elsewhere-verify-move.

Bytes go to ``.<name>.nbmodels.part`` beside the target (:func:`partial_paths`): opened with
``O_NOFOLLOW``, its blocks reserved up front (``fallocate``), written at their offsets
(``pwrite``). A checkpoint makes written bytes durable before the state file records them.
Verifying checks the exact size and the digests; publishing syncs the file, renames it over
the target and syncs the folder. Nothing is recorded about, truncated or published from a
partial path that is no longer this process's file (file locks that do nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import shutil
import time
from pathlib import Path

from .._config import Settings
from .._progress import format_bytes
from ..errors import InsufficientSpaceError, IntegrityError, NbmodelsError, Option
from ._disk import datasync, datasync_and_close, fsync_dir, linux_libc, start_writeback
from ._hasher import PrefixHasher
from ._parts import Part, PartPlan
from ._state import PartialState, partial_paths

__all__ = ["PartialFile"]

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: The one place bytes hit the disk (tests replace it to simulate a full disk).
_pwrite = os.pwrite
#: Reserves a file's blocks (tests replace it to simulate a file system without it).
_fallocate = linux_libc("fallocate64", ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
_FALLOC_FL_KEEP_SIZE = 1


class PartialFile:
    """The bytes of ``target`` so far, and what they are (:class:`PartialState`).

    ``size`` is the file's size as known now (the source's promise, an answer, or the record
    of an earlier run; None: unknown), kept equal to ``plan.size``. ``written`` counts the
    bytes on disk, ``transferred`` the bytes this run wrote; both move with each write.
    """

    def __init__(
        self, target: Path, *, name: str, key: str, size: int | None, settings: Settings
    ) -> None:
        self.target = target
        self.name = name
        self.key = key
        self.expected = size
        self.settings = settings
        self.part_path, self.state_path = partial_paths(target)
        self.state = PartialState(key=key, size=size)
        self.size: int | None = size
        self.plan = PartPlan(self.state.done, size)
        self.written = 0
        self.transferred = 0
        self._fd = -1
        self._last_checkpoint = 0.0
        self._background: asyncio.Task[None] | None = None

    @property
    def downloaded(self) -> int:
        """Bytes on disk: durable ranges plus what parts wrote since."""
        return self.plan.written

    def resize(self, size: int | None) -> None:
        self.size = size
        self.plan.size = size

    # -- open and close -------------------------------------------------------------------------

    def open(self) -> None:
        """Take up the partial data of an earlier run when it is provably of the same remote
        object (else discard it), and open the partial file."""
        self.target.parent.mkdir(parents=True, exist_ok=True)
        loaded = PartialState.load(self.state_path, self.part_path)
        if loaded is not None and loaded.matches(self.key, self.expected, None):
            self.state = loaded
            self.size = self.expected if self.expected is not None else loaded.size
        else:
            PartialState.discard(self.target)
        self.plan = PartPlan(self.state.done, self.size)
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
        self.written = self.plan.written

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def dup(self) -> int:
        """A descriptor of the partial file for another thread (it closes it)."""
        return os.dup(self._fd)

    def keep(self) -> None:
        """After a failure: record what is on disk for a resume, or remove the partial data
        when there is nothing worth keeping."""
        if self._fd >= 0 and self.downloaded == 0:
            self.close()
            PartialState.discard(self.target)
        else:
            self.checkpoint(force=True)

    def discard(self) -> None:
        self.plan.reset()
        self.close()
        PartialState.discard(self.target)

    # -- space ----------------------------------------------------------------------------------

    def reserve(self, size: int | None = None) -> None:
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

    def forget(self) -> None:
        """Drop every byte (the remote object changed or refused to resume); the caller
        reserves the space again."""
        if not self.owns():
            raise self.lost()  # truncating would cut someone else's (or a final) file
        self.resize(self.expected)
        self.plan.reset()
        self.state.validator = None
        os.ftruncate(self._fd, 0)
        self.written = 0

    # -- writing --------------------------------------------------------------------------------

    def put(self, part: Part, chunk: bytes | memoryview) -> int:
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
                remaining = (self.size or part.pos + n) - self.written
                free = shutil.disk_usage(where).free
                raise _space_error(where, remaining, free, self.downloaded) from exc
            raise
        if written != n:  # short write: the disk filled up between checks
            raise _space_error(self.part_path.parent, n - written, 0, self.downloaded)
        with self.plan.lock:
            part.pos += n
            self.transferred += n
            self.written += n
        return n

    def start_writeback(self) -> asyncio.Future[None]:
        """Start writing the data written so far to the disk, on a worker thread."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(None, start_writeback, os.dup(self._fd))

    # -- checkpoints ----------------------------------------------------------------------------

    def checkpoint(self, force: bool = False) -> None:
        """Make written bytes durable, then record them. Never the other way round."""
        self._last_checkpoint = time.monotonic()
        if self._fd < 0:
            return
        marks = self.plan.marks()
        if not marks and not force:
            return
        try:
            datasync(self._fd)
            self.plan.commit(marks)
            self.state.size = self.size
            if self.owns():  # never describe another process's file
                self.state.save(self.state_path)
        except OSError:
            # Disk full or gone while saving: the previous state file still stands (atomic
            # replace) and claims only bytes that were durable when it was written.
            if not force:
                raise

    def checkpoint_soon(self) -> None:
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
            await asyncio.to_thread(datasync_and_close, os.dup(self._fd))
            self.plan.commit(marks)
            self.state.size = self.size
            if self.owns():
                await asyncio.to_thread(self.state.save, self.state_path)
        except OSError:
            pass  # the previous state stands; the write path reports a full disk itself

    async def settle(self) -> None:
        """Wait for a running background checkpoint."""
        task, self._background = self._background, None
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)

    # -- ownership ------------------------------------------------------------------------------

    def owns(self) -> bool:
        """Is the partial path still the file this transfer writes? Not when another process
        (with file locks that do nothing) discarded, replaced or published it."""
        try:
            mine, there = os.fstat(self._fd), os.lstat(self.part_path)
        except OSError:
            return False
        return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)

    def lost(self) -> NbmodelsError:
        return NbmodelsError(
            f"{self.name}: another process replaced the partial download at "
            f"{self.part_path} while this one ran (do file locks work on this file system?); "
            "nothing was published by this download.",
            hint="Re-run the download.",
        )

    # -- verify and publish ---------------------------------------------------------------------

    async def verify(
        self, hasher: PrefixHasher, sha256: str | None, git_sha1: str | None
    ) -> tuple[int, str | None]:
        """Check the exact size, then the digests; (size, sha256). On a mismatch the partial
        data is discarded and :class:`IntegrityError` raised."""
        size = self._check_complete()
        # The rest of the hash reads from a duplicate descriptor on a worker thread, so a
        # pause that closes ours meanwhile cannot pull the file out from under it.
        got_sha256, got_sha1 = await asyncio.to_thread(hasher.finish, os.dup(self._fd), size)
        self._check_digest("sha256", sha256, got_sha256, "the digest you were given")
        self._check_digest("git blob SHA-1", git_sha1, got_sha1, None)
        return size, got_sha256

    def _check_complete(self) -> int:
        size = self.size
        covered = self.state.done.covered
        on_disk = os.fstat(self._fd).st_size
        if size is None or on_disk != size or covered != size:
            self.discard()
            raise IntegrityError(
                f"{self.name}: expected {size} bytes but {covered} arrived; nothing was saved.",
                expected=size,
                actual=covered,
                hint="Re-run the download.",
            )
        return size

    def _check_digest(
        self, kind: str, expected: str | None, got: str | None, source: str | None
    ) -> None:
        """``source``: what else may be wrong when a download repeats the mismatch."""
        if expected is None or got == expected:
            return
        self.discard()
        repeats = f"; if it repeats, the source differs from {source}" if source else ""
        raise IntegrityError(
            f"{self.name}: {kind} mismatch (expected {expected}, got {got}); "
            "the corrupt download was discarded and nothing was saved.",
            expected=expected,
            actual=got,
            hint=f"Re-run to download it again{repeats}.",
        )

    def publish(self) -> None:
        """Sync the file, then put it at the target in one step, and sync the folder."""
        os.fsync(self._fd)
        if not self.owns():
            raise self.lost()  # what is there is not what was verified
        # os.replace swaps the directory entry: a symlink planted at the target is replaced,
        # never followed.
        os.replace(self.part_path, self.target)
        with contextlib.suppress(FileNotFoundError):
            self.state_path.unlink()
        fsync_dir(self.target.parent)


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
