"""The service on its own tornado server (``nbmodels serve``, whose command line is
:mod:`nbmodels.cli._serve`).

Binds loopback by default and then checks ``Host`` (DNS rebinding); another ``--host`` needs a
token from ``--token`` or ``NBMODELS_SERVER_TOKEN`` (else one is generated and printed in the URL,
as ``jupyter server`` does). Ctrl-C or SIGTERM stops it: running jobs stop with their partial data
and resume state kept (``history`` shows them ``interrupted``; the same request resumes them).
Imports neither Jupyter Server nor IPython.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import TYPE_CHECKING, Any

from ..engine import get_engine
from ._auth import Access

if TYPE_CHECKING:
    import tornado.web

    from ._app import Service

__all__ = ["DEFAULT_PORT", "make_app", "serve"]

log = logging.getLogger("nbmodels.server")

DEFAULT_PORT = 8765
#: Bodies beyond this are cut off by tornado itself (the handlers answer 413 above 64 KiB).
MAX_TRANSPORT_BODY = 8 << 20


def _base_class() -> type[tornado.web.RequestHandler]:
    import tornado.web

    from ._body import ApiError

    class StandaloneHandler(tornado.web.RequestHandler):
        """Bearer-token authentication, the ``Host`` check and CORS of ``nbmodels serve``."""

        @property
        def access(self) -> Access:
            access: Access = self.settings["nbmodels_access"]
            return access

        def prepare(self) -> None:
            if not self.access.host_ok(self.request.host):
                raise ApiError(
                    403,
                    "forbidden_host",
                    "This server only answers requests addressed to localhost or 127.0.0.1 "
                    "(start it with --host to serve another name).",
                )
            origin = self.request.headers.get("Origin")
            if self.access.origin_allowed(origin):
                self.set_header("Access-Control-Allow-Origin", origin or "")
                self.set_header("Vary", "Origin")
            if self.request.method == "OPTIONS":
                return
            query = self.get_query_argument("token", None) if self.request.method == "GET" else None
            if not self.access.token_ok(self.request.headers, query):
                self.set_header("WWW-Authenticate", 'Bearer realm="nbmodels"')
                raise ApiError(
                    401,
                    "unauthorized",
                    "Send the server's token: Authorization: Bearer <token> "
                    "(nbmodels serve printed it, or set it with --token / NBMODELS_SERVER_TOKEN).",
                )

        def get_current_user(self) -> str:
            return "token"  # prepare() let the request through

        def options(self, *args: Any) -> None:
            if not self.access.origin_allowed(self.request.headers.get("Origin")):
                raise ApiError(403, "forbidden_origin", "Cross-origin requests are not allowed.")
            self.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
            self.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type")
            self.set_header("Access-Control-Max-Age", "600")
            self.set_status(204)
            self.finish()

    return StandaloneHandler


def _log_request(handler: tornado.web.RequestHandler) -> None:
    """One line per request: status, method, path (never the query: it may hold the token)."""
    status = handler.get_status()
    ms = 1000.0 * handler.request.request_time()
    level = logging.INFO if status < 400 else logging.WARNING
    log.log(level, "%d %s %s %.1fms", status, handler.request.method, handler.request.path, ms)


def make_app(service: Service, access: Access) -> tornado.web.Application:
    import tornado.web

    from ._routes import routes

    return tornado.web.Application(
        routes(_base_class(), service),
        nbmodels_access=access,
        log_function=_log_request,
        xsrf_cookies=False,
        compress_response=False,
    )


async def serve(
    host: str,
    port: int,
    access: Access,
    *,
    announce: str | None = None,
    out: Any = None,
) -> None:
    """Serve until SIGINT / SIGTERM, then stop cleanly (jobs keep their partial data)."""
    import tornado.httpserver
    import tornado.netutil

    from ._routes import new_service

    service = new_service()
    app = make_app(service, access)
    sockets = tornado.netutil.bind_sockets(port, host)
    server = tornado.httpserver.HTTPServer(app, max_body_size=MAX_TRANSPORT_BODY)
    server.add_sockets(sockets)
    bound = sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound}/"
    stream = out or sys.stdout
    stream.write(f"nbmodels serve: listening on {url}{announce or ''}\n")
    stream.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("nbmodels serve: stopping (running jobs keep their partial data)")
    server.stop()
    service.events.close_all()
    await loop.run_in_executor(None, get_engine().close)
    await asyncio.wait_for(server.close_all_connections(), 10)
