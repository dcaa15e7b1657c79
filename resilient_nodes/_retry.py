"""Retrying a node: jittered exponential backoff on tenacity's strategy protocol.

tenacity owns the mechanism's vocabulary: a per-call `tenacity.RetryCallState`
and the three strategy kinds (retry predicate, stop, wait). This module supplies
the node semantics as such strategies:

- `RetryPredicate`: retry what `classify_error` calls retryable, or what the
  config's ``retry_on`` (exception types or a predicate) accepts.
- ``stop_after_attempt(attempts)`` plus `DeadlineStop`: never begin a backoff
  sleep that would end at or past the enclosing deadline.
- `BackoffWait`: the delay of `retry_delay`.

We do not run ``tenacity.AsyncRetrying``: building and iterating one costs about
85 µs per call, most of it re-wrapping callbacks on every step. Instead one state
machine, `_Retry`, drives the same strategy objects with a fresh
``RetryCallState`` and makes every decision; two thin shells, sync and async,
only call the function, sleep, and await (or drop) what ``on_retry`` returned.
The machine is built only after the first failure; the first attempt is a bare
call. So a call that succeeds at once pays for one extra coroutine frame and
nothing else, and no retry state is ever shared between concurrent calls.

Rules every path follows:

- Control flow (the backend's cancellation, ``KeyboardInterrupt``,
  ``SystemExit``, ``GeneratorExit``, LangGraph's ``GraphBubbleUp``) is re-raised at
  once: never passed to a predicate, never slept on, never counted.
- A non-retryable error is raised as itself, at once.
- Retry budget (``RetryConfig.budget``, per wrapped node): a retry that the
  budget does not allow is not made; the attempt's error is raised as itself,
  with a note, and ``node.retry_budget_exhausted`` is logged. See
  `resilient_nodes._budget`.
- When the attempts run out, ``NodeRetryExhaustedError(attempts, last_error)`` is
  raised ``from`` the last error.
- Deadline: before each backoff sleep the delay is compared with the time left in
  the enclosing budget (every enclosing anyio cancel scope for async functions,
  `resilient_nodes._deadline.sync_deadline_scope` for sync ones). If the sleep
  would end at or past it, the retry stops at once with
  ``NodeRetryExhaustedError(attempts made so far, last_error)`` (it carries a note
  saying so), instead of sleeping into a timeout that would hide the real error.
  An enclosing scope that has already been cancelled reports no time left; then
  its cancellation propagates, not our stop.
- ``on_retry`` is an observer: it is called before each sleep with the keyword
  arguments ``attempt`` (the attempt that failed), ``error``, ``delay`` and
  ``context`` (the `ExecutionContext` of the failed attempt, or None); parameters
  it does not declare are not passed. If it raises an ``Exception``, that is
  logged as a warning (``node.on_retry_failed``) and retrying goes on: an observer
  must not change the outcome. Control flow raised inside it propagates.
- A ``retry_on`` predicate that raises is logged (``node.retry_predicate_failed``)
  and the error it was judging is treated as not retryable, so the caller sees
  their own error rather than the predicate's bug.
- Sync functions sleep in their thread (``time.sleep``); async functions with
  ``anyio.sleep``, so asyncio and trio both work. `resilient_nodes.testing`
  can make the sleeps zero or replace them.
"""

from __future__ import annotations

import functools
import inspect
import math
import random
import time
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar, cast, overload

import anyio
import anyio.lowlevel
from tenacity import Future, RetryCallState
from tenacity.retry import retry_base
from tenacity.stop import stop_after_attempt, stop_base
from tenacity.wait import wait_base

from . import _telemetry
from ._budget import BudgetTracker
from ._callables import is_async_callable
from ._classification import ErrorClassification, classify_error
from ._context import activate, current_context, deactivate, note_attempt
from ._control import is_control_flow
from ._deadline import async_remaining, sync_remaining
from ._logging import LogEvent, emit, get_logger
from ._sanitize import error_text
from ._switches import Rng, switches
from ._tokens import sleep_unless_cancelled, sync_cancel_token
from .errors import ConfigError, NodeRetryExhaustedError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine
    from contextvars import Token
    from types import TracebackType

    from tenacity import BaseRetrying

    from ._config import RetryConfig
    from ._context import ExecutionContext

