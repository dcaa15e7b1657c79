"""Streams: attempts end at the first item, committed afterwards, always closed, cancel-clean."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sniffio import current_async_library as anyio_backend_name
from structlog.testing import capture_logs
from trio.testing import MockClock

from resilient_nodes import (
    BreakerState,
    ConfigError,
    LogEvent,
    NodeFallbackExhaustedError,
    NodeRetryExhaustedError,
    NodeStreamInterruptedError,
    NodeTimeoutError,
    Policy,
    classify_error,
    current_context,
)
from resilient_nodes._policy import build_pipeline
from resilient_nodes.testing import no_backoff

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.anyio

MOCK_TRIO = pytest.mark.parametrize(
    "anyio_backend",
    [pytest.param(("trio", {"clock": MockClock(autojump_threshold=0)}), id="trio-mock")],
)


class Source:
    """Scripted attempts of a stream: each call plays the next script.

    A script is a list of steps: an item to yield, ``"stall"`` (wait forever),
    or an exception to raise. Records every call and whether each underlying
    generator was closed (finished in any way).
    """

    def __init__(self, *scripts: list[Any], name: str = "source") -> None:
        self.scripts = list(scripts)
        self.calls = 0
        self.finished: list[bool] = []
        self.served_by: list[str | None] = []
        self.__qualname__ = name

    def __call__(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        index = self.calls
        self.calls += 1
        self.finished.append(False)
        script = self.scripts[min(index, len(self.scripts) - 1)]
        return self._play(index, script)

    async def _play(self, index: int, script: list[Any]) -> AsyncIterator[Any]:
        context = current_context()
        self.served_by.append(None if context is None else context.served_by)
        try:
            for step in script:
                await anyio.lowlevel.checkpoint()
                if isinstance(step, BaseException):
                    raise step
                if step == "stall":
                    await anyio.sleep_forever()
                yield step
        finally:
            self.finished[index] = True


async def collect(stream: AsyncIterator[Any], into: list[Any]) -> list[Any]:
    async for item in stream:
        into.append(item)  # noqa: PERF401 - one by one: the items so far survive a failure
    return into


async def test_items_pass_through_and_the_kind_is_a_stream() -> None:
    """An async generator function gives a function returning an async iterator."""
    source = Source([1, 2, 3])

    async def gen() -> AsyncIterator[int]:
        async for item in source():
            yield item

    wrapped = Policy.llm().wrap(gen)
    stream = wrapped()
    assert "Stream" in repr(stream)
    assert await collect(stream, []) == [1, 2, 3]
    assert source.finished == [True]
    assert await collect(stream, []) == []  # exhausted stays exhausted


async def test_any_function_returning_an_async_iterator_under_a_stream_layer() -> None:
    """A coroutine function returning a stream (as the SDKs' create(stream=True)) works too."""
    source = Source(["a", "b"])

    async def create() -> AsyncIterator[str]:
        return source()

    wrapped = Policy.stream(idle=10).wrap(create)
    assert await collect(wrapped(), []) == ["a", "b"]

    class Iterable:
        def __aiter__(self) -> AsyncIterator[str]:
            return source()

    assert await collect(Policy.stream().wrap(Iterable)(), []) == ["a", "b"]

    def not_a_stream() -> int:
        return 3

    with pytest.raises(TypeError, match="not an async iterator"):
        await Policy.stream().wrap(not_a_stream)().__anext__()


async def test_no_layers_leave_the_function_alone() -> None:
    """Policy.none() returns the async generator function itself."""

    async def gen() -> AsyncIterator[int]:
        yield 1

    assert Policy.none().wrap(gen) is gen


async def test_failures_before_the_first_item_are_retried_invisibly() -> None:
    """An error or a stall before the first item is an attempt that failed: retried."""
    source = Source([ConnectionError("reset")], ["stall"], [1, 2])
    wrapped = (Policy.llm(attempts=3) | Policy.stream(first_item=0.05)).wrap(source)
    with no_backoff():
        assert await collect(wrapped(), []) == [1, 2]
    assert source.calls == 3
    assert source.finished == [True, True, True]


async def test_a_failure_after_the_first_item_is_an_interruption_never_retried() -> None:
    """Once an item was delivered, nothing is delivered twice: the stream is committed."""
    boom = ConnectionError("reset")
    source = Source([1, 2, boom], [1, 2, 3])
    wrapped = (Policy.llm(attempts=3) | Policy.stream(idle=5)).wrap(source, name="plan")
    got: list[Any] = []
    with capture_logs() as logs, no_backoff(), pytest.raises(NodeStreamInterruptedError) as caught:
        await collect(wrapped(), got)
    assert got == [1, 2]
    assert caught.value.items_delivered == 2
    assert caught.value.__cause__ is boom
    assert caught.value.last_error is boom
    assert source.calls == 1
    assert source.finished == [True]
    assert not classify_error(caught.value).retryable
    assert classify_error(caught.value).category == "network"
    interrupted = [e for e in logs if e["event"] == LogEvent.STREAM_INTERRUPTED]
    assert interrupted[0]["items_delivered"] == 2
    assert interrupted[0]["node"] == "plan"


@MOCK_TRIO
async def test_a_stall_mid_stream_is_cut_at_the_idle_bound() -> None:
    """No item for ``idle`` seconds: the underlying stream is closed, at that moment."""
    source = Source([1, "stall"])
    wrapped = Policy.stream(first_item=30, idle=2).wrap(source)
    got: list[Any] = []
    start = anyio.current_time()
    with pytest.raises(NodeStreamInterruptedError) as caught:
        await collect(wrapped(), got)
    assert anyio.current_time() - start == pytest.approx(2.0)
    assert got == [1]
    assert isinstance(caught.value.__cause__, NodeTimeoutError)
    assert caught.value.__cause__.timeout == 2
    assert source.finished == [True]


async def test_a_stall_is_cut_on_the_real_clock_with_scopes_inside_the_stream() -> None:
    """On each backend's own mechanism: a source using its own scopes is cut at idle.

    The source waits inside anyio scopes of its own (``fail_after``, ``sleep``),
    which ours must neither disturb nor be disturbed by.
    """
    idle = 0.05

    async def source() -> AsyncIterator[int]:
        for item in range(3):
            with anyio.fail_after(10):
                await anyio.sleep(0.001)
            yield item
        with anyio.fail_after(10):
            await anyio.sleep(10)
        yield 99

    wrapped = Policy.stream(idle=idle).wrap(source)
    got: list[Any] = []
    start = anyio.current_time()
    with pytest.raises(NodeStreamInterruptedError) as caught:
        await collect(wrapped(), got)
    elapsed = anyio.current_time() - start
    assert got == [0, 1, 2]
    assert isinstance(caught.value.__cause__, NodeTimeoutError)
    assert idle <= elapsed < idle + 1.0
    # The task is clean afterwards: no cancellation left pending or counted.
    await anyio.sleep(0.001)
    if anyio_backend_name() == "asyncio":
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0


async def test_an_outer_cancel_racing_the_idle_bound_stays_a_cancellation() -> None:
    """Our bound and the caller's deadline at the same moment: the caller's wins."""

    async def stalls() -> AsyncIterator[int]:
        yield 1
        await anyio.sleep_forever()
        yield 2

    wrapped = Policy.stream(idle=0.05).wrap(stalls)
    got: list[Any] = []
    with anyio.move_on_after(0.05) as scope:
        await collect(wrapped(), got)
    # Either the caller's deadline was seen first (cancelled) or our stall was;
    # never both, and never a cancellation turned into our error.
    assert got == [1]
    assert scope.cancelled_caught or scope.cancel_called


@MOCK_TRIO
async def test_the_first_item_bound_applies_per_attempt_inside_a_retry() -> None:
    """``llm | stream(first_item=3)``: each attempt gets 3 s to start; 3 stalls exhaust it."""
    source = Source(["stall"])
    wrapped = (Policy.llm(attempts=3, backoff=1, jitter=0) | Policy.stream(first_item=3)).wrap(
        source
    )
    start = anyio.current_time()
    with pytest.raises(NodeRetryExhaustedError) as caught:
        await wrapped().__anext__()
    # 3 attempts of 3 s, with 1 s and 2 s of backoff between them.
    assert anyio.current_time() - start == pytest.approx(12.0)
    assert isinstance(caught.value.last_error, NodeTimeoutError)
    assert source.finished == [True, True, True]


@MOCK_TRIO
async def test_a_timeout_bounds_the_whole_stream_and_runs_on_timeout() -> None:
    """``Policy.timeout(5)`` over a stream: the later items' waits end at its deadline too."""
    cleanups: list[float] = []

    async def slow() -> AsyncIterator[int]:
        for item in range(10):
            await anyio.sleep(2)
            yield item

    async def cleanup() -> None:
        cleanups.append(1)

    wrapped = Policy.timeout(5, on_timeout=cleanup).wrap(slow)
    got: list[Any] = []
    with pytest.raises(NodeStreamInterruptedError) as caught:
        await collect(wrapped(), got)
    assert got == [0, 1]
    assert isinstance(caught.value.__cause__, NodeTimeoutError)
    assert caught.value.__cause__.timeout == 5
    assert cleanups == [1]


async def test_fallback_before_the_first_item_only() -> None:
    """A primary failing at once falls back; the alternative knows it serves."""
    primary = Source([ConnectionError("down")], name="primary")
    backup = Source(["x", "y"], name="backup")
    wrapped = (Policy.fallback(backup) | Policy.stream(idle=5)).wrap(primary, name="plan")
    with capture_logs() as logs:
        assert await collect(wrapped(), []) == ["x", "y"]
    assert backup.served_by == ["test_stream.backup"]
    assert [e["event"] for e in logs if e["event"].startswith("fallback")] == [
        "fallback.started",
        "fallback.served",
    ]
    late = Source([1, ConnectionError("late")], name="late")
    other = Source(["never"], name="other")
    got: list[Any] = []
    with pytest.raises(NodeStreamInterruptedError):
        await collect((Policy.fallback(other) | Policy.stream()).wrap(late)(), got)
    assert got == [1]
    assert other.calls == 0


async def test_every_stream_route_failing() -> None:
    """Primary and alternative both fail before their first item: one error per route."""
    primary = Source([ConnectionError("a")], name="primary")
    backup = Source([TimeoutError("b")], name="backup")
    with pytest.raises(NodeFallbackExhaustedError) as caught:
        await (Policy.fallback(backup) | Policy.stream()).wrap(primary)().__anext__()
    assert [type(e) for e in caught.value.errors] == [ConnectionError, TimeoutError]
    assert primary.finished == [True]
    assert backup.finished == [True]


async def test_a_breaker_counts_the_whole_stream_and_an_open_one_falls_back_at_once() -> None:
    """A mid-stream failure counts; once open, the alternative serves with zero primary calls."""
    primary = Source([1, ConnectionError("reset")], name="primary")
    backup = Source(["b"], name="backup")
    policy = Policy.breaker(failure_threshold=2) | Policy.stream()
    wrapped, breakers = build_pipeline(policy, primary, "plan")
    for _ in range(2):
        with pytest.raises(NodeStreamInterruptedError):
            await collect(wrapped(), [])
    assert breakers[0].state is BreakerState.OPEN
    routed, _ = build_pipeline(Policy.fallback(backup) | Policy.stream(), wrapped, "route")
    assert await collect(routed(), []) == ["b"]
    assert primary.calls == 2


async def test_closing_early_closes_the_underlying_stream_and_counts_a_success() -> None:
    """``aclose`` and ``async with`` close the underlying iterator; the breaker sees success."""
    source = Source([1, 2, 3, 4])
    policy = Policy.breaker(failure_threshold=1) | Policy.stream()
    wrapped, breakers = build_pipeline(policy, source, "plan")
    stream = wrapped()
    assert await stream.__anext__() == 1
    await stream.aclose()
    assert source.finished == [True]
    await stream.aclose()  # idempotent
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()
    async with wrapped() as other:
        async for item in other:
            if item == 2:
                break
    assert source.finished == [True, True]
    assert breakers[0].status().failure_count == 0
    assert breakers[0].state is BreakerState.CLOSED


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # trio warns about the dropped source
async def test_a_dropped_open_stream_frees_a_half_open_probe() -> None:
    """A stream the caller never closes releases its breaker ticket when collected."""
    clock = [0.0]
    source = Source([ConnectionError("x")], [1, 2])
    policy = Policy.breaker(failure_threshold=1, recovery_timeout=1) | Policy.stream()
    wrapped, breakers = build_pipeline(policy, source, "plan")
    breaker = breakers[0]
    breaker._clock = lambda: clock[0]  # the injected clock, as the breaker tests do
    with pytest.raises(ConnectionError):
        await wrapped().__anext__()
    clock[0] = 5.0
    stream = wrapped()
    assert await stream.__anext__() == 1  # the half-open probe
    del stream
    gc.collect()
    assert breaker.state is BreakerState.CLOSED


@pytest.mark.parametrize("phase", ["first_item", "mid_stream"])
async def test_cancellation_from_outside_passes_through_untouched(phase: str) -> None:
    """An outer cancel scope's cancellation is never converted, and the source is closed."""
    source = Source(["stall"] if phase == "first_item" else [1, "stall"])
    policy = Policy.llm() | Policy.stream(first_item=30, idle=30) | Policy.timeout(60)
    wrapped, breakers = build_pipeline(Policy.breaker(failure_threshold=1) | policy, source, "p")
    got: list[Any] = []
    with anyio.move_on_after(0.05) as scope:
        await collect(wrapped(), got)
    assert scope.cancelled_caught
    assert got == ([] if phase == "first_item" else [1])
    assert source.calls == 1
    assert source.finished == [True]
    assert breakers[0].status().failure_count == 0


async def test_stream_bounds_are_validated_and_round_trip() -> None:
    """Bad bounds name the field; repr and plain data are faithful."""
    with pytest.raises(ConfigError, match="idle: must be > 0"):
        Policy.stream(idle=0)
    with pytest.raises(ConfigError, match="first_item: must be a duration"):
        Policy.stream(first_item="soon")  # type: ignore[arg-type]
    policy = Policy.llm() | Policy.stream(first_item=10, idle=2.5)
    assert repr(policy) == "Policy.llm() | Policy.stream(first_item=10, idle=2.5)"
    assert Policy.from_dict(policy.to_dict()) == policy
    with pytest.raises(ConfigError, match=r"layers\[0\]: unknown key\(s\): 'gap'"):
        Policy.from_dict({"layers": [{"type": "stream", "gap": 1}]})


# --- properties -----------------------------------------------------------------------------

step = st.one_of(
    st.integers(0, 99),
    st.just("stall"),
    st.sampled_from([ConnectionError("c"), TimeoutError("t"), ValueError("v")]),
)
scripts = st.lists(st.lists(step, max_size=5), min_size=1, max_size=4)


@MOCK_TRIO
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(scripts=scripts, attempts=st.integers(1, 3))
async def test_no_item_twice_or_lost_and_every_source_closed(
    scripts: list[list[Any]], attempts: int
) -> None:
    """Whatever the attempts do, the caller gets a prefix of one attempt's items, once each."""
    source = Source(*scripts)
    policy = Policy.llm(attempts=attempts, backoff=0.1) | Policy.stream(first_item=1, idle=1)
    got: list[Any] = []
    outcome: BaseException | None = None
    try:
        await collect(policy.wrap(source)(), got)
    except Exception as error:
        outcome = error
    # Which attempt served: the last one started.
    served = scripts[min(source.calls - 1, len(scripts) - 1)]
    items = []
    for entry in served:
        if not isinstance(entry, int):
            break
        items.append(entry)
    assert got == items[: len(got)]
    if got:
        # Committed: it ended normally or with an interruption, never a retry after.
        assert outcome is None or isinstance(outcome, NodeStreamInterruptedError)
        if outcome is not None:
            assert outcome.items_delivered == len(got)
    assert all(source.finished)
    assert source.calls <= attempts


# --- edges ------------------------------------------------------------------------------------


def test_stream_functions_are_recognised_through_partials_and_objects() -> None:
    """A partial of an async generator function, or an object whose call is one, streams."""
    import functools

    from resilient_nodes._stream import is_stream_function

    async def gen(n: int) -> AsyncIterator[int]:
        yield n

    class Model:
        async def __call__(self) -> AsyncIterator[int]:
            yield 1

    assert is_stream_function(functools.partial(gen, 1))
    assert is_stream_function(Model())
    assert not is_stream_function(Model)
    assert not is_stream_function(3)

    def cyclic() -> None:
        pass

    cyclic.__wrapped__ = cyclic  # type: ignore[attr-defined]
    assert not is_stream_function(cyclic)


async def test_a_stream_that_turns_our_cancellation_into_an_error_still_stalls() -> None:
    """Cut at a bound, a source that raises its own error instead is still a stall."""

    async def converts() -> AsyncIterator[int]:
        try:
            await anyio.sleep_forever()
        except BaseException:
            raise ConnectionError("connection torn down") from None
        yield 1

    with pytest.raises(NodeTimeoutError) as caught:
        await Policy.stream(first_item=0.01).wrap(converts)().__anext__()
    assert isinstance(caught.value.__context__, ConnectionError)

    async def converts_later() -> AsyncIterator[int]:
        yield 1
        try:
            await anyio.sleep_forever()
        except BaseException:
            raise ConnectionError("connection torn down") from None
        yield 2

    got: list[Any] = []
    with pytest.raises(NodeStreamInterruptedError) as interrupted:
        await collect(Policy.stream(idle=0.01).wrap(converts_later)(), got)
    assert got == [1]
    assert isinstance(interrupted.value.__cause__, NodeTimeoutError)
    assert isinstance(interrupted.value.__cause__.__context__, ConnectionError)


async def test_a_stream_that_swallows_our_cancellation_keeps_its_item() -> None:
    """A source that ignores the cut and answers anyway: the item is kept, the task clean."""

    async def stubborn() -> AsyncIterator[int]:
        yield 1
        with contextlib.suppress(BaseException):  # swallows the cut: a badly behaved source
            await anyio.sleep(0.05)
        yield 2

    assert await collect(Policy.stream(idle=0.01).wrap(stubborn)(), []) == [1, 2]
    await anyio.sleep(0.001)  # no cancellation left pending


async def test_two_consumers_of_one_unopened_stream() -> None:
    """A second ``anext`` while the first item is awaited is refused, as for generators."""

    async def slow() -> AsyncIterator[int]:
        await anyio.sleep(0.05)
        yield 1

    stream = Policy.stream().wrap(slow)()
    errors: list[BaseException] = []

    async def second() -> None:
        await anyio.sleep(0.01)
        try:
            await stream.__anext__()
        except RuntimeError as error:
            errors.append(error)

    async with anyio.create_task_group() as group:
        group.start_soon(second)
        assert await stream.__anext__() == 1
    assert "already waiting" in str(errors[0])
    await stream.aclose()


async def test_closing_while_the_first_item_is_awaited_discards_it() -> None:
    """``aclose`` from another task while opening: the opened stream is closed, not served."""
    closed: list[bool] = []

    async def slow() -> AsyncIterator[int]:
        try:
            await anyio.sleep(0.05)
            yield 1
            yield 2
        finally:
            closed.append(True)

    stream = Policy.stream().wrap(slow)()

    async def close_soon() -> None:
        await anyio.sleep(0.01)
        await stream.aclose()

    async with anyio.create_task_group() as group:
        group.start_soon(close_soon)
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
    assert closed == [True]


async def test_a_close_that_fails_does_not_hide_the_error() -> None:
    """An underlying ``aclose`` that raises is dropped in favour of the interruption."""

    class Fragile:
        def __init__(self) -> None:
            self.items = iter([1])

        def __aiter__(self) -> Fragile:
            return self

        async def __anext__(self) -> int:
            for item in self.items:
                return item
            raise ConnectionError("reset")

        async def aclose(self) -> None:
            raise OSError("close failed")

    with pytest.raises(NodeStreamInterruptedError) as caught:
        await collect(Policy.stream().wrap(Fragile)(), [])
    assert isinstance(caught.value.__cause__, ConnectionError)


async def test_the_bound_moves_with_each_item_and_ignores_the_callers_own_time() -> None:
    """Gaps shorter than ``idle`` never stall, however long the stream; a slow reader is fine.

    The idle bound is on the stream's wait for each item, not on the caller's
    time between items: a reader slower than ``idle`` is not the stream stalling.
    """

    async def steady() -> AsyncIterator[int]:
        for item in range(6):
            await anyio.sleep(0.02)
            yield item

    got: list[int] = []
    async with Policy.stream(idle=0.05).wrap(steady)() as stream:
        async for item in stream:
            got.append(item)
            if item == 2:
                await anyio.sleep(0.08)  # the reader dawdles past the bound
    assert got == list(range(6))
