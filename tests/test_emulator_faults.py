"""Fault switches, per-connection throttling, the pytest fixtures and the emulator's lifecycle.

Timing checks are lower bounds only (a slow machine can only make them pass more easily).
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from importlib.metadata import entry_points
from pathlib import Path

import httpx2
import pytest

from nbmodels.testing import Fault, GeneratedFile, HubEmulator
from tests.conftest import http_client

_PLUGIN = "nbmodels.testing._pytest_plugin"
_INSTALLED = bool(entry_points(group="pytest11", name="nbmodels"))
pytest_plugins = ["pytester"] if _INSTALLED else ["pytester", _PLUGIN]


def blob_urls(
    hub: HubEmulator, http: httpx2.Client, name: str = "blob-1MiB.bin"
) -> tuple[str, str]:
    """(resolve URL, CDN URL) of a standard LFS blob."""
    url = hub.resolve_url(hub.standard.blobs, name)  # type: ignore[union-attr]
    return url, http.head(url).headers["Location"]


def blob(hub: HubEmulator, name: str = "blob-1MiB.bin") -> bytes:
    return hub.repo(hub.standard.blobs).file(name).read()  # type: ignore[union-attr]


# -- faults -----------------------------------------------------------------------------------


def test_drop_closes_the_connection_after_n_body_bytes_then_serves_again(
    hf_hub: HubEmulator, http: httpx2.Client
) -> None:
    _, cdn = blob_urls(hf_hub, http)
    fault = hf_hub.faults.add(Fault("drop", after_bytes=1000, origin="cdn", path_glob="*.bin"))
    with pytest.raises(httpx2.TransportError):
        http.get(cdn)
    assert http.get(cdn).content == blob(hf_hub)
    dropped, ok = [r for r in hf_hub.requests if r.origin == "cdn"]
    assert (dropped.status, dropped.bytes_sent, dropped.faults) == (200, 1000, ("drop",))
    assert (ok.bytes_sent, ok.faults) == (len(blob(hf_hub)), ())
    assert fault.hits == 1 and fault.exhausted


def test_reset_closes_the_connection_without_answering(
    hf_hub: HubEmulator, http: httpx2.Client
) -> None:
    hf_hub.faults.add(Fault("reset", origin="hub", times=2))
    url = hf_hub.resolve_url(hf_hub.standard.blobs, "small.txt")  # type: ignore[union-attr]
    with pytest.raises(httpx2.TransportError):
        http.head(url)
    with pytest.raises(httpx2.TransportError):
        http.get(url)
    assert [(r.status, r.faults) for r in hf_hub.requests] == [(0, ("reset",))] * 2
    assert http.get(url).status_code == 200


def test_status_faults_send_retry_after_for_the_next_k_requests(
    hf_hub: HubEmulator, http: httpx2.Client
) -> None:
    url = hf_hub.resolve_url(hf_hub.standard.blobs, "small.txt")  # type: ignore[union-attr]
    hf_hub.faults.add(Fault("status", status=503, retry_after=3, times=2))
    first, second, third = (http.get(url) for _ in range(3))
    assert [r.status_code for r in (first, second, third)] == [503, 503, 200]
    assert first.headers["Retry-After"] == "3"
    when = datetime(2030, 1, 1, tzinfo=UTC)
    hf_hub.faults.add(Fault("status", status=429, retry_after=when, error_code="RateLimited"))
    limited = http.get(url)
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "Tue, 01 Jan 2030 00:00:00 GMT"
    assert limited.headers["X-Error-Code"] == "RateLimited"
    hf_hub.faults.add(Fault("status", status=408))
    assert http.head(url).status_code == 408
    assert http.head(url).status_code == 200


def test_stall_holds_the_body_until_released(hf_hub: HubEmulator, http: httpx2.Client) -> None:
    _, cdn = blob_urls(hf_hub, http)
    stall = hf_hub.faults.add(Fault("stall", seconds=None, origin="cdn"))
    result: dict[str, bytes] = {}
    with http.stream("GET", cdn) as response:
        assert response.status_code == 200  # the headers came through
        reader = threading.Thread(target=lambda: result.setdefault("body", response.read()))
        reader.start()
        reader.join(0.3)
        assert reader.is_alive() and "body" not in result
        stall.release()
        reader.join(10)
    assert result["body"] == blob(hf_hub)


def test_stall_and_delay_for_a_number_of_seconds(hf_hub: HubEmulator, http: httpx2.Client) -> None:
    url = hf_hub.resolve_url(hf_hub.standard.blobs, "small.txt")  # type: ignore[union-attr]
    hf_hub.faults.add(Fault("stall", seconds=0.3))
    start = time.monotonic()
    assert http.get(url).content == b"small git file\n"
    assert time.monotonic() - start >= 0.3
    hf_hub.faults.add(Fault("delay", seconds=0.3, method="HEAD"))
    start = time.monotonic()
    assert http.head(url).status_code == 200
    assert time.monotonic() - start >= 0.3


def test_trickle_sends_the_body_slowly(hf_hub: HubEmulator, http: httpx2.Client) -> None:
    hf_hub.add_repo("nbm-test/trickle", {"notes.txt": "x" * 20_000})
    hf_hub.faults.add(Fault("trickle", rate=40_000, path_glob="notes.txt"))
    start = time.monotonic()
    body = http.get(hf_hub.resolve_url("nbm-test/trickle", "notes.txt")).content
    assert len(body) == 20_000 and time.monotonic() - start >= 0.3
    assert hf_hub.requests[-1].faults == ("trickle",)


def test_ignore_range_answers_200_with_the_whole_body(
    hf_hub: HubEmulator, http: httpx2.Client
) -> None:
    _, cdn = blob_urls(hf_hub, http)
    hf_hub.faults.add(Fault("ignore_range", origin="cdn"))
    ignored = http.get(cdn, headers={"Range": "bytes=100-199"})
    assert ignored.status_code == 200 and ignored.content == blob(hf_hub)
    honoured = http.get(cdn, headers={"Range": "bytes=100-199"})
    assert honoured.status_code == 206 and honoured.content == blob(hf_hub)[100:200]


def test_corrupt_flips_one_byte_behind_intact_metadata(
    hf_hub: HubEmulator, http: httpx2.Client
) -> None:
    url, cdn = blob_urls(hf_hub, http)
    hf_hub.faults.add(Fault("corrupt", offset=12_345, origin="cdn"))
    served = http.get(cdn).content
    expected = blob(hf_hub)
    assert len(served) == len(expected)
    assert [i for i in range(len(expected)) if served[i] != expected[i]] == [12_345]
    linked = http.head(url).headers["X-Linked-Etag"].strip('"')
    assert hashlib.sha256(served).hexdigest() != linked == hashlib.sha256(expected).hexdigest()


def test_change_serves_another_version_with_its_own_etag(
    hf_hub: HubEmulator, http: httpx2.Client
) -> None:
    url, _ = blob_urls(hf_hub, http)
    hf_hub.clear_log()
    hf_hub.faults.add(Fault("change", origin="hub", skip=1, path_glob="blob-1MiB.bin"))
    first, changed, again = (http.head(url) for _ in range(3))
    assert first.headers["X-Linked-Etag"] == again.headers["X-Linked-Etag"]
    assert changed.headers["X-Linked-Etag"] != first.headers["X-Linked-Etag"]
    assert changed.headers["X-Linked-Size"] == first.headers["X-Linked-Size"]
    body = http.get(changed.headers["Location"]).content
    assert body != blob(hf_hub) and len(body) == len(blob(hf_hub))
    assert f'"{hashlib.sha256(body).hexdigest()}"' == changed.headers["X-Linked-Etag"]
    # On the CDN (a plain file server) the same URL answers with other bytes and another ETag.
    original = http.get(first.headers["Location"])
    hf_hub.faults.add(Fault("change", origin="cdn"))
    swapped = http.get(first.headers["Location"])
    assert swapped.headers["ETag"] != original.headers["ETag"]
    assert swapped.content != original.content
    # A git file changes its ETag too.
    small = hf_hub.resolve_url(hf_hub.standard.blobs, "small.txt")  # type: ignore[union-attr]
    hf_hub.faults.add(Fault("change", origin="hub", path_glob="small.txt"))
    assert http.head(small).headers["ETag"] != http.head(small).headers["ETag"]


def test_faults_only_hit_matching_origin_method_path_and_repo(
    hf_hub: HubEmulator, http: httpx2.Client
) -> None:
    ids = hf_hub.standard
    assert ids is not None
    fault = hf_hub.faults.add(
        Fault("status", status=500, origin="cdn", method="GET", path_glob="*.gguf", times=None)
    )
    readme = hf_hub.resolve_url(ids.gguf, "README.md")
    assert http.get(readme).status_code == 200  # hub origin, not a gguf
    gguf = hf_hub.resolve_url(ids.gguf, "Tiny-Q4_K_M.gguf")
    location = http.head(gguf).headers["Location"]  # HEAD on the hub: untouched
    assert http.head(location).status_code == 200  # HEAD on the CDN: untouched
    assert http.get(location).status_code == 500
    assert http.get(location).status_code == 500  # times=None: every time
    assert fault.hits == 2
    hf_hub.faults.remove(fault)
    assert http.get(location).status_code == 200
    other = hf_hub.faults.add(Fault("status", status=502, repo_id=ids.safetensors))
    assert http.get(readme).status_code == 200
    assert http.head(hf_hub.resolve_url(ids.safetensors, "config.json")).status_code == 502
    assert other.exhausted and len(hf_hub.faults) == 1  # kept (exhausted) for inspection
    hf_hub.faults.clear()
    assert len(hf_hub.faults) == 0


def test_faults_apply_to_api_routes_by_url_glob(hf_hub: HubEmulator, http: httpx2.Client) -> None:
    hf_hub.faults.add(Fault("status", status=500, path_glob="/api/*"))
    url = f"{hf_hub.endpoint}/api/models/{hf_hub.standard.gguf}"  # type: ignore[union-attr]
    assert http.get(url).status_code == 500
    assert http.get(url).status_code == 200


def test_fault_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="origin"):
        Fault("drop", origin="mirror")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="after_bytes"):
        Fault("drop", after_bytes=-1)


def test_huggingface_hub_retries_after_a_drop(hf_hub_env: HubEmulator, tmp_path: Path) -> None:
    from huggingface_hub import hf_hub_download

    ids = hf_hub_env.standard
    assert ids is not None
    hf_hub_env.faults.add(Fault("drop", after_bytes=200_000, origin="cdn"))
    path = hf_hub_download(
        ids.blobs, "blob-1MiB.bin", endpoint=hf_hub_env.endpoint, cache_dir=tmp_path
    )
    assert Path(path).read_bytes() == blob(hf_hub_env)
    # huggingface_hub reads in 10 MB chunks, so it had nothing to resume from: a full retry.
    cdn = [r for r in hf_hub_env.requests if r.origin == "cdn"]
    assert [(r.bytes_sent, r.faults) for r in cdn] == [
        (200_000, ("drop",)),
        (len(blob(hf_hub_env)), ()),
    ]


# -- throttling -------------------------------------------------------------------------------


def test_throttle_limits_the_cdn_per_connection(hf_hub: HubEmulator, http: httpx2.Client) -> None:
    _, cdn = blob_urls(hf_hub, http)
    hf_hub.throttle = 2_000_000
    assert hf_hub.throttle == 2_000_000
    start = time.monotonic()
    assert len(http.get(cdn).content) == 1024 * 1024  # 1 MiB at 2 MB/s: about 0.5 s
    assert time.monotonic() - start >= 0.3

    # Two connections at once: each is limited on its own.
    timings: list[float] = []

    def fetch() -> None:
        with http_client() as own:
            began = time.monotonic()
            assert len(own.get(cdn).content) == 1024 * 1024
            timings.append(time.monotonic() - began)

    workers = [threading.Thread(target=fetch) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(20)
    assert len(timings) == 2 and min(timings) >= 0.3
    connections = {r.connection for r in hf_hub.requests if r.origin == "cdn"}
    assert len(connections) == 3

    hf_hub.throttle = None
    assert hf_hub.throttle is None


def test_throttle_rules_for_git_files_and_single_paths(
    hf_hub: HubEmulator, http: httpx2.Client
) -> None:
    ids = hf_hub.standard
    assert ids is not None
    hf_hub.set_throttle(1_000_000, origin="hub", path_glob="git-*.dat")
    start = time.monotonic()
    body = http.get(hf_hub.resolve_url(ids.blobs, "git-256KiB.dat")).content
    assert len(body) == 256 * 1024 and time.monotonic() - start >= 0.15
    assert hf_hub.throttle is None  # the CDN default stays unlimited
    with pytest.raises(ValueError, match="rate"):
        hf_hub.set_throttle(0)


# -- fixtures and lifecycle -------------------------------------------------------------------


def emulator_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("nbmodels-emulator")]


def test_close_joins_every_thread_with_idle_and_stalled_connections() -> None:
    hub = HubEmulator().start()
    hub.add_repo("nbm-test/x", {"a.bin": GeneratedFile(300_000, 1)})
    url = hub.resolve_url("nbm-test/x", "a.bin")
    errors: list[BaseException] = []
    with http_client(follow_redirects=True) as idle, http_client() as stalled:
        assert idle.get(url).status_code == 200  # leaves keep-alive connections open
        hub.faults.add(Fault("stall", seconds=None, origin="cdn"))
        location = stalled.head(url).headers["Location"]

        def blocked() -> None:
            try:
                stalled.get(location)
            except httpx2.TransportError as exc:  # the emulator went away mid-answer
                errors.append(exc)

        waiter = threading.Thread(target=blocked)
        waiter.start()
        time.sleep(0.2)
        assert emulator_threads()
        hub.close()
        assert emulator_threads() == []
        waiter.join(10)
        assert not waiter.is_alive()
    hub.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        hub.start()
    with pytest.raises(httpx2.ConnectError), http_client() as late:
        late.get(url)


def test_an_unstarted_emulator_has_no_endpoint() -> None:
    hub = HubEmulator()
    with pytest.raises(RuntimeError, match="not started"):
        _ = hub.endpoint
    hub.close()
    assert emulator_threads() == []


def test_importing_the_plugin_starts_nothing() -> None:
    script = textwrap.dedent(
        f"""
        import sys, threading
        import {_PLUGIN}
        assert "nbmodels.testing._emulator" not in sys.modules, "emulator imported"
        assert "nbmodels.testing._http" not in sys.modules, "server imported"
        assert not [t for t in threading.enumerate() if t.name.startswith("nbmodels-emulator")]
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_python_m_serves_until_terminated() -> None:
    command = [sys.executable, "-m", "nbmodels.testing", "--throttle", "5000000"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            endpoint = proc.stdout.readline().strip().removeprefix("HF_ENDPOINT=")
            assert endpoint.startswith("http://127.0.0.1:")
            with http_client() as client:
                info = client.get(f"{endpoint}/api/models/nbm-test/Tiny-GGUF")
            assert info.status_code == 200 and info.json()["id"] == "nbm-test/Tiny-GGUF"
        finally:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_fixtures_give_each_test_a_fresh_emulator(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from nbmodels.testing import Fault

        seen = []

        def test_one(hf_hub):
            seen.append(hf_hub.endpoint)
            hf_hub.faults.add(Fault("status", status=500, times=None))
            hf_hub.throttle = 1000
            assert hf_hub.standard.gguf == "nbm-test/Tiny-GGUF"

        def test_two(hf_hub_env):
            import os
            assert hf_hub_env.endpoint not in seen
            assert len(hf_hub_env.faults) == 0 and hf_hub_env.throttle is None
            assert hf_hub_env.requests == []
            assert os.environ["HF_ENDPOINT"] == hf_hub_env.endpoint
        """
    )
    args = [] if _INSTALLED else ["-p", _PLUGIN]
    result = pytester.runpytest_inprocess(*args)
    result.assert_outcomes(passed=2)
    assert emulator_threads() == []
