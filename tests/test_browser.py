"""The widget in a real browser (BROWSER.md): Debian Chromium driven by Playwright for Python.

1. Fake-model page: the ESM rendered on a blank 127.0.0.1 page with a ~20-line fake model:
   formatting, buttons and their messages, keyboard use, files, the model card line, errors,
   escaping, theme, the poll backstop and cleanup.
2. JupyterLab end to end: ``%model_download -b`` on a throttled fault server, live bytes / speed
   / ETA, Pause / Resume / Cancel, Python sees ``canceled``, the panel lists the job. Takes the
   screenshots of ``docs/widget.png`` and ``docs/panel.png``; they replace those files only
   with ``NBMODELS_UPDATE_SCREENSHOTS=1`` (otherwise they go to the test's temporary folder).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbmodels._inspect import ModelCard
from nbmodels._memory import Machine, estimate
from nbmodels._progress import FileProgress, JobSnapshot, Progress
from nbmodels.notebook._state import card_state, job_state
from tests.conftest import payload
from tests.faultserver import Fault, FaultServer

CHROMIUM = "/usr/lib/chromium/chromium"
if not Path("/usr/bin/chromium").exists() or not Path(CHROMIUM).exists():
    pytest.skip(
        "Chromium is not installed (apt-get install -y chromium); browser tests need it",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "src" / "nbmodels" / "notebook" / "static"
DOCS = ROOT / "docs"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
HOSTILE = '<img src=x onerror="window.__pwned=1">.gguf'

#: The page harness: counts timers and listeners, loads the ESM, fakes the anywidget model.
HARNESS = (ROOT / "js" / "harness.js").read_text()


def _state(status: str = "downloading", **kw: Any) -> dict[str, Any]:
    done = kw.pop("done", 1_215_000_000)
    total = kw.pop("total", 4_500_000_000)
    progress = Progress(
        done, total, kw.pop("speed", 35_200_000.0), kw.pop("eta", 101.5), kw.pop("stalled", False)
    )
    snap = JobSnapshot(
        job_id=kw.pop("job_id", "job1"),
        ref=kw.pop("ref", "hf:owner/Model-GGUF:Q4_K_M"),
        status=status,
        progress=progress,
        **kw,
    )
    state = job_state(snap, read_only=False)
    state.update(seq=1, notice="", notice_kind="info")
    return state


def _files(n: int, status: str = "downloading") -> tuple[FileProgress, ...]:
    return tuple(
        FileProgress(f"Model-Q8_0-{i:05d}-of-{n:05d}.gguf", status, Progress(i * 100, 1000))
        for i in range(1, n + 1)
    )


def _card(ram: int = 23_000_000_000, **kw: Any) -> dict[str, Any]:
    """``state["card"]`` of a TinyLlama-like Q4_K_M, with a memory estimate for ``ram`` bytes."""
    size = 668_000_000
    memory = estimate(
        size,
        layers=22,
        kv_heads=4,
        key_dim=64,
        model_context=2048,
        machine=Machine(32_000_000_000, ram),
    )
    fields: dict[str, Any] = {
        "architecture": "llama",
        "file_type": "Q4_K_M",
        "context_length": 2048,
        "layers": 22,
        "heads": 32,
        "kv_heads": 4,
        "chat_template": True,
        "memory": memory,
        **kw,
    }
    card = ModelCard(
        "hf:owner/Model-GGUF:Q4_K_M",
        "gguf",
        ("m.gguf",),
        (size,),
        size,
        1_100_048_384,
        201,
        **fields,
    )
    return card_state(card)


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def blank_url() -> Iterator[str]:
    """A blank page over http on 127.0.0.1 (module scripts from file:// are blocked)."""

    class Blank(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<!doctype html><html><head><title>nbm</title></head><body></body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Blank)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/"
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture
def page(browser: Any, blank_url: str) -> Iterator[Any]:
    context = browser.new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=blank_url.rstrip("/"))
    pg = context.new_page()
    errors: list[Any] = []
    pg.on("pageerror", lambda e: errors.append(e))
    pg.goto(blank_url)
    yield pg
    context.close()
    assert errors == []


def load(page: Any) -> None:
    src = (STATIC / "widget.js").read_text()
    css = (STATIC / "widget.css").read_text()
    page.evaluate(HARNESS, {"src": src, "css": css})


