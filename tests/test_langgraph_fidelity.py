"""To LangGraph, a wrapped node is the impl made resilient.

Every case runs on a real ``StateGraph`` (with a real checkpointer and store where
the feature involves them) once with the plain impl and once with it wrapped by
`create_node` (with a retry, and with a retry and a timeout, which runs sync
attempts in worker threads). The plain run proves the case is LangGraph's own
behaviour; the wrapped runs must match it.
"""

from __future__ import annotations

import inspect
import operator
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig  # noqa: TC002 - LangGraph reads hints
from langgraph.cache.memory import InMemoryCache
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.config import get_store, get_stream_writer
from langgraph.errors import InvalidUpdateError
from langgraph.func import entrypoint, task
from langgraph.graph import END, START, StateGraph
from langgraph.pregel import _retry as langgraph_retry
from langgraph.runtime import Runtime  # noqa: TC002
from langgraph.store.base import BaseStore  # noqa: TC002
from langgraph.store.memory import InMemoryStore
from langgraph.types import CachePolicy, Command, RetryPolicy, Send, StreamWriter, interrupt

from resilient_nodes import ErrorCode, GraphState, NodeTimeoutError, Policy, create_node
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
        return create_node(impl, name=name, policy=policy, on_error="raise")

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


# --- failures: interrupts, resume, error_handler, cache, no errors channel ---------


class ErrState(TypedDict, total=False):
    """A state with a place for captured failures."""

    log: Annotated[list[Any], operator.add]
    errors: Annotated[list[Any], operator.add]


def _single(node: Any, state: type = ErrState, **options: Any) -> StateGraph[Any]:
    builder: StateGraph[Any] = StateGraph(state)
    builder.add_node("n", node, **options)
    builder.add_edge(START, "n")
    return builder


@pytest.mark.parametrize("on_error", ["capture", "raise"])
def test_an_interrupt_is_asked_once_across_retries(mode: str, on_error: str) -> None:
    """A node that asked the human, then failed transiently, needs one resume, not two."""
    failures = [ConnectionError("reset")]
    answers: list[Any] = []

    def ask_then_call(state: ErrState) -> ErrState:
        answers.append(interrupt("approve?"))
        if failures:
            raise failures.pop()
        return {"log": [answers[-1]]}

    if mode == "plain":
        if not hasattr(langgraph_retry, "_reset_interrupt_counter"):
            pytest.skip("LangGraph < 1.2.20 asks again after a retry; ours never does")
        builder = _single(
            ask_then_call, retry_policy=RetryPolicy(max_attempts=2, initial_interval=0.001)
        )
    else:
        policy = Policy.retry(attempts=2)
        if mode == "wrapped_timeout":
            policy = policy | Policy.timeout(30)
        builder = _single(
            create_node(ask_then_call, name="n", policy=policy, on_error=on_error)  # type: ignore[arg-type]
        )
    graph = builder.compile(checkpointer=InMemorySaver())
    config = _thread()
    with no_backoff():
        assert graph.invoke({"log": []}, config)["__interrupt__"][0].value == "approve?"
        assert graph.invoke(Command(resume="yes"), config) == {"log": ["yes"], "errors": []}
    assert answers == ["yes", "yes"]
    assert graph.get_state(config).next == ()


def test_a_raised_failure_resumes_from_the_checkpoint(wrap: Callable[[Any, str], Any]) -> None:
    """on_error="raise": the failed node is still next, and ``invoke(None)`` reruns it."""
    down = [True]

    def call(state: ErrState) -> ErrState:
        if down[0]:
            raise ValueError("dependency down")
        return {"log": ["done"]}

    graph = _single(wrap(call, "n")).compile(checkpointer=InMemorySaver())
    config = _thread()
    with pytest.raises(ValueError, match="dependency down"):
        graph.invoke({"log": []}, config)
    snapshot = graph.get_state(config)
    assert snapshot.next == ("n",)
    assert "dependency down" in str(snapshot.tasks[0].error)
    down[0] = False
    assert graph.invoke(None, config) == {"log": ["done"], "errors": []}


