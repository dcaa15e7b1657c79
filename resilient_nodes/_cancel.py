"""Explicit cancellation: the seam that honours a cancel token around a call.

A cancel token is the Python form of the seed's ``AbortSignal``: whoever owns the
run sets it (from any thread or task) and the attempt that is running stops
promptly with `NodeCancellationError` (code ``CANCELLED``, never retried, never
counted by a breaker). Three kinds of token are accepted wherever one is taken
(see `resilient_nodes._tokens`):

- `CancelToken`, ours: thread-safe, carries a reason, and wakes waiters on
  asyncio and trio at once (no polling);
- an ``anyio.Event`` (same event loop only, like every anyio primitive);
- a ``threading.Event``, which has no way to notify anyone, so it is polled every
  ``POLL_INTERVAL`` seconds while a call is running.

`NodeCancellationError` is distinct from the backend's own cancellation
exception: the caller's cancel scopes and task cancellation pass through these
helpers untouched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio

from . import _threads
from ._tokens import (
    POLL_INTERVAL,
    CancelToken,
    CancelTokenLike,
    in_event_loop,
    is_token_cancelled,
    publish_thread_token,
    token_reason,
)
from .errors import NodeCancellationError

if TYPE_CHECKING:
    import threading
    from collections.abc import Awaitable, Callable

__all__ = ["ScopeCanceller", "call_with_cancel_token", "call_with_cancel_token_sync"]

T = TypeVar("T")


class ScopeCanceller:
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
    canceller = ScopeCanceller(scope)
    if isinstance(token, CancelToken):
        remove = token.on_cancel(in_event_loop(canceller))
        try:
            result, raised = await _run_in(scope, fn)
        finally:
            canceller.active = False
            remove()
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
    returns, counted against the node's abandoned-thread limit (`resilient_nodes._threads`).
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
    restore = publish_thread_token(token)
    try:
        outcome = _threads.run(fn, timeout=None, token=token, name=name, logger=logger)
    finally:
        restore()
    if outcome.finished:
        return outcome.value()
    raise NodeCancellationError(token_reason(token), node=name)
