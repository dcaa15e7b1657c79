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

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

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


__all__ = ["ambient_config", "is_runnable", "runnable_node", "runnable_steps"]

_CONFIG_MODULE = "langchain_core.runnables.config"
_RUNNABLE_MODULE = "langchain_core.runnables.base"


def ambient_config() -> Mapping[str, Any] | None:
    """The RunnableConfig of the LangGraph task running now, or None outside one.

    LangGraph passes a node its config only if the node's signature asks for
    it; the node shell still needs it (ids, the cancel token) when the impl does
    not. ``var_child_runnable_config`` is langchain_core's public context
    variable, the one ``langgraph.config.get_config()`` reads; read directly, it
    costs one lookup and no exception outside a run.
    """
    module = sys.modules.get(_CONFIG_MODULE)
    if module is None:
        return None
    config: Mapping[str, Any] | None = module.var_child_runnable_config.get()
    return config


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
