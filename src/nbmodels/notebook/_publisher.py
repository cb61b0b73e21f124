"""The one publisher thread that pushes widget state to the front end (docs/notebook.md).

Engine threads never touch a widget: their subscriber callbacks only store the latest snapshot
in the widget (a :class:`Feed`) and :meth:`Publisher.notify` this thread. The thread then pushes
each feed at most once per :data:`INTERVAL` (about 4 messages per second per widget, whatever the
engine's event rate), so the kernel's IOPub rate limit is never approached. Every
:data:`SLOW_INTERVAL` it also calls the feeds' ``slow_tick`` (the panel polls the job history).

The thread starts on first use, sleeps while nothing is due, and :meth:`Publisher.stop` joins it
(``%unload_ext`` and interpreter exit); a later :meth:`notify` starts it again.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["INTERVAL", "SLOW_INTERVAL", "Feed", "Publisher", "get_publisher"]

log = logging.getLogger("nbmodels")

#: Shortest time between two pushes of one widget (seconds).
INTERVAL = 0.25
#: How often ``slow_tick`` runs while a feed wants it (seconds).
SLOW_INTERVAL = 2.0


class Feed(Protocol):
    """Something the publisher pushes: a widget holding a pending snapshot."""

    #: True while the feed wants ``slow_tick`` calls (the panel's history poll).
    wants_slow_tick: bool

    def flush(self, now: float) -> float | None:
        """Push pending state if ``INTERVAL`` has passed since the last push. Returns the seconds
        until the feed wants to be flushed again, or None when nothing is pending."""

    def slow_tick(self) -> None:
        """Periodic work (every ``SLOW_INTERVAL``)."""

    @property
    def finished(self) -> bool:
        """True once the feed will never have anything to push again (it is then dropped)."""


class Publisher:
    """Runs the publisher thread for a set of feeds (thread-safe)."""

    def __init__(self, interval: float = INTERVAL, slow_interval: float = SLOW_INTERVAL) -> None:
        self.interval = interval
        self.slow_interval = slow_interval
        self._cond = threading.Condition()
        self._feeds: dict[int, Feed] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._woken = False

    def add(self, feed: Feed) -> None:
        """Start flushing ``feed`` (idempotent)."""
        with self._cond:
            self._feeds[id(feed)] = feed
            self._wake_locked()

    def discard(self, feed: Feed) -> None:
        with self._cond:
            self._feeds.pop(id(feed), None)

    def notify(self, feed: Feed | None = None) -> None:
        """Something is pending (in ``feed``, which is added if new): run soon."""
        with self._cond:
            if feed is not None:
                self._feeds[id(feed)] = feed
            self._wake_locked()

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def feeds(self) -> list[Feed]:
        with self._cond:
            return list(self._feeds.values())

    def stop(self, timeout: float = 5.0) -> None:
        """Stop and join the thread (feeds are kept; :meth:`notify` starts it again)."""
        with self._cond:
            thread = self._thread
            self._stopping = True
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._cond:
            if self._thread is thread:
                self._thread = None
            self._stopping = False

    # -- the thread ------------------------------------------------------------------------------

    def _wake_locked(self) -> None:
        self._woken = True
        if self._thread is None or not self._thread.is_alive():
            if self._stopping:
                return
            self._thread = threading.Thread(
                target=self._run, name="nbmodels-publisher", daemon=True
            )
            self._thread.start()
        self._cond.notify_all()

    def _run(self) -> None:
        next_slow = time.monotonic()
        timeout: float | None = 0.0
        while True:
            with self._cond:
                if not self._woken and not self._stopping:
                    self._cond.wait(timeout)
                if self._stopping:
                    return
                self._woken = False
                feeds = list(self._feeds.values())
            now = time.monotonic()
            slow_wanted = any(f.wants_slow_tick for f in feeds)
            if slow_wanted and now >= next_slow:
                next_slow = now + self.slow_interval
                for feed in feeds:
                    if feed.wants_slow_tick:
                        self._guard(feed.slow_tick)
            delays: list[float] = []
            now = time.monotonic()
            for feed in feeds:
                delay = self._guard(feed.flush, now)
                if delay is not None:
                    delays.append(max(0.0, delay))
                if feed.finished:
                    self.discard(feed)
            if slow_wanted:
                delays.append(max(0.0, next_slow - time.monotonic()))
            timeout = min(delays) if delays else None

    @staticmethod
    def _guard(fn: Callable[..., object], *args: object) -> float | None:
        try:
            result = fn(*args)
        except Exception:  # a broken feed must not stop the others
            log.exception("nbmodels: a widget update failed; continuing")
            return None
        return result if isinstance(result, int | float) else None


_publisher: Publisher | None = None
_publisher_lock = threading.Lock()


def get_publisher() -> Publisher:
    """The process-wide publisher."""
    global _publisher
    with _publisher_lock:
        if _publisher is None:
            _publisher = Publisher()
            atexit.register(_publisher.stop)
        return _publisher
