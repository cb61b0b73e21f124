"""Pure logic: formatting, the speed meter, range bookkeeping, options, redaction, errors."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nbmodels
from nbmodels import errors
from nbmodels._options import Options
from nbmodels._paths import UnsafePathError, contained, safe_filename
from nbmodels._progress import Progress, SpeedMeter, format_bytes, format_duration, format_progress
from nbmodels._redact import redact_text, redact_url
from nbmodels.net import Credential, backoff_delay, origin_of, parse_retry_after
from nbmodels.transfer import RangeSet


def test_public_surface_is_pinned() -> None:
    assert nbmodels.__all__ == sorted(nbmodels.__all__)
    for name in ("download", "resolve", "jobs", "history", "Job", "Progress", "NbmodelsError"):
        assert name in nbmodels.__all__
    assert errors.__all__ == sorted(errors.__all__)


def test_error_tree() -> None:
    for cls in (
        errors.RefError, errors.NotFoundError, errors.AccessError, errors.IntegrityError,
        errors.InsufficientSpaceError, errors.NetworkError, errors.OfflineError,
        errors.CanceledError,
    ):  # fmt: skip
        assert issubclass(cls, errors.NbmodelsError)
    assert issubclass(errors.RefError, ValueError)
    assert issubclass(errors.InsufficientSpaceError, OSError)
    e = errors.InsufficientSpaceError("need more", needed=10, available=3, path="/x")
    assert str(e) == "need more" and e.needed == 10
    nf = errors.NotFoundError("no quant", candidates=["Q4_K_M", "Q8_0"], hint="Pick one.")
    assert nf.candidates == ("Q4_K_M", "Q8_0") and str(nf) == "no quant Pick one."


@pytest.mark.parametrize(
    ("n", "text"),
    [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (1_234_567, "1.2 MB"), (4.5e9, "4.5 GB"),
     (999_960, "1.0 MB"), (2.5e12, "2.5 TB")],
)  # fmt: skip
def test_format_bytes(n: float, text: str) -> None:
    assert format_bytes(n) == text


def test_format_progress_matches_the_design() -> None:
    p = Progress(1_200_000_000, 4_500_000_000, 35_200_000, 102)
    assert format_progress(p) == "1.2 GB / 4.5 GB · 26% · 35.2 MB/s · ETA 1:42"
    assert format_progress(Progress(10, None, 0.0)) == "10 B · 0 B/s"
    assert format_progress(Progress(5, 10, 0.0, None, stalled=True)) == "5 B / 10 B · 50% · stalled"
    assert format_progress(Progress(10, 10), status="completed") == "10 B / 10 B · 100%"
    assert format_duration(3723) == "1:02:03" and format_duration(7) == "0:07"
    assert Progress(0, 0).fraction == 1.0 and Progress(3, None).fraction is None


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_speed_meter_averages_decays_and_stalls() -> None:
    clock = FakeClock()
    meter = SpeedMeter(window=5.0, resolution=0.2, stall_after=3.0, clock=clock)
    meter.reset(0)
    total = 0
    for _ in range(50):  # 10 MB/s for 5 s
        clock.t += 0.1
        total += 1_000_000
        meter.add(total)
    assert meter.rate() == pytest.approx(10_000_000, rel=0.1)
    snap = meter.snapshot(total, 100_000_000)
    assert snap.eta_seconds == pytest.approx(5.0, rel=0.15) and not snap.stalled
    clock.t += 3.5  # nothing arrives
    snap = meter.snapshot(total, 100_000_000)
    assert snap.stalled and snap.bytes_per_second == 0 and snap.eta_seconds is None
    clock.t += 10
    meter.add(total)
    assert meter.rate() == 0.0


def test_a_rebased_meter_keeps_its_speed_and_does_not_count_the_jump() -> None:
    """A job's meter when one of its files starts with resumed bytes (or rolls back): the
    other files' speed goes on being shown; a reset would show 0 B/s for a while."""
    clock = FakeClock()
    meter = SpeedMeter(window=5.0, resolution=0.2, stall_after=3.0, clock=clock)
    meter.reset(0)
    total = 0
    for _ in range(20):  # 1 MB/s for 2 s
        clock.t += 0.1
        total += 100_000
        meter.add(total)
    meter.rebase(total + 50_000_000)  # a part resumes with 50 MB already on disk
    assert meter.rate() == pytest.approx(1_000_000, rel=0.1)
    meter.rebase(total - 500_000)  # a part restarts from zero
    assert meter.rate() == pytest.approx(1_000_000, rel=0.1)
    fresh = SpeedMeter(window=5.0, resolution=0.2, stall_after=3.0, clock=clock)
    fresh.reset(total)
    assert fresh.rate() == 0.0  # what reset shows instead


