"""Repositories without an owner (``gpt2``, the emulator's ``tiny-legacy``): parsing, download,
the cache, and what huggingface_hub reads of them (issue 12, item 11)."""

from __future__ import annotations

import json
import os
import string
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nbmodels
from nbmodels.engine import _engine
from nbmodels.errors import RefError, RepoNotFoundError
from nbmodels.refs import ModelRef, parse_ref
from nbmodels.testing import HubEmulator, StandardRepos

ROOT = Path(__file__).resolve().parents[1]
LEGACY = "tiny-legacy"


def hf(repo_id: str, **kwargs: object) -> ModelRef:
    return ModelRef("hf", repo_id, **kwargs)  # type: ignore[arg-type]


# -- parsing (pure) -------------------------------------------------------------------------------

UNAMBIGUOUS: list[tuple[str, ModelRef]] = [
    ("hf:gpt2", hf("gpt2")),
    ("HF:gpt2/", hf("gpt2")),
    ("hf:gpt2#v1", hf("gpt2", revision="v1")),
    ("hf:gpt2:Q4_K_M#v1", hf("gpt2", quant="Q4_K_M", revision="v1")),
    ("hf:datasets/squad", hf("squad", repo_type="dataset")),
    ("hf:gpt2 config.json", hf("gpt2", path="config.json")),
    ("hf:gpt2 onnx/", hf("gpt2", path="onnx", is_dir=True)),
    ("hf:gpt2#v1 onnx/model.onnx", hf("gpt2", path="onnx/model.onnx", revision="v1")),
    (
        "hf:datasets/squad plain/train.json",
        hf("squad", repo_type="dataset", path="plain/train.json"),
    ),
    (
        "https://huggingface.co/gpt2/resolve/main/config.json?download=true",
        hf("gpt2", revision="main", path="config.json"),
    ),
    ("https://hf.co/gpt2/blob/v1/a/b.txt", hf("gpt2", revision="v1", path="a/b.txt")),
    ("huggingface.co/gpt2/tree/main", hf("gpt2", revision="main")),
    (
        "https://huggingface.co/gpt2/tree/main/onnx",
        hf("gpt2", revision="main", path="onnx", is_dir=True),
    ),
    (
        "https://huggingface.co/gpt2/resolve/refs%2Fpr%2F3/x.bin",
        hf("gpt2", revision="refs/pr/3", path="x.bin"),
    ),
    (
        "https://huggingface.co/datasets/squad/resolve/main/plain/t.json",
        hf("squad", repo_type="dataset", revision="main", path="plain/t.json"),
    ),
]


@pytest.mark.parametrize(("text", "expected"), UNAMBIGUOUS, ids=[t for t, _ in UNAMBIGUOUS])
def test_unambiguous_forms_of_a_repository_without_owner(text: str, expected: ModelRef) -> None:
    ref = parse_ref(text, endpoint="")
    assert ref == expected
    assert ref.alternative is None and ref.readings == (ref,)
    again = parse_ref(str(ref), endpoint="")
    assert again == ref and again.alternative is None


def test_page_urls_on_the_custom_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:8123")
    ref = parse_ref("http://127.0.0.1:8123/tiny-legacy/resolve/main/config.json")
    assert ref == hf("tiny-legacy", revision="main", path="config.json")
    # still a plain URL when no route word follows the first segment
    assert parse_ref("http://127.0.0.1:8123/files/a/b.bin").kind == "url"


AMBIGUOUS: list[tuple[str, ModelRef, ModelRef]] = [
    ("hf:gpt2/config.json", hf("gpt2/config.json"), hf("gpt2", path="config.json")),
    ("gpt2/config.json", hf("gpt2/config.json"), hf("gpt2", path="config.json")),
    ("hf:gpt2/onnx/", hf("gpt2/onnx"), hf("gpt2", path="onnx", is_dir=True)),
    (
        "hf:gpt2/onnx/model.onnx#v1",
        hf("gpt2/onnx", path="model.onnx", revision="v1"),
        hf("gpt2", path="onnx/model.onnx", revision="v1"),
    ),
    (
        "owner/repo model.gguf",
        hf("owner/repo", path="model.gguf"),
        hf("owner", path="repo/model.gguf"),
    ),
    (
        "hf:datasets/squad/plain",
        hf("squad/plain", repo_type="dataset"),
        hf("squad", repo_type="dataset", path="plain"),
    ),
    ("hf://gpt2/config.json", hf("gpt2/config.json"), hf("gpt2", path="config.json")),
]


@pytest.mark.parametrize(
    ("text", "primary", "alternative"), AMBIGUOUS, ids=[t for t, _, _ in AMBIGUOUS]
)
def test_owner_repo_text_also_reads_as_a_file_of_a_repository_without_owner(
    text: str, primary: ModelRef, alternative: ModelRef
) -> None:
    ref = parse_ref(text, endpoint="")
    assert ref == primary  # owner/repo first, as huggingface_hub's HfFileSystem
    assert ref.alternative == alternative
    assert ref.readings == (primary, alternative)
    assert parse_ref(str(ref), endpoint="").alternative is not None
    assert parse_ref(str(alternative), endpoint="") == alternative


