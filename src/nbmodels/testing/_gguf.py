"""A minimal GGUF v3 writer: a valid header and tensor table, followed by generated tensor data.

Layout (little-endian), as llama.cpp's ``gguf`` reader expects it::

    b"GGUF" | u32 version=3 | u64 n_tensors | u64 n_kv
    n_kv    x  (string key | u32 value type | value)
    n_tensors x (string name | u32 n_dims | u64 dims[n_dims] | u32 ggml type | u64 data offset)
    zero padding to ``general.alignment`` (32)
    tensor data (offsets relative to here, each aligned) ... filler up to the requested size

Strings are ``u64 length + UTF-8 bytes``. The tensor data and everything after it are
deterministic pseudo-random bytes (:class:`GeneratedFile`), so a multi-GB quant costs nothing.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ._content import GeneratedFile

__all__ = ["FILE_TYPES", "GGUF_ALIGNMENT", "gguf_file", "gguf_header", "quant_of"]

GGUF_ALIGNMENT = 32

# GGUF metadata value types.
_UINT8, _INT8, _UINT16, _INT16, _UINT32, _INT32, _FLOAT32, _BOOL, _STRING, _ARRAY = range(10)
_UINT64, _INT64, _FLOAT64 = 10, 11, 12

FILE_TYPES: Mapping[str, int] = {
    "F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9, "Q2_K": 10,
    "Q3_K_S": 11, "Q3_K_M": 12, "Q3_K_L": 13, "Q4_K_S": 14, "Q4_K_M": 15, "Q5_K_S": 16,
    "Q5_K_M": 17, "Q6_K": 18, "IQ2_XXS": 19, "IQ2_XS": 20, "Q2_K_S": 21, "IQ3_XS": 22,
    "IQ3_XXS": 23, "IQ1_S": 24, "IQ4_NL": 25, "IQ3_S": 26, "IQ3_M": 27, "IQ2_S": 28,
    "IQ2_M": 29, "IQ4_XS": 30, "IQ1_M": 31, "BF16": 32,
}  # fmt: skip
"""llama.cpp's ``general.file_type`` (``LlamaFileType``) value for each quant name."""


@dataclass(frozen=True)
class _GgmlType:
    code: int
    block: int  # elements per block
    nbytes: int  # bytes per block


_F32 = _GgmlType(0, 1, 4)
_F16 = _GgmlType(1, 1, 2)
_BF16 = _GgmlType(30, 1, 2)
_Q4_0 = _GgmlType(2, 32, 18)
_Q5_0 = _GgmlType(6, 32, 22)
_Q8_0 = _GgmlType(8, 32, 34)
_Q2_K = _GgmlType(10, 256, 84)
_Q3_K = _GgmlType(11, 256, 110)
_Q4_K = _GgmlType(12, 256, 144)
_Q5_K = _GgmlType(13, 256, 176)
_Q6_K = _GgmlType(14, 256, 210)


def _weight_type(quant: str) -> _GgmlType:
    """The ggml tensor type used for the weight matrices of a given quant (simplified)."""
    q = quant.upper()
    if q.startswith(("Q2", "IQ1", "IQ2")):
        return _Q2_K
    if q.startswith(("Q3", "IQ3")):
        return _Q3_K
    if q.startswith(("Q4_K", "IQ4")):
        return _Q4_K
    if q.startswith("Q4"):
        return _Q4_0
    if q.startswith("Q5_K"):
        return _Q5_K
    if q.startswith("Q5"):
        return _Q5_0
    if q.startswith("Q6"):
        return _Q6_K
    if q.startswith("Q8"):
        return _Q8_0
    if q == "BF16":
        return _BF16
    if q == "F32":
        return _F32
    return _F16


def quant_of(quant: str) -> int:
    """``general.file_type`` for a quant name (unknown names map to F16 = 1)."""
    return FILE_TYPES.get(quant.upper(), 1)


