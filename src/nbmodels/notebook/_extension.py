"""``%load_ext nbmodels`` / ``%unload_ext`` / ``%reload_ext`` (idempotent, leaves no thread)."""

from __future__ import annotations

import os
from typing import Any

from ._publisher import get_publisher

__all__ = ["load_ipython_extension", "quiet_hub_progress_bars", "unload_ipython_extension"]

_MAGICS = (("line", "model_download"), ("cell", "model_download"), ("line", "model_panel"))


def quiet_hub_progress_bars() -> None:
    """huggingface_hub's own tqdm bars never appear next to ours (unless the user set
    ``HF_HUB_DISABLE_PROGRESS_BARS=0`` on purpose)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if os.environ["HF_HUB_DISABLE_PROGRESS_BARS"].strip().lower() in ("0", "false", "no", "off"):
        return
    from huggingface_hub.utils import disable_progress_bars  # type: ignore[attr-defined]

    disable_progress_bars()


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics (again, on ``%reload_ext``) and silence huggingface_hub's bars."""
    from ._magic import ModelMagics

    quiet_hub_progress_bars()
    ipython.register_magics(ModelMagics)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the magics and stop the publisher thread. Widgets already shown stay live: their
    next update starts the publisher again."""
    manager = ipython.magics_manager
    for kind, name in _MAGICS:
        manager.magics[kind].pop(name, None)
    manager.registry.pop("ModelMagics", None)
    get_publisher().stop()
