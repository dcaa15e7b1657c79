"""Cancel tokens: the flag a run's owner sets to stop the attempt that is running.

A leaf module: it knows tokens, how to tell whether one is set, how to wait on
one from a thread, and how to wake an event loop from any thread. What honours
a token around a call (`resilient_nodes._cancel`) and the worker threads
(`resilient_nodes._threads`) build on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Final, TypeAlias

import anyio

from .errors import NodeCancellationError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "DEFAULT_REASON",
    "POLL_INTERVAL",
    "CancelToken",
    "CancelTokenLike",
    "in_event_loop",
    "is_token_cancelled",
    "publish_thread_token",
    "sleep_unless_cancelled",
    "sync_cancel_token",
    "token_reason",
]

DEFAULT_REASON: Final = "cancel token was set"

POLL_INTERVAL: Final = 0.005
"""How often a ``threading.Event`` (or an ``anyio.Event`` seen from a thread) is
polled, in seconds. Our `CancelToken` is never polled."""


class CancelToken:
    """A thread-safe, one-shot cancellation flag with a reason.

    Setting it is idempotent: the first `cancel` wins and keeps its reason. It
    can be set from any thread, task or signal-free callback; async waiters are
    woken through their own event loop, sync waiters through a
    ``threading.Event``.

    Example::

        token = CancelToken()
        graph.invoke(state, {"configurable": {"cancel_token": token}})
        # elsewhere, from any thread:
        token.cancel(reason="user pressed stop")
    """

    __slots__ = ("_event", "_lock", "_reason", "_wakers")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._reason: str | None = None
        self._wakers: dict[object, Callable[[], object]] = {}

    def __repr__(self) -> str:
        state = f"cancelled, reason={self._reason!r}" if self.cancelled else "not cancelled"
        return f"<CancelToken {state}>"

    @property
    def cancelled(self) -> bool:
        """Whether the token has been set."""
        return self._event.is_set()

    @property
    def reason(self) -> str | None:
        """The reason given by the first `cancel`, or None while not cancelled."""
        return self._reason

    def cancel(self, reason: str = DEFAULT_REASON) -> bool:
        """Set the token and wake everything waiting on it.

        Args:
            reason: Why; becomes `NodeCancellationError.reason`.

        Returns:
            True if this call set the token, False if it was already set.
        """
        with self._lock:
            if self._event.is_set():
                return False
            self._reason = reason
            self._event.set()
            wakers = list(self._wakers.values())
            self._wakers.clear()
        # Outside the lock: a waker may schedule work on a loop that, in turn,
        # unsubscribes from this token.
        for wake in wakers:
            wake()
        return True

    def wait_sync(self, timeout: float | None = None) -> bool:
        """Block the calling thread until the token is set.

        Args:
            timeout: Give up after this many seconds (None waits forever).

        Returns:
            Whether the token is set.
        """
        return self._event.wait(timeout)

    async def wait(self) -> None:
        """Wait, in async code, until the token is set (asyncio or trio)."""
        if self._event.is_set():
            return
        event = anyio.Event()
        remove = self.on_cancel(in_event_loop(event.set))
        try:
            await event.wait()
        finally:
            remove()

    def on_cancel(self, callback: Callable[[], object], /) -> Callable[[], None]:
        """Call *callback* once when the token is set, from the thread that sets it.

        If the token is already set, *callback* is called at once, here. It must
        be quick and must not raise: it runs inside `cancel`. To run something in
        an event loop, pass a trigger made with ``in_event_loop``.

        Args:
            callback: A function of no arguments.

        Returns:
            A function that removes *callback* (no-op once it has run).
        """
        with self._lock:
            if not self._event.is_set():
                key = object()
                self._wakers[key] = callback
                return lambda: self._remove(key)
        callback()
        return _nothing

    def _remove(self, key: object) -> None:
        with self._lock:
            self._wakers.pop(key, None)


def _nothing() -> None:
    return None


CancelTokenLike: TypeAlias = CancelToken | anyio.Event | threading.Event
"""Anything accepted as a cancel token."""

_thread_token: ContextVar[CancelTokenLike | None] = ContextVar(
    "resilient_nodes_thread_token", default=None
)


def publish_thread_token(token: CancelTokenLike) -> Callable[[], None]:
    """Make *token* the one `sync_cancel_token` reports in this context.

    Worker threads started afterwards copy the context and see it too.

    Returns:
        A function that restores what was published before.
    """
    published = _thread_token.set(token)
    return lambda: _thread_token.reset(published)


def sync_cancel_token() -> CancelTokenLike | None:
    """The cancel token of the sync call running in this worker thread, if any."""
    return _thread_token.get()


def sleep_unless_cancelled(delay: float, token: CancelTokenLike, /, *, name: str | None) -> None:
    """Sleep *delay* seconds in a thread, cut short by *token*.

    Raises:
        NodeCancellationError: If the token is set before or during the sleep.
    """
    if isinstance(token, CancelToken):
        token.wait_sync(delay)
    elif isinstance(token, threading.Event):
        token.wait(delay)
    else:  # an anyio.Event cannot be waited on from a thread: poll it
        end = time.monotonic() + delay
        while not token.is_set() and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, POLL_INTERVAL))
    if is_token_cancelled(token):
        raise NodeCancellationError(token_reason(token), node=name)


def is_token_cancelled(token: CancelTokenLike, /) -> bool:
    """Whether *token* has been set.

    Args:
        token: A `CancelToken`, ``anyio.Event`` or ``threading.Event``.

    Returns:
        True once it is set.
    """
    if isinstance(token, CancelToken):
        return token.cancelled
    return token.is_set()


def token_reason(token: CancelTokenLike, /) -> str:
    """The reason to report for a set *token* (a default for plain events)."""
    if isinstance(token, CancelToken):
        return token.reason or DEFAULT_REASON
    return DEFAULT_REASON


def in_event_loop(fn: Callable[[], object], /) -> Callable[[], None]:
    """Make *fn* callable from any thread, running it in the current event loop.

    Must be called inside a running asyncio or trio loop. The returned callable
    never raises: once the loop has finished there is nothing left to wake.

    Args:
        fn: What to run in the loop (for example ``scope.cancel``).

    Returns:
        A thread-safe trigger.
    """
    schedule: Callable[[Callable[[], object]], object]
    try:
        schedule = asyncio.get_running_loop().call_soon_threadsafe
    except RuntimeError:  # not asyncio, so trio (anyio's only other backend)
        import trio.lowlevel  # noqa: PLC0415 - trio is optional

        schedule = trio.lowlevel.current_trio_token().run_sync_soon

    def trigger() -> None:
        # A closed loop raises RuntimeError (trio's RunFinishedError is one too).
        with contextlib.suppress(RuntimeError):
            schedule(fn)

    return trigger
