"""The notebook layer: ``%load_ext nbmodels``, the ``%model_download`` magic, the job widget and
the panel (anywidget; the ESM and CSS ship in ``static/``), and the text fallback.

This is the only package that imports IPython, anywidget and traitlets (docs/notebook.md); the core
reaches it lazily through :func:`auto_display` and :func:`job_mimebundle`.
"""

from __future__ import annotations

from ._display import auto_display, job_mimebundle, panel, widget_for
from ._extension import load_ipython_extension, unload_ipython_extension

__all__ = [
    "auto_display",
    "job_mimebundle",
    "load_ipython_extension",
    "panel",
    "unload_ipython_extension",
    "widget_for",
]
