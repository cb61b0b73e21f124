"""Retries as a user sees them (issue 12, item 7): a refused connection gives up sooner than a
dropped one and says nothing was downloaded; while a transfer waits to retry, the snapshots
carry the notice and every front end's text shows it ("retrying in 4 s: connection refused").
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import socket
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import nbmodels
from nbmodels._config import Settings
from nbmodels._present import file_text, job_text, plain_text
from nbmodels._progress import FileProgress, JobSnapshot, Progress, RetryNotice, format_progress
from nbmodels.cli._progress import PlainView
from nbmodels.engine import _engine
from nbmodels.notebook._state import job_state
from nbmodels.notebook._text import progress_line
from nbmodels.testing import Fault as HubFault
from nbmodels.testing import HubEmulator, StandardRepos
from tests.conftest import FAST, payload
from tests.faultserver import Fault, FaultServer
from tests.test_download import Recorder, wait_for

#: The budgets differ on purpose: eight dropped connections in a row, three refused ones.
BUDGETS = {"max_attempts": 8, "refused_attempts": 3}


@pytest.fixture
def settings() -> Settings:
    return dataclasses.replace(FAST, **BUDGETS)


def closed_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def retries(rec: Recorder) -> list[tuple[str, int]]:
    """(reason, attempt) of each distinct retry notice of the job's files, in order."""
    out: list[tuple[str, int]] = []
    for snap in rec.snaps:
        for f in snap.files:
            r = f.progress.retry
            if r is not None and (r.reason, r.attempt) not in out:
                out.append((r.reason, r.attempt))
    return out


# -- the budgets ------------------------------------------------------------------------------


