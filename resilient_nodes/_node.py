"""The node factory: `create_node` turns a function into a resilient LangGraph node.

To LangGraph the node is the impl, made resilient. It is a small callable object
that presents the impl's own signature and type hints (``__wrapped__`` and
``__annotations__``, the protocol of `functools.update_wrapper`, which
``inspect.signature`` and ``typing.get_type_hints`` follow), so LangGraph injects
what the impl asks for (``config``, ``runtime``, ``store``, ``writer``...), infers
the input schema from its first parameter and draws ``Command[Literal[...]]``
edges; its call forwards whatever it is given to the impl through the policy.
It is an object, not a function with attributes stuck on, so it keeps a
``policy``, a ``breaker``, a ``name`` and a readable repr. A sync implementation
gives a sync node (so ``graph.invoke`` works) and an async one an async node; a
Runnable (a compiled subgraph) gives a node with both paths (see `_langgraph`).
Per call the node shell:

1. makes the call's `ExecutionContext` current, so `current_context()` works in
   the impl (it is built on first use, with ids from the RunnableConfig when it
   carries them: a call that logs nothing and never asks does not pay for it);
2. logs ``node.started``, runs the policy pipeline around the impl (under the
   run's cancel token, if ``config["configurable"]["cancel_token"]`` holds one)
   and logs ``node.succeeded``; the result passes through as the impl returned it:
   LangGraph validates updates, and nothing here is stricter;
3. on an error that survives the policy, logs ``node.failed`` and does what
   ``on_error`` says: ``"capture"`` returns ``{"errors": [record]}`` (raising
   instead when the impl's state type has no ``errors`` key), ``"raise"``
   re-raises, a callable returns ``handler(record, state)``. A contained failure
   is also told to the run's stream and callbacks, and kept out of LangGraph's
   node cache (see `_langgraph`).

The RunnableConfig is the ``config`` argument when the impl takes one; otherwise
the one LangGraph set for the running task (or, in a direct call, a ``config=``
keyword the node consumes itself).

Cancellation, ``KeyboardInterrupt``, ``SystemExit`` and LangGraph's control flow
(``GraphBubbleUp``: ``interrupt()``, ``Command`` to a parent) always pass through
unchanged and are never recorded.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import time
import typing
import warnings
from collections.abc import Callable, Coroutine, Mapping
from contextvars import ContextVar
from types import CoroutineType
from typing import (
    TYPE_CHECKING,
    Any,
    Final,
    Generic,
    Literal,
    NoReturn,
    ParamSpec,
    TypeVar,
    overload,
)

from . import _langgraph
from ._breaker import wrap_breaker
from ._callables import is_async_callable
from ._cancel import call_with_cancel_token, call_with_cancel_token_sync
from ._context import PendingContext, activate, deactivate
from ._control import is_control_flow
from ._logging import LogEvent, emit, get_logger
from ._policy import Policy, build_pipeline
from ._records import NodeErrorRecord, create_node_error
from .errors import ConfigError, NodeRetryExhaustedError, NodeValidationError

if TYPE_CHECKING:
    from contextvars import Token

    from langchain_core.runnables import Runnable

    from ._breaker import NodeCircuitBreaker
    from ._langgraph import RunnableNode

__all__ = [
    "AsyncNode",
    "SyncNode",
    "create_llm_node",
    "create_node",
    "create_simple_node",
    "create_tool_node",
]

P = ParamSpec("P")
R = TypeVar("R")

ErrorUpdate = dict[str, list[Any]]

#: What to do with a failure that survives the policy (see `create_node`).
OnError = Literal["capture", "raise"] | Callable[[NodeErrorRecord, Any], Any]

_CAPTURE: Final = "capture"
_RAISE: Final = "raise"

_NO_POLICY = Policy.none()
_DEBUG = 10
_INFO = 20


def _config_parameter(impl: Callable[..., Any]) -> tuple[bool, int | None]:
    """Where a call's RunnableConfig is, for an impl with *impl*'s signature.

    Returns whether a ``config=`` keyword is the impl's (LangGraph passes it by
    keyword to a parameter of that name; ``**kwargs`` takes it too), and the
    position of the impl's ``config`` parameter, where a direct call may pass it.
    """
    try:
        params = inspect.signature(impl).parameters
    except (TypeError, ValueError):
        return True, None
    param = params.get("config")
    if param is not None and param.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
        return True, list(params).index("config")
    takes = (param is not None and param.kind is inspect.Parameter.KEYWORD_ONLY) or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    )
    return takes, None


def _presented_hints(impl: Callable[..., Any]) -> dict[str, Any]:
    """The ``__annotations__`` the node presents, so LangGraph reads the impl's hints.

    ``StateGraph.add_node`` reads hints only from a function, a method or an
    object whose ``__call__`` is a method, as ``get_type_hints(action.__call__)
    or get_type_hints(action)``. For the node (whose own ``__call__`` carries
    none) that is ``get_type_hints(node)``: the node's ``__annotations__``,
    resolved in the globals at the end of its ``__wrapped__`` chain, the impl's.
    A function's annotations are shared as they are (resolved when LangGraph
    asks, as for the impl); an object's are resolved now, since its globals are
    not reachable through ``__wrapped__``; anything else presents none.
    """
    if inspect.isfunction(impl) or inspect.ismethod(impl):
        annotations = getattr(impl, "__annotations__", None)
        return annotations if isinstance(annotations, dict) else {}
    call = getattr(impl, "__call__", None)  # noqa: B004 - the method LangGraph reads
    if inspect.ismethod(call):
        try:
            return typing.get_type_hints(call) or typing.get_type_hints(impl)
        except Exception:  # LangGraph finds no hints here either
            return {}
    return {}


def _discovery_target(impl: Callable[..., Any]) -> Callable[..., Any]:
    """The node's ``__wrapped__``: where LangGraph would look for the impl's subgraphs.

    LangGraph's ``get_function_nonlocals`` follows ``__func__`` and then one
    level of ``__wrapped__``, and reads that function's closure and globals. For
    the node it reads ``node.__wrapped__`` and stops there, so that must be what it
    reaches from the impl: the impl's own ``__wrapped__`` when it has one (a
    decorated function), else the impl. The signature is the impl's exactly
    (``__signature__``), and type hints resolve in the globals at the end of the
    chain, which both share.
    """
    wrapped = getattr(getattr(impl, "__func__", impl), "__wrapped__", None)
    return wrapped if callable(wrapped) else impl


def _story_id(args: tuple[Any, ...]) -> object:
    """The state's ``story_id`` for the logs; never raises (a state may be anything)."""
    if not args:
        return None
    state = args[0]
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

    __slots__ = ("live", "started", "story_id", "token")

    def __init__(self, name: str, config: Mapping[str, Any] | None, story_id: object) -> None:
        super().__init__(name, config)
        self.story_id = story_id
        self.token: Token[Any] = activate(self)
        self.started = time.perf_counter()
        # The attempt whose writes may reach the graph (`_guard`): 0 between
        # attempts, -1 once the call is over.
        self.live = 0

    def close(self) -> None:
        self.live = -1
        deactivate(self.token)

    def start_attempt(self, attempt: int, /) -> None:
        """A new attempt starts: as LangGraph's retry, and told to the stream."""
        self.attempt = attempt
        if self.config:
            _langgraph.reset_interrupt_counter(self.config)
            _langgraph.stream_event(
                {"event": _langgraph.ATTEMPT_STARTED, "node": self.name, "attempt": attempt}
            )

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


