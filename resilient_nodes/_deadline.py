"""The enclosing time budget, as seen by a retry deciding whether to sleep.

Async code asks anyio (``current_effective_deadline`` already folds in every
enclosing cancel scope, ours and the caller's). Sync code has no cancel scopes, so
the sync timeout layer publishes its deadline (on the ``time.monotonic`` clock) in
a context variable, which worker threads inherit through ``copy_context``.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["async_remaining", "sync_deadline_scope", "sync_remaining"]

_sync_deadline: ContextVar[float] = ContextVar("resilient_nodes_sync_deadline", default=math.inf)


def sync_remaining() -> float:
    """Seconds left before the innermost enclosing sync deadline (inf if none)."""
    deadline = _sync_deadline.get()
    if deadline == math.inf:
        return math.inf
    return deadline - time.monotonic()


@contextmanager
def sync_deadline_scope(seconds: float) -> Iterator[float]:
    """Publish a deadline *seconds* from now (never later than an enclosing one)."""
    deadline = min(_sync_deadline.get(), time.monotonic() + seconds)
    token = _sync_deadline.set(deadline)
    try:
        yield deadline
    finally:
        _sync_deadline.reset(token)


def async_remaining() -> float:
    """Seconds left before the effective deadline of the enclosing cancel scopes."""
    deadline = anyio.current_effective_deadline()
    if deadline == math.inf:
        return math.inf
    return deadline - anyio.current_time()
