"""Retries within one process ask for the bytes that are missing, not for the file again
(issue 12, item 2): for one connection, for each part of many, and for a probe that streams a
file whose size or range support it does not know yet. The server's request log is the
evidence: the Range of every retry starts where the dropped answer stopped.

The bytes a process wrote are in the partial file; the durable checkpoint only matters for a
later process (tests/test_processes.py).

Reading the log: the first request of a file is a probe (httpx2). When it shows ranged answers
from a plain URL, the bulk moves to the fast path, which asks again from the first missing byte
on its own connection, and the probe is closed after its headers, before a byte of it was
written. So a ``bytes=0-`` after the probe is that hand-off, not a retry; the faults below are
placed on requests whose body is really read.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import nbmodels
from nbmodels.engine import _engine
from tests.conftest import payload
from tests.faultserver import Fault, FaultServer, Request

MIB = 1 << 20
SIZE = 48 * MIB
DROP = 12 * MIB
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


@pytest.fixture(scope="module")
def data() -> bytes:
    return payload(SIZE)


def start(req: Request) -> int:
    m = _RANGE.fullmatch(req.range or "")
    assert m is not None, req.range
    return int(m.group(1))


def bulk(req: Request) -> bool:
    """A ranged request that proves its validator: the fast path and every resume."""
    return req.if_range is not None


def test_one_connection_resumes_where_the_dropped_answer_stopped(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, data: bytes
) -> None:
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.drop(after=DROP), when=bulk)
    path = nbmodels.download(server.url("m.bin"), dir=tmp_path, connections=1).wait(60)
    assert path.read_bytes() == data
    reqs = server.requests_for("m.bin")
    dropped = next(i for i, r in enumerate(reqs) if r.fault is not None)
    assert reqs[dropped].body_bytes_sent == DROP
    retry = reqs[dropped + 1]
    assert retry.range == f"bytes={start(reqs[dropped]) + DROP}-{SIZE - 1}"
    assert retry.if_range == reqs[dropped].if_range
    assert all(start(r) >= DROP for r in reqs[dropped + 1 :])  # nothing is asked twice


def test_each_part_of_many_connections_resumes_where_it_stopped(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, data: bytes
) -> None:
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.drop(after=MIB), times=6, when=bulk)
    path = nbmodels.download(server.url("m.bin"), dir=tmp_path, connections=4).wait(60)
    assert path.read_bytes() == data
    reqs = server.requests_for("m.bin")
    assert len({r.connection_id for r in reqs}) >= 4  # really several connections
    dropped = [(i, r) for i, r in enumerate(reqs) if r.fault is not None]
    assert len(dropped) == 6
    for i, req in dropped:
        stopped = start(req) + req.body_bytes_sent
        later = [start(r) for r in reqs[i + 1 :]]
        assert stopped in later, f"{req.range} stopped at {stopped}; later: {later}"
        # What the dropped answer delivered is never asked for again.
        for r in reqs[i + 1 :]:
            m = _RANGE.fullmatch(r.range or "")
            assert m is not None
            end = int(m.group(2)) + 1 if m.group(2) else SIZE
            assert end <= start(req) or int(m.group(1)) >= stopped, (req.range, r.range)


@pytest.mark.parametrize(
    "answer",
    [Fault.no_range(), Fault.no_range() | Fault.chunked_body()],
    ids=["200-with-length", "200-chunked-no-length"],
)
def test_a_streamed_probe_of_unknown_size_resumes_where_it_stopped(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, data: bytes, answer: Fault
) -> None:
    """The probe asks ``bytes=0-`` without knowing the size; a 200 (no range support shown
    yet) is streamed by the probe itself, and it drops after 12 MiB."""
    server.add_file("m.bin", data)
    server.add_fault("m.bin", answer | Fault.drop(after=DROP))
    path = nbmodels.download(server.url("m.bin"), dir=tmp_path, connections=1).wait(60)
    assert path.read_bytes() == data
    probe, retry, *rest = server.requests_for("m.bin")
    assert probe.range == "bytes=0-" and probe.status == 200
    assert probe.body_bytes_sent == DROP
    known = "" if answer.chunked else str(SIZE - 1)
    assert retry.range == f"bytes={DROP}-{known}"
    assert retry.if_range is not None and retry.status == 206
    assert all(start(r) >= DROP for r in rest)
