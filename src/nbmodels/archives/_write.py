"""Writing members into a fresh private folder: the budget (count, size, free space, ratio),
the tree of claimed names (duplicates, members under files or links), files written exclusively
and fsynced, hard links, and symbolic links made last, once each is proven to resolve inside."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import shutil
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import IO

from .._progress import format_bytes
from ..errors import ArchiveError, CanceledError, InsufficientSpaceError
from ._names import CHUNK, DAMAGED, ExtractLimits, Kind, Member, damaged, refuse, shown

__all__ = ["Budget", "Opener", "Writer", "fsync_dir", "resolves_inside"]

Opener = Callable[[], IO[bytes]]
#: Link hops followed when resolving a path through the archive's own links (as the kernel).
_MAX_HOPS = 40


# -- the budget ---------------------------------------------------------------------------------


class Budget:
    """Counts members and bytes against the limits and the free space."""

    def __init__(self, limits: ExtractLimits, free: int, where: Path, archive: str) -> None:
        self.limits = limits
        self.free = free
        self.where = where
        self.archive = archive
        self.members = 0
        self.declared = 0
        self.written = 0

    def declare(self, m: Member) -> None:
        """Before a member's bytes are read: its count, declared size and (zip) ratio."""
        self.members += 1
        if self.members > self.limits.max_members:
            raise refuse(
                self.archive,
                f"it has more than {self.limits.max_members} members (the limit)",
                hint="If you trust it, raise ExtractLimits.max_members; nothing was unpacked.",
            )
        self.declared += m.size
        self._check_total(self.declared, m)
        if m.packed is not None:
            self._check_ratio(m, m.size, m.packed)

    def wrote(self, m: Member, n: int, so_far: int) -> None:
        """While writing: the bytes really produced. A member never yields more than its
        declared size (checked above, ratio included), so what was checked is what is
        written, whatever the rest of its headers claim."""
        self.written += n
        if so_far > m.size:
            raise refuse(
                self.archive,
                f"member {shown(m.raw)} holds more than the {m.size} bytes its header says",
                member=m.raw,
            )
        self._check_total(self.written, m)

    def _check_total(self, total: int, m: Member) -> None:
        limit = self.limits.max_total_bytes
        if total > limit:
            raise refuse(
                self.archive,
                f"with member {shown(m.raw)} it unpacks to more than {format_bytes(limit)} "
                "(the limit)",
                member=m.raw,
                hint="If you trust it, raise ExtractLimits.max_total_bytes; nothing was unpacked.",
            )
        if total + self.limits.space_margin > self.free:
            raise InsufficientSpaceError(
                f"Not enough free space to unpack {self.archive} in {self.where}: it needs "
                f"{format_bytes(total)} or more (+ {format_bytes(self.limits.space_margin)} "
                f"to spare), {format_bytes(self.free)} is free. Free some space, or unpack "
                "it elsewhere; nothing was unpacked.",
                needed=total + self.limits.space_margin,
                available=self.free,
                path=str(self.where),
            )

    def _check_ratio(self, m: Member, size: int, packed: int) -> None:
        if size <= self.limits.ratio_grace_bytes or size <= self.limits.max_ratio * max(packed, 1):
            return
        raise refuse(
            self.archive,
            f"member {shown(m.raw)} expands more than {self.limits.max_ratio:g} times "
            f"({format_bytes(packed)} to {format_bytes(size)} or more): a zip bomb",
            member=m.raw,
            hint="If you trust it, raise ExtractLimits.max_ratio; nothing was unpacked.",
        )


# -- writing ------------------------------------------------------------------------------------


