"""The remote engine: a Jupyter kernel downloading through the engine of the Jupyter server
that launched it, so every kernel of that server shares one engine (one transfer per file;
downloads outlive kernel restarts). docs/architecture.md, "The remote engine".

``_discover`` finds the launching server (its ``jpserver-<pid>.json``) and checks that its
nbmodels service answers; ``_engine`` (:class:`RemoteEngine`) is the engine surface over the
service's native API; ``_stream`` follows the service's event stream on its own thread;
``_select`` decides, once per process, which engine the API uses (``NBMODELS_ENGINE``).
"""

from ._discover import Discovery, ServerInfo, find_server, launcher_pids, runtime_dirs
from ._engine import RemoteEngine, submit_body
from ._select import (
    ENV,
    MODES,
    all_jobs,
    current_engine,
    engine_for,
    engine_mode,
    in_kernel,
    pin_local,
    reset,
)

__all__ = [
    "ENV",
    "MODES",
    "Discovery",
    "RemoteEngine",
    "ServerInfo",
    "all_jobs",
    "current_engine",
    "engine_for",
    "engine_mode",
    "find_server",
    "in_kernel",
    "launcher_pids",
    "pin_local",
    "reset",
    "runtime_dirs",
    "submit_body",
]
