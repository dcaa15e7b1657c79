"""Tests for resilient_nodes._retry: backoff maths, the retry loop, its edges."""

from __future__ import annotations

import functools
import inspect
import math
import random
import time
from typing import Any

import anyio
import pytest
import structlog
import tenacity
import trio
import trio.testing
from hypothesis import example, given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from resilient_nodes._config import RetryConfig
from resilient_nodes._context import ExecutionContext, current_context, use_context
from resilient_nodes._deadline import sync_deadline_scope
from resilient_nodes._logging import LogEvent
from resilient_nodes._retry import (
    BackoffWait,
    DeadlineStop,
    RetryPredicate,
    _CallState,
    create_retry_wrapper,
    retry_delay,
    with_retry,
    would_retry,
    wrap_retry,
)
from resilient_nodes.errors import ConfigError, NodeRetryExhaustedError
from resilient_nodes.testing import record_sleeps

FAST = RetryConfig(attempts=3, backoff=0, max_backoff=0, jitter=0)
EXACT = RetryConfig(attempts=5, backoff=1, multiplier=2, max_backoff=5, jitter=0)

# Recognised by name and module, as LangGraph's real class would be.
GraphBubbleUp = type("GraphBubbleUp", (Exception,), {"__module__": "langgraph.errors"})


class Script:
    """A node body that raises (or returns) the scripted items in order."""

    def __init__(self, *items: object) -> None:
        self.items = list(items)
        self.calls = 0
        self.seen_attempts: list[int | None] = []

    def step(self) -> object:
        self.calls += 1
        ctx = current_context()
        self.seen_attempts.append(None if ctx is None else ctx.attempt)
        item = self.items.pop(0) if len(self.items) > 1 else self.items[0]
        if isinstance(item, BaseException):
            raise item
        return item


def make(kind: str, *items: object) -> tuple[Any, Script]:
    """A sync or async function following the script."""
    script = Script(*items)
    if kind == "sync":

        def body(*_args: object, **_kwargs: object) -> object:
            return script.step()

        return body, script

    async def abody(*_args: object, **_kwargs: object) -> object:
        await anyio.lowlevel.checkpoint()
        return script.step()

    return abody, script


async def invoke(fn: Any, *args: object, **kwargs: object) -> Any:
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


