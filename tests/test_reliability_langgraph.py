"""LangGraph's control flow behaves exactly as it does without wrapping.

Each scenario runs the same graph twice, once with plain nodes and once with
nodes from `create_node` under a full policy, and compares what LangGraph does.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

import anyio
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from resilient_nodes import Policy, create_node


class State(TypedDict, total=False):
    question: str
    answer: str
    path: Annotated[list[str], operator.add]
    errors: Annotated[list[dict[str, Any]], operator.add]


def _full() -> Policy:
    return Policy.llm() | Policy.breaker() | Policy.timeout(5)


def _interrupt_graph(wrap: bool) -> Any:
    def ask(state: State) -> dict[str, Any]:
        answer = interrupt({"question": state["question"]})
        return {"answer": answer, "path": ["ask"]}

    def finish(state: State) -> dict[str, Any]:
        return {"path": ["finish"]}

    builder = StateGraph(State)
    builder.add_node("ask", create_node(ask, name="ask", policy=_full()) if wrap else ask)
    builder.add_node("finish", finish)
    builder.add_edge(START, "ask")
    builder.add_edge("ask", "finish")
    builder.add_edge("finish", END)
    return builder.compile(checkpointer=InMemorySaver())


def _interrupt_run(wrap: bool) -> tuple[Any, Any, Any]:
    graph = _interrupt_graph(wrap)
    config = {"configurable": {"thread_id": "t1"}}
    first = graph.invoke({"question": "ship it?", "path": []}, config)
    interrupts = [(i.value, i.id is not None) for i in first["__interrupt__"]]
    final = graph.invoke(Command(resume="yes"), config)
    return {k: v for k, v in first.items() if k != "__interrupt__"}, interrupts, final


def test_interrupt_and_resume_unchanged_by_wrapping() -> None:
    """interrupt() pauses and Command(resume=...) resumes a wrapped node as a plain one."""
    plain = _interrupt_run(wrap=False)
    wrapped = _interrupt_run(wrap=True)
    assert wrapped == plain
    _, interrupts, final = wrapped
    assert interrupts == [({"question": "ship it?"}, True)]
    assert final["answer"] == "yes"
    assert final["path"] == ["ask", "finish"]
    assert not final.get("errors")


def _goto_graph(wrap: bool) -> Any:
    def route(state: State) -> Command[Any]:
        return Command(goto="b", update={"path": ["route"]})

    def a(state: State) -> dict[str, Any]:
        return {"path": ["a"]}

    def b(state: State) -> dict[str, Any]:
        return {"path": ["b"]}

    builder = StateGraph(State)
    node = create_node(route, name="route", policy=_full()) if wrap else route
    builder.add_node("route", node, destinations=("a", "b"))
    builder.add_node("a", a)
    builder.add_node("b", b)
    builder.add_edge(START, "route")
    builder.add_edge("a", END)
    builder.add_edge("b", END)
    return builder.compile()


def test_command_goto_unchanged_by_wrapping() -> None:
    """A Command(goto=...) returned by a wrapped node routes exactly as unwrapped."""
    plain = _goto_graph(wrap=False).invoke({"path": []})
    wrapped = _goto_graph(wrap=True).invoke({"path": []})
    assert wrapped == plain
    assert wrapped["path"] == ["route", "b"]


async def _sibling_run(wrap: bool) -> tuple[str, list[str], Any]:
    seen: list[str] = []

    async def slow(state: State) -> dict[str, Any]:
        seen.append("started")
        try:
            await anyio.sleep(10)
        except BaseException:
            seen.append("cancelled")
            raise
        return {"path": ["slow"]}

    async def boom(state: State) -> dict[str, Any]:
        await anyio.sleep(0.01)
        raise KeyError("sibling failed")

    node = create_node(slow, name="slow", policy=_full()) if wrap else slow
    builder = StateGraph(State)
    builder.add_node("slow", node)
    builder.add_node("boom", boom)
    builder.add_edge(START, "slow")
    builder.add_edge(START, "boom")
    builder.add_edge("slow", END)
    builder.add_edge("boom", END)
    graph = builder.compile()
    with pytest.raises(KeyError) as raised:
        await graph.ainvoke({"path": []})
    return type(raised.value).__name__, seen, getattr(node, "breaker", None)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # LangGraph's async runtime
@pytest.mark.anyio
async def test_sibling_failure_cancels_wrapped_node_as_unwrapped() -> None:
    """A failing sibling cancels a wrapped async node: no retry, no record, no count."""
    plain = await _sibling_run(wrap=False)
    wrapped = await _sibling_run(wrap=True)
    assert wrapped[:2] == plain[:2] == ("KeyError", ["started", "cancelled"])
    status = wrapped[2].status()
    assert (status.state, status.failure_count, status.probe_in_flight) == ("closed", 0, False)
