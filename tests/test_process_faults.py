"""Process and filesystem faults (docs/storage.md, docs/download-contract.md rules 1, 2
and 8; issue 6).

SIGKILL at seeded random moments, two processes on one file (with working locks and with locks
that do nothing), a full disk (through the ``_pwrite`` and ``_fallocate`` hooks and on a real
8 MiB tmpfs, with and without reserved blocks), forced updates that fail, and symlinks planted
where nbmodels writes.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import nbmodels
from nbmodels.engine import _engine
from nbmodels.testing import GeneratedFile, HubEmulator
from nbmodels.transfer import RangeSet, _partial, partial_paths
from tests.conftest import payload
from tests.faultserver import Fault, FaultServer
from tests.test_hostile import Scripted, Seen, custom_engine, file_answer, leftovers

ROOT = Path(__file__).resolve().parents[1]
MIB = 1 << 20
SIZE = 1_000_003
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")

CHILD = textwrap.dedent(
    """
    import os, sys
    if os.environ.get("NBM_TEST_NO_LOCKS") == "1":
        # A file system whose locks do nothing (some network file systems): every acquire
        # succeeds at once.
        import filelock

        class NoLock:
            def __init__(self, *args, **kwargs): pass
            def acquire(self, *args, **kwargs): return self
            def release(self, *args, **kwargs): pass
            def __enter__(self): return self
            def __exit__(self, *exc): pass

        filelock.FileLock = NoLock
    import nbmodels
    kwargs = {"connections": int(sys.argv[3])} if len(sys.argv) > 3 else {}
    if sys.argv[2] != "-":
        kwargs["dir"] = sys.argv[2]
    job = nbmodels.download(sys.argv[1], **kwargs)
    try:
        path = job.wait(300)
    except nbmodels.NbmodelsError as exc:
        print("ERROR", type(exc).__name__, exc, flush=True)
        sys.exit(1)
    print("STATUS", job.status, flush=True)
    print("PATH", path, flush=True)
    """
)


def child(
    url: str, out: Path | None, *, connections: int | None = None, **env: str
) -> subprocess.Popen[str]:
    args = [sys.executable, "-c", CHILD, url, str(out) if out is not None else "-"]
    if connections is not None:
        args.append(str(connections))
    return subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NBMODELS_READ_TIMEOUT": "5", **env},
        cwd=ROOT,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str, str]:
    stdout, stderr = proc.communicate(timeout=timeout)
    return proc.returncode, stdout, stderr


def status_of(stdout: str) -> str | None:
    for line in stdout.splitlines():
        if line.startswith("STATUS "):
            return line.split()[1]
    return None


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def durable_claims(target: Path, data: bytes) -> RangeSet:
    """The ranges the state file claims, after checking every claim against the data file
    (the state must never claim a byte that is not on disk, correct)."""
    part, state = partial_paths(target)
    try:
        raw = json.loads(state.read_text())
    except FileNotFoundError:
        return RangeSet()
    done = RangeSet((s, e) for s, e in raw["done"])
    if not len(done):
        return done
    on_disk = part.read_bytes()
    for s, e in done:
        assert 0 <= s < e <= len(data), f"claim [{s}, {e}) outside the file"
        assert e <= len(on_disk), f"claim [{s}, {e}) beyond the {len(on_disk)} bytes on disk"
        assert on_disk[s:e] == data[s:e], f"claimed bytes [{s}, {e}) are wrong"
    return done


def starts(requests: list[Any]) -> list[int]:
    out = []
    for r in requests:
        m = _RANGE.fullmatch(r.range or "")
        out.append(int(m.group(1)) if m else 0)
    return out


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ==========================================================================================
# SIGKILL at random moments
# ==========================================================================================


def test_random_sigkills_always_end_byte_exact(server: FaultServer, tmp_path: Path) -> None:
    """Eight kill/resume cycles at seeded random moments on a 16 MiB file with four trickling
    connections: every state left behind is true, no resume refetches a durable byte, and the
    file ends byte-exact."""
    rnd = random.Random(20240611)
    size = 16 * MIB
    data = payload(size, seed=21)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.trickle(512 * 1024), times=-1)
    out = tmp_path / "out"
    target = out / "m.bin"
    env = {"NBMODELS_HOME": str(tmp_path / "home"), "NBMODELS_CHECKPOINT_INTERVAL": "0.1"}
    durable = RangeSet()
    kills = 0
    for _cycle in range(8):
        seen_before = len(server.log)
        proc = child(server.url("m.bin"), out, connections=4, **env)
        try:
            proc.wait(timeout=rnd.uniform(0.3, 2.5))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        finish(proc, timeout=30)
        for start in starts(server.log[seen_before:]):
            assert not durable.contains(start, start + 1), f"refetched durable byte {start}"
        if target.exists():
            break  # it finished before the kill: fine, and the end state is checked below
        durable = durable_claims(target, data)
        assert not target.exists()
    assert kills >= 1
    code, _stdout, stderr = finish(child(server.url("m.bin"), out, connections=4, **env))
    assert code == 0, stderr
    assert target.read_bytes() == data
    part, state = partial_paths(target)
    assert not part.exists() and not state.exists()
    # Bounded waste: killed connections lose at most what was in flight.
    assert sum(r.body_bytes_sent for r in server.log) < 2 * size


# ==========================================================================================
# Two processes on one file
# ==========================================================================================


def test_two_processes_on_one_url_fetch_it_once(server: FaultServer, tmp_path: Path) -> None:
    size = 4 * MIB
    data = payload(size, seed=22)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.trickle(2 * MIB), times=-1)
    out = tmp_path / "out"
    env = {"NBMODELS_HOME": str(tmp_path / "home")}
    procs = [child(server.url("m.bin"), out, **env) for _ in range(2)]
    results = [finish(p) for p in procs]
    assert all(code == 0 for code, _o, _e in results), results
    assert {status_of(o) for _c, o, _e in results} <= {"completed", "already_downloaded"}
    assert (out / "m.bin").read_bytes() == data
    assert sum(r.body_bytes_sent for r in server.log) < 1.5 * size  # not fetched twice in full
    assert leftovers(out) == []


def test_two_processes_on_one_hub_blob_fetch_it_once(tmp_path: Path) -> None:
    size = 4 * MIB
    with HubEmulator() as hub:
        hub.add_repo("o/r", {"model.bin": GeneratedFile(size, seed="two-procs")})
        hub.throttle = 2 * MIB
        data = hub.repo("o/r").file("model.bin").read()
        env = {"NBMODELS_HOME": str(tmp_path / "home"), "HF_ENDPOINT": hub.endpoint}
        procs = [child("hf:o/r/model.bin", None, **env) for _ in range(2)]
        results = [finish(p) for p in procs]
        cdn = [r for r in hub.requests if r.origin == "cdn"]
    assert all(code == 0 for code, _o, _e in results), results
    paths = {line.split(" ", 1)[1] for _c, o, _e in results for line in o.splitlines()
             if line.startswith("PATH ")}  # fmt: skip
    assert len(paths) == 1
    assert Path(paths.pop()).read_bytes() == data
    assert sum(r.bytes_sent for r in cdn) < 1.5 * size
    blobs = Path(os.environ["HF_HOME"]) / "hub" / "models--o--r" / "blobs"
    assert sorted(p.name for p in blobs.iterdir()) == [sha256(data)]


def test_without_working_locks_no_incomplete_file_is_ever_published(tmp_path: Path) -> None:
    """Locks that do nothing (docs/storage.md: correctness must not depend on them). Process A
    opens its partial file and waits for the server; process B starts, finds no state, and
    begins the same file; then A completes. What A publishes must be the whole file."""
    size = 2 * MIB
    data = payload(size, seed=23)
    gates = {1: threading.Event(), 2: threading.Event()}
    count = [0]
    lock = threading.Lock()

    def app(seen: Seen) -> Any:
        with lock:
            count[0] += 1
            n = count[0]
        if n in gates:
            gates[n].wait(60)
        return file_answer(seen, data)

    out = tmp_path / "out"
    target = out / "m.bin"
    env = {"NBMODELS_HOME": str(tmp_path / "home"), "NBM_TEST_NO_LOCKS": "1"}
    with Scripted(app) as srv:
        url = f"{srv.url}/files/m.bin"
        a = child(url, out, **env)
        wait_until(lambda: len(srv.seen) >= 1, "process A's first request")
        b = child(url, out, **env)
        wait_until(lambda: len(srv.seen) >= 2, "process B's first request")
        gates[1].set()
        code_a, _out_a, err_a = finish(a, timeout=60)
        published_by_a = target.read_bytes() if target.exists() else None
        gates[2].set()
        code_b, _out_b, err_b = finish(b, timeout=60)
    assert code_a == 0 or code_b == 0, (err_a, err_b)
    if code_a == 0:
        assert published_by_a == data, (
            f"A reported success but published {len(published_by_a or b'')} of {size} bytes"
        )
    assert target.read_bytes() == data
    assert leftovers(out) == []


# ==========================================================================================
# Disk full
# ==========================================================================================


def _disk_fills_after(limit: int, err: int = errno.ENOSPC) -> Callable[[int, Any, int], int]:
    real = os.pwrite
    written = [0]
    lock = threading.Lock()

    def pwrite(fd: int, chunk: Any, offset: int) -> int:
        with lock:
            if written[0] + len(chunk) > limit:
                raise OSError(err, os.strerror(err))
            written[0] += len(chunk)
        return real(fd, chunk, offset)

    return pwrite


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EDQUOT], ids=["ENOSPC", "EDQUOT"])
def test_disk_full_on_parallel_connections_keeps_true_resume_state(
    engine: _engine.Engine,
    server: FaultServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    err: int,
) -> None:
    size = 12 * MIB + 4099
    data = payload(size, seed=24)
    server.add_file("m.bin", data)
    for _ in range(6):
        server.add_fault("m.bin", Fault.trickle(3 * MIB))
    monkeypatch.setattr(_partial, "_pwrite", _disk_fills_after(3 * MIB, err))
    out = tmp_path / "out"
    job = nbmodels.download(server.url("m.bin"), dir=out, connections=4)
    with pytest.raises(nbmodels.InsufficientSpaceError) as info:
        job.wait(60)
    assert "resume" in str(info.value) and info.value.needed > 0
    assert not (out / "m.bin").exists()
    durable = durable_claims(out / "m.bin", data)
    assert durable.covered > 0
    monkeypatch.setattr(_partial, "_pwrite", os.pwrite)
    server.clear_faults()
    server.clear_log()
    path = nbmodels.download(server.url("m.bin"), dir=out, connections=4).wait(60)
    assert path.read_bytes() == data
    for start in starts(server.requests_for("m.bin")):
        assert not durable.contains(start, start + 1)
    assert leftovers(out) == []


def test_short_write_is_insufficient_space(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = payload(SIZE)
    server.add_file("m.bin", data)
    real = os.pwrite

    def short(fd: int, chunk: Any, offset: int) -> int:
        if offset > 100_000:
            return real(fd, bytes(chunk)[: max(0, len(chunk) - 1)], offset)
        return real(fd, chunk, offset)

    monkeypatch.setattr(_partial, "_pwrite", short)
    out = tmp_path / "out"
    with pytest.raises(nbmodels.InsufficientSpaceError):
        nbmodels.download(server.url("m.bin"), dir=out).wait(60)
    assert not (out / "m.bin").exists()
    durable_claims(out / "m.bin", data)
    monkeypatch.setattr(_partial, "_pwrite", os.pwrite)
    assert nbmodels.download(server.url("m.bin"), dir=out).wait(60).read_bytes() == data


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs (needs root and Linux; skipped elsewhere). Unmounted afterwards."""
    mount = shutil.which("mount")
    if sys.platform != "linux" or mount is None or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs Linux and root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", str(mnt)],
        capture_output=True,
        timeout=30,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace')}")
    try:
        yield mnt
    finally:
        umount = shutil.which("umount") or "umount"
        if subprocess.run([umount, str(mnt)], capture_output=True, timeout=30).returncode:
            subprocess.run([umount, "-l", str(mnt)], capture_output=True, timeout=30)