class _NodeShell:
    """What the sync and async nodes share: construction, context, logging, capture.

    ``__dict__`` holds only what `functools.update_wrapper` would set
    (``__wrapped__``, ``__annotations__``...): the attributes LangGraph and
    ``inspect`` read to see the impl through the node.
    """

    __slots__ = (
        "__dict__",
        "_breakers",
        "_config_at",
        "_errors_slot",
        "_guarded",
        "_impl",
        "_log",
        "_log_levels",
        "_on_error",
        "_pipeline",
        "_policy",
        "_takes_config",
        "name",
    )

    def __init__(
        self,
        impl: Callable[..., Any],
        *,
        name: str,
        policy: Policy,
        on_error: OnError = _CAPTURE,
        pipeline: tuple[Callable[..., Any], tuple[NodeCircuitBreaker, ...]] | None = None,
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
        self._impl = impl
        self.__wrapped__ = _discovery_target(impl)
        self.__annotations__ = _presented_hints(impl)
        with contextlib.suppress(TypeError, ValueError):  # no signature: LangGraph reads none
            self.__signature__ = inspect.signature(impl)
        if on_error not in (_CAPTURE, _RAISE) and not callable(on_error):
            raise ConfigError(
                [
                    (
                        f"nodes.{name}.on_error",
                        f'must be "capture", "raise" or a callable, got {on_error!r}',
                    )
                ]
            )
        self._policy = policy
        self._on_error = on_error
        # Whether the impl's state type has an ``errors`` key (`_state_type_errors`),
        # read on the first failure to capture: a forward reference may resolve
        # only after wrapping.
        self._errors_slot: int | None = None
        self._takes_config, self._config_at = _config_parameter(impl)
        self._guarded = _needs_guard(policy, impl)
        self._pipeline, self._breakers = pipeline or _build(policy, impl, name)
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
    def breaker(self) -> NodeCircuitBreaker | None:
        """This node's circuit breaker, if its policy has one."""
        return self._breakers[0] if self._breakers else None

    @property
    def on_error(self) -> OnError:
        """What this node does with a failure that survives its policy."""
        return self._on_error

    @property
    def capture_errors(self) -> bool:
        """Deprecated: whether ``on_error`` is ``"capture"``."""
        warnings.warn(
            'node.capture_errors is deprecated; read node.on_error ("capture", "raise" or '
            "a callable)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self._on_error == _CAPTURE

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

    def _config(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Mapping[str, Any] | None:
        """The call's RunnableConfig: the impl's ``config`` argument, else LangGraph's.

        A ``config=`` keyword the impl cannot take is a direct caller's, for the
        node: it is removed from *kwargs* (LangGraph passes none to such an impl).
        """
        config: Any = None
        at = self._config_at
        if at is not None and len(args) > at:
            config = args[at]
        elif kwargs:
            config = kwargs.get("config") if self._takes_config else kwargs.pop("config", None)
        if config is None:
            config = _langgraph.ambient_config()
        return config  # type: ignore[no-any-return]

    def _begin(self, args: tuple[Any, ...], config: Mapping[str, Any] | None) -> _NodeCall:
        # The execution context is built on first use: with logging filtered and
        # no failure, nothing asks for it, and building it (ids, metadata) was the
        # largest part of a node call's own cost.
        call = _NodeCall(self.name, config, _story_id(args))
        log = self._log or self._logger()
        if self._log_levels[0]:
            # Per-call ids travel as event fields: binding a new logger per call
            # would cost an allocation even when the level is filtered out.
            emit(log.debug, LogEvent.NODE_STARTED, attempt=1, **call.fields())
        return call

    def _finish(self, result: object, call: _NodeCall) -> Any:
        if self._log_levels[1]:
            emit(
                self._logger().info,
                LogEvent.NODE_SUCCEEDED,
                duration_ms=_elapsed_ms(call.started),
                **call.fields(),
            )
        return result

    def _contain(
        self, error: Exception, call: _NodeCall, args: tuple[Any, ...]
    ) -> NodeErrorRecord | None:
        """Log a failure; its record if the node contains it, None if it propagates.

        LangGraph's control flow (an ``Exception`` subclass) is not a failure: it
        propagates without a log line or a record. ``on_error="capture"`` on a
        node whose state type has no ``errors`` key propagates too: the failure
        would otherwise vanish (LangGraph drops keys its state does not have).
        """
        if is_control_flow(error):
            return None
        exhausted = error.attempts if isinstance(error, NodeRetryExhaustedError) else 1
        attempts = max(call.attempt, exhausted)
        handler = self._on_error
        contained = handler != _RAISE and (
            handler != _CAPTURE or self._has_errors_slot(args, call.config)
        )
        emit(
            self._logger().warning,
            LogEvent.NODE_FAILED,
            duration_ms=_elapsed_ms(call.started),
            error_type=type(error).__name__,
            attempts=attempts,
            captured=contained,
            **call.fields(),
        )
        if not contained:
            return None
        branch = _langgraph.send_branch(call.config)
        record = create_node_error(
            error,
            node=self.name,
            attempts=attempts,
            details=None if branch is None else {"branch": branch},
        )
        _langgraph.stream_event(
            {"event": _langgraph.NODE_FAILED, "node": self.name, "record": record}
        )
        return record

    def _contained(
        self, record: NodeErrorRecord, error: Exception, call: _NodeCall, args: tuple[Any, ...]
    ) -> Any:
        """The node's result for a contained failure."""
        handler = self._on_error
        if handler == _CAPTURE:
            update = {"errors": [record]}
            return None if _langgraph.write_captured(call.config, update, error) else update
        assert callable(handler)  # noqa: S101 - narrowing: checked at construction
        return handler(record, args[0] if args else None)

    def _has_errors_slot(self, args: tuple[Any, ...], config: Mapping[str, Any] | None) -> bool:
        """Whether the state has a place for a captured failure.

        The impl's state type says so when it lists its keys. When it does not
        (no hint, ``dict[str, Any]``), the state LangGraph passed does: it holds
        every channel of the node's input that has a value, and an ``errors``
        list with a reducer always has one.
        """
        known = self._errors_slot
        if known is None:
            known = self._errors_slot = _state_type_errors(self)
        if known is not _UNKNOWN:
            return bool(known)
        state = args[0] if args else None
        return not (
            _langgraph.in_graph_task(config)
            and isinstance(state, Mapping)
            and "errors" not in state
        )


_UNKNOWN: Final = 2  # `_state_type_errors`: the state type does not list its keys


def _state_type_errors(node: object) -> int:
    """Whether the state type of *node*'s first parameter has an ``errors`` key.

    1 or 0 when the type lists its keys (a TypedDict, a dataclass, a model);
    `_UNKNOWN` otherwise (no hint, ``dict[str, Any]``, a hint that does not
    resolve).
    """
    try:
        first = next(iter(inspect.signature(node).parameters))  # type: ignore[arg-type]
        hint = typing.get_type_hints(node).get(first)
        fields = typing.get_type_hints(hint) if isinstance(hint, type) else {}
    except Exception:
        return _UNKNOWN
    if not fields:
        return _UNKNOWN
    return int("errors" in fields)


def _reject_coroutine(result: Coroutine[Any, Any, Any], name: str) -> NoReturn:
    """A sync callable (a lambda around an async function) handed back a coroutine.

    LangGraph would reject it too; this says why. It is closed first, or it
    warns "never awaited" when collected.
    """
    result.close()
    raise NodeValidationError(
        "returned a coroutine from a sync call; pass the async function "
        "itself (not a lambda around it) so the node is async",
        node=name,
    )


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


class SyncNode(_NodeShell, Generic[P, R]):
    """A resilient sync LangGraph node (see `create_node`)."""

    __slots__ = ()

    if TYPE_CHECKING:

        def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R | ErrorUpdate:
            """Run the node; returns the impl's update (or the error update)."""

    else:
        # Unannotated at run time: LangGraph reads hints from ``__call__`` first,
        # and must find none here so that it reads the impl's (`_presented_hints`).
        def __call__(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN204
            """Run the node; returns the impl's update (or the error update)."""
            config = (
                self._config(args, kwargs)
                if kwargs or self._config_at is not None
                else _langgraph.ambient_config()
            )
            call = self._begin(args, config)
            running = _call_var.set(call) if self._guarded else None
            try:
                cancel_token = _cancel_token(config)
                if cancel_token is None:
                    result = self._pipeline(*args, **kwargs)
                else:
                    result = call_with_cancel_token_sync(
                        functools.partial(self._pipeline, *args, **kwargs),
                        cancel_token,
                        name=self.name,
                    )
                if type(result) is CoroutineType:
                    _reject_coroutine(result, self.name)
                return self._finish(result, call)
            except Exception as error:
                record = self._contain(error, call, args)
                if record is None:
                    raise
                _langgraph.dispatch_failure(call.config, {"node": self.name, "record": record})
                result = self._contained(record, error, call, args)
                if inspect.iscoroutine(result):
                    _reject_coroutine(result, self.name)
                return result
            finally:
                call.close()
                if running is not None:
                    _call_var.reset(running)


class AsyncNode(_NodeShell, Generic[P, R]):
    """A resilient async LangGraph node (see `create_node`)."""

    __slots__ = ()

    if TYPE_CHECKING:

        async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R | ErrorUpdate:
            """Run the node; returns the impl's update (or the error update)."""

    else:
        # Unannotated at run time: see SyncNode.__call__.
        async def __call__(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN204
            """Run the node; returns the impl's update (or the error update)."""
            config = (
                self._config(args, kwargs)
                if kwargs or self._config_at is not None
                else _langgraph.ambient_config()
            )
            call = self._begin(args, config)
            try:
                cancel_token = _cancel_token(config)
                if cancel_token is None:
                    result = await self._pipeline(*args, **kwargs)
                else:
                    result = await call_with_cancel_token(
                        functools.partial(self._pipeline, *args, **kwargs),
                        cancel_token,
                        name=self.name,
                    )
                return self._finish(result, call)
            except Exception as error:
                record = self._contain(error, call, args)
                if record is None:
                    raise
                await _langgraph.adispatch_failure(
                    call.config, {"node": self.name, "record": record}
                )
                result = self._contained(record, error, call, args)
                if inspect.isawaitable(result):
                    result = await result
                return result
            finally:
                call.close()


class _ImplAttributes:
    """Reads a callable object's own attributes through its node (``node.ticks``).

    Only for impls that are objects (a function's attributes are rarely state):
    a class with ``__getattr__`` makes every attribute access on its instances
    slower, and a node call makes a dozen. Only names the node does not have,
    and no dunders: the protocols LangGraph and ``inspect`` probe (``__func__``,
    ``__self__``...) are the node's own.
    """

    __slots__ = ()

    if not TYPE_CHECKING:  # for mypy, a node has only the attributes it declares

        def __getattr__(self, name: str) -> Any:
            if name.startswith("__") or name == "_impl":
                raise AttributeError(name)
            return getattr(self._impl, name)


class _SyncObjectNode(_ImplAttributes, SyncNode[P, R]):
    __slots__ = ()


class _AsyncObjectNode(_ImplAttributes, AsyncNode[P, R]):
    __slots__ = ()


_call_var: ContextVar[_NodeCall | None] = ContextVar("resilient_nodes_call", default=None)


def _needs_guard(policy: Policy, impl: Callable[..., Any]) -> bool:
    """Whether an attempt can outlive its turn: a sync impl under a timeout.

    Its timeout abandons the attempt's worker thread (a thread cannot be
    killed), which runs on while the next attempt starts or the node returns.
    """
    return not is_async_callable(impl) and any(layer.kind == "timeout" for layer in policy.layers)


def _guard(impl: Callable[..., Any], config_at: int | None) -> Callable[..., Any]:
    """Run each attempt of *impl* so that, once abandoned, it writes nothing to the graph.

    Innermost, in the attempt's own thread: the thread remembers its attempt
    number (`PendingContext.enter_attempt`, for `current_context`), and what the
    attempt writes through (stream writer, runtime, config, the task's send
    function) is gated on the attempt still being the call's live one.
    """

    @functools.wraps(impl)
    def attempt(*args: Any, **kwargs: Any) -> Any:
        call = _call_var.get()
        if call is None:  # the pipeline called outside a node call
            return impl(*args, **kwargs)
        number = call.live = call.enter_attempt()
        config = _langgraph.gate_writes(call.config, kwargs, lambda: call.live == number)
        if config_at is not None and len(args) > config_at and args[config_at] is call.config:
            args = (*args[:config_at], config, *args[config_at + 1 :])
        restore = (
            _langgraph.set_ambient_config(config)
            if config is not None and config is not call.config
            else None
        )
        try:
            return impl(*args, **kwargs)
        finally:
            if restore is not None:
                restore()
            call.exit_attempt()

    return attempt


def _attempt_over(timed: Callable[..., Any]) -> Callable[..., Any]:
    """Around a timeout layer: when it returns or raises, no attempt inside is live.

    A timeout that fired leaves its attempt running: from here on nothing it
    writes reaches the graph, also during the retry's backoff.
    """

    @functools.wraps(timed)
    def over(*args: Any, **kwargs: Any) -> Any:
        try:
            return timed(*args, **kwargs)
        finally:
            call = _call_var.get()
            if call is not None and call.live > 0:
                call.live = 0

    return over


def _build(
    policy: Policy,
    fn: Callable[..., Any],
    name: str,
    shared: tuple[NodeCircuitBreaker, ...] | None = None,
) -> tuple[Callable[..., Any], tuple[NodeCircuitBreaker, ...]]:
    """*policy* around *fn*, as `build_pipeline`, plus what a node needs.

    A sync impl under a timeout gets `_guard` innermost and `_attempt_over`
    around each timeout layer. *shared* breakers (made for the other path of a
    Runnable node: one breaker counts both) are reused in order.
    """
    guarded = _needs_guard(policy, fn)
    if not guarded and shared is None:
        return build_pipeline(policy, fn, name)
    remaining = list(shared or ())
    made: list[NodeCircuitBreaker] = []
    wrapped: Callable[..., Any] = _guard(fn, _config_parameter(fn)[1]) if guarded else fn
    for layer in reversed(policy.layers):
        if layer.kind == "breaker" and shared is not None:
            wrapped = wrap_breaker(wrapped, remaining.pop(0), name=name)
        else:
            wrapped = layer.wrap(wrapped, name, made)
        if guarded and layer.kind == "timeout":
            wrapped = _attempt_over(wrapped)
    return wrapped, shared if shared is not None else tuple(made)


def _runnable_node(runnable: Any, name: str, policy: Policy, on_error: OnError) -> RunnableNode:
    invoke, ainvoke = _langgraph.runnable_steps(runnable)
    sync_pipeline = _build(policy, invoke, name)
    async_pipeline = _build(policy, ainvoke, name, sync_pipeline[1])
    sync_node: SyncNode[..., Any] = SyncNode(
        invoke, name=name, policy=policy, on_error=on_error, pipeline=sync_pipeline
    )
    async_node: AsyncNode[..., Any] = AsyncNode(
        ainvoke,
        name=name,
        policy=policy,
        on_error=on_error,
        pipeline=async_pipeline,
    )
    return _langgraph.runnable_node(sync_node, async_node)


def _resolve_on_error(on_error: OnError, capture_errors: bool | None) -> OnError:
    """``on_error``, or what the deprecated ``capture_errors`` asked for (with a warning)."""
    if capture_errors is None:
        return on_error
    warnings.warn(
        'capture_errors= is deprecated; pass on_error="capture" (True) or on_error="raise" '
        "(False). It will be removed in the next release.",
        DeprecationWarning,
        stacklevel=3,
    )
    if on_error != _CAPTURE:
        raise ConfigError([("capture_errors", "pass on_error or capture_errors, not both")])
    return _CAPTURE if capture_errors else _RAISE


@overload
def create_node(
    impl: Runnable[Any, Any],
    *,
    name: str,
    policy: Policy = ...,
    on_error: OnError = ...,
    capture_errors: bool | None = ...,
) -> RunnableNode: ...
@overload
def create_node(  # type: ignore[overload-overlap]
    impl: Callable[P, Coroutine[Any, Any, R]],
    *,
    name: str,
    policy: Policy = ...,
    on_error: OnError = ...,
    capture_errors: bool | None = ...,
) -> AsyncNode[P, R]: ...
@overload
def create_node(
    impl: Callable[P, R],
    *,
    name: str,
    policy: Policy = ...,
    on_error: OnError = ...,
    capture_errors: bool | None = ...,
) -> SyncNode[P, R]: ...
def create_node(
    impl: Callable[..., Any] | Runnable[Any, Any],
    *,
    name: str,
    policy: Policy = _NO_POLICY,
    on_error: OnError = _CAPTURE,
    capture_errors: bool | None = None,
) -> AsyncNode[..., Any] | SyncNode[..., Any] | RunnableNode:
    """Wrap a node implementation in a policy, as a LangGraph node.

    Args:
        impl: Anything LangGraph takes as a node: a function (sync or async)
            with whatever parameters LangGraph injects (``config``, ``runtime``,
            ``store``, ``writer``...), a callable object, or a Runnable such as a
            compiled subgraph. It returns what LangGraph accepts from a node.
        name: The node's name: used for its breaker, its logs and error records.
        policy: The resilience pipeline (`Policy`), left outermost.
        on_error: What to do with a failure that survives the policy:
            ``"capture"`` returns it as ``{"errors": [record]}`` (and raises it if
            the impl's state type has no ``errors`` key); ``"raise"`` raises it, so
            LangGraph's ``error_handler=``, its task errors and resuming from a
            checkpoint work as without the wrapper; a callable
            ``(record, state) -> update`` (a ``Command``, say) routes it.
        capture_errors: Deprecated: ``True`` is ``on_error="capture"``, ``False``
            is ``on_error="raise"``.

    Returns:
        An `AsyncNode` for an async impl, a `SyncNode` for a sync one, each with
        the impl's signature and type hints; for a Runnable, a Runnable node with
        both paths (its ``invoke`` and ``ainvoke``).

    Raises:
        ConfigError: If *impl* is not callable, *name* is empty or *on_error* is
            not one of the above.
    """
    on_error = _resolve_on_error(on_error, capture_errors)
    if _langgraph.is_runnable(impl):
        return _runnable_node(impl, name, policy, on_error)
    return _make_node(impl, name, policy, on_error)  # type: ignore[arg-type]


@overload
def create_simple_node(  # type: ignore[overload-overlap]
    impl: Callable[P, Coroutine[Any, Any, R]],
    *,
    name: str,
    on_error: OnError = ...,
    capture_errors: bool | None = ...,
) -> AsyncNode[P, R]: ...
@overload
def create_simple_node(
    impl: Callable[P, R], *, name: str, on_error: OnError = ..., capture_errors: bool | None = ...
) -> SyncNode[P, R]: ...
def create_simple_node(
    impl: Callable[..., Any],
    *,
    name: str,
    on_error: OnError = _CAPTURE,
    capture_errors: bool | None = None,
) -> AsyncNode[..., Any] | SyncNode[..., Any]:
    """A node with no retry, breaker or timeout: logging, context and capture only."""
    return _make_node(impl, name, Policy.none(), _resolve_on_error(on_error, capture_errors))


def _preset_node(
    preset: Policy,
    *,
    impl: Callable[..., Any],
    name: str,
    timeout: float | None,
    breaker: bool,
    on_error: OnError,
) -> AsyncNode[..., Any] | SyncNode[..., Any]:
    policy = preset
    if breaker:
        policy = policy | Policy.breaker()
    if timeout is not None:
        policy = policy | Policy.timeout(timeout)
    return _make_node(impl, name, policy, on_error)


def _make_node(
    impl: Callable[..., Any], name: str, policy: Policy, on_error: OnError
) -> AsyncNode[..., Any] | SyncNode[..., Any]:
    is_object = not (
        inspect.isfunction(impl) or inspect.ismethod(impl) or isinstance(impl, functools.partial)
    )
    if is_async_callable(impl):
        async_kind = _AsyncObjectNode if is_object else AsyncNode
        return async_kind(impl, name=name, policy=policy, on_error=on_error)
    sync_kind = _SyncObjectNode if is_object else SyncNode
    return sync_kind(impl, name=name, policy=policy, on_error=on_error)


@overload
def create_llm_node(  # type: ignore[overload-overlap]
    impl: Callable[P, Coroutine[Any, Any, R]],
    *,
    name: str,
    timeout: float | None = ...,
    breaker: bool = ...,
    on_error: OnError = ...,
    capture_errors: bool | None = ...,
) -> AsyncNode[P, R]: ...
@overload
def create_llm_node(
    impl: Callable[P, R],
    *,
    name: str,
    timeout: float | None = ...,
    breaker: bool = ...,
    on_error: OnError = ...,
    capture_errors: bool | None = ...,
) -> SyncNode[P, R]: ...
def create_llm_node(
    impl: Callable[..., Any],
    *,
    name: str,
    timeout: float | None = None,
    breaker: bool = False,
    on_error: OnError = _CAPTURE,
    capture_errors: bool | None = None,
) -> AsyncNode[..., Any] | SyncNode[..., Any]:
    """A node under `Policy.llm`, optionally with a breaker and a per-attempt timeout."""
    return _preset_node(
        Policy.llm(),
        impl=impl,
        name=name,
        timeout=timeout,
        breaker=breaker,
        on_error=_resolve_on_error(on_error, capture_errors),
    )


@overload
def create_tool_node(  # type: ignore[overload-overlap]
    impl: Callable[P, Coroutine[Any, Any, R]],
    *,
    name: str,
    timeout: float | None = ...,
    breaker: bool = ...,
    on_error: OnError = ...,
    capture_errors: bool | None = ...,
) -> AsyncNode[P, R]: ...
@overload
def create_tool_node(
    impl: Callable[P, R],
    *,
    name: str,
    timeout: float | None = ...,
    breaker: bool = ...,
    on_error: OnError = ...,
    capture_errors: bool | None = ...,
) -> SyncNode[P, R]: ...
def create_tool_node(
    impl: Callable[..., Any],
    *,
    name: str,
    timeout: float | None = None,
    breaker: bool = False,
    on_error: OnError = _CAPTURE,
    capture_errors: bool | None = None,
) -> AsyncNode[..., Any] | SyncNode[..., Any]:
    """A node under `Policy.tool`, optionally with a breaker and a per-attempt timeout."""
    return _preset_node(
        Policy.tool(),
        impl=impl,
        name=name,
        timeout=timeout,
        breaker=breaker,
        on_error=_resolve_on_error(on_error, capture_errors),
    )
