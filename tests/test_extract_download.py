"""``extract=True`` / ``remove_archive=True`` end to end: generated archives served by the fault
server and the Hub emulator, fetched through ``nbmodels.download``, the CLI and the magic."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import nbmodels
from nbmodels import ArchiveError
from nbmodels.archives import MARKER, read_marker
from nbmodels.engine import _engine
from nbmodels.testing import HubEmulator, HubFile
from tests.conftest import payload
from tests.faultserver import FaultServer
from tests.test_download import Recorder, wait_for

ROOT = Path(__file__).resolve().parents[1]
FILES = {"model/weights.bin": payload(700_000), "model/config.json": b'{"layers": 2}'}


def zip_bytes(files: dict[str, bytes] = FILES) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def tgz_bytes(files: dict[str, bytes] = FILES) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def bomb_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("readme.txt", b"a small file first")
        with zf.open("zeros.bin", "w") as f:
            for _ in range(64):
                f.write(bytes(1 << 20))
    return buf.getvalue()


def files_in(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in folder.rglob("*")
        if p.is_file() and p.name != MARKER
    }


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "out"


# -- plain URLs ----------------------------------------------------------------------------------


def test_extract_returns_the_folder_and_the_job_shows_extracting(
    engine: _engine.Engine, server: FaultServer, out: Path
) -> None:
    data = zip_bytes()
    server.add_file("model.zip", data)
    job = nbmodels.download(server.url("model.zip"), dir=out, extract=True)
    rec = Recorder()
    job.subscribe(rec)
    folder = job.wait(30)
    assert folder == out.resolve() / "model" and folder.is_dir()
    assert files_in(folder) == FILES
    assert job.status == "completed" and job.path == folder
    assert job.paths == [out.resolve() / "model.zip"]  # the archive is kept
    assert (out / "model.zip").read_bytes() == data
    assert rec.statuses()[-2:] == ["extracting", "completed"]
    extracting = [s for s in rec.snaps if s.status == "extracting"]
    assert any(f.status == "extracting" for s in extracting for f in s.files)
    assert job.to_dict()["path"] == str(folder)
    assert names(out) == [".nbmodels", "model", "model.zip"]  # no hidden folder left
    record = read_marker(folder)
    assert record is not None and record["origin"].startswith("url:http://127.0.0.1:")


def test_no_secret_of_a_signed_url_reaches_the_folder_or_the_error(
    engine: _engine.Engine, server: FaultServer, out: Path
) -> None:
    server.add_file("model.zip", zip_bytes())
    server.add_file("bomb.zip", bomb_bytes())
    secret = "X-Amz-Signature=s3cr3t-token"
    folder = nbmodels.download(server.url("model.zip", query=secret), dir=out, extract=True)
    marker = (folder.wait(30) / MARKER).read_text()
    assert "s3cr3t" not in marker and "model.zip" in marker
    bomb = nbmodels.download(server.url("bomb.zip", query=secret), dir=out, extract=True)
    with pytest.raises(ArchiveError) as err:
        bomb.wait(30)
    shown = [str(err.value), repr(bomb), str(bomb.to_dict()), str(bomb.snapshot().to_dict())]
    assert not any("s3cr3t" in text for text in shown)


def test_a_rerun_of_an_extracted_download_does_no_work(
    engine: _engine.Engine, server: FaultServer, out: Path
) -> None:
    server.add_file("model.tar.gz", tgz_bytes())
    first = nbmodels.download(server.url("model.tar.gz"), dir=out, extract=True).wait(30)
    (first / "sentinel").write_text("would vanish if the folder were rebuilt")
    requests = len(server.log)
    job = nbmodels.download(server.url("model.tar.gz"), dir=out, extract=True)
    assert job.wait(30) == first
    assert job.status == "already_downloaded"
    assert len(server.log) == requests  # not a single request
    assert (first / "sentinel").exists()


def test_remove_archive_keeps_only_the_folder_and_a_rerun_fetches_nothing(
    engine: _engine.Engine, server: FaultServer, out: Path
) -> None:
    data = zip_bytes()
    sha = hashlib.sha256(data).hexdigest()
    server.add_file("model.zip", data)
    url = server.url("model.zip")
    job = nbmodels.download(url, dir=out, extract=True, remove_archive=True, sha256=sha)
    folder = job.wait(30)
    assert files_in(folder) == FILES
    assert not (out / "model.zip").exists()
    assert job.paths == [folder]
    assert read_marker(folder)["sha256"] == sha  # type: ignore[index]
    requests = len(server.log)
    again = nbmodels.download(url, dir=out, extract=True, remove_archive=True, sha256=sha)
    assert again.wait(30) == folder and again.status == "already_downloaded"
    assert len(server.log) == requests
    # Offline too (a restarted kernel with HF_HUB_OFFLINE=1): the folder, not "not on disk".
    offline = nbmodels.download(
        url, dir=out, extract=True, remove_archive=True, sha256=sha, offline=True
    )
    assert offline.wait(30) == folder and offline.status == "already_downloaded"
    assert len(server.log) == requests
    # Asked for without remove_archive, the archive is fetched again (and the folder, from the
    # same bytes, is kept as it is).
    kept = nbmodels.download(url, dir=out, extract=True, sha256=sha)
    assert kept.wait(30) == folder and (out / "model.zip").read_bytes() == data


def test_a_zip_bomb_over_http_fails_and_leaves_only_the_verified_archive(
    engine: _engine.Engine, server: FaultServer, out: Path
) -> None:
    data = bomb_bytes()
    sha = hashlib.sha256(data).hexdigest()
    server.add_file("bomb.zip", data)
    job = nbmodels.download(server.url("bomb.zip"), dir=out, extract=True, sha256=sha)
    with pytest.raises(ArchiveError, match="expands more than 200 times") as err:
        job.wait(30)
    assert "zeros.bin" in str(err.value) and "zip bomb" in str(err.value)
    assert job.status == "failed" and isinstance(job.error, ArchiveError)
    assert job.files[0].status == "completed"  # the download itself was fine
    assert (out / "bomb.zip").read_bytes() == data
    assert names(out) == [".nbmodels", "bomb.zip"]
    assert job.snapshot().error_type == "ArchiveError"


def test_content_that_is_no_archive_fails_clearly_and_keeps_the_file(
    engine: _engine.Engine, server: FaultServer, out: Path
) -> None:
    data = b"GGUF" + payload(5000)
    server.add_file("model.gguf", data)
    job = nbmodels.download(server.url("model.gguf"), dir=out, extract=True)
    with pytest.raises(ArchiveError, match="holds a GGUF model file") as err:
        job.wait(30)
    assert err.value.hint == "Download it without extract."
    assert (out / "model.gguf").read_bytes() == data
    assert names(out) == [".nbmodels", "model.gguf"]


@contextlib.contextmanager
def unpacking_held(archive: Path) -> Iterator[None]:
    """Hold the advisory lock an extraction takes on its archive, as another process
    unpacking it would: the job's extraction waits inside its worker until released."""
    with archive.open("rb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        yield


def _extracting(job: nbmodels.Job) -> bool:
    return job.status == "extracting" and job.files[0].status == "extracting"


def test_pause_during_extraction_leaves_nothing_and_resume_finishes(
    engine: _engine.Engine, server: FaultServer, out: Path
) -> None:
    server.add_file("model.zip", zip_bytes())
    url = server.url("model.zip")
    archive = nbmodels.download(url, dir=out).wait(30)
    with unpacking_held(archive):
        job = nbmodels.download(url, dir=out, extract=True)
        wait_for(lambda: _extracting(job), what="the extraction to start")
        assert job.pause()
        wait_for(lambda: job.status == "paused", what="the pause")
        assert names(out) == [".nbmodels", "model.zip"]  # no folder, no hidden folder
    assert job.resume()
    folder = job.wait(30)
    assert files_in(folder) == FILES and job.status == "already_downloaded"
    assert names(out) == [".nbmodels", "model", "model.zip"]


def test_cancel_during_extraction_leaves_nothing_half_done(
    engine: _engine.Engine, server: FaultServer, out: Path
) -> None:
    data = tgz_bytes()
    server.add_file("model.tgz", data)
    url = server.url("model.tgz")
    archive = nbmodels.download(url, dir=out).wait(30)
    with unpacking_held(archive):
        job = nbmodels.download(url, dir=out, extract=True)
        wait_for(lambda: _extracting(job), what="the extraction to start")
        assert job.cancel()
        with pytest.raises(nbmodels.CanceledError):
            job.wait(30)
    assert job.status == "canceled"
    assert names(out) == [".nbmodels", "model.tgz"]  # no folder, no hidden folder
    assert archive.read_bytes() == data  # complete and verified: not partial data to discard


def test_option_rules(engine: _engine.Engine, server: FaultServer, out: Path) -> None:
    with pytest.raises(ValueError, match="needs extract=True"):
        nbmodels.download(server.url("x.zip"), dir=out, remove_archive=True)
    with pytest.raises(ValueError, match="cannot delete a file from the Hugging Face cache"):
        nbmodels.download("owner/repo model.zip", extract=True, remove_archive=True)
    with pytest.raises(TypeError, match="extract"):
        nbmodels.download(server.url("x.zip"), dir=out, extrct=True)


# -- Hugging Face files --------------------------------------------------------------------------


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubEmulator]:
    with HubEmulator() as emulator:
        emulator.add_repo(
            "org/packed",
            {
                "weights.tar.gz": HubFile(tgz_bytes(), lfs=True),
                "small.zip": zip_bytes({"a.txt": b"a"}),
                "README.md": "# packed\n",
            },
        )
        monkeypatch.setenv("HF_ENDPOINT", emulator.endpoint)
        yield emulator


