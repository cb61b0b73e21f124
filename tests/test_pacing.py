"""Pacing (``transfer/_pacing.py``) from tables: how many connections a file gets, how big
their pieces are, and the hill climb on the aggregate rate. Pure decisions, no sockets and no
clock; test_parallel.py watches the same rules drive real connections."""

from __future__ import annotations

import pytest

from nbmodels.transfer._pacing import (
    FAST_PATH_MIN,
    FAST_STREAM,
    GROWTH_GAIN,
    PIECE_ALIGN,
    PIECE_MAX,
    PIECE_MIN,
    PIECE_SPAN,
    START_RATE,
    Climb,
    auto_connections,
    fast_path_worth,
    max_connections,
    piece_for,
    piece_size,
    start_connections,
)

MIB = 1 << 20
GIB = 1 << 30


def test_auto_connections_rule() -> None:
    assert auto_connections(None) == 1
    assert auto_connections(5 * MIB) == 1  # small files: one connection
    assert auto_connections(64 * MIB) == 16
    assert auto_connections(10 * 1024 * MIB) == 64


def test_start_follows_the_first_connections_rate() -> None:
    """A fast first stream stays alone; a capped one gets company to reach START_RATE."""
    assert start_connections(FAST_STREAM * 2, 64) == 1
    assert start_connections(FAST_STREAM, 64) == 1
    assert start_connections(FAST_STREAM - 1, 64) == 3
    assert start_connections(START_RATE / 2.5, 64) == 3
    assert start_connections(START_RATE, 64) == 1  # (START_RATE is above FAST_STREAM)
    assert start_connections(20e6, 64) == 60  # a 20 MB/s per-connection CDN
    assert start_connections(1e6, 64) == 64  # never beyond the limit
    assert start_connections(0.0, 8) == 8  # nothing measured (a stall): the limit


@pytest.mark.parametrize(
    ("size", "ranges_ok", "requested", "limit"),
    [
        (GIB, False, None, 1),  # no ranges: one connection, whatever was asked
        (GIB, False, 8, 1),
        (None, True, 8, 1),  # unknown size: one connection
        (GIB, True, None, 64),  # automatic
        (5 * MIB, True, None, 1),
        (GIB, True, 8, 8),  # the user's cap
        (5 * MIB, True, 8, 8),  # even for a small file
    ],
)
def test_the_most_connections_a_file_may_use(
    size: int | None, ranges_ok: bool, requested: int | None, limit: int
) -> None:
    assert max_connections(size, ranges_ok, requested) == limit


@pytest.mark.parametrize(
    ("size", "limit", "piece"),
    [
        (GIB, 1, None),  # one connection takes all
        (None, 8, None),
        (GIB, 64, 4 * MIB),  # 1 GiB / 256 = 4 MiB
        (GIB, 8, 32 * MIB),  # 1 GiB / 32
        (16 * GIB, 8, PIECE_MAX),  # never above the bound
        (20 * MIB, 8, PIECE_MIN),  # never below it
        (GIB + 12345 * 4 * 8, 8, 32 * MIB),  # aligned down
    ],
)
def test_first_piece_size(size: int | None, limit: int, piece: int | None) -> None:
    assert piece_size(size, limit) == piece
    assert piece is None or piece % PIECE_ALIGN == 0


@pytest.mark.parametrize(
    ("rate", "connections", "piece"),
    [
        (0.0, 1, PIECE_MIN),  # a stalled connection: the smallest step
        (5e6, 1, PIECE_MIN),  # 2.5 MB in half a second: below the bound
        (40 * MIB, 1, 20 * MIB),  # half a second at its pace
        (1e9, 1, PIECE_MAX),  # a fast stream: the largest piece
        (1e9, 8, PIECE_SPAN // 8),  # all pieces in flight stay within the span
        (1e9, 256, PIECE_MIN),  # ... but never below the bound
        (40 * MIB + 12345, 1, 20 * MIB),  # aligned down
    ],
)
def test_next_piece_follows_the_connections_pace(rate: float, connections: int, piece: int) -> None:
    assert piece_for(rate, connections) == piece
    assert piece % PIECE_ALIGN == 0


@pytest.mark.parametrize(
    ("remaining", "limit", "worth"),
    [
        (FAST_PATH_MIN, 1, True),
        (FAST_PATH_MIN - 1, 1, False),  # a lone connection with little left stays on httpx2
        (1, 2, True),  # shared among connections: always
    ],
)
def test_when_a_new_fast_path_connection_is_worth_it(
    remaining: int, limit: int, worth: bool
) -> None:
    assert fast_path_worth(remaining, limit) is worth


def test_the_climb_grows_while_it_pays_then_settles_on_the_last_step_that_did() -> None:
    climb = Climb.start(4)
    assert (climb.target, climb.growing) == (4, True)
    climb = climb.step(100.0, 64)  # anything beats nothing measured
    assert (climb.target, climb.settled, climb.best, climb.growing) == (6, 4, 100.0, True)
    climb = climb.step(100.0 * GROWTH_GAIN * 1.01, 64)  # paid: half as many again
    assert (climb.target, climb.settled, climb.growing) == (9, 6, True)
    climb = climb.step(climb.best * GROWTH_GAIN, 64)  # not more than the gain: back, hold
    assert (climb.target, climb.settled, climb.growing) == (6, 6, False)


def test_the_climb_stops_at_the_limit() -> None:
    climb = Climb.start(6).step(100.0, 8)
    assert (climb.target, climb.growing) == (8, True)
    climb = climb.step(1000.0, 8)  # paid, but there is no more room
    assert (climb.target, climb.settled, climb.growing) == (8, 8, False)


def test_a_fixed_count_measures_once_and_holds() -> None:
    climb = Climb.start(8).step(100.0, 8)
    assert (climb.target, climb.growing) == (8, False)


def test_pushback_holds_the_climb_where_it_is() -> None:
    climb = Climb.start(4).step(100.0, 64).hold()
    assert (climb.target, climb.settled, climb.best, climb.growing) == (6, 4, 100.0, False)