def test_too_big_for_a_real_small_disk_is_refused_before_writing(
    server: FaultServer, small_disk: Path
) -> None:
    server.add_file("big.bin", payload(10 * MIB, seed=25))
    with custom_engine(space_margin=0):
        job = nbmodels.download(server.url("big.bin"), dir=small_disk)
        with pytest.raises(nbmodels.InsufficientSpaceError) as info:
            job.wait(60)
    assert info.value.needed >= 10 * MIB and info.value.available <= 8 * MIB
    assert len(server.requests_for("big.bin")) == 1
    assert [p.name for p in small_disk.iterdir() if p.name != ".nbmodels"] == []


def _fill(disk: Path) -> int:
    """Another program takes every free byte of ``disk``; returns how many it got."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    got = 0
    try:
        while True:
            got += os.write(fd, b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return got


def test_real_disk_full_mid_way_keeps_resume_state_and_leaves_nothing_behind(
    server: FaultServer, small_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a file system that cannot reserve blocks, a disk that fills up half way is a clean,
    resumable error."""
    monkeypatch.setattr(_partial, "_fallocate", None)
    size = 6 * MIB
    data = payload(size, seed=26)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.trickle(1 * MIB), times=-1)
    with custom_engine(space_margin=0):
        job = nbmodels.download(server.url("m.bin"), dir=small_disk)
        wait_until(lambda: job.progress.downloaded_bytes >= MIB, "the first MiB")
        _fill(small_disk)
        with pytest.raises(nbmodels.InsufficientSpaceError):
            job.wait(60)
        assert not (small_disk / "m.bin").exists()
        durable = durable_claims(small_disk / "m.bin", data)
        (small_disk / "filler").unlink()
        server.clear_faults()
        server.clear_log()
        path = nbmodels.download(server.url("m.bin"), dir=small_disk).wait(60)
        assert path.read_bytes() == data
    assert starts(server.requests_for("m.bin"))[0] >= durable.prefix()
    assert leftovers(small_disk) == []


