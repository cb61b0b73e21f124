"""How a file's bytes are shared among connections (pure bookkeeping; no I/O).

A *part* is one connection's assignment: bytes ``[start, end)``. ``pos`` is the next byte it
will write and ``committed`` how far the durable state already records it. A part's ``end`` may
shrink while it runs — another connection *steals* the second half of the largest remaining
part, so a slow connection never leaves a long tail at 99%.

Connections that receive on their own threads first *reserve* the bytes they are about to
receive (``claim``, under :attr:`PartPlan.lock`); a steal never takes reserved bytes, so a
part's writes never cross its (shrinking) end.

Invariants (property-tested): the ranges of active parts never overlap each other or the
durable set; every byte of ``[0, size)`` is eventually durable exactly once per transfer.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

from ._ranges import RangeSet

__all__ = ["Part", "PartPlan"]

#: Nothing is split into pieces smaller than this (per part, after a steal).
MIN_PART = 256 << 10
#: Steal boundaries are aligned to this (keeps writes page- and block-aligned).
ALIGN = 1 << 16
#: At the tail, a part is cut only if it still needs this long at its pace: its connection
#: closes, and what is in flight on it (often the whole rest of a short part) is lost.
STEAL_AFTER = 0.25
#: A part's pace is known after this long.
RATE_AFTER = 0.05


@dataclass(eq=False, slots=True)
class Part:
    start: int
    end: int | None  # None: open-ended (size unknown)
    pos: int = field(init=False)
    committed: int = field(init=False)
    #: Bytes up to here are being received now and will be written (>= pos while reserved).
    claim: int = field(init=False)
    active: bool = True
    born: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.pos = self.start
        self.committed = self.start
        self.claim = self.start

    @property
    def remaining(self) -> int:
        """Bytes nobody has reserved yet (what a steal may take)."""
        return 0 if self.end is None else max(0, self.end - max(self.pos, self.claim))

    def eta(self, now: float) -> float:
        """Seconds this part still needs at its pace so far (infinite while unknown)."""
        elapsed = now - self.born
        done = self.pos - self.start
        if done <= 0 or elapsed < RATE_AFTER:
            return math.inf if self.remaining else 0.0
        return self.remaining * elapsed / done

    def __repr__(self) -> str:
        return f"Part({self.start}-{self.end} pos={self.pos} {'active' if self.active else 'idle'})"


class PartPlan:
    """The parts of one file and the durable ranges; decides what a free connection does next."""

    def __init__(self, done: RangeSet, size: int | None) -> None:
        self.done = done
        self.size = size
        self.parts: list[Part] = []
        #: Guards ends, positions and claims against the receiving threads.
        self.lock = threading.Lock()

    # -- reading ------------------------------------------------------------------------------

    @property
    def written(self) -> int:
        """Bytes on disk: durable plus written since the last checkpoint."""
        return self.done.covered + sum(p.pos - p.committed for p in self.parts)

    def active(self) -> list[Part]:
        return [p for p in self.parts if p.active]

    def claimed(self) -> RangeSet:
        """Durable bytes, bytes written but not yet durable, and what active parts will write."""
        rs = RangeSet(self.done)
        for p in self.parts:
            rs.add(p.committed, p.pos)
            if p.active and p.end is not None:
                rs.add(p.pos, p.end)
        return rs

    def written_prefix(self) -> int:
        """Length of the contiguous run of written bytes from offset 0 (what can be hashed)."""
        rs = RangeSet(self.done)
        for p in self.parts:
            rs.add(p.committed, p.pos)
        return rs.prefix()

    def complete(self) -> bool:
        return self.size is not None and not self.claimed().gaps(self.size) and not self.active()

    # -- deciding -----------------------------------------------------------------------------

    def first_part(self) -> Part:
        """The probe: from the first missing byte to the end of that gap (open-ended when the
        size is unknown)."""
        if self.size is None:
            part = Part(self.done.prefix(), None)
        else:
            start, end = self.done.gaps(self.size)[0]
            part = Part(start, end)
        self.parts.append(part)
        return part

    def next_part(self, piece: int | None = None) -> Part | None:
        """Work for a free connection, at most ``piece`` bytes of new ground:

        - the piece after the first one of the *front* part (the one holding back the
          contiguous prefix, which is all the hasher can digest) when it has more than two
          pieces left: the front part keeps one piece and the rest goes back to the pool,
          handed out piece by piece in file order. So a slow connection near the start cannot
          leave the whole hash for the end, and when many connections join at once they take
          consecutive pieces rather than ever smaller halves of the front;
        - else the next piece of the first unclaimed gap;
        - else the second half of the largest remaining part (no slow tail).

        None when nothing is worth splitting."""
        if self.size is None:
            return None
        if piece is not None:
            with self.lock:
                front = min(
                    (p for p in self.active() if p.end is not None),
                    key=lambda p: p.pos,
                    default=None,
                )
                if front is not None and front.end is not None and front.remaining > 2 * piece:
                    cut = max(front.pos, front.claim) + piece
                    front.end = cut - cut % ALIGN  # what remains is a gap, taken below
        gaps = self.claimed().gaps(self.size)
        if gaps:
            start, end = gaps[0]
            if piece is not None:
                end = min(end, start + piece)
            part = Part(start, end)
            self.parts.append(part)
            return part
        with self.lock:
            now = time.monotonic()
            victim = max(self.active(), key=lambda p: p.eta(now), default=None)
            if victim is None or victim.eta(now) < STEAL_AFTER:
                return None  # everyone is about done: a cut would lose more than it saves
            return self._split(victim)

    def _split(self, victim: Part) -> Part | None:
        """Give the second half of ``victim``'s unreserved bytes to a new part (lock held)."""
        if victim.end is None or victim.remaining < 2 * MIN_PART:
            return None
        base = max(victim.pos, victim.claim)
        mid = base + victim.remaining // 2
        mid -= mid % ALIGN
        if mid - base < MIN_PART or victim.end - mid < MIN_PART:
            return None
        part = Part(mid, victim.end)
        victim.end = mid
        self.parts.append(part)
        return part

    def next_part_available(self) -> bool:
        """Is there unclaimed work (without assigning it)?"""
        return self.size is not None and bool(self.claimed().gaps(self.size))

    def commit(self, marks: list[tuple[Part, int]]) -> None:
        """Record ``[committed, pos)`` of each part as durable (after the data was synced) and
        forget idle parts that have nothing left to record."""
        for part, pos in marks:
            if pos > part.committed:
                self.done.add(part.committed, pos)
                part.committed = pos
        self.parts = [p for p in self.parts if p.active or p.pos > p.committed]

    def marks(self) -> list[tuple[Part, int]]:
        return [(p, p.pos) for p in self.parts if p.pos > p.committed]

    def reset(self) -> None:
        self.done.clear()
        self.parts.clear()
