"""``%load_ext nbmodels`` / ``%unload_ext`` / ``%reload_ext`` (idempotent, leaves no thread):
the magics, and a one-line ``text/plain`` form of ``ModelCard`` for cell outputs."""

from __future__ import annotations

from typing import Any

from .._redact import redact_url
from ._context import quiet_hub_progress_bars
from ._publisher import get_publisher

__all__ = ["load_ipython_extension", "unload_ipython_extension"]

_MAGICS = (("line", "model_download"), ("cell", "model_download"), ("line", "model_panel"))
#: ``ModelCard`` of ``nbmodels.inspect`` (by name: registering it imports nothing).
_CARD_TYPE = ("nbmodels.cards._card", "ModelCard")


def _card_text(card: Any, p: Any, _cycle: bool) -> None:
    """A ModelCard as a cell's ``Out``: one line (``%model_download --inspect`` has just printed
    the details; the dataclass repr would be a screenful)."""
    ref = redact_url(card.ref) if "://" in card.ref else card.ref
    p.text(f"<ModelCard {ref!r} {card.summary()}>")


def _plain_text_formatter(ipython: Any) -> Any | None:
    formatter = getattr(ipython, "display_formatter", None)
    return None if formatter is None else formatter.formatters.get("text/plain")


def load_ipython_extension(ipython: Any) -> None:
    """Register the magics (again, on ``%reload_ext``) and silence huggingface_hub's bars."""
    from ._magic import ModelMagics

    quiet_hub_progress_bars()
    ipython.register_magics(ModelMagics)
    text = _plain_text_formatter(ipython)
    if text is not None:
        text.for_type_by_name(*_CARD_TYPE, _card_text)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the magics and stop the publisher thread. Widgets already shown stay live: their
    next update starts the publisher again."""
    manager = ipython.magics_manager
    for kind, name in _MAGICS:
        manager.magics[kind].pop(name, None)
    manager.registry.pop("ModelMagics", None)
    text = _plain_text_formatter(ipython)
    if text is not None:
        text.pop(".".join(_CARD_TYPE), None)
    get_publisher().stop()
