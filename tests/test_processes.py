"""Behaviour across processes: SIGKILL and resume, history, the layering rule."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import nbmodels
from nbmodels.engine import _engine
from nbmodels.transfer import partial_paths
from tests.conftest import payload
from tests.faultserver import Fault, FaultServer

ROOT = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(
    """
    import sys, nbmodels
    job = nbmodels.download(sys.argv[1], dir=sys.argv[2])
    print("JOB", job.id, flush=True)
    try:
        print("PATH", job.wait(120), flush=True)
    except nbmodels.NbmodelsError as exc:
        print("ERROR", type(exc).__name__, exc, flush=True)
        sys.exit(1)
    print("STATUS", job.status, flush=True)
    """
)


def _child(url: str, out: Path, home: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "NBMODELS_HOME": str(home), "NBMODELS_READ_TIMEOUT": "5"}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url, str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )


def _durable_bytes(target: Path) -> int:
    _part, state = partial_paths(target)
    try:
        data = json.loads(state.read_text())
    except (OSError, ValueError):
        return 0
    return sum(e - s for s, e in data.get("done", []))


def _kill_when_durable(proc: subprocess.Popen[str], target: Path, at_least: int) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = _durable_bytes(target)
        if done >= at_least:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
            return done
        if proc.poll() is not None:
            raise AssertionError(f"child ended early: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    proc.communicate()
    raise AssertionError("the child never made progress durable")


def test_sigkill_mid_download_then_resume_in_a_new_process(
    server: FaultServer, tmp_path: Path
) -> None:
    size = 4 * 1024 * 1024
    data = payload(size)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.trickle(1_000_000), times=-1)
    home, out = tmp_path / "home", tmp_path / "out"
    target = out / "m.bin"
    first = _child(server.url("m.bin"), out, home)
    durable = _kill_when_durable(first, target, 500_000)
    assert first.returncode == -signal.SIGKILL
    assert not target.exists()

    second = _child(server.url("m.bin"), out, home)
    _stdout, stderr = second.communicate(timeout=120)
    assert second.returncode == 0, stderr
    assert target.read_bytes() == data
    resumed = server.requests_for("m.bin")[-1]
    assert resumed.range is not None
    start = int(resumed.range.removeprefix("bytes=").split("-")[0])
    assert start >= durable > 0  # continued where the killed process had stopped
    assert resumed.if_range is not None


def test_resume_after_kill_never_splices_a_changed_remote_file(
    server: FaultServer, tmp_path: Path
) -> None:
    size = 3 * 1024 * 1024
    old, new = payload(size, seed=5), payload(size, seed=6)
    server.add_file("m.bin", old)
    server.add_fault("m.bin", Fault.trickle(1_000_000))
    home, out = tmp_path / "home", tmp_path / "out"
    _kill_when_durable(_child(server.url("m.bin"), out, home), out / "m.bin", 300_000)
    server.set_file("m.bin", new)  # the upstream file changes while nobody downloads
    second = _child(server.url("m.bin"), out, home)
    _stdout, stderr = second.communicate(timeout=120)
    assert second.returncode == 0, stderr
    assert (out / "m.bin").read_bytes() == new
    # The resume asked with If-Range, the server said "changed" (200), and nothing old was kept.
    resume = [r for r in server.requests_for("m.bin") if r.if_range is not None]
    assert resume and resume[0].status == 200


def test_history_spans_processes_and_shows_interrupted_jobs(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    home = Path(os.environ["NBMODELS_HOME"])
    server.add_file("done.bin", b"d" * 1000)
    server.add_file("slow.bin", payload(3 * 1024 * 1024))
    server.add_fault("slow.bin", Fault.trickle(500_000))
    out = tmp_path / "out"

    finished = _child(server.url("done.bin"), out, home)
    stdout, stderr = finished.communicate(timeout=60)
    assert finished.returncode == 0, stderr
    finished_id = stdout.split()[1]

    killed = _child(server.url("slow.bin"), out, home)
    _kill_when_durable(killed, out / "slow.bin", 100_000)

    mine = nbmodels.download(server.url("done.bin"), dir=out)
    mine.wait(30)

    history = nbmodels.history()
    by_ref = {}
    for job in history:
        by_ref.setdefault(job.ref.rsplit("/", 1)[-1], []).append(job)
    assert history[0] is mine  # newest first; this process's jobs are the live objects
    assert mine.status == "already_downloaded"
    earlier = next(j for j in by_ref["done.bin"] if j.id == finished_id)
    assert earlier.status == "completed" and earlier.read_only
    assert earlier.path == (out / "done.bin").resolve()
    assert earlier.wait(0) == earlier.path
    (interrupted,) = by_ref["slow.bin"]
    assert interrupted.status == "interrupted"
    assert interrupted.progress.total_bytes == 3 * 1024 * 1024
    assert interrupted.pause() is False  # read-only

    # Submitting it again resumes it.
    resumed = interrupted.retry()
    resumed.wait(60)
    assert (out / "slow.bin").read_bytes() == payload(3 * 1024 * 1024)
    last = server.requests_for("slow.bin")[-1]
    assert last.range is not None and not last.range.startswith("bytes=0-")


def test_engine_close_marks_running_jobs_interrupted_and_keeps_partial_data(
    server: FaultServer, tmp_path: Path, settings: object
) -> None:
    from nbmodels._config import Settings

    assert isinstance(settings, Settings)
    home = tmp_path / "home"
    eng = _engine.Engine(settings, home=home)
    previous = _engine.set_engine(eng)
    try:
        server.add_file("m.bin", payload(3 * 1024 * 1024))
        server.add_fault("m.bin", Fault.trickle(500_000))
        job = nbmodels.download(server.url("m.bin"), dir=tmp_path / "out")
        deadline = time.monotonic() + 20
        while job.progress.downloaded_bytes < 100_000 and time.monotonic() < deadline:
            time.sleep(0.02)
        eng.close()
        assert job.status == "interrupted"
        with pytest.raises(nbmodels.NbmodelsError, match="resume"):
            job.wait(1)
        assert partial_paths(tmp_path / "out" / "m.bin")[0].exists()
    finally:
        _engine.set_engine(previous)
    later = _engine.Engine(settings, home=home)
    try:
        rows = later.history()
        assert [j.status for j in rows] == ["interrupted"]
    finally:
        later.close()


def test_core_imports_no_ui_library(server: FaultServer, tmp_path: Path) -> None:
    """Every module outside the notebook and service layers, and the API as a script uses it
    (``download`` with its default display, ``resolve``, ``jobs``, ``history``), imports no
    notebook library, although they are installed."""
    server.add_file("m.bin", b"abc")
    server.add_file("n.bin", b"defg")
    code = textwrap.dedent(
        f"""
        import importlib, pkgutil, sys, nbmodels, nbmodels.errors
        for mod in pkgutil.walk_packages(nbmodels.__path__, "nbmodels."):
            front_end = mod.name.startswith(("nbmodels.notebook", "nbmodels.server"))
            if not front_end and not mod.name.endswith("__main__"):
                importlib.import_module(mod.name)  # every module but the UI and service layers
        job = nbmodels.download({server.url("n.bin")!r}, dir={str(tmp_path / "o")!r})
        assert job.wait(30).read_bytes() == b"defg" and job.status == "completed"
        nbmodels.resolve({server.url("m.bin")!r}, dir={str(tmp_path / "o")!r})
        nbmodels.jobs(), nbmodels.history(), job.to_dict(), repr(job)
        bad = sorted(m for m in sys.modules
                     if m.split(".")[0] in ("IPython", "ipywidgets", "anywidget", "traitlets",
                                            "ipykernel", "nest_asyncio"))
        print(bad)
        """
    )
    env = {**os.environ, "NBMODELS_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
