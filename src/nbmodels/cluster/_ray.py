"""Everything that touches Ray, in one module, imported only when a cluster feature is used.

- :func:`ray_module`: ``import ray``, or a clear error saying how to install it;
- :func:`connect`: the driver joins the cluster (``ray.init()``'s own rules: ``RAY_ADDRESS``,
  else the cluster started on this machine, else a new local one) unless it already did;
- :func:`target_nodes`: the alive nodes, or the ids asked for (checked);
- :class:`RayFleet`: the coordinator actor and one :class:`~._agent.NodeAgent` per node, pinned
  with ``NodeAffinitySchedulingStrategy(soft=False)``; restarted by Ray when their worker dies
  (the driver's calls are retried on the new worker), killed when the prefetch ends.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from .._options import Options
from .._redact import redact_text
from ..errors import NbmodelsError
from ..sources import HubListing
from ._agent import NodeAgent
from ._coordinator import Coordinator

__all__ = ["NodeInfo", "RayFleet", "connect", "node_address", "ray_module", "target_nodes"]

#: Times Ray restarts a node's actor (and retries the driver's call) after its worker died.
RESTARTS = 3


def ray_module() -> Any:
    """``ray``, imported now (it is an optional dependency)."""
    try:
        import ray
    except ImportError as exc:
        raise NbmodelsError(
            f"nbmodels.cluster needs Ray, which cannot be imported here ({exc}).",
            hint="Install it with `pip install 'nbmodels[ray]'` on the driver and every node.",
        ) from exc
    return ray


def connect() -> Any:
    """The ``ray`` module, its driver connected to a cluster."""
    ray = ray_module()
    if not ray.is_initialized():
        ray.init()
    return ray


def node_address() -> str:
    """This node's address in the cluster (where its peer server listens)."""
    return str(ray_module().util.get_node_ip_address())


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A node of the cluster: its id (hex) and address."""

    id: str
    address: str

    @property
    def label(self) -> str:
        """What a progress row shows: ``node 1a2b3c4d (10.0.0.5)``."""
        return f"node {self.id[:8]} ({self.address})"


def target_nodes(ray: Any, wanted: list[str] | None) -> list[NodeInfo]:
    """The alive nodes (the driver's first), or the ``wanted`` ones; an unknown or dead id is
    a clear error naming the alive ones."""
    alive = [
        NodeInfo(str(n["NodeID"]), str(n.get("NodeManagerAddress") or "?"))
        for n in ray.nodes()
        if n.get("Alive")
    ]
    here = ray.get_runtime_context().get_node_id()
    alive.sort(key=lambda n: (n.id != here, n.id))
    if not alive:
        raise NbmodelsError("The Ray cluster has no alive node.", hint="Check `ray status`.")
    if wanted is None:
        return alive
    if not wanted:
        raise ValueError("nodes is an empty list: give node ids, or None for every alive node")
    by_id = {n.id: n for n in alive}
    missing = [w for w in wanted if w not in by_id]
    if missing:
        shown = ", ".join(n.id for n in alive)
        raise NbmodelsError(
            f"No alive Ray node has the id {missing[0]!r}.",
            hint=f"The alive nodes are: {shown} (`ray.nodes()`).",
        )
    return [by_id[w] for w in dict.fromkeys(wanted)]


class RayFleet:
    """The actors of one prefetch: the coordinator (near the driver) and one agent per node."""

    def __init__(
        self, ray: Any, nodes: list[NodeInfo], secret: str, *, uploads_per_peer: int
    ) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self.ray = ray
        here = ray.get_runtime_context().get_node_id()
        self.coordinator = (
            ray.remote(Coordinator)
            .options(
                num_cpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True),
            )
            .remote([n.id for n in nodes], uploads_per_peer)
        )
        agent = ray.remote(NodeAgent)
        self.agents: dict[str, Any] = {
            n.id: agent.options(
                num_cpus=0,
                max_restarts=RESTARTS,
                max_task_retries=RESTARTS,
                scheduling_strategy=NodeAffinitySchedulingStrategy(n.id, soft=False),
            ).remote(n.id, secret, uploads_per_peer=uploads_per_peer)
            for n in nodes
        }

    def start(
        self, listing: HubListing, options: Options, nodes: list[str] | None = None
    ) -> dict[Any, str]:
        """Start the run of every node (or of ``nodes``): ``{ObjectRef: node id}``."""
        return {
            agent.run.remote(listing, options, self.coordinator): node
            for node, agent in self.agents.items()
            if nodes is None or node in nodes
        }

    def discard(self, listing: HubListing, options: Options, nodes: list[str]) -> None:
        """Remove the partial data ``nodes`` kept for ``listing`` (cancel after a pause)."""
        self._quietly([self.agents[n].discard.remote(listing, options) for n in nodes])

    def updates(self, since: int, wait: float) -> tuple[int, dict[str, Any]]:
        if not self.ray.is_initialized():  # else the next call would connect again, quietly
            raise NbmodelsError(
                "This process left the Ray cluster (ray.shutdown()) while the prefetch ran.",
                hint="The nodes keep their partial data: connect again and prefetch again.",
            )
        result: tuple[int, dict[str, Any]] = self.ray.get(
            self.coordinator.updates.remote(since, wait), timeout=wait + 30
        )
        return result

    def finished(self, runs: dict[Any, str], wait: float = 0.0) -> list[Any]:
        """The runs that ended (within ``wait`` seconds)."""
        if not runs:
            return []
        done, _ = self.ray.wait(list(runs), num_returns=len(runs), timeout=wait)
        return list(done)

    def outcome(self, ref: Any) -> dict[str, Any]:
        """A run's outcome row; a node whose actor could not go on (its node died, its worker
        died too often) is a failed row saying so."""
        try:
            row: dict[str, Any] = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            first = redact_text((str(exc).strip().splitlines() or [type(exc).__name__])[0])[:300]
            return {
                "status": "failed",
                "error": f"The node's actor ended ({type(exc).__name__}): {first}",
                "error_type": "NbmodelsError",
                "lost": True,
            }
        return row

    def node_lost(self, node: str) -> None:
        self.coordinator.node_lost.remote(node)

    def stop(self, discard: bool) -> None:
        """Stop every node's run (pause or cancel) and wait for them to say so."""
        refs = [a.stop.remote(discard) for a in self.agents.values()]
        self._quietly(refs)

    def close(self) -> None:
        """Stop the peer servers, then end every actor of the prefetch (the actors of a
        driver that left the cluster are ended by Ray already)."""
        if not self.ray.is_initialized():
            return
        self._quietly([a.close.remote() for a in self.agents.values()])
        for actor in [*self.agents.values(), self.coordinator]:
            with contextlib.suppress(Exception):  # already gone: nothing to end
                self.ray.kill(actor, no_restart=True)

    def _quietly(self, refs: list[Any], timeout: float = 30.0) -> None:
        """Wait for ``refs``; the actors of dead nodes do not answer, and need not."""
        for ref in refs:
            try:
                self.ray.get(ref, timeout=timeout)
            except Exception:  # noqa: BLE001, S112 - see the docstring
                continue
