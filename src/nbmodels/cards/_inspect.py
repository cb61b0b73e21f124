"""What is in a model file, without downloading it: :func:`inspect` -> :class:`ModelCard`.

A GGUF file's header (metadata and tensor table) or a safetensors file's JSON header is read
with a few ``Range`` requests — :data:`INITIAL_READ` first, doubling while the header is larger —
through the same HTTP stack as downloads (:mod:`nbmodels.cards._remote`). Every part of a split GGUF
and every shard of a sharded safetensors repo is read and combined. Which files a reference
means follows the download rules (quant selection, split parts); a pinned reference that is
already on disk, a local path, or ``offline=True`` reads the local files and sends nothing.

What the card holds, and how the headers become one: :mod:`nbmodels.cards._card`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .._aio import run_sync
from .._config import Settings, env_flag
from .._options import Options
from ..errors import NbmodelsError, NotFoundError, OfflineError
from ..hub import ResolvedRepo, open_session, storage_for
from ..net import make_client
from ..refs import ModelRef, parse_ref, split_complete, split_siblings
from ._card import Found, ModelCard, build_card
from ._remote import RemoteFile
from ._weights import (
    Format,
    LocalFile,
    select_weights,
    shard_siblings,
    sniff_format,
)

__all__ = ["inspect"]

_INSPECT_OPTIONS = ("revision", "dir", "token", "offline")


# -- resolution: local path, files on disk, or the Hub -----------------------------------------


def _local_found(root: Path, files: list[str], fmt: Format, commit: str | None) -> Found:
    folder = (root / files[0]).parent
    config = folder / "config.json"
    tok = folder / "tokenizer_config.json"
    return Found(
        fmt,
        [LocalFile(root / f, f) for f in files],
        commit=commit,
        local=True,
        config=LocalFile(config) if config.is_file() else None,
        tokenizer_config=LocalFile(tok) if tok.is_file() else None,
        has_chat_template_file=(folder / "chat_template.jinja").is_file(),
    )


def _from_path(path: Path) -> Found:
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


def _from_disk(ref: ModelRef, options: Options) -> Found | None:
    """The reference's files when they are all on disk (cache or ``dir=``); no network."""
    assert ref.repo_id is not None
    storage = storage_for(ref, options)
    disk = storage.on_disk(options.revision or ref.revision)
    if disk is None or not disk.files:
        return None
    try:
        fmt, files = select_weights(
            disk.files, path=ref.path, is_dir=ref.is_dir, quant=ref.quant, repo=ref.repo_id
        )
    except NotFoundError:
        return None
    if fmt == "gguf" and not split_complete(files, files[0]):
        return None  # every split part named by the parts' own names must be there
    if not all((disk.root / f).is_file() for f in files):
        return None
    commit = disk.commit
    if commit is None:
        meta = storage.recorded(files[0])
        commit = meta[0] if meta else None
    return _local_found(disk.root, files, fmt, commit)


async def _from_hub(repo: ResolvedRepo) -> Found:
    api, ref, commit = repo.api, repo.ref, repo.commit
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
        return None if entry is None else RemoteFile.on_hub(api, commit, entry.path, entry.size)

    return Found(
        fmt,
        [RemoteFile.on_hub(api, commit, p, by_path[p].size) for p in files],
        commit=commit,
        config=side_file("config.json"),
        tokenizer_config=side_file("tokenizer_config.json"),
        has_chat_template_file=side + "chat_template.jinja" in by_path,
    )


async def _inspect_async(text: str, options: Options, context: int | None) -> ModelCard:
    settings = Settings.from_env()
    path = Path(text).expanduser()
    if os.path.exists(path):  # noqa: PTH110 - a str or a Path, said plainly
        return await build_card(text, _from_path(path), context)
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
            return await build_card(text, Found(fmt, [src]), context)
        finally:
            await client.aclose()
    if ref.pinned or offline or options.dir is not None:
        found = _from_disk(ref, options)
        if found is not None:
            return await build_card(text, found, context)
        if offline:
            raise OfflineError(
                f"Offline, and {ref} is not fully on disk.",
                hint="Download it once (nbmodels pull), or inspect it with the network on.",
            )
    async with open_session(options, settings) as session:
        repo = await session.find(ref, options.revision or ref.revision)
        return await build_card(text, await _from_hub(repo), context)


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