def _string(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


_Value = str | bool | int | float | tuple[int, int] | Sequence[str]
"""A metadata value: ``(type_code, int)`` pins an integer type; a list is an array of strings."""


def _kv(key: str, value: _Value) -> bytes:
    out = _string(key)
    if isinstance(value, bool):
        return out + struct.pack("<IB", _BOOL, int(value))
    if isinstance(value, str):
        return out + struct.pack("<I", _STRING) + _string(value)
    if isinstance(value, tuple):
        code, number = value
        fmt = {_UINT16: "H", _UINT32: "I", _INT32: "i", _UINT64: "Q"}[code]
        return out + struct.pack("<I" + fmt, code, number)
    if isinstance(value, int):
        return out + struct.pack("<II", _UINT32, value)
    if isinstance(value, float):
        return out + struct.pack("<If", _FLOAT32, value)
    items = list(value)
    body = b"".join(_string(s) for s in items)
    return out + struct.pack("<IIQ", _ARRAY, _STRING, len(items)) + body


def _align(n: int) -> int:
    return -(-n // GGUF_ALIGNMENT) * GGUF_ALIGNMENT


_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def gguf_header(
    *,
    name: str = "Tiny Llama",
    quant: str = "Q4_K_M",
    architecture: str = "llama",
    split_no: int | None = None,
    split_count: int | None = None,
    context_length: int = 4096,
    embedding_length: int = 256,
    block_count: int = 2,
    head_count: int = 8,
    head_count_kv: int = 4,
    chat_template: str = _CHAT_TEMPLATE,
    extra: Mapping[str, _Value] | None = None,
) -> tuple[bytes, int]:
    """Build a GGUF v3 header and tensor table.

    Returns ``(header, data_size)``: ``header`` ends padded to the alignment, and the tensors
    declared in it occupy the ``data_size`` bytes that follow. For split files (``split_count``
    given) part ``split_no`` (0-based, as llama.cpp's ``split.no``) declares its own tensors and
    ``split.tensors.count`` is the total over all parts; only part 0 carries the model metadata.
    """
    weight = _weight_type(quant)
    parts = split_count or 1
    index = split_no or 0
    kvs: list[tuple[str, _Value]] = []
    if index == 0:
        kvs += [
            ("general.architecture", architecture),
            ("general.name", name),
            ("general.file_type", (_UINT32, quant_of(quant))),
            ("general.quantization_version", (_UINT32, 2)),
            ("general.alignment", (_UINT32, GGUF_ALIGNMENT)),
            (f"{architecture}.context_length", (_UINT32, context_length)),
            (f"{architecture}.embedding_length", (_UINT32, embedding_length)),
            (f"{architecture}.block_count", (_UINT32, block_count)),
            (f"{architecture}.attention.head_count", (_UINT32, head_count)),
            (f"{architecture}.attention.head_count_kv", (_UINT32, head_count_kv)),
            ("tokenizer.ggml.model", "llama"),
            ("tokenizer.chat_template", chat_template),
        ]
    if split_count is not None:
        kvs += [
            ("split.no", (_UINT16, index)),
            ("split.count", (_UINT16, parts)),
            ("split.tensors.count", (_INT32, parts * _PER_PART)),
        ]
    kvs += list((extra or {}).items())
    return _pack(kvs, _tensor_table(weight, index, parts))


#: Tensors each part of a file declares.
_PER_PART = 3

_Tensor = tuple[str, tuple[int, ...], _GgmlType]


def _tensor_table(weight: _GgmlType, index: int, parts: int) -> list[_Tensor]:
    """The tensors part ``index`` of ``parts`` declares (an embedding, attention weights, the
    output norm), ``weight`` being the quantized type."""
    n_embd = 256  # tensor widths: a multiple of every block size, whatever the metadata says
    tensors: list[_Tensor] = []
    for t in range(index * _PER_PART, (index + 1) * _PER_PART):
        if t == 0:
            tensors.append(("token_embd.weight", (n_embd, 8), weight))
        elif t == parts * _PER_PART - 1:
            tensors.append(("output_norm.weight", (n_embd,), _F32))
        else:
            tensors.append((f"blk.{t - 1}.attn_q.weight", (n_embd, 4), weight))
    return tensors


def _pack(kvs: list[tuple[str, _Value]], tensors: list[_Tensor]) -> tuple[bytes, int]:
    """The header bytes (padded to the alignment) and the size of the tensor data after it."""
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs))
    head += b"".join(_kv(k, v) for k, v in kvs)
    offset = 0
    for tname, dims, gtype in tensors:
        n_elems = 1
        for d in dims:
            n_elems *= d
        head += _string(tname) + struct.pack("<I", len(dims))
        head += struct.pack(f"<{len(dims)}Q", *dims)
        head += struct.pack("<IQ", gtype.code, offset)
        offset = _align(offset + n_elems // gtype.block * gtype.nbytes)
    header = head + b"\0" * (_align(len(head)) - len(head))
    return header, offset


def gguf_file(
    size: int,
    *,
    seed: int | str = 0,
    name: str = "Tiny Llama",
    quant: str = "Q4_K_M",
    architecture: str = "llama",
    split_no: int | None = None,
    split_count: int | None = None,
    extra: Mapping[str, _Value] | None = None,
) -> GeneratedFile:
    """A GGUF file of exactly ``size`` bytes: a valid header, then generated tensor data/filler.

    ``size`` is raised to the minimum (header + declared tensor data, a few KB) if smaller.
    """
    header, data = gguf_header(
        name=name,
        quant=quant,
        architecture=architecture,
        split_no=split_no,
        split_count=split_count,
        extra=extra,
    )
    return GeneratedFile(max(size, len(header) + data), seed, prefix=header)