class Calls:
    """A recording on_retry callback."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **fields: Any) -> None:
        self.calls.append(fields)


# --- retry_delay: the maths ------------------------------------------------------------


def test_delay_grows_exponentially_and_is_capped():
    """Without jitter the schedule is backoff * multiplier**(n-1), capped."""
    assert [retry_delay(n, EXACT) for n in range(1, 7)] == [1, 2, 4, 5, 5, 5]


def test_delay_jitter_uses_injected_random_sources():
    """A Random instance or a zero-arg callable supplies the jitter draw."""
    config = RetryConfig(backoff=2, multiplier=2, max_backoff=30, jitter=0.25)
    assert retry_delay(1, config, rng=lambda: 0.5) == pytest.approx(2.25)
    seeded = random.Random(7)
    expected = 4 * (1 + random.Random(7).random() * 0.25)
    assert retry_delay(2, config, rng=seeded) == pytest.approx(expected)


def test_delay_does_not_overflow_for_huge_attempts():
    """A huge attempt number saturates at the cap instead of raising OverflowError."""
    config = RetryConfig(backoff=1, multiplier=100, max_backoff=30, jitter=0)
    assert retry_delay(10_000, config) == 30
    zero = RetryConfig(backoff=0, multiplier=100, max_backoff=0, jitter=0.5)
    assert retry_delay(10_000, zero) == 0


def test_delay_rejects_bad_attempt_and_bad_rng():
    """Attempt numbers start at 1 and the random source must stay in [0, 1]."""
    with pytest.raises(ValueError, match="attempt"):
        retry_delay(0, EXACT)
    with pytest.raises(ValueError, match="rng"):
        retry_delay(1, RetryConfig(jitter=0.5), rng=lambda: 1.5)


def test_delay_retry_after_raises_and_is_capped():
    """Retry-After lifts the delay, but never above max_retry_after."""
    config = RetryConfig(backoff=1, jitter=0, max_retry_after=10)
    assert retry_delay(1, config, retry_after=4) == 4
    assert retry_delay(1, config, retry_after=500) == 10
    assert retry_delay(1, config, retry_after=0.5) == 1
    assert retry_delay(1, config, retry_after=-3) == 1


def _oracle_base(attempt: int, backoff: float, multiplier: float, cap: float) -> float:
    """Capped exponential by repeated multiplication (independent of pow).

    Computed 2**600 times larger (scaling by a power of two is exact), so that a
    subnormal backoff such as 5e-324, with a single bit of precision, is not
    rounded at every step: over a hundred steps that drifts by tens of percent.
    """
    scale = 600
    value, scaled_cap = math.ldexp(backoff, scale), math.ldexp(cap, scale)
    for _ in range(attempt - 1):
        if value >= scaled_cap:
            break
        value *= multiplier
    return math.ldexp(min(value, scaled_cap), -scale)


configs = st.builds(
    lambda backoff, extra, multiplier, jitter, max_retry_after: RetryConfig(
        backoff=backoff,
        max_backoff=backoff + extra,
        multiplier=multiplier,
        jitter=jitter,
        max_retry_after=max_retry_after,
    ),
    st.floats(0, 100),
    st.floats(0, 1000),
    st.floats(1, 100),
    st.floats(0, 1),
    st.floats(0, 600),
)


@given(configs, st.integers(1, 3000), st.floats(0, 1, exclude_max=True))
# Found by Hypothesis: a subnormal backoff grown past 1e-300 (the oracle drifted).
@example(RetryConfig(backoff=5e-324, max_backoff=1.0, multiplier=1.5, jitter=0.0), 137, 0.0)
def test_property_delay_within_jitter_band(config: RetryConfig, attempt: int, u: float):
    """Every delay lies in [base, base * (1 + jitter)] of the capped exponential."""
    base = _oracle_base(attempt, config.backoff, config.multiplier, config.max_backoff)
    delay = retry_delay(attempt, config, rng=lambda: u)
    assert delay >= 0
    # The absolute slack covers subnormal backoffs (5e-324), where one rounding
    # step is larger than any relative tolerance.
    tiny = 1e-300
    assert base * (1 - 1e-9) - tiny <= delay <= base * (1 + config.jitter) * (1 + 1e-9) + tiny
    assert delay <= config.max_backoff * (1 + config.jitter) * (1 + 1e-12) + tiny


@given(configs, st.integers(1, 3000), st.floats(0, 1, exclude_max=True), st.floats(0, 10_000))
def test_property_retry_after_respected_and_capped(
    config: RetryConfig, attempt: int, u: float, retry_after: float
):
    """Retry-After is a floor up to max_retry_after; it is the only way above the cap."""
    plain = retry_delay(attempt, config, rng=lambda: u)
    delay = retry_delay(attempt, config, rng=lambda: u, retry_after=retry_after)
    floor = min(retry_after, config.max_retry_after)
    assert delay >= 0
    assert delay >= floor
    assert delay == max(plain, floor)
    if delay > config.max_backoff * (1 + config.jitter) * (1 + 1e-12):
        assert delay == floor


# --- the strategies as tenacity strategies -------------------------------------------


def test_strategies_plug_into_tenacity_retrying():
    """Our predicate and wait drive a plain tenacity.Retrying as well as our loop."""
    config = RetryConfig(attempts=4, backoff=1, multiplier=3, max_backoff=100, jitter=0)
    slept: list[float] = []
    script = Script(ConnectionError("a"), ConnectionError("b"), ValueError("stop"))
    retrying = tenacity.Retrying(
        retry=RetryPredicate(config),
        wait=BackoffWait(config),
        stop=tenacity.stop_after_attempt(4),
        sleep=slept.append,
    )
    with pytest.raises(ValueError, match="stop"):
        retrying(script.step)
    assert slept == [1, 3]
    assert script.calls == 3


def test_predicate_never_passes_control_flow_to_retry_on():
    """tenacity never retries control flow through our predicate, even with retry_on=BaseException."""
    config = RetryConfig(retry_on=BaseException)
    predicate = RetryPredicate(config)
    state = tenacity.RetryCallState(None, None, (), {})  # type: ignore[arg-type]
    state.set_exception((KeyboardInterrupt, KeyboardInterrupt(), None))
    assert predicate(state) is False
    seen: list[BaseException] = []
    judging = RetryPredicate(RetryConfig(retry_on=lambda e: seen.append(e) or True))
    state.set_exception((GraphBubbleUp, GraphBubbleUp("interrupt"), None))
    assert judging(state) is False
    assert seen == []
    state.set_result(1)
    assert predicate(state) is False
    assert BackoffWait(RetryConfig(jitter=0))(state) == 1.0


def test_call_state_builds_tenacity_outcome_on_demand():
    """Our cheap call state still offers tenacity's Future to strategies that want it."""
    state = _CallState(print, (), {})
    assert state.outcome is None
    error = ConnectionError("x")
    state.fail(error)
    assert state.outcome is not None
    assert state.outcome.exception() is error
    assert state.outcome.failed
    state.prepare_for_next_attempt()
    assert state.outcome is None
    assert state.attempt_number == 2


def test_deadline_stop_compares_upcoming_sleep():
    """DeadlineStop fires when the upcoming sleep reaches the remaining budget."""
    state = _CallState(print, (), {})
    state.upcoming_sleep = 2.0
    assert DeadlineStop(lambda: 2.0)(state) is True
    assert DeadlineStop(lambda: 2.5)(state) is False
    assert DeadlineStop(lambda: math.inf)(state) is False


# --- the loop: outcomes --------------------------------------------------------------


@pytest.mark.anyio
async def test_retries_then_succeeds(kind: str):
    """Retryable failures are retried until the function succeeds."""
    fn, script = make(kind, ConnectionError("1"), TimeoutError("2"), "ok")
    assert await invoke(wrap_retry(fn, FAST, name="n"), 1) == "ok"
    assert script.calls == 3


@pytest.mark.anyio
async def test_exhaustion_wraps_last_error(kind: str):
    """When attempts run out the error says how many and chains the last error."""
    errors = [ConnectionError(f"e{i}") for i in range(3)]
    fn, script = make(kind, *errors)
    with pytest.raises(NodeRetryExhaustedError) as caught:
        await invoke(wrap_retry(fn, FAST, name="fetch"))
    assert caught.value.attempts == 3
    assert caught.value.last_error is errors[2]
    assert caught.value.__cause__ is errors[2]
    assert caught.value.node == "fetch"
    assert "fetch" in str(caught.value)
    assert script.calls == 3