def mount(page: Any, kind: str, state: dict[str, Any]) -> None:
    page.evaluate("([k, s]) => window.mount(k, s)", [kind, state])


def push(page: Any, state: dict[str, Any]) -> None:
    page.evaluate("(s) => window.w.model.push(s)", state)


def sent(page: Any) -> list[dict[str, Any]]:
    return page.evaluate("() => window.w.model.sent")  # type: ignore[no-any-return]


def timers(page: Any) -> list[int]:
    """[active intervals, active timeouts] on the page."""
    return page.evaluate(  # type: ignore[no-any-return]
        "() => [window.__active.intervals.size, window.__active.timeouts.size]"
    )


def by_id(page: Any, name: str, scope: str = "") -> Any:
    return page.locator(f'{scope} [data-testid="{name}"]'.strip())


# -- 1. fake-model page --------------------------------------------------------------------------


def test_job_widget_renders_the_python_formatted_state(page: Any) -> None:
    load(page)
    mount(page, "job", _state())
    root = by_id(page, "nbm-widget")
    assert root.get_attribute("data-status") == "downloading"
    assert by_id(page, "nbm-text").text_content() == "1.2 GB / 4.5 GB · 27% · 35.2 MB/s · ETA 1:42"
    assert by_id(page, "nbm-name").text_content() == "hf:owner/Model-GGUF:Q4_K_M"
    assert by_id(page, "nbm-status").text_content() == "downloading"
    bar = page.get_by_role("progressbar").first
    assert bar.get_attribute("aria-valuenow") == "27"
    assert bar.get_attribute("aria-label") == "Download progress of hf:owner/Model-GGUF:Q4_K_M"
    assert by_id(page, "nbm-pause").is_visible() and by_id(page, "nbm-cancel").is_visible()
    assert by_id(page, "nbm-resume").count() == 0 and by_id(page, "nbm-retry").count() == 0
    assert not by_id(page, "nbm-path").is_visible()
    assert not by_id(page, "nbm-error").is_visible()
    push(page, _state(done=0, total=None, speed=0.0, eta=None, status="resolving"))
    assert bar.get_attribute("aria-valuenow") is None  # unknown size: indeterminate
    assert by_id(page, "nbm-text").text_content() == "0 B"


def test_buttons_send_actions_and_are_keyboard_reachable(page: Any) -> None:
    load(page)
    mount(page, "job", _state())
    page.keyboard.press("Tab")  # the first stop on the page is the first control
    assert page.evaluate("() => document.activeElement.dataset.testid") == "nbm-pause"
    page.keyboard.press("Enter")
    assert sent(page) == [{"type": "action", "action": "pause", "job_id": "job1"}]
    by_id(page, "nbm-pause").click()
    push(page, _state("paused", speed=0.0, eta=None))
    # Focus stays in the controls: the Pause button became Resume under the user's focus.
    assert page.evaluate("() => document.activeElement.dataset.testid") == "nbm-resume"
    assert page.evaluate("() => document.activeElement.tagName") == "BUTTON"
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    page.keyboard.press("Space")
    assert sent(page)[1:] == [
        {"type": "action", "action": "pause", "job_id": "job1"},
        {"type": "action", "action": "resume", "job_id": "job1"},
        {"type": "action", "action": "cancel", "job_id": "job1"},
    ]
    assert by_id(page, "nbm-resume").get_attribute("aria-label") == (
        "Resume hf:owner/Model-GGUF:Q4_K_M"
    )


def test_split_files_get_rows_and_many_files_collapse(page: Any) -> None:
    load(page)
    mount(page, "job", _state(files=_files(3)))
    rows = by_id(page, "nbm-file")
    assert rows.count() == 3
    assert rows.nth(1).locator(".nbm-file-name").text_content() == "Model-Q8_0-00002-of-00003.gguf"
    assert rows.nth(1).get_by_role("progressbar").get_attribute("aria-valuenow") == "20"
    assert not by_id(page, "nbm-show-all").is_visible()
    push(page, _state(files=_files(12)))
    assert rows.count() == 8
    show = by_id(page, "nbm-show-all")
    assert show.text_content() == "Show all 12 files"
    show.click()
    assert rows.count() == 12 and show.get_attribute("aria-expanded") == "true"
    push(page, _state(files=_files(12, "completed")))  # stays expanded across updates
    assert rows.count() == 12
    push(page, _state(files=_files(1)))  # a single file needs no row
    assert rows.count() == 0


