"""Digests of a file that is written out of order: hash the contiguous prefix as it grows.

A worker thread reads the bytes back from the partial file (they are in the page cache) while
other connections keep writing further on, so a verified download costs about one memory copy
more than an unverified one and never blocks the event loop. ``hashlib`` releases the GIL on
large buffers.
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading

__all__ = ["PrefixHasher"]

READ_CHUNK = 4 << 20
#: One background step hashes at most this much (so a reset never waits long for the lock).
STEP = 64 << 20


class PrefixHasher:
    """sha256 and/or git blob SHA-1 of bytes ``[0, offset)`` of a file."""

    def __init__(self, sha256: bool, git_size: int | None) -> None:
        self._want_sha256 = sha256
        self._git_size = git_size
        self._lock = threading.Lock()
        self.offset = 0
        self._reset()

    def _reset(self) -> None:
        self.offset = 0
        self.sha256 = hashlib.sha256() if self._want_sha256 else None
        self.sha1 = None
        if self._git_size is not None:
            self.sha1 = hashlib.sha1(usedforsecurity=False)
            self.sha1.update(b"blob %d\0" % self._git_size)

    def reset(self) -> None:
        with self._lock:
            self._reset()

    @property
    def active(self) -> bool:
        return self.sha256 is not None or self.sha1 is not None

    def advance(self, fd: int, upto: int, *, limit: int | None = STEP) -> None:
        """Hash ``[offset, upto)`` read from ``fd`` (at most ``limit`` bytes per call)."""
        with self._lock:
            if not self.active:
                self.offset = max(self.offset, upto)
                return
            stop = upto if limit is None else min(upto, self.offset + limit)
            buf = bytearray(READ_CHUNK)
            view = memoryview(buf)
            while self.offset < stop:
                n = os.preadv(fd, [view[: min(READ_CHUNK, stop - self.offset)]], self.offset)
                if n <= 0:
                    raise OSError(errno.EIO, "partial file is shorter than its recorded state")
                chunk = view[:n]
                if self.sha256 is not None:
                    self.sha256.update(chunk)
                if self.sha1 is not None:
                    self.sha1.update(chunk)
                self.offset += n

    def advance_dup(self, fd: int, upto: int) -> None:
        """:meth:`advance` on a descriptor this call owns and closes (for worker threads)."""
        try:
            self.advance(fd, upto)
        finally:
            os.close(fd)

    def finish(self, fd: int, size: int) -> tuple[str | None, str | None]:
        """Hash the rest of ``[0, size)`` from ``fd`` (which this closes); return the digests."""
        try:
            self.advance(fd, size, limit=None)
        finally:
            os.close(fd)
        with self._lock:
            return (
                self.sha256.hexdigest() if self.sha256 is not None else None,
                self.sha1.hexdigest() if self.sha1 is not None else None,
            )