@pytest.mark.anyio
async def test_single_attempt_config_exhausts_at_once(kind: str):
    """attempts=1 makes one call and reports a retryable failure as exhausted."""
    fn, script = make(kind, ConnectionError("x"))
    config = RetryConfig(attempts=1, backoff=0, max_backoff=0)
    with pytest.raises(NodeRetryExhaustedError) as caught:
        await invoke(wrap_retry(fn, config, name="n"))
    assert caught.value.attempts == 1
    assert script.calls == 1


@pytest.mark.anyio
async def test_non_retryable_raised_as_itself_at_once(kind: str):
    """A non-retryable error is raised unwrapped after one call."""
    error = ValueError("bad input")
    fn, script = make(kind, error)
    on_retry = Calls()
    config = RetryConfig(attempts=3, backoff=0, max_backoff=0, on_retry=on_retry)
    with pytest.raises(ValueError, match="bad input") as caught:
        await invoke(wrap_retry(fn, config, name="n"))
    assert caught.value is error
    assert script.calls == 1
    assert on_retry.calls == []


@pytest.mark.anyio
async def test_non_retryable_after_a_retry_is_not_chained_to_earlier_error(kind: str):
    """A later non-retryable error is raised as itself, without the earlier failure as context."""
    error = KeyError("missing")
    fn, script = make(kind, ConnectionError("flaky"), error)
    with pytest.raises(KeyError) as caught:
        await invoke(wrap_retry(fn, FAST, name="n"))
    assert caught.value is error
    assert caught.value.__context__ is None
    assert script.calls == 2


@pytest.mark.anyio
async def test_retry_on_types_replace_classification(kind: str):
    """retry_on types decide: a KeyError is retried, a ConnectionError is not."""
    config = RetryConfig(attempts=3, backoff=0, max_backoff=0, retry_on=(KeyError,))
    fn, script = make(kind, KeyError("k"), "ok")
    assert await invoke(wrap_retry(fn, config, name="n")) == "ok"
    assert script.calls == 2
    fn, script = make(kind, ConnectionError("c"))
    with pytest.raises(ConnectionError):
        await invoke(wrap_retry(fn, config, name="n"))
    assert script.calls == 1


@pytest.mark.anyio
async def test_retry_on_predicate_decides(kind: str):
    """A retry_on predicate sees the error and decides."""
    seen: list[BaseException] = []

    def predicate(error: Exception) -> bool:
        seen.append(error)
        return "again" in str(error)

    config = RetryConfig(attempts=5, backoff=0, max_backoff=0, retry_on=predicate)
    fn, script = make(kind, RuntimeError("again"), RuntimeError("final"))
    with pytest.raises(RuntimeError, match="final"):
        await invoke(wrap_retry(fn, config, name="n"))
    assert script.calls == 2
    assert [str(e) for e in seen] == ["again", "final"]


@pytest.mark.anyio
async def test_raising_predicate_is_logged_and_error_not_retried(kind: str):
    """A predicate that raises is logged; the judged error is raised as not retryable."""

    def predicate(error: Exception) -> bool:
        raise LookupError("predicate bug")

    config = RetryConfig(attempts=3, backoff=0, max_backoff=0, retry_on=predicate)
    error = ConnectionError("real problem")
    fn, script = make(kind, error)
    with capture_logs() as logs, pytest.raises(ConnectionError) as caught:
        await invoke(wrap_retry(fn, config, name="n"))
    assert caught.value is error
    assert script.calls == 1
    [entry] = [e for e in logs if e["event"] == LogEvent.NODE_RETRY_PREDICATE_FAILED]
    assert entry["log_level"] == "warning"
    assert entry["error_type"] == "LookupError"
    assert entry["judged_error_type"] == "ConnectionError"


def test_retry_on_predicate_control_flow_propagates():
    """Control flow raised inside a retry_on predicate propagates."""

    def predicate(error: Exception) -> bool:
        raise KeyboardInterrupt

    config = RetryConfig(attempts=3, backoff=0, max_backoff=0, retry_on=predicate)
    fn, script = make("sync", ConnectionError("x"))
    with pytest.raises(KeyboardInterrupt):
        wrap_retry(fn, config, name="n")()
    assert script.calls == 1


# --- control flow --------------------------------------------------------------------


@pytest.mark.parametrize("first", [None, ConnectionError("flaky")])
def test_keyboard_interrupt_in_sync_fn_propagates(first: Exception | None):
    """KeyboardInterrupt passes through on the first or a later attempt, with nothing more."""
    items = [KeyboardInterrupt()] if first is None else [first, KeyboardInterrupt()]
    fn, script = make("sync", *items)
    on_retry = Calls()
    config = RetryConfig(
        attempts=5, backoff=0, max_backoff=0, retry_on=BaseException, on_retry=on_retry
    )
    with pytest.raises(KeyboardInterrupt):
        wrap_retry(fn, config, name="n")()
    assert script.calls == len(items)
    assert len(on_retry.calls) == len(items) - 1


@pytest.mark.anyio
async def test_graph_bubble_up_is_never_retried_nor_judged(kind: str):
    """LangGraph's GraphBubbleUp (an Exception) passes through without reaching retry_on."""
    seen: list[BaseException] = []
    on_retry = Calls()
    config = RetryConfig(
        attempts=5,
        backoff=0,
        max_backoff=0,
        retry_on=lambda e: seen.append(e) or True,
        on_retry=on_retry,
    )
    interrupt = GraphBubbleUp("interrupt")
    fn, script = make(kind, ConnectionError("x"), interrupt)
    with pytest.raises(GraphBubbleUp) as caught:
        await invoke(wrap_retry(fn, config, name="n"))
    assert caught.value is interrupt
    assert script.calls == 2
    assert len(seen) == 1
    assert len(on_retry.calls) == 1
    assert not would_retry(interrupt, 1, config)


