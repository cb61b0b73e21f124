"""``nbmodels pull``: download references (or the project manifest) with terminal progress."""

from __future__ import annotations

import argparse
import threading
from collections.abc import Sequence
from typing import Any

import nbmodels

from .._flags import add_download_arguments, add_frontend_arguments, group_refs
from .._flags import options_from_namespace as cli_options
from .._options import Options, OptionValueError
from ..cluster import ClusterJob, prefetch
from ..engine import Job, shutdown
from ..errors import NbmodelsError, RefError
from ..refs import ACCEPTED_FORMS, parse_ref
from ._common import Io, Parser, UsageError, new_parser
from ._manifest import load_manifest
from ._progress import View, make_view

__all__ = ["build_pull", "run_pull"]

#: Seconds between two redraws (bars) / checks (plain lines).
REFRESH = 0.2

_EPILOG = f"""\
references:
{ACCEPTED_FORMS}

With no REF, pulls the models listed in the nearest pyproject.toml:

  [tool.nbmodels]
  dir = "models"          # optional: defaults for every entry (any download option)
  models = [
      "hf:owner/Model-GGUF:Q4_K_M",
      {{ ref = "owner/tiny-model", revision = "v1.0", include = ["*.json", "*.safetensors"] }},
  ]

A relative dir is relative to that pyproject.toml; options on the command line override the
manifest's. Files already on disk are not fetched again (a pinned reference costs no request).

--cluster puts the files on every alive node of a Ray cluster (RAY_ADDRESS, else the one
started on this machine; `pip install 'nbmodels[ray]'`), each in its own Hugging Face cache
(or --dir), with one Hub transfer per file: nodes copy from each other (docs/cluster.md). It
prints one NODE_ID PATH line per node.
Progress goes to stdout (bars on a terminal, plain lines otherwise); then each local path is
printed on a line of its own; errors go to stderr. Exit status 1 if any download failed; 2 if
a reference or an option value is invalid (then nothing is downloaded)."""


def build_pull(prog: str) -> Parser:
    parser = new_parser(prog, "Download models into the Hugging Face cache (or --dir).", _EPILOG)
    parser.add_argument("refs", nargs="*", metavar="REF", help="what to download")
    add_download_arguments(parser.add_argument_group("download options"))
    cluster = parser.add_argument_group("Ray cluster")
    cluster.add_argument(
        "--cluster",
        action="store_true",
        help="put the files on every node of the Ray cluster (one Hub transfer per file)",
    )
    cluster.add_argument(
        "--node",
        dest="nodes",
        action="append",
        metavar="NODE_ID",
        help="with --cluster: only this node (repeatable; default: every alive node)",
    )
    add_frontend_arguments(parser.add_argument_group("display"), background=False)
    return parser


def _plan(ns: argparse.Namespace, io: Io) -> list[tuple[str, dict[str, Any]]]:
    """(reference, download options) pairs from the command line or the manifest."""
    given = cli_options(ns)
    refs = group_refs(ns.refs)
    if refs:
        return [(ref, dict(given)) for ref in refs]
    manifest = load_manifest()
    if not ns.quiet:
        io.line(f"{len(manifest.entries)} model(s) listed in {manifest.path}")
    return [(e.ref, {**e.options, **given}) for e in manifest.entries]


def _bad_input(plan: Sequence[tuple[str, dict[str, Any]]], io: Io, prog: str) -> bool:
    """Report every malformed reference and option value (one line each); True if any.
    Bad input is a usage error: nothing starts."""
    bad = False
    seen: set[str] = set()
    for ref, options in plan:
        try:
            Options.create(**options)
        except OptionValueError as exc:
            text = exc.render("flags")
            if text not in seen:  # the command line's options are shared by every REF
                seen.add(text)
                io.usage(prog, text)
            bad = True
        try:
            parse_ref(ref)
        except RefError as exc:
            io.error(exc)
            bad = True
    return bad


def _wait(jobs: Sequence[Job], view: View) -> None:
    """Redraw until every job is done (woken at once when one finishes)."""
    wake = threading.Event()

    def on_snapshot(snap: Any) -> None:
        if snap.done:
            wake.set()

    stops = [job.subscribe(on_snapshot) for job in jobs]
    try:
        while True:
            view.update()
            if all(job.done for job in jobs):
                return
            wake.wait(REFRESH)
            wake.clear()
    finally:
        for stop in stops:
            stop()


def run_pull(ns: argparse.Namespace, io: Io) -> int:
    plan = _plan(ns, io)
    if _bad_input(plan, io, "nbmodels pull"):
        return 2
    if ns.nodes and not ns.cluster:
        raise UsageError("--node needs --cluster", "nbmodels pull")
    if ns.cluster:
        return _drive(plan, ns, io, _Cluster())
    return _drive(plan, ns, io, _Local())


class _Local:
    """``nbmodels pull``: a job per reference in this process's engine; a path line each."""

    interrupted = "partial data is kept: run the same command to resume."

    def start(self, ref: str, options: dict[str, Any], ns: argparse.Namespace) -> Job:
        return nbmodels.download(ref, display=False, **options)

    def job(self, handle: Job) -> Job:
        return handle

    def lines(self, handle: Job) -> list[str]:
        return [str(handle.wait(timeout=30))]

    def stop(self) -> None:
        shutdown()  # stop the jobs now (their state is saved), before saying so


class _Cluster:
    """``--cluster``: a prefetch per reference (a row per node), then a ``NODE_ID PATH`` line
    per node. Ctrl-C ends this process, and with it the nodes' actors: their partial data
    stays, and the same command resumes it."""

    interrupted = "the nodes keep their partial data: run the same command to resume."

    def start(self, ref: str, options: dict[str, Any], ns: argparse.Namespace) -> ClusterJob:
        return prefetch(ref, nodes=ns.nodes, display=False, **options)

    def job(self, handle: ClusterJob) -> Job:
        return handle.job

    def lines(self, handle: ClusterJob) -> list[str]:
        return [f"{node} {path}" for node, path in handle.wait(timeout=30).items()]

    def stop(self) -> None:
        pass


def _drive(
    plan: Sequence[tuple[str, dict[str, Any]]],
    ns: argparse.Namespace,
    io: Io,
    way: _Local | _Cluster,
) -> int:
    """Start every reference of ``plan`` the ``way`` asked, show their progress until all are
    done, then print their lines (errors to stderr). Ctrl-C stops and says how to resume."""
    failures: list[Exception] = []
    handles: list[Any] = []
    for ref, options in plan:
        try:
            handles.append(way.start(ref, options, ns))
        except (NbmodelsError, ValueError, TypeError) as exc:
            io.error(exc)
            failures.append(exc)
    jobs = [way.job(h) for h in handles]
    view = make_view(jobs, io.out, quiet=ns.quiet)
    try:
        _wait(jobs, view)
    except KeyboardInterrupt:
        view.close()
        way.stop()
        io.err.write(f"\nnbmodels: interrupted; {way.interrupted}\n")
        return 130
    view.close()
    for handle in handles:
        try:
            for line in way.lines(handle):
                io.line(line)
        except NbmodelsError as exc:
            io.error(exc)
            failures.append(exc)
    io.out.flush()
    return _status(failures)


def _status(failures: Sequence[Exception]) -> int:
    """0 when every download succeeded; 2 when one failed for bad input (a reference found
    invalid once resolved); else 1."""
    if any(isinstance(exc, RefError | ValueError | TypeError) for exc in failures):
        return 2
    return 1 if failures else 0
