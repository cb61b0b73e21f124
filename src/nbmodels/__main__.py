"""``python -m nbmodels`` — the ``nbmodels`` command (see :mod:`nbmodels.cli`)."""

from __future__ import annotations

import sys

from .cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