@pytest.mark.anyio
async def test_outer_cancel_during_attempt_propagates():
    """The backend's cancellation during a retried attempt propagates; no further attempt."""
    on_retry = Calls()
    config = RetryConfig(
        attempts=5, backoff=0, max_backoff=0, retry_on=BaseException, on_retry=on_retry
    )
    calls = 0
    caught: list[BaseException] = []

    with anyio.CancelScope() as scope:

        async def body() -> str:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise ConnectionError("flaky")
            scope.cancel()
            await anyio.sleep(1)
            return "unreachable"

        try:
            await wrap_retry(body, config, name="n")()
        except anyio.get_cancelled_exc_class() as exc:
            caught.append(exc)
            raise
    assert scope.cancelled_caught
    assert len(caught) == 1
    assert calls == 2
    assert len(on_retry.calls) == 1


@pytest.mark.anyio
async def test_pending_cancel_wins_over_deadline_stop():
    """A failure after the caller cancelled (no checkpoint between) ends in the cancellation."""
    calls = 0
    on_retry = Calls()
    config = RetryConfig(attempts=5, backoff=0, max_backoff=0, on_retry=on_retry)

    async def body() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("flaky")

    with anyio.CancelScope() as scope:
        scope.cancel()
        await wrap_retry(body, config, name="n")()
    assert scope.cancelled_caught
    assert calls == 1
    assert on_retry.calls == []


@pytest.mark.anyio
async def test_cancel_inside_on_retry_propagates():
    """A cancellation raised inside an async on_retry propagates; the function is not called again."""
    calls = 0

    with anyio.CancelScope() as scope:

        async def on_retry(**_fields: object) -> None:
            scope.cancel()
            await anyio.lowlevel.checkpoint()

        async def body() -> str:
            nonlocal calls
            calls += 1
            raise ConnectionError("flaky")

        config = RetryConfig(attempts=5, backoff=0, max_backoff=0, on_retry=on_retry)
        await wrap_retry(body, config, name="n")()
    assert scope.cancelled_caught
    assert calls == 1


def test_keyboard_interrupt_inside_sync_on_retry_propagates():
    """Control flow from a sync on_retry is not swallowed as a callback failure."""

    def on_retry() -> None:
        raise KeyboardInterrupt

    fn, script = make("sync", ConnectionError("x"))
    config = RetryConfig(attempts=3, backoff=0, max_backoff=0, on_retry=on_retry)
    with pytest.raises(KeyboardInterrupt):
        wrap_retry(fn, config, name="n")()
    assert script.calls == 1


# --- on_retry --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_on_retry_receives_attempt_error_delay_and_context(kind: str):
    """on_retry gets the failed attempt, its error, the delay and that attempt's context."""
    on_retry = Calls()
    config = RetryConfig(attempts=3, backoff=0, max_backoff=0, on_retry=on_retry)
    errors = [ConnectionError("a"), ConnectionError("b")]
    fn, _ = make(kind, *errors, "ok")
    ctx = ExecutionContext(node_name="n")
    with use_context(ctx):
        assert await invoke(wrap_retry(fn, config, name="n")) == "ok"
    assert [c["attempt"] for c in on_retry.calls] == [1, 2]
    assert [c["error"] for c in on_retry.calls] == errors
    assert [c["delay"] for c in on_retry.calls] == [0.0, 0.0]
    assert [c["context"].attempt for c in on_retry.calls] == [1, 2]
    assert {c["context"].trace_id for c in on_retry.calls} == {ctx.trace_id}


@pytest.mark.anyio
async def test_async_on_retry_is_awaited():
    """An async on_retry is awaited before the backoff sleep."""
    seen: list[tuple[int, str]] = []

    async def on_retry(attempt: int, error: Exception) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append((attempt, str(error)))

    config = RetryConfig(attempts=3, backoff=0, max_backoff=0, on_retry=on_retry)
    fn, _ = make("async", ConnectionError("a"), "ok")
    assert await wrap_retry(fn, config, name="n")() == "ok"
    assert seen == [(1, "a")]


def test_on_retry_gets_only_the_parameters_it_declares():
    """A callback declaring a subset of the fields gets just those; context is None outside a node."""
    seen: list[tuple[object, ...]] = []

    def on_retry(delay: float, context: object) -> None:
        seen.append((delay, context))

    config = RetryConfig(attempts=2, backoff=0, max_backoff=0, on_retry=on_retry)
    fn, _ = make("sync", ConnectionError("a"), "ok")
    assert wrap_retry(fn, config, name="n")() == "ok"
    assert seen == [(0.0, None)]


def test_on_retry_without_introspectable_signature_gets_everything():
    """A callable whose signature cannot be read is called with every field."""
    seen: list[dict[str, object]] = []

    class Opaque:
        __signature__ = property(lambda self: (_ for _ in ()).throw(ValueError("no sig")))

        def __call__(self, **fields: object) -> None:
            seen.append(fields)

    config = RetryConfig(attempts=2, backoff=0, max_backoff=0, on_retry=Opaque())
    fn, _ = make("sync", ConnectionError("a"), "ok")
    assert wrap_retry(fn, config, name="n")() == "ok"
    assert set(seen[0]) == {"attempt", "error", "delay", "context"}


