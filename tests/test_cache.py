"""The cache on disk: scanning, safe removal, verification, and the pyproject manifest."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import filelock
import pytest

import nbmodels
from nbmodels._options import Options
from nbmodels.cache._remove import remove
from nbmodels.cache._scan import resolve_cached, scan_cache
from nbmodels.cache._verify import hash_file, hub_expectations, verify, verify_offline
from nbmodels.cli._manifest import load_manifest
from nbmodels.engine import _engine
from nbmodels.errors import NbmodelsError, NotFoundError
from nbmodels.hub import folder_repo, repo_folder
from nbmodels.testing import HubEmulator

GGUF = "nbm-test/Tiny-GGUF"
FOLDER = "models--nbm-test--Tiny-GGUF"


def cache() -> Path:
    return Path(os.environ["HF_HOME"]) / "hub"


def flip_byte(path: Path, offset: int = 100) -> None:
    path.chmod(0o644)
    with path.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.fixture
def two_revisions(engine: _engine.Engine, hub: HubEmulator) -> tuple[Path, Path]:
    """Q4_K_M at main and at dev: two snapshots whose entries share one blob."""
    main = nbmodels.resolve(f"{GGUF}:Q4_K_M")
    dev = nbmodels.resolve(f"{GGUF}:Q4_K_M#dev")
    assert main.resolve() == dev.resolve()
    return main, dev


# -- scanning -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("repo_type", "repo_id"),
    [("model", "org/name"), ("model", "gpt2"), ("dataset", "o/r.v2"), ("space", "a-b/c_d")],
)
def test_a_cache_folder_name_reads_back_as_its_repository(repo_type: str, repo_id: str) -> None:
    """One naming rule, both ways (the scan reads what downloads write)."""
    assert folder_repo(repo_folder(repo_type, repo_id)) == (repo_type, repo_id)
    for other in ("model--a--b", "models--a--b--c", "models--", "kernels--a--b", ".locks"):
        assert folder_repo(other) is None


def test_scan_lists_entries_with_their_refs_blob_and_size(
    two_revisions: tuple[Path, Path], hub: HubEmulator
) -> None:
    (repo,) = scan_cache()
    gguf = hub.repo(GGUF)
    assert (repo.repo_type, repo.repo_id) == ("model", GGUF)
    assert repo.refs == {"main": gguf.resolve("main"), "dev": gguf.resolve("dev")}
    assert sorted(f.refs for f in repo.files) == [("dev",), ("main",)]
    blobs = {f.blob for f in repo.files}
    assert len(blobs) == 1 and blobs == {two_revisions[0].resolve()}
    assert all(f.size == 98304 and f.last_used for f in repo.files)


# -- removal ------------------------------------------------------------------------------------


def test_removing_one_revision_keeps_the_blob_the_other_uses(
    two_revisions: tuple[Path, Path], hub: HubEmulator
) -> None:
    main, dev = two_revisions
    blob = main.resolve()
    root = cache() / FOLDER

    done = remove(f"{GGUF}:Q4_K_M#dev")

    assert blob.is_file() and main.resolve() == blob and main.read_bytes()[:4] == b"GGUF"
    assert not dev.parent.exists()
    assert not (root / "refs" / "dev").exists() and (root / "refs" / "main").is_file()
    assert done.blobs_kept == (blob.name,) and done.blobs_removed == ()
    assert done.refs_removed == ("dev",) and done.freed_bytes == 0

    done = remove(GGUF)

    assert not blob.exists() and not root.exists()
    assert done.blobs_removed == (blob.name,) and done.freed_bytes == 98304


def test_dry_run_changes_nothing(two_revisions: tuple[Path, Path]) -> None:
    before = sorted(p for p in cache().rglob("*"))
    done = remove(GGUF, dry_run=True)
    assert done.dry_run and done.freed_bytes == 98304 and len(done.files) == 2
    assert sorted(p for p in cache().rglob("*")) == before


def test_removal_never_follows_a_link_out_of_the_cache(
    engine: _engine.Engine, hub: HubEmulator, tmp_path: Path
) -> None:
    path = nbmodels.resolve(f"{GGUF}:Q4_K_M")
    outside = tmp_path / "precious.bin"
    outside.write_bytes(b"not yours")
    planted = path.parent / "planted.gguf"
    planted.symlink_to(outside)
    (path.parent / "sub").symlink_to(tmp_path, target_is_directory=True)

    (repo,) = scan_cache()
    (entry,) = [f for f in repo.files if f.file == "planted.gguf"]
    assert entry.outside and entry.blob is None

    remove(f"hf:{GGUF}/planted.gguf")
    assert not planted.is_symlink() and outside.read_bytes() == b"not yours"

    remove(GGUF)
    assert outside.read_bytes() == b"not yours" and tmp_path.is_dir()
    assert not (cache() / FOLDER).exists()


def test_an_uncached_revision_or_repo_is_not_found(two_revisions: tuple[Path, Path]) -> None:
    with pytest.raises(NotFoundError, match="not in the cache") as info:
        remove(f"{GGUF}#v1.0")
    assert "main" in info.value.candidates and "dev" in info.value.candidates
    with pytest.raises(NotFoundError, match="nbmodels ls"):
        remove("nbm-test/elsewhere")
    with pytest.raises(NotFoundError, match="plain URL"):
        remove("https://example.org/model.gguf")


def test_a_blob_being_downloaded_is_left_in_place(two_revisions: tuple[Path, Path]) -> None:
    blob = two_revisions[0].resolve()
    lock = filelock.FileLock(cache() / ".locks" / FOLDER / f"{blob.name}.lock")
    with lock:
        done = _remove_in_thread(GGUF)
    assert blob.is_file() and done.blobs_busy == (blob.name,)


def _remove_in_thread(ref: str) -> object:
    """filelock is re-entrant within a thread: try the removal from another one."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(remove, ref).result()


