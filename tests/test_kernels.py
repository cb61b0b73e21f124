"""Every kernel of a Jupyter server shares the server's engine (issue 15, part 1), end to end:
one real ``jupyter server`` process for the module (random port, its own dirs, the nbmodels
extension enabled by the installed data file), real kernels started through its REST API and
driven with jupyter_client, and the local Hub emulator throttling the files so that downloads
are still running when the tests act on them. Each test uses a file of its own."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import nbmodels
import nbmodels.remote._select as select
from nbmodels import remote
from nbmodels._options import Options
from nbmodels.engine import Engine, get_engine
from nbmodels.errors import CanceledError, NbmodelsError, NotFoundError
from nbmodels.testing import GeneratedFile, HubEmulator, StandardRepos
from nbmodels.testing import standard_repos as add_standard_repos
from tests.kernels import Kernel, kernels, plain_kernel, server_kernel
from tests.servers import TOKEN, ServiceProcess, service_env, start_jupyter, wait_for

pytestmark = pytest.mark.timeout(300)

REPO = "nbm-kernels/shared"
SIZE = 2_000_000
#: Bytes per second per connection: the shared download takes a few seconds
#: (``connections=1``); the tests that act on a running download use ``SLOW`` (they pause it,
#: lift the throttle and resume, so it ends quickly once they are done).
RATE = 400_000
SLOW = 100_000
FILES = ("two.bin", "restart.bin", "interrupt.bin", "plain.bin", "local.bin", "api.bin",
         "cut.bin", "cancel.bin", "own-cache.bin")  # fmt: skip

#: A cell that downloads ``{ref}`` and prints which engine, which job and which path.
DOWNLOAD = """\
import nbmodels, nbmodels.remote
job = nbmodels.download({ref!r}, connections=1, display=False)
print("ENGINE", type(nbmodels.remote.current_engine()).__name__)
print("JOB", job.id, flush=True)
print("PATH", job.wait())
print("STATUS", job.status)
"""


@dataclass
class Jupyter:
    """The module's server: ``root`` is its URL with the base URL (ending in ``/``)."""

    process: ServiceProcess
    root: str
    runtime: Path
    hub: HubEmulator

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {TOKEN}"}

    @property
    def pid(self) -> int:
        return self.process.proc.pid

    def kernel(self) -> Kernel:
        return server_kernel(self.root, self.headers, self.runtime)

    def job(self, job_id: str) -> dict[str, Any]:
        answer = httpx.get(self.process.url(f"api/jobs/{job_id}"), headers=self.headers)
        assert answer.status_code == 200, answer.text
        data: dict[str, Any] = answer.json()
        return data

    def jobs_of(self, ref: str) -> list[dict[str, Any]]:
        answer = httpx.get(self.process.url("api/jobs"), headers=self.headers)
        return [j for j in answer.json()["jobs"] if j["ref"] == ref]

    def control(self, job_id: str, action: str) -> None:
        answer = httpx.post(self.process.url(f"api/jobs/{job_id}/{action}"), headers=self.headers)
        assert answer.status_code == 200, answer.text


@pytest.fixture(scope="module")
def jp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Jupyter]:
    tmp = tmp_path_factory.mktemp("kernels")
    with HubEmulator() as hub:
        hub.add_repo(REPO, {name: GeneratedFile(SIZE, seed=name) for name in FILES})
        add_standard_repos(hub)
        process = start_jupyter(tmp, hub.endpoint, base_url="/jp/")
        try:
            root = process.base[: -len("nbmodels")]
            yield Jupyter(process, root, tmp / "jupyter" / "runtime", hub)
        finally:
            process.stop()
        assert not hub.server_errors, hub.server_errors


def _ref(name: str) -> str:
    return f"hf:{REPO}/{name}"


def _cdn_gets(hub: HubEmulator, name: str) -> list[Any]:
    return [r for r in hub.requests if r.origin == "cdn" and r.method == "GET"
            and r.file_path == name]  # fmt: skip


