"""Real kernels for the tests and benchmarks: started by a real ``jupyter server`` through its
REST API (``POST /api/kernels``), or by plain jupyter_client with no server, and driven with
jupyter_client's blocking client over the connection file in the runtime directory.

Every call on a client stays on the thread that made it (jupyter_client runs each call on an
event loop of the calling thread, which it never closes): cells that run at the same time are
sent one after the other (:meth:`Kernel.send`) and collected one after the other."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from jupyter_client import BlockingKernelClient, KernelManager

#: Bounds that only turn a hang into a failure (nothing depends on speed).
READY_TIMEOUT = 120.0
RUN_TIMEOUT = 180.0


@dataclass
class Output:
    """What a cell printed (stdout, stderr) and its error, if it raised."""

    stdout: str = ""
    stderr: str = ""
    error: str | None = None

    def lines(self, prefix: str) -> list[str]:
        """The values of the stdout lines ``PREFIX value``."""
        start = prefix + " "
        return [x[len(start) :] for x in self.stdout.splitlines() if x.startswith(start)]

    def value(self, prefix: str) -> str:
        found = self.lines(prefix)
        assert len(found) == 1, (prefix, self)
        return found[0]


@dataclass
class Kernel:
    """One kernel: ``kernel_id`` on a server (``api`` is the server's root URL and token
    header), or a plain jupyter_client kernel (``manager``)."""

    client: BlockingKernelClient
    kernel_id: str | None = None
    api: tuple[str, dict[str, str]] | None = None
    manager: KernelManager | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, code: str, timeout: float = RUN_TIMEOUT) -> Output:
        """Execute ``code`` and collect its output until the kernel is idle again."""
        return self.collect(self.send(code), timeout)

    def send(self, code: str) -> str:
        """Send ``code`` for execution; returns the request's id for :meth:`collect`."""
        with self._lock:
            return str(self.client.execute(code, store_history=False))

    def collect(self, msg_id: str, timeout: float = RUN_TIMEOUT) -> Output:
        """The output of request ``msg_id``, until the kernel is idle after it."""
        with self._lock:
            return _collect(self.client, msg_id, timeout)

    def _rest(self, action: str) -> None:
        assert self.api is not None and self.kernel_id is not None
        root, headers = self.api
        answer = httpx.post(f"{root}api/kernels/{self.kernel_id}/{action}", headers=headers,
                            timeout=READY_TIMEOUT)  # fmt: skip
        answer.raise_for_status()

    def restart(self) -> None:
        """``POST /api/kernels/{id}/restart`` (the same connection file, a new process)."""
        self._rest("restart")
        self.client.wait_for_ready(timeout=READY_TIMEOUT)

    def interrupt(self) -> None:
        """``POST /api/kernels/{id}/interrupt`` (SIGINT: Ctrl-C in the running cell)."""
        self._rest("interrupt")

    def shutdown(self) -> None:
        self.client.stop_channels()
        if self.manager is not None:
            self.manager.shutdown_kernel(now=True)
        elif self.api is not None and self.kernel_id is not None:
            root, headers = self.api
            with contextlib.suppress(httpx.HTTPError):
                httpx.delete(f"{root}api/kernels/{self.kernel_id}", headers=headers, timeout=60)


def _collect(client: BlockingKernelClient, msg_id: str, timeout: float) -> Output:
    out = Output()
    deadline = time.monotonic() + timeout
    while True:
        msg = client.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            if content["name"] == "stdout":
                out.stdout += content["text"]
            else:
                out.stderr += content["text"]
        elif kind == "error":
            out.error = "\n".join(content["traceback"])
        elif kind == "status" and content["execution_state"] == "idle":
            return out


def _client(connection_file: Path) -> BlockingKernelClient:
    client = BlockingKernelClient(connection_file=str(connection_file))
    client.load_connection_file()
    client.start_channels()
    client.wait_for_ready(timeout=READY_TIMEOUT)
    return client


def server_kernel(root: str, headers: Mapping[str, str], runtime_dir: Path) -> Kernel:
    """A kernel started by the server at ``root`` (its URL with the base URL, ending in ``/``)
    through ``POST /api/kernels``, connected through its file in the server's runtime dir."""
    answer = httpx.post(f"{root}api/kernels", headers=dict(headers), json={"name": "python3"},
                        timeout=READY_TIMEOUT)  # fmt: skip
    answer.raise_for_status()
    kernel_id = answer.json()["id"]
    connection = runtime_dir / f"kernel-{kernel_id}.json"
    deadline = time.monotonic() + READY_TIMEOUT
    while not connection.exists():
        assert time.monotonic() < deadline, f"no connection file {connection}"
        time.sleep(0.05)
    return Kernel(_client(connection), kernel_id, (root, dict(headers)))


def plain_kernel(env: Mapping[str, str]) -> Kernel:
    """A kernel started by jupyter_client itself (no server), with ``env``."""
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(env=dict(env))
    client = manager.blocking_client()
    client.start_channels()
    client.wait_for_ready(timeout=READY_TIMEOUT)
    return Kernel(client, manager=manager)


@contextlib.contextmanager
def kernels(make: Any, count: int) -> Iterator[list[Kernel]]:
    """``count`` kernels from ``make()``, shut down at the end."""
    started: list[Kernel] = []
    try:
        for _ in range(count):
            started.append(make())
        yield started
    finally:
        for k in started:
            k.shutdown()
