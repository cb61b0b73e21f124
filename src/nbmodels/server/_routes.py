"""Every route of the four APIs, and the :class:`Service` of one mount with its event formats:
the top of the server package (it imports each API module; they import :mod:`._app`)."""

from __future__ import annotations

import re
from typing import Any

import tornado.web

from ..remote import pin_local
from . import _arw, _lmstudio, _modeldl, _native
from ._app import NotFoundHandler, Service, ServiceConfig, ServiceHandler

__all__ = ["new_service", "routes"]


def new_service(config: ServiceConfig | None = None) -> Service:
    """A mount's shared state, with the event formats of the native and ARW streams. The
    process that mounts the service hosts its engine: it never uses another server's, whatever
    ``NBMODELS_ENGINE`` says (its kernels inherit that variable)."""
    pin_local()
    service = Service(config or ServiceConfig())
    service.events.formatters = {"native": _native.events, "arw": _arw.events}
    return service


HandlerSpec = tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]


def routes(base: type[tornado.web.RequestHandler], service: Service) -> list[HandlerSpec]:
    """Every route of the four APIs under ``service.config.prefix``, each handler combined
    with ``base`` (the host's authentication)."""
    table: list[tuple[str, type[ServiceHandler]]] = [
        *_native.ROUTES,
        *_lmstudio.ROUTES,
        *_modeldl.ROUTES,
        *_arw.ROUTES,
        (".*", NotFoundHandler),
    ]
    prefix = re.escape(service.config.prefix)
    out: list[HandlerSpec] = []
    for pattern, handler in table:
        combined = type(handler.__name__, (handler, base), {})
        out.append((f"{prefix}{pattern}", combined, {"service": service}))
    return out
