"""``nbmodels jobs`` and ``nbmodels inspect``."""

from __future__ import annotations

import argparse
from typing import Any

import nbmodels

from .._flags import add_limit_arguments, listing_limit
from .._present import SHOWN, card_lines, job_label, newest, older_line, reason, status_label
from .._progress import Status, format_bytes
from ..engine import Job
from ._common import Io, Parser, add_flags, add_json, ago, iso, new_parser, table

__all__ = ["build_inspect", "build_jobs", "run_inspect", "run_jobs"]


# -- jobs ---------------------------------------------------------------------------------------


def build_jobs(prog: str) -> Parser:
    parser = new_parser(
        prog,
        f"Downloads of this and earlier sessions, newest first: the newest {SHOWN} unless "
        "--all or --limit; a failed job says why in a few words (--json: every job, whole "
        "messages, unless --limit).",
    )
    add_limit_arguments(parser)
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
    """The size of what a job got: the whole size once it succeeded; else what it has of what
    it needs (``1.0 MB of 3.0 MB``), so a failed job does not look complete."""
    p = job.progress
    if p.total_bytes is None:
        return format_bytes(p.downloaded_bytes) if p.downloaded_bytes else "-"
    if job.status in Status.SUCCEEDED:
        return format_bytes(p.total_bytes)
    return f"{format_bytes(p.downloaded_bytes)} of {format_bytes(p.total_bytes)}"


def run_jobs(ns: argparse.Namespace, io: Io) -> int:
    limit = listing_limit(ns, "nbmodels jobs", default=None if ns.json else SHOWN)
    jobs, hidden = newest(nbmodels.history(), limit)
    if ns.json:
        io.json({"jobs": [job_json(j) for j in jobs]})
        return 0
    if not jobs:
        io.line("No downloads yet.")
        return 0
    snaps = [j.snapshot() for j in jobs]
    rows = [
        [s.job_id, status_label(s.status), job_label(s.ref), _size(j), ago(_when(j))]
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


def run_inspect(ns: argparse.Namespace, io: Io) -> int:
    options = {k: getattr(ns, k) for k in ("revision", "dir") if getattr(ns, k) is not None}
    if ns.offline:
        options["offline"] = True
    if ns.context is not None and ns.context < 1:
        io.error("--context must be a positive number of tokens")
        return 2
    card = nbmodels.inspect(ns.ref, context=ns.context, **options)
    if ns.json:
        io.json({"model": card.to_dict()})
        return 0
    io.line(card.ref)
    io.line(f"  {card.summary()}")
    io.line()
    for line in card_lines(card, full=True):
        io.line(line)
    return 0
