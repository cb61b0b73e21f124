"""The notebook layer: ``%load_ext nbmodels``, the ``%model_download`` magic, the job widget and
the panel (anywidget; the ESM and CSS ship in ``static/``), and the text fallback.

This is the only package that imports IPython, anywidget and traitlets (docs/notebook.md); the core
never imports it: importing it registers its functions with the core's front-end hooks
(:func:`nbmodels.engine.register_front_end`), and the API imports it by name when it runs in
IPython.
"""

from __future__ import annotations

from ..engine import register_front_end
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

register_front_end(
    display=auto_display,
    mimebundle=job_mimebundle,
    waiter=wait_with_progress,
    panel=panel,
    load_extension=load_ipython_extension,
    unload_extension=unload_ipython_extension,
)
