"""Tests of the fault-injecting test server itself (tests/faultserver.py).

Real sockets on 127.0.0.1, through httpx2 and through a raw socket where a client library would
hide what the server sent. Timing assertions are lower bounds only, except the contract that
``close()`` returns within 2 s while a client is stalled.
"""

from __future__ import annotations

import gzip
import hashlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx2
import pytest

from tests.faultserver import Fault, FaultServer, FaultServerError, Headers, http_date

DATA = bytes(range(256)) * 40  # 10240 bytes
N = len(DATA)
ETAG = '"' + hashlib.sha256(DATA).hexdigest() + '"'
LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"
_TLS = ssl.create_default_context()  # built once: loading CA certificates per client is slow


def new_client(**kwargs: Any) -> httpx2.Client:
    """An httpx2 client (plain HTTP here; the shared TLS context only saves start-up time)."""
    kwargs.setdefault("timeout", 10)
    return httpx2.Client(verify=_TLS, **kwargs)


# ---------------------------------------------------------------------------------------------
# helpers


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as srv:
        srv.add_file("a.bin", DATA, last_modified=LAST_MODIFIED)
        yield srv


@pytest.fixture
def client() -> Iterator[httpx2.Client]:
    with new_client() as c:
        yield c


def request_bytes(
    path: str, headers: dict[str, str] | None = None, *, method: str = "GET", close: bool = True
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def raw_exchange(srv: FaultServer, request: bytes, *, timeout: float = 10) -> tuple[bytes, str]:
    """Send ``request`` on a new connection and read until the server closes it.

    Returns everything received and how it ended: ``"eof"`` (FIN) or ``"reset"`` (RST).
    """
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", srv.port), timeout=timeout) as sock:
        sock.sendall(request)
        try:
            while data := sock.recv(1 << 16):
                chunks.append(data)
        except ConnectionResetError:
            return b"".join(chunks), "reset"
    return b"".join(chunks), "eof"


def raw_get(
    srv: FaultServer, path: str, headers: dict[str, str] | None = None, *, method: str = "GET"
) -> tuple[int, Headers, bytes, str]:
    """A raw request with ``Connection: close``: (status, headers, body, "eof" | "reset")."""
    data, end = raw_exchange(srv, request_bytes(path, headers, method=method))
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    items = [tuple(line.split(": ", 1)) for line in lines[1:] if ": " in line]
    return status, Headers(items), body, end  # type: ignore[arg-type]


def server_threads(srv: FaultServer) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"faultserver-{srv.port}-")]


# ---------------------------------------------------------------------------------------------
# normal behaviour


def test_get_serves_the_full_body_with_validators(
    server: FaultServer, client: httpx2.Client
) -> None:
    r = client.get(server.url("a.bin"))
    assert r.status_code == 200
    assert r.content == DATA
    assert r.headers["content-length"] == str(N)
    assert r.headers["etag"] == ETAG
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["last-modified"] == LAST_MODIFIED
    assert r.headers["content-type"] == "application/octet-stream"
    assert server.file_etag("a.bin") == ETAG


def test_head_sends_the_headers_of_get_without_a_body(server: FaultServer) -> None:
    status, headers, body, end = raw_get(server, "/files/a.bin", method="HEAD")
    assert (status, body, end) == (200, b"", "eof")
    assert headers["Content-Length"] == str(N)
    assert headers["ETag"] == ETAG


@pytest.mark.parametrize(
    ("range_header", "start", "end"),
    [
        ("bytes=10-19", 10, 19),
        ("bytes=10-", 10, N - 1),
        ("bytes=-5", N - 5, N - 1),
        ("bytes=0-999999", 0, N - 1),
        (f"bytes={N - 1}-{N - 1}", N - 1, N - 1),
        ("bytes=-999999", 0, N - 1),
    ],
)
def test_range_gives_206_with_content_range(
    server: FaultServer, client: httpx2.Client, range_header: str, start: int, end: int
) -> None:
    r = client.get(server.url("a.bin"), headers={"Range": range_header})
    assert r.status_code == 206
    assert r.headers["content-range"] == f"bytes {start}-{end}/{N}"
    assert r.headers["content-length"] == str(end - start + 1)
    assert r.headers["etag"] == ETAG
    assert r.headers["accept-ranges"] == "bytes"
    assert r.content == DATA[start : end + 1]


