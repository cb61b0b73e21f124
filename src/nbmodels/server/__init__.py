"""nbmodels as an HTTP service: the engine behind the LM Studio, model-download, ARW and native
APIs, with live progress over Server-Sent Events (``docs/api.md``).

Two ways to run it, one set of handlers (tornado, Jupyter Server's own framework):

- **Jupyter Server extension**, enabled when nbmodels is installed (the data file
  ``jupyter_server_config.d/nbmodels.json``): routes under ``{base_url}nbmodels/``, Jupyter's
  own login, token and XSRF rules; the server process owns one engine, so downloads go on while
  kernels restart.
- **Standalone**: ``nbmodels serve`` (:mod:`nbmodels.server._standalone`; its command line is
  :mod:`nbmodels.cli._serve`).

Importing this package imports neither tornado nor Jupyter Server.
"""

from __future__ import annotations

from typing import Any

from ._auth import Access, host_is_loopback, new_token
from ._standalone import DEFAULT_PORT, serve

__all__ = ["DEFAULT_PORT", "Access", "host_is_loopback", "new_token", "serve"]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "nbmodels.server"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from ._jupyter import load

    load(serverapp)
