"""Work handed to a thread pool, or done by the caller once the interpreter is shutting down: after the main thread
has ended (atexit handlers, daemon threads still at work) pools take no more work ("cannot schedule new futures
after interpreter shutdown")."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

__all__ = ["submit"]

T = TypeVar("T")


def submit(pool: Executor, fn: Callable[..., T], *args: Any) -> Future[T]:
    """``pool.submit(fn, *args)``, or ``fn(*args)`` run here as a finished future when the pool takes no more
    work (its error, if any, is raised by ``result()`` in its turn, as from a thread)."""
    try:
        return pool.submit(fn, *args)
    except RuntimeError:
        fut: Future[T] = Future()
        try:
            fut.set_result(fn(*args))
        except Exception as exc:  # noqa: BLE001 - raised in its turn, as from a thread
            fut.set_exception(exc)
        return fut
