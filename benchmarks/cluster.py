"""Cluster prefetch vs every node pulling from the Hub itself, on a local Ray cluster.

    .venv/bin/python benchmarks/cluster.py                    # 1 GiB, 3 nodes: a few minutes
    .venv/bin/python benchmarks/cluster.py --size 256MiB --runs 3 --rate 25MB

Starts the Hub emulator (nbmodels.testing) on 127.0.0.1 with one repository holding one GGUF
file of ``--size`` bytes, its CDN throttled per TCP connection (``--rate``: the per-flow
limit a CDN applies), and a local Ray cluster of ``--nodes`` nodes (``ray.cluster_utils``,
everything on 127.0.0.1), each with its own Hugging Face cache. Then, alternating, from empty
caches:

- ``prefetch``: ``nbmodels.cluster.prefetch(REF, connections=C).wait()`` from the driver;
- ``each node``: a Ray task pinned to every node runs ``nbmodels.resolve(REF,
  connections=C)`` at the same time (what a cluster does without nbmodels.cluster).

For each: seconds until every node holds the verified file, bytes the Hub's CDN sent (from
the emulator's request log), bytes nodes copied from each other. Results go to stdout and
``benchmarks/out/cluster.json``. Needs ``pip install 'nbmodels[ray]'``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
OUT = ROOT / "out"
sys.path.insert(0, str(ROOT.parent))

from tests.ray_cluster import local_cluster  # noqa: E402

REF = "hf:bench/Cluster-GGUF/model.gguf"


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMG]i?B?|B)?", text.strip(), re.IGNORECASE)
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r}")
    unit = (match.group(2) or "B").upper().rstrip("B")
    scale = {"": 1, "K": 1000, "M": 10**6, "G": 10**9, "KI": 1 << 10, "MI": 1 << 20, "GI": 1 << 30}
    return int(float(match.group(1)) * scale[unit])


def pull_on_node(endpoint: str, ref: str, connections: int | None) -> str:
    """What a node does without nbmodels.cluster: download from the Hub itself."""
    os.environ["HF_ENDPOINT"] = endpoint
    import nbmodels

    return str(nbmodels.resolve(ref, connections=connections))


def each_node(ray: Any, caches: dict[str, Path], endpoint: str, connections: int | None) -> None:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(pull_on_node)
    refs = [
        task.options(
            num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
        ).remote(endpoint, REF, connections)
        for node in caches
    ]
    ray.get(refs)


def one_run(kind: str, ctx: dict[str, Any]) -> dict[str, Any]:
    from nbmodels.cluster import prefetch

    hub, ray, caches = ctx["hub"], ctx["ray"], ctx["caches"]
    for cache in caches.values():
        shutil.rmtree(cache, ignore_errors=True)
    hub.clear_log()
    peer_bytes = 0
    t0 = time.perf_counter()
    if kind == "prefetch":
        job = prefetch(REF, connections=ctx["connections"], display=False)
        job.wait()
        peer_bytes = job.to_dict()["peer_bytes"]
    else:
        each_node(ray, caches, hub.endpoint, ctx["connections"])
    seconds = time.perf_counter() - t0
    hub_bytes = sum(r.bytes_sent for r in hub.requests if r.origin == "cdn")
    for cache in caches.values():  # every node holds the whole verified file
        blobs = list(cache.glob("models--*/blobs/*"))
        assert [b.stat().st_size for b in blobs if not b.name.startswith(".")] == [ctx["size"]]
    return {"kind": kind, "seconds": seconds, "hub_bytes": hub_bytes, "peer_bytes": peer_bytes}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=1 << 30, help="file size (1GiB)")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--rate", type=parse_size, default=25 * 10**6,
                        help="CDN limit per TCP connection, bytes/s (25MB)")
    parser.add_argument("--connections", type=int, default=4,
                        help="connections= per file, both ways (4)")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()

    from nbmodels.testing import GeneratedFile, HubEmulator

    root = Path(tempfile.mkdtemp(prefix="nbc-"))
    results: list[dict[str, Any]] = []
    with HubEmulator() as hub:
        os.environ["HF_ENDPOINT"] = hub.endpoint
        hub.add_repo("bench/Cluster-GGUF", {"model.gguf": GeneratedFile(args.size, seed=7)})
        hub.precompute_digests()
        hub.set_throttle(args.rate)
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # every node on 127.0.0.1
        with local_cluster(args.nodes, root) as (ray, caches):
            ctx = {"hub": hub, "ray": ray, "caches": caches, "connections": args.connections,
                   "size": args.size}
            for run in range(args.runs):
                for kind in ("prefetch", "each node"):
                    result = one_run(kind, ctx)
                    results.append({**result, "run": run})
                    print(f"{kind:>10}: {result['seconds']:6.1f} s, Hub sent "
                          f"{result['hub_bytes'] / args.size:.2f}x the file, peers copied "
                          f"{result['peer_bytes'] / args.size:.2f}x", flush=True)
    summary = report(results, args)
    OUT.mkdir(exist_ok=True)
    (OUT / "cluster.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    rows = {}
    print(f"\n{args.nodes} nodes, {args.size / 2**30:.2f} GiB, CDN {args.rate / 1e6:g} MB/s "
          f"per connection, connections={args.connections}, {args.runs} run(s), medians:")
    print("| way | seconds to all nodes ready | Hub (CDN) bytes | bytes between nodes |")
    print("|---|---|---|---|")
    for kind in ("prefetch", "each node"):
        mine = [r for r in results if r["kind"] == kind]
        row = {key: statistics.median(r[key] for r in mine)
               for key in ("seconds", "hub_bytes", "peer_bytes")}
        rows[kind] = row
        print(f"| {kind} | {row['seconds']:.1f} | {row['hub_bytes'] / args.size:.2f}x "
              f"| {row['peer_bytes'] / args.size:.2f}x |")
    return {"args": vars(args), "machine": platform.platform(), "cpus": os.cpu_count(),
            "python": sys.version.split()[0], "runs": results, "medians": rows}


if __name__ == "__main__":
    raise SystemExit(main())
