"""``nbmodels jobs`` and ``nbmodels inspect``."""

from __future__ import annotations

import argparse
from typing import Any

from .._listing import SHOWN, job_label, newest, older_line, reason
from .._progress import format_bytes
from ..engine import Job
from ._main import Io, Parser, UsageError, add_flags, add_json, ago, iso, new_parser, table

__all__ = ["build_inspect", "build_jobs", "run_inspect", "run_jobs"]


# -- jobs ---------------------------------------------------------------------------------------


def build_jobs(prog: str) -> Parser:
    parser = new_parser(
        prog,
        f"Downloads of this and earlier sessions, newest first: the newest {SHOWN} unless "
        "--all or --limit; a failed job says why in a few words (--json: every job, whole "
        "messages, unless --limit).",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "-n", "--limit", type=int, metavar="N", help=f"show the newest N (default {SHOWN})"
    )
    which.add_argument("-a", "--all", action="store_true", help="show every job")
    add_json(parser)
    return parser


def job_json(job: Job) -> dict[str, Any]:
    """:meth:`Job.to_dict` plus ``created_at`` and the (token-free) options."""
    return {
        **job.to_dict(),
        "created_at": iso(job.snapshot().created_at),
        "options": job.options.record(),
    }


def _when(job: Job) -> float | None:
    snap = job.snapshot()
    return snap.completed_at or snap.started_at or snap.created_at


def _size(job: Job) -> str:
    p = job.progress
    if p.total_bytes is None:
        return format_bytes(p.downloaded_bytes) if p.downloaded_bytes else "-"
    return format_bytes(p.total_bytes)


def _limit(ns: argparse.Namespace) -> int | None:
    """How many jobs to list (None: all). ``--limit 0`` also means all."""
    if ns.limit is not None and ns.limit < 0:
        raise UsageError(f"argument -n/--limit: must be 0 or more, got {ns.limit}", "nbmodels jobs")
    if ns.all or ns.limit == 0 or (ns.json and ns.limit is None):
        return None
    return SHOWN if ns.limit is None else int(ns.limit)


def run_jobs(ns: argparse.Namespace, io: Io) -> int:
    import nbmodels

    jobs, hidden = newest(nbmodels.history(), _limit(ns))
    if ns.json:
        io.json({"jobs": [job_json(j) for j in jobs]})
        return 0
    if not jobs:
        io.line("No downloads yet.")
        return 0
    snaps = [j.snapshot() for j in jobs]
    rows = [
        [s.job_id, s.status.replace("_", " "), job_label(s.ref), _size(j), ago(_when(j))]
        for s, j in zip(snaps, jobs, strict=True)
    ]
    headers = ["ID", "STATUS", "JOB", "SIZE", "WHEN"]
    if any(s.error for s in snaps):
        headers.append("ERROR")
        for row, snap in zip(rows, snaps, strict=True):
            row.append(reason(snap) or "-")
    for line in table(headers, rows):
        io.line(line)
    if hidden:
        io.line(older_line(hidden))
    return 0


# -- inspect ------------------------------------------------------------------------------------


def build_inspect(prog: str) -> Parser:
    parser = new_parser(
        prog,
        "Read a model's header without downloading it (a few HTTP range requests; a local "
        "path or a pinned reference already on disk reads the local file) and estimate the "
        "memory it needs on this machine.",
    )
    parser.add_argument("ref", metavar="REF", help="a reference, or a local file or folder")
    add_flags(parser, "revision", "dir", "offline")
    parser.add_argument(
        "--context",
        type=int,
        metavar="N",
        help="context length (tokens) for the memory estimate (default: the model's, at most 4096)",
    )
    add_json(parser)
    return parser


def _count(n: int | None) -> str:
    return "-" if n is None else str(n)


def run_inspect(ns: argparse.Namespace, io: Io) -> int:
    from ..cards import format_count, format_gb, inspect

    options = {k: getattr(ns, k) for k in ("revision", "dir") if getattr(ns, k) is not None}
    if ns.offline:
        options["offline"] = True
    if ns.context is not None and ns.context < 1:
        io.error("--context must be a positive number of tokens")
        return 2
    card = inspect(ns.ref, context=ns.context, **options)
    if ns.json:
        io.json({"model": card.to_dict()})
        return 0
    where = "locally" if card.local else "remotely"
    files = ", ".join(
        f"{name} ({format_bytes(size)})"
        for name, size in zip(card.files, card.file_sizes, strict=True)
    )
    types = ", ".join(f"{t} {format_count(n)}" for t, n in card.dtypes)
    heads = _count(card.heads) + (f" (kv {card.kv_heads})" if card.kv_heads is not None else "")
    chat = {True: "yes", False: "no", None: "unknown"}[card.chat_template]
    rows = [
        ("format", f"{card.format}, {len(card.files)} file(s)"),
        ("read", f"{format_bytes(card.bytes_read)} of it, {where}"),
        ("files", files),
        ("name", card.name or "-"),
        ("architecture", card.architecture or "-"),
        ("parameters", f"{card.parameters:,} ({format_count(card.parameters)})"),
        ("quant" if card.format == "gguf" else "dtype", card.file_type or "-"),
        ("tensor types", types or "-"),
        ("tensors", str(card.tensor_count)),
        ("context length", _count(card.context_length)),
        ("embedding", _count(card.embedding_length)),
        ("layers", _count(card.layers)),
        ("heads", heads),
        ("chat template", chat),
        ("total size", format_bytes(card.total_size_bytes)),
        ("commit", card.commit or "-"),
    ]  # fmt: skip
    io.line(card.ref)
    io.line(f"  {card.summary()}")
    io.line()
    for key, value in rows:
        io.line(f"  {key:<15} {value}")
    mem = card.memory
    if mem is not None:
        ctx = f" at ctx {mem.context}" if mem.context else ""
        io.line(f"  {'memory':<15} ~{format_gb(mem.needed_bytes)}{ctx}: {mem.breakdown()}")
        if mem.needed_bytes_at_model_context is not None and mem.model_context != mem.context:
            io.line(
                f"  {'':<15} ~{format_gb(mem.needed_bytes_at_model_context)} at the full "
                f"context ({mem.model_context})"
            )
        ram = "unknown" if mem.ram_available_bytes is None else format_gb(mem.ram_available_bytes)
        io.line(f"  {'':<15} RAM available {ram}: {mem.ram_verdict}")
        if mem.gpu_name is not None and mem.gpu_free_bytes is not None:
            io.line(
                f"  {'':<15} GPU {mem.gpu_name}, {format_gb(mem.gpu_free_bytes)} free: "
                f"{mem.gpu_verdict}"
            )
    return 0
