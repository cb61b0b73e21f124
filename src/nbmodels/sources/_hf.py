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

Step 3 is two halves with data between them: :func:`list_hf` asks the Hub and gives a
:class:`HubListing` (the reading the Hub knows, its commit, the chosen files with their sizes and
digests: plain data, no client, no token), and :func:`plan_listing` turns a listing into this
machine's plan (its own cache or ``dir=``, its own token) without another request. So one
process can resolve a reference once and hand the listing to others (``nbmodels.cluster``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from .._config import env_flag
from .._options import Options
from ..errors import NetworkError, NotFoundError, OfflineError, Option
from ..hub import (
    HubApi,
    HubEntry,
    Placement,
    ResolvedRepo,
    Storage,
    Want,
    choose,
    gated_error,
    hub_token,
    open_session,
    storage_for,
)
from ..refs import ModelRef, split_complete, split_quant_name
from ..transfer import Credential, FileSpec, origin_of
from ._base import Plan, PlannedFile, SourceContext
from ._digest import check_hub_sha256, check_on_disk, digest_target

__all__ = ["HubListing", "list_hf", "plan_hf", "plan_listing"]

#: Up to this many selected files, their digests come from paths-info; more: the tree listing.
_PATHS_INFO_MAX = 100


# -- planning -------------------------------------------------------------------------------------


async def plan_hf(ref: ModelRef, options: Options, ctx: SourceContext) -> Plan:
    assert ref.repo_id is not None
    revision = options.revision or ref.revision
    offline = options.offline or env_flag("HF_HUB_OFFLINE")
    on_disk = _disk_readings(ref.readings, options)
    if offline or not options.force:
        local = await _from_disk([r for r in on_disk if offline or r.pinned], options, revision)
        if local is not None:
            return local
    if offline:
        where = storage_for(ref, options).root
        raise OfflineError(
            f"Offline, and {ref} is not fully on disk (looked in {where}).",
            hint=(
                "Download it once with the network on (without ",
                Option("offline", switch=True),
                ", and HF_HUB_OFFLINE unset).",
            ),
        )
    async with open_session(options, ctx.settings, client=ctx.client) as session:
        try:
            repo = await session.find(ref, revision)
        except NetworkError:
            # The Hub is unreachable: an unpinned reference may still use the cached refs.
            local = await _from_disk([r for r in on_disk if not r.pinned], options, revision)
            if local is None:
                raise
            return local
        return await _plan_online(repo, options, revision)


def _disk_readings(readings: Sequence[ModelRef], options: Options) -> list[ModelRef]:
    """The readings the disk may answer for. In the cache, the first one whose repository
    folder exists (owner/repo first, as online); in a ``dir=`` folder, which records no
    repository, every one: files and folders before whole repositories."""
    if options.dir is not None:
        return sorted(readings, key=lambda r: not r.pinned)
    for reading in readings:
        if storage_for(reading, options).root.is_dir():
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


@dataclass(frozen=True, slots=True)
class HubListing:
    """What a Hub reference means at one commit, as the Hub said it: plain data (no client,
    no token), so it can travel to another process or machine."""

    #: The reading of the reference the Hub knows.
    ref: ModelRef
    endpoint: str
    #: The revision asked for (None: the default branch); ``refs/<revision>`` records ``commit``.
    revision: str | None
    commit: str
    #: The chosen files, each with its size and digests, in the plan's order.
    files: tuple[HubEntry, ...]
    #: The primary path, relative to the commit's folder ("": the folder itself).
    primary: str
    #: The file the user's ``sha256`` is for (None: no ``sha256`` given).
    checked: str | None = None


async def list_hf(ref: ModelRef, options: Options, ctx: SourceContext) -> HubListing:
    """Ask the Hub what ``ref`` means (never the disk): its commit, the chosen files and their
    digests. The errors are :func:`plan_hf`'s (a missing repository, revision, file or quant;
    a gated repository without a token; a digest that differs from the user's ``sha256``)."""
    assert ref.repo_id is not None
    revision = options.revision or ref.revision
    async with open_session(options, ctx.settings, client=ctx.client) as session:
        return await _list_repo(await session.find(ref, revision), options, revision)


async def plan_listing(listing: HubListing, options: Options, ctx: SourceContext) -> Plan:
    """This machine's plan for ``listing``: its own cache (or ``dir=``) and token lookup, the
    files already there counted as present; no request to the Hub."""
    token = hub_token(options)
    credential = Credential(token, origin_of(listing.endpoint)) if token else None
    api = HubApi(
        ctx.client,
        ctx.settings,
        endpoint=listing.endpoint,
        repo_type=listing.ref.repo_type,
        repo_id=listing.ref.repo_id or "",
        credential=credential,
    )
    return await _plan_listed(listing, api, storage_for(listing.ref, options), options)


async def _plan_online(repo: ResolvedRepo, options: Options, revision: str | None) -> Plan:
    listing = await _list_repo(repo, options, revision)
    return await _plan_listed(listing, repo.api, repo.storage, options)


async def _list_repo(repo: ResolvedRepo, options: Options, revision: str | None) -> HubListing:
    want, by_path = await _listing(repo, options)
    checked = None
    if options.sha256 is not None:
        checked = digest_target(repo.ref, want.files)
        check_hub_sha256(checked, by_path[checked].sha256, options.sha256)
    return HubListing(
        ref=repo.ref,
        endpoint=repo.api.endpoint,
        revision=revision,
        commit=repo.commit,
        files=tuple(by_path[path] for path in want.files),
        primary=want.primary or want.folder or "",
        checked=checked,
    )


async def _plan_listed(
    listing: HubListing, api: HubApi, storage: Storage, options: Options
) -> Plan:
    commit, revision = listing.commit, listing.revision
    files: list[PlannedFile] = []
    for entry in listing.files:
        expected = options.sha256 if entry.path == listing.checked else None
        files.append(
            await asyncio.to_thread(_plan_file, api, storage, commit, entry, options, expected)
        )
    if all(f.present for f in files):
        storage.remember(revision, commit)

    def finish() -> None:
        storage.remember(revision, commit)

    return Plan(
        files=files,
        primary=storage.files_at(commit) / listing.primary,
        finish=finish,
        description=f"{listing.ref.repo_url_path}@{commit[:8]}",
    )


async def _listing(repo: ResolvedRepo, options: Options) -> tuple[Want, dict[str, HubEntry]]:
    """Which files ``repo.ref`` means, with their sizes and digests.

    With the Hub's file list (``info.files``) the choice is made before another request, so a
    missing file or quant and a gated repository fail after the one request ``info`` cost;
    then only the chosen files' entries are asked for. Without it, the listing comes first.
    """
    ref, api, info = repo.ref, repo.api, repo.info
    if info.files is not None:
        want = choose(ref, options, list(info.files), ref.repo_url_path)
        _refuse_gated(repo, want)
        if len(want.files) <= _PATHS_INFO_MAX:
            entries = await api.paths_info(info.commit, want.files)
        else:
            entries = await api.tree(info.commit, _folder(ref), recursive=True)
        by_path = {e.path: e for e in entries}
        for path in want.files:
            if path not in by_path:
                raise NotFoundError(
                    f"{path} does not exist in {ref.repo_url_path} at {info.commit[:12]}.",
                    hint="The Hub listed it, then had no entry for it: try again in a while.",
                )
        return want, by_path
    if ref.path is not None and not ref.is_dir and split_quant_name(ref.path)[1] is None:
        entries = await api.paths_info(info.commit, [ref.path])
    else:
        entries = await api.tree(info.commit, _folder(ref), recursive=True)
    by_path = {e.path: e for e in entries}
    want = choose(ref, options, sorted(by_path), ref.repo_url_path)
    _refuse_gated(repo, want)
    return want, by_path


def _folder(ref: ModelRef) -> str | None:
    """The folder whose tree listing holds what ``ref`` means (None: the whole repo)."""
    if ref.path is None:
        return None
    if ref.is_dir:
        return ref.path.rstrip("/")
    return ref.path.rsplit("/", 1)[0] if "/" in ref.path else None


def _refuse_gated(repo: ResolvedRepo, want: Want) -> None:
    """A gated repository and no token: nothing can be downloaded, so say where to accept
    its terms now, unless every file is already in place for this commit."""
    if not repo.info.gated or repo.api.token_sent:
        return
    if not all(repo.storage.holds(repo.commit, path) for path in want.files):
        api = repo.api
        raise gated_error(api.endpoint, api.repo_type, api.repo_id, token_sent=False)


def _plan_file(
    api: HubApi,
    storage: Storage,
    commit: str,
    entry: HubEntry,
    options: Options,
    expected: str | None,
) -> PlannedFile:
    """One file: present already, or a FileSpec with its digests (runs on a worker thread).

    ``expected`` is the user's sha256 when it applies to this file: a present file must have
    it, and a small git file's transfer checks it besides the git blob SHA-1 (an LFS file's
    Hub sha256 was compared with it already).
    """
    place = storage.placement(commit, entry.path, entry.etag)

    def present() -> bool:
        if not storage.present(place, entry.size):
            return False
        if expected is not None:
            check_on_disk(entry.path, place.path, expected, storage.known_blob(place))
        return True

    if not options.force and present():
        return PlannedFile(entry.path, place.path, size=entry.size)
    storage.prepare()
    return PlannedFile(
        entry.path,
        place.path,
        size=entry.size,
        spec=_file_spec(api, commit, entry, place, expected),
        after=lambda _result: storage.record(place),
        recheck=None if options.force else present,
    )


def _file_spec(
    api: HubApi, commit: str, entry: HubEntry, place: Placement, expected: str | None
) -> FileSpec:
    """The transfer of one Hub file into ``place``: verified by its LFS sha256 (or the user's
    for a small git file) and its git blob SHA-1; the token only for the Hub's own origin."""
    return FileSpec(
        on_error=api.file_errors(commit, entry.path),
        name=entry.path,
        url=api.file_url(commit, entry.path),
        target=place.target,
        key=f"hf-blob:{entry.etag}",
        size=entry.size,
        sha256=entry.sha256 or expected,
        git_sha1=None if entry.sha256 else entry.blob_id,
        credential=api.credential,
        lock_path=place.lock,
    )


def _plan_from_disk(ref: ModelRef, options: Options, revision: str | None) -> Plan | None:
    """A plan with every file present, from the disk alone; None when something is missing."""
    storage = storage_for(ref, options)
    disk = storage.on_disk(revision)
    if disk is None or not disk.files:
        return None
    try:
        want = choose(ref, options, disk.files, ref.repo_url_path)
    except NotFoundError:
        return None
    if not _all_parts(ref, want):
        return None
    files = []
    for p in want.files:
        full = disk.root / p
        try:
            size = full.stat().st_size
        except OSError:
            return None
        files.append(PlannedFile(p, full, size=size))
    if options.sha256 is not None:
        target = digest_target(ref, want.files)
        meta = storage.recorded(target)
        check_on_disk(target, disk.root / target, options.sha256, meta[1] if meta else None)
    primary = disk.root / (want.primary or want.folder or "")
    return Plan(files=files, primary=primary, description=ref.repo_url_path)


def _all_parts(ref: ModelRef, want: Want) -> bool:
    """Every part of a split GGUF the reference means is on disk, counted from the names (not
    from what is on disk)."""
    if ref.path is not None and not ref.is_dir and not split_complete(want.files, ref.path):
        return False
    if ref.quant is not None or (ref.path is None and want.primary is not None):
        return split_complete(want.files, want.files[0])
    return True
