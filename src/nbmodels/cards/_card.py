"""The :class:`ModelCard`, and how the headers of a model's files become one: parameters and
tensor types summed over every part or shard, the architecture's shape from GGUF metadata or a
``config.json``, and the memory estimate for this machine (:mod:`nbmodels.cards._memory`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, TypedDict

from .._progress import format_bytes
from ..refs import split_quant_name
from ._gguf import FILE_TYPE_NAMES, GGUFArray, GGUFHeader
from ._memory import MemoryEstimate, estimate
from ._safetensors import SafetensorsHeader
from ._weights import ByteSource, Format, read_header, read_json

__all__ = ["Found", "ModelCard", "build_card", "format_count"]


@dataclass(frozen=True, slots=True)
class ModelCard:
    """What :func:`nbmodels.inspect` found out about a model, without downloading it.

    ``parameters`` and ``tensor_count`` are summed over every part / shard;
    ``total_size_bytes`` is the size of all of them. ``file_type`` is the quant of a GGUF
    (``"Q4_K_M"``) or the main dtype of a safetensors model (``"F16"``); ``dtypes`` gives the
    parameters per tensor type, largest first. Fields a file does not state are None.
    ``bytes_read`` is how much of the files was read (remote or local) to learn all this.
    """

    ref: str
    format: Format
    files: tuple[str, ...]
    file_sizes: tuple[int, ...]
    total_size_bytes: int
    parameters: int
    tensor_count: int
    architecture: str | None = None
    name: str | None = None
    file_type: str | None = None
    context_length: int | None = None
    embedding_length: int | None = None
    layers: int | None = None
    heads: int | None = None
    kv_heads: int | None = None
    chat_template: bool | None = None
    dtypes: tuple[tuple[str, int], ...] = ()
    commit: str | None = None
    local: bool = False
    bytes_read: int = 0
    memory: MemoryEstimate | None = None

    def summary(self) -> str:
        """One line: ``llama · 1.1B params · Q4_K_M · ctx 2048 · 668.0 MB · fits (needs ~0.9 GB
        of 23 GB)`` (unknown parts are left out)."""
        parts = [self.architecture or self.format, f"{format_count(self.parameters)} params"]
        if self.file_type:
            parts.append(self.file_type)
        if self.context_length:
            parts.append(f"ctx {self.context_length}")
        parts.append(format_bytes(self.total_size_bytes))
        if self.memory is not None:
            parts.append(self.memory.summary())
        return " · ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the ``model`` object of ``nbmodels inspect --json``)."""
        return {
            "ref": self.ref,
            "format": self.format,
            "files": [
                {"name": n, "size_bytes": s}
                for n, s in zip(self.files, self.file_sizes, strict=True)
            ],
            "total_size_bytes": self.total_size_bytes,
            "parameters": self.parameters,
            "tensor_count": self.tensor_count,
            "architecture": self.architecture,
            "name": self.name,
            "file_type": self.file_type,
            "context_length": self.context_length,
            "embedding_length": self.embedding_length,
            "layers": self.layers,
            "heads": self.heads,
            "kv_heads": self.kv_heads,
            "chat_template": self.chat_template,
            "dtypes": dict(self.dtypes),
            "commit": self.commit,
            "local": self.local,
            "bytes_read": self.bytes_read,
            "summary": self.summary(),
            "memory": None if self.memory is None else self.memory.to_dict(),
        }


