"""``nbmodels.download()`` in terminal IPython (issue 12, item 10): it shows the job's text line,
and waiting for the job draws its progress line — from the user's own (main) thread, inside the
call that waits, never from a background thread — like ``%model_download`` does.

Terminal IPython runs as a subprocess reading its input from a pipe, with stdout a pipe (status
lines, no ``\\r``) or a pseudo-terminal (one line redrawn in place). The file comes from a small
HTTP server on 127.0.0.1 that holds the second half of the body until the test has seen the
progress line, so no assertion depends on speed.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import nbmodels
from nbmodels.engine import _engine
from nbmodels.notebook import _text
from nbmodels.notebook._text import TextProgress
from tests.conftest import payload
from tests.faultserver import FaultServer

ROOT = Path(__file__).resolve().parents[1]
SIZE = 256 * 1024
HALF = SIZE // 2
DATA = payload(SIZE, seed=10)
WAIT = 60.0  # bound of every wait (seconds); never reached unless something is broken


class GatedServer:
    """Serves ``/m.bin`` (with ``Range``): the first half at once, the rest once :meth:`open`."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        gate = self.gate

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                if self.path != "/m.bin":
                    self.send_error(404)
                    return
                start, end = 0, SIZE - 1
                match = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                if match:
                    start = int(match[1])
                    end = min(end, int(match[2])) if match[2] else end
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{SIZE}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(end - start + 1))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", '"m-1"')
                self.end_headers()
                first = min(end + 1, max(start, HALF))
                self.wfile.write(DATA[start:first])
                self.wfile.flush()
                if first <= end:
                    gate.wait(WAIT)
                    self.wfile.write(DATA[first : end + 1])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/m.bin"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def open(self) -> None:
        self.gate.set()

    def __enter__(self) -> GatedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(WAIT)


