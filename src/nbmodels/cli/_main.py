"""The ``nbmodels`` command (``python -m nbmodels``). Never imports IPython.

Commands::

    nbmodels pull [REF ...] [download options] [-q]   download (no REF: the pyproject manifest)
    nbmodels jobs [--all | --limit N] [--json]           downloads of this and earlier sessions
    nbmodels ls [FILTER] [--json]                        what is on disk
    nbmodels rm REF [--revision REV] [--dry-run] [--json]   remove from the Hugging Face cache
    nbmodels verify [REF] [--revision REV] [--offline] [--json]   re-hash cached files
    nbmodels inspect REF [--revision REV] [--context N] [--offline] [--json]   read a header
    nbmodels serve [--host H] [--port P] [--token T] [--allow-origin O]   the HTTP service

Exit status: 0 success; 1 a failure (its one-line message on stderr, ``nbmodels: error: ...``;
``verify``: a corrupt file); 2 bad input: a malformed command line, an invalid reference or
option value (nothing was started); 130 interrupted.

``--json`` output is one JSON object with ``"version": 1``; fields are only ever added within a
version. Times are ISO 8601 UTC strings, sizes integers in bytes, absent values ``null``.

- ``jobs``: ``{"version", "jobs": [Job]}`` (every job unless ``--limit``) where Job is
  :meth:`nbmodels.Job.to_dict` (``job_id``, ``ref``, ``status``, ``total_size_bytes``,
  ``downloaded_bytes``, ``bytes_per_second``, ``estimated_completion``, ``started_at``,
  ``completed_at``, ``path``, ``items``, ``error``: the whole message) plus ``created_at`` and
  ``options`` (the download options, never a token).
- ``ls``: ``{"version", "cache_dir", "total_size_bytes", "files": [File]}``; File:
  ``location`` (``"cache"`` or ``"local"``), ``repo``, ``repo_type`` (null for URLs), ``file``,
  ``quant``, ``size_bytes``, ``revisions`` (refs naming the snapshot), ``commit``, ``last_used``,
  ``path``, ``blob`` (the cache blob's name: its sha256 or git SHA-1).
- ``rm``: ``{"version", "repo", "dry_run", "files": [File], "freed_bytes", "blobs_removed",
  "blobs_kept", "blobs_busy", "snapshots_removed", "refs_removed"}``.
- ``verify``: ``{"version", "ok", "counts": {"ok", "corrupt", "unverifiable"}, "files":
  [Check]}``; Check: ``repo``, ``repo_type``, ``commit``, ``file``, ``path``, ``size_bytes``,
  ``status`` (``"ok"``, ``"corrupt"``, ``"unverifiable"``), ``algorithm`` (``"sha256"``,
  ``"git-sha1"`` or null), ``expected``, ``actual``, ``detail``.
- ``inspect``: ``{"version", "model": Card}``; Card is ``nbmodels.inspect(REF).to_dict()``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TextIO

from .._flags import DOWNLOAD_FLAGS
from .._fserrors import fs_error
from .._options import OptionValueError
from ..errors import NbmodelsError, RefError

__all__ = ["main"]

JSON_VERSION = 1


class UsageError(Exception):
    """A malformed command line (exit status 2)."""

    def __init__(self, message: str, prog: str) -> None:
        super().__init__(message)
        self.prog = prog


class Parser(argparse.ArgumentParser):
    """Raises :class:`UsageError` instead of exiting, so ``main`` decides the exit status."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.prog)


def new_parser(prog: str, description: str, epilog: str | None = None) -> Parser:
    """A command's parser: its description wrapped, its epilog shown as written."""
    return Parser(
        prog=prog,
        description=textwrap.fill(description, 88),
        epilog=epilog,
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_flags(parser: argparse.ArgumentParser, *names: str) -> None:
    """Some of the shared download flags (same names and help as ``pull`` and the magic)."""
    for flag in DOWNLOAD_FLAGS:
        if flag.option not in names:
            continue
        if flag.kind == "switch":
            parser.add_argument(*flag.names, dest=flag.option, action="store_true", help=flag.help)
        else:
            parser.add_argument(
                *flag.names,
                dest=flag.option,
                type=int if flag.kind == "int" else str,
                metavar=flag.metavar,
                help=flag.help,
            )


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object (schema: nbmodels --help)"
    )


@dataclass
class Io:
    """Where a command writes (the real streams, or test buffers)."""

    out: TextIO
    err: TextIO

    def json(self, payload: dict[str, Any]) -> None:
        json.dump({"version": JSON_VERSION, **payload}, self.out, indent=2)
        self.out.write("\n")

    def line(self, text: str = "") -> None:
        self.out.write(text + "\n")

    def usage(self, prog: str, text: str) -> None:
        """A usage error (exit status 2): what is wrong, and where the help is."""
        self.err.write(f"{prog}: error: {text}\n(see `{prog} --help`)\n")
        self.err.flush()

    def error(self, exc: BaseException | str) -> None:
        text = exc if isinstance(exc, str) else one_line(exc)
        self.err.write(f"nbmodels: error: {text}\n")
        self.err.flush()


