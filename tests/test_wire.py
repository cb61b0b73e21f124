"""A job as the native API's JSON and back (``nbmodels.engine._wire``): what a kernel rebuilds
from its server's payloads reads, waits and raises like the server's own job. Pure logic: the
jobs are built from snapshots, no engine runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nbmodels import errors
from nbmodels._options import Options
from nbmodels._progress import FileProgress, JobSnapshot, Progress, RetryNotice
from nbmodels.engine import Job, JobFeed, JobState, job_payload, state_from_payload
from nbmodels.engine._wire import options_from_payload
from nbmodels.errors import NbmodelsError, Option


class NoControls:
    """Controls of a job nobody controls here."""

    def pause(self, job_id: str) -> bool:
        return False

    def resume(self, job_id: str) -> bool:
        return False

    def cancel(self, job_id: str) -> bool:
        return False

    def resubmit(self, job: Job) -> Job:
        return job


def _job(state: JobState, options: Options | None = None, read_only: bool = False) -> Job:
    snap = state.snapshot
    return Job(snap.job_id, snap.ref, options or Options(), JobFeed(state), NoControls(),
               read_only=read_only)  # fmt: skip


def _wire(job: Job) -> JobState:
    return state_from_payload(json.loads(json.dumps(job_payload(job))))


def _running() -> JobState:
    retry = RetryNotice("HTTP 503", 2, 3.5)
    files = (
        FileProgress("a.gguf", "downloading", Progress(10, 100, 5.0, 18.0, False, None), "/m/a"),
        FileProgress("b.gguf", "downloading", Progress(0, 50, 0.0, None, True, retry), "/m/b"),
        FileProgress("c.txt", "completed", Progress(7, 7), "/m/c"),
    )
    snap = JobSnapshot(
        "0123456789ab", "hf:o/r:Q4_K_M", "downloading", Progress(17, 157, 5.0, 28.0), files,
        path="/m/a", created_at=1_700_000_000.25, started_at=1_700_000_001.0,
    )  # fmt: skip
    return JobState(snap, Path("/m/a"), (Path("/m/a"), Path("/m/b"), Path("/m/c")))


def test_a_running_job_comes_back_with_each_files_speed_stall_and_retry() -> None:
    state = _running()
    back = _wire(_job(state))
    assert back.snapshot.files == state.snapshot.files
    assert back.snapshot.progress == state.snapshot.progress
    assert back.paths == state.paths and back.path == state.path
    assert back.snapshot.created_at == pytest.approx(1_700_000_000.25)
    assert back.snapshot.started_at == 1_700_000_001.0


def test_the_added_fields_leave_to_dict_as_it_was() -> None:
    job = _job(_running(), Options.create(dir="/m", metadata={"a": 1}))
    payload = job_payload(job)
    before = job.to_dict()
    before.pop("estimated_completion")  # computed from the clock at each call
    items = before.pop("items")
    assert {k: payload[k] for k in before} == before
    kept = [{k: got[k] for k in item} for got, item in zip(payload["items"], items, strict=True)]
    assert kept == items
    assert payload["done"] is False and payload["read_only"] is False
    assert payload["options"] == {"dir": "/m", "metadata": {"a": 1}}
    assert payload["items"][1]["retry"] == {"reason": "HTTP 503", "attempt": 2,
                                            "delay_seconds": 3.5}  # fmt: skip
    assert options_from_payload(payload) == Options.create(dir="/m", metadata={"a": 1})


ERRORS: list[NbmodelsError] = [
    errors.NotFoundError("No quant Q9 in o/r.", candidates=["Q4_K_M", "Q8_0"],
                         hint=("Pick one with ", Option("revision"), " or a quant.")),
    errors.RepoNotFoundError("Repository o/r was not found.", candidates=()),
    errors.AccessError("o/r is gated.", hint="Accept its terms on the Hub."),
    errors.IntegrityError("sha256 differs.", expected="aa", actual="bb"),
    errors.InsufficientSpaceError("Not enough space.", needed=10, available=3, path="/m",
                                  hint=("Choose another disk with ", Option("dir"), ".")),
    errors.ArchiveError("Unsafe member.", member="'../x'"),
    errors.OfflineError("Offline.", hint=("Drop ", Option("offline", switch=True), ".")),
    errors.CanceledError("Canceled."),
    NbmodelsError("Something else."),
]  # fmt: skip


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_an_error_comes_back_as_its_class_with_its_hint_and_attributes(
    error: NbmodelsError,
) -> None:
    state = _running()
    snap = state.snapshot
    failed = JobSnapshot(snap.job_id, snap.ref, "failed", snap.progress, snap.files,
                         error=str(error), error_type=type(error).__name__,
                         error_hint=error.hint)  # fmt: skip
    back = _wire(_job(JobState(failed, None, (), error))).error
    assert type(back) is type(error)
    assert str(back) == str(error) and back.render("flags") == error.render("flags")
    assert back.suggests == error.suggests
    for name in ("candidates", "expected", "actual", "needed", "available", "path", "member"):
        assert getattr(back, name, None) == getattr(error, name, None)


def test_an_unknown_error_type_or_an_older_server_still_gives_the_message() -> None:
    snap = _running().snapshot
    payload = job_payload(_job(JobState(snap, None, ())))
    payload.update(status="failed", error="Boom. Try again.", error_type="SystemExit",
                   error_detail=None)  # fmt: skip
    error = state_from_payload(payload).error
    assert type(error) is NbmodelsError and str(error) == "Boom. Try again."
    old: dict[str, Any] = {k: payload[k] for k in ("job_id", "ref", "status", "total_size_bytes",
                           "downloaded_bytes", "bytes_per_second", "started_at", "items",
                           "path", "error")}  # fmt: skip
    for item in old["items"]:
        for added in ("bytes_per_second", "eta_seconds", "stalled", "retry"):
            item.pop(added)
    state = state_from_payload(old)
    assert state.snapshot.status == "failed" and str(state.error) == "Boom. Try again."
    assert [f.progress.downloaded_bytes for f in state.snapshot.files] == [10, 0, 7]
    assert state.paths == (Path("/m/a"), Path("/m/b"), Path("/m/c"))
