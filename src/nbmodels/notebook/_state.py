"""What the widget front end receives: a job's full snapshot as a JSON-ready dict.

Everything the JavaScript shows is computed here, so there is one formatter
(:func:`nbmodels.format_progress`) and one notion of which buttons apply; the ESM only draws.
Pure functions, no widget library.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from .._listing import job_label, reason
from .._progress import JobSnapshot, Status, format_bytes, format_progress
from ..errors import NbmodelsError, Style

if TYPE_CHECKING:
    from ..cards import ModelCard

__all__ = [
    "allowed_actions",
    "card_details",
    "card_state",
    "display_name",
    "job_state",
    "one_line",
    "plain_text",
    "short_path",
    "status_label",
]

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


def status_label(status: str) -> str:
    """``already_downloaded`` -> ``already downloaded``."""
    return status.replace("_", " ")


def display_name(snap: JobSnapshot) -> str:
    """The job's name: :func:`nbmodels._listing.job_label` (the reference; a URL's file name),
    the same in the widgets, the text forms and ``nbmodels jobs``, whatever the job's state."""
    return job_label(snap.ref)


def short_path(path: str) -> str:
    """``path`` with the home directory written ``~``, as a shell shows it (for display only:
    the widget's Copy button and tooltip keep the full path)."""
    try:
        home = Path.home()
    except (RuntimeError, KeyError):  # no HOME and no password entry
        return path
    if not path or home == PurePath(home.anchor):
        return path
    try:
        rel = PurePath(path).relative_to(home)
    except ValueError:
        return path
    return "~" if rel == PurePath() else f"~{os.sep}{rel}"


def job_state(snap: JobSnapshot, *, read_only: bool = False) -> dict[str, Any]:
    """The ``state`` trait of a job: ``snap.to_dict()`` plus the display fields the ESM needs
    (``name``, ``status_label``, ``actions``, ``read_only``, ``path_display`` and each file's
    ``text``)."""
    data = snap.to_dict()
    data["path_display"] = short_path(snap.path or "")
    data["files"] = [
        {
            **f.to_dict(),
            "text": format_progress(f.progress, status=f.status),
            "status_label": status_label(f.status),
        }
        for f in snap.files
    ]
    data["name"] = display_name(snap)
    data["status_label"] = status_label(snap.status)
    data["read_only"] = read_only
    data["actions"] = allowed_actions(snap.status, read_only=read_only)
    data["active"] = snap.status in Status.ACTIVE
    return data


def plain_text(snap: JobSnapshot, *, reason_width: int | None = None) -> str:
    """The one-line ``text/plain`` form: ``model.gguf — downloading · 1.2 GB / 4.5 GB · 27% ...``
    (with the path once done, the error once failed: whole, or its fact cut to
    ``reason_width`` characters in a listing)."""
    head = f"{display_name(snap)} — {status_label(snap.status)}"
    if snap.error:
        why = snap.error.splitlines()[0] if reason_width is None else reason(snap, reason_width)
        return f"{head}: {why}"
    text = format_progress(snap.progress, status=snap.status)
    if snap.status in Status.SUCCEEDED and snap.path:
        return f"{head} · {text} · {snap.path}"
    return f"{head} · {text}"


def one_line(exc: BaseException, *, more: str = "", style: Style = "api") -> str:
    """``Type: fact and next step`` on one line (what the magic and the widgets show of an
    error), options named in ``style`` (``"flags"`` for the magic). A hint that spans several
    lines (a list of accepted forms) is replaced by ``more``."""
    if isinstance(exc, NbmodelsError):
        hint = exc.hint or ""
        text = exc.fact if "\n" in hint else exc.render(style)
        if "\n" in hint and more:
            text = f"{text} {more}"
    else:
        text = str(exc)
    lines = text.strip().splitlines()
    first = " ".join(lines[0].split()) if lines else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


# -- the model card (``nbmodels.inspect``) -----------------------------------------------------

#: The only keys of ``state["card"]``: what the card says, never how it was fetched (no URL,
#: token or error text can reach the front end through it).
CARD_KEYS = ("summary", "text", "fit", "fit_text", "title")


def _known(value: object) -> str:
    return "-" if value is None else str(value)


def card_details(card: ModelCard) -> list[tuple[str, str]]:
    """The detail rows of a model card (what ``%model_download --inspect`` prints under the
    summary line, and the widget's tooltip)."""
    from ..cards import format_count

    heads = f"{_known(card.heads)} heads"
    if card.kv_heads is not None and card.kv_heads != card.heads:
        heads += f" ({card.kv_heads} KV)"
    count = len(card.files)
    rows = [
        ("architecture", card.architecture or "-"),
        ("parameters", f"{card.parameters:,} ({format_count(card.parameters)})"),
        ("quant" if card.format == "gguf" else "dtype", card.file_type or "-"),
        ("context", _known(card.context_length)),
        ("layers / heads", f"{_known(card.layers)} layers, {heads}"),
        ("tensors", str(card.tensor_count)),
        (
            "size",
            f"{format_bytes(card.total_size_bytes)} in {count} {card.format} "
            f"file{'s' if count != 1 else ''}",
        ),
        ("chat template", {True: "yes", False: "no", None: "unknown"}[card.chat_template]),
    ]
    mem = card.memory
    if mem is not None:
        ctx = f" at ctx {mem.context}" if mem.context else ""
        rows.append(("memory", f"{mem.summary()}{ctx}: {mem.breakdown()}"))
    return rows


def card_state(card: ModelCard) -> dict[str, Any]:
    """``state["card"]`` of a job widget: the one-line summary split into the model part
    (``text``) and the memory verdict (``fit``: ``fits`` / ``tight`` / ``does not fit`` /
    ``unknown``, shown as ``fit_text``), and a ``title`` with the detail rows. Only
    :data:`CARD_KEYS`, all strings (``fit`` may be None)."""
    summary = card.summary()
    mem = card.memory
    fit_text = mem.summary() if mem is not None else ""
    text = summary.removesuffix(f" · {fit_text}") if fit_text else summary
    title = "\n".join(f"{key}: {value}" for key, value in card_details(card))
    return {
        "summary": summary,
        "text": text,
        "fit": mem.verdict if mem is not None else None,
        "fit_text": fit_text,
        "title": title,
    }
