"""The parts of a cluster prefetch without Ray: the peer server (real HTTP on 127.0.0.1), the
coordinator's decisions (pure logic), and several nodes' runs in one process, each with its
own folder and peer server, against the Hub emulator: one Hub transfer per file, a peer that
dies mid-way (another peer, else the Hub, resuming the partial data), one error for all."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from nbmodels._options import Options
from nbmodels.cluster._coordinator import Coordinator
from nbmodels.cluster._node import LocalLink, NodeRun
from nbmodels.cluster._peer import PeerServer, Served
from nbmodels.refs import parse_ref
from nbmodels.sources import HubListing, SourceContext, list_hf
from nbmodels.testing import Fault, GeneratedFile, HubEmulator
from nbmodels.transfer import make_client
from tests.conftest import FAST

SECRET = "s3cret-for-this-prefetch"

# -- the peer server ------------------------------------------------------------------------------


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[tuple[PeerServer, bytes]]:
    data = bytes(range(256)) * 40  # 10240 bytes
    blob = tmp_path / "blob"
    blob.write_bytes(data)
    server = PeerServer("127.0.0.1", SECRET)
    server.add("ab" * 32, Served(blob, len(data), '"v1"'))
    yield server, data
    server.stop()


def _get(url: str, **headers: str) -> httpx2.Response:
    with httpx2.Client() as client:
        return client.get(url, headers=headers)


def test_peer_serves_a_verified_file_only_with_the_secret(peer: tuple[PeerServer, bytes]) -> None:
    server, data = peer
    url = server.blob_url("ab" * 32)
    assert url.startswith("http://127.0.0.1:")
    assert _get(url).status_code == 401
    assert _get(url, Authorization="Bearer nope").status_code == 401
    assert _get(url, Authorization=f"Basic {SECRET}").status_code == 401
    ok = _get(url, Authorization=f"Bearer {SECRET}")
    assert ok.status_code == 200 and ok.content == data
    assert ok.headers["ETag"] == '"v1"' and ok.headers["Accept-Ranges"] == "bytes"
    assert "Content-Encoding" not in ok.headers
    # Only what was added: another blob name, or anything else, is a 404.
    assert _get(server.blob_url("cd" * 32), Authorization=f"Bearer {SECRET}").status_code == 404
    assert _get(server.url + "/etc/passwd", Authorization=f"Bearer {SECRET}").status_code == 404


def test_peer_answers_exactly_the_range_asked_for(peer: tuple[PeerServer, bytes]) -> None:
    server, data = peer
    url, auth = server.blob_url("ab" * 32), f"Bearer {SECRET}"
    part = _get(url, Authorization=auth, Range="bytes=100-199")
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(data)}"
    rest = _get(url, Authorization=auth, Range="bytes=10000-", **{"If-Range": '"v1"'})
    assert rest.status_code == 206 and rest.content == data[10000:]
    # Another validator: the asker's bytes are of another object, so the whole file.
    stale = _get(url, Authorization=auth, Range="bytes=10-", **{"If-Range": '"v0"'})
    assert stale.status_code == 200 and stale.content == data
    past = _get(url, Authorization=auth, Range=f"bytes={len(data)}-")
    assert past.status_code == 416 and past.headers["Content-Range"] == f"bytes */{len(data)}"
    with httpx2.Client() as client:
        head = client.head(url, headers={"Authorization": auth})
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data))


def test_peer_refuses_answers_beyond_its_cap(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"x" * 100)
    server = PeerServer("127.0.0.1", SECRET, uploads=0)
    try:
        server.add("ab" * 32, Served(blob, 100, '"v"'))
        busy = _get(server.blob_url("ab" * 32), Authorization=f"Bearer {SECRET}")
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
    finally:
        server.stop()


def test_a_node_serves_every_connection_its_downloaders_may_open(tmp_path: Path) -> None:
    """A node's server answers as many requests at once as ``uploads_per_peer`` downloads may
    open (each up to 64 connections). It once refused the 17th with a 503: a downloader with
    one connection then gave that healthy peer up, for every node, and went to the Hub."""
    import socket

    from nbmodels.cluster._agent import NodeAgent

    blob = tmp_path / "blob"
    blob.write_bytes(b"x" * 100_000)
    agent = NodeAgent("n", SECRET, host="127.0.0.1", uploads_per_peer=3, peer_rate=1000)
    server = agent._peer_server()  # slow answers: every request below stays in flight
    server.add("ab" * 32, Served(blob, 100_000, '"v"'))
    host, port = server.url.removeprefix("http://").split(":")
    request = (
        f"GET /blobs/{'ab' * 32} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {SECRET}\r\n\r\n"
    ).encode()
    sockets = []
    try:
        for _ in range(3 * 64):
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.sendall(request)
            sockets.append(sock)
        statuses = [sock.recv(12).decode().split(" ")[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
        server.stop()
    assert set(statuses) == {"200"}


def test_a_stopped_peer_refuses_connections(peer: tuple[PeerServer, bytes]) -> None:
    server, _ = peer
    url = server.blob_url("ab" * 32)
    server.stop()
    with pytest.raises(httpx2.ConnectError):
        _get(url, Authorization=f"Bearer {SECRET}")


# -- the coordinator (pure logic) -----------------------------------------------------------------


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_the_first_asker_seeds_a_file_and_the_others_wait_for_it() -> None:
    async def go() -> None:
        c = Coordinator(uploads_per_peer=1)
        assert (await c.acquire("a", "f1", wait=0)).kind == "hub"
        assert (await c.acquire("b", "f1", wait=0)).kind == "wait"
        assert (await c.acquire("b", "f2", wait=0)).kind == "hub"  # another file: another seed
        assert (await c.acquire("a", "f1", wait=0)).kind == "hub"  # the seed asks again
        waiting = asyncio.ensure_future(c.acquire("c", "f1", wait=5))
        await asyncio.sleep(0)
        assert await c.validator("f1", '"cdn"') == '"cdn"'
        await c.verified("a", "f1", "http://a/blobs/f1")
        got = await waiting
        assert (got.kind, got.url, got.node, got.validator) == (
            "peer",
            "http://a/blobs/f1",
            "a",
            '"cdn"',
        )
        # a serves one at a time: b waits until c is done, then gets a or c.
        assert (await c.acquire("b", "f1", wait=0)).kind == "wait"
        assert await c.validator("f1", '"other"') == '"cdn"'  # the first one stays
        await c.verified("c", "f1", "http://c/blobs/f1")
        assert (await c.acquire("b", "f1", wait=0)).url in (
            "http://a/blobs/f1",
            "http://c/blobs/f1",
        )

    _run(go())


def test_a_failed_source_is_forgotten_and_the_hub_is_the_last_resort() -> None:
    async def go() -> None:
        c = Coordinator(uploads_per_peer=2)
        assert await c.validator("f1", None) == '"f1"'  # from disk only: the quoted etag
        await c.verified("a", "f1", "http://a/blobs/f1")
        await c.verified("a", "f2", "http://a/blobs/f2")
        await c.verified("d", "f1", "http://d/blobs/f1")
        first = await c.acquire("b", "f1", wait=0)
        assert first.kind == "peer" and first.validator == '"f1"'
        await c.source_failed("b", "f1", first.url or "")
        second = await c.acquire("b", "f1", wait=0)
        assert second.kind == "peer" and second.node != first.node
        await c.source_failed("b", "f1", second.url or "")
        assert (await c.acquire("b", "f1", wait=0)).kind == "hub"
        # a's server is gone for every file it served
        assert (await c.acquire("b", "f2", wait=0)).kind == ("hub" if first.node == "a" else "peer")

    _run(go())


def test_no_node_seeds_a_file_before_every_node_said_what_it_holds() -> None:
    async def go() -> None:
        c = Coordinator(["a", "b", "c"])
        assert (await c.acquire("a", "f1", wait=0)).kind == "wait"
        await c.ready("a")
        await c.node_lost("c")  # gone before it said: not waited for
        assert (await c.acquire("a", "f1", wait=0)).kind == "wait"
        await c.validator("f1", None)
        await c.verified("b", "f1", "http://b/blobs/f1")  # b had it
        await c.ready("b")
        assert (await c.acquire("a", "f1", wait=0)).kind == "peer"
        assert (await c.acquire("a", "f2", wait=0)).kind == "hub"

    _run(go())


def test_a_lost_node_gives_up_its_seeds_and_a_restarted_one_keeps_them() -> None:
    async def go() -> None:
        c = Coordinator()
        assert (await c.acquire("a", "f1", wait=0)).kind == "hub"
        await c.hello("a")  # a's worker restarted: still the seed (it resumes)
        assert (await c.acquire("b", "f1", wait=0)).kind == "wait"
        await c.node_lost("a")
        assert (await c.acquire("b", "f1", wait=0)).kind == "hub"

    _run(go())


def test_a_seed_error_every_node_would_meet_is_told_to_all() -> None:
    async def go() -> None:
        c = Coordinator()
        assert (await c.acquire("a", "f1", wait=0)).kind == "hub"
        await c.file_failed("a", "f1", "network trouble", False)
        assert (await c.acquire("b", "f1", wait=0)).kind == "hub"  # b tries the Hub itself
        await c.file_failed("b", "f1", "f1 does not exist", True)
        got = await c.acquire("c", "f1", wait=0)
        assert (got.kind, got.error) == ("fail", "f1 does not exist")

    _run(go())


def test_leases_end_with_the_run_that_took_them() -> None:
    async def go() -> None:
        c = Coordinator(uploads_per_peer=1)
        await c.verified("a", "f1", "http://a/blobs/f1")
        assert (await c.acquire("b", "f1", wait=0)).kind == "peer"
        assert (await c.acquire("c", "f1", wait=0)).kind == "wait"
        await c.hello("b")  # b's worker died and came back: its download from a is over
        assert (await c.acquire("c", "f1", wait=0)).kind == "peer"

    _run(go())


def test_a_question_of_a_run_that_is_over_takes_no_lease() -> None:
    async def go() -> None:
        c = Coordinator(uploads_per_peer=1)
        assert (await c.acquire("a", "f1", 0)).kind == "hub"
        await c.hello("b", "run1")
        stale = asyncio.ensure_future(c.acquire("b", "f1", 5, "run1"))
        await asyncio.sleep(0)
        await c.hello("b", "run2")  # b paused and resumed: run1 is over
        await c.verified("a", "f1", "http://a/blobs/f1")
        assert (await stale).kind == "wait"
        got = await c.acquire("b", "f1", 0, "run2")
        assert got.kind == "peer"  # a's one upload was not taken by the stale question

    _run(go())


def test_progress_rows_stream_to_a_waiting_reader() -> None:
    async def go() -> None:
        c = Coordinator()
        version, data = await c.updates(0, wait=0)
        reader = asyncio.ensure_future(c.updates(version, wait=5))
        await asyncio.sleep(0)
        assert not reader.done()
        await c.report("a", {"status": "downloading"})
        newer, data = await reader
        assert newer > version and data["rows"] == {"a": {"status": "downloading"}}

    _run(go())


# -- several nodes in one process -----------------------------------------------------------------

#: Below the transfer's fast-path threshold (4 MiB): a transfer is one GET (and its retries),
#: so the Hub's log counts exactly the bytes it moved.
SIZE = 3_000_000


def _listing(hub: HubEmulator, ref: str) -> HubListing:
    async def go() -> HubListing:
        client = make_client(FAST)
        try:
            return await list_hf(parse_ref(ref), Options(), SourceContext(client, FAST))
        finally:
            await client.aclose()

    return _run(go())


class Nodes:
    """``n`` nodes in this process: each its own folder (``dir=``) and peer server."""

    def __init__(self, root: Path, n: int, *, rate: int | None = None, uploads: int = 2) -> None:
        self.dirs = [root / f"node{i}" for i in range(n)]
        self.servers = [
            PeerServer("127.0.0.1", SECRET, uploads=uploads, rate=rate) for _ in range(n)
        ]
        self.uploads = uploads
        self.coordinator = Coordinator()
        self.runs: list[NodeRun] = []

    def start(self, listing: HubListing, which: list[int], **options: Any) -> list[NodeRun]:
        """The runs of nodes ``which``, with a new coordinator that expects them."""
        self.coordinator = Coordinator([f"node{i}" for i in which], self.uploads)
        self.runs = [
            NodeRun(
                f"node{i}",
                listing,
                Options.create(dir=self.dirs[i], **options),
                LocalLink(self.coordinator),
                self.servers[i],
                secret=SECRET,
                settings=FAST,
            )
            for i in which
        ]
        return self.runs

    def run(self, listing: HubListing, which: list[int], **options: Any) -> list[Any]:
        async def go() -> list[Any]:
            runs = self.start(listing, which, **options)
            return list(await asyncio.gather(*(r.run() for r in runs)))

        return _run(go())

    def close(self) -> None:
        for server in self.servers:
            server.stop()


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Callable[..., Nodes]]:
    made: list[Nodes] = []

    def make(n: int, **kwargs: Any) -> Nodes:
        made.append(Nodes(tmp_path, n, **kwargs))
        return made[-1]

    yield make
    for group in made:
        group.close()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hub_bytes(hub: HubEmulator, name: str) -> int:
    return sum(r.bytes_sent for r in hub.requests if r.method == "GET" and r.file_path == name)


def test_every_node_gets_each_file_and_the_hub_serves_each_once(
    hub: HubEmulator, nodes: Callable[..., Nodes]
) -> None:
    big, small = GeneratedFile(SIZE, seed=11), b'{"model_type": "llama"}\n'
    hub.add_repo("org/shared", {"model.bin": big, "config.json": small})
    listing = _listing(hub, "hf:org/shared")
    group = nodes(4)
    outcomes = group.run(listing, [0, 1, 2, 3])
    assert [o["status"] for o in outcomes] == ["completed"] * 4, [o["error"] for o in outcomes]
    for d in group.dirs:
        assert _sha(d / "model.bin") == big.sha256
        assert (d / "config.json").read_bytes() == small
    assert _hub_bytes(hub, "model.bin") == SIZE
    assert _hub_bytes(hub, "config.json") == len(small)
    assert sum(o["hub_bytes"] for o in outcomes) == SIZE + len(small)
    assert sum(o["peer_bytes"] for o in outcomes) == 3 * (SIZE + len(small))
    # Peers were asked with the secret; the Hub never saw it.
    assert not any(SECRET in str(r.headers.pairs()) for r in hub.requests)


def _run_until(
    group: Nodes,
    listing: HubListing,
    which: list[int],
    *,
    when: Callable[[], bool],
    then: Callable[[], None],
) -> list[Any]:
    """Run nodes ``which``; once ``when()`` holds (checked on the loop), call ``then()``."""

    async def go() -> list[Any]:
        tasks = [asyncio.ensure_future(r.run()) for r in group.start(listing, which)]
        for _ in range(3000):
            if when():
                await asyncio.to_thread(then)
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the condition never held")
        return list(await asyncio.gather(*tasks))

    return _run(go())


def test_a_peer_that_dies_mid_way_is_replaced_by_another_and_the_bytes_resume(
    hub: HubEmulator, nodes: Callable[..., Nodes]
) -> None:
    data = GeneratedFile(SIZE, seed=12)
    hub.add_repo("org/twopeers", {"model.bin": data})
    listing = _listing(hub, "hf:org/twopeers")
    group = nodes(3, rate=250_000, uploads=1)  # per connection: a transfer takes a while
    assert [o["status"] for o in group.run(listing, [0])] == ["completed"]
    assert [o["status"] for o in group.run(listing, [1])] == ["completed"]
    hub.clear_log()
    used: list[int] = []

    def started() -> bool:
        if len(group.runs) < 3:
            return False
        fetcher = group.runs[2]
        peers = [s for s in fetcher.tally.sources if s.startswith("peer ")]
        if peers and fetcher.tally.downloaded > 0:
            used.append(int(peers[0].removeprefix("peer node")))
            return True
        return False

    outcomes = _run_until(
        group, listing, [0, 1, 2], when=started, then=lambda: group.servers[used[0]].stop()
    )
    assert outcomes[2]["status"] == "completed", outcomes
    assert _sha(group.dirs[2] / "model.bin") == data.sha256
    other = group.servers[1 - used[0]]
    assert 0 < other.bytes_sent < SIZE  # the rest only: the partial data was resumed
    assert outcomes[2]["sources"] == ["peer node0", "peer node1"]
    assert _hub_bytes(hub, "model.bin") == 0


def test_when_the_only_peer_dies_the_hub_serves_the_rest(
    hub: HubEmulator, nodes: Callable[..., Nodes]
) -> None:
    data = GeneratedFile(SIZE, seed=13)
    hub.add_repo("org/onepeer", {"model.bin": data})
    listing = _listing(hub, "hf:org/onepeer")
    group = nodes(2, rate=250_000)
    group.run(listing, [0])
    hub.clear_log()

    def started() -> bool:
        return len(group.runs) == 2 and group.runs[1].tally.downloaded > 0

    outcomes = _run_until(group, listing, [0, 1], when=started, then=group.servers[0].stop)
    assert outcomes[1]["status"] == "completed", outcomes
    assert _sha(group.dirs[1] / "model.bin") == data.sha256
    # The Hub was asked for the missing ranges only, with the peer's validator (the Hub's).
    gets = [r for r in hub.requests if r.method == "GET" and r.file_path == "model.bin"]
    assert any(r.headers.get("if-range") == f'"{data.sha256}"' for r in gets)
    assert 0 < _hub_bytes(hub, "model.bin") < SIZE


def test_a_seed_error_every_node_would_meet_fails_them_all_with_one_hub_transfer(
    hub: HubEmulator, nodes: Callable[..., Nodes]
) -> None:
    hub.add_repo("org/corrupt", {"model.bin": GeneratedFile(SIZE, seed=14)})
    listing = _listing(hub, "hf:org/corrupt")
    hub.faults.add(Fault("corrupt", times=None, origin="cdn"))
    group = nodes(3)
    outcomes = group.run(listing, [0, 1, 2])
    assert [o["status"] for o in outcomes] == ["failed"] * 3
    assert len({o["error"] for o in outcomes}) == 1
    assert "sha256" in outcomes[0]["error"].lower()
    assert _hub_bytes(hub, "model.bin") == SIZE
    for d in group.dirs:
        assert not (d / "model.bin").exists()


def test_a_node_that_holds_the_file_moves_nothing_and_serves_it(
    hub: HubEmulator, nodes: Callable[..., Nodes]
) -> None:
    data = GeneratedFile(SIZE, seed=15)
    hub.add_repo("org/held", {"model.bin": data})
    listing = _listing(hub, "hf:org/held")
    group = nodes(2)
    group.run(listing, [0])
    hub.clear_log()
    outcomes = group.run(listing, [0, 1])
    assert outcomes[0]["status"] == "already_downloaded"
    assert (outcomes[0]["hub_bytes"], outcomes[0]["peer_bytes"]) == (0, 0)
    assert outcomes[1]["status"] == "completed" and outcomes[1]["sources"] == ["peer node0"]
    assert _hub_bytes(hub, "model.bin") == 0
    assert _sha(group.dirs[1] / "model.bin") == data.sha256


def test_nothing_imports_ray_until_a_prefetch_runs() -> None:
    """Ray is optional: the cluster package, and the CLI and magic that offer --cluster, import
    without it (it is imported by the first prefetch)."""
    import subprocess
    import sys

    code = (
        "import importlib, pkgutil, sys, nbmodels, nbmodels.cluster\n"
        "for m in pkgutil.walk_packages(nbmodels.cluster.__path__, 'nbmodels.cluster.'):\n"
        "    importlib.import_module(m.name)\n"
        "import nbmodels.cli._main, nbmodels.notebook._magic\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ray'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_node_that_fails_before_saying_what_it_holds_holds_nobody_up(
    hub: HubEmulator, nodes: Callable[..., Nodes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No file is seeded before every node said what it holds; a node whose run ends before
    (here: its plan fails) has said all it will, and the others go on."""
    from nbmodels.cluster import _node
    from nbmodels.errors import NbmodelsError

    hub.add_repo("org/early", {"model.bin": GeneratedFile(SIZE, seed=17)})
    listing = _listing(hub, "hf:org/early")
    group = nodes(2)
    real = _node.plan_listing

    async def failing(listing: HubListing, options: Options, ctx: SourceContext) -> Any:
        if options.dir == group.dirs[0]:
            raise NbmodelsError("node0's disk is gone")
        return await real(listing, options, ctx)

    monkeypatch.setattr(_node, "plan_listing", failing)

    async def go() -> list[Any]:
        async with asyncio.timeout(30):
            return list(await asyncio.gather(*(r.run() for r in group.start(listing, [0, 1]))))

    outcomes = _run(go())
    assert [o["status"] for o in outcomes] == ["failed", "completed"]
    assert outcomes[0]["error"] == "node0's disk is gone"

