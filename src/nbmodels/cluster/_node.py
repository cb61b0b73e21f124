"""One node's part of a prefetch: plan the listing here, fetch what is missing from where the
coordinator says, serve what is verified, report progress.

For each file of the listing (:func:`nbmodels.sources.plan_listing`: this node's cache or
``dir=``, nothing asked of the Hub):

- already here and verified: served to the other nodes at once; no byte moves;
- else, under the file's cross-process lock (huggingface_hub's lock path), ask the coordinator
  for a source and run the same :class:`~nbmodels.transfer.FileTransfer` the engine runs: from
  the Hub (this node is the file's seed), or from a peer's URL (``FileSpec.via``: same target,
  digests and resume key, so partial data carries over from one source to the next). A peer
  that fails (gone, or wrong bytes) is reported and the node asks again: another peer, else
  the Hub. Once verified and published, the snapshot is linked as usual and the file served.

The coordinator is reached through a :class:`Link` (a Ray actor handle on a cluster; the
object itself in tests), so this module knows nothing of Ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .._aio import pick_error
from .._config import Settings
from .._options import Options
from .._progress import SpeedMeter, Status
from ..engine import discard_file, file_lock
from ..errors import AccessError, IntegrityError, NbmodelsError, NetworkError, NotFoundError
from ..hub import HubEntry
from ..sources import HubListing, Plan, PlannedFile, SourceContext, plan_listing
from ..transfer import (
    Credential,
    FileSpec,
    FileTransfer,
    PartialState,
    TransferResult,
    make_client,
    origin_of,
)
from ._coordinator import ACQUIRE_WAIT, Source
from ._peer import PeerServer, Served

__all__ = [
    "PEER_CONNECTIONS",
    "ActorLink",
    "Link",
    "LocalLink",
    "NodeRun",
    "discard_partial",
    "job_settings",
]

#: Files of one node fetched at the same time (as the engine does for a job).
FILES_PER_NODE = 4
#: Connections per file from one peer (unless ``connections=`` says otherwise).
PEER_CONNECTIONS = 8
#: Errors from the Hub that every node would meet: the coordinator tells the others at once.
_FATAL = (NotFoundError, AccessError, IntegrityError)


class Link(Protocol):
    """How a node calls the coordinator."""

    async def call(self, method: str, *args: Any) -> Any: ...


class LocalLink:
    """The coordinator object itself (tests, and the simulation)."""

    def __init__(self, coordinator: Any) -> None:
        self.coordinator = coordinator

    async def call(self, method: str, *args: Any) -> Any:
        result = getattr(self.coordinator, method)(*args)
        return await result if inspect.isawaitable(result) else result


class ActorLink:
    """A Ray actor handle of the coordinator (its ObjectRefs are awaitable)."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    async def call(self, method: str, *args: Any) -> Any:
        return await getattr(self.handle, method).remote(*args)


@dataclass(slots=True)
class _Tally:
    """This node's progress: bytes on disk per file, which sources it used, what moved."""

    sizes: dict[str, int]
    done: dict[str, int] = dataclasses.field(default_factory=dict)
    sources: set[str] = dataclasses.field(default_factory=set)
    hub_bytes: int = 0
    peer_bytes: int = 0
    waiting: int = 0

    @property
    def downloaded(self) -> int:
        return sum(self.done.values())

    @property
    def total(self) -> int:
        return sum(self.sizes.values())


