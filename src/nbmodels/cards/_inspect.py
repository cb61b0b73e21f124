"""What is in a model file, without downloading it: :func:`inspect` -> :class:`ModelCard`.

A GGUF file's header (metadata and tensor table) or a safetensors file's JSON header is read
with a few ``Range`` requests — :data:`INITIAL_READ` first, doubling while the header is larger —
through the same HTTP stack as downloads (:mod:`nbmodels.cards._remote`). Every part of a split GGUF
and every shard of a sharded safetensors repo is read and combined. Which files a reference
means follows the download rules (quant selection, split parts); a pinned reference that is
already on disk, a local path, or ``offline=True`` reads the local files and sends nothing.

The card carries a memory estimate for this machine (:mod:`nbmodels.cards._memory`).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._config import Settings, env_flag
from .._options import Options
from .._progress import format_bytes
from .._refs import ModelRef, parse_ref, split_quant_name
from ..errors import NbmodelsError, NotFoundError, OfflineError
from ..hub._storage import CacheRepo, LocalDirRepo
from ..net import make_client
from ..sources._hf import split_siblings
from ._gguf import FILE_TYPE_NAMES, GGUFArray, GGUFHeader
from ._memory import MemoryEstimate, estimate
from ._remote import HubSession, RemoteFile, hub_session, run_sync
from ._safetensors import SafetensorsHeader
from ._weights import (
    ByteSource,
    Format,
    LocalFile,
    read_header,
    read_json,
    select_weights,
    shard_siblings,
    sniff_format,
)

__all__ = ["ModelCard", "format_count", "inspect"]

_INSPECT_OPTIONS = ("revision", "dir", "token", "offline")


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
class _Found:
    """What the resolution step hands to the card builder."""

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


def _gguf_card(
    ref: str, found: _Found, headers: list[GGUFHeader], context: int | None
) -> ModelCard:
    meta = headers[0].metadata
    arch = meta.get("general.architecture")
    arch = arch if isinstance(arch, str) else None

    def key(name: str) -> Any:
        return meta.get(f"{arch}.{name}") if arch else None

    dtypes: dict[str, int] = {}
    params = 0
    count = 0
    for header in headers:
        for t in header.tensors:
            n = t.n_elements
            params += n
            count += 1
            dtypes[t.type_name] = dtypes.get(t.type_name, 0) + n
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
    chat = any(
        k == "tokenizer.chat_template" or k.startswith("tokenizer.chat_template.") for k in meta
    )
    sizes = tuple(s.size or 0 for s in found.sources)
    total = sum(sizes)
    memory = estimate(
        total,
        layers=kv_layers,
        kv_heads=kv_heads,
        key_dim=key_dim,
        value_dim=value_dim,
        model_context=ctx,
        context=context,
    )
    return ModelCard(
        ref=ref,
        format="gguf",
        files=tuple(s.name for s in found.sources),
        file_sizes=sizes,
        total_size_bytes=total,
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
        chat_template=chat,
        dtypes=tuple(sorted(dtypes.items(), key=lambda kv: -kv[1])),
        commit=found.commit,
        local=found.local,
        bytes_read=sum(s.bytes_read for s in found.sources),
        memory=memory,
    )


def _first_int(config: dict[str, Any], *keys: str) -> int | None:
    for k in keys:
        value = _as_int(config.get(k))
        if value is not None:
            return value
    return None


async def _safetensors_card(
    ref: str, found: _Found, headers: list[SafetensorsHeader], context: int | None
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
    sizes = tuple(s.size or 0 for s in found.sources)
    total = sum(sizes)
    memory = estimate(
        total,
        layers=layers,
        kv_heads=kv_heads,
        key_dim=head_dim,
        model_context=ctx,
        context=context,
    )
    return ModelCard(
        ref=ref,
        format="safetensors",
        files=tuple(s.name for s in found.sources),
        file_sizes=sizes,
        total_size_bytes=total,
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
        commit=found.commit,
        local=found.local,
        bytes_read=sum(s.bytes_read for s in [*found.sources, *side]),
        memory=memory,
    )


async def _card(ref: str, found: _Found, context: int | None) -> ModelCard:
    results = await asyncio.gather(*(read_header(s, found.fmt) for s in found.sources))
    if found.fmt == "gguf":
        gguf = [h for _k, h in results if isinstance(h, GGUFHeader)]
        return _gguf_card(ref, found, gguf, context)
    st = [h for _k, h in results if isinstance(h, SafetensorsHeader)]
    return await _safetensors_card(ref, found, st, context)


# -- resolution: local path, files on disk, or the Hub -----------------------------------------


def _local_found(root: Path, files: list[str], fmt: Format, commit: str | None) -> _Found:
    folder = (root / files[0]).parent
    config = folder / "config.json"
    tok = folder / "tokenizer_config.json"
    return _Found(
        fmt,
        [LocalFile(root / f, f) for f in files],
        commit=commit,
        local=True,
        config=LocalFile(config) if config.is_file() else None,
        tokenizer_config=LocalFile(tok) if tok.is_file() else None,
        has_chat_template_file=(folder / "chat_template.jinja").is_file(),
    )


def _from_path(path: Path) -> _Found:
    """A local file (its split parts / shards next to it) or a folder of weights."""
    if path.is_dir():
        listing = [
            p.relative_to(path).as_posix()
            for p in path.rglob("*")
            if p.is_file() and ".cache" not in p.relative_to(path).parts
        ]
        kind, found = select_weights(listing, repo=str(path))
        return _local_found(path, found, kind, None)
    siblings = [p.name for p in path.parent.iterdir() if p.is_file()]
    name = path.name
    fmt: Format
    if name.lower().endswith(".gguf"):
        fmt = "gguf"
        files = split_siblings(name, siblings) or [name]
    elif name.lower().endswith(".safetensors"):
        fmt, files = "safetensors", shard_siblings(name, siblings)
    else:
        with path.open("rb") as f:
            fmt = sniff_format(f.read(16), name)
        files = [name]
    return _local_found(path.parent, files, fmt, None)


def _complete(fmt: Format, files: list[str]) -> bool:
    """Every split part named by the parts' own names is in the list."""
    if fmt != "gguf":
        return True
    _q, _part, count = split_quant_name(files[0].rsplit("/", 1)[-1])
    return count is None or len(files) == count