# The public surface, re-exported from `resilient_nodes`. The tenacity strategy
# classes below are importable from this module for tenacity users, but stay out of
# `__all__`: library types do not leak into the package's public API.
__all__ = [
    "create_retry_wrapper",
    "retry_delay",
    "with_retry",
    "would_retry",
    "wrap_retry",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")


_INFO: Final = 20
_CALLBACK_FIELDS: Final = ("attempt", "error", "delay", "context")

# --- pure maths ------------------------------------------------------------------------


def retry_delay(
    attempt: int,
    config: RetryConfig,
    *,
    rng: Rng | None = None,
    retry_after: float | None = None,
) -> float:
    """The delay before attempt ``attempt + 1``, after attempt ``attempt`` failed.

    ``base = min(backoff * multiplier ** (attempt - 1), max_backoff)`` and the delay
    is ``base * (1 + u * jitter)`` with ``u`` drawn from *rng* in [0, 1). A
    positive *retry_after* raises the delay to at least
    ``min(retry_after, max_retry_after)``. Huge attempt numbers saturate at the cap
    instead of overflowing.

    Args:
        attempt: The attempt that failed, from 1.
        config: Backoff settings.
        rng: Random source for the jitter; the `random` module's when None.
        retry_after: Seconds the failed call asked us to wait (``Retry-After``).

    Returns:
        The delay in seconds, never negative.

    Raises:
        ValueError: If *attempt* is below 1 or *rng* returned a value outside [0, 1].
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    if config.backoff <= 0:
        # Zero times an overflowed power would be NaN; zero backoff is zero.
        base = 0.0
    else:
        try:
            grown = config.backoff * config.multiplier ** (attempt - 1)
        except OverflowError:
            grown = math.inf
        base = min(grown, config.max_backoff)
    delay = base
    if config.jitter > 0 and base > 0:
        u = _draw(rng)
        delay = base * (1.0 + u * config.jitter)
    if retry_after is not None and retry_after > 0:
        delay = max(delay, min(retry_after, config.max_retry_after))
    return delay


def _draw(rng: Rng | None) -> float:
    if rng is None:
        u = random.random()
    elif isinstance(rng, random.Random):
        u = rng.random()
    else:
        u = rng()
    if not 0.0 <= u <= 1.0:
        raise ValueError(f"rng must return a number in [0, 1), got {u!r}")
    return u


# --- tenacity strategies ---------------------------------------------------------------


class _CallState(RetryCallState):
    """A RetryCallState that is cheap to fail into.

    tenacity keeps each outcome in a ``concurrent.futures.Future``, whose lock
    costs more than the rest of a retry decision. Our strategies read the error
    straight from `error`; ``outcome`` builds tenacity's Future only when some
    other strategy asks for it, so any tenacity strategy still works here. The
    classification of the error is cached too, since the predicate and the wait
    both need it. Per call, never shared.
    """

    def __init__(self, fn: Callable[..., Any], args: Any, kwargs: Any) -> None:
        self.error: BaseException | None = None
        self._outcome: Future | None = None
        self.classified: tuple[BaseException, ErrorClassification] | None = None
        # No BaseRetrying object exists on our path; strategies never look at it.
        super().__init__(cast("BaseRetrying", None), fn, args, kwargs)

    @property
    def outcome(self) -> Future | None:
        """The attempt's outcome as tenacity's Future, built on first use."""
        if self._outcome is None and self.error is not None:
            self._outcome = Future.construct(self.attempt_number, self.error, has_exception=True)
        return self._outcome

    @outcome.setter
    def outcome(self, value: Future | None) -> None:
        self._outcome = value
        self.error = None

    def fail(self, error: BaseException) -> None:
        """Record that the current attempt raised *error*."""
        self.outcome = None
        self.error = error
        self.outcome_timestamp = time.monotonic()


def _failure(retry_state: RetryCallState) -> BaseException | None:
    if isinstance(retry_state, _CallState):
        return retry_state.error
    outcome = retry_state.outcome
    return None if outcome is None else outcome.exception()


def _classify(retry_state: RetryCallState, error: BaseException) -> ErrorClassification:
    cached = getattr(retry_state, "classified", None)
    if cached is not None and cached[0] is error:
        return cast("ErrorClassification", cached[1])
    classification = classify_error(error)
    if isinstance(retry_state, _CallState):
        retry_state.classified = (error, classification)
    return classification


class RetryPredicate(retry_base):
    """tenacity retry strategy: is the failed attempt's error worth retrying?

    Only an ``Exception`` that is not control flow is ever judged; anything else
    answers False, so tenacity (or our loop) re-raises it untouched.

    Args:
        config: Supplies ``retry_on``; when None, `classify_error` decides.
        name: Node name, for the warning logged when a predicate raises.
        logger: Bound structlog logger for that warning; one is bound to *name*
            on first need when None.
    """

    def __init__(
        self, config: RetryConfig, /, *, name: str = "<unnamed>", logger: Any = None
    ) -> None:
        retry_on = config.retry_on
        self._types: tuple[type[BaseException], ...] | None = None
        self._predicate: Callable[[Exception], bool] | None = None
        if isinstance(retry_on, type):
            self._types = (retry_on,)
        elif isinstance(retry_on, tuple):
            self._types = retry_on
        elif retry_on is not None:
            self._predicate = retry_on
        self._name = name
        self._log: Any = logger

    def __call__(self, retry_state: RetryCallState) -> bool:
        """Whether to retry after the outcome held by *retry_state*."""
        error = _failure(retry_state)
        if not isinstance(error, Exception) or is_control_flow(error):
            return False
        return self.judge(error, retry_state)

    def judge(self, error: Exception, retry_state: RetryCallState | None = None) -> bool:
        """Whether *error* (known not to be control flow) is retryable."""
        if self._types is not None:
            return isinstance(error, self._types)
        if self._predicate is None:
            if retry_state is None:
                return classify_error(error).retryable
            return _classify(retry_state, error).retryable
        try:
            return bool(self._predicate(error))
        except Exception as failure:
            if is_control_flow(failure):
                raise
            if self._log is None:
                # Bound lazily: a predicate that raises is rare, and `would_retry`
                # builds a predicate per call.
                self._log = get_logger(node=self._name)
            emit(
                self._log.warning,
                LogEvent.NODE_RETRY_PREDICATE_FAILED,
                error_type=type(failure).__name__,
                error_message=error_text(failure),
                judged_error_type=type(error).__name__,
            )
            return False


class BackoffWait(wait_base):
    """tenacity wait strategy computing `retry_delay` for the failed attempt.

    The ``Retry-After`` of the failed attempt's error (from `classify_error`)
    raises the delay, up to ``config.max_retry_after``.

    Args:
        config: Backoff settings.
        rng: Random source for the jitter; the `random` module's when None.
    """

    def __init__(self, config: RetryConfig, /, *, rng: Rng | None = None) -> None:
        self._config = config
        self._rng = rng

    def __call__(self, retry_state: RetryCallState) -> float:
        """The delay before the next attempt, in seconds."""
        error = _failure(retry_state)
        retry_after = None
        if error is not None and not is_control_flow(error):
            retry_after = _classify(retry_state, error).retry_after
        return retry_delay(
            retry_state.attempt_number,
            self._config,
            rng=self._rng or switches.rng,
            retry_after=retry_after,
        )


class DeadlineStop(stop_base):
    """tenacity stop strategy: stop when the upcoming sleep would hit the deadline.

    Args:
        remaining: Seconds left in the enclosing budget (``math.inf`` if none).
    """

    def __init__(self, remaining: Callable[[], float], /) -> None:
        self._remaining = remaining

    def __call__(self, retry_state: RetryCallState) -> bool:
        """True when ``upcoming_sleep`` would end at or past the deadline."""
        return retry_state.upcoming_sleep >= self._remaining()


# --- the retry state machine and its shells -------------------------------------------


def _callback_fields(callback: Callable[..., Any]) -> tuple[str, ...]:
    """Which of our keyword arguments *callback* accepts."""
    try:
        parameters = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return _CALLBACK_FIELDS
    names = set()
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return _CALLBACK_FIELDS
        if parameter.kind is not inspect.Parameter.POSITIONAL_ONLY:
            names.add(parameter.name)
    return tuple(field for field in _CALLBACK_FIELDS if field in names)


def _qualname(fn: object) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if isinstance(name, str):
        return name
    return type(fn).__qualname__


class _Retrier:
    """Everything fixed at wrap time, shared by every call; and the two shells.

    A call's own state lives in a `_Retry`, built only after its first attempt
    failed.
    """

    __slots__ = (
        "async_deadline",
        "budget",
        "callback",
        "callback_fields",
        "log",
        "log_enabled",
        "name",
        "out_of_attempts",
        "retry",
        "sync_deadline",
        "wait",
    )

    def __init__(self, config: RetryConfig, name: str) -> None:
        self.name = name
        self.log = get_logger(node=name)
        self.retry = RetryPredicate(config, name=name, logger=self.log)
        self.out_of_attempts = stop_after_attempt(config.attempts)
        self.wait = BackoffWait(config)
        self.sync_deadline = DeadlineStop(sync_remaining)
        self.async_deadline = DeadlineStop(async_remaining)
        # Per wrapped node, shared by all its calls.
        self.budget = BudgetTracker(config.budget) if config.budget is not None else None
        self.callback = config.on_retry
        self.callback_fields = _callback_fields(config.on_retry) if config.on_retry else ()
        # Filtering loggers turn disabled levels into no-ops, but the fields we
        # would pass (a redacted message) cost microseconds to build.
        self.log_enabled: Callable[[int], bool] | None = getattr(self.log, "is_enabled_for", None)

    def announce(
        self, attempt: int, error: Exception, delay: float, context: ExecutionContext | None
    ) -> object:
        """Log the scheduled retry and call ``on_retry``; return what it returned."""
        telemetry = _telemetry.active
        if telemetry is not None:
            telemetry.retrying(self.name, attempt, error, delay)
        enabled = self.log_enabled
        if enabled is None or enabled(_INFO):
            fields: dict[str, Any] = {
                "attempt": attempt,
                "delay": delay,
                "error_type": type(error).__name__,
                "error_message": error_text(error),
            }
            if context is not None:
                fields["trace_id"] = context.trace_id
                fields["graph_execution_id"] = context.graph_execution_id
            emit(self.log.info, LogEvent.NODE_RETRY_SCHEDULED, **fields)
        if self.callback is None:
            return None
        values = {"attempt": attempt, "error": error, "delay": delay, "context": context}
        try:
            return self.callback(**{field: values[field] for field in self.callback_fields})
        except Exception as failure:
            self.callback_failed(failure, attempt)
            return None

    def callback_failed(self, failure: Exception, attempt: int) -> None:
        """Log an ``on_retry`` failure; control flow from it propagates."""
        if is_control_flow(failure):
            raise failure
        emit(
            self.log.warning,
            LogEvent.NODE_ON_RETRY_FAILED,
            attempt=attempt,
            error_type=type(failure).__name__,
            error_message=error_text(failure),
        )

    def budget_spent(self, error: Exception, attempt: int) -> None:
        """Say why a retryable failure is raised as it is: the retry budget is spent."""
        budget = self.budget
        assert budget is not None  # noqa: S101 - only called with a budget
        calls, retries = budget.counts()
        note = (
            f"not retried: the retry budget of node {self.name} is spent ({retries} "
            f"retries for {calls} calls in the last {budget.budget.window:g}s)"
        )
        if note not in getattr(error, "__notes__", ()):
            error.add_note(note)
        emit(
            self.log.warning,
            LogEvent.RETRY_BUDGET_EXHAUSTED,
            attempt=attempt,
            calls=calls,
            retries=retries,
            error_type=type(error).__name__,
            error_message=error_text(error),
        )

    def run_sync(
        self, fn: Callable[..., _R], args: tuple[Any, ...], kwargs: dict[str, Any], error: Exception
    ) -> _R:
        """Retry *fn* after its first attempt failed with *error*, sleeping in this thread."""
        retry = _Retry(self, fn, args, kwargs, error, deadline=self.sync_deadline)
        while True:
            notice = retry.schedule()
            if inspect.isawaitable(notice):
                _discard(notice)
                retry.callback_failed(
                    TypeError("on_retry returned an awaitable to a sync retry; not awaited")
                )
            stop = retry.stopping()
            if stop is not None:
                raise stop from stop.last_error
            _sleep_in_thread(retry.delay, self.name)
            with retry:
                return fn(*args, **kwargs)

    async def run_async(
        self,
        fn: Callable[..., Awaitable[_R]],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        error: Exception,
    ) -> _R:
        """Retry async *fn* after its first attempt failed with *error*."""
        retry = _Retry(self, fn, args, kwargs, error, deadline=self.async_deadline)
        while True:
            notice = retry.schedule()
            if inspect.isawaitable(notice):
                try:
                    await notice
                except Exception as failure:
                    retry.callback_failed(failure)
            stop = retry.stopping()
            if stop is not None:
                # A cancelled enclosing scope reports no time left: its
                # cancellation, not our stop, must be what propagates.
                await anyio.lowlevel.checkpoint_if_cancelled()
                raise stop from stop.last_error
            await (switches.async_sleep or anyio.sleep)(retry.delay)
            with retry:
                return await fn(*args, **kwargs)


class _Retry:
    """One call's retries after its first attempt failed: every decision, no waiting.

    Both shells drive it through the same cycle; only the steps in brackets
    differ between sync and async::

        while True:
            notice = retry.schedule()  # give up (raises), or log and call on_retry
            [await notice, or drop and report it]
            stop = retry.stopping()  # would the sleep overrun the deadline?
            [raise stop (async: after a checkpoint)]
            [sleep retry.delay]
            with retry:  # the next attempt; an Exception is kept for schedule
                [return fn(...)]

    Per call, never shared; the wrapper builds one only when a call fails.

    Args:
        retrier: The wrap-time strategies and callbacks.
        fn: The function being retried (recorded in tenacity's call state).
        args: Positional arguments of the call.
        kwargs: Keyword arguments of the call.
        error: What the first attempt raised.
        deadline: The stop that reads the enclosing budget, sync or async.
    """

    __slots__ = ("_deadline", "_outer", "_retrier", "_state", "_stop", "_token", "context", "error")

    def __init__(
        self,
        retrier: _Retrier,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        error: Exception,
        *,
        deadline: DeadlineStop,
    ) -> None:
        self._retrier = retrier
        self._deadline = deadline
        self._state = _CallState(fn, args, kwargs)
        # Read before the first retry renumbers the call's attempt: every later
        # attempt runs under a copy of this context carrying its own number.
        self._outer = current_context()
        self.context = self._outer
        self.error = error
        self._stop: NodeRetryExhaustedError | None = None
        self._token: Token[Any] | None = None

    @property
    def delay(self) -> float:
        """The backoff `schedule` chose, in seconds."""
        return self._state.upcoming_sleep

    def schedule(self) -> object:
        """Decide what follows the failed attempt; if a retry, announce it.

        Returns:
            What ``on_retry`` returned: an awaitable is the shell's to await or
            drop. None without a callback, when it raised, or when the retry
            stops at the deadline (then `stopping` says so).

        Raises:
            Exception: The attempt's error itself, when it is control flow or
                not retryable.
            NodeRetryExhaustedError: When that was the last allowed attempt.
            Exception: The attempt's error itself, with a note, when the node's
                retry budget is spent.
        """
        error = self.error
        if is_control_flow(error):
            raise error
        retrier = self._retrier
        state = self._state
        state.fail(error)
        if not retrier.retry(state):
            raise error
        if retrier.out_of_attempts(state):
            raise NodeRetryExhaustedError(state.attempt_number, error, node=retrier.name) from error
        delay = 0.0 if switches.zero_backoff else retrier.wait(state)
        state.upcoming_sleep = delay
        if self._deadline(state):
            self._stop = self._stopped_early()
            return None
        budget = retrier.budget
        if budget is not None and not budget.try_retry():
            # Past the node's retry budget: give up with the dependency's own
            # error, as a call with one attempt would, rather than add load.
            retrier.budget_spent(error, state.attempt_number)
            raise error
        state.idle_for += delay
        return retrier.announce(state.attempt_number, error, delay, self.context)

    def stopping(self) -> NodeRetryExhaustedError | None:
        """The error to raise instead of sleeping into the enclosing deadline, if any."""
        if (
            self._stop is None
            and self._retrier.callback is not None
            and self._deadline(self._state)
        ):
            # on_retry took time of the budget too: check again before sleeping.
            self._stop = self._stopped_early()
            if self._retrier.budget is not None:
                self._retrier.budget.refund()  # the retry it was taken for is off
        return self._stop

    def callback_failed(self, failure: Exception) -> None:
        """Report that ``on_retry``'s awaitable failed; control flow propagates."""
        self._retrier.callback_failed(failure, self._state.attempt_number)

    def _stopped_early(self) -> NodeRetryExhaustedError:
        exhausted = NodeRetryExhaustedError(
            self._state.attempt_number, self.error, node=self._retrier.name
        )
        exhausted.add_note(
            f"retrying stopped early: the next backoff ({self.delay:g}s) would end "
            "past the enclosing deadline"
        )
        return exhausted

    def __enter__(self) -> None:
        """Begin the next attempt: count it, and make its context current."""
        state = self._state
        state.prepare_for_next_attempt()
        note_attempt(state.attempt_number, self._retrier.name)
        if self._outer is not None:
            self.context = self._outer.with_attempt(state.attempt_number)
            self._token = activate(self.context)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        """End the attempt: restore the context and keep an ``Exception`` for `schedule`.

        Returns:
            True (swallow it) for an ``Exception``, which `schedule` judges next;
            False for success and for anything else, which propagates.
        """
        if self._token is not None:
            deactivate(self._token)
            self._token = None
        if isinstance(error, Exception):
            self.error = error
            return True
        return False


def _sleep_in_thread(delay: float, name: str) -> None:
    """Sleep a sync retry's backoff, cut short by the call's cancel token if it has one."""
    cancel_token = sync_cancel_token()
    if cancel_token is None or switches.sync_sleep is not None:
        (switches.sync_sleep or time.sleep)(delay)
    if cancel_token is not None:
        # The caller was released when the token was set: this thread is
        # abandoned, and must not make another attempt.
        wait = 0.0 if switches.sync_sleep else delay
        sleep_unless_cancelled(wait, cancel_token, name=name)


def _counting(shell: Callable[..., Any], retrier: _Retrier) -> Callable[..., Any]:
    """*shell*, counting each call's first attempt in the node's retry budget.

    Without a budget, *shell* itself: the success path stays one bare call.
    """
    budget = retrier.budget
    if budget is None:
        return shell
    record = budget.record_call
    if inspect.iscoroutinefunction(shell):

        @functools.wraps(shell)
        async def counted_async(*args: Any, **kwargs: Any) -> Any:
            record()
            return await shell(*args, **kwargs)

        return counted_async

    @functools.wraps(shell)
    def counted_sync(*args: Any, **kwargs: Any) -> Any:
        record()
        return shell(*args, **kwargs)

    return counted_sync


def _discard(awaitable: Awaitable[object]) -> None:
    close = getattr(awaitable, "close", None)
    if callable(close):
        close()


# --- public wrappers -------------------------------------------------------------------


@overload
def wrap_retry(
    fn: Callable[_P, Awaitable[_R]], config: RetryConfig, /, *, name: str
) -> Callable[_P, Coroutine[Any, Any, _R]]: ...


@overload
def wrap_retry(fn: Callable[_P, _R], config: RetryConfig, /, *, name: str) -> Callable[_P, _R]: ...


def wrap_retry(fn: Callable[_P, Any], config: RetryConfig, /, *, name: str) -> Callable[_P, Any]:
    """Wrap *fn* so that each call retries as *config* says.

    The result is of the same kind (a coroutine function for an async *fn*, also a
    ``functools.partial`` of one or an object with an async ``__call__``) and has
    *fn*'s name, docstring and signature. The kind is decided once, here. Each
    call keeps its own retry state, so the wrapper is safe to call concurrently.

    Args:
        fn: The function to retry.
        config: Attempts, backoff and what to retry.
        name: Node name used in errors and log events.

    Returns:
        The wrapped callable.

    Raises:
        ConfigError: If *fn* is sync but ``config.on_retry`` is async (a sync
            retry has no event loop to await it on).
    """
    retrier = _Retrier(config, name)
    if is_async_callable(fn):
        afn = cast("Callable[..., Awaitable[Any]]", fn)
        run_async = retrier.run_async

        @functools.wraps(fn)
        async def retrying_async(*args: _P.args, **kwargs: _P.kwargs) -> Any:
            try:
                result = await afn(*args, **kwargs)
            except Exception as error:
                first = error
            else:
                return result
            # Outside the except block, so later errors do not chain onto this one.
            return await run_async(afn, args, kwargs, first)

        return _counting(retrying_async, retrier)

    if config.on_retry is not None and is_async_callable(config.on_retry):
        raise ConfigError(
            [("on_retry", f"is async, but {name} is a sync function; use a sync callback")]
        )
    run_sync = retrier.run_sync

    @functools.wraps(fn)
    def retrying_sync(*args: _P.args, **kwargs: _P.kwargs) -> Any:
        try:
            result = fn(*args, **kwargs)
        except Exception as error:
            first = error
        else:
            return result
        return run_sync(fn, args, kwargs, first)

    return _counting(retrying_sync, retrier)


class _RetryDecorator:
    """What `create_retry_wrapper` returns: applies `wrap_retry` to a function."""

    __slots__ = ("_config", "_name")

    def __init__(self, config: RetryConfig, name: str | None) -> None:
        self._config = config
        self._name = name

    @overload
    def __call__(
        self, fn: Callable[_P, Awaitable[_R]], /
    ) -> Callable[_P, Coroutine[Any, Any, _R]]: ...

    @overload
    def __call__(self, fn: Callable[_P, _R], /) -> Callable[_P, _R]: ...

    def __call__(self, fn: Callable[_P, Any], /) -> Callable[_P, Any]:
        return wrap_retry(fn, self._config, name=self._name or _qualname(fn))


def create_retry_wrapper(config: RetryConfig, /, *, name: str | None = None) -> _RetryDecorator:
    """A decorator applying *config*'s retries to a function (sync or async).

    Args:
        config: Attempts, backoff and what to retry.
        name: Node name for errors and logs; the function's qualified name when
            None.

    Returns:
        A decorator; see `wrap_retry` for what it produces.
    """
    return _RetryDecorator(config, name)


@overload
def with_retry(
    fn: Callable[..., Awaitable[_R]],
    config: RetryConfig,
    /,
    *args: Any,
    name: str | None = None,
    **kwargs: Any,
) -> Coroutine[Any, Any, _R]: ...


@overload
def with_retry(
    fn: Callable[..., _R],
    config: RetryConfig,
    /,
    *args: Any,
    name: str | None = None,
    **kwargs: Any,
) -> _R: ...


def with_retry(
    fn: Callable[..., Any],
    config: RetryConfig,
    /,
    *args: Any,
    name: str | None = None,
    **kwargs: Any,
) -> Any:
    """Call ``fn(*args, **kwargs)`` with retries.

    For repeated calls prefer `create_retry_wrapper` or `wrap_retry`: this wraps
    anew (binding a logger) on every use. A keyword argument called ``name`` is
    taken as the node name, not passed to *fn*.

    Args:
        fn: The function to call.
        config: Attempts, backoff and what to retry.
        *args: Positional arguments for *fn*.
        name: Node name for errors and logs; *fn*'s qualified name when None.
        **kwargs: Keyword arguments for *fn*.

    Returns:
        *fn*'s result for a sync *fn*; an awaitable of it for an async one.

    Raises:
        NodeRetryExhaustedError: Every attempt failed with a retryable error, or
            the next backoff would have ended past the enclosing deadline.
        Exception: A non-retryable error, as itself; control flow, untouched.
    """
    wrapped: Callable[..., Any] = wrap_retry(fn, config, name=name or _qualname(fn))
    return wrapped(*args, **kwargs)


def would_retry(error: BaseException, attempt: int, config: RetryConfig, /) -> bool:
    """Whether a failure of attempt *attempt* with *error* would be retried.

    This ignores deadlines: it answers for the configuration alone.

    Args:
        error: The error the attempt raised.
        attempt: The attempt that failed, from 1.
        config: The retry configuration.

    Returns:
        False for control flow, for a non-retryable error and when *attempt* was
        the last allowed one; True otherwise.
    """
    if not isinstance(error, Exception) or is_control_flow(error):
        return False
    if attempt >= config.attempts:
        return False
    return RetryPredicate(config).judge(error)
