"""``%model_download`` / ``%%model_download`` and ``%model_panel``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.display import display
from IPython.utils.text import DollarFormatter

import nbmodels

from .._flags import (
    Command,
    Parser,
    UsageError,
    add_limit_arguments,
    build_parser,
    command_from,
    listing_limit,
    split_line,
)
from .._options import Options, OptionValueError
from .._present import card_lines, forms_pointer, one_line, status_label
from .._redact import redact_url
from ..engine import Job
from ..errors import NbmodelsError
from ._context import widgets_supported
from ._display import panel
from ._text import TextProgress, panel_text, watch

if TYPE_CHECKING:
    from ..cards import ModelCard
    from ..cluster import ClusterJob

__all__ = ["ModelMagics", "parse_magic", "run_download", "run_inspect"]

PROG = "%model_download"
PANEL = "%model_panel"
MORE = forms_pointer(f"{PROG}?")
#: Seconds per wait step (the text line is redrawn between steps; interrupts land in a step).
WAIT_STEP = 0.5

_INTRO = """\
Download model files into the notebook, with live progress (blocking by default).

    %model_download REF [REF ...] [options]
    path = %model_download owner/repo:Q4_K_M
    paths = %model_download https://example.org/a.gguf owner/repo file.gguf --dir models
    job = %model_download -b https://example.org/model.gguf
    card = %model_download --inspect owner/repo:Q4_K_M

    %%model_download --dir models
    owner/repo:Q4_K_M
    https://example.org/other.bin

Returns a pathlib.Path for one reference, a list of Paths for several; with -b/--background
the Job (or list of Jobs) at once, showing its widget. {var} and $var expand to Python values
(in the cell form too). Interrupting the kernel pauses the download(s) and keeps the partial
data: run the cell again to resume. An error prints one line and returns None.

--cluster puts the files on every alive node of the connected Ray cluster (each in its own
Hugging Face cache, or --dir) with one Hub transfer per file: the nodes copy from each other.
It returns {node id: path} (a list of those for several references), or with -b the
ClusterJob; the widget shows a row per node. --node NODE_ID (repeatable) picks nodes.

--inspect downloads nothing: it reads the model's GGUF / safetensors header with a few range
requests (or the local file when it is already on disk), prints its model card (architecture,
parameters, quant, context, layers, size, chat template, the memory it needs here) and returns
the ModelCard that nbmodels.inspect() gives (a list for several references). The job widget
shows the same card's summary line while a download runs.

References:
    https://example.org/model.gguf    any http(s) URL
    owner/repo:Q4_K_M                 the GGUF file(s) of a quant (also hf:owner/repo:Q4_K_M)
    owner/repo file.gguf              one file of a repository (two words)
    owner/repo/path/file.gguf#rev     one file at a revision
    owner/repo                        a GGUF repo's default quant, or the whole snapshot
                                      (filter with --include / --exclude)