@pytest.mark.parametrize("range_header", [f"bytes={N}-", f"bytes={N + 5}-{N + 9}", "bytes=-0"])
def test_unsatisfiable_range_gives_416(
    server: FaultServer, client: httpx2.Client, range_header: str
) -> None:
    r = client.get(server.url("a.bin"), headers={"Range": range_header})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{N}"


@pytest.mark.parametrize("range_header", ["bytes=0-1,5-6", "items=0-5", "bytes=abc", "bytes=9-3"])
def test_unusable_range_is_ignored(
    server: FaultServer, client: httpx2.Client, range_header: str
) -> None:
    r = client.get(server.url("a.bin"), headers={"Range": range_header})
    assert r.status_code == 200
    assert r.content == DATA


@pytest.mark.parametrize(
    ("if_range", "status"),
    [
        (ETAG, 206),
        ('"stale"', 200),
        ("W/" + ETAG, 200),  # If-Range needs a strong comparison
        (LAST_MODIFIED, 206),
        ("Thu, 22 Oct 2015 07:28:00 GMT", 200),
    ],
)
def test_if_range_serves_the_range_only_when_the_validator_matches(
    server: FaultServer, client: httpx2.Client, if_range: str, status: int
) -> None:
    r = client.get(server.url("a.bin"), headers={"Range": "bytes=100-", "If-Range": if_range})
    assert r.status_code == status
    assert r.content == (DATA[100:] if status == 206 else DATA)


def test_if_none_match_gives_304(server: FaultServer, client: httpx2.Client) -> None:
    r = client.get(server.url("a.bin"), headers={"If-None-Match": ETAG})
    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["etag"] == ETAG


def test_file_options_etag_disposition_and_no_ranges(
    server: FaultServer, client: httpx2.Client
) -> None:
    server.add_file("noetag", b"xyz", etag=None, accept_ranges=False)
    server.add_file("custom", b"xyz", etag='W/"weak"', content_disposition="attachment; x=1")
    r = client.get(server.url("noetag"), headers={"Range": "bytes=1-"})
    assert (r.status_code, r.content) == (200, b"xyz")
    assert "etag" not in r.headers
    assert "accept-ranges" not in r.headers
    r = client.get(server.url("custom"))
    assert r.headers["etag"] == 'W/"weak"'
    assert r.headers["content-disposition"] == "attachment; x=1"


def test_unknown_file_is_404_and_other_methods_405(
    server: FaultServer, client: httpx2.Client
) -> None:
    assert client.get(server.url("missing")).status_code == 404
    assert client.get(server.base_url + "/elsewhere").status_code == 404
    r = client.post(server.url("a.bin"), content=b"payload")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD"


def test_names_with_slashes_and_spaces_round_trip(
    server: FaultServer, client: httpx2.Client
) -> None:
    server.add_file("dir/my model.gguf", b"gguf")
    assert server.url("dir/my model.gguf").endswith("/files/dir/my%20model.gguf")
    assert client.get(server.url("dir/my model.gguf")).content == b"gguf"
    assert server.log[-1].name == "dir/my model.gguf"


def test_set_file_changes_content_and_etag_between_requests(
    server: FaultServer, client: httpx2.Client
) -> None:
    server.set_file("a.bin", b"new content")
    r = client.get(server.url("a.bin"), headers={"Range": "bytes=0-", "If-Range": ETAG})
    assert (r.status_code, r.content) == (200, b"new content")
    assert r.headers["etag"] == '"' + hashlib.sha256(b"new content").hexdigest() + '"'
    assert "last-modified" not in r.headers
    server.set_file("a.bin", b"v3", etag='"v3"')
    assert client.get(server.url("a.bin")).headers["etag"] == '"v3"'
    server.remove_file("a.bin")
    assert client.get(server.url("a.bin")).status_code == 404


def test_keep_alive_serves_several_requests_on_one_connection(
    server: FaultServer, client: httpx2.Client
) -> None:
    for _ in range(3):
        assert client.get(server.url("a.bin")).content == DATA
    assert {r.connection_id for r in server.log} == {1}
    assert server.connection_count == 1


def test_pipelined_requests_on_one_socket(server: FaultServer) -> None:
    req = request_bytes("/files/a.bin", {"Range": "bytes=0-3"}, close=False)
    data, end = raw_exchange(server, req + request_bytes("/files/a.bin", {"Range": "bytes=4-7"}))
    assert end == "eof"
    assert data.count(b"HTTP/1.1 206 Partial Content") == 2
    assert data.endswith(DATA[4:8])


