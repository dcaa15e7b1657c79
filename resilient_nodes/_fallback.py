"""Falling back to alternatives: ``Policy.fallback(*alternatives, on=None)``.

Semantics, in one place:

- When the layers to the right of the fallback layer (the *primary*) fail with
  an error that ``on`` accepts, the alternatives are called in order with the
  same arguments, until one returns. Its result is the call's result.
- By default (``on=None``) a fallback happens on what says the dependency is
  failing or unreachable right now: any error classified retryable, a
  ``timeout``, ``network``, ``server`` (5xx, overload) or ``rate_limit`` error
  (also one a server told us not to retry), an exhausted retry, our own
  refusals (``rejected``: a full rate limit or bulkhead, the thread limit), and
  an open circuit, so an open breaker on the primary means the alternative
  answers with zero primary calls. Never on a used-up ``quota``, an ``auth`` error,
  ``validation`` or ``programming`` errors, a cancel token, or an unknown
  error: another route would fail the same way, or the failure needs a person.
  A ``context_length`` error does not fall back by default either; route it
  with ``on`` (to a model with a larger context).
- ``on`` (a predicate on the exception) replaces that default. It is never
  shown control flow. If it raises, that is logged
  (``fallback.predicate_failed``) and the error it judged propagates.
- Control flow (the backend's cancellation, ``KeyboardInterrupt``,
  ``GeneratorExit``, LangGraph's ``GraphBubbleUp``) passes through untouched, from
  the primary and from every alternative.
- A primary error that ``on`` rejects propagates as itself. Once an alternative
  has been tried, a failure that ends the route (the last alternative failed, or
  ``on`` rejected an alternative's error) raises `NodeFallbackExhaustedError`
  ``from`` the last error, with ``.errors`` holding what each callable tried
  raised, primary first.
- While an alternative runs, ``current_context().served_by`` names it (the
  primary runs with ``served_by=None``). ``fallback.started`` is logged when the
  route moves on (with the failed callable, its error and the next one) and
  ``fallback.served`` when an alternative returned.

An alternative is a callable of the primary's kind (async for an async primary,
sync for a sync one), typically another ``policy.wrap(...)`` with its own retry
and breaker. Streams (functions returning async iterators) fall back only before
their first item is delivered; see `resilient_nodes._stream`.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Final, cast

import attrs

from . import _telemetry
from ._callables import callable_name, is_async_callable
from ._classification import ErrorCategory, classify_error
from ._context import ExecutionContext, activate, current_context, deactivate
from ._control import is_control_flow
from ._logging import LogEvent, emit, get_logger
from ._sanitize import error_text
from .errors import ConfigError, NodeFallbackExhaustedError, NodeRetryExhaustedError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator, Sequence
    from contextvars import Token

__all__ = ["Route", "falls_back_by_default", "wrap_fallback"]

# Never a reason to try another route: it would fail alike, or it needs a person.
_NEVER: Final = frozenset(
    {
        ErrorCategory.QUOTA,
        ErrorCategory.AUTH,
        ErrorCategory.VALIDATION,
        ErrorCategory.PROGRAMMING,
        ErrorCategory.CANCELLED,
    }
)
# The dependency is failing or unreachable now, retryable or not.
_ALWAYS: Final = frozenset(
    {
        ErrorCategory.TIMEOUT,
        ErrorCategory.NETWORK,
        ErrorCategory.SERVER,
        ErrorCategory.RATE_LIMIT,
        ErrorCategory.CIRCUIT_OPEN,
        ErrorCategory.RETRY_EXHAUSTED,
        # Our own refusals (a full rate limit or bulkhead, the thread limit):
        # this route has no room now; another route may.
        ErrorCategory.REJECTED,
    }
)


def falls_back_by_default(error: BaseException, /) -> bool:
    """Whether the default fallback rule accepts *error* (see the module docstring).

    Args:
        error: What the primary (or an alternative) raised.

    Returns:
        False for control flow and for the categories that never fall back;
        True for a failing or unreachable dependency.
    """
    if is_control_flow(error):
        return False
    if isinstance(error, NodeRetryExhaustedError) and (
        is_control_flow(error.last_error) or classify_error(error.last_error).category in _NEVER
    ):
        # A retry_on predicate may have retried a quota error until it ran out.
        return False
    verdict = classify_error(error)
    if verdict.category in _NEVER:
        return False
    return verdict.retryable or verdict.category in _ALWAYS


class Route:
    """A fallback layer's fixed parts, shared by every call, and its decisions.

    Args:
        alternatives: The callables tried after the primary, in order.
        on: The predicate replacing the default rule, or None.
        name: The node name, for logs and errors.
        names: The names of the primary and each alternative, when the
            callables given are adapters of the ones the user named (streams).
    """

    __slots__ = ("_log", "_on", "alternatives", "name", "names")

    def __init__(
        self,
        alternatives: Sequence[Callable[..., Any]],
        on: Callable[..., Any] | None,
        name: str,
        *,
        names: Sequence[str] | None = None,
    ) -> None:
        self.alternatives = tuple(alternatives)
        self.name = name
        self.names: tuple[str, ...] = (
            tuple(names)
            if names is not None
            else (name, *(callable_name(alt) for alt in self.alternatives))
        )
        self._on = on
        self._log = get_logger(node=name)

    def accepts(self, error: BaseException) -> bool:
        """Whether *error* sends the call on to the next alternative."""
        if is_control_flow(error):
            return False
        if self._on is None:
            return falls_back_by_default(error)
        try:
            return bool(self._on(error))
        except Exception as failure:
            if is_control_flow(failure):
                raise
            emit(
                self._log.warning,
                LogEvent.FALLBACK_PREDICATE_FAILED,
                error_type=type(failure).__name__,
                error_message=error_text(failure),
                judged_error_type=type(error).__name__,
            )
            return False

    def switch(self, index: int, error: BaseException) -> Token[Any]:
        """Announce alternative *index* (from 1) after *error*; make it current.

        Returns:
            The token for `deactivate`, once the alternative is done.
        """
        outer = current_context()
        if outer is None:
            # Outside a node there is no context; inside a route there always
            # is one, so the alternative can tell it is the one serving.
            context = ExecutionContext(node_name=self.name, served_by=self.names[index])
        else:
            context = attrs.evolve(outer, served_by=self.names[index])
        emit(
            self._log.info,
            LogEvent.FALLBACK_STARTED,
            failed=self.names[index - 1],
            alternative=self.names[index],
            error_type=type(error).__name__,
            error_message=error_text(error),
            category=classify_error(error).category.value,
            trace_id=context.trace_id,
            graph_execution_id=context.graph_execution_id,
        )
        return activate(context)

    def served(self, index: int) -> None:
        """Log that alternative *index* returned."""
        telemetry = _telemetry.active
        if telemetry is not None:
            telemetry.fallback_served(self.name, self.names[index])
        emit(self._log.info, LogEvent.FALLBACK_SERVED, served_by=self.names[index])

    def exhausted(self, errors: Sequence[BaseException]) -> NodeFallbackExhaustedError:
        """The error ending a route that tried ``len(errors)`` callables."""
        return NodeFallbackExhaustedError(
            errors, callables=self.names[: len(errors)], node=self.name
        )

    async def run_async(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], error: Exception
    ) -> Any:
        """Go on after the async primary failed with *error*."""
        detour = _Detour(self, error)
        for alternative in detour:
            with detour:
                return detour.served(await alternative(*args, **kwargs))
        raise detour.exhausted() from detour.errors[-1]

    def run_sync(self, args: tuple[Any, ...], kwargs: dict[str, Any], error: Exception) -> Any:
        """Go on after the sync primary failed with *error*."""
        detour = _Detour(self, error)
        for alternative in detour:
            with detour:
                return detour.served(alternative(*args, **kwargs))
        raise detour.exhausted() from detour.errors[-1]


class _Detour:
    """One call's way through the alternatives after its primary failed.

    Every decision is here; the sync and async shells only call and await::

        for alternative in detour:  # the next one, while the route goes on
            with detour:  # makes it current; keeps an Exception for the next step
                return detour.served(alternative(...))
        raise detour.exhausted()

    Raises:
        Exception: The primary's *error* itself, at once, if it does not send the
            call on (a control-flow error never does).
    """

    __slots__ = ("_index", "_route", "_token", "errors")

    def __init__(self, route: Route, error: Exception) -> None:
        if not route.accepts(error):
            raise error
        self._route = route
        self.errors: list[Exception] = [error]
        self._index = 0
        self._token: Token[Any] | None = None

    def __iter__(self) -> Iterator[Callable[..., Any]]:
        for index, alternative in enumerate(self._route.alternatives, 1):
            self._index = index
            yield alternative
            if not self._route.accepts(self.errors[-1]):
                return

    def __enter__(self) -> None:
        self._token = self._route.switch(self._index, self.errors[-1])

    def __exit__(self, _type: object, failure: BaseException | None, _tb: object) -> bool:
        if self._token is not None:
            deactivate(self._token)
            self._token = None
        if failure is None or not isinstance(failure, Exception) or is_control_flow(failure):
            return False
        self.errors.append(failure)
        return True

    def served(self, result: Any) -> Any:
        """Log that the current alternative answered; return its *result*."""
        self._route.served(self._index)
        return result

    def exhausted(self) -> NodeFallbackExhaustedError:
        """The error ending a route that tried every callable it could."""
        return self._route.exhausted(self.errors)


def check_alternatives(
    alternatives: Sequence[Callable[..., Any]], *, is_async: bool, name: str
) -> None:
    """Refuse alternatives of another kind than the primary, naming them.

    Raises:
        ConfigError: ``alternatives[i]: ...`` for each one that does not fit.
    """
    problems = []
    for index, alternative in enumerate(alternatives):
        if is_async_callable(alternative) != is_async:
            kind, other = ("async", "sync") if is_async else ("sync", "async")
            message = (
                f"{callable_name(alternative)} is {other}, but {name} is {kind}; "
                f"an alternative must be {kind} too"
            )
            problems.append((f"alternatives[{index}]", message))
    if problems:
        raise ConfigError(problems)


def wrap_fallback(
    fn: Callable[..., Any],
    alternatives: Sequence[Callable[..., Any]],
    on: Callable[..., Any] | None,
    /,
    *,
    name: str,
) -> Callable[..., Any]:
    """Wrap *fn* so that its accepted failures go on to *alternatives*.

    The result has *fn*'s kind (decided here, once), name and signature. The
    primary's successful call costs one extra frame and nothing else.

    Args:
        fn: The primary (the layers to the right of the fallback layer).
        alternatives: Callables of *fn*'s kind, tried in order.
        on: Predicate on the exception replacing the default rule, or None.
        name: Node name for logs and errors.

    Returns:
        The wrapped callable.

    Raises:
        ConfigError: An alternative is of another kind than *fn*.
    """
    is_async = is_async_callable(fn)
    check_alternatives(alternatives, is_async=is_async, name=name)
    route = Route(alternatives, on, name)
    if is_async:
        afn = cast("Callable[..., Awaitable[Any]]", fn)
        run_async = route.run_async

        async def fallback_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await afn(*args, **kwargs)
            except Exception as error:
                first = error
            # Outside the except block, so later errors do not chain onto this one.
            return await run_async(args, kwargs, first)

        return functools.update_wrapper(fallback_async, fn)

    run_sync = route.run_sync

    def fallback_sync(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as error:
            first = error
        return run_sync(args, kwargs, first)

    return functools.update_wrapper(fallback_sync, fn)
