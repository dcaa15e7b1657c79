"""Timeouts on anyio cancel scopes, for async and sync callables.

Semantics, in one place:

- **Ours vs. the caller's.** Each call gets its own ``anyio.CancelScope`` with a
  deadline, and nothing but the deadline ever cancels it. So the scope's
  ``cancel_called`` flag means exactly "our deadline fired", and only then is the
  outcome `NodeTimeoutError`. The caller's own cancellation (an outer cancel
  scope, a cancelled task, LangGraph cancelling a sibling) is the backend's
  cancel exception and passes through unchanged, and a ``TimeoutError`` raised by
  the function itself (before our deadline) is the function's error, not ours.
- **After our deadline, the outcome is a timeout.** A body that swallows the
  cancellation and returns a value, or turns it into another exception, is still
  reported as `NodeTimeoutError`: it overran its budget, and whatever it produced
  under cancellation is not trusted. Its exception, if any, is kept as the
  timeout's ``__context__``.
- **on_timeout** runs once per timeout, only for our deadline, after the scope
  has exited: shielded from cancellation and bounded by ``cleanup_timeout``. An
  ``on_timeout`` that accepts one positional argument receives the
  `NodeTimeoutError`; otherwise it is called with none (decided once per layer). A
  coroutine function is awaited; a sync one runs in a worker thread (so the bound
  holds, and the event loop is not blocked). If it fails or overruns, the problem
  is logged as ``node.on_timeout_failed`` and becomes the timeout's ``__cause__``
  (plus a note); it never replaces the timeout. If the caller's cancellation
  arrives while it runs, the cancellation wins once the cleanup is done. On
  asyncio, even a native ``task.cancel()`` (which anyio's shield cannot stop)
  waits for the cleanup.
- **Sync functions** run in a worker thread with a copy of the caller's context
  variables and the deadline published for the retry layer
  (`resilient_nodes._deadline.sync_remaining`). At the deadline the caller gets
  `NodeTimeoutError` and the thread is *abandoned*: Python cannot kill a thread,
  so it runs until the function returns, and its result is dropped. Abandoned
  threads are counted per node: once a node has `MAX_ABANDONED_THREADS` (32) of
  them running (or the process `MAX_ABANDONED_THREADS_TOTAL`, 256, over all
  nodes), new sync calls under a timeout fail fast with
  `AbandonedThreadLimitError` (never called, never queued: waiting on stuck
  threads would turn one hung dependency into a hung process). That error is
  our own refusal, so it is neutral for a breaker and not retried, and one hung
  node never uses up a healthy node's budget. The thread of a sync
  ``on_timeout`` is never refused. A sync call blocks its caller, also when made
  from an event loop thread.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from typing import TYPE_CHECKING, Any, Generic, NoReturn, ParamSpec, TypeVar, overload

import anyio
import anyio.lowlevel
import attrs
from anyio import CancelScope, current_time

from . import _telemetry, _threads
from ._callables import is_async_callable
from ._cancel import ScopeCanceller, call_with_cancel_token
from ._config import Seconds, TimeoutConfig
from ._context import current_context
from ._control import is_control_flow
from ._logging import LogEvent, emit, get_logger
from ._sanitize import error_text
from ._tokens import (
    CancelToken,
    CancelTokenLike,
    in_event_loop,
    is_token_cancelled,
    sync_cancel_token,
    token_reason,
)
from .errors import NodeCancellationError, NodeTimeoutError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine
    from types import TracebackType

__all__ = [
    "TimeoutController",
    "TimeoutResult",
    "create_timeout_controller",
    "report_timeout",
    "with_timeout",
    "with_timeout_result",
    "wrap_timeout",
]

P = ParamSpec("P")
T = TypeVar("T")


def _accepts_one_argument(fn: Callable[..., Any]) -> bool:
    try:
        inspect.signature(fn).bind(None)
    except TypeError:
        return False
    except ValueError:  # no signature (some builtins): call it without arguments
        return False
    return True


def _call_sync(fn: Callable[[], T]) -> T:
    result = fn()
    if inspect.iscoroutine(result):
        # A lambda around an async function looks sync until it is called; by
        # then the call runs in a worker thread with no event loop to await it.
        result.close()
        raise TypeError(
            "the function returned a coroutine from a worker thread; pass the async "
            "function itself (or a functools.partial of it), not a lambda around it"
        )
    return result


_get_async_backend: Callable[[], Any] | None
try:
    from anyio._core._eventloop import get_async_backend as _get_async_backend
except ImportError:  # pragma: no cover - a future anyio may move it
    _get_async_backend = None

_asyncio_scopes: list[Callable[..., CancelScope]] = []


def _deadline_scope(seconds: float) -> CancelScope:
    """A new cancel scope whose deadline is *seconds* from now.

    The one speed trick of the timeout layer, kept for its target (success
    overhead <= 0.7x ``anyio.fail_after``'s). The public
    ``CancelScope(deadline=current_time() + seconds)`` dispatches to the running
    backend twice per call; inside an asyncio task this takes the deadline from
    the loop's clock (which is anyio's clock there) and the scope from anyio's
    asyncio backend, looked up once through anyio's private ``get_async_backend``.
    Measured side by side in one process, the scope alone costs 0.56x
    ``fail_after`` this way against 0.72x through the public calls; the layer
    measured 0.59x ``fail_after``'s overhead in the full benchmark run with it,
    and about 0.9x in quick runs without it. Outside an asyncio task (trio, or trio's guest mode
    on an asyncio loop, whose callbacks run in no asyncio task), or if anyio
    moves the function, the public calls are used.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is None or asyncio.current_task(loop) is None or _get_async_backend is None:
        return CancelScope(deadline=current_time() + seconds)
    if not _asyncio_scopes:
        _asyncio_scopes.append(_get_async_backend().create_cancel_scope)
    return _asyncio_scopes[0](deadline=loop.time() + seconds)


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


