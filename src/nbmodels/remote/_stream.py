"""One Server-Sent Events connection to the service's native stream (``GET api/events``), on
its own daemon thread running its own asyncio loop (never the kernel's), reconnecting with
capped exponential backoff and jitter.

Each ``job`` event's JSON goes to ``on_job`` (on this thread; it must return quickly). Once a
connection is up (the server has attached it: it then first sends the current state of every
job still running), and after each failed attempt, ``catch_up`` runs on a worker thread, so
the owner can end the jobs that ended while no connection was up (the stream does not repeat
those): a job's ``wait()`` returns even when the stream cannot be had at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2

from ._discover import ServerInfo

__all__ = ["EventStream"]

log = logging.getLogger("nbmodels")

#: The server sends a comment every 15 s without events: a read waiting longer is a dead link.
READ_TIMEOUT = 45.0


class EventStream:
    """The stream of one remote engine. :meth:`start` once, :meth:`stop` joins."""

    def __init__(
        self,
        server: ServerInfo,
        on_job: Callable[[dict[str, Any]], None],
        catch_up: Callable[[], None],
        *,
        backoff: float = 0.5,
        backoff_cap: float = 10.0,
    ) -> None:
        self.server = server
        self.on_job = on_job
        self.catch_up = catch_up
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        #: Connections made so far (the first, then every reconnection).
        self.connections = 0
        self.connected = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        ready = threading.Event()
        loop = asyncio.new_event_loop()

        def main() -> None:
            asyncio.set_event_loop(loop)
            self._task = loop.create_task(self._run())
            loop.call_soon(ready.set)
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(self._task)
            with contextlib.suppress(RuntimeError):  # the interpreter is exiting
                loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=main, name="nbmodels-remote", daemon=True)
        self._thread.start()
        ready.wait()

    def stop(self, timeout: float = 5.0) -> None:
        loop, task = self._loop, self._task
        if loop is not None and task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
                loop.call_soon_threadsafe(task.cancel)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    async def _run(self) -> None:
        delay = self.backoff
        timeout = httpx2.Timeout(10.0, read=READ_TIMEOUT)
        async with httpx2.AsyncClient(timeout=timeout, trust_env=False) as client:
            while True:
                try:
                    await self._listen(client)
                    why = "the server ended the stream"
                except (httpx2.HTTPError, OSError, ValueError) as exc:
                    why = type(exc).__name__
                except RuntimeError:  # no more worker threads: the interpreter is exiting
                    return
                if self.connected.is_set():
                    delay = self.backoff  # it was up: start the backoff afresh
                self.connected.clear()
                try:
                    await asyncio.to_thread(self._catch_up)
                except RuntimeError:
                    return
                wait = delay * (0.5 + random.random())
                log.debug("nbmodels: job stream lost (%s); reconnecting in %.1f s", why, wait)
                await asyncio.sleep(wait)
                delay = min(self.backoff_cap, delay * 2)

    async def _listen(self, client: httpx2.AsyncClient) -> None:
        url = self.server.url + "api/events"
        async with client.stream("GET", url, headers=self.server.headers) as answer:
            if answer.status_code != 200:
                await answer.aread()
                raise httpx2.HTTPStatusError(
                    f"HTTP {answer.status_code}", request=answer.request, response=answer
                )
            async for event, data in _events(answer.aiter_lines()):
                if event == "open":
                    self.connections += 1
                    self.connected.set()
                    await asyncio.to_thread(self._catch_up)
                elif event == "job":
                    self._deliver(data)

    def _catch_up(self) -> None:
        try:
            self.catch_up()
        except Exception:  # never the end of the stream
            log.debug("nbmodels: catching up after a reconnection failed", exc_info=True)

    def _deliver(self, data: str) -> None:
        try:
            payload = json.loads(data)
            if isinstance(payload, dict):
                self.on_job(payload)
        except Exception:  # a bad event must not end the stream
            log.debug("nbmodels: ignored a job event that could not be read", exc_info=True)


async def _events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, str]]:
    """``(event, data)`` pairs of an SSE body; ``("open", "")`` first, once the server's first
    line (``retry:``, written before it attaches the client, sent after) has arrived."""
    opened = False
    name, data = "message", list[str]()
    async for line in lines:
        if not opened:
            opened = True
            yield "open", ""
        if not line:
            if data:
                yield name, "\n".join(data)
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
