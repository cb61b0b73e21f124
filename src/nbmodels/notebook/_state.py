"""What the widget front end receives: a job's full snapshot as a JSON-ready dict.

Everything the JavaScript shows is computed here, its texts by :mod:`nbmodels._present` (the
formatter every front end shares), with one notion of which buttons apply; the ESM only draws.
Pure functions, no widget library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._present import badge, card_summary, card_title, job_label, short_path, status_label
from .._progress import JobSnapshot, Progress, Status, format_progress

if TYPE_CHECKING:
    from ..cards import ModelCard

__all__ = ["CARD_KEYS", "allowed_actions", "card_state", "job_state"]

_RUNNING = Status.ACTIVE - {Status.PAUSED}
_RETRYABLE = (Status.FAILED, Status.CANCELED, Status.INTERRUPTED)


def allowed_actions(status: str, *, read_only: bool = False) -> list[str]:
    """The buttons that apply to a job in ``status`` (in display order)."""
    if status in _RETRYABLE:
        return ["retry"]
    if read_only:
        return []
    if status in _RUNNING:
        return ["pause", "cancel"]
    if status == Status.PAUSED:
        return ["resume", "cancel"]
    return []


def _badge(status: str, progress: Progress) -> dict[str, str]:
    label, kind = badge(status, progress)
    return {"badge": label, "badge_status": kind}


def job_state(snap: JobSnapshot, *, read_only: bool = False) -> dict[str, Any]:
    """The ``state`` trait of a job: ``snap.to_dict()`` plus the display fields the ESM needs
    (``name``, ``status_label``, ``actions``, ``read_only``, ``path_display`` and each file's
    ``text``), every text from :mod:`nbmodels._present`."""
    data = snap.to_dict()
    data["path_display"] = short_path(snap.path or "")
    data["files"] = [
        {
            **f.to_dict(),
            "text": format_progress(f.progress, status=f.status),
            "status_label": status_label(f.status),
            **_badge(f.status, f.progress),
        }
        for f in snap.files
    ]
    data["name"] = job_label(snap.ref)
    data["status_label"] = status_label(snap.status)
    data.update(_badge(snap.status, snap.progress))
    data["read_only"] = read_only
    data["actions"] = allowed_actions(snap.status, read_only=read_only)
    data["active"] = snap.status in Status.ACTIVE
    return data


# -- the model card (``nbmodels.inspect``) -----------------------------------------------------

#: The only keys of ``state["card"]``: what the card says, never how it was fetched (no URL,
#: token or error text can reach the front end through it).
CARD_KEYS = ("summary", "text", "fit", "fit_text", "title")


def card_state(card: ModelCard) -> dict[str, Any]:
    """``state["card"]`` of a job widget: the one-line summary split into the model part
    (``text``) and the memory verdict (``fit``: ``fits`` / ``tight`` / ``does not fit`` /
    ``unknown``, shown as ``fit_text``), and a ``title`` with the detail rows. Only
    :data:`CARD_KEYS`, all strings (``fit`` may be None)."""
    text, fit_text = card_summary(card)
    return {
        "summary": card.summary(),
        "text": text,
        "fit": card.memory.verdict if card.memory is not None else None,
        "fit_text": fit_text,
        "title": card_title(card),
    }
