"""Several connections per file: correctness under faults, resume of every part, work stealing,
and the bookkeeping invariants (property-tested). Speed is measured in benchmarks/, not here."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nbmodels
from nbmodels.engine import _engine
from nbmodels.transfer import RangeSet, partial_paths
from nbmodels.transfer._parts import MIN_PART, STEAL_AFTER, Part, PartPlan
from tests.conftest import FAST, payload
from tests.faultserver import Fault, FaultServer
from tests.test_download import wait_for

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


def _ranges(server: FaultServer, name: str) -> list[tuple[int, int | None, int]]:
    """(start, end-inclusive or None, body bytes sent) of every GET of ``name``."""
    out = []
    for r in server.requests_for(name):
        m = _RANGE.fullmatch(r.range or "")
        if m:
            out.append(
                (int(m.group(1)), int(m.group(2)) if m.group(2) else None, r.body_bytes_sent)
            )
    return out


def test_parallel_download_is_byte_exact_with_disjoint_ranges(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(12 * MIB + 12345)
    server.add_file("m.bin", data)
    for _ in range(8):
        server.add_fault("m.bin", Fault.trickle(4 * MIB))  # slow enough that workers overlap
    digest = hashlib.sha256(data).hexdigest()
    path = nbmodels.download(server.url("m.bin"), dir=tmp_path, connections=8, sha256=digest).wait(
        60
    )
    assert path.read_bytes() == data
    reqs = server.requests_for("m.bin")
    assert len({r.connection_id for r in reqs}) >= 2  # really several connections
    assert all(r.range is not None for r in reqs)
    # Bytes sent never exceed the file by more than the unread tails of stolen parts.
    assert sum(r.body_bytes_sent for r in reqs) < len(data) + 8 * 2 * MIB


def test_every_part_is_validated_and_faults_are_survived(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(10 * MIB)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.trickle(3 * MIB))
    server.add_fault("m.bin", Fault.drop(after=300_000))
    server.add_fault("m.bin", Fault.bad_content_range(start=7))
    server.add_fault("m.bin", Fault.error(503, retry_after=0))
    server.add_fault("m.bin", Fault.drop(after=10, rst=True))
    path = nbmodels.download(server.url("m.bin"), dir=tmp_path, connections=6).wait(60)
    assert path.read_bytes() == data
    statuses = [r.status for r in server.requests_for("m.bin")]
    assert 503 in statuses


def test_a_server_without_range_support_gets_one_connection(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(4 * MIB)
    server.add_file("m.bin", data, accept_ranges=False)
    server.add_fault("m.bin", Fault.no_range(), times=-1)
    path = nbmodels.download(server.url("m.bin"), dir=tmp_path, connections=8).wait(60)
    assert path.read_bytes() == data
    assert len(server.requests_for("m.bin")) == 1


def test_a_part_whose_validator_changes_restarts_the_whole_file(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    old, new = payload(6 * MIB, seed=1), payload(6 * MIB, seed=2)
    server.add_file("m.bin", old)
    server.add_fault("m.bin", Fault.trickle(2 * MIB))
    server.add_fault("m.bin", Fault.update(new))  # the second connection sees a new file
    path = nbmodels.download(server.url("m.bin"), dir=tmp_path, connections=4).wait(60)
    assert path.read_bytes() == new  # never a mix of the two


def test_slow_connection_work_is_stolen(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(8 * MIB)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault())  # the probe: normal
    server.add_fault("m.bin", Fault.trickle(300_000))  # the next connection is very slow
    path = nbmodels.download(server.url("m.bin"), dir=tmp_path, connections=4).wait(60)
    assert path.read_bytes() == data
    probe, *parts = _ranges(server, "m.bin")
    assert probe[0] == 0 and probe[1] is None  # the probe asks for everything
    slow = [(s, e) for s, e, sent in parts if e is not None and sent < e - s + 1]
    assert slow, "the slow connection was never relieved"
    s, e = slow[0]
    assert any(s < start <= e for start, _e, _sent in parts)  # its range's tail was stolen


def test_pause_while_connections_wait_on_a_stalled_server_is_prompt(
    server: FaultServer, tmp_path: Path
) -> None:
    """The fast path's receiving threads block in the kernel; a pause shuts their sockets down
    instead of waiting for the idle timeout (60 s here), and the resume is byte-exact."""
    data = payload(24 * MIB)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.stall(60, at=MIB), times=-1)  # every request stalls
    eng = _engine.Engine(
        dataclasses.replace(FAST, read_timeout=60.0), home=Path(os.environ["NBMODELS_HOME"])
    )
    previous = _engine.set_engine(eng)
    try:
        job = nbmodels.download(server.url("m.bin"), dir=tmp_path, connections=4)
        wait_for(lambda: job.progress.downloaded_bytes >= 2 * MIB, what="bytes on the fast path")
        time.sleep(0.2)  # the connections are now blocked in their reads
        assert job.pause()
        wait_for(lambda: job.status == "paused", timeout=20, what="paused before the timeout")
        server.clear_faults("m.bin")
        assert job.resume()
        assert job.wait(60).read_bytes() == data
    finally:
        eng.close()
        _engine.set_engine(previous)


CHILD = textwrap.dedent(
    """
    import sys, nbmodels
    job = nbmodels.download(sys.argv[1], dir=sys.argv[2], connections=4)
    print(job.wait(120), flush=True)
    """
)


def test_killed_parallel_download_resumes_every_part(server: FaultServer, tmp_path: Path) -> None:
    data = payload(8 * MIB)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.trickle(256 * 1024), times=-1)
    out = tmp_path / "out"
    env = {
        **os.environ,
        "NBMODELS_HOME": str(tmp_path / "home"),
        "NBMODELS_CHECKPOINT_INTERVAL": "0.2",
    }
    cmd = [sys.executable, "-c", CHILD, server.url("m.bin"), str(out)]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _part, state_path = partial_paths(out / "m.bin")
    deadline = time.monotonic() + 60
    done: list[list[int]] = []
    while time.monotonic() < deadline:
        try:
            done = json.loads(state_path.read_text())["done"]
        except (OSError, ValueError, KeyError):
            done = []
        if len(done) >= 2 and sum(e - s for s, e in done) > MIB:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert len(done) >= 2, "several parts were durable at the kill"
    durable = RangeSet((s, e) for s, e in done)
    server.clear_log()
    second = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert (out / "m.bin").read_bytes() == data
    for start, end, _sent in _ranges(server, "m.bin"):
        last = len(data) - 1 if end is None else end
        assert not durable.contains(start, last + 1), "a durable range was fetched again"
    assert sum(r.body_bytes_sent for r in server.log) <= len(data) - durable.covered + 8 * MIB


# -- the bookkeeping, property-tested ---------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(1, 40 * MIB),
    seed=st.integers(0, 2**32 - 1),
    done_cuts=st.lists(st.integers(0, 40 * MIB), max_size=6),
)
def test_parts_cover_every_byte_exactly_once(size: int, seed: int, done_cuts: list[int]) -> None:
    """Any sequence of progress, reservations, steals (of the front part or the largest),
    failures and checkpoints writes each byte once, and no steal takes reserved bytes."""
    rnd = random.Random(seed)
    done = RangeSet()
    cuts = sorted(c % size for c in done_cuts)
    for a, b in zip(cuts[::2], cuts[1::2], strict=False):
        done.add(a, b)
    already = RangeSet(done)
    plan = PartPlan(done, size)
    writes = [0] * 0  # unused placeholder for readability of the model below
    written = RangeSet()
    overlap = 0
    if not done.gaps(size):
        return
    workers: list[Part] = [plan.first_part()]
    for _step in range(2000):
        if not workers:
            part = plan.next_part()
            if part is None:
                break
            workers.append(part)
        action = rnd.random()
        w = rnd.choice(workers)
        if action < 0.6:  # progress: reserve some bytes at pos (a receive), then write them
            assert w.end is not None
            w.claim = w.pos + min(w.end - w.pos, rnd.randint(1, 3 * MIB))
            stealer = plan.next_part(rnd.choice([None, MIN_PART, 1 * MIB, 4 * MIB]))
            if stealer is not None:
                workers.append(stealer)
            assert w.end >= w.claim, "a steal took reserved bytes"
            n = w.claim - w.pos
            if written.contains(w.pos, w.pos + n) or already.contains(w.pos, w.pos + n):
                overlap += n
            before = written.covered
            written.add(w.pos, w.pos + n)
            overlap += n - (written.covered - before)
            w.pos += n
            if w.pos >= w.end:
                w.active = False
                workers.remove(w)
        elif action < 0.75:  # a new connection joins (maybe stealing)
            part = plan.next_part(rnd.choice([None, MIN_PART, 2 * MIB]))
            if part is not None:
                workers.append(part)
        elif action < 0.85:  # a connection fails and leaves; its rest returns to the pool
            w.active = False
            workers.remove(w)
        else:  # checkpoint
            plan.commit(plan.marks())
        for p in plan.active():  # invariant: active parts never overlap claimed bytes of others
            assert p.end is None or p.pos <= p.end
    plan.commit(plan.marks())
    assert overlap == 0
    if not workers and plan.next_part() is None:
        assert plan.done.gaps(size) == []
        assert written.covered + already.covered - _intersection(written, already) == size
    del writes


def _intersection(a: RangeSet, b: RangeSet) -> int:
    total = 0
    for s1, e1 in a:
        for s2, e2 in b:
            total += max(0, min(e1, e2) - max(s1, s2))
    return total


def test_a_lagging_front_part_is_cut_to_one_piece_before_new_ground_is_taken() -> None:
    """The part holding back the contiguous prefix (what the hasher can digest) keeps one
    piece when it has more than two left, and the rest is handed out in file order; otherwise
    free connections take the next piece."""
    plan = PartPlan(RangeSet(), 100 * MIB)
    front = plan.first_part()
    front.end = 20 * MIB  # a big first piece, slow
    front.pos = 2 * MIB
    ahead = plan.next_part(4 * MIB)
    assert front.end == 6 * MIB  # one piece from where it is
    assert ahead is not None and (ahead.start, ahead.end) == (6 * MIB, 10 * MIB)
    nxt = plan.next_part(8 * MIB)  # front has 4 MiB left: not more than two pieces
    assert nxt is not None and (nxt.start, nxt.end) == (10 * MIB, 18 * MIB)
    front.claim = front.end - MIN_PART  # reserved by its receiving thread
    assert front.remaining == MIN_PART


def test_many_connections_joining_the_probe_take_consecutive_pieces() -> None:
    """When the first rate calls for many connections at once, they take the pieces after
    the probe's first one in file order, so the contiguous prefix grows from the start."""
    plan = PartPlan(RangeSet(), 2048 * MIB)
    probe = plan.first_part()
    probe.pos = probe.claim = 3 * MIB + 12345  # mid-receive
    joined = [plan.next_part(4 * MIB) for _ in range(60)]
    assert probe.end == 7 * MIB
    starts = [p.start for p in joined if p is not None]
    assert starts == [7 * MIB + 4 * MIB * i for i in range(60)]
    assert all(p is not None and p.end - p.start == 4 * MIB for p in joined)