@pytest.mark.anyio
async def test_failing_on_retry_is_logged_and_retrying_continues(kind: str):
    """An on_retry that raises is logged at warning and does not change the outcome."""
    if kind == "sync":

        def on_retry() -> None:
            raise RuntimeError("observer broke")

    else:

        async def on_retry() -> None:  # type: ignore[misc]
            await anyio.lowlevel.checkpoint()
            raise RuntimeError("observer broke")

    config = RetryConfig(attempts=3, backoff=0, max_backoff=0, on_retry=on_retry)
    fn, script = make(kind, ConnectionError("a"), ConnectionError("b"), "ok")
    with capture_logs() as logs:
        assert await invoke(wrap_retry(fn, config, name="n")) == "ok"
    assert script.calls == 3
    failures = [e for e in logs if e["event"] == LogEvent.NODE_ON_RETRY_FAILED]
    assert [f["attempt"] for f in failures] == [1, 2]
    assert failures[0]["log_level"] == "warning"
    assert failures[0]["error_type"] == "RuntimeError"
    assert failures[0]["error_message"] == "observer broke"


def test_sync_fn_with_async_on_retry_is_a_config_error():
    """A sync retry cannot await an async callback, so wrapping refuses it."""

    async def on_retry() -> None:
        return None

    config = RetryConfig(on_retry=on_retry)
    with pytest.raises(ConfigError, match="on_retry"):
        wrap_retry(lambda: 1, config, name="n")


def test_sync_on_retry_returning_awaitable_in_sync_retry_is_closed_and_logged():
    """A sync callable returning a coroutine to a sync retry is closed (no warning) and logged."""

    async def later() -> None:
        return None

    def returns_coroutine() -> object:
        return later()

    config = RetryConfig(attempts=2, backoff=0, max_backoff=0, on_retry=returns_coroutine)
    fn, _ = make("sync", ConnectionError("a"), "ok")
    with capture_logs() as logs:
        assert wrap_retry(fn, config, name="n")() == "ok"
    assert [e["error_type"] for e in logs if e["event"] == LogEvent.NODE_ON_RETRY_FAILED] == [
        "TypeError"
    ]


# --- context ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_context_attempt_number_follows_attempts(kind: str):
    """Inside the function, current_context().attempt is the attempt number; restored after."""
    fn, script = make(kind, ConnectionError("a"), ConnectionError("b"), "ok")
    ctx = ExecutionContext(node_name="n")
    with use_context(ctx):
        await invoke(wrap_retry(fn, FAST, name="n"))
        assert current_context() is ctx
    assert script.seen_attempts == [1, 2, 3]


@pytest.mark.anyio
async def test_context_restored_when_control_flow_ends_a_retried_attempt(kind: str):
    """Control flow raised by a retried attempt propagates with the caller's context restored."""
    interrupt = GraphBubbleUp("interrupt")
    fn, script = make(kind, ConnectionError("a"), interrupt)
    ctx = ExecutionContext(node_name="n")
    with use_context(ctx):
        with pytest.raises(GraphBubbleUp) as caught:
            await invoke(wrap_retry(fn, FAST, name="n"))
        assert current_context() is ctx
    assert caught.value is interrupt
    assert script.seen_attempts == [1, 2]


def test_context_restored_when_keyboard_interrupt_ends_a_retried_attempt():
    """A BaseException from a retried sync attempt leaves the caller's context current."""
    fn, script = make("sync", ConnectionError("a"), KeyboardInterrupt())
    ctx = ExecutionContext(node_name="n")
    with use_context(ctx):
        with pytest.raises(KeyboardInterrupt):
            wrap_retry(fn, FAST, name="n")()
        assert current_context() is ctx
    assert script.seen_attempts == [1, 2]


@pytest.mark.anyio
async def test_no_context_means_none_inside(kind: str):
    """Without an execution context none is invented."""
    fn, script = make(kind, ConnectionError("a"), "ok")
    await invoke(wrap_retry(fn, FAST, name="n"))
    assert script.seen_attempts == [None, None]


# --- logging ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_retry_scheduled_is_logged_with_redacted_message(kind: str):
    """Each retry logs node.retry_scheduled with the fields and no secret."""
    fn, _ = make(kind, ConnectionError("refused api_key=sk-abcdefghijklmnopqrstu"), "ok")
    ctx = ExecutionContext(node_name="plan")
    wrapped = wrap_retry(fn, FAST, name="plan")
    with capture_logs() as logs, use_context(ctx):
        await invoke(wrapped)
    [entry] = logs
    assert entry["event"] == LogEvent.NODE_RETRY_SCHEDULED
    assert entry["log_level"] == "info"
    assert entry["node"] == "plan"
    assert entry["attempt"] == 1
    assert entry["delay"] == 0.0
    assert entry["error_type"] == "ConnectionError"
    assert "sk-abc" not in entry["error_message"]
    assert "[REDACTED]" in entry["error_message"]
    assert entry["trace_id"] == ctx.trace_id
    assert entry["graph_execution_id"] == ctx.graph_execution_id


@pytest.mark.anyio
async def test_nothing_is_logged_on_success_or_without_context_ids(kind: str):
    """A first-attempt success logs nothing; a retry outside a node has no trace ids."""
    ok, _ = make(kind, "ok")
    flaky, _ = make(kind, ConnectionError("x"), "ok")
    with capture_logs() as logs:
        await invoke(wrap_retry(ok, FAST, name="n"))
        assert logs == []
        await invoke(wrap_retry(flaky, FAST, name="n"))
    assert "trace_id" not in logs[0]


