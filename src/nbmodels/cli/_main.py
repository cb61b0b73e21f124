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
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

from .. import __version__
from .._fserrors import fs_error
from .._options import OptionValueError
from ..errors import NbmodelsError, RefError
from ._cache import build_ls, build_rm, build_verify, run_ls, run_rm, run_verify
from ._common import Io, Parser, UsageError
from ._info import build_inspect, build_jobs, run_inspect, run_jobs
from ._pull import build_pull, run_pull
from ._serve import build_serve, run_serve

__all__ = ["main"]


# -- the command table --------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    build: Callable[[str], Parser]
    run: Callable[[argparse.Namespace, Io], int]


def _commands() -> dict[str, Command]:
    cmds = [
        Command("pull", "download (no REF: the pyproject manifest)", build_pull, run_pull),
        Command("jobs", "downloads of this and earlier sessions", build_jobs, run_jobs),
        Command("ls", "what is on disk", build_ls, run_ls),
        Command("rm", "remove a model from the Hugging Face cache", build_rm, run_rm),
        Command("verify", "re-hash cached files", build_verify, run_verify),
        Command("inspect", "read a header; estimate memory", build_inspect, run_inspect),
        Command("serve", "the engine behind HTTP (docs/api.md)", build_serve, run_serve),
    ]
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
        io.usage(exc.prog or parser.prog, exc.problem)
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