def one_line(exc: BaseException) -> str:
    """An error's message on one line, options named as flags (``--dir``); a multi-line hint is
    replaced by a pointer to it."""
    if isinstance(exc, NbmodelsError):
        hint = exc.hint or ""
        if "\n" in hint:
            where = "nbmodels pull --help" if isinstance(exc, RefError) else "nbmodels --help"
            return f"{exc.fact} See `{where}` for the accepted forms."
        return " ".join(exc.render("flags").split())
    return " ".join(str(exc).split()) or type(exc).__name__


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return _dt.datetime.fromtimestamp(ts, tz=_dt.UTC).isoformat(timespec="seconds")


def ago(ts: float | None, now: float | None = None) -> str:
    """``just now``, ``5 min ago``, ``3 h ago``, ``2 days ago``, then the date."""
    if ts is None:
        return "-"
    now = _dt.datetime.now(tz=_dt.UTC).timestamp() if now is None else now
    delta = max(0.0, now - ts)
    if delta < 60:
        return "just now"
    if delta < 3600:
        return f"{int(delta // 60)} min ago"
    if delta < 86400:
        return f"{int(delta // 3600)} h ago"
    if delta < 7 * 86400:
        days = int(delta // 86400)
        return f"{days} day{'s' if days > 1 else ''} ago"
    return _dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns separated by two spaces (the last one is not padded)."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    out = []
    for row in (headers, *rows):
        cells = [c.ljust(widths[i]) for i, c in enumerate(row[:-1])] + [row[-1]]
        out.append("  ".join(cells).rstrip())
    return out


# -- the command table --------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    build: Callable[[str], Parser]
    run: Callable[[argparse.Namespace, Io], int]


def _commands() -> dict[str, Command]:
    from ..server import _standalone as serve
    from . import _cache as _cli_cache
    from . import _info as _cli_info
    from . import _pull as _cli_pull

    pull, info, cache = _cli_pull, _cli_info, _cli_cache
    cmds = [
        Command("pull", "download (no REF: the pyproject manifest)", pull.build, pull.run),
        Command("jobs", "downloads of this and earlier sessions", info.build_jobs, info.run_jobs),
        Command("ls", "what is on disk", cache.build_ls, cache.run_ls),
        Command("rm", "remove a model from the Hugging Face cache", cache.build_rm, cache.run_rm),
        Command("verify", "re-hash cached files", cache.build_verify, cache.run_verify),
        Command("inspect", "read a header; estimate memory", info.build_inspect, info.run_inspect),
        Command("serve", "the engine behind HTTP (docs/api.md)", serve.build, serve.run),
    ]  # fmt: skip
    return {c.name: c for c in cmds}


def _usage(commands: dict[str, Command]) -> str:
    lines = ["usage: nbmodels COMMAND [ARGS...]   (nbmodels COMMAND --help for its options)", ""]
    lines.append("commands:")
    lines += [f"  {c.name:<9} {c.summary}" for c in commands.values()]
    doc = (__doc__ or "").split("``--json`` output", 1)
    if len(doc) == 2:
        schemas = "``--json`` output" + doc[1].rstrip()
        schemas = re.sub(r":meth:`([^`]+)`", r"\1()", schemas).replace("``", "")
        lines += ["", schemas]
    return "\n".join(lines) + "\n"


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run the ``nbmodels`` command; returns the exit status."""
    io = Io(out or sys.stdout, err or sys.stderr)
    args = list(sys.argv[1:] if argv is None else argv)
    commands = _commands()
    if not args or args[0] in ("-h", "--help", "help"):
        io.out.write(_usage(commands))
        return 0 if args else 2
    if args[0] == "--version":
        from .. import __version__

        io.line(f"nbmodels {__version__}")
        return 0
    command = commands.get(args[0])
    if command is None:
        io.err.write(f"nbmodels: unknown command {args[0]!r}\n" + _usage(commands))
        return 2
    parser = command.build(f"nbmodels {command.name}")
    try:
        if any(a in ("-h", "--help") for a in args[1:]):
            io.out.write(parser.format_help())
            return 0
        ns = parser.parse_intermixed_args(args[1:])
        return command.run(ns, io)
    except UsageError as exc:
        io.usage(exc.prog, str(exc))
        return 2
    except OptionValueError as exc:
        io.usage(parser.prog, exc.render("flags"))
        return 2
    except RefError as exc:
        io.error(exc)
        return 2
    except NbmodelsError as exc:
        io.error(exc)
        return 1
    except KeyboardInterrupt:
        io.err.write("\nnbmodels: interrupted\n")
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `nbmodels ls | head`): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as exc:  # a file-system error of this command itself (ls, rm, verify, ...)
        io.error(fs_error(exc, downloading=command.name == "pull"))
        return 1
