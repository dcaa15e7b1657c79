"""Execution context: who is running, in which run, on which attempt.

The node shell sets the current `ExecutionContext` in a context variable for the
duration of a call, so `current_context()` works anywhere inside a node's
implementation (also in threads and child tasks started from it, which inherit
context variables).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, ClassVar

import attrs

__all__ = [
    "ExecutionContext",
    "PendingContext",
    "activate",
    "create_execution_context",
    "current_context",
    "deactivate",
    "generate_graph_execution_id",
    "generate_trace_id",
    "note_attempt",
    "use_context",
]


def generate_trace_id() -> str:
    """A new trace id: 32 lowercase hex digits (W3C / OpenTelemetry shaped)."""
    return uuid.uuid4().hex


def generate_graph_execution_id() -> str:
    """A new graph execution id (a UUID4 string)."""
    return str(uuid.uuid4())


def _frozen_mapping(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(value or {}))


@attrs.frozen(kw_only=True)
class ExecutionContext:
    """What a running node knows about its execution.

    Attributes:
        trace_id: Correlates every log line of one run (across nodes).
        graph_execution_id: Identifies one graph execution.
        node_name: The node being run.
        attempt: The current attempt, from 1.
        started_at: When the node call started (UTC).
        run_id: LangGraph's run id, when the RunnableConfig carried one.
        thread_id: LangGraph's thread id, when the RunnableConfig carried one.
        metadata: Free metadata (read-only), for example from the RunnableConfig.
        served_by: The alternative serving this call when a `Policy.fallback`
            layer has switched to one (its qualified name); None while the
            primary callable runs.
    """

    trace_id: str = attrs.field(factory=generate_trace_id)
    graph_execution_id: str = attrs.field(factory=generate_graph_execution_id)
    node_name: str = "<unnamed>"
    attempt: int = 1
    started_at: datetime = attrs.field(factory=lambda: datetime.now(UTC))
    run_id: str | None = None
    thread_id: str | None = None
    metadata: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_frozen_mapping, eq=False, hash=False
    )
    served_by: str | None = None

    def with_attempt(self, attempt: int, /) -> ExecutionContext:
        """A copy for another attempt."""
        return attrs.evolve(self, attempt=attempt)

    def log_fields(self) -> dict[str, Any]:
        """The fields every log event of this context carries."""
        return {
            "node": self.node_name,
            "trace_id": self.trace_id,
            "graph_execution_id": self.graph_execution_id,
            "attempt": self.attempt,
        }

    def __reduce__(self) -> tuple[Any, ...]:
        # MappingProxyType does not pickle; rebuild from a plain dict.
        fields = {f.name: getattr(self, f.name) for f in attrs.fields(type(self))}
        fields["metadata"] = dict(self.metadata)
        return (_rebuild_context, (fields,))


def _rebuild_context(fields: dict[str, Any]) -> ExecutionContext:
    return ExecutionContext(**fields)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _langgraph_run_id(configurable: object) -> object:
    """The ``run_id`` given to a LangGraph invocation, as LangGraph 1.x keeps it.

    It is not in the node's config proper, only on the runtime object LangGraph
    puts in ``configurable``; read defensively, since that is not a public path.
    """
    if not isinstance(configurable, Mapping):
        return None
    runtime = configurable.get("__pregel_runtime")
    return getattr(getattr(runtime, "execution_info", None), "run_id", None)


def create_execution_context(
    node_name: str,
    /,
    *,
    config: Mapping[str, Any] | None = None,
    trace_id: str | None = None,
    graph_execution_id: str | None = None,
    attempt: int = 1,
    metadata: Mapping[str, Any] | None = None,
) -> ExecutionContext:
    """Build the context for one node call.

    Ids come from, in order: the explicit arguments; the RunnableConfig's
    ``metadata`` (``trace_id``, ``graph_execution_id``); the run id of the graph
    invocation (``config["run_id"]``, or where LangGraph keeps the ``run_id``
    passed to ``invoke``: the trace id is then its 32 hex digits, the execution
    id the run id itself); and otherwise new ones. ``thread_id`` is read from
    ``configurable``.

    LangGraph gives nodes no id of their invocation unless the caller passes a
    ``run_id`` (or metadata ids): without one, every node call gets new ids, so
    pass ``config={"run_id": uuid4()}`` to correlate the nodes of one run.

    Args:
        node_name: The node's name.
        config: A LangGraph ``RunnableConfig`` (or any mapping shaped like one).
        trace_id: Explicit trace id.
        graph_execution_id: Explicit graph execution id.
        attempt: The attempt number.
        metadata: Extra metadata, merged over the config's.

    Returns:
        The new context.
    """
    config = config or {}
    config_meta = config.get("metadata") or {}
    configurable = config.get("configurable") or {}
    run_id = _text(config.get("run_id") or _langgraph_run_id(configurable))
    merged: dict[str, Any] = {}
    if isinstance(config_meta, Mapping):
        merged.update(config_meta)
    if metadata:
        merged.update(metadata)
    return ExecutionContext(
        trace_id=trace_id
        or _text(merged.get("trace_id"))
        or (run_id.replace("-", "") if run_id else None)
        or generate_trace_id(),
        graph_execution_id=graph_execution_id
        or _text(merged.get("graph_execution_id"))
        or run_id
        or generate_graph_execution_id(),
        node_name=node_name,
        attempt=attempt,
        run_id=run_id,
        thread_id=_text(configurable.get("thread_id"))
        if isinstance(configurable, Mapping)
        else None,
        metadata=merged,
    )


class PendingContext:
    """A node call's context, built the first time something asks for it.

    Most successful calls never need their context (logging filtered, no retry,
    the impl never calls `current_context`), so the node shell publishes this
    instead and skips building ids and copying metadata. Worker threads see the
    same object through their copied context, so a lock keeps the ids one.

    It also carries the number of the attempt the retry layer last started
    (``attempt``), so a failure recorded in state says how many attempts were
    made even when the last error was not retryable. Worker threads write
    through the shared object, as they must.
    """

    __slots__ = ("_built", "_config", "_threads", "attempt", "name")
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, name: str, config: Mapping[str, Any] | None) -> None:
        self.name = name
        self._config = config
        self._built: ExecutionContext | None = None
        self._threads: dict[int, int] | None = None
        self.attempt = 1

    def enter_attempt(self) -> int:
        """The running thread runs the attempt that starts now; returns its number.

        An attempt past its timeout keeps running in its thread while the next one
        starts, and both see this object: the thread keeps the number it entered
        with (`attempt_here`) until `exit_attempt`.
        """
        attempt = self.attempt
        threads = self._threads
        if threads is None:
            threads = self._threads = {}
        threads[threading.get_ident()] = attempt
        return attempt

    def exit_attempt(self) -> None:
        """The running thread's attempt is over."""
        if self._threads:
            self._threads.pop(threading.get_ident(), None)

    def attempt_here(self) -> int:
        """The attempt the running thread runs: its own, else the latest started."""
        threads = self._threads
        if threads:
            own = threads.get(threading.get_ident())
            if own is not None:
                return own
        return self.attempt

    @property
    def config(self) -> Mapping[str, Any] | None:
        """The RunnableConfig the call was given (or found), if any."""
        return self._config

    def start_attempt(self, attempt: int, /) -> None:
        """The retry layer starts attempt *attempt* (2 and up) of this call.

        A hook: the node shell extends it (LangGraph's interrupt counter, the
        attempt event).
        """
        self.attempt = attempt

    def resolve(self) -> ExecutionContext:
        built = self._built
        if built is None:
            with self._lock:
                built = self._built
                if built is None:
                    try:
                        built = create_execution_context(self.name, config=self._config)
                    except Exception:
                        # A config that is not shaped like a RunnableConfig must not
                        # break the error path that asked for the ids.
                        built = create_execution_context(self.name)
                    self._built = built
        return built


