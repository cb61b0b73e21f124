"""A local multi-node Ray cluster (``ray.cluster_utils.Cluster``, every node on 127.0.0.1),
each node with its own Hugging Face cache and ``$NBMODELS_HOME``: for ``tests/test_cluster.py``
and ``benchmarks/cluster.py``. Needs ``pip install 'nbmodels[ray]'``."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["local_cluster"]


@contextlib.contextmanager
def local_cluster(
    nodes: int, root: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[Any, dict[str, Path]]]:
    """``nodes`` nodes with their homes under ``root`` (keep it short: Ray's socket paths live
    under it), the driver connected: ``(ray, {node id: that node's Hugging Face cache})``.
    ``env`` is added to every node's environment. On exit the driver leaves, the nodes stop
    and ``root`` is removed."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(shutdown_at_exit=True)
    caches: dict[str, Path] = {}
    try:
        for i in range(nodes):
            home = root / f"node{i}"
            node_env = {
                "HF_HOME": str(home / "hf"),
                "HF_HUB_CACHE": str(home / "hf" / "hub"),
                "NBMODELS_HOME": str(home / "nbhome"),
                "HF_HUB_DISABLE_TELEMETRY": "1",
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # every node on 127.0.0.1
                **(env or {}),
            }
            args: dict[str, Any] = {"num_cpus": 1, "env_vars": node_env}
            if i == 0:
                args["temp_dir"] = str(root / "ray")
            node = cluster.add_node(**args)
            caches[node.node_id] = home / "hf" / "hub"
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
        yield ray, caches
    finally:
        ray.shutdown()
        try:
            cluster.shutdown()
        finally:
            shutil.rmtree(root, ignore_errors=True)