@pytest.mark.parametrize(
    "text",
    ["hf:owner/repo:Q4_K_M", "https://huggingface.co/owner/repo/blob/main/x.gguf"],
)
def test_quants_and_page_urls_have_one_reading(text: str) -> None:
    assert parse_ref(text, endpoint="").alternative is None


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("gpt2", "a repository without an owner is written hf:gpt2"),
        ("datasets/squad", "written hf:datasets/squad"),
        ("gpt2 config.json", "a repository without an owner is written hf:gpt2"),
        ("hf:models", "names a repository type"),
        ("hf:datasets/", "repository name is empty"),
        ("hf:gpt2.git", ".git"),
        ("hf:-gpt2", "must not start or end"),
    ],
)
def test_bare_names_and_bad_names_are_ref_errors(text: str, fragment: str) -> None:
    with pytest.raises(RefError) as info:
        parse_ref(text, endpoint="")
    assert fragment in info.value.fact


def test_an_alternative_is_only_a_repository_without_owner() -> None:
    with pytest.raises(RefError, match="without an owner"):
        ModelRef("hf", "a/b", alternative=hf("c/d", path="x"))
    with pytest.raises(RefError, match="no alternative of its own"):
        ModelRef("hf", "a/b", alternative=hf("a", path="b", alternative=hf("a", path="c")))


_NAME = st.text(string.ascii_letters + string.digits + "_", min_size=1, max_size=8)
_PATH = st.lists(
    st.text(string.ascii_letters + string.digits + "_.-@%", min_size=1, max_size=8).filter(
        lambda seg: seg not in {".", ".."}
    ),
    min_size=1,
    max_size=3,
).map("/".join)


@settings(max_examples=200, deadline=None)
@given(
    _NAME.filter(lambda n: n not in {"models", "datasets", "spaces", "kernels", "buckets"}),
    st.sampled_from(["model", "dataset", "space"]),
    st.none() | _PATH,
    st.booleans(),
    st.none() | st.sampled_from(["main", "v1.0", "refs/pr/1", "feature/x"]),
)
def test_repositories_without_owner_round_trip(
    name: str, repo_type: str, path: str | None, is_dir: bool, revision: str | None
) -> None:
    ref = hf(name, repo_type=repo_type, path=path, is_dir=is_dir and path is not None,
             revision=revision)  # fmt: skip
    again = parse_ref(str(ref), endpoint="")
    assert again == ref and again.alternative is None


# -- end to end against the emulator's tiny-legacy -----------------------------------------------


@pytest.fixture
def ids(ids: StandardRepos) -> StandardRepos:
    assert ids.legacy == LEGACY
    return ids


def cache() -> Path:
    return Path(os.environ["HF_HOME"]) / "hub"


def hub_calls(hub: HubEmulator) -> list[tuple[str, str, int]]:
    return [(r.method, r.path, r.status) for r in hub.requests if r.origin == "hub"]


