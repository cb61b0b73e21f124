"""Parse the header of a safetensors file from its first bytes. Pure: no I/O.

Layout: ``u64 little-endian N | N bytes of JSON | tensor data``. The JSON maps each tensor name
to ``{"dtype", "shape", "data_offsets"}``, plus an optional ``"__metadata__"`` string map.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from ._gguf import NeedMoreData

__all__ = ["MAX_HEADER", "SafetensorsFormatError", "SafetensorsHeader", "parse_safetensors_header"]

#: The safetensors format limits the JSON header to 100 MB.
MAX_HEADER = 100_000_000


class SafetensorsFormatError(ValueError):
    """The bytes are not a safetensors header."""


@dataclass(frozen=True, slots=True)
class SafetensorsHeader:
    """Tensor count, parameters per dtype, and the header's free-form metadata."""

    tensor_count: int
    parameters_by_dtype: Mapping[str, int]
    metadata: Mapping[str, str]
    size: int  # 8 + the JSON length

    @property
    def parameters(self) -> int:
        return sum(self.parameters_by_dtype.values())


def parse_safetensors_header(buf: bytes | memoryview) -> SafetensorsHeader:
    """Parse the header at the start of ``buf``; :class:`NeedMoreData` when it is cut short."""
    if len(buf) < 8:
        raise NeedMoreData(8)
    (n,) = struct.unpack_from("<Q", buf, 0)
    if n > MAX_HEADER or n < 2:
        raise SafetensorsFormatError(f"the header length {n} is not plausible")
    if len(buf) < 8 + n:
        raise NeedMoreData(8 + n)
    try:
        data = json.loads(bytes(buf[8 : 8 + n]))
    except ValueError as exc:
        raise SafetensorsFormatError(f"the header is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise SafetensorsFormatError("the header is not a JSON object")
    by_dtype: dict[str, int] = {}
    count = 0
    meta: dict[str, str] = {}
    for name, info in data.items():
        if name == "__metadata__":
            if isinstance(info, dict):
                meta = {str(k): str(v) for k, v in info.items()}
            continue
        if not isinstance(info, dict):
            raise SafetensorsFormatError(f"tensor {name!r} has no description")
        dtype, shape = info.get("dtype"), info.get("shape")
        if not isinstance(dtype, str) or not isinstance(shape, list):
            raise SafetensorsFormatError(f"tensor {name!r} lacks a dtype or shape")
        elements = 1
        for d in shape:
            if not isinstance(d, int) or isinstance(d, bool) or d < 0:
                raise SafetensorsFormatError(f"tensor {name!r} has an invalid shape")
            elements *= d
        by_dtype[dtype] = by_dtype.get(dtype, 0) + elements
        count += 1
    return SafetensorsHeader(count, by_dtype, meta, 8 + n)