def test_unprintable_long_errors_are_logged_safely():
    """Error messages that fail to render or are huge still log a bounded text."""

    class UnprintableError(ConnectionError):
        def __str__(self) -> str:
            raise RuntimeError("no")

    fn, _ = make("sync", UnprintableError(), ConnectionError("x" * 2000), "ok")
    with capture_logs() as captured:
        wrap_retry(fn, FAST, name="n")()
    # Only ours: a thread an earlier test abandoned may log as it finishes.
    logs = [entry for entry in captured if entry["event"] == LogEvent.NODE_RETRY_SCHEDULED]
    assert logs[0]["error_message"] == "<UnprintableError with unprintable message>"
    assert len(logs[1]["error_message"]) < 600


def test_disabled_info_level_skips_building_the_event():
    """With info filtered out nothing is emitted, and retrying still works."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    try:
        fn, script = make("sync", ConnectionError("x"), "ok")
        wrapped = wrap_retry(fn, FAST, name="n")
        with capture_logs() as logs:
            assert wrapped() == "ok"
        assert logs == []
        assert script.calls == 2
    finally:
        structlog.configure(**saved)


# --- deadlines ----------------------------------------------------------------------------


class TestExactTiming:
    """Virtual time: trio's MockClock makes the schedule exact and instant."""

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, object]]:
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})

    @pytest.mark.anyio
    async def test_exact_sleep_schedule(self):
        """Attempts start at 0, 1, 3, 7, 12: delays 1, 2, 4 and the cap 5."""
        start = anyio.current_time()
        times: list[float] = []

        async def body() -> None:
            times.append(anyio.current_time() - start)
            raise ConnectionError("down")

        with pytest.raises(NodeRetryExhaustedError) as caught:
            await wrap_retry(body, EXACT, name="n")()
        assert times == [0, 1, 3, 7, 12]
        assert caught.value.attempts == 5

    @pytest.mark.anyio
    async def test_retry_after_lifts_the_delay(self):
        """A classified Retry-After of 7 s replaces a 1 s backoff."""
        start = anyio.current_time()
        times: list[float] = []

        class RateLimitedError(Exception):
            status_code = 429
            retry_after = 7.0

        async def body() -> str:
            times.append(anyio.current_time() - start)
            if len(times) == 1:
                raise RateLimitedError("slow down")
            return "ok"

        assert await wrap_retry(body, EXACT, name="n")() == "ok"
        assert times == [0, 7]

    @pytest.mark.anyio
    @pytest.mark.parametrize("scope_kind", ["move_on_after", "cancel_scope"])
    async def test_deadline_stops_before_sleeping_past_it(self, scope_kind: str):
        """With 5 s left, the 4 s sleep after attempt 3 (at t=3) would end at 7: stop at once."""
        start = anyio.current_time()
        calls = 0
        on_retry = Calls()
        config = RetryConfig(
            attempts=10, backoff=1, multiplier=2, max_backoff=60, jitter=0, on_retry=on_retry
        )

        async def body() -> None:
            nonlocal calls
            calls += 1
            raise ConnectionError(f"down {calls}")

        scope = (
            anyio.move_on_after(5)
            if scope_kind == "move_on_after"
            else anyio.CancelScope(deadline=start + 5)
        )
        with pytest.raises(NodeRetryExhaustedError) as caught, scope:
            await wrap_retry(body, config, name="n")()
        assert calls == 3
        assert caught.value.attempts == 3
        assert str(caught.value.__cause__) == "down 3"
        assert anyio.current_time() - start == 3
        assert len(on_retry.calls) == 2
        assert any("deadline" in note for note in caught.value.__notes__)
        assert not scope.cancelled_caught

    @pytest.mark.anyio
    async def test_deadline_at_exact_end_of_sleep_stops(self):
        """A sleep that would end exactly at the deadline is not started."""
        start = anyio.current_time()
        calls = 0

        async def body() -> None:
            nonlocal calls
            calls += 1
            raise ConnectionError("down")

        with pytest.raises(NodeRetryExhaustedError) as caught, anyio.move_on_after(3):
            await wrap_retry(body, EXACT, name="n")()
        # Attempt 1 at 0, sleep 1; attempt 2 at 1, then 1 + 2 == 3: stop.
        assert caught.value.attempts == 2
        assert anyio.current_time() - start == 1

    @pytest.mark.anyio
    async def test_outer_cancel_during_backoff_sleep_propagates(self):
        """Cancellation arriving mid-sleep propagates; no further attempt or callback."""
        start = anyio.current_time()
        on_retry = Calls()
        config = RetryConfig(attempts=5, backoff=10, max_backoff=10, jitter=0, on_retry=on_retry)
        calls = 0
        caught: list[BaseException] = []

        async def body() -> None:
            nonlocal calls
            calls += 1
            raise ConnectionError("down")

        async def canceller(scope: anyio.CancelScope) -> None:
            await anyio.sleep(4)
            scope.cancel()

        async with anyio.create_task_group() as tg:
            with anyio.CancelScope() as scope:
                tg.start_soon(canceller, scope)
                try:
                    await wrap_retry(body, config, name="n")()
                except trio.Cancelled as exc:
                    caught.append(exc)
                    raise
        assert scope.cancelled_caught
        assert len(caught) == 1
        assert calls == 1
        assert len(on_retry.calls) == 1
        assert anyio.current_time() - start == 4

    @pytest.mark.anyio
    async def test_concurrent_calls_keep_separate_state(self):
        """Concurrent calls through one wrapper each count their own attempts."""
        config = RetryConfig(attempts=6, backoff=1, multiplier=1, max_backoff=1, jitter=0)
        results: dict[int, list[int]] = {}

        async def body(key: int, failures: int) -> int:
            seen = results.setdefault(key, [])
            seen.append(len(seen) + 1)
            if len(seen) <= failures:
                raise ConnectionError(str(key))
            return len(seen)

        wrapped = wrap_retry(body, config, name="n")
        outcomes: dict[int, int] = {}

        async def run(key: int) -> None:
            outcomes[key] = await wrapped(key, key % 5)

        async with anyio.create_task_group() as tg:
            for key in range(20):
                tg.start_soon(run, key)
        assert outcomes == {key: key % 5 + 1 for key in range(20)}