def test_reserved_blocks_survive_a_disk_that_fills_up_and_a_pause(
    server: FaultServer, small_disk: Path
) -> None:
    """The partial file's blocks are reserved when the size is known: another program that
    fills the disk half way gets only what was free beyond them, and the paused download
    resumes on the full disk (its reservation is not asked for twice) and completes."""
    size = 6 * MIB
    data = payload(size, seed=27)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.trickle(1 * MIB), times=-1)
    part = partial_paths(small_disk / "m.bin")[0]
    with custom_engine(space_margin=0):
        job = nbmodels.download(server.url("m.bin"), dir=small_disk)
        wait_until(lambda: job.progress.downloaded_bytes >= MIB, "the first MiB")
        st = part.stat()
        assert st.st_blocks * 512 >= size > st.st_size  # reserved, the size still the data's
        assert _fill(small_disk) <= 8 * MIB - size
        assert job.pause()
        wait_until(lambda: job.status == "paused", "the pause")
        assert job.resume()
        path = job.wait(60)
    assert path.read_bytes() == data
    assert (small_disk / "filler").stat().st_size <= 8 * MIB - size
    assert leftovers(small_disk) == []


def _refusing(calls: list[tuple[int, int]]) -> Callable[[int, int, int, int], int]:
    """A ``fallocate`` that answers ENOSPC, as when another program took the space between
    the free-space check and the reservation."""

    def fallocate(fd: int, mode: int, offset: int, length: int) -> int:
        calls.append((offset, length))
        ctypes.set_errno(errno.ENOSPC)
        return -1

    return fallocate