class NodeRun:
    """The prefetch on one node (see the module's docstring). :meth:`run` returns the node's
    outcome as plain data (``status``, ``path``, ``error``, bytes from the Hub and from peers)."""

    def __init__(
        self,
        node: str,
        listing: HubListing,
        options: Options,
        link: Link,
        server: PeerServer,
        *,
        secret: str,
        settings: Settings | None = None,
    ) -> None:
        self.node = node
        self.listing = listing
        self.options = options
        self.link = link
        self.server = server
        self.secret = secret
        self.settings = job_settings(settings or Settings.from_env(), options)
        self.tally = _Tally({e.etag: e.size for e in listing.files})
        self.meter = SpeedMeter(stall_after=self.settings.stall_after)
        self.status = Status.RESOLVING
        self.path: Path | None = None
        self.error: NbmodelsError | None = None
        #: Set before cancelling the run: remove the partial data (cancel), or keep it (pause).
        self.discard = False
        self._changed = asyncio.Event()
        self.run_id = uuid.uuid4().hex[:12]

    # -- the run --------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        reporter = asyncio.get_running_loop().create_task(self._report_loop())
        try:
            await self.link.call("hello", self.node, self.run_id)
            await self._run()
        except asyncio.CancelledError:
            self.status = Status.CANCELED if self.discard else Status.PAUSED
        except NbmodelsError as exc:
            self.status, self.error = Status.FAILED, exc
        except Exception as exc:  # noqa: BLE001 - an OS error or a bug: the row says which
            self.status = Status.FAILED
            self.error = NbmodelsError(f"{type(exc).__name__}: {exc}")
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
        with contextlib.suppress(Exception):
            # Whatever ended the run: it offers nothing more (no node waits for it to be
            # ready), and no lease of it outlives it.
            await self.link.call("ready", self.node)
            await self.link.call("hello", self.node)
            await self.link.call("report", self.node, self.row())
        return self.row()

    async def _run(self) -> None:
        async with _client(self.settings) as client:
            ctx = SourceContext(client, self.settings)
            plan = await plan_listing(self.listing, self.options, ctx)
            self.status = Status.DOWNLOADING
            self._changed.set()
            pairs = list(zip(self.listing.files, plan.files, strict=True))
            for entry, planned in pairs:
                if planned.spec is None:
                    await self._have(entry, planned.path)
            await self.link.call("ready", self.node)
            limit = asyncio.Semaphore(FILES_PER_NODE)

            async def one(entry: HubEntry, planned: PlannedFile) -> None:
                async with limit:
                    await self._file(entry, planned, client)

            try:
                async with asyncio.TaskGroup() as group:
                    for entry, planned in pairs:
                        if planned.spec is not None:
                            group.create_task(one(entry, planned))
            except BaseExceptionGroup as eg:
                raise pick_error(eg, asyncio.CancelledError, NbmodelsError) from None
        await self._finish(plan)

    async def _finish(self, plan: Plan) -> None:
        if plan.finish is not None:
            await asyncio.to_thread(plan.finish)
        self.path = plan.primary
        moved = self.tally.hub_bytes + self.tally.peer_bytes
        fetched = any(f.spec is not None for f in plan.files)
        self.status = Status.COMPLETED if fetched or moved else Status.ALREADY_DOWNLOADED

    # -- one file -------------------------------------------------------------------------------

    async def _have(self, entry: HubEntry, path: Path) -> None:
        """A file already here and verified: counted, and offered to the other nodes."""
        self.tally.done[entry.etag] = entry.size
        self.tally.sources.add("disk")
        await self._serve(entry, path, None)

    async def _file(self, entry: HubEntry, planned: PlannedFile, client: Any) -> None:
        """A file this node lacks: under its lock, unless another process finished it
        meanwhile, fetch it (from a peer or the Hub), then offer it."""
        spec = planned.spec
        assert spec is not None
        async with file_lock(spec):
            if planned.recheck is not None and await asyncio.to_thread(planned.recheck):
                result = None
            else:
                result = await self._fetch(entry, spec, client)
                if planned.after is not None:
                    await asyncio.to_thread(planned.after, result)
        if result is None:
            await self._have(entry, planned.path)
        else:
            await self._serve(entry, planned.path, result.validator)

    async def _serve(self, entry: HubEntry, path: Path, validator: str | None) -> None:
        """Offer a verified file to the other nodes, under the prefetch's validator for it."""
        canonical = await self.link.call("validator", entry.etag, validator)
        url = self.server.add(entry.etag, Served(path, entry.size, canonical))
        await self.link.call("verified", self.node, entry.etag, url)
        self._changed.set()

    async def _fetch(self, entry: HubEntry, spec: FileSpec, client: Any) -> TransferResult:
        """Ask for a source and fetch from it until the file is verified here."""
        while True:
            self.tally.waiting += 1
            self._changed.set()
            try:
                source: Source = await self.link.call(
                    "acquire", self.node, entry.etag, ACQUIRE_WAIT, self.run_id
                )
            finally:
                self.tally.waiting -= 1
            if source.kind == "wait":
                continue
            if source.kind == "fail":
                raise NbmodelsError(source.error or f"{entry.path} could not be fetched.")
            if source.kind == "hub":
                return await self._from_hub(entry, spec, client)
            result = await self._from_peer(entry, spec, client, source)
            if result is not None:
                return result

    async def _from_hub(self, entry: HubEntry, spec: FileSpec, client: Any) -> TransferResult:
        self.tally.sources.add("hub")
        try:
            return await self._transfer(entry, spec, client, self.settings, "hub")
        except NbmodelsError as exc:
            fatal = isinstance(exc, _FATAL)
            await self.link.call("file_failed", self.node, entry.etag, str(exc), fatal)
            raise

    async def _from_peer(
        self, entry: HubEntry, spec: FileSpec, client: Any, source: Source
    ) -> TransferResult | None:
        """The file from a peer; None when that peer failed (the node asks again)."""
        assert source.url is not None
        self.tally.sources.add(f"peer {source.node or ''}".strip())
        credential = Credential(self.secret, origin_of(source.url))
        settings = dataclasses.replace(self.settings, max_attempts=2, refused_attempts=1)
        via = spec.via(source.url, credential)
        try:
            return await self._transfer(entry, via, client, settings, "peer")
        except (NetworkError, IntegrityError) as exc:
            if isinstance(exc, IntegrityError):  # the peer's bytes are not the file's
                await asyncio.to_thread(PartialState.discard, spec.target)
            await self.link.call("source_failed", self.node, entry.etag, source.url)
            return None
        except NbmodelsError:
            await self.link.call("release", self.node, entry.etag)
            raise

    async def _transfer(
        self, entry: HubEntry, spec: FileSpec, client: Any, settings: Settings, kind: str
    ) -> TransferResult:
        def on_progress(downloaded: int, _total: int | None) -> None:
            self.tally.done[entry.etag] = downloaded
            self.meter.add(self.tally.downloaded)

        connections = self.options.connections
        if kind == "peer" and connections is None:
            connections = PEER_CONNECTIONS
        transfer = FileTransfer(
            spec, client, settings, connections=connections, on_progress=on_progress
        )
        try:
            return await transfer.run()
        except asyncio.CancelledError:
            if self.discard:
                await asyncio.shield(asyncio.to_thread(PartialState.discard, spec.target))
            raise
        finally:
            if kind == "hub":
                self.tally.hub_bytes += transfer.transferred
            else:
                self.tally.peer_bytes += transfer.transferred

    # -- progress -------------------------------------------------------------------------------

    def row(self) -> dict[str, Any]:
        """This node's progress row, as the coordinator keeps it (plain data)."""
        t = self.tally
        status = self.status
        if status == Status.DOWNLOADING and t.waiting and not (t.hub_bytes or t.peer_bytes):
            status = Status.QUEUED  # waiting for a source: nothing moves yet
        progress = self.meter.snapshot(t.downloaded, t.total)
        if status in Status.ENDED:
            progress = dataclasses.replace(progress, bytes_per_second=0.0, eta_seconds=None)
        return {
            "status": status.value,
            "progress": progress.to_dict(),
            "path": None if self.path is None else str(self.path),
            "error": None if self.error is None else str(self.error),
            "error_type": None if self.error is None else type(self.error).__name__,
            "sources": sorted(t.sources),
            "hub_bytes": t.hub_bytes,
            "peer_bytes": t.peer_bytes,
            "address": self.server.url,
            "updated_at": time.time(),
        }

    async def _report_loop(self) -> None:
        """Push the row a few times a second while it changes."""
        interval = max(self.settings.progress_interval, 0.25)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):  # not wait_for: see _coordinator
                    await self._changed.wait()
            self._changed.clear()
            with contextlib.suppress(Exception):  # a lost report is replaced by the next one
                await self.link.call("report", self.node, self.row())


def job_settings(settings: Settings, options: Options) -> Settings:
    """``settings`` with the job's own ``timeout`` and ``retries`` (as the engine applies
    them)."""
    if options.timeout is not None:
        settings = dataclasses.replace(
            settings, connect_timeout=options.timeout, read_timeout=options.timeout
        )
    if options.retries is not None:
        settings = dataclasses.replace(settings, max_attempts=options.retries + 1)
    return settings


async def discard_partial(listing: HubListing, options: Options) -> None:
    """Remove this node's partial data of the files of ``listing`` it lacks (under each file's
    lock, without waiting for it: a file another process is fetching is not ours to touch)."""
    settings = Settings.from_env()
    async with _client(settings) as client:
        plan = await plan_listing(listing, options, SourceContext(client, settings))
    for planned in plan.files:
        if planned.spec is not None:
            discard_file(planned.spec)


@contextlib.asynccontextmanager
async def _client(settings: Settings) -> AsyncIterator[Any]:
    client = make_client(settings)
    try:
        yield client
    finally:
        await client.aclose()