def test_connections_are_served_concurrently(server: FaultServer) -> None:
    # Each response stalls after its headers; all three get logged only if served in parallel.
    server.add_fault("a.bin", Fault.stall(60), times=-1)
    socks = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(3)]
    try:
        for s in socks:
            s.sendall(request_bytes("/files/a.bin"))
        reqs = server.wait_for_requests(3, name="a.bin")
        assert len({r.connection_id for r in reqs}) == 3
        for s in socks:
            assert s.recv(1 << 16).startswith(b"HTTP/1.1 200 OK")
    finally:
        for s in socks:
            s.close()


def test_large_body_is_sent_intact(client: httpx2.Client) -> None:
    data = hashlib.sha256(b"seed").digest() * (3 * (1 << 20) // 32 + 7)  # > 3 SEND_CHUNKs
    with FaultServer() as srv:
        srv.add_file("big", data)
        with client.stream("GET", srv.url("big")) as r:
            got = b"".join(r.iter_raw())
        assert got == data
        assert srv.log[-1].body_bytes_sent == len(data)


# ---------------------------------------------------------------------------------------------
# the log


def test_log_records_request_headers_case_insensitively(
    server: FaultServer, client: httpx2.Client
) -> None:
    client.get(
        server.url("a.bin", query="sig=secret&x=1"),
        headers={"Range": "bytes=1-2", "If-Range": ETAG, "Authorization": "Bearer tok"},
    )
    (req,) = server.wait_for_requests(1, done=True)
    assert server.requests_for("a.bin") == [req]
    assert req.method == "GET"
    assert req.path == "/files/a.bin"
    assert req.query == "sig=secret&x=1"
    assert req.range == "bytes=1-2"
    assert req.if_range == ETAG
    assert req.headers["authorization"] == "Bearer tok"
    assert req.headers["AUTHORIZATION"] == "Bearer tok"
    assert "authorization" in req.headers
    assert req.headers.get("cookie") is None
    assert req.status == 206
    assert req.body_bytes_sent == 2
    assert req.fault is None
    assert req.done
    assert req.http_version == "HTTP/1.1"
    assert req.time <= time.monotonic()


def test_requests_for_and_clear_log(server: FaultServer, client: httpx2.Client) -> None:
    server.add_file("b.bin", b"b")
    client.get(server.url("a.bin"))
    client.get(server.url("b.bin"))
    client.get(server.base_url + "/nothing")
    assert [r.name for r in server.log] == ["a.bin", "b.bin", None]
    assert len(server.requests_for("b.bin")) == 1
    server.clear_log()
    assert server.log == []
    client.get(server.url("a.bin"))
    assert len(server.log) == 1


def test_headers_keep_duplicates_and_order() -> None:
    h = Headers([("X-A", "1"), ("x-a", "2"), ("B", "3")])
    assert h["x-A"] == "1, 2"
    assert h.get_all("X-A") == ["1", "2"]
    assert list(h) == ["x-a", "b"]
    assert len(h) == 2
    assert h.raw[1] == ("x-a", "2")
    with pytest.raises(KeyError):
        h["missing"]


def test_wait_for_requests_times_out(server: FaultServer) -> None:
    with pytest.raises(TimeoutError):
        server.wait_for_requests(1, timeout=0.05)


# ---------------------------------------------------------------------------------------------
# faults


@pytest.mark.parametrize("after", [0, 1, 5000])
def test_drop_with_fin_after_n_body_bytes(server: FaultServer, after: int) -> None:
    server.add_fault("a.bin", Fault.drop(after))
    status, headers, body, end = raw_get(server, "/files/a.bin")
    assert (status, headers["Content-Length"], end) == (200, str(N), "eof")
    assert body == DATA[:after]
    assert server.log[-1].body_bytes_sent == after


def test_drop_with_fin_is_an_incomplete_body_for_httpx2(
    server: FaultServer, client: httpx2.Client
) -> None:
    server.add_fault("a.bin", Fault.drop(100))
    with pytest.raises(httpx2.RemoteProtocolError):
        client.get(server.url("a.bin"))
    assert client.get(server.url("a.bin")).content == DATA  # one use only


def test_drop_with_rst_after_n_body_bytes(server: FaultServer, client: httpx2.Client) -> None:
    server.add_fault("a.bin", Fault.drop(1000, rst=True))
    _, _, body, end = raw_get(server, "/files/a.bin")
    assert end == "reset"
    assert DATA.startswith(body)
    assert len(body) <= 1000
    assert server.log[-1].body_bytes_sent == 1000
    server.add_fault("a.bin", Fault.drop(1000, rst=True))
    with pytest.raises(httpx2.ReadError):
        client.get(server.url("a.bin"))


@pytest.mark.parametrize("rst", [False, True])
def test_hang_up_sends_nothing(server: FaultServer, client: httpx2.Client, rst: bool) -> None:
    server.add_fault("a.bin", Fault.hang_up(rst=rst))
    data, end = raw_exchange(server, request_bytes("/files/a.bin"))
    assert (data, end) == (b"", "reset" if rst else "eof")
    assert server.log[-1].status is None
    server.add_fault("a.bin", Fault.hang_up())
    with pytest.raises(httpx2.RemoteProtocolError):
        client.get(server.url("a.bin"))


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 429, 403])
def test_error_status_with_retry_after_seconds(
    server: FaultServer, client: httpx2.Client, status: int
) -> None:
    server.add_fault("a.bin", Fault.error(status, retry_after=7))
    r = client.get(server.url("a.bin"))
    assert r.status_code == status
    assert r.headers["retry-after"] == "7"
    assert "etag" not in r.headers
    assert client.get(server.url("a.bin")).status_code == 200


