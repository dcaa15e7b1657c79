"""A per-node bulkhead: at most N calls in flight, a bounded queue, the rest rejected.

Semantics, in one place:

* **Admission.** A call takes a slot if one is free and nobody is queued (first
  come, first served: a newcomer never overtakes a waiter). Otherwise it waits in
  the queue if the queue has room, or is rejected at once with
  `NodeBulkheadFullError` (logged as ``bulkhead.rejected``) without running.
* **Hand-over.** A finishing call hands its slot straight to the oldest waiter,
  under the lock, so the number of slots in use never exceeds ``max_concurrent``,
  not even for an instant, and a slot can never be taken twice.
* **A slot never leaks.** A waiter cancelled before it was handed a slot leaves
  the queue; one cancelled after it was handed a slot (the hand-over and the
  cancellation raced) passes the slot on at once. The call's slot is released in
  a ``finally`` whatever the call raised, cancellation included. A rejected or
  cancelled call has consumed nothing.
* **Waiting.** Async callers wait on an `anyio.Event` (asyncio and trio): the
  wait is a plain checkpoint, so the caller's cancel scopes (an enclosing
  timeout, LangGraph cancelling a sibling) end it. Sync callers wait on a
  `threading.Event`; the wait ends, giving up the place in the queue, when the
  call's cancel token is set (`NodeCancellationError`) or an enclosing sync
  deadline passes (`NodeBulkheadFullError`: the caller has already been given
  its timeout, and this thread must not start the call late).

One bulkhead per wrapped node, shared by all its calls. An async node's waiters
must all belong to one event loop at a time (as every call of a LangGraph graph
does): a slot is handed over by setting the waiter's event from the releasing
task. The slot count itself is guarded by a `threading.Lock`, never held across
an ``await``.
"""

from __future__ import annotations

import collections
import functools
import threading
import time
from typing import TYPE_CHECKING, Any, Final, cast

import anyio

from ._callables import is_async_callable
from ._deadline import sync_remaining
from ._logging import LogEvent, emit, get_logger
from ._tokens import POLL_INTERVAL, is_token_cancelled, sync_cancel_token, token_reason
from .errors import NodeBulkheadFullError, NodeCancellationError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._config import BulkheadConfig

__all__ = ["Bulkhead", "hold_stream", "wrap_bulkhead"]

_WARNING: Final = 30


class _Waiter:
    """One queued call: woken by setting its event once it holds a slot."""

    __slots__ = ("event", "granted", "left")

    def __init__(self, event: anyio.Event | threading.Event) -> None:
        self.event = event
        self.granted = False  # a slot was handed to it (set under the lock)
        self.left = False  # it gave up its place before being handed one


