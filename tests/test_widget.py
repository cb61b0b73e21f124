"""The widgets without a browser: traits after feeding snapshots, the publisher's rate limit
under a fast download, front-end messages, the panel, display hooks, the model card (read from
the local Hub emulator) and the text fallback."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("anywidget")

import comm

import nbmodels
from nbmodels._options import Options
from nbmodels._present import one_line, plain_text
from nbmodels._progress import FileProgress, JobSnapshot, Progress
from nbmodels.engine import _engine
from nbmodels.notebook import _display, _publisher, _widget
from nbmodels.notebook._state import CARD_KEYS, job_state
from nbmodels.notebook._text import TextProgress, progress_line
from nbmodels.notebook._widget import JobWidget, PanelWidget, card_wanted
from nbmodels.testing import HubEmulator
from tests.conftest import payload
from tests.faultserver import Fault, FaultServer

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


class RecordingComm(comm.DummyComm):
    """A comm that records every message the widget sends (what the front end would get)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.sent: list[tuple[float, dict[str, Any]]] = []
        super().__init__(*args, **kwargs)

    def publish_msg(self, msg_type: str, data: Any = None, *args: Any, **kwargs: Any) -> None:
        if msg_type == "comm_msg" and isinstance(data, dict):
            self.sent.append((time.monotonic(), data))

    def updates(self) -> list[tuple[float, dict[str, Any]]]:
        return [
            (t, d) for t, d in self.sent if d.get("method") == "update" and "state" in d["state"]
        ]


@pytest.fixture(autouse=True)
def recording_comms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(comm, "create_comm", RecordingComm)
    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)  # restored afterwards


REAL_INSPECT = _widget.inspect_model


@pytest.fixture(autouse=True)
def no_card_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Job widgets of ``.gguf`` references read a model card in the background; here that
    fails at once (no request to h.test) unless a test asks for :func:`real_cards`."""
    calls: list[str] = []

    def offline(ref: str, **options: Any) -> Any:
        calls.append(ref)
        raise nbmodels.OfflineError("No model cards in this test.")

    monkeypatch.setattr(_widget, "inspect_model", offline)
    return calls


@pytest.fixture
def real_cards(monkeypatch: pytest.MonkeyPatch) -> list[threading.Event]:
    """The real ``nbmodels.inspect``; each call sets an event when it has returned or raised."""
    ended: list[threading.Event] = []

    def recorded(ref: str, **options: Any) -> Any:
        event = threading.Event()
        ended.append(event)
        try:
            return REAL_INSPECT(ref, **options)
        finally:
            event.set()

    monkeypatch.setattr(_widget, "inspect_model", recorded)
    return ended


@pytest.fixture
def publisher() -> Iterator[_publisher.Publisher]:
    pub = _publisher.Publisher()
    yield pub
    pub.stop()


def front_end(widget: Any, content: dict[str, Any]) -> None:
    """Deliver a custom message as the kernel would (through ipywidgets' comm handler)."""
    widget._handle_msg(
        {"content": {"data": {"method": "custom", "content": content}}, "buffers": []}
    )


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, what: str = "it") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def snap(
    status: str = "downloading",
    done: int = 0,
    total: int | None = 4_500_000_000,
    job_id: str = "j1",
    **kw: Any,
) -> JobSnapshot:
    progress = Progress(
        done, total, kw.pop("speed", 0.0), kw.pop("eta", None), kw.pop("stalled", False)
    )
    ref = kw.pop("ref", "https://h.test/m.gguf")
    return JobSnapshot(job_id=job_id, ref=ref, status=status, progress=progress, **kw)