def _from_disk(ref: ModelRef, options: Options) -> _Found | None:
    """The reference's files when they are all on disk (cache or ``dir=``); no network."""
    assert ref.repo_id is not None
    revision = options.revision or ref.revision
    commit: str | None
    if options.dir is not None:
        local = LocalDirRepo(options.dir)
        root, paths = options.dir, local.files_on_disk()
        commit = None
    else:
        cache = CacheRepo(ref.repo_type, ref.repo_id)
        commit = cache.cached_commit(revision)
        if commit is None:
            return None
        root, paths = cache.snapshot_dir(commit), cache.snapshot_files(commit)
    if not paths:
        return None
    try:
        fmt, files = select_weights(
            paths, path=ref.path, is_dir=ref.is_dir, quant=ref.quant, repo=ref.repo_id
        )
    except NotFoundError:
        return None
    if not _complete(fmt, files) or not all((root / f).is_file() for f in files):
        return None
    if options.dir is not None:
        meta = LocalDirRepo(options.dir).read_metadata(files[0])
        commit = meta[0] if meta else None
    return _local_found(root, files, fmt, commit)


async def _from_hub(session: HubSession, ref: ModelRef, options: Options) -> _Found:
    api = session.api
    commit = await api.commit(options.revision or ref.revision)
    folder: str | None = None
    if ref.path is not None:
        folder = ref.path.rstrip("/") if ref.is_dir else (ref.path.rpartition("/")[0] or None)
    entries = await api.tree(commit, folder, recursive=True)
    by_path = {e.path: e for e in entries}
    fmt, files = select_weights(
        list(by_path),
        path=ref.path,
        is_dir=ref.is_dir,
        quant=ref.quant,
        repo=ref.repo_url_path,
    )
    side = files[0].rpartition("/")[0]
    side = f"{side}/" if side else ""

    def side_file(name: str) -> RemoteFile | None:
        entry = by_path.get(side + name)
        return None if entry is None else session.file(commit, entry.path, entry.size)

    return _Found(
        fmt,
        [session.file(commit, p, by_path[p].size) for p in files],
        commit=commit,
        config=side_file("config.json"),
        tokenizer_config=side_file("tokenizer_config.json"),
        has_chat_template_file=side + "chat_template.jinja" in by_path,
    )


async def _inspect_async(text: str, options: Options, context: int | None) -> ModelCard:
    settings = Settings.from_env()
    path = Path(text).expanduser()
    if os.path.exists(path):  # noqa: PTH110 - a str or a Path, said plainly
        return await _card(text, _from_path(path), context)
    ref = parse_ref(text)
    offline = options.offline or env_flag("HF_HUB_OFFLINE")
    if ref.kind == "url":
        if offline:
            raise OfflineError(f"Offline: cannot inspect {ref.url}.", hint="Turn the network on.")
        assert ref.url is not None
        client = make_client(settings)
        try:
            name = ref.url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "the file"
            src = RemoteFile(client, settings, ref.url, name=name)
            try:
                fmt = sniff_format(b"", name)
            except NbmodelsError:
                fmt = sniff_format(await src.read(0, 16), name)
            return await _card(text, _Found(fmt, [src]), context)
        finally:
            await client.aclose()
    if ref.pinned or offline or options.dir is not None:
        found = _from_disk(ref, options)
        if found is not None:
            return await _card(text, found, context)
        if offline:
            raise OfflineError(
                f"Offline, and {ref} is not fully on disk.",
                hint="Download it once (nbmodels pull), or inspect it with the network on.",
            )
    async with hub_session(ref, options, settings) as session:
        return await _card(text, await _from_hub(session, session.ref, options), context)


def inspect(
    ref: str | os.PathLike[str], *, context: int | None = None, **options: Any
) -> ModelCard:
    """Read a model's header and return its :class:`ModelCard` (see :func:`nbmodels.inspect`)."""
    unknown = set(options) - set(_INSPECT_OPTIONS)
    if unknown:
        raise TypeError(
            f"inspect() does not take {', '.join(sorted(unknown))}; "
            f"its options are: {', '.join(_INSPECT_OPTIONS)}, context"
        )
    if context is not None and (
        isinstance(context, bool) or not isinstance(context, int) or context < 1
    ):
        raise ValueError(f"context must be a positive number of tokens, got {context!r}")
    opts = Options.create(**options)
    text = os.fspath(ref)
    return run_sync(lambda: _inspect_async(text, opts, context))
