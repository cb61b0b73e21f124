"""The job registry: one SQLite file (``$NBMODELS_HOME/jobs.sqlite3``, WAL) shared by every
process of the user.

Each process holds a *lease*: an exclusive ``flock`` on ``$NBMODELS_HOME/run/<owner>.lock`` for
its lifetime. The kernel drops it when the process dies, however it dies, so a row whose owner's
lease can be taken belongs to a dead process: :meth:`Registry.rows` reports it as ``interrupted``.

Rows hold no secrets: options are recorded without the token and URLs without query strings
(callers pass redacted values; :meth:`Registry.upsert` checks again).

The registry is a record, never a reason to fail a download: when ``$NBMODELS_HOME`` cannot be
written (read-only, a file, no permission) or the database cannot be used, one warning line says
so ("job history is not being saved: ..."), the registry keeps nothing, and downloads go on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._fserrors import describe_os_error
from .._progress import JobSnapshot, Status
from .._redact import redact_text

if sys.platform != "win32":
    import fcntl

__all__ = ["JobRecord", "Lease", "Registry"]

log = logging.getLogger("nbmodels")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    ref TEXT NOT NULL,
    options TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL,
    total_bytes INTEGER,
    downloaded_bytes INTEGER NOT NULL DEFAULT 0,
    path TEXT,
    paths TEXT NOT NULL DEFAULT '[]',
    files TEXT NOT NULL DEFAULT '[]',
    error TEXT,
    error_type TEXT,
    error_hint TEXT,
    owner TEXT NOT NULL,
    pid INTEGER NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    completed_at REAL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at DESC);
"""

_COLUMNS = (
    "id", "ref", "options", "status", "total_bytes", "downloaded_bytes", "path", "paths",
    "files", "error", "error_type", "error_hint", "owner", "pid", "created_at", "started_at",
    "completed_at", "updated_at",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A registry row, decoded."""

    id: str
    ref: str
    options: dict[str, Any]
    status: str
    total_bytes: int | None
    downloaded_bytes: int
    path: str | None
    paths: list[str]
    files: list[dict[str, Any]]
    error: str | None
    error_type: str | None
    error_hint: str | None
    owner: str
    pid: int
    created_at: float
    started_at: float | None
    completed_at: float | None
    updated_at: float


class Lease:
    """This process's proof of life (see module docstring)."""

    def __init__(self, run_dir: Path) -> None:
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.pid = os.getpid()
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path = run_dir / f"{self.owner}.lock"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
        if sys.platform != "win32":
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self._fd)
            self._fd = -1

    @staticmethod
    def alive(run_dir: Path, owner: str, pid: int) -> bool:
        """Is the process that wrote ``owner`` rows still running?"""
        path = run_dir / f"{owner}.lock"
        if sys.platform == "win32":  # pragma: no cover - best effort by pid
            try:
                os.kill(pid, 0)
            except OSError:
                return False
            return True
        try:
            fd = os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            # We got it: the owner is gone. Clean its lease file up.
            with contextlib.suppress(OSError):
                path.unlink()
            return False
        finally:
            os.close(fd)


