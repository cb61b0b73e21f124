"""Hugging Face references -> plans (DESIGN §3, §4).

Resolution order for a reference:

1. Offline (``offline=True`` or ``HF_HUB_OFFLINE``): only the disk is consulted; zero requests.
2. Pinned (a quant, file or folder) and fully on disk for the cached ``refs/<revision>`` commit:
   ``already_downloaded`` with zero requests (unless ``force``).
3. Otherwise ask the Hub: the revision's commit, then the file list (tree / paths-info), select
   the files (quant rules, split parts, include/exclude), and plan each one with its size and
   digest so every LFS file is verified by sha256 and every small git file by its git blob SHA-1.
   When the Hub cannot be reached and the reference is not pinned, the cached refs are used.
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx2

from .._config import env_flag
from .._options import Options
from .._refs import REPO_URL_PREFIX, ModelRef, is_sidecar, split_quant_name
from .._transfer import Credential, FileSpec, TransferResult, origin_of
from ..errors import NetworkError, NotFoundError, OfflineError
from ._base import Plan, PlannedFile, SourceContext
from ._digest import check_hub_sha256, check_on_disk, digest_target
from ._hf_storage import CacheRepo, LocalDirRepo
from ._hub_api import HubApi, HubEntry

__all__ = ["hf_endpoint", "plan_hf", "select_quant"]

DEFAULT_QUANTS = ("Q4_K_M", "Q8_0")
_TYPE_PREFIX = REPO_URL_PREFIX


def hf_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _token(options: Options) -> str | None:
    if options.token is False:
        return None
    if isinstance(options.token, str):
        return options.token
    from huggingface_hub import get_token  # token lookup: HF_TOKEN, the login file, Colab

    return get_token()


# -- selection (pure) ---------------------------------------------------------------------------


def _gguf_models(paths: Iterable[str]) -> dict[str, list[str]]:
    """Quant tag (upper-cased) -> GGUF weight files with that tag."""
    out: dict[str, list[str]] = {}
    for p in paths:
        if not p.lower().endswith(".gguf") or is_sidecar(p):
            continue
        quant, _part, _count = split_quant_name(p.rsplit("/", 1)[-1])
        if quant is None:
            # The folder may carry the tag (Model-Q8_0/xxx-00001-of-00003.gguf).
            folder = p.rsplit("/", 1)[0] if "/" in p else ""
            quant = split_quant_name(folder.rsplit("/", 1)[-1] + ".gguf")[0] if folder else None
        if quant is not None:
            out.setdefault(quant.upper(), []).append(p)
    return out


def select_quant(paths: list[str], quant: str | None, repo: str) -> list[str]:
    """The files of a quant (all split parts), or of the default quant when ``quant`` is None.

    Raises NotFoundError listing the quants that exist.
    """
    models = _gguf_models(paths)
    available = sorted(models)
    if quant is None:
        for default in DEFAULT_QUANTS:
            if default in models:
                quant = default
                break
        else:
            if len(models) == 1:
                quant = available[0]
            else:
                raise NotFoundError(
                    f"{repo} has several quants and none is a default "
                    f"({', '.join(DEFAULT_QUANTS)}).",
                    candidates=available,
                    hint=f"Pick one: {', '.join(f'{repo}:{q}' for q in available)}.",
                )
    files = models.get(quant.upper())
    if not files:
        raise NotFoundError(
            f"{repo} has no {quant} quant."
            + (f" Available: {', '.join(available)}." if available else " It has no GGUF files."),
            candidates=available,
            hint=f"Use one of: {', '.join(f'{repo}:{q}' for q in available)}."
            if available
            else None,
        )
    groups = _split_groups(files)
    if len(groups) > 1:
        firsts = sorted(g[0] for g in groups.values())
        raise NotFoundError(
            f"{repo} has several {quant} files: {', '.join(firsts)}.",
            candidates=firsts,
            hint=f"Name the file instead, e.g. hf:{repo}/{firsts[0]}.",
        )
    return next(iter(groups.values()))


_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


def _split_stem(path: str) -> tuple[str, int, int] | None:
    """("dir/Model-Q8_0", part, count) for a split GGUF part, else None."""
    m = _SPLIT.search(path)
    if m is None:
        return None
    return path[: m.start()], int(m.group(1)), int(m.group(2))


def _split_groups(files: list[str]) -> dict[str, list[str]]:
    """Group split parts of one model (same stem and count); parts sorted, part 1 first."""
    groups: dict[str, list[tuple[int, str]]] = {}
    for f in files:
        split = _split_stem(f)
        if split is not None:
            stem, part, count = split
            groups.setdefault(f"{stem}|{count}", []).append((part, f))
        else:
            groups.setdefault(f, []).append((1, f))
    return {k: [f for _n, f in sorted(v)] for k, v in groups.items()}


def split_siblings(path: str, all_paths: Iterable[str]) -> list[str]:
    """For a part of a split GGUF, every part (sorted, part 1 first); otherwise ``[path]``."""
    split = _split_stem(path)
    if split is None:
        return [path]
    stem, _part, count = split
    pattern = re.compile(re.escape(stem) + r"-(\d{5})-of-" + f"{count:05d}" + r"\.gguf$", re.I)
    return sorted(p for p in all_paths if pattern.fullmatch(p))


def _filter(paths: list[str], include: tuple[str, ...], exclude: tuple[str, ...]) -> list[str]:
    out = paths
    if include:
        out = [p for p in out if any(fnmatch.fnmatch(p, pat) for pat in include)]
    if exclude:
        out = [p for p in out if not any(fnmatch.fnmatch(p, pat) for pat in exclude)]
    return out


def _in_folder(paths: list[str], folder: str) -> list[str]:
    prefix = folder.rstrip("/") + "/"
    return [p for p in paths if p.startswith(prefix)]


@dataclass(frozen=True, slots=True)
class _Want:
    """Which files a reference means, given the repo's file list."""

    files: list[str]
    primary: str | None  # a repo path, or None for a folder/snapshot
    folder: str | None = None


