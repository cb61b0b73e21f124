"""What every ``nbmodels`` command shares: where it writes (:class:`Io`), its parser
(:func:`new_parser` with the shared download flags and ``--json``), tables and times. The
subcommands import this module and the layers below, never each other or :mod:`._main`."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from .._flags import Parser, UsageError, add_download_arguments
from .._present import error_line, forms_pointer
from ..errors import RefError

__all__ = [
    "JSON_VERSION",
    "Io",
    "Parser",
    "UsageError",
    "add_flags",
    "add_json",
    "ago",
    "iso",
    "new_parser",
    "one_line",
    "table",
]

JSON_VERSION = 1


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
    add_download_arguments(parser, only=names)


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object (schema: nbmodels --help)"
    )


def one_line(exc: BaseException) -> str:
    """An error's message on one line, options named as flags (``--dir``); a multi-line hint is
    replaced by a pointer to it."""
    where = "`nbmodels pull --help`" if isinstance(exc, RefError) else "`nbmodels --help`"
    return error_line(exc, more=forms_pointer(where))


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
