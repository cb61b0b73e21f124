"""The handlers' common ground, written once for both ways to run the service.

Each API's handlers (``_lmstudio``, ``_modeldl``, ``_arw``, ``_native``) subclass
:class:`ServiceHandler`; :func:`nbmodels.server._routes.routes` combines each with the base
class of the host: Jupyter
Server's ``APIHandler`` (its login, token and XSRF rules) or the standalone server's bearer-token
base. Handlers own no download state: they call the public API (``nbmodels.download``, ``Job``)
on a worker thread and shape its answer.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import tornado.web
from tornado.iostream import StreamClosedError

import nbmodels

from .._config import nbmodels_home
from .._progress import JobSnapshot
from ..engine import Job, get_engine
from ..errors import (
    AccessError,
    CanceledError,
    InsufficientSpaceError,
    IntegrityError,
    NbmodelsError,
    NetworkError,
    NotFoundError,
    OfflineError,
    RefError,
)
from ._body import ApiError, parse_json
from ._events import Broadcaster, Stream

__all__ = ["Service", "ServiceConfig", "ServiceHandler", "api_error", "iso_z"]

log = logging.getLogger("nbmodels.server")
T = TypeVar("T")

_JOB_ID = re.compile(r"[0-9a-f]{12}")
#: Statuses during which bytes move (or are checked / unpacked).
TRANSFER_STATUSES = ("downloading", "verifying", "extracting")
#: Key of the job metadata the adapters keep for themselves (the rest is the caller's).
OWN_KEY = "_nbmodels"


@dataclass(frozen=True)
class ServiceConfig:
    """Where the service is mounted and how patient it is.

    ``prefix`` is the mount point (``"/"`` standalone, ``{base_url}nbmodels/`` in Jupyter);
    ``settle`` the longest a POST waits for its job to show how it starts (found / not found /
    already on disk / bytes flowing) before answering.
    """

    prefix: str = "/"
    state_dir: Path | None = None
    settle: float = 5.0
    heartbeat: float = 15.0
    write_timeout: float = 60.0
    event_interval: float = 0.25
    max_pending: int = 1024
    retry_ms: int = 3000

    def arw_state_dir(self) -> Path:
        """ARW's state directory (``GET /probe``): ``$NBMODELS_HOME/arw`` unless configured."""
        return self.state_dir if self.state_dir is not None else nbmodels_home() / "arw"


@dataclass
class Service:
    """What every handler of one mount shares: its configuration and the event broadcaster."""

    config: ServiceConfig = field(default_factory=ServiceConfig)
    events: Broadcaster = field(init=False)

    def __post_init__(self) -> None:
        self.events = Broadcaster(
            interval=self.config.event_interval, max_pending=self.config.max_pending
        )

    def url(self, path: str) -> str:
        """The absolute path of a route of this mount (``model-download/ID/progress``)."""
        return self.config.prefix + path.lstrip("/")


def api_error(exc: BaseException) -> ApiError:
    """The HTTP answer for an error of the engine (or of option checking)."""
    if isinstance(exc, ApiError):
        return exc
    message = str(exc)
    if isinstance(exc, NotFoundError):  # also RepoNotFoundError (missing or private)
        return ApiError(404, "not_found", message, {"candidates": list(exc.candidates)})
    if isinstance(exc, AccessError):
        return ApiError(403, "access_denied", message)
    if isinstance(exc, InsufficientSpaceError):
        details: dict[str, Any] = {"needed_bytes": exc.needed, "available_bytes": exc.available}
        return ApiError(413, "insufficient_storage", message, details)
    if isinstance(exc, IntegrityError):
        details = {"expected": exc.expected, "actual": exc.actual}
        return ApiError(422, "checksum_mismatch", message, details)
    if isinstance(exc, RefError):
        return ApiError(400, "invalid_reference", message)
    if isinstance(exc, OfflineError):
        return ApiError(503, "offline", message)
    if isinstance(exc, NetworkError):
        return ApiError(502, "upstream_error", message)
    if isinstance(exc, CanceledError):
        return ApiError(409, "canceled", message)
    if isinstance(exc, ValueError | TypeError):  # an option the engine refused
        return ApiError(400, "invalid_option", message)
    if isinstance(exc, NbmodelsError):
        return ApiError(500, "download_failed", message)
    return ApiError(500, "internal_error", "Internal error; the server log has the details.")


