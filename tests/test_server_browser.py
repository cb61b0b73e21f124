"""The native event stream read by a browser's own ``EventSource`` (Chromium, driven by
Playwright, set up as in ``test_browser.py``): a page on another 127.0.0.1 origin, allowed with
``nbmodels serve --allow-origin``, passes the token in the query (an ``EventSource`` cannot send
headers) and sees a download's snapshots live, up to its final event."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import payload
from tests.faultserver import Fault, FaultServer
from tests.servers import ServiceProcess, start_standalone
from tests.test_browser import ARGS, CHROMIUM, blank_url, browser, sync_api

__all__ = ["blank_url", "browser"]  # fixtures, imported for this module

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]
assert sync_api is not None


@pytest.fixture
def service(blank_url: str, tmp_path: Path) -> Iterator[ServiceProcess]:
    origin = blank_url.rstrip("/")
    server = start_standalone(tmp_path, "http://127.0.0.1:9", "--allow-origin", origin)
    yield server
    server.stop()


def test_event_source_in_a_browser_follows_a_download_live(
    browser: Any, blank_url: str, service: ServiceProcess, server: FaultServer, tmp_path: Path
) -> None:
    assert ARGS and CHROMIUM  # the same Chromium and flags as the widget's browser tests
    server.add_file("live.bin", payload(400_000, seed=11))
    server.add_fault("live.bin", Fault.trickle(100_000), times=-1)
    context = browser.new_context()
    page = context.new_page()
    errors: list[Any] = []
    page.on("pageerror", lambda e: errors.append(e))
    try:
        page.goto(blank_url)
        page.evaluate(
            """(url) => {
                window.__events = [];
                window.__es = new EventSource(url);
                const keep = (e) => window.__events.push(JSON.parse(e.data));
                window.__es.addEventListener("job", keep);
            }""",
            service.url(f"api/events?token={service.token}"),
        )
        page.wait_for_function("() => window.__es.readyState === 1", timeout=30_000)
        job = httpx.post(
            service.url("api/jobs"),
            headers=service.headers,
            json={"ref": server.url("live.bin"), "dir": str(tmp_path / "out")},
        ).json()
        page.wait_for_function(
            "(id) => window.__events.some((e) => e.job_id === id && e.status === 'completed')",
            arg=job["job_id"],
            timeout=60_000,
        )
        seen = page.evaluate("(id) => window.__events.filter((e) => e.job_id === id)",
                             job["job_id"])  # fmt: skip
        page.evaluate("() => window.__es.close()")
    finally:
        context.close()
    assert errors == []
    downloading = [e for e in seen if e["status"] == "downloading"]
    assert downloading, "live progress arrived before the end"
    sizes = [e["downloaded_bytes"] for e in downloading]
    assert sizes == sorted(sizes) and sizes[-1] < 400_000
    assert seen[-1]["status"] == "completed" and seen[-1]["downloaded_bytes"] == 400_000
    assert (tmp_path / "out" / "live.bin").read_bytes() == payload(400_000, seed=11)
