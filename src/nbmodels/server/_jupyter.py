"""The Jupyter Server extension: the service's routes under ``{base_url}nbmodels/``.

The handlers are combined with Jupyter Server's ``APIHandler``, so Jupyter decides who may call
them: its token (``Authorization: token <t>`` or ``Bearer <t>``, or ``?token=``), its login
cookie with the ``_xsrf`` check for POSTs from a browser, its ``Host`` and ``Origin`` checks.
There is no second token. The server process owns one engine (started on the first download).
"""

from __future__ import annotations

from typing import Any

from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from ._app import ServiceConfig
from ._routes import new_service, routes

__all__ = ["load"]


def load(serverapp: Any) -> None:
    """``_load_jupyter_server_extension``: add the routes to the server's web application."""
    web_app = serverapp.web_app
    prefix = url_path_join(web_app.settings["base_url"], "nbmodels") + "/"
    service = new_service(ServiceConfig(prefix=prefix))
    web_app.add_handlers(".*$", routes(APIHandler, service))
    serverapp.log.info("nbmodels: download service at %s", prefix)
