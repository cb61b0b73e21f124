"""Interrupt and interpreter exit while downloads run (issue 12, item 4): one line, no
traceback, and the partial data with its state survives and resumes.

Each case is a real process: the CLI sent SIGINT, ``python -c`` that starts a job and ends,
terminal IPython left with a ``-b`` job running, and a thread that downloads while (or after)
the main thread ends. The interpreter shuts thread pools down before
``atexit`` runs, so an engine closed from ``atexit`` could no longer stop its transfers
cleanly (``cannot schedule new futures after shutdown``).
"""

from __future__ import annotations

import json
import os
import re
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
SIZE = 8 * 1024 * 1024
#: The child stops once the server has sent this much (it trickles at 1 MB/s).
SENT = 300_000
EXIT_LINE = re.compile(
    r"nbmodels: Python is exiting: http://127\.0\.0\.1:\d+/files/m\.bin was stopped at "
    r"[\d.]+ [kM]B of 8\.4 MB; partial data is kept\. "
    r"Download the same reference again to resume\."
)


@pytest.fixture
def slow(server: FaultServer) -> FaultServer:
    server.add_file("m.bin", payload(SIZE))
    server.add_fault("m.bin", Fault.trickle(1_000_000), times=-1)
    return server


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "IPYTHONDIR": str(tmp_path / "ipython")}


def _sent(server: FaultServer) -> int:
    return sum(r.body_bytes_sent for r in server.requests_for("m.bin"))