def test_model_card_line_shows_above_the_files_with_a_fit_badge(page: Any) -> None:
    load(page)
    card = _card()
    assert card["text"] == "llama · 1.1B params · Q4_K_M · ctx 2048 · 668.0 MB"
    assert card["fit_text"] == "fits (needs ~0.9 GB of 23 GB)"
    mount(page, "job", _state(files=_files(3)))
    line = by_id(page, "model-card")
    assert not line.is_visible()  # no card yet: the header is still being read
    assert by_id(page, "nbm-job").get_attribute("data-card") == "false"
    push(page, {**_state(files=_files(3)), "card": card})
    assert line.is_visible() and by_id(page, "nbm-job").get_attribute("data-card") == "true"
    assert by_id(page, "model-card-text").text_content() == card["text"]
    fit = by_id(page, "model-card-fit")
    assert fit.text_content() == card["fit_text"] and fit.get_attribute("data-fit") == "fits"
    assert line.get_attribute("title") == card["title"]
    assert "layers / heads: 22 layers, 32 heads (4 KV)" in card["title"].split("\n")
    above = """() => {
      const q = (id) => document.querySelector(`[data-testid=${id}]`);
      const follows = (a, b) => Boolean(q(a).compareDocumentPosition(q(b)) & 4);
      return follows("model-card", "nbm-bar") && follows("model-card", "nbm-files");
    }"""
    assert page.evaluate(above)  # one line under the name, above the bar and the file rows
    color = "() => getComputedStyle(document.querySelector('[data-testid=model-card-fit]')).color"
    assert page.evaluate(color) == "rgb(26, 127, 55)"  # fits: the theme's success colour
    push(page, {**_state(), "card": _card(ram=500_000_000)})
    assert fit.get_attribute("data-fit") == "does not fit"
    assert fit.text_content() == "does not fit (needs ~0.9 GB of 0.5 GB)"
    assert page.evaluate(color) == "rgb(209, 36, 47)"  # the error colour
    push(page, {**_state(), "card": {**card, "fit": None, "fit_text": ""}})
    assert not fit.is_visible() and by_id(page, "model-card-text").is_visible()
    push(page, _state("completed", path="/m/x.gguf"))  # a state without a card hides the line
    assert not line.is_visible()


def test_error_detail_is_expandable_with_the_next_step(page: Any) -> None:
    load(page)
    fact = "Could not reach h.test after 8 attempts (connection refused)."
    hint = "Check the network, then retry."
    state = _state("failed", error=f"{fact} {hint}", error_type="NetworkError", error_hint=hint)
    mount(page, "job", state)
    details = by_id(page, "nbm-error")
    assert details.is_visible() and details.get_attribute("open") is None
    assert details.locator("summary").text_content() == f"NetworkError: {fact}"
    assert not by_id(page, "nbm-error-hint").is_visible()
    details.locator("summary").click()
    assert by_id(page, "nbm-error-hint").text_content() == f"Next step: {hint}"
    assert not by_id(page, "nbm-error-message").is_visible()  # nothing beyond the summary
    push(page, _state("failed", error="Bad reference.\nline two", error_type="RefError"))
    assert by_id(page, "nbm-error-message").text_content() == "line two"
    assert not by_id(page, "nbm-error-hint").is_visible()
    assert by_id(page, "nbm-retry").is_visible() and by_id(page, "nbm-pause").count() == 0
    by_id(page, "nbm-retry").click()
    assert sent(page) == [{"type": "action", "action": "retry", "job_id": "job1"}]
    assert by_id(page, "nbm-widget").get_attribute("data-status") == "failed"


def test_completed_job_shows_the_path_with_a_copy_button(page: Any) -> None:
    load(page)
    path = "/home/me/.cache/huggingface/hub/models--o--m/snapshots/abc/Model-Q4_K_M.gguf"
    mount(page, "job", _state("completed", done=4_500_000_000, path=path, speed=0.0, eta=None))
    assert by_id(page, "nbm-path-text").text_content() == path
    assert by_id(page, "nbm-pause").count() == 0 and by_id(page, "nbm-cancel").count() == 0
    by_id(page, "nbm-copy").click()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=nbm-copy]').textContent == 'Copied'"
    )
    assert page.evaluate("() => navigator.clipboard.readText()") == path