def test_a_file_of_tiny_legacy_lands_in_its_cache_folder(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    commit = hub.repo(LEGACY).sha
    path = nbmodels.resolve(f"hf:{LEGACY}/config.json")
    assert path == cache() / "models--tiny-legacy" / "snapshots" / commit / "config.json"
    assert path.read_bytes() == hub.repo(LEGACY).file("config.json").read()
    calls = hub_calls(hub)
    # owner/repo first (unknown: one request), then the repository without an owner
    assert calls[:2] == [
        ("GET", "/api/models/tiny-legacy/config.json", 401),
        ("GET", "/api/models/tiny-legacy", 200),
    ]
    hub.clear_log()
    again = nbmodels.download(f"hf:{LEGACY}/config.json")
    again.wait(30)
    assert again.status == "already_downloaded" and hub.requests == []  # the cache decides


@pytest.mark.parametrize(
    "ref",
    [
        "{endpoint}/tiny-legacy/resolve/main/config.json",
        "{endpoint}/tiny-legacy/blob/main/config.json",
        "hf:tiny-legacy config.json",
        "tiny-legacy/config.json",
    ],
)
def test_every_file_form_reaches_the_hf_cache(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos, ref: str
) -> None:
    path = nbmodels.resolve(ref.format(endpoint=hub.endpoint))
    assert path.is_relative_to(cache() / "models--tiny-legacy")
    assert not (Path(os.environ["NBMODELS_HOME"]) / "downloads").exists()  # not a plain URL


def test_the_whole_repository_and_a_folder_url(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    job = nbmodels.download(f"hf:{LEGACY}")
    snapshot = job.wait(30)
    assert sorted(p.name for p in job.paths) == ["README.md", "config.json"]
    assert snapshot == cache() / "models--tiny-legacy" / "snapshots" / hub.repo(LEGACY).sha
    assert nbmodels.resolve(f"{hub.endpoint}/tiny-legacy/tree/main") == snapshot


def test_huggingface_hub_reads_what_nbmodels_wrote_offline(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    ours = nbmodels.resolve(f"hf:{LEGACY}/config.json")
    snapshot = nbmodels.resolve(f"hf:{LEGACY}")
    hub.clear_log()
    code = f"""
        from huggingface_hub import hf_hub_download, snapshot_download
        print(hf_hub_download({LEGACY!r}, "config.json", local_files_only=True))
        print(snapshot_download({LEGACY!r}, local_files_only=True))
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, env=env, timeout=120, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(ours), str(snapshot)]
    assert hub.requests == []


def test_an_existing_owner_repo_wins_over_the_repository_without_owner(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    hub.add_repo("tiny-legacy/config.json", {"weights.bin": b"owner/repo wins\n"})
    job = nbmodels.download(f"hf:{LEGACY}/config.json")
    job.wait(30)
    assert [p.name for p in job.paths] == ["weights.bin"]
    assert [c[1] for c in hub_calls(hub)][:1] == ["/api/models/tiny-legacy/config.json"]
    nbmodels.resolve(f"hf:{LEGACY} config.json")  # the other reading, cached too
    hub.clear_log()
    again = nbmodels.download(f"hf:{LEGACY}/config.json", offline=True)  # the cache decides
    again.wait(30)
    assert [p.name for p in again.paths] == ["weights.bin"] and hub.requests == []


def test_when_neither_reading_exists_the_error_names_both(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    with pytest.raises(RepoNotFoundError) as info:
        nbmodels.resolve("hf:no-such-repo/config.json")
    fact = info.value.fact
    assert "Neither repository no-such-repo/config.json nor no-such-repo (with config.json)" in fact
    assert len(hub_calls(hub)) == 2, hub_calls(hub)


def test_a_missing_file_of_a_repository_without_owner_lists_candidates(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    with pytest.raises(nbmodels.NotFoundError) as info:
        nbmodels.resolve(f"hf:{LEGACY} confg.json")
    assert "config.json" in info.value.candidates
    assert len(hub_calls(hub)) == 1


def test_rm_verify_and_ls_take_a_repository_without_owner(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    from nbmodels.cli._main import main

    nbmodels.resolve(f"hf:{LEGACY}")
    out = Path(os.environ["NBMODELS_HOME"]) / "ls.json"
    with out.open("w") as f:
        assert main(["ls", "--json"], out=f) == 0
    listed = json.loads(out.read_text())
    assert LEGACY in {entry["repo"] for entry in listed["files"]}
    for ref in (f"hf:{LEGACY}/config.json", f"hf:{LEGACY}", LEGACY):
        assert main(["verify", ref]) == 0, ref
    assert main(["rm", f"hf:{LEGACY}/README.md"]) == 0
    assert main(["rm", LEGACY]) == 0  # the bare name `nbmodels ls` shows
    assert not (cache() / "models--tiny-legacy").exists()


def test_remote_sessions_pick_the_reading_the_hub_knows(
    hub: HubEmulator, ids: StandardRepos
) -> None:
    """``inspect`` and ``verify`` open their Hub session here: one request decides, and the
    chosen reading's repository info is not asked for twice."""
    from nbmodels._aio import run_sync
    from nbmodels._config import Settings
    from nbmodels._options import Options
    from nbmodels.hub import open_session

    async def probe() -> tuple[ModelRef, str]:
        ref = parse_ref(f"hf:{LEGACY}/config.json")
        async with open_session(Options(), Settings.from_env()) as session:
            repo = await session.find(ref, None)
            return repo.ref, await repo.api.commit(None)

    chosen, commit = run_sync(probe)
    assert chosen == hf(LEGACY, path="config.json") and commit == hub.repo(LEGACY).sha
    assert [c[1] for c in hub_calls(hub)] == [
        "/api/models/tiny-legacy/config.json",
        "/api/models/tiny-legacy",
    ]


def test_a_renamed_repository_without_owner_follows_the_hub(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    """Most such ids moved to an organisation (gpt2 -> openai-community/gpt2) and the Hub
    redirects the old name (a 307 on its own origin); the cache folder keeps the name asked
    for, as huggingface_hub's."""
    hub.rename_repo(LEGACY, "nbm-test/renamed")
    path = nbmodels.resolve(f"hf:{LEGACY}/config.json")
    assert path.is_relative_to(cache() / "models--tiny-legacy")
    assert path.read_bytes() == hub.repo("nbm-test/renamed").file("config.json").read()
    moved = [r.path for r in hub.requests if r.status == 307]
    assert "/api/models/tiny-legacy" in moved
    code = f"""
        from huggingface_hub import hf_hub_download
        print(hf_hub_download({LEGACY!r}, "config.json", local_files_only=True))
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120, cwd=ROOT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(path)