@pytest.fixture
def gated() -> Iterator[GatedServer]:
    with GatedServer() as server:
        yield server


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class Session:
    """Terminal IPython with stdin a pipe and stdout a pipe or a pseudo-terminal."""

    def __init__(self, *, tty: bool) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "NBMODELS_WIDGETS": "0"}
        argv = [
            sys.executable, "-m", "IPython", "--simple-prompt", "--quick", "--no-banner",
            "--colors=NoColor", "--HistoryManager.enabled=False",
        ]  # fmt: skip
        self._chunks: list[bytes] = []
        self._lock = threading.Lock()
        if tty:
            master, slave = os.openpty()
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=slave, stderr=subprocess.PIPE, env=env
            )
            os.close(slave)
            self._master: int | None = master
            self._reader = threading.Thread(target=self._read_fd, args=(master,), daemon=True)
        else:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
            assert self.proc.stdout is not None
            self._master = None
            fd = self.proc.stdout.fileno()
            self._reader = threading.Thread(target=self._read_fd, args=(fd,), daemon=True)
        self._reader.start()

    def _read_fd(self, fd: int) -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the pseudo-terminal's other end closed
                chunk = b""
            if not chunk:
                return
            with self._lock:
                self._chunks.append(chunk)

    @property
    def out(self) -> str:
        with self._lock:
            return b"".join(self._chunks).decode()

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def finish(self) -> tuple[str, str]:
        """Exit IPython; (stdout, stderr)."""
        self.send("exit")
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.stderr is not None
        err = self.proc.stderr.read().decode()
        assert self.proc.wait(WAIT) == 0, err
        self._reader.join(WAIT)
        return self.out, err

    def kill(self) -> None:
        """Stop IPython (if still running) and close every descriptor."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT)
        self._reader.join(WAIT)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        if self._master is not None:
            os.close(self._master)
            self._master = None


@pytest.fixture
def session_factory() -> Iterator[Callable[..., Session]]:
    started: list[Session] = []

    def start(*, tty: bool) -> Session:
        s = Session(tty=tty)
        started.append(s)
        return s

    yield start
    for s in started:
        s.kill()


def test_download_then_wait_in_terminal_ipython_prints_status_lines_to_a_pipe(
    gated: GatedServer, session_factory: Callable[..., Session], tmp_path: Path
) -> None:
    ipy = session_factory(tty=False)
    out = tmp_path / "out"
    ipy.send("import nbmodels")
    ipy.send(f"job = nbmodels.download({gated.url!r}, dir={str(out)!r}, connections=1)")
    ipy.send("path = job.wait()")
    wait_until(lambda: "m.bin — downloading · " in ipy.out, "the progress line")
    assert "m.bin — completed" not in ipy.out  # the rest of the file is held back
    gated.open()
    ipy.send("print('after', path.name)")
    stdout, stderr = ipy.finish()
    assert "\r" not in stdout and "\x1b[" not in stdout
    lines = stdout.splitlines()
    shown = next(i for i, line in enumerate(lines) if line.startswith("In [2]: m.bin — "))
    assert re.fullmatch(r"In \[2\]: m\.bin — (queued|resolving|downloading) · .*", lines[shown])
    waited = lines[shown + 2 :]
    assert waited[0].startswith("In [3]: m.bin — ")  # drawn by wait(), in the cell's output
    assert "m.bin — downloading · " in "\n".join(waited)
    final = next(line for line in waited if "m.bin — completed" in line)
    assert final.endswith("m.bin — completed · 262.1 kB / 262.1 kB · 100%")
    assert (out / "m.bin").read_bytes() == DATA
    assert "Traceback" not in stderr


def test_the_progress_line_is_redrawn_in_place_on_a_terminal(
    gated: GatedServer, session_factory: Callable[..., Session], tmp_path: Path
) -> None:
    ipy = session_factory(tty=True)
    out = tmp_path / "out"
    ipy.send("import nbmodels")
    ipy.send(f"job = nbmodels.download({gated.url!r}, dir={str(out)!r}, connections=1)")
    ipy.send("path = job.wait()")
    wait_until(lambda: "\rm.bin — downloading · " in ipy.out, "the line drawn in place")
    gated.open()
    ipy.send("print('after', path.name)")
    stdout, _ = ipy.finish()
    tail = stdout[stdout.index("\rm.bin — downloading · ") :]
    drawn = tail[: tail.index("\r\n")]  # the terminal turns each "\n" into "\r\n"
    assert drawn.count("\r") >= 2 and "\n" not in drawn  # redrawn on one line, then ended
    assert drawn.rsplit("\r", 1)[1].startswith("m.bin — completed · 262.1 kB / 262.1 kB")
    assert "after m.bin" in stdout


def test_magic_background_job_draws_progress_when_waited_and_resolve_stays_quiet(
    gated: GatedServer, session_factory: Callable[..., Session], tmp_path: Path
) -> None:
    ipy = session_factory(tty=False)
    ipy.send("%load_ext nbmodels")
    ipy.send(f"job = %model_download -b {gated.url} --dir {tmp_path / 'a'} --connections 1")
    ipy.send("path = job.wait()")
    wait_until(lambda: "m.bin — downloading · " in ipy.out, "the progress line")
    gated.open()
    ipy.send("import nbmodels")
    ipy.send(f"p2 = nbmodels.resolve({gated.url!r}, dir={str(tmp_path / 'b')!r})")
    ipy.send("print('resolved', p2.name)")
    stdout, stderr = ipy.finish()
    lines = stdout.splitlines()
    waited = lines[next(i for i, line in enumerate(lines) if line.startswith("In [3]:")) :]
    assert waited[0].startswith("In [3]: m.bin — ")
    assert any("m.bin — completed" in line for line in waited)
    resolved = next(line for line in lines if line.startswith("In [5]:"))
    assert resolved == "In [5]: "  # resolve() shows no UI (display=False)
    assert "resolved m.bin" in stdout and "Traceback" not in stderr


# -- in-process: the rules of the text line --------------------------------------------------------


def test_waiting_from_another_thread_draws_nothing(
    engine: _engine.Engine,
    server: FaultServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server.add_file("t.bin", payload(1000))
    job = nbmodels.download(server.url("t.bin"), dir=tmp_path / "out", display=False)
    _text.watch(job)
    got: list[Path] = []
    worker = threading.Thread(target=lambda: got.append(_text.wait_with_progress(job, job.wait)))
    worker.start()
    worker.join(WAIT)
    assert got == [tmp_path / "out" / "t.bin"]
    assert capsys.readouterr().out == ""


def test_text_progress_appends_a_line_per_status_off_a_terminal(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("s.bin", payload(1000))
    job = nbmodels.download(server.url("s.bin"), dir=tmp_path / "out", display=False)
    job.wait(30)
    buf = io.StringIO()
    tp = TextProgress([job], stream=buf)  # a StringIO is no terminal
    tp.update()
    tp.update()  # same status: nothing more
    tp.close()
    assert buf.getvalue() == "s.bin — completed · 1.0 kB / 1.0 kB · 100%\n"