def _start(r: Any) -> int:
    return int(r.range.split("=")[1].split("-")[0]) if r.range else 0


def _wait_running(jp: Jupyter, ref: str, more_than: int = 0) -> dict[str, Any]:
    """The server's running job of ``ref`` once it has more than ``more_than`` bytes."""
    found: list[dict[str, Any]] = []

    def moving() -> bool:
        jobs = [j for j in jp.jobs_of(ref) if not j["done"]]
        found[:] = jobs
        return bool(jobs) and jobs[0]["downloaded_bytes"] > more_than

    wait_for(moving, what=f"bytes of {ref} on the server", timeout=120)
    return found[0]


# -- two kernels, one transfer --------------------------------------------------------------------


def test_two_kernels_asking_for_one_file_share_one_transfer_and_one_job(jp: Jupyter) -> None:
    name = "two.bin"
    jp.hub.set_throttle(RATE, path_glob=name)
    magic = (
        "%load_ext nbmodels\n"
        f"path = %model_download {_ref(name)} --connections 1 --quiet\n"
        "print('ENGINE', type(nbmodels.remote.current_engine()).__name__)\n"
        "print('JOB', nbmodels.jobs()[0].id)\nprint('PATH', path)"
    )
    with kernels(jp.kernel, 2) as (first, second):
        for k in (first, second):
            assert k.run("import nbmodels, nbmodels.remote").error is None
        sent = [first.send(DOWNLOAD.format(ref=_ref(name))), second.send(magic)]
        outs = [first.collect(sent[0]), second.collect(sent[1])]
    assert [o.error for o in outs] == [None, None], outs
    assert {o.value("ENGINE") for o in outs} == {"RemoteEngine"}
    (job_id,) = {o.value("JOB") for o in outs}  # the same job: the server's idempotent submit
    (path,) = {o.value("PATH") for o in outs}
    assert Path(path).read_bytes() == GeneratedFile(SIZE, seed=name).read()
    gets = _cdn_gets(jp.hub, name)
    assert [_start(r) for r in gets] == [0] and gets[0].bytes_sent == SIZE  # one transfer
    on_server = jp.job(job_id)
    assert on_server["read_only"] is False and on_server["status"] == "completed"


# -- a kernel restarted mid-download --------------------------------------------------------------


def test_a_download_outlives_its_kernels_restart_and_the_rerun_cell_reattaches(
    jp: Jupyter,
) -> None:
    name = "restart.bin"
    ref = _ref(name)
    jp.hub.set_throttle(SLOW, path_glob=name)
    with kernels(jp.kernel, 1) as (kernel,):
        kernel.send(DOWNLOAD.format(ref=ref))
        job = _wait_running(jp, ref)
        kernel.restart()  # a new kernel process; the cell above died with the old one
        later = _wait_running(jp, ref, more_than=job["downloaded_bytes"])
        assert later["job_id"] == job["job_id"] and later["status"] == "downloading"
        # Let the rest go fast: pause on the server, lift the throttle; the re-run cell's
        # submit finds the paused job and resumes it (a new request, at the new rate).
        jp.control(job["job_id"], "pause")
        wait_for(lambda: jp.job(job["job_id"])["status"] == "paused", what="paused")
        jp.hub.set_throttle(None, path_glob=name)
        out = kernel.run(DOWNLOAD.format(ref=ref))
    assert out.error is None, out
    assert out.value("JOB") == job["job_id"] and out.value("STATUS") == "completed"
    assert Path(out.value("PATH")).read_bytes() == GeneratedFile(SIZE, seed=name).read()
    starts = [_start(r) for r in _cdn_gets(jp.hub, name)]
    assert starts[0] == 0 and len(starts) == 2 and starts[1] > 0, starts  # resumed, not again


# -- Ctrl-C pauses the server's job; running the cell again resumes it ----------------------------


