"""A cluster prefetch at 100 nodes, simulated in one process (docs/cluster.md).

    .venv/bin/python benchmarks/cluster_sim.py                 # 100 nodes: a few minutes
    .venv/bin/python benchmarks/cluster_sim.py --nodes 30 --fanouts 1 2

No Ray: the real coordinator (``nbmodels.cluster._coordinator``), the real per-node runs
(``NodeRun``: plan, FileTransfer from the Hub or a peer, verify, publish, serve) and real peer
servers, one per simulated node, each node with its own folder (``dir=``), all in this
process on 127.0.0.1, against the Hub emulator. What Ray adds (placing actors, carrying calls)
is left out; what decides the shape and the time of a prefetch is in.

Bandwidth model: a node's upload link is ``--uplink`` bytes/s. With ``uploads_per_peer=k`` a
peer serves k nodes at once, each connection throttled to uplink/k (one connection per file,
``connections=1``), so a peer never sends more than its uplink. The Hub's CDN is throttled
per connection (``--hub-rate``) with no overall limit, as a CDN behaves. Runs, each from
empty folders:

- ``fan-out k`` for each ``--fanouts`` k: the prefetch as built (holders double, triple, ...
  each round: a tree);
- ``one seed``: k = nodes - 1, every node copies from the first holder at once;
- ``each node from the Hub``: every node fetches the file from the Hub itself.

Reported: seconds until every node holds the verified file (and when the first, median and
last node got it), bytes the Hub sent, the depth of the copy tree (hops from the Hub), and
the most downloads one peer served at once. ``benchmarks/out/cluster_sim.json`` keeps it all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from nbmodels._config import Settings
from nbmodels._options import Options
from nbmodels.cluster._coordinator import Coordinator
from nbmodels.cluster._node import LocalLink, NodeRun
from nbmodels.cluster._peer import PeerServer
from nbmodels.refs import parse_ref
from nbmodels.sources import HubListing, SourceContext, list_hf
from nbmodels.testing import GeneratedFile, HubEmulator
from nbmodels.transfer import make_client

OUT = Path(__file__).resolve().parent / "out"
SECRET = "simulation"
REF = "hf:sim/Model-GGUF/model.gguf"


async def listing_of(ref: str, settings: Settings) -> HubListing:
    client = make_client(settings)
    try:
        return await list_hf(parse_ref(ref), Options(), SourceContext(client, settings))
    finally:
        await client.aclose()


class Peak:
    """The most downloads each peer served at once (from the coordinator's leases)."""

    def __init__(self, coordinator: Coordinator) -> None:
        self.coordinator = coordinator
        self.most = 0

    async def watch(self) -> None:
        while True:
            counts = Counter(self.coordinator._leases.values())
            self.most = max([self.most, *counts.values()])
            await asyncio.sleep(0.05)


async def prefetch(
    listing: HubListing, root: Path, nodes: int, fanout: int, rate: int, settings: Settings
) -> dict[str, Any]:
    """Every node at once; fanout 0: every node from the Hub (each its own coordinator)."""
    names = [f"node{i}" for i in range(nodes)]
    shared = Coordinator(names, max(1, fanout))
    servers = [PeerServer("127.0.0.1", SECRET, uploads=max(1, fanout), rate=rate) for _ in names]
    runs = [
        NodeRun(
            name,
            listing,
            Options(dir=root / name, connections=1),
            LocalLink(shared if fanout else Coordinator([name])),
            servers[i],
            secret=SECRET,
            settings=settings,
        )
        for i, name in enumerate(names)
    ]
    peak = Peak(shared)
    watcher = asyncio.get_running_loop().create_task(peak.watch())
    t0 = time.perf_counter()
    ready: dict[str, float] = {}

    async def one(run: NodeRun) -> dict[str, Any]:
        outcome = await run.run()
        ready[run.node] = time.perf_counter() - t0
        return outcome

    try:
        outcomes = await asyncio.gather(*(one(r) for r in runs))
    finally:
        watcher.cancel()
        for server in servers:
            await asyncio.to_thread(server.stop)
    failed = [o["error"] for o in outcomes if o["status"] not in ("completed",)]
    if failed:
        raise RuntimeError(f"{len(failed)} nodes failed: {failed[0]}")
    times = sorted(ready.values())
    return {
        "seconds": times[-1],
        "first": times[0],
        "median": statistics.median(times),
        "depth": tree_depth(dict(zip(names, outcomes, strict=True))),
        "peak_uploads": peak.most,
        "peer_bytes": sum(o["peer_bytes"] for o in outcomes),
    }


def tree_depth(outcomes: dict[str, dict[str, Any]]) -> int:
    """Hops from the Hub to the farthest node (a node's parent: the peer it copied from)."""
    parent = {}
    for node, outcome in outcomes.items():
        peers = [s.removeprefix("peer ") for s in outcome["sources"] if s.startswith("peer ")]
        parent[node] = peers[-1] if peers else None

    def depth(node: str) -> int:
        up = parent[node]
        return 1 if up is None else 1 + depth(up)

    return max(depth(n) for n in outcomes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--size", type=int, default=8_000_000, help="file bytes (8 MB)")
    parser.add_argument("--uplink", type=int, default=4_000_000,
                        help="a node's upload link, bytes/s (4 MB/s)")
    parser.add_argument("--hub-rate", type=int, default=4_000_000,
                        help="the CDN's limit per connection, bytes/s (4 MB/s)")
    parser.add_argument("--fanouts", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--no-one-seed", action="store_true", help="skip the one-seed run")
    args = parser.parse_args()
    settings = Settings(read_timeout=120.0)
    plans: list[tuple[str, int]] = [(f"fan-out {k}", k) for k in args.fanouts]
    if not args.no_one_seed:
        plans.append(("one seed", args.nodes - 1))
    plans.append(("each node from the Hub", 0))
    results = []
    with HubEmulator() as hub:
        os.environ["HF_ENDPOINT"] = hub.endpoint
        hub.add_repo("sim/Model-GGUF", {"model.gguf": GeneratedFile(args.size, seed=3)})
        hub.set_throttle(args.hub_rate)
        listing = asyncio.run(listing_of(REF, settings))
        for name, k in plans:
            root = Path(tempfile.mkdtemp(prefix="nbsim-"))
            hub.clear_log()
            rate = args.uplink // max(1, k)
            try:
                row = asyncio.run(prefetch(listing, root, args.nodes, k, rate, settings))
            finally:
                shutil.rmtree(root, ignore_errors=True)
            row.update(way=name, hub_bytes=sum(
                r.bytes_sent for r in hub.requests if r.origin == "cdn"
            ))
            results.append(row)
            print(f"{name:>24}: all ready in {row['seconds']:6.1f} s (first {row['first']:.1f}, "
                  f"median {row['median']:.1f}), Hub sent {row['hub_bytes'] / args.size:.2f}x, "
                  f"tree depth {row['depth']}, peak uploads/peer {row['peak_uploads']}",
                  flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "cluster_sim.json").write_text(json.dumps({
        "args": vars(args), "machine": platform.platform(), "cpus": os.cpu_count(),
        "python": sys.version.split()[0], "results": results,
    }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
