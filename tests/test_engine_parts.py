"""The engine's parts: a job's run (the one owner of its mutable state) and the Job handle that
reads what it publishes, the front-end hooks the notebook layer fills, and the one status enum.

The run and the hooks are logic without I/O, so most tests drive them directly with a recording
stand-in for the engine; the plain-string and plugin-load checks use a real download and a
real subprocess.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import nbmodels
from nbmodels._config import Settings
from nbmodels._options import Options
from nbmodels._progress import Status
from nbmodels.engine import _engine, _hooks
from nbmodels.engine._job import Job
from nbmodels.engine._run import JobRun
from nbmodels.engine._submission import Submission
from nbmodels.errors import NbmodelsError
from nbmodels.sources import Plan, PlannedFile
from nbmodels.transfer import FileSpec
from tests.conftest import payload
from tests.faultserver import FaultServer

ROOT = Path(__file__).resolve().parents[1]
URL = "https://example.org/models/m.bin?sig=secret"


class Posts:
    """Stands in for the engine behind a Job's controls: records what they post."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def pause(self, job_id: str) -> bool:
        self.calls.append(("pause", job_id))
        return True

    def resume(self, job_id: str) -> bool:
        self.calls.append(("resume", job_id))
        return True

    def cancel(self, job_id: str) -> bool:
        self.calls.append(("cancel", job_id))
        return True

    def resubmit(self, job: Job) -> Job:
        self.calls.append(("resubmit", job.id))
        return job


def new_run(posts: Posts | None = None, recorded: list[Job] | None = None) -> JobRun:
    return JobRun(
        "j1",
        Submission.of(URL, Options()),
        Options(),
        settings=Settings(),
        controls=posts or Posts(),
        record=(recorded if recorded is not None else []).append,
    )


@pytest.fixture
def no_front_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """No front end registered for the test (the real one, if any, comes back after it), and
    none to load: as in a script, although other tests imported IPython into this process."""
    monkeypatch.setattr(_hooks, "_registered", None)
    monkeypatch.setattr(_hooks, "in_ipython", lambda: False)


def two_files(tmp_path: Path) -> Plan:
    """``a.bin`` (100 bytes) to fetch, ``b.bin`` (50 bytes) on disk already."""
    spec = FileSpec("a.bin", "https://example.org/a.bin", tmp_path / "a.bin", "key-a", size=100)
    return Plan(
        files=[
            PlannedFile("a.bin", tmp_path / "a.bin", 100, spec=spec),
            PlannedFile("b.bin", tmp_path / "b.bin", 50),
        ],
        primary=tmp_path / "a.bin",
    )


# -- the run and the handle ----------------------------------------------------------------------


def test_the_job_sees_the_runs_changes_once_published(tmp_path: Path) -> None:
    recorded: list[Job] = []
    run = new_run(recorded=recorded)
    job = run.job
    assert job.status == "queued" and job.snapshot().path is None and job.started_at is None
    run.set_status(Status.RESOLVING)
    assert job.status == "resolving" and job.snapshot().started_at is not None
    assert recorded == [job]  # a status change is recorded

    todo = run.begin(two_files(tmp_path), unpacked=set())
    assert [(f.name, state.status) for f, state in todo] == [("a.bin", "queued")]
    assert job.snapshot().path is None  # not published yet
    run.set_status(Status.DOWNLOADING, record=False)
    assert job.path == tmp_path / "a.bin" and job.paths == [tmp_path / "a.bin", tmp_path / "b.bin"]
    assert [(f.name, f.status) for f in job.files] == [
        ("a.bin", "queued"),
        ("b.bin", "already_downloaded"),
    ]
    assert job.progress.downloaded_bytes == 50 and job.progress.total_bytes == 150
    assert len(recorded) == 1