def test_sync_deadline_stops_before_sleeping_past_it():
    """Under a sync deadline scope a sleep that would overrun is not started."""
    fn, script = make("sync", ConnectionError("down"))
    config = RetryConfig(attempts=5, backoff=0.01, multiplier=100, max_backoff=60, jitter=0)
    with (
        record_sleeps() as delays,
        sync_deadline_scope(0.5),
        pytest.raises(NodeRetryExhaustedError) as caught,
    ):
        wrap_retry(fn, config, name="n")()
    assert delays == [0.01]
    assert caught.value.attempts == 2
    assert script.calls == 2


def test_sync_deadline_smaller_than_first_backoff_stops_after_one_attempt():
    """A budget shorter than the first backoff ends the retry without sleeping."""
    fn, script = make("sync", ConnectionError("down"))
    config = RetryConfig(attempts=5, backoff=1, jitter=0)
    started = time.monotonic()
    with sync_deadline_scope(0.05), pytest.raises(NodeRetryExhaustedError) as caught:
        wrap_retry(fn, config, name="n")()
    assert time.monotonic() - started < 0.5
    assert caught.value.attempts == 1
    assert script.calls == 1


def test_sync_retry_really_sleeps_with_the_thread():
    """Without test hooks a sync retry sleeps its delay with time.sleep."""
    fn, _ = make("sync", ConnectionError("down"), "ok")
    config = RetryConfig(attempts=2, backoff=0.02, max_backoff=0.02, jitter=0)
    started = time.monotonic()
    assert wrap_retry(fn, config, name="n")() == "ok"
    assert time.monotonic() - started >= 0.02


# --- would_retry ----------------------------------------------------------------------------


def test_would_retry():
    """would_retry answers for classification, retry_on, attempts left and control flow."""
    config = RetryConfig(attempts=3)
    assert would_retry(ConnectionError(), 1, config)
    assert would_retry(ConnectionError(), 2, config)
    assert not would_retry(ConnectionError(), 3, config)
    assert not would_retry(ValueError(), 1, config)
    assert not would_retry(KeyboardInterrupt(), 1, RetryConfig(retry_on=BaseException))
    assert would_retry(ValueError(), 1, RetryConfig(retry_on=ValueError))
    assert not would_retry(ValueError(), 1, RetryConfig(retry_on=lambda e: False))

    def broken(error: Exception) -> bool:
        raise LookupError("bug")

    with capture_logs() as logs:
        assert not would_retry(ConnectionError(), 1, RetryConfig(retry_on=broken))
    assert [e["event"] for e in logs] == [LogEvent.NODE_RETRY_PREDICATE_FAILED]


# --- the wrapper's shape ----------------------------------------------------------------------


def _sync_node(state: dict[str, int], config: object = None) -> int:
    """A sync node."""
    return state["x"]


async def _async_node(state: dict[str, int], *, scale: int = 1) -> int:
    """An async node."""
    return state["x"] * scale


class _AsyncCallable:
    async def __call__(self, value: int) -> int:
        return value


@pytest.mark.anyio
async def test_wrapper_keeps_kind_name_and_signature():
    """Sync stays sync, async stays async, with the same name, doc and signature."""
    sync_wrapped = wrap_retry(_sync_node, FAST, name="s")
    async_wrapped = wrap_retry(_async_node, FAST, name="a")
    assert not inspect.iscoroutinefunction(sync_wrapped)
    assert inspect.iscoroutinefunction(async_wrapped)
    assert sync_wrapped.__name__ == "_sync_node"
    assert async_wrapped.__doc__ == "An async node."
    assert inspect.signature(sync_wrapped) == inspect.signature(_sync_node)
    assert inspect.signature(async_wrapped) == inspect.signature(_async_node)
    assert sync_wrapped({"x": 2}) == 2
    assert await async_wrapped({"x": 2}, scale=3) == 6


@pytest.mark.anyio
async def test_partials_and_async_callables_are_detected_as_async():
    """functools.partial of an async function and async __call__ objects give async wrappers."""
    partial = wrap_retry(functools.partial(_async_node, scale=5), FAST, name="p")
    obj = wrap_retry(_AsyncCallable(), FAST, name="o")
    nested = wrap_retry(functools.partial(functools.partial(_AsyncCallable()), 4), FAST, name="q")
    assert inspect.iscoroutinefunction(partial)
    assert inspect.iscoroutinefunction(obj)
    assert inspect.iscoroutinefunction(nested)
    assert await partial({"x": 2}) == 10
    assert await obj(3) == 3
    assert await nested() == 4
    assert not inspect.iscoroutinefunction(
        wrap_retry(functools.partial(_sync_node), FAST, name="x")
    )
    assert not inspect.iscoroutinefunction(wrap_retry(dict, FAST, name="d"))


