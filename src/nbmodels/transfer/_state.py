"""The partial file and its state file, beside the target (docs/storage.md).

``<dir>/.<name>.nbmodels.part`` holds the bytes; ``<dir>/.<name>.nbmodels.json`` records what
they are (the remote validator and size) and which ranges are on disk. The state is written
only after the data it describes has been made durable, and is replaced atomically, so a
process killed at any moment leaves a state that never claims bytes that are not there.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._paths import hidden_sibling, write_atomic
from ._ranges import RangeSet

__all__ = ["PartialState", "partial_paths"]

STATE_VERSION = 1


def partial_paths(target: Path) -> tuple[Path, Path]:
    """(partial data path, state path) for a final target path."""
    return (
        target.with_name(hidden_sibling(target.name, ".nbmodels.part")),
        target.with_name(hidden_sibling(target.name, ".nbmodels.json")),
    )


@dataclass
class PartialState:
    """What the partial file holds. ``key`` identifies the remote object (never a signed URL)."""

    key: str
    size: int | None = None
    validator: str | None = None
    done: RangeSet = field(default_factory=RangeSet)

    def matches(self, key: str, size: int | None, validator: str | None) -> bool:
        """Is this partial data provably the same object we are about to fetch?"""
        if self.key != key or self.validator is None:
            return False
        if size is not None and self.size is not None and size != self.size:
            return False
        return validator is None or validator == self.validator

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "key": self.key,
            "size": self.size,
            "validator": self.validator,
            "done": self.done.to_json(),
            "updated_at": time.time(),
        }

    @classmethod
    def load(cls, path: Path, data_path: Path) -> PartialState | None:
        """Read a state file; None when absent, unreadable or inconsistent with the data file."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                return None
            if raw.get("version") != STATE_VERSION or not isinstance(raw.get("key"), str):
                return None
            size = raw.get("size")
            validator = raw.get("validator")
            if size is not None and (type(size) is not int or size < 0):
                return None
            if validator is not None and not isinstance(validator, str):
                return None
            pairs = raw.get("done", [])
            if not isinstance(pairs, list) or not all(
                isinstance(p, list) and len(p) == 2 and all(type(x) is int for x in p)
                for p in pairs
            ):
                return None
            done = RangeSet((s, e) for s, e in pairs)
            on_disk = data_path.lstat().st_size if data_path.exists() else 0
        except (OSError, ValueError, TypeError, RecursionError):
            return None
        # Never trust a claim beyond what the data file holds (or beyond the object's size).
        done.truncate(on_disk if size is None else min(on_disk, size))
        return cls(key=raw["key"], size=size, validator=validator, done=done)

    def save(self, path: Path) -> None:
        """Atomically replace the state file (the data must already be durable)."""
        write_atomic(path, json.dumps(self.to_json(), separators=(",", ":")).encode())

    @staticmethod
    def discard(target: Path) -> None:
        """Remove the partial data and state of a target (cancel, or a changed remote file)."""
        for p in partial_paths(target):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
