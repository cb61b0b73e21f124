"""The actor each node of a prefetch runs (a Ray async actor, pinned to its node).

It owns the node's peer server for the whole prefetch (a node that is done keeps serving the
others until the driver ends the prefetch), and one :class:`~._node.NodeRun` at a time, which
the driver can stop (pause: partial data kept; cancel: removed). When Ray restarts the actor
after its worker died, the driver's ``run`` call is retried on the new one and the node
resumes from the partial data on its disk.

Nothing here imports Ray at module level: :mod:`._ray` wraps this class with ``ray.remote``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from .._options import Options
from ..sources import HubListing
from ._coordinator import UPLOADS_PER_PEER
from ._node import ActorLink, NodeRun, discard_partial
from ._peer import PeerServer

__all__ = ["NodeAgent"]


class NodeAgent:
    """One node's side of a prefetch (see the module's docstring)."""

    def __init__(
        self,
        node: str,
        secret: str,
        *,
        uploads_per_peer: int = UPLOADS_PER_PEER,
        host: str | None = None,
        peer_rate: int | None = None,
    ) -> None:
        self.node = node
        self._secret = secret
        self._uploads = uploads_per_peer
        self._host = host
        self._peer_rate = peer_rate
        self._server: PeerServer | None = None
        self._run: NodeRun | None = None
        self._task: asyncio.Task[dict[str, Any]] | None = None

    def __repr__(self) -> str:  # never the secret
        return f"<nbmodels NodeAgent {self.node[:12]}>"

    def _peer_server(self) -> PeerServer:
        if self._server is None:
            host = self._host or _node_address()
            self._server = PeerServer(
                host, self._secret, uploads=self._uploads, rate=self._peer_rate
            )
        return self._server

    async def run(self, listing: HubListing, options: Options, coordinator: Any) -> dict[str, Any]:
        """Make the listing's files present and verified here; the node's outcome row."""
        run = NodeRun(
            self.node,
            listing,
            options,
            ActorLink(coordinator),
            self._peer_server(),
            secret=self._secret,
        )
        self._run = run
        self._task = asyncio.get_running_loop().create_task(run.run())
        return await asyncio.shield(self._task)

    async def stop(self, discard: bool) -> None:
        """Stop the current run: keep its partial data (pause) or remove it (cancel)."""
        if self._run is not None and self._task is not None and not self._task.done():
            self._run.discard = discard
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def discard(self, listing: HubListing, options: Options) -> None:
        """Remove the partial data of ``listing`` here (a canceled prefetch that was paused)."""
        await self.stop(discard=True)
        await discard_partial(listing, options)

    async def close(self) -> None:
        """The prefetch is over: stop serving."""
        await self.stop(discard=False)
        if self._server is not None:
            await asyncio.to_thread(self._server.stop)
            self._server = None

    async def pid(self) -> int:
        """The worker process of this actor (tests kill it)."""
        return os.getpid()


def _node_address() -> str:
    """This node's address in the cluster, as Ray knows it."""
    from ._ray import node_address

    return node_address()
