"""The handle of a cluster prefetch (:class:`ClusterJob`), driven by one thread of the caller.

A :class:`ClusterJob` holds a real :class:`~nbmodels.Job` (``.job``) whose rows are the nodes,
so everything that shows a job shows a prefetch unchanged: the widget (a row per node, the
node as its label), the terminal views, ``to_dict``. Its thread (``nbmodels-cluster``) starts
the nodes' runs, long-polls the coordinator for their rows, turns them into snapshots (a few a
second), carries out pause / resume / cancel, and ends the prefetch: every node's actor (and
so its peer server) is stopped, and ``wait()`` returns the path per node or raises.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .._options import Options
from .._progress import FileProgress, JobSnapshot, Progress, Status, snapshot_from_dict
from .._redact import redact_text
from ..engine import Job, JobFeed, JobState
from ..errors import CanceledError, NbmodelsError
from ..sources import HubListing
from ._ray import NodeInfo

__all__ = ["ClusterJob", "Fleet", "NodeProgress", "cluster_snapshot"]

log = logging.getLogger("nbmodels")

#: Seconds between two snapshots, at least (the widget shows about 4 a second).
PUBLISH_INTERVAL = 0.25


@dataclass(frozen=True, slots=True)
class NodeProgress:
    """One node of a prefetch: how far it is, from where its bytes came, where its files are."""

    node_id: str
    address: str
    status: str
    progress: Progress
    path: Path | None = None
    error: str | None = None
    #: Where its files came from: ``disk``, ``hub``, ``peer <node id>``.
    sources: tuple[str, ...] = ()
    hub_bytes: int = 0
    peer_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "address": self.address,
            "status": self.status,
            "path": None if self.path is None else str(self.path),
            "error": self.error,
            "sources": list(self.sources),
            "hub_bytes": self.hub_bytes,
            "peer_bytes": self.peer_bytes,
            **self.progress.to_dict(),
        }


class Fleet(Protocol):
    """The nodes' actors, as the handle drives them (:class:`~._ray.RayFleet`)."""

    def start(
        self, listing: HubListing, options: Options, nodes: list[str] | None = None
    ) -> dict[Any, str]: ...
    def updates(self, since: int, wait: float) -> tuple[int, dict[str, Any]]: ...
    def finished(self, runs: dict[Any, str], wait: float = 0.0) -> list[Any]: ...
    def outcome(self, ref: Any) -> dict[str, Any]: ...
    def node_lost(self, node: str) -> None: ...
    def stop(self, discard: bool) -> None: ...
    def discard(self, listing: HubListing, options: Options, nodes: list[str]) -> None: ...
    def close(self) -> None: ...


def node_progress(node: NodeInfo, row: dict[str, Any] | None) -> NodeProgress:
    """A node's row as the coordinator (or its run's outcome) gave it."""
    if row is None:
        return NodeProgress(node.id, node.address, Status.QUEUED.value, Progress())
    return NodeProgress(
        node_id=node.id,
        address=node.address,
        status=str(row.get("status") or Status.QUEUED.value),
        progress=snapshot_from_dict(row.get("progress") or {}),
        path=Path(row["path"]) if row.get("path") else None,
        error=row.get("error"),
        sources=tuple(row.get("sources") or ()),
        hub_bytes=int(row.get("hub_bytes") or 0),
        peer_bytes=int(row.get("peer_bytes") or 0),
    )