def test_error_retry_after_as_http_date_or_verbatim(
    server: FaultServer, client: httpx2.Client
) -> None:
    when = http_date(from_now=3)
    server.add_fault("a.bin", Fault.error(503, retry_after=when, body=b"busy"))
    server.add_fault("a.bin", Fault.error(429, retry_after="soon"))
    server.add_fault("a.bin", Fault.error(503, retry_after=datetime(2030, 1, 1, tzinfo=UTC)))
    r = client.get(server.url("a.bin"))
    assert (r.status_code, r.headers["retry-after"], r.content) == (503, when, b"busy")
    assert client.get(server.url("a.bin")).headers["retry-after"] == "soon"
    assert client.get(server.url("a.bin")).headers["retry-after"] == "Tue, 01 Jan 2030 00:00:00 GMT"


def test_http_date_format() -> None:
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert http_date(0, from_now=61) == "Thu, 01 Jan 1970 00:01:01 GMT"


def test_faults_queue_fifo_and_times(server: FaultServer, client: httpx2.Client) -> None:
    server.add_fault("a.bin", Fault.error(500), times=2)
    server.add_fault("a.bin", Fault.error(502))
    assert server.faults_pending("a.bin") == 3
    codes = [client.get(server.url("a.bin")).status_code for _ in range(4)]
    assert codes == [500, 500, 502, 200]
    assert server.faults_pending("a.bin") == 0
    assert [r.fault for r in server.log] == [
        Fault.error(500),
        Fault.error(500),
        Fault.error(502),
        None,
    ]


def test_fault_forever_until_cleared(server: FaultServer, client: httpx2.Client) -> None:
    server.add_fault("a.bin", Fault.error(503), times=-1)
    assert server.faults_pending("a.bin") == -1
    assert all(client.get(server.url("a.bin")).status_code == 503 for _ in range(5))
    server.clear_faults("a.bin")
    assert client.get(server.url("a.bin")).status_code == 200
    with pytest.raises(ValueError, match="times"):
        server.add_fault("a.bin", Fault.error(503), times=0)


def test_fault_filters_by_method_and_predicate(server: FaultServer, client: httpx2.Client) -> None:
    server.add_fault("a.bin", Fault.error(500), methods={"GET"}, when=lambda r: r.range is not None)
    assert client.head(server.url("a.bin")).status_code == 200
    assert client.get(server.url("a.bin")).status_code == 200
    assert client.get(server.url("a.bin"), headers={"Range": "bytes=0-"}).status_code == 500
    assert server.faults_pending("a.bin") == 0


def test_faults_of_one_file_do_not_touch_another(
    server: FaultServer, client: httpx2.Client
) -> None:
    server.add_file("b.bin", b"b")
    server.add_fault("a.bin", Fault.error(500))
    assert client.get(server.url("b.bin")).status_code == 200
    assert client.get(server.url("a.bin")).status_code == 500


