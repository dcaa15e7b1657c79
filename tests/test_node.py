"""The node factory: context, logging, error capture, kinds, and the node contract."""

from __future__ import annotations

import inspect
import operator
import pickle
from typing import Annotated, Any, TypedDict

import anyio
import anyio.lowlevel
import pytest
from structlog.testing import capture_logs

from resilient_nodes import (
    ConfigError,
    ErrorCode,
    NodeCancellationError,
    Policy,
    create_llm_node,
    create_node,
    create_simple_node,
    create_tool_node,
    current_context,
)
from resilient_nodes._context import PendingContext
from resilient_nodes._node import AsyncNode, SyncNode, _NodeCall
from resilient_nodes._tokens import CancelToken
from resilient_nodes.testing import no_backoff


def test_sync_impl_gives_sync_node() -> None:
    """A sync impl yields a sync node whose call returns the update."""
    node = create_node(lambda state: {"y": state["x"] + 1}, name="inc")
    assert isinstance(node, SyncNode)
    assert not inspect.iscoroutinefunction(node.__call__)
    assert node({"x": 1}) == {"y": 2}


@pytest.mark.anyio
async def test_async_impl_gives_async_node() -> None:
    """An async impl yields an async node."""

    async def impl(state: dict[str, int]) -> dict[str, int]:
        await anyio.lowlevel.checkpoint()
        return {"y": state["x"] * 2}

    node = create_node(impl, name="double")
    assert isinstance(node, AsyncNode)
    assert inspect.iscoroutinefunction(type(node).__call__)
    assert await node({"x": 4}) == {"y": 8}


def test_node_presents_the_impls_signature_and_hints() -> None:
    """inspect.signature and get_type_hints see the impl's parameters and hints."""
    import typing

    def impl(state: dict[str, int], config: dict[str, Any], *, store: Any = None) -> None:
        return None

    node = create_node(impl, name="n")
    assert inspect.signature(node) == inspect.signature(impl)
    assert typing.get_type_hints(node.__call__) == {}
    assert typing.get_type_hints(node) == typing.get_type_hints(impl)
    assert node.__wrapped__ is impl
    assert node.__name__ == "n"


def test_node_leads_subgraph_discovery_where_the_impl_would() -> None:
    """LangGraph follows one ``__wrapped__``: the node's is the impl's own, if it has one."""
    import functools

    def inner(state: dict[str, Any]) -> dict[str, Any]:
        return state

    @functools.wraps(inner)
    def decorated(state: dict[str, Any]) -> dict[str, Any]:
        return inner(state)

    node = create_node(decorated, name="n")
    assert node.__wrapped__ is inner
    assert inspect.signature(node) == inspect.signature(decorated)


def test_impl_may_take_config() -> None:
    """An impl with (state, config) receives the config; (state) does not."""
    seen: list[Any] = []

    def with_config(state: dict[str, Any], config: dict[str, Any]) -> None:
        seen.append(config)

    create_node(with_config, name="a")({}, {"configurable": {"k": 1}})
    assert seen == [{"configurable": {"k": 1}}]
    create_node(lambda state: seen.append("no config"), name="b")({}, config={"configurable": {}})
    assert seen[-1] == "no config"


def test_current_context_inside_impl() -> None:
    """current_context() in the impl names the node and carries ids from the config."""
    seen = []

    def impl(state: dict[str, Any]) -> None:
        seen.append(current_context())

    node = create_node(impl, name="ctx")
    node(
        {},
        config={
            "metadata": {"trace_id": "t" * 32, "graph_execution_id": "g-1"},
            "configurable": {"thread_id": "th"},
        },
    )
    (context,) = seen
    assert context.node_name == "ctx"
    assert context.trace_id == "t" * 32
    assert context.graph_execution_id == "g-1"
    assert context.thread_id == "th"
    assert context.attempt == 1
    assert current_context() is None


def test_attempt_number_advances_with_retries() -> None:
    """The context's attempt number is the attempt being run."""
    attempts: list[int] = []

    def impl(state: dict[str, Any]) -> dict[str, Any]:
        context = current_context()
        assert context is not None
        attempts.append(context.attempt)
        if len(attempts) < 3:
            raise ConnectionError("down")
        return {}

    with no_backoff():
        create_node(impl, name="n", policy=Policy.retry(attempts=3))({})
    assert attempts == [1, 2, 3]


def test_error_is_captured_into_state() -> None:
    """A failure surviving the policy becomes {'errors': [record]}."""

    def impl(state: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("bad input for story")

    update = create_node(impl, name="check")({"story_id": "s-1"})
    (record,) = update["errors"]
    assert record["node"] == "check"
    assert record["code"] == ErrorCode.VALIDATION_FAILED.value
    assert record["category"] == "validation"
    assert record["message"] == "bad input for story"
    assert record["attempts"] == 1
    assert record["retryable"] is False
    assert "ValueError" in record["traceback"]


def test_exhausted_retries_record_attempts() -> None:
    """The record says how many attempts were made."""

    def impl(state: dict[str, Any]) -> dict[str, Any]:
        raise ConnectionError("still down")

    with no_backoff():
        update = create_node(impl, name="n", policy=Policy.retry(attempts=4))({})
    (record,) = update["errors"]
    assert record["code"] == ErrorCode.RETRY_EXHAUSTED.value
    assert record["attempts"] == 4


@pytest.mark.parametrize("fails_on", [1, 2])
def test_a_retry_inside_the_impl_is_not_an_attempt_of_the_node(fails_on: int) -> None:
    """Only the node's own retry layer counts attempts, on its first attempt too."""
    calls = {"inner": 0, "node": 0}

    def flaky() -> None:
        calls["inner"] += 1
        if calls["inner"] % 3:
            raise ConnectionError("inner blip")

    inner = Policy.retry(attempts=3).wrap(flaky, name="inner_call")

    def impl(state: dict[str, Any]) -> dict[str, Any]:
        calls["node"] += 1
        inner()  # three tries of its own
        if calls["node"] == fails_on:
            raise ValueError("bad output")
        raise ConnectionError("node blip")

    with no_backoff():
        update = create_node(impl, name="outer", policy=Policy.retry(attempts=3))({})
    (record,) = update["errors"]
    assert record["attempts"] == fails_on


@pytest.mark.anyio
async def test_a_total_timeout_logs_the_attempt_it_cut_short() -> None:
    """timeout | retry: node.timed_out names the attempt that was running, like the record."""
    calls = {"n": 0}

    async def impl(state: dict[str, Any]) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError("blip")
        await anyio.sleep(10)
        return {}

    seen: list[int] = []

    def on_timeout() -> None:
        context = current_context()
        assert context is not None
        seen.append(context.attempt)

    policy = Policy.timeout(0.05, on_timeout=on_timeout) | Policy.retry(attempts=3)
    node = create_node(impl, name="slow", policy=policy)
    with no_backoff(), capture_logs() as logs:
        update = await node({})
    (timed_out,) = [e for e in logs if e["event"] == "node.timed_out"]
    assert timed_out["attempt"] == 3
    assert seen == [3]  # current_context() outside the retry layer, too
    assert update["errors"][0]["attempts"] == 3


def test_capture_off_propagates_the_original() -> None:
    """With on_error="raise" the original exception propagates unchanged."""
    boom = RuntimeError("boom")

    def impl(state: dict[str, Any]) -> dict[str, Any]:
        raise boom

    with pytest.raises(RuntimeError) as caught:
        create_node(impl, name="n", on_error="raise")({})
    assert caught.value is boom


@pytest.mark.parametrize("value", ["a string", 42, ["x"], object()])
def test_any_result_passes_through_for_langgraph_to_judge(value: object) -> None:
    """What the impl returns is returned as is: a root channel takes any value."""
    assert create_node(lambda state: value, name="shape", on_error="raise")({}) is value


def test_none_and_command_results_are_updates() -> None:
    """None (no update) and LangGraph Command objects pass through."""
    from langgraph.types import Command

    assert create_node(lambda state: None, name="n")({}) is None
    command = Command(goto="next", update={"x": 1})
    assert create_node(lambda state: command, name="c")({}) is command


def test_keyboard_interrupt_passes_through() -> None:
    """KeyboardInterrupt is never captured."""

    def impl(state: dict[str, Any]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        create_node(impl, name="n", policy=Policy.llm())({})


def test_graph_bubble_up_passes_through() -> None:
    """LangGraph's GraphInterrupt (an Exception) is never captured or retried."""
    from langgraph.errors import GraphInterrupt

    calls = 0

    def impl(state: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        raise GraphInterrupt(())

    with pytest.raises(GraphInterrupt):
        create_node(impl, name="n", policy=Policy.llm())({})
    assert calls == 1


@pytest.mark.anyio
async def test_outer_cancellation_passes_through_async_node() -> None:
    """The backend's cancellation is not captured into state."""
    started = anyio.Event()

    async def impl(state: dict[str, Any]) -> dict[str, Any]:
        started.set()
        await anyio.sleep(10)
        return {}

    node = create_node(impl, name="n", policy=Policy.llm() | Policy.timeout(30))
    result: list[Any] = []
    async with anyio.create_task_group() as tg:

        async def run() -> None:
            result.append(await node({}))

        tg.start_soon(run)
        await started.wait()
        tg.cancel_scope.cancel()
    assert result == []


@pytest.mark.anyio
async def test_cancel_token_in_config_cancels_the_node() -> None:
    """A cancel token in config['configurable'] stops the node with CANCELLED."""
    token = CancelToken()
    started = anyio.Event()

    async def impl(state: dict[str, Any]) -> dict[str, Any]:
        started.set()
        await anyio.sleep(10)
        return {}

    node = create_node(impl, name="n", policy=Policy.llm())

    async with anyio.create_task_group() as tg:
        results: list[Any] = []

        async def run() -> None:
            results.append(await node({}, config={"configurable": {"cancel_token": token}}))

        tg.start_soon(run)
        await started.wait()
        token.cancel("user pressed stop")
    (update,) = results
    (record,) = update["errors"]
    assert record["code"] == ErrorCode.CANCELLED.value


def test_cancel_token_already_set_sync_node() -> None:
    """A sync node with a set token does not run its impl and reports CANCELLED."""
    token = CancelToken()
    token.cancel("stop")
    calls = 0

    def impl(state: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {}

    update = create_node(impl, name="n")({}, config={"configurable": {"cancel_token": token}})
    assert calls == 0
    assert update["errors"][0]["code"] == ErrorCode.CANCELLED.value
    with pytest.raises(NodeCancellationError):
        create_node(impl, name="n", on_error="raise")(
            {}, config={"configurable": {"cancel_token": token}}
        )


def test_logs_started_succeeded_with_ids() -> None:
    """node.started / node.succeeded carry node, ids, story_id and duration."""
    node = create_node(lambda state: {}, name="logged")
    with capture_logs() as logs:
        node({"story_id": "s-9"}, config={"metadata": {"trace_id": "abc"}})
    events = {entry["event"]: entry for entry in logs}
    assert set(events) >= {"node.started", "node.succeeded"}
    succeeded = events["node.succeeded"]
    assert succeeded["node"] == "logged"
    assert succeeded["trace_id"] == "abc"
    assert succeeded["story_id"] == "s-9"
    assert succeeded["duration_ms"] >= 0
    assert "graph_execution_id" in succeeded


def test_logs_failed() -> None:
    """node.failed carries the error type and attempts."""

    def impl(state: dict[str, Any]) -> None:
        raise ValueError("nope")

    with capture_logs() as logs:
        create_node(impl, name="f")({})
    (failed,) = [entry for entry in logs if entry["event"] == "node.failed"]
    assert failed["error_type"] == "ValueError"
    assert failed["attempts"] == 1
    assert failed["log_level"] == "warning"


def test_bad_arguments_are_config_errors() -> None:
    """A non-callable impl, an empty name or a non-Policy policy is refused at once."""
    with pytest.raises(ConfigError, match=r"nodes\.x\.impl: must be callable"):
        create_node(3, name="x")  # type: ignore[call-overload]
    with pytest.raises(ConfigError, match="name: must be a non-empty string"):
        create_node(lambda s: None, name="")
    with pytest.raises(ConfigError, match="must be a Policy"):
        create_node(lambda s: None, name="p", policy="llm")  # type: ignore[arg-type]


def test_preset_factories() -> None:
    """create_simple/llm/tool_node use the preset policies."""
    assert create_simple_node(lambda s: None, name="a").policy == Policy.none()
    assert create_llm_node(lambda s: None, name="b").policy == Policy.llm()
    assert create_tool_node(lambda s: None, name="c", timeout=5, breaker=True).policy == (
        Policy.tool() | Policy.breaker() | Policy.timeout(5)
    )


def test_breaker_is_per_node_and_named_after_it() -> None:
    """Each node owns one breaker, named after the node, shared by all its calls."""
    node = create_node(lambda s: {}, name="plan", policy=Policy.breaker(failure_threshold=2))
    assert node.breaker is not None
    assert node.breaker.name == "plan"
    other = create_node(lambda s: {}, name="plan2", policy=Policy.breaker())
    assert other.breaker is not node.breaker
    assert create_node(lambda s: {}, name="x").breaker is None


def test_repr_names_node_and_policy() -> None:
    """repr(node) shows its kind, name and policy."""
    node = create_node(lambda s: {}, name="plan", policy=Policy.llm())
    assert repr(node) == "<sync node 'plan': Policy.llm()>"


def test_error_records_pickle() -> None:
    """Captured records are plain data (checkpointers pickle or JSON them)."""

    def impl(state: dict[str, Any]) -> None:
        raise TimeoutError("slow")

    update = create_node(impl, name="n")({})
    assert pickle.loads(pickle.dumps(update)) == update


def test_record_counts_attempts_when_the_last_error_is_not_retryable() -> None:
    """A retryable failure then a non-retryable one records 2 attempts."""
    errors: list[Exception] = [ConnectionError("blip"), ValueError("bad answer")]

    def impl(state: dict[str, Any]) -> dict[str, Any]:
        raise errors.pop(0)

    with no_backoff():
        update = create_node(impl, name="n", policy=Policy.retry(attempts=5))({})
    (record,) = update["errors"]
    assert record["attempts"] == 2
    assert record["code"] == ErrorCode.VALIDATION_FAILED.value


def test_a_failing_logger_does_not_change_the_outcome() -> None:
    """A structlog processor that raises neither fails a good call nor crashes a bad one."""
    import structlog

    def broken(logger: object, method: str, event: dict[str, Any]) -> dict[str, Any]:
        raise BrokenPipeError("stdout closed")

    def bad(state: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("nope")

    structlog.configure(processors=[broken])
    try:
        assert create_node(lambda state: {"ok": True}, name="good")({}) == {"ok": True}
        update = create_node(bad, name="bad")({})
    finally:
        structlog.reset_defaults()
    assert update["errors"][0]["message"] == "nope"


def test_context_is_built_once_per_call() -> None:
    """current_context() returns the same object every time within one call."""
    seen: list[object] = []

    def impl(state: dict[str, Any]) -> None:
        seen.extend([current_context(), current_context()])

    create_node(impl, name="n")({})
    assert seen[0] is seen[1]
    assert seen[0] is not None


def test_config_goes_only_to_a_parameter_named_config_or_a_required_second() -> None:
    """Keyword-only config works, and a defaulted second parameter keeps its default."""

    def keyword_only(
        state: dict[str, Any], *, config: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return {"got": config}

    def own_option(state: dict[str, Any], limit: int = 10) -> dict[str, Any]:
        return {"limit": limit}

    config = {"configurable": {"k": 1}}
    assert create_node(keyword_only, name="kw", on_error="raise")({}, config=config) == {
        "got": config
    }
    assert create_node(own_option, name="opt", on_error="raise")({}, config=config) == {"limit": 10}


def test_a_state_whose_story_id_raises_is_handled_and_leaves_no_context() -> None:
    """Reading story_id for the logs never fails the node nor leaks its context."""

    class LazyState:
        @property
        def story_id(self) -> str:
            raise RuntimeError("lazy field failed")

    assert create_node(lambda state: {"ok": 1}, name="lazy")(LazyState()) == {"ok": 1}
    assert current_context() is None


def test_a_coroutine_from_a_sync_impl_is_closed_and_reported() -> None:
    """A lambda around an async function gives a clear error, not a never-awaited warning."""

    async def fetch(state: dict[str, Any]) -> dict[str, Any]:
        return {}

    update = create_node(lambda state: fetch(state), name="lam")({})  # noqa: PLW0108 - the mistake under test
    (record,) = update["errors"]
    assert record["code"] == ErrorCode.VALIDATION_FAILED.value
    assert "coroutine" in record["message"]


def test_node_call_sets_every_field_of_a_pending_context() -> None:
    """_NodeCall fills PendingContext's slots itself (no super().__init__): none forgotten."""
    call = _NodeCall("n", {"configurable": {}}, "story-1")
    try:
        for name in PendingContext.__slots__:
            assert hasattr(call, name), name
        assert call.resolve().node_name == "n"
        assert call.attempt == 1
    finally:
        call.close()


@pytest.mark.anyio
async def test_a_runnable_node_has_both_paths_and_one_breaker(anyio_backend_name: str) -> None:
    """create_node(runnable): invoke and ainvoke run it, one breaker counts both."""
    if anyio_backend_name != "asyncio":
        pytest.skip("langchain_core's ainvoke needs asyncio")
    from langchain_core.runnables import RunnableLambda

    def boom(state: dict[str, Any]) -> dict[str, Any]:
        raise ConnectionError("down")

    node = create_node(
        RunnableLambda(boom, name="boom"),
        name="remote",
        policy=Policy.breaker(failure_threshold=2),
        on_error="raise",
    )
    assert node.name == "remote"
    assert node.policy == Policy.breaker(failure_threshold=2)
    assert repr(node) == "<runnable node 'remote': Policy.breaker(failure_threshold=2)>"
    with pytest.raises(ConnectionError):
        node.invoke({})
    with pytest.raises(ConnectionError):
        await node.ainvoke({})
    assert node.breaker is not None
    assert node.breaker.status().state == "open"


def test_a_non_runnable_keeps_the_config_error() -> None:
    """Something neither callable nor a Runnable is still a ConfigError naming the node."""
    with pytest.raises(ConfigError, match=r"nodes\.n\.impl"):
        create_node(3, name="n")  # type: ignore[call-overload]


class WithoutErrors(TypedDict):
    """A state type with no ``errors`` key (like LangGraph's ``MessagesState``)."""

    text: str


class WithErrors(TypedDict, total=False):
    """A state type with an ``errors`` key."""

    text: str
    errors: Annotated[list[Any], operator.add]


def _boom(state: Any) -> Any:
    raise ValueError("boom")


def test_on_error_must_be_capture_raise_or_callable() -> None:
    """A misspelt on_error is a ConfigError naming the node's on_error."""
    with pytest.raises(ConfigError, match=r"nodes\.n\.on_error"):
        create_node(_boom, name="n", on_error="ignore")  # type: ignore[call-overload]


def test_capture_errors_still_works_with_a_deprecation_warning() -> None:
    """capture_errors=True/False map to on_error capture/raise, with a warning."""
    with pytest.warns(DeprecationWarning, match='on_error="capture"'):
        captured = create_node(_boom, name="n", capture_errors=True)
    assert captured.on_error == "capture"
    assert captured({})["errors"][0]["error_type"] == "ValueError"
    with pytest.warns(DeprecationWarning, match="capture_errors"):
        raising = create_simple_node(_boom, name="n", capture_errors=False)
    assert raising.on_error == "raise"
    with pytest.raises(ValueError, match="boom"):
        raising({})
    with pytest.warns(DeprecationWarning, match="node.on_error"):
        assert raising.capture_errors is False
    with (
        pytest.warns(DeprecationWarning, match="capture_errors"),
        pytest.raises(ConfigError, match="not both"),
    ):
        create_node(_boom, name="n", on_error="raise", capture_errors=True)


def test_capture_raises_when_the_state_type_has_no_errors_key() -> None:
    """A failure LangGraph would drop (no ``errors`` key in the state type) is raised."""

    def without(state: WithoutErrors) -> None:
        raise ValueError("nowhere to put it")

    def with_errors(state: WithErrors) -> None:
        raise ValueError("recorded")

    with capture_logs() as logs, pytest.raises(ValueError, match="nowhere"):
        create_node(without, name="n")({"text": ""})
    assert logs[-1]["captured"] is False
    assert create_node(with_errors, name="m")({"text": ""})["errors"][0]["node"] == "m"


def test_a_callable_on_error_gets_the_record_and_the_state() -> None:
    """on_error=callable returns what the handler makes of (record, state)."""
    seen: list[Any] = []

    def handler(record: Any, state: Any) -> dict[str, Any]:
        seen.append((record["error_type"], record["node"], state))
        return {"fallback": True}

    assert create_node(_boom, name="n", on_error=handler)({"x": 1}) == {"fallback": True}
    assert seen == [("ValueError", "n", {"x": 1})]


@pytest.mark.anyio
async def test_an_async_on_error_handler_is_awaited() -> None:
    """An async node awaits an async handler."""

    async def boom(state: Any) -> Any:
        raise ValueError("boom")

    async def handler(record: Any, state: Any) -> dict[str, Any]:
        await anyio.lowlevel.checkpoint()
        return {"code": record["code"]}

    assert await create_node(boom, name="n", on_error=handler)({}) == {"code": "VALIDATION_FAILED"}


def test_a_failing_handler_propagates_its_own_error() -> None:
    """The handler's own error is not swallowed."""

    def handler(record: Any, state: Any) -> Any:
        raise KeyError("handler broke")

    with pytest.raises(KeyError, match="handler broke"):
        create_node(_boom, name="n", on_error=handler)({})


def test_an_abandoned_attempt_cannot_write_state_or_stream_through_its_config() -> None:
    """The task's send function and stream writer, as an attempt sees them, are gated.

    LangGraph keeps them in the config (``__pregel_send``, the runtime's
    ``stream_writer``): once its attempt is abandoned, a thread's writes go nowhere.
    """
    import dataclasses
    import threading

    from resilient_nodes import _langgraph

    @dataclasses.dataclass
    class FakeRuntime:
        stream_writer: Any

    sent: list[Any] = []
    streamed: list[Any] = []
    config = {
        "configurable": {
            "__pregel_send": sent.extend,
            "__pregel_runtime": FakeRuntime(streamed.append),
        }
    }
    second = threading.Event()
    done = threading.Event()
    seen: dict[int, Any] = {}

    def impl(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
        attempt = current_context().attempt  # type: ignore[union-attr]
        if attempt == 1:
            second.wait(5)
            seen[1] = (current_context().attempt, config)  # type: ignore[union-attr]
            config["configurable"]["__pregel_send"]([("x", "late")])
            config["configurable"]["__pregel_runtime"].stream_writer("late chunk")
            done.set()
            return {}
        second.set()
        done.wait(5)
        config["configurable"]["__pregel_send"]([("x", "live")])
        config["configurable"]["__pregel_runtime"].stream_writer("live chunk")
        return {"ok": True}

    policy = Policy.retry(attempts=2, retry_on=lambda error: True) | Policy.timeout(0.05)
    node = create_node(impl, name="n", policy=policy, on_error="raise")
    with no_backoff():
        assert node({}, config) == {"ok": True}
    assert seen[1][0] == 1
    assert sent == [("x", "live")]
    assert streamed == ["live chunk"]
    del _langgraph


def test_the_impls_own_attributes_read_through_the_node() -> None:
    """A callable object's state is visible on the node; the node's own names win."""

    class Counter:
        name = "impl's name"

        def __init__(self) -> None:
            self.ticks = 0

        def __call__(self, state: dict[str, Any]) -> dict[str, Any]:
            self.ticks += 1
            return {}

    node = create_node(Counter(), name="count")
    node({})
    assert node.ticks == 1
    assert node.name == "count"
    with pytest.raises(AttributeError):
        _ = node.__func__
    with pytest.raises(AttributeError):
        _ = node.missing
