"""The widget in a real browser (docs/browser-tests.md): Debian Chromium driven by Playwright for
Python.

1. Fake-model page: the ESM rendered on a blank 127.0.0.1 page with a ~20-line fake model:
   formatting, buttons and their messages, keyboard use, files, the model card line, errors,
   escaping, theme, the poll backstop and cleanup.
2. JupyterLab and Notebook 7 end to end, against the local Hub emulator's demo models:
   ``%model_download -b`` of a throttled model, live bytes / speed / ETA, the model card line
   and the file rows, Pause / Resume / Cancel, Python sees ``canceled``; in Lab the panel with
   a completed, a canceled and a failed job; Notebook 7 runs in the JupyterLab Dark theme; the
   contrast of every text is checked from computed styles. Takes ``docs/widget.png``,
   ``docs/panel.png`` and ``docs/widget-dark.png``; they replace those files only with
   ``NBMODELS_UPDATE_SCREENSHOTS=1`` (otherwise they go to the test's temporary folder).
"""

from __future__ import annotations

import contextlib
import fnmatch
import http.server
import json
import os
import re
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

from nbmodels._progress import FileProgress, JobSnapshot, Progress
from nbmodels.cards import ModelCard
from nbmodels.cards._memory import Machine, estimate
from nbmodels.notebook._state import card_state, job_state

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
    assert by_id(page, "nbm-text").text_content() == ""  # nothing known yet: no "0 B"


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
    color = """() => getComputedStyle(document.querySelector('[data-testid=model-card-fit]'))
        .color.match(/[\\d.]+/g).slice(0, 3).map(Number)"""
    red, green, blue = page.evaluate(color)
    assert green > red and green > blue  # fits: the theme's success colour (a readable shade)
    push(page, {**_state(), "card": _card(ram=500_000_000)})
    assert fit.get_attribute("data-fit") == "does not fit"
    assert fit.text_content() == "does not fit (needs ~0.9 GB of 0.5 GB)"
    red, green, blue = page.evaluate(color)
    assert red > green and red > blue  # the error colour
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
    bar = by_id(page, "nbm-bar").first
    assert "nbm-indeterminate" not in bar.get_attribute("class")
    error = "Bad reference.\nline two"
    push(page, _state("failed", error=error, error_type="RefError", total=None))
    assert "nbm-indeterminate" not in bar.get_attribute("class")  # nothing moves any more
    assert by_id(page, "nbm-error-message").text_content() == "line two"
    assert not by_id(page, "nbm-error-hint").is_visible()
    assert by_id(page, "nbm-retry").is_visible() and by_id(page, "nbm-pause").count() == 0
    by_id(page, "nbm-retry").click()
    assert sent(page) == [{"type": "action", "action": "retry", "job_id": "job1"}]
    assert by_id(page, "nbm-widget").get_attribute("data-status") == "failed"


def test_completed_job_shows_the_path_with_a_copy_button(page: Any) -> None:
    load(page)
    shown = "~/.cache/huggingface/hub/models--o--m/snapshots/abc/Model-Q4_K_M.gguf"
    path = str(Path.home() / shown.removeprefix("~/"))
    mount(page, "job", _state("completed", done=4_500_000_000, path=path, speed=0.0, eta=None))
    assert by_id(page, "nbm-path-text").text_content() == shown  # the home folder as ~
    assert by_id(page, "nbm-path-text").get_attribute("title") == path
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


#: JupyterLab's own theme stylesheets (its ``--jp-*`` variables), as installed with it.
LAB_THEMES = Path(sys.prefix) / "share" / "jupyter" / "lab" / "themes" / "@jupyterlab"