class Writer:
    """Writes safe members into ``root`` (a fresh private folder). Links come last."""

    def __init__(
        self,
        root: Path,
        budget: Budget,
        limits: ExtractLimits,
        stop: threading.Event | None,
    ) -> None:
        self.root = root
        self.budget = budget
        self.limits = limits
        self.archive = budget.archive
        self.stop = stop
        self.kinds: dict[str, Kind] = {"": "dir"}
        self.links: list[Member] = []
        self.made_dirs: list[Path] = [root]
        self.files: list[Path] = []

    def check_stop(self) -> None:
        if self.stop is not None and self.stop.is_set():
            raise CanceledError(f"Unpacking {self.archive} was stopped; nothing was left behind.")

    def add(self, m: Member, opener: Opener) -> None:
        self.check_stop()
        if not self._claim(m):
            return
        parent, _, _ = m.name.rpartition("/")
        self._mkdirs(m.name if m.kind == "dir" else parent)
        path = self.root / m.name
        if m.kind == "file":
            self._write(m, path, opener)
        elif m.kind == "hardlink":
            self._hardlink(m, path)
        elif m.kind == "symlink":  # its target was checked when it was read
            self.links.append(m)

    def _claim(self, m: Member) -> bool:
        """Record ``m`` in the tree; False for a folder listed again (merged)."""
        if not m.name and m.kind != "dir":
            raise refuse(self.archive, f"member {shown(m.raw)} has no usable name", member=m.raw)
        parts = m.name.split("/") if m.name else []
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            kind = self.kinds.setdefault(prefix, "dir")
            if kind != "dir":
                raise refuse(
                    self.archive,
                    f"member {shown(m.raw)} lies under {shown(prefix)}, which is a {kind}",
                    member=m.raw,
                )
        old = self.kinds.get(m.name)
        if old is not None:
            if old == "dir" and m.kind == "dir":
                return False
            raise refuse(
                self.archive,
                f"member {shown(m.raw)} appears more than once (as a {old} and a {m.kind})",
                member=m.raw,
            )
        self.kinds[m.name] = m.kind
        return True

    def _mkdirs(self, name: str) -> None:
        if not name:
            return
        path = self.root
        for part in name.split("/"):
            path = path / part
            try:
                path.mkdir(mode=0o755)
            except FileExistsError:
                continue  # made for an earlier member (the claims say it is a folder of ours)
            self.made_dirs.append(path)

    def _write(self, m: Member, path: Path, opener: Opener) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags, 0o755 if m.executable else 0o644)
        with os.fdopen(fd, "wb") as out:
            done = 0
            try:
                src = opener()
            except ArchiveError:
                raise
            except DAMAGED as exc:
                raise damaged(self.archive, exc) from None
            with src:
                while chunk := self._read(src):
                    done += len(chunk)
                    self.budget.wrote(m, len(chunk), done)
                    out.write(chunk)
            if done != m.size:
                raise refuse(
                    self.archive,
                    f"member {shown(m.raw)} ended after {done} of the {m.size} bytes its header "
                    "promises (the archive is damaged)",
                    member=m.raw,
                )
        self.files.append(path)
        if m.mtime is not None:
            # An odd timestamp is not worth failing for.
            with contextlib.suppress(OverflowError, ValueError, OSError):
                os.utime(path, (m.mtime, m.mtime), follow_symlinks=False)

    def _read(self, src: IO[bytes]) -> bytes:
        self.check_stop()
        try:
            return src.read(CHUNK)
        except ArchiveError:
            raise
        except DAMAGED as exc:
            raise damaged(self.archive, exc) from None

    def _hardlink(self, m: Member, path: Path) -> None:
        if self.kinds.get(m.link) != "file":
            raise refuse(
                self.archive,
                f"member {shown(m.raw)} is a hard link to {shown(m.link)}, which is not a "
                "regular file unpacked before it",
                member=m.raw,
            )
        target = self.root / m.link
        try:
            os.link(target, path, follow_symlinks=False)
        except OSError:  # a file system without hard links: a copy, counted like any bytes
            size = target.stat().st_size
            self.budget.wrote(replace(m, size=size), size, size)
            shutil.copyfile(target, path, follow_symlinks=False)
            self.files.append(path)

    def finish(self) -> None:
        """Make the links (each checked on the archive's resolved structure first, then on
        disk) and flush every folder."""
        targets = {m.name: m.link for m in self.links}
        for m in self.links:
            if not resolves_inside(m.name, targets):
                raise refuse(
                    self.archive,
                    f"link {shown(m.raw)} resolves outside the folder (or through a loop)",
                    member=m.raw,
                )
        for m in self.links:
            self.check_stop()
            (self.root / m.name).symlink_to(m.link)
        root = self.root.resolve()
        for m in self.links:
            if not _on_disk_inside(self.root / m.name, root):
                raise refuse(
                    self.archive, f"link {shown(m.raw)} resolves outside the folder", member=m.raw
                )
        self.check_stop()
        _make_durable(self.root, self.files, self.made_dirs)


def resolves_inside(name: str, links: dict[str, str]) -> bool:
    """Does ``name`` resolve inside the folder, following the archive's own links? (Resolved
    from what the archive says, so no path-length limit of the file system can cut it short.)"""
    todo = deque(name.split("/"))
    done: list[str] = []
    hops = 0
    while todo:
        part = todo.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            if not done:
                return False
            done.pop()
            continue
        done.append(part)
        target = links.get("/".join(done))
        if target is not None:
            hops += 1
            if hops > _MAX_HOPS:
                return False
            done.pop()
            todo.extendleft(reversed(target.split("/")))
    return True


def _on_disk_inside(path: Path, root: Path) -> bool:
    """The same question asked of the file system, as a second opinion."""
    try:
        return path.resolve().is_relative_to(root)
    except (OSError, RuntimeError):  # a loop, a path too long: not provably inside
        return False


def _make_durable(root: Path, files: list[Path], dirs: list[Path]) -> None:
    """Everything written under ``root`` on disk before the folder is published: one
    ``syncfs(2)`` of its file system where there is one (a journal commit per file made many
    small files several times slower to unpack), else an fsync of every file and folder."""
    if _syncfs(root):
        return
    for path in files:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for d in reversed(dirs):
        fsync_dir(d)


@functools.cache
def _libc_syncfs() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def _syncfs(path: Path) -> bool:
    fn = _libc_syncfs()
    if fn is None:
        return False
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        return fn(fd) == 0
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
