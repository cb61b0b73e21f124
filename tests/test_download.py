"""Plain-URL downloads end to end against a real misbehaving HTTP server
(docs/download-contract.md)."""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from pathlib import Path

import pytest

import nbmodels
from nbmodels._progress import JobSnapshot
from nbmodels.engine import _engine
from nbmodels.transfer import partial_paths
from tests.conftest import payload
from tests.faultserver import Fault, FaultServer, http_date

SIZE = 3 * 1024 * 1024 + 17


def _download(server: FaultServer, name: str, tmp_path: Path, **opts: object) -> nbmodels.Job:
    return nbmodels.download(server.url(name), dir=tmp_path / "out", **opts)


def _leftovers(directory: Path) -> list[str]:
    """Files in ``directory`` other than final files: partial data, state, temp files."""
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") and p.is_file())


class Recorder:
    """Collects every snapshot a job publishes (thread-safe)."""

    def __init__(self) -> None:
        self.snaps: list[JobSnapshot] = []
        self._lock = threading.Lock()

    def __call__(self, snap: JobSnapshot) -> None:
        with self._lock:
            self.snaps.append(snap)

    def statuses(self) -> list[str]:
        out: list[str] = []
        for s in self.snaps:
            if not out or out[-1] != s.status:
                out.append(s.status)
        return out