@pytest.mark.parametrize(
    "theme", ["light", "dark", "theme-light", "theme-dark", "theme-dark-high-contrast"]
)
def test_every_status_is_readable_in_each_theme(page: Any, theme: str) -> None:
    """The contrast of every text (badges of each status, fit verdicts, the expanded error,
    the path, the form, an error notice) against what it is drawn on, from computed styles:
    with the widget's own light and dark fallbacks, and with JupyterLab's theme variables."""
    load(page)
    if theme.startswith("theme-"):
        css = LAB_THEMES / f"{theme}-extension" / "index.css"
        if not css.exists():
            pytest.skip(f"JupyterLab's {theme} is not installed")
        page.add_style_tag(content=css.read_text())
        page.evaluate("() => { document.body.style.background = 'var(--jp-layout-color0)'; }")
    else:
        page.emulate_media(color_scheme=theme)
        if theme == "dark":  # the host page is dark too (the form sits on its background)
            page.evaluate("() => { document.body.style.background = '#0d1117'; }")
    jobs = [
        _state(status, job_id=status)
        for status in ("queued", "resolving", "downloading", "verifying", "paused", "interrupted")
    ]
    jobs.append(_state("downloading", job_id="stalled", stalled=True, speed=0.0, eta=None))
    jobs.append(_state("completed", job_id="c", path="/m/x.gguf", files=_files(3, "completed")))
    jobs.append(_state("already_downloaded", job_id="a", path="/m/y.gguf"))
    jobs.append(_state("canceled", job_id="x", error="Canceled.", error_type="CanceledError"))
    failed = _state("failed", job_id="f", error="No such quant. Use Q4_K_M.", error_type="E")
    jobs.append({**failed, "error_hint": "Use Q4_K_M."})
    for ram, job in zip((23_000_000_000, 1_000_000_000, 500_000_000), jobs, strict=False):
        job["card"] = _card(ram=ram)  # fits, tight, does not fit
    mount(page, "panel", {"jobs": jobs, "notice": "Enter a reference first.", "seq": 1})
    page.evaluate("() => document.querySelector('[data-testid=nbm-notice]').dataset.kind = 'error'")
    page.locator('[data-job-id="f"] summary').click()
    verdicts = {by_id(page, "model-card-fit").nth(i).get_attribute("data-fit") for i in range(3)}
    assert verdicts == {"fits", "tight", "does not fit"}
    texts = _contrast(page, by_id(page, "nbm-panel"))
    shown = {t["text"] for t in texts}
    assert {"paused", "interrupted", "stalled", "completed", "failed", "canceled"} <= shown
    assert "Next step: Use Q4_K_M." in shown


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


# -- 2. JupyterLab and Notebook 7 end to end ----------------------------------------------------

TOKEN = "nbmodels-e2e-token"
KERNEL_READY = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return Boolean(k && k.connectionStatus === "connected" && k.status === "idle");
}"""
#: Notebook 7.6 logs this harmless page error on load (docs/browser-tests.md); any other one
#: fails a test.
KNOWN_PAGE_ERRORS = ("reading 'schema'",)
#: The demo models of the local Hub emulator (``nbmodels.testing.demo_repos``).
GGUF = "hf:nbmodels-demo/TinyLlama-Chat-GGUF"
SAFETENSORS = "hf:nbmodels-demo/tiny-llama-safetensors"
#: Per-connection rate of the throttled demo files: slow enough to watch, pause and cancel.
RATE = 700_000

#: WCAG contrast of every visible text in ``root`` against the background it is drawn on
#: (background colours composited from the page down, alpha included).
CONTRAST = """(root) => {
  const rgba = (c) => {  // rgb(a) 0-255, or color(srgb 0-1) as color-mix() computes to
    const n = (c.match(/[\\d.]+(?:e-?\\d+)?/g) || ["0", "0", "0", "0"]).map(Number);
    const k = c.startsWith("color(") ? 255 : 1;
    return [n[0] * k, n[1] * k, n[2] * k, n.length > 3 ? n[3] : 1]; };
  const over = (top, under) => { const a = top[3]; return [0, 1, 2].map(
    (i) => top[i] * a + under[i] * (1 - a)).concat([1]); };
  const lum = (c) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92
    : Math.pow((v + 0.055) / 1.055, 2.4); }; return 0.2126 * f(c[0]) + 0.7152 * f(c[1])
    + 0.0722 * f(c[2]); };
  const background = (el) => { const chain = []; for (let n = el; n; n = n.parentElement)
    chain.unshift(n); let bg = [255, 255, 255, 1]; for (const n of chain)
    bg = over(rgba(getComputedStyle(n).backgroundColor), bg); return bg; };
  const out = [];
  for (const el of root.querySelectorAll("*")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    if (style.visibility === "hidden" || +style.opacity === 0) continue;
    const bg = background(el);
    const fg = over(rgba(style.color), bg);
    const [hi, lo] = [lum(fg), lum(bg)].sort((a, b) => b - a);
    out.push({ text: el.textContent.trim().slice(0, 40), cls: el.className,
               ratio: Math.round((hi + 0.05) / (lo + 0.05) * 100) / 100 });
  }
  return out;
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _user_settings(config: Path, plugin: str, values: dict[str, Any]) -> None:
    package, name = plugin.rsplit(":", 1)
    folder = config / "lab" / "user-settings" / package
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.jupyterlab-settings").write_text(json.dumps(values))