# -- verification -------------------------------------------------------------------------------


def test_offline_verify_catches_flipped_bytes_in_lfs_and_git_blobs(
    engine: _engine.Engine, hub: HubEmulator
) -> None:
    gguf = nbmodels.resolve(f"{GGUF}:Q4_K_M")
    config = nbmodels.resolve("hf:nbm-test/tiny-safetensors/config.json")
    checks = {c.file.file: c for c in verify_offline(f for r in scan_cache() for f in r.files)}
    assert {c.status for c in checks.values()} == {"ok"}
    assert checks["Tiny-Q4_K_M.gguf"].algorithm == "sha256"
    assert checks["config.json"].algorithm == "git-sha1"

    flip_byte(gguf.resolve())
    flip_byte(config.resolve(), offset=3)
    checks = {c.file.file: c for c in verify_offline(f for r in scan_cache() for f in r.files)}
    assert checks["Tiny-Q4_K_M.gguf"].status == "corrupt"
    assert checks["config.json"].status == "corrupt"
    assert checks["config.json"].actual == hash_file(config.resolve(), "git-sha1")


def test_verify_against_the_hub_digests(engine: _engine.Engine, hub: HubEmulator) -> None:
    path = nbmodels.resolve(f"{GGUF}:Q8_0")
    _repo, ref, files = resolve_cached(f"{GGUF}:Q8_0")
    expected = hub_expectations(ref, Options.create(), files)
    assert [c.status for c in verify(files, expected)] == ["ok", "ok", "ok"]

    flip_byte(path.resolve(), offset=5000)
    statuses = [c.status for c in verify(files, hub_expectations(ref, Options(), files))]
    assert statuses == ["corrupt", "ok", "ok"]


def test_a_copied_entry_is_unverifiable_offline_but_checked_against_the_hub(
    engine: _engine.Engine, hub: HubEmulator
) -> None:
    path = nbmodels.resolve(f"{GGUF}:Q4_K_M")
    blob = path.resolve()
    path.unlink()
    shutil.copyfile(blob, path)
    _repo, ref, files = resolve_cached(f"{GGUF}:Q4_K_M")
    assert [c.status for c in verify_offline(files)] == ["unverifiable"]
    assert [c.status for c in verify(files, hub_expectations(ref, Options(), files))] == ["ok"]


# -- the manifest -------------------------------------------------------------------------------


def test_manifest_entries_take_defaults_and_resolve_dirs(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        """
[project]
name = "demo"

[tool.nbmodels]
connections = 2
models = [
  "owner/repo:Q4_K_M",
  { ref = "owner/other", dir = "models", include = ["*.json"], connections = 4 },
]
"""
    )
    sub = tmp_path / "src" / "pkg"
    sub.mkdir(parents=True)
    manifest = load_manifest(sub)
    assert manifest.path == tmp_path / "pyproject.toml"
    first, second = manifest.entries
    assert (first.ref, dict(first.options)) == ("owner/repo:Q4_K_M", {"connections": 2})
    assert second.options == {
        "connections": 4,
        "dir": str(tmp_path / "models"),
        "include": ["*.json"],
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[tool.other]\nx = 1\n", "no \\[tool.nbmodels\\] models"),
        ("[tool.nbmodels]\nmodels = 'x'\n", "must be a list"),
        ("[tool.nbmodels]\nmodels = [1]\n", "models\\[0\\]"),
        ("[tool.nbmodels]\nmodels = [{ ref = 'a/b', token = 'x' }]\n", "unknown key\\(s\\) token"),
        ("[tool.nbmodels]\nmodels = [{ ref = 'a/b', connections = 0 }]\n", "connections"),
        ("[tool.nbmodels]\nmodels = [{ dir = 'x' }]\n", "ref must be"),
        ("[tool.nbmodels\n", "Cannot read"),
    ],
)
def test_manifest_errors_say_where_and_what(tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "pyproject.toml").write_text(body)
    with pytest.raises(NbmodelsError, match=message):
        load_manifest(tmp_path)
