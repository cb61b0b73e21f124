"""Every text the front ends show, written once: ``nbmodels`` (the CLI), ``%model_download`` and
``%model_panel`` (the magics and their text fallback) and the widgets (the Python side computes
each text the ESM draws).

- statuses and names: :func:`status_label`, :func:`job_label`, :func:`short_path`;
- listings: the newest :data:`SHOWN` jobs (:func:`newest`, :func:`older_line`) and why a job
  failed, cut to :data:`REASON_WIDTH` (:func:`reason`);
- errors on one line: :func:`one_line` (``Type: fact and next step``: the magic, the widgets)
  and :func:`error_line` (the whole message: the CLI's ``nbmodels: error: ...``);
- progress: :func:`plain_text` (a job's ``text/plain`` line), :func:`progress_line` (the text
  fallback's line, one or several jobs), :func:`job_text` and :func:`file_text` (the CLI's rows);
  each built on :func:`nbmodels._progress.format_progress`;
- model cards: :func:`card_rows` (one set of labels), :func:`card_lines`, :func:`card_title`,
  :func:`card_summary`.

Pure functions of snapshots, errors and model cards: no I/O, no UI library.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from ._progress import (
    FileProgress,
    JobSnapshot,
    Progress,
    Status,
    format_bytes,
    format_progress,
    group_retry,
    joined,
)
from .cards import ModelCard, format_count, format_gb
from .errors import NbmodelsError, Style

__all__ = [
    "REASON_WIDTH",
    "SHOWN",
    "badge",
    "card_lines",
    "card_rows",
    "card_summary",
    "card_title",
    "cut",
    "error_line",
    "file_text",
    "forms_pointer",
    "job_label",
    "job_text",
    "newest",
    "older_line",
    "one_line",
    "plain_text",
    "progress_line",
    "reason",
    "short_path",
    "status_label",
]

#: Jobs a listing shows unless asked for more.
SHOWN = 10
#: Characters of a failure reason in a listing (the JSON forms keep all of it).
REASON_WIDTH = 60

T = TypeVar("T")


# -- statuses and names ---------------------------------------------------------------------------


def status_label(status: str) -> str:
    """``already_downloaded`` -> ``already downloaded``."""
    return status.replace("_", " ")


def badge(status: str, progress: Progress) -> tuple[str, str]:
    """The status badge of a job or a file, as (label, kind): ``retrying`` while resolving or
    downloading waits for a retry, ``stalled`` when no byte came for a while; else the status."""
    if status in (Status.DOWNLOADING, Status.RESOLVING) and progress.retry is not None:
        return "retrying", "retrying"
    if status == Status.DOWNLOADING and progress.stalled:
        return "stalled", "stalled"
    return status_label(status), str(status)


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


# -- listings -------------------------------------------------------------------------------------


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


# -- errors ---------------------------------------------------------------------------------------


def forms_pointer(where: str) -> str:
    """What replaces a hint that lists the accepted forms (several lines) in a one-line error."""
    return f"See {where} for the accepted forms."


def _message(exc: BaseException, style: Style, more: str) -> str:
    """The error's message with options named in ``style``; a hint that spans several lines (a
    list of accepted forms) is replaced by ``more``."""
    if not isinstance(exc, NbmodelsError):
        return str(exc)
    if "\n" not in (exc.hint or ""):
        return exc.render(style)
    return f"{exc.fact} {more}" if more else exc.fact


def one_line(exc: BaseException, *, more: str = "", style: Style = "api") -> str:
    """``Type: fact and next step`` on one line (what the magic and the widgets show of an
    error), options named in ``style`` (``"flags"`` for the magic). A hint that spans several
    lines (a list of accepted forms) is replaced by ``more``."""
    lines = _message(exc, style, more).strip().splitlines()
    first = " ".join(lines[0].split()) if lines else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def error_line(exc: BaseException, *, more: str = "", style: Style = "flags") -> str:
    """The whole message on one line, without the type (the CLI's ``nbmodels: error: ...``);
    a several-line hint is replaced by ``more``, as in :func:`one_line`."""
    return " ".join(_message(exc, style, more).split()) or type(exc).__name__


# -- progress -------------------------------------------------------------------------------------


def _head(snap: JobSnapshot) -> str:
    """``model.gguf — downloading``."""
    return f"{job_label(snap.ref)} — {status_label(snap.status)}"


def plain_text(snap: JobSnapshot, *, reason_width: int | None = None) -> str:
    """The one-line ``text/plain`` form: ``model.gguf — downloading · 1.2 GB / 4.5 GB · 27% ...``
    (with the path once done, the error once failed: whole, or its fact cut to
    ``reason_width`` characters in a listing)."""
    if snap.error:
        why = snap.error.splitlines()[0] if reason_width is None else reason(snap, reason_width)
        return f"{_head(snap)}: {why}"
    text = format_progress(snap.progress, status=snap.status)
    if snap.status in ("completed", "already_downloaded") and snap.path:
        return joined(_head(snap), text, snap.path)
    return joined(_head(snap), text)


def progress_line(snaps: Sequence[JobSnapshot]) -> str:
    """The text fallback's line: ``model.gguf — downloading · 1.2 GB / 4.5 GB · 27% · 35.2 MB/s
    · ETA 1:42``; several jobs are summed: ``2 downloads (1 done): 1.2 GB / 4.5 GB · ...``."""
    if len(snaps) == 1:
        s = snaps[0]
        return joined(_head(s), format_progress(s.progress, status=s.status))
    done = sum(1 for s in snaps if s.done)
    totals = [s.progress.total_bytes for s in snaps]
    downloaded = sum(s.progress.downloaded_bytes for s in snaps)
    total = None if any(t is None for t in totals) else sum(t or 0 for t in totals)
    speed = sum(s.progress.bytes_per_second for s in snaps)
    running = [s for s in snaps if s.status == "downloading"]
    eta = (total - downloaded) / speed if total is not None and speed > 0 else None
    stalled = bool(running) and all(s.progress.stalled for s in running)
    retry = group_retry([s.progress for s in running])
    agg = Progress(downloaded, total, speed, eta, stalled, retry)
    status = "downloading" if running else "waiting"
    return f"{len(snaps)} downloads ({done} done): " + format_progress(agg, status=status)


def file_text(f: FileProgress, *, label: bool = False) -> str:
    """A file's row in the CLI: ``1.2 GB / 4.5 GB · 27% · 35.2 MB/s · ETA 1:42``, or
    ``completed · 4.5 GB / ...`` (the status is always named when ``label``)."""
    text = format_progress(f.progress, status=f.status)
    if f.status == "downloading" and not label:
        return text
    return joined(status_label(f.status), text)


def job_text(snap: JobSnapshot) -> str:
    """A job's row in the CLI: ``REF · downloading · 1.2 GB / 4.5 GB · ...`` (just the status
    before sizes are known, unless it waits to retry)."""
    head = f"{snap.ref} · {status_label(snap.status)}"
    return joined(head, format_progress(snap.progress, status=snap.status))


# -- model cards ----------------------------------------------------------------------------------


def _known(value: object) -> str:
    return "-" if value is None else str(value)


def _layers_heads(card: ModelCard) -> str:
    heads = f"{_known(card.heads)} heads"
    if card.kv_heads is not None and card.kv_heads != card.heads:
        heads += f" ({card.kv_heads} KV)"
    return f"{_known(card.layers)} layers, {heads}"


def _size(card: ModelCard) -> str:
    count = len(card.files)
    files = f"{count} {card.format} file{'s' if count != 1 else ''}"
    return f"{format_bytes(card.total_size_bytes)} in {files}"


def _memory_rows(card: ModelCard, full: bool) -> list[tuple[str, str]]:
    """``memory``, and with ``full`` the lines under it: at the model's full context, RAM, GPU."""
    mem = card.memory
    if mem is None:
        return []
    ctx = f" at ctx {mem.context}" if mem.context else ""
    rows = [("memory", f"{mem.summary()}{ctx}: {mem.breakdown()}")]
    if not full:
        return rows
    if mem.needed_bytes_at_model_context is not None and mem.model_context != mem.context:
        at_full = format_gb(mem.needed_bytes_at_model_context)
        rows.append(("", f"~{at_full} at the full context ({mem.model_context})"))
    ram = "unknown" if mem.ram_available_bytes is None else format_gb(mem.ram_available_bytes)
    rows.append(("", f"RAM available {ram}: {mem.ram_verdict}"))
    if mem.gpu_name is not None and mem.gpu_free_bytes is not None:
        free = format_gb(mem.gpu_free_bytes)
        rows.append(("", f"GPU {mem.gpu_name}, {free} free: {mem.gpu_verdict}"))
    return rows


