"""Digests of a file that is written out of order: hash the contiguous prefix as it grows.

One thread per transfer attempt hashes ``[0, offset)`` forward, from two sources:

- **In memory.** The connection writing at exactly the hashed frontier hands each buffer it
  has just written to the hasher (:meth:`PrefixHasher.offer`) and receives into another one
  meanwhile; the hasher hands it back when done. One fast stream — the usual case on a fat
  pipe — is hashed without reading anything back, in step with its arrival.
- **Read back.** Everything else (bytes written by connections further on, or a frontier
  connection that got ahead) is read back from the partial file, which is in the page cache,
  once the contiguous written prefix (:meth:`PrefixHasher.readable_to`) covers it.

``hashlib`` releases the GIL on large buffers, so hashing runs beside the receiving threads.
"""

from __future__ import annotations

import collections
import errno
import hashlib
import os
import threading
import time
from collections.abc import Callable

__all__ = ["PrefixHasher"]

READ_CHUNK = 4 << 20
#: In-memory buffers waiting at most (per transfer); a writer ahead of this waits.
MAX_QUEUED = 4
#: A frontier connection at most this far ahead waits for the read-back to reach it, then
#: joins in memory.
CATCH_UP = 8 << 20
#: The longest a writer waits for the hasher before carrying on without it.
MAX_WAIT = 1.0

Release = Callable[[], None]


class PrefixHasher:
    """sha256 and/or git blob SHA-1 of bytes ``[0, offset)`` of a file."""

    def __init__(self, sha256: bool, git_size: int | None) -> None:
        self._want_sha256 = sha256
        self._git_size = git_size
        self._cv = threading.Condition()
        self._queue: collections.deque[tuple[int, memoryview, Release]] = collections.deque()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._reset()

    def _reset(self) -> None:
        self.offset = 0
        self.from_memory = 0  # of which hashed from lent buffers
        self.readable = 0
        self._claimed = 0  # the end of the read-back in progress
        self._drop_queue()
        self.sha256 = hashlib.sha256() if self._want_sha256 else None
        self.sha1 = None
        if self._git_size is not None:
            self.sha1 = hashlib.sha1(usedforsecurity=False)
            self.sha1.update(b"blob %d\0" % self._git_size)

    def _drop_queue(self) -> None:
        while self._queue:
            self._queue.popleft()[2]()

    def reset(self) -> None:
        with self._cv:
            self._reset()

    @property
    def active(self) -> bool:
        return self.sha256 is not None or self.sha1 is not None

    def _update(self, data: memoryview) -> None:
        if self.sha256 is not None:
            self.sha256.update(data)
        if self.sha1 is not None:
            self.sha1.update(data)

    @property
    def _frontier(self) -> int:
        """The next byte nobody has hashed or queued (lock held)."""
        if self._queue:
            start, view, _ = self._queue[-1]
            return start + len(view)
        return max(self.offset, self._claimed)

    # -- the loop and the writers ---------------------------------------------------------------

    def readable_to(self, upto: int) -> None:
        """Bytes ``[0, upto)`` are written: the hasher may read them back."""
        with self._cv:
            if upto > self.readable:
                self.readable = upto
                self._cv.notify_all()

    def offer(self, part_start: int, at: int, data: memoryview, release: Release) -> bool:
        """From a writer thread: ``data`` was just written at ``at`` by a part that has written
        ``[part_start, at)`` before it. True when the hasher keeps ``data`` (and calls
        ``release()`` once done with it); the writer must not reuse that buffer until then."""
        deadline = time.monotonic() + MAX_WAIT
        with self._cv:
            if self._thread is None or self._stopping or not self.active:
                return False
            frontier = self._frontier
            if at != frontier:
                if not (part_start <= frontier < at <= frontier + CATCH_UP):
                    return False  # not at the front (the read-back covers it later)
                # Just ahead, and our own bytes fill the gap: let the read-back reach us.
                self.readable = max(self.readable, at)
                self._cv.notify_all()
                while self._frontier != at and not self._stopping:
                    if self._frontier > at or not self._cv.wait(deadline - time.monotonic()):
                        return False
            while len(self._queue) >= MAX_QUEUED and not self._stopping:
                if not self._cv.wait(deadline - time.monotonic()):
                    return False
            if self._stopping or self._frontier != at:
                return False
            self._queue.append((at, data, release))
            self._cv.notify_all()
            return True

    # -- the hashing thread ---------------------------------------------------------------------

    def start(self, fd: int) -> None:
        """Hash in the background, reading back from ``fd`` (which the thread owns and
        closes), until :meth:`stop`."""
        with self._cv:
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, args=(fd,), name="nbmodels-hasher", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """End the background thread (blocking until it has); queued buffers go back unhashed.
        (An I/O error of the thread ends it; :meth:`finish` meets the error again.)"""
        with self._cv:
            thread, self._stopping = self._thread, True
            self._cv.notify_all()
        if thread is not None:
            thread.join()
        with self._cv:
            self._thread = None
            self._claimed = self.offset
            self._drop_queue()

    def _run(self, fd: int) -> None:
        buf = bytearray(READ_CHUNK)
        view = memoryview(buf)
        try:
            while True:
                with self._cv:
                    while True:
                        if self._stopping:
                            return
                        if self._queue and self._queue[0][0] == self.offset:
                            _, data, release = self._queue[0]
                            stop = -1
                            break
                        stop = self._queue[0][0] if self._queue else self.readable
                        if stop > self.offset:
                            # Claimed before unlocking: a writer joins only behind it.
                            stop = min(stop, self.offset + READ_CHUNK)
                            self._claimed = stop
                            break
                        self._cv.wait(0.1)
                if stop < 0:
                    self._update(data)  # outside the lock: writers carry on meanwhile
                    with self._cv:
                        self._queue.popleft()
                        self.offset += len(data)
                        self.from_memory += len(data)
                        self._cv.notify_all()
                    release()
                    continue
                n = self._read_back(fd, view, stop)  # a short file: finish() reports it
                with self._cv:
                    self.offset += n
                    self._cv.notify_all()
        except OSError:
            return  # finish() meets the error again and reports it
        finally:
            os.close(fd)

    def _read_back(self, fd: int, view: memoryview, stop: int) -> int:
        """Hash the next bytes from ``offset`` towards ``stop`` read from ``fd`` into ``view``
        (the caller advances ``offset``); how many."""
        n = os.preadv(fd, [view[: min(len(view), stop - self.offset)]], self.offset)
        if n <= 0:
            raise OSError(errno.EIO, "partial file is shorter than its recorded state")
        self._update(view[:n])
        return n

    # -- the end --------------------------------------------------------------------------------

    def finish(self, fd: int, size: int) -> tuple[str | None, str | None]:
        """Hash the rest of ``[0, size)`` from ``fd`` (which this closes); return the digests.
        Call after :meth:`stop`."""
        try:
            with self._cv:
                buf = bytearray(READ_CHUNK)
                view = memoryview(buf)
                while self.active and self.offset < size:
                    self.offset += self._read_back(fd, view, size)
                return (
                    self.sha256.hexdigest() if self.sha256 is not None else None,
                    self.sha1.hexdigest() if self.sha1 is not None else None,
                )
        finally:
            os.close(fd)
