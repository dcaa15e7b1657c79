"""To LangGraph, a wrapped node is the impl made resilient.

Every case runs on a real ``StateGraph`` (with a real checkpointer and store where
the feature involves them) once with the plain impl and once with it wrapped by
`create_node` (with a retry, and with a retry and a timeout, which runs sync
attempts in worker threads). The plain run proves the case is LangGraph's own
behaviour; the wrapped runs must match it.
"""

from __future__ import annotations

import operator
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig  # noqa: TC002 - LangGraph reads hints
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.config import get_store, get_stream_writer
from langgraph.errors import InvalidUpdateError
from langgraph.func import entrypoint, task
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime  # noqa: TC002
from langgraph.store.base import BaseStore  # noqa: TC002
from langgraph.store.memory import InMemoryStore
from langgraph.types import Command, RetryPolicy, StreamWriter, interrupt

from resilient_nodes import Policy, create_node
from resilient_nodes.testing import no_backoff

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = pytest.mark.integration

MODES = ("plain", "wrapped", "wrapped_timeout")


@pytest.fixture
def anyio_backend() -> str:
    """LangGraph's async runtime runs on asyncio only."""
    return "asyncio"


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """The impl as it is, wrapped, and wrapped with a timeout (threads for sync impls)."""
    return str(request.param)


@pytest.fixture
def wrap(mode: str) -> Iterator[Callable[[Any, str], Any]]:
    """A function that gives the node to add for an impl, in this run's mode."""

    def make(impl: Any, name: str) -> Any:
        if mode == "plain":
            return impl
        policy = Policy.retry(attempts=2)
        if mode == "wrapped_timeout":
            policy = policy | Policy.timeout(30)
        return create_node(impl, name=name, policy=policy, capture_errors=False)

    with no_backoff():
        yield make


def _thread() -> dict[str, Any]:
    return {"configurable": {"thread_id": str(uuid.uuid4())}}


@dataclass
class Ctx:
    """The run's context (``context_schema``)."""

    user: str


class LogState(TypedDict, total=False):
    """A state whose ``log`` appends."""

    x: int
    log: Annotated[list[Any], operator.add]


# --- injection ---------------------------------------------------------------------


def _injected_graph(node: Any) -> Any:
    builder = StateGraph(LogState, context_schema=Ctx)
    builder.add_node("n", node)
    builder.add_edge(START, "n")
    return builder.compile(checkpointer=InMemorySaver(), store=InMemoryStore())


def test_injection_reaches_a_sync_impl(wrap: Callable[[Any, str], Any]) -> None:
    """runtime, store, writer and config are injected by name and annotation."""

    def impl(
        state: LogState,
        runtime: Runtime[Ctx],
        *,
        store: BaseStore,
        writer: StreamWriter,
        config: RunnableConfig,
    ) -> LogState:
        writer({"user": runtime.context.user})
        get_stream_writer()({"ambient": True})
        store.put(("users",), runtime.context.user, {"seen": True})
        assert get_store() is store
        return {"log": [runtime.context.user, config["configurable"]["thread_id"]]}

    graph = _injected_graph(wrap(impl, "n"))
    config = _thread()
    chunks = list(
        graph.stream({"x": 1}, config, context=Ctx("ada"), stream_mode=["custom", "updates"])
    )
    thread_id = config["configurable"]["thread_id"]
    assert chunks == [
        ("custom", {"user": "ada"}),
        ("custom", {"ambient": True}),
        ("updates", {"n": {"log": ["ada", thread_id]}}),
    ]
    assert graph.store.get(("users",), "ada").value == {"seen": True}


@pytest.mark.anyio
async def test_injection_reaches_an_async_impl(wrap: Callable[[Any, str], Any]) -> None:
    """The same for an async impl under astream."""

    async def impl(
        state: LogState,
        runtime: Runtime[Ctx],
        *,
        store: BaseStore,
        writer: StreamWriter,
        config: RunnableConfig,
    ) -> LogState:
        writer({"user": runtime.context.user})
        await store.aput(("users",), runtime.context.user, {"seen": True})
        return {"log": [runtime.context.user, config["configurable"]["thread_id"]]}

    graph = _injected_graph(wrap(impl, "n"))
    config = _thread()
    chunks = [
        chunk
        async for chunk in graph.astream(
            {"x": 1}, config, context=Ctx("bo"), stream_mode=["custom", "updates"]
        )
    ]
    thread_id = config["configurable"]["thread_id"]
    assert chunks == [("custom", {"user": "bo"}), ("updates", {"n": {"log": ["bo", thread_id]}})]
    assert (await graph.store.aget(("users",), "bo")).value == {"seen": True}