class Registry:
    """Thread-safe access to the jobs table. Every call opens no new connection.

    ``problem`` is None while the history is kept, else why it is not (see the module docstring).
    """

    def __init__(self, home: Path) -> None:
        self.path = home / "jobs.sqlite3"
        self.run_dir = home / "run"
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._lease: Lease | None = None
        self.problem: str | None = None
        try:
            home.mkdir(parents=True, exist_ok=True)
            self._lease = Lease(self.run_dir)
            self._conn = sqlite3.connect(
                self.path, timeout=10.0, isolation_level=None, check_same_thread=False
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            self._give_up(exc)

    @property
    def lease(self) -> Lease:
        if self._lease is None:
            raise RuntimeError(f"the job history is not kept: {self.problem}")
        return self._lease

    def _give_up(self, exc: OSError | sqlite3.Error) -> None:
        """Stop keeping the history, and say so once (one line, no traceback)."""
        if isinstance(exc, OSError):
            reason = describe_os_error(exc)
        else:
            reason = f"{self.path} cannot be used ({' '.join(str(exc).split())})."
        with self._lock:  # no other thread is between two statements on the connection
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None
        if self._lease is not None:
            self._lease.release()
            self._lease = None
        if self.problem is None:
            self.problem = reason
            log.warning(
                "nbmodels: job history is not being saved: %s Downloads go on; to keep the "
                "history, set NBMODELS_HOME to a directory you can write to.",
                reason,
            )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection | None]:
        with self._lock:
            yield self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        if self._lease is not None:
            self._lease.release()

    def save(
        self, snap: JobSnapshot, paths: list[Path], options: dict[str, Any] | None = None
    ) -> None:
        """Write a job's snapshot (with its paths, and its recorded options when the job is
        new: :meth:`nbmodels._options.Options.record`, which holds no secret)."""
        fields: dict[str, Any] = {
            "id": snap.job_id,
            "ref": snap.ref,
            "status": snap.status,
            "total_bytes": snap.progress.total_bytes,
            "downloaded_bytes": snap.progress.downloaded_bytes,
            "path": snap.path,
            "paths": [str(p) for p in paths],
            "files": [
                {
                    "name": f.name,
                    "path": f.path,
                    "status": f.status,
                    "downloaded_bytes": f.progress.downloaded_bytes,
                    "total_bytes": f.progress.total_bytes,
                    "error": f.error,
                }
                for f in snap.files
            ],
            "error": snap.error,
            "error_type": snap.error_type,
            "error_hint": snap.error_hint,
            "created_at": snap.created_at,
            "started_at": snap.started_at,
            "completed_at": snap.completed_at,
        }
        if options is not None:
            fields["options"] = options
        self.upsert(**fields)

    def upsert(self, **fields: Any) -> None:
        """Insert or update a job row (``id`` required). JSON columns take Python values."""
        if self._lease is None:
            return
        row = dict(fields)
        row.setdefault("owner", self._lease.owner)
        row.setdefault("pid", self._lease.pid)
        row["updated_at"] = time.time()
        for key in ("options", "paths", "files"):
            if key in row and not isinstance(row[key], str):
                row[key] = json.dumps(row[key])
        for key in ("error", "error_hint", "ref", "options"):
            if isinstance(row.get(key), str):
                row[key] = redact_text(row[key])
        unknown = set(row) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown registry columns: {sorted(unknown)}")
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        updates = ", ".join(f"{c}=excluded.{c}" for c in row if c != "id")
        sql = f"INSERT INTO jobs ({cols}) VALUES ({marks}) ON CONFLICT(id) DO UPDATE SET {updates}"  # noqa: S608 - column names are checked against _COLUMNS
        self._write(lambda conn: conn.execute(sql, tuple(row.values())))

    def _write(self, step: Callable[[sqlite3.Connection], object]) -> None:
        """Run ``step`` on the connection; a database that cannot be written ends the history
        (one warning), a busy one skips this write."""
        with self._locked() as conn:
            if conn is None:
                return
            try:
                step(conn)
                return
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    log.debug("nbmodels: job history busy; one update skipped: %s", exc)
                    return
                failure: sqlite3.Error = exc
            except sqlite3.Error as exc:
                failure = exc
        self._give_up(failure)

    def rows(self, limit: int | None = None) -> list[JobRecord]:
        """Every job, newest first; rows of dead processes that were not finished read as
        ``interrupted`` (and are stored so)."""
        sql = f"SELECT {', '.join(_COLUMNS)} FROM jobs ORDER BY created_at DESC"  # noqa: S608
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        try:
            with self._locked() as conn:
                raw = [] if conn is None else conn.execute(sql).fetchall()
        except sqlite3.Error as exc:
            self._give_up(exc)
            return []
        out: list[JobRecord] = []
        alive: dict[str, bool] = {}
        dead_ids: list[str] = []
        for values in raw:
            data = dict(zip(_COLUMNS, values, strict=True))
            if data["status"] in Status.ACTIVE:
                owner = data["owner"]
                if owner not in alive:
                    alive[owner] = owner == self.lease.owner or Lease.alive(
                        self.run_dir, owner, data["pid"]
                    )
                if not alive[owner]:
                    data["status"] = Status.INTERRUPTED.value
                    dead_ids.append(data["id"])
            for key in ("options", "paths", "files"):
                data[key] = json.loads(data[key] or ("{}" if key == "options" else "[]"))
            out.append(JobRecord(**data))
        if dead_ids:
            active = sorted(Status.ACTIVE)
            marks = ", ".join("?" for _ in active)
            self._write(
                lambda conn: conn.executemany(
                    f"UPDATE jobs SET status=? WHERE id=? AND status IN ({marks})",  # noqa: S608
                    [(Status.INTERRUPTED.value, i, *active) for i in dead_ids],
                )
            )
        return out

    def get(self, job_id: str) -> JobRecord | None:
        for row in self.rows():
            if row.id == job_id:
                return row
        return None