def _choose(ref: ModelRef, options: Options, paths: list[str], repo: str) -> _Want:
    if ref.path is not None and not ref.is_dir:
        if ref.path not in paths:
            raise NotFoundError(
                f"{ref.path} does not exist in {repo} at {ref.revision or 'main'}.",
                candidates=[p for p in paths if p.lower().endswith(".gguf")][:20],
            )
        files = split_siblings(ref.path, paths)
        return _Want(files=files, primary=files[0])
    if ref.path is not None:  # a folder
        files = _filter(_in_folder(paths, ref.path), options.include, options.exclude)
        if not files:
            raise NotFoundError(f"Folder {ref.path} in {repo} is empty or does not exist.")
        return _Want(files=files, primary=None, folder=ref.path.rstrip("/"))
    is_gguf_repo = bool(_gguf_models(paths))
    if ref.quant is not None or (is_gguf_repo and not options.include and not options.exclude):
        files = select_quant(paths, ref.quant, repo)
        return _Want(files=files, primary=files[0])
    files = _filter(paths, options.include, options.exclude)
    if not files:
        raise NotFoundError(
            f"No file of {repo} matches include={list(options.include)} "
            f"exclude={list(options.exclude)}.",
            candidates=paths[:20],
        )
    return _Want(files=files, primary=None)


# -- planning -------------------------------------------------------------------------------------


async def plan_hf(ref: ModelRef, options: Options, ctx: SourceContext) -> Plan:
    assert ref.repo_id is not None
    revision = options.revision or ref.revision
    offline = options.offline or env_flag("HF_HUB_OFFLINE")
    repo_name = f"{_TYPE_PREFIX[ref.repo_type]}{ref.repo_id}"
    store_cache = CacheRepo(ref.repo_type, ref.repo_id) if options.dir is None else None
    store_dir = LocalDirRepo(options.dir) if options.dir is not None else None

    if offline or (ref.pinned and not options.force):
        local = await asyncio.to_thread(
            _plan_from_disk, ref, options, revision, store_cache, store_dir, repo_name
        )
        if local is not None:
            return local
        if offline:
            where = store_cache.root if store_cache is not None else options.dir
            raise OfflineError(
                f"Offline, and {ref} is not fully on disk (looked in {where}).",
                hint="Download it once with the network on (unset HF_HUB_OFFLINE / offline=True).",
            )

    endpoint = hf_endpoint()
    token = _token(options)
    credential = Credential(token, origin_of(endpoint)) if token else None
    api = HubApi(
        ctx.client,
        ctx.settings,
        endpoint=endpoint,
        repo_type=ref.repo_type,
        repo_id=ref.repo_id,
        credential=credential,
    )
    try:
        commit = await api.commit(revision)
    except NetworkError:
        if ref.pinned:
            raise
        # The Hub is unreachable: an unpinned reference may still use the cached refs.
        local = await asyncio.to_thread(
            _plan_from_disk, ref, options, revision, store_cache, store_dir, repo_name
        )
        if local is None:
            raise
        return local

    folder = None
    if ref.path is not None and ref.is_dir:
        folder = ref.path.rstrip("/")
    elif ref.path is not None:
        folder = ref.path.rsplit("/", 1)[0] if "/" in ref.path else None
    if ref.path is not None and not ref.is_dir and split_quant_name(ref.path)[1] is None:
        entries = await api.paths_info(commit, [ref.path])
    else:
        entries = await api.tree(commit, folder, recursive=True)
    by_path = {e.path: e for e in entries}
    want = _choose(ref, options, sorted(by_path), repo_name)
    chosen = [by_path[p] for p in want.files]
    checked = None
    if options.sha256 is not None:
        checked = digest_target(ref, want.files)
        check_hub_sha256(checked, by_path[checked].sha256, options.sha256)

    base_url = f"{endpoint}/{_TYPE_PREFIX[ref.repo_type]}{ref.repo_id}/resolve/{commit}/"
    stores = (store_cache, store_dir)
    files: list[PlannedFile] = []
    for entry in chosen:
        expected = options.sha256 if entry.path == checked else None
        files.append(
            await asyncio.to_thread(
                _plan_file, entry, commit, options, expected, stores, base_url, api
            )
        )

    if store_cache is not None:
        snapshot = store_cache.snapshot_dir(commit)
        primary = (
            snapshot / want.primary
            if want.primary
            else (snapshot / want.folder if want.folder else snapshot)
        )
        cache = store_cache

        def finish() -> None:
            cache.write_ref(revision, commit)
    else:
        assert options.dir is not None
        primary = (
            options.dir / want.primary
            if want.primary
            else (options.dir / want.folder if want.folder else options.dir)
        )
        finish = None  # type: ignore[assignment]
    if store_cache is not None and all(f.present for f in files):
        store_cache.write_ref(revision, commit)
    return Plan(
        files=files, primary=primary, finish=finish, description=f"{repo_name}@{commit[:8]}"
    )