@pytest.mark.skipif(
    "error_handler" not in inspect.signature(StateGraph.add_node).parameters,
    reason="this LangGraph has no error_handler=",
)
def test_langgraphs_error_handler_fires(wrap: Callable[[Any, str], Any]) -> None:
    """on_error="raise": ``add_node(..., error_handler=...)`` gets the failure."""

    def call(state: ErrState) -> ErrState:
        raise ValueError("no luck")

    # LangGraph injects ``error`` by its annotation, which must read "NodeError".
    def handler(state: ErrState, error: NodeError) -> ErrState:  # noqa: F821
        return {"log": [f"handled {type(error.error).__name__}"]}

    graph = _single(wrap(call, "n"), error_handler=handler).compile()
    assert graph.invoke({"log": []})["log"] == ["handled ValueError"]


def test_a_captured_failure_is_not_served_from_the_cache(mode: str) -> None:
    """With ``cache_policy``, a captured failure reruns the node next time; a result is cached."""
    outcomes: list[Exception | None] = [ConnectionError("reset"), None]
    calls = 0

    def call(state: ErrState) -> ErrState:
        nonlocal calls
        calls += 1
        error = outcomes.pop(0) if outcomes else None
        if error is not None:
            raise error
        return {"log": ["ok"]}

    node = call if mode == "plain" else create_node(call, name="n")
    graph = _single(node, cache_policy=CachePolicy()).compile(cache=InMemoryCache())
    if mode == "plain":
        with pytest.raises(ConnectionError):
            graph.invoke({"log": []})
    else:
        chunks = list(graph.stream({"log": []}, stream_mode=["updates", "tasks"]))
        (update,) = [chunk for kind, chunk in chunks if kind == "updates"]
        (record,) = update["n"]["errors"]
        assert record["error_type"] == "ConnectionError"
        # The task stream shows the failure beside the update, as for any failed task.
        (finished,) = [c for kind, c in chunks if kind == "tasks" and "result" in c]
        assert isinstance(finished["error"], ConnectionError)
        assert finished["result"] == {"errors": [record]}
    assert graph.invoke({"log": []})["log"] == ["ok"]
    assert graph.invoke({"log": []})["log"] == ["ok"]
    assert calls == 2


class Messages(TypedDict):
    """Like ``MessagesState``: no ``errors`` key."""

    messages: Annotated[list[str], operator.add]


def test_a_state_without_errors_raises_instead_of_dropping(mode: str) -> None:
    """A state type without an ``errors`` key: capture raises, as plain does."""

    def call(state: Messages) -> Messages:
        raise ValueError("lost?")

    node = call if mode == "plain" else create_node(call, name="n")
    with pytest.raises(ValueError, match="lost"):
        _single(node, Messages).compile().invoke({"messages": []})


