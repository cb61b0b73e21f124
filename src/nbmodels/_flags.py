"""The command-line flags of a download, defined once for the ``%model_download`` magic and the
``nbmodels`` command (docs/public-api.md, Options: a flag is named after the
:class:`~nbmodels._options.Options` field it sets).

No UI library (argparse): the CLI imports this without IPython. A front end builds its parser
with :func:`build_parser` (or adds :data:`DOWNLOAD_FLAGS`, or some of them, to its own
:class:`Parser` with :func:`add_download_arguments`) and turns the parsed namespace into keyword
arguments for :func:`nbmodels.download` with :func:`options_from_namespace`. The listings
(``nbmodels jobs``, ``%model_panel``) share ``-n/--limit`` and ``-a/--all``
(:func:`add_limit_arguments`, :func:`listing_limit`). Bad input raises :class:`UsageError`, a
one-line ``ValueError``; the parser never calls ``sys.exit``.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from ._present import SHOWN

__all__ = [
    "DOWNLOAD_FLAGS",
    "Command",
    "Flag",
    "Parser",
    "UsageError",
    "add_download_arguments",
    "add_frontend_arguments",
    "add_limit_arguments",
    "build_parser",
    "command_from",
    "group_refs",
    "listing_limit",
    "options_from_namespace",
    "parse_command",
    "split_line",
]


class UsageError(ValueError):
    """The command line is malformed (unknown flag, missing value, bad number). One line:
    ``PROG: what is wrong``; ``prog`` and ``problem`` apart for a front end that lays them out
    itself (the CLI: ``PROG: error: what is wrong``)."""

    def __init__(self, problem: str, prog: str = "") -> None:
        super().__init__(f"{prog}: {problem}" if prog else problem)
        self.prog = prog
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Flag:
    """One download flag: the ``Options`` field it sets and how argparse reads it.

    ``kind``: ``"value"`` (one string), ``"int"``, ``"list"`` (repeatable; each value may also be
    a comma-separated list, split by ``Options``) or ``"switch"`` (present means True).
    """

    option: str
    names: tuple[str, ...]
    kind: Literal["value", "int", "list", "switch"]
    help: str
    metavar: str | None = None


#: The download options every front end accepts (same names as the API's keyword arguments).
DOWNLOAD_FLAGS: tuple[Flag, ...] = (
    Flag(
        "dir",
        ("--dir",),
        "value",
        "target directory (default: the Hugging Face cache for Hub files, "
        "$NBMODELS_HOME/downloads for URLs)",
        "DIR",
    ),
    Flag("revision", ("--revision",), "value", "branch, tag or commit of a Hub repo", "REV"),
    Flag(
        "include",
        ("--include",),
        "list",
        "glob of repo files to get (repeatable, or comma-separated)",
        "GLOB",
    ),
    Flag(
        "exclude",
        ("--exclude",),
        "list",
        "glob of repo files to skip (repeatable, or comma-separated)",
        "GLOB",
    ),
    Flag("sha256", ("--sha256",), "value", "expected SHA-256 digest (hex or sha256:hex)", "HEX"),
    Flag("force", ("--force",), "switch", "download again even if the file is present"),
    Flag(
        "connections",
        ("--connections",),
        "int",
        "parallel connections per file (default: automatic)",
        "N",
    ),
    Flag(
        "extract",
        ("--extract",),
        "switch",
        "unpack a downloaded .zip / .tar[.gz|.bz2|.xz] into a folder beside it (safely, "
        "atomically); the path is then that folder",
    ),
    Flag(
        "remove_archive",
        ("--remove-archive",),
        "switch",
        "with --extract: delete the archive once it is unpacked",
    ),
    Flag("offline", ("--offline",), "switch", "no network: use what is on disk or fail"),
)


def add_download_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    only: Collection[str] | None = None,
) -> None:
    """Add the :data:`DOWNLOAD_FLAGS` entries (those of the options in ``only``, if given) to
    ``parser`` (``dest`` = the option name; None when not given)."""
    for flag in DOWNLOAD_FLAGS:
        if only is not None and flag.option not in only:
            continue
        if flag.kind == "switch":
            parser.add_argument(
                *flag.names, dest=flag.option, action="store_true", default=None, help=flag.help
            )
        elif flag.kind == "list":
            parser.add_argument(
                *flag.names,
                dest=flag.option,
                action="append",
                default=None,
                metavar=flag.metavar,
                help=flag.help,
            )
        else:
            parser.add_argument(
                *flag.names,
                dest=flag.option,
                type=int if flag.kind == "int" else str,
                default=None,
                metavar=flag.metavar,
                help=flag.help,
            )


def add_frontend_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, background: bool = True
) -> None:
    """``-q/--quiet`` (no progress display) and, when ``background``, ``-b/--background``."""
    if background:
        parser.add_argument(
            "-b",
            "--background",
            action="store_true",
            help="return the Job(s) at once instead of waiting for the path(s)",
        )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="show no progress (errors are still shown)"
    )


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """``-n/--limit N`` or ``-a/--all``: how many jobs a listing shows (:func:`listing_limit`)."""
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "-n", "--limit", type=int, metavar="N", help=f"show the newest N (default {SHOWN})"
    )
    which.add_argument("-a", "--all", action="store_true", help="show every job")


def listing_limit(
    ns: argparse.Namespace, prog: str, *, default: int | None = SHOWN
) -> int | None:
    """How many jobs to list (None: all): ``--all`` and ``--limit 0`` mean all; without either,
    ``default``. A negative ``--limit`` raises :class:`UsageError`."""
    if ns.limit is not None and ns.limit < 0:
        raise UsageError(f"argument -n/--limit: must be 0 or more, got {ns.limit}", prog)
    if ns.all or ns.limit == 0:
        return None
    return default if ns.limit is None else int(ns.limit)


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that raises :class:`UsageError` instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.prog)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise UsageError(message.strip()) if message else UsageError(f"exit {status}", self.prog)


def build_parser(
    prog: str,
    *,
    description: str | None = None,
    background: bool = True,
    add_help: bool = False,
) -> argparse.ArgumentParser:
    """A parser for ``PROG [REF ...] [flags]``: references, the download flags and the
    front-end flags. Parse with ``parse_intermixed_args`` so flags may come anywhere."""
    parser = Parser(
        prog=prog,
        description=description,
        add_help=add_help,
        allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("refs", nargs="*", metavar="REF", help="what to download")
    add_download_arguments(parser.add_argument_group("download options"))
    add_frontend_arguments(parser.add_argument_group("display"), background=background)
    return parser


def options_from_namespace(ns: argparse.Namespace) -> dict[str, Any]:
    """The ``nbmodels.download`` keyword arguments the user actually gave."""
    out: dict[str, Any] = {}
    for flag in DOWNLOAD_FLAGS:
        value = getattr(ns, flag.option, None)
        if value is not None:
            out[flag.option] = tuple(value) if flag.kind == "list" else value
    return out


# A bare repository word: ``owner/repo``, ``hf:owner/repo``, ``datasets/owner/repo``, maybe
# ``#rev``; followed by a plain file name it forms the two-word reference ``owner/repo file``.
_REPO_WORD = re.compile(
    r"(?:hf:)?(?:(?:datasets|spaces)/)?[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*(?:#\S+)?"
)
_FILE_WORD = re.compile(r"[^/:\s]+(?:#\S+)?")


def group_refs(words: Iterable[str]) -> list[str]:
    """Join ``owner/repo file.gguf`` word pairs into one two-word reference
    (docs/public-api.md, References).

    A word is a file name of the repository before it when it has no ``/`` and no ``:`` (a file
    in a sub-folder: write ``owner/repo/sub/file.gguf``, or quote the two words).
    """
    out: list[str] = []
    for word in words:
        prev = out[-1] if out else ""
        if prev and " " not in prev and _REPO_WORD.fullmatch(prev) and _FILE_WORD.fullmatch(word):
            out[-1] = f"{prev} {word}"
        else:
            out.append(word)
    return out


def split_line(line: str | Sequence[str], prog: str) -> list[str]:
    """The words of a command line (a string, split like a shell; or words already)."""
    if not isinstance(line, str):
        return list(line)
    try:
        return shlex.split(line)
    except ValueError as exc:  # e.g. an unclosed quote
        raise UsageError(str(exc), prog) from None


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed download command: references, download options, front-end switches."""

    refs: tuple[str, ...]
    options: dict[str, Any]
    background: bool = False
    quiet: bool = False


def command_from(ns: argparse.Namespace, body: str | None = None) -> Command:
    """The command of a parsed namespace (of :func:`build_parser`, or a parser extending it)
    and an optional body with one reference per line (``#`` starts a comment line)."""
    refs = group_refs(ns.refs)
    if body is not None:
        for raw in body.splitlines():
            text = raw.strip()
            if text and not text.startswith("#"):
                refs.append(" ".join(text.split()))
    return Command(
        refs=tuple(refs),
        options=options_from_namespace(ns),
        background=bool(getattr(ns, "background", False)),
        quiet=bool(ns.quiet),
    )


def parse_command(
    line: str | Sequence[str],
    *,
    prog: str,
    body: str | None = None,
    background: bool = True,
) -> Command:
    """Parse a command line (a string, split like a shell; or words) and an optional body with
    one reference per line (``#`` starts a comment line). Raises :class:`UsageError`."""
    parser = build_parser(prog, background=background)
    return command_from(parser.parse_intermixed_args(split_line(line, prog)), body)
