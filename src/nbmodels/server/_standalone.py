"""``nbmodels serve``: the service on its own tornado server.

    nbmodels serve [--host 127.0.0.1] [--port 8765] [--token T] [--allow-origin ORIGIN ...]

Binds loopback by default and then checks ``Host`` (DNS rebinding); another ``--host`` needs a
token from ``--token`` or ``NBMODELS_SERVER_TOKEN`` (else one is generated and printed in the URL,
as ``jupyter server`` does). Ctrl-C or SIGTERM stops it: running jobs stop with their partial data
and resume state kept (``history`` shows them ``interrupted``; the same request resumes them).
Imports neither Jupyter Server nor IPython.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from ..engine._engine import get_engine
from ._auth import Access, host_is_loopback, new_token

if TYPE_CHECKING:
    import tornado.web

    from ..cli._main import Io, Parser
    from ._app import Service

__all__ = ["build", "make_app", "run", "serve"]

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

    from ._app import routes

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

    from ._app import Service

    service = Service()
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


def build(prog: str) -> Parser:
    from ..cli._main import new_parser

    parser = new_parser(
        prog,
        "Serve the download engine over HTTP: the LM Studio, model-download, ARW and native "
        "APIs with live events (docs/api.md). Stops on Ctrl-C / SIGTERM; running jobs keep "
        "their partial data and resume when asked again.",
    )
    parser.add_argument(
        "--host",
        default=None,
        help="address to bind (default 127.0.0.1; another one needs a token and turns the "
        "Host check off)",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any)"
    )
    parser.add_argument(
        "--token",
        default=None,
        help="the token clients send (default: $NBMODELS_SERVER_TOKEN, else a new one, printed)",
    )
    parser.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser origin allowed cross-origin requests (repeatable; '*' for any)",
    )
    return parser


def run(ns: argparse.Namespace, io: Io) -> int:
    try:
        import tornado  # noqa: F401
    except ImportError:
        io.error("nbmodels serve needs tornado: pip install 'nbmodels[server]'.")
        return 1
    host = ns.host or "127.0.0.1"
    token = ns.token or os.environ.get("NBMODELS_SERVER_TOKEN") or None
    if not host_is_loopback(host) and token is None:
        io.error(
            f"refusing to serve on {host} without a token: pass --token T or set "
            "NBMODELS_SERVER_TOKEN (anyone who can reach the port could download to this disk)."
        )
        return 2
    if not 0 <= ns.port <= 65535:
        io.error(f"--port must be between 0 and 65535, got {ns.port}.")
        return 2
    announce = None
    if token is None:
        token = new_token()
        announce = f"?token={token}"
    access = Access(token, check_host=ns.host is None, allow_origins=tuple(ns.allow_origin))
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=io.err
    )
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # a line per request is too much
    try:
        asyncio.run(serve(host, ns.port, access, announce=announce, out=io.out))
    except OSError as exc:
        io.error(f"cannot listen on {host}:{ns.port}: {exc.strerror or exc}.")
        return 1
    return 0
