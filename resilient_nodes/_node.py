"""The node factory: `create_node` turns a function into a resilient LangGraph node.

The node is a small callable object with LangGraph's node signature
``(state, config: RunnableConfig | None = None)``. A sync implementation gives a
sync node (so ``graph.invoke`` works) and an async one an async node. Per call the
node shell:

1. makes the call's `ExecutionContext` current, so `current_context()` works in
   the impl (it is built on first use, with ids from the RunnableConfig when it
   carries them: a call that logs nothing and never asks does not pay for it);
2. logs ``node.started``, runs the policy pipeline around the impl (under the
   run's cancel token, if ``config["configurable"]["cancel_token"]`` holds one),
   checks the result is a state update, and logs ``node.succeeded``;
3. on an error that survives the policy, logs ``node.failed`` and either returns
   ``{"errors": [record]}`` (``capture_errors=True``) or re-raises.

Cancellation, ``KeyboardInterrupt``, ``SystemExit`` and LangGraph's control flow
(``GraphBubbleUp``: ``interrupt()``, ``Command`` to a parent) always pass through
unchanged and are never recorded.

This module deliberately does not use ``from __future__ import annotations``:
LangGraph inspects the runtime annotation of ``config`` to decide whether to
inject the RunnableConfig, and only recognises real objects or a few exact strings.
"""

import dataclasses
import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Generic, Optional, TypeVar, overload

from ._callables import is_async_callable
from ._cancel import call_with_cancel_token, call_with_cancel_token_sync
from ._context import PendingContext, activate, deactivate
from ._control import is_control_flow
from ._logging import LogEvent, emit, get_logger
from ._policy import Policy, build_pipeline
from ._records import create_error_update
from .errors import ConfigError, NodeRetryExhaustedError, NodeValidationError

if TYPE_CHECKING:
    from contextvars import Token

    from langchain_core.runnables import RunnableConfig

    from ._breaker import NodeCircuitBreaker
else:
    try:
        from langchain_core.runnables import RunnableConfig
    except ImportError:  # pragma: no cover - langgraph is an optional extra
        RunnableConfig = dict

__all__ = [
    "AsyncNode",
    "SyncNode",
    "create_llm_node",
    "create_node",
    "create_simple_node",
    "create_tool_node",
]

S = TypeVar("S")
U = TypeVar("U", bound=Mapping[str, Any] | None)

ErrorUpdate = dict[str, list[Any]]

_NO_POLICY = Policy.none()
_DEBUG = 10
_INFO = 20


_POSITIONAL: Final = "positional"
_KEYWORD: Final = "keyword"


