"""The ``nbmodels`` command. Never imports IPython.

:mod:`._main` dispatches to the subcommands (:mod:`._pull`, :mod:`._info`, :mod:`._cache`),
which share :mod:`._common` and never import each other or :mod:`._main`."""

from ._main import main

__all__ = ["main"]