@pytest.mark.anyio
async def test_create_retry_wrapper_and_with_retry(kind: str):
    """The decorator names errors after the function; with_retry calls straight through."""
    fn, _ = make(kind, ConnectionError("x"))
    with pytest.raises(NodeRetryExhaustedError) as caught:
        await invoke(create_retry_wrapper(FAST)(fn))
    assert caught.value.node == fn.__qualname__
    with pytest.raises(NodeRetryExhaustedError) as named:
        await invoke(create_retry_wrapper(FAST, name="custom")(fn))
    assert named.value.node == "custom"
    ok, script = make(kind, ConnectionError("x"), "ok")
    assert await invoke(with_retry, ok, FAST, 1, key=2) == "ok"
    assert script.calls == 2
    with pytest.raises(NodeRetryExhaustedError) as via_with:
        await invoke(with_retry, fn, FAST, name="w")
    assert via_with.value.node == "w"


def test_default_name_of_nameless_callable_is_its_type():
    """A callable object without __qualname__ is named after its class."""

    class Body:
        def __call__(self) -> None:
            raise ConnectionError("x")

    with pytest.raises(NodeRetryExhaustedError) as caught:
        with_retry(Body(), FAST)
    assert caught.value.node is not None
    assert caught.value.node.endswith("Body")


# --- remaining edges ----------------------------------------------------------------------


@given(st.integers(1, 50))
def test_property_default_random_source_stays_in_band(attempt: int):
    """Without an injected rng the module's random source still keeps the band."""
    config = RetryConfig(backoff=0.5, multiplier=1.5, max_backoff=20, jitter=0.25)
    base = _oracle_base(attempt, 0.5, 1.5, 20)
    assert base * (1 - 1e-9) <= retry_delay(attempt, config) <= base * 1.25 * (1 + 1e-9)


def test_predicate_raising_control_flow_or_failing_twice():
    """GraphBubbleUp from a predicate propagates; repeated predicate failures each log."""

    def bubbling(error: Exception) -> bool:
        raise GraphBubbleUp("from predicate")

    fn, _ = make("sync", ConnectionError("x"))
    with pytest.raises(GraphBubbleUp):
        wrap_retry(fn, RetryConfig(retry_on=bubbling), name="n")()

    def broken(error: Exception) -> bool:
        raise LookupError("bug")

    wrapped = wrap_retry(fn, RetryConfig(retry_on=broken), name="n")
    with capture_logs() as logs:
        for _ in range(2):
            with pytest.raises(ConnectionError):
                wrapped()
    assert [e["event"] for e in logs] == [LogEvent.NODE_RETRY_PREDICATE_FAILED] * 2


def test_graph_bubble_up_from_on_retry_propagates():
    """LangGraph control flow raised by on_retry is not swallowed as a callback failure."""

    def on_retry() -> None:
        raise GraphBubbleUp("interrupt in observer")

    fn, script = make("sync", ConnectionError("x"))
    config = RetryConfig(attempts=3, backoff=0, max_backoff=0, on_retry=on_retry)
    with pytest.raises(GraphBubbleUp):
        wrap_retry(fn, config, name="n")()
    assert script.calls == 1


def test_sync_retry_ignores_uncloseable_awaitable_from_on_retry():
    """An awaitable without close() returned to a sync retry is dropped and logged."""

    class Pending:
        def __await__(self):  # pragma: no cover - never awaited
            yield

    config = RetryConfig(attempts=2, backoff=0, max_backoff=0, on_retry=Pending)
    fn, _ = make("sync", ConnectionError("a"), "ok")
    with capture_logs() as logs:
        assert wrap_retry(fn, config, name="n")() == "ok"
    assert [e["event"] for e in logs if e["event"] == LogEvent.NODE_ON_RETRY_FAILED] == [
        LogEvent.NODE_ON_RETRY_FAILED
    ]


def test_a_failing_log_sink_does_not_stop_the_retry() -> None:
    """node.retry_scheduled raising inside structlog leaves the outcome unchanged."""
    import structlog

    from resilient_nodes import Policy
    from resilient_nodes.testing import no_backoff

    def broken(logger: object, method: str, event: dict[str, object]) -> dict[str, object]:
        raise BrokenPipeError("log sink closed")

    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("blip")
        return "ok"

    structlog.configure(processors=[broken])
    try:
        with no_backoff():
            assert Policy.retry(attempts=3).wrap(flaky)() == "ok"
    finally:
        structlog.reset_defaults()
    assert calls == 3


class TestSlowOnRetry:
    """on_retry's own duration counts against the enclosing budget (virtual time)."""

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, object]]:
        import trio.testing

        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})

    @pytest.mark.anyio
    async def test_no_sleep_into_the_deadline_after_a_slow_callback(self) -> None:
        """timeout(1) | retry(backoff=0.5) with a 0.6 s on_retry stops, not times out."""
        from resilient_nodes import NodeRetryExhaustedError, Policy

        async def on_retry(attempt: int) -> None:
            await anyio.sleep(0.6)

        async def down() -> None:
            raise ConnectionError("down")

        policy = Policy.timeout(1) | Policy.retry(
            attempts=3, backoff=0.5, jitter=0, on_retry=on_retry
        )
        with pytest.raises(NodeRetryExhaustedError) as caught:
            await policy.wrap(down, name="n")()
        assert isinstance(caught.value.last_error, ConnectionError)
        assert caught.value.attempts == 1
