"""A job as the native HTTP API carries it (docs/api.md, "Native"), and back.

The service sends every job as :func:`job_payload`: ``Job.to_dict()`` plus what a front end in
another process needs to show it exactly as a local one — each file's speed, ETA, stall and
retry notice, the error's type, hint and details, every path, the options (never a secret).
A kernel that uses its Jupyter server's engine turns each payload back into a
:class:`~._job.JobState` (:func:`state_from_payload`), so its :class:`~._job.Job` objects read,
wait and raise like local ones. Pure functions, no I/O.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import errors
from .._options import Options
from .._progress import FileProgress, JobSnapshot, Progress, RetryNotice
from ..errors import NbmodelsError, Option
from ._job import Job, JobState, state_of

__all__ = ["error_detail", "error_from_payload", "job_payload", "options_from_payload",
           "state_from_payload"]  # fmt: skip

#: The attributes an error class carries besides its message (the first class of an error's
#: MRO found here applies), sent in ``error_detail`` and given back to its constructor.
_ERROR_FIELDS: dict[type[NbmodelsError], tuple[str, ...]] = {
    errors.NotFoundError: ("candidates",),
    errors.IntegrityError: ("expected", "actual"),
    errors.InsufficientSpaceError: ("needed", "available", "path"),
    errors.ArchiveError: ("member",),
}


def job_payload(job: Job) -> dict[str, Any]:
    """The native API's job: ``Job.to_dict()`` (unchanged) with ``done``, ``metadata`` and the
    added fields of docs/api.md."""
    state = state_of(job)
    snap = state.snapshot
    p = snap.progress
    data = job.to_dict()
    data["done"] = snap.done
    data.setdefault("metadata", None)
    data.update(
        {
            "created_at": _iso(snap.created_at),
            **_motion(p),
            "paths": [str(x) for x in state.paths],
            "read_only": job.read_only,
            "options": job.options.record(),
            "error_type": snap.error_type,
            "error_hint": snap.error_hint,
            "error_detail": error_detail(state.error),
        }
    )
    for item, f in zip(data["items"], snap.files, strict=True):
        item.update(_motion(f.progress), bytes_per_second=round(f.progress.bytes_per_second, 1))
    return data


def _motion(p: Progress) -> dict[str, Any]:
    return {
        "eta_seconds": None if p.eta_seconds is None else round(p.eta_seconds, 1),
        "stalled": p.stalled,
        "retry": None if p.retry is None else p.retry.to_dict(),
    }


def error_detail(error: NbmodelsError | None) -> dict[str, Any] | None:
    """What rebuilds ``error`` elsewhere: its fact, its hint as parts (options stay options, so
    each front end names them its own way) and its class's own attributes."""
    if error is None:
        return None
    out: dict[str, Any] = {
        "fact": error.fact,
        "hint": [
            {"option": p.name, "switch": p.switch} if isinstance(p, Option) else p
            for p in error.hint_parts
        ]
        or error.hint,
    }
    for name in _fields_of(type(error)):
        value = getattr(error, name, None)
        out[name] = list(value) if isinstance(value, tuple) else value
    return out


def _fields_of(cls: type[NbmodelsError]) -> tuple[str, ...]:
    return next((_ERROR_FIELDS[c] for c in cls.__mro__ if c in _ERROR_FIELDS), ())


def error_from_payload(data: Mapping[str, Any]) -> NbmodelsError | None:
    """The job's error as the class the server raised (``error_type``), with its hint and
    attributes; an unknown class, or details that do not fit it, give a plain
    :class:`NbmodelsError` with the same message."""
    message = data.get("error")
    if not message:
        return None
    found = getattr(errors, str(data.get("error_type") or ""), None)
    cls = found if isinstance(found, type) and issubclass(found, NbmodelsError) else NbmodelsError
    detail = data.get("error_detail")
    if not isinstance(detail, Mapping):
        return cls(str(message)) if cls is NbmodelsError else _plain(cls, str(message))
    kwargs = {k: detail[k] for k in _fields_of(cls) if k in detail}
    try:
        return cls(str(detail.get("fact") or message), hint=_hint(detail.get("hint")), **kwargs)
    except (TypeError, ValueError):
        return NbmodelsError(str(message))


def _plain(cls: type[NbmodelsError], message: str) -> NbmodelsError:
    try:
        return cls(message)
    except TypeError:  # a class whose constructor needs its attributes
        return NbmodelsError(message)


def _hint(raw: Any) -> str | list[str | Option] | None:
    if isinstance(raw, str) or raw is None:
        return raw
    parts: list[str | Option] = []
    for part in raw if isinstance(raw, Sequence) else ():
        if isinstance(part, Mapping):
            parts.append(Option(str(part.get("option", "")), bool(part.get("switch"))))
        else:
            parts.append(str(part))
    return parts or None


def state_from_payload(data: Mapping[str, Any]) -> JobState:
    """A :class:`JobState` from a native job (also one of an older server without the added
    fields: what is missing reads as unknown). ``KeyError`` / ``TypeError`` / ``ValueError``
    for a payload that is not a job."""
    error = error_from_payload(data)
    files = tuple(_file(item) for item in data.get("items") or () if isinstance(item, Mapping))
    snap = JobSnapshot(
        job_id=str(data["job_id"]),
        ref=str(data["ref"]),
        status=str(data["status"]),
        progress=_progress(data, "total_size_bytes"),
        files=files,
        path=data.get("path"),
        error=None if error is None else str(error),
        error_type=data.get("error_type") or (None if error is None else "NbmodelsError"),
        error_hint=data.get("error_hint"),
        created_at=_seconds(data.get("created_at")),
        started_at=_seconds(data.get("started_at")),
        completed_at=_seconds(data.get("completed_at")),
    )
    raw_paths = data.get("paths")
    if raw_paths is None:
        raw_paths = [f.path for f in files if f.path]
    path = data.get("path")
    return JobState(snap, Path(path) if path else None, tuple(Path(p) for p in raw_paths), error)


def options_from_payload(data: Mapping[str, Any]) -> Options:
    """The job's options (``options``), or the defaults when they are missing or unreadable."""
    raw = data.get("options")
    try:
        return Options.from_record(raw) if isinstance(raw, Mapping) else Options()
    except (TypeError, ValueError):
        return Options()


def _file(item: Mapping[str, Any]) -> FileProgress:
    return FileProgress(
        name=str(item.get("name", "")),
        status=str(item.get("status", "")),
        progress=_progress(item, "total_size_bytes"),
        path=item.get("path"),
        error=item.get("error"),
    )


def _progress(data: Mapping[str, Any], total_key: str) -> Progress:
    total = data.get(total_key)
    eta = data.get("eta_seconds")
    retry = data.get("retry")
    return Progress(
        downloaded_bytes=int(data.get("downloaded_bytes") or 0),
        total_bytes=None if total is None else int(total),
        bytes_per_second=float(data.get("bytes_per_second") or 0.0),
        eta_seconds=None if eta is None else float(eta),
        stalled=bool(data.get("stalled", False)),
        retry=None
        if not isinstance(retry, Mapping)
        else RetryNotice(
            str(retry.get("reason", "")),
            int(retry.get("attempt") or 0),
            float(retry.get("delay_seconds") or 0.0),
        ),
    )


def _iso(value: float | None) -> str | None:
    if value is None:
        return None
    return _dt.datetime.fromtimestamp(value, tz=_dt.UTC).isoformat(timespec="milliseconds")


def _seconds(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    return _dt.datetime.fromisoformat(value).timestamp()