def _wait_sent(server: FaultServer, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while _sent(server) < SENT:
        if proc.poll() is not None:
            raise AssertionError(f"the child ended early: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the download never started: {proc.communicate()}")
        time.sleep(0.02)


def _durable(target: Path) -> int:
    """Bytes the state file records as on disk."""
    part, state = partial_paths(target)
    assert part.exists() and state.exists()
    done = json.loads(state.read_text())["done"]
    return sum(end - start for start, end in done)


def _resumes_from(server: FaultServer, target: Path, durable: int) -> None:
    """A new download of the same URL continues at the recorded bytes and ends byte-exact."""
    server.clear_faults("m.bin")
    before = len(server.requests_for("m.bin"))
    path = nbmodels.download(server.url("m.bin"), dir=target.parent).wait(60)
    assert path.read_bytes() == payload(SIZE)
    first = server.requests_for("m.bin")[before]
    assert first.range == f"bytes={durable}-{SIZE - 1}"
    assert first.if_range is not None


def _interrupted_in_history() -> None:
    rows = [j for j in nbmodels.history() if j.read_only]
    assert [j.status for j in rows] == ["interrupted"]


def _kept_then_resumed(server: FaultServer, target: Path, *, interrupted: bool = True) -> None:
    """The partial data and its state outlived the process (and the history says the job was
    interrupted); a new download resumes from the recorded bytes."""
    durable = _durable(target)
    assert durable > 0
    if interrupted:
        _interrupted_in_history()
    _resumes_from(server, target, durable)


def _leaving(url: str, out: Path, *, pause: bool = False) -> str:
    """A child's code: start downloading ``url``, wait until :data:`SENT` bytes arrived (then
    pause the job, when ``pause``), print ``LEAVING <status>`` and end."""
    then = (
        """
        job.pause()
        while job.status != "paused" and time.monotonic() < deadline:
            time.sleep(0.02)"""
        if pause
        else ""
    )
    return textwrap.dedent(
        f"""
        import time, nbmodels
        job = nbmodels.download({url!r}, dir={str(out)!r})
        deadline = time.monotonic() + 60
        while job.progress.downloaded_bytes < {SENT} and time.monotonic() < deadline:
            time.sleep(0.02){then}
        print("LEAVING", job.status, flush=True)
        """
    )


def _child(
    tmp_path: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` run to its end (at most two minutes), which must be a success."""
    proc = subprocess.run(
        [sys.executable, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def test_ctrl_c_during_pull_prints_one_line_and_the_next_pull_resumes(
    engine: _engine.Engine, slow: FaultServer, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "nbmodels", "pull", slow.url("m.bin"), "--dir", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(tmp_path),
        cwd=ROOT,
    )
    _wait_sent(slow, proc)
    proc.send_signal(signal.SIGINT)
    _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert stderr.strip() == (
        "nbmodels: interrupted; partial data is kept: run the same command to resume."
    )
    _kept_then_resumed(slow, out / "m.bin")


def test_python_exiting_mid_download_prints_one_line_and_a_later_run_resumes(
    engine: _engine.Engine, slow: FaultServer, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    proc = _child(tmp_path, "-c", _leaving(slow.url("m.bin"), out))
    assert proc.stdout.strip() == "LEAVING downloading"
    assert EXIT_LINE.fullmatch(proc.stderr.strip()), proc.stderr
    _kept_then_resumed(slow, out / "m.bin")


def test_leaving_ipython_with_a_background_job_prints_one_line_and_resumes_later(
    engine: _engine.Engine, slow: FaultServer, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    script = "\n".join(
        [
            "%load_ext nbmodels",
            f"job = %model_download -b {slow.url('m.bin')} --dir {out}",
            "import time; deadline = time.monotonic() + 60",
            f"while job.progress.downloaded_bytes < {SENT} and time.monotonic() < deadline: "
            "time.sleep(0.02)",
            "",
            "print('LEAVING', job.status)",
            "exit",
            "",
        ]
    )
    ipython = ("-m", "IPython", "--simple-prompt", "--no-banner", "--colors=NoColor")
    proc = _child(tmp_path, *ipython, stdin=script)
    assert "LEAVING downloading" in proc.stdout
    assert EXIT_LINE.fullmatch(proc.stderr.strip()), proc.stderr
    _kept_then_resumed(slow, out / "m.bin")


def test_a_paused_job_at_exit_is_kept_without_a_line(
    engine: _engine.Engine, slow: FaultServer, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    proc = _child(tmp_path, "-c", _leaving(slow.url("m.bin"), out, pause=True))
    assert proc.stdout.strip() == "LEAVING paused"
    assert proc.stderr == ""  # the user paused it: nothing to report
    _kept_then_resumed(slow, out / "m.bin", interrupted=False)


THREAD_CHILD = """
import threading, time, nbmodels

started = threading.Event()

def work(after_main: bool) -> None:
    if after_main:
        threading.main_thread().join()  # returns once the interpreter began to exit
    try:
        job = nbmodels.download({url!r}, dir={out!r})
        while job.progress.downloaded_bytes < {sent} and not job.done:
            time.sleep(0.02)
        started.set()
        print("PATH", job.wait(60), flush=True)
    except nbmodels.NbmodelsError as exc:
        print("ERROR", exc, flush=True)
        started.set()

threading.Thread(target=work, args=({after_main},)).start()  # not a daemon thread
if not {after_main}:
    started.wait(60)
"""


@pytest.mark.parametrize("after_main", [False, True], ids=["running", "starting-after-main"])
def test_a_download_in_a_thread_when_the_main_thread_ends_stops_cleanly(
    engine: _engine.Engine, slow: FaultServer, tmp_path: Path, after_main: bool
) -> None:
    """Thread pools stop when the main thread ends, before other threads are joined: a running
    job stops as at exit; a job submitted after that is refused with a clear error."""
    out = tmp_path / "out"
    code = THREAD_CHILD.format(
        url=slow.url("m.bin"), out=str(out), sent=SENT, after_main=after_main
    )
    proc = _child(tmp_path, "-c", code)
    if after_main:
        assert proc.stderr == ""
        assert proc.stdout.strip() == (
            "ERROR Python is exiting (the main thread has ended), so no download can start. "
            "Wait for downloads before the main thread ends, e.g. with job.wait()."
        )
        assert slow.requests_for("m.bin") == []
    else:
        assert EXIT_LINE.fullmatch(proc.stderr.strip()), proc.stderr
        assert proc.stdout.startswith("ERROR The Python process stopped while this job ran")
        _resumes_from(slow, out / "m.bin", _durable(out / "m.bin"))
