"""The generic model-download REST API (``seeds/002``).

    POST /model-download                  {"model_name", "version"?, "download_url"?, ...}
    GET  /model-download/{id}/progress    progress, then the completed body

A request maps onto ``nbmodels.download``:

- ``source`` ``huggingface`` (also ``default``): ``model_name`` is a Hub repo id and ``version``
  its revision (``latest``: the default branch); the files go into the Hugging Face cache.
- ``download_url`` (or ``source: "url"``): that URL, into
  ``$NBMODELS_HOME/models/<model_name>/<version>/``.
- ``checksum`` -> ``sha256``; ``force_download`` -> ``force``; ``options.timeout`` ->
  ``timeout`` (connect and read-idle seconds); ``options.retry_count`` -> ``retries``;
  ``options.verify_ssl: false`` -> ``verify_tls=False`` (a ``download_url`` with a ``checksum``
  only); ``options.extract_after_download`` (default true) -> ``extract`` for an archive
  (``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz``), with
  ``options.cleanup_temp_files`` (default true) -> ``remove_archive``; ``options.chunk_size`` is
  accepted and ignored (the engine sizes its own buffers); ``metadata`` is kept with the job.

Statuses: ``started``, ``downloading``, ``paused``, ``completed``, ``failed``; stages
``downloading``, ``verifying``, ``installing`` (unpacking an archive).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import tornado.web

from .._config import nbmodels_home
from .._options import OPTION_NAMES
from .._redact import redact_url
from ..engine import Job
from ..errors import RefError
from ..hub import hf_endpoint
from ..refs import REPO_URL_PREFIX, parse_ref
from ..sources import url_filename
from ._app import OWN_KEY, ServiceHandler, api_error, iso_z, own_info, user_metadata
from ._body import ApiError, Body, invalid

__all__ = ["ROUTES", "ModelRequest", "parse_request"]

_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
_MODEL_NAME = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})?")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,254}")
_CHECKSUM = re.compile(r"(?:sha256:)?[0-9a-fA-F]{64}")
_SOURCES = {"huggingface": "huggingface", "hf": "huggingface", "default": "huggingface"}
_SOURCES["url"] = "url"
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_STAGES = {"verifying": "verifying", "extracting": "installing"}


class ModelRequest:
    """A checked ``POST /model-download`` body."""

    def __init__(self, data: dict[str, Any]) -> None:
        body = Body(data)
        name = body.text(
            "model_name", required=True, max_length=193, pattern=_MODEL_NAME,
            what="a model name such as resnet50 or owner/name",
        )  # fmt: skip
        assert name is not None
        self.model_name = name
        version = body.text(
            "version", max_length=255, pattern=_VERSION, what="a version such as v1.0 or latest"
        )
        if version is not None and ".." in version:
            raise invalid("version", "must not contain '..'")
        self.version = version or "latest"
        self.download_url = body.text("download_url", max_length=4096)
        source = (body.text("source", max_length=40) or "huggingface").lower()
        if source not in _SOURCES:
            raise invalid("source", "must be huggingface or url")
        self.source = "url" if self.download_url else _SOURCES[source]
        if self.source == "url":
            self._check_url()
        checksum = body.text(
            "checksum", max_length=80, pattern=_CHECKSUM,
            what="sha256:<64 hex digits> (sha256 is the one algorithm supported)",
        )  # fmt: skip
        self.sha256 = None if checksum is None else checksum.lower().removeprefix("sha256:")
        self.force = body.flag("force_download", False)
        self._options(body.obj("options") or Body({}, "options."))
        self.metadata = body.raw_object("metadata")
        if self.metadata is not None and any(k.startswith(OWN_KEY) for k in self.metadata):
            raise invalid(f"metadata.{OWN_KEY}", "is a key nbmodels keeps for itself")

    def _check_url(self) -> None:
        if self.download_url is None:
            raise invalid("download_url", "is required when source is url")
        parts = urlsplit(self.download_url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise invalid("download_url", "must be an http:// or https:// URL")
        if "/" in self.version:
            raise invalid("version", "must not contain '/' for a download_url download")

    def _options(self, opts: Body) -> None:
        self.timeout = opts.number("timeout", low=0.001, high=3600)
        retries = opts.number("retry_count", low=0, high=100, integer=True)
        self.retries = None if retries is None else int(retries)
        self.verify_tls = opts.flag("verify_ssl", True)
        self.extract = opts.flag("extract_after_download", True)
        self.cleanup = opts.flag("cleanup_temp_files", True)
        opts.number("chunk_size", low=1, high=1 << 30, integer=True)  # accepted, not used
        if not self.verify_tls:
            if self.source != "url":
                raise invalid(
                    "options.verify_ssl",
                    "false is only for a download_url: Hub downloads always check certificates",
                )
            if self.sha256 is None:
                raise invalid(
                    "options.verify_ssl",
                    "false needs a checksum: without certificate checks only a known sha256 "
                    "proves the bytes are the right ones",
                )

    def submission(self, home: Path) -> tuple[str, dict[str, Any]]:
        """The reference and ``nbmodels.download`` options of this request."""
        own = {"api": "model-download", "model_name": self.model_name, "version": self.version}
        options: dict[str, Any] = {
            "force": self.force,
            "metadata": {OWN_KEY: {**own, "source": self.source}, **(self.metadata or {})},
        }
        for key, value in (
            ("sha256", self.sha256), ("timeout", self.timeout), ("retries", self.retries),
        ):  # fmt: skip
            if value is not None:
                options[key] = value
        if not self.verify_tls:
            options["verify_tls"] = False
        if self.source == "huggingface":
            if self.version != "latest":
                options["revision"] = self.version
            return f"hf:{self.model_name}", options  # "hf:" also names repos without an owner
        assert self.download_url is not None
        try:
            name = url_filename(self.download_url)
        except RefError as exc:
            raise invalid("download_url", exc.fact.rstrip(".")) from None
        options["dir"] = home / "models" / Path(*self.model_name.split("/")) / self.version
        archive = name.lower().endswith(ARCHIVE_SUFFIXES)
        if archive and self.extract and "extract" in OPTION_NAMES:
            options["extract"] = True
            options["remove_archive"] = self.cleanup
        return self.download_url, options


def parse_request(data: dict[str, Any]) -> ModelRequest:
    return ModelRequest(data)


# -- answers ---------------------------------------------------------------------------------


def _mb(n: int | None) -> float | None:
    return None if n is None else round(n / 1e6, 1)


def _names(job: Job) -> dict[str, Any]:
    info = own_info(job)
    return {
        "download_id": job.id,
        "model_name": info.get("model_name", job.ref),
        "version": info.get("version", job.options.revision or "latest"),
    }


def download_url(job: Job) -> str:
    """The URL a job downloads from: the URL itself, or the Hub page of the repo (at the
    version)."""
    try:
        parsed = parse_ref(job.ref)
    except RefError:
        return redact_url(job.ref)
    if parsed.kind == "url" or parsed.repo_id is None:
        return redact_url(job.ref)
    page = f"{hf_endpoint()}/{REPO_URL_PREFIX[parsed.repo_type]}{parsed.repo_id}"
    revision = job.options.revision or parsed.revision
    return f"{page}/tree/{quote(revision, safe='')}" if revision else page


def started_body(service_url: str, job: Job) -> dict[str, Any]:
    p = job.snapshot().progress
    return {
        "status": "started",
        "message": "Model download started",
        **_names(job),
        "estimated_size_mb": _mb(p.total_bytes),
        "estimated_duration_seconds": None if p.eta_seconds is None else round(p.eta_seconds),
        "download_url": download_url(job),
        "progress_endpoint": service_url,
        "metadata": user_metadata(job),
    }


def completed_body(job: Job) -> dict[str, Any]:
    snap = job.snapshot()
    names = _names(job)
    total = snap.progress.total_bytes
    if total is None:
        total = sum(f.progress.total_bytes or 0 for f in snap.files)
    started, completed = snap.started_at, snap.completed_at
    duration = completed - started if started is not None and completed is not None else 0.0
    try:
        hub = parse_ref(job.ref).kind == "hf"
    except RefError:
        hub = False
    fresh = snap.status == "completed"
    return {
        "status": "completed",
        "message": "Model downloaded and installed successfully"
        if fresh
        else "Model already downloaded; nothing was transferred",
        **names,
        "file_path": None if job.path is None else str(job.path),
        "file_size_mb": _mb(total),
        "download_duration_seconds": round(duration, 1),
        "checksum_verified": hub or job.options.sha256 is not None,
        "installation": {
            "status": "success",
            "installed_at": iso_z(completed) if completed is not None else None,
            "model_id": f"{names['model_name']}_{names['version']}",
            "ready_for_inference": True,
        },
        "metadata": user_metadata(job),
    }


def progress_body(job: Job) -> dict[str, Any]:
    snap = job.snapshot()
    if snap.status in ("completed", "already_downloaded"):
        return completed_body(job)
    names = _names(job)
    if snap.done:
        if job.error is not None:
            err = api_error(job.error)
            code = {"canceled": "canceled", "interrupted": "interrupted"}.get(snap.status, err.code)
            error = {"code": code, "message": err.message, "details": err.details}
        else:
            message = f"The download ended as {snap.status}."
            error = {"code": snap.status, "message": message, "details": {}}
        return {"status": "failed", "message": error["message"], **names, "error": error}
    p = snap.progress
    paused = snap.status == "paused"
    return {
        "status": "paused" if paused else "downloading",
        "message": "Download paused" if paused else "Download in progress",
        **names,
        "progress": {
            "percentage": 0.0 if p.fraction is None else round(p.fraction * 100, 1),
            "downloaded_mb": _mb(p.downloaded_bytes),
            "total_mb": _mb(p.total_bytes),
            "speed_mbps": round(p.bytes_per_second / 1e6, 2),
            "eta_seconds": None if p.eta_seconds is None else round(p.eta_seconds),
            "current_stage": _STAGES.get(snap.status, "downloading"),
        },
    }


class Start(ServiceHandler):
    @tornado.web.authenticated
    async def post(self) -> None:
        req = parse_request(self.json_body())
        ref, options = req.submission(nbmodels_home())
        job = await self.submit(ref, **options)
        snap = await self.settle(job)
        if snap.status in ("failed", "canceled") and job.error is not None:
            raise api_error(job.error)
        if snap.status == "already_downloaded" and not req.force:
            raise ApiError(
                409,
                "already_exists",
                f"Model {req.model_name!r} version {req.version!r} already exists at "
                f'{job.path}. Send "force_download": true to download it again.',
                {"file_path": None if job.path is None else str(job.path), "download_id": job.id},
            )
        if snap.done:
            self.send_json(completed_body(job))
            return
        self.send_json(started_body(self.service.url(f"model-download/{job.id}/progress"), job))


class Progress(ServiceHandler):
    @tornado.web.authenticated
    async def get(self, job_id: str) -> None:
        self.send_json(progress_body(await self.find(job_id)))


ROUTES: list[tuple[str, type[ServiceHandler]]] = [
    ("model-download", Start),
    (r"model-download/([^/]+)/progress", Progress),
]
