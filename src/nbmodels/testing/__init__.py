"""A local Hugging Face Hub emulator for offline tests (and the offline demo).

``HubEmulator`` serves generated repos over real HTTP on 127.0.0.1, speaking the protocol that
huggingface_hub and nbmodels use: ``resolve`` URLs with LFS redirects to a separate CDN origin,
the listing API, refs, gated and private repos, Hub error codes. Tests can inject faults, throttle
the CDN per connection and inspect every request. Only the standard library is used.

    from nbmodels.testing import GeneratedFile, HubEmulator

    with HubEmulator() as hub:
        hub.add_repo("org/model", {"model.gguf": GeneratedFile(10**9, seed=1)})
        ...  # point HF_ENDPOINT (or endpoint=) at hub.endpoint

With pytest, the ``hf_hub`` and ``hf_hub_env`` fixtures (from the plugin this package registers)
give a started emulator holding :func:`standard_repos`.

The names below are imported on first use, so importing this package (and the pytest plugin)
costs almost nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._content import GeneratedFile
    from ._demo import DemoRepos, StandardRepos, demo_repos, standard_repos
    from ._emulator import HubEmulator
    from ._faults import Fault, FaultKind, Faults
    from ._gguf import gguf_file
    from ._log import RequestRecord
    from ._repo import Commit, FileEntry, HubFile, HubRepo
    from ._safetensors import safetensors_file
    from ._service import ServiceRepos, service_repos

__all__ = [
    "Commit",
    "DemoRepos",
    "Fault",
    "FaultKind",
    "Faults",
    "FileEntry",
    "GeneratedFile",
    "HubEmulator",
    "HubFile",
    "HubRepo",
    "RequestRecord",
    "ServiceRepos",
    "StandardRepos",
    "demo_repos",
    "gguf_file",
    "safetensors_file",
    "service_repos",
    "standard_repos",
]

_WHERE = {
    "Commit": "_repo",
    "DemoRepos": "_demo",
    "Fault": "_faults",
    "FaultKind": "_faults",
    "Faults": "_faults",
    "FileEntry": "_repo",
    "GeneratedFile": "_content",
    "HubEmulator": "_emulator",
    "HubFile": "_repo",
    "HubRepo": "_repo",
    "RequestRecord": "_log",
    "ServiceRepos": "_service",
    "StandardRepos": "_demo",
    "demo_repos": "_demo",
    "gguf_file": "_gguf",
    "safetensors_file": "_safetensors",
    "service_repos": "_service",
    "standard_repos": "_demo",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