def test_tail_steals_only_parts_that_still_need_long() -> None:
    """At the tail a part is cut only when its own pace says it still needs STEAL_AFTER or more
    (a cut closes its connection, losing what is in flight); the slowest goes first."""
    plan = PartPlan(RangeSet(), 8 * MIB)
    fast = plan.first_part()
    fast.end = 4 * MIB
    slow = plan.next_part()  # the rest of the file
    assert slow is not None and (slow.start, slow.end) == (4 * MIB, 8 * MIB)
    now = time.monotonic()
    fast.born = slow.born = now - 1.0
    fast.pos = 3 * MIB  # 3 MiB in 1 s, 1 MiB left: about 0.33 s
    slow.pos = 4 * MIB + MIB // 2  # 0.5 MiB in 1 s, 3.5 MiB left: about 7 s
    assert fast.eta(now) == pytest.approx(1 / 3, rel=0.05)
    assert slow.eta(now) == pytest.approx(7, rel=0.05)
    stolen = plan.next_part()
    assert stolen is not None and slow.end == stolen.start  # the slow part was cut

    nearly = PartPlan(RangeSet(), 64 * MIB)
    last = nearly.first_part()
    last.born = time.monotonic() - 1.0
    last.pos = 60 * MIB  # 60 MiB/s, 4 MiB left: about 0.07 s
    assert last.remaining >= 2 * MIN_PART and last.eta(time.monotonic()) < STEAL_AFTER
    assert nearly.next_part() is None  # left alone: it is done before a new one would start


def test_steal_leaves_both_halves_at_least_min_part() -> None:
    plan = PartPlan(RangeSet(), 10 * MIB)
    first = plan.first_part()
    first.pos = 1 * MIB
    stolen = plan.next_part()
    assert stolen is not None and first.end == stolen.start
    assert first.end - first.pos >= MIN_PART and stolen.end is not None
    assert stolen.end - stolen.start >= MIN_PART
    tiny = PartPlan(RangeSet([(0, 10 * MIB - MIN_PART)]), 10 * MIB)
    last = tiny.first_part()
    assert tiny.next_part() is None and last.remaining == MIN_PART  # too small to split


@pytest.mark.parametrize("connections", [1, 3])
def test_verified_parallel_download_detects_corruption(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, connections: int
) -> None:
    data = payload(5 * MIB)
    server.add_file("m.bin", data)
    wrong = hashlib.sha256(data + b"x").hexdigest()
    job = nbmodels.download(
        server.url("m.bin"), dir=tmp_path, connections=connections, sha256=wrong
    )
    with pytest.raises(nbmodels.IntegrityError):
        job.wait(60)
    assert not (tmp_path / "m.bin").exists()