@contextlib.contextmanager
def jupyter(
    app: str, root: Path, notebook_dir: Path, env: dict[str, str], *, theme: str | None = None
) -> Iterator[str]:
    """``jupyter lab`` (``app="lab"``) or Notebook 7 (``app="notebook"``) in its own process
    group, with isolated config/data/runtime dirs and ``env`` for the kernel; the theme is set
    the way a user sets it, in the user settings."""
    dirs = {
        "JUPYTER_CONFIG_DIR": root / "config",
        "JUPYTER_DATA_DIR": root / "data",
        "JUPYTER_RUNTIME_DIR": root / "runtime",
        "IPYTHONDIR": root / "ipython",
    }
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    config = dirs["JUPYTER_CONFIG_DIR"]
    _user_settings(
        config,
        "@jupyterlab/apputils-extension:notification",
        {"fetchNews": "false", "checkForUpdates": False},
    )
    if theme is not None:
        _user_settings(config, "@jupyterlab/apputils-extension:themes", {"theme": theme})
    full_env = {**os.environ, **{k: str(v) for k, v in dirs.items()}, **env}
    full_env.pop("NBMODELS_WIDGETS", None)
    port = _free_port()
    if app == "lab":
        own = ["jupyterlab", "--LabApp.expose_app_in_browser=True"]
        own.append("--LabApp.extension_manager=readonly")  # never asks a package index
    else:
        own = ["notebook", "--JupyterNotebookApp.expose_app_in_browser=True"]
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            *own,
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={TOKEN}",
            f"--ServerApp.root_dir={notebook_dir}",
            "--ServerApp.terminals_enabled=False",
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        env=full_env,
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
                        f"jupyter {app} did not start: " + (root / "server.log").read_text()
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


@pytest.fixture
def demo_hub(tmp_path: Path) -> Iterator[tuple[Any, dict[str, str]]]:
    """The local Hub emulator with the demo models, and the kernel's environment: pointed at
    it, with a home folder whose Hugging Face cache is where a user's is (``~/.cache``)."""
    from nbmodels.testing import HubEmulator, demo_repos

    home = tmp_path / "home" / "you"
    with HubEmulator() as hub:
        demo_repos(hub, scale=1.0)
        env = {
            "HOME": str(home),
            "HF_HOME": str(home / ".cache" / "huggingface"),
            "NBMODELS_HOME": str(home / ".cache" / "nbmodels"),
            "HF_ENDPOINT": hub.endpoint,
            "HF_HUB_DISABLE_XET": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "NO_PROXY": "127.0.0.1,localhost",
        }
        yield hub, env
    assert hub.server_errors == []


def _notebook(path: Path, cells: list[str]) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)