@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 200)), max_size=60))
def test_rangeset_matches_a_naive_model(ops: list[tuple[int, int]]) -> None:
    rs = RangeSet()
    bits = [False] * 1300
    for start, length in ops:
        rs.add(start, start + length)
        for i in range(start, start + length):
            bits[i] = True
    assert rs.covered == sum(bits)
    ranges = list(rs)
    assert all(s < e for s, e in ranges)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges))  # disjoint, merged
    for s, e in ranges:
        assert all(bits[s:e])
    gaps = rs.gaps(1300)
    assert sum(e - s for s, e in gaps) == 1300 - sum(bits)
    assert rs.prefix() == next((i for i, b in enumerate(bits) if not b), 1300)


@settings(max_examples=50)
@given(st.integers(1, 5000), st.integers(1, 64), st.randoms(use_true_random=False))
def test_rangeset_parts_in_any_order_cover_every_byte_once(
    size: int, parts: int, rnd: random.Random
) -> None:
    cuts = sorted({0, size, *(rnd.randrange(size) for _ in range(parts))})
    pieces = list(itertools.pairwise(cuts))
    rnd.shuffle(pieces)
    rs = RangeSet()
    for s, e in pieces:
        assert rs.gaps(size)  # not complete before the last piece
        rs.add(s, e)
    assert list(rs) == [(0, size)] and rs.gaps(size) == []
    rs.truncate(size // 2)
    assert rs.covered == size // 2


def test_options_validation_and_records_without_secrets(tmp_path: Path) -> None:
    o = Options.create(
        dir=str(tmp_path), sha256="SHA256:" + "AB" * 32, include="*.json, *.txt", token="hf_secret"
    )
    assert o.sha256 == "ab" * 32 and o.include == ("*.json", "*.txt") and o.dir == tmp_path
    assert "hf_secret" not in repr(o) and "hf_secret" not in str(o.record())
    assert Options.from_record(o.record()).include == o.include
    with pytest.raises(ValueError, match="64 hexadecimal"):
        Options.create(sha256="abc")
    with pytest.raises(ValueError, match="between 1 and"):
        Options.create(connections=0)
    with pytest.raises(TypeError, match="unknown option"):
        Options.create(directory="x")
    assert Options.create(token=False).record() == {"token": False}


def test_redaction() -> None:
    assert redact_url("https://u:p@cdn.example:8443/a/b.gguf?X-Amz-Signature=s3cr3t#f") == (
        "https://cdn.example:8443/a/b.gguf?…"
    )
    assert "s3cr3t" not in redact_url("http://h/x?sig=s3cr3t")
    assert redact_text("Authorization: Bearer abc.def-123 and hf_AbCdEfGh12345") == (
        "Authorization: <redacted> and <redacted>"
    )


def test_credentials_stay_on_their_origin() -> None:
    cred = Credential("hf_tok", origin_of("https://hub.example"))
    assert cred.headers_for("https://hub.example/x") == {"Authorization": "Bearer hf_tok"}
    assert cred.headers_for("https://hub.example:443/x")
    for other in ("http://hub.example/x", "https://hub.example:8443/x", "https://cdn.example/x",
                  "https://HUB.example.evil/x", "ftp://hub.example/x"):  # fmt: skip
        assert cred.headers_for(other) == {}
    assert "hf_tok" not in repr(cred)


def test_retry_after_parsing_and_backoff() -> None:
    from nbmodels._config import Settings

    assert parse_retry_after("5", cap=60) == 5
    assert parse_retry_after("999", cap=60) == 60
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", cap=60, now=1445412470) == 10
    assert parse_retry_after("garbage", cap=60) is None
    s = Settings(backoff_base=1.0, backoff_cap=8.0)
    for attempt in range(1, 10):
        d = backoff_delay(attempt, s)
        assert 0 < d <= 8.0
    assert backoff_delay(3, s, retry_after=2.5) == 2.5


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "a\x00b", "a\nb", " a", "x" * 300])
def test_unsafe_file_names_are_rejected(name: str) -> None:
    with pytest.raises(UnsafePathError):
        safe_filename(name)


def test_containment_is_checked_on_resolved_paths(tmp_path: Path) -> None:
    base = tmp_path / "base"
    (base / "sub").mkdir(parents=True)
    (base / "link").symlink_to(tmp_path)
    assert contained(base, "sub/f.bin") == (base / "sub" / "f.bin").resolve()
    with pytest.raises(UnsafePathError):
        contained(base, "link/f.bin")
    with pytest.raises(UnsafePathError):
        contained(base, "../f.bin")
