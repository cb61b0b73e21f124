"""Hostile and broken servers against the download contract (docs/download-contract.md, issue 6).

Every test runs real HTTP on 127.0.0.1: :class:`tests.faultserver.FaultServer` for plain URLs,
and :class:`Scripted` (below) where a test must write the answers itself — a hostile Hub API,
TLS, requests held at a gate. Each case states the behaviour the contract promises: retry, restart
from zero, or one clear error; byte-exact results when it succeeds; nothing published when it fails;
bounded time and requests; no token off its origin; no secret in a message, log, file or
registry row.

Waits have lower bounds only (and generous upper bounds that no correct run comes near).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import random
import re
import shutil
import ssl
import subprocess
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

import nbmodels
from nbmodels.engine import _engine
from nbmodels.net import tls_context
from nbmodels.transfer import partial_paths
from tests.conftest import FAST, installed_engine, payload
from tests.faultserver import Fault, FaultServer, Request, http_date

MIB = 1 << 20
#: One connection (below the automatic parallel threshold), odd so no boundary is round.
SIZE = 1_000_003
#: Big enough for the parallel fast path (parts >= 4 MiB go through _rawbody).
BIG = 12 * MIB + 4099
SIGNATURE = "S1gnedQueryValueThatMustNeverLeak"
SIGNED_QUERY = f"X-Amz-Signature={SIGNATURE}&X-Amz-Credential=AKIAEXAMPLE"
TOKEN = "hf_HostileTestToken0123456789abcdef"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


# ------------------------------------------------------------------------------------------
# helpers


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def range_start(req: Request) -> int:
    m = _RANGE.fullmatch(req.range or "")
    return int(m.group(1)) if m else 0


def leftovers(directory: Path) -> list[str]:
    """Hidden files beside the targets (partial data, state, temp files)."""
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".") and p.is_file())


def tree(root: Path) -> set[str]:
    """Every entry under ``root`` (files, dirs, symlinks; symlinks not followed)."""
    out: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, name), root))
    return out


def new_entries_outside(root: Path, before: set[str], allowed: Iterable[str]) -> list[str]:
    """Entries created under ``root`` since ``before`` that are not below an allowed prefix."""
    allowed = tuple(a.rstrip("/") for a in allowed)
    out = []
    for rel in sorted(tree(root) - before):
        if not any(rel == a or rel.startswith(a + os.sep) for a in allowed):
            out.append(rel)
    return out


def secrets_in_files(root: Path, needles: Iterable[str]) -> list[str]:
    hits = []
    for dirpath, _dirs, files in os.walk(root, followlinks=False):
        for name in files:
            p = Path(dirpath) / name
            if p.is_symlink():
                continue
            try:
                data = p.read_bytes()
            except OSError:
                continue
            hits += [f"{p}: {n}" for n in needles if n.encode() in data]
    return hits


def assert_no_secret(
    root: Path, *texts: object, needles: Iterable[str] = (SIGNATURE, TOKEN)
) -> None:
    """No secret in any file under ``root`` (registry, state, records...) nor in ``texts``."""
    nbmodels.history()  # the registry is written and read back
    needles = list(needles)
    assert secrets_in_files(root, needles) == []
    for text in texts:
        for n in needles:
            assert n not in str(text), f"{n!r} leaked into {str(text)[:200]!r}"


def out_of(tmp_path: Path) -> Path:
    return tmp_path / "out"


def get(url: str, tmp_path: Path, **opts: Any) -> nbmodels.Job:
    opts.setdefault("dir", out_of(tmp_path))
    return nbmodels.download(url, **opts)


def expect_error(job: nbmodels.Job, kind: type[BaseException], timeout: float = 60) -> Any:
    with pytest.raises(kind) as info:
        job.wait(timeout)
    assert job.status == "failed"
    return info.value


def custom_engine(**changes: Any) -> contextlib.AbstractContextManager[_engine.Engine]:
    """An engine with FAST settings changed (and installed as the process-wide one)."""
    return installed_engine(dataclasses.replace(FAST, **changes))


class Snapshots:
    """Every progress snapshot of a job (thread-safe)."""

    def __init__(self, job: nbmodels.Job) -> None:
        self.seen: list[nbmodels.JobSnapshot] = []
        self._lock = threading.Lock()
        job.subscribe(self._add)

    def _add(self, snap: nbmodels.JobSnapshot) -> None:
        with self._lock:
            self.seen.append(snap)

    def downloaded(self) -> list[int]:
        with self._lock:
            return [s.progress.downloaded_bytes for s in self.seen]


# -- a server whose answers the test writes ------------------------------------------------


@dataclass
class Seen:
    """One request as the scripted server saw it."""

    method: str
    path: str  # still percent-encoded, without the query
    query: str
    headers: dict[str, str]  # lower-case names
    body: bytes
    sent: int = 0  # body bytes written


@dataclass
class Answer:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


class Scripted:
    """A small threaded HTTP/1.1 server (optionally TLS) answering ``app(seen)``."""

    def __init__(
        self, app: Callable[[Seen], Answer], *, tls: tuple[Path, Path] | None = None
    ) -> None:
        self.app = app
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path, _, query = self.path.partition("?")
                seen = Seen(
                    self.command,
                    path,
                    query,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                with outer._lock:
                    outer.seen.append(seen)
                answer = outer.app(seen)
                self.send_response(answer.status)
                names = {k.lower() for k, _v in answer.headers}
                for k, v in answer.headers:
                    self.send_header(k, v)
                if "content-length" not in names:
                    self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                view = memoryview(answer.body)
                try:
                    for i in range(0, len(view), 1 << 16):
                        chunk = view[i : i + (1 << 16)]
                        seen.sent += len(chunk)
                        self.wfile.write(chunk)
                except OSError:
                    self.close_connection = True

            do_GET = do_POST = do_HEAD = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.port: int = self.httpd.server_address[1]
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def requests(self, prefix: str = "") -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.path.startswith(prefix)]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> Scripted:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def file_answer(seen: Seen, data: bytes, *, etag: str | None = '"v1"') -> Answer:
    """A correct file answer: 206 for a satisfiable range (If-Range honoured), else 200."""
    headers = [("Accept-Ranges", "bytes"), ("Content-Type", "application/octet-stream")]
    if etag:
        headers.append(("ETag", etag))
    rng, if_range = seen.headers.get("range"), seen.headers.get("if-range")
    m = _RANGE.fullmatch(rng or "")
    if m and (if_range is None or if_range == etag):
        start = int(m.group(1))
        end = min(int(m.group(2)) if m.group(2) else len(data) - 1, len(data) - 1)
        if start >= len(data):
            return Answer(416, [("Content-Range", f"bytes */{len(data)}")])
        return Answer(
            206,
            [*headers, ("Content-Range", f"bytes {start}-{end}/{len(data)}")],
            data[start : end + 1],
        )
    return Answer(200, headers, data)


def json_answer(value: object, *, headers: Iterable[tuple[str, str]] = ()) -> Answer:
    return Answer(200, [("Content-Type", "application/json"), *headers], json.dumps(value).encode())


def hub_entry(path: str, data: bytes, *, lfs: bool = True) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "file", "path": path, "size": len(data), "oid": git_sha1(data)}
    if lfs:
        entry["lfs"] = {"oid": sha256(data), "size": len(data), "pointerSize": 130}
    return entry


class HostileHub:
    """A Hub endpoint for the repo ``o/r`` whose every answer a test can replace.

    Defaults answer like the Hub: the commit, the tree / paths-info listing of ``files``,
    and ``/o/r/resolve/<commit>/<path>`` with the bytes (ranges honoured). ``routes`` maps a
    path prefix to a replacement answer.
    """

    def __init__(self, files: dict[str, bytes], *, tls: tuple[Path, Path] | None = None) -> None:
        self.files = files
        self.sha: object = COMMIT
        self.entries: list[Any] = [hub_entry(p, d) for p, d in files.items()]
        self.link: str | None = None
        self.routes: dict[str, Callable[[Seen], Answer]] = {}
        self.server = Scripted(self.app, tls=tls)
        self.url = self.server.url

    def app(self, seen: Seen) -> Answer:
        for prefix, fn in self.routes.items():
            if seen.path.startswith(prefix):
                return fn(seen)
        p = seen.path
        if p == "/api/models/o/r" or p.startswith("/api/models/o/r/revision/"):
            return json_answer({"id": "o/r", "sha": self.sha})
        if p.startswith(("/api/models/o/r/tree/", "/api/models/o/r/paths-info/")):
            extra = [("Link", f'<{self.link}>; rel="next"')] if self.link else []
            return json_answer(self.entries, headers=extra)
        if p.startswith("/o/r/resolve/"):
            rel = unquote(p.split("/", 5)[5])
            if rel in self.files:
                return file_answer(seen, self.files[rel], etag=f'"{sha256(self.files[rel])}"')
        return Answer(404, [("X-Error-Code", "EntryNotFound")], b"{}")

    def close(self) -> None:
        self.server.close()

    def __enter__(self) -> HostileHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture
def hostile_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HostileHub]:
    files = {"model.bin": payload(300_000, seed=11), "config.json": b'{"a": 1}\n'}
    with HostileHub(files) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        yield hub


def hf_cache(tmp_path: Path) -> Path:
    return tmp_path / "hfhome" / "hub"


HUB_ALLOWED = ("hfhome/hub/models--o--r", "hfhome/hub/.locks", "nbhome", "hfhome")


# -- TLS --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made with the openssl command)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def trust_tls(tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Make the test certificate the trusted CA (for the engine's client, built at its start,
    and for the fast path, whose shared context follows the variable)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files[0]))
    return tls_files


def test_tls_context_is_shared_and_follows_the_ca_variables(
    tls_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every client and fast-path connection shares one context per CA setting (loading a CA
    store costs ~50 ms each time), and a changed SSL_CERT_FILE gets its own."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    system = tls_context()
    assert tls_context() is system
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files[0]))
    ours = tls_context()
    assert ours is not system and tls_context() is ours
    subjects = [cert.get("subject") for cert in ours.get_ca_certs()]
    assert subjects == [((("commonName", "127.0.0.1"),),)]
    monkeypatch.delenv("SSL_CERT_FILE")
    assert tls_context() is system


# ==========================================================================================
# 1. Faults: drops, stalls, trickles, statuses, ranges, changes, lengths, encodings
# ==========================================================================================


@pytest.mark.parametrize("rst", [False, True], ids=["fin", "rst"])
@pytest.mark.parametrize("offset", [0, 1, 65_535, 65_536, SIZE // 2, SIZE - 1])
def test_drop_at_an_offset_three_times_resumes_byte_exact(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, offset: int, rst: bool
) -> None:
    data = payload(SIZE)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.drop(after=offset, rst=rst), times=3)
    started = time.monotonic()
    path = get(server.url("m.bin"), tmp_path).wait(60)
    assert path.read_bytes() == data
    assert time.monotonic() - started < 30
    reqs = server.requests_for("m.bin")
    assert 2 <= len(reqs) <= 4
    delivered = 0
    previous = 0
    for r in reqs:
        start = range_start(r)
        # Never skips a byte, never goes back: each resume starts where the data stopped.
        assert previous <= start <= delivered
        if not rst:
            assert start == delivered  # a FIN delivers every byte sent
        if start > 0:
            assert r.if_range == server.file_etag("m.bin")
        previous = start
        delivered = start + r.body_bytes_sent
    assert leftovers(out_of(tmp_path)) == []


def test_random_drops_across_four_parallel_parts(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    rnd = random.Random(6)
    data = payload(BIG, seed=3)
    server.add_file("m.bin", data)
    for _ in range(12):
        after = rnd.randrange(1, 3 * MIB)
        server.add_fault("m.bin", Fault.drop(after=after, rst=rnd.random() < 0.5))
    job = get(server.url("m.bin"), tmp_path, connections=4, sha256=sha256(data))
    path = job.wait(120)
    assert path.read_bytes() == data
    reqs = server.requests_for("m.bin")
    assert len({r.connection_id for r in reqs}) >= 2
    assert len(reqs) <= 12 + 40
    assert sum(r.body_bytes_sent for r in reqs) < 2 * BIG  # never the file twice over
    assert leftovers(out_of(tmp_path)) == []


@pytest.mark.parametrize(
    ("at", "then"), [(0, "continue"), (0, "close"), (SIZE // 3, "close")], ids=str
)
def test_stall_is_cut_by_the_read_timeout_and_resumed(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, at: int, then: str
) -> None:
    data = payload(SIZE)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.stall(60, at=at, then=then))  # type: ignore[arg-type]
    started = time.monotonic()
    path = get(server.url("m.bin"), tmp_path).wait(60)
    elapsed = time.monotonic() - started
    assert path.read_bytes() == data
    reqs = server.requests_for("m.bin")
    assert len(reqs) == 2
    assert reqs[1].range == f"bytes={at}-{SIZE - 1}"
    assert elapsed >= engine.settings.read_timeout * 0.9
    assert elapsed < 40  # the 60 s stall was never waited out


def test_stalled_parallel_connections_lose_their_work_to_the_others(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(BIG, seed=4)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault())  # the probe
    server.add_fault("m.bin", Fault.stall(60, at=100_000))  # fast path, mid-body
    server.add_fault("m.bin", Fault.stall(60, at=0))  # fast path, right after the head
    started = time.monotonic()
    path = get(server.url("m.bin"), tmp_path, connections=4).wait(90)
    assert path.read_bytes() == data
    assert time.monotonic() - started < 50


def test_trickle_is_slow_but_not_a_failure(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(300_000)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.trickle(150_000))
    job = get(server.url("m.bin"), tmp_path)
    snaps = Snapshots(job)
    assert job.wait(60).read_bytes() == data
    assert len(server.requests_for("m.bin")) == 1  # no spurious timeout
    seen = snaps.downloaded()
    assert seen == sorted(seen) and max(seen) == len(data)


@pytest.mark.parametrize("status", [408, 429, 500, 504])
def test_retry_after_as_an_http_date_is_honoured(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, status: int
) -> None:
    data = payload(50_000)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.error(status, retry_after=http_date(from_now=2)))
    assert get(server.url("m.bin"), tmp_path).wait(60).read_bytes() == data
    first, second = server.requests_for("m.bin")
    assert first.status == status
    assert second.time - first.time >= 0.9


HUGE_RETRY_AFTER = {
    "a-day": "86400",
    "forty-digits": "9" * 40,
    "date-in-2050s": http_date(from_now=10**9),
    "year-9999": "Fri, 31 Dec 9999 23:59:59 GMT",
}


@pytest.mark.parametrize("value", list(HUGE_RETRY_AFTER.values()), ids=list(HUGE_RETRY_AFTER))
def test_huge_retry_after_is_capped(server: FaultServer, tmp_path: Path, value: str) -> None:
    data = payload(50_000)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.error(503, retry_after=value))
    with custom_engine(retry_after_cap=1.0):
        started = time.monotonic()
        assert get(server.url("m.bin"), tmp_path).wait(60).read_bytes() == data
        assert time.monotonic() - started < 30
    first, second = server.requests_for("m.bin")
    assert second.time - first.time >= 0.9  # waited (up to the cap), not the plain backoff


def test_huge_retry_after_on_a_parallel_connection_is_capped(
    server: FaultServer, tmp_path: Path
) -> None:
    data = payload(BIG, seed=5)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault())
    server.add_fault("m.bin", Fault.error(503, retry_after="999999999"), times=2)
    with custom_engine(retry_after_cap=1.0):
        started = time.monotonic()
        path = get(server.url("m.bin"), tmp_path, connections=4).wait(90)
        assert path.read_bytes() == data
        assert time.monotonic() - started < 40


@pytest.mark.parametrize(
    "value", ["soon", "-5", "1.5", " ", "0x10", "1e9", "Mon, 99 Foo 2024 99:99:99 GMT", "\u00b2"]
)
def test_unparseable_retry_after_falls_back_to_backoff(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, value: str
) -> None:
    """Garbage in ``Retry-After`` is ignored (capped backoff instead), never a crash. ``²`` is
    a digit to ``str.isdigit`` but not to ``float``."""
    data = payload(50_000)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.error(503, retry_after=value))
    started = time.monotonic()
    assert get(server.url("m.bin"), tmp_path).wait(60).read_bytes() == data
    assert time.monotonic() - started < 20
    assert [r.status for r in server.requests_for("m.bin")] == [503, 206]


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, nbmodels.NetworkError),
        (401, nbmodels.AccessError),
        (403, nbmodels.AccessError),
        (405, nbmodels.NetworkError),
        (410, nbmodels.NotFoundError),
        (451, nbmodels.NetworkError),
    ],
)
def test_other_client_errors_are_not_retried(
    engine: _engine.Engine,
    server: FaultServer,
    tmp_path: Path,
    status: int,
    kind: type[Exception],
) -> None:
    server.add_file("m.bin", payload(50_000))
    server.add_fault("m.bin", Fault.error(status), times=-1)
    err = expect_error(get(server.url("m.bin"), tmp_path), kind)
    assert str(status) in str(err)
    assert len(server.requests_for("m.bin")) == 1
    assert not (out_of(tmp_path) / "m.bin").exists()
    assert leftovers(out_of(tmp_path)) == []


def test_server_errors_forever_on_parallel_connections_give_up_bounded(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(BIG, seed=6)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault())  # the probe learns size and validator
    server.add_fault("m.bin", Fault.error(503, retry_after=0), times=-1)
    started = time.monotonic()
    err = expect_error(get(server.url("m.bin"), tmp_path, connections=4), nbmodels.NetworkError)
    assert "503" in str(err)
    assert time.monotonic() - started < 40
    assert len(server.requests_for("m.bin")) <= 1 + 4 * engine.settings.max_attempts
    assert not (out_of(tmp_path) / "m.bin").exists()


def test_range_ignored_on_the_probe_means_one_plain_connection(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(BIG, seed=7)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.no_range())
    path = get(server.url("m.bin"), tmp_path, connections=4).wait(90)
    assert path.read_bytes() == data
    reqs = server.requests_for("m.bin")
    assert [r.status for r in reqs] == [200]


def test_range_ignored_on_a_parallel_connection_never_appends(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(BIG, seed=8)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault())
    server.add_fault("m.bin", Fault.no_range(), times=2)
    path = get(server.url("m.bin"), tmp_path, connections=4, sha256=sha256(data)).wait(90)
    assert path.read_bytes() == data


def test_server_that_ignores_range_and_keeps_dropping_fails_bounded(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("m.bin", payload(SIZE), accept_ranges=False)
    server.add_fault("m.bin", Fault.drop(after=SIZE // 2), times=-1)
    err = expect_error(get(server.url("m.bin"), tmp_path), nbmodels.NetworkError)
    assert "consistently" in str(err) or "attempts" in str(err)
    reqs = server.requests_for("m.bin")
    assert len(reqs) <= 12
    # Every body after the first byte was a whole new file: each pass began again at zero.
    assert all(r.status == 200 for r in reqs)
    assert not (out_of(tmp_path) / "m.bin").exists()


CONTENT_RANGE_DELTAS = {
    "start+1": (1, 0, 0),
    "start-1": (-1, 0, 0),
    "end+1": (0, 1, 0),
    "end-1": (0, -1, 0),
    "total+1": (0, 0, 1),
    "total-1": (0, 0, -1),
}


@pytest.mark.parametrize("where", ["probe", "resume"])
@pytest.mark.parametrize("send", ["requested", "claimed"])
@pytest.mark.parametrize("delta", list(CONTENT_RANGE_DELTAS))
def test_wrong_content_range_is_never_accepted(
    engine: _engine.Engine,
    server: FaultServer,
    tmp_path: Path,
    delta: str,
    send: str,
    where: str,
) -> None:
    data = payload(SIZE)
    server.add_file("m.bin", data)
    if where == "resume":
        server.add_fault("m.bin", Fault.drop(after=300_000))
    ds, de, dt = CONTENT_RANGE_DELTAS[delta]
    server.add_fault(
        "m.bin",
        Fault.bad_content_range(start=ds, end=de, total=dt, send=send),  # type: ignore[arg-type]
    )
    path = get(server.url("m.bin"), tmp_path).wait(60)
    assert path.read_bytes() == data
    assert len(server.requests_for("m.bin")) <= 4


@pytest.mark.parametrize(
    "value",
    [
        f"bytes 300000-{SIZE - 1}/*",
        f"bytes */{SIZE}",
        f"items 300000-{SIZE - 1}/{SIZE}",
        f"bytes=300000-{SIZE - 1}/{SIZE}",
        f"bytes 300000-{SIZE - 1}/{SIZE}, bytes 0-1/{SIZE}",
        "",
    ],
)
def test_malformed_content_range_on_resume_is_retried(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, value: str
) -> None:
    data = payload(SIZE)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.drop(after=300_000))
    server.add_fault("m.bin", Fault.with_headers({"Content-Range": value}, drop=["Content-Range"]))
    assert get(server.url("m.bin"), tmp_path).wait(60).read_bytes() == data
    assert len(server.requests_for("m.bin")) == 3


def test_same_validator_different_bytes_is_caught_by_the_digest(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    """A server that changes the bytes but keeps the ETag can splice a resume; the digest
    check is what catches it, and then nothing is published and nothing is kept."""
    old, new = payload(SIZE, seed=1), payload(SIZE, seed=2)
    server.add_file("m.bin", old, etag='"v1"')
    server.add_fault("m.bin", Fault.drop(after=400_000))
    server.add_fault("m.bin", Fault.update(new, etag='"v1"'))  # lies: same validator
    err = expect_error(
        get(server.url("m.bin"), tmp_path, sha256=sha256(old)), nbmodels.IntegrityError
    )
    assert sha256(old) in str(err)
    out = out_of(tmp_path)
    assert not (out / "m.bin").exists()
    assert leftovers(out) == []
    assert get(server.url("m.bin"), tmp_path, sha256=sha256(new)).wait(60).read_bytes() == new


def test_last_modified_validator_change_restarts_from_zero(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    old, new = payload(SIZE, seed=1), payload(SIZE, seed=2)
    stamp = http_date(1_600_000_000)
    server.add_file("m.bin", old, etag=None, last_modified=stamp)
    server.add_fault("m.bin", Fault.drop(after=400_000))
    server.add_fault("m.bin", Fault.update(new, etag=None))
    job = get(server.url("m.bin"), tmp_path)
    snaps = Snapshots(job)
    assert job.wait(60).read_bytes() == new
    reqs = server.requests_for("m.bin")
    assert reqs[1].if_range == stamp and reqs[1].status == 200
    assert range_start(reqs[-1]) == 0
    assert max(snaps.downloaded()) <= SIZE


def test_weak_etag_alone_never_proves_a_resume(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(SIZE)
    server.add_file("m.bin", data, etag='W/"weak"')
    server.add_fault("m.bin", Fault.drop(after=400_000))
    assert get(server.url("m.bin"), tmp_path).wait(60).read_bytes() == data
    reqs = server.requests_for("m.bin")
    assert all(r.if_range is None for r in reqs)  # a weak tag is never sent as proof
    assert range_start(reqs[-1]) == 0  # the bytes came from zero, not appended at 400000


@pytest.mark.parametrize("new_size", [SIZE, SIZE + 1000], ids=["same-size", "other-size"])
def test_file_changed_between_runs_is_fetched_again_from_zero(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, new_size: int
) -> None:
    old, new = payload(SIZE, seed=1), payload(new_size, seed=2)
    server.add_file("m.bin", old)
    server.add_fault("m.bin", Fault.drop(after=400_000))
    server.add_fault("m.bin", Fault.drop(after=0), times=engine.settings.max_attempts)
    expect_error(get(server.url("m.bin"), tmp_path), nbmodels.NetworkError)
    part, state = partial_paths(out_of(tmp_path) / "m.bin")
    assert part.exists() and state.exists()  # the first run kept its bytes for a resume
    server.set_file("m.bin", new)
    server.clear_log()
    assert get(server.url("m.bin"), tmp_path).wait(60).read_bytes() == new
    first = server.requests_for("m.bin")[0]
    assert first.range == f"bytes=400000-{SIZE - 1}" and first.if_range is not None
    assert first.status == 200  # the server said "changed": restarted, never spliced


def test_content_length_claiming_more_than_sent_is_retried(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(SIZE)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.length_lie(+1000))
    assert get(server.url("m.bin"), tmp_path).wait(60).read_bytes() == data
    assert len(server.requests_for("m.bin")) == 2


@pytest.mark.parametrize("delta", [-1000, +1000])
def test_content_length_contradicting_the_range_is_rejected(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, delta: int
) -> None:
    data = payload(SIZE)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.drop(after=300_000))
    server.add_fault("m.bin", Fault.length_lie(delta))
    assert get(server.url("m.bin"), tmp_path).wait(60).read_bytes() == data
    assert len(server.requests_for("m.bin")) == 3


def test_content_length_lies_on_parallel_connections(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(BIG, seed=9)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault())
    server.add_fault("m.bin", Fault.length_lie(+5000))
    server.add_fault("m.bin", Fault.length_lie(-5000))
    path = get(server.url("m.bin"), tmp_path, connections=4, sha256=sha256(data)).wait(90)
    assert path.read_bytes() == data


def test_two_conflicting_content_lengths_are_retried(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(SIZE)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.with_headers([("Content-Length", "5")]))
    assert get(server.url("m.bin"), tmp_path).wait(60).read_bytes() == data
    assert len(server.requests_for("m.bin")) == 2


def test_range_ignoring_server_that_lies_about_length_fails_bounded(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("m.bin", payload(SIZE), accept_ranges=False)
    server.add_fault("m.bin", Fault.length_lie(+1000), times=-1)
    expect_error(get(server.url("m.bin"), tmp_path), nbmodels.NetworkError)
    assert len(server.requests_for("m.bin")) <= 10
    assert not (out_of(tmp_path) / "m.bin").exists()


def test_truncated_close_delimited_body_fails_the_digest(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    """HTTP/1.0 without Content-Length cannot show a truncation; a given digest still does."""
    data = payload(SIZE)
    server.add_file("m.bin", data)
    server.add_fault(
        "m.bin", Fault.raw_response(b"HTTP/1.0 200 OK\r\n\r\n" + data[:1000]), times=-1
    )
    expect_error(get(server.url("m.bin"), tmp_path, sha256=sha256(data)), nbmodels.IntegrityError)
    assert not (out_of(tmp_path) / "m.bin").exists()
    assert leftovers(out_of(tmp_path)) == []


@pytest.mark.parametrize("where", ["probe", "resume", "parallel"])
def test_gzip_body_nobody_asked_for_is_refused(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, where: str
) -> None:
    size = BIG if where == "parallel" else SIZE
    data = payload(size)
    server.add_file("m.bin", data)
    if where == "resume":
        server.add_fault("m.bin", Fault.drop(after=300_000))
    elif where == "parallel":
        server.add_fault("m.bin", Fault())
    server.add_fault("m.bin", Fault.gzipped(), times=-1)
    connections = 4 if where == "parallel" else None
    err = expect_error(
        get(server.url("m.bin"), tmp_path, connections=connections), nbmodels.NetworkError
    )
    assert "gzip" in str(err)
    out = out_of(tmp_path)
    assert not (out / "m.bin").exists()
    if where == "resume":  # the good bytes stay for a later run
        server.clear_faults()
        server.clear_log()
        assert get(server.url("m.bin"), tmp_path).wait(60).read_bytes() == data
        assert range_start(server.requests_for("m.bin")[0]) == 300_000


@pytest.mark.parametrize("encoding", ["br", "deflate", "identity, gzip", "x-custom"])
def test_any_content_encoding_but_identity_is_refused(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, encoding: str
) -> None:
    server.add_file("m.bin", payload(SIZE))
    server.add_fault("m.bin", Fault.with_headers({"Content-Encoding": encoding}))
    err = expect_error(get(server.url("m.bin"), tmp_path), nbmodels.NetworkError)
    assert "identity" in str(err)
    assert len(server.requests_for("m.bin")) == 1
    assert not (out_of(tmp_path) / "m.bin").exists()


# -- redirects --------------------------------------------------------------------------------


def test_redirect_chain_at_the_cap_is_followed_and_one_more_is_refused(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(10_000)
    server.add_file("m.bin", data)
    cap = engine.settings.max_redirects
    for chain, hops in (("ok", cap), ("long", cap + 1)):
        for i in range(hops):
            nxt = f"/{chain}{i + 1}/m.bin" if i + 1 < hops else "/files/m.bin"
            server.add_redirect(f"/{chain}{i}/m.bin", server.base_url + nxt, status=307)
    assert get(server.base_url + "/ok0/m.bin", tmp_path).wait(60).read_bytes() == data
    err = expect_error(get(server.base_url + "/long0/m.bin", tmp_path / "x"), nbmodels.NetworkError)
    assert "Too many redirects" in str(err)
    assert len([r for r in server.log if r.path.startswith("/long")]) == cap + 1


def test_relative_self_redirect_loop_is_bounded(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    server.add_redirect("/self/x.bin", "x.bin", status=308)
    err = expect_error(get(server.base_url + "/self/x.bin", tmp_path), nbmodels.NetworkError)
    assert "Too many redirects" in str(err)
    assert len(server.log) == engine.settings.max_redirects + 1


@pytest.mark.parametrize(
    "location",
    [
        "javascript:alert(1)",
        "JavaScript:alert(document.cookie)",
        "data:application/octet-stream;base64,QUFBQQ==",
        "gopher://127.0.0.1/x.bin",
        "ws://127.0.0.1/x.bin",
        "file:/etc/passwd",
        "ftp://user:pw@127.0.0.1/x.bin",
    ],
)
def test_redirect_to_a_non_http_scheme_is_refused(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, location: str
) -> None:
    server.add_redirect("/r/x.bin", location)
    err = expect_error(get(server.base_url + "/r/x.bin", tmp_path), nbmodels.NetworkError)
    assert "only http and https" in str(err)
    assert len(server.log) == 1
    assert not (out_of(tmp_path) / "x.bin").exists()


@pytest.mark.parametrize(
    "location",
    ["http://[::1", "http://127.0.0.1:99999/x.bin", "http://127.0.0.1:abc/x.bin", ""],
    ids=["bad-ipv6", "port-out-of-range", "port-not-a-number", "empty"],
)
def test_unusable_location_is_a_clear_network_error(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, location: str
) -> None:
    server.add_redirect("/r/x.bin", location)
    err = expect_error(get(server.base_url + "/r/x.bin", tmp_path), nbmodels.NetworkError)
    assert "Unexpected error" not in str(err)
    assert len(server.log) == 1


def test_redirect_on_resume_to_another_object_restarts(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(SIZE)
    server.add_file("m.bin", data)
    with FaultServer() as other:
        other.add_file("m.bin", payload(SIZE, seed=99))
        server.add_fault("m.bin", Fault.drop(after=400_000))
        server.add_fault(
            "m.bin", Fault.error(302) | Fault.with_headers({"Location": other.url("m.bin")})
        )
        assert get(server.url("m.bin"), tmp_path).wait(60).read_bytes() == data
        (hop,) = other.requests_for("m.bin")
        assert hop.if_range == server.file_etag("m.bin") and hop.status == 200
    assert range_start(server.requests_for("m.bin")[-1]) == 0


def test_url_credentials_stay_on_their_origin_and_out_of_every_record(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    password = "Pa55wordInTheUrl"
    data = payload(50_000)
    with FaultServer() as other:
        other.add_file("m.bin", data)
        server.add_redirect("/r/m.bin", other.url("m.bin"))
        url = server.base_url.replace("http://", f"http://user:{password}@") + "/r/m.bin"
        job = get(url, tmp_path)
        assert job.wait(60).read_bytes() == data
        assert all("authorization" not in r.headers for r in other.log)
    assert_no_secret(tmp_path, job.ref, job.to_dict(), caplog.text, needles=[password])


def test_signed_url_query_is_never_logged_stored_or_shown(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Logs too: httpx2 logs every request URL at INFO, query string included."""
    caplog.set_level(logging.INFO)
    data = payload(SIZE)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.drop(after=300_000))
    server.add_fault("m.bin", Fault.error(503))
    job = get(server.url("m.bin", query=SIGNED_QUERY), tmp_path)
    assert job.wait(60).read_bytes() == data
    assert_no_secret(tmp_path, job.ref, job.to_dict(), repr(job), caplog.text)


