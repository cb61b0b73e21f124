"""Small asyncio helpers shared by the engine and the transfer."""

from __future__ import annotations

__all__ = ["pick_error"]


def pick_error(
    group: BaseExceptionGroup[BaseException], *preferred: type[BaseException]
) -> BaseException:
    """The one error to report from a task group's failures: the first of the ``preferred``
    kinds (in that order of preference), else the first failure."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [group]
    while stack:
        e = stack.pop(0)
        if isinstance(e, BaseExceptionGroup):
            stack[:0] = e.exceptions
        else:
            leaves.append(e)
    for kind in preferred:
        for e in leaves:
            if isinstance(e, kind):
                return e
    return leaves[0]
