"""What the real huggingface_hub and git see of nbmodels' files (issue 12, items 12 and 13)."""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import nbmodels
from nbmodels.engine import _engine
from nbmodels.hub import CACHEDIR_TAG_CONTENT
from nbmodels.testing import HubEmulator, StandardRepos


def _git(cwd: Path, *args: str) -> str:
    git = shutil.which("git")
    if git is None:
        pytest.skip("the git command is needed for this test")
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    result = subprocess.run(
        [git, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=60, check=True
    )
    return result.stdout


# -- item 13: dir= writes .cache/huggingface/.gitignore and CACHEDIR.TAG --------------------------


def test_dir_in_a_git_checkout_shows_only_the_model_files(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos, tmp_path: Path
) -> None:
    checkout = tmp_path / "project"
    checkout.mkdir()
    _git(checkout, "init", "-q")
    nbmodels.resolve(f"hf:{ids.gguf}:Q8_0", dir=checkout)  # three split parts
    nbmodels.resolve(f"hf:{ids.blobs}/nested/", dir=checkout)  # a folder
    status = _git(checkout, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert sorted(status) == sorted(
        [f"?? Tiny-Q8_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)] + ["?? nested/deep/file.txt"]
    )
    bookkeeping = checkout / ".cache" / "huggingface"
    assert (bookkeeping / ".gitignore").read_text() == "*"
    assert (bookkeeping / "CACHEDIR.TAG").read_text() == CACHEDIR_TAG_CONTENT


def test_bookkeeping_files_match_what_huggingface_hub_writes(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos, tmp_path: Path
) -> None:
    from huggingface_hub import _local_folder, hf_hub_download

    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    nbmodels.resolve(f"hf:{ids.gguf}/config.json", dir=ours)
    hf_hub_download(
        ids.gguf, "config.json", local_dir=theirs, endpoint=hub.endpoint, cache_dir=tmp_path / "c"
    )
    for name in (".gitignore", "CACHEDIR.TAG"):
        mine = (ours / ".cache" / "huggingface" / name).read_bytes()
        assert mine == (theirs / ".cache" / "huggingface" / name).read_bytes(), name
    assert getattr(_local_folder, "CACHEDIR_TAG_CONTENT", CACHEDIR_TAG_CONTENT) == (
        CACHEDIR_TAG_CONTENT
    )


def test_existing_gitignore_and_tag_are_left_alone(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos, tmp_path: Path
) -> None:
    bookkeeping = tmp_path / "d" / ".cache" / "huggingface"
    bookkeeping.mkdir(parents=True)
    (bookkeeping / ".gitignore").write_text("*\n!keep\n")
    nbmodels.resolve(f"hf:{ids.gguf}/config.json", dir=tmp_path / "d")
    assert (bookkeeping / ".gitignore").read_text() == "*\n!keep\n"


def test_cache_directory_is_tagged_as_huggingface_hub_tags_it(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    nbmodels.resolve(f"hf:{ids.gguf}/config.json")
    tag = Path(os.environ["HF_HOME"]) / "hub" / "CACHEDIR.TAG"
    assert tag.read_text() == CACHEDIR_TAG_CONTENT


# -- item 12: rm removes huggingface_hub 2.x's trees/<commit>.json -------------------------------


def _snapshot_download(hub: HubEmulator, repo_id: str, revision: str = "main") -> Path:
    """Download with the real huggingface_hub (2.x writes ``trees/<commit>.json``)."""
    from huggingface_hub import snapshot_download

    return Path(
        snapshot_download(repo_id, revision=revision, endpoint=hub.endpoint, cache_dir=_cache())
    )


def _cache() -> Path:
    return Path(os.environ["HF_HOME"]) / "hub"  # huggingface_hub read HF_HOME once, at import


def _scan_warnings() -> list[str]:
    from huggingface_hub import scan_cache_dir

    return [str(w) for w in scan_cache_dir(_cache()).warnings]


def test_rm_of_a_repo_huggingface_hub_downloaded_leaves_nothing(
    hub: HubEmulator, ids: StandardRepos
) -> None:
    from nbmodels.cli._main import main

    snapshot = _snapshot_download(hub, ids.safetensors)
    root = snapshot.parents[1]
    assert [p.name for p in (root / "trees").iterdir()] == [f"{snapshot.name}.json"]
    assert main(["rm", ids.safetensors]) == 0
    assert not root.exists()
    assert _scan_warnings() == []


def test_rm_of_one_revision_removes_only_its_tree_listing(
    hub: HubEmulator, ids: StandardRepos
) -> None:
    from nbmodels.cache._remove import remove

    main_snap = _snapshot_download(hub, ids.gguf)
    dev_snap = _snapshot_download(hub, ids.gguf, revision="dev")
    root = main_snap.parents[1]
    done = remove(f"{ids.gguf}#dev")
    assert done.snapshots_removed == (dev_snap.name,)
    assert sorted(p.name for p in (root / "trees").iterdir()) == [f"{main_snap.name}.json"]
    assert _scan_warnings() == []
    remove(ids.gguf)
    assert not root.exists()
    assert _scan_warnings() == []


def test_rm_dry_run_keeps_the_tree_listings(hub: HubEmulator, ids: StandardRepos) -> None:
    from nbmodels.cache._remove import remove

    snapshot = _snapshot_download(hub, ids.safetensors)
    remove(ids.safetensors, dry_run=True)
    assert (snapshot.parents[1] / "trees" / f"{snapshot.name}.json").is_file()


def test_rm_of_a_whole_repo_also_removes_stale_leftovers(
    hub: HubEmulator, ids: StandardRepos
) -> None:
    """Listings of commits without a snapshot, markers and partial data of an ended download
    would keep the folder alive without snapshots/ (a corrupt repo for scan_cache_dir)."""
    from nbmodels.cache._remove import remove

    snapshot = _snapshot_download(hub, ids.safetensors)
    root = snapshot.parents[1]
    (root / "trees" / ("f" * 40 + ".json")).write_text("{}")
    (root / ".no_exist" / ("e" * 40)).mkdir(parents=True)
    (root / "blobs" / (".%s.nbmodels.part" % ("a" * 64))).write_bytes(b"partial")
    remove(ids.safetensors)
    assert not root.exists()
    assert _scan_warnings() == []


def test_rm_leaves_a_repo_folder_whose_download_is_running(
    hub: HubEmulator, ids: StandardRepos
) -> None:
    import filelock

    from nbmodels.cache._remove import remove

    snapshot = _snapshot_download(hub, ids.safetensors)
    root = snapshot.parents[1]
    partial = root / "blobs" / (".%s.nbmodels.part" % ("a" * 64))
    partial.write_bytes(b"partial")
    lock = filelock.FileLock(_cache() / ".locks" / root.name / f"{'a' * 64}.lock")
    with lock, ThreadPoolExecutor(1) as pool:  # filelock is re-entrant within one thread
        pool.submit(remove, ids.safetensors).result()
    assert partial.read_bytes() == b"partial"
    assert not (root / "snapshots").exists()


# -- item 14: round trips for a gated or a missing file ------------------------------------------


def _hub_calls(hub: HubEmulator) -> list[tuple[str, str, int]]:
    return [(r.method, r.path, r.status) for r in hub.requests]


def test_a_gated_file_without_a_token_costs_one_request(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    with pytest.raises(nbmodels.AccessError) as info:
        nbmodels.resolve(f"hf:{ids.gated}/config.json")
    message = str(info.value)
    assert "is gated" in message and f"Open {hub.endpoint}/{ids.gated}, accept" in message
    assert "set HF_TOKEN" in message
    assert _hub_calls(hub) == [("GET", f"/api/models/{ids.gated}", 200)]  # huggingface_hub: 1


def test_a_missing_file_costs_one_request_and_names_candidates(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    with pytest.raises(nbmodels.NotFoundError) as info:
        nbmodels.resolve(f"hf:{ids.gguf}/Tiny-Q4_K_S.gguf")
    err = info.value
    assert err.candidates[0] == "Tiny-Q4_K_M.gguf"
    assert "Similar files: Tiny-Q4_K_M.gguf" in str(err)
    assert _hub_calls(hub) == [("GET", f"/api/models/{ids.gguf}", 200)]  # huggingface_hub: 1
    hub.clear_log()
    with pytest.raises(nbmodels.NotFoundError) as info:
        nbmodels.resolve(f"hf:{ids.gguf}:Q5_K_M")
    assert set(info.value.candidates) == {"F16", "Q4_K_M", "Q8_0"}
    assert len(_hub_calls(hub)) == 1


def test_a_gated_repo_already_on_disk_needs_no_token(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    """The early refusal only happens when something must be downloaded."""
    nbmodels.resolve(ids.gated, token=ids.token)
    job = nbmodels.download(ids.gated)  # not pinned: the Hub is asked, the files are there
    job.wait(30)
    assert job.status == "already_downloaded"


def test_without_a_usable_file_list_the_listing_decides(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    """Very large repositories (the Hub may truncate their siblings): the tree or paths-info
    listing answers, and a gated repository is still refused before any content request."""
    hub.add_repo("big/gated", {"config.json": "{}\n"}, gated=True, info={"siblings": []})
    hub.add_repo("big/open", {"a/config.json": "{}\n"}, info={"siblings": []})
    with pytest.raises(nbmodels.AccessError, match="is gated"):
        nbmodels.resolve("hf:big/gated/config.json")
    calls = [c[1] for c in _hub_calls(hub)]
    assert calls[0] == "/api/models/big/gated" and calls[1].startswith("/api/models/big/gated/")
    assert len(calls) == 2  # no content request
    hub.clear_log()
    with pytest.raises(nbmodels.NotFoundError):
        nbmodels.resolve("hf:big/open/config.json")
    assert len(_hub_calls(hub)) == 2
    assert nbmodels.resolve("hf:big/open/a/config.json").read_text() == "{}\n"