# --- hints: input schema, Command edges --------------------------------------------


class Overall(TypedDict, total=False):
    """The graph's state."""

    x: int


class Private(TypedDict):
    """A channel only two nodes share, known to the graph through a node's hint."""

    secret: str


def test_input_schema_is_inferred_from_the_first_parameter(
    wrap: Callable[[Any, str], Any],
) -> None:
    """A node typed ``state: Private`` reads a channel the graph state does not declare."""

    def write(state: Overall) -> Private:
        return {"secret": "abc"}

    def read(state: Private) -> Overall:
        return {"x": len(state["secret"])}

    builder = StateGraph(Overall)
    builder.add_node("write", wrap(write, "write"))
    builder.add_node("read", wrap(read, "read"))
    builder.add_edge(START, "write")
    builder.add_edge("write", "read")
    assert builder.compile().invoke({"x": 0}) == {"x": 3}


class Judge:
    """A callable object: LangGraph reads its ``__call__``'s hints."""

    def __call__(self, state: Private) -> Overall:
        return {"x": len(state["secret"]) * 10}


def test_a_callable_objects_hints_are_read(wrap: Callable[[Any, str], Any]) -> None:
    """The input schema comes from a callable object's ``__call__`` too."""

    def write(state: Overall) -> Private:
        return {"secret": "ab"}

    builder = StateGraph(Overall)
    builder.add_node("write", write)
    builder.add_node("judge", wrap(Judge(), "judge"))
    builder.add_edge(START, "write")
    builder.add_edge("write", "judge")
    assert builder.compile().invoke({"x": 0}) == {"x": 20}


def _route(state: Overall) -> Command[Literal["left", "right"]]:
    return Command(goto="right" if state["x"] else "left", update={"x": state["x"] + 1})


def _route_or_stay(state: Overall) -> Command[Literal["left", "right"]] | Overall:
    return Command(goto="left")


@pytest.mark.parametrize("router", [_route, _route_or_stay])
def test_command_literal_return_hints_draw_edges(
    wrap: Callable[[Any, str], Any], router: Any
) -> None:
    """``-> Command[Literal[...]]`` (also in a union) gives the drawn edges; routing works."""
    builder = StateGraph(Overall)
    builder.add_node("route", wrap(router, "route"))
    builder.add_node("left", lambda state: {"x": -1})
    builder.add_node("right", lambda state: {"x": 100})
    builder.add_edge(START, "route")
    graph = builder.compile()
    edges = {(edge.source, edge.target) for edge in graph.get_graph().edges}
    assert {("route", "left"), ("route", "right")} <= edges
    expected = {"x": 100} if router is _route else {"x": -1}
    assert graph.invoke({"x": 1}) == expected


# --- returns: as LangGraph accepts them, no stricter -------------------------------


def test_a_root_channel_state_takes_the_nodes_value(wrap: Callable[[Any, str], Any]) -> None:
    """``StateGraph(Annotated[list, add])``: the node returns a list, not a dict."""

    def grow(state: list[str]) -> list[str]:
        return [f"step{len(state)}"]

    builder = StateGraph(Annotated[list, operator.add])
    builder.add_node("grow", wrap(grow, "grow"))
    builder.add_edge(START, "grow")
    assert builder.compile().invoke(["start"]) == ["start", "step1"]


def test_a_list_mixing_commands_and_dicts_is_applied(wrap: Callable[[Any, str], Any]) -> None:
    """A list of a Command and a dict applies both updates."""

    def both(state: LogState) -> list[Any]:
        return [Command(update={"log": ["command"]}), {"log": ["dict"]}]

    builder = StateGraph(LogState)
    builder.add_node("both", wrap(both, "both"))
    builder.add_edge(START, "both")
    assert builder.compile().invoke({"log": []}) == {"log": ["command", "dict"]}


