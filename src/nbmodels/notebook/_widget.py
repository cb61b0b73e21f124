"""The job widget and the panel: anywidget models whose one synced trait, ``state``, always holds
a full snapshot (never a delta), so every view — a second output, a re-opened tab — draws the
current truth.

Threads (docs/notebook.md):

- engine thread: subscriber callbacks only store the latest snapshot and notify the publisher;
- publisher thread (:mod:`._publisher`): sets ``state`` at most 4 times a second per widget;
- kernel shell or subshell thread: front-end messages (``action``, ``submit``, ``poll``). They
  call thread-safe :class:`~nbmodels.Job` methods; a ``poll`` is answered at once from that
  thread, in reply to the front end's message (a front end that stalls background output, such
  as Colab, still delivers that reply). Setting ``state`` is serialized by a per-widget lock, and
  the value sent is always the newest, so the last message a view receives is current;
- one ``nbmodels-card`` thread per job widget of a GGUF / safetensors reference: it reads the
  file header (:func:`nbmodels.inspect`), stores the card and wakes the publisher, which sends
  it as ``state["card"]`` (never prints; a failure just leaves the card out).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anywidget
import traitlets

import nbmodels

from .._present import one_line, plain_text
from .._progress import JobSnapshot
from .._redact import redact_text
from ..engine import Job
from ..errors import NbmodelsError
from ..refs import parse_ref
from ._context import widget_handler
from ._publisher import INTERVAL, Publisher, get_publisher
from ._state import card_state, job_state

if TYPE_CHECKING:
    from ..cards import ModelCard

__all__ = ["JobWidget", "PanelWidget", "card_wanted", "inspect_model"]

log = logging.getLogger("nbmodels")

STATIC = Path(__file__).with_name("static")
#: Jobs the panel lists at most (newest first).
PANEL_LIMIT = 50


#: File names whose header a job widget reads for its model card.
CARD_SUFFIXES = (".gguf", ".safetensors")


def card_wanted(ref: str) -> bool:
    """Does a job of ``ref`` get a model card? Hub model references that can mean GGUF or
    safetensors weights (a quant, a ``.gguf`` / ``.safetensors`` file, a repository or folder:
    :func:`nbmodels.inspect` picks the weights as a download would, or fails quietly), and
    plain URLs of a ``.gguf`` / ``.safetensors`` file."""
    try:
        parsed = parse_ref(ref)
    except (NbmodelsError, ValueError):
        return False
    if parsed.kind == "url":
        return urlsplit(parsed.url or "").path.lower().endswith(CARD_SUFFIXES)
    if parsed.repo_type != "model":
        return False
    if parsed.quant is not None or parsed.path is None or parsed.is_dir:
        return True
    return parsed.path.lower().endswith(CARD_SUFFIXES)


def inspect_model(ref: str, **options: Any) -> ModelCard:
    """:func:`nbmodels.inspect` (looked up at call time, so tests and reloads see the current
    one)."""
    return nbmodels.inspect(ref, **options)


def _with_text(bundle: Any, text: str) -> Any:
    """Put a meaningful ``text/plain`` into a widget's bundle (``data`` or ``(data, meta)``):
    what front ends without widget support show."""
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    if isinstance(data, dict):
        data["text/plain"] = text
    return bundle


class _StateWidget(anywidget.AnyWidget):
    """Shared machinery: the ESM/CSS, the ``state`` trait, the push lock, message dispatch."""

    _esm = STATIC / "widget.js"
    _css = STATIC / "widget.css"

    kind = traitlets.Unicode("job").tag(sync=True)
    state = traitlets.Dict().tag(sync=True)

    #: The publisher calls ``slow_tick`` only on feeds that want it.
    wants_slow_tick = False

    def __init__(self, *, publisher: Publisher | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._publisher = publisher or get_publisher()
        self._push_lock = threading.RLock()  # serializes every change of ``state``
        self._pending_lock = threading.Lock()  # guards the hand-over from the engine thread
        self._seq = 0
        self._last_push = 0.0
        self._notice: tuple[str, str] = ("", "info")
        self.on_msg(self._on_frontend_msg)

    # -- state -----------------------------------------------------------------------------------

    def _set_state(self, data: dict[str, Any]) -> None:
        """Replace ``state`` (sends one comm message). Call with ``_push_lock`` held."""
        self._seq += 1
        data["seq"] = self._seq
        data["notice"], data["notice_kind"] = self._notice
        self._last_push = time.monotonic()
        self.state = data

    def _build_state(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def refresh(self) -> None:
        """Send the current state now (from the calling thread)."""
        with self._push_lock:
            self._forget_pending()  # what is pending is at most as new as the current state
            self._set_state(self._build_state())

    def _forget_pending(self) -> None:
        """Drop state waiting for the publisher (it is about to be superseded)."""

    def _note(self, message: str, kind: str = "info") -> None:
        self._notice = (message, kind)

    # -- front-end messages ------------------------------------------------------------------

    def _on_frontend_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        # Deliberately not named ``_handle_custom_msg``: that would replace an ipywidgets
        # internal and swallow every message (docs/browser-tests.md).
        if not isinstance(content, dict):
            return
        with widget_handler():
            try:
                self._dispatch(content)
            except Exception as exc:  # errors here reach no cell output: show them in the widget
                if isinstance(exc, NbmodelsError):
                    log.warning("nbmodels: %s", one_line(exc))
                else:
                    log.exception("nbmodels: widget message %r failed", content.get("type"))
                self._note(one_line(exc), "error")
                self.refresh()

    def _dispatch(self, content: dict[str, Any]) -> None:
        if content.get("type") == "poll":
            self.refresh()

    @staticmethod
    def _control(job: Job, action: str) -> Job | None:
        """Run ``action`` on ``job``; returns the new job of a retry."""
        if action == "pause":
            job.pause()
        elif action == "resume":
            job.resume()
        elif action == "cancel":
            job.cancel()
        elif action == "retry":
            return job.retry()
        return None


class JobWidget(_StateWidget):
    """The live view of one :class:`~nbmodels.Job` (what displaying a Job shows).

    For a GGUF or safetensors reference (:func:`card_wanted`) it also reads the model's header
    once, in the background, and shows its one-line model card (``state["card"]``, see
    :func:`~._state.card_state`) as soon as it is known: usually long before the download ends.
    """

    def __init__(self, job: Job, *, publisher: Publisher | None = None) -> None:
        super().__init__(publisher=publisher, kind="job")
        self._job = job
        self._pending: JobSnapshot | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._finished = False
        self._card: dict[str, Any] | None = None
        self._card_due = False  # a card arrived and waits for the publisher
        self._closed = False
        self._bind(job)
        self._start_card(job)

    @property
    def job(self) -> Job:
        return self._job

    def _bind(self, job: Job) -> None:
        """Show ``job`` from now on (a retry rebinds the widget to the new job)."""
        with self._push_lock:
            if self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None
            self._job = job
            with self._pending_lock:
                self._pending = None
            first = job.snapshot()
            self._finished = first.done
            self._set_state(self._build_state(first))
            if not first.done:
                self._unsubscribe = job.subscribe(self._on_snapshot)
                self._drop_pending(first)  # subscribe() delivered what we just sent
                self._publisher.add(self)

    def _drop_pending(self, snap: JobSnapshot) -> None:
        with self._pending_lock:
            if self._pending is snap:
                self._pending = None

    def _forget_pending(self) -> None:
        with self._pending_lock:
            self._pending = None
            self._card_due = False

    def _build_state(self, snap: JobSnapshot | None = None) -> dict[str, Any]:
        job = self._job
        data = job_state(snap or job.snapshot(), read_only=job.read_only)
        data["card"] = self._card  # a retry keeps it: same reference, same model
        return data

    # -- the model card (its own thread) --------------------------------------------------------

    def _start_card(self, job: Job) -> None:
        """Start the one background header read of this widget (never blocks the caller)."""
        if not card_wanted(job.ref):
            return
        opts = job.options
        options = {
            "offline": opts.offline,
            "revision": opts.revision,
            "dir": opts.dir,
            "token": opts.token,
        }
        thread = threading.Thread(
            target=self._load_card, args=(job.ref, options), name="nbmodels-card", daemon=True
        )
        thread.start()

    def _load_card(self, ref: str, options: dict[str, Any]) -> None:
        """Card thread: read the header; hand the card's display fields to the publisher. A
        model card is an extra: any failure only leaves it out (logged at debug level)."""
        try:
            card = card_state(inspect_model(ref, **options))
        except Exception as exc:  # noqa: BLE001 - see above; nothing may escape this thread
            log.debug("nbmodels: no model card: %s", redact_text(one_line(exc)))
            return
        with self._pending_lock:
            if self._closed:
                return
            self._card = card
            self._card_due = True
            # Under the lock, so close() either sees this feed added or this thread sees it closed.
            self._publisher.notify(self)

    def _on_snapshot(self, snap: JobSnapshot) -> None:
        """Engine thread: keep the newest snapshot, wake the publisher. Never blocks."""
        with self._pending_lock:
            first = self._pending is None
            self._pending = snap
        if first or not self._publisher.running:
            self._publisher.notify(self)

    # -- the Feed protocol (publisher thread) ---------------------------------------------------

    def flush(self, now: float) -> float | None:
        with self._pending_lock:
            snap = self._pending
            card_due = self._card_due
            if self._closed or (snap is None and not card_due):
                return None
            wait = self._last_push + INTERVAL - now
            if wait > 0:
                return wait
            self._pending = None
            self._card_due = False
        with self._push_lock:
            if snap is not None and snap.job_id != self._job.id:
                snap = None  # a late event of the job shown before a retry
                if not card_due:
                    return None
            current = snap or self._job.snapshot()  # a card alone: with the current snapshot
            self._set_state(self._build_state(current))
            if current.done:
                self._finish()
        return None

    def refresh(self) -> None:
        with self._push_lock:
            super().refresh()
            if self._job.done:
                self._finish()

    def _finish(self) -> None:
        """The job ended and its last state was sent: stop listening. Hold ``_push_lock``."""
        self._finished = True
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def slow_tick(self) -> None:
        """Not used by a job widget."""

    @property
    def finished(self) -> bool:
        return self._closed or (self._finished and self._pending is None and not self._card_due)

    # -- front-end messages ------------------------------------------------------------------

    def _dispatch(self, content: dict[str, Any]) -> None:
        if content.get("type") != "action":
            super()._dispatch(content)
            return
        job = self._job
        if content.get("job_id") not in (None, job.id):
            return  # a click on a view of the job shown before a retry
        self._note("")
        new = self._control(job, str(content.get("action")))
        if new is not None and new is not job:
            self._bind(new)

    # -- display -------------------------------------------------------------------------------

    def text(self) -> str:
        return plain_text(self._job.snapshot())

    def __repr__(self) -> str:
        return f"<nbmodels JobWidget: {self.text()}>"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return _with_text(super()._repr_mimebundle_(**kwargs), self.text())

    def close(self) -> None:
        if hasattr(self, "_publisher"):  # also called from __del__ of a half-built widget
            with self._push_lock:
                self._finish()
            with self._pending_lock:
                self._closed = True  # a card that arrives later is dropped
            self._publisher.discard(self)
        super().close()


class PanelWidget(_StateWidget):
    """Every job of this and earlier sessions (:func:`nbmodels.history`), newest first, live;
    a form to submit a reference; retry, pause, resume and cancel."""

    wants_slow_tick = True

    def __init__(self, *, limit: int = PANEL_LIMIT, publisher: Publisher | None = None) -> None:
        super().__init__(publisher=publisher, kind="panel")
        self.limit = limit
        self._jobs: list[Job] = []
        self._signature: tuple[JobSnapshot, ...] = ()
        self._subs: dict[str, Callable[[], None]] = {}
        self._dirty = False
        self._closed = False
        self._reload()
        self.refresh()
        self._publisher.add(self)

    @property
    def jobs(self) -> list[Job]:
        """The jobs listed, newest first."""
        with self._push_lock:
            return list(self._jobs)

    def _reload(self) -> bool:
        """Read the history again and follow its running jobs. True if anything changed."""
        jobs = nbmodels.history(self.limit)
        with self._push_lock:
            self._jobs = jobs
            running = {j.id: j for j in jobs if not j.read_only and not j.done}
            for job_id in [i for i in self._subs if i not in running]:
                self._subs.pop(job_id)()
            for job_id, job in running.items():
                if job_id not in self._subs:
                    self._subs[job_id] = job.subscribe(self._on_snapshot)
            signature = tuple(j.snapshot() for j in jobs)
            changed = signature != self._signature
            self._signature = signature
        return changed

    def _build_state(self) -> dict[str, Any]:
        jobs = self._jobs
        return {"jobs": [job_state(j.snapshot(), read_only=j.read_only) for j in jobs]}

    def _mark_dirty(self) -> None:
        with self._pending_lock:
            first = not self._dirty
            self._dirty = True
        if first or not self._publisher.running:
            self._publisher.notify(self)

    def _on_snapshot(self, _snap: JobSnapshot) -> None:
        self._mark_dirty()

    # -- the Feed protocol (publisher thread) ---------------------------------------------------

    def flush(self, now: float) -> float | None:
        with self._pending_lock:
            if not self._dirty:
                return None
            wait = self._last_push + INTERVAL - now
            if wait > 0:
                return wait
            self._dirty = False
        with self._push_lock:
            self._signature = tuple(j.snapshot() for j in self._jobs)
            self._set_state(self._build_state())
        return None

    def slow_tick(self) -> None:
        if not self._closed and self._reload():
            self._mark_dirty()

    @property
    def finished(self) -> bool:
        return self._closed

    # -- front-end messages ------------------------------------------------------------------

    def _dispatch(self, content: dict[str, Any]) -> None:
        kind = content.get("type")
        if kind == "submit":
            self._submit(str(content.get("ref") or ""), str(content.get("file") or ""))
        elif kind == "action":
            self._action(str(content.get("action")), str(content.get("job_id")))
        else:
            super()._dispatch(content)

    def _submit(self, ref: str, file: str) -> None:
        ref, file = ref.strip(), file.strip()
        if not ref:
            self._note("Enter a reference: a URL, owner/repo:QUANT, or owner/repo.", "error")
        else:
            text = f"{ref} {file}" if file else ref
            try:
                nbmodels.download(text, display=False)
            except (NbmodelsError, ValueError, TypeError) as exc:
                self._note(one_line(exc), "error")
            else:
                self._note(f"Started {text}", "info")
        self._reload()
        self.refresh()

    def _action(self, action: str, job_id: str) -> None:
        job = next((j for j in self.jobs if j.id == job_id), None)
        if job is None:
            return
        self._note("")
        self._control(job, action)
        self._reload()
        self.refresh()

    def __repr__(self) -> str:
        jobs = self.jobs
        running = sum(1 for j in jobs if not j.done)
        return f"<nbmodels panel: {len(jobs)} jobs, {running} running>"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        lines = [repr(self)] + [plain_text(j.snapshot()) for j in self.jobs[:20]]
        return _with_text(super()._repr_mimebundle_(**kwargs), "\n".join(lines))

    def close(self) -> None:
        if hasattr(self, "_subs"):  # also called from __del__ of a half-built widget
            with self._push_lock:
                self._closed = True
                for unsubscribe in self._subs.values():
                    unsubscribe()
                self._subs.clear()
            self._publisher.discard(self)
        super().close()
