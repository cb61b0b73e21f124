"""Parse the header of a GGUF file — metadata and tensor table — from its first bytes. Pure: no
I/O; the caller hands in a prefix of the file and grows it when :class:`NeedMoreData` says so.

Layout (GGUF v2/v3; little-endian, or big-endian when the version reads byte-swapped)::

    b"GGUF" | u32 version | u64 n_tensors | u64 n_kv
    n_kv      x (string key | u32 value type | value)
    n_tensors x (string name | u32 n_dims | u64 dims[n_dims] | u32 ggml type | u64 data offset)

Strings are ``u64 length + UTF-8``; arrays are ``u32 item type | u64 count | items``. Large
arrays (a tokenizer's vocabulary) are summarised (:class:`GGUFArray`), not kept.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FILE_TYPE_NAMES",
    "GGML_TYPE_NAMES",
    "GGUFArray",
    "GGUFFormatError",
    "GGUFHeader",
    "NeedMoreData",
    "TensorInfo",
    "parse_gguf_header",
]

MAGIC = b"GGUF"
#: Arrays with at most this many items keep their values.
KEEP_ARRAY_ITEMS = 512
_MAX_STRING = 1 << 30
_MAX_COUNT = 1 << 40
_MAX_DIMS = 8

#: ggml tensor types (``GGMLQuantizationType``) by code.
GGML_TYPE_NAMES: Mapping[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
    10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS",
    17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S",
    23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M", 30: "BF16",
    34: "TQ1_0", 35: "TQ2_0", 39: "MXFP4", 40: "NVFP4", 41: "Q1_0",
}  # fmt: skip

#: llama.cpp's ``general.file_type`` (``LlamaFileType``) by code: the quant of the whole file.
FILE_TYPE_NAMES: Mapping[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M",
    30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
    39: "NVFP4", 40: "Q1_0",
}  # fmt: skip

# Metadata value types: code -> struct format (scalars); 8 = string, 9 = array.
_SCALARS: Mapping[int, str] = {
    0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d",
}  # fmt: skip
_STRING, _ARRAY = 8, 9


class NeedMoreData(Exception):
    """The prefix ends inside the header: at least ``needed`` bytes (from offset 0) are
    required to go on."""

    def __init__(self, needed: int) -> None:
        super().__init__(f"need at least {needed} bytes")
        self.needed = needed


class GGUFFormatError(ValueError):
    """The bytes are not a GGUF header this reader understands."""


@dataclass(frozen=True, slots=True)
class GGUFArray:
    """A metadata array: its item type code, length, and the items when there are few."""

    item_type: int
    count: int
    values: tuple[Any, ...] | None = None


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One entry of the tensor table (``shape`` in GGUF order, innermost dimension first)."""

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def type_name(self) -> str:
        return GGML_TYPE_NAMES.get(self.ggml_type, f"type{self.ggml_type}")


@dataclass(frozen=True, slots=True)
class GGUFHeader:
    """A parsed header. ``size`` is where the tensor table ends (before alignment padding)."""

    version: int
    metadata: Mapping[str, Any]
    tensors: tuple[TensorInfo, ...]
    size: int
    big_endian: bool = False


class _Cursor:
    """Reads fixed-size values from a prefix, raising :class:`NeedMoreData` at its end."""

    __slots__ = ("buf", "order", "pos")

    def __init__(self, buf: bytes | memoryview, order: str) -> None:
        self.buf = buf
        self.pos = 0
        self.order = order

    def take(self, n: int) -> int:
        start = self.pos
        end = start + n
        if end > len(self.buf):
            raise NeedMoreData(end)
        self.pos = end
        return start

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(self.order + fmt)
        start = self.take(size)
        return struct.unpack_from(self.order + fmt, self.buf, start)[0]

    def string(self) -> str:
        n = self.unpack("Q")
        if n > _MAX_STRING:
            raise GGUFFormatError(f"a string at offset {self.pos - 8} claims {n} bytes")
        start = self.take(n)
        return bytes(self.buf[start : start + n]).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        n = self.unpack("Q")
        if n > _MAX_STRING:
            raise GGUFFormatError(f"a string at offset {self.pos - 8} claims {n} bytes")
        self.take(n)

    def value(self, vtype: int) -> Any:
        fmt = _SCALARS.get(vtype)
        if fmt is not None:
            return self.unpack(fmt)
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            return self.array()
        raise GGUFFormatError(f"unknown metadata value type {vtype} at offset {self.pos - 4}")

    def array(self) -> GGUFArray:
        item_type = self.unpack("I")
        count = self.unpack("Q")
        if count > _MAX_COUNT:
            raise GGUFFormatError(f"an array at offset {self.pos - 12} claims {count} items")
        if count > KEEP_ARRAY_ITEMS:
            self.skip_items(item_type, count)
            return GGUFArray(item_type, count)
        return GGUFArray(item_type, count, tuple(self.value(item_type) for _ in range(count)))

    def skip_items(self, item_type: int, count: int) -> None:
        fmt = _SCALARS.get(item_type)
        if fmt is not None:
            self.take(struct.calcsize(self.order + fmt) * count)
        elif item_type == _STRING:
            for _ in range(count):
                self.skip_string()
        elif item_type == _ARRAY:
            for _ in range(count):
                self.array()
        else:
            raise GGUFFormatError(f"unknown array item type {item_type} at offset {self.pos}")


def parse_gguf_header(buf: bytes | memoryview) -> GGUFHeader:
    """Parse the header at the start of ``buf`` (a prefix of a GGUF file).

    Raises :class:`NeedMoreData` when ``buf`` ends before the tensor table does, and
    :class:`GGUFFormatError` when the bytes are not a GGUF v2/v3 header.
    """
    if len(buf) < 4:
        raise NeedMoreData(24)
    if bytes(buf[:4]) != MAGIC:
        raise GGUFFormatError(f"the file starts with {bytes(buf[:4])!r}, not {MAGIC!r}")
    cur = _Cursor(buf, "<")
    cur.take(4)
    version = cur.unpack("I")
    if version & 0xFFFF == 0 and version != 0:  # written big-endian
        cur.order = ">"
        version = struct.unpack(">I", struct.pack("<I", version))[0]
    if version not in (2, 3):
        raise GGUFFormatError(f"GGUF version {version} is not supported (only 2 and 3)")
    n_tensors = cur.unpack("Q")
    n_kv = cur.unpack("Q")
    if n_tensors > _MAX_COUNT or n_kv > _MAX_COUNT:
        raise GGUFFormatError(f"implausible counts: {n_tensors} tensors, {n_kv} metadata keys")
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string()
        vtype = cur.unpack("I")
        metadata[key] = cur.value(vtype)
    tensors: list[TensorInfo] = []
    for _ in range(n_tensors):
        name = cur.string()
        n_dims = cur.unpack("I")
        if n_dims > _MAX_DIMS:
            raise GGUFFormatError(f"tensor {name!r} claims {n_dims} dimensions")
        shape = tuple(cur.unpack("Q") for _ in range(n_dims))
        ggml_type = cur.unpack("I")
        offset = cur.unpack("Q")
        tensors.append(TensorInfo(name, shape, ggml_type, offset))
    return GGUFHeader(
        version=version,
        metadata=metadata,
        tensors=tuple(tensors),
        size=cur.pos,
        big_endian=cur.order == ">",
    )
