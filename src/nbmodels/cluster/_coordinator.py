"""Who fetches which file from where: the one coordinator of a prefetch (a small Ray actor).

Per file (by its cache blob name, the etag), it knows the nodes that hold it verified and the
URL of each one's peer server (the *sources*), the node fetching it from the Hub (the *seed*),
and who is downloading from which source (the *leases*). A node asks :meth:`acquire` for a
file it lacks and is told, when there is something to do:

- ``peer``: the least busy source below :data:`UPLOADS_PER_PEER` downloaders (a lease);
- ``hub``: no node holds the file and none is fetching it: this node is its seed. The Hub
  sees the file once; every other node waits for a source. No node is made a seed before
  every node of the prefetch has said what it holds already (:meth:`ready`, or is lost): a
  file some node has is never fetched from the Hub;
- ``fail``: the seed met an error that every node would meet (a missing file, no access, a
  digest that does not match): one error, not one per node.

A node that verified a file serves it (under the file's one :meth:`validator`) and becomes a
source (:meth:`verified`): so the holders double, roughly,
each time a round of copies ends (a fan-out tree). A source that fails a download
(:meth:`source_failed`: its node or server went away, or it sent wrong bytes) is forgotten, and
the node asks again: another source, else the Hub. A node that is gone (:meth:`node_lost`)
loses its sources and its seeds; a node whose worker restarted (:meth:`hello`) loses only its
leases: it keeps its seeds and resumes them from its partial data.

Nodes also push their progress rows (:meth:`report`); the driver long-polls them
(:meth:`updates`), so progress streams back without anyone polling the nodes' disks.

Everything here is plain asyncio and data: no Ray, no I/O (the tests drive it directly).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["UPLOADS_PER_PEER", "Coordinator", "Source"]

#: Downloaders one peer serves at a time (each may open a few connections).
UPLOADS_PER_PEER = 2
#: How long one :meth:`Coordinator.acquire` waits before the node asks again (and reports).
ACQUIRE_WAIT = 5.0


@dataclass(frozen=True, slots=True)
class Source:
    """Where a node gets one file: ``hub``, ``peer`` (``url`` of ``node``), ``fail`` (``error``),
    or ``wait`` (nothing yet: ask again)."""

    kind: Literal["hub", "peer", "fail", "wait"]
    url: str | None = None
    node: str | None = None
    validator: str | None = None
    error: str | None = None


@dataclass(slots=True)
class _File:
    #: node id -> its peer server's URL for this file
    sources: dict[str, str] = field(default_factory=dict)
    seed: str | None = None
    #: The validator every source serves the file under (the first one known).
    validator: str | None = None
    error: str | None = None


class Coordinator:
    """The state of one prefetch (see the module's docstring). Every method is a coroutine, so
    a Ray async actor runs them on one loop, one at a time between awaits."""

    def __init__(self, nodes: Iterable[str] = (), uploads_per_peer: int = UPLOADS_PER_PEER) -> None:
        self.uploads_per_peer = uploads_per_peer
        #: Nodes that have not yet said what they hold (none lost meanwhile).
        self._unready = set(nodes)
        self._files: dict[str, _File] = {}
        self._uploads: Counter[str] = Counter()
        #: (node, etag) -> the source URL it downloads from
        self._leases: dict[tuple[str, str], str] = {}
        #: node -> the id of its current run
        self._current: dict[str, str] = {}
        self._rows: dict[str, dict[str, Any]] = {}
        self._version = 0
        #: Set (and replaced by a new one) at every change: what waiting calls wait on.
        self._changed = asyncio.Event()

    # -- the nodes' questions -------------------------------------------------------------------

    async def hello(self, node: str, run: str | None = None) -> None:
        """Run ``run`` starts (or ended) on ``node`` (the first, or after its worker restarted,
        or a resume): the leases of an earlier run there are over, and the questions an earlier
        run left behind get no source any more."""
        if run is not None:
            self._current[node] = run
        for key in [k for k in self._leases if k[0] == node]:
            self._release(*key)
        await self._notify()

    async def ready(self, node: str) -> None:
        """``node`` has offered every file it holds already (:meth:`verified`)."""
        self._unready.discard(node)
        await self._notify()

    async def acquire(
        self, node: str, etag: str, wait: float = ACQUIRE_WAIT, run: str | None = None
    ) -> Source:
        """Where ``node`` gets the file ``etag``; waits up to ``wait`` seconds for a source
        (then ``wait``: the node asks again). A question of a run that is over (another one
        said :meth:`hello` since: a pause and resume, a restarted worker) gets ``wait``: a
        lease taken for it would never be used nor given back."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            if run is not None and self._current.get(node, run) != run:
                return Source("wait")
            source = self._decide(node, etag)
            left = deadline - loop.time()
            if source.kind != "wait" or left <= 0:
                return source
            await self._change(left)

    def _decide(self, node: str, etag: str) -> Source:
        f = self._files.setdefault(etag, _File())
        if f.error is not None:
            return Source("fail", error=f.error)
        free = [
            (self._uploads[url], peer, url)
            for peer, url in f.sources.items()
            if peer != node and self._uploads[url] < self.uploads_per_peer
        ]
        if free:
            _, peer, url = min(free)
            self._release(node, etag)
            self._leases[(node, etag)] = url
            self._uploads[url] += 1
            return Source("peer", url=url, node=peer, validator=f.validator)
        if not f.sources and f.seed in (None, node) and not self._unready:
            f.seed = node
            return Source("hub", validator=f.validator)
        return Source("wait")

    async def validator(self, etag: str, proposed: str | None) -> str:
        """The validator every source serves ``etag`` under: the first one known (``proposed``,
        what a node's transfer recorded, when none is; the quoted etag when neither is). A
        transfer can then resume across sources, the Hub's included when the first was its."""
        f = self._files.setdefault(etag, _File())
        f.validator = f.validator or proposed or f'"{etag}"'
        return f.validator

    async def verified(self, node: str, etag: str, url: str) -> None:
        """``node`` holds the file verified and serves it at ``url`` (already: a download may
        start as soon as this returns)."""
        f = self._files.setdefault(etag, _File())
        f.sources[node] = url
        if f.seed == node:
            f.seed = None
        self._release(node, etag)
        await self._notify()

    async def release(self, node: str, etag: str) -> None:
        """``node`` stopped downloading ``etag`` without a verdict on its source."""
        self._release(node, etag)
        await self._notify()

    async def source_failed(self, node: str, etag: str, url: str) -> None:
        """A download by ``node`` from ``url`` failed: forget that source for every file."""
        for f in self._files.values():
            for peer in [p for p, u in f.sources.items() if _base(u) == _base(url)]:
                del f.sources[peer]
        self._release(node, etag)
        await self._notify()

    async def file_failed(self, node: str, etag: str, error: str, fatal: bool) -> None:
        """``node`` could not get ``etag``; ``fatal``: from the Hub, for a reason every node
        would meet (then every node that asks is told so)."""
        f = self._files.setdefault(etag, _File())
        if f.seed == node:
            f.seed = None
        if fatal:
            f.error = error
        self._release(node, etag)
        await self._notify()

    async def node_lost(self, node: str) -> None:
        """``node`` is gone: its sources, seeds and leases with it."""
        self._unready.discard(node)
        for f in self._files.values():
            f.sources.pop(node, None)
            if f.seed == node:
                f.seed = None
        for key in [k for k in self._leases if k[0] == node]:
            self._release(*key)
        await self._notify()

    def _release(self, node: str, etag: str) -> None:
        url = self._leases.pop((node, etag), None)
        if url is not None:
            self._uploads[url] -= 1
            if self._uploads[url] <= 0:
                del self._uploads[url]

    # -- progress -------------------------------------------------------------------------------

    async def report(self, node: str, row: dict[str, Any]) -> None:
        """The latest progress row of ``node``."""
        self._rows[node] = row
        await self._notify()

    async def updates(self, since: int, wait: float = 1.0) -> tuple[int, dict[str, Any]]:
        """``(version, rows)`` once something changed after version ``since`` (or after
        ``wait`` seconds): the rows of every node that reported, and the sources per file."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while self._version <= since and (left := deadline - loop.time()) > 0:
            await self._change(left)
        return self._version, {
            "rows": dict(self._rows),
            "sources": {e: sorted(f.sources) for e, f in self._files.items()},
            "seeds": {e: f.seed for e, f in self._files.items() if f.seed is not None},
        }

    async def _notify(self) -> None:
        self._version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def _change(self, wait: float) -> None:
        """Until the next change, or ``wait`` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):  # not wait_for: on 3.11 it can lose a cancel
                await self._changed.wait()


def _base(url: str) -> str:
    """A peer server's address (the URL without its ``/blobs/...`` path)."""
    return url.rsplit("/blobs/", 1)[0]
