"""A sha256 the user gives is checked for Hub references too (issue 12, item 1;
docs/download-contract.md, rule 3): through the real Hub emulator, the API, the CLI and the
magic."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import nbmodels
from nbmodels.engine import _engine
from nbmodels.errors import IntegrityError, RefError
from nbmodels.testing import HubEmulator, StandardRepos

ROOT = Path(__file__).resolve().parents[1]
WRONG = "1" * 64


def sha(hub: HubEmulator, repo: str, path: str) -> str:
    return hashlib.sha256(hub.repo(repo).file(path).read()).hexdigest()


def repo_root(repo: str) -> Path:
    return Path(os.environ["HF_HOME"]) / "hub" / f"models--{repo.replace('/', '--')}"


def published(repo: str) -> list[str]:
    """Every file in the repo's snapshots and blobs (what a failed job must not leave)."""
    root = repo_root(repo)
    return sorted(
        p.relative_to(root).as_posix()
        for sub in ("snapshots", "blobs")
        for p in (root / sub).rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )


def content_requests(hub: HubEmulator) -> list[str]:
    return [r.path for r in hub.requests if r.origin == "cdn" or "/resolve/" in r.path]


# -- LFS files: the Hub's own sha256 decides before a byte moves --------------------------------


@pytest.mark.parametrize("ref", ["hf:{gguf}:Q4_K_M", "hf:{gguf}/Tiny-Q4_K_M.gguf", "{gguf}"])
def test_lfs_file_whose_hub_sha256_differs_fails_before_any_transfer(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos, ref: str
) -> None:
    job = nbmodels.download(ref.format(gguf=ids.gguf), sha256=WRONG)
    with pytest.raises(IntegrityError) as info:
        job.wait(30)
    err = info.value
    assert (err.expected, err.actual) == (WRONG, sha(hub, ids.gguf, "Tiny-Q4_K_M.gguf"))
    assert "Tiny-Q4_K_M.gguf" in str(err) and WRONG in str(err) and err.hint
    assert job.status == "failed"
    assert content_requests(hub) == []
    assert published(ids.gguf) == []


