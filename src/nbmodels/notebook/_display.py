"""Showing jobs: one shared widget per job, ``Job._repr_mimebundle_``, automatic display from
:func:`nbmodels.download`, and :func:`panel`."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .._present import plain_text
from ..engine import Job
from ._context import (
    current_shell,
    in_widget_handler,
    quiet_hub_progress_bars,
    widgets_supported,
)
from ._text import watch

if TYPE_CHECKING:
    from ._widget import JobWidget, PanelWidget

__all__ = ["auto_display", "job_mimebundle", "panel", "widget_for"]

_lock = threading.Lock()
_widgets: dict[str, JobWidget] = {}
#: (execution count, job id) of widgets shown automatically: the same cell's ``Out`` then shows
#: one text line instead of a second copy of the widget.
_auto_shown: set[tuple[int, str]] = set()
_panel: PanelWidget | None = None


def widget_for(job: Job) -> JobWidget:
    """The widget of ``job`` (created once; every view of one job shares its model)."""
    from ._widget import JobWidget

    quiet_hub_progress_bars()
    with _lock:
        widget = _widgets.get(job.id)
        if widget is None or widget.comm is None:
            widget = JobWidget(job)
            _widgets[job.id] = widget
        return widget


def forget_widgets() -> None:
    """Close every job widget (``%unload_ext``)."""
    with _lock:
        widgets = list(_widgets.values())
        _widgets.clear()
        _auto_shown.clear()
    for widget in widgets:
        widget.close()


def _execution_count(shell: Any) -> int:
    return int(getattr(shell, "execution_count", 0) or 0)


def job_mimebundle(job: Job, **_kwargs: Any) -> Any:
    """What displaying a Job shows: its live widget in a kernel with widget support (with a
    ``text/plain`` line for front ends without widgets), else just the text line."""
    text = plain_text(job.snapshot())
    shell = current_shell()
    if not widgets_supported(shell):
        return {"text/plain": text}
    with _lock:
        shown = (_execution_count(shell), job.id) in _auto_shown
    if shown:  # already on screen in this cell (download() displayed it)
        return {"text/plain": text}
    try:
        return widget_for(job)._repr_mimebundle_()
    except ImportError:
        return {"text/plain": text}


def auto_display(job: Job, explicit: bool = False) -> None:
    """Called by :func:`nbmodels.download` (``display=None``: automatic, ``True``: explicit).

    Shows the job's widget in a Jupyter kernel with widget support, from the cell's own thread;
    in terminal IPython and front ends without widgets, its text line, and waiting for it with
    ``job.wait()`` then draws its progress line (:mod:`._text`). Never from a widget's message
    handler, and automatically never from another thread: output sent from there can land in
    an unrelated cell, or in the middle of the user's prompt.
    """
    if in_widget_handler():
        return
    shell = current_shell()
    if shell is None:
        return
    if not explicit and threading.current_thread() is not threading.main_thread():
        return
    from IPython.display import display

    if not widgets_supported(shell):
        watch(job)
        display(job)  # type: ignore[no-untyped-call]
        return
    widget = widget_for(job)
    with _lock:
        _auto_shown.add((_execution_count(shell), job.id))
    display(widget)  # type: ignore[no-untyped-call]


def panel() -> PanelWidget:
    """A live widget listing every job of this and earlier sessions, newest first, with a form
    to submit a reference and buttons to retry, pause, resume and cancel.

    One panel model is shared by every call (each display is another view of it), so showing
    the panel again and again never adds another history poll.
    """
    global _panel
    try:
        from ._widget import PanelWidget
    except ImportError as exc:  # anywidget is a dependency, but may be missing or broken here
        raise ImportError(
            f"nbmodels.panel() needs anywidget, which cannot be imported here ({exc}). "
            "Install it with `pip install anywidget` (or reinstall nbmodels); meanwhile "
            "%model_panel lists the jobs as text."
        ) from exc

    with _lock:
        if _panel is None or _panel.comm is None:
            _panel = PanelWidget()
        return _panel
