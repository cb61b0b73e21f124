"""Which engine this process uses: its own, or the engine of the Jupyter server that launched
it (``NBMODELS_ENGINE``: ``auto``, the default; ``local``; ``server``).

``auto`` uses the server's engine in a Jupyter kernel whose launching server has the nbmodels
extension (:func:`~._discover.find_server`), and this process's own engine everywhere else,
silently: terminal IPython, a script, a kernel started by plain jupyter_client, Colab, a server
without the extension or that does not answer. ``server`` insists (an error that says why when
there is no such server); ``local`` never looks. The choice is made once per process, at the
first download (or listing), and kept. A process that *hosts* the service (the Jupyter Server
extension, ``nbmodels serve``) always uses its own engine (:func:`pin_local`): kernels inherit
the server's environment, ``NBMODELS_ENGINE`` included.

A download given a ``token`` runs in this process: the service never takes a token over HTTP
(it uses the server's own Hugging Face login). So does an offline one (``offline=True`` or
``HF_HUB_OFFLINE``): offline means no request at all, not even to the server. And so does a
download into the Hugging Face cache when this process's cache is not the server's (the kernel
set its own ``HF_HOME`` or ``HF_HUB_CACHE``): the file must land where this process looks.
"""

from __future__ import annotations

import os
import sys
import threading

from .._config import env_flag, hf_cache_dir
from .._options import Options
from ..engine import Job, JobEngine, get_engine
from ..errors import NbmodelsError
from ._discover import find_server
from ._engine import RemoteEngine

__all__ = [
    "ENV",
    "MODES",
    "all_jobs",
    "current_engine",
    "engine_for",
    "engine_mode",
    "in_kernel",
    "pin_local",
    "reset",
]

ENV = "NBMODELS_ENGINE"
MODES = ("auto", "local", "server")

_lock = threading.Lock()
_pinned = False
_remote: RemoteEngine | None = None
#: Why there is no server engine, once looked for (None: not looked for yet).
_missing: str | None = None


def engine_mode() -> str:
    """``$NBMODELS_ENGINE``, checked: ``auto`` (unset), ``local`` or ``server``."""
    raw = os.environ.get(ENV, "").strip().lower() or "auto"
    if raw not in MODES:
        raise NbmodelsError(
            f"{ENV} is {raw[:40]!r}, which is not an engine choice.",
            hint="Set it to auto (the default: the Jupyter server's engine when there is one), "
            "local (this process's own) or server.",
        )
    return raw


def in_kernel() -> bool:
    """This process is a Jupyter kernel (ipykernel's application is running in it; nothing
    is imported to find out)."""
    module = sys.modules.get("ipykernel.kernelapp")
    app = getattr(module, "IPKernelApp", None)
    initialized = getattr(app, "initialized", None)
    return bool(callable(initialized) and initialized())


def pin_local() -> None:
    """This process hosts the service: it always uses its own engine."""
    global _pinned
    _pinned = True


def current_engine() -> JobEngine:
    """The engine of this process's downloads (see the module docstring)."""
    mode = engine_mode()
    if _pinned or mode == "local":
        return get_engine()
    remote = _server_engine(mode)
    return get_engine() if remote is None else remote


def engine_for(options: Options) -> JobEngine:
    """The engine of one download: this process's own when it carries a token (a token never
    travels to the service) or is offline (offline means no request at all, not even one to
    the server on this machine; and there is nothing to share: the files are on disk), or when
    it goes to this process's Hugging Face cache and the server's engine uses another one."""
    if options.token is not None or options.offline or env_flag("HF_HUB_OFFLINE"):
        engine_mode()  # a wrong value is still an error
        return get_engine()
    engine = current_engine()
    if (
        isinstance(engine, RemoteEngine)
        and options.dir is None
        and not engine.server.shares_cache(hf_cache_dir())
    ):
        return get_engine()
    return engine


def all_jobs() -> list[Job]:
    """This process's jobs, newest first: on the server's engine, then any of its own."""
    engine = current_engine()
    jobs = engine.jobs()
    local = get_engine()
    if engine is not local:
        jobs += local.jobs()
    return jobs


def _server_engine(mode: str) -> RemoteEngine | None:
    global _remote, _missing
    with _lock:
        if _remote is not None and not _remote.closed:
            return _remote
        if _missing is None and (mode == "server" or in_kernel()):
            found = find_server()
            if found.server is not None:
                _remote = RemoteEngine(found.server)
                return _remote
            _missing = found.reason
        missing = _missing
    if mode == "server":
        raise NbmodelsError(
            f"{ENV}=server, but {missing or 'this process is not a Jupyter kernel'}.",
            hint="Run it in a kernel of a Jupyter server that has nbmodels installed, or set "
            f"{ENV}=auto (or local) to download in this process.",
        )
    return None


def reset() -> None:
    """Forget the choice (and close the server engine's handle): the next download looks
    again. For tests, and for a notebook whose server was restarted."""
    global _remote, _missing, _pinned
    with _lock:
        remote, _remote, _missing, _pinned = _remote, None, None, False
    if remote is not None:
        remote.close()