def test_a_files_reports_move_the_job_and_a_restart_rolls_its_bytes_back(tmp_path: Path) -> None:
    run = new_run()
    (planned, state), *_ = run.begin(two_files(tmp_path), unpacked=set())
    run.set_status(Status.DOWNLOADING, record=False)
    on_progress, on_status, on_retry = run.reporters(state)
    state.status = Status.DOWNLOADING  # as the transfer starts
    on_progress(40, 100)
    on_progress(70, 100)
    run.publish()
    assert run.job.progress.downloaded_bytes == 120
    on_progress(0, 100)  # the server's object changed: the file starts again from zero
    on_retry("HTTP 503", 1, 30.0)  # publishes
    assert run.job.progress.downloaded_bytes == 50
    assert run.job.files[0].progress.retry is not None
    on_status("verifying")
    assert run.job.files[0].status == "verifying"
    run.file_done(state, 100)
    assert run.job.files[0].status == "completed" and run.job.progress.downloaded_bytes == 150
    run.finish(planned.path)
    assert run.job.status == "completed" and run.job.done
    assert run.job.wait(0) == planned.path and run.job.completed_at is not None


def test_a_job_with_nothing_fetched_ends_already_downloaded(tmp_path: Path) -> None:
    run = new_run()
    plan = two_files(tmp_path)
    assert run.begin(plan, unpacked={tmp_path / "a.bin"}) == []
    run.finish(plan.primary)
    assert run.job.status == "already_downloaded"
    assert [f.status for f in run.job.files] == ["already_downloaded"] * 2


def test_files_in_flight_end_with_a_failed_job(tmp_path: Path) -> None:
    run = new_run()
    (_planned, state), *_ = run.begin(two_files(tmp_path), unpacked=set())
    state.status = Status.DOWNLOADING
    run.fail(OSError(28, "No space left on device"))
    job = run.job
    assert job.status == "failed" and [f.status for f in job.files] == [
        "failed",
        "already_downloaded",
    ]
    assert isinstance(job.error, NbmodelsError) and job.snapshot().error == str(job.error)
    with pytest.raises(NbmodelsError):
        job.wait(0)
    assert job.to_dict()["error"] == str(job.error)


def test_stop_requests_follow_the_documented_rules() -> None:
    run = new_run()
    assert run.request_resume() is False  # nothing to resume
    assert run.request_pause() is True
    assert run.request_pause() is False  # already asked
    assert run.request_resume() is True  # before the pause landed: straight back to the queue
    assert run.take_stop() == "pause"
    assert run.take_stop() is None  # taken: cleared
    assert run.request_cancel() is True and run.resume_event.is_set()
    assert run.request_cancel() is False
    run.request_shutdown()
    assert run.take_stop() == "shutdown"


@pytest.mark.usefixtures("no_front_end")
def test_a_jobs_controls_post_to_the_engine_until_it_ends(tmp_path: Path) -> None:
    posts = Posts()
    run = new_run(posts)
    job = run.job
    assert job.pause() and job.resume() and job.cancel()
    assert posts.calls == [("pause", "j1"), ("resume", "j1"), ("cancel", "j1")]
    run.finish(tmp_path / "m.bin")
    assert not job.pause() and not job.cancel() and not job.resume()
    assert len(posts.calls) == 3  # a finished job posts nothing
    assert job.retry() is job and posts.calls[-1] == ("resubmit", "j1")


def test_the_signed_source_stays_in_the_run() -> None:
    run = new_run()
    run.publish()
    shown = json.dumps([run.job.to_dict(), run.job.snapshot().to_dict(), repr(run.job)])
    assert "sig=secret" not in shown and run.submission.source == URL


# -- the one status enum ---------------------------------------------------------------------------


def test_the_statuses_are_the_documented_strings() -> None:
    assert [s.value for s in Status] == [
        "queued",
        "resolving",
        "downloading",
        "paused",
        "verifying",
        "extracting",
        "completed",
        "already_downloaded",
        "failed",
        "canceled",
        "interrupted",
    ]
    assert {"completed", "already_downloaded", "failed", "canceled"} == Status.TERMINAL
    assert Status.TERMINAL | {"interrupted"} == Status.ENDED
    assert set(Status) == Status.ACTIVE | Status.ENDED and not Status.ACTIVE & Status.ENDED