class _Layer:
    """One configured timeout: the logic shared by every entry point."""

    __slots__ = (
        "_log",
        "cleanup_async",
        "cleanup_takes_error",
        "cleanup_timeout",
        "name",
        "on_timeout",
        "seconds",
    )

    def __init__(self, config: TimeoutConfig, name: str | None, *, bind_now: bool) -> None:
        self.seconds = config.seconds
        self.cleanup_timeout = config.cleanup_timeout
        self.on_timeout = config.on_timeout
        self.name = name
        cleanup = config.on_timeout
        self.cleanup_async = cleanup is not None and is_async_callable(cleanup)
        self.cleanup_takes_error = cleanup is not None and _accepts_one_argument(cleanup)
        # Bound once per wrapped node; ad-hoc calls bind only if they need to log.
        self._log: Any = get_logger(node=name) if bind_now else None

    @property
    def log(self) -> Any:
        if self._log is None:
            self._log = get_logger(node=self.name)
        return self._log

    # --- async ----------------------------------------------------------------------

    async def timed_out_async(self, late: Exception | None) -> NoReturn:
        error = self._timeout_error(late)
        if self.on_timeout is not None:
            await self._shielded(self._cleanup_async(error))
        # A cancellation of the caller's that arrived meanwhile must win.
        await anyio.lowlevel.checkpoint_if_cancelled()
        raise error

    async def _shielded(self, cleanup: Coroutine[Any, Any, None]) -> None:
        try:
            asyncio.current_task()
        except RuntimeError:  # not asyncio: anyio's shield is enough on trio
            with CancelScope(shield=True):
                await cleanup
            return
        # On asyncio a native task.cancel() pierces anyio's shield, so the cleanup
        # runs in its own task and this one keeps waiting for it, then re-raises.
        task = asyncio.ensure_future(cleanup)
        pending: BaseException | None = None
        with CancelScope(shield=True):
            while not task.done():
                try:
                    await asyncio.shield(task)
                except asyncio.CancelledError as exc:
                    pending = exc
        if pending is not None:
            raise pending

    async def _cleanup_async(self, error: NodeTimeoutError) -> None:
        callback = self.on_timeout
        assert callback is not None  # noqa: S101 - only scheduled when set
        args = (error,) if self.cleanup_takes_error else ()
        job: _threads.Job[Any] | None = None
        problem: Exception | None = None
        with anyio.move_on_after(self.cleanup_timeout, shield=True) as bound:
            try:
                if self.cleanup_async:
                    await callback(*args)
                else:
                    # Never refused by the abandoned-thread limits, nor queued
                    # behind anyio's shared thread limiter (40 threads, which
                    # trio holds for abandoned threads too): the timeout has
                    # happened and its cleanup must run. The wait is bounded.
                    job = _threads.Job(self.log, self.name)
                    await anyio.to_thread.run_sync(
                        job.run,
                        functools.partial(callback, *args),
                        abandon_on_cancel=True,
                        limiter=anyio.CapacityLimiter(1),
                    )
                    result = job.value()
                    if inspect.isawaitable(result):
                        await result
            except Exception as exc:
                problem = exc
        if bound.cancelled_caught:
            if job is not None:
                job.abandon()
            problem = TimeoutError(f"on_timeout did not finish within {self.cleanup_timeout:g}s")
        if problem is not None:
            self._cleanup_failed(error, problem)

    # --- sync -----------------------------------------------------------------------

    def run_sync(self, fn: Callable[[], T], token: CancelTokenLike | None) -> T:
        if token is None:
            # Inside a node cancelled through its token, this call runs in the
            # token's worker thread: wait on that token too, so a cancel releases
            # this thread (and counts the one it abandons) at once.
            token = sync_cancel_token()
        if token is not None and is_token_cancelled(token):
            raise NodeCancellationError(token_reason(token), node=self.name)
        outcome = _threads.run(
            functools.partial(_call_sync, fn),
            timeout=self.seconds,
            token=token,
            name=self.name,
            logger=self.log,
        )
        if outcome.finished:
            return outcome.value()
        if token is not None and is_token_cancelled(token):
            raise NodeCancellationError(token_reason(token), node=self.name)
        error = self._timeout_error(None)
        if self.on_timeout is not None:
            self._cleanup_sync(error)
        raise error

    def _cleanup_sync(self, error: NodeTimeoutError) -> None:
        callback = self.on_timeout
        assert callback is not None  # noqa: S101 - only called when set
        args = (error,) if self.cleanup_takes_error else ()

        def cleanup() -> object:
            result = callback(*args)
            if inspect.isawaitable(result):
                return anyio.run(_await, result)
            return result

        problem: Exception | None = None
        try:
            outcome = _threads.run(
                cleanup,
                timeout=self.cleanup_timeout,
                token=None,
                name=self.name,
                logger=self.log,
                refusable=False,
            )
            if outcome.finished:
                outcome.value()
            else:
                problem = TimeoutError(
                    f"on_timeout did not finish within {self.cleanup_timeout:g}s"
                )
        except Exception as exc:
            problem = exc
        if problem is not None:
            self._cleanup_failed(error, problem)

    # --- shared ---------------------------------------------------------------------

    def _timeout_error(self, late: Exception | None) -> NodeTimeoutError:
        telemetry = _telemetry.active
        if telemetry is not None:
            telemetry.timed_out(self.name, self.seconds)
        error = NodeTimeoutError(self.seconds, node=self.name)
        error.__context__ = late
        context = current_context()
        if context is None:
            emit(self.log.warning, LogEvent.NODE_TIMED_OUT, timeout=self.seconds)
        else:
            emit(
                self.log.warning,
                LogEvent.NODE_TIMED_OUT,
                timeout=self.seconds,
                trace_id=context.trace_id,
                graph_execution_id=context.graph_execution_id,
                attempt=context.attempt,
            )
        return error

    def _cleanup_failed(self, error: NodeTimeoutError, problem: Exception) -> None:
        # On the error path: the text must neither raise nor leak a secret.
        text = error_text(problem)
        emit(
            self.log.error,
            LogEvent.NODE_ON_TIMEOUT_FAILED,
            timeout=self.seconds,
            error_type=type(problem).__name__,
            error=text,
        )
        error.__cause__ = problem
        error.add_note(f"on_timeout failed: {type(problem).__name__}: {text}")


