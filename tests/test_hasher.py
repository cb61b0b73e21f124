"""The prefix hasher: in-memory buffers from the frontier connection, read-back for the rest.

Real threads and a real file; the writers follow the transfer's rules (each part writes its
bytes in order from its start, then offers the buffer)."""

from __future__ import annotations

import hashlib
import os
import random
import threading
from pathlib import Path

import pytest

from nbmodels.transfer._hasher import PrefixHasher

KIB = 1024


class _Lender:
    """Counts buffers lent to the hasher and handed back."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lent = 0
        self.returned = 0
        self.kept_bytes = 0

    def release(self) -> None:
        with self.lock:
            self.returned += 1


def _write_parts(
    fd: int,
    data: bytes,
    hasher: PrefixHasher,
    bounds: list[int],
    rnd: random.Random,
    progress: list[int] | None = None,
) -> _Lender:
    """One thread per part, writing random-sized chunks in order and offering each;
    ``progress[i]`` follows part i's position."""
    lender = _Lender()
    progress = progress if progress is not None else list(bounds[:-1])
    seeds = [rnd.randrange(1 << 30) for _ in bounds[:-1]]

    def part(index: int, start: int, end: int, seed: int) -> None:
        r = random.Random(seed)
        pos = start
        while pos < end:
            n = min(end - pos, r.choice([1, 100, 4 * KIB, 64 * KIB, 300 * KIB]))
            chunk = memoryview(bytearray(data[pos : pos + n]))
            assert os.pwrite(fd, chunk, pos) == n
            if hasher.offer(start, pos, chunk, lender.release):
                with lender.lock:
                    lender.lent += 1
                    lender.kept_bytes += n
            pos += n
            progress[index] = pos

    threads = [
        threading.Thread(target=part, args=(i, a, b, s))
        for i, (a, b, s) in enumerate(zip(bounds[:-1], bounds[1:], seeds, strict=True))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lender


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("parts", [1, 2, 7])
def test_digest_is_exact_whatever_the_order(tmp_path: Path, seed: int, parts: int) -> None:
    rnd = random.Random(seed * 31 + parts)
    size = rnd.randint(1, 3 << 20)
    data = rnd.randbytes(size)
    cuts = sorted({0, size, *(rnd.randint(0, size) for _ in range(parts - 1))})
    path = tmp_path / "f.part"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        hasher = PrefixHasher(True, size)
        hasher.start(os.dup(fd))
        done = threading.Event()
        progress = list(cuts[:-1])
        quiet = rnd.random() < 0.3  # no prefix news at all: only the writers' catch-up hints

        def feeder() -> None:  # the loop's role: how far the contiguous written prefix reaches
            while not done.is_set():
                prefix = 0
                for i, end in enumerate(cuts[1:]):
                    prefix = progress[i]
                    if prefix < end:
                        break
                if not quiet:
                    hasher.readable_to(prefix)
                done.wait(0.005)

        feed = threading.Thread(target=feeder)
        feed.start()
        lender = _write_parts(fd, data, hasher, cuts, rnd, progress)
        done.set()
        feed.join()
        hasher.stop()
        sha256, sha1 = hasher.finish(os.dup(fd), size)
    finally:
        os.close(fd)
    assert sha256 == hashlib.sha256(data).hexdigest()
    git = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
    git.update(data)
    assert sha1 == git.hexdigest()
    assert lender.returned == lender.lent  # every lent buffer came back, hashed or not


def test_one_stream_is_hashed_from_memory(tmp_path: Path) -> None:
    """A single in-order writer is hashed from its buffers, not read back (apart from what
    it wrote before the hasher's catch-up)."""
    size = 8 << 20
    data = random.Random(5).randbytes(size)
    fd = os.open(tmp_path / "f.part", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        hasher = PrefixHasher(True, None)
        hasher.start(os.dup(fd))
        lender = _write_parts(fd, data, hasher, [0, size], random.Random(1))
        hasher.stop()
        sha256, _ = hasher.finish(os.dup(fd), size)
    finally:
        os.close(fd)
    assert sha256 == hashlib.sha256(data).hexdigest()
    # Most of it hashed from the lent buffers (stop() hands back what is still queued).
    assert hasher.from_memory >= size // 2
    assert lender.returned == lender.lent


def test_stop_hands_back_what_is_queued_and_finish_reads_it(tmp_path: Path) -> None:
    data = random.Random(9).randbytes(1 << 20)
    fd = os.open(tmp_path / "f.part", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, data, 0)
        hasher = PrefixHasher(True, None)
        hasher.start(os.dup(fd))
        lender = _Lender()
        kept = hasher.offer(0, 0, memoryview(bytearray(data)), lender.release)
        hasher.stop()
        assert lender.returned == int(kept)
        assert not hasher.offer(0, hasher.offset, memoryview(b"x"), lender.release)  # stopped
        sha256, _ = hasher.finish(os.dup(fd), len(data))
    finally:
        os.close(fd)
    assert sha256 == hashlib.sha256(data).hexdigest()


def test_without_digests_nothing_is_kept(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f.part", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        hasher = PrefixHasher(False, None)
        assert not hasher.active
        assert not hasher.offer(0, 0, memoryview(b"abc"), lambda: None)  # never started
        assert hasher.finish(os.dup(fd), 0) == (None, None)
    finally:
        os.close(fd)
