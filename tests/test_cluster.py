"""Cluster prefetch on a real local Ray cluster: three nodes (``ray.cluster_utils.Cluster``, all
on 127.0.0.1), each with its own Hugging Face cache, started once for the module, and the Hub
emulator in this process. Skipped (saying why) only when Ray cannot be imported."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import nbmodels
from nbmodels.cluster import ClusterJob, prefetch
from nbmodels.errors import CanceledError, NotFoundError, RepoNotFoundError
from nbmodels.testing import GeneratedFile, HubEmulator
from tests.ray_cluster import local_cluster

# Every node on 127.0.0.1 (Ray's switch for a cluster that never leaves the machine), read by
# Ray when it is imported: so before that.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
pytest.importorskip("ray", reason="ray cannot be imported here (pip install 'nbmodels[ray]')")

pytestmark = pytest.mark.slow

NODES = 3


@dataclass
class LocalCluster:
    ray: Any
    #: node id -> that node's Hugging Face cache
    caches: dict[str, Path]

    def clear(self) -> None:
        for cache in self.caches.values():
            shutil.rmtree(cache, ignore_errors=True)
            cache.mkdir(parents=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    root = Path(tempfile.mkdtemp(prefix="nbr-"))  # short: Ray's socket paths live under it
    env = {"HF_TOKEN": "", "HF_HUB_DISABLE_XET": "1", "NBMODELS_CHECKPOINT_INTERVAL": "0.1"}
    with local_cluster(NODES, root, env) as (ray, caches):
        yield LocalCluster(ray, caches)


@pytest.fixture
def nodes(cluster: LocalCluster, hub: HubEmulator) -> LocalCluster:
    """The cluster with empty caches, and ``HF_ENDPOINT`` pointing at this test's emulator."""
    cluster.clear()
    return cluster


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _gets(hub: HubEmulator, name: str) -> list[Any]:
    return [r for r in hub.requests if r.method == "GET" and r.file_path == name]


def _hub_bytes(hub: HubEmulator, name: str) -> int:
    return sum(r.bytes_sent for r in _gets(hub, name))


def _until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_every_node_ends_with_verified_files_that_the_hub_served_once(
    nodes: LocalCluster, hub: HubEmulator
) -> None:
    from huggingface_hub import hf_hub_download

    # 4 MB: below the transfer's fast-path threshold (4 MiB), so one transfer is one GET and
    # the Hub's log counts exactly the bytes it moved.
    weights, config = GeneratedFile(4_000_000, seed=21), b'{"model_type": "llama"}\n'
    hub.add_repo("org/cluster", {"model.gguf": weights, "config.json": config})
    job = prefetch("hf:org/cluster", display=False)
    paths = job.wait(120)
    assert set(paths) == set(nodes.caches)
    for node, cache in nodes.caches.items():
        found = hf_hub_download("org/cluster", "model.gguf", cache_dir=cache, local_files_only=True)
        assert Path(found) == paths[node] / "model.gguf"  # the snapshot folder: the whole repo
        assert _sha(Path(found)) == weights.sha256
        conf = hf_hub_download("org/cluster", "config.json", cache_dir=cache, local_files_only=True)
        assert Path(conf).read_bytes() == config
    # One Hub transfer per file for the whole cluster; the rest came from peers.
    assert _hub_bytes(hub, "model.gguf") == len(weights)
    assert _hub_bytes(hub, "config.json") == len(config)
    summary = job.to_dict()
    total = len(weights) + len(config)
    assert (summary["hub_bytes"], summary["peer_bytes"]) == (total, (NODES - 1) * total)
    assert summary["status"] == "completed" and len(summary["items"]) == NODES
    assert {row["status"] for row in summary["nodes"]} == {"completed"}
    assert job.job.progress.downloaded_bytes == NODES * total


