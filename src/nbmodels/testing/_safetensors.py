"""A minimal safetensors writer: a valid JSON header followed by generated tensor bytes.

Layout: ``u64 little-endian N | N bytes of JSON (space padded to a multiple of 8) | data``. The
JSON maps tensor names to ``{"dtype", "shape", "data_offsets": [begin, end]}``; the offsets tile
the data region exactly, which is what the safetensors loader checks.
"""

from __future__ import annotations

import json
import struct

from ._content import GeneratedFile

__all__ = ["safetensors_file"]

_WIDTH = 64  # columns of the 2-D tensors


def _layout(data_size: int, prefix: str) -> dict[str, object]:
    """Tensors that exactly fill ``data_size`` bytes: a norm, an embedding, and a U8 remainder."""
    tensors: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0

    def add(name: str, dtype: str, shape: list[int], nbytes: int) -> None:
        nonlocal offset
        tensors[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes

    norm = min(data_size // 4, _WIDTH) * 4
    if norm:
        add(f"{prefix}norm.weight", "F32", [norm // 4], norm)
    rows = (data_size - offset) // (_WIDTH * 2)
    if rows:
        add(f"{prefix}embed_tokens.weight", "F16", [rows, _WIDTH], rows * _WIDTH * 2)
    rest = data_size - offset
    if rest:
        add(f"{prefix}extra.weight", "U8", [rest], rest)
    return tensors


def safetensors_file(
    size: int, *, seed: int | str = 0, tensor_prefix: str = "model."
) -> GeneratedFile:
    """A safetensors file of exactly ``size`` bytes (raised to the header size if smaller)."""
    header_len = 0
    for _ in range(8):  # the header length depends on the digits in it: iterate to a fixed point
        data_size = max(0, size - 8 - header_len)
        raw = json.dumps(_layout(data_size, tensor_prefix), separators=(",", ":")).encode()
        padded = -(-len(raw) // 8) * 8
        if padded == header_len:
            break
        header_len = max(header_len, padded)
    raw = raw + b" " * (header_len - len(raw))
    prefix = struct.pack("<Q", header_len) + raw
    return GeneratedFile(max(size, len(prefix)), seed, prefix=prefix)