def test_reservation_refused_is_insufficient_space_and_keeps_the_data(
    engine: _engine.Engine,
    server: FaultServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = payload(SIZE, seed=28)
    server.add_file("m.bin", data)
    out = tmp_path / "out"
    real = _partial._fallocate
    calls: list[tuple[int, int]] = []
    # Refused before a byte is written: nothing is left behind.
    monkeypatch.setattr(_partial, "_fallocate", _refusing(calls))
    with pytest.raises(nbmodels.InsufficientSpaceError) as info:
        nbmodels.download(server.url("m.bin"), dir=out).wait(60)
    assert calls == [(0, SIZE)] and info.value.needed == SIZE
    assert "missing" in str(info.value) and "nothing was written" in str(info.value)
    assert "resume" not in str(info.value) and "kept" not in str(info.value)
    assert leftovers(out) == []
    # A sparse partial file (written where reserving was impossible, then the disk filled).
    monkeypatch.setattr(_partial, "_fallocate", None)
    monkeypatch.setattr(_partial, "_pwrite", _disk_fills_after(300_000))
    with pytest.raises(nbmodels.InsufficientSpaceError):
        nbmodels.download(server.url("m.bin"), dir=out).wait(60)
    part = partial_paths(out / "m.bin")[0]
    kept, durable = part.stat().st_size, durable_claims(out / "m.bin", data)
    assert durable.covered > 0
    # Resuming, the reservation of the rest is refused: the data and its state stand.
    monkeypatch.setattr(_partial, "_pwrite", os.pwrite)
    monkeypatch.setattr(_partial, "_fallocate", _refusing(calls))
    with pytest.raises(nbmodels.InsufficientSpaceError) as info:
        nbmodels.download(server.url("m.bin"), dir=out).wait(60)
    assert calls[1:] == [(0, SIZE)] and 0 < info.value.needed <= SIZE - durable.covered
    assert "is kept" in str(info.value) and "resume" in str(info.value)
    assert part.stat().st_size == kept
    assert durable_claims(out / "m.bin", data) == durable
    # With the space back, it resumes where the durable bytes end.
    monkeypatch.setattr(_partial, "_fallocate", real)
    server.clear_log()
    assert nbmodels.download(server.url("m.bin"), dir=out).wait(60).read_bytes() == data
    assert starts(server.requests_for("m.bin"))[0] >= durable.prefix()


# ==========================================================================================
# A forced update that fails keeps the previous good file
# ==========================================================================================


FORCED_FAILURES = ["digest", "server-error", "gzip", "truncated", "disk-full", "cancel"]


@pytest.mark.parametrize("how", FORCED_FAILURES)
def test_failed_forced_update_keeps_the_previous_good_file(
    engine: _engine.Engine,
    server: FaultServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    old, new = payload(SIZE, seed=1), payload(SIZE, seed=2)
    out = tmp_path / "out"
    server.add_file("m.bin", old)
    assert nbmodels.download(server.url("m.bin"), dir=out).wait(60).read_bytes() == old
    server.set_file("m.bin", new)
    opts: dict[str, Any] = {"dir": out, "force": True}
    expected: type[Exception] = nbmodels.NetworkError
    if how == "digest":
        opts["sha256"] = "0" * 64
        expected = nbmodels.IntegrityError
    elif how == "server-error":
        server.add_fault("m.bin", Fault.error(503), times=-1)
    elif how == "gzip":
        server.add_fault("m.bin", Fault.gzipped(), times=-1)
    elif how == "truncated":
        server.add_fault("m.bin", Fault.drop(after=500_000))
        server.add_fault("m.bin", Fault.drop(after=0), times=-1)
    elif how == "disk-full":
        monkeypatch.setattr(_partial, "_pwrite", _disk_fills_after(200_000))
        expected = nbmodels.InsufficientSpaceError
    else:
        server.add_fault("m.bin", Fault.trickle(200_000))
        expected = nbmodels.CanceledError
    job = nbmodels.download(server.url("m.bin"), **opts)
    if how == "cancel":
        wait_until(lambda: job.progress.downloaded_bytes > 50_000, "some new bytes")
        assert job.cancel()
    with pytest.raises(expected):
        job.wait(60)
    assert (out / "m.bin").read_bytes() == old
    monkeypatch.setattr(_partial, "_pwrite", os.pwrite)
    server.clear_faults()
    server.clear_log()
    again = nbmodels.download(server.url("m.bin"), dir=out)
    assert again.wait(60).read_bytes() == old  # its completion record is intact too
    assert again.status == "already_downloaded" and server.log == []


# ==========================================================================================
# Symlinks planted where nbmodels writes
# ==========================================================================================


def _victims(tmp_path: Path, *names: str) -> dict[str, Path]:
    d = tmp_path / "victims"
    d.mkdir(exist_ok=True)
    out = {}
    for name in names:
        p = d / name
        p.write_text(f"precious {name}")
        out[name] = p
    return out


def _intact(victims: dict[str, Path]) -> None:
    for name, p in victims.items():
        assert not p.is_symlink() and p.read_text() == f"precious {name}", f"{name} written"


def test_symlinks_at_target_partial_and_state_are_replaced_not_followed(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    victims = _victims(tmp_path, "target", "part", "state")
    out = tmp_path / "out"
    out.mkdir()
    target = out / "m.bin"
    part, state = partial_paths(target)
    target.symlink_to(victims["target"])
    part.symlink_to(victims["part"])
    state.symlink_to(victims["state"])
    data = payload(SIZE)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.drop(after=400_000))  # state is saved and used
    path = nbmodels.download(server.url("m.bin"), dir=out).wait(60)
    assert not path.is_symlink() and path.read_bytes() == data
    assert not part.exists() and not state.exists()
    _intact(victims)


def test_symlink_at_the_completion_record_temp_path_is_not_followed(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    victims = _victims(tmp_path, "record", "record-tmp", "lock")
    out = tmp_path / "out"
    records = out / ".nbmodels"
    records.mkdir(parents=True)
    (records / "m.bin.json").symlink_to(victims["record"])
    (records / f"m.bin.json.{os.getpid()}.tmp").symlink_to(victims["record-tmp"])
    server.add_file("m.bin", payload(10_000))
    assert nbmodels.download(server.url("m.bin"), dir=out).wait(60).exists()
    _intact(victims)


@pytest.fixture
def small_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubEmulator]:
    with HubEmulator() as hub:
        hub.add_repo(
            "o/r",
            {"model.bin": GeneratedFile(300_000, seed="syml"), "config.json": '{"a": 1}\n'},
        )
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        yield hub


def test_symlinks_planted_in_the_hub_cache_are_not_followed(
    engine: _engine.Engine, small_hub: HubEmulator, tmp_path: Path
) -> None:
    repo = small_hub.repo("o/r")
    data = repo.file("model.bin").read()
    root = Path(os.environ["HF_HOME"]) / "hub" / "models--o--r"
    victims = _victims(tmp_path, "blob", "blob-part", "snapshot", "ref", "ref-tmp")
    blob = root / "blobs" / sha256(data)
    snap = root / "snapshots" / repo.sha / "model.bin"
    for p in (blob, snap, root / "refs" / "main"):
        p.parent.mkdir(parents=True, exist_ok=True)
    blob.symlink_to(victims["blob"])
    partial_paths(blob)[0].symlink_to(victims["blob-part"])
    snap.symlink_to(victims["snapshot"])
    (root / "refs" / "main").symlink_to(victims["ref"])
    (root / "refs" / f".main.{os.getpid()}.tmp").symlink_to(victims["ref-tmp"])
    path = nbmodels.resolve("hf:o/r/model.bin")
    assert path.read_bytes() == data and path.resolve() == blob.resolve()
    assert not blob.is_symlink()
    _intact(victims)


def test_symlink_at_the_local_dir_metadata_temp_path_is_not_followed(
    engine: _engine.Engine, small_hub: HubEmulator, tmp_path: Path
) -> None:
    victims = _victims(tmp_path, "file", "metadata", "metadata-tmp")
    local = tmp_path / "local"
    meta = local / ".cache" / "huggingface" / "download"
    meta.mkdir(parents=True)
    (local / "model.bin").symlink_to(victims["file"])
    (meta / "model.bin.metadata").symlink_to(victims["metadata"])
    (meta / f".model.bin.metadata.{os.getpid()}.tmp").symlink_to(victims["metadata-tmp"])
    path = nbmodels.resolve("hf:o/r/model.bin", dir=local)
    assert not path.is_symlink()
    assert path.read_bytes() == small_hub.repo("o/r").file("model.bin").read()
    _intact(victims)
