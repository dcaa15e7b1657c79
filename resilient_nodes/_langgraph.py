"""The one module that knows LangGraph's and langchain_core's internals.

LangGraph is an optional extra, and ``import resilient_nodes`` must not pay for
importing it: nothing here imports langgraph or langchain_core at module level.
What is needed is looked up in ``sys.modules`` (if a module is not imported yet,
nothing of it can be in play: no config can be set, no object can be a Runnable)
or imported inside the function that needs it, which only runs once LangGraph is
in use.

Every use of a name LangGraph does not document is here, with a comment naming
what it relies on; the tox envs against the oldest and the newest supported
LangGraph guard them.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from langchain_core.runnables import Runnable

    from ._breaker import NodeCircuitBreaker
    from ._policy import Policy

    class RunnableNode(Runnable[Any, Any]):
        """What `create_node` returns for a Runnable (a compiled graph, say)."""

        name: str

        @property
        def policy(self) -> Policy: ...

        @property
        def breaker(self) -> NodeCircuitBreaker | None: ...


__all__ = [
    "ATTEMPT_STARTED",
    "NODE_FAILED",
    "ambient_config",
    "dispatch_failure",
    "gate_writes",
    "in_graph_task",
    "is_runnable",
    "reset_interrupt_counter",
    "runnable_node",
    "runnable_steps",
    "send_branch",
    "set_ambient_config",
    "stream_event",
    "write_captured",
]

#: The ``event`` of the custom stream chunk a node writes when attempt 2 and up starts.
ATTEMPT_STARTED = "resilient_nodes.attempt_started"
#: The ``event`` of the custom stream chunk (and the name of the callback custom
#: event) for a failure the node captured or routed instead of raising.
NODE_FAILED = "resilient_nodes.node_failed"

# Names from langgraph._internal._constants, spelled out so that using them needs
# no import (they are interned strings, stable since 0.2).
_CONF = "configurable"
_SEND = "__pregel_send"  # CONFIG_KEY_SEND: appends (channel, value) writes to the task
_SCRATCHPAD = "__pregel_scratchpad"  # CONFIG_KEY_SCRATCHPAD: the task's PregelScratchpad
_ERROR = "__error__"  # ERROR: the reserved channel of a task's failure
_PUSH = "__pregel_push"  # PUSH: the first item of a Send task's langgraph_path
_RUNTIME = "__pregel_runtime"  # CONFIG_KEY_RUNTIME: the task's Runtime (stream_writer...)

_CONFIG_MODULE = "langchain_core.runnables.config"
_RUNNABLE_MODULE = "langchain_core.runnables.base"


_ambient: list[Any] = []  # langchain_core's config variable, once it is imported


def ambient_config() -> Mapping[str, Any] | None:
    """The RunnableConfig of the LangGraph task running now, or None outside one.

    LangGraph passes a node its config only if the node's signature asks for
    it; the node shell still needs it (ids, the cancel token) when the impl does
    not. ``var_child_runnable_config`` is langchain_core's public context
    variable, the one ``langgraph.config.get_config()`` reads; read directly, it
    costs one lookup and no exception outside a run. It is on every node call's
    path: found once, then kept.
    """
    if _ambient:
        config: Mapping[str, Any] | None = _ambient[0].get()
        return config
    module = sys.modules.get(_CONFIG_MODULE)
    if module is None:
        return None
    _ambient.append(module.var_child_runnable_config)
    return ambient_config()


def is_runnable(obj: object, /) -> bool:
    """Whether *obj* is a langchain_core ``Runnable`` (a compiled graph, a chain...)."""
    module = sys.modules.get(_RUNNABLE_MODULE)
    return module is not None and isinstance(obj, module.Runnable)


def runnable_steps(runnable: Any, /) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """A sync and an async function that run *runnable* as LangGraph runs a Runnable node.

    LangGraph calls a Runnable node with ``invoke(input, config)`` (``ainvoke``
    in an async run). The functions take ``config`` by name, unannotated, so
    LangGraph injects it; they hold *runnable* in their closure, which is where
    LangGraph's subgraph discovery (``get_function_nonlocals``) looks, so a
    compiled subgraph stays visible to ``get_state(subgraphs=True)`` and
    ``get_graph(xray=True)``.
    """

    def invoke(state, config):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
        return runnable.invoke(state, config)

    async def ainvoke(state, config):  # type: ignore[no-untyped-def]  # noqa: ANN001, ANN202
        return await runnable.ainvoke(state, config)

    name = getattr(runnable, "name", None) or type(runnable).__name__
    invoke.__name__ = ainvoke.__name__ = str(name)
    return invoke, ainvoke


_runnable_node_class: list[type[Any]] = []


def runnable_node(sync_node: Any, async_node: Any, /) -> RunnableNode:
    """One Runnable node with a sync and an async path, as LangGraph would build it.

    A plain Runnable node runs ``invoke`` in a sync run and ``ainvoke`` in an
    async one; a node shell is one or the other. LangGraph's own wrapper for a
    callable node, ``RunnableCallable(func, afunc)``, carries both and is what
    its subgraph discovery walks into (``find_subgraph_pregel`` knows
    ``RunnableCallable``, not an arbitrary Runnable). That class is private
    (``langgraph._internal._runnable``); it has had this constructor since 0.2.
    """
    if not _runnable_node_class:
        from langgraph._internal._runnable import (  # noqa: PLC0415 - LangGraph only in use
            RunnableCallable,
        )

        class _RunnableNode(RunnableCallable):
            """A resilient node around a Runnable; see `create_node`."""

            @property
            def policy(self) -> Policy:
                """The policy this node runs under."""
                node: Any = self.func
                policy: Policy = node.policy
                return policy

            @property
            def breaker(self) -> NodeCircuitBreaker | None:
                """This node's circuit breaker, if its policy has one."""
                node: Any = self.func
                breaker: NodeCircuitBreaker | None = node.breaker
                return breaker

            def __repr__(self) -> str:
                return f"<runnable node {self.name!r}: {self.policy!r}>"

        _runnable_node_class.append(_RunnableNode)
    node: RunnableNode = _runnable_node_class[0](
        sync_node, async_node, name=sync_node.name, trace=False
    )
    return node