def cluster_snapshot(
    job: JobSnapshot, nodes: list[NodeInfo], rows: list[NodeProgress], total: int
) -> JobSnapshot:
    """``job`` (id, status, times, error) with a file row per node and their sum as progress;
    ``total`` is the listing's size (every node gets all of it)."""
    files = tuple(
        FileProgress(
            name=node.label,
            status=row.status,
            progress=row.progress,
            path=None if row.path is None else str(row.path),
            error=row.error,
        )
        for node, row in zip(nodes, rows, strict=True)
    )
    downloaded = sum(r.progress.downloaded_bytes for r in rows)
    speed = sum(r.progress.bytes_per_second for r in rows)
    whole = total * len(nodes)
    eta = (whole - downloaded) / speed if speed > 0 and not job.done else None
    progress = Progress(downloaded, whole, speed, eta)
    path = next((f.path for f in files if f.path), None)
    return JobSnapshot(
        job_id=job.job_id,
        ref=job.ref,
        status=job.status,
        progress=progress,
        files=files,
        path=path,
        error=job.error,
        error_type=job.error_type,
        error_hint=job.error_hint,
        created_at=job.created_at,
        started_at=job.started_at,
        completed_at=job.completed_at,
    )


class ClusterJob:
    """A prefetch of one reference onto the nodes of a Ray cluster (:func:`nbmodels.cluster
    .prefetch` returns it at once). Thread-safe.

    ``job`` is the :class:`~nbmodels.Job` with a row per node (what the widget shows);
    ``nodes`` the rows as :class:`NodeProgress`; ``wait()`` the local path per node id.
    """

    def __init__(
        self,
        ref: str,
        options: Options,
        nodes: list[NodeInfo],
        listing: HubListing,
        fleet: Fleet,
        again: Callable[[], ClusterJob],
    ) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.ref = ref
        self.options = options
        self.listing = listing
        self._nodes = nodes
        self._fleet = fleet
        self._again = again
        self._total = sum(e.size for e in listing.files)
        self._rows: dict[str, dict[str, Any]] = {}
        self._final: dict[str, dict[str, Any]] = {}
        self._runs: dict[Any, str] = {}
        self._commands: queue.Queue[str] = queue.Queue()
        self._result: concurrent.futures.Future[dict[str, Path]] = concurrent.futures.Future()
        self._base = JobSnapshot(
            self.id, ref, Status.QUEUED.value, Progress(), created_at=time.time()
        )
        self._feed = JobFeed(JobState(self._snapshot()))
        self.job = Job(self.id, ref, options, self._feed, self)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._drive, name="nbmodels-cluster", daemon=True)
        self._thread.start()

    # -- reading --------------------------------------------------------------------------------

    def snapshot(self) -> JobSnapshot:
        return self.job.snapshot()

    @property
    def status(self) -> str:
        return self.job.status

    @property
    def done(self) -> bool:
        return self.job.done

    @property
    def progress(self) -> Progress:
        return self.job.progress

    @property
    def error(self) -> NbmodelsError | None:
        return self.job.error

    @property
    def nodes(self) -> dict[str, NodeProgress]:
        """Every node's row, by node id (the driver's node first)."""
        with self._lock:
            rows = [self._final.get(n.id) or self._rows.get(n.id) for n in self._nodes]
        return {n.id: node_progress(n, r) for n, r in zip(self._nodes, rows, strict=True)}

    @property
    def paths(self) -> dict[str, Path]:
        """The primary local path on every node that has the files (so far)."""
        return {
            node: p.path
            for node, p in self.nodes.items()
            if p.path is not None and p.status in Status.SUCCEEDED
        }

    def to_dict(self) -> dict[str, Any]:
        """``job.to_dict()`` (a row per node in ``items``) with each node's detail, and the
        bytes that came from the Hub and from peers."""
        nodes = list(self.nodes.values())
        return {
            **self.job.to_dict(),
            "files": [e.path for e in self.listing.files],
            "nodes": [n.to_dict() for n in nodes],
            "hub_bytes": sum(n.hub_bytes for n in nodes),
            "peer_bytes": sum(n.peer_bytes for n in nodes),
        }

    def __repr__(self) -> str:
        done = sum(1 for n in self.nodes.values() if n.status in Status.SUCCEEDED)
        return (
            f"<nbmodels.cluster.ClusterJob {self.id} {self.ref!r} {self.status} "
            f"{done}/{len(self._nodes)} nodes>"
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.job._repr_mimebundle_(**kwargs)

    # -- waiting --------------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> dict[str, Path]:
        """Block until every node ended; ``{node id: local path}``, or raise the prefetch's
        error (``TimeoutError`` when ``timeout`` passes first: the prefetch goes on)."""
        self.job.wait(timeout)  # in terminal IPython, draws the progress line meanwhile
        return self._result.result(0)

    def __await__(self) -> Generator[Any, None, dict[str, Path]]:
        return asyncio.wrap_future(self._result).__await__()

    def subscribe(self, callback: Callable[[JobSnapshot], None]) -> Callable[[], None]:
        return self.job.subscribe(callback)

    # -- controls (the Job's ``Controls``; any thread) ------------------------------------------

    def cancel(self, job_id: str | None = None) -> bool:
        """Stop every node and remove their partial data; ``wait()`` then raises
        ``CanceledError``. True if the prefetch was running."""
        return self._post("cancel")

    def pause(self, job_id: str | None = None) -> bool:
        """Stop every node, keeping partial data. True if the prefetch was running."""
        return self.status != Status.PAUSED and self._post("pause")

    def resume(self, job_id: str | None = None) -> bool:
        """Start the paused nodes again (they resume their partial data)."""
        return self.status == Status.PAUSED and self._post("resume")

    def resubmit(self, job: Job) -> Job:
        """The widget's retry: the same prefetch again (files already on a node stay)."""
        return self._again().job

    def _post(self, command: str) -> bool:
        if self.done:
            return False
        self._commands.put(command)
        return True

    # -- the thread -----------------------------------------------------------------------------

    def _drive(self) -> None:
        outcome: Status | None = None
        error: NbmodelsError | None = None
        try:
            self._runs = self._fleet.start(self.listing, self.options)
            self._publish(Status.DOWNLOADING, started=True)
            outcome = self._follow()
        except Exception as exc:  # the prefetch fails with it; the nodes' data stays
            log.debug("nbmodels: cluster prefetch %s failed", self.id, exc_info=True)
            error = (
                exc
                if isinstance(exc, NbmodelsError)
                else NbmodelsError(
                    f"The cluster prefetch stopped: {type(exc).__name__}: {redact_text(str(exc))}"
                )
            )
        finally:
            try:
                self._fleet.close()
            except Exception:  # the nodes' actors end with the driver anyway
                log.debug("nbmodels: closing the prefetch's actors failed", exc_info=True)
        self._end(outcome, error)

    def _follow(self) -> Status | None:
        """Follow the runs until every node ended; CANCELED when canceled, else None."""
        version = 0
        last = 0.0
        paused = False
        while self._runs or paused:
            command = self._command(block=paused)
            if command == "cancel":
                self._stop(discard=True, paused=paused)
                return Status.CANCELED
            if command == "pause" and not paused:
                self._fleet.stop(discard=False)
            if command == "resume" and paused:
                again = self._paused_nodes()
                with self._lock:
                    for node in again:  # their rows are live again
                        self._final.pop(node, None)
                        self._rows.pop(node, None)
                self._runs = self._fleet.start(self.listing, self.options, again)
                paused = False
                self._publish(Status.DOWNLOADING)
            if paused:
                continue
            version, data = self._fleet.updates(version, 0.5)
            with self._lock:
                self._rows.update(data.get("rows") or {})
            self._collect()
            if not self._runs and self._paused_nodes():
                paused = True
                self._publish(Status.PAUSED)
            elif time.monotonic() - last >= PUBLISH_INTERVAL:
                last = time.monotonic()
                self._publish(Status.DOWNLOADING)
        return None

    def _command(self, *, block: bool) -> str | None:
        try:
            return self._commands.get(block=block, timeout=None if not block else 1.0)
        except queue.Empty:
            return None

    def _collect(self) -> None:
        """Take the outcomes of the runs that ended."""
        for ref in self._fleet.finished(self._runs):
            node = self._runs.pop(ref)
            row = self._fleet.outcome(ref)
            with self._lock:
                self._final[node] = row
            if row.get("lost"):
                self._fleet.node_lost(node)

    def _paused_nodes(self) -> list[str]:
        with self._lock:
            return [n for n, r in self._final.items() if r.get("status") == Status.PAUSED]

    def _stop(self, *, discard: bool, paused: bool) -> None:
        """Cancel: stop the runs (their partial data removed), or, when paused, remove the
        partial data the paused nodes kept."""
        if paused:
            self._fleet.discard(self.listing, self.options, self._paused_nodes())
        else:
            self._fleet.stop(discard=discard)
            self._collect_all()

    def _collect_all(self) -> None:
        while self._runs:
            if self._fleet.finished(self._runs, wait=1.0):
                self._collect()

    # -- snapshots ------------------------------------------------------------------------------

    def _snapshot(self) -> JobSnapshot:
        rows = [node_progress(n, r) for n, r in zip(self._nodes, self._row_list(), strict=True)]
        return cluster_snapshot(self._base, self._nodes, rows, self._total)

    def _row_list(self) -> list[dict[str, Any] | None]:
        return [self._final.get(n.id) or self._rows.get(n.id) for n in self._nodes]

    def _publish(self, status: Status, *, started: bool = False) -> None:
        """A snapshot of the running (or paused) prefetch."""
        changes: dict[str, Any] = {"status": status.value}
        if started:
            changes["started_at"] = time.time()
        self._base = dataclasses.replace(self._base, **changes)
        self._send(None)

    def _send(self, error: NbmodelsError | None) -> JobState:
        with self._lock:
            snap = self._snapshot()
        path = Path(snap.path) if snap.path else None
        state = JobState(snap, path, tuple(self.paths.values()), error)
        self._feed.publish(state)
        return state

    def _end(self, outcome: Status | None, error: NbmodelsError | None) -> None:
        nodes = self.nodes
        failed = {n: p for n, p in nodes.items() if p.status not in Status.SUCCEEDED}
        if outcome == Status.CANCELED:
            error = CanceledError(
                f"The prefetch of {self.ref} was canceled on every node; "
                "its partial data was removed."
            )
        elif error is None and failed:
            error = _failure(self.ref, failed, len(nodes))
        if error is None:
            moved = any(p.status == Status.COMPLETED for p in nodes.values())
            status = Status.COMPLETED if moved else Status.ALREADY_DOWNLOADED
            self._result.set_result({n: p.path for n, p in nodes.items() if p.path is not None})
        else:
            status = Status.CANCELED if outcome == Status.CANCELED else Status.FAILED
            self._result.set_exception(error)
        self._finish_feed(status, error)

    def _finish_feed(self, status: Status, error: NbmodelsError | None) -> None:
        ended: dict[str, Any] = {"status": status.value, "completed_at": time.time()}
        if error is not None:
            ended.update(error=str(error), error_type=type(error).__name__, error_hint=error.hint)
        self._base = dataclasses.replace(self._base, **ended)
        with self._lock:
            snap = self._snapshot()
        path = Path(snap.path) if snap.path else None
        if error is None and path is not None:
            self._feed.outcome.set_result(path)
        else:
            self._feed.outcome.set_exception(error or NbmodelsError("The prefetch ended."))
        self._send(error)


def _failure(ref: str, failed: dict[str, NodeProgress], count: int) -> NbmodelsError:
    """One error for the nodes that did not get the files: their common message once, or each
    node's."""
    messages = {p.error or p.status for p in failed.values()}
    if len(messages) == 1:
        detail = messages.pop()
    else:
        detail = "; ".join(f"node {n[:8]}: {p.error or p.status}" for n, p in failed.items())
    return NbmodelsError(
        f"{len(failed)} of {count} nodes could not get {ref}: {detail}",
        hint="The other nodes keep their files. Run the prefetch again to retry (files "
        "already on a node are not fetched again, partial data is resumed).",
    )