def _config_mode(impl: Callable[..., Any]) -> str | None:
    """How *impl* wants the RunnableConfig: by keyword, positionally, or not at all.

    As LangGraph does, a parameter named ``config`` gets it (by keyword, so a
    keyword-only one works too). Otherwise a second positional parameter
    *without a default* is taken to be ``(state, config)``; a defaulted one is
    the impl's own option and is left alone.
    """
    try:
        params = list(inspect.signature(impl).parameters.values())
    except (TypeError, ValueError):
        return None
    for param in params:
        if param.name == "config":
            return _POSITIONAL if param.kind is inspect.Parameter.POSITIONAL_ONLY else _KEYWORD
    positional = [
        p
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    if len(positional) >= 2 and positional[1].default is inspect.Parameter.empty:
        return _POSITIONAL
    return None


def _is_update(result: object) -> bool:
    # ``type(...) is dict`` first: the usual update, and an ABC isinstance costs more.
    if result is None or type(result) is dict or isinstance(result, Mapping):
        return True
    # LangGraph also accepts Command objects (and lists of them), dataclass and
    # pydantic state objects as updates.
    if type(result).__name__ == "Command" and type(result).__module__.startswith("langgraph"):
        return True
    if isinstance(result, list | tuple):
        return (
            bool(result)
            and all(_is_update(item) and item is not None for item in result)
            and not any(isinstance(item, Mapping) for item in result)
        )
    return dataclasses.is_dataclass(result) or hasattr(result, "model_dump")


def _story_id(state: object) -> object:
    """The state's ``story_id`` for the logs; never raises (a state may be anything)."""
    try:
        if type(state) is dict or isinstance(state, Mapping):
            return state.get("story_id")
        return getattr(state, "story_id", None)
    except Exception:
        return None


def _cancel_token(config: Mapping[str, Any] | None) -> Any:
    if not config:
        return None
    configurable = config.get("configurable")
    if type(configurable) is not dict and not isinstance(configurable, Mapping):
        return None
    return configurable.get("cancel_token")


class _NodeCall(PendingContext):
    """One node call: its pending context, made current, and what its events carry.

    One object per call on purpose: with thousands of calls in flight, every
    object a call keeps alive is more work for the garbage collector.
    """

    __slots__ = ("started", "story_id", "token")

    def __init__(self, name: str, config: Mapping[str, Any] | None, story_id: object) -> None:
        super().__init__(name, config)
        self.story_id = story_id
        self.token: Token[Any] = activate(self)
        self.started = time.perf_counter()

    def close(self) -> None:
        deactivate(self.token)

    def fields(self) -> dict[str, Any]:
        """The ids every event of this call carries (building the context if needed)."""
        context = self.resolve()
        fields: dict[str, Any] = {
            "trace_id": context.trace_id,
            "graph_execution_id": context.graph_execution_id,
        }
        if self.story_id is not None:
            fields["story_id"] = self.story_id
        return fields


class _NodeShell(Generic[S, U]):
    """What the sync and async nodes share: construction, context, logging, capture."""

    __slots__ = (
        "__name__",
        "__qualname__",
        "_breakers",
        "_capture",
        "_config_mode",
        "_log",
        "_log_levels",
        "_pipeline",
        "_policy",
        "name",
    )

    def __init__(
        self,
        impl: Callable[..., Any],
        *,
        name: str,
        policy: Policy,
        capture_errors: bool,
    ) -> None:
        checked: object = name  # checked at run time too: callers may not run mypy
        if not isinstance(checked, str) or not checked:
            raise ConfigError([("name", f"must be a non-empty string, got {name!r}")])
        if not callable(impl):
            raise ConfigError(
                [(f"nodes.{name}.impl", f"must be callable, got {type(impl).__name__}")]
            )
        if not isinstance(policy, Policy):
            raise ConfigError(
                [(f"nodes.{name}.policy", f"must be a Policy, got {type(policy).__name__}")]
            )
        self.name = name
        self.__name__ = name
        self.__qualname__ = name
        self._policy = policy
        self._capture = bool(capture_errors)
        self._config_mode = _config_mode(impl)
        self._pipeline, self._breakers = build_pipeline(policy, impl, name)
        # Bound lazily on the first call, not here: nodes are often built at import
        # time, before the application configures structlog.
        self._log: Any = None
        # Whether debug and info events are wanted, read once the logger is bound:
        # a filtered-out event is a no-op call, but its fields (a dict, the elapsed
        # time) would still be built on every call.
        self._log_levels = (True, True)

    @property
    def policy(self) -> Policy:
        """The policy this node runs under."""
        return self._policy

    @property
    def breaker(self) -> "NodeCircuitBreaker | None":
        """This node's circuit breaker, if its policy has one."""
        return self._breakers[0] if self._breakers else None

    @property
    def capture_errors(self) -> bool:
        """Whether failures become ``{"errors": [...]}`` updates instead of raising."""
        return self._capture

    def __repr__(self) -> str:
        kind = "async" if isinstance(self, AsyncNode) else "sync"
        return f"<{kind} node {self.name!r}: {self._policy!r}>"

    def _logger(self) -> Any:
        log = self._log
        if log is None:
            log = self._log = get_logger(node=self.name)
            enabled = getattr(log, "is_enabled_for", None)
            if enabled is not None:
                self._log_levels = (bool(enabled(_DEBUG)), bool(enabled(_INFO)))
        return log

    def _begin(self, state: object, config: Mapping[str, Any] | None) -> _NodeCall:
        # The execution context is built on first use: with logging filtered and
        # no failure, nothing asks for it, and building it (ids, metadata) was the
        # largest part of a node call's own cost.
        call = _NodeCall(self.name, config, _story_id(state))
        log = self._log or self._logger()
        if self._log_levels[0]:
            # Per-call ids travel as event fields: binding a new logger per call
            # would cost an allocation even when the level is filtered out.
            emit(log.debug, LogEvent.NODE_STARTED, attempt=1, **call.fields())
        return call

    def _finish(self, result: object, call: _NodeCall) -> Any:
        if not _is_update(result):
            if inspect.iscoroutine(result):
                # A sync callable (a lambda around an async function) handed back a
                # coroutine: close it, or it warns "never awaited" at collection.
                result.close()
                raise NodeValidationError(
                    "returned a coroutine from a sync call; pass the async function "
                    "itself (not a lambda around it) so the node is async",
                    node=self.name,
                )
            raise NodeValidationError(
                f"returned {type(result).__name__} instead of a mapping of state updates (or None)",
                node=self.name,
            )
        if self._log_levels[1]:
            emit(
                self._logger().info,
                LogEvent.NODE_SUCCEEDED,
                duration_ms=_elapsed_ms(call.started),
                **call.fields(),
            )
        return result

    def _invoke(self, state: object, config: Mapping[str, Any] | None) -> Any:
        """Call the pipeline in the impl's convention (a coroutine for async nodes)."""
        mode = self._config_mode
        if mode is None:
            return self._pipeline(state)
        if mode is _POSITIONAL:
            return self._pipeline(state, config)
        return self._pipeline(state, config=config)

    def _fail(self, error: Exception, call: _NodeCall) -> ErrorUpdate | None:
        """Log a failure; the update to return, or None when it must propagate.

        LangGraph's control flow (an ``Exception`` subclass) is not a failure: it
        propagates without a log line or a record.
        """
        if is_control_flow(error):
            return None
        exhausted = error.attempts if isinstance(error, NodeRetryExhaustedError) else 1
        attempts = max(call.attempt, exhausted)
        emit(
            self._logger().warning,
            LogEvent.NODE_FAILED,
            duration_ms=_elapsed_ms(call.started),
            error_type=type(error).__name__,
            attempts=attempts,
            captured=self._capture,
            **call.fields(),
        )
        if not self._capture:
            return None
        return create_error_update(error, node=self.name, attempts=attempts)


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


class SyncNode(_NodeShell[S, U]):
    """A resilient sync LangGraph node (see `create_node`)."""

    __slots__ = ()

    def __call__(
        self,
        state: S,
        config: Optional[RunnableConfig] = None,  # noqa: UP045 - see the module docstring
    ) -> U | ErrorUpdate:
        """Run the node on *state*; returns its update (or the error update)."""
        call = self._begin(state, config)
        try:
            cancel_token = _cancel_token(config)
            if cancel_token is None:
                result = self._invoke(state, config)
            else:
                # A partial, not a lambda: a closure would make this frame keep
                # cells for self, state and config on every call.
                result = call_with_cancel_token_sync(
                    functools.partial(self._invoke, state, config), cancel_token, name=self.name
                )
            return self._finish(result, call)  # type: ignore[no-any-return]
        except Exception as error:
            update = self._fail(error, call)
            if update is None:
                raise
            return update
        finally:
            call.close()


class AsyncNode(_NodeShell[S, U]):
    """A resilient async LangGraph node (see `create_node`)."""

    __slots__ = ()

    async def __call__(
        self,
        state: S,
        config: Optional[RunnableConfig] = None,  # noqa: UP045 - see the module docstring
    ) -> U | ErrorUpdate:
        """Run the node on *state*; returns its update (or the error update)."""
        call = self._begin(state, config)
        try:
            cancel_token = _cancel_token(config)
            if cancel_token is None:
                result = await self._invoke(state, config)
            else:
                # A partial, not a lambda: see SyncNode.__call__.
                result = await call_with_cancel_token(
                    functools.partial(self._invoke, state, config), cancel_token, name=self.name
                )
            return self._finish(result, call)  # type: ignore[no-any-return]
        except Exception as error:
            update = self._fail(error, call)
            if update is None:
                raise
            return update
        finally:
            call.close()


@overload
def create_node(
    impl: Callable[[S], Awaitable[U]] | Callable[[S, RunnableConfig], Awaitable[U]],
    *,
    name: str,
    policy: Policy = ...,
    capture_errors: bool = ...,
) -> AsyncNode[S, U]: ...
@overload
def create_node(
    impl: Callable[[S], U] | Callable[[S, RunnableConfig], U],
    *,
    name: str,
    policy: Policy = ...,
    capture_errors: bool = ...,
) -> SyncNode[S, U]: ...
def create_node(
    impl: Callable[..., Any],
    *,
    name: str,
    policy: Policy = _NO_POLICY,
    capture_errors: bool = True,
) -> AsyncNode[Any, Any] | SyncNode[Any, Any]:
    """Wrap a node implementation in a policy, as a LangGraph node.

    Args:
        impl: ``(state)`` or ``(state, config)``, sync or async, returning a
            partial state update (a mapping, a LangGraph ``Command``, or None).
        name: The node's name: used for its breaker, its logs and error records.
        policy: The resilience pipeline (`Policy`), left outermost.
        capture_errors: Return ``{"errors": [record]}`` for a failure that survives
            the policy, instead of raising.

    Returns:
        An `AsyncNode` for an async impl, a `SyncNode` for a sync one; both have
        the signature ``(state, config: RunnableConfig | None = None)``.

    Raises:
        ConfigError: If *impl* is not callable or *name* is empty.
    """
    if is_async_callable(impl):
        return AsyncNode(impl, name=name, policy=policy, capture_errors=capture_errors)
    return SyncNode(impl, name=name, policy=policy, capture_errors=capture_errors)


@overload
def create_simple_node(
    impl: Callable[[S], Awaitable[U]] | Callable[[S, RunnableConfig], Awaitable[U]],
    *,
    name: str,
    capture_errors: bool = ...,
) -> AsyncNode[S, U]: ...
@overload
def create_simple_node(
    impl: Callable[[S], U] | Callable[[S, RunnableConfig], U],
    *,
    name: str,
    capture_errors: bool = ...,
) -> SyncNode[S, U]: ...
def create_simple_node(
    impl: Callable[..., Any], *, name: str, capture_errors: bool = True
) -> AsyncNode[Any, Any] | SyncNode[Any, Any]:
    """A node with no retry, breaker or timeout: logging, context and capture only."""
    return _make_node(impl, name, Policy.none(), capture_errors)


def _preset_node(
    preset: Policy,
    *,
    impl: Callable[..., Any],
    name: str,
    timeout: float | None,
    breaker: bool,
    capture_errors: bool,
) -> AsyncNode[Any, Any] | SyncNode[Any, Any]:
    policy = preset
    if breaker:
        policy = policy | Policy.breaker()
    if timeout is not None:
        policy = policy | Policy.timeout(timeout)
    return _make_node(impl, name, policy, capture_errors)


def _make_node(
    impl: Callable[..., Any], name: str, policy: Policy, capture_errors: bool
) -> AsyncNode[Any, Any] | SyncNode[Any, Any]:
    node: AsyncNode[Any, Any] | SyncNode[Any, Any] = create_node(
        impl, name=name, policy=policy, capture_errors=capture_errors
    )
    return node


@overload
def create_llm_node(
    impl: Callable[[S], Awaitable[U]] | Callable[[S, RunnableConfig], Awaitable[U]],
    *,
    name: str,
    timeout: float | None = ...,
    breaker: bool = ...,
    capture_errors: bool = ...,
) -> AsyncNode[S, U]: ...
@overload
def create_llm_node(
    impl: Callable[[S], U] | Callable[[S, RunnableConfig], U],
    *,
    name: str,
    timeout: float | None = ...,
    breaker: bool = ...,
    capture_errors: bool = ...,
) -> SyncNode[S, U]: ...
def create_llm_node(
    impl: Callable[..., Any],
    *,
    name: str,
    timeout: float | None = None,
    breaker: bool = False,
    capture_errors: bool = True,
) -> AsyncNode[Any, Any] | SyncNode[Any, Any]:
    """A node under `Policy.llm`, optionally with a breaker and a per-attempt timeout."""
    return _preset_node(
        Policy.llm(),
        impl=impl,
        name=name,
        timeout=timeout,
        breaker=breaker,
        capture_errors=capture_errors,
    )


@overload
def create_tool_node(
    impl: Callable[[S], Awaitable[U]] | Callable[[S, RunnableConfig], Awaitable[U]],
    *,
    name: str,
    timeout: float | None = ...,
    breaker: bool = ...,
    capture_errors: bool = ...,
) -> AsyncNode[S, U]: ...
@overload
def create_tool_node(
    impl: Callable[[S], U] | Callable[[S, RunnableConfig], U],
    *,
    name: str,
    timeout: float | None = ...,
    breaker: bool = ...,
    capture_errors: bool = ...,
) -> SyncNode[S, U]: ...
def create_tool_node(
    impl: Callable[..., Any],
    *,
    name: str,
    timeout: float | None = None,
    breaker: bool = False,
    capture_errors: bool = True,
) -> AsyncNode[Any, Any] | SyncNode[Any, Any]:
    """A node under `Policy.tool`, optionally with a breaker and a per-attempt timeout."""
    return _preset_node(
        Policy.tool(),
        impl=impl,
        name=name,
        timeout=timeout,
        breaker=breaker,
        capture_errors=capture_errors,
    )
