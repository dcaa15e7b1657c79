"""Explicit cancellation: cancel tokens and the seam that honours them.

A cancel token is the Python form of the seed's ``AbortSignal``: whoever owns the
run sets it (from any thread or task) and the attempt that is running stops
promptly with `NodeCancellationError` (code ``CANCELLED``, never retried, never
counted by a breaker). Three kinds of token are accepted wherever one is taken:

- `CancelToken`, ours: thread-safe, carries a reason, and wakes waiters on
  asyncio and trio at once (no polling);
- an ``anyio.Event`` (same event loop only, like every anyio primitive);
- a ``threading.Event``, which has no way to notify anyone, so it is polled every
  `POLL_INTERVAL` seconds while a call is running.

`NodeCancellationError` is distinct from the backend's own cancellation
exception: the caller's cancel scopes and task cancellation pass through these
helpers untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar, cast

import anyio

from . import _threads
from .errors import NodeCancellationError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = [
    "CancelToken",
    "CancelTokenLike",
    "call_with_cancel_token",
    "call_with_cancel_token_sync",
]

T = TypeVar("T")

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
        self._wakers: dict[int, Callable[[], object]] = {}

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
        key = self._subscribe(in_event_loop(event.set))
        try:
            await event.wait()
        finally:
            self._unsubscribe(key)

    def _subscribe(self, wake: Callable[[], object]) -> int | None:
        """Call *wake* (from the cancelling thread) when the token is set.

        Returns:
            A key for `_unsubscribe`, or None if the token was already set (in
            which case *wake* has been called already).
        """
        with self._lock:
            if not self._event.is_set():
                key = id(wake)
                self._wakers[key] = wake
                return key
        wake()
        return None

    def _unsubscribe(self, key: int | None) -> None:
        if key is not None:
            with self._lock:
                self._wakers.pop(key, None)


CancelTokenLike: TypeAlias = CancelToken | anyio.Event | threading.Event
"""Anything accepted as a cancel token."""

_thread_token: ContextVar[CancelTokenLike | None] = ContextVar(
    "resilient_nodes_thread_token", default=None
)


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


class _ScopeCanceller:
    """Cancels one cancel scope while the call it guards is still running.

    A cancellation scheduled from another thread may run after the scope has
    exited; ``active`` turns that late call into a no-op.
    """

    __slots__ = ("active", "scope")

    def __init__(self, scope: anyio.CancelScope) -> None:
        self.scope = scope
        self.active = True

    def __call__(self) -> None:
        if self.active:
            self.scope.cancel()


async def _watch(token: anyio.Event | threading.Event, cancel: Callable[[], None]) -> None:
    if isinstance(token, anyio.Event):
        await token.wait()
    else:
        # A threading.Event cannot wake a loop, so polling is the only way.
        while not token.is_set():  # noqa: ASYNC110
            await anyio.sleep(POLL_INTERVAL)
    cancel()


async def call_with_cancel_token(
    fn: Callable[[], Awaitable[T]],
    token: CancelTokenLike | None,
    /,
    *,
    name: str | None = None,
) -> T:
    """Await ``fn()`` and cancel it as soon as *token* is set.

    This is the seam a policy or node shell uses for explicit cancellation:
    ``await call_with_cancel_token(partial(attempt, *args), token, name=node)``.
    With ``token=None`` it is a plain ``await fn()``.

    Once the token has cancelled the call, the outcome is `NodeCancellationError`
    whatever ``fn`` does with the cancellation (re-raise it, swallow it and
    return, or raise something else, which is chained as ``__context__``).

    Args:
        fn: Zero-argument async callable (use ``functools.partial`` for arguments).
        token: The cancel token, or None.
        name: Node name for the error.

    Returns:
        What ``fn()`` returned.

    Raises:
        NodeCancellationError: If the token was set before or during the call
            (``fn`` is not called when it was set before).
    """
    if token is None:
        return await fn()
    if is_token_cancelled(token):
        raise NodeCancellationError(token_reason(token), node=name)
    scope = anyio.CancelScope()
    canceller = _ScopeCanceller(scope)
    if isinstance(token, CancelToken):
        key = token._subscribe(in_event_loop(canceller))  # noqa: SLF001
        try:
            result, raised = await _run_in(scope, fn)
        finally:
            canceller.active = False
            token._unsubscribe(key)  # noqa: SLF001
    else:
        # Plain events cannot notify anyone, so a watcher task waits on them.
        # _run_in keeps the body's exception out of the task group, which would
        # wrap it (even SystemExit) in an exception group.
        async with anyio.create_task_group() as group:
            group.start_soon(_watch, token, canceller)
            try:
                result, raised = await _run_in(scope, fn)
            finally:
                canceller.active = False
                group.cancel_scope.cancel()
    if raised is not None and not (scope.cancel_called and isinstance(raised, Exception)):
        raise raised
    if scope.cancel_called:
        raise NodeCancellationError(token_reason(token), node=name) from raised
    return cast("T", result)


async def _run_in(
    scope: anyio.CancelScope, fn: Callable[[], Awaitable[T]]
) -> tuple[T | None, BaseException | None]:
    """``fn()`` inside *scope*: what it returned, or what it raised.

    Only the backend's cancellation propagates (for *scope*, or an outer one, to
    absorb); anything else is handed back to be raised where it cannot be
    wrapped.
    """
    cancelled = anyio.get_cancelled_exc_class()
    with scope:
        try:
            return await fn(), None
        except BaseException as exc:
            if isinstance(exc, cancelled):
                raise
            return None, exc
    return None, None


def call_with_cancel_token_sync(
    fn: Callable[[], T],
    token: CancelTokenLike | None,
    /,
    *,
    name: str | None = None,
    logger: Any = None,
) -> T:
    """Call ``fn()`` and return as soon as *token* is set (sync counterpart).

    With a token, ``fn`` runs in a worker thread (with a copy of the caller's
    context variables) so that the caller can return when the token is set. A
    thread cannot be killed: after cancellation it keeps running until ``fn``
    returns, counted against `resilient_nodes.timeout.MAX_ABANDONED_THREADS`.
    With ``token=None``, ``fn`` is simply called in the current thread.

    Args:
        fn: Zero-argument sync callable.
        token: The cancel token, or None.
        name: Node name for the error and the log events.
        logger: A bound structlog logger for the abandoned-thread event
            (defaults to one bound to *name*).

    Returns:
        What ``fn()`` returned.

    Raises:
        NodeCancellationError: If the token was set before or during the call.
        AbandonedThreadLimitError: If too many abandoned threads are still
            running to start another one.
    """
    if token is None:
        return fn()
    if is_token_cancelled(token):
        raise NodeCancellationError(token_reason(token), node=name)
    # Published to the worker thread (it copies this context): once the caller
    # has been released, a sync retry running there must not start another attempt.
    published = _thread_token.set(token)
    try:
        outcome = _threads.run(fn, timeout=None, token=token, name=name, logger=logger)
    finally:
        _thread_token.reset(published)
    if outcome.finished:
        return outcome.value()
    raise NodeCancellationError(token_reason(token), node=name)
