"""Byte-range bookkeeping for partial files (pure; no I/O).

A :class:`RangeSet` holds the half-open ranges ``[start, end)`` that are on disk. Parts of a
parallel transfer add to it as they write; resume asks it for the gaps.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

__all__ = ["RangeSet"]


class RangeSet:
    """Sorted, disjoint, non-adjacent half-open ranges."""

    __slots__ = ("_ends", "_starts")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        for start, end in ranges:
            self.add(start, end)

    def add(self, start: int, end: int) -> None:
        if start < 0 or end < start:
            raise ValueError(f"bad range [{start}, {end})")
        if start == end:
            return
        starts, ends = self._starts, self._ends
        # First range whose end reaches start (touching ranges merge).
        i = bisect.bisect_left(ends, start)
        j = i
        while j < len(starts) and starts[j] <= end:
            start = min(start, starts[j])
            end = max(end, ends[j])
            j += 1
        starts[i:j] = [start]
        ends[i:j] = [end]

    def clear(self) -> None:
        self._starts.clear()
        self._ends.clear()

    def truncate(self, limit: int) -> None:
        """Forget everything at or beyond ``limit`` (the file on disk is shorter than claimed)."""
        kept = [(s, min(e, limit)) for s, e in self if s < limit]
        self.clear()
        for s, e in kept:
            self.add(s, e)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(zip(self._starts, self._ends, strict=True))

    def __len__(self) -> int:
        return len(self._starts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RangeSet) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"RangeSet({list(self)!r})"

    @property
    def covered(self) -> int:
        """Number of bytes in the set."""
        return sum(e - s for s, e in self)

    def prefix(self) -> int:
        """Length of the contiguous run that starts at byte 0."""
        if self._starts and self._starts[0] == 0:
            return self._ends[0]
        return 0

    def contains(self, start: int, end: int) -> bool:
        i = bisect.bisect_right(self._starts, start) - 1
        return i >= 0 and self._ends[i] >= end

    def gaps(self, total: int) -> list[tuple[int, int]]:
        """The missing ranges of ``[0, total)``."""
        out: list[tuple[int, int]] = []
        pos = 0
        for s, e in self:
            if s >= total:
                break
            if s > pos:
                out.append((pos, s))
            pos = max(pos, e)
        if pos < total:
            out.append((pos, total))
        return out

    def to_json(self) -> list[list[int]]:
        return [[s, e] for s, e in self]
