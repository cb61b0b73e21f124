"""Server-Sent Events: the broadcaster's sampling and queues (pure logic), and, over real
sockets, a client that stops reading: it never blocks the engine or the other clients, its
queue stays bounded, and it is dropped."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

import nbmodels
from nbmodels._progress import JobSnapshot, Progress
from nbmodels.engine import _engine
from nbmodels.server._app import Service, ServiceConfig
from nbmodels.server._auth import Access
from nbmodels.server._events import Broadcaster, Stream
from nbmodels.server._routes import new_service
from tests.conftest import payload
from tests.faultserver import Fault, FaultServer
from tests.servers import EventReader, wait_for

# -- the broadcaster (no I/O) ------------------------------------------------------------------


@dataclass
class FakeJob:
    id: str
    snap: JobSnapshot = field(init=False)

    def __post_init__(self) -> None:
        self.set("queued")

    def set(self, status: str, done: int = 0) -> None:
        self.snap = JobSnapshot(self.id, "ref", status, Progress(done, 100))

    def snapshot(self) -> JobSnapshot:
        return self.snap


def _broadcaster(jobs: list[FakeJob]) -> Broadcaster:
    b = Broadcaster(jobs=lambda: jobs)  # type: ignore[arg-type,return-value]
    b.formatters = {
        "t": lambda job, prev, snap: [(job.id, f"{snap.status}:{snap.progress.downloaded_bytes}")]
    }
    return b


def _attached(b: Broadcaster, max_pending: int = 1024) -> Stream:
    async def attach() -> Stream:
        stream = Stream("t", max_pending)
        b.attach(stream)
        b.detach(stream)  # no polling task: the test scans by hand
        b._streams.add(stream)
        return stream

    return asyncio.run(attach())


def test_one_event_per_job_per_scan_and_the_newest_replaces_the_pending_one() -> None:
    jobs = [FakeJob("a"), FakeJob("b")]
    b = _broadcaster(jobs)
    stream = _attached(b)
    assert stream.take() == ["queued:0", "queued:0"]  # the running jobs, at once
    b._scan()
    assert stream.take() == []  # nothing changed
    for n in range(1, 50):
        jobs[0].set("downloading", n)  # many snapshots between two scans...
    b._scan()
    jobs[0].set("downloading", 60)
    b._scan()  # ...and a slow client that did not take the last one
    assert stream.take() == ["downloading:60"]  # one pending event per job: the newest


def test_a_snapshot_that_changes_nothing_a_channel_shows_sends_no_event() -> None:
    """ARW's payload has no speed: a new snapshot whose only change is the speed (or the ETA)
    would repeat the last event word for word; it is not sent again."""
    jobs = [FakeJob("a")]
    b = _broadcaster(jobs)
    stream = _attached(b)
    assert stream.take() == ["queued:0"]
    jobs[0].set("downloading", 10)
    b._scan()
    assert stream.take() == ["downloading:10"]
    jobs[0].set("downloading", 10)  # a new snapshot (the speed moved), the same event
    b._scan()
    assert stream.take() == []
    jobs[0].set("completed", 100)
    b._scan()
    assert stream.take() == ["completed:100"]
    assert b._sent == {}  # nothing kept for a job that ended


def test_every_terminal_status_is_delivered_and_then_the_job_is_forgotten() -> None:
    jobs = [FakeJob("a")]
    b = _broadcaster(jobs)
    stream = _attached(b)
    stream.take()
    jobs[0].set("downloading", 10)
    jobs[0].set("completed", 100)  # both between two scans
    b._scan()
    assert stream.take() == ["completed:100"]
    b._scan()
    assert stream.take() == [] and "a" in b._ended and "a" not in b._seen


def test_a_client_that_falls_too_far_behind_overflows_and_closes() -> None:
    jobs = [FakeJob(str(i)) for i in range(5)]
    b = _broadcaster(jobs)
    stream = _attached(b, max_pending=3)
    assert stream.overflowed and len(stream.pending) == 3


def test_new_clients_get_running_jobs_only_and_others_get_what_changed_first() -> None:
    done, running = FakeJob("done"), FakeJob("running")
    done.set("completed", 100)
    running.set("downloading", 5)
    jobs = [done, running]
    b = _broadcaster(jobs)
    first = _attached(b)
    assert first.take() == ["downloading:5"]
    running.set("downloading", 7)
    second = _attached(b)  # attaching scans for the clients already there
    assert first.take() == ["downloading:7"] and second.take() == ["downloading:7"]


# -- a client that stops reading, over real sockets --------------------------------------------


@dataclass
class LiveServer:
    url: str
    service: Service
    loop: asyncio.AbstractEventLoop

    def on_loop(self, fn: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(_call(fn), self.loop).result(10)


async def _call(fn: Any) -> Any:
    return fn()


@pytest.fixture
def live(engine: _engine.Engine) -> Iterator[LiveServer]:
    """The standalone app in this process (to look at its queues), on a thread's loop; every
    accepted socket gets a small send buffer, so a client that stops reading fills it soon."""
    import tornado.httpserver
    import tornado.netutil

    from nbmodels.server._standalone import make_app

    config = ServiceConfig(write_timeout=1.0, heartbeat=0.5, max_pending=64)
    service = new_service(config)
    ready = threading.Event()
    holder: dict[str, Any] = {}

    class SmallBuffers(tornado.httpserver.HTTPServer):
        def handle_stream(self, stream: Any, address: Any) -> None:
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            super().handle_stream(stream, address)

    def run() -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        server = SmallBuffers(make_app(service, Access("t")))
        sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
        server.add_sockets(sockets)
        holder.update(loop=loop, server=server, port=sockets[0].getsockname()[1])
        ready.set()
        loop.run_forever()
        loop.run_until_complete(server.close_all_connections())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    ready.wait(10)
    loop = holder["loop"]
    yield LiveServer(f"http://127.0.0.1:{holder['port']}", service, loop)
    loop.call_soon_threadsafe(service.events.close_all)
    loop.call_soon_threadsafe(holder["server"].stop)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_a_client_that_stops_reading_blocks_nothing_and_is_dropped(
    live: LiveServer, server: FaultServer, tmp_path: Path
) -> None:
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(("127.0.0.1", int(live.url.rsplit(":", 1)[1])))
    stuck.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer t\r\n\r\n")
    wait_for(lambda: len(live.on_loop(lambda: live.service.events.streams)) == 1,
             what="the stuck client attached")  # fmt: skip
    (stuck_stream,) = live.on_loop(lambda: live.service.events.streams)
    names = [f"m{i}.bin" for i in range(3)]
    for name in names:
        server.add_file(name, payload(150_000, seed=len(name)))
        server.add_fault(name, Fault.trickle(60_000), times=-1)
    meta = {"note": "x" * 4000}  # large events fill the stuck socket's buffers quickly
    try:
        with EventReader(f"{live.url}/api/events", {"Authorization": "Bearer t"}) as healthy:
            jobs = [
                nbmodels.download(server.url(n), dir=tmp_path / "o", metadata=meta, display=False)
                for n in names
            ]
            sizes: list[int] = []
            for job in jobs:
                job.wait(60)  # the engine is not held up by the client that stopped reading
                sizes.append(live.on_loop(lambda: len(stuck_stream.pending)))
            wait_for(
                lambda: (
                    {e["job_id"] for e in healthy.of("job") if e["status"] == "completed"}
                    == {j.id for j in jobs}
                ),
                what="every final event",
            )
            wait_for(lambda: stuck_stream.closed, what="the stuck client to be dropped")
            assert max(sizes) <= len(jobs)  # at most one pending event per job
            assert live.on_loop(lambda: live.service.events.streams) == [
                s for s in live.on_loop(lambda: live.service.events.streams) if not s.closed
            ]
            assert len(live.on_loop(lambda: live.service.events.streams)) == 1  # the healthy one
            wait_for(lambda: ": keep-alive" in healthy.lines, what="a heartbeat when idle")
        assert healthy.lines[0] == "retry: 3000"
        # The healthy client hung up: its stream goes too (a vanished client costs nothing).
        wait_for(lambda: not live.on_loop(lambda: live.service.events.streams),
                 what="the client that left to be forgotten")  # fmt: skip
    finally:
        stuck.close()


def test_a_real_bug_is_a_500_that_is_logged_without_secrets(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from nbmodels.server import _native

    secret = "hf_" + "s3cr3t" * 6

    def broken() -> None:
        raise RuntimeError(f"boom {secret}")

    monkeypatch.setattr(_native.Index, "get", lambda self: broken())
    answer = httpx.get(f"{live.url}/?token=t")
    assert answer.status_code == 500
    assert answer.json()["error"] == {
        "code": "internal_error",
        "message": "Internal error; the server log has the details.",
        "details": {},
    }
    assert secret not in answer.text
    (record,) = [r for r in caplog.records if "unexpected error" in r.getMessage()]
    assert record.getMessage() == "nbmodels: unexpected error in GET /"  # no query: no token
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError
