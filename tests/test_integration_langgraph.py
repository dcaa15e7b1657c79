"""Wrapped nodes inside real LangGraph graphs: retries, capture, routing, control flow.

Every graph here is a real ``langgraph.graph.StateGraph``; nothing is mocked.
LangGraph's async runtime needs asyncio, so this module pins ``anyio_backend`` to it.
"""

from __future__ import annotations

import asyncio
import operator
import threading
import time
import uuid
from typing import TYPE_CHECKING, Annotated, Any

import anyio
import anyio.lowlevel
import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, RetryPolicy, interrupt
from structlog.testing import capture_logs

from resilient_nodes import (
    BreakerState,
    CancelToken,
    ErrorCode,
    GraphState,
    NodeRetryExhaustedError,
    Policy,
    create_node,
    current_context,
)
from resilient_nodes._node import AsyncNode, SyncNode
from resilient_nodes.testing import no_backoff

if TYPE_CHECKING:
    from langchain_core.runnables import RunnableConfig

pytestmark = pytest.mark.integration


@pytest.fixture
def anyio_backend() -> str:
    """LangGraph's ``ainvoke`` runs on asyncio only (trio has no asyncio loop)."""
    return "asyncio"


class FlowState(GraphState, total=False):
    """The library's state plus a few keys of this test module's own."""

    query: str
    answer: str
    handled: bool
    trail: Annotated[list[str], operator.add]
    seen: Annotated[list[dict[str, Any]], operator.add]


class ServiceUnavailableError(Exception):
    """Looks like an HTTP client's 503 error to the classifier (duck-typed status)."""

    status_code = 503


def _finish(state: FlowState) -> dict[str, Any]:
    return {"trail": ["finish"]}


def _linear(*nodes: tuple[str, Any], checkpointer: Any = None) -> Any:
    """START -> nodes in order -> finish -> END, compiled."""
    builder = StateGraph(FlowState)
    names = [name for name, _ in nodes]
    for name, node in nodes:
        builder.add_node(name, node)
    builder.add_node("finish", _finish)
    for before, after in zip([START, *names], [*names, "finish"], strict=True):
        builder.add_edge(before, after)
    builder.add_edge("finish", END)
    return builder.compile(checkpointer=checkpointer)


def _events(
    logs: list[dict[str, Any]], event: str, node: str | None = None
) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] == event and (node is None or e.get("node") == node)]


# --- retries, capture, routing ----------------------------------------------------------


def test_flaky_node_recovers_after_retries() -> None:
    """A node failing with a connection error then a 503 succeeds on its third attempt."""
    failures: list[Exception] = [ConnectionError("reset by peer"), ServiceUnavailableError("busy")]
    calls = 0

    def answer(state: FlowState) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if failures:
            raise failures.pop(0)
        return {"answer": state["query"].upper()}

    node = create_node(answer, name="answer", policy=Policy.retry(attempts=3))
    graph = _linear(("answer", node))
    with no_backoff():
        result = graph.invoke({"query": "hello"})
    assert calls == 3
    assert result["answer"] == "HELLO"
    assert result["errors"] == []
    assert result["trail"] == ["finish"]


def test_permanent_failure_is_recorded_and_routed_to_a_handler() -> None:
    """An exhausted node appends an error record and a conditional edge routes on it."""

    def fetch(state: FlowState) -> dict[str, Any]:
        raise ConnectionError("upstream is down")

    def handle(state: FlowState) -> dict[str, Any]:
        return {"handled": True, "trail": ["handle"]}

    def proceed(state: FlowState) -> dict[str, Any]:
        return {"trail": ["proceed"]}

    def route(state: FlowState) -> str:
        return "handle" if state.get("errors") else "proceed"

    builder = StateGraph(FlowState)
    builder.add_node("fetch", create_node(fetch, name="fetch", policy=Policy.retry(attempts=2)))
    builder.add_node("handle", handle)
    builder.add_node("proceed", proceed)
    builder.add_edge(START, "fetch")
    builder.add_conditional_edges("fetch", route, ["handle", "proceed"])
    builder.add_edge("handle", END)
    builder.add_edge("proceed", END)
    graph = builder.compile()

    with no_backoff():
        result = graph.invoke({"query": "q", "errors": []})
    (record,) = result["errors"]
    assert record["node"] == "fetch"
    assert record["code"] == ErrorCode.RETRY_EXHAUSTED.value
    assert record["attempts"] == 2
    assert "upstream is down" in record["message"]
    assert result["handled"] is True
    assert result["trail"] == ["handle"]


@pytest.mark.anyio
async def test_timed_out_node_is_recorded_and_graph_completes() -> None:
    """A hanging async impl under a 50 ms timeout records NODE_TIMEOUT; the run goes on."""

    async def hang(state: FlowState) -> dict[str, Any]:
        await anyio.sleep(30)
        return {"answer": "too late"}

    graph = _linear(("slow", create_node(hang, name="slow", policy=Policy.timeout(0.05))))
    started = time.perf_counter()
    result = await graph.ainvoke({"query": "q"})
    assert time.perf_counter() - started < 2
    (record,) = result["errors"]
    assert record["code"] == ErrorCode.NODE_TIMEOUT.value
    assert record["node"] == "slow"
    assert "answer" not in result
    assert result["trail"] == ["finish"]


def test_breaker_opens_across_invocations_then_fails_fast() -> None:
    """Two failing runs open the node's breaker; the third run never calls the impl."""
    calls = 0

    def call_api(state: FlowState) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        raise ConnectionError("refused")

    node = create_node(call_api, name="api", policy=Policy.breaker(failure_threshold=2))
    graph = _linear(("api", node))
    codes = []
    for _ in range(4):
        result = graph.invoke({"query": "q"})
        (record,) = result["errors"]
        codes.append(record["code"])
        assert result["trail"] == ["finish"]
    assert calls == 2
    assert ErrorCode.CIRCUIT_OPEN.value not in codes[:2]
    assert codes[2:] == [ErrorCode.CIRCUIT_OPEN.value] * 2
    assert node.breaker is not None
    assert node.breaker.status().state is BreakerState.OPEN


# --- interrupts -------------------------------------------------------------------------


def _approval_impl(calls: list[str]) -> Any:
    def approve(state: FlowState) -> dict[str, Any]:
        calls.append("call")
        decision = interrupt({"question": f"publish {state['query']}?"})
        return {"answer": f"{state['query']}:{decision}"}

    return approve


def _async_approval_impl(calls: list[str]) -> Any:
    async def approve(state: FlowState) -> dict[str, Any]:
        calls.append("call")
        await anyio.lowlevel.checkpoint()
        decision = interrupt({"question": f"publish {state['query']}?"})
        return {"answer": f"{state['query']}:{decision}"}

    return approve


_INTERRUPT_POLICY = (
    Policy.retry(attempts=3) | Policy.breaker(failure_threshold=1) | Policy.timeout(5)
)


def _check_interrupted(first: dict[str, Any], calls: list[str], node: Any) -> None:
    (pending,) = first["__interrupt__"]
    assert pending.value == {"question": "publish draft?"}
    assert "answer" not in first
    assert first.get("errors", []) == []
    assert calls == ["call"]  # not retried
    assert node.breaker.status().failure_count == 0  # not counted


def test_interrupt_pauses_and_resumes_sync_node() -> None:
    """interrupt() in a sync wrapped node (run in a timeout's worker thread) pauses and resumes."""
    calls: list[str] = []
    node = create_node(_approval_impl(calls), name="approve", policy=_INTERRUPT_POLICY)
    graph = _linear(("approve", node), checkpointer=InMemorySaver())
    config: RunnableConfig = {"configurable": {"thread_id": "sync-approval"}}
    with capture_logs() as logs:
        first = graph.invoke({"query": "draft"}, config)
        _check_interrupted(first, calls, node)
        assert graph.get_state(config).next == ("approve",)
        final = graph.invoke(Command(resume="yes"), config)
    assert final["answer"] == "draft:yes"
    assert final["errors"] == []
    assert final["trail"] == ["finish"]
    assert calls == ["call", "call"]  # LangGraph re-runs the node on resume
    assert _events(logs, "node.failed") == []
    assert _events(logs, "node.retry_scheduled") == []


@pytest.mark.anyio
async def test_interrupt_pauses_and_resumes_async_node() -> None:
    """interrupt() in an async wrapped node pauses the graph; Command(resume=...) resumes it."""
    calls: list[str] = []
    node = create_node(_async_approval_impl(calls), name="approve", policy=_INTERRUPT_POLICY)
    graph = _linear(("approve", node), checkpointer=InMemorySaver())
    config: RunnableConfig = {"configurable": {"thread_id": "async-approval"}}
    with capture_logs() as logs:
        first = await graph.ainvoke({"query": "draft"}, config)
        _check_interrupted(first, calls, node)
        final = await graph.ainvoke(Command(resume="no"), config)
    assert final["answer"] == "draft:no"
    assert final["errors"] == []
    assert _events(logs, "node.failed") == []


# --- kinds and config injection ---------------------------------------------------------


def test_sync_graph_invoke_injects_config_into_sync_nodes() -> None:
    """Sync impls give sync nodes; graph.invoke hands the RunnableConfig through to the impl."""

    def with_config(state: FlowState, config: RunnableConfig) -> dict[str, Any]:
        context = current_context()
        assert context is not None
        return {
            "seen": [
                {
                    "thread": config["configurable"]["thread_id"],
                    "context_thread": context.thread_id,
                    "thread_name": threading.current_thread().name,
                }
            ]
        }

    def state_only(state: FlowState) -> dict[str, Any]:
        return {"answer": state["query"] * 2}

    first = create_node(with_config, name="with_config")
    second = create_node(state_only, name="state_only")
    assert isinstance(first, SyncNode)
    assert isinstance(second, SyncNode)
    graph = _linear(("with_config", first), ("state_only", second))
    result = graph.invoke({"query": "ab"}, {"configurable": {"thread_id": "t-42"}})
    (seen,) = result["seen"]
    assert seen["thread"] == "t-42"
    assert seen["context_thread"] == "t-42"
    assert seen["thread_name"] == threading.main_thread().name
    assert result["answer"] == "abab"
    assert result["errors"] == []


@pytest.mark.anyio
async def test_async_graph_ainvoke_injects_config_into_async_and_sync_nodes() -> None:
    """Async impls give async nodes for ainvoke; config reaches async and sync impls alike."""

    async def async_step(state: FlowState, config: RunnableConfig) -> dict[str, Any]:
        await anyio.lowlevel.checkpoint()
        context = current_context()
        assert context is not None
        return {
            "seen": [{"thread": config["configurable"]["thread_id"], "node": context.node_name}]
        }

    def sync_step(state: FlowState, config: RunnableConfig) -> dict[str, Any]:
        context = current_context()
        assert context is not None
        return {
            "seen": [{"thread": config["configurable"]["thread_id"], "node": context.node_name}]
        }

    first = create_node(async_step, name="async_step", policy=Policy.retry() | Policy.timeout(5))
    second = create_node(sync_step, name="sync_step", policy=Policy.retry())
    assert isinstance(first, AsyncNode)
    assert isinstance(second, SyncNode)
    graph = _linear(("async_step", first), ("sync_step", second))
    result = await graph.ainvoke({"query": "q"}, {"configurable": {"thread_id": "t-7"}})
    assert result["seen"] == [
        {"thread": "t-7", "node": "async_step"},
        {"thread": "t-7", "node": "sync_step"},
    ]
    assert result["errors"] == []


def test_graph_with_async_node_cannot_be_invoked_synchronously() -> None:
    """The node keeps its kind, so LangGraph refuses invoke() on an async node, as it would."""

    async def impl(state: FlowState) -> dict[str, Any]:
        return {}

    graph = _linear(("a", create_node(impl, name="a")))
    with pytest.raises(TypeError, match="No synchronous function"):
        graph.invoke({"query": "q"})


# --- execution context ------------------------------------------------------------------


def _context_recorder(name: str) -> Any:
    def record(state: FlowState) -> dict[str, Any]:
        context = current_context()
        assert context is not None
        entry = {"node": name, "trace": context.trace_id, "execution": context.graph_execution_id}
        return {"seen": [entry]}

    return record


def _two_recorders() -> Any:
    return _linear(
        ("first", create_node(_context_recorder("first"), name="first")),
        ("second", create_node(_context_recorder("second"), name="second")),
    )


