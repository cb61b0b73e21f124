"""Hugging Face references -> plans (docs/public-api.md, References; docs/storage.md).

Resolution order for a reference (each of its :attr:`~nbmodels.refs.ModelRef.readings`: a
text like ``hf:gpt2/config.json`` may mean the repository ``gpt2/config.json`` or the file
``config.json`` of ``gpt2``):

1. Offline (``offline=True`` or ``HF_HUB_OFFLINE``): only the disk is consulted; zero requests.
2. Pinned (a quant, file or folder) and fully on disk for the cached ``refs/<revision>`` commit:
   ``already_downloaded`` with zero requests (unless ``force``). The cache decides between
   readings: the first whose repository folder it holds (owner/repo first, as online).
3. Otherwise ask the Hub, one request: the repository at the revision (its commit, whether it
   is gated, its file list). A reading whose repository the Hub does not know passes to the
   next one (one more request). From the file list, select the files (quant rules, split
   parts, include/exclude): a missing file or quant fails here with what does exist, and a
   gated repository without a token fails here with where to accept its terms, each after
   that one request. Then the digests of the selected files (paths-info, or the tree listing
   for many files or when the Hub gave no usable file list), so every LFS file is verified by
   sha256 and every small git file by its git blob SHA-1.
   When the Hub cannot be reached and the reference is not pinned, the cached refs are used.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import quote

import httpx2

from .._config import env_flag
from .._options import Options
from ..errors import NetworkError, NotFoundError, OfflineError, Option
from ..hub._api import HubApi, HubEntry, RepoInfo, find_repo, gated_error
from ..hub._select import DEFAULT_QUANTS, Want, choose, select_quant
from ..hub._storage import CacheRepo, LocalDirRepo
from ..refs import REPO_URL_PREFIX, ModelRef, split_quant_name, split_siblings
from ..transfer import Credential, FileSpec, TransferResult, origin_of
from ._base import Plan, PlannedFile, SourceContext
from ._digest import check_hub_sha256, check_on_disk, digest_target

__all__ = ["DEFAULT_QUANTS", "hf_endpoint", "plan_hf", "select_quant", "split_siblings"]

_TYPE_PREFIX = REPO_URL_PREFIX
#: Up to this many selected files, their digests come from paths-info; more: the tree listing.
_PATHS_INFO_MAX = 100

_Stores = tuple[CacheRepo | None, LocalDirRepo | None]


def hf_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _token(options: Options) -> str | None:
    if options.token is False:
        return None
    if isinstance(options.token, str):
        return options.token
    from huggingface_hub import get_token  # token lookup: HF_TOKEN, the login file, Colab

    return get_token()


def _stores(ref: ModelRef, options: Options) -> _Stores:
    assert ref.repo_id is not None
    if options.dir is not None:
        return None, LocalDirRepo(options.dir)
    return CacheRepo(ref.repo_type, ref.repo_id), None


# -- planning -------------------------------------------------------------------------------------


async def plan_hf(ref: ModelRef, options: Options, ctx: SourceContext) -> Plan:
    assert ref.repo_id is not None
    revision = options.revision or ref.revision
    offline = options.offline or env_flag("HF_HUB_OFFLINE")
    readings = ref.readings
    on_disk = _disk_readings(readings, options)
    if offline or not options.force:
        local = await _from_disk([r for r in on_disk if offline or r.pinned], options, revision)
        if local is not None:
            return local
    if offline:
        cache, _ = _stores(ref, options)
        where = cache.root if cache is not None else options.dir
        raise OfflineError(
            f"Offline, and {ref} is not fully on disk (looked in {where}).",
            hint=(
                "Download it once with the network on (without ",
                Option("offline", switch=True),
                ", and HF_HUB_OFFLINE unset).",
            ),
        )
    endpoint = hf_endpoint()
    token = _token(options)
    credential = Credential(token, origin_of(endpoint)) if token else None

    def make_api(reading: ModelRef) -> HubApi:
        assert reading.repo_id is not None
        return HubApi(
            ctx.client,
            ctx.settings,
            endpoint=endpoint,
            repo_type=reading.repo_type,
            repo_id=reading.repo_id,
            credential=credential,
        )

    try:
        reading, api, info = await find_repo(readings, revision, make_api)
    except NetworkError:
        # The Hub is unreachable: an unpinned reference may still use the cached refs.
        local = await _from_disk([r for r in on_disk if not r.pinned], options, revision)
        if local is None:
            raise
        return local
    return await _plan_online(reading, options, revision, api, info)


def _disk_readings(readings: Sequence[ModelRef], options: Options) -> list[ModelRef]:
    """The readings the disk may answer for. In the cache, the first one whose repository
    folder exists (owner/repo first, as online); in a ``dir=`` folder, which records no
    repository, every one: files and folders before whole repositories."""
    if options.dir is not None:
        return sorted(readings, key=lambda r: not r.pinned)
    for reading in readings:
        cache, _ = _stores(reading, options)
        if cache is not None and cache.root.is_dir():
            return [reading]
    return []


async def _from_disk(
    readings: Sequence[ModelRef], options: Options, revision: str | None
) -> Plan | None:
    """The first of ``readings`` fully on disk."""
    for reading in readings:
        plan = await asyncio.to_thread(_plan_from_disk, reading, options, revision)
        if plan is not None:
            return plan
    return None


async def _plan_online(
    ref: ModelRef, options: Options, revision: str | None, api: HubApi, info: RepoInfo
) -> Plan:
    commit = info.commit
    repo_name = ref.repo_url_path
    stores = _stores(ref, options)
    want, by_path = await _listing(ref, options, api, info, stores)
    checked = None
    if options.sha256 is not None:
        checked = digest_target(ref, want.files)
        check_hub_sha256(checked, by_path[checked].sha256, options.sha256)
    base_url = f"{api.endpoint}/{repo_name}/resolve/{commit}/"
    files: list[PlannedFile] = []
    for path in want.files:
        expected = options.sha256 if path == checked else None
        files.append(
            await asyncio.to_thread(
                _plan_file, by_path[path], commit, options, expected, stores, base_url, api
            )
        )
    store_cache, _ = stores
    finish: Callable[[], None] | None = None
    if store_cache is not None:
        root = store_cache.snapshot_dir(commit)
        cache = store_cache

        def finish() -> None:
            cache.write_ref(revision, commit)

        if all(f.present for f in files):
            store_cache.write_ref(revision, commit)
    else:
        assert options.dir is not None
        root = options.dir
    primary = root / (want.primary or want.folder or "")
    return Plan(
        files=files, primary=primary, finish=finish, description=f"{repo_name}@{commit[:8]}"
    )


async def _listing(
    ref: ModelRef, options: Options, api: HubApi, info: RepoInfo, stores: _Stores
) -> tuple[Want, dict[str, HubEntry]]:
    """Which files ``ref`` means, with their sizes and digests.

    With the Hub's file list (``info.files``) the choice is made before another request, so a
    missing file or quant and a gated repository fail after the one request ``info`` cost;
    then only the chosen files' entries are asked for. Without it, the listing comes first.
    """
    repo_name = ref.repo_url_path
    if info.files is not None:
        want = choose(ref, options, list(info.files), repo_name)
        _refuse_gated(ref, api, info, want, stores)
        if len(want.files) <= _PATHS_INFO_MAX:
            entries = await api.paths_info(info.commit, want.files)
        else:
            entries = await api.tree(info.commit, _folder(ref), recursive=True)
        by_path = {e.path: e for e in entries}
        for path in want.files:
            if path not in by_path:
                raise NotFoundError(
                    f"{path} does not exist in {repo_name} at {info.commit[:12]}.",
                    hint="The Hub listed it, then had no entry for it: try again in a while.",
                )
        return want, by_path
    if ref.path is not None and not ref.is_dir and split_quant_name(ref.path)[1] is None:
        entries = await api.paths_info(info.commit, [ref.path])
    else:
        entries = await api.tree(info.commit, _folder(ref), recursive=True)
    by_path = {e.path: e for e in entries}
    want = choose(ref, options, sorted(by_path), repo_name)
    _refuse_gated(ref, api, info, want, stores)
    return want, by_path


def _folder(ref: ModelRef) -> str | None:
    """The folder whose tree listing holds what ``ref`` means (None: the whole repo)."""
    if ref.path is None:
        return None
    if ref.is_dir:
        return ref.path.rstrip("/")
    return ref.path.rsplit("/", 1)[0] if "/" in ref.path else None


def _refuse_gated(ref: ModelRef, api: HubApi, info: RepoInfo, want: Want, stores: _Stores) -> None:
    """A gated repository and no token: nothing can be downloaded, so say where to accept
    its terms now, unless every file is already in place for this commit."""
    if not info.gated or api.token_sent:
        return
    cache, local = stores
    for path in want.files:
        if cache is not None:
            placed = (cache.snapshot_dir(info.commit) / path).is_file()
        else:
            assert local is not None
            meta = local.read_metadata(path)
            placed = meta is not None and meta[0] == info.commit
        if not placed:
            assert ref.repo_id is not None
            raise gated_error(api.endpoint, ref.repo_type, ref.repo_id, token_sent=False)


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
        place = local.placement(entry.path)

        def present() -> bool:
            return local.present(entry.path, entry.etag, entry.size) and matches(
                place.path, entry.etag
            )

        if not options.force and present():
            return PlannedFile(entry.path, place.path, size=entry.size)
        local.prepare()

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


def _plan_from_disk(ref: ModelRef, options: Options, revision: str | None) -> Plan | None:
    """A plan with every file present, from the disk alone; None when something is missing."""
    cache, local = _stores(ref, options)
    repo_name = ref.repo_url_path
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
        want = choose(ref, options, paths, repo_name)
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
