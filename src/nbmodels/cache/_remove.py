"""Safe removal from the Hugging Face cache (``nbmodels rm``).

:func:`remove` deletes the snapshot entries a reference names (never following a link: a link
is unlinked, a folder link too), then the blobs no remaining entry uses (a blob shared with
another revision stays), then snapshot folders left empty with what belongs to their commits
(the refs that pointed at them, ``.no_exist/<commit>`` and huggingface_hub 2.x's tree listing
``trees/<commit>.json``), the folders archives among the removed files were unpacked into
(``extracted/<commit>/...``, by ``extract=True``), and the repository folder once nothing of it
is left, so ``scan_cache_dir()`` / ``hf cache ls`` find a consistent cache. A blob whose
huggingface_hub lock is held (a download in progress) is left in place.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

import filelock

from .._config import hf_cache_dir
from ._scan import CachedFile, CachedRepo, resolve_cached

__all__ = ["Removal", "remove"]


@dataclass(frozen=True, slots=True)
class Removal:
    """What :func:`remove` did (or, with ``dry_run``, would do)."""

    repo: str
    files: tuple[CachedFile, ...]
    blobs_removed: tuple[str, ...]
    blobs_kept: tuple[str, ...]
    blobs_busy: tuple[str, ...]
    snapshots_removed: tuple[str, ...]
    refs_removed: tuple[str, ...]
    freed_bytes: int
    dry_run: bool
    #: Folders archives among the files were unpacked into (``extract=True``), removed too.
    unpacked_removed: tuple[Path, ...] = ()


def _prune_empty(start: Path, stop: Path) -> None:
    """Remove empty folders from ``start`` up to (not including) ``stop``."""
    current = start
    while current != stop and current.is_relative_to(stop):
        try:
            current.rmdir()
        except OSError:
            return
        current = current.parent


def _remove_dir(path: Path) -> None:
    """A folder and what is in it, never following a link (a link itself is unlinked)."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def _unlink_blob(repo: CachedRepo, blob: Path, cache_dir: Path) -> bool:
    """Delete a blob unless its huggingface_hub lock is held; False when busy."""
    lock_path = cache_dir / ".locks" / repo.root.name / f"{blob.name}.lock"
    if not lock_path.parent.is_dir():
        blob.unlink(missing_ok=True)
        return True
    lock = filelock.FileLock(lock_path, thread_local=False)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return False
    try:
        blob.unlink(missing_ok=True)
    finally:
        lock.release()  # the lock file stays, as huggingface_hub leaves it: others may wait on it
    return True


def _apply(
    repo: CachedRepo,
    base: Path,
    targets: list[CachedFile],
    doomed: list[Path],
    snapshots: list[str],
    refs: list[str],
) -> list[Path]:
    """Delete entries, then unused blobs, then what belongs to removed snapshots; returns the
    blobs left in place because a download holds their lock."""
    for t in targets:
        t.path.unlink(missing_ok=True)
        _prune_empty(t.path.parent, repo.root / "snapshots" / t.commit)
        if t.unpacked is not None:
            _remove_dir(t.unpacked)
            _prune_empty(t.unpacked.parent, repo.root)
    busy = [blob for blob in doomed if not _unlink_blob(repo, blob, base)]
    for commit in snapshots:
        _remove_dir(repo.root / "snapshots" / commit)
        _remove_dir(repo.root / ".no_exist" / commit)
        _remove_dir(repo.root / "trees" / f"{commit}.json")  # huggingface_hub 2.x listing
    for name in refs:
        ref_file = repo.root / "refs" / name
        ref_file.unlink(missing_ok=True)
        _prune_empty(ref_file.parent, repo.root / "refs")
    return busy


def _hold_all(locks: Path) -> list[filelock.FileLock] | None:
    """Every huggingface_hub lock of a repo, held; None (and none held) when one is busy."""
    held: list[filelock.FileLock] = []
    try:
        paths = sorted(locks.glob("*.lock")) if locks.is_dir() else []
    except OSError:
        paths = []
    for path in paths:
        lock = filelock.FileLock(path, thread_local=False)
        try:
            lock.acquire(timeout=0)
        except (filelock.Timeout, OSError):
            for other in held:
                other.release()
            return None
        held.append(lock)
    return held


def _remove_repo_folder(repo: CachedRepo, base: Path) -> None:
    """Nothing of the repository is left: remove its folder as ``hf cache rm`` does (refs,
    tree listings, ``.no_exist``, blobs no snapshot used, stale partial downloads) unless a
    download holds one of its locks; then only the folders left empty go."""
    locks = base / ".locks" / repo.root.name
    held = _hold_all(locks)
    if held is None:
        for sub in ("snapshots", "refs", "blobs", ".no_exist", "trees", "extracted"):
            with contextlib.suppress(OSError):
                (repo.root / sub).rmdir()
        with contextlib.suppress(OSError):
            repo.root.rmdir()
        return
    try:
        if repo.root.is_dir() and not repo.root.is_symlink():
            shutil.rmtree(repo.root, ignore_errors=True)  # never follows a link
    finally:
        for lock in held:
            lock.release()  # the lock files stay, as huggingface_hub leaves them
    with contextlib.suppress(OSError):
        locks.rmdir()


def remove(
    ref_text: str,
    *,
    revision: str | None = None,
    dry_run: bool = False,
    cache_dir: Path | None = None,
) -> Removal:
    """Remove what ``ref_text`` names from the Hugging Face cache (see the module docstring).

    A bare ``owner/repo`` means every cached revision of the repository; a revision
    (``#rev`` or ``revision``) limits removal to that snapshot; a quant, file or folder to
    those files. Raises NotFoundError when nothing matches.
    """
    base = cache_dir or hf_cache_dir()
    repo, _ref, targets = resolve_cached(ref_text, revision, base)
    gone = {t.path for t in targets}
    remaining = [f for f in repo.files if f.path not in gone]
    used = {f.blob for f in remaining if f.blob is not None}
    candidates = {t.blob for t in targets if t.blob is not None}
    doomed = sorted(candidates - used)
    kept = sorted(candidates & used)
    left = {f.commit for f in remaining}
    snapshots = sorted({t.commit for t in targets} - left)
    refs = sorted(name for name, commit in repo.refs.items() if commit in snapshots)
    busy: list[Path] = []
    if not dry_run:
        busy = _apply(repo, base, targets, doomed, snapshots, refs)
        if not left:
            _remove_repo_folder(repo, base)
    sizes = {f.blob: f.size or 0 for f in targets if f.blob is not None}
    freed = sum(sizes[b] for b in doomed if b not in busy)
    freed += sum(t.size or 0 for t in targets if t.blob is None and not t.outside)
    freed += sum(t.unpacked_size or 0 for t in targets)
    return Removal(
        repo=repo.repo,
        files=tuple(targets),
        blobs_removed=tuple(b.name for b in doomed if b not in busy),
        blobs_kept=tuple(b.name for b in kept),
        blobs_busy=tuple(b.name for b in busy),
        snapshots_removed=tuple(snapshots),
        refs_removed=tuple(refs),
        freed_bytes=freed,
        dry_run=dry_run,
        unpacked_removed=tuple(t.unpacked for t in targets if t.unpacked is not None),
    )
