"""ARW's model download API (``seeds/004``).

    POST /models/download         {"id", "url", "provider"?, "sha256"?}  start, or resume
    POST /models/download/cancel  {"id"}                                  cancel, drop the partial
    GET  /probe                   {"state_dir"}
    GET  /events                  SSE of "Models.DownloadProgress" events

A download goes to ``{state_dir}/models/<id>/<file name of the URL>`` (one folder per id, so two
ids never share a partial file). Re-issuing the POST resumes from the partial data kept on disk
(by this server process or an earlier one): the ``resumed`` event's ``offset`` is how many bytes
the kept partial held when the job started. Events::

    {"id", "progress": 42, "downloaded": 12345678, "total": 30000000}   (no total: no progress)
    {"id", "status": "resumed", "offset": 102400}
    {"id", "status": "complete", "file": "qwen.gguf", "provider": "local"}
    {"id", "error": "checksum mismatch", "expected": "...", "actual": "..."}
    {"id", "error": "<message>"}                                          (any other failure)
    {"id", "status": "paused"} / {"id", "status": "canceled"}
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tornado.web

import nbmodels

from .._progress import JobSnapshot
from ..engine import Job
from ..errors import IntegrityError, RefError
from ..sources import url_filename, url_key
from ..transfer import PartialState, partial_paths
from ._app import (
    OWN_KEY,
    TRANSFER_STATUSES,
    EventStreamHandler,
    ServiceHandler,
    api_error,
    own_info,
)
from ._body import ApiError, Body, invalid
from ._events import sse

__all__ = ["ROUTES", "events"]

EVENT = "Models.DownloadProgress"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_PROVIDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SHA256 = re.compile(r"(?:sha256:)?[0-9a-fA-F]{64}")
_PARTIAL_SUFFIXES = (".nbmodels.part", ".nbmodels.json")


def model_dir(state_dir: Path, model_id: str) -> Path:
    return state_dir / "models" / model_id


def kept_offset(target: Path, url: str) -> int:
    """Bytes of partial data kept for ``target`` from ``url`` (0: none, or another file's)."""
    part, state_path = partial_paths(target)
    state = PartialState.load(state_path, part)
    if state is None or state.key != url_key(url):
        return 0
    return state.done.covered


def _payload(job: Job, info: dict[str, Any], snap: JobSnapshot) -> list[tuple[str, dict[str, Any]]]:
    ident = info["id"]
    status = snap.status
    p = snap.progress
    if status in TRANSFER_STATUSES or status in ("queued", "resolving"):
        event: dict[str, Any] = {"id": ident, "downloaded": p.downloaded_bytes}
        if p.total_bytes is not None:
            event["progress"] = int((p.fraction or 0.0) * 100)
            event["total"] = p.total_bytes
        return [("progress", event)]
    if status in ("completed", "already_downloaded"):
        name = job.path.name if job.path is not None else None
        provider = info.get("provider", "local")
        return [("end", {"id": ident, "status": "complete", "file": name, "provider": provider})]
    if status in ("paused", "canceled"):
        return [("state", {"id": ident, "status": status})]
    err = job.error
    if isinstance(err, IntegrityError):
        mismatch = {"expected": err.expected, "actual": err.actual}
        return [("end", {"id": ident, "error": "checksum mismatch", **mismatch})]
    return [("end", {"id": ident, "error": str(err) if err else f"download {status}"})]


def events(job: Job, prev: JobSnapshot | None, snap: JobSnapshot) -> list[tuple[str, str]]:
    """The ARW channel: events of jobs started through ARW."""
    info = own_info(job)
    if info.get("api") != "arw":
        return []
    out: list[tuple[str, dict[str, Any]]] = []
    # The transfer started (or already ended: the broadcaster samples) since last seen.
    entered = snap.status in (*TRANSFER_STATUSES, "completed") and (
        prev is None or prev.status not in TRANSFER_STATUSES
    )
    if entered and info.get("offset"):
        out.append(("resumed", {"id": info["id"], "status": "resumed", "offset": info["offset"]}))
    out += _payload(job, info, snap)
    return [(f"{job.id}:{kind}", sse(EVENT, data)) for kind, data in out]


class Download(ServiceHandler):
    @tornado.web.authenticated
    async def post(self) -> None:
        body = Body(self.json_body())
        ident = body.text("id", required=True, pattern=_ID, what="a model id such as qwen2.5-7b")
        url = body.text("url", required=True, max_length=4096)
        provider = body.text("provider", pattern=_PROVIDER, what="a provider name") or "local"
        digest = body.text("sha256", max_length=80, pattern=_SHA256, what="64 hex digits")
        assert ident is not None and url is not None
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise invalid("url", "must be an http:// or https:// URL")
        try:
            name = url_filename(url)
        except RefError as exc:
            raise invalid("url", exc.fact.rstrip(".")) from None
        folder = model_dir(self.service.config.arw_state_dir(), ident)
        offset = await self.call(kept_offset, folder / name, url)
        own = {"api": "arw", "id": ident, "provider": provider, "offset": offset}
        options: dict[str, Any] = {"dir": folder, "metadata": {OWN_KEY: own}}
        if digest is not None:
            options["sha256"] = digest
        asked = time.time()
        job = await self.submit(url, **options)
        snap = await self.settle(job)
        if snap.status == "failed" and job.error is not None:
            raise api_error(job.error)
        offset = own_info(job).get("offset", 0)  # a job already running keeps its own
        complete = snap.status in ("completed", "already_downloaded")
        if complete:
            status = "complete"
        elif snap.created_at is not None and snap.created_at < asked:
            status = "downloading"  # the job of an earlier request, still running
        else:
            status = "resumed" if offset else "started"
        answer: dict[str, Any] = {"id": ident, "job_id": job.id, "status": status}
        if offset:
            answer["offset"] = offset
        if complete and job.path is not None:
            answer["file"] = job.path.name
        self.send_json(answer)


def _discard_partials(folder: Path) -> int:
    """Remove the partial data kept in ``folder`` (no job is working on it); how many files."""
    removed = 0
    if not folder.is_dir():
        return 0
    for entry in folder.iterdir():
        if entry.name.startswith(".") and entry.name.endswith(_PARTIAL_SUFFIXES):
            entry.unlink(missing_ok=True)
            removed += 1
    return removed


class Cancel(ServiceHandler):
    @tornado.web.authenticated
    async def post(self) -> None:
        body = Body(self.json_body())
        ident = body.text("id", required=True, pattern=_ID, what="a model id such as qwen2.5-7b")
        assert ident is not None
        running = [
            job
            for job in await self.call(nbmodels.jobs)
            if not job.done and own_info(job).get("api") == "arw" and own_info(job)["id"] == ident
        ]
        for job in running:
            await self.call(job.cancel)  # the engine removes the partial data
        folder = model_dir(self.service.config.arw_state_dir(), ident)
        removed = 0 if running else await self.call(_discard_partials, folder)
        if not running and not removed:
            raise ApiError(404, "not_found", f"No download of {ident!r} to cancel.")
        if not running:
            payload = {"id": ident, "status": "canceled"}
            self.service.events.publish("arw", f"{ident}:canceled", sse(EVENT, payload))
        self.send_json({"id": ident, "status": "canceled", "job_ids": [j.id for j in running]})


class Probe(ServiceHandler):
    @tornado.web.authenticated
    def get(self) -> None:
        self.send_json({"state_dir": str(self.service.config.arw_state_dir())})


class Events(EventStreamHandler):
    channel = "arw"

    @tornado.web.authenticated
    async def get(self) -> None:
        await self.stream()


ROUTES: list[tuple[str, type[ServiceHandler]]] = [
    ("models/download", Download),
    ("models/download/cancel", Cancel),
    ("probe", Probe),
    ("events", Events),
]
