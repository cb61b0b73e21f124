"""How jobs are listed, the same in every front end (``nbmodels jobs``, ``%model_panel`` as text,
the widgets): newest first, only the newest few unless asked for all, one label per job, and why
a job failed in a few words. Pure functions; no I/O, no UI.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from ._progress import JobSnapshot

__all__ = ["REASON_WIDTH", "SHOWN", "cut", "job_label", "newest", "older_line", "reason"]

#: Jobs a listing shows unless asked for more.
SHOWN = 10
#: Characters of a failure reason in a listing (the JSON forms keep all of it).
REASON_WIDTH = 60

T = TypeVar("T")


def job_label(ref: str) -> str:
    """The name of a job wherever jobs are listed or shown: the reference as the user gave it;
    a URL by its file name (``https://host/models/tiny.gguf`` -> ``tiny.gguf``).

    It depends on the reference alone, so a job keeps its name whatever its state (before its
    files are known, failed, from an earlier session)."""
    if "://" not in ref:
        return ref
    path = urlsplit(ref).path.rstrip("/")
    tail = unquote(path.rsplit("/", 1)[-1]) if path else ""
    return tail or ref


def cut(text: str, width: int) -> str:
    """``text`` on one line, at most ``width`` characters (``…`` marks a cut)."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    return flat[: max(0, width - 1)].rstrip() + "…"


def reason(snap: JobSnapshot, width: int | None = REASON_WIDTH) -> str:
    """Why the job ended without its files (the error's fact, without the next step), cut to
    ``width`` (None: whole); ``""`` when it has no error."""
    if not snap.error:
        return ""
    text = snap.error
    hint = snap.error_hint
    if hint and text.endswith(hint) and text[: -len(hint)].strip():
        text = text[: -len(hint)]
    first = text.strip().splitlines()[0]
    return " ".join(first.split()) if width is None else cut(first, width)


def newest(items: Sequence[T], limit: int | None = SHOWN) -> tuple[list[T], int]:
    """The first ``limit`` of ``items`` (already newest first; None: all) and how many are
    left out."""
    if limit is None or limit >= len(items):
        return list(items), 0
    return list(items[:limit]), len(items) - limit


def older_line(hidden: int, flag: str = "--all") -> str:
    """``… and 21 older jobs (--all to show)``."""
    return f"… and {hidden} older job{'s' if hidden != 1 else ''} ({flag} to show)"
