"""Small asyncio helpers shared by the engine, the transfer and the synchronous front doors
(``inspect``, ``verify``)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["pick_error", "run_blocking", "run_sync"]

T = TypeVar("T")


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


async def run_blocking(fn: Callable[[], T], abort: Callable[[], None], name: str) -> T:
    """Run ``fn`` on a fresh daemon thread and return its result.

    A daemon thread, not the loop's executor: a call blocked on a socket never holds up
    interpreter exit, and there is no pool size to exhaust. If the awaiting task is cancelled,
    ``abort()`` is called (it must make ``fn`` return soon, e.g. by shutting its socket down)
    and the cancellation waits for the thread to end, so nothing ``fn`` touches (a file
    descriptor) is used after this returns.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(outcome: BaseException | None, value: T | None) -> None:
        if done.done():
            return
        if outcome is None:
            done.set_result(value)  # type: ignore[arg-type]
        else:
            done.set_exception(outcome)

    def main() -> None:
        try:
            value = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            outcome: BaseException | None = exc
            value = None
        else:
            outcome = None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, outcome, value)

    threading.Thread(target=main, name=name, daemon=True).start()
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        abort()
        while not done.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([done])
        if not done.cancelled():
            done.exception()  # retrieved: the cancellation is what gets reported
        raise


def run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``factory()`` to completion on a fresh event loop in a worker thread and return its
    result (works whether or not the calling thread runs a loop, e.g. in a notebook)."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="nbmodels-remote") as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()
