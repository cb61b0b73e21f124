"""Which weight files a reference means, and reading their headers by byte ranges.

:func:`select_weights` applies the download rules to a file listing (pure).
:func:`read_header` reads a GGUF or safetensors header from a :class:`ByteSource` (a local file,
or a :class:`~nbmodels.cards._remote.RemoteFile`): :data:`INITIAL_READ` bytes first, doubling while
the header is larger, never more than :data:`MAX_HEADER_READ`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

from .._progress import format_bytes
from ..errors import NbmodelsError, NotFoundError, Option
from ..hub import select_quant
from ..refs import is_sidecar, split_siblings
from ._gguf import GGUFFormatError, GGUFHeader, NeedMoreData, parse_gguf_header
from ._safetensors import (
    SafetensorsFormatError,
    SafetensorsHeader,
    parse_safetensors_header,
)

__all__ = [
    "INITIAL_READ",
    "MAX_HEADER_READ",
    "ByteSource",
    "Format",
    "Header",
    "LocalFile",
    "read_header",
    "read_json",
    "select_weights",
    "shard_siblings",
    "sniff_format",
]

Format = Literal["gguf", "safetensors"]
#: First read of a header; doubled while the header is larger.
INITIAL_READ = 256 * 1024
#: Give up on headers larger than this.
MAX_HEADER_READ = 256 * 1024 * 1024
#: Small JSON side files (config.json, tokenizer_config.json) are read only up to this size.
MAX_SIDE_FILE = 4 * 1024 * 1024
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.safetensors$", re.IGNORECASE)


# -- which files -------------------------------------------------------------------------------


def select_weights(
    paths: Sequence[str],
    *,
    path: str | None = None,
    is_dir: bool = False,
    quant: str | None = None,
    repo: str = "the repository",
) -> tuple[Format, list[str]]:
    """The weight files a reference means, from a file listing (pure; the download rules):
    a GGUF file brings its split parts, a safetensors shard its siblings; a quant (or a GGUF
    repo's default quant) its files; otherwise the safetensors files. Raises NotFoundError."""
    listing = sorted(paths)
    if path is not None and not is_dir:
        if path not in listing:
            raise NotFoundError(f"{path} does not exist in {repo}.", candidates=listing[:20])
        low = path.lower()
        if low.endswith(".gguf"):
            return "gguf", split_siblings(path, listing) or [path]
        if low.endswith(".safetensors"):
            return "safetensors", shard_siblings(path, listing)
        raise NotFoundError(
            f"{path} is neither a GGUF nor a safetensors file; inspect reads only those.",
            hint="Name a .gguf or .safetensors file, a quant (owner/repo:Q4_K_M) or the repo.",
        )
    prefix = "" if path is None else path.rstrip("/") + "/"
    scope = [p for p in listing if p.startswith(prefix)]
    gguf = [p for p in scope if p.lower().endswith(".gguf") and not is_sidecar(p)]
    if quant is not None or gguf:
        try:
            return "gguf", select_quant(scope, quant, repo)
        except NotFoundError:
            groups = {_split_key(p) for p in gguf}
            if quant is not None or len(groups) != 1:
                raise
            return "gguf", split_siblings(gguf[0], gguf) or gguf
    weights = [p for p in scope if p.lower().endswith(".safetensors")]
    top = [p for p in weights if "/" not in p[len(prefix) :]]
    if top or weights:
        return "safetensors", top or weights
    raise NotFoundError(
        f"{repo} has no GGUF or safetensors weights to inspect.",
        candidates=scope[:20],
        hint="Name a .gguf or .safetensors file of it.",
    )


def _split_key(path: str) -> str:
    m = re.search(r"-\d{5}-of-(\d{5})\.gguf$", path, re.IGNORECASE)
    return path if m is None else path[: m.start()] + m.group(1)


def shard_siblings(path: str, listing: Sequence[str]) -> list[str]:
    m = _SHARD.search(path)
    if m is None:
        return [path]
    stem, count = path[: m.start()], m.group(2)
    pattern = re.compile(re.escape(stem) + r"-\d{5}-of-" + count + r"\.safetensors$", re.I)
    return sorted(p for p in listing if pattern.fullmatch(p))


# -- reading headers ---------------------------------------------------------------------------


class ByteSource(Protocol):
    """A file read by byte ranges (local or remote)."""

    name: str
    size: int | None
    bytes_read: int

    async def read(self, start: int, length: int) -> bytes: ...


class LocalFile:
    """A local file as a :class:`ByteSource`."""

    def __init__(self, path: Path, name: str | None = None) -> None:
        self.path = path
        self.name = name or path.name
        self.size: int | None = path.stat().st_size
        self.bytes_read = 0

    async def read(self, start: int, length: int) -> bytes:
        with self.path.open("rb") as f:
            f.seek(start)
            data = f.read(length)
        self.bytes_read += len(data)
        return data


Header = GGUFHeader | SafetensorsHeader


def sniff_format(prefix: bytes, name: str) -> Format:
    low = name.lower()
    if low.endswith(".gguf") or prefix[:4] == b"GGUF":
        return "gguf"
    if low.endswith(".safetensors") or (len(prefix) > 8 and prefix[8:9] == b"{"):
        return "safetensors"
    raise NbmodelsError(
        f"{name} is neither a GGUF nor a safetensors file; inspect reads only those."
    )


async def read_header(src: ByteSource, fmt: Format | None = None) -> tuple[Format, Header]:
    """Read and parse the header at the start of ``src``, growing the read as needed."""
    buf = bytearray(await src.read(0, INITIAL_READ))
    kind = fmt or sniff_format(bytes(buf[:16]), src.name)
    parse: Callable[[bytes], Header] = (
        parse_gguf_header if kind == "gguf" else parse_safetensors_header
    )
    while True:
        try:
            return kind, parse(bytes(buf))
        except NeedMoreData as need:
            target = max(need.needed, 2 * len(buf))
            if src.size is not None:
                if len(buf) >= src.size or need.needed > src.size:
                    raise _not_valid(src, kind, "it ends inside its header") from None
                target = min(target, src.size)
            if target > MAX_HEADER_READ:
                raise NbmodelsError(
                    f"The header of {src.name} is larger than {format_bytes(MAX_HEADER_READ)}; "
                    "not reading it.",
                    hint="Download the file and inspect it locally if you trust it.",
                ) from None
            more = await src.read(len(buf), target - len(buf))
            if not more:
                raise _not_valid(src, kind, "it ends inside its header") from None
            buf += more
        except (GGUFFormatError, SafetensorsFormatError) as exc:
            raise _not_valid(src, kind, str(exc)) from None


def _not_valid(src: ByteSource, kind: Format, why: str) -> NbmodelsError:
    what = "GGUF" if kind == "gguf" else "safetensors"
    return NbmodelsError(
        f"{src.name} is not a valid {what} file ({why}).",
        hint=(
            "Check the reference; if the file is on disk, download it again with ",
            Option("force", switch=True),
            ".",
        ),
    )


async def read_json(src: ByteSource) -> dict[str, Any] | None:
    """A small JSON side file (config.json...), or None when absent, too large or invalid."""
    if src.size is None or src.size > MAX_SIDE_FILE:
        return None
    try:
        data = json.loads(await src.read(0, src.size))
    except (ValueError, NbmodelsError):
        return None
    return data if isinstance(data, dict) else None
