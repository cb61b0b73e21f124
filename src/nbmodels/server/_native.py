"""The native API: jobs as ``Job.to_dict()``, the download options of the Python API, control,
and an SSE stream of snapshots (what the panel and other tools use).

    GET  /                          index: version and where each API lives
    GET  /api/jobs                  history, newest first (?limit=N)
    POST /api/jobs                  {"ref", ...options} -> the job (the same one while it runs)
    GET  /api/jobs/{id}             one job
    POST /api/jobs/{id}/pause|resume|cancel
    GET  /api/events                SSE: "job" events, Job.to_dict() (+ "done")
"""

from __future__ import annotations

from typing import Any

import tornado.web

import nbmodels

from .._config import hf_cache_dir
from .._options import OPTION_NAMES
from .._progress import JobSnapshot
from ..engine import Job, job_payload
from ._app import EventStreamHandler, ServiceHandler
from ._body import ApiError, Body, invalid
from ._events import sse

__all__ = ["ROUTES", "events", "job_json"]

#: The options ``POST /api/jobs`` passes on, by the JSON type each takes. ``token`` is not one
#: (the server's own Hugging Face login applies); ``display`` means nothing here.
_OPTION_TYPES = {
    "dir": "text",
    "revision": "text",
    "include": "strings",
    "exclude": "strings",
    "sha256": "text",
    "force": "flag",
    "connections": "whole",
    "offline": "flag",
    "timeout": "number",
    "retries": "whole",
    "verify_tls": "flag",
    "metadata": "object",
    "extract": "flag",
    "remove_archive": "flag",
}


def job_json(job: Job) -> dict[str, Any]:
    """``Job.to_dict()`` with ``done`` and ``metadata`` always present, and the fields a front
    end in another process needs (docs/api.md, "Native": per-file speed and retry notices,
    the error's type, hint and details, every path, the options)."""
    return job_payload(job)


def events(job: Job, prev: JobSnapshot | None, snap: JobSnapshot) -> list[tuple[str, str]]:
    """The native channel: the job's latest state, newest replacing older."""
    return [(job.id, sse("job", job_json(job)))]


def download_options(body: Body) -> dict[str, Any]:
    """The download options of a ``POST /api/jobs`` body, type-checked."""
    if body.present("token"):
        raise invalid(
            "token", "is not accepted over HTTP; the server uses its own Hugging Face login"
        )
    options: dict[str, Any] = {}
    for name, kind in _OPTION_TYPES.items():
        if name not in OPTION_NAMES or not body.present(name):
            continue
        if kind == "text":
            options[name] = body.text(name, max_length=4096)
        elif kind == "strings":
            options[name] = body.strings(name)
        elif kind == "flag":
            options[name] = body.flag(name, False)
        elif kind == "whole":
            options[name] = body.number(name, low=0, high=1_000_000, integer=True)
        elif kind == "number":
            options[name] = body.number(name, low=0, high=1_000_000)
        else:
            options[name] = body.raw_object(name)
    return options


class Index(ServiceHandler):
    @tornado.web.authenticated
    def get(self) -> None:
        url = self.service.url
        self.send_json(
            {
                "name": "nbmodels",
                "version": nbmodels.__version__,
                # Where this engine puts Hub files: a kernel whose own cache differs downloads
                # in the kernel, so its files land where its huggingface_hub looks.
                "hf_cache": str(hf_cache_dir()),
                "apis": {
                    "native": url("api/jobs"),
                    "native_events": url("api/events"),
                    "lmstudio": url("api/v1/models/download"),
                    "model_download": url("model-download"),
                    "arw": url("models/download"),
                    "arw_events": url("events"),
                },
            }
        )


class Jobs(ServiceHandler):
    @tornado.web.authenticated
    async def get(self) -> None:
        raw = self.get_query_argument("limit", None)
        if raw is not None and not (raw.isdigit() and 0 < int(raw) <= 100_000):
            raise invalid("limit", "must be a whole number from 1 to 100000")
        history = await self.call(nbmodels.history)
        if raw is not None:
            history = history[: int(raw)]
        self.send_json({"jobs": [job_json(j) for j in history]})

    @tornado.web.authenticated
    async def post(self) -> None:
        body = Body(self.json_body())
        ref = body.text("ref", required=True, max_length=4096)
        assert ref is not None
        job = await self.submit(ref, **download_options(body))
        self.send_json(job_json(job))


class OneJob(ServiceHandler):
    @tornado.web.authenticated
    async def get(self, job_id: str) -> None:
        self.send_json(job_json(await self.find(job_id)))


class Action(ServiceHandler):
    @tornado.web.authenticated
    async def post(self, job_id: str, action: str) -> None:
        self.no_body()
        job = await self.find(job_id)
        if job.read_only:
            if action == "resume" and job.status == "interrupted":
                # An earlier process died mid-way: submitting it again resumes from its data.
                self.send_json({"ok": True, "job": job_json(await self.call(job.retry))})
                return
            raise ApiError(
                409,
                "not_running",
                f"Job {job.id} belongs to an earlier server process and is {job.status}; "
                "submit its reference again to download it.",
            )
        if job.done:
            raise ApiError(409, "not_running", f"Job {job.id} already ended ({job.status}).")
        ok = await self.call(getattr(job, action))
        self.send_json({"ok": ok, "job": job_json(job)})


class Events(EventStreamHandler):
    channel = "native"

    @tornado.web.authenticated
    async def get(self) -> None:
        await self.stream()


ROUTES: list[tuple[str, type[ServiceHandler]]] = [
    ("", Index),
    ("api/jobs", Jobs),
    (r"api/jobs/([^/]+)", OneJob),
    (r"api/jobs/([^/]+)/(pause|resume|cancel)", Action),
    ("api/events", Events),
]