class FakeJob:
    """Just enough of a Job to feed the widget snapshots by hand."""

    def __init__(self, first: JobSnapshot, job_id: str = "j1", **options: Any) -> None:
        self.id = job_id
        self.ref = first.ref
        self.options = Options.create(**options)
        self.read_only = False
        self._snap = first
        self._subs: list[Callable[[JobSnapshot], None]] = []
        self.calls: list[str] = []
        self.retried: FakeJob | None = None

    def snapshot(self) -> JobSnapshot:
        return self._snap

    @property
    def done(self) -> bool:
        return self._snap.done

    def subscribe(self, fn: Callable[[JobSnapshot], None]) -> Callable[[], None]:
        self._subs.append(fn)
        fn(self._snap)
        return lambda: self._subs.remove(fn)

    def feed(self, s: JobSnapshot) -> None:
        self._snap = s
        for fn in list(self._subs):
            fn(s)

    def pause(self) -> bool:
        self.calls.append("pause")
        return True

    def resume(self) -> bool:
        self.calls.append("resume")
        return True

    def cancel(self) -> bool:
        self.calls.append("cancel")
        return True

    def retry(self) -> FakeJob:
        self.calls.append("retry")
        self.retried = FakeJob(snap("queued", job_id="j2"), job_id="j2")
        return self.retried


# -- the job widget ------------------------------------------------------------------------------


def test_state_is_the_full_snapshot_with_the_shared_formatter(
    publisher: _publisher.Publisher,
) -> None:
    s = snap(done=1_215_000_000, speed=35_200_000, eta=101.5)
    job = FakeJob(s)
    w = JobWidget(job, publisher=publisher)  # type: ignore[arg-type]
    state = w.state
    assert state["text"] == "1.2 GB / 4.5 GB · 27% · 35.2 MB/s · ETA 1:42"
    assert {k: state[k] for k in ("job_id", "status", "downloaded_bytes", "total_bytes")} == {
        "job_id": "j1",
        "status": "downloading",
        "downloaded_bytes": 1_215_000_000,
        "total_bytes": 4_500_000_000,
    }
    assert state["actions"] == ["pause", "cancel"] and state["name"] == "m.gguf"
    files = (
        FileProgress("m-00001-of-00002.gguf", "completed", Progress(10, 10)),
        FileProgress("m-00002-of-00002.gguf", "paused", Progress(5, 10)),
    )
    job.feed(snap("paused", done=15, total=20, files=files))
    wait_for(lambda: w.state["status"] == "paused", what="the paused state")
    assert w.state["actions"] == ["resume", "cancel"]
    assert [f["text"] for f in w.state["files"]] == ["10 B / 10 B · 100%", "5 B / 10 B · 50%"]
    job.feed(snap("failed", error="boom. Do X.", error_type="NetworkError", error_hint="Do X."))
    wait_for(lambda: w.state["status"] == "failed", what="the failed state")
    assert w.state["actions"] == ["retry"] and w.state["error_hint"] == "Do X."
    wait_for(lambda: w.finished, what="the widget to finish")
    assert job._subs == []  # unsubscribed once the job ended
    w.close()


def test_many_snapshots_are_coalesced_and_the_last_one_always_arrives(
    publisher: _publisher.Publisher,
) -> None:
    job = FakeJob(snap(done=0))
    w = JobWidget(job, publisher=publisher)  # type: ignore[arg-type]
    c: RecordingComm = w.comm
    start = len(c.updates())
    t0 = time.monotonic()
    for i in range(1, 2001):  # far faster than any engine
        job.feed(snap(done=i * 1000))
        if i % 100 == 0:
            time.sleep(0.01)
    job.feed(snap("completed", done=4_500_000_000, path="/x/m.gguf"))
    wait_for(lambda: w.state["status"] == "completed", what="the final state")
    elapsed = time.monotonic() - t0
    sent = len(c.updates()) - start
    assert sent <= elapsed / _publisher.INTERVAL + 2
    assert w.state["path"] == "/x/m.gguf"
    w.close()


def test_buttons_call_the_job_and_stale_clicks_are_ignored(publisher: _publisher.Publisher) -> None:
    job = FakeJob(snap())
    w = JobWidget(job, publisher=publisher)  # type: ignore[arg-type]
    for action in ("pause", "resume", "cancel"):
        front_end(w, {"type": "action", "action": action, "job_id": "j1"})
    front_end(w, {"type": "action", "action": "pause", "job_id": "other"})
    front_end(w, {"type": "action", "action": "rm -rf", "job_id": "j1"})
    front_end(w, "not a dict")  # type: ignore[arg-type]
    assert job.calls == ["pause", "resume", "cancel"]
    w.close()