def _async_timed(
    layer: _Layer, fn: Callable[P, Awaitable[T]]
) -> Callable[P, Coroutine[Any, Any, T]]:
    """The async hot path: *fn* under *layer*'s deadline, as one coroutine function."""
    seconds = layer.seconds
    timed_out = layer.timed_out_async

    async def timed(*args: P.args, **kwargs: P.kwargs) -> T:
        # A bare cancel scope: fail_after adds a generator context manager and a
        # builtin TimeoutError we would only replace. Nothing but the deadline
        # cancels this scope, so cancel_called means "our deadline fired".
        scope = _deadline_scope(seconds)
        late: Exception | None = None
        with scope:
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                if not scope.cancel_called:
                    raise
                late = exc
        if scope.cancel_called:
            await timed_out(late)
        return result

    return timed


async def report_timeout(config: TimeoutConfig, name: str, late: Exception | None) -> NoReturn:
    """Raise *config*'s `NodeTimeoutError` for a deadline that fired outside its layer.

    A timeout layer over a stream bounds the stream's later items too, each
    awaited under its own scope (see `resilient_nodes._stream`); when that
    deadline fires, the timeout is logged and ``on_timeout`` runs exactly as when
    it fires inside the layer.
    """
    await _Layer(config, name, bind_now=False).timed_out_async(late)


