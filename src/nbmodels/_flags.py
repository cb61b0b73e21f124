"""The command-line flags of a download, defined once for the ``%model_download`` magic and the
``nbmodels`` command (docs/public-api.md, Options: a flag is named after the
:class:`~nbmodels._options.Options` field it sets).

Standard library only (argparse): the CLI imports this without IPython. A front end builds its
parser with :func:`build_parser` (or adds :data:`DOWNLOAD_FLAGS` to its own parser with
:func:`add_download_arguments`) and turns the parsed namespace into keyword arguments for
:func:`nbmodels.download` with :func:`options_from_namespace`. Bad input raises
:class:`UsageError`, a one-line ``ValueError``; the parser never calls ``sys.exit``.
"""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

__all__ = [
    "DOWNLOAD_FLAGS",
    "Command",
    "Flag",
    "UsageError",
    "add_download_arguments",
    "add_frontend_arguments",
    "build_parser",
    "group_refs",
    "options_from_namespace",
    "parse_command",
]


class UsageError(ValueError):
    """The command line is malformed (unknown flag, missing value, bad number). One line."""


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


def add_download_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """Add every :data:`DOWNLOAD_FLAGS` entry to ``parser`` (``dest`` = the option name)."""
    for flag in DOWNLOAD_FLAGS:
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


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that raises :class:`UsageError` instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise UsageError(message.strip() if message else f"{self.prog}: exit {status}")


def build_parser(
    prog: str,
    *,
    description: str | None = None,
    background: bool = True,
    add_help: bool = False,
) -> argparse.ArgumentParser:
    """A parser for ``PROG [REF ...] [flags]``: references, the download flags and the
    front-end flags. Parse with ``parse_intermixed_args`` so flags may come anywhere."""
    parser = _Parser(
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


@dataclass(frozen=True, slots=True)
class Command:
    """A parsed download command: references, download options, front-end switches."""

    refs: tuple[str, ...]
    options: dict[str, Any]
    background: bool = False
    quiet: bool = False


def parse_command(
    line: str | Sequence[str],
    *,
    prog: str,
    body: str | None = None,
    background: bool = True,
) -> Command:
    """Parse a command line (a string, split like a shell; or words) and an optional body with
    one reference per line (``#`` starts a comment line). Raises :class:`UsageError`."""
    if isinstance(line, str):
        try:
            words = shlex.split(line)
        except ValueError as exc:  # e.g. an unclosed quote
            raise UsageError(f"{prog}: {exc}") from None
    else:
        words = list(line)
    ns = build_parser(prog, background=background).parse_intermixed_args(words)
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