def test_interrupting_the_cell_pauses_the_server_job_and_rerunning_resumes_it(
    jp: Jupyter,
) -> None:
    name = "interrupt.bin"
    ref = _ref(name)
    jp.hub.set_throttle(SLOW, path_glob=name)
    cell = f"path = %model_download {ref} --connections 1\nprint('PATH', path)"
    with kernels(jp.kernel, 1) as (kernel,):
        assert kernel.run("%load_ext nbmodels").error is None
        sent = kernel.send(cell)
        job = _wait_running(jp, ref)
        kernel.interrupt()
        interrupted = kernel.collect(sent)
        assert "Paused " in interrupted.stdout and interrupted.value("PATH") == "None"
        wait_for(lambda: jp.job(job["job_id"])["status"] == "paused", what="the server's pause")
        jp.hub.set_throttle(None, path_glob=name)
        out = kernel.run(cell)
    assert out.error is None, out
    assert Path(out.value("PATH")).read_bytes() == GeneratedFile(SIZE, seed=name).read()
    assert [j["job_id"] for j in jp.jobs_of(ref)] == [job["job_id"]]
    assert jp.job(job["job_id"])["status"] == "completed"
    assert len(_cdn_gets(jp.hub, name)) == 2


# -- where the kernel's own engine stays ----------------------------------------------------------


def test_a_kernel_not_launched_by_the_server_uses_its_own_engine(jp: Jupyter) -> None:
    """Plain jupyter_client (no server), with the server's runtime dir in its environment: the
    server's file is there, but it did not launch this kernel."""
    env = service_env(jp.runtime.parents[1], jp.hub.endpoint)
    with kernels(lambda: plain_kernel(env), 1) as (kernel,):
        out = kernel.run(DOWNLOAD.format(ref=_ref("plain.bin")))
    assert out.error is None, out
    assert out.value("ENGINE") == "Engine"
    assert jp.job(out.value("JOB"))["read_only"] is True  # only in the shared registry


def test_nbmodels_engine_local_keeps_the_download_in_the_kernel(jp: Jupyter) -> None:
    with kernels(jp.kernel, 1) as (kernel,):
        assert kernel.run("import os; os.environ['NBMODELS_ENGINE'] = 'local'").error is None
        out = kernel.run(DOWNLOAD.format(ref=_ref("local.bin")))
    assert out.error is None, out
    assert out.value("ENGINE") == "Engine"
    assert jp.job(out.value("JOB"))["read_only"] is True


def test_a_kernel_with_its_own_hugging_face_cache_downloads_into_it(
    jp: Jupyter, tmp_path: Path
) -> None:
    """A kernel that sets its own ``HF_HUB_CACHE`` gets its files there, where its own
    huggingface_hub looks: the server's engine would put them in the server's cache, so that
    download runs in the kernel (the server said where its cache is when it was found)."""
    own = tmp_path / "own-hf" / "hub"
    with kernels(jp.kernel, 1) as (kernel,):
        setup = f"import os; os.environ['HF_HUB_CACHE'] = {str(own)!r}"
        assert kernel.run(setup).error is None
        out = kernel.run(DOWNLOAD.format(ref=_ref("own-cache.bin")))
    assert out.error is None, out
    assert out.value("ENGINE") == "RemoteEngine"  # the kernel still follows its server...
    assert Path(out.value("PATH")).is_relative_to(own)  # ...but this file is in its own cache
    assert jp.job(out.value("JOB"))["read_only"] is True  # the kernel's job, not the server's


# -- discovery, in this process -------------------------------------------------------------------


@pytest.fixture
def launched_by(jp: Jupyter, monkeypatch: pytest.MonkeyPatch) -> Jupyter:
    """This process posing as a kernel of ``jp`` (its launcher's pid and runtime dir)."""
    monkeypatch.setenv("JPY_PARENT_PID", str(jp.pid))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(jp.runtime))
    return jp


def test_discovery_finds_the_launching_server_and_keeps_its_token_out_of_sight(
    launched_by: Jupyter,
) -> None:
    found = remote.find_server()
    assert found.server is not None, found.reason
    assert found.server.url == launched_by.process.base + "/"
    assert found.server.pid == launched_by.pid
    assert found.server.token == TOKEN and TOKEN not in repr(found.server)
    cache = launched_by.process.hf_home / "hub"  # the server's, as its index says
    assert found.server.hf_cache is not None and found.server.shares_cache(cache)