@pytest.mark.parametrize("then", ["close", "continue"])
def test_stall_after_headers(server: FaultServer, then: str) -> None:
    server.add_fault("a.bin", Fault.stall(0.3, then=then))  # type: ignore[arg-type]
    t0 = time.monotonic()
    status, _, body, end = raw_get(server, "/files/a.bin")
    assert time.monotonic() - t0 >= 0.25
    assert (status, end) == (200, "eof")
    assert body == (b"" if then == "close" else DATA)


def test_stall_mid_body_then_continue(server: FaultServer, client: httpx2.Client) -> None:
    server.add_fault("a.bin", Fault.stall(0.3, at=4000))
    t0 = time.monotonic()
    assert client.get(server.url("a.bin")).content == DATA
    assert time.monotonic() - t0 >= 0.25


def test_stall_mid_body_holds_after_exactly_n_bytes(server: FaultServer) -> None:
    server.add_fault("a.bin", Fault.stall(60, at=4000))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request_bytes("/files/a.bin"))
        data = b""
        while not data.endswith(DATA[:4000]):
            data += sock.recv(1 << 16)
        sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            sock.recv(1)
        req = server.log[-1]
        assert (req.body_bytes_sent, req.done) == (4000, False)
        server.close()  # ends the stall
        sock.settimeout(10)
        assert sock.recv(1) == b""


def test_stall_mid_body_then_close(server: FaultServer) -> None:
    server.add_fault("a.bin", Fault.stall(0.1, at=4000, then="close"))
    _, _, body, end = raw_get(server, "/files/a.bin")
    assert (body, end) == (DATA[:4000], "eof")


def test_delay_before_headers(server: FaultServer, client: httpx2.Client) -> None:
    server.add_fault("a.bin", Fault.delay_headers(0.3))
    t0 = time.monotonic()
    assert client.get(server.url("a.bin")).content == DATA
    assert time.monotonic() - t0 >= 0.25


def test_stall_longer_than_the_client_read_timeout(server: FaultServer) -> None:
    server.add_fault("a.bin", Fault.stall(30, at=10))
    with new_client(timeout=httpx2.Timeout(5, read=0.2)) as c:  # noqa: SIM117
        with pytest.raises(httpx2.ReadTimeout), c.stream("GET", server.url("a.bin")) as r:
            b"".join(r.iter_raw())


def test_trickle_paces_the_body(server: FaultServer, client: httpx2.Client) -> None:
    server.add_fault("a.bin", Fault.trickle(10_000))
    t0 = time.monotonic()
    with client.stream("GET", server.url("a.bin")) as r:
        chunks = list(r.iter_raw())
    assert time.monotonic() - t0 >= 0.8  # 10240 bytes at 10 kB/s: ~1 s
    assert b"".join(chunks) == DATA


def test_ignore_range_answers_200_full(server: FaultServer, client: httpx2.Client) -> None:
    server.add_fault("a.bin", Fault.no_range())
    r = client.get(server.url("a.bin"), headers={"Range": "bytes=100-"})
    assert (r.status_code, r.content) == (200, DATA)
    assert "content-range" not in r.headers


@pytest.mark.parametrize(
    ("deltas", "send", "header", "body"),
    [
        ((1, 0, 0), "requested", f"bytes 101-199/{N}", DATA[100:200]),
        ((0, -1, 0), "requested", f"bytes 100-198/{N}", DATA[100:200]),
        ((0, 0, 5), "requested", f"bytes 100-199/{N + 5}", DATA[100:200]),
        ((10, 10, 0), "claimed", f"bytes 110-209/{N}", DATA[110:210]),
        ((-100, -50, -1), "claimed", f"bytes 0-149/{N - 1}", DATA[0:150]),
    ],
)
def test_wrong_content_range(
    server: FaultServer,
    client: httpx2.Client,
    deltas: tuple[int, int, int],
    send: str,
    header: str,
    body: bytes,
) -> None:
    start, end, total = deltas
    fault = Fault.bad_content_range(start=start, end=end, total=total, send=send)  # type: ignore[arg-type]
    server.add_fault("a.bin", fault)
    r = client.get(server.url("a.bin"), headers={"Range": "bytes=100-199"})
    assert r.status_code == 206
    assert r.headers["content-range"] == header
    assert r.content == body


