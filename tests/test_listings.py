"""Listings of jobs (issue 12, item 9): ``nbmodels jobs`` and ``%model_panel`` in a terminal show
the newest few (``--all`` for every job), label a job the same way everywhere, and say in one
short column why a job failed; ``--json`` keeps everything.

Jobs are made for real (the engine against the fault server and the Hub emulator, recorded in
this test's SQLite registry); the CLI and terminal IPython then read that registry as
subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import nbmodels
from nbmodels._present import REASON_WIDTH, cut, job_label, newest, older_line, reason
from nbmodels._progress import JobSnapshot, Progress
from nbmodels.engine import _engine
from nbmodels.notebook._state import job_state
from nbmodels.notebook._text import panel_text
from nbmodels.testing import HubEmulator
from tests.conftest import payload
from tests.faultserver import Fault, FaultServer

ROOT = Path(__file__).resolve().parents[1]
GGUF = "nbm-test/Tiny-GGUF"
#: A missing file whose 404 message is longer than the ERROR column.
LONG = "a-file-name-long-enough-that-the-reason-is-cut-" + "x" * 40 + ".bin"


def run(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), "NBMODELS_WIDGETS": "0"},
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run("-m", "nbmodels", *args)


@pytest.fixture
def thirteen(engine: _engine.Engine, server: FaultServer, tmp_path: Path) -> list[nbmodels.Job]:
    """13 finished jobs, newest first: 10 completed, then 3 that failed (404), oldest."""
    for i in range(3):
        name = LONG if i == 0 else f"missing-{i}.bin"
        job = nbmodels.download(server.url(name), dir=tmp_path / "out", display=False)
        with pytest.raises(nbmodels.NotFoundError):
            job.wait(30)
    for i in range(10):
        server.add_file(f"m{i}.bin", payload(1000, seed=i))
        nbmodels.download(server.url(f"m{i}.bin"), dir=tmp_path / "out", display=False).wait(30)
    jobs = nbmodels.history()
    assert len(jobs) == 13
    return jobs


# -- nbmodels jobs -------------------------------------------------------------------------------


def test_jobs_shows_the_newest_ten_then_says_how_many_are_older(
    thirteen: list[nbmodels.Job],
) -> None:
    done = cli("jobs")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "JOB", "SIZE", "WHEN"]  # no failure among them
    assert [line.split()[0] for line in lines[1:11]] == [j.id for j in thirteen[:10]]
    assert lines[11:] == ["… and 3 older jobs (--all to show)"]


def test_jobs_all_and_limit(thirteen: list[nbmodels.Job]) -> None:
    every = cli("jobs", "--all").stdout.splitlines()
    assert [line.split()[0] for line in every[1:]] == [j.id for j in thirteen]
    two = cli("jobs", "--limit", "2").stdout.splitlines()
    assert len(two) == 4 and two[-1] == "… and 11 older jobs (--all to show)"
    assert cli("jobs", "--limit", "0").stdout == cli("jobs", "--all").stdout
    bad = cli("jobs", "--limit", "-1")
    assert bad.returncode == 2 and "must be 0 or more" in bad.stderr


def test_jobs_say_why_a_job_failed_in_one_short_column(thirteen: list[nbmodels.Job]) -> None:
    lines = cli("jobs", "--all").stdout.splitlines()
    assert lines[0].split() == ["ID", "STATUS", "JOB", "SIZE", "WHEN", "ERROR"]
    start = lines[0].index("ERROR")
    errors = {line.split()[0]: line[start:] for line in lines[1:]}
    failed = [j for j in thirteen if j.status == "failed"]
    assert len(failed) == 3
    for job in failed:
        shown = errors[job.id]
        assert shown == reason(job.snapshot()) and len(shown) <= REASON_WIDTH
        assert shown.startswith("http://127.0.0.1:") and "Check the URL" not in shown  # no hint
    cut_one = errors[failed[-1].id]  # the oldest: the long file name
    assert cut_one.endswith("…") and len(cut_one) == REASON_WIDTH
    assert all(errors[j.id] == "-" for j in thirteen if j.status == "completed")


def test_history_limit_reads_only_the_newest_jobs(thirteen: list[nbmodels.Job]) -> None:
    """What the panel asks for every two seconds: the newest few, not every job ever run."""
    assert [j.id for j in nbmodels.history(4)] == [j.id for j in thirteen[:4]]
    assert [j.id for j in nbmodels.history(100)] == [j.id for j in thirteen]
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="limit must be a whole number of jobs"):
            nbmodels.history(bad)  # type: ignore[arg-type]


def test_jobs_json_keeps_every_job_and_the_whole_message(thirteen: list[nbmodels.Job]) -> None:
    done = cli("jobs", "--json")
    data = json.loads(done.stdout)
    assert [j["job_id"] for j in data["jobs"]] == [j.id for j in thirteen]
    oldest = data["jobs"][-1]
    assert LONG in oldest["error"] and oldest["error"].endswith(
        "Check the URL (or the repository, revision and file name)."
    )
    assert len(json.loads(cli("jobs", "--json", "-n", "3").stdout)["jobs"]) == 3


def test_jobs_size_says_what_a_job_that_did_not_finish_has_of_its_size(
    engine: _engine.Engine, server: FaultServer, tmp_path: Path
) -> None:
    """A job that failed after 1 MB of 3 MB is not listed as a 3 MB job, as a completed one is;
    one that failed before any size was known shows none."""
    server.add_file("done.bin", payload(3_000_000))
    nbmodels.download(server.url("done.bin"), dir=tmp_path / "out", display=False).wait(30)
    server.add_file("cut.bin", payload(3_000_000, seed=2))
    server.add_fault("cut.bin", Fault.drop(after=1_000_000))
    server.add_fault("cut.bin", Fault.hang_up(), times=-1)
    cut_job = nbmodels.download(server.url("cut.bin"), dir=tmp_path / "out", display=False)
    with pytest.raises(nbmodels.NetworkError):
        cut_job.wait(60)
    gone = nbmodels.download(server.url("gone.bin"), dir=tmp_path / "out", display=False)
    with pytest.raises(nbmodels.NbmodelsError):
        gone.wait(30)
    lines = cli("jobs").stdout.splitlines()
    start, end = lines[0].index("SIZE"), lines[0].index("WHEN")
    sizes = {line.split()[2]: line[start:end].strip() for line in lines[1:]}
    assert sizes == {"done.bin": "3.0 MB", "cut.bin": "1.0 MB of 3.0 MB", "gone.bin": "-"}


# -- %model_panel in a terminal ------------------------------------------------------------------


def test_model_panel_in_terminal_ipython_lists_the_newest_ten(
    thirteen: list[nbmodels.Job],
) -> None:
    done = run(
        "-m", "IPython", "--simple-prompt", "--quick", "--no-banner", "--colors=NoColor",
        stdin="%load_ext nbmodels\n%model_panel\n%model_panel --all\n%model_panel -n x\nexit\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    cells = done.stdout.split("In [")
    first = cells[2].split(": ", 1)[1].splitlines()
    assert [line.split(" — ")[0] for line in first[:10]] == [f"m{i}.bin" for i in range(9, -1, -1)]
    assert first[10] == "… and 3 older jobs (%model_panel --all to show)"
    every = [line for line in cells[3].split(": ", 1)[1].splitlines() if line]
    assert len(every) == 13 and every[-1].startswith(f"{LONG[:20]}")
    assert every[-1].split(" — ", 1)[1].startswith("failed: http://127.0.0.1:")
    assert every[-1].endswith("…")
    assert done.stderr.strip() == "%model_panel: argument -n/--limit: invalid int value: 'x'"


# -- one label for a job, everywhere ------------------------------------------------------------


def test_a_job_has_one_label_whatever_its_state_and_front_end(
    engine: _engine.Engine, hub: HubEmulator
) -> None:
    """A Hub reference is labelled by the reference, not by its file once it is known."""
    missing = nbmodels.download(f"{GGUF}:Q3_K_S", display=False)  # fails before any file
    with pytest.raises(nbmodels.NotFoundError):
        missing.wait(30)
    ok = nbmodels.download(f"{GGUF}:Q4_K_M", display=False)
    ok.wait(30)
    assert [f.name for f in ok.snapshot().files] == ["Tiny-Q4_K_M.gguf"]
    jobs = nbmodels.history()
    text = panel_text(jobs).splitlines()
    listed = cli("jobs").stdout.splitlines()[1:]
    for job, panel_line, row in zip(jobs, text, listed, strict=True):
        label = job.ref
        assert job_state(job.snapshot())["name"] == label  # the widgets
        assert panel_line.startswith(f"{label} — ")  # %model_panel as text
        assert row.split()[2] == label  # nbmodels jobs
    assert text[0].startswith(f"{GGUF}:Q4_K_M — completed")


def test_listing_helpers() -> None:
    assert job_label("https://h.test/models/tiny%20q4.gguf?sig=secret") == "tiny q4.gguf"
    assert job_label("https://h.test/") == "https://h.test/"
    assert job_label("hf:owner/repo:Q4_K_M") == "hf:owner/repo:Q4_K_M"
    assert cut("a  b\nc", 10) == "a b c" and cut("abcdefghijk", 6) == "abcde…"
    assert newest([1, 2, 3], 2) == ([1, 2], 1) and newest([1, 2], None) == ([1, 2], 0)
    assert older_line(1) == "… and 1 older job (--all to show)"
    snap = JobSnapshot(
        "j", "r", "failed", Progress(), error="Fact here. Do this.", error_hint="Do this."
    )
    assert reason(snap) == "Fact here." and reason(snap, None) == "Fact here."
    assert reason(JobSnapshot("j", "r", "completed", Progress())) == ""