def _configurable(config: Mapping[str, Any] | None) -> Mapping[str, Any]:
    configurable = config.get(_CONF) if config else None
    return configurable if isinstance(configurable, dict) else {}


def reset_interrupt_counter(config: Mapping[str, Any] | None) -> None:
    """Count the task's ``interrupt()`` calls from the first again, for a new attempt.

    LangGraph's own retry does this (``pregel/_retry.py``,
    ``_reset_interrupt_counter``): an attempt reruns the node from its first
    line, so its interrupts must reuse the answers the task already has instead
    of asking again. LangGraph replaces the scratchpad in a new config; the
    attempts here share one config, so the counter is replaced in place. Relies
    on the private ``PregelScratchpad.interrupt_counter`` (a frozen dataclass
    field, ``Callable[[], int]`` counting from 0).
    """
    scratchpad = _configurable(config).get(_SCRATCHPAD)
    if scratchpad is not None and hasattr(scratchpad, "interrupt_counter"):
        object.__setattr__(scratchpad, "interrupt_counter", itertools.count().__next__)


def stream_event(payload: Mapping[str, Any]) -> None:
    """Write *payload* to the running graph's custom stream, if there is one.

    ``get_stream_writer()`` is public; outside a run it raises, and a run not
    streaming ``custom`` gets a writer that drops the chunk.
    """
    if sys.modules.get("langgraph.config") is None:
        return
    from langgraph.config import get_stream_writer  # noqa: PLC0415 - LangGraph in use

    try:
        writer = get_stream_writer()
    except Exception:  # not inside a LangGraph run
        return
    writer(dict(payload))


def _callback_config(config: Mapping[str, Any] | None) -> Any:
    return config if config and config.get("callbacks") is not None else None


def dispatch_failure(config: Mapping[str, Any] | None, data: Mapping[str, Any]) -> None:
    """Tell the run's callbacks (tracers, ``astream_events``) about a contained failure.

    A captured failure ends the node normally (``on_chain_end``); this custom
    event (langchain_core's public ``dispatch_custom_event``) is how a tracer
    tells it from success. Without callbacks there is no one to tell.
    """
    callback_config = _callback_config(config)
    if callback_config is None:
        return
    from langchain_core.callbacks.manager import dispatch_custom_event  # noqa: PLC0415

    try:
        dispatch_custom_event(NODE_FAILED, dict(data), config=callback_config)
    except RuntimeError:  # no parent run to attach the event to
        return


async def adispatch_failure(config: Mapping[str, Any] | None, data: Mapping[str, Any]) -> None:
    """`dispatch_failure` for async nodes (async handlers run on the loop)."""
    callback_config = _callback_config(config)
    if callback_config is None:
        return
    from langchain_core.callbacks.manager import adispatch_custom_event  # noqa: PLC0415

    try:
        await adispatch_custom_event(NODE_FAILED, dict(data), config=callback_config)
    except RuntimeError:
        return


def _path(config: Mapping[str, Any] | None) -> tuple[Any, ...]:
    metadata = config.get("metadata") if config else None
    path = metadata.get("langgraph_path") if isinstance(metadata, Mapping) else None
    return tuple(path) if isinstance(path, tuple | list) else ()