def test_retry_rebinds_the_widget_to_the_new_job(publisher: _publisher.Publisher) -> None:
    job = FakeJob(snap("failed", error="x", error_type="NetworkError"))
    w = JobWidget(job, publisher=publisher)  # type: ignore[arg-type]
    front_end(w, {"type": "action", "action": "retry", "job_id": "j1"})
    assert job.retried is not None and w.job is job.retried
    assert w.state["job_id"] == "j2" and w.state["status"] == "queued"
    job.retried.feed(snap("downloading", done=5, job_id="j2"))
    wait_for(lambda: w.state["status"] == "downloading", what="the new job's progress")
    w.close()


def test_a_failing_action_shows_a_notice_in_the_widget(publisher: _publisher.Publisher) -> None:
    job = FakeJob(snap())

    def broken() -> bool:
        raise nbmodels.NbmodelsError("The engine was closed.", hint="Restart the kernel.")

    job.pause = broken  # type: ignore[method-assign]
    w = JobWidget(job, publisher=publisher)  # type: ignore[arg-type]
    front_end(w, {"type": "action", "action": "pause", "job_id": "j1"})
    assert w.state["notice"] == "NbmodelsError: The engine was closed. Restart the kernel."
    assert w.state["notice_kind"] == "error"
    w.close()


def test_poll_resends_the_current_state_from_the_handler(publisher: _publisher.Publisher) -> None:
    job = FakeJob(snap(done=10))
    w = JobWidget(job, publisher=publisher)  # type: ignore[arg-type]
    c: RecordingComm = w.comm
    before, seq = len(c.updates()), w.state["seq"]
    front_end(w, {"type": "poll"})
    assert len(c.updates()) == before + 1
    assert c.updates()[-1][1]["state"]["state"]["seq"] == seq + 1
    assert c.updates()[-1][1]["state"]["state"]["downloaded_bytes"] == 10
    w.close()


