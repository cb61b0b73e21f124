"""Real service processes for the tests: ``nbmodels serve`` and ``jupyter server`` (with the
nbmodels extension, enabled by the installed data file) on free 127.0.0.1 ports, each with its
own ``NBMODELS_HOME``, Hugging Face cache and Jupyter dirs, stopped (SIGTERM, then SIGKILL of its
process group) by the test that started it."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TOKEN = "test-token-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def service_env(tmp: Path, endpoint: str, **extra: str) -> dict[str, str]:
    """The environment of a server process: isolated homes, the emulator as the Hub, short
    waits (the failure paths of the tests end quickly; nothing depends on speed)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "HF_HUB_CACHE")
    }
    env.update(
        NBMODELS_HOME=str(tmp / "nbhome"),
        HF_HOME=str(tmp / "hfhome"),
        HF_ENDPOINT=endpoint,
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_XET="1",
        NBMODELS_CHECKPOINT_INTERVAL="0.1",
        NBMODELS_BACKOFF_BASE="0.05",
        NBMODELS_MAX_ATTEMPTS="3",
        NBMODELS_READ_TIMEOUT="5",
        JUPYTER_CONFIG_DIR=str(tmp / "jupyter" / "config"),
        JUPYTER_DATA_DIR=str(tmp / "jupyter" / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp / "jupyter" / "runtime"),
        IPYTHONDIR=str(tmp / "ipython"),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass
class ServiceProcess:
    """A running server: ``base`` is the mount point's URL (no trailing slash)."""

    kind: str
    proc: subprocess.Popen[str]
    base: str
    token: str
    home: Path
    hf_home: Path
    output: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def url(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(headers=self.headers, timeout=30, **kwargs)  # type: ignore[arg-type]

    def log_text(self) -> str:
        return "".join(self.output)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        """Signal the process, wait, and kill its process group if anything is left."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        code = self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code


def _pump(proc: subprocess.Popen[str], sink: list[str], found: threading.Event) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        sink.append(line)
        if "listening on" in line or "nbmodels: download service at" in line:
            found.set()
    found.set()


def _start(
    kind: str, args: list[str], env: Mapping[str, str], wait: float
) -> tuple[subprocess.Popen[str], list[str], threading.Thread]:
    proc = subprocess.Popen(
        args,
        env=dict(env),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: list[str] = []
    found = threading.Event()
    reader = threading.Thread(target=_pump, args=(proc, output, found), daemon=True)
    reader.start()
    if not found.wait(wait) or proc.poll() is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
        reader.join(5)
        assert proc.stdout is not None
        proc.stdout.close()
        raise RuntimeError(f"{kind} did not start:\n{''.join(output)[-3000:]}")
    return proc, output, reader


def start_standalone(
    tmp: Path, endpoint: str, *extra_args: str, token: str | None = TOKEN, port: int = 0,
    env: Mapping[str, str] | None = None,
) -> ServiceProcess:  # fmt: skip
    """``nbmodels serve`` on a free port (``port=0``), its URL read from what it prints."""
    args = [str(BIN / "nbmodels"), "serve", "--port", str(port), *extra_args]
    if token is not None:
        args += ["--token", token]
    proc, output, reader = _start("nbmodels serve", args, env or service_env(tmp, endpoint), 60)
    line = next(x for x in output if "listening on" in x)
    match = re.search(r"(http://\S+?)/(?:\?token=(\S+))?$", line.strip())
    assert match is not None, line
    return ServiceProcess(
        "standalone",
        proc,
        match.group(1),
        token or match.group(2),
        tmp / "nbhome",
        tmp / "hfhome",
        output,
        reader,
    )


def start_jupyter(tmp: Path, endpoint: str, base_url: str = "/jp/") -> ServiceProcess:
    """``jupyter server`` with only its installed config: the nbmodels extension is enabled
    by the data file the package installs, not by anything here."""
    port = free_port()
    (tmp / "root").mkdir(parents=True, exist_ok=True)
    args = [
        str(BIN / "jupyter"), "server", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}", "--allow-root",
        f"--ServerApp.base_url={base_url}", f"--ServerApp.root_dir={tmp / 'root'}",
    ]  # fmt: skip
    proc, output, reader = _start("jupyter server", args, service_env(tmp, endpoint), 90)
    base = f"http://127.0.0.1:{port}{base_url}nbmodels"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/", headers={"Authorization": f"token {TOKEN}"}).is_success:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            reader.join(5)
            assert proc.stdout is not None
            proc.stdout.close()
            raise RuntimeError(f"jupyter server is not answering:\n{''.join(output)[-3000:]}")
        time.sleep(0.2)
    return ServiceProcess(
        "jupyter", proc, base, TOKEN, tmp / "nbhome", tmp / "hfhome", output, reader
    )


@contextlib.contextmanager
def running(server: ServiceProcess) -> Iterator[ServiceProcess]:
    try:
        yield server
    finally:
        server.stop()


def wait_for(predicate: object, *, what: str, timeout: float = 60.0) -> None:
    """Poll ``predicate()`` until true (bounded; the bound only turns a hang into a failure)."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class EventReader:
    """A real streaming client of an SSE endpoint, reading on a thread into ``events``
    (``(event name, decoded JSON)``); ``lines`` keeps every raw line (``retry:``, comments)."""

    def __init__(self, url: str, headers: Mapping[str, str]) -> None:
        self.events: list[tuple[str, dict[str, object]]] = []
        self.lines: list[str] = []
        self.status: int | None = None
        self.response_headers: dict[str, str] = {}
        self._client = httpx.Client(timeout=httpx.Timeout(10, read=None))
        self._response: httpx.Response | None = None
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, dict(headers)), daemon=True)
        self._thread.start()
        if not self._connected.wait(30):
            raise AssertionError(f"no answer from {url}")

    def _run(self, url: str, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                self._response = response
                self.status = response.status_code
                self.response_headers = dict(response.headers)
                self._connected.set()
                name = "message"
                for line in response.iter_lines():
                    self.lines.append(line)
                    if line.startswith("event:"):
                        name = line[6:].strip()
                    elif line.startswith("data:"):
                        import json

                        self.events.append((name, json.loads(line[5:])))
                    elif not line:
                        name = "message"
        except (httpx.HTTPError, RuntimeError, ValueError):
            pass
        finally:
            self._connected.set()

    def of(self, name: str) -> list[dict[str, object]]:
        return [data for event, data in self.events if event == name]

    def close(self) -> None:
        """Hang up: shut the socket down under the reading thread (closing the client alone
        would leave that thread blocked in its read)."""
        response = self._response
        stream = None if response is None else response.extensions.get("network_stream")
        sock = None if stream is None else stream.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)
        self._client.close()

    def __enter__(self) -> EventReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
