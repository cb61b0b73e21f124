"""The notebook layer: ``%load_ext nbmodels``, the ``%model_download`` magic, the job widget and
the panel (anywidget; the ESM and CSS ship in ``static/``), and the text fallback.

This is the only package that imports IPython, anywidget and traitlets (docs/notebook.md); the core
reaches it lazily through :func:`auto_display`, :func:`job_mimebundle` and
:func:`wait_with_progress`.
"""

from __future__ import annotations

from ._display import auto_display, job_mimebundle, panel, widget_for
from ._extension import load_ipython_extension, unload_ipython_extension
from ._text import wait_with_progress

__all__ = [
    "auto_display",
    "job_mimebundle",
    "load_ipython_extension",
    "panel",
    "unload_ipython_extension",
    "wait_with_progress",
    "widget_for",
]