def _plan_file(
    entry: HubEntry,
    commit: str,
    options: Options,
    expected: str | None,
    stores: tuple[CacheRepo | None, LocalDirRepo | None],
    base_url: str,
    api: HubApi,
) -> PlannedFile:
    """One file: present already, or a FileSpec with its digests (runs on a worker thread).

    ``expected`` is the user's sha256 when it applies to this file: a present file must have
    it, and a small git file's transfer checks it besides the git blob SHA-1 (an LFS file's
    Hub sha256 was compared with it already).
    """
    credential = api.credential
    cache, local = stores

    def on_error(response: httpx2.Response) -> Exception | None:
        """Hub answers (gated, missing, rate limited) get the Hub's own messages."""
        if origin_of(str(response.request.url)) != origin_of(api.endpoint):
            return None
        return api.error_for(response, revision=commit, path=entry.path)

    def matches(path: Path, blob: str | None) -> bool:
        if expected is not None:
            check_on_disk(entry.path, path, expected, blob)
        return True

    if cache is not None:
        place = cache.placement(commit, entry.path, entry.etag)

        def present() -> bool:
            return cache.present(place, entry.size) and matches(place.path, None)

        if not options.force and present():
            return PlannedFile(entry.path, place.path, size=entry.size)
        cache.prepare()
        after: Callable[[TransferResult], None] = lambda _r: cache.link(place)  # noqa: E731
    else:
        assert local is not None
        local.prepare()
        place = local.placement(entry.path)

        def present() -> bool:
            return local.present(entry.path, entry.etag, entry.size) and matches(
                place.path, entry.etag
            )

        if not options.force and present():
            return PlannedFile(entry.path, place.path, size=entry.size)

        def after(_r: TransferResult) -> None:
            local.write_metadata(entry.path, commit, entry.etag)

    spec = FileSpec(
        on_error=on_error,
        name=entry.path,
        url=base_url + quote(entry.path),
        target=place.target,
        key=f"hf-blob:{entry.etag}",
        size=entry.size,
        sha256=entry.sha256 or expected,
        git_sha1=None if entry.sha256 else entry.blob_id,
        credential=credential,
        lock_path=place.lock,
    )
    return PlannedFile(
        entry.path,
        place.path,
        size=entry.size,
        spec=spec,
        after=after,
        recheck=None if options.force else present,
    )


def _plan_from_disk(
    ref: ModelRef,
    options: Options,
    revision: str | None,
    cache: CacheRepo | None,
    local: LocalDirRepo | None,
    repo_name: str,
) -> Plan | None:
    """A plan with every file present, from the disk alone; None when something is missing."""
    if cache is not None:
        commit = cache.cached_commit(revision)
        if commit is None:
            return None
        root = cache.snapshot_dir(commit)
        paths = cache.snapshot_files(commit)
    else:
        assert local is not None and options.dir is not None
        root = options.dir
        paths = local.files_on_disk()
    if not paths:
        return None
    try:
        want = _choose(ref, options, paths, repo_name)
    except NotFoundError:
        return None
    if ref.path is not None and not ref.is_dir:
        # Every split part must be here: count them from the name, not from what is on disk.
        _q, _part, count = split_quant_name(ref.path.rsplit("/", 1)[-1])
        if count is not None and len(want.files) != count:
            return None
    if ref.quant is not None or (ref.path is None and want.primary is not None):
        _q, _part, count = split_quant_name(want.files[0].rsplit("/", 1)[-1])
        if count is not None and len(want.files) != count:
            return None
    files = []
    for p in want.files:
        full = root / p
        try:
            size = full.stat().st_size
        except OSError:
            return None
        files.append(PlannedFile(p, full, size=size))
    if options.sha256 is not None:
        target = digest_target(ref, want.files)
        meta = local.read_metadata(target) if local is not None else None
        check_on_disk(target, root / target, options.sha256, meta[1] if meta else None)
    primary = root / want.primary if want.primary else (root / want.folder if want.folder else root)
    return Plan(files=files, primary=primary, description=repo_name)
