"""Front-end hooks: how the notebook layer plugs into the core without the core importing it.

The notebook layer (``nbmodels.notebook``, the only package that imports IPython, anywidget and
traitlets) registers its functions here when it is imported (:func:`register_front_end`). The
core only looks them up: a :class:`~nbmodels.Job` displays as its widget and waits with a text
progress line, and :func:`nbmodels.download` shows the job it started. The API loads the
notebook layer by name (:func:`load_front_end`, a plugin load) only when it runs inside IPython
(:func:`in_ipython`), so ``import nbmodels`` in a script imports no UI library.

The hooks receive :class:`~nbmodels.Job` objects; they are typed ``Any`` here because this
module sits below ``_job.py``, which uses it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .._options import Options

__all__ = [
    "FRONT_END_MODULE",
    "FrontEnd",
    "MimeBundle",
    "front_end",
    "in_ipython",
    "load_front_end",
    "register_front_end",
    "show",
]

#: The module that registers the front end when imported.
FRONT_END_MODULE = "nbmodels.notebook"

#: What ``_repr_mimebundle_`` returns: the data, or ``(data, metadata)``.
MimeBundle = dict[str, Any] | tuple[dict[str, Any], dict[str, Any]] | None


class Display(Protocol):
    """Shows a job just submitted (``explicit``: the user passed ``display=True``)."""

    def __call__(self, job: Any, explicit: bool = False) -> None: ...


class Bundle(Protocol):
    """``Job._repr_mimebundle_``: the job's widget, or its text line."""

    def __call__(self, job: Any, **kwargs: Any) -> Any: ...


class Waiter(Protocol):
    """``Job.wait()`` without a timeout: ``result`` is the plain wait (it takes a timeout)."""

    def __call__(self, job: Any, result: Callable[[float | None], Path]) -> Path: ...


@dataclass(frozen=True, slots=True)
class FrontEnd:
    """The functions of a registered front end."""

    display: Display
    mimebundle: Bundle
    waiter: Waiter
    panel: Callable[[], Any]
    load_extension: Callable[[Any], None]
    unload_extension: Callable[[Any], None]


_registered: FrontEnd | None = None


def register_front_end(
    *,
    display: Display,
    mimebundle: Bundle,
    waiter: Waiter,
    panel: Callable[[], Any],
    load_extension: Callable[[Any], None],
    unload_extension: Callable[[Any], None],
) -> None:
    """Called by the front end when it is imported; a later registration replaces it."""
    global _registered
    _registered = FrontEnd(display, mimebundle, waiter, panel, load_extension, unload_extension)


def front_end() -> FrontEnd | None:
    """The registered front end, if one was loaded (this never imports it)."""
    return _registered


def load_front_end() -> FrontEnd:
    """The front end, imported by name first if needed; ``ImportError`` when it cannot be."""
    if _registered is None:
        importlib.import_module(FRONT_END_MODULE)
    if _registered is None:
        raise ImportError(f"{FRONT_END_MODULE} was imported but registered no front end.")
    return _registered


def in_ipython() -> bool:
    """Running in an IPython shell or a Jupyter kernel (it is imported already; never by us)."""
    return "ipykernel" in sys.modules or "IPython" in sys.modules


def show(job: Any, options: Options) -> None:
    """What :func:`nbmodels.download` does with the job it started: in IPython (without
    ``%load_ext`` too), the front end shows it (its widget in a kernel, its text line in terminal
    IPython); ``display=False`` shows nothing."""
    if options.display is False:
        return
    hooks = load_front_end() if _registered is None and in_ipython() else _registered
    if hooks is not None:
        hooks.display(job, explicit=options.display is True)
