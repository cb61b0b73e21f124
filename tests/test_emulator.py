"""The Hub emulator speaks HUB.md over real HTTP: checked with httpx2 and with huggingface_hub.

Fault switches, throttling and the lifecycle are in test_emulator_faults.py; generated content
and file formats in test_emulator_content.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from importlib.metadata import entry_points
from pathlib import Path
from urllib.parse import quote

import httpx2
import pytest

from nbmodels.testing import GeneratedFile, HubEmulator, HubFile
from nbmodels.testing._log import Headers, RequestLog, RequestRecord
from tests.conftest import http_client

# The plugin is registered by the package's pytest11 entry point once nbmodels is installed;
# from a source checkout, load it here.
pytest_plugins = (
    [] if entry_points(group="pytest11", name="nbmodels") else ["nbmodels.testing._pytest_plugin"]
)

SHA_RE = re.compile(r"[0-9a-f]{40}")
XET_HEADERS = ("x-xet-hash", "x-xet-refresh-route", "x-xet-cas-url")


def git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# -- resolve: HEAD / GET / Range --------------------------------------------------------------


def test_head_of_a_git_file_carries_commit_etag_and_length(hf_hub: HubEmulator) -> None:
    repo = hf_hub.repo(hf_hub.standard.gguf)
    data = repo.file("README.md").read()
    with http_client() as client:
        r = client.head(
            hf_hub.resolve_url(repo.repo_id, "README.md"), headers={"Accept-Encoding": "identity"}
        )
    assert r.status_code == 200
    assert r.headers["X-Repo-Commit"] == repo.sha
    assert SHA_RE.fullmatch(r.headers["X-Repo-Commit"])
    assert r.headers["ETag"] == f'"{git_sha1(data)}"'
    assert int(r.headers["Content-Length"]) == len(data)
    assert r.headers["Accept-Ranges"] == "bytes"
    assert not any(h in r.headers for h in XET_HEADERS)


def test_head_of_an_lfs_file_redirects_to_the_cdn_with_linked_metadata(
    hf_hub: HubEmulator,
) -> None:
    repo = hf_hub.repo(hf_hub.standard.gguf)
    entry = repo.file("Tiny-Q4_K_M.gguf")
    with http_client() as client:
        r = client.head(hf_hub.resolve_url(repo.repo_id, entry.path))
        assert r.status_code == 302
        location = r.headers["Location"]
        assert location.startswith(hf_hub.cdn_url + "/")
        assert hf_hub.cdn_url != hf_hub.endpoint
        assert r.headers["X-Linked-Etag"] == f'"{hashlib.sha256(entry.read()).hexdigest()}"'
        assert r.headers["X-Linked-Size"] == str(entry.size)
        assert r.headers["X-Repo-Commit"] == repo.sha
        assert r.headers["Content-Length"] == "0"
        assert "link" not in r.headers and not any(h in r.headers for h in XET_HEADERS)
        body = client.get(location)
    assert body.status_code == 200
    assert body.content == entry.read()
    assert body.headers["ETag"] == f'"{entry.sha256}"'


def test_get_follows_the_redirect_and_ranges_work_on_both_origins(hf_hub: HubEmulator) -> None:
    blobs = hf_hub.repo(hf_hub.standard.blobs)
    lfs, git = blobs.file("blob-1MiB.bin"), blobs.file("git-256KiB.dat")
    assert lfs.lfs and not git.lfs
    with http_client(follow_redirects=True) as client:
        for entry in (lfs, git):
            url = hf_hub.resolve_url(blobs.repo_id, entry.path)
            n = entry.size
            r = client.get(url, headers={"Range": "bytes=1000-1999"})
            assert r.status_code == 206
            assert r.headers["Content-Range"] == f"bytes 1000-1999/{n}"
            assert r.content == entry.read(1000, 2000)
            r = client.get(url, headers={"Range": f"bytes={n - 10}-"})
            assert (r.status_code, r.content) == (206, entry.read(n - 10))
            r = client.get(url, headers={"Range": "bytes=-5"})
            assert (r.status_code, r.content) == (206, entry.read(n - 5))
            r = client.get(url, headers={"Range": f"bytes={n}-"})
            assert r.status_code == 416
            assert r.headers["Content-Range"] == f"bytes */{n}"
            # If-Range with a stale validator: the whole file, not a slice of the new one.
            r = client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
            assert r.status_code == 200 and len(r.content) == n


def test_keep_alive_connections_are_reused(hf_hub: HubEmulator) -> None:
    url = hf_hub.resolve_url(hf_hub.standard.blobs, "small.txt")
    with http_client() as client:
        for _ in range(5):
            assert client.get(url).status_code == 200
    connections = {r.connection for r in hf_hub.requests}
    assert len(hf_hub.requests) == 5 and len(connections) == 1


def test_revisions_branch_tag_sha_and_percent_encoded_pr_ref(hf_hub: HubEmulator) -> None:
    repo = hf_hub.repo(hf_hub.standard.gguf)
    with http_client() as client:

        def head(path: str, revision: str) -> httpx2.Response:
            return client.head(hf_hub.resolve_url(repo.repo_id, path, revision=revision))

        pr = head("NOTES.md", "refs/pr/1")
        assert "refs%2Fpr%2F1" in str(pr.request.url)
        assert pr.status_code == 200
        assert pr.headers["X-Repo-Commit"] == repo.resolve("refs/pr/1")
        assert head("NOTES.md", "main").headers["X-Error-Code"] == "EntryNotFound"
        assert head("Tiny-Q2_K.gguf", "dev").status_code == 302
        assert head("README.md", "v1.0").headers["X-Repo-Commit"] == repo.sha
        assert head("README.md", repo.sha).status_code == 200


def test_error_answers_carry_the_hub_error_codes(hf_hub: HubEmulator, http: httpx2.Client) -> None:
    ids = hf_hub.standard
    assert ids is not None
    hf_hub.add_repo("nbm-test/disabled", {"a.txt": "a"}, disabled=True)

    def get(url: str, token: str | None = None) -> httpx2.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return http.get(url, headers=headers)

    def code(r: httpx2.Response) -> tuple[int, str | None]:
        return r.status_code, r.headers.get("X-Error-Code")

    url = hf_hub.resolve_url
    assert code(get(url("nbm-test/missing", "a.txt"))) == (401, "RepoNotFound")
    assert code(get(url(ids.private, "config.json"))) == (401, "RepoNotFound")
    assert code(get(url(ids.private, "config.json"), ids.token_without_grant)) == (
        401,
        "RepoNotFound",
    )
    assert get(url(ids.private, "config.json"), ids.token).status_code == 200
    assert code(get(url(ids.gated, "config.json"))) == (401, "GatedRepo")
    assert code(get(url(ids.gated, "config.json"), ids.token_without_grant)) == (403, "GatedRepo")
    assert get(url(ids.gated, "config.json"), ids.token).status_code == 200
    missing_rev = get(url(ids.gguf, "README.md", revision="nope"))
    assert code(missing_rev) == (404, "RevisionNotFound")
    assert code(get(url(ids.gguf, "README.md", revision="brünch"))) == (404, "RevisionNotFound")
    missing_file = get(url(ids.gguf, "nope.txt"))
    assert code(missing_file) == (404, "EntryNotFound")
    assert missing_file.headers["X-Repo-Commit"] == hf_hub.repo(ids.gguf).sha
    bad_token = get(url(ids.gguf, "README.md"), "hf_unknown")
    assert bad_token.status_code == 401
    assert bad_token.headers["X-Error-Message"] == "Invalid credentials in Authorization header"
    disabled = get(url("nbm-test/disabled", "a.txt"))
    assert disabled.headers["X-Error-Message"] == "Access to this resource is disabled."
    assert get(f"{hf_hub.endpoint}/api/agent-harnesses").status_code == 404
    assert all(json.loads(r.content)["error"] for r in (missing_rev, missing_file, disabled))
    # Listing a gated repo needs no token (only the files do), listing a private one does.
    assert get(f"{hf_hub.endpoint}/api/models/{ids.gated}").status_code == 200
    assert code(get(f"{hf_hub.endpoint}/api/models/{ids.private}")) == (401, "RepoNotFound")


def test_a_renamed_repo_answers_with_a_relative_307(hf_hub: HubEmulator) -> None:
    hf_hub.rename_repo(hf_hub.standard.legacy, "nbm-test/renamed")  # type: ignore[union-attr]
    with http_client() as client:
        r = client.head(hf_hub.resolve_url("tiny-legacy", "config.json"))
        assert r.status_code == 307
        assert r.headers["Location"] == "/nbm-test/renamed/resolve/main/config.json"
        final = client.head(hf_hub.endpoint + r.headers["Location"])
        api = client.get(f"{hf_hub.endpoint}/api/models/tiny-legacy")
        assert api.status_code == 307
        assert api.headers["Location"] == "/api/models/nbm-test/renamed"
    assert final.status_code == 200 and SHA_RE.fullmatch(final.headers["X-Repo-Commit"])


def test_paths_with_spaces_and_unicode_round_trip(hf_hub: HubEmulator, http: httpx2.Client) -> None:
    name = "a dir/naïve file #1.txt"
    hf_hub.add_repo("nbm-test/unicode", {name: "ok\n"})
    r = http.get(hf_hub.resolve_url("nbm-test/unicode", name))
    assert (r.status_code, r.content) == (200, b"ok\n")
    assert hf_hub.requests[-1].file_path == name
    tree = http.get(
        f"{hf_hub.endpoint}/api/models/nbm-test/unicode/tree/main/{quote('a dir', safe='')}"
    )
    assert [e["path"] for e in tree.json()] == [name]


# -- the listing API --------------------------------------------------------------------------


def test_tree_pages_with_an_absolute_link_header(hf_hub: HubEmulator) -> None:
    url = f"{hf_hub.endpoint}/api/models/{hf_hub.standard.many_files}/tree/main"
    seen: list[str] = []
    pages = 0
    with http_client() as client:
        next_url: str | None = url + "?recursive=true&expand=false"
        while next_url:
            r = client.get(next_url)
            assert r.status_code == 200
            page = r.json()
            assert len(page) <= hf_hub.page_size
            seen += [e["path"] for e in page]
            pages += 1
            next_url = r.links.get("next", {}).get("url")
            if next_url:
                assert next_url.startswith(hf_hub.endpoint + "/api/")
        top = client.get(url).json()
    assert pages == 3
    assert len(seen) == len(set(seen)) == 127  # 120 files + README + 6 directories
    assert {e["path"] for e in top} == {"README.md", *(f"dir{i}" for i in range(6))}
    assert all(e["type"] == "directory" and e["size"] == 0 for e in top if e["path"] != "README.md")


def test_paths_info_takes_form_encoded_repeated_paths(hf_hub: HubEmulator) -> None:
    repo = hf_hub.repo(hf_hub.standard.gguf)
    with http_client() as client:
        r = client.post(
            f"{hf_hub.endpoint}/api/models/{repo.repo_id}/paths-info/main",
            data={"paths": ["README.md", "Tiny-F16", "Tiny-Q4_K_M.gguf", "absent"]},
        )
    entries = {e["path"]: e for e in r.json()}
    assert set(entries) == {"README.md", "Tiny-F16", "Tiny-Q4_K_M.gguf"}
    gguf = repo.file("Tiny-Q4_K_M.gguf")
    assert entries["Tiny-Q4_K_M.gguf"]["lfs"] == {
        "oid": gguf.sha256,
        "size": gguf.size,
        "pointerSize": len(gguf.pointer),
    }
    assert entries["Tiny-Q4_K_M.gguf"]["oid"] == git_sha1(gguf.pointer)
    assert entries["README.md"]["oid"] == git_sha1(repo.file("README.md").read())
    assert entries["Tiny-F16"]["type"] == "directory"


# -- huggingface_hub against the emulator -----------------------------------------------------


def test_hf_hub_download_gets_git_and_lfs_files_and_no_token_reaches_the_cdn(
    hf_hub_env: HubEmulator, tmp_path: Path
) -> None:
    from huggingface_hub import hf_hub_download

    hub, ids = hf_hub_env, hf_hub_env.standard
    assert ids is not None
    repo = hub.repo(ids.gated)
    for name in ("config.json", "model.safetensors"):
        path = hf_hub_download(
            ids.gated, name, endpoint=hub.endpoint, cache_dir=tmp_path, token=ids.token
        )
        assert Path(path).read_bytes() == repo.file(name).read()
    assert repo.file("model.safetensors").lfs
    hub_requests = [r for r in hub.requests if r.origin == "hub"]
    cdn_requests = [r for r in hub.requests if r.origin == "cdn"]
    assert hub_requests and all(r.authorization == f"Bearer {ids.token}" for r in hub_requests)
    assert cdn_requests and all(r.authorization is None for r in cdn_requests)
    assert all("authorization" not in r.headers for r in cdn_requests)
    blobs = tmp_path / "models--nbm-test--gated-model" / "blobs"
    assert (blobs / repo.file("model.safetensors").sha256).exists()


def test_snapshot_download_fetches_every_file_of_a_revision(
    hf_hub_env: HubEmulator, tmp_path: Path
) -> None:
    from huggingface_hub import snapshot_download

    repo = hf_hub_env.repo(hf_hub_env.standard.gguf)  # type: ignore[union-attr]
    folder = Path(
        snapshot_download(
            repo.repo_id, revision="dev", endpoint=hf_hub_env.endpoint, cache_dir=tmp_path
        )
    )
    assert folder.name == repo.resolve("dev")
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert on_disk == set(repo.files("dev"))
    for path in on_disk:
        assert (folder / path).read_bytes() == repo.file(path, "dev").read()


def test_list_repo_tree_follows_the_pagination(hf_hub_env: HubEmulator) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    api = HfApi(endpoint=hf_hub_env.endpoint)
    entries = list(api.list_repo_tree(hf_hub_env.standard.many_files, recursive=True))  # type: ignore[union-attr]
    assert len(entries) == 127
    assert sum(isinstance(e, RepoFile) for e in entries) == 121
    tree_calls = [r for r in hf_hub_env.requests if "/tree/" in r.path]
    assert len(tree_calls) == 3


def test_paths_info_model_info_and_refs_through_huggingface_hub(hf_hub_env: HubEmulator) -> None:
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile, RepoFolder

    api = HfApi(endpoint=hf_hub_env.endpoint)
    repo = hf_hub_env.repo(hf_hub_env.standard.gguf)  # type: ignore[union-attr]
    infos = api.get_paths_info(repo.repo_id, ["Tiny-Q4_K_M.gguf", "Tiny-F16", "absent"])
    assert [type(i) for i in infos] == [RepoFile, RepoFolder]
    gguf = infos[0]
    assert isinstance(gguf, RepoFile) and gguf.lfs is not None
    assert gguf.lfs.sha256 == repo.file("Tiny-Q4_K_M.gguf").sha256

    info = api.model_info(repo.repo_id, files_metadata=True)
    assert info.sha == repo.sha
    assert info.siblings is not None
    assert {s.rfilename for s in info.siblings} == set(repo.files())
    by_name = {s.rfilename: s for s in info.siblings}
    q8 = repo.file("Tiny-Q8_0-00002-of-00003.gguf")
    assert by_name[q8.path].lfs is not None and by_name[q8.path].lfs.sha256 == q8.sha256
    assert by_name["README.md"].lfs is None
    assert api.model_info(repo.repo_id, revision="dev").sha == repo.resolve("dev")

    refs = api.list_repo_refs(repo.repo_id, include_pull_requests=True)
    assert {b.name: b.target_commit for b in refs.branches} == {
        "main": repo.sha,
        "dev": repo.resolve("dev"),
    }
    assert [t.name for t in refs.tags] == ["v1.0"]
    assert refs.pull_requests is not None and refs.pull_requests[0].ref == "refs/pr/1"

    assert api.dataset_info(hf_hub_env.standard.dataset).sha  # type: ignore[union-attr]
    assert api.space_info(hf_hub_env.standard.space).sha  # type: ignore[union-attr]
    assert api.model_info(hf_hub_env.standard.legacy).id == "tiny-legacy"  # type: ignore[union-attr]


def test_hub_errors_map_to_huggingface_hub_exceptions(
    hf_hub_env: HubEmulator, tmp_path: Path
) -> None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    ids = hf_hub_env.standard
    assert ids is not None

    def download(repo_id: str, name: str, **kwargs: object) -> str:
        return hf_hub_download(
            repo_id, name, endpoint=hf_hub_env.endpoint, cache_dir=tmp_path, **kwargs
        )

    with pytest.raises(GatedRepoError):
        download(ids.gated, "config.json")
    with pytest.raises(GatedRepoError):
        download(ids.gated, "config.json", token=ids.token_without_grant)
    with pytest.raises(RepositoryNotFoundError):
        download("nbm-test/does-not-exist", "config.json")
    with pytest.raises(RepositoryNotFoundError):
        download(ids.private, "config.json")
    with pytest.raises(RevisionNotFoundError):
        download(ids.gguf, "README.md", revision="no-such-branch")
    with pytest.raises(EntryNotFoundError):
        download(ids.gguf, "no-such-file.txt")


def test_dataset_repos_download_under_their_prefix(hf_hub_env: HubEmulator, tmp_path: Path) -> None:
    from huggingface_hub import hf_hub_download

    ids = hf_hub_env.standard
    assert ids is not None
    path = hf_hub_download(
        ids.dataset,
        "data/train-00000-of-00001.parquet",
        repo_type="dataset",
        endpoint=hf_hub_env.endpoint,
        cache_dir=tmp_path,
    )
    entry = hf_hub_env.repo(ids.dataset, "dataset").file("data/train-00000-of-00001.parquet")
    assert Path(path).read_bytes() == entry.read()
    assert hf_hub_env.requests[0].path.startswith(f"/datasets/{ids.dataset}/resolve/main/")


def test_huggingface_hub_in_a_subprocess_configured_by_environment(
    hf_hub: HubEmulator, tmp_path: Path
) -> None:
    ids = hf_hub.standard
    assert ids is not None
    script = textwrap.dedent(
        f"""
        from huggingface_hub import hf_hub_download, snapshot_download
        p = hf_hub_download({ids.blobs!r}, "blob-1MiB.bin")
        s = snapshot_download({ids.safetensors!r})
        print(p); print(s)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING"))}
    env |= {
        "HF_ENDPOINT": hf_hub.endpoint,
        "HF_HOME": str(tmp_path / "home"),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    blob_path, snapshot = done.stdout.split()
    assert Path(blob_path).read_bytes() == hf_hub.repo(ids.blobs).file("blob-1MiB.bin").read()
    assert (Path(snapshot) / "model.safetensors").stat().st_size == 256 * 1024
    assert Path(blob_path).is_relative_to(tmp_path / "home" / "hub")


def test_hf_hub_env_points_the_environment_and_constants_at_the_emulator(
    hf_hub_env: HubEmulator,
) -> None:
    from huggingface_hub import constants

    assert os.environ["HF_ENDPOINT"] == hf_hub_env.endpoint == constants.ENDPOINT
    assert os.environ["HF_HUB_DISABLE_XET"] == "1" and constants.HF_HUB_DISABLE_XET
    assert os.environ["HF_HUB_DISABLE_TELEMETRY"] == "1" and constants.HF_HUB_DISABLE_TELEMETRY
    assert "HF_TOKEN" not in os.environ
    assert Path(constants.HF_HUB_CACHE).is_relative_to(os.environ["HF_HOME"])
    assert os.environ["HF_HUB_CACHE"] == constants.HF_HUB_CACHE


# -- repo model -------------------------------------------------------------------------------


def test_commits_have_deterministic_shas_and_change_the_etag(hf_hub: HubEmulator) -> None:
    files = {"a.bin": GeneratedFile(2048, seed=1), "b.txt": "hello\n"}
    repo = hf_hub.add_repo("nbm-test/commits", files)
    first = repo.sha
    with HubEmulator() as other:
        assert other.add_repo("nbm-test/commits", files).sha == first
    second = repo.commit({"a.bin": GeneratedFile(2048, seed=2)}, delete=["b.txt"], message="v2")
    assert SHA_RE.fullmatch(second) and second != first
    assert repo.get_commit(second).parent == first
    assert set(repo.files()) == {"a.bin"} and set(repo.files(first)) == {"a.bin", "b.txt"}
    with http_client() as client:
        now = client.head(hf_hub.resolve_url(repo.repo_id, "a.bin"))
        before = client.head(hf_hub.resolve_url(repo.repo_id, "a.bin", revision=first))
    assert now.headers["X-Repo-Commit"] == second
    assert before.headers["X-Repo-Commit"] == first
    assert now.headers["X-Linked-Etag"] != before.headers["X-Linked-Etag"]  # *.bin is LFS


def test_lfs_is_chosen_by_size_pattern_or_explicitly(hf_hub: HubEmulator) -> None:
    repo = hf_hub.add_repo(
        "nbm-test/lfs-choice",
        {
            "big.dat": GeneratedFile(4096, 1),
            "small.dat": GeneratedFile(100, 2),
            "w.safetensors": b"x",
            "forced.txt": HubFile(b"text", lfs=True),
            "plain.bin": HubFile(GeneratedFile(8192, 3), lfs=False),
        },
        lfs_threshold=4096,
    )
    lfs = {p for p, e in repo.files().items() if e.lfs}
    assert lfs == {"big.dat", "w.safetensors", "forced.txt"}


def test_requests_are_logged_with_headers_and_the_log_can_be_cleared(hf_hub: HubEmulator) -> None:
    url = hf_hub.resolve_url(hf_hub.standard.blobs, "blob-1MiB.bin")
    with http_client(follow_redirects=True) as client:
        client.get(url, headers={"Range": "bytes=0-99", "X-Test": "yes"})
    head, cdn = hf_hub.requests
    assert (head.origin, head.method, head.status, head.bytes_sent) == ("hub", "GET", 302, 0)
    assert (cdn.origin, cdn.status, cdn.bytes_sent, cdn.range) == ("cdn", 206, 100, "bytes=0-99")
    assert head.headers["x-test"] == head.headers["X-TEST"] == "yes"
    assert head.repo_id == cdn.repo_id == hf_hub.standard.blobs
    assert cdn.file_path == "blob-1MiB.bin" and cdn.duration >= 0 and cdn.started > 0
    assert all(r.path.startswith("/") and "?" not in r.path for r in (head, cdn))
    hf_hub.clear_log()
    assert hf_hub.requests == []


def test_an_answer_the_client_left_mid_body_logs_the_bytes_sent_until_then(
    hf_hub: HubEmulator,
) -> None:
    """What a server sent counts, also when the client hangs up early (a transfer that moves to
    other connections does): the log is how tests count the bytes a Hub served."""
    hf_hub.set_throttle(2_000_000)
    url = hf_hub.resolve_url(hf_hub.standard.blobs, "blob-1MiB.bin")
    with http_client(follow_redirects=True) as client, client.stream("GET", url) as response:
        got = 0
        for chunk in response.iter_raw():
            got += len(chunk)
            if got >= 200_000:
                break
    for _ in range(500):  # the server notices at its next write
        cdn = [r for r in hf_hub.requests if r.origin == "cdn"]
        if cdn:
            break
        time.sleep(0.01)
    assert len(cdn) == 1 and got <= cdn[0].bytes_sent < 1024 * 1024


def _record(path: str) -> RequestRecord:
    fields = (200, 0, None, 0.0, 0.0, 1, None, None, ())
    return RequestRecord("hub", "GET", path, "", Headers(), *fields)


def test_the_log_keeps_the_order_in_which_answers_ended() -> None:
    """A redirect's record comes before the record of the request it led to, even when the
    thread of the second request logs it first (the client follows the redirect as soon as it
    has the headers); an answer that was never announced (a connection error) comes last."""
    log = RequestLog()
    first, second = log.finishing(), log.finishing()
    log.append(_record("/second"), second)
    log.append(_record("/first"), first)
    log.append(_record("/unannounced"))
    assert [r.path for r in log.snapshot()] == ["/first", "/second", "/unannounced"]


def test_serve_file_offers_plain_urls_on_the_cdn(hf_hub: HubEmulator) -> None:
    url = hf_hub.serve_file("model.gguf", GeneratedFile(5000, 9))
    assert url == f"{hf_hub.cdn_url}/files/{quote('model.gguf')}"
    with http_client() as client:
        first = client.get(url)
        hf_hub.serve_file("model.gguf", GeneratedFile(5000, 10))
        second = client.get(url)
    assert first.content == GeneratedFile(5000, 9).read()
    assert first.headers["ETag"] != second.headers["ETag"]