# --- public entry points ------------------------------------------------------------


@overload
def wrap_timeout(
    fn: Callable[P, Coroutine[Any, Any, T]], config: TimeoutConfig, /, *, name: str
) -> Callable[P, Coroutine[Any, Any, T]]: ...


@overload
def wrap_timeout(fn: Callable[P, T], config: TimeoutConfig, /, *, name: str) -> Callable[P, T]: ...


def wrap_timeout(fn: Callable[P, Any], config: TimeoutConfig, /, *, name: str) -> Callable[P, Any]:
    """Apply *config*'s timeout to every call of *fn*.

    The kind is decided here, once: an async callable (coroutine function,
    ``functools.partial`` of one, or an object with an async ``__call__``) gives
    an async wrapper; anything else a sync wrapper that runs *fn* in a worker
    thread. Arguments pass through; ``inspect.signature`` of the wrapper is that
    of *fn*.

    Args:
        fn: The callable to guard.
        config: Deadline, ``on_timeout`` and its bound.
        name: Node name for errors and log events.

    Returns:
        A callable of the same kind and signature.
    """
    layer = _Layer(config, name, bind_now=True)
    if is_async_callable(fn):
        return functools.wraps(fn)(_async_timed(layer, fn))

    run_sync = layer.run_sync

    @functools.wraps(fn)
    def timed_sync(*args: P.args, **kwargs: P.kwargs) -> Any:
        return run_sync(functools.partial(fn, *args, **kwargs), None)

    return timed_sync


def _layer_for(seconds: Seconds, on_timeout: Callable[..., Any] | None, name: str | None) -> _Layer:
    return _Layer(TimeoutConfig(seconds=seconds, on_timeout=on_timeout), name, bind_now=False)


async def _with_token(
    layer: _Layer, fn: Callable[[], Awaitable[T]], token: CancelTokenLike | None
) -> T:
    if token is None:
        return await _async_timed(layer, fn)()
    if is_token_cancelled(token):
        raise NodeCancellationError(token_reason(token), node=layer.name)
    inner = functools.partial(call_with_cancel_token, fn, token, name=layer.name)
    return await _async_timed(layer, inner)()


@overload
def with_timeout(
    fn: Callable[[], Coroutine[Any, Any, T]],
    seconds: Seconds,
    /,
    *,
    on_timeout: Callable[..., Any] | None = None,
    cancel_token: CancelTokenLike | None = None,
    name: str | None = None,
) -> Coroutine[Any, Any, T]: ...


@overload
def with_timeout(
    fn: Callable[[], T],
    seconds: Seconds,
    /,
    *,
    on_timeout: Callable[..., Any] | None = None,
    cancel_token: CancelTokenLike | None = None,
    name: str | None = None,
) -> T: ...


