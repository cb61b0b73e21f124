"""Prefetch a model onto every node of a Ray cluster, with one Hub transfer per file.

    import ray, nbmodels.cluster
    ray.init()                                    # or RAY_ADDRESS; prefetch() calls it if needed
    job = nbmodels.cluster.prefetch("hf:owner/Model-GGUF:Q4_K_M")
    paths = job.wait()                            # {node id: local path on that node}

The caller resolves the reference once (one clear error for a bad one); each node then makes
the files present and verified in its own Hugging Face cache (or ``dir=``): the first node to
verify a file serves it to the others over the cluster network, with the same resumable,
ranged, sha256-verified transfer as from the Hub (docs/cluster.md). Ray is an optional
dependency (``pip install 'nbmodels[ray]'``), imported only when :func:`prefetch` runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import secrets
from collections.abc import Sequence
from typing import Any

from .._config import Settings, env_flag
from .._options import Options
from ..engine import show
from ..errors import NbmodelsError, Option
from ..refs import ModelRef, parse_ref
from ..sources import HubListing, SourceContext, list_hf
from ..transfer import make_client
from ._coordinator import UPLOADS_PER_PEER
from ._job import ClusterJob, NodeProgress
from ._node import job_settings

__all__ = ["UPLOADS_PER_PEER", "ClusterJob", "NodeProgress", "prefetch"]


def prefetch(
    ref: str,
    *,
    nodes: Sequence[str] | None = None,
    uploads_per_peer: int = UPLOADS_PER_PEER,
    **options: Any,
) -> ClusterJob:
    """Make ``ref``'s files present and verified on every alive node of the connected Ray
    cluster (or on ``nodes``, a list of node ids); returns a :class:`ClusterJob` at once.

    The options are :func:`nbmodels.download`'s (``dir``, ``revision``, ``include``,
    ``exclude``, ``sha256``, ``force``, ``connections``, ``token``, ``timeout``, ``retries``,
    ``display``); ``dir`` is a folder on every node. ``uploads_per_peer`` caps the nodes one
    node serves at a time. Resolving the reference happens here, once: a bad reference, a
    missing file or an inaccessible repository raise now, before any node starts. A
    ``token=`` given here travels to the nodes with the task; without it, each node uses its
    own (``HF_TOKEN`` or its login), and only the node that fetches a file from the Hub needs
    one.
    """
    opts = Options.create(**options)
    parsed = _hub_ref(ref, opts)
    if uploads_per_peer < 1:
        raise ValueError(f"uploads_per_peer must be 1 or more, got {uploads_per_peer}")
    listing = _resolve(parsed, opts)
    from ._ray import RayFleet, connect, target_nodes

    ray = connect()
    targets = target_nodes(ray, None if nodes is None else list(nodes))
    fleet = RayFleet(ray, targets, secrets.token_urlsafe(32), uploads_per_peer=uploads_per_peer)

    def again() -> ClusterJob:
        return prefetch(ref, nodes=nodes, uploads_per_peer=uploads_per_peer, **options)

    job = ClusterJob(ref.strip(), opts, targets, listing, fleet, again)
    show(job.job, opts)
    return job


def _hub_ref(ref: str, options: Options) -> ModelRef:
    """The parsed reference, if a cluster prefetch can take it (with these options)."""
    parsed = parse_ref(ref)  # a RefError now
    if parsed.kind != "hf":
        raise NbmodelsError(
            f"A cluster prefetch takes Hugging Face references; {parsed.url} is a plain URL.",
            hint="Download it on each node with nbmodels.download(), e.g. in a Ray task.",
        )
    if options.offline or env_flag("HF_HUB_OFFLINE"):
        raise NbmodelsError(
            "A cluster prefetch resolves the reference with the Hub, so it cannot run offline.",
            hint=("Leave out ", Option("offline", switch=True), " and unset HF_HUB_OFFLINE."),
        )
    if options.extract:
        raise NbmodelsError(
            "A cluster prefetch does not unpack archives.",
            hint=("Leave out ", Option("extract", switch=True), "; unpack on the nodes."),
        )
    return parsed


def _resolve(parsed: ModelRef, options: Options) -> HubListing:
    """Ask the Hub once what ``parsed`` means (on a thread of its own: the caller may be
    running an event loop, as a notebook kernel does)."""
    settings = job_settings(Settings.from_env(), options)

    async def main() -> HubListing:
        client = make_client(settings)
        try:
            return await list_hf(parsed, options, SourceContext(client, settings))
        finally:
            await client.aclose()

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="nbmodels-resolve") as pool:
        return pool.submit(asyncio.run, main()).result()