def test_statuses_stay_plain_strings_in_snapshots_json_and_the_registry(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("m.bin", payload(10_000))
    job = nbmodels.download(server.url("m.bin"), dir=tmp_path / "out", display=False)
    job.wait(30)
    (row,) = engine.registry.rows()
    statuses = [
        job.status,
        job.snapshot().status,
        job.to_dict()["status"],
        job.to_dict()["items"][0]["status"],
        job.files[0].status,
        row.status,
        row.files[0]["status"],
        nbmodels.history()[0].status,
    ]
    assert statuses == ["completed"] * len(statuses)
    assert {type(s) for s in statuses} == {str}  # not Status: a user's repr stays 'completed'
    assert json.loads(json.dumps(job.to_dict()))["status"] == "completed"


# -- the front-end hooks ---------------------------------------------------------------------------


def register(calls: list[tuple[Any, ...]], run: JobRun | None = None) -> None:
    def display(job: Any, explicit: bool = False) -> None:
        calls.append(("display", job, explicit))

    def waiter(job: Any, result: Any) -> Path:
        calls.append(("waiter", job))
        if run is not None:
            run.finish(Path("/done"))
        path: Path = result(None)
        return path

    _hooks.register_front_end(
        display=display,
        mimebundle=lambda job, **kw: {"text/plain": "widget"},
        waiter=waiter,
        panel=lambda: "panel",
        load_extension=lambda ip: None,
        unload_extension=lambda ip: None,
    )


@pytest.mark.usefixtures("no_front_end")
def test_show_hands_a_job_to_the_registered_front_end() -> None:
    calls: list[tuple[Any, ...]] = []
    job = object()
    _hooks.show(job, Options())  # nothing registered, and not in IPython: nothing to do
    register(calls)
    _hooks.show(job, Options())
    _hooks.show(job, Options(display=True))
    _hooks.show(job, Options(display=False))
    assert calls == [("display", job, False), ("display", job, True)]


@pytest.mark.usefixtures("no_front_end")
def test_a_job_waits_and_displays_through_the_registered_front_end() -> None:
    calls: list[tuple[Any, ...]] = []
    run = new_run()
    register(calls, run)
    assert run.job._repr_mimebundle_() == {"text/plain": "widget"}
    assert run.job.wait() == Path("/done")
    assert calls == [("waiter", run.job)]
    assert run.job.wait() == Path("/done") and len(calls) == 1  # done: a plain wait


def test_the_api_loads_the_notebook_layer_by_name_and_only_when_asked(
    server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("m.bin", b"abc")
    code = textwrap.dedent(
        f"""
        import sys, nbmodels
        from nbmodels.engine import _hooks
        job = nbmodels.download({server.url("m.bin")!r}, dir={str(tmp_path / "o")!r})
        job.wait(30)
        print("nbmodels.notebook" in sys.modules, _hooks.front_end() is not None)
        hooks = _hooks.load_front_end()
        import nbmodels.notebook as nb
        print(hooks.display is nb.auto_display, hooks.waiter is nb.wait_with_progress)
        """
    )
    env = {**os.environ, "NBMODELS_HOME": str(tmp_path / "home")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "True", "True"]


def _hold_lock(path: Path) -> subprocess.Popen[str]:
    """Another process holding the file lock at ``path`` until its stdin closes."""
    code = textwrap.dedent(
        f"""
        import sys, filelock
        with filelock.FileLock({str(path)!r}):
            print("held", flush=True)
            sys.stdin.read()
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


@pytest.mark.parametrize("hub_lock", [True, False], ids=["hub-cache-lock", "own-lock"])
def test_cancel_discards_partial_data_only_under_the_lock_the_transfer_took(
    tmp_path: Path, hub_lock: bool
) -> None:
    """Cancel removes partial data under the same lock a transfer of the file takes: for a Hub
    cache blob that is huggingface_hub's lock, not one beside the target, so the data of
    another process now fetching the file is left alone (it once took the other lock)."""
    from nbmodels.engine import discard_file, file_lock
    from nbmodels.transfer import partial_paths

    target = tmp_path / "blobs" / "m.bin"
    target.parent.mkdir()
    lock = tmp_path / ".locks" / "m.bin.lock" if hub_lock else None
    spec = FileSpec(name="m.bin", url=URL, target=target, key="k", lock_path=lock)
    data = partial_paths(target)[0]

    async def lock_path_taken() -> Path:
        async with file_lock(spec):
            pass
        taken = set(tmp_path.rglob("*.lock"))
        assert len(taken) == 1
        return taken.pop()

    held = asyncio.run(lock_path_taken())
    data.write_bytes(b"another process's partial data")
    proc = _hold_lock(held)
    try:
        assert discard_file(spec) is False
        assert data.read_bytes() == b"another process's partial data"
    finally:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        proc.wait(10)
        proc.stdout.close()
    assert discard_file(spec) is True
    assert not data.exists()
