"""A pytest plugin that runs LangGraph's own test suite with every node wrapped.

Loaded with ``-p lg_wrap_plugin`` (see ``run.py``), it patches
``StateGraph.add_node`` so that every plain callable given as a node is replaced
by ``create_node(node, name=<its node name>, policy=Policy.none(),
on_error="raise")`` before LangGraph sees it. A test that passes plain must pass
wrapped: to LangGraph, a wrapped node is the impl.

Left as they are (and counted): Runnables (compiled graphs, chains: LangGraph
takes them as they are) and generator functions (LangGraph streams those
through a ``RunnableLambda``; ``create_node`` does not take them). Without
``RESILIENT_NODES_WRAP=1`` the plugin only counts, so plain and wrapped runs load
the same code. ``RESILIENT_NODES_WRAP_RUNNABLES=1`` wraps Runnables too
(``create_node(compiled_subgraph)``), beyond the plain-callable contract.
"""

from __future__ import annotations

import collections
import inspect
import json
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

WRAP = os.environ.get("RESILIENT_NODES_WRAP") == "1"
# Also wrap Runnables (compiled subgraphs...): beyond the plain-callable contract.
WRAP_RUNNABLES = os.environ.get("RESILIENT_NODES_WRAP_RUNNABLES") == "1"
COUNTS: collections.Counter[str] = collections.Counter()


def _node_name(node: Any, action: Any) -> tuple[str | None, Any]:
    if isinstance(node, str):
        return node, action
    name = getattr(node, "name", None) if action is None else None
    return (name if isinstance(name, str) else getattr(node, "__name__", None)), node


def _wrappable(action: Any) -> str | None:
    """Why *action* is left alone, or None to wrap it."""
    from langchain_core.runnables import Runnable

    if isinstance(action, Runnable):
        return None if WRAP_RUNNABLES else "runnable"
    if inspect.isgeneratorfunction(action) or inspect.isasyncgenfunction(action):
        return "generator"
    call = getattr(action, "__call__", None)  # noqa: B004
    if inspect.isgeneratorfunction(call) or inspect.isasyncgenfunction(call):
        return "generator"
    if not callable(action):
        return "not callable"
    return None


def pytest_configure(config: pytest.Config) -> None:
    """Patch StateGraph.add_node once, before LangGraph's tests build any graph."""
    from langgraph.graph import StateGraph

    from resilient_nodes import Policy, create_node

    original = StateGraph.add_node

    def add_node(self: Any, node: Any, action: Any = None, **options: Any) -> Any:
        name, impl = _node_name(node, action)
        skipped = _wrappable(impl)
        if skipped is not None or not isinstance(name, str) or not name:
            COUNTS[f"left alone: {skipped or 'no name'}"] += 1
            return original(self, node, action, **options)
        COUNTS["wrapped" if WRAP else "would wrap"] += 1
        if not WRAP:
            return original(self, node, action, **options)
        wrapped = create_node(impl, name=name, policy=Policy.none(), on_error="raise")
        return original(self, name, wrapped, **options)

    StateGraph.add_node = add_node  # type: ignore[method-assign]
    config.add_cleanup(lambda: setattr(StateGraph, "add_node", original))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Add this process's counts to ``RESILIENT_NODES_COUNTS`` (xdist workers each have some)."""
    path = os.environ.get("RESILIENT_NODES_COUNTS")
    if path and COUNTS:
        with open(path, "a", encoding="utf-8") as out:  # noqa: PTH123 - one line per process
            out.write(json.dumps(COUNTS) + "\n")
