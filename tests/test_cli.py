"""The ``nbmodels`` command, run as a real subprocess against the Hub emulator."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import nbmodels
from nbmodels._progress import FileProgress, JobSnapshot, Progress
from nbmodels.cli._progress import BarView, PlainView, make_view
from nbmodels.engine import _engine
from nbmodels.testing import HubEmulator

ROOT = Path(__file__).resolve().parents[1]
GGUF = "nbm-test/Tiny-GGUF"


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``python -m nbmodels ARGS`` with this test's environment (HF_HOME, NBMODELS_HOME,
    HF_ENDPOINT); stdout is a pipe, so never a terminal."""
    return subprocess.run(
        [sys.executable, "-m", "nbmodels", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        cwd=cwd,
        timeout=60,
        check=False,
    )


def cli_json(*args: str, cwd: Path = ROOT) -> dict[str, Any]:
    done = cli(*args, "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["version"] == 1
    return data


def cache() -> Path:
    return Path(os.environ["HF_HOME"]) / "hub"


def assert_types(obj: dict[str, Any], schema: dict[str, Any]) -> None:
    """Every key of ``schema`` is present with a value of one of its types (and no others)."""
    assert set(obj) == set(schema), set(obj) ^ set(schema)
    for key, types in schema.items():
        assert isinstance(obj[key], types), (key, obj[key])


OPT_STR = (str, type(None))
OPT_INT = (int, type(None))


# -- pull ---------------------------------------------------------------------------------------


def test_pull_without_a_terminal_prints_status_lines_then_the_path(hub: HubEmulator) -> None:
    done = cli("pull", f"{GGUF}:Q8_0")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "\x1b[" not in done.stdout and "\r" not in done.stdout
    assert lines[0].startswith(f"{GGUF}:Q8_0 · ")  # its status when the view started
    for part in (1, 2, 3):
        assert (
            f"  Tiny-Q8_0-0000{part}-of-00003.gguf: completed · 32.8 kB / 32.8 kB · 100%" in lines
        )
    assert f"{GGUF}:Q8_0 · completed · 98.3 kB / 98.3 kB · 100%" in lines
    path = Path(lines[-1])
    assert path.name == "Tiny-Q8_0-00001-of-00003.gguf" and path.is_file()
    assert path.is_relative_to(cache())
    assert done.stderr == ""


def test_pull_failure_exits_1_with_a_one_line_message(hub: HubEmulator) -> None:
    """(An invalid reference is bad input, exit 2: tests/test_cli_errors.py.)"""
    done = cli("pull", f"{GGUF}:Q3_K_S", f"{GGUF}:Q4_K_M", "-q")
    assert done.returncode == 1
    errors = done.stderr.splitlines()
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith("nbmodels: error: ")
    assert "no Q3_K_S quant" in errors[0] and "Q4_K_M" in errors[0]
    assert done.stdout.strip().endswith("Tiny-Q4_K_M.gguf")  # the good one still lands


def test_a_malformed_command_line_exits_2(hub: HubEmulator) -> None:
    done = cli("pull", "--connections", "many", GGUF)
    assert done.returncode == 2 and "--connections" in done.stderr
    assert cli("frobnicate").returncode == 2
    assert cli("pull", "--help").returncode == 0


def test_manifest_pull_then_a_second_pull_sends_no_request(
    hub: HubEmulator, tmp_path: Path
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        f"""
[project]
name = "needs-models"

[tool.nbmodels]
models = [
    "{GGUF}:Q4_K_M",
    {{ ref = "hf:nbm-test/tiny-safetensors/config.json", dir = "models" }},
]
"""
    )
    work = tmp_path / "notebooks"
    work.mkdir()
    first = cli("pull", cwd=work)
    assert first.returncode == 0, first.stderr
    assert f"2 model(s) listed in {tmp_path / 'pyproject.toml'}" in first.stdout
    assert (tmp_path / "models" / "config.json").is_file()
    assert first.stdout.splitlines()[-2].endswith("Tiny-Q4_K_M.gguf")

    hub.clear_log()
    again = cli("pull", "-q", cwd=work)
    assert again.returncode == 0, again.stderr
    assert hub.requests == []
    assert again.stdout.splitlines() == first.stdout.splitlines()[-2:]


def test_pull_with_no_reference_and_no_manifest_explains_what_to_do(tmp_path: Path) -> None:
    done = cli("pull", cwd=tmp_path)
    assert done.returncode == 1
    assert "no pyproject.toml" in done.stderr and "[tool.nbmodels]" in done.stderr


# -- jobs, ls -----------------------------------------------------------------------------------

JOB_SCHEMA = {
    "job_id": str,
    "ref": str,
    "status": str,
    "total_size_bytes": OPT_INT,
    "downloaded_bytes": int,
    "bytes_per_second": (int, float),
    "estimated_completion": OPT_STR,
    "started_at": OPT_STR,
    "completed_at": OPT_STR,
    "created_at": OPT_STR,
    "path": OPT_STR,
    "items": list,
    "error": OPT_STR,
    "options": dict,
}
FILE_SCHEMA = {
    "location": str,
    "repo": str,
    "repo_type": OPT_STR,
    "file": str,
    "quant": OPT_STR,
    "size_bytes": OPT_INT,
    "revisions": list,
    "commit": OPT_STR,
    "last_used": OPT_STR,
    "path": str,
    "blob": OPT_STR,
    "unpacked": (dict, type(None)),  # the folder an archive was unpacked into, and its bytes
}


def test_jobs_and_ls_json_schemas(engine: _engine.Engine, hub: HubEmulator, tmp_path: Path) -> None:
    nbmodels.resolve(f"{GGUF}:Q4_K_M")
    nbmodels.resolve("hf:nbm-test/tiny-safetensors/config.json", dir=tmp_path / "local")
    with pytest.raises(nbmodels.NotFoundError):
        nbmodels.resolve(f"{GGUF}:Q3_K_S")

    jobs = cli_json("jobs")["jobs"]
    assert [j["status"] for j in jobs] == ["failed", "completed", "completed"]
    for job in jobs:
        assert_types(job, JOB_SCHEMA)
    assert "Q3_K_S" in jobs[0]["error"] and jobs[1]["options"] == {"dir": str(tmp_path / "local")}
    header = cli("jobs").stdout.splitlines()[0].split()
    assert header == ["ID", "STATUS", "JOB", "SIZE", "WHEN", "ERROR"]

    listing = cli_json("ls")
    assert set(listing) == {"version", "cache_dir", "total_size_bytes", "files"}
    assert listing["cache_dir"] == str(cache())
    files = listing["files"]
    for f in files:
        assert_types(f, FILE_SCHEMA)
    by_location = {f["location"]: f for f in files}
    cached, local = by_location["cache"], by_location["local"]
    assert (cached["repo"], cached["file"], cached["quant"]) == (GGUF, "Tiny-Q4_K_M.gguf", "Q4_K_M")
    assert cached["revisions"] == ["main"] and cached["commit"] == hub.repo(GGUF).sha
    assert cached["size_bytes"] == 98304 and len(cached["blob"]) == 64
    assert local["path"] == str(tmp_path / "local" / "config.json")
    assert (local["repo"], local["commit"]) == ("nbm-test/tiny-safetensors", hub.repo(
        "nbm-test/tiny-safetensors").sha)  # fmt: skip
    assert listing["total_size_bytes"] == 98304 + local["size_bytes"]
    text = cli("ls", "tiny").stdout
    assert "Tiny-Q4_K_M.gguf" in text and "Downloaded elsewhere" in text


# -- rm, verify ---------------------------------------------------------------------------------


def test_rm_keeps_a_blob_another_revision_still_uses(
    engine: _engine.Engine, hub: HubEmulator
) -> None:
    main = nbmodels.resolve(f"{GGUF}:Q4_K_M")
    dev = nbmodels.resolve(f"{GGUF}:Q4_K_M#dev")
    blob = main.resolve()

    done = cli("rm", f"{GGUF}:Q4_K_M", "--revision", "dev")
    assert done.returncode == 0, done.stderr
    assert "Kept 1 blob still used by another revision." in done.stdout
    assert blob.is_file() and main.resolve() == blob and not dev.exists()

    removed = cli_json("rm", GGUF)
    assert removed["blobs_removed"] == [blob.name] and removed["freed_bytes"] == 98304
    assert not blob.exists() and not (cache() / "models--nbm-test--Tiny-GGUF").exists()
    assert cli("rm", GGUF).returncode == 1


def test_verify_catches_a_flipped_byte(engine: _engine.Engine, hub: HubEmulator) -> None:
    path = nbmodels.resolve(f"{GGUF}:Q4_K_M")
    nbmodels.resolve("hf:nbm-test/tiny-safetensors/config.json")
    assert cli("verify").returncode == 0

    blob = path.resolve()
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[1000] ^= 0x01
    blob.write_bytes(bytes(data))

    offline = cli("verify")
    assert offline.returncode == 1
    assert any(
        line.startswith("CORRUPT") and "Tiny-Q4_K_M.gguf" in line
        for line in offline.stdout.splitlines()
    )
    assert "1 corrupt file(s)" in offline.stderr

    online = cli("verify", f"{GGUF}:Q4_K_M", "--json")
    assert online.returncode == 1
    report = json.loads(online.stdout)
    assert report["ok"] is False and report["counts"] == {"ok": 0, "corrupt": 1, "unverifiable": 0}
    (check,) = report["files"]
    assert_types(
        check,
        {
            "repo": str,
            "repo_type": str,
            "commit": str,
            "file": str,
            "path": str,
            "size_bytes": OPT_INT,
            "status": str,
            "algorithm": OPT_STR,
            "expected": OPT_STR,
            "actual": OPT_STR,
            "detail": OPT_STR,
        },
    )
    assert (check["status"], check["algorithm"]) == ("corrupt", "sha256")
    assert check["expected"] == hub.repo(GGUF).file("Tiny-Q4_K_M.gguf").sha256
    assert check["actual"] != check["expected"]


# -- inspect ------------------------------------------------------------------------------------


def test_inspect_json_schema_and_text(hub: HubEmulator) -> None:
    model = cli_json("inspect", f"{GGUF}:Q8_0", "--context", "1024")["model"]
    assert_types(
        model,
        {
            "ref": str,
            "format": str,
            "files": list,
            "total_size_bytes": int,
            "parameters": int,
            "tensor_count": int,
            "architecture": OPT_STR,
            "name": OPT_STR,
            "file_type": OPT_STR,
            "context_length": OPT_INT,
            "embedding_length": OPT_INT,
            "layers": OPT_INT,
            "heads": OPT_INT,
            "kv_heads": OPT_INT,
            "chat_template": (bool, type(None)),
            "dtypes": dict,
            "commit": OPT_STR,
            "local": bool,
            "bytes_read": int,
            "summary": str,
            "memory": dict,
        },
    )
    assert model["file_type"] == "Q8_0" and model["tensor_count"] == 9 and len(model["files"]) == 3
    assert model["memory"]["context"] == 1024 and model["memory"]["verdict"] in (
        "fits",
        "tight",
        "does not fit",
        "unknown",
    )
    text = cli("inspect", f"{GGUF}:Q4_K_M")
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[1].startswith("  llama · 3.3K params · Q4_K_M · ctx 4096 · ")
    missing = cli("inspect", f"{GGUF}:Q3_K_S")
    assert missing.returncode == 1 and missing.stderr.startswith("nbmodels: error: ")


def test_the_command_never_imports_notebook_libraries(hub: HubEmulator) -> None:
    code = (
        "import sys; from nbmodels.__main__ import main; main(['ls']); main(['jobs']); "
        "main(['inspect', 'nbm-test/Tiny-GGUF:Q4_K_M']); "
        "bad = {'IPython', 'ipywidgets', 'anywidget', 'traitlets'} & set(sys.modules); "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


# -- the progress views (pure: fake jobs) ----------------------------------------------------


@dataclass
class FakeJob:
    snap: JobSnapshot
    done: bool = False
    callback: Callable[[JobSnapshot], None] | None = None

    def snapshot(self) -> JobSnapshot:
        return self.snap

    def subscribe(self, callback: Callable[[JobSnapshot], None]) -> Callable[[], None]:
        self.callback = callback
        return lambda: None


def snap(status: str, files: list[FileProgress]) -> JobSnapshot:
    total = sum(f.progress.total_bytes or 0 for f in files)
    got = sum(f.progress.downloaded_bytes for f in files)
    return JobSnapshot("j1", "hf:o/r:Q4_K_M", status, Progress(got, total, 1e6, 5.0), tuple(files))


def fp(name: str, status: str, got: int, total: int = 10_000_000) -> FileProgress:
    return FileProgress(
        name, status, Progress(got, total, 2e6 if status == "downloading" else 0, 3)
    )


def test_plain_view_prints_changes_and_a_line_every_few_seconds() -> None:
    now = [0.0]
    out = io.StringIO()
    job = FakeJob(snap("downloading", [fp("a.gguf", "downloading", 1_000_000)]))
    view = PlainView([job], out, every=5.0, clock=lambda: now[0])  # type: ignore[list-item]
    view.update()
    now[0] = 1.0
    view.update()  # nothing changed, not due
    now[0] = 6.0
    job.snap = snap("downloading", [fp("a.gguf", "downloading", 6_000_000)])
    view.update()
    job.snap = snap("completed", [fp("a.gguf", "completed", 10_000_000)])
    view.close()
    assert out.getvalue().splitlines() == [
        "  a.gguf: downloading · 1.0 MB / 10.0 MB · 10% · 2.0 MB/s · ETA 0:03",
        "hf:o/r:Q4_K_M · downloading · 1.0 MB / 10.0 MB · 10% · 1.0 MB/s · ETA 0:05",
        "  a.gguf: downloading · 6.0 MB / 10.0 MB · 60% · 2.0 MB/s · ETA 0:03",
        "  a.gguf: completed · 10.0 MB / 10.0 MB · 100%",
        "hf:o/r:Q4_K_M · completed · 10.0 MB / 10.0 MB · 100%",
    ]


def test_plain_view_prints_a_status_shorter_than_a_redraw() -> None:
    out = io.StringIO()
    job = FakeJob(snap("queued", []))
    view = PlainView([job], out)  # type: ignore[list-item]
    assert job.callback is not None
    job.callback(snap("resolving", []))  # between two redraws, from the engine's thread
    job.snap = snap("downloading", [fp("a.gguf", "downloading", 0)])
    view.close()
    assert [line.split(" · ")[1] for line in out.getvalue().splitlines() if "r:Q4" in line] == [
        "resolving",
        "downloading",
    ]


def test_bar_view_redraws_in_place_within_the_screen() -> None:
    out = io.StringIO()
    files = [fp(f"part-{i}.gguf", "completed", 10_000_000) for i in range(30)]
    files.append(fp("a-very-long-file-name-" * 3 + "Q4_K_M.gguf", "downloading", 2_500_000))
    job = FakeJob(snap("downloading", files))
    view = BarView([job], out, size=lambda: (80, 10))  # type: ignore[list-item]
    view.update()
    first = out.getvalue()
    view.update()
    second = out.getvalue()[len(first) :]
    rows = [r.removeprefix("\x1b[2K") for r in first.split("\n")[:-1]]
    assert len(rows) == 9 and all(len(r) <= 79 for r in rows)
    assert rows[1].startswith("  …") and "█████░░░░░░░░░░░░░░░  2.5 MB / 10.0 MB · 25%" in rows[1]
    assert rows[-1] == "  … 24 more files (24 done)"  # 1 job row + 7 file rows + this
    assert second.startswith("\x1b[9F")  # back to the first row, then the same rows again


def test_view_choice_follows_the_stream() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert isinstance(make_view([], Tty()), BarView)
    assert isinstance(make_view([], io.StringIO()), PlainView)
    assert not isinstance(make_view([], Tty(), quiet=True), (BarView, PlainView))
