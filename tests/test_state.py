"""The partial-download state file under damage (docs/storage.md, docs/download-contract.md
rule 2; issue 6).

``PartialState.load`` reads a file that a crash, a full disk, another program or a person may
have truncated or garbled. Whatever it holds, loading must not raise, and a loaded state must
never claim a byte the data file does not hold (nor one past the object's size). Property-based
(hypothesis, derandomized so every run checks the same cases), plus a stateful model of a partial
download being written, saved, truncated and corrupted, plus end-to-end downloads that find a
damaged state file beside their partial data.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import nbmodels
from nbmodels.engine import _engine
from nbmodels.transfer import PartialState, RangeSet, partial_paths
from nbmodels.transfer._state import STATE_VERSION
from tests.conftest import payload
from tests.faultserver import FaultServer

DETERMINISTIC = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=300,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
KEY = "url:http://127.0.0.1/files/m.bin"


def check_loaded(loaded: PartialState | None, data_path: Path) -> None:
    """The invariants of whatever ``load`` returns."""
    if loaded is None:
        return
    on_disk = data_path.lstat().st_size if data_path.exists() else 0
    assert isinstance(loaded.key, str)
    assert loaded.size is None or (isinstance(loaded.size, int) and loaded.size >= 0)
    assert loaded.validator is None or isinstance(loaded.validator, str)
    limit = on_disk if loaded.size is None else min(on_disk, loaded.size)
    for start, end in loaded.done:
        assert isinstance(start, int) and isinstance(end, int)
        assert 0 <= start < end <= limit, f"claims [{start}, {end}) of {on_disk} bytes on disk"
    assert loaded.done.covered <= on_disk


def load_text(tmp_path: Path, text: str | bytes, on_disk: int) -> PartialState | None:
    state, data = tmp_path / "s.json", tmp_path / "d.part"
    state.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    data.write_bytes(b"\0" * on_disk)
    loaded = PartialState.load(state, data)  # must not raise
    check_loaded(loaded, data)
    return loaded


# -- any JSON document ------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)
range_items = st.lists(
    st.one_of(
        st.tuples(st.integers(-5, 2**40), st.integers(-5, 2**40)).map(list),
        st.lists(scalars, max_size=3),
        scalars,
    ),
    max_size=6,
)
near_valid = st.fixed_dictionaries(
    {
        "version": st.sampled_from([STATE_VERSION, STATE_VERSION, True, 2, "1", None]),
        "key": st.sampled_from([KEY, KEY, "", 7, None]),
    },
    optional={
        "size": st.one_of(
            st.none(), st.integers(-3, 2**40), st.booleans(), st.floats(), st.text(max_size=3)
        ),
        "validator": st.one_of(
            st.none(), st.text(max_size=10), st.integers(), st.lists(st.text(max_size=3))
        ),
        "done": st.one_of(range_items, json_values),
        "updated_at": json_values,
    },
)


@DETERMINISTIC
@given(doc=st.one_of(json_values, near_valid), on_disk=st.integers(0, 5000))
@example(doc=[], on_disk=0)
@example(doc=None, on_disk=10)
@example(doc=42, on_disk=10)
@example(doc={"version": 1, "key": KEY, "done": [[0, float("inf")]]}, on_disk=100)
@example(doc={"version": 1, "key": KEY, "done": [[0, float("nan")]]}, on_disk=100)
@example(doc={"version": 1, "key": KEY, "size": 10, "done": [[0, 10**12]]}, on_disk=100)
@example(doc={"version": 1, "key": KEY, "done": [[5, 3]]}, on_disk=100)
@example(doc={"version": 1, "key": KEY, "done": [[-4, 3]]}, on_disk=100)
def test_any_json_document_loads_safely(tmp_path: Path, doc: Any, on_disk: int) -> None:
    load_text(tmp_path, json.dumps(doc), on_disk)


# -- damaged bytes of a real state file ---------------------------------------------------------


def _saved(tmp_path: Path, ranges: list[tuple[int, int]], size: int | None) -> bytes:
    state = PartialState(key=KEY, size=size, validator='"etag-1"', done=RangeSet(ranges))
    path = tmp_path / "orig.json"
    state.save(path)
    return path.read_bytes()


ranges_strategy = st.lists(
    st.tuples(st.integers(0, 4000), st.integers(1, 1000)).map(lambda t: (t[0], t[0] + t[1])),
    max_size=5,
)


@DETERMINISTIC
@given(
    ranges=ranges_strategy,
    size=st.one_of(st.none(), st.integers(0, 6000)),
    on_disk=st.integers(0, 6000),
    damage=st.sampled_from(["truncate", "flip", "insert", "delete", "replace"]),
    where=st.integers(0, 10_000),
    byte=st.integers(0, 255),
)
def test_truncated_or_garbled_state_files_load_safely(
    tmp_path: Path,
    ranges: list[tuple[int, int]],
    size: int | None,
    on_disk: int,
    damage: str,
    where: int,
    byte: int,
) -> None:
    raw = bytearray(_saved(tmp_path, ranges, size))
    i = where % (len(raw) + 1)
    if damage == "truncate":
        del raw[i:]
    elif damage == "flip" and i < len(raw):
        raw[i] ^= byte or 1
    elif damage == "insert":
        raw[i:i] = bytes([byte])
    elif damage == "delete" and i < len(raw):
        del raw[i]
    elif damage == "replace" and i < len(raw):
        raw[i] = byte
    load_text(tmp_path, bytes(raw), on_disk)


@DETERMINISTIC
@given(
    ranges=ranges_strategy,
    extra=st.integers(0, 100),
    validator=st.one_of(st.none(), st.text(max_size=20)),
)
def test_save_then_load_round_trips_when_the_data_is_there(
    tmp_path: Path, ranges: list[tuple[int, int]], extra: int, validator: str | None
) -> None:
    done = RangeSet(ranges)
    end = max((e for _s, e in done), default=0)
    size = end + extra
    state = PartialState(key=KEY, size=size, validator=validator, done=done)
    path, data = tmp_path / "s.json", tmp_path / "d.part"
    data.write_bytes(b"\1" * size)
    state.save(path)
    loaded = PartialState.load(path, data)
    assert loaded is not None
    assert (loaded.key, loaded.size, loaded.validator) == (KEY, size, validator)
    assert loaded.done == done


# -- a stateful model of one partial download ---------------------------------------------------


class PartialDownload(RuleBasedStateMachine):
    """Writes land in the data file, checkpoints save the state, and the world truncates or
    garbles either file. ``load`` must stay safe and, while the state file is as saved, claim
    nothing beyond what was saved."""

    SIZE = 1 << 16

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self._dir = tempfile.TemporaryDirectory()
        base = Path(self._dir.name)
        self.state_path, self.data_path = base / "s.json", base / "d.part"
        self.written = RangeSet()  # bytes written to the data file since it was last cut
        self.saved: RangeSet | None = None  # what the state file says, while it is intact
        self.fd = os.open(self.data_path, os.O_RDWR | os.O_CREAT, 0o644)

    def teardown(self) -> None:
        os.close(self.fd)
        self._dir.cleanup()

    @rule(start=st.integers(0, SIZE - 1), length=st.integers(1, 8192))
    def write(self, start: int, length: int) -> None:
        length = min(length, self.SIZE - start)
        os.pwrite(self.fd, b"\2" * length, start)
        self.written.add(start, start + length)

    @rule()
    def checkpoint(self) -> None:
        """What FileTransfer does: sync the data, then record exactly what was written."""
        os.fsync(self.fd)
        PartialState(key=KEY, size=self.SIZE, validator='"v"', done=RangeSet(self.written)).save(
            self.state_path
        )
        self.saved = RangeSet(self.written)

    @rule(n=st.integers(0, SIZE))
    def truncate_data(self, n: int) -> None:
        os.ftruncate(self.fd, n)
        self.written.truncate(n)

    @precondition(lambda self: self.state_path.exists())
    @rule(n=st.integers(0, 400))
    def truncate_state(self, n: int) -> None:
        raw = self.state_path.read_bytes()
        self.state_path.write_bytes(raw[: n % (len(raw) + 1)])
        self.saved = None

    @precondition(lambda self: self.state_path.exists())
    @rule(i=st.integers(0, 400), byte=st.integers(0, 255))
    def garble_state(self, i: int, byte: int) -> None:
        raw = bytearray(self.state_path.read_bytes())
        if raw:
            raw[i % len(raw)] = byte
        self.state_path.write_bytes(bytes(raw))
        self.saved = None

    @rule()
    def lose_data_file(self) -> None:
        os.ftruncate(self.fd, 0)
        self.written.clear()

    @invariant()
    def loading_is_safe(self) -> None:
        loaded = PartialState.load(self.state_path, self.data_path)
        check_loaded(loaded, self.data_path)
        if loaded is not None and self.saved is not None:
            for start, end in loaded.done:
                assert self.saved.contains(start, end), "claims bytes that were never saved"


PartialDownload.TestCase.settings = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=60,
    stateful_step_count=30,
)
TestPartialDownload = PartialDownload.TestCase


# -- end to end: a download that finds a damaged state file -------------------------------------


SIZE = 1_000_003
DAMAGED_STATES = {
    "empty": "",
    "truncated": '{"version": 1, "key": ',
    "a-list": "[]",
    "null": "null",
    "a-number": "42",
    "infinite-range": (
        '{"version": 1, "key": "{key}", "validator": "{etag}", "done": [[0, Infinity]]}'
    ),
    "claims-beyond-the-data": (
        '{"version": 1, "key": "{key}", "size": 1000003, "validator": "{etag}",'
        ' "done": [[0, 1000000000000]]}'
    ),
    "reversed-range": '{"version": 1, "key": "{key}", "validator": "{etag}", "done": [[500, 10]]}',
    "validator-not-a-string": '{"version": 1, "key": "{key}", "validator": 5, "done": [[0, 10]]}',
    "binary": "\x00\x01\x02\xff",
}


@pytest.mark.parametrize("text", list(DAMAGED_STATES.values()), ids=list(DAMAGED_STATES))
def test_a_damaged_state_file_never_breaks_or_corrupts_a_download(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, text: str
) -> None:
    data = payload(SIZE)
    server.add_file("m.bin", data)
    out = tmp_path / "out"
    out.mkdir()
    part, state = partial_paths(out / "m.bin")
    part.write_bytes(data[:100_000])  # true bytes of the file, as a killed run leaves them
    etag = json.dumps(server.file_etag("m.bin"))[1:-1]
    key = f"url:{server.url('m.bin')}"
    state.write_text(text.replace("{key}", key).replace("{etag}", etag), encoding="latin-1")
    path = nbmodels.download(server.url("m.bin"), dir=out).wait(60)
    assert path.read_bytes() == data
    assert len(server.requests_for("m.bin")) <= 2
    assert not part.exists() and not state.exists()