def test_discovery_says_why_when_the_file_is_missing_or_the_token_is_wrong(
    launched_by: Jupyter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    missing = remote.find_server()
    assert missing.server is None and str(tmp_path) in missing.reason
    info = json.loads((launched_by.runtime / f"jpserver-{launched_by.pid}.json").read_text())
    info["token"] = "not-the-token"
    (tmp_path / f"jpserver-{launched_by.pid}.json").write_text(json.dumps(info))
    refused = remote.find_server()
    assert refused.server is None and "refused its own token" in refused.reason
    assert "not-the-token" not in refused.reason


def test_server_mode_without_a_server_fails_loudly_and_auto_falls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    remote.reset()
    try:
        monkeypatch.setenv("NBMODELS_ENGINE", "server")
        with pytest.raises(NbmodelsError, match=r"NBMODELS_ENGINE=server, but .*no Jupyter server"):
            nbmodels.download("https://127.0.0.1:9/x.bin", display=False)
        # offline: this process's own engine, without looking for a server (no request at all)
        opts = Options.create(offline=True)
        assert remote.engine_for(opts) is get_engine()
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        assert remote.engine_for(Options.create()) is get_engine()
        monkeypatch.delenv("HF_HUB_OFFLINE")
        monkeypatch.setenv("NBMODELS_ENGINE", "sever")
        with pytest.raises(NbmodelsError, match="not an engine choice") as err:
            nbmodels.jobs()
        assert "auto" in str(err.value) and "local" in str(err.value)
        monkeypatch.setenv("NBMODELS_ENGINE", "auto")
        assert isinstance(remote.current_engine(), Engine)  # not a kernel: its own, silently
    finally:
        remote.reset()


# -- the remote engine, in this process -----------------------------------------------------------


@pytest.fixture
def remote_engine(launched_by: Jupyter) -> Iterator[remote.RemoteEngine]:
    found = remote.find_server()
    assert found.server is not None, found.reason
    eng = remote.RemoteEngine(found.server)
    try:
        yield eng
    finally:
        eng.close()


def test_remote_jobs_read_wait_and_raise_like_local_ones(
    remote_engine: remote.RemoteEngine, jp: Jupyter
) -> None:
    engine = remote_engine
    missing = engine.submit(f"hf:{StandardRepos().gguf}:Q9_Z", Options())
    with pytest.raises(NotFoundError) as err:
        missing.wait(60)
    assert "Q4_K_M" in err.value.candidates and err.value.hint  # the server's error, rebuilt
    assert missing.error is err.value and missing.status == "failed"
    name = "api.bin"
    ok = engine.submit(_ref(name), Options())
    assert ok.wait(60).read_bytes() == GeneratedFile(SIZE, seed=name).read()
    assert ok.files[0].status == "completed" and ok.paths == [ok.path]
    assert engine.jobs() == [ok, missing]
    assert engine.job(ok.id) is ok and engine.job("0" * 12) is None and engine.job("../x") is None
    history = engine.history()
    assert ok in history and missing in history
    assert len(history) > 1 and engine.history(1) == [ok]  # the server sends the newest only


def test_controls_post_to_the_server_and_the_stream_brings_the_outcome(
    remote_engine: remote.RemoteEngine, jp: Jupyter
) -> None:
    engine = remote_engine
    name = "cancel.bin"
    jp.hub.set_throttle(SLOW, path_glob=name)
    job = engine.submit(_ref(name), Options(connections=1))
    seen: list[str] = []
    job.subscribe(lambda snap: seen.append(snap.status))
    wait_for(lambda: job.progress.downloaded_bytes > 0, what="bytes through the stream")
    assert job.pause() and (wait_for(lambda: job.status == "paused", what="paused") is None)
    assert job.resume()
    wait_for(lambda: job.status == "downloading", what="resumed")
    assert job.cancel()
    with pytest.raises(CanceledError):
        job.wait(60)
    assert jp.job(job.id)["status"] == "canceled"
    assert {"downloading", "paused", "canceled"} <= set(seen)
    assert not job.cancel()  # ended: nothing to control


# -- the stream, cut ------------------------------------------------------------------------------


class Relay:
    """A TCP relay on 127.0.0.1 to ``port``: :meth:`cut` drops every connection and refuses
    new ones until :meth:`mend` (a network drop between a kernel and its server)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = threading.Event()
        self.open.set()
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open.is_set():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self._lock:
                self._socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.open.clear()
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def mend(self) -> None:
        self.open.set()

    def close(self) -> None:
        self.listener.close()
        self.cut()


def test_the_stream_reconnects_and_a_job_that_ended_meanwhile_ends_here(
    launched_by: Jupyter,
) -> None:
    jp = launched_by
    found = remote.find_server()
    assert found.server is not None
    port = int(found.server.url.split(":")[2].split("/")[0])
    relay = Relay(port)
    url = found.server.url.replace(f":{port}/", f":{relay.port}/")
    eng = remote.RemoteEngine(remote.ServerInfo(url, jp.pid, found.server.info_file, TOKEN))
    name = "cut.bin"
    jp.hub.set_throttle(SLOW, path_glob=name)
    try:
        job = eng.submit(_ref(name), Options(connections=1))
        stream = eng.stream
        assert stream is not None
        wait_for(lambda: job.progress.downloaded_bytes > 0, what="bytes through the stream")
        relay.cut()
        jp.control(job.id, "pause")  # finish fast, unseen by this engine: a new request
        wait_for(lambda: jp.job(job.id)["status"] == "paused", what="paused")
        jp.hub.set_throttle(None, path_glob=name)
        jp.control(job.id, "resume")
        wait_for(lambda: jp.job(job.id)["done"], what="the job's end on the server")
        assert not job.done  # nothing arrived here meanwhile
        relay.mend()
        assert job.wait(60).read_bytes() == GeneratedFile(SIZE, seed=name).read()
        wait_for(lambda: stream.connections >= 2, what="the stream back")
    finally:
        eng.close()
        relay.close()


# -- hygiene --------------------------------------------------------------------------------------


def test_the_core_finds_the_runtime_dir_without_jupyter_core(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same directory as jupyter_core's ``jupyter_runtime_dir`` in the usual setups."""
    from jupyter_core.paths import jupyter_runtime_dir

    monkeypatch.delenv("JUPYTER_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(sys, "argv", ["x"])
    for env in ({}, {"JUPYTER_DATA_DIR": str(tmp_path / "d")}, {"XDG_DATA_HOME": str(tmp_path)},
                {"JUPYTER_PLATFORM_DIRS": "1"}):  # fmt: skip
        for key in ("JUPYTER_DATA_DIR", "XDG_DATA_HOME", "JUPYTER_PLATFORM_DIRS"):
            monkeypatch.delenv(key, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        assert remote.runtime_dirs() == [Path(jupyter_runtime_dir())], env
    monkeypatch.setattr(sys, "argv", ["ipykernel_launcher", "-f", str(tmp_path / "k-1.json")])
    assert remote.runtime_dirs()[0] == tmp_path


def test_a_submit_never_sends_a_token_and_makes_dir_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    body = remote.submit_body("hf:a/b", Options.create(dir="models", force=True, token="hf_x"))
    assert body == {"ref": "hf:a/b", "dir": str(tmp_path / "models"), "force": True}
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert remote.submit_body("hf:a/b", Options())["offline"] is True
    assert isinstance(remote.engine_for(Options.create(token="hf_x")), Engine)


def test_outside_a_kernel_auto_looks_for_no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """A script, the CLI, terminal IPython: no file read, no request, the own engine."""
    remote.reset()
    calls: list[int] = []
    monkeypatch.setattr(select, "find_server", lambda: calls.append(1))
    try:
        assert isinstance(remote.current_engine(), Engine) and calls == []
    finally:
        remote.reset()