def _source_rows(card: ModelCard) -> list[tuple[str, str]]:
    """Where the card was read from (``nbmodels inspect``)."""
    files = ", ".join(
        f"{name} ({format_bytes(size)})"
        for name, size in zip(card.files, card.file_sizes, strict=True)
    )
    where = "locally" if card.local else "remotely"
    return [
        ("format", f"{card.format}, {len(card.files)} file(s)"),
        ("read", f"{format_bytes(card.bytes_read)} of it, {where}"),
        ("files", files),
        ("name", card.name or "-"),
    ]


def card_rows(card: ModelCard, *, full: bool = False) -> list[tuple[str, str]]:
    """The detail rows of a model card, one set of labels for every front end: what
    ``%model_download --inspect`` prints under the summary line and the widget's tooltip;
    ``full`` (``nbmodels inspect``) adds where it was read from, the tensor types, the
    embedding length, the commit and the memory verdicts in detail (rows with an empty label
    continue the row above)."""
    types = ", ".join(f"{t} {format_count(n)}" for t, n in card.dtypes)
    chat = {True: "yes", False: "no", None: "unknown"}[card.chat_template]
    rows = [
        ("architecture", card.architecture or "-"),
        ("parameters", f"{card.parameters:,} ({format_count(card.parameters)})"),
        ("quant" if card.format == "gguf" else "dtype", card.file_type or "-"),
        ("tensor types", types or "-"),
        ("context", _known(card.context_length)),
        ("embedding", _known(card.embedding_length)),
        ("layers / heads", _layers_heads(card)),
        ("tensors", str(card.tensor_count)),
        ("size", _size(card)),
        ("chat template", chat),
        ("commit", card.commit or "-"),
    ]  # fmt: skip
    if not full:
        rows = [row for row in rows if row[0] not in _FULL_ONLY]
    head = _source_rows(card) if full else []
    return head + rows + _memory_rows(card, full)


#: Rows only ``nbmodels inspect`` shows.
_FULL_ONLY = frozenset({"tensor types", "embedding", "commit"})


def card_lines(card: ModelCard, *, full: bool = False) -> list[str]:
    """:func:`card_rows` as indented, aligned lines (``  quant           Q4_K_M``)."""
    rows = card_rows(card, full=full)
    width = max(len(key) for key, _ in rows)
    return [f"  {key:<{width}}  {value}" for key, value in rows]


def card_title(card: ModelCard) -> str:
    """The widget's tooltip: ``key: value`` per row of :func:`card_rows`."""
    return "\n".join(f"{key}: {value}" for key, value in card_rows(card))


def card_summary(card: ModelCard) -> tuple[str, str]:
    """The one-line summary split in two: the model part and the memory verdict
    (``("llama · 1.1B params · Q4_K_M · ctx 2048 · 668.0 MB", "fits (needs ~0.9 GB of 23
    GB)")``; the verdict is ``""`` when unknown)."""
    summary = card.summary()
    fit_text = card.memory.summary() if card.memory is not None else ""
    text = summary.removesuffix(f" · {fit_text}") if fit_text else summary
    return text, fit_text