def test_update_changes_content_and_etag_before_the_response(
    server: FaultServer, client: httpx2.Client
) -> None:
    server.add_fault("a.bin", Fault.update(b"upstream v2"))
    r = client.get(server.url("a.bin"), headers={"Range": "bytes=5-", "If-Range": ETAG})
    new_etag = '"' + hashlib.sha256(b"upstream v2").hexdigest() + '"'
    assert (r.status_code, r.content, r.headers["etag"]) == (200, b"upstream v2", new_etag)
    assert server.file_etag("a.bin") == new_etag
    assert client.get(server.url("a.bin")).content == b"upstream v2"  # the update stays


def test_content_length_claims_more_than_sent(server: FaultServer, client: httpx2.Client) -> None:
    server.add_fault("a.bin", Fault.length_lie(10))
    _status, headers, body, end = raw_get(server, "/files/a.bin")
    assert (headers["Content-Length"], body, end) == (str(N + 10), DATA, "eof")
    server.add_fault("a.bin", Fault.length_lie(10))
    with pytest.raises(httpx2.RemoteProtocolError):
        client.get(server.url("a.bin"))


def test_content_length_claims_fewer_than_sent(server: FaultServer, client: httpx2.Client) -> None:
    server.add_fault("a.bin", Fault.length_lie(-10))
    _status, headers, body, _ = raw_get(server, "/files/a.bin")
    assert (headers["Content-Length"], body) == (str(N - 10), DATA)
    server.add_fault("a.bin", Fault.length_lie(-10))
    assert client.get(server.url("a.bin")).content == DATA[:-10]


def test_gzip_body_even_when_identity_was_asked(server: FaultServer) -> None:
    server.add_fault("a.bin", Fault.gzipped())
    status, headers, body, _ = raw_get(
        server, "/files/a.bin", {"Accept-Encoding": "identity", "Range": "bytes=0-99"}
    )
    assert status == 206
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Content-Length"] == str(len(body))
    assert gzip.decompress(body) == DATA[:100]


def test_wrong_etag_on_a_206(server: FaultServer, client: httpx2.Client) -> None:
    server.add_fault("a.bin", Fault.wrong_etag('"other"'))
    r = client.get(server.url("a.bin"), headers={"Range": "bytes=0-9", "If-Range": ETAG})
    assert r.status_code == 206
    assert r.headers.get_list("etag") == ['"other"']


def test_chunked_transfer_encoding_without_content_length(server: FaultServer) -> None:
    data = DATA * 150  # > 1 MiB: several chunks
    server.add_file("big", data)
    server.add_fault("big", Fault.chunked_body())
    _, headers, body, _ = raw_get(server, "/files/big")
    assert headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in headers
    assert body.endswith(b"\r\n0\r\n\r\n")
    server.add_fault("big", Fault.chunked_body())
    with new_client() as c:
        r = c.get(server.url("big"))
    assert "content-length" not in r.headers
    assert r.content == data


def test_malformed_header_lines(server: FaultServer, client: httpx2.Client) -> None:
    server.add_fault("a.bin", Fault.malformed_headers(b"no colon here", b"X-Nul: a\x00b"))
    data, _ = raw_exchange(server, request_bytes("/files/a.bin"))
    assert b"\r\nno colon here\r\nX-Nul: a\x00b\r\n" in data.partition(b"\r\n\r\n")[0] + b"\r\n"
    server.add_fault("a.bin", Fault.malformed_headers())
    with pytest.raises(httpx2.RemoteProtocolError):
        client.get(server.url("a.bin"))


def test_oversized_header(server: FaultServer) -> None:
    server.add_fault("a.bin", Fault.huge_header(100_000))
    status, headers, body, _ = raw_get(server, "/files/a.bin")
    assert status == 200
    assert headers["X-Padding"] == "a" * 100_000
    assert body == DATA


