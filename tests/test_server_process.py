"""The service as a process: killed mid-download and started again (the download resumes),
stopped by SIGTERM (cleanly, partial data kept), its command-line rules, what it imports, and
the Jupyter Server extension being enabled by the installed package."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nbmodels.sources._url import url_key
from nbmodels.testing import GeneratedFile, HubEmulator
from nbmodels.transfer import PartialState, partial_paths
from tests.servers import BIN, EventReader, ServiceProcess, service_env, start_standalone, wait_for

pytestmark = pytest.mark.timeout(300)

EVENT = "Models.DownloadProgress"
SIZE = 4_000_000


@pytest.fixture
def hub() -> Iterator[HubEmulator]:
    with HubEmulator() as emulator:
        yield emulator
    assert not emulator.server_errors, emulator.server_errors


def _kept(target: Path, url: str) -> int:
    part, state_path = partial_paths(target)
    state = PartialState.load(state_path, part)
    return 0 if state is None or state.key != url_key(url) else state.done.covered


def _start_slow_download(
    tmp_path: Path, hub: HubEmulator
) -> tuple[ServiceProcess, str, Path, GeneratedFile]:
    content = GeneratedFile(SIZE, seed="resume")
    url = hub.serve_file("big/model.gguf", content)
    hub.set_throttle(150_000, path_glob="big/model.gguf")
    server = start_standalone(tmp_path, hub.endpoint)
    target = server.home / "arw" / "models" / "big-model" / "model.gguf"
    answer = httpx.post(
        server.url("models/download"), headers=server.headers, json={"id": "big-model", "url": url}
    )
    assert answer.json()["status"] == "started", answer.text
    wait_for(lambda: _kept(target, url) >= 150_000, what="durable partial data")
    return server, url, target, content


def _resume_and_finish(
    tmp_path: Path, hub: HubEmulator, url: str, target: Path, content: GeneratedFile
) -> None:
    kept = _kept(target, url)
    assert 0 < kept < SIZE
    hub.set_throttle(None, path_glob="big/model.gguf")
    restarted = time.time()  # the killed server's last request may be logged later
    server = start_standalone(tmp_path, hub.endpoint)
    try:
        history = httpx.get(server.url("api/jobs"), headers=server.headers).json()["jobs"]
        assert [j["status"] for j in history] == ["interrupted"]
        with EventReader(server.url("events"), server.headers) as events:
            again = httpx.post(server.url("models/download"), headers=server.headers,
                               json={"id": "big-model", "url": url})  # fmt: skip
            assert again.json()["status"] in ("resumed", "complete"), again.text
            assert again.json()["offset"] == kept
            done = {"id": "big-model", "status": "complete", "file": "model.gguf",
                    "provider": "local"}  # fmt: skip
            wait_for(lambda: done in events.of(EVENT), what="the complete event")
        assert {"id": "big-model", "status": "resumed", "offset": kept} in events.of(EVENT)
    finally:
        assert server.stop() == 0
    assert target.read_bytes() == content.read()
    ranges = [
        r.range
        for r in hub.requests
        if r.method == "GET" and r.file_path == "big/model.gguf" and r.started >= restarted
    ]
    assert ranges and all(r is not None and not r.startswith("bytes=0-") for r in ranges), ranges
    assert min(int(r.split("=")[1].split("-")[0]) for r in ranges if r) >= kept


def test_kill_9_mid_download_then_the_same_request_resumes(
    tmp_path: Path, hub: HubEmulator
) -> None:
    server, url, target, content = _start_slow_download(tmp_path, hub)
    server.stop(signal.SIGKILL)
    _resume_and_finish(tmp_path, hub, url, target, content)


def test_sigterm_stops_cleanly_and_keeps_the_partial_data(tmp_path: Path, hub: HubEmulator) -> None:
    server, url, target, content = _start_slow_download(tmp_path, hub)
    assert server.stop(signal.SIGTERM) == 0
    assert "stopping (running jobs keep their partial data)" in server.log_text()
    _resume_and_finish(tmp_path, hub, url, target, content)


def test_offline_and_not_on_disk_is_503(tmp_path: Path, hub: HubEmulator) -> None:
    hub.add_repo("nbm-svc/offline", {"config.json": "{}\n"})
    env = service_env(tmp_path, hub.endpoint, HF_HUB_OFFLINE="1")
    server = start_standalone(tmp_path, hub.endpoint, env=env)
    try:
        answer = httpx.post(server.url("model-download"), headers=server.headers,
                            json={"model_name": "nbm-svc/offline"})  # fmt: skip
    finally:
        server.stop()
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"]["code"] == "offline"
    assert hub.requests == []  # offline means no request at all


# -- the command line --------------------------------------------------------------------------


def test_serve_refuses_a_non_loopback_host_without_a_token(tmp_path: Path) -> None:
    env = service_env(tmp_path, "http://127.0.0.1:9")
    env.pop("NBMODELS_SERVER_TOKEN", None)
    done = subprocess.run(
        [str(BIN / "nbmodels"), "serve", "--host", "192.0.2.1", "--port", "0"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "without a token" in done.stderr and "--token" in done.stderr


def test_serve_prints_a_generated_token_but_never_a_given_one(tmp_path: Path) -> None:
    generated = start_standalone(tmp_path / "a", "http://127.0.0.1:9", token=None)
    try:
        assert len(generated.token) >= 32 and f"?token={generated.token}" in generated.log_text()
        assert httpx.get(generated.url("api/jobs"), headers=generated.headers).status_code == 200
    finally:
        generated.stop()
    env = service_env(tmp_path / "b", "http://127.0.0.1:9", NBMODELS_SERVER_TOKEN="from-env-123")
    given = start_standalone(tmp_path / "b", "http://127.0.0.1:9", token=None, env=env)
    try:
        assert "from-env-123" not in given.log_text()
        ok = httpx.get(given.url("api/jobs"), headers={"Authorization": "Bearer from-env-123"})
        assert ok.status_code == 200
    finally:
        given.stop()


def test_an_explicit_host_turns_the_host_check_off(tmp_path: Path) -> None:
    server = start_standalone(tmp_path, "http://127.0.0.1:9", "--host", "127.0.0.1")
    try:
        answer = httpx.get(server.url("api/jobs"), headers={**server.headers, "Host": "models.lan"})
        assert answer.status_code == 200
    finally:
        server.stop()


def test_allowed_origins_get_cors_headers(tmp_path: Path) -> None:
    origin = "http://127.0.0.1:5555"
    server = start_standalone(tmp_path, "http://127.0.0.1:9", "--allow-origin", origin)
    try:
        preflight = httpx.options(
            server.url("api/jobs"),
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == origin
        assert "Authorization" in preflight.headers["access-control-allow-headers"]
        answer = httpx.get(server.url("api/jobs"), headers={**server.headers, "Origin": origin})
        assert answer.headers["access-control-allow-origin"] == origin
        elsewhere = {**server.headers, "Origin": "http://127.0.0.1:6666"}
        other = httpx.get(server.url("api/jobs"), headers=elsewhere)
        assert "access-control-allow-origin" not in other.headers
    finally:
        server.stop()


def test_the_standalone_server_imports_no_notebook_or_jupyter_library() -> None:
    code = textwrap.dedent(
        """
        import sys
        from nbmodels.__main__ import main
        from nbmodels.server._routes import new_service
        from nbmodels.server._auth import Access
        from nbmodels.server._standalone import make_app
        make_app(new_service(), Access("t"))
        main(["serve", "--help"])
        bad = sorted(m for m in sys.modules if m.split(".")[0] in
                     ("IPython", "ipywidgets", "anywidget", "traitlets", "jupyter_server"))
        sys.exit(f"imported {bad}" if bad else 0)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "--allow-origin" in done.stdout


def test_installing_the_package_enables_the_jupyter_extension(tmp_path: Path) -> None:
    """The data file the wheel installs (``etc/jupyter/jupyter_server_config.d``) is what
    enables the extension: an isolated user config still lists it, enabled and valid."""
    env = service_env(tmp_path, "http://127.0.0.1:9")
    done = subprocess.run(
        [str(BIN / "jupyter"), "server", "extension", "list"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    text = done.stdout + done.stderr
    assert "nbmodels.server" in text and "enabled" in text.split("nbmodels.server", 1)[1][:40]
    assert "nbmodels.server  \x1b[32mOK" in text or "nbmodels.server  OK" in text
    installed = Path(sys.prefix, "etc", "jupyter", "jupyter_server_config.d", "nbmodels.json")
    assert '"nbmodels.server": true' in installed.read_text()
