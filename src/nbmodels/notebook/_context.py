"""Where the notebook layer is running: the IPython shell, widget support, whether the current
code is a widget's message handler (which must never display anything), and huggingface_hub's
own progress bars kept out of it."""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import os
import sys
from collections.abc import Iterator
from typing import Any

__all__ = [
    "current_shell",
    "in_widget_handler",
    "is_kernel",
    "quiet_hub_progress_bars",
    "widget_handler",
    "widgets_supported",
]

_IN_HANDLER: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "nbmodels_in_widget_handler", default=False
)

#: ``NBMODELS_WIDGETS=0`` forces the text fallback, ``1`` forces widgets.
WIDGETS_ENV = "NBMODELS_WIDGETS"


@contextlib.contextmanager
def widget_handler() -> Iterator[None]:
    """Mark the code inside as a widget message handler (it may run on a kernel subshell thread
    while another cell runs: anything it displayed would land in an unrelated output)."""
    token = _IN_HANDLER.set(True)
    try:
        yield
    finally:
        _IN_HANDLER.reset(token)


def in_widget_handler() -> bool:
    return _IN_HANDLER.get()


def current_shell() -> Any | None:
    """The running IPython shell, or None (plain Python; IPython not even imported)."""
    if "IPython" not in sys.modules:
        return None
    from IPython import get_ipython

    return get_ipython()


def widgets_supported(shell: Any | None) -> bool:
    """True in a Jupyter kernel (JupyterLab, Notebook, VS Code, Colab: all run ipykernel's
    ``ZMQInteractiveShell``) with anywidget installed; False in terminal IPython."""
    forced = os.environ.get(WIDGETS_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1" and importlib.util.find_spec("anywidget") is not None
    return is_kernel(shell) and importlib.util.find_spec("anywidget") is not None


def is_kernel(shell: Any | None) -> bool:
    """True in a Jupyter kernel (its shell is ipykernel's ``ZMQInteractiveShell``)."""
    if shell is None:
        return False
    return any(cls.__name__ == "ZMQInteractiveShell" for cls in type(shell).__mro__)


def quiet_hub_progress_bars() -> None:
    """huggingface_hub's own tqdm bars never appear next to ours (unless the user set
    ``HF_HUB_DISABLE_PROGRESS_BARS=0`` on purpose).

    This imports nothing: importing ``huggingface_hub.utils.tqdm`` imports ``tqdm.auto``, which
    in a kernel without ipywidgets prints ``TqdmWarning: IProgress not found``. The environment
    variable covers a huggingface_hub imported later; one imported already is told directly.
    """
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if os.environ["HF_HUB_DISABLE_PROGRESS_BARS"].strip().lower() in ("0", "false", "no", "off"):
        return
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:  # read once, when huggingface_hub.utils.tqdm is imported
        constants.HF_HUB_DISABLE_PROGRESS_BARS = True
    bars = sys.modules.get("huggingface_hub.utils.tqdm")
    if bars is not None:
        bars.disable_progress_bars()