def test_a_hub_archive_unpacks_outside_the_snapshot(
    engine: _engine.Engine, hub: HubEmulator
) -> None:
    job = nbmodels.download("org/packed weights.tar.gz", extract=True)
    folder = job.wait(30)
    assert files_in(folder) == FILES
    cache = Path(os.environ["HF_HOME"]) / "hub" / "models--org--packed"
    commit = hub.repo("org/packed").sha
    assert folder == cache / "extracted" / commit / "weights"
    snapshot = cache / "snapshots" / commit
    assert names(snapshot) == ["weights.tar.gz"]  # huggingface_hub's view is unchanged
    assert read_marker(folder)["sha256"] == hub.repo("org/packed").file("weights.tar.gz").sha256  # type: ignore[index]
    requests = len(hub.requests)
    again = nbmodels.download("org/packed weights.tar.gz", extract=True, revision=commit)
    assert again.wait(30) == folder and again.status == "already_downloaded"
    assert len(hub.requests) == requests


def test_a_hub_archive_in_a_local_dir_can_be_removed_after_unpacking(
    engine: _engine.Engine, hub: HubEmulator, tmp_path: Path
) -> None:
    target = tmp_path / "models"
    opts = {"dir": target, "extract": True, "remove_archive": True}
    folder = nbmodels.download("org/packed small.zip", **opts).wait(30)
    assert folder == target / "small" and files_in(folder) == {"a.txt": b"a"}
    assert not (target / "small.zip").exists()
    before = [r for r in hub.requests if "/resolve/" in r.path or "/files/" in r.path]
    again = nbmodels.download("org/packed small.zip", **opts)
    assert again.wait(30) == folder and again.status == "already_downloaded"
    after = [r for r in hub.requests if "/resolve/" in r.path or "/files/" in r.path]
    assert [r for r in after if r.method == "GET"] == [r for r in before if r.method == "GET"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbmodels", *args],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip


def test_ls_shows_a_hub_archives_folder_and_rm_removes_it_with_the_archive(
    engine: _engine.Engine, hub: HubEmulator
) -> None:
    """The folder a Hub archive was unpacked into (``extracted/<commit>/...``) is on disk
    because of that file: ``nbmodels ls`` shows it (and counts its bytes), ``rm`` of the file,
    or of the repository, removes it with the archive and says so."""
    weights = nbmodels.download("org/packed weights.tar.gz", extract=True).wait(30)
    small = nbmodels.download("org/packed small.zip", extract=True).wait(30)
    unpacked = sum(len(b) for b in FILES.values())
    listing = json.loads(_cli("ls", "--json").stdout)
    by_file = {f["file"]: f for f in listing["files"]}
    assert by_file["weights.tar.gz"]["unpacked"] == {"path": str(weights), "size_bytes": unpacked}
    assert by_file["small.zip"]["unpacked"] == {"path": str(small), "size_bytes": 1}
    archives = sum(f["size_bytes"] for f in listing["files"])
    assert listing["total_size_bytes"] == archives + unpacked + 1
    rows = _cli("ls").stdout
    assert "weights.tar.gz -> weights/" in rows and "small.zip -> small/" in rows

    dry = json.loads(_cli("rm", "org/packed/weights.tar.gz", "--dry-run", "--json").stdout)
    assert dry["unpacked_removed"] == [str(weights)] and weights.is_dir()
    size = by_file["weights.tar.gz"]["size_bytes"]
    assert dry["freed_bytes"] == size + unpacked
    done = _cli("rm", "org/packed/weights.tar.gz")
    assert done.returncode == 0, done.stderr
    assert "weights.tar.gz  (and the folder it was unpacked into)" in done.stdout
    assert not weights.exists() and small.is_dir()
    cache = Path(os.environ["HF_HOME"]) / "hub"
    from huggingface_hub import scan_cache_dir

    assert scan_cache_dir(cache).warnings == []  # huggingface_hub reads the cache as consistent

    assert _cli("rm", "org/packed").returncode == 0
    assert not (cache / "models--org--packed").exists()  # nothing of the repo is left


# -- the command line and the magic --------------------------------------------------------------


def test_cli_pull_extract_prints_the_folder(server: FaultServer, tmp_path: Path) -> None:
    server.add_file("model.zip", zip_bytes())
    done = subprocess.run(
        [sys.executable, "-m", "nbmodels", "pull", server.url("model.zip"), "--dir",
         str(tmp_path / "o"), "--extract", "--remove-archive"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any("extracting" in line for line in lines), done.stdout
    folder = Path(lines[-1])
    assert folder == (tmp_path / "o" / "model").resolve() and files_in(folder) == FILES
    assert not (tmp_path / "o" / "model.zip").exists()


def test_cli_pull_extract_of_a_bomb_exits_1_with_one_line(
    server: FaultServer, tmp_path: Path
) -> None:
    server.add_file("bomb.zip", bomb_bytes())
    done = subprocess.run(
        [sys.executable, "-m", "nbmodels", "pull", server.url("bomb.zip"), "--dir",
         str(tmp_path / "o"), "--extract", "-q"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "zip bomb" in done.stderr
    assert names(tmp_path / "o") == [".nbmodels", "bomb.zip"]


def test_magic_extract_returns_the_folder(
    engine: _engine.Engine,
    server: FaultServer,
    out: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("IPython")
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("NBMODELS_WIDGETS", "0")
    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    shell.run_line_magic("load_ext", "nbmodels")
    try:
        server.add_file("model.tar.gz", tgz_bytes())
        path = shell.run_line_magic(
            "model_download", f"{server.url('model.tar.gz')} --dir {out} --extract -q"
        )
        assert path == out / "model" and files_in(path) == FILES
    finally:
        shell.run_line_magic("unload_ext", "nbmodels")


def test_extracting_is_a_running_status_for_every_front_end() -> None:
    from nbmodels._progress import JobSnapshot, Progress, Status
    from nbmodels.notebook._state import allowed_actions, job_state

    assert "extracting" in Status.ACTIVE  # an extracting job of a dead process: interrupted
    assert allowed_actions("extracting") == ["pause", "cancel"]
    snap = JobSnapshot("j", "https://h/m.zip", "extracting", Progress(10, 10))
    state = job_state(snap)
    assert state["active"] and state["status_label"] == "extracting"