def test_refused_connection_gives_up_after_its_smaller_budget_and_says_nothing_was_downloaded(
    engine: _engine.Engine, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{closed_port()}/m.bin"
    job = nbmodels.download(url, dir=tmp_path / "out")
    rec = Recorder()
    job.subscribe(rec)
    with pytest.raises(nbmodels.NetworkError) as info:
        job.wait(60)
    message = str(info.value)
    assert message == (
        f"Connection to {url} refused 3 times in a row; nothing is listening there. "
        "Nothing was downloaded. Check the URL (host and port) and that the server is "
        "running, then try again."
    )
    assert "resume from 0 B" not in message
    # Three attempts: the first two were each followed by a wait the snapshots announced.
    assert retries(rec) == [("connection refused", 1), ("connection refused", 2)]
    assert job.status == "failed"
    assert list((tmp_path / "out").glob(".m.bin*")) == []  # no partial file, no state


def test_a_dropped_connection_keeps_the_larger_budget(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("m.bin", payload(1000))
    server.add_fault("m.bin", Fault.hang_up(), times=-1)
    job = nbmodels.download(server.url("m.bin"), dir=tmp_path / "out")
    with pytest.raises(nbmodels.NetworkError) as info:
        job.wait(60)
    assert len(server.requests_for("m.bin")) == BUDGETS["max_attempts"]
    assert f"after {BUDGETS['max_attempts']} attempts without progress" in str(info.value)
    assert "Nothing was downloaded. Try again later." in str(info.value)


def test_a_refused_hub_endpoint_gives_up_after_the_smaller_budget(
    engine: _engine.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    with pytest.raises(nbmodels.NetworkError) as info:
        nbmodels.download("hf:o/r/x.bin").wait(60)
    assert f"after 3 attempts: connection to {endpoint} refused" in str(info.value)


def test_a_message_after_some_bytes_says_what_is_kept(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("m.bin", payload(3_000_000))
    server.add_fault("m.bin", Fault.drop(after=1_000_000))
    server.add_fault("m.bin", Fault.hang_up(), times=-1)
    with pytest.raises(nbmodels.NetworkError) as info:
        nbmodels.download(server.url("m.bin"), dir=tmp_path / "out").wait(60)
    assert str(info.value).endswith(
        "1.0 MB of 3.0 MB is kept: run the same download again to resume."
    )


def test_a_server_that_goes_away_mid_download_is_given_up_sooner_and_keeps_the_data(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("m.bin", payload(3_000_000))
    server.add_fault("m.bin", Fault.trickle(1_000_000))
    job = nbmodels.download(server.url("m.bin"), dir=tmp_path / "out", connections=1)
    wait_for(lambda: job.progress.downloaded_bytes >= 200_000, what="some bytes")
    server.close()  # the port now refuses: the server went away
    with pytest.raises(nbmodels.NetworkError) as info:
        job.wait(60)
    message = str(info.value)
    assert message.startswith(f"Connection to {server.url('m.bin')} refused 3 times in a row;")
    assert "; the server went away. " in message
    assert re.search(r"[\d.]+ kB of 3\.0 MB is kept: run the same download again", message)
    kept = sorted(p.name for p in (tmp_path / "out").glob(".m.bin.nbmodels.*"))
    assert kept == [".m.bin.nbmodels.json", ".m.bin.nbmodels.part"]  # data and its state


# -- the notice in the snapshots ----------------------------------------------------------------


def test_a_subscriber_sees_the_retry_notice_on_the_file_and_the_job_until_bytes_flow(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    data = payload(500_000)
    server.add_file("m.bin", data)
    server.add_fault("m.bin", Fault.error(503), times=2)
    job = nbmodels.download(server.url("m.bin"), dir=tmp_path / "out")
    rec = Recorder()
    job.subscribe(rec)
    assert job.wait(30).read_bytes() == data
    assert retries(rec) == [("HTTP 503", 1), ("HTTP 503", 2)]
    # The job's own progress carries the notice too (its only file waits).
    waiting = [s for s in rec.snaps if s.status == "downloading" and s.progress.retry]
    assert waiting
    assert {s.progress.retry.reason for s in waiting if s.progress.retry} == {"HTTP 503"}
    assert "retrying in" in format_progress(waiting[0].progress, status="downloading")
    flowing = [s for s in rec.snaps if s.progress.downloaded_bytes > 0]
    assert flowing and all(s.progress.retry is None for s in flowing)
    assert all(f.progress.retry is None for s in flowing for f in s.files)


def test_a_hub_request_that_fails_while_resolving_shows_the_retry_then_downloads(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    """The Hub API answers 503 twice: the job, still resolving, says so ("retrying in 1 s: the
    Hub answered 503", badge ``retrying``) instead of waiting in silence, and the notice ends
    with the answer that came."""
    hub.faults.add(HubFault("status", status=503, retry_after=1, origin="hub", times=2))
    job = nbmodels.download(f"hf:{ids.blobs}/small.txt")
    rec = Recorder()
    job.subscribe(rec)
    job.wait(30)
    waiting = [s for s in rec.snaps if s.status == "resolving" and s.progress.retry]
    notices = {(r.reason, r.attempt) for s in waiting if (r := s.progress.retry) is not None}
    assert notices == {("the Hub answered 503", 1), ("the Hub answered 503", 2)}
    first = waiting[0]
    text = "retrying in 1 s: the Hub answered 503"
    assert format_progress(first.progress, status="resolving") == text
    assert job_state(first)["badge"] == "retrying"
    assert job_text(first).endswith(f" · resolving · {text}")
    later = rec.snaps[rec.snaps.index(waiting[-1]) + 1 :]
    assert later and all(s.progress.retry is None for s in later)
    assert rec.snaps[-1].status == "completed"

    class Replay:  # the recorded snapshots, one per update, through the CLI's plain lines
        snap = rec.snaps[0]

        def snapshot(self) -> JobSnapshot:
            return self.snap

        def subscribe(self, _callback: Any) -> Any:
            return lambda: None

    out = io.StringIO()
    replay = Replay()
    view = PlainView([replay], out, clock=lambda: 0.0)  # type: ignore[list-item]
    for replay.snap in rec.snaps:
        view.update()
    lines = [line.split(" · ", 1)[1] for line in out.getvalue().splitlines() if " · " in line]
    resolving = [line for line in lines if line.startswith("resolving")]
    assert resolving == [
        "resolving",
        "resolving · retrying in 1 s: the Hub answered 503",
        "resolving · retrying in 1 s: the Hub answered 503",  # the second retry: a line too
        "resolving",  # the answer came
    ]


@contextlib.contextmanager
def plain_server(port: int, directory: Path) -> Iterator[None]:
    """A plain HTTP server for ``directory`` on ``port`` (no Range: answers 200)."""

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", port), partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def test_a_server_that_starts_while_refused_is_downloaded_and_the_notice_clears(
    tmp_path: Path,
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    data = payload(200_000)
    (served / "m.bin").write_bytes(data)
    port = closed_port()
    settings = dataclasses.replace(FAST, refused_attempts=1000)  # waits of at most 0.2 s
    eng = _engine.Engine(settings, home=tmp_path / "home")
    previous = _engine.set_engine(eng)
    try:
        job = nbmodels.download(f"http://127.0.0.1:{port}/m.bin", dir=tmp_path / "out")
        rec = Recorder()
        job.subscribe(rec)
        wait_for(lambda: retries(rec), what="a retry notice")
        with plain_server(port, served):
            assert job.wait(60).read_bytes() == data
    finally:
        eng.close()
        _engine.set_engine(previous)
    assert retries(rec)[0] == ("connection refused", 1)
    assert rec.snaps[-1].status == "completed"
    assert all(f.progress.retry is None for f in rec.snaps[-1].files)


# -- every front end renders it with the shared formatter ----------------------------------------

WAITING = Progress(0, None, retry=RetryNotice("connection refused", 2, 3.2))


def test_the_formatter_renders_the_retry_instead_of_speed() -> None:
    assert nbmodels.RetryNotice is RetryNotice  # the type of a public field is public too
    assert format_progress(WAITING) == "0 B · retrying in 4 s: connection refused"
    under_way = Progress(1_000_000, 4_000_000, stalled=True, retry=RetryNotice("HTTP 503", 3, 0.0))
    assert format_progress(under_way) == "1.0 MB / 4.0 MB · 25% · retrying: HTTP 503"
    # a Hub request of the plan waits too: no size is known yet, so the retry is all there is
    assert format_progress(WAITING, status="resolving") == "retrying in 4 s: connection refused"
    assert format_progress(WAITING, status="failed") == ""  # an ended job waits for nothing
    assert format_progress(Progress(), status="resolving") == ""  # nothing known: no "0 B"
    assert format_progress(Progress(), status="downloading") == "0 B · 0 B/s"
    assert WAITING.to_dict()["retry"] == {
        "reason": "connection refused",
        "attempt": 2,
        "delay_seconds": 3.2,
    }


def _snap(status: str = "downloading") -> JobSnapshot:
    files = (FileProgress("m.bin", status, WAITING),)
    return JobSnapshot("j1", "http://h.test/m.bin", status, WAITING, files)


def test_cli_rows_and_plain_lines_show_each_retry() -> None:
    snap = _snap()
    assert file_text(snap.files[0]) == "0 B · retrying in 4 s: connection refused"
    assert job_text(snap) == "http://h.test/m.bin · downloading · 0 B · retrying in 4 s: " + (
        "connection refused"
    )

    class FakeJob:
        def __init__(self) -> None:
            self.snap = snap

        def snapshot(self) -> JobSnapshot:
            return self.snap

        def subscribe(self, _callback: Any) -> Any:
            return lambda: None

    job = FakeJob()
    out = io.StringIO()
    view = PlainView([job], out, clock=lambda: 0.0)  # type: ignore[list-item]
    view.update()
    view.update()  # the same notice: no new line
    later = Progress(0, None, retry=RetryNotice("connection refused", 3, 1.5))
    job.snap = dataclasses.replace(snap, files=(FileProgress("m.bin", "downloading", later),))
    view.update()  # the next retry: a line of its own
    assert [line for line in out.getvalue().splitlines() if line.startswith("  ")] == [
        "  m.bin: downloading · 0 B · retrying in 4 s: connection refused",
        "  m.bin: downloading · 0 B · retrying in 2 s: connection refused",
    ]


def test_notebook_text_and_widget_state_show_the_retry() -> None:
    snap = _snap()

    class FakeJob:
        def snapshot(self) -> JobSnapshot:
            return snap

    line = "m.bin — downloading · 0 B · retrying in 4 s: connection refused"
    assert progress_line([FakeJob()]) == line  # type: ignore[list-item]
    assert progress_line([FakeJob(), FakeJob()]) == (  # type: ignore[list-item]
        "2 downloads (0 done): 0 B · retrying in 4 s: connection refused"
    )
    state = job_state(snap)
    assert state["text"] == "0 B · retrying in 4 s: connection refused"
    assert state["files"][0]["text"] == "0 B · retrying in 4 s: connection refused"
    assert state["retry"]["reason"] == "connection refused"
    assert (state["badge"], state["files"][0]["badge"]) == ("retrying", "retrying")  # not "stalled"
    assert plain_text(snap) == "m.bin — downloading · 0 B · retrying in 4 s: connection refused"