@contextlib.contextmanager
def _open(browser: Any, url: str) -> Iterator[Any]:
    """A page on ``url`` whose kernel is ready; fails on any page error not known harmless."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[Any] = []
    page.on("pageerror", lambda e: errors.append(e))
    try:
        page.goto(url)
        page.wait_for_function(KERNEL_READY, timeout=60_000)
        yield page
    finally:
        context.close()
    assert [e for e in errors if not any(k in str(e) for k in KNOWN_PAGE_ERRORS)] == []


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


def _shots(tmp_path: Path) -> Path:
    """Where screenshots go: ``docs/`` only with ``NBMODELS_UPDATE_SCREENSHOTS=1``."""
    shots = DOCS if os.environ.get("NBMODELS_UPDATE_SCREENSHOTS") == "1" else tmp_path
    shots.mkdir(exist_ok=True)
    return shots


def _contrast(page: Any, locator: Any, minimum: float = 4.5) -> list[dict[str, Any]]:
    """Every visible text of ``locator``'s element, with its contrast ratio; asserts that
    none is below ``minimum`` (WCAG AA for normal text) and returns them."""
    texts: list[dict[str, Any]] = locator.evaluate(CONTRAST)
    assert texts, "no visible text"
    low = [t for t in texts if t["ratio"] < minimum]
    assert low == [], low
    return texts


def _drive_job_widget(page: Any, hub: Any, files: str, shot: Path) -> str:
    """Cell 0 started a throttled download with ``-b``. Thread -> traitlets -> comm -> page:
    the widget shows live bytes, speed and ETA, the model card line and one row per file.
    Click -> Python -> state back: Pause stops the bytes (no request starts while paused),
    Resume moves them again, Cancel ends the job. Saves ``shot``; returns the job id."""
    _run_cell(page, 0)
    widget = page.locator('[data-testid="nbm-widget"]')
    page.wait_for_selector('[data-testid="nbm-widget"][data-status="downloading"]')
    first = _downloaded(page)
    _wait_downloaded(page, first + 300_000)
    text = widget.locator('[data-testid="nbm-text"]').text_content()
    size, rate = r"[\d.]+ [kMG]?B", r"[\d.]+ [kMG]?B/s"
    assert re.fullmatch(rf"{size} / {size} · \d+% · {rate} · ETA [\d:]+", text), text
    page.wait_for_function(
        "(t) => document.querySelector('[data-testid=nbm-text]').textContent !== t", arg=text
    )  # bytes, speed and ETA move live
    widget.locator('[data-testid="model-card"]').wait_for()  # read from the file header
    assert " params · " in widget.locator('[data-testid="model-card-text"]').text_content()
    assert widget.locator('[data-testid="nbm-file"]').count() >= 2  # one row per part
    output = page.locator(".jp-OutputArea-output").filter(has=widget)
    output.screenshot(path=str(shot))

    widget.locator('[data-testid="nbm-pause"]').click()
    page.wait_for_selector('[data-testid="nbm-widget"][data-status="paused"]')
    paused_at, paused_since = _downloaded(page), time.time()
    time.sleep(1.2)
    assert _downloaded(page) == paused_at  # Pause stops the bytes
    started = [r for r in hub.requests if r.method == "GET" and fnmatch.fnmatch(r.path, files)]
    assert started and not [r for r in started if r.started > paused_since]

    widget.locator('[data-testid="nbm-resume"]').click()
    page.wait_for_selector('[data-testid="nbm-widget"][data-status="downloading"]')
    _wait_downloaded(page, paused_at + 200_000)

    widget.locator('[data-testid="nbm-cancel"]').click()
    page.wait_for_selector('[data-testid="nbm-widget"][data-status="canceled"]')
    _run_cell(page, 1)
    page.locator(".jp-Cell").nth(1).locator(".jp-OutputArea-output").filter(
        has_text="STATUS canceled"
    ).wait_for()  # Python saw the click
    return str(widget.get_attribute("data-job-id"))


def _assert_server_side(base: str, job_id: str) -> None:
    """The kernel's job ran in the server's engine (issue 15): the server's own job, live in
    its process, not a row of the registry it shares with the kernel (those are read-only)."""
    url = f"{base}/nbmodels/api/jobs/{job_id}"
    request = urllib.request.Request(url, headers={"Authorization": f"token {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        job = json.loads(answer.read())
    assert job["job_id"] == job_id and job["read_only"] is False, job


def test_jupyterlab_end_to_end(
    browser: Any, demo_hub: tuple[Any, dict[str, str]], tmp_path: Path
) -> None:
    """A split GGUF quant in JupyterLab (light theme), then the panel: the completed quant
    with its ``~`` path, the canceled one, and a mistyped quant whose error is expanded.
    Takes ``docs/widget.png`` and ``docs/panel.png``."""
    hub, env = demo_hub
    hub.set_throttle(RATE, path_glob="*Q8_0*")
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(
        notebooks / "e2e.ipynb",
        [
            f"%load_ext nbmodels\njob = %model_download -b {GGUF}:Q8_0",
            "print('STATUS', job.status)",
            f"q4 = %model_download {GGUF}:Q4_K_M -q\n"
            f"%model_download {GGUF}:Q5_K_M -q\n"
            "%model_panel",
        ],
    )
    shots = _shots(tmp_path)
    with (
        jupyter("lab", tmp_path / "lab", notebooks, env) as base,
        _open(browser, f"{base}/lab/tree/e2e.ipynb?token={TOKEN}") as page,
    ):
        job_id = _drive_job_widget(page, hub, "*Q8_0*", shots / "widget.png")
        _assert_server_side(base, job_id)

        _run_cell(page, 2)
        panel = page.locator('[data-testid="nbm-panel"]')
        panel.locator(f'[data-job-id="{job_id}"][data-status="canceled"]').wait_for()
        done = panel.locator('[data-testid="nbm-job"][data-status="completed"]')
        failed = panel.locator('[data-testid="nbm-job"][data-status="failed"]')
        done.wait_for()
        failed.wait_for()
        assert panel.get_attribute("data-count") == "3"
        path = done.locator('[data-testid="nbm-path-text"]').text_content()
        assert path.startswith("~/.cache/huggingface/hub/models--nbmodels-demo--TinyLlama-Chat")
        assert path.endswith("/TinyLlama-Chat-Q4_K_M.gguf")
        failed.locator("summary").click()
        hint = failed.locator('[data-testid="nbm-error-hint"]')
        assert hint.is_visible() and "Q4_K_M" in hint.text_content()
        panel.scroll_into_view_if_needed()
        page.locator(".jp-OutputArea-output").filter(has=panel).screenshot(
            path=str(shots / "panel.png")
        )
        _contrast(page, panel)
    cache = Path(env["HF_HOME"]) / "hub" / "models--nbmodels-demo--TinyLlama-Chat-GGUF"
    assert list(cache.glob("snapshots/*/*Q8_0*")) == []  # canceled: nothing published


def test_notebook7_end_to_end_in_the_dark_theme(
    browser: Any, demo_hub: tuple[Any, dict[str, str]], tmp_path: Path
) -> None:
    """The same round trip in Notebook 7, with JupyterLab Dark chosen in the user settings:
    a sharded safetensors repo, every text readable on the dark background. Takes
    ``docs/widget-dark.png``."""
    hub, env = demo_hub
    hub.set_throttle(RATE, path_glob="*.safetensors")
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(
        notebooks / "e2e.ipynb",
        [
            f"%load_ext nbmodels\njob = %model_download -b {SAFETENSORS}",
            "print('STATUS', job.status)",
        ],
    )
    with (
        jupyter("notebook", tmp_path / "nb7", notebooks, env, theme="JupyterLab Dark") as base,
        _open(browser, f"{base}/notebooks/e2e.ipynb?token={TOKEN}") as page,
    ):
        assert page.locator("body").get_attribute("data-jp-theme-light") == "false"
        shot = _shots(tmp_path) / "widget-dark.png"
        _drive_job_widget(page, hub, "*.safetensors", shot)
        widget = page.locator('[data-testid="nbm-widget"]')
        texts = _contrast(page, widget)
        assert {"nbm-name", "nbm-text"} <= {t["cls"] for t in texts}
