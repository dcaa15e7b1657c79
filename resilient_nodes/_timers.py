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
share one timer, and it is left armed when the loop goes idle (one spare
wake-up later instead of a new timer for the next call).

Nothing here keeps a loop alive: queues are looked up by the loop's id and
dropped when the loop is garbage (``weakref.finalize``), and a queue holds its
loop and its timer only through weak references; the armed timer lives in the
loop's own heap.
"""

from __future__ import annotations

import contextvars
import heapq
import inspect
import itertools
import math
import weakref
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import asyncio

__all__ = ["DeadlineQueue", "deadline_queue", "scope_takes_deadline"]

_COMPACT_SLACK: Final = 64
"""Dead entries tolerated beyond as many as there are live ones."""

_REASON: Final = "deadline exceeded"  # what anyio's own timer gives as the reason


class DeadlineQueue:
    """The pending deadlines of one event loop (use it from that loop only)."""

    __slots__ = ("_armed_at", "_context", "_handle", "_heap", "_live", "_loop", "_seq")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)
        # Entries are [deadline, sequence number, scope or None]: lists compare
        # by deadline, then by the unique number, never by the scope.
        self._heap: list[list[Any]] = []
        self._live = 0
        self._seq = itertools.count()
        self._handle: weakref.ReferenceType[asyncio.TimerHandle] | None = None
        self._armed_at = math.inf
        # The timer runs in an empty context of its own: it must not keep a
        # caller's context variables alive, and one context per loop is never
        # entered twice at once.
        self._context = contextvars.Context()

    def add(self, now: float, deadline: float, scope: Any) -> list[Any]:
        """Cancel *scope* at *deadline* (loop time; it is *now*); returns the entry.

        A deadline already reached cancels the scope at once, as anyio does for
        a deadline that has passed when its scope is entered.
        """
        entry = [deadline, next(self._seq), scope]
        if deadline <= now:
            entry[2] = None
            _cancel(scope)
            return entry
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
        old = self._handle() if self._handle is not None else None
        if old is not None:
            old.cancel()
        loop = self._loop()
        if loop is None:  # pragma: no cover - a loop that is gone runs no calls
            return
        self._armed_at = deadline
        handle = loop.call_at(deadline, self._fire, context=self._context)
        self._handle = weakref.ref(handle)

    def _fire(self) -> None:
        self._handle = None
        self._armed_at = math.inf
        loop = self._loop()
        if loop is None:  # pragma: no cover - the loop runs this callback
            return
        now = loop.time()
        try:
            # self._heap is read afresh each time: a cancel() that ran code which
            # compacted the heap must not leave this loop on the old list.
            while self._heap and (self._heap[0][2] is None or self._heap[0][0] <= now):
                entry = heapq.heappop(self._heap)
                scope = entry[2]
                if scope is not None:
                    entry[2] = None
                    self._live -= 1
                    _cancel(scope)
        finally:
            # Even if a cancel() raised (it should not), the deadlines still
            # pending keep their timer.
            if self._heap:
                self._arm(self._heap[0][0])


_takes_reason: dict[type, bool] = {}


def _cancel(scope: Any) -> None:
    """``scope.cancel()`` with anyio's deadline reason where the scope takes one."""
    kind = type(scope)
    takes = _takes_reason.get(kind)
    if takes is None:
        try:
            takes = "reason" in inspect.signature(kind.cancel).parameters
        except (TypeError, ValueError):  # pragma: no cover - no signature
            takes = False
        _takes_reason[kind] = takes
    if takes:
        scope.cancel(_REASON)
    else:
        scope.cancel()


_queues: dict[int, DeadlineQueue] = {}


def deadline_queue(loop: asyncio.AbstractEventLoop) -> DeadlineQueue:
    """The queue of *loop*, created on first use (call it from the loop's thread)."""
    queue = _queues.get(id(loop))
    if queue is None:
        queue = _queues[id(loop)] = DeadlineQueue(loop)
        # Dropped with the loop; the id cannot be reused before that.
        weakref.finalize(loop, _queues.pop, id(loop), None)
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
