"""What a source hands the engine: a :class:`Plan` of files."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx2

from .._config import Settings
from ..transfer import FileSpec, TransferResult

__all__ = ["Plan", "PlannedFile", "SourceContext"]


@dataclass(slots=True)
class PlannedFile:
    """One file of a job.

    ``spec`` is None when the file is already on disk and verified. ``after`` runs (on a worker
    thread) once the transfer has published the bytes at ``spec.target`` — e.g. to link a
    snapshot path to a cache blob, or to write a completion record.
    """

    name: str
    path: Path
    size: int | None = None
    spec: FileSpec | None = None
    after: Callable[[TransferResult], None] | None = None
    #: Asked (on a worker thread) after taking the file's lock: did another process finish it?
    recheck: Callable[[], bool] | None = None

    @property
    def present(self) -> bool:
        return self.spec is None


@dataclass(slots=True)
class Plan:
    files: list[PlannedFile]
    primary: Path
    #: Runs once every file is in place (e.g. write refs/<branch> of a cache repo).
    finish: Callable[[], None] | None = None
    #: Human description for messages ("owner/repo @ main").
    description: str = ""
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SourceContext:
    client: httpx2.AsyncClient
    settings: Settings
