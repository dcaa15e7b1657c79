"""One timer per asyncio event loop for the deadlines of every timeout layer.

anyio gives a cancel scope with a deadline a ``loop.call_at`` timer of its own:
per call a ``TimerHandle``, a bound method and a copy of the task's context
variables. A call that ends in time (the usual case) cancels that handle, which
then stays in the loop's heap, still holding the copied context (inside
LangGraph: the run's config and callbacks), until its time comes or asyncio
purges the heap. With thousands of calls in flight those are thousands more
objects for the garbage collector.

So on asyncio the timeout layer enters a cancel scope *without* a deadline,
writes the deadline into the scope (where ``anyio.current_effective_deadline``
reads it, so the retry layer and user code still see it) and registers it here.
A `DeadlineQueue` keeps every pending deadline of its loop in a heap, armed on
one loop timer (created in an empty context) for the earliest; when it fires it
calls ``scope.cancel()``, which is what anyio's own timer does. The cancellation
itself (shields, nested scopes, child tasks) stays anyio's.

A finished call only marks its heap entry dead (nothing is searched); dead
entries go when the loop has no call in flight, when they reach the top of the
heap, or when they outnumber the live ones. The timer is re-armed only when a
deadline earlier than the armed one arrives, so calls with the same timeout
share one timer.
"""

from __future__ import annotations

import contextvars
import heapq
import itertools
import math
import threading
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import asyncio

__all__ = ["DeadlineQueue", "deadline_queue", "scope_takes_deadline"]

_COMPACT_SLACK: Final = 64
"""Dead entries tolerated beyond as many as there are live ones."""


class DeadlineQueue:
    """The pending deadlines of one event loop (use it from that loop only)."""

    __slots__ = ("_armed_at", "_context", "_handle", "_heap", "_live", "_loop", "_seq")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # Entries are [deadline, sequence number, scope or None]: lists compare
        # by deadline, then by the unique number, never by the scope.
        self._heap: list[list[Any]] = []
        self._live = 0
        self._seq = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = math.inf
        # The timer runs in an empty context of its own: it must not keep a
        # caller's context variables alive, and one context per loop is never
        # entered twice at once.
        self._context = contextvars.Context()

    def add(self, deadline: float, scope: Any) -> list[Any]:
        """Cancel *scope* at *deadline* (loop time); returns the entry for `remove`."""
        entry = [deadline, next(self._seq), scope]
        heapq.heappush(self._heap, entry)
        self._live += 1
        if deadline < self._armed_at:
            self._arm(deadline)
        return entry

    def remove(self, entry: list[Any]) -> None:
        """Forget *entry* (its call is over); a no-op once it has fired."""
        if entry[2] is None:
            return
        entry[2] = None
        self._live -= 1
        if not self._live:
            self._heap.clear()
        elif len(self._heap) > 2 * self._live + _COMPACT_SLACK:
            self._heap = [item for item in self._heap if item[2] is not None]
            heapq.heapify(self._heap)

    @property
    def pending(self) -> int:
        """How many registered deadlines have neither fired nor been removed."""
        return self._live

    def _arm(self, deadline: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed_at = deadline
        self._handle = self._loop.call_at(deadline, self._fire, context=self._context)

    def _fire(self) -> None:
        self._handle = None
        self._armed_at = math.inf
        heap = self._heap
        now = self._loop.time()
        try:
            while heap and (heap[0][2] is None or heap[0][0] <= now):
                entry = heapq.heappop(heap)
                scope = entry[2]
                if scope is not None:
                    entry[2] = None
                    self._live -= 1
                    scope.cancel()
        finally:
            # Even if a cancel() raised (it should not), the deadlines still
            # pending keep their timer.
            if heap:
                self._arm(heap[0][0])


_queues: dict[asyncio.AbstractEventLoop, DeadlineQueue] = {}
_queues_lock = threading.Lock()


def deadline_queue(loop: asyncio.AbstractEventLoop) -> DeadlineQueue:
    """The queue of *loop* (created on first use; call it from the loop's thread)."""
    queue = _queues.get(loop)
    if queue is None:
        queue = _new_queue(loop)
    return queue


def _new_queue(loop: asyncio.AbstractEventLoop) -> DeadlineQueue:
    with _queues_lock:
        # A closed loop runs nothing again: drop its queue (and its armed timer,
        # which would keep the loop alive) whenever a new loop turns up.
        for old in [old for old in _queues if old.is_closed()]:
            stale = _queues.pop(old)
            if stale._handle is not None:  # noqa: SLF001 - same module
                stale._handle.cancel()  # noqa: SLF001
        queue = _queues[loop] = DeadlineQueue(loop)
    return queue


def scope_takes_deadline(scope_class: type) -> bool:
    """Whether *scope_class* keeps its deadline where we can write it directly.

    anyio's asyncio scope stores it in the ``_deadline`` slot and reads it back
    for ``current_effective_deadline``; a future anyio that changes this makes
    the timeout layer fall back to the scope's own timer instead of breaking.
    """
    slots: tuple[str, ...] = ()
    for cls in scope_class.__mro__:
        names = cls.__dict__.get("__slots__", ())
        slots += (names,) if isinstance(names, str) else tuple(names)
    return "_deadline" in slots and isinstance(getattr(scope_class, "deadline", None), property)
