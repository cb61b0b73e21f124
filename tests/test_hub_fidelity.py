"""What the real huggingface_hub and git see of nbmodels' files (issue 12, items 12 and 13)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import nbmodels
from nbmodels import _engine
from nbmodels._sources._hf_storage import CACHEDIR_TAG_CONTENT
from nbmodels.testing import HubEmulator, StandardRepos


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubEmulator]:
    with HubEmulator.with_standard_repos() as emulator:
        monkeypatch.setenv("HF_ENDPOINT", emulator.endpoint)
        yield emulator


@pytest.fixture
def ids(hub: HubEmulator) -> StandardRepos:
    assert hub.standard is not None
    return hub.standard


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
    hf_hub_download(ids.gguf, "config.json", local_dir=theirs, endpoint=hub.endpoint)
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
