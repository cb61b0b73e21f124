"""LM Studio's download API (``seeds/001``, and its ``GET .../status/:job_id``).

    POST /api/v1/models/download               {"model": ref, "quantization"?: "Q4_K_M"}
    GET  /api/v1/models/download/status/{id}   the same job object

``model`` takes every nbmodels reference; ``quantization`` picks the quant of a repository
(``owner/repo`` + ``Q4_K_M`` = ``hf:owner/repo:Q4_K_M``). The job object uses LM Studio's names
and statuses (``downloading``, ``paused``, ``completed``, ``failed``, ``already_downloaded``); its
``items`` are one ``model`` item (the weights) plus one ``file`` item per other file.
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any
from urllib.parse import urlsplit

import tornado.web

from .._progress import FileProgress, JobSnapshot
from .._redact import redact_url
from ..engine import Job
from ..errors import RefError
from ..hub import hf_endpoint
from ..refs import REPO_URL_PREFIX, ModelRef, parse_ref, split_quant_name
from ._app import ServiceHandler, api_error, iso_z
from ._body import Body, invalid

__all__ = ["ROUTES", "lmstudio_job", "reference"]

_QUANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
#: LM Studio's status for each of ours.
_STATUS = {
    "paused": "paused",
    "completed": "completed",
    "already_downloaded": "already_downloaded",
    "failed": "failed",
    "canceled": "failed",
    "interrupted": "failed",
}
#: Weight files by extension, and the ``format`` LM Studio shows for them.
FORMATS = {
    ".gguf": "gguf",
    ".safetensors": "safetensors",
    ".bin": "pytorch",
    ".pt": "pytorch",
    ".pth": "pytorch",
    ".ckpt": "pytorch",
    ".onnx": "onnx",
    ".h5": "keras",
    ".keras": "keras",
    ".msgpack": "flax",
    ".tflite": "tflite",
    ".mlmodel": "coreml",
    ".npz": "numpy",
}


def weight_format(name: str) -> str | None:
    lower = name.lower()
    for ext, fmt in FORMATS.items():
        if lower.endswith(ext):
            return fmt
    return None


def reference(model: str, quantization: str | None) -> str:
    """The nbmodels reference of a request."""
    if quantization is None:
        return model
    try:
        parsed = parse_ref(model)
    except RefError as exc:
        raise api_error(exc) from None
    if parsed.kind != "hf" or parsed.path is not None or parsed.is_dir:
        raise invalid(
            "quantization", "applies to a repository (owner/repo), not to a file or a URL"
        )
    if parsed.quant is not None and parsed.quant.lower() != quantization.lower():
        raise invalid("quantization", f"differs from the quant named in model ({parsed.quant})")
    return str(dataclasses.replace(parsed, quant=quantization))


def lmstudio_job(job: Job) -> dict[str, Any]:
    """The job object of LM Studio's download API."""
    snap = job.snapshot()
    p = snap.progress
    status = _STATUS.get(snap.status, "downloading")
    out: dict[str, Any] = {
        "job_id": job.id,
        "status": status,
        "total_size_bytes": p.total_bytes,
        "downloaded_bytes": p.downloaded_bytes,
        "items": items(job.ref, snap),
    }
    if status == "downloading":
        out["bytes_per_second"] = round(p.bytes_per_second, 1)
        if p.eta_seconds is not None:
            out["estimated_completion"] = iso_z(time.time() + p.eta_seconds)
    if snap.started_at is not None:
        out["started_at"] = iso_z(snap.started_at)
    if status == "completed" and snap.completed_at is not None:
        out["completed_at"] = iso_z(snap.completed_at)
    if status == "failed":
        error = api_error(job.error) if job.error is not None else None
        out["error"] = {
            "code": error.code if error else snap.status,
            "message": error.message if error else f"The download ended as {snap.status}.",
        }
    return out


def items(ref: str, snap: JobSnapshot) -> list[dict[str, Any]]:
    """One ``model`` item for the weights (every file when none looks like weights), then a
    ``file`` item per other file."""
    try:
        parsed: ModelRef | None = parse_ref(ref)
    except RefError:
        parsed = None
    files = list(snap.files)
    weights = [f for f in files if weight_format(f.name)] or files
    model = _model_item(parsed, ref, weights, snap)
    base = parsed.repo_id if parsed is not None and parsed.kind == "hf" else None
    extras = [
        {"type": "file", "id": f"{base}/{f.name}" if base else f.name, "size_bytes": _size(f)}
        for f in files
        if f not in weights
    ]
    return [model, *extras]


def _size(f: FileProgress) -> int:
    return f.progress.total_bytes or 0


def _model_item(
    parsed: ModelRef | None, ref: str, weights: list[FileProgress], snap: JobSnapshot
) -> dict[str, Any]:
    size = sum(_size(f) for f in weights) if weights else (snap.progress.total_bytes or 0)
    item: dict[str, Any] = {"type": "model"}
    if parsed is not None and parsed.kind == "hf" and parsed.repo_id is not None:
        owner, _, name = parsed.repo_id.rpartition("/")
        page = f"{hf_endpoint()}/{REPO_URL_PREFIX[parsed.repo_type]}{parsed.repo_id}"
        item.update(publisher=owner or name, id=parsed.repo_id, display_name=name, url=page)
    else:
        url = redact_url(ref)
        name = weights[0].name if weights else (urlsplit(url).path.rsplit("/", 1)[-1] or url)
        host = urlsplit(url).hostname or ""
        item.update(publisher=host, id=name, display_name=name, url=url)
    item["size_bytes"] = size
    quant = parsed.quant if parsed is not None else None
    if quant is None:
        quant = next((q for f in weights if (q := split_quant_name(f.name)[0])), None)
    if quant is not None:
        item["quantization"] = {"name": quant}
    fmt = next((x for f in weights if (x := weight_format(f.name))), None)
    if fmt is not None:
        item["format"] = fmt
    return item


class Download(ServiceHandler):
    @tornado.web.authenticated
    async def post(self) -> None:
        body = Body(self.json_body())
        model = body.text("model", required=True, max_length=4096)
        quant = body.text(
            "quantization", max_length=40, pattern=_QUANT, what="a quant name such as Q4_K_M"
        )
        assert model is not None
        job = await self.submit(reference(model, quant))
        snap = await self.settle(job)
        if snap.status == "failed" and job.error is not None:
            raise api_error(job.error)
        self.send_json(lmstudio_job(job))


class Status(ServiceHandler):
    @tornado.web.authenticated
    async def get(self, job_id: str) -> None:
        self.send_json(lmstudio_job(await self.find(job_id)))


ROUTES: list[tuple[str, type[ServiceHandler]]] = [
    ("api/v1/models/download", Download),
    (r"api/v1/models/download/status/([^/]+)", Status),
]