def test_stalled_transfer_shows_stalled(page: Any) -> None:
    load(page)
    mount(page, "job", _state(speed=0.0, eta=None, stalled=True))
    assert by_id(page, "nbm-status").text_content() == "stalled"
    assert by_id(page, "nbm-widget").get_attribute("data-stalled") == "true"
    assert by_id(page, "nbm-text").text_content() == "1.2 GB / 4.5 GB · 27% · stalled"


def test_hostile_server_text_is_rendered_as_text(page: Any) -> None:
    load(page)
    files = (
        FileProgress(HOSTILE, "failed", Progress(1, 2), path=f"/m/{HOSTILE}", error=HOSTILE),
        FileProgress("<b>bold</b>.gguf", "queued"),
    )
    state = _state(
        "completed",
        ref=f"https://h.test/{HOSTILE}",
        files=files,
        path=f"/m/{HOSTILE}",
        error=HOSTILE,
        error_type="<script>x</script>",
        error_hint=HOSTILE,
    )
    state["notice"] = HOSTILE
    # A header is server data too: its architecture and quant names reach the card line.
    card = _card(architecture=HOSTILE, file_type="<b>Q4</b>")
    state["card"] = {**card, "fit": HOSTILE, "fit_text": HOSTILE}
    mount(page, "job", state)
    page.locator("summary").click()
    page.wait_for_timeout(50)
    assert page.evaluate("() => document.querySelectorAll('img, b, script').length") == 0
    assert page.evaluate("() => window.__pwned") is None
    assert by_id(page, "model-card-text").text_content() == card["text"]
    assert card["text"].startswith(f"{HOSTILE} · 1.1B params · <b>Q4</b> · ")
    assert by_id(page, "model-card").get_attribute("title") == card["title"]
    assert by_id(page, "model-card-fit").text_content() == HOSTILE
    assert by_id(page, "model-card-fit").get_attribute("data-fit") == "unknown"
    assert by_id(page, "nbm-path-text").text_content() == f"/m/{HOSTILE}"
    assert by_id(page, "nbm-file").first.locator(".nbm-file-name").text_content() == HOSTILE
    assert HOSTILE in by_id(page, "nbm-widget").text_content()


def test_theme_variables_and_dark_fallbacks_apply(page: Any) -> None:
    load(page)
    mount(page, "job", _state())
    color = "() => getComputedStyle(document.querySelector('.nbm-root')).color"
    assert page.evaluate(color) == "rgb(31, 35, 40)"  # light fallback
    page.emulate_media(color_scheme="dark")
    assert page.evaluate(color) == "rgb(230, 237, 243)"  # dark fallback
    page.evaluate("() => document.body.style.setProperty('--jp-ui-font-color1', 'rgb(1, 2, 3)')")
    assert page.evaluate(color) == "rgb(1, 2, 3)"  # JupyterLab's theme wins
    # Scoped: nothing outside the root is styled by the widget's CSS.
    page.evaluate(
        """() => document.body.insertAdjacentHTML(
            "beforeend", '<button id="x" class="nbm-btn">outside</button>')"""
    )
    assert page.evaluate("() => getComputedStyle(document.getElementById('x')).cursor") != "pointer"


def test_cleanup_removes_listeners_and_timers(page: Any) -> None:
    load(page)
    mount(page, "job", _state("completed", path="/m/x.gguf", files=_files(12, "completed")))
    by_id(page, "nbm-copy").click()
    by_id(page, "nbm-show-all").click()
    assert timers(page)[0] == 1  # the poll backstop
    # The "Copied" label's reset timer (polled from Python: wait_for_function adds listeners).
    deadline = time.monotonic() + 5
    while page.evaluate("() => window.__active.timeouts.size") != 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert page.evaluate("() => window.w.model.handlers()") == 1
    page.evaluate("() => window.w.cleanup()")
    assert page.evaluate("() => window.w.model.handlers()") == 0
    assert timers(page) == [0, 0]
    assert page.evaluate("() => window.__active.listeners - window.w.before") == 0
    assert page.evaluate("() => window.w.el.children.length") == 0


def test_panel_cleanup_removes_every_card_listener(page: Any) -> None:
    load(page)
    jobs = [_state(job_id=f"j{i}") for i in range(3)]
    mount(page, "panel", {"jobs": jobs, "notice": "", "seq": 1})
    page.evaluate("() => window.w.cleanup()")
    assert page.evaluate("() => window.__active.listeners - window.w.before") == 0
    assert timers(page)[0] == 0 and page.evaluate("() => window.w.model.handlers()") == 0