def iso_z(ts: float) -> str:
    """ISO 8601 UTC with milliseconds and a ``Z`` (``2025-10-03T15:33:23.496Z``)."""
    moment = _dt.datetime.fromtimestamp(ts, tz=_dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def own_info(job: Job) -> dict[str, Any]:
    """What an adapter kept in the job's metadata for itself (``{}`` for other jobs)."""
    meta = job.metadata or {}
    info = meta.get(OWN_KEY)
    return info if isinstance(info, dict) else {}


def user_metadata(job: Job) -> dict[str, Any] | None:
    """The caller's part of the job's metadata."""
    meta = job.metadata
    if meta is None:
        return None
    rest = {k: v for k, v in meta.items() if k != OWN_KEY}
    return rest or None


def settled(snap: JobSnapshot) -> bool:
    """Has the job shown how it starts? Ended, paused, or bytes arriving (which comes after
    the reference was found and the free space checked)."""
    if snap.done or snap.status == "paused":
        return True
    return snap.status in TRANSFER_STATUSES and snap.progress.downloaded_bytes > 0


class ServiceHandler(tornado.web.RequestHandler):
    """Base of every handler: JSON in and out, the error envelope, engine calls off the loop."""

    service: Service

    def initialize(self, service: Service) -> None:
        self.service = service

    # -- input and output -----------------------------------------------------------------------

    def json_body(self) -> dict[str, Any]:
        return parse_json(self.request.body, self.request.headers.get("Content-Type"))

    def no_body(self) -> None:
        """For POSTs that take no body: an empty one, or a JSON one (a cross-site form's
        content types are refused all the same)."""
        if self.request.body or self.request.headers.get("Content-Type"):
            self.json_body()

    def send_json(self, payload: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(payload))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            error = exc
        elif isinstance(exc, tornado.web.HTTPError) or exc is None:
            reason = self._reason or "Error"
            code = re.sub(r"[^a-z]+", "_", reason.lower()).strip("_") or "error"
            error = ApiError(status_code, code, f"{reason}.")
        else:
            error = api_error(exc)  # logged by log_exception
        if error.status != status_code:
            self.set_status(error.status)
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(json.dumps(error.envelope()))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Expected answers (4xx, mapped engine errors) are not logged; anything else is, with
        the method and path only (tornado's own line would print the query: maybe a token)."""
        if isinstance(value, ApiError | tornado.web.HTTPError):
            return
        log.error(
            "nbmodels: unexpected error in %s %s",
            self.request.method,
            self.request.path,
            exc_info=(typ, value, tb),
        )

    # -- the engine -----------------------------------------------------------------------------

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a (possibly blocking) engine call on a worker thread: the loop serving every
        client never waits for SQLite or the engine's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: fn(*args, **kwargs))

    async def submit(self, ref: str, **options: Any) -> Job:
        """``nbmodels.download`` (no widget), its refusals as 400s."""
        try:
            return await self.call(nbmodels.download, ref, display=False, **options)
        except (NbmodelsError, ValueError, TypeError) as exc:
            raise api_error(exc) from None

    async def find(self, job_id: str) -> Job:
        """The job with this id (this process's or the registry's), else 404."""
        job = await self.call(get_engine().job, job_id) if _JOB_ID.fullmatch(job_id) else None
        if job is None:
            raise ApiError(404, "not_found", f"No download with id {job_id[:40]!r}.")
        return job

    async def settle(self, job: Job) -> JobSnapshot:
        """Wait (at most ``config.settle`` seconds) until the job shows how it starts."""
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()

        def wake(_snap: JobSnapshot) -> None:
            loop.call_soon_threadsafe(changed.set)

        unsubscribe = job.subscribe(wake)
        try:
            deadline = loop.time() + self.service.config.settle
            while not settled(job.snapshot()) and loop.time() < deadline:
                changed.clear()
                try:
                    await asyncio.wait_for(changed.wait(), deadline - loop.time())
                except TimeoutError:
                    break
        finally:
            unsubscribe()
        return job.snapshot()


class EventStreamHandler(ServiceHandler):
    """``text/event-stream`` of one channel: ``retry:`` first, then events as the broadcaster
    offers them, a comment as heartbeat. The loop owns the socket: a client that reads slowly
    only makes its own queue coalesce (newest event per job and kind); one that stops reading
    is dropped once its queue overflows or a write waits longer than ``write_timeout``."""

    channel: ClassVar[str] = "native"
    _stream: Stream | None = None

    async def stream(self) -> None:
        config = self.service.config
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")
        stream = Stream(self.channel, config.max_pending)
        self._stream = stream
        self.write(f"retry: {config.retry_ms}\n\n")
        self.service.events.attach(stream)
        try:
            while not stream.closed:
                try:
                    await asyncio.wait_for(self.flush(), config.write_timeout)
                except (StreamClosedError, TimeoutError):
                    break
                if not await stream.wait(config.heartbeat):
                    self.write(": keep-alive\n\n")
                    continue
                if stream.closed or stream.overflowed:
                    break
                self.write("".join(stream.take()))
        finally:
            self.service.events.detach(stream)
            stream.close()
            # A client that left, lags too far or stopped reading: drop the connection (a
            # clean end of a response it will never read would wait on the same socket).
            close = getattr(self.request.connection, "close", None)
            if callable(close):
                close()

    def on_connection_close(self) -> None:
        if self._stream is not None:
            self._stream.close()


class NotFoundHandler(ServiceHandler):
    """Any other path under the mount point: 404 in the envelope."""

    async def prepare(self) -> None:
        pending = super().prepare()  # the host's authentication comes first
        if pending is not None:
            await pending
        raise ApiError(404, "not_found", f"No such route: {self.request.path[:200]}.")