def test_a_node_already_holding_the_files_moves_nothing(
    nodes: LocalCluster, hub: HubEmulator, engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = GeneratedFile(3_000_000, seed=22)
    hub.add_repo("org/held", {"model.gguf": weights})
    holder = next(iter(nodes.caches))
    monkeypatch.setenv("HF_HUB_CACHE", str(nodes.caches[holder]))
    nbmodels.resolve("hf:org/held")  # this process writes into that node's cache
    hub.clear_log()
    job = prefetch("hf:org/held", display=False)
    paths = job.wait(120)
    rows = job.nodes
    assert rows[holder].status == "already_downloaded"
    assert (rows[holder].hub_bytes, rows[holder].peer_bytes) == (0, 0)
    assert rows[holder].sources == ("disk",)
    others = [n for n in rows if n != holder]
    assert all(rows[n].status == "completed" and rows[n].hub_bytes == 0 for n in others)
    assert _gets(hub, "model.gguf") == []  # the Hub moved no byte of it
    assert all(_sha(p / "model.gguf") == weights.sha256 for p in paths.values())


def _state(cache: Path, sha256: str) -> dict[str, Any] | None:
    for path in cache.glob(f"models--*/blobs/.{sha256}.nbmodels.json"):
        try:
            state: dict[str, Any] = json.loads(path.read_text())
            return state
        except (OSError, ValueError):
            return None
    return None


def _seed(job: ClusterJob) -> str | None:
    return next((n for n, row in job.nodes.items() if "hub" in row.sources), None)


def test_killing_a_nodes_worker_mid_transfer_the_others_complete_and_it_resumes(
    nodes: LocalCluster, hub: HubEmulator
) -> None:
    size = 6_000_000
    weights = GeneratedFile(size, seed=23)
    hub.add_repo("org/killed", {"model.gguf": weights})
    hub.set_throttle(1_000_000)  # bytes/s per connection: the Hub transfer takes a while
    job = prefetch("hf:org/killed", display=False, connections=1)
    _until(lambda: _seed(job) is not None, "a node to fetch from the Hub")
    seed = _seed(job)
    assert seed is not None
    _until(
        lambda: bool((_state(nodes.caches[seed], weights.sha256) or {}).get("done")),
        "durable partial data on the seed",
    )
    pid = nodes.ray.get(job._fleet.agents[seed].pid.remote())
    os.kill(pid, signal.SIGKILL)
    killed_at = time.time()
    hub.set_throttle(None)
    paths = job.wait(120)
    assert set(paths) == set(nodes.caches)
    assert all(_sha(p / "model.gguf") == weights.sha256 for p in paths.values())
    # The seed's new worker resumed from its partial data: ranged If-Range requests for the
    # rest only (its transfer received less than the file), and less than twice the file from
    # the Hub in all (the bytes of the killed connection that were not yet durable, and those
    # in flight when a transfer moves to its fast path, came twice).
    after = [r for r in _gets(hub, "model.gguf") if r.origin == "cdn" and r.started > killed_at]
    assert after and all(r.range and not r.range.startswith("bytes=0-") for r in after)
    assert all(r.headers.get("if-range") == f'"{weights.sha256}"' for r in after)
    assert 0 < job.nodes[seed].hub_bytes < size
    assert _hub_bytes(hub, "model.gguf") < 2 * size
    assert all(row.hub_bytes == 0 for node, row in job.nodes.items() if node != seed)


def test_a_bad_reference_is_one_clear_error_before_any_node_starts(
    nodes: LocalCluster, hub: HubEmulator
) -> None:
    hub.add_repo("org/quants", {"m-Q8_0.gguf": GeneratedFile(1000, seed=24)})
    with pytest.raises(RepoNotFoundError, match="org/missing"):
        prefetch("hf:org/missing", display=False)
    # Asked once (each reading of the text once: org/missing, then org with the file missing),
    # by this process: not once per node.
    asked = [r.path for r in hub.requests]
    assert asked and len(asked) == len(set(asked)) <= 2
    with pytest.raises(NotFoundError, match="Q8_0"):
        prefetch("hf:org/quants:Q4_K_M", display=False)
    assert not any(r.origin == "cdn" for r in hub.requests)
    assert all(not any(cache.iterdir()) for cache in nodes.caches.values())


def test_cancel_stops_every_node_and_removes_partial_data(
    nodes: LocalCluster, hub: HubEmulator
) -> None:
    weights = GeneratedFile(6_000_000, seed=25)
    hub.add_repo("org/canceled", {"model.gguf": weights})
    hub.set_throttle(500_000)
    job = prefetch("hf:org/canceled", display=False, connections=1)
    _until(lambda: job.job.progress.downloaded_bytes > 0, "bytes arriving")
    assert job.cancel()
    with pytest.raises(CanceledError):
        job.wait(60)
    assert job.status == "canceled"
    for cache in nodes.caches.values():
        assert not list(cache.rglob("*.nbmodels.part")) and not list(cache.rglob("*.gguf"))


def test_pause_keeps_every_nodes_partial_data_and_resume_completes(
    nodes: LocalCluster, hub: HubEmulator
) -> None:
    weights = GeneratedFile(6_000_000, seed=26)
    hub.add_repo("org/paused", {"model.gguf": weights})
    hub.set_throttle(500_000)
    job = prefetch("hf:org/paused/model.gguf", display=False, connections=1)
    seed_has_bytes = lambda: any(  # noqa: E731
        (_state(c, weights.sha256) or {}).get("done") for c in nodes.caches.values()
    )
    _until(seed_has_bytes, "durable partial data")
    assert job.pause()
    _until(lambda: job.status == "paused", "the prefetch to pause")
    assert {row.status for row in job.nodes.values()} == {"paused"}
    assert seed_has_bytes()  # kept
    hub.set_throttle(None)
    assert job.resume()
    paths = job.wait(120)
    assert job.status == "completed"
    assert all(p.name == "model.gguf" and _sha(p) == weights.sha256 for p in paths.values())
    assert _hub_bytes(hub, "model.gguf") < 2 * len(weights)


def test_the_cli_pulls_onto_every_node_and_prints_a_path_per_node(
    nodes: LocalCluster, hub: HubEmulator
) -> None:
    import io

    from nbmodels.cli._main import main

    hub.add_repo("org/cli", {"model.gguf": GeneratedFile(500_000, seed=27)})
    out, err = io.StringIO(), io.StringIO()
    assert main(["pull", "--cluster", "hf:org/cli/model.gguf", "-q"], out=out, err=err) == 0
    lines = dict(line.split(" ", 1) for line in out.getvalue().splitlines())
    assert set(lines) == set(nodes.caches) and err.getvalue() == ""
    for node, cache in nodes.caches.items():
        assert Path(lines[node]).is_relative_to(cache) and Path(lines[node]).is_file()
    one = next(iter(nodes.caches))
    out = io.StringIO()
    argv = ["pull", "--cluster", "--node", one, "hf:org/cli/model.gguf", "-q"]
    assert main(argv, out=out, err=err) == 0
    assert out.getvalue().split() == [one, lines[one]]
    assert main(["pull", "--node", one, "hf:org/cli/model.gguf"], out=out, err=err) == 2
    assert "--node needs --cluster" in err.getvalue()


def test_the_magic_returns_the_path_per_node_and_its_widget_shows_a_row_per_node(
    nodes: LocalCluster, hub: HubEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from IPython.core.interactiveshell import InteractiveShell

    from nbmodels.notebook._state import job_state

    monkeypatch.setenv("NBMODELS_WIDGETS", "0")
    hub.add_repo("org/magic", {"model.gguf": GeneratedFile(500_000, seed=28)})
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbmodels")
    try:
        paths = shell.run_line_magic("model_download", "--cluster hf:org/magic/model.gguf -q")
        assert set(paths) == set(nodes.caches)
        job = shell.run_line_magic("model_download", "--cluster -b -q hf:org/magic/model.gguf")
        assert isinstance(job, ClusterJob)
        assert job.wait(60) == paths
        assert job.status == "already_downloaded"
    finally:
        shell.run_line_magic("unload_ext", "nbmodels")
    state = job_state(job.job.snapshot())
    assert [f["name"] for f in state["files"]] == [f"node {n[:8]} (127.0.0.1)" for n in job.nodes]
    assert {f["status_label"] for f in state["files"]} == {"already downloaded"}