def with_timeout(
    fn: Callable[[], Any],
    seconds: Seconds,
    /,
    *,
    on_timeout: Callable[..., Any] | None = None,
    cancel_token: CancelTokenLike | None = None,
    name: str | None = None,
) -> Any:
    """Call ``fn()`` under a deadline.

    For an async *fn* this returns a coroutine (``await with_timeout(fetch, 5)``);
    the deadline starts when it is awaited. For a sync *fn* it runs ``fn`` in a
    worker thread and returns its result (no event loop needed). See the module
    documentation for the exact semantics.

    Args:
        fn: Zero-argument callable (bind arguments with ``functools.partial``).
        seconds: The deadline, in seconds or as a ``timedelta`` (> 0).
        on_timeout: Cleanup run (shielded, bounded) when our deadline fires.
        cancel_token: Stops the call early with `NodeCancellationError`.
        name: Node name for errors and log events.

    Returns:
        What ``fn()`` returned (or, for an async *fn*, a coroutine giving it).

    Raises:
        NodeTimeoutError: Our deadline fired.
        NodeCancellationError: *cancel_token* was set (before or during the call).
        AbandonedThreadLimitError: Sync *fn* and too many abandoned threads.
        ConfigError: *seconds* is not a positive duration.
    """
    layer = _layer_for(seconds, on_timeout, name)
    if is_async_callable(fn):
        return _with_token(layer, fn, cancel_token)
    return layer.run_sync(fn, cancel_token)