def test_signed_url_query_echoed_in_an_error_header_is_not_repeated(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("m.bin", payload(1000))
    server.add_fault(
        "m.bin",
        Fault.error(403)
        | Fault.with_headers({"X-Error-Message": f"Signature mismatch for {SIGNED_QUERY}"}),
    )
    job = get(server.url("m.bin", query=SIGNED_QUERY), tmp_path)
    err = expect_error(job, nbmodels.AccessError)
    assert_no_secret(tmp_path, err, job.to_dict())


# -- https --------------------------------------------------------------------------------------


def test_https_download_works_on_every_path(
    engine: _engine.Engine, trust_tls: tuple[Path, Path], tmp_path: Path
) -> None:
    """Sanity for the TLS cases below: the probe (httpx2) and the fast path both verify the
    certificate and fetch byte-exact."""
    data = payload(BIG, seed=12)
    with Scripted(lambda s: file_answer(s, data), tls=trust_tls) as tls_server:
        job = get(f"{tls_server.url}/files/m.bin", tmp_path, connections=4)
        assert job.wait(90).read_bytes() == data
        assert len(tls_server.requests()) >= 2


def test_untrusted_certificate_is_refused_bounded(
    engine: _engine.Engine, tls_files: tuple[Path, Path], tmp_path: Path
) -> None:
    with Scripted(lambda s: file_answer(s, b"x" * 1000), tls=tls_files) as tls_server:
        job = get(f"{tls_server.url}/files/m.bin", tmp_path)
        expect_error(job, nbmodels.NetworkError)
        assert tls_server.requests() == []  # not one request went over the unverified channel
    assert not (out_of(tmp_path) / "m.bin").exists()


def test_https_to_http_redirect_is_refused(
    engine: _engine.Engine, trust_tls: tuple[Path, Path], server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("m.bin", payload(1000))
    target = server.url("m.bin")
    with Scripted(lambda s: Answer(302, [("Location", target)]), tls=trust_tls) as tls_server:
        err = expect_error(get(f"{tls_server.url}/files/m.bin", tmp_path), nbmodels.NetworkError)
    assert "downgrade" in str(err)
    assert server.log == []


def test_https_hub_never_sends_the_token_over_a_downgrade(
    engine: _engine.Engine,
    trust_tls: tuple[Path, Path],
    server: FaultServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = payload(300_000, seed=11)
    server.add_file("model.bin", data)
    with HostileHub({"model.bin": data}, tls=trust_tls) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        hub.routes["/o/r/resolve/"] = lambda s: Answer(302, [("Location", server.url("model.bin"))])
        job = nbmodels.download("hf:o/r/model.bin", token=TOKEN)
        err = expect_error(job, nbmodels.NetworkError)
        api = hub.server.requests("/api/")
        assert api and all(s.headers.get("authorization") == f"Bearer {TOKEN}" for s in api)
    assert "downgrade" in str(err)
    assert server.log == []
    assert_no_secret(tmp_path, err, job.to_dict())


def test_https_hub_pagination_to_plain_http_is_refused(
    engine: _engine.Engine,
    trust_tls: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The listing carries the digests every download is verified against: a next page over
    plain http would let anyone on the path choose them."""
    files = {"a.json": b"{}\n"}
    with (
        HostileHub(files, tls=trust_tls) as hub,
        Scripted(lambda s: json_answer([hub_entry("b.json", b"[]\n", lfs=False)])) as plain,
    ):
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        hub.link = f"{plain.url}/api/models/o/r/tree/{COMMIT}?cursor=2"
        job = nbmodels.download("hf:o/r", token=TOKEN)
        expect_error(job, nbmodels.NetworkError)
        assert all("authorization" not in s.headers for s in plain.seen)
        assert plain.seen == []


# -- malformed and oversized heads --------------------------------------------------------------


MALFORMED = {
    "no-colon-and-nul": Fault.malformed_headers(),
    "huge-header": Fault.huge_header(100_000),
    "nul-in-etag": Fault.with_headers({"ETag": b'"a\x00b"'}, drop=["ETag"]),
    "not-http": Fault.raw_response(b"NOT HTTP AT ALL\r\n\r\n"),
    "short-body": Fault.raw_response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"),
}


@pytest.mark.parametrize("fault", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_response_is_retried(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, fault: Fault
) -> None:
    data = payload(SIZE)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", fault)
    assert get(server.url("m.bin"), tmp_path).wait(60).read_bytes() == data
    assert len(server.requests_for("m.bin")) <= 4


def test_malformed_responses_forever_give_up_bounded(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("m.bin", payload(SIZE))
    server.add_fault("m.bin", Fault.malformed_headers(), times=-1)
    err = expect_error(get(server.url("m.bin"), tmp_path), nbmodels.NetworkError)
    assert "attempts" in str(err)
    assert len(server.requests_for("m.bin")) == engine.settings.max_attempts
    assert leftovers(out_of(tmp_path)) == []


def test_malformed_heads_on_the_fast_path_fall_back_to_httpx(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(BIG, seed=13)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault())
    server.add_fault("m.bin", Fault.huge_header(100_000))  # over the fast path's 64 KiB
    server.add_fault("m.bin", Fault.malformed_headers())
    server.add_fault("m.bin", Fault.with_headers({"X-Latin": b"caf\xe9"}))
    path = get(server.url("m.bin"), tmp_path, connections=4, sha256=sha256(data)).wait(90)
    assert path.read_bytes() == data


def test_unknown_status_is_a_clear_error(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("m.bin", payload(SIZE))
    server.add_fault(
        "m.bin", Fault.raw_response(b"HTTP/1.1 599 Whatever\r\nContent-Length: 0\r\n\r\n")
    )
    server.add_fault(
        "m.bin", Fault.raw_response(b"HTTP/1.1 299 Whatever\r\nContent-Length: 0\r\n\r\n"),
        times=-1,
    )  # fmt: skip
    err = expect_error(get(server.url("m.bin"), tmp_path), nbmodels.NetworkError)
    assert "299" in str(err)
    assert len(server.requests_for("m.bin")) <= 1 + engine.settings.max_attempts


# ==========================================================================================
# 2. Hostile values that reach paths
# ==========================================================================================


HOSTILE_URL_NAMES = {
    "dotdot": "..",
    "encoded-dotdot": "%2e%2e",
    "upper-encoded-dotdot": "%2E%2E",
    "dot": ".",
    "encoded-slash": "a%2fb",
    "traversal": "..%2f..%2fevil.bin",
    "backslash": "..%5c..%5cevil.bin",
    "nul": "evil%00.bin",
    "newline": "evil%0a.bin",
    "carriage-return": "evil%0d.bin",
    "escape": "%1b%5b31mred.bin",
    "rtl-override": "%e2%80%aenib.exe",
    "zero-width": "evil%e2%80%8b.bin",
    "blank": "%20",
    "trailing-space": "evil.bin%20",
    "too-long": "a" * 256,
    "too-long-utf8": "%c3%a9" * 128,
    "empty": "",
}


@pytest.mark.parametrize("name", list(HOSTILE_URL_NAMES.values()), ids=list(HOSTILE_URL_NAMES))
def test_hostile_file_name_in_a_url_is_refused_before_any_request(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, name: str
) -> None:
    before = tree(tmp_path)
    job = nbmodels.download(f"{server.base_url}/files/{name}", dir=tmp_path / "out")
    with pytest.raises(nbmodels.RefError):
        job.wait(30)
    assert server.log == []
    assert new_entries_outside(tmp_path, before, ["nbhome"]) == []


@pytest.mark.parametrize("length", [200, 220, 255])
def test_long_file_names_download_and_resume(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, length: int
) -> None:
    """Up to 255 bytes is a valid name; the partial, state, lock and temp names derived from
    it must still fit the file system (and a resume must still find its state)."""
    name = "a" * (length - 4) + ".bin"
    data = payload(SIZE)
    server.add_file(name, data)
    server.add_fault(name, Fault.drop(after=400_000))
    server.add_fault(name, Fault.drop(after=0), times=engine.settings.max_attempts)
    expect_error(get(server.url(name), tmp_path), nbmodels.NetworkError)
    server.clear_log()
    assert get(server.url(name), tmp_path).wait(60).read_bytes() == data
    assert range_start(server.requests_for(name)[0]) == 400_000  # resumed across runs
    assert leftovers(out_of(tmp_path)) == []


@pytest.mark.parametrize(
    "name", [".nbmodels", ".victim.bin.nbmodels.part", ".victim.bin.nbmodels.json"]
)
def test_names_of_nbmodels_own_files_are_refused(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, name: str
) -> None:
    """A URL must not name the partial data, state or record of another download."""
    server.add_file(name, b"attacker bytes")
    job = get(server.url(name), tmp_path)
    with pytest.raises(nbmodels.RefError):
        job.wait(30)
    assert server.log == []


def test_a_url_named_like_a_partial_file_cannot_poison_a_paused_download(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(2 * MIB)
    server.add_file("victim.bin", data)
    server.add_fault("victim.bin", Fault.trickle(400_000))
    job = get(server.url("victim.bin"), tmp_path)
    part, state = partial_paths(out_of(tmp_path) / "victim.bin")
    deadline = time.monotonic() + 30
    while not (state.exists() and json.loads(state.read_text())["done"]):
        assert time.monotonic() < deadline, "no durable progress"
        time.sleep(0.02)
    assert job.pause()
    while job.status != "paused":
        time.sleep(0.02)
    # Another download into the same directory whose URL names the victim's partial file.
    server.add_file(part.name, b"\0" * len(data))
    with contextlib.suppress(nbmodels.NbmodelsError):
        get(server.url(part.name), tmp_path).wait(30)
    job.resume()
    try:
        got = job.wait(60).read_bytes()
    except nbmodels.IntegrityError:
        return  # refused to publish: acceptable
    assert got == data


CONTENT_DISPOSITIONS = [
    'attachment; filename="../../evil.bin"',
    "attachment; filename*=UTF-8''..%2F..%2Fevil.bin",
    'attachment; filename="/tmp/evil.bin"',
    'attachment; filename=".bashrc"',
    'attachment; filename="' + "e" * 10_000 + '.bin"',
    "attachment; filename*=UTF-8''%00evil.bin",
]


@pytest.mark.parametrize("disposition", CONTENT_DISPOSITIONS, ids=range(6))
def test_content_disposition_never_names_the_file(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, disposition: str
) -> None:
    before = tree(tmp_path)
    data = payload(50_000)
    server.add_file("m.bin", data, content_disposition=disposition)
    path = get(server.url("m.bin"), tmp_path).wait(30)
    assert path == (out_of(tmp_path) / "m.bin").resolve() and path.read_bytes() == data
    assert new_entries_outside(tmp_path, before, ["nbhome", "out"]) == []
    assert sorted(tree(out_of(tmp_path))) == [
        ".nbmodels",
        ".nbmodels/m.bin.json",
        ".nbmodels/m.bin.lock",
        "m.bin",
    ]


HOSTILE_ETAGS = {
    "traversal": '"../../../../evil"',
    "separators": '"a/b\\c/../d"',
    "ten-kib": '"' + "a" * 10_240 + '"',
    "percent": '"%2e%2e%2f%00"',
    "latin-1": b'"caf\xe9"',
    "utf-8": '"\u202egnp.exe"',
    "two-values": '"a", "b"',
}


@pytest.mark.parametrize("etag", list(HOSTILE_ETAGS.values()), ids=list(HOSTILE_ETAGS))
def test_hostile_etag_is_only_ever_a_validator(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, etag: str | bytes
) -> None:
    before = tree(tmp_path)
    data = payload(SIZE)
    server.add_file("m.bin", data, etag=None)
    hostile = Fault.with_headers({"ETag": etag})
    server.add_fault("m.bin", hostile | Fault.drop(after=400_000))  # resume needs the validator
    server.add_fault("m.bin", hostile, times=-1)
    assert get(server.url("m.bin"), tmp_path).wait(60).read_bytes() == data
    assert new_entries_outside(tmp_path, before, ["nbhome", "out"]) == []
    assert len(server.requests_for("m.bin")) <= 4


# -- a hostile Hub API --------------------------------------------------------------------------


def _hub_job_fails(
    tmp_path: Path, ref: str, kind: type[BaseException] = nbmodels.NetworkError, **opts: Any
) -> BaseException:
    before = tree(tmp_path)
    job = nbmodels.download(ref, **opts)
    err = expect_error(job, kind)
    assert new_entries_outside(tmp_path, before, HUB_ALLOWED) == []
    root = hf_cache(tmp_path) / "models--o--r"
    written = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
    assert written == []
    return err


HOSTILE_COMMITS = {
    "traversal": "../../../../tmp/evil",
    "traversal-40": "../" * 13 + "x",
    "upper-hex": COMMIT.upper(),
    "short": COMMIT[:39],
    "long": COMMIT + "0",
    "trailing-newline": COMMIT + "\n",
    "slash-suffix": COMMIT + "/..",
    "not-hex": "g" * 40,
    "number": 12345,
    "null": None,
    "list": [COMMIT],
}


@pytest.mark.parametrize("sha", list(HOSTILE_COMMITS.values()), ids=list(HOSTILE_COMMITS))
def test_hostile_commit_from_the_hub_is_refused(
    engine: _engine.Engine, hostile_hub: HostileHub, tmp_path: Path, sha: object
) -> None:
    hostile_hub.sha = sha
    err = _hub_job_fails(tmp_path, "hf:o/r/model.bin")
    assert "commit" in str(err)
    assert [s.path for s in hostile_hub.server.seen] == ["/api/models/o/r"]


HOSTILE_PATHS = {
    "parent": "../evil.bin",
    "deep-parent": "../../../../tmp/evil.bin",
    "absolute": "/etc/passwd",
    "inner-parent": "a/../../evil.bin",
    "double-slash": "a//evil.bin",
    "backslash": "a\\..\\..\\evil.bin",
    "dot": "a/./evil.bin",
    "trailing-slash": "a/",
    "empty": "",
    "nul": "evil\x00.bin",
    "newline": "evil\n.bin",
    "too-long": "x" * 300,
    "leading-space": " evil.bin",
}


@pytest.mark.parametrize("bad", list(HOSTILE_PATHS.values()), ids=list(HOSTILE_PATHS))
def test_hostile_path_in_the_tree_listing_is_refused(
    engine: _engine.Engine, hostile_hub: HostileHub, tmp_path: Path, bad: object
) -> None:
    hostile_hub.entries.append({**hub_entry("x", b"evil"), "path": bad})
    err = _hub_job_fails(tmp_path, "hf:o/r")
    assert "unsafe file path" in str(err)
    assert hostile_hub.server.requests("/o/r/resolve/") == []


def test_hostile_path_in_paths_info_is_refused(
    engine: _engine.Engine, hostile_hub: HostileHub, tmp_path: Path
) -> None:
    hostile_hub.entries = [
        {**hub_entry("x", hostile_hub.files["model.bin"]), "path": "../model.bin"}
    ]
    _hub_job_fails(tmp_path, "hf:o/r/model.bin")
    assert hostile_hub.server.requests("/o/r/resolve/") == []


def test_paths_info_answering_another_file_is_not_found(
    engine: _engine.Engine, hostile_hub: HostileHub, tmp_path: Path
) -> None:
    hostile_hub.entries = [hub_entry("other.bin", b"other")]
    _hub_job_fails(tmp_path, "hf:o/r/model.bin", nbmodels.NotFoundError)
    assert hostile_hub.server.requests("/o/r/resolve/") == []


HOSTILE_ENTRIES: dict[str, Callable[[dict[str, Any]], None]] = {
    "oid-traversal": lambda e: e.update(oid="../../../../" + "a" * 28),
    "oid-upper": lambda e: e.update(oid=e["oid"].upper()),
    "lfs-oid-traversal": lambda e: e["lfs"].update(oid="../../evil"),
    "lfs-oid-63": lambda e: e["lfs"].update(oid=e["lfs"]["oid"][:63]),
    "lfs-oid-not-str": lambda e: e["lfs"].update(oid=7),
    "size-negative": lambda e: e.update(size=-1),
    "size-bool": lambda e: e.update(size=True),
    "size-string": lambda e: e.update(size="300000"),
    "size-float": lambda e: e.update(size=300000.0),
    "lfs-size-negative": lambda e: e["lfs"].update(size=-5),
    "lfs-size-string": lambda e: e["lfs"].update(size="1"),
}


@pytest.mark.parametrize("mutate", list(HOSTILE_ENTRIES.values()), ids=list(HOSTILE_ENTRIES))
def test_hostile_digest_or_size_is_refused(
    engine: _engine.Engine,
    hostile_hub: HostileHub,
    tmp_path: Path,
    mutate: Callable[[dict[str, Any]], None],
) -> None:
    entry = hub_entry("model.bin", hostile_hub.files["model.bin"])
    mutate(entry)
    hostile_hub.entries = [entry]
    err = _hub_job_fails(tmp_path, "hf:o/r/model.bin")
    assert "invalid" in str(err)
    assert hostile_hub.server.requests("/o/r/resolve/") == []


def test_absurd_size_from_the_hub_is_insufficient_space_before_any_byte(
    engine: _engine.Engine, hostile_hub: HostileHub, tmp_path: Path
) -> None:
    entry = hub_entry("model.bin", hostile_hub.files["model.bin"])
    entry["size"] = entry["lfs"]["size"] = 1 << 62
    hostile_hub.entries = [entry]
    _hub_job_fails(tmp_path, "hf:o/r/model.bin", nbmodels.InsufficientSpaceError)
    assert hostile_hub.server.requests("/o/r/resolve/") == []


@pytest.mark.parametrize(
    "listing", [{"path": "model.bin"}, "model.bin", [["model.bin"]], [None]], ids=range(4)
)
def test_listing_of_the_wrong_shape_is_refused(
    engine: _engine.Engine, hostile_hub: HostileHub, tmp_path: Path, listing: object
) -> None:
    hostile_hub.entries = listing  # type: ignore[assignment]
    _hub_job_fails(tmp_path, "hf:o/r")


def test_digest_from_the_hub_is_enforced(
    engine: _engine.Engine, hostile_hub: HostileHub, tmp_path: Path
) -> None:
    entry = hub_entry("model.bin", hostile_hub.files["model.bin"])
    entry["lfs"]["oid"] = "f" * 64
    hostile_hub.entries = [entry]
    err = _hub_job_fails(tmp_path, "hf:o/r/model.bin", nbmodels.IntegrityError)
    assert "f" * 64 in str(err)


def test_response_headers_never_name_cache_files(
    engine: _engine.Engine, hostile_hub: HostileHub, tmp_path: Path
) -> None:
    data = hostile_hub.files["model.bin"]

    def evil(seen: Seen) -> Answer:
        answer = file_answer(seen, data, etag='"../../../../evil"')
        answer.headers += [
            ("Content-Disposition", 'attachment; filename="../../../evil.bin"'),
            ("X-Linked-Etag", '"../../../evil"'),
            ("X-Repo-Commit", "../../../evil"),
        ]
        return answer

    hostile_hub.routes["/o/r/resolve/"] = evil
    before = tree(tmp_path)
    path = nbmodels.resolve("hf:o/r/model.bin")
    assert path.read_bytes() == data
    assert path == hf_cache(tmp_path) / "models--o--r" / "snapshots" / COMMIT / "model.bin"
    assert path.resolve().name == sha256(data)  # the blob is named by the listing's digest
    assert new_entries_outside(tmp_path, before, HUB_ALLOWED) == []


@pytest.mark.parametrize("where", ["localhost-same-port", "other-port"])
def test_token_is_not_sent_to_a_redirect_target_on_another_origin(
    engine: _engine.Engine, hostile_hub: HostileHub, tmp_path: Path, where: str
) -> None:
    data = hostile_hub.files["model.bin"]
    with Scripted(lambda s: file_answer(s, data)) as other:
        target = (
            f"http://localhost:{hostile_hub.server.port}/cdn/model.bin"
            if where == "localhost-same-port"
            else f"{other.url}/cdn/model.bin"
        )
        hostile_hub.routes["/cdn/"] = lambda s: file_answer(s, data)
        hostile_hub.routes["/o/r/resolve/"] = lambda s: Answer(302, [("Location", target)])
        path = nbmodels.resolve("hf:o/r/model.bin", token=TOKEN)
        assert path.read_bytes() == data
        cdn = hostile_hub.server.requests("/cdn/") + other.requests("/cdn/")
    resolve = hostile_hub.server.requests("/o/r/resolve/")
    assert cdn and resolve
    assert all(s.headers.get("authorization") == f"Bearer {TOKEN}" for s in resolve)
    assert all("authorization" not in s.headers for s in cdn)
    assert_no_secret(tmp_path)


@pytest.mark.parametrize("where", ["localhost-same-port", "other-port"])
def test_token_is_not_sent_to_a_pagination_link_elsewhere(
    engine: _engine.Engine, hostile_hub: HostileHub, tmp_path: Path, where: str
) -> None:
    page2 = [hub_entry("config.json", hostile_hub.files["config.json"], lfs=False)]
    hostile_hub.entries = [hub_entry("model.bin", hostile_hub.files["model.bin"])]
    with Scripted(lambda s: json_answer(page2)) as other:
        hostile_hub.routes["/page2/"] = lambda s: json_answer(page2)
        base = (
            f"http://localhost:{hostile_hub.server.port}" if where == "localhost-same-port"
            else other.url
        )  # fmt: skip
        hostile_hub.link = f"{base}/page2/api/models/o/r/tree/{COMMIT}?cursor=2"
        snap = nbmodels.resolve("hf:o/r", token=TOKEN)
        page2_seen = hostile_hub.server.requests("/page2/") + other.requests("/page2/")
    assert (snap / "model.bin").read_bytes() == hostile_hub.files["model.bin"]
    assert (snap / "config.json").read_bytes() == hostile_hub.files["config.json"]
    (first,) = hostile_hub.server.requests("/api/models/o/r/tree/")
    assert first.headers.get("authorization") == f"Bearer {TOKEN}"
    assert len(page2_seen) == 1 and "authorization" not in page2_seen[0].headers
    assert_no_secret(tmp_path)


@pytest.mark.parametrize(
    "link", ["javascript:alert(1)", "file:///etc/passwd", "ftp://127.0.0.1/x", "http://[::1"]
)
def test_pagination_link_to_a_non_http_url_is_refused(
    engine: _engine.Engine, hostile_hub: HostileHub, tmp_path: Path, link: str
) -> None:
    hostile_hub.link = link
    err = _hub_job_fails(tmp_path, "hf:o/r", token=TOKEN)
    assert "Unexpected error" not in str(err)
    assert len(hostile_hub.server.requests("/api/models/o/r/tree/")) == 1


def test_pagination_loop_is_bounded(
    engine: _engine.Engine,
    hostile_hub: HostileHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nbmodels.hub import _api as _hub_api

    monkeypatch.setattr(_hub_api, "MAX_PAGES", 5)
    hostile_hub.link = f"{hostile_hub.url}/api/models/o/r/tree/{COMMIT}?cursor=again"
    err = _hub_job_fails(tmp_path, "hf:o/r")
    assert "too many pages" in str(err)
    assert len(hostile_hub.server.requests("/api/models/o/r/tree/")) == 5


def test_api_redirect_is_not_followed(
    engine: _engine.Engine, hostile_hub: HostileHub, tmp_path: Path
) -> None:
    with Scripted(lambda s: json_answer({"sha": COMMIT})) as other:
        hostile_hub.routes["/api/"] = lambda s: Answer(
            302, [("Location", f"{other.url}/api/models/o/r")]
        )
        _hub_job_fails(tmp_path, "hf:o/r/model.bin", token=TOKEN)
        assert other.seen == []


def test_token_echoed_by_the_hub_never_reaches_errors_or_records(
    engine: _engine.Engine,
    hostile_hub: HostileHub,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    hostile_hub.routes["/api/"] = lambda s: Answer(
        403,
        [
            ("X-Error-Code", f"Denied {s.headers.get('authorization')}"),
            ("X-Error-Message", f"token {TOKEN} is not allowed, Bearer {TOKEN}"),
        ],
        f"your token: {TOKEN}".encode(),
    )
    job = nbmodels.download("hf:o/r/model.bin", token=TOKEN)
    err = expect_error(job, nbmodels.AccessError)
    assert_no_secret(tmp_path, err, err.hint, job.to_dict(), caplog.text)


def test_hub_rate_limit_with_unparseable_retry_after_is_retried(
    engine: _engine.Engine, hostile_hub: HostileHub, tmp_path: Path
) -> None:
    calls = iter(range(100))
    default = hostile_hub.app

    def flaky(seen: Seen) -> Answer:
        if next(calls) == 0:
            return Answer(429, [("Retry-After", "\u00b2")])
        hostile_hub.routes.pop("/api/models/o/r")
        return default(seen)

    hostile_hub.routes["/api/models/o/r"] = flaky
    path = nbmodels.resolve("hf:o/r/model.bin")
    assert path.read_bytes() == hostile_hub.files["model.bin"]


def test_oversized_api_answer_is_not_read_whole(
    engine: _engine.Engine,
    hostile_hub: HostileHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nbmodels.hub import _api as _hub_api

    monkeypatch.setattr(_hub_api, "MAX_BODY", 1 * MIB)
    body = b" " * (48 * MIB) + json.dumps({"sha": COMMIT}).encode()
    hostile_hub.routes["/api/models/o/r"] = lambda s: Answer(
        200, [("Content-Type", "application/json")], body
    )
    _hub_job_fails(tmp_path, "hf:o/r/model.bin")
    (seen,) = hostile_hub.server.requests("/api/models/o/r")
    assert seen.sent < 24 * MIB  # stopped reading near the limit (plus socket buffers)


def test_compressed_api_answer_cannot_inflate_past_the_limit(
    hostile_hub: HostileHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gzip bomb: 64 MiB of JSON white space in about 64 KiB on the wire."""
    from nbmodels.hub import _api as _hub_api
    from nbmodels.hub._api import HubApi
    from nbmodels.transfer import make_client

    monkeypatch.setattr(_hub_api, "MAX_BODY", 1 * MIB)
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * MIB
    bomb = b"".join(packer.compress(block) for _ in range(64)) + packer.compress(b"{}")
    bomb += packer.flush()
    hostile_hub.routes["/api/models/o/r"] = lambda s: Answer(
        200, [("Content-Type", "application/json"), ("Content-Encoding", "gzip")], bomb
    )

    async def commit() -> str:
        client = make_client(FAST)
        try:
            api = HubApi(
                client, FAST, endpoint=hostile_hub.url, repo_type="model", repo_id="o/r",
                credential=None,
            )  # fmt: skip
            return await api.commit(None)
        finally:
            await client.aclose()

    tracemalloc.start()
    try:
        with pytest.raises(nbmodels.NetworkError):
            asyncio.run(commit())
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * MIB, f"inflated {peak / MIB:.0f} MiB for a 1 MiB limit"
