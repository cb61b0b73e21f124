"""Server-Sent Events: one broadcaster on the server's event loop, one bounded queue per client.

The engine's thread never touches a socket. The :class:`Broadcaster` runs on the loop that
serves HTTP (tornado's, or Jupyter Server's) while at least one client listens: every
``interval`` seconds (0.25 s: at most ~4 events per second per job) it reads each job's latest
immutable snapshot and, when it changed, asks each channel's formatter for that channel's events
(the native API: ``Job.to_dict()``; ARW: ``Models.DownloadProgress`` payloads). Each client's
:class:`Stream` keeps at most one pending event per job and kind, replaced by a newer one until
the client's socket takes it (drop-to-latest), so a slow client costs a bounded amount of memory
and never slows the others; one that falls ``max_pending`` keys behind is dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from .._progress import JobSnapshot
from ..engine import Job, get_engine

__all__ = ["Broadcaster", "Formatter", "Stream", "sse"]

log = logging.getLogger("nbmodels.server")

#: A channel's events for a job whose snapshot changed from ``prev`` (None: first seen) to
#: ``snap``: ``(key, text)`` pairs, ``key`` naming what a newer event of the same job replaces.
Formatter = Callable[[Job, JobSnapshot | None, JobSnapshot], list[tuple[str, str]]]


def sse(event: str, data: Any) -> str:
    """One event in the wire format (JSON never contains a raw newline)."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class Stream:
    """The pending events of one client (loop thread only)."""

    def __init__(self, channel: str, max_pending: int = 1024) -> None:
        self.channel = channel
        self.max_pending = max_pending
        self.pending: dict[str, str] = {}
        self.closed = False
        self.overflowed = False
        self._wake = asyncio.Event()

    def offer(self, key: str, text: str) -> None:
        """Queue an event; a pending one with the same key is replaced in place."""
        if self.closed:
            return
        if key not in self.pending and len(self.pending) >= self.max_pending:
            self.overflowed = True  # the writer drops this client
        else:
            self.pending[key] = text
        self._wake.set()

    def take(self) -> list[str]:
        """Every pending event, oldest key first; the queue is then empty."""
        items = list(self.pending.values())
        self.pending.clear()
        return items

    async def wait(self, timeout: float) -> bool:
        """Until something is pending or the stream closed (True), or ``timeout`` (False)."""
        if self.pending or self.closed:
            return True
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.closed = True
        self._wake.set()


class Broadcaster:
    """Turns job snapshots into events for every attached :class:`Stream` (loop thread only)."""

    def __init__(
        self,
        *,
        interval: float = 0.25,
        max_pending: int = 1024,
        jobs: Callable[[], list[Job]] | None = None,
    ) -> None:
        self.interval = interval
        self.max_pending = max_pending
        self.formatters: dict[str, Formatter] = {}
        self._jobs = jobs or (lambda: get_engine().jobs())
        self._streams: set[Stream] = set()
        self._seen: dict[str, JobSnapshot] = {}
        #: The last event of each job, channel and key sent to the attached clients: a new
        #: snapshot that changes nothing a channel shows (only the speed, say) sends nothing.
        self._sent: dict[str, dict[tuple[str, str], str]] = {}
        self._ended: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def streams(self) -> list[Stream]:
        return list(self._streams)

    def attach(self, stream: Stream) -> None:
        """Add a client: the others first get what changed, then it gets the current state of
        every job still running; the polling starts if it was idle."""
        self._scan()
        self._streams.add(stream)
        formatter = self.formatters.get(stream.channel)
        if formatter is not None:
            for job in self._jobs():
                snap = job.snapshot()
                if not snap.done:
                    for key, text in formatter(job, snap, snap):
                        stream.offer(key, text)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def detach(self, stream: Stream) -> None:
        self._streams.discard(stream)

    def publish(self, channel: str, key: str, text: str) -> None:
        """An event that no snapshot carries (e.g. ARW's cancel of a partial left by an
        earlier process)."""
        for stream in self._streams:
            if stream.channel == channel:
                stream.offer(key, text)

    def close_all(self) -> None:
        for stream in list(self._streams):
            stream.close()

    async def _run(self) -> None:
        while self._streams:
            await asyncio.sleep(self.interval)
            try:
                self._scan()
            except Exception:  # a formatter bug must not end the stream of every client
                log.exception("nbmodels: could not build server-sent events")

    def _scan(self) -> None:
        for job in self._jobs():
            if job.id in self._ended:
                continue
            snap = job.snapshot()
            prev = self._seen.get(job.id)
            if prev is snap:
                continue
            self._seen[job.id] = snap
            self._dispatch(job, prev, snap)
            if snap.done:
                self._ended.add(job.id)
                del self._seen[job.id]
                self._sent.pop(job.id, None)

    def _dispatch(self, job: Job, prev: JobSnapshot | None, snap: JobSnapshot) -> None:
        sent = self._sent.setdefault(job.id, {})
        for channel, formatter in self.formatters.items():
            streams = [s for s in self._streams if s.channel == channel]
            if not streams:
                continue
            for key, text in formatter(job, prev, snap):
                if sent.get((channel, key)) == text:
                    continue  # the clients have it already
                sent[(channel, key)] = text
                for stream in streams:
                    stream.offer(key, text)
