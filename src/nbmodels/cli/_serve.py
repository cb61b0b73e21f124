"""``nbmodels serve``: the command line of the standalone HTTP service (:mod:`nbmodels.server`).

    nbmodels serve [--host 127.0.0.1] [--port 8765] [--token T] [--allow-origin ORIGIN ...]

Binds loopback by default; another ``--host`` needs a token (``--token`` or
``NBMODELS_SERVER_TOKEN``), else one is generated and printed in the URL, as ``jupyter server``
does. Needs tornado (the ``server`` extra), imported only when the command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os

from ..server import DEFAULT_PORT, Access, host_is_loopback, new_token, serve
from ._common import Io, Parser, new_parser

__all__ = ["build_serve", "run_serve"]


def build_serve(prog: str) -> Parser:
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


def run_serve(ns: argparse.Namespace, io: Io) -> int:
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