_current: ContextVar[ExecutionContext | PendingContext | None] = ContextVar(
    "resilient_nodes_context", default=None
)


def activate(context: ExecutionContext | PendingContext, /) -> Token[Any]:
    """Make *context* the current one; `deactivate` the token when the call ends."""
    return _current.set(context)


def deactivate(token: Token[Any], /) -> None:
    """Restore the context that was current before `activate` returned *token*."""
    _current.reset(token)


def note_attempt(attempt: int, node: str | None) -> None:
    """Tell the call of node *node*, if it is the one running now, that attempt *attempt* starts.

    Only the node's own retry layer (built with the node's name) counts: a retry
    the impl runs inside an attempt is not an attempt of the node.
    """
    context = _current.get()
    if isinstance(context, PendingContext) and context.name == node:
        context.start_attempt(attempt)


def current_context() -> ExecutionContext | None:
    """The context of the node call running now, or None outside any node.

    Its ``attempt`` is the attempt running now, also outside the retry layer
    (in a timeout around the retry, or its ``on_timeout``): the node call's own
    context is built once, and the call counts the attempts the retry started.
    An attempt abandoned by its timeout, still running in its thread, keeps its
    own number.
    """
    context = _current.get()
    if isinstance(context, PendingContext):
        built = context.resolve()
        attempt = context.attempt_here()
        return built if built.attempt == attempt else built.with_attempt(attempt)
    return context


@contextmanager
def use_context(context: ExecutionContext, /) -> Iterator[ExecutionContext]:
    """Make *context* current for the block (restored afterwards)."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