def test_widget_rate_is_bounded_under_a_fast_real_download(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    """The engine publishes 20 snapshots a second here (FAST settings); the front end gets
    at most about 4 updates a second, each a full snapshot, and the last one is final."""
    server.add_file("fast.bin", payload(8_000_000))
    for _ in range(4):
        server.add_fault("fast.bin", Fault.trickle(5_000_000))
    job = nbmodels.download(server.url("fast.bin"), dir=tmp_path / "out", connections=1)
    events: list[float] = []
    job.subscribe(lambda s: events.append(time.monotonic()))
    w = JobWidget(job)
    c: RecordingComm = w.comm
    job.wait(30)
    wait_for(lambda: w.state.get("status") == "completed", what="the final update")
    times = [t for t, _ in c.updates()]
    assert len(events) > 2 * len(times)  # the engine said much more than the widget sent
    for i, t in enumerate(times):
        assert sum(1 for u in times[i:] if u - t < 1.0) <= 5, "more than ~4 updates per second"
    states = [d["state"]["state"] for _, d in c.updates()]
    assert all("files" in s and "text" in s for s in states)  # full snapshots, never deltas
    downloaded = [s["downloaded_bytes"] for s in states]
    assert downloaded == sorted(downloaded) and len(set(downloaded)) >= 3  # it was live
    w.close()


def test_one_publisher_thread_serves_every_widget(engine: _engine.Engine) -> None:
    jobs = [FakeJob(snap(job_id=f"j{i}"), job_id=f"j{i}") for i in range(5)]
    widgets = [JobWidget(j) for j in jobs]  # type: ignore[arg-type]
    for i, j in enumerate(jobs):
        j.feed(snap(done=i + 1, job_id=f"j{i}"))
    wait_for(lambda: all(w.state["downloaded_bytes"] for w in widgets), what="every widget")
    names = [t.name for t in threading.enumerate()]
    assert names.count("nbmodels-publisher") == 1
    for w in widgets:
        w.close()


def test_publisher_stop_joins_and_notify_restarts(publisher: _publisher.Publisher) -> None:
    job = FakeJob(snap())
    w = JobWidget(job, publisher=publisher)  # type: ignore[arg-type]
    assert publisher.running
    publisher.stop()
    assert not publisher.running
    job.feed(snap(done=99))
    wait_for(lambda: w.state["downloaded_bytes"] == 99, what="a restarted publisher")
    w.close()


# -- the model card ------------------------------------------------------------------------------

BIG = "nbm-test/Big-GGUF"
BIG_SIZE = 16 * 1024 * 1024


def test_gguf_job_widget_shows_the_model_card_while_the_download_runs(
    engine: _engine.Engine, hub: HubEmulator, real_cards: list[threading.Event]
) -> None:
    hub.add_gguf_repo(BIG, quants=("Q4_K_M",), size=BIG_SIZE, sidecars=())
    hub.set_throttle(1_000_000)  # one connection needs ~16 s for the file, ~0.3 s for a header
    job = nbmodels.download(f"{BIG}:Q4_K_M", connections=1, display=False)
    w = JobWidget(job)
    assert w.state["card"] is None  # the widget never waits for the header
    wait_for(lambda: w.state["card"], what="the model card")
    assert not job.done  # shown while the download runs
    card = w.state["card"]
    assert sorted(card) == sorted(CARD_KEYS)
    assert card["text"] == "llama · 3.3K params · Q4_K_M · ctx 4096 · 16.8 MB"
    assert card["fit"] in ("fits", "tight", "does not fit", "unknown")
    assert card["summary"] == f"{card['text']} · {card['fit_text']}"
    assert card["fit_text"].startswith(f"{card['fit']} (needs ~")
    assert "quant: Q4_K_M" in card["title"] and "chat template: yes" in card["title"]
    assert len(real_cards) == 1  # one inspection per widget
    job.cancel()
    wait_for(lambda: w.state["status"] == "canceled", what="the canceled state")
    assert w.state["card"] == card  # kept on every later state
    w.close()


def test_the_card_is_read_with_the_jobs_options_and_never_carries_the_token(
    hub: HubEmulator, publisher: _publisher.Publisher, real_cards: list[threading.Event]
) -> None:
    assert hub.standard is not None
    token = hub.standard.token
    first = snap(ref=f"hf:{hub.standard.gated}")  # gated: the header needs the token
    job = FakeJob(first, token=token, revision="main")
    w = JobWidget(job, publisher=publisher)  # type: ignore[arg-type]
    wait_for(lambda: w.state["card"], what="the model card")
    assert w.state["status"] == "downloading"
    assert w.state["card"]["text"].startswith("llama · ")
    assert any(token in r.headers.get("authorization", "") for r in hub.requests)
    c: RecordingComm = w.comm
    import json

    assert token not in json.dumps([d for _, d in c.sent]) + json.dumps(w.state)
    w.close()


def test_a_failed_inspection_leaves_no_card_and_says_nothing(
    hub: HubEmulator,
    publisher: _publisher.Publisher,
    real_cards: list[threading.Event],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert hub.standard is not None
    job = FakeJob(snap(ref=f"hf:{hub.standard.gated}"), token=False)  # AccessError
    w = JobWidget(job, publisher=publisher)  # type: ignore[arg-type]
    (ended,) = real_cards
    assert ended.wait(20)
    job.feed(snap(done=7, ref=job.ref))
    wait_for(lambda: w.state["downloaded_bytes"] == 7, what="the next update")
    assert w.state["card"] is None
    assert [r for r in caplog.records if r.levelno > 10] == []
    assert capsys.readouterr() == ("", "")
    w.close()


def test_a_card_arriving_after_close_is_dropped(
    publisher: _publisher.Publisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbmodels.cards import ModelCard

    gate = threading.Event()

    def slow(ref: str, **options: Any) -> ModelCard:
        gate.wait(10)
        return ModelCard(ref, "gguf", ("m.gguf",), (10,), 10, 1, 1)

    monkeypatch.setattr(_widget, "inspect_model", slow)
    before = set(threading.enumerate())
    w = JobWidget(FakeJob(snap()), publisher=publisher)  # type: ignore[arg-type]
    (card_thread,) = [t for t in set(threading.enumerate()) - before if t.name == "nbmodels-card"]
    assert card_thread.daemon
    w.close()
    gate.set()
    card_thread.join(10)
    assert not card_thread.is_alive()
    assert w.state["card"] is None and publisher.feeds() == []


@pytest.mark.parametrize(
    ("ref", "wanted"),
    [
        ("owner/repo:Q4_K_M", True),
        ("hf:owner/repo/sub/model.safetensors#dev", True),
        ("owner/repo model.GGUF", True),
        ("owner/repo", True),  # a GGUF repo's default quant or safetensors weights
        ("https://example.org/a/model.gguf?download=true", True),
        ("https://example.org/a/model.bin", False),
        ("owner/repo/README.md", False),
        ("datasets/owner/repo", False),
        ("not a ref at all", False),
    ],
)
def test_which_references_get_a_card(ref: str, wanted: bool) -> None:
    assert card_wanted(ref) is wanted


def test_jobs_without_weights_start_no_inspection(
    publisher: _publisher.Publisher, no_card_network: list[str]
) -> None:
    data = FakeJob(snap(ref="https://h.test/data.bin"))
    w = JobWidget(data, publisher=publisher)  # type: ignore[arg-type]
    gguf = JobWidget(FakeJob(snap()), publisher=publisher)  # type: ignore[arg-type]
    wait_for(lambda: no_card_network, what="the one inspection")
    assert no_card_network == ["https://h.test/m.gguf"]
    w.close()
    gguf.close()


# -- the panel -----------------------------------------------------------------------------------


def test_panel_lists_history_newest_first_and_submits_and_retries(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, publisher: _publisher.Publisher
) -> None:
    server.add_file("one.bin", payload(1000))
    server.add_file("two.bin", payload(2000))
    first = nbmodels.download(server.url("one.bin"), dir=tmp_path / "out")
    first.wait(10)
    failed = nbmodels.download(server.url("nothere.bin"), dir=tmp_path / "out")
    with pytest.raises(nbmodels.NotFoundError):
        failed.wait(10)
    p = PanelWidget(publisher=publisher)
    assert [j["job_id"] for j in p.state["jobs"]] == [failed.id, first.id]
    assert p.state["jobs"][0]["actions"] == ["retry"]

    front_end(p, {"type": "submit", "ref": server.url("two.bin"), "file": ""})
    assert p.state["notice"].startswith("Started http://127.0.0.1")
    wait_for(lambda: len(p.state["jobs"]) == 3, what="the submitted job")
    newest = nbmodels.jobs()[0]
    newest.wait(10)
    wait_for(lambda: p.state["jobs"][0]["status"] == "completed", what="live panel updates")

    front_end(p, {"type": "submit", "ref": "  ", "file": ""})
    assert p.state["notice_kind"] == "error"
    front_end(p, {"type": "action", "action": "retry", "job_id": failed.id})
    wait_for(lambda: len(p.state["jobs"]) == 4, what="the retried job")
    assert p.state["jobs"][0]["ref"] == failed.ref
    assert "<nbmodels panel:" in p._repr_mimebundle_()[0]["text/plain"]
    p.close()
    assert p.finished


def test_panel_shows_jobs_of_earlier_sessions_read_only(
    server: FaultServer, tmp_path: Path, settings: Any, publisher: _publisher.Publisher
) -> None:
    home = Path(tmp_path / "home")
    server.add_file("old.bin", payload(500))
    earlier = _engine.Engine(settings, home=home)
    previous = _engine.set_engine(earlier)
    try:
        nbmodels.download(server.url("old.bin"), dir=tmp_path / "out").wait(10)
    finally:
        earlier.close()
    now = _engine.Engine(settings, home=home)
    _engine.set_engine(now)
    try:
        p = PanelWidget(publisher=publisher)
        (row,) = p.state["jobs"]
        assert row["read_only"] and row["status"] == "completed" and row["actions"] == []
        p.close()
    finally:
        now.close()
        _engine.set_engine(previous)


def test_panel_notices_jobs_started_elsewhere_within_the_poll(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    pub = _publisher.Publisher(slow_interval=0.2)
    try:
        p = PanelWidget(publisher=pub)
        assert p.state["jobs"] == []
        server.add_file("z.bin", payload(100))
        nbmodels.download(server.url("z.bin"), dir=tmp_path / "out", display=False).wait(10)
        wait_for(lambda: len(p.state["jobs"]) == 1, what="the history poll")
        p.close()
    finally:
        pub.stop()


# -- display hooks -------------------------------------------------------------------------------


def test_job_mimebundle_is_the_widget_with_text_plain(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.add_file("mb.bin", payload(1000))
    job = nbmodels.download(server.url("mb.bin"), dir=tmp_path / "out", display=False)
    job.wait(10)
    monkeypatch.setenv("NBMODELS_WIDGETS", "0")
    assert job._repr_mimebundle_() == {"text/plain": plain_text(job.snapshot())}
    monkeypatch.setenv("NBMODELS_WIDGETS", "1")
    data, _meta = job._repr_mimebundle_()
    assert data[WIDGET_MIME]["model_id"] == _display.widget_for(job).model_id
    assert data["text/plain"].startswith("mb.bin — completed · 1.0 kB / 1.0 kB · 100% · /")
    again, _ = job._repr_mimebundle_()
    assert again[WIDGET_MIME] == data[WIDGET_MIME]  # two views, one model: they agree
    _display.forget_widgets()


def test_auto_display_shows_once_per_cell_and_never_from_handlers_or_threads(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbmodels.notebook._context import widget_handler

    monkeypatch.setenv("NBMODELS_WIDGETS", "1")
    shown: list[object] = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))

    class Shell:
        execution_count = 7

    monkeypatch.setattr(_display, "current_shell", lambda: Shell())
    server.add_file("ad.bin", payload(1000))
    job = nbmodels.download(server.url("ad.bin"), dir=tmp_path / "out")
    assert shown == [_display.widget_for(job)]
    assert job._repr_mimebundle_() == {"text/plain": plain_text(job.snapshot())}  # same cell
    Shell.execution_count = 8
    assert WIDGET_MIME in job._repr_mimebundle_()[0]  # a later cell shows the widget again

    with widget_handler():
        _display.auto_display(job, explicit=True)
    worker = threading.Thread(target=_display.auto_display, args=(job,))
    worker.start()
    worker.join()
    nbmodels.download(server.url("ad.bin"), dir=tmp_path / "out", display=False)
    assert len(shown) == 1
    monkeypatch.setenv("NBMODELS_WIDGETS", "0")
    text_job = nbmodels.download(server.url("ad.bin"), dir=tmp_path / "out2")
    text_job.wait(10)
    assert shown[1:] == [text_job]  # no widget support: the job (its text line), not a widget
    _display.forget_widgets()


def test_core_api_panel_returns_one_shared_panel(engine: _engine.Engine) -> None:
    p = nbmodels.panel()
    assert isinstance(p, PanelWidget) and p.kind == "panel"
    assert nbmodels.panel() is p  # every display is a view of one model: one history poll
    p.close()
    assert nbmodels.panel() is not p  # a closed panel is replaced
    nbmodels.panel().close()


# -- text forms ----------------------------------------------------------------------------------


def test_text_progress_redraws_one_line_and_ends_it(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    import io

    server.add_file("t.bin", payload(1000))
    job = nbmodels.download(server.url("t.bin"), dir=tmp_path / "out", display=False)
    job.wait(10)
    buf = io.StringIO()
    tp = TextProgress([job], stream=buf, in_place=True)  # as on a terminal
    tp.update(force=True)
    tp.update()  # throttled: within REDRAW of the last one
    tp.close()
    assert buf.getvalue() == "\rt.bin — completed · 1.0 kB / 1.0 kB · 100%" * 2 + "\n"
    two = progress_line([job, job])
    assert two == "2 downloads (2 done): 2.0 kB / 2.0 kB · 100%"


def test_paths_under_home_are_shown_with_a_tilde(monkeypatch: pytest.MonkeyPatch) -> None:
    from nbmodels._present import short_path

    monkeypatch.setenv("HOME", "/home/you")
    assert short_path("/home/you/.cache/huggingface/hub/m.gguf") == (
        "~/.cache/huggingface/hub/m.gguf"
    )
    assert short_path("/home/you") == "~"
    assert short_path("/home/your-data/m.gguf") == "/home/your-data/m.gguf"  # not a prefix test
    assert short_path("/data/m.gguf") == "/data/m.gguf"
    assert short_path("") == ""
    monkeypatch.setenv("HOME", "/")
    assert short_path("/data/m.gguf") == "/data/m.gguf"  # a home of / abbreviates nothing
    snap = JobSnapshot("j", "u", "completed", Progress(1, 1), path="/home/you/m.gguf")
    monkeypatch.setenv("HOME", "/home/you")
    state = job_state(snap)
    assert state["path"] == "/home/you/m.gguf" and state["path_display"] == "~/m.gguf"


def test_one_line_errors_drop_multiline_hints() -> None:
    err = nbmodels.RefError("Bad reference 'x'.", hint="Accepted forms:\n  a\n  b")
    assert one_line(err, more="See help.") == "RefError: Bad reference 'x'. See help."
    assert one_line(nbmodels.NetworkError("Gave up.", hint="Retry later.")) == (
        "NetworkError: Gave up. Retry later."
    )
    assert one_line(ValueError("a\nb")) == "ValueError: a"


def test_job_state_lists_actions_by_status() -> None:
    cases = {
        "queued": ["pause", "cancel"],
        "downloading": ["pause", "cancel"],
        "paused": ["resume", "cancel"],
        "completed": [],
        "failed": ["retry"],
        "interrupted": ["retry"],
        "canceled": ["retry"],
    }
    for status, actions in cases.items():
        assert job_state(snap(status))["actions"] == actions
    assert job_state(snap("downloading"), read_only=True)["actions"] == []


# -- the shipped front-end files -----------------------------------------------------------------

STATIC = Path(nbmodels.__file__).parent / "notebook" / "static"


def test_esm_and_css_ship_inside_the_package() -> None:
    assert str(JobWidget._esm).startswith("// nbmodels widget")  # read from static/widget.js
    assert ".nbm-root" in str(JobWidget._css)


def test_esm_never_injects_html() -> None:
    lines = (STATIC / "widget.js").read_text().splitlines()
    src = "\n".join(line for line in lines if not line.strip().startswith("//"))
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in src


def test_css_rules_are_scoped_under_the_root_class() -> None:
    import re

    css = re.sub(r"/\*.*?\*/", "", (STATIC / "widget.css").read_text(), flags=re.S)
    selectors = [m.strip() for m in re.findall(r"([^{}]+)\{", css)]
    for sel in selectors:
        if sel.startswith("@") or sel in ("from", "to"):
            continue
        for part in sel.split(","):
            assert part.strip().startswith((".nbm-root", ".nbm-offscreen")), part
    assert "--jp-ui-font-color1" in css and "prefers-color-scheme: dark" in css


def test_a_plain_install_brings_the_widget_libraries() -> None:
    """``pip install nbmodels`` gives the widget: anywidget (and with it ipywidgets), traitlets
    and IPython are core dependencies; the old ``notebook`` extra still exists."""
    import re
    import tomllib

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text())["project"]
    core = {re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]}
    assert {"anywidget", "traitlets", "ipython"} <= core
    assert "notebook" in project["optional-dependencies"]