def in_graph_task(config: Mapping[str, Any] | None) -> bool:
    """Whether *config* is that of a LangGraph task running now (it has a send function)."""
    return _configurable(config).get(_SEND) is not None


def send_branch(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Which ``Send`` branch the running task is, or None if it is not one.

    LangGraph puts the task's path in the run metadata it documents for tracing
    (``langgraph_path``: ``("__pregel_push", index, ...)`` for the index-th
    ``Send`` of a step) with its ``langgraph_checkpoint_ns`` (``node:task_id``).
    """
    path = _path(config)
    if len(path) < 2 or path[0] != _PUSH or not isinstance(path[1], int):
        return None
    metadata: Any = config.get("metadata") if config else None
    branch: dict[str, Any] = {"send_index": path[1]}
    namespace = metadata.get("langgraph_checkpoint_ns")
    if isinstance(namespace, str):
        branch["task_id"] = namespace.rpartition(":")[2]
    return branch


def write_captured(config: Mapping[str, Any] | None, update: Any, error: BaseException) -> bool:
    """Write a captured failure's update as a task that failed: never cached.

    LangGraph caches a task's writes unless they hold an ``ERROR`` (or
    ``INTERRUPT``) write (``pregel/_loop.py``, ``_cacheable``): a result the node
    returns would be served from the cache for the whole TTL. So the update is
    written through the task's private send function (``CONFIG_KEY_SEND``),
    followed by an ``ERROR`` write, and the node returns None. The ``ERROR``
    write must not come first: LangGraph streams a task's ``updates`` only when
    its first write is not one. The ``tasks``/``debug`` streams then show the
    error beside the result, as for any failed task. Only for a graph node (a
    pull or ``Send`` task): a functional-API task replays an ``ERROR`` write as
    an exception when its entrypoint resumes.

    Returns:
        Whether the update was written (else the node returns it).
    """
    send = _configurable(config).get(_SEND)
    path = _path(config)
    if send is None or not path or not isinstance(update, Mapping):
        return False
    if path[0] == _PUSH and not (len(path) > 1 and isinstance(path[1], int)):
        return False  # a functional-API task (its path holds its caller's): see above
    send([*update.items(), (_ERROR, error)])
    return True


class _Gated:
    """A write function that writes only while its attempt is the live one."""

    __slots__ = ("live", "write")

    def __init__(self, write: Callable[..., Any], live: Callable[[], bool]) -> None:
        self.write = write
        self.live = live

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        if self.live():
            self.write(*args, **kwargs)


def _gated_runtime(runtime: Any, live: Callable[[], bool]) -> Any:
    writer = getattr(runtime, "stream_writer", None)
    if writer is None or not dataclasses.is_dataclass(runtime):
        return runtime
    return dataclasses.replace(runtime, stream_writer=_Gated(writer, live))  # type: ignore[type-var]


def gate_writes(
    config: Mapping[str, Any] | None, kwargs: dict[str, Any], live: Callable[[], bool]
) -> Mapping[str, Any] | None:
    """What one attempt writes through goes only while *live()* says it is live.

    An attempt abandoned by its timeout runs on in its thread; without this it
    would keep writing into the graph's custom stream (the ``writer`` argument,
    ``runtime.stream_writer``, ``get_stream_writer()``) and its state (the
    task's private send function, ``CONFIG_KEY_SEND``, which ``interrupt()``
    uses too) between the next attempt's writes. Patches *kwargs* in place and
    returns the config to make current in the attempt's thread (the
    ``Runtime`` is a dataclass, replaced with ``dataclasses.replace``).
    """
    configurable = _configurable(config)
    patch: dict[str, Any] = {}
    send = configurable.get(_SEND)
    if send is not None:
        patch[_SEND] = _Gated(send, live)
    runtime = configurable.get(_RUNTIME)
    if runtime is not None:
        runtime = patch[_RUNTIME] = _gated_runtime(runtime, live)
    writer = kwargs.get("writer")
    if callable(writer):
        kwargs["writer"] = _Gated(writer, live)
    if kwargs.get("runtime") is not None:
        kwargs["runtime"] = (
            runtime if runtime is not None else _gated_runtime(kwargs["runtime"], live)
        )
    if not patch or config is None:
        return config
    gated = {**config, _CONF: {**configurable, **patch}}
    if "config" in kwargs:
        kwargs["config"] = gated
    return gated


def set_ambient_config(config: Mapping[str, Any]) -> Callable[[], None]:
    """Make *config* the running task's config in this context; returns the undo."""
    module = sys.modules.get(_CONFIG_MODULE)
    if module is None:
        return lambda: None
    var = module.var_child_runnable_config
    token = var.set(config)
    return lambda: var.reset(token)