class Bulkhead:
    """At most ``max_concurrent`` calls in flight, ``max_queue`` waiting.

    Args:
        name: The node's name, for errors and logs.
        max_concurrent: Calls in flight at once.
        max_queue: Calls that may wait for a slot.
    """

    __slots__ = (
        "_in_flight",
        "_lock",
        "_log",
        "_queued",
        "_waiters",
        "max_concurrent",
        "max_queue",
        "name",
    )

    def __init__(self, name: str, max_concurrent: int, max_queue: int = 0) -> None:
        self.name = name
        self.max_concurrent = max_concurrent
        self.max_queue = max_queue
        self._lock = threading.Lock()
        self._in_flight = 0
        self._queued = 0  # waiters still waiting (those that left stay in the deque)
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._log = get_logger(node=name)

    def __repr__(self) -> str:
        return (
            f"<Bulkhead {self.name!r} {self._in_flight}/{self.max_concurrent} in flight, "
            f"{self._queued}/{self.max_queue} queued>"
        )

    @property
    def in_flight(self) -> int:
        """Slots in use now."""
        return self._in_flight

    @property
    def queued(self) -> int:
        """Calls waiting for a slot now."""
        return self._queued

    # --- admission -----------------------------------------------------------------

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody waits; never waits."""
        with self._lock:
            if self._in_flight < self.max_concurrent and not self._queued:
                self._in_flight += 1
                return True
        return False

    def _enqueue(self, event: anyio.Event | threading.Event) -> _Waiter | None:
        """Queue a waiter, or take a slot freed meanwhile (None); reject if full."""
        with self._lock:
            if self._in_flight < self.max_concurrent and not self._queued:
                self._in_flight += 1
                return None
            if self._queued < self.max_queue:
                waiter = _Waiter(event)
                self._waiters.append(waiter)
                self._queued += 1
                return waiter
        raise self._rejection()

    def _rejection(self) -> NodeBulkheadFullError:
        error = NodeBulkheadFullError(self.max_concurrent, self.max_queue, node=self.name)
        emit(
            self._log.warning,
            LogEvent.BULKHEAD_REJECTED,
            max_concurrent=self.max_concurrent,
            max_queue=self.max_queue,
        )
        return error

    def _leave(self, waiter: _Waiter) -> None:
        """A waiter gives up: out of the queue, or passing on a slot it was handed."""
        with self._lock:
            if not waiter.granted:
                waiter.left = True
                self._queued -= 1
                return
            wake = self._hand_over()
        if wake is not None:
            wake.event.set()

    def _hand_over(self) -> _Waiter | None:
        # Lock held; a slot is being freed. The oldest live waiter takes it over
        # (the count of slots in use is unchanged), or the slot becomes free.
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if waiter.left:
                continue
            waiter.granted = True
            self._queued -= 1
            return waiter
        self._in_flight -= 1
        return None

    def release(self) -> None:
        """Free one slot (hand it to the oldest waiter, if any)."""
        with self._lock:
            wake = self._hand_over()
        if wake is not None:
            wake.event.set()

    async def acquire_async(self) -> None:
        """Take a slot, waiting in the queue if needed (cancellable).

        Raises:
            NodeBulkheadFullError: Every slot is in use and the queue is full.
        """
        if self.try_acquire():
            return
        waiter = self._enqueue(anyio.Event())
        if waiter is None:
            return
        try:
            await cast("anyio.Event", waiter.event).wait()
        except BaseException:
            self._leave(waiter)
            raise

    def acquire_sync(self) -> None:
        """Take a slot, waiting in this thread if needed.

        Raises:
            NodeBulkheadFullError: Every slot is in use and the queue is full, or
                the enclosing sync deadline passed while waiting.
            NodeCancellationError: The call's cancel token was set while waiting.
        """
        if self.try_acquire():
            return
        waiter = self._enqueue(threading.Event())
        if waiter is None:
            return
        try:
            self._wait_in_thread(cast("threading.Event", waiter.event))
        except BaseException:
            self._leave(waiter)
            raise

    def _wait_in_thread(self, event: threading.Event) -> None:
        token = sync_cancel_token()
        remaining = sync_remaining()
        if token is None and remaining == float("inf"):
            event.wait()
            return
        end = time.monotonic() + remaining
        # A cancel token may be an event of another kind: polled, like the
        # retry's backoff sleep polls it.
        poll = remaining if token is None else POLL_INTERVAL * 4
        while not event.wait(min(poll, max(0.0, end - time.monotonic()))):
            if token is not None and is_token_cancelled(token):
                raise NodeCancellationError(token_reason(token), node=self.name)
            if time.monotonic() >= end:
                raise NodeBulkheadFullError(
                    self.max_concurrent,
                    self.max_queue,
                    node=self.name,
                    message=(
                        f"node {self.name}: the enclosing deadline passed while waiting "
                        "for a bulkhead slot"
                    ),
                )

    @classmethod
    def from_config(cls, name: str, config: BulkheadConfig, /) -> Bulkhead:
        """A bulkhead for node *name* as *config* says."""
        return cls(name, config.max_concurrent, config.max_queue)


def wrap_bulkhead(fn: Callable[..., Any], bulkhead: Bulkhead, /) -> Any:
    """Guard *fn* with *bulkhead* (shared by all its calls); keeps its kind.

    Args:
        fn: The callable to guard.
        bulkhead: The node's bulkhead.

    Returns:
        The guarded callable (async for an async *fn*, sync otherwise), with
        *fn*'s name and signature.
    """
    shell = _async_shell if is_async_callable(fn) else _sync_shell
    return functools.update_wrapper(shell(fn, bulkhead), fn)


def _async_shell(fn: Callable[..., Any], bulkhead: Bulkhead) -> Callable[..., Any]:
    afn = cast("Callable[..., Awaitable[Any]]", fn)
    try_acquire = bulkhead.try_acquire
    acquire = bulkhead.acquire_async
    release = bulkhead.release

    async def guarded(*args: Any, **kwargs: Any) -> Any:
        if not try_acquire():
            await acquire()
        try:
            return await afn(*args, **kwargs)
        finally:
            release()

    return guarded


def _sync_shell(fn: Callable[..., Any], bulkhead: Bulkhead) -> Callable[..., Any]:
    acquire = bulkhead.acquire_sync
    release = bulkhead.release

    def guarded(*args: Any, **kwargs: Any) -> Any:
        acquire()
        try:
            return fn(*args, **kwargs)
        finally:
            release()

    return guarded


def hold_stream(opener: Callable[..., Awaitable[Any]], bulkhead: Bulkhead, /) -> Any:
    """A bulkhead over a stream: a slot from the call until the stream ends.

    Over a stream an attempt is the call and its first item (see
    `resilient_nodes._stream`); a bulkhead bounds streams in flight, so the slot
    is handed back when the whole stream ends (exhausted, failed, or closed by
    the caller), not after the first item.
    """
    acquire = bulkhead.acquire_async
    release = bulkhead.release

    def ender(_error: BaseException | None) -> None:
        release()

    async def open_held(*args: Any, **kwargs: Any) -> Any:
        await acquire()
        try:
            opened = await opener(*args, **kwargs)
        except BaseException:
            release()
            raise
        opened.enders.append(ender)
        return opened

    return open_held