def format_count(n: int) -> str:
    """``1100048384`` -> ``1.1B``; ``350000000`` -> ``350M``; ``6144`` -> ``6.1K``."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            value = n / scale
            return f"{value:.1f}{suffix}" if value < 100 else f"{value:.0f}{suffix}"
    return str(n)


# -- building the card -------------------------------------------------------------------------


@dataclass(slots=True)
class Found:
    """What the resolution step (:mod:`._inspect`) hands to the card builder."""

    fmt: Format
    sources: list[ByteSource]
    commit: str | None = None
    local: bool = False
    config: ByteSource | None = None
    tokenizer_config: ByteSource | None = None
    has_chat_template_file: bool = False


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, GGUFArray) and value.values:
        ints = [v for v in value.values if isinstance(v, int) and not isinstance(v, bool)]
        return max(ints) if ints else None
    return None


def _kv_shape(layers: int | None, kv_raw: Any, heads: int | None) -> tuple[int | None, int | None]:
    """(layers, kv heads) for the KV formula; a per-layer kv-head array is summed instead."""
    if isinstance(kv_raw, GGUFArray) and kv_raw.values:
        ints = [v for v in kv_raw.values if isinstance(v, int) and not isinstance(v, bool)]
        return (1, sum(ints)) if ints else (layers, heads)
    kv = _as_int(kv_raw)
    return layers, kv if kv is not None else heads


class _Files(TypedDict):
    """The fields of a :class:`ModelCard` that describe its files, whatever their format."""

    format: Format
    files: tuple[str, ...]
    file_sizes: tuple[int, ...]
    total_size_bytes: int
    commit: str | None
    local: bool
    bytes_read: int


def _files(found: Found, *side: ByteSource) -> _Files:
    """The files of ``found``; ``side`` files (config.json...) count in the bytes read."""
    sizes = tuple(s.size or 0 for s in found.sources)
    return _Files(
        format=found.fmt,
        files=tuple(s.name for s in found.sources),
        file_sizes=sizes,
        total_size_bytes=sum(sizes),
        commit=found.commit,
        local=found.local,
        bytes_read=sum(s.bytes_read for s in (*found.sources, *side)),
    )


def _tensor_totals(headers: list[GGUFHeader]) -> tuple[int, int, dict[str, int]]:
    """(parameters, tensors, parameters per tensor type) over every part."""
    dtypes: dict[str, int] = {}
    params = count = 0
    for header in headers:
        for t in header.tensors:
            params += t.n_elements
            count += 1
            dtypes[t.type_name] = dtypes.get(t.type_name, 0) + t.n_elements
    return params, count, dtypes


def _gguf_card(ref: str, found: Found, headers: list[GGUFHeader], context: int | None) -> ModelCard:
    meta = headers[0].metadata
    arch = meta.get("general.architecture")
    arch = arch if isinstance(arch, str) else None

    def key(name: str) -> Any:
        return meta.get(f"{arch}.{name}") if arch else None

    params, count, dtypes = _tensor_totals(headers)
    ft = meta.get("general.file_type")
    file_type = FILE_TYPE_NAMES.get(ft) if isinstance(ft, int) else None
    if file_type is None:
        file_type = split_quant_name(found.sources[0].name)[0]
    ctx = _as_int(key("context_length"))
    emb = _as_int(key("embedding_length"))
    layers = _as_int(key("block_count"))
    heads = _as_int(key("attention.head_count"))
    kv_raw = key("attention.head_count_kv")
    kv_layers, kv_heads = _kv_shape(layers, kv_raw, heads)
    key_dim = _as_int(key("attention.key_length"))
    if key_dim is None and emb and heads:
        key_dim = emb // heads
    value_dim = _as_int(key("attention.value_length")) or key_dim
    name = meta.get("general.name")
    files = _files(found)
    return ModelCard(
        ref=ref,
        **files,
        parameters=params,
        tensor_count=count,
        architecture=arch,
        name=name if isinstance(name, str) else None,
        file_type=file_type,
        context_length=ctx,
        embedding_length=emb,
        layers=layers,
        heads=heads,
        kv_heads=_as_int(kv_raw) if kv_raw is not None else heads,
        chat_template=any(
            k == "tokenizer.chat_template" or k.startswith("tokenizer.chat_template.") for k in meta
        ),
        dtypes=tuple(sorted(dtypes.items(), key=lambda kv: -kv[1])),
        memory=estimate(
            files["total_size_bytes"],
            layers=kv_layers,
            kv_heads=kv_heads,
            key_dim=key_dim,
            value_dim=value_dim,
            model_context=ctx,
            context=context,
        ),
    )


def _first_int(config: dict[str, Any], *keys: str) -> int | None:
    for k in keys:
        value = _as_int(config.get(k))
        if value is not None:
            return value
    return None


async def _safetensors_card(
    ref: str, found: Found, headers: list[SafetensorsHeader], context: int | None
) -> ModelCard:
    dtypes: dict[str, int] = {}
    for h in headers:
        for dtype, n in h.parameters_by_dtype.items():
            dtypes[dtype] = dtypes.get(dtype, 0) + n
    ordered = tuple(sorted(dtypes.items(), key=lambda kv: -kv[1]))
    config = await read_json(found.config) if found.config is not None else None
    cfg = config or {}
    text = cfg.get("text_config")
    if isinstance(text, dict) and "num_hidden_layers" not in cfg:
        cfg = {**cfg, **text}
    arch = cfg.get("model_type")
    if not isinstance(arch, str):
        archs = cfg.get("architectures")
        arch = archs[0] if isinstance(archs, list) and archs and isinstance(archs[0], str) else None
    ctx = _first_int(cfg, "max_position_embeddings", "n_positions", "n_ctx", "seq_length")
    emb = _first_int(cfg, "hidden_size", "n_embd", "d_model")
    layers = _first_int(cfg, "num_hidden_layers", "n_layer", "num_layers")
    heads = _first_int(cfg, "num_attention_heads", "n_head")
    kv_heads = _first_int(cfg, "num_key_value_heads") or heads
    head_dim = _first_int(cfg, "head_dim") or (emb // heads if emb and heads else None)
    chat: bool | None = True if found.has_chat_template_file else None
    if chat is None and found.tokenizer_config is not None:
        tok = await read_json(found.tokenizer_config)
        chat = None if tok is None else bool(tok.get("chat_template"))
    side = [s for s in (found.config, found.tokenizer_config) if s is not None]
    files = _files(found, *side)
    return ModelCard(
        ref=ref,
        **files,
        parameters=sum(h.parameters for h in headers),
        tensor_count=sum(h.tensor_count for h in headers),
        architecture=arch,
        file_type=ordered[0][0] if ordered else None,
        context_length=ctx,
        embedding_length=emb,
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        chat_template=chat,
        dtypes=ordered,
        memory=estimate(
            files["total_size_bytes"],
            layers=layers,
            kv_heads=kv_heads,
            key_dim=head_dim,
            model_context=ctx,
            context=context,
        ),
    )


async def build_card(ref: str, found: Found, context: int | None) -> ModelCard:
    results = await asyncio.gather(*(read_header(s, found.fmt) for s in found.sources))
    if found.fmt == "gguf":
        gguf = [h for _k, h in results if isinstance(h, GGUFHeader)]
        return _gguf_card(ref, found, gguf, context)
    st = [h for _k, h in results if isinstance(h, SafetensorsHeader)]
    return await _safetensors_card(ref, found, st, context)