def test_nodes_of_one_invocation_share_ids() -> None:
    """With a run_id per invoke, two nodes of one run share ids; the next run has new ones."""
    graph = _two_recorders()
    first_run = graph.invoke({"query": "q"}, {"run_id": uuid.uuid4()})["seen"]
    second_run = graph.invoke({"query": "q"}, {"run_id": uuid.uuid4()})["seen"]
    for run in (first_run, second_run):
        assert run[0]["trace"] == run[1]["trace"]
        assert run[0]["execution"] == run[1]["execution"]
    assert first_run[0]["trace"] != second_run[0]["trace"]
    assert first_run[0]["execution"] != second_run[0]["execution"]


def test_run_id_given_to_invoke_reaches_every_node() -> None:
    """A run_id passed to invoke becomes each node's run id and graph execution id."""
    run_id = uuid.uuid4()
    seen: list[tuple[str | None, str]] = []

    def record(state: FlowState) -> None:
        context = current_context()
        assert context is not None
        seen.append((context.run_id, context.graph_execution_id))

    graph = _linear(("a", create_node(record, name="a")), ("b", create_node(record, name="b")))
    graph.invoke({"query": "q"}, {"run_id": run_id})
    assert seen == [(str(run_id), str(run_id))] * 2


def test_without_a_run_id_each_node_call_gets_new_ids() -> None:
    """LangGraph gives nodes no invocation id of their own: without one, ids are per call."""
    seen = _two_recorders().invoke({"query": "q"})["seen"]
    assert seen[0]["trace"] != seen[1]["trace"]
    assert all(len(entry["trace"]) == 32 for entry in seen)


def test_explicit_ids_in_metadata_win() -> None:
    """Ids put in the invocation's metadata reach every node unchanged."""
    graph = _two_recorders()
    metadata = {"trace_id": "trace-from-caller", "graph_execution_id": "exec-from-caller"}
    seen = graph.invoke({"query": "q"}, {"metadata": metadata})["seen"]
    assert [entry["trace"] for entry in seen] == ["trace-from-caller"] * 2
    assert [entry["execution"] for entry in seen] == ["exec-from-caller"] * 2


# --- logs -------------------------------------------------------------------------------


def test_logs_of_a_graph_run_carry_node_and_ids() -> None:
    """started/retry_scheduled/succeeded/failed events name the node, ids, attempt, duration."""
    failures: list[Exception] = [ConnectionError("blip")]

    def flaky(state: FlowState) -> dict[str, Any]:
        if failures:
            raise failures.pop(0)
        return {"answer": "ok"}

    def broken(state: FlowState) -> dict[str, Any]:
        raise ValueError("malformed answer")

    graph = _linear(
        ("flaky", create_node(flaky, name="flaky", policy=Policy.retry(attempts=2))),
        ("broken", create_node(broken, name="broken")),
    )
    metadata = {"trace_id": "trace-logs", "graph_execution_id": "exec-logs"}
    with no_backoff(), capture_logs() as logs:
        result = graph.invoke({"query": "q"}, {"metadata": metadata})
    assert result["answer"] == "ok"
    assert [record["node"] for record in result["errors"]] == ["broken"]

    ids = {"trace_id": "trace-logs", "graph_execution_id": "exec-logs"}
    (started,) = _events(logs, "node.started", "flaky")
    assert started.items() >= {"attempt": 1, **ids}.items()
    (retry,) = _events(logs, "node.retry_scheduled", "flaky")
    assert retry.items() >= {"attempt": 1, "error_type": "ConnectionError", **ids}.items()
    assert retry["delay"] == 0
    (succeeded,) = _events(logs, "node.succeeded", "flaky")
    assert succeeded.items() >= ids.items()
    assert succeeded["duration_ms"] >= 0
    (failed,) = _events(logs, "node.failed", "broken")
    assert failed.items() >= {"error_type": "ValueError", "attempts": 1, **ids}.items()
    assert failed["duration_ms"] >= 0
    assert failed["log_level"] == "warning"
    assert _events(logs, "node.failed", "flaky") == []