def test_poll_backstop_asks_for_state_only_while_silent_and_running(
    browser: Any, blank_url: str
) -> None:
    context = browser.new_context()
    pg = context.new_page()
    try:
        pg.clock.install()
        pg.goto(blank_url)
        load(pg)
        mount(pg, "job", _state())
        pg.clock.run_for(3000)
        assert sent(pg) == []
        pg.clock.run_for(2500)
        assert sent(pg) == [{"type": "poll"}]
        pg.clock.run_for(2000)
        push(pg, _state(done=1_300_000_000))  # an update arrives: the backstop rests
        pg.clock.run_for(3000)
        assert sent(pg) == [{"type": "poll"}]
        push(pg, _state("completed", path="/m/x"))
        pg.clock.run_for(20_000)
        assert sent(pg) == [{"type": "poll"}]  # finished jobs are never polled
        pg.evaluate("() => window.w.cleanup()")
    finally:
        context.close()


def test_panel_lists_jobs_and_submits_the_form(page: Any) -> None:
    load(page)
    jobs = [
        _state(job_id="new", ref="https://h.test/new.gguf"),
        _state("failed", job_id="old", ref="https://h.test/old.gguf", error="x", error_type="E"),
    ]
    mount(page, "panel", {"jobs": jobs, "notice": "", "notice_kind": "info", "seq": 1})
    panel = by_id(page, "nbm-panel")
    assert panel.get_attribute("data-count") == "2"
    cards = panel.locator('[data-testid="nbm-job"]')
    assert [cards.nth(i).get_attribute("data-job-id") for i in range(2)] == ["new", "old"]
    assert page.get_by_role("listitem").count() == 2
    cards.nth(1).locator('[data-testid="nbm-retry"]').click()
    page.get_by_label("Reference").fill("owner/repo")
    page.get_by_label("File (optional)").fill("model.gguf")
    by_id(page, "nbm-submit").click()
    by_id(page, "nbm-submit").click()  # empty now: stays local
    assert sent(page) == [
        {"type": "action", "action": "retry", "job_id": "old"},
        {"type": "submit", "ref": "owner/repo", "file": "model.gguf"},
    ]
    assert by_id(page, "nbm-notice").text_content() == "Enter a reference first."
    page.get_by_label("Reference").fill("https://h.test/x.bin")
    page.keyboard.press("Enter")
    assert sent(page)[-1] == {"type": "submit", "ref": "https://h.test/x.bin", "file": ""}
    push(page, {"jobs": jobs[1:], "notice": "Started x", "notice_kind": "info", "seq": 2})
    assert cards.count() == 1 and by_id(page, "nbm-notice").text_content() == "Started x"
    push(page, {"jobs": [], "notice": "", "seq": 3})
    assert by_id(page, "nbm-empty").is_visible()


# -- 2. JupyterLab end to end --------------------------------------------------------------------

TOKEN = "nbmodels-e2e-token"
KERNEL_READY = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return Boolean(k && k.connectionStatus === "connected" && k.status === "idle");
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def jupyter_lab(root: Path, notebook_dir: Path) -> Iterator[str]:
    """``jupyter lab`` in its own process group with isolated config/data/runtime dirs."""
    dirs = {
        "JUPYTER_CONFIG_DIR": root / "config",
        "JUPYTER_DATA_DIR": root / "data",
        "JUPYTER_RUNTIME_DIR": root / "runtime",
        "IPYTHONDIR": root / "ipython",
    }
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    settings = dirs["JUPYTER_CONFIG_DIR"] / "lab/user-settings/@jupyterlab/apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    env = {**os.environ, **{k: str(v) for k, v in dirs.items()}}
    env.pop("NBMODELS_WIDGETS", None)
    port = _free_port()
    log = (root / "lab.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.root_dir={notebook_dir}",
            "--LabApp.expose_app_in_browser=True",
            "--ServerApp.terminals_enabled=False",
            "--LabApp.extension_manager=readonly",  # never asks PyPI
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        env=env,
        cwd=notebook_dir,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        "jupyter lab did not start: " + (root / "lab.log").read_text()
                    ) from None
                time.sleep(0.2)
        yield base
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()


def _notebook(path: Path, cells: list[str]) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)