def test_an_untyped_node_raises_where_the_graph_has_no_errors(mode: str) -> None:
    """An impl whose state type says nothing: the state LangGraph passes tells."""

    def call(state: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("lost?")

    node = call if mode == "plain" else create_node(call, name="n")
    with pytest.raises(ValueError, match="lost"):
        _single(node, Messages).compile().invoke({"messages": []})
    node = call if mode == "plain" else create_node(call, name="n")
    graph = _single(node).compile()  # ErrState has errors
    if mode == "plain":
        with pytest.raises(ValueError, match="lost"):
            graph.invoke({"log": []})
    else:
        assert graph.invoke({"log": []})["errors"][0]["message"] == "lost?"


def test_on_error_routes_a_command_only_node(mode: str) -> None:
    """A node that routes only by Command sends its failure somewhere with a handler."""

    def route(state: ErrState) -> Command[Literal["done", "fallback"]]:
        raise ValueError("router broke")

    def to_fallback(record: Any, state: Any) -> Command[Literal["fallback"]]:
        return Command(goto="fallback", update={"log": [record["code"]]})

    builder: StateGraph[Any] = StateGraph(ErrState)
    if mode == "plain":
        builder.add_node("route", route)
    else:
        builder.add_node("route", create_node(route, name="route", on_error=to_fallback))
    builder.add_node("done", lambda state: {"log": ["done"]})
    builder.add_node("fallback", lambda state: {"log": ["fallback"]})
    builder.add_edge(START, "route")
    graph = builder.compile()
    edges = {(edge.source, edge.target) for edge in graph.get_graph().edges}
    assert {("route", "done"), ("route", "fallback")} <= edges
    if mode == "plain":
        with pytest.raises(ValueError, match="router broke"):
            graph.invoke({"log": []})
    else:
        assert graph.invoke({"log": []})["log"] == ["VALIDATION_FAILED", "fallback"]


def test_a_send_branchs_record_says_which_branch(mode: str) -> None:
    """Each ``Send`` branch is its own task; a captured record names its index and task."""

    def fan_out(state: ErrState) -> list[Send]:
        return [Send("work", {"log": [str(i)]}) for i in range(3)]

    def work(state: ErrState) -> ErrState:
        if state["log"] == ["1"]:
            raise ValueError("branch 1 broke")
        return {"log": state["log"]}

    builder: StateGraph[Any] = StateGraph(ErrState)
    builder.add_node("work", work if mode == "plain" else create_node(work, name="work"))
    builder.add_conditional_edges(START, fan_out, ["work"])
    graph = builder.compile(checkpointer=InMemorySaver())
    config = _thread()
    if mode == "plain":
        with pytest.raises(ValueError, match="branch 1"):
            graph.invoke({"log": []}, config)
        return
    result = graph.invoke({"log": []}, config)
    assert sorted(result["log"]) == ["0", "2"]
    (record,) = result["errors"]
    assert record["details"]["branch"]["send_index"] == 1
    assert (
        str(uuid.UUID(record["details"]["branch"]["task_id"]))
        == (record["details"]["branch"]["task_id"])
    )


# --- timeouts: LangGraph's and ours --------------------------------------------------


@pytest.mark.skipif(
    "timeout" not in inspect.signature(StateGraph.add_node).parameters,
    reason="this LangGraph has no node timeout=",
)
@pytest.mark.anyio
async def test_langgraphs_node_timeout_still_applies(mode: str) -> None:
    """``add_node(..., timeout=)`` cuts an async node off with LangGraph's NodeTimeoutError."""
    import anyio
    from langgraph.errors import NodeTimeoutError as LangGraphNodeTimeoutError

    async def slow(state: ErrState) -> ErrState:
        await anyio.sleep(10)
        return {}

    node = slow if mode == "plain" else create_node(slow, name="n", on_error="raise")
    graph = _single(node, timeout=0.05).compile()
    with pytest.raises(LangGraphNodeTimeoutError):
        await graph.ainvoke({"log": []})


@pytest.mark.anyio
async def test_our_timeout_is_our_node_timeout_error(mode: str) -> None:
    """``Policy.timeout`` raises resilient_nodes' NodeTimeoutError (also a TimeoutError)."""
    import anyio

    async def slow(state: ErrState) -> ErrState:
        await anyio.sleep(10)
        return {}

    if mode == "plain":
        pytest.skip("a plain node has no policy timeout")
    node = create_node(slow, name="n", policy=Policy.timeout(0.05), on_error="raise")
    with pytest.raises(NodeTimeoutError) as caught:
        await _single(node).compile().ainvoke({"log": []})
    assert isinstance(caught.value, TimeoutError)


# --- streaming and tracing -----------------------------------------------------------


@pytest.mark.anyio
async def test_stream_and_callbacks_see_retries_and_contained_failures(mode: str) -> None:
    """Custom stream chunks mark each new attempt and a captured failure; so do callbacks.

    A plain node (retried by LangGraph) streams its chunks only; with a contained
    failure it would raise, which consumers see as an error.
    """
    failures: list[Exception] = []

    async def flaky(state: ErrState, *, writer: StreamWriter) -> ErrState:
        writer({"token": "partial"})
        if failures:
            raise failures.pop(0)
        return {"log": ["ok"]}

    if mode == "plain":
        node: Any = flaky
        options: dict[str, Any] = {"retry_policy": RetryPolicy(initial_interval=0.001)}
    else:
        node = create_node(flaky, name="n", policy=Policy.retry(attempts=2))
        options = {}
    graph = _single(node, **options).compile()
    failures[:] = [ConnectionError("one")]
    with no_backoff():
        chunks = [c async for c in graph.astream({"log": []}, stream_mode="custom")]
    started = {"event": "resilient_nodes.attempt_started", "node": "n", "attempt": 2}
    expected = [{"token": "partial"}] * 2
    assert chunks == (expected if mode == "plain" else [expected[0], started, expected[1]])
    if mode == "plain":
        return

    failures[:] = [ConnectionError("one"), ConnectionError("two")]
    with no_backoff():
        events = [e async for e in graph.astream_events({"log": []}, version="v2")]
    (failed,) = [e for e in events if e["event"] == "on_custom_event"]
    assert failed["name"] == "resilient_nodes.node_failed"
    assert failed["data"]["node"] == "n"
    assert failed["data"]["record"]["code"] == ErrorCode.RETRY_EXHAUSTED.value

    failures[:] = [ConnectionError("one"), ConnectionError("two")]
    with no_backoff():
        chunks = [c async for c in graph.astream({"log": []}, stream_mode="custom")]
    last = chunks.pop()
    assert chunks == [expected[0], started, expected[1]]
    assert last["event"] == "resilient_nodes.node_failed"
    assert last["record"]["attempts"] == 2


def test_a_graph_state_subclass_captures(mode: str) -> None:
    """The library's GraphState has ``errors``: capture records there (plain raises)."""

    class Story(GraphState, total=False):
        text: str

    def write(state: Story) -> Story:
        raise ValueError("writer's block")

    node = write if mode == "plain" else create_node(write, name="write")
    builder: StateGraph[Any] = StateGraph(Story)
    builder.add_node("write", node)
    builder.add_edge(START, "write")
    if mode == "plain":
        with pytest.raises(ValueError, match="block"):
            builder.compile().invoke({"text": ""})
        return
    (record,) = builder.compile().invoke({"text": ""})["errors"]
    assert record["node"] == "write"


# --- abandoned attempts --------------------------------------------------------------


def test_an_abandoned_attempt_writes_nothing_and_keeps_its_number(mode: str) -> None:
    """A sync attempt past its timeout, still running, cannot write into the stream.

    Attempt 1 overruns its timeout and is abandoned; it writes again while
    attempt 2 runs. Only attempt 2's chunks reach the stream, and inside attempt 1
    ``current_context().attempt`` stays 1. The plain run (no timeout, no retry)
    shows LangGraph streams a node's chunks in order.
    """
    import threading

    from resilient_nodes import current_context

    second_started = threading.Event()
    first_wrote = threading.Event()
    first_saw: list[int] = []
    calls = 0
    if mode == "plain":
        first_wrote.set()  # there is no first attempt to wait for

    def slow_then_fast(state: ErrState, *, writer: StreamWriter) -> ErrState:
        nonlocal calls
        calls += 1
        if mode != "plain" and calls == 1:
            writer({"attempt": 1, "when": "before the timeout"})
            second_started.wait(5)
            context = current_context()
            first_saw.append(context.attempt if context else 0)
            writer({"attempt": 1, "when": "abandoned"})
            get_stream_writer()({"attempt": 1, "when": "abandoned, ambient"})
            first_wrote.set()
            return {"log": ["one"]}
        second_started.set()
        first_wrote.wait(5)
        writer({"attempt": calls})
        return {"log": [str(calls)]}

    if mode == "plain":
        node: Any = slow_then_fast
    else:
        node = create_node(
            slow_then_fast,
            name="n",
            policy=Policy.retry(attempts=2, retry_on=lambda error: True) | Policy.timeout(0.05),
        )
    graph = _single(node).compile()
    with no_backoff():
        chunks = list(graph.stream({"log": []}, stream_mode=["custom", "values"]))
    custom = [chunk for kind, chunk in chunks if kind == "custom"]
    if mode == "plain":
        assert custom == [{"attempt": 1}]
        return
    assert first_saw == [1]
    assert custom == [
        {"attempt": 1, "when": "before the timeout"},
        {"event": "resilient_nodes.attempt_started", "node": "n", "attempt": 2},
        {"attempt": 2},
    ]
    assert chunks[-1] == ("values", {"log": ["2"], "errors": []})