# --- concurrency ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_hundred_concurrent_runs_share_one_node() -> None:
    """100 concurrent ainvoke runs through one wrapped node all finish with their own result."""
    failed_once: set[str] = set()

    async def shout(state: FlowState) -> dict[str, Any]:
        query = state["query"]
        context = current_context()
        assert context is not None
        await anyio.sleep(0.01)
        # Every tenth run hits one transient failure, retried while the others run.
        if query.endswith("0") and query not in failed_once:
            failed_once.add(query)
            raise ConnectionError("transient")
        return {"answer": query.upper(), "seen": [{"trace": context.trace_id}]}

    policy = Policy.retry(attempts=2) | Policy.breaker(failure_threshold=20) | Policy.timeout(5)
    node = create_node(shout, name="shout", policy=policy)
    graph = _linear(("shout", node))

    async def run(i: int) -> dict[str, Any]:
        config: RunnableConfig = {"metadata": {"trace_id": f"trace-{i}"}}
        result: dict[str, Any] = await graph.ainvoke({"query": f"query-{i}"}, config)
        return result

    with no_backoff():
        results = await asyncio.gather(*(run(i) for i in range(100)))
    assert len(failed_once) == 10
    for i, result in enumerate(results):
        assert result["answer"] == f"QUERY-{i}"
        assert result["seen"] == [{"trace": f"trace-{i}"}]
        assert result["errors"] == []
        assert result["trail"] == ["finish"]
    assert node.breaker is not None
    status = node.breaker.status()
    assert status.state is BreakerState.CLOSED
    assert status.failure_count == 0


# --- cancellation -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_cancel_token_in_config_stops_async_node() -> None:
    """Setting the run's cancel token mid-run records CANCELLED; the graph completes."""
    token = CancelToken()
    started = anyio.Event()

    async def long_job(state: FlowState) -> dict[str, Any]:
        started.set()
        await anyio.sleep(30)
        return {"answer": "done"}

    graph = _linear(("job", create_node(long_job, name="job", policy=Policy.llm())))
    results: list[dict[str, Any]] = []

    async def run() -> None:
        config: RunnableConfig = {"configurable": {"cancel_token": token}}
        results.append(await graph.ainvoke({"query": "q"}, config))

    with anyio.fail_after(5):
        async with anyio.create_task_group() as group:
            group.start_soon(run)
            await started.wait()
            token.cancel("user pressed stop")
    (result,) = results
    (record,) = result["errors"]
    assert record["code"] == ErrorCode.CANCELLED.value
    assert record["node"] == "job"
    assert "answer" not in result
    assert result["trail"] == ["finish"]


def test_cancel_token_in_config_stops_sync_node() -> None:
    """A sync node blocked in its impl returns CANCELLED as soon as another thread sets the token."""
    token = CancelToken()
    started = threading.Event()
    release = threading.Event()

    def long_job(state: FlowState) -> dict[str, Any]:
        started.set()
        release.wait(10)
        return {"answer": "done"}

    graph = _linear(("job", create_node(long_job, name="job")))
    canceller = threading.Thread(target=lambda: started.wait(5) and token.cancel("stop"))
    canceller.start()
    with capture_logs() as logs:
        try:
            began = time.perf_counter()
            result = graph.invoke({"query": "q"}, {"configurable": {"cancel_token": token}})
            assert time.perf_counter() - began < 5
        finally:
            release.set()  # let the abandoned worker thread finish
            canceller.join(5)
        deadline = time.monotonic() + 5
        while not _events(logs, "node.abandoned_thread_finished") and time.monotonic() < deadline:
            time.sleep(0.005)
    (record,) = result["errors"]
    assert record["code"] == ErrorCode.CANCELLED.value
    assert "answer" not in result
    assert _events(logs, "node.abandoned_thread_finished", "job")


# --- stacking with LangGraph's own retry ------------------------------------------------


def test_langgraph_retry_policy_multiplies_our_attempts() -> None:
    """A LangGraph RetryPolicy around a retrying node repeats all its attempts: 2 x 3 = 6 calls."""
    calls = 0

    def always_down(state: FlowState) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    node = create_node(always_down, name="down", policy=Policy.retry(attempts=3), on_error="raise")
    builder = StateGraph(FlowState)
    builder.add_node(
        "down",
        node,
        retry_policy=RetryPolicy(
            max_attempts=2, initial_interval=0, jitter=False, retry_on=NodeRetryExhaustedError
        ),
    )
    builder.add_edge(START, "down")
    builder.add_edge("down", END)
    graph = builder.compile()
    with no_backoff(), pytest.raises(NodeRetryExhaustedError) as caught:
        graph.invoke({"query": "q"})
    assert calls == 6
    assert caught.value.attempts == 3