def test_an_update_the_state_cannot_take_is_rejected_by_langgraph(
    wrap: Callable[[Any, str], Any],
) -> None:
    """What LangGraph rejects it still rejects, with its own error."""
    builder = StateGraph(LogState)
    builder.add_node("bad", wrap(lambda state: "not an update", "bad"))
    builder.add_edge(START, "bad")
    with pytest.raises(InvalidUpdateError):
        builder.compile().invoke({"log": []})


# --- subgraphs ---------------------------------------------------------------------


def _asking_subgraph() -> Any:
    def ask(state: LogState) -> LogState:
        return {"log": [interrupt("approve?")]}

    builder = StateGraph(LogState)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    return builder.compile()


def test_a_subgraph_called_by_the_node_is_discovered(wrap: Callable[[Any, str], Any]) -> None:
    """The subgraph an impl calls keeps its state, its interrupt and its drawing."""
    inner = _asking_subgraph()

    def call_inner(state: LogState) -> LogState:
        return {"log": inner.invoke({"log": []})["log"]}

    builder = StateGraph(LogState)
    builder.add_node("outer", wrap(call_inner, "outer"))
    builder.add_edge(START, "outer")
    graph = builder.compile(checkpointer=InMemorySaver())
    config = _thread()
    graph.invoke({"log": []}, config)

    (paused,) = graph.get_state(config, subgraphs=True).tasks
    assert paused.interrupts[0].value == "approve?"
    assert paused.state is not None
    assert paused.state.next == ("ask",)
    assert "outer:ask" in graph.get_graph(xray=True).nodes
    assert graph.invoke(Command(resume="yes"), config) == {"log": ["yes"]}


def test_a_compiled_subgraph_can_be_the_node(wrap: Callable[[Any, str], Any]) -> None:
    """``create_node(compiled_subgraph)``: it runs, pauses, resumes and is drawn."""
    builder = StateGraph(LogState)
    builder.add_node("sub", wrap(_asking_subgraph(), "sub"))
    builder.add_edge(START, "sub")
    graph = builder.compile(checkpointer=InMemorySaver())
    config = _thread()
    graph.invoke({"log": []}, config)

    (paused,) = graph.get_state(config, subgraphs=True).tasks
    assert paused.state is not None
    assert paused.state.next == ("ask",)
    assert "sub:ask" in graph.get_graph(xray=True).nodes
    assert graph.invoke(Command(resume="ok"), config) == {"log": ["ok"]}


@pytest.mark.anyio
async def test_a_compiled_subgraph_node_runs_async(wrap: Callable[[Any, str], Any]) -> None:
    """Under ainvoke the subgraph runs its async nodes (its ``ainvoke`` path)."""

    async def step(state: LogState) -> LogState:
        return {"log": ["async step"]}

    inner = StateGraph(LogState)
    inner.add_node("step", step)
    inner.add_edge(START, "step")
    builder = StateGraph(LogState)
    builder.add_node("sub", wrap(inner.compile(), "sub"))
    builder.add_edge(START, "sub")
    builder.add_edge("sub", END)
    assert await builder.compile().ainvoke({"log": []}) == {"log": ["async step"]}


# --- the functional API --------------------------------------------------------------


def test_a_task_takes_a_policy(mode: str) -> None:
    """A ``@task`` retried by a policy gives what LangGraph's own retry gives."""
    failures = [ConnectionError("reset")]

    def fetch(url: str) -> str:
        if failures:
            raise failures.pop()
        return url.upper()

    if mode == "plain":
        fetch_task = task(fetch, retry_policy=RetryPolicy(max_attempts=2, initial_interval=0))
    elif mode == "wrapped":
        fetch_task = task(create_node(fetch, name="fetch", policy=Policy.retry(attempts=2)))
    else:
        fetch_task = task(Policy.retry(attempts=2).wrap(fetch))

    @entrypoint(checkpointer=InMemorySaver())
    def workflow(url: str) -> str:
        result: str = fetch_task(url).result()
        return result

    with no_backoff():
        assert workflow.invoke("a", _thread()) == "A"
    assert failures == []