def test_lfs_file_with_the_right_sha256_downloads(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    good = sha(hub, ids.gguf, "Tiny-Q4_K_M.gguf")
    path = nbmodels.resolve(f"hf:{ids.gguf}:Q4_K_M", sha256=f"sha256:{good.upper()}")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == good


# -- small git files: the transfer hashes the bytes ---------------------------------------------


def test_git_file_with_another_sha256_is_not_published(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    job = nbmodels.download(f"hf:{ids.gguf}/config.json", sha256=WRONG)
    with pytest.raises(IntegrityError) as info:
        job.wait(30)
    assert info.value.expected == WRONG
    assert info.value.actual == sha(hub, ids.gguf, "config.json")
    assert published(ids.gguf) == []
    good = sha(hub, ids.gguf, "config.json")
    path = nbmodels.resolve(f"hf:{ids.gguf}/config.json", sha256=good)
    assert path.read_bytes() == hub.repo(ids.gguf).file("config.json").read()


# -- which file the digest is for ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "count"),
    [("hf:{gguf}:Q8_0", 3), ("hf:{safetensors}", 7), ("hf:{gguf}/Tiny-F16/", 2)],
)
def test_a_reference_meaning_several_files_is_refused_before_any_transfer(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos, ref: str, count: int
) -> None:
    text = ref.format(gguf=ids.gguf, safetensors=ids.safetensors)
    job = nbmodels.download(text, sha256=WRONG)
    with pytest.raises(RefError) as info:
        job.wait(30)
    message = str(info.value)
    assert f"sha256 applies to one file, but hf:{text[3:]} means {count} files" in message
    assert "Name the file the digest belongs to, e.g. hf:" in message
    assert isinstance(info.value, ValueError)
    assert content_requests(hub) == []


def test_a_named_split_part_takes_the_digest_and_its_siblings_the_hubs(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    part2 = "Tiny-Q8_0-00002-of-00003.gguf"
    job = nbmodels.download(f"hf:{ids.gguf}/{part2}", sha256=sha(hub, ids.gguf, part2))
    job.wait(30)
    assert [p.name for p in job.paths] == [f"Tiny-Q8_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    part1 = sha(hub, ids.gguf, "Tiny-Q8_0-00001-of-00003.gguf")
    with pytest.raises(IntegrityError, match=part2):
        nbmodels.resolve(f"hf:{ids.gguf}/{part2}", sha256=part1, force=True)


def test_a_folder_or_filter_selecting_one_file_takes_the_digest(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    good = sha(hub, ids.blobs, "nested/deep/file.txt")
    assert nbmodels.resolve(f"hf:{ids.blobs}/nested/", sha256=good).name == "nested"
    with pytest.raises(IntegrityError):
        nbmodels.resolve(f"hf:{ids.blobs}", include="nested/*", sha256=WRONG)


# -- files already on disk ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["config.json", "Tiny-Q4_K_M.gguf"])
@pytest.mark.parametrize("offline", [False, True])
def test_a_cached_file_with_another_digest_is_an_error_with_no_request(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos, path: str, offline: bool
) -> None:
    ref = f"hf:{ids.gguf}/{path}"
    nbmodels.resolve(ref)
    hub.clear_log()
    job = nbmodels.download(ref, sha256=WRONG, offline=offline)
    with pytest.raises(IntegrityError) as info:
        job.wait(30)
    assert info.value.actual == sha(hub, ids.gguf, path)
    assert "on disk" in str(info.value)
    assert job.status == "failed" and hub.requests == []
    again = nbmodels.download(ref, sha256=sha(hub, ids.gguf, path), offline=offline)
    again.wait(30)
    assert again.status == "already_downloaded" and hub.requests == []


def test_a_cached_git_file_is_hashed_not_trusted_by_its_name(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    """A git blob is named by its SHA-1: the user's sha256 needs the bytes hashed."""
    path = nbmodels.resolve(f"hf:{ids.gguf}/config.json")
    blob = path.resolve()
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes().replace(b"Tiny", b"Tank"))  # same size, other bytes
    good = sha(hub, ids.gguf, "config.json")
    with pytest.raises(IntegrityError) as info:
        nbmodels.resolve(f"hf:{ids.gguf}/config.json", sha256=good, offline=True)
    assert info.value.actual == hashlib.sha256(blob.read_bytes()).hexdigest()


@pytest.mark.parametrize("path", ["config.json", "Tiny-Q4_K_M.gguf"])
def test_dir_mode_checks_the_file_on_disk_too(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos, tmp_path: Path, path: str
) -> None:
    ref = f"hf:{ids.gguf}/{path}"
    nbmodels.resolve(ref, dir=tmp_path)
    hub.clear_log()
    with pytest.raises(IntegrityError):
        nbmodels.resolve(ref, dir=tmp_path, sha256=WRONG)
    assert hub.requests == []
    assert nbmodels.resolve(ref, dir=tmp_path, sha256=sha(hub, ids.gguf, path)).is_file()


def test_a_cached_file_reached_online_is_checked_too(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    """Not pinned (the repository's default quant): the Hub is asked, the file is on disk."""
    nbmodels.resolve(ids.safetensors)
    hub.clear_log()
    with pytest.raises(IntegrityError, match="on disk"):
        nbmodels.resolve(ids.safetensors, include="config.json", sha256=WRONG)
    assert content_requests(hub) == []


# -- front ends: the CLI's exit status and the magic's one line -----------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbmodels", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_cli_pull_with_a_wrong_sha256_exits_1_and_publishes_nothing(
    hub: HubEmulator, ids: StandardRepos
) -> None:
    done = cli("pull", "--sha256", WRONG, f"hf:{ids.gguf}:Q4_K_M")
    assert done.returncode == 1, done.stdout
    assert "sha256" in done.stderr and WRONG in done.stderr
    assert published(ids.gguf) == []
    good = sha(hub, ids.gguf, "config.json")
    done = cli("pull", "--sha256", good, f"hf:{ids.gguf}/config.json")
    assert done.returncode == 0, done.stderr
    assert published(ids.gguf)


@pytest.fixture
def ip(engine: _engine.Engine, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[object]:
    pytest.importorskip("IPython")
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    monkeypatch.setenv("NBMODELS_WIDGETS", "0")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    shell.run_line_magic("load_ext", "nbmodels")
    yield shell
    shell.run_line_magic("unload_ext", "nbmodels")


def test_magic_with_a_wrong_sha256_prints_one_line_and_publishes_nothing(
    ip: object, hub: HubEmulator, ids: StandardRepos, capsys: pytest.CaptureFixture[str]
) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    assert isinstance(ip, InteractiveShell)
    ref = f"hf:{ids.gguf}/config.json"
    assert ip.run_line_magic("model_download", f"--sha256 {WRONG} {ref}") is None
    err = capsys.readouterr().err
    assert err.startswith("IntegrityError: ") and err.count("\n") == 1
    assert published(ids.gguf) == []
    path = ip.run_line_magic(
        "model_download", f"{ref} --sha256 {sha(hub, ids.gguf, 'config.json')}"
    )
    assert path.name == "config.json"