"""


#: Download options that mean something to --inspect (the others choose or check downloaded
#: files, which --inspect never writes).
INSPECT_OPTIONS = ("revision", "dir", "offline")


def _parser() -> argparse.ArgumentParser:
    """The shared download parser (:mod:`nbmodels._flags`) plus the magic's own flags (the
    CLI has ``nbmodels inspect`` instead of ``--inspect``)."""
    parser = build_parser(PROG)
    cluster = parser.add_argument_group("Ray cluster")
    cluster.add_argument(
        "--cluster",
        action="store_true",
        help="put the files on every node of the Ray cluster (one Hub transfer per file); "
        "returns {node id: path}",
    )
    cluster.add_argument(
        "--node",
        dest="nodes",
        action="append",
        metavar="NODE_ID",
        help="with --cluster: only this node (repeatable)",
    )
    group = parser.add_argument_group("model card")
    group.add_argument(
        "--inspect",
        action="store_true",
        help="print the model card read from the file header and return the ModelCard; "
        "downloads nothing (takes --revision, --dir, --offline, --quiet)",
    )
    return parser


def parse_magic(line: str, body: str | None = None) -> tuple[Command, bool]:
    """The command of ``%model_download LINE`` (+ cell ``body``) and whether ``--inspect`` was
    given. Raises :class:`UsageError`."""
    command, card_only, _cluster = parse_magic_line(line, body)
    return command, card_only


def parse_magic_line(line: str, body: str | None = None) -> tuple[Command, bool, list[str] | None]:
    """:func:`parse_magic`, and the nodes of ``--cluster`` (None: no ``--cluster``; an empty
    list: every node)."""
    ns = _parser().parse_intermixed_args(split_line(line, PROG))
    if ns.nodes and not ns.cluster:
        raise UsageError("--node needs --cluster", PROG)
    if ns.cluster and ns.inspect:
        raise UsageError("--inspect downloads nothing, so --cluster does not apply", PROG)
    cluster = (ns.nodes or []) if ns.cluster else None
    return command_from(ns, body), bool(ns.inspect), cluster


def _panel_limit(line: str) -> int | None:
    """``%model_panel [--all | -n N]``: how many jobs the text form lists (None: all)."""
    parser = Parser(prog=PANEL, add_help=False, allow_abbrev=False)
    add_limit_arguments(parser)
    return listing_limit(parser.parse_args(split_line(line, PANEL)), PANEL)


def _usage_text(exc: Exception) -> str:
    """A malformed line or option value, as one line (options named as flags)."""
    if isinstance(exc, UsageError):
        return str(exc)
    if isinstance(exc, OptionValueError):
        return f"{PROG}: {exc.render('flags')}"
    return one_line(exc, style="flags")


def _help() -> str:
    return _INTRO + _parser().format_help()


def _error(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _wait_step(job: Job, timeout: float) -> Path:
    """One bounded wait (tests replace this to simulate a kernel interrupt)."""
    return job.wait(timeout)


def _wait_all(jobs: Sequence[Job], progress: TextProgress | None) -> list[Path | BaseException]:
    """Wait for every job from this (the cell's) thread, redrawing the text line between steps."""
    results: list[Path | BaseException] = []
    for job in jobs:
        while True:
            if progress is not None:
                progress.update()
            try:
                results.append(_wait_step(job, WAIT_STEP))
            except TimeoutError:
                continue
            except NbmodelsError as exc:
                results.append(exc)
            break
    return results


def _pause_all(jobs: Sequence[Job]) -> None:
    paused = [job for job in jobs if job.pause()]
    if paused:
        what = paused[0].ref if len(paused) == 1 else f"{len(paused)} downloads"
        print(
            f"Paused {what}; the partial data is kept. Run the cell again to resume.",
            flush=True,
        )
    else:
        print("Interrupted; nothing was downloading.", flush=True)


def run_download(line: str, body: str | None, shell: Any) -> Any:
    """The magic's work, given the (already expanded) line and cell body."""
    try:
        cmd, card_only, cluster = parse_magic_line(line, body)
        if not cmd.refs:
            raise UsageError(f"give at least one reference (see {PROG}?)", PROG)
        if card_only:
            _check_inspect(cmd)
        Options.create(**cmd.options)  # check every option before anything starts
    except (ValueError, TypeError) as exc:
        _error(_usage_text(exc))
        return None
    if card_only:
        return run_inspect(cmd)
    text_mode = not cmd.quiet and not widgets_supported(shell)
    if cluster is not None:
        return run_cluster(cmd, cluster or None, text_mode)
    jobs: list[Job] = []
    progress: TextProgress | None = None
    failed = False
    try:
        # In text mode the magic shows the jobs itself (the line below, or Out for -b).
        show = False if cmd.quiet or text_mode else None
        for ref in cmd.refs:
            try:
                jobs.append(download(ref, display=show, **cmd.options))
            except (NbmodelsError, ValueError, TypeError) as exc:
                _error(one_line(exc, more=MORE, style="flags"))
                failed = True
        if cmd.background:
            if text_mode:
                for job in jobs:
                    watch(job)  # job.wait() later draws its progress line
            if not jobs or (failed and len(cmd.refs) == 1):
                return None
            return jobs[0] if len(cmd.refs) == 1 else jobs
        progress = TextProgress(jobs) if text_mode and jobs else None
        results = _wait_all(jobs, progress)
    except KeyboardInterrupt:
        if progress is not None:
            progress.close()
        _pause_all(jobs)
        return None
    if progress is not None:
        progress.close()
    paths: list[Path] = []
    for job, result in zip(jobs, results, strict=True):
        if isinstance(result, BaseException):
            _error(one_line(result, more=MORE, style="flags"))
            failed = True
        else:
            paths.append(result)
            if text_mode:
                print(f"{status_label(job.status)}: {result}", flush=True)
    if failed:
        return None
    return paths[0] if len(cmd.refs) == 1 else paths


# -- --cluster -------------------------------------------------------------------------------------


def run_cluster(cmd: Command, nodes: list[str] | None, text_mode: bool) -> Any:
    """``--cluster``: a prefetch per reference (shown as a job with a row per node); waits
    for ``{node id: path}`` unless ``-b``. Interrupting the kernel pauses them (partial data
    kept: ``job.resume()``, or run the cell again)."""
    show = False if cmd.quiet or text_mode else None
    started: list[ClusterJob] = []
    failed = False
    for ref in cmd.refs:
        try:
            started.append(prefetch(ref, nodes=nodes, display=show, **cmd.options))
        except (NbmodelsError, ValueError, TypeError) as exc:
            _error(one_line(exc, more=MORE, style="flags"))
            failed = True
    if cmd.background:
        if not started or (failed and len(cmd.refs) == 1):
            return None
        return started[0] if len(cmd.refs) == 1 else started
    progress = TextProgress([c.job for c in started]) if text_mode and started else None
    try:
        results = _wait_all([c.job for c in started], progress)
    except KeyboardInterrupt:
        if progress is not None:
            progress.close()
        for prefetched in started:
            prefetched.pause()
        print("Paused the prefetch; the nodes keep their partial data.", flush=True)
        return None
    if progress is not None:
        progress.close()
    out: list[dict[str, Path]] = []
    for prefetched, result in zip(started, results, strict=True):
        if isinstance(result, BaseException):
            _error(one_line(result, more=MORE, style="flags"))
            failed = True
        else:
            out.append(prefetched.paths)
    if failed:
        return None
    return out[0] if len(cmd.refs) == 1 else out


def prefetch(ref: str, **options: Any) -> ClusterJob:
    """``nbmodels.cluster.prefetch`` (looked up at call time, like :func:`download`)."""
    from ..cluster import prefetch as _prefetch

    return _prefetch(ref, **options)


# -- --inspect -------------------------------------------------------------------------------------


def _check_inspect(cmd: Command) -> None:
    unused = [f"--{name}" for name in cmd.options if name not in INSPECT_OPTIONS]
    if cmd.background:
        unused.append("--background")
    if unused:
        raise UsageError(
            f"--inspect downloads nothing, so {', '.join(unused)} "
            f"{'does' if len(unused) == 1 else 'do'} not apply",
            PROG,
        )


def card_text(card: ModelCard) -> str:
    """What ``--inspect`` prints: the summary line, then one indented line per detail."""
    return "\n".join([card.summary(), *card_lines(card)])


def run_inspect(cmd: Command) -> Any:
    """``--inspect``: print each reference's model card; return the card (or the list)."""
    cards: list[ModelCard] = []
    failed = False
    for i, ref in enumerate(cmd.refs):
        try:
            card = inspect(ref, **cmd.options)
        except (NbmodelsError, ValueError, TypeError) as exc:
            _error(one_line(exc, more=MORE, style="flags"))
            failed = True
            continue
        except KeyboardInterrupt:
            print("Interrupted; nothing was downloaded.", flush=True)
            return None
        cards.append(card)
        if not cmd.quiet:
            head = f"{redact_url(ref) if '://' in ref else ref}\n" if len(cmd.refs) > 1 else ""
            gap = "\n" if i and len(cmd.refs) > 1 else ""
            print(f"{gap}{head}{card_text(card)}", flush=True)
    if failed:
        return None
    return cards[0] if len(cmd.refs) == 1 else cards


def inspect(ref: str, **options: Any) -> ModelCard:
    """``nbmodels.inspect`` (looked up at call time, so tests and reloads see the current one)."""
    return nbmodels.inspect(ref, **options)


def download(ref: str, **options: Any) -> Job:
    """``nbmodels.download`` (looked up at call time, so tests and reloads see the current one)."""
    return nbmodels.download(ref, **options)


def _expand(shell: Any, text: str) -> str:
    """``{var}`` / ``$var`` expansion of a cell body, as IPython does for a magic's line."""
    try:
        return DollarFormatter().vformat(text, args=[], kwargs=dict(shell.user_ns))
    except Exception:  # noqa: BLE001 - IPython leaves text it cannot expand as is; so do we
        return text


@magics_class
class ModelMagics(Magics):
    """The nbmodels magics (``%load_ext nbmodels``)."""

    @line_cell_magic
    def model_download(self, line: str, cell: str | None = None) -> Any:
        body = None if cell is None else _expand(self.shell, cell)
        return run_download(line, body, self.shell)

    model_download.__doc__ = _help()

    @line_magic
    def model_panel(self, line: str = "") -> None:
        """Show every download of this and earlier sessions, live, newest first, with a form to
        start one and buttons to retry, pause, resume and cancel (same as ``nbmodels.panel()``).

        Outside a widget front end, prints one line per job: the newest 10, or the newest N
        with ``-n N`` / ``--limit N``, or all of them with ``--all``."""
        try:
            limit = _panel_limit(line)
        except UsageError as exc:
            _error(str(exc))
            return
        if widgets_supported(self.shell):
            display(panel())  # type: ignore[no-untyped-call]
            return
        print(panel_text(nbmodels.history(), limit))