def _run_cell(page: Any, index: int) -> None:
    page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-InputPrompt").click()
    page.keyboard.press("Control+Enter")


def _wait_downloaded(page: Any, more_than: int) -> None:
    page.wait_for_function(
        "(n) => +document.querySelector('[data-testid=nbm-widget]').dataset.downloaded > n",
        arg=more_than,
    )


def _downloaded(page: Any) -> int:
    return int(page.get_attribute('[data-testid="nbm-widget"]', "data-downloaded") or 0)


def test_jupyterlab_end_to_end(
    browser: Any, server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 16_000_000
    server.add_file("model.gguf", payload(size))
    for _ in range(8):
        server.add_fault("model.gguf", Fault.trickle(600_000))
    server.add_file("small.gguf", payload(300_000, seed=2))
    notebooks, out = tmp_path / "notebooks", tmp_path / "out"
    notebooks.mkdir()
    monkeypatch.setenv("NBMODELS_HOME", str(tmp_path / "kernel-home"))
    _notebook(
        notebooks / "e2e.ipynb",
        [
            "%load_ext nbmodels\n"
            f"job = %model_download -b {server.url('model.gguf')} --dir {out} --connections 1",
            "print('STATUS', job.status)",
            f"small = %model_download {server.url('small.gguf')} --dir {out} -q\n%model_panel",
        ],
    )
    with jupyter_lab(tmp_path / "lab", notebooks) as base:
        context = browser.new_context(viewport={"width": 1100, "height": 800})
        page = context.new_page()
        errors: list[Any] = []
        page.on("pageerror", lambda e: errors.append(e))
        try:
            page.goto(f"{base}/lab/tree/e2e.ipynb?token={TOKEN}")
            page.wait_for_function(KERNEL_READY, timeout=60_000)

            _run_cell(page, 0)
            widget = page.locator('[data-testid="nbm-widget"]')
            page.wait_for_selector('[data-testid="nbm-widget"][data-status="downloading"]')
            first = _downloaded(page)
            _wait_downloaded(page, first + 300_000)
            text = widget.locator('[data-testid="nbm-text"]').text_content()
            assert " / 16.0 MB · " in text and "/s" in text and "ETA" in text, text
            page.wait_for_function(
                "(t) => document.querySelector('[data-testid=nbm-text]').textContent !== t",
                arg=text,
            )  # bytes, speed and ETA move live
            shots = DOCS if os.environ.get("NBMODELS_UPDATE_SCREENSHOTS") == "1" else tmp_path
            shots.mkdir(exist_ok=True)
            page.locator(".jp-OutputArea-output").filter(has=widget).screenshot(
                path=str(shots / "widget.png")
            )

            widget.locator('[data-testid="nbm-pause"]').click()
            page.wait_for_selector('[data-testid="nbm-widget"][data-status="paused"]')
            sent_at_pause = sum(r.body_bytes_sent for r in server.requests_for("model.gguf"))
            paused_at = _downloaded(page)
            time.sleep(1.2)
            assert _downloaded(page) == paused_at  # Pause stops the bytes
            assert sum(r.body_bytes_sent for r in server.requests_for("model.gguf")) <= (
                sent_at_pause + 256 * 1024
            )

            widget.locator('[data-testid="nbm-resume"]').click()
            page.wait_for_selector('[data-testid="nbm-widget"][data-status="downloading"]')
            _wait_downloaded(page, paused_at + 200_000)

            widget.locator('[data-testid="nbm-cancel"]').click()
            page.wait_for_selector('[data-testid="nbm-widget"][data-status="canceled"]')
            job_id = widget.get_attribute("data-job-id")

            _run_cell(page, 1)
            page.locator(".jp-Cell").nth(1).locator(".jp-OutputArea-output").filter(
                has_text="STATUS canceled"
            ).wait_for()

            _run_cell(page, 2)
            panel = page.locator('[data-testid="nbm-panel"]')
            panel.locator(f'[data-job-id="{job_id}"][data-status="canceled"]').wait_for()
            panel.locator('[data-testid="nbm-job"][data-status="completed"]').wait_for()
            assert panel.get_attribute("data-count") == "2"
            panel.scroll_into_view_if_needed()
            page.locator(".jp-OutputArea-output").filter(has=panel).screenshot(
                path=str(shots / "panel.png")
            )
        finally:
            context.close()
        assert errors == []
    assert not (out / "model.gguf").exists()