@attrs.frozen
class TimeoutResult(Generic[T]):
    """The outcome of `with_timeout_result`: a value or an error, and the time taken.

    Attributes:
        value: What the function returned (None when it failed).
        error: The exception it failed with (`NodeTimeoutError` for our
            deadline), or None on success.
        elapsed: Seconds from the start of the call to its outcome, on the event
            loop's clock for async calls (virtual under a mock clock) and
            ``time.monotonic`` for sync ones.
    """

    value: T | None = None
    error: Exception | None = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the call returned a value."""
        return self.error is None

    @property
    def timed_out(self) -> bool:
        """Whether our deadline fired."""
        return isinstance(self.error, NodeTimeoutError)

    def unwrap(self) -> T:
        """The value, or raise the error.

        Returns:
            The value of a successful call.

        Raises:
            Exception: The call's error, if it failed.
        """
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


async def _result_async(
    layer: _Layer, fn: Callable[[], Awaitable[T]], token: CancelTokenLike | None
) -> TimeoutResult[T]:
    start = current_time()
    try:
        value = await _with_token(layer, fn, token)
    except Exception as exc:
        if is_control_flow(exc):
            raise
        return TimeoutResult(error=exc, elapsed=current_time() - start)
    return TimeoutResult(value=value, elapsed=current_time() - start)


def _result_sync(
    layer: _Layer, fn: Callable[[], T], token: CancelTokenLike | None
) -> TimeoutResult[T]:
    start = time.monotonic()
    try:
        value = layer.run_sync(fn, token)
    except Exception as exc:
        if is_control_flow(exc):
            raise
        return TimeoutResult(error=exc, elapsed=time.monotonic() - start)
    return TimeoutResult(value=value, elapsed=time.monotonic() - start)


@overload
def with_timeout_result(  # type: ignore[overload-overlap]
    fn: Callable[[], Coroutine[Any, Any, T]],
    seconds: Seconds,
    /,
    *,
    on_timeout: Callable[..., Any] | None = None,
    cancel_token: CancelTokenLike | None = None,
    name: str | None = None,
) -> Coroutine[Any, Any, TimeoutResult[T]]: ...


@overload
def with_timeout_result(
    fn: Callable[[], T],
    seconds: Seconds,
    /,
    *,
    on_timeout: Callable[..., Any] | None = None,
    cancel_token: CancelTokenLike | None = None,
    name: str | None = None,
) -> TimeoutResult[T]: ...


def with_timeout_result(
    fn: Callable[[], Any],
    seconds: Seconds,
    /,
    *,
    on_timeout: Callable[..., Any] | None = None,
    cancel_token: CancelTokenLike | None = None,
    name: str | None = None,
) -> Any:
    """Like `with_timeout`, but return a `TimeoutResult` instead of raising.

    Every ``Exception`` the call ends with (our timeout, a cancel token, the
    function's own errors) is captured in the result. The backend's
    cancellation, other ``BaseException``s and LangGraph's control flow still
    propagate.

    Args:
        fn: Zero-argument callable.
        seconds: The deadline (> 0).
        on_timeout: Cleanup run when our deadline fires.
        cancel_token: Stops the call early.
        name: Node name for errors and log events.

    Returns:
        A `TimeoutResult` (for an async *fn*, a coroutine giving one).

    Raises:
        ConfigError: *seconds* is not a positive duration.
    """
    layer = _layer_for(seconds, on_timeout, name)
    if is_async_callable(fn):
        return _result_async(layer, fn, cancel_token)
    return _result_sync(layer, fn, cancel_token)


class TimeoutController:
    """A deadline and a cancel switch for code that manages its own time budget.

    Time is measured on a monotonic clock (``time.monotonic`` unless another is
    injected), so the controller works from sync code and across threads. Async
    code applies it with ``with controller.scope():`` (or ``async with``), which
    cancels the block at the deadline or on `cancel` and raises
    `NodeTimeoutError` or `NodeCancellationError` accordingly. The `token` can be
    handed to `with_timeout` or a node like any cancel token.
    """

    __slots__ = ("_clock", "_start", "deadline", "name", "seconds", "token")

    def __init__(
        self,
        seconds: Seconds,
        /,
        *,
        name: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = TimeoutConfig(seconds=seconds).seconds
        self.name = name
        self.token = CancelToken()
        self._clock = clock
        self._start = clock()
        self.deadline = self._start + self.seconds
        """The absolute deadline on the controller's clock."""

    def __repr__(self) -> str:
        return (
            f"<TimeoutController {self.seconds:g}s remaining={self.remaining:.3f}s "
            f"cancelled={self.cancelled}>"
        )

    @property
    def remaining(self) -> float:
        """Seconds left before the deadline (0 once it has passed)."""
        return max(0.0, self.deadline - self._clock())

    @property
    def elapsed(self) -> float:
        """Seconds since the controller was created."""
        return self._clock() - self._start

    @property
    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self._clock() >= self.deadline

    @property
    def cancelled(self) -> bool:
        """Whether `cancel` was called."""
        return self.token.cancelled

    def cancel(self, reason: str = "timeout controller was cancelled") -> bool:
        """Cancel every block under this controller, now and later.

        Args:
            reason: Becomes `NodeCancellationError.reason`.

        Returns:
            True if this call cancelled it, False if it already was.
        """
        return self.token.cancel(reason)

    def check(self) -> None:
        """Raise if the controller is cancelled or past its deadline (for sync loops).

        Raises:
            NodeCancellationError: `cancel` was called.
            NodeTimeoutError: The deadline has passed.
        """
        if self.token.cancelled:
            raise NodeCancellationError(token_reason(self.token), node=self.name)
        if self.expired:
            raise NodeTimeoutError(self.seconds, node=self.name)

    def scope(self) -> _ControllerScope:
        """A context manager that bounds an async block by this controller.

        Returns:
            A context manager usable with ``with`` or ``async with`` inside a
            task on asyncio or trio.
        """
        return _ControllerScope(self)


class _ControllerScope:
    __slots__ = ("_canceller", "_controller", "_remove", "_scope")

    def __init__(self, controller: TimeoutController) -> None:
        self._controller = controller

    def __enter__(self) -> TimeoutController:
        controller = self._controller
        controller.check()
        self._scope = CancelScope(deadline=current_time() + controller.remaining)
        self._canceller = ScopeCanceller(self._scope)
        self._remove = controller.token.on_cancel(in_event_loop(self._canceller))
        self._scope.__enter__()
        return controller

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        self._canceller.active = False
        self._remove()
        swallowed = bool(self._scope.__exit__(exc_type, exc, traceback))
        # Not swallowed with a cancel exception in flight: the caller was cancelled
        # too, and that wins.
        if self._scope.cancel_called and (swallowed or exc is None or isinstance(exc, Exception)):
            controller = self._controller
            if controller.token.cancelled:
                raise NodeCancellationError(token_reason(controller.token), node=controller.name)
            raise NodeTimeoutError(controller.seconds, node=controller.name)
        return swallowed

    async def __aenter__(self) -> TimeoutController:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        return self.__exit__(exc_type, exc, traceback)


def create_timeout_controller(
    seconds: Seconds,
    /,
    *,
    name: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> TimeoutController:
    """Start a `TimeoutController` whose deadline is *seconds* from now.

    Args:
        seconds: The budget (> 0).
        name: Node name for the errors it raises.
        clock: Monotonic clock in seconds (injectable for tests).

    Returns:
        The controller.

    Raises:
        ConfigError: *seconds* is not a positive duration.
    """
    return TimeoutController(seconds, name=name, clock=clock)
