"""One-node LangGraph graphs: ``await graph.ainvoke(state)`` per call.

The floor is the plain graph (the node is ``impl`` itself), timed just before and
after every variant. Variants: our full node; our node with no policy; the naive
stack around ``impl``; LangGraph's own ``retry_policy=RetryPolicy()`` and
``timeout=30``; and two references: ``impl`` under a bare ``anyio.fail_after(30)``
(what the full node is held to: at most 1.03x of that graph) and under
``asyncio.timeout(30)`` (the cheapest deadline the standard library has). Do not
stack LangGraph's RetryPolicy on our node: the attempts would multiply.
"""

from __future__ import annotations

from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import RetryPolicy

from resilient_nodes import Policy, create_node

from ._common import full_policy, impl, naive_stack, under_asyncio_timeout, under_fail_after
from ._timing import Case, call_loop

SECTION = "langgraph"


class _State(TypedDict):
    value: int


def _graph(node: Any, **options: Any) -> Any:
    builder = StateGraph(_State)
    builder.add_node("n", node, **options)
    builder.add_edge(START, "n")
    builder.add_edge("n", END)
    return builder.compile()


def _invoke_loop(graph: Any) -> Any:
    return call_loop(graph.ainvoke, {"value": 1})


def floor() -> Case:
    return Case("lg_plain", "plain 1-node graph `ainvoke` (FLOOR)", _invoke_loop(_graph(impl)))


def cases() -> list[Case]:
    ours = create_node(impl, name="n", policy=full_policy())
    shell = create_node(impl, name="n", policy=Policy.none())
    return [
        Case("lg_ours", "ours: full node in the graph", _invoke_loop(_graph(ours)), ours=True),
        Case(
            "lg_shell",
            "ours: `create_node(impl)` (no policy) in the graph",
            _invoke_loop(_graph(shell)),
            ours=True,
        ),
        Case(
            "lg_naive",
            "naive stack around `impl` in the graph",
            _invoke_loop(_graph(naive_stack(impl))),
        ),
        Case(
            "lg_retry_policy",
            "LangGraph `retry_policy=RetryPolicy()`",
            _invoke_loop(_graph(impl, retry_policy=RetryPolicy())),
        ),
        Case("lg_timeout", "LangGraph node `timeout=30`", _invoke_loop(_graph(impl, timeout=30))),
        Case(
            "lg_fail_after",
            "bare `anyio.fail_after(30)` around `impl` in the graph (reference)",
            _invoke_loop(_graph(under_fail_after(impl))),
        ),
        Case(
            "lg_asyncio_timeout",
            "`asyncio.timeout(30)` around `impl` in the graph (reference)",
            _invoke_loop(_graph(under_asyncio_timeout(impl))),
        ),
    ]