def test_extra_and_dropped_headers(server: FaultServer, client: httpx2.Client) -> None:
    hostile = 'attachment; filename="../../etc/passwd"'
    fault = Fault.with_headers(
        [
            ("Content-Disposition", hostile),
            ("ETag", '"dup"'),
            ("Link", '<http://evil.example/x>; rel="next"'),
        ],
        drop=["accept-ranges"],
    )
    server.add_fault("a.bin", fault)
    r = client.get(server.url("a.bin"))
    assert r.headers["content-disposition"] == hostile
    assert r.headers.get_list("etag") == [ETAG, '"dup"']
    assert r.headers["link"] == '<http://evil.example/x>; rel="next"'
    assert "accept-ranges" not in r.headers
    server.add_fault("a.bin", Fault.with_headers({"X-Raw": "naïve".encode()}))
    _status, headers, _, _ = raw_get(server, "/files/a.bin")
    assert headers["X-Raw"] == "naïve".encode().decode("latin-1")


def test_raw_response_is_sent_verbatim(server: FaultServer, client: httpx2.Client) -> None:
    server.add_fault("a.bin", Fault.raw_response(b"HTTP/1.0 200 OK\r\n\r\nbody"))
    assert raw_exchange(server, request_bytes("/files/a.bin")) == (
        b"HTTP/1.0 200 OK\r\n\r\nbody",
        "eof",
    )
    server.add_fault("a.bin", Fault.raw_response(b"garbage\r\n\r\n"))
    with pytest.raises(httpx2.RemoteProtocolError):
        client.get(server.url("a.bin"))


def test_close_connection_fault_forces_a_new_connection(
    server: FaultServer, client: httpx2.Client
) -> None:
    server.add_fault("a.bin", Fault.close_connection())
    assert client.get(server.url("a.bin")).headers["connection"] == "close"
    client.get(server.url("a.bin"))
    assert [r.connection_id for r in server.log] == [1, 2]


def test_faults_combine_with_or(server: FaultServer) -> None:
    fault = Fault.trickle(50_000) | Fault.drop(3000, rst=True) | Fault.with_headers({"X-A": "1"})
    fault = fault | Fault.with_headers({"X-B": "2"})
    assert fault.rate == 50_000
    assert (fault.drop_after, fault.rst) == (3000, True)
    assert fault.headers == (("X-A", "1"), ("X-B", "2"))
    assert repr(Fault.drop(5)) == "Fault(drop_after=5)"
    server.add_fault("a.bin", fault)
    _, headers, body, end = raw_get(server, "/files/a.bin")
    assert (headers["X-A"], headers["X-B"], end) == ("1", "2", "reset")
    assert DATA.startswith(body)


def test_chunked_body_dropped_midway(server: FaultServer, client: httpx2.Client) -> None:
    server.add_fault("a.bin", Fault.chunked_body() | Fault.drop(500))
    with pytest.raises(httpx2.RemoteProtocolError):
        client.get(server.url("a.bin"))


def test_faults_apply_to_head_requests(server: FaultServer, client: httpx2.Client) -> None:
    server.add_fault("a.bin", Fault.error(503, retry_after=1))
    r = client.head(server.url("a.bin"))
    assert (r.status_code, r.headers["retry-after"], r.content) == (503, "1", b"")


# ---------------------------------------------------------------------------------------------
# redirects


def test_redirect_relative_location(server: FaultServer) -> None:
    server.add_redirect("/r/one", "../files/a.bin", status=307)
    with new_client(follow_redirects=True) as c:
        r = c.get(server.base_url + "/r/one?x=1")
    assert (r.status_code, r.content) == (200, DATA)
    assert [req.status for req in server.log] == [307, 200]


def test_redirect_loop(server: FaultServer) -> None:
    server.add_redirect("/a", "/b")
    server.add_redirect("/b", server.base_url + "/a", status=301)
    with new_client(follow_redirects=True) as c, pytest.raises(httpx2.TooManyRedirects):
        c.get(server.base_url + "/a")
    assert {req.path for req in server.log} == {"/a", "/b"}


def test_redirect_long_chain(server: FaultServer) -> None:
    for i in range(30):
        server.add_redirect(f"/hop/{i}", f"/hop/{i + 1}", status=308)
    server.add_redirect("/hop/30", "/files/a.bin")
    with new_client(follow_redirects=True, max_redirects=40) as c:
        assert c.get(server.base_url + "/hop/0").content == DATA
    assert len(server.log) == 32


@pytest.mark.parametrize("location", ["ftp://127.0.0.1/a.bin", "file:///etc/passwd"])
def test_redirect_to_another_scheme(server: FaultServer, location: str) -> None:
    server.add_redirect("/files/a.bin", location)
    with new_client() as c:
        r = c.get(server.url("a.bin"))
    assert (r.status_code, r.headers["location"]) == (302, location)


