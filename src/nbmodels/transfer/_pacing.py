"""How many connections a file gets, and how big the pieces they take: pure decisions from
sizes and measured rates (no I/O, no clock). The transfer measures the rates, asks, and starts
or stops the workers.

- Small or unknown-size files, and servers without ranges, get one connection.
- The automatic start follows from the first connection's rate: one fast stream (a local
  mirror, a fat pipe; :data:`FAST_STREAM`) stays alone and does not climb — one stream is the
  cheapest way to receive and hash in order, and more would only compete for the same cores.
  A stream held to a per-connection limit (a CDN) gets enough company to reach
  :data:`START_RATE` at once, since a slow climb would cost a small file most of its time.
- Then a hill climb on the aggregate rate (:class:`Climb`): half as many connections again
  while that pays :data:`GROWTH_GAIN`, back to the last step that paid when it does not.
- Connections take the file in order, a piece at a time, so the contiguous prefix — what the
  hasher can digest — grows while the transfer runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

__all__ = [
    "Climb",
    "auto_connections",
    "fast_path_worth",
    "max_connections",
    "piece_for",
    "piece_size",
    "start_connections",
]

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
#: Pieces are whole multiples of this (page- and block-aligned writes).
PIECE_ALIGN = 64 << 10


def auto_connections(size: int | None) -> int:
    """One connection for small or unknown-size files; more for big ones (up to 64)."""
    if size is None or size < SMALL_FILE:
        return 1
    return max(1, min(AUTO_MAX_CONNECTIONS, size // (4 << 20)))


def max_connections(size: int | None, ranges_ok: bool, requested: int | None) -> int:
    """The most connections a file may use: one unless ranges work and the size is known;
    then the ``connections`` the user asked for, else :func:`auto_connections`."""
    if not ranges_ok or size is None:
        return 1
    return requested or auto_connections(size)


def start_connections(first_rate: float, limit: int) -> int:
    """How many connections to start with, given the first one's rate (bytes/s)."""
    if first_rate >= FAST_STREAM:
        return 1
    if first_rate <= 0:
        return limit
    return max(2, min(limit, math.ceil(START_RATE / first_rate)))


def piece_size(size: int | None, limit: int) -> int | None:
    """The first pieces of a file of ``size`` bytes shared by up to ``limit`` connections
    (None: one connection takes all)."""
    if limit == 1 or size is None:
        return None
    return _aligned(min(PIECE_MAX, max(PIECE_MIN, size // (limit * 4))))


def piece_for(rate: float, connections: int) -> int:
    """The next piece of a connection that ran at ``rate`` bytes/s, among ``connections``:
    about PIECE_TIME at its pace (fewer request turnarounds for a fast stream, small steps
    for a slow one), all pieces in flight together within PIECE_SPAN, so the contiguous
    prefix (and the hash) follows the transfer closely."""
    span_share = PIECE_SPAN // max(1, connections)
    return _aligned(max(PIECE_MIN, min(PIECE_MAX, span_share, int(rate * PIECE_TIME))))


def fast_path_worth(remaining: int, limit: int) -> bool:
    """Is a new connection worth it for the ``remaining`` bytes of a part? Always when the
    file is shared among connections; for a lone connection, from FAST_PATH_MIN on."""
    return remaining >= FAST_PATH_MIN or limit != 1


def _aligned(piece: int) -> int:
    return piece - piece % PIECE_ALIGN


@dataclass(frozen=True, slots=True)
class Climb:
    """The hill climb on the aggregate rate: ``target`` connections wanted now; ``settled``
    the last count that paid off, at rate ``best``; ``growing`` while it still climbs."""

    target: int
    settled: int
    best: float = 0.0
    growing: bool = True

    @classmethod
    def start(cls, target: int, *, growing: bool = True) -> Climb:
        return cls(target, target, 0.0, growing)

    def step(self, rate: float, limit: int) -> Climb:
        """After a measuring window at ``target`` connections that reached ``rate``."""
        if rate > self.best * GROWTH_GAIN:
            target = min(limit, math.ceil(self.target * 1.5))
            return Climb(target, self.target, rate, target > self.target)
        # The last step did not pay: back to what did, and hold there.
        return Climb(self.settled, self.settled, self.best, False)

    def hold(self) -> Climb:
        """Stop climbing (a connection left under pushback)."""
        return replace(self, growing=False)
