"""``nbmodels ls``, ``nbmodels rm`` and ``nbmodels verify``: the files on disk."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from typing import Any

import nbmodels

from .._config import env_flag, hf_cache_dir
from .._options import Options
from .._progress import format_bytes
from ..cache import (
    CachedFile,
    Check,
    LocalEntry,
    hub_expectations,
    local_entries,
    remove,
    resolve_cached,
    scan_cache,
    verify,
    verify_offline,
)
from ..refs import split_quant_name
from ._common import Io, Parser, add_flags, add_json, ago, iso, new_parser, table

__all__ = ["build_ls", "build_rm", "build_verify", "run_ls", "run_rm", "run_verify"]


def _quant(file: str) -> str | None:
    return split_quant_name(file)[0]


def _revision(refs: Iterable[str], commit: str | None) -> str:
    names = ",".join(refs)
    short = commit[:8] if commit else ""
    if names and short:
        return f"{names} ({short})"
    return names or short or "-"


def _file_json(
    f: CachedFile | LocalEntry, location: str, revisions: Iterable[str], blob: str | None
) -> dict[str, Any]:
    return {
        "location": location,
        "repo": f.repo,
        "repo_type": f.repo_type,
        "file": f.file,
        "quant": _quant(f.file),
        "size_bytes": f.size,
        "revisions": list(revisions),
        "commit": f.commit,
        "last_used": iso(f.last_used),
        "path": str(f.path),
        "blob": blob,
        "unpacked": None,
    }


def cached_json(f: CachedFile) -> dict[str, Any]:
    unpacked = None
    if f.unpacked is not None:
        unpacked = {"path": str(f.unpacked), "size_bytes": f.unpacked_size}
    return {**_file_json(f, "cache", f.refs, f.blob_name), "unpacked": unpacked}


def local_json(e: LocalEntry) -> dict[str, Any]:
    return _file_json(e, "local", [e.revision] if e.revision else [], None)


# -- ls -------------------------------------------------------------------------------------------


def build_ls(prog: str) -> Parser:
    parser = new_parser(
        prog,
        "What is on disk: every file of the Hugging Face cache, and files nbmodels downloaded "
        "elsewhere (--dir and URL downloads, from the job history).",
    )
    parser.add_argument(
        "filter", nargs="?", metavar="FILTER", help="only repos or files containing this text"
    )
    add_json(parser)
    return parser


def run_ls(ns: argparse.Namespace, io: Io) -> int:
    needle = (ns.filter or "").lower()

    def keep(*texts: str) -> bool:
        return not needle or any(needle in t.lower() for t in texts)

    cache_dir = hf_cache_dir()
    cached = [f for r in scan_cache(cache_dir) for f in r.files if keep(f.repo, f.file)]
    local = [e for e in local_entries(nbmodels.history(), cache_dir) if keep(e.repo, e.file)]
    blobs = {f.blob: f.size or 0 for f in cached if f.blob is not None}
    total = sum(blobs.values()) + sum(f.size or 0 for f in cached if f.blob is None)
    total += sum(f.unpacked_size or 0 for f in cached) + sum(e.size for e in local)
    if ns.json:
        files = [cached_json(f) for f in cached] + [local_json(e) for e in local]
        io.json({"cache_dir": str(cache_dir), "total_size_bytes": total, "files": files})
        return 0
    if not cached and not local:
        io.line(f"Nothing{' matching' if needle else ''} on disk (cache: {cache_dir}).")
        return 0
    if cached:
        io.line(f"Hugging Face cache ({cache_dir}):")
        _table(io, ["REPO", "FILE", "QUANT", "SIZE", "REVISION", "LAST USED"], _cached_rows(cached))
    if local:
        io.line("Downloaded elsewhere:")
        _table(io, ["REPO", "FILE", "SIZE", "REVISION", "LAST USED", "PATH"], _local_rows(local))
    n = len(cached) + len(local)
    io.line(f"{n} file{'s' if n != 1 else ''}, {format_bytes(total)} on disk")
    return 0


def _cached_rows(cached: Iterable[CachedFile]) -> list[list[str]]:
    """A row per file; an archive unpacked by ``extract=True`` gets a second row, its folder
    (``model.zip -> model/``) with the bytes unpacked."""
    rows: list[list[str]] = []
    for f in cached:
        revision = _revision(f.refs, f.commit)
        size = "?" if f.size is None else format_bytes(f.size)
        rows.append([f.repo, f.file, _quant(f.file) or "-", size, revision, ago(f.last_used)])
        if f.unpacked is not None:
            unpacked = f"{f.file} -> {f.unpacked.name}/"
            shown = format_bytes(f.unpacked_size or 0)
            rows.append([f.repo, unpacked, "-", shown, revision, ago(f.last_used)])
    return rows


def _local_rows(local: Iterable[LocalEntry]) -> list[list[str]]:
    return [
        [
            e.repo,
            e.file,
            format_bytes(e.size),
            _revision([e.revision] if e.revision else [], e.commit),
            ago(e.last_used),
            str(e.path),
        ]
        for e in local
    ]


def _table(io: Io, headers: list[str], rows: list[list[str]]) -> None:
    for line in table(headers, rows):
        io.line("  " + line)


# -- rm -------------------------------------------------------------------------------------------


def build_rm(prog: str) -> Parser:
    parser = new_parser(
        prog,
        "Remove a model from the Hugging Face cache: the snapshot entries REF names (a bare "
        "owner/repo: every cached revision; #rev or --revision: that snapshot; a quant, file or "
        "folder: those files), then the blobs no other snapshot uses, empty snapshots and the "
        "refs that pointed at them. Links out of the cache are never followed.",
    )
    parser.add_argument("ref", metavar="REF", help="what to remove")
    add_flags(parser, "revision")
    parser.add_argument("--dry-run", action="store_true", help="show what would be removed")
    add_json(parser)
    return parser


def run_rm(ns: argparse.Namespace, io: Io) -> int:
    done = remove(ns.ref, revision=ns.revision, dry_run=ns.dry_run)
    if ns.json:
        io.json(
            {
                "repo": done.repo,
                "dry_run": done.dry_run,
                "files": [cached_json(f) for f in done.files],
                "freed_bytes": done.freed_bytes,
                "blobs_removed": list(done.blobs_removed),
                "blobs_kept": list(done.blobs_kept),
                "blobs_busy": list(done.blobs_busy),
                "snapshots_removed": list(done.snapshots_removed),
                "refs_removed": list(done.refs_removed),
                "unpacked_removed": [str(p) for p in done.unpacked_removed],
            }
        )
        return 0
    verb = "Would remove" if done.dry_run else "Removed"
    for f in done.files:
        unpacked = "" if f.unpacked is None else "  (and the folder it was unpacked into)"
        io.line(f"  {f.commit[:8]}  {f.file}{unpacked}")
    n = len(done.files)
    io.line(
        f"{verb} {n} file{'s' if n != 1 else ''} of {done.repo}, "
        f"{'freeing' if done.dry_run else 'freed'} {format_bytes(done.freed_bytes)}."
    )
    if done.blobs_kept:
        k = len(done.blobs_kept)
        io.line(f"Kept {k} blob{'s' if k != 1 else ''} still used by another revision.")
    if done.snapshots_removed:
        gone = ", ".join(c[:8] for c in done.snapshots_removed)
        refs = f" and ref(s) {', '.join(done.refs_removed)}" if done.refs_removed else ""
        io.line(f"{'Would remove' if done.dry_run else 'Removed'} snapshot(s) {gone}{refs}.")
    if done.blobs_busy:
        io.error(
            f"{len(done.blobs_busy)} blob(s) are being downloaded and were left in place; "
            "run rm again when the download ends."
        )
        return 1
    return 0


# -- verify ---------------------------------------------------------------------------------------


def build_verify(prog: str) -> Parser:
    parser = new_parser(
        prog,
        "Re-hash cached files. With REF: against the Hub's digests (sha256 for LFS files, the "
        "git blob SHA-1 for small files) at each snapshot's commit. Without REF (or with "
        "--offline): every cached file against its blob's name, with no network. Exit status "
        "1 if a file is corrupt.",
    )
    parser.add_argument("ref", nargs="?", metavar="REF", help="what to verify (default: all)")
    add_flags(parser, "revision", "offline")
    add_json(parser)
    return parser


_LABEL = {"ok": "OK", "corrupt": "CORRUPT", "unverifiable": "UNKNOWN"}


def run_verify(ns: argparse.Namespace, io: Io) -> int:
    offline = bool(ns.offline) or env_flag("HF_HUB_OFFLINE")
    if ns.ref is None:
        files = [f for repo in scan_cache() for f in repo.files]
        checks: Iterable[Check] = verify_offline(files)
    else:
        _repo, ref, files = resolve_cached(ns.ref, ns.revision)
        if offline:
            checks = verify_offline(files)
        else:
            checks = verify(files, hub_expectations(ref, Options.create(), files))
    results: list[Check] = []
    for check in checks:
        results.append(check)
        if not ns.json:
            f = check.file
            how = f"({check.algorithm})" if check.status == "ok" else f"— {check.detail}"
            io.line(f"{_LABEL[check.status]:<8} {f.repo}  {f.file}  @{f.commit[:8]}  {how}")
            io.out.flush()
    counts = {
        s: sum(1 for c in results if c.status == s) for s in ("ok", "corrupt", "unverifiable")
    }
    ok = counts["corrupt"] == 0
    if ns.json:
        io.json({"ok": ok, "counts": counts, "files": [c.to_dict() for c in results]})
    else:
        io.line(
            f"{len(results)} file(s): {counts['ok']} ok, {counts['corrupt']} corrupt, "
            f"{counts['unverifiable']} unverifiable"
        )
    if not ok:
        io.error(
            f"{counts['corrupt']} corrupt file(s); download them again with "
            "`nbmodels pull --force REF`, or remove them with `nbmodels rm REF`."
        )
    return 0 if ok else 1