def wait_for(predicate: object, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_downloads_a_file_byte_exact_and_publishes_atomically(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(SIZE)
    server.add_file("model.bin", data)
    job = _download(server, "model.bin", tmp_path)
    path = job.wait(30)
    assert path == (tmp_path / "out" / "model.bin").resolve()
    assert path.read_bytes() == data
    assert job.status == "completed" and job.done and job.error is None
    assert job.progress.downloaded_bytes == job.progress.total_bytes == SIZE
    assert job.paths == [path]
    assert _leftovers(path.parent) == []
    req = server.requests_for("model.bin")[0]
    assert req.headers.get("Accept-Encoding") == "identity"


def test_resumes_after_dropped_connection_with_range_and_if_range(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(SIZE)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.drop(after=1_000_000))
    server.add_fault("m.bin", Fault.drop(after=500_000, rst=True))
    path = _download(server, "m.bin", tmp_path).wait(30)
    assert path.read_bytes() == data
    reqs = server.requests_for("m.bin")
    assert len(reqs) == 3
    assert reqs[0].if_range is None  # nothing to prove yet
    assert reqs[1].range == f"bytes=1000000-{SIZE - 1}"
    assert reqs[2].range == f"bytes=1500000-{SIZE - 1}"
    assert reqs[1].if_range and reqs[1].if_range == reqs[2].if_range


def test_server_that_ignores_range_restarts_from_zero_never_appends(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(SIZE)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.drop(after=2_000_000))
    server.add_fault("m.bin", Fault.no_range())
    rec = Recorder()
    job = _download(server, "m.bin", tmp_path)
    job.subscribe(rec)
    path = job.wait(30)
    assert path.read_bytes() == data
    reqs = server.requests_for("m.bin")
    assert reqs[1].range == f"bytes=2000000-{SIZE - 1}" and reqs[1].status == 200
    # Progress rolled back visibly when the restart began.
    seen = [s.progress.downloaded_bytes for s in rec.snaps]
    assert any(b < a for a, b in itertools.pairwise(seen)) or max(seen) == SIZE


def test_changed_remote_file_is_never_spliced(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    old, new = payload(SIZE, seed=1), payload(SIZE, seed=2)
    server.add_file("m.bin", old)
    server.add_fault("m.bin", Fault.drop(after=1_000_000))
    server.add_fault("m.bin", Fault.update(new))  # upstream changes before the resume
    path = _download(server, "m.bin", tmp_path).wait(30)
    assert path.read_bytes() == new
    reqs = server.requests_for("m.bin")
    assert reqs[1].if_range is not None and reqs[1].status == 200


def test_206_with_wrong_content_range_is_rejected_and_retried(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(SIZE)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.drop(after=100_000))
    server.add_fault("m.bin", Fault.bad_content_range(start=5))
    path = _download(server, "m.bin", tmp_path).wait(30)
    assert path.read_bytes() == data
    assert len(server.requests_for("m.bin")) == 3


def test_sha256_mismatch_publishes_nothing(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("m.bin", payload(SIZE))
    job = _download(server, "m.bin", tmp_path, sha256="sha256:" + "0" * 64)
    with pytest.raises(nbmodels.IntegrityError) as info:
        job.wait(30)
    assert "0" * 64 in str(info.value) and info.value.expected == "0" * 64
    assert job.status == "failed" and isinstance(job.error, nbmodels.IntegrityError)
    out = tmp_path / "out"
    assert not (out / "m.bin").exists()
    assert _leftovers(out) == []  # corrupt bytes are not kept for a resume


def test_correct_sha256_verifies(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(SIZE)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.drop(after=700_000))
    digest = hashlib.sha256(data).hexdigest()
    assert _download(server, "m.bin", tmp_path, sha256=digest).wait(30).read_bytes() == data


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
def test_retries_transient_statuses_honouring_retry_after_seconds(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, status: int
) -> None:
    data = payload(100_000)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.error(status, retry_after=1))
    path = _download(server, "m.bin", tmp_path).wait(30)
    assert path.read_bytes() == data
    first, second = server.requests_for("m.bin")
    assert first.status == status
    assert second.time - first.time >= 0.9  # waited as asked, not the 0.05 s backoff


def test_retry_after_as_http_date(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("m.bin", b"x" * 1000)
    server.add_fault("m.bin", Fault.error(503, retry_after=http_date(from_now=2)))
    _download(server, "m.bin", tmp_path).wait(30)
    first, second = server.requests_for("m.bin")
    assert second.time - first.time >= 0.9


def test_gives_up_after_bounded_attempts_with_a_clear_error(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("m.bin", b"x" * 1000)
    server.add_fault("m.bin", Fault.error(503), times=-1)
    job = _download(server, "m.bin", tmp_path)
    with pytest.raises(nbmodels.NetworkError) as info:
        job.wait(30)
    assert "503" in str(info.value) and "attempts" in str(info.value)
    assert len(server.requests_for("m.bin")) == engine.settings.max_attempts


def test_404_is_not_found_and_not_retried(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    job = nbmodels.download(server.url("missing.bin"), dir=tmp_path / "out")
    with pytest.raises(nbmodels.NotFoundError) as info:
        job.wait(30)
    assert "404" in str(info.value)
    assert len(server.requests_for("missing.bin")) == 1
    assert not (tmp_path / "out" / "missing.bin").exists()
    assert _leftovers(tmp_path / "out") == []


def test_stall_after_headers_times_out_and_retries(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(200_000)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.stall(at=50_000, seconds=30, then="continue"))
    path = _download(server, "m.bin", tmp_path).wait(30)
    assert path.read_bytes() == data
    reqs = server.requests_for("m.bin")
    assert len(reqs) == 2 and reqs[1].range == "bytes=50000-199999"


def test_stalled_transfer_reports_zero_speed_and_stalled(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(200_000)
    server.add_file("m.bin", data)
    # Stalls longer than stall_after (0.5 s) but shorter than the read timeout (2 s).
    server.add_fault("m.bin", Fault.stall(at=100_000, seconds=1.5, then="continue"))
    rec = Recorder()
    job = _download(server, "m.bin", tmp_path)
    job.subscribe(rec)
    job.wait(30)
    stalled = [s for s in rec.snaps if s.progress.stalled]
    assert stalled, "no snapshot showed the stall"
    assert all(s.progress.bytes_per_second == 0 for s in stalled)
    assert "stalled" in nbmodels.format_progress(stalled[0].progress, status="downloading")


def test_redirects_are_followed_and_capped(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(10_000)
    server.add_file("m.bin", data)
    server.add_redirect("/a/m.bin", server.url("m.bin"))
    assert (
        nbmodels.download(server.base_url + "/a/m.bin", dir=tmp_path / "o").wait(30).read_bytes()
        == data
    )
    server.add_redirect("/loop1/x.bin", server.base_url + "/loop2/x.bin")
    server.add_redirect("/loop2/x.bin", server.base_url + "/loop1/x.bin")
    job = nbmodels.download(server.base_url + "/loop1/x.bin", dir=tmp_path / "o")
    with pytest.raises(nbmodels.NetworkError, match="Too many redirects"):
        job.wait(30)
    assert (
        len([r for r in server.log if r.path.startswith("/loop")])
        == engine.settings.max_redirects + 1
    )


@pytest.mark.parametrize("location", ["ftp://127.0.0.1/x.bin", "file:///etc/passwd"])
def test_redirect_to_other_schemes_is_refused(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, location: str
) -> None:
    server.add_redirect("/r/x.bin", location)
    job = nbmodels.download(server.base_url + "/r/x.bin", dir=tmp_path / "o")
    with pytest.raises(nbmodels.NetworkError, match="only http and https"):
        job.wait(30)


def test_compressed_body_is_refused(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("m.bin", payload(50_000))
    server.add_fault("m.bin", Fault.gzipped())
    job = _download(server, "m.bin", tmp_path)
    with pytest.raises(nbmodels.NetworkError, match="gzip"):
        job.wait(30)
    assert not (tmp_path / "out" / "m.bin").exists()


def test_body_longer_than_declared_is_cut_at_the_exact_size(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(50_000)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.length_lie(-1000))  # claims fewer bytes than it sends
    path = _download(server, "m.bin", tmp_path).wait(30)
    # It is what the server declared and then some garbage afterwards on the wire; we wrote
    # exactly the declared size and the next request completed the file.
    assert path.read_bytes() == data


def test_pause_keeps_partial_data_and_resume_continues(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(SIZE)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.trickle(400_000))
    job = _download(server, "m.bin", tmp_path)
    wait_for(lambda: job.progress.downloaded_bytes > 100_000, what="some bytes")
    assert job.pause()
    wait_for(lambda: job.status == "paused", what="paused")
    part, state = partial_paths(tmp_path / "out" / "m.bin")
    assert part.exists() and state.exists()
    held = job.progress.downloaded_bytes
    time.sleep(0.3)
    assert job.progress.downloaded_bytes == held
    assert job.resume()
    path = job.wait(30)
    assert path.read_bytes() == data
    last = server.requests_for("m.bin")[-1]
    assert last.range is not None and last.range != "bytes=0-"
    assert job.status == "completed"


def test_cancel_discards_partial_data(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("m.bin", payload(SIZE))
    server.add_fault("m.bin", Fault.trickle(300_000))
    job = _download(server, "m.bin", tmp_path)
    wait_for(lambda: job.progress.downloaded_bytes > 50_000, what="some bytes")
    assert job.cancel()
    with pytest.raises(nbmodels.CanceledError):
        job.wait(30)
    assert job.status == "canceled"
    assert not (tmp_path / "out" / "m.bin").exists()
    assert _leftovers(tmp_path / "out") == []


def test_cancel_while_paused(engine: _engine.Engine, server: FaultServer, tmp_path: Path) -> None:
    server.add_file("m.bin", payload(SIZE))
    server.add_fault("m.bin", Fault.trickle(300_000))
    job = _download(server, "m.bin", tmp_path)
    wait_for(lambda: job.progress.downloaded_bytes > 10_000, what="some bytes")
    job.pause()
    wait_for(lambda: job.status == "paused", what="paused")
    job.cancel()
    with pytest.raises(nbmodels.CanceledError):
        job.wait(30)
    assert _leftovers(tmp_path / "out") == []


def test_resubmitting_a_running_reference_returns_the_same_job(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("m.bin", payload(SIZE))
    server.add_fault("m.bin", Fault.trickle(1_000_000))
    first = _download(server, "m.bin", tmp_path)
    second = _download(server, "m.bin", tmp_path)
    assert second is first
    first.wait(30)
    assert len(server.requests_for("m.bin")) == 1


def test_finished_file_is_already_downloaded_without_a_request(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(SIZE)
    server.add_file("m.bin", data)
    _download(server, "m.bin", tmp_path).wait(30)
    server.clear_log()
    again = _download(server, "m.bin", tmp_path)
    assert again.wait(30).read_bytes() == data
    assert again.status == "already_downloaded"
    assert again.progress.downloaded_bytes == SIZE
    assert server.log == []
    # resolve() is the same, blocking, and also offline.
    assert nbmodels.resolve(server.url("m.bin"), dir=tmp_path / "out", offline=True).exists()
    assert server.log == []


def test_force_downloads_again_and_failure_keeps_the_good_file(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(SIZE)
    server.add_file("m.bin", data)
    _download(server, "m.bin", tmp_path).wait(30)
    server.add_fault("m.bin", Fault.error(404))
    job = _download(server, "m.bin", tmp_path, force=True)
    with pytest.raises(nbmodels.NotFoundError):
        job.wait(30)
    assert (tmp_path / "out" / "m.bin").read_bytes() == data
    job = _download(server, "m.bin", tmp_path, force=True)
    job.wait(30)
    assert job.status == "completed"


def test_offline_and_missing_is_offline_error_with_no_request(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.add_file("m.bin", b"abc")
    with pytest.raises(nbmodels.OfflineError):
        _download(server, "m.bin", tmp_path, offline=True).wait(30)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(nbmodels.OfflineError):
        _download(server, "m.bin", tmp_path).wait(30)
    assert server.log == []


def test_insufficient_space_is_reported_before_writing(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("m.bin", b"x" * 1000)
    huge = 1 << 60  # the server claims an exabyte-sized file
    server.add_fault("m.bin", Fault.bad_content_range(end=huge - 1000, total=huge - 1000))
    job = _download(server, "m.bin", tmp_path)
    with pytest.raises(nbmodels.InsufficientSpaceError) as info:
        job.wait(30)
    err = info.value
    assert isinstance(err, OSError)
    assert err.needed >= huge - 1000 and err.available < err.needed
    assert "missing" in str(err) and "dir=" in str(err)
    assert len(server.requests_for("m.bin")) == 1
    assert not (tmp_path / "out" / "m.bin").exists()


def test_disk_full_mid_way_keeps_resume_state(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from nbmodels.transfer import _partial

    data = payload(SIZE)
    server.add_file("m.bin", data)
    real = _partial._pwrite
    written = 0

    def full_disk(fd: int, chunk: bytes, offset: int) -> int:
        nonlocal written
        if written > 1_000_000:
            raise OSError(errno.ENOSPC, "No space left on device")
        written += len(chunk)
        return real(fd, chunk, offset)

    monkeypatch.setattr(_partial, "_pwrite", full_disk)
    job = _download(server, "m.bin", tmp_path)
    with pytest.raises(nbmodels.InsufficientSpaceError, match="resume"):
        job.wait(30)
    out = tmp_path / "out"
    assert not (out / "m.bin").exists()
    part, state = partial_paths(out / "m.bin")
    assert part.exists() and state.exists()
    monkeypatch.setattr(_partial, "_pwrite", real)
    server.clear_log()
    path = _download(server, "m.bin", tmp_path).wait(30)
    assert path.read_bytes() == data
    assert server.log[0].range is not None and server.log[0].range != "bytes=0-"


def test_planted_symlink_at_target_is_replaced_not_followed(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "m.bin").symlink_to(victim)
    part, _state = partial_paths(out / "m.bin")
    part.symlink_to(victim)
    data = payload(10_000)
    server.add_file("m.bin", data)
    path = _download(server, "m.bin", tmp_path).wait(30)
    assert not path.is_symlink() and path.read_bytes() == data
    assert victim.read_text() == "precious"


def test_progress_is_monotonic_with_speed_and_eta(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("m.bin", payload(SIZE))
    server.add_fault("m.bin", Fault.trickle(2_000_000))
    rec = Recorder()
    job = _download(server, "m.bin", tmp_path)
    job.subscribe(rec)
    job.wait(30)
    downloading = [s for s in rec.snaps if s.status == "downloading"]
    assert len(downloading) >= 3
    seen = [s.progress.downloaded_bytes for s in rec.snaps]
    assert seen == sorted(seen)
    assert all(s.progress.total_bytes in (None, SIZE) for s in rec.snaps)
    assert all(s.progress.downloaded_bytes <= SIZE for s in rec.snaps)
    assert any(s.progress.bytes_per_second > 0 for s in downloading)
    assert any(s.progress.eta_seconds is not None for s in downloading)
    assert rec.statuses()[-2:] == ["downloading", "completed"]


def test_concurrency_limit_queues_extra_jobs(
    server: FaultServer, tmp_path: Path, settings: object
) -> None:
    import dataclasses

    from nbmodels._config import Settings

    assert isinstance(settings, Settings)
    eng = _engine.Engine(dataclasses.replace(settings, max_concurrent_jobs=2), home=tmp_path / "h")
    previous = _engine.set_engine(eng)
    try:
        for i in range(4):
            server.add_file(f"f{i}.bin", payload(400_000, seed=i))
            server.add_fault(f"f{i}.bin", Fault.trickle(800_000))
        jobs = [_download(server, f"f{i}.bin", tmp_path) for i in range(4)]
        peak = 0
        while not all(j.done for j in jobs):
            peak = max(peak, sum(j.status == "downloading" for j in jobs))
            time.sleep(0.01)
        assert peak == 2
        assert all(j.status == "completed" for j in jobs)
        assert nbmodels.jobs()[0] is jobs[-1]  # newest first
    finally:
        eng.close()
        _engine.set_engine(previous)


def test_await_job_returns_the_path(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    import asyncio

    server.add_file("m.bin", b"hello")

    async def main() -> Path:
        return await _download(server, "m.bin", tmp_path)

    assert asyncio.run(main()).read_bytes() == b"hello"


def test_to_dict_uses_lm_studio_names(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("m.bin", b"hello")
    job = _download(server, "m.bin", tmp_path)
    job.wait(30)
    d = job.to_dict()
    for key in (
        "job_id", "status", "total_size_bytes", "downloaded_bytes", "bytes_per_second",
        "estimated_completion", "started_at", "completed_at", "items", "error",
    ):  # fmt: skip
        assert key in d
    assert d["status"] == "completed" and d["total_size_bytes"] == 5
    assert d["items"][0]["name"] == "m.bin"


def test_signed_url_query_never_reaches_registry_or_errors(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    secret = "X-Amz-Signature=supersecretvalue123"
    server.add_file("m.bin", b"x" * 100)
    server.add_fault("m.bin", Fault.error(403))
    job = nbmodels.download(server.url("m.bin", query=secret), dir=tmp_path / "out")
    with pytest.raises(nbmodels.AccessError) as info:
        job.wait(30)
    assert "supersecret" not in str(info.value)
    assert "supersecret" not in repr(job.to_dict())
    nbmodels.history()
    db = engine.registry.path
    for f in db.parent.iterdir():
        if f.name.startswith("jobs.sqlite3"):
            assert b"supersecret" not in f.read_bytes()


def test_resume_right_after_pause_never_leaves_the_job_paused(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(SIZE)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.trickle(400_000), times=-1)
    job = _download(server, "m.bin", tmp_path)
    wait_for(lambda: job.progress.downloaded_bytes > 10_000, what="some bytes")
    assert job.pause()
    assert job.resume()  # before the pause has landed
    assert job.wait(60).read_bytes() == data
