"""Hugging Face references end to end against the local Hub emulator (issue 3)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import nbmodels
from nbmodels.engine import _engine
from nbmodels.hub import select_quant
from nbmodels.refs import split_siblings
from nbmodels.testing import Fault, HubEmulator, StandardRepos

ROOT = Path(__file__).resolve().parents[1]


def cache() -> Path:
    return Path(os.environ["HF_HOME"]) / "hub"


def file_bytes(hub: HubEmulator, repo: str, path: str, rev: str = "main") -> bytes:
    return hub.repo(repo).file(path, rev).read()


def cdn_requests(hub: HubEmulator) -> list[object]:
    return [r for r in hub.requests if r.origin == "cdn"]


# -- references, quants, revisions ---------------------------------------------------------------


def test_quant_reference_lands_in_the_standard_cache_layout(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    job = nbmodels.download(f"hf:{ids.gguf}:Q4_K_M")
    path = job.wait(30)
    commit = hub.repo(ids.gguf).sha
    root = cache() / "models--nbm-test--Tiny-GGUF"
    assert path == root / "snapshots" / commit / "Tiny-Q4_K_M.gguf"
    assert path.is_symlink()
    blob = path.resolve()
    assert blob.parent == root / "blobs"
    assert blob.name == hashlib.sha256(blob.read_bytes()).hexdigest()  # LFS blob named by sha256
    assert (root / "refs" / "main").read_text() == commit
    assert path.read_bytes() == file_bytes(hub, ids.gguf, "Tiny-Q4_K_M.gguf")
    assert (cache() / ".locks" / "models--nbm-test--Tiny-GGUF" / f"{blob.name}.lock").exists()


@pytest.mark.parametrize(
    "ref",
    ["{gguf}:q8_0", "hf:{gguf}:Q8_0", "hf:{gguf}/Tiny-Q8_0-00001-of-00003.gguf"],
)
def test_split_quant_brings_every_part_and_returns_part_one(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos, ref: str
) -> None:
    job = nbmodels.download(ref.format(gguf=ids.gguf))
    path = job.wait(30)
    assert path.name == "Tiny-Q8_0-00001-of-00003.gguf"
    assert [p.name for p in job.paths] == [f"Tiny-Q8_0-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    assert [f.name for f in job.files] == [p.name for p in job.paths]
    for p in job.paths:
        assert p.read_bytes() == file_bytes(hub, ids.gguf, p.name)


def test_quant_in_a_named_folder(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    job = nbmodels.download(f"{ids.gguf}:f16")
    path = job.wait(30)
    assert path.relative_to(path.parents[1]).as_posix() == "Tiny-F16/Tiny-F16-00001-of-00002.gguf"
    assert len(job.paths) == 2


def test_default_quant_and_unknown_quant(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    assert nbmodels.resolve(ids.gguf).name == "Tiny-Q4_K_M.gguf"  # Q4_K_M is the default
    with pytest.raises(nbmodels.NotFoundError) as info:
        nbmodels.resolve(f"{ids.gguf}:Q5_K_S")
    assert set(info.value.candidates) == {"F16", "Q4_K_M", "Q8_0"}
    assert "Q4_K_M" in str(info.value)


def test_quant_selection_rules_pure() -> None:
    paths = [
        "README.md", "m-Q8_0.gguf", "mmproj-m-f16.gguf", "m-IQ4_XS-00002-of-00002.gguf",
        "m-IQ4_XS-00001-of-00002.gguf",
    ]  # fmt: skip
    assert select_quant(paths, None, "r") == ["m-Q8_0.gguf"]  # Q8_0 when no Q4_K_M
    assert select_quant(paths, "iq4_xs", "r") == [
        "m-IQ4_XS-00001-of-00002.gguf", "m-IQ4_XS-00002-of-00002.gguf",
    ]  # fmt: skip
    assert select_quant(["only-Q3_K_L.gguf", "mmproj-x.gguf"], None, "r") == ["only-Q3_K_L.gguf"]
    with pytest.raises(nbmodels.NotFoundError) as info:
        select_quant(["a-Q3_K.gguf", "a-Q5_K.gguf"], None, "r")
    assert info.value.candidates == ("Q3_K", "Q5_K")
    with pytest.raises(nbmodels.NotFoundError):  # sidecars are not quants
        select_quant(paths, "F16", "r")
    parts = ["d/x-00001-of-00002.gguf", "d/x-00002-of-00002.gguf"]
    assert split_siblings("d/x-00002-of-00002.gguf", parts) == [
        "d/x-00001-of-00002.gguf", "d/x-00002-of-00002.gguf",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("suffix", "expect_file"),
    [("#dev", "Tiny-Q2_K.gguf"), ("#v1.0", None), ("#refs/pr/1", None)],
)
def test_revisions_branch_tag_pr(
    engine: _engine.Engine,
    hub: HubEmulator,
    ids: StandardRepos,
    suffix: str,
    expect_file: str | None,
) -> None:
    rev = suffix[1:]
    if expect_file:
        path = nbmodels.resolve(f"hf:{ids.gguf}:Q2_K{suffix}")
        assert path.name == expect_file
    else:
        path = nbmodels.resolve(f"hf:{ids.gguf}/config.json{suffix}")
    commit = hub.repo(ids.gguf).resolve(rev)
    assert commit is not None and path.parent.name == commit
    ref_file = cache() / "models--nbm-test--Tiny-GGUF" / "refs" / rev
    assert ref_file.read_text() == commit


def test_commit_revision_writes_no_ref(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    commit = hub.repo(ids.gguf).sha
    path = nbmodels.resolve(f"hf:{ids.gguf}/config.json#{commit}")
    assert path.parent.name == commit
    assert not (cache() / "models--nbm-test--Tiny-GGUF" / "refs" / commit).exists()


def test_whole_repo_snapshot_with_include_exclude(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    job = nbmodels.download(ids.safetensors, exclude=["*.safetensors"])
    snap = job.wait(30)
    commit = hub.repo(ids.safetensors).sha
    assert snap == cache() / "models--nbm-test--tiny-safetensors" / "snapshots" / commit
    names = sorted(p.relative_to(snap).as_posix() for p in job.paths)
    assert "model.safetensors" not in names and "config.json" in names
    job = nbmodels.download(ids.safetensors, include="*.json")
    job.wait(30)
    assert all(p.name.endswith(".json") for p in job.paths)


def test_page_urls_and_hf_uris(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    base = hub.endpoint
    a = nbmodels.resolve(f"{base}/{ids.gguf}/blob/main/config.json")
    b = nbmodels.resolve(f"{base}/{ids.gguf}/resolve/main/config.json?download=true")
    c = nbmodels.resolve(f"hf://{ids.gguf}/config.json")
    assert a == b == c and a.name == "config.json"
    folder = nbmodels.resolve(f"{base}/{ids.blobs}/tree/main/nested")
    assert folder.name == "nested" and (folder / "deep" / "file.txt").read_text() == "deep\n"


def test_dataset_repo(engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos) -> None:
    snap = nbmodels.resolve(f"hf:datasets/{ids.dataset}")
    assert snap.parents[1].name == "datasets--nbm-test--tiny-dataset"
    assert (snap / "data" / "test.csv").read_text().startswith("id,text")


# -- errors --------------------------------------------------------------------------------------


def test_gated_repo_says_where_to_accept_the_terms(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    with pytest.raises(nbmodels.AccessError) as info:
        nbmodels.resolve(ids.gated)
    msg = str(info.value)
    assert f"{hub.endpoint}/{ids.gated}" in msg and "HF_TOKEN" in msg
    with pytest.raises(nbmodels.AccessError):
        nbmodels.resolve(ids.gated, token=ids.token_without_grant)
    snap = nbmodels.resolve(ids.gated, token=ids.token)
    assert (snap / "config.json").exists()


def test_private_and_missing_repos(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    for repo in (ids.private, "nbm-test/does-not-exist"):
        with pytest.raises(nbmodels.NotFoundError) as info:
            nbmodels.resolve(repo)
        assert isinstance(info.value, nbmodels.AccessError)  # the Hub cannot tell them apart
        assert "HF_TOKEN" in str(info.value)
    assert (nbmodels.resolve(ids.private, token=ids.token) / "config.json").exists()


def test_missing_revision_and_file(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    with pytest.raises(nbmodels.NotFoundError, match="Revision 'nope'"):
        nbmodels.resolve(f"hf:{ids.gguf}/config.json#nope")
    with pytest.raises(nbmodels.NotFoundError, match=r"missing\.bin"):
        nbmodels.resolve(f"hf:{ids.gguf}/missing.bin")


def test_bad_reference_is_a_ref_error_at_once(engine: _engine.Engine) -> None:
    with pytest.raises(nbmodels.RefError) as info:
        nbmodels.download("not a ref at all!")
    assert "hf:" in str(info.value)


def test_digest_mismatch_on_lfs_and_git_files_publishes_nothing(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    for path in ("blob-1MiB.bin", "git-256KiB.dat"):
        hub.faults.add(Fault(kind="corrupt", path_glob=path, offset=1000, times=None))
        with pytest.raises(nbmodels.IntegrityError) as info:
            nbmodels.resolve(f"hf:{ids.blobs}/{path}")
        assert ("sha256" if path.endswith(".bin") else "SHA-1") in str(info.value)
        root = cache() / "models--nbm-test--blobs"
        assert not list((root / "snapshots").rglob(path)) if (root / "snapshots").exists() else True
        blobs = list((root / "blobs").iterdir()) if (root / "blobs").exists() else []
        assert [b for b in blobs if not b.name.startswith(".")] == []
        assert [b for b in blobs if b.name.endswith(".part")] == []
        hub.faults.clear()


def test_resume_after_dropped_cdn_connection(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    hub.faults.add(Fault(kind="drop", after_bytes=1_000_000, times=1, origin="cdn"))
    path = nbmodels.resolve(f"hf:{ids.blobs}/blob-3MiB.bin")
    assert path.read_bytes() == file_bytes(hub, ids.blobs, "blob-3MiB.bin")
    ranges = [r.range for r in hub.requests if r.origin == "cdn"]
    assert ranges[-1] is not None and ranges[-1].startswith("bytes=1000000-")


# -- tokens stay on the Hub origin ----------------------------------------------------------------


def test_token_goes_to_the_hub_only_never_to_the_cdn(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    nbmodels.resolve(f"hf:{ids.gated}/model.safetensors", token=ids.token)
    hub_reqs = [r for r in hub.requests if r.origin == "hub"]
    cdn = [r for r in hub.requests if r.origin == "cdn"]
    assert hub_reqs and cdn
    assert all(r.headers.get("Authorization") == f"Bearer {ids.token}" for r in hub_reqs)
    assert all(r.headers.get("Authorization") is None for r in cdn)


def test_token_not_sent_to_a_pagination_link_on_another_origin(settings: object) -> None:
    """A hostile endpoint pages its tree listing to another origin: the token stays home."""
    import asyncio
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from nbmodels._config import Settings
    from nbmodels.hub._api import HubApi
    from nbmodels.transfer import Credential, make_client, origin_of

    assert isinstance(settings, Settings)
    seen: dict[str, list[str | None]] = {"hub": [], "other": []}
    commit = "a" * 40
    entry = {"type": "file", "path": "x.txt", "size": 1, "oid": "b" * 40}

    def handler(name: str, next_url: str | None) -> type[BaseHTTPRequestHandler]:
        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen[name].append(self.headers.get("Authorization"))
                body = json.dumps([entry]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                if next_url:
                    self.send_header("Link", f'<{next_url}>; rel="next"')
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        return H

    other = ThreadingHTTPServer(("127.0.0.1", 0), handler("other", None))
    other_url = f"http://127.0.0.1:{other.server_address[1]}/api/models/o/r/tree/{commit}?cursor=2"
    hub = ThreadingHTTPServer(("127.0.0.1", 0), handler("hub", other_url))
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (hub, other)]
    for t in threads:
        t.start()
    endpoint = f"http://127.0.0.1:{hub.server_address[1]}"

    async def run() -> int:
        client = make_client(settings)
        try:
            api = HubApi(
                client, settings, endpoint=endpoint, repo_type="model", repo_id="o/r",
                credential=Credential("hf_secrettoken", origin_of(endpoint)),
            )  # fmt: skip
            return len(await api.tree(commit))
        finally:
            await client.aclose()

    try:
        assert asyncio.run(run()) == 2  # both pages were read
    finally:
        for s in (hub, other):
            s.shutdown()
            s.server_close()
    assert seen["hub"] == ["Bearer hf_secrettoken"]
    assert seen["other"] == [None]


def test_token_never_in_registry_or_errors(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    with pytest.raises(nbmodels.AccessError) as info:
        nbmodels.resolve(ids.gated, token=ids.token_without_grant)
    assert ids.token_without_grant not in str(info.value)
    nbmodels.resolve(ids.gated, token=ids.token)
    nbmodels.history()
    for f in engine.registry.path.parent.iterdir():
        if f.name.startswith("jobs.sqlite3"):
            data = f.read_bytes()
            assert ids.token.encode() not in data and ids.token_without_grant.encode() not in data


# -- offline, and interop with huggingface_hub ---------------------------------------------------


def test_pinned_reference_on_disk_needs_zero_requests(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = nbmodels.resolve(f"{ids.gguf}:Q8_0")
    hub.clear_log()
    job = nbmodels.download(f"{ids.gguf}:Q8_0")
    assert job.wait(30) == first and job.status == "already_downloaded"
    assert nbmodels.resolve(f"{ids.gguf}:Q8_0", offline=True) == first
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert nbmodels.resolve(f"hf:{ids.gguf}/Tiny-Q8_0-00001-of-00003.gguf") == first
    assert hub.requests == []


def test_offline_and_missing_is_offline_error_with_zero_requests(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(nbmodels.OfflineError):
        nbmodels.resolve(f"{ids.gguf}:Q4_K_M", offline=True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(nbmodels.OfflineError):
        nbmodels.resolve(ids.safetensors)
    assert hub.requests == []


def test_unpinned_reference_uses_cached_refs_when_the_network_is_down(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap = nbmodels.resolve(ids.safetensors)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    assert nbmodels.resolve(ids.safetensors) == snap


def _hf_subprocess(code: str, hub: HubEmulator) -> str:
    env = {
        **os.environ,
        "HF_ENDPOINT": hub.endpoint,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True, text=True, env=env, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_huggingface_hub_finds_our_files_offline(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos, tmp_path: Path
) -> None:
    ours = nbmodels.resolve(f"{ids.gguf}:Q4_K_M")
    snap = nbmodels.resolve(ids.safetensors)
    local = nbmodels.resolve(f"hf:{ids.gguf}/Tiny-Q4_K_M.gguf", dir=tmp_path / "local")
    hub.clear_log()
    out = _hf_subprocess(
        f"""
        import os
        os.environ["HF_HUB_OFFLINE"] = "1"
        from huggingface_hub import hf_hub_download, snapshot_download
        print(hf_hub_download({ids.gguf!r}, "Tiny-Q4_K_M.gguf", local_files_only=True))
        print(snapshot_download({ids.safetensors!r}))
        """,
        hub,
    )
    assert out.splitlines() == [str(ours), str(snap)]
    assert hub.requests == []
    # local_dir: huggingface_hub checks the metadata against the Hub and does not download again
    out = _hf_subprocess(
        f"""
        from huggingface_hub import hf_hub_download
        local_dir = {str(tmp_path / "local")!r}
        print(hf_hub_download({ids.gguf!r}, "Tiny-Q4_K_M.gguf", local_dir=local_dir))
        """,
        hub,
    )
    assert Path(out.splitlines()[-1]).resolve() == local.resolve()
    assert cdn_requests(hub) == []  # metadata matched: no bytes fetched


def test_files_huggingface_hub_downloaded_are_already_downloaded(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    theirs = _hf_subprocess(
        f"""
        from huggingface_hub import hf_hub_download
        print(hf_hub_download({ids.gguf!r}, "Tiny-Q4_K_M.gguf"))
        """,
        hub,
    ).splitlines()[-1]
    hub.clear_log()
    job = nbmodels.download(f"{ids.gguf}:Q4_K_M")
    assert str(job.wait(30)) == theirs
    assert job.status == "already_downloaded"
    assert cdn_requests(hub) == []


def test_local_dir_layout_with_metadata(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos, tmp_path: Path
) -> None:
    target = tmp_path / "models"
    path = nbmodels.resolve(f"hf:{ids.gguf}/Tiny-Q4_K_M.gguf", dir=target)
    assert path == (target / "Tiny-Q4_K_M.gguf") and not path.is_symlink()
    meta = target / ".cache" / "huggingface" / "download" / "Tiny-Q4_K_M.gguf.metadata"
    commit, etag, _ts = meta.read_text().splitlines()
    assert commit == hub.repo(ids.gguf).sha
    assert etag == hashlib.sha256(path.read_bytes()).hexdigest()
    hub.clear_log()
    again = nbmodels.download(f"hf:{ids.gguf}/Tiny-Q4_K_M.gguf", dir=target)
    again.wait(30)
    assert again.status == "already_downloaded" and hub.requests == []


def test_rate_limited_listing_waits_as_told_then_succeeds(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos
) -> None:
    hub.faults.add(Fault(kind="status", status=429, retry_after=1, path_glob="/api/*", times=1))
    assert nbmodels.resolve(f"hf:{ids.gguf}/config.json").name == "config.json"
    api = [r for r in hub.requests if r.path.startswith("/api/")]
    assert api[0].status == 429 and api[1].started - api[0].started >= 0.9


def test_snapshot_gets_a_copy_where_symlinks_are_impossible(
    engine: _engine.Engine, hub: HubEmulator, ids: StandardRepos, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_symlinks(self: Path, target: object, target_is_directory: bool = False) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(Path, "symlink_to", no_symlinks)
    path = nbmodels.resolve(f"{ids.gguf}:Q4_K_M")
    assert not path.is_symlink()
    assert path.read_bytes() == file_bytes(hub, ids.gguf, "Tiny-Q4_K_M.gguf")