def test_redirect_to_another_port(server: FaultServer) -> None:
    with FaultServer() as cdn:
        cdn.add_file("blob", b"from the cdn")
        server.add_redirect("/files/a.bin", cdn.url("blob", query="sig=1"))
        with new_client(follow_redirects=True) as c:
            r = c.get(server.url("a.bin"), headers={"Authorization": "Bearer t"})
        assert r.content == b"from the cdn"
        assert cdn.log[0].query == "sig=1"
        assert cdn.port != server.port
        assert server.log[0].headers["authorization"] == "Bearer t"
        assert "authorization" not in cdn.log[0].headers  # httpx2 strips it across origins


def test_redirect_matching_a_full_target_with_query(server: FaultServer) -> None:
    server.add_redirect("/r?v=1", "/files/a.bin")
    with new_client() as c:
        assert c.get(server.base_url + "/r?v=1").status_code == 302
        assert c.get(server.base_url + "/r?v=2").status_code == 404
    with pytest.raises(ValueError, match="start with"):
        server.add_redirect("r", "/x")


# ---------------------------------------------------------------------------------------------
# robustness and lifecycle


def test_bad_request_line_and_oversized_request_head(server: FaultServer) -> None:
    data, _ = raw_exchange(server, b"NONSENSE\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400 ")
    data, _ = raw_exchange(
        server, b"GET /files/a.bin HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n"
    )
    assert data.startswith(b"HTTP/1.1 431 ")
    data, _ = raw_exchange(server, b"GET /files/a.bin HTTP/1.1\r\nbad header\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 400 ")
    data, _ = raw_exchange(server, b"GET /files/a.bin HTTP/1.0\r\n\r\n")  # HTTP/1.0: then close
    assert data.startswith(b"HTTP/1.1 200 ")
    assert data.endswith(DATA)


def test_client_disconnect_mid_response_is_harmless(client: httpx2.Client) -> None:
    with FaultServer() as srv:  # leaving the block raises if the server had an internal error
        srv.add_file("big", bytes(8 << 20))
        for rst in (False, True):
            sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
            sock.sendall(request_bytes("/files/big"))
            assert sock.recv(1000).startswith(b"HTTP/1.1 200")
            if rst:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            sock.close()
        srv.wait_for_requests(2, done=True)
        assert client.get(srv.url("big"), headers={"Range": "bytes=0-9"}).content == bytes(10)
    assert srv.errors == []


def test_close_with_a_stalled_client_is_prompt_and_leaves_no_threads() -> None:
    srv = FaultServer()
    srv.add_file("a.bin", DATA)
    srv.add_fault("a.bin", Fault.stall(60, at=100), times=-1)
    idle = socket.create_connection(("127.0.0.1", srv.port), timeout=10)  # keep-alive, no request
    stalled = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    try:
        stalled.sendall(request_bytes("/files/a.bin"))
        assert stalled.recv(1 << 16).startswith(b"HTTP/1.1 200")
        srv.wait_for_requests(1)
        assert len(server_threads(srv)) == 3  # accept + two connections
        t0 = time.monotonic()
        srv.close()
        assert time.monotonic() - t0 < 2
        assert server_threads(srv) == []
        srv.close()  # idempotent
        srv.check()
        assert idle.recv(10) == b""
        with pytest.raises(httpx2.ConnectError), new_client() as c:
            c.get(srv.url("a.bin"))
    finally:
        idle.close()
        stalled.close()
        srv.close()


def test_close_with_a_client_that_stops_reading() -> None:
    with FaultServer() as srv:
        srv.add_file("big", bytes(32 << 20))
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            sock.sendall(request_bytes("/files/big"))
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
            srv.wait_for_requests(1)
            t0 = time.monotonic()
            srv.close()
            assert time.monotonic() - t0 < 2
    assert server_threads(srv) == []


def test_internal_errors_surface_when_leaving_the_block() -> None:
    def broken(_req: object) -> bool:
        raise ZeroDivisionError

    with pytest.raises(FaultServerError, match="ZeroDivisionError"), FaultServer() as srv:
        srv.add_file("a.bin", DATA)
        srv.add_fault("a.bin", Fault.error(500), when=broken)
        with new_client() as c, pytest.raises(httpx2.RemoteProtocolError):
            c.get(srv.url("a.bin"))
