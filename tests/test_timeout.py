"""Tests for resilient_nodes._timeout: deadlines on anyio cancel scopes and threads."""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import trio
import trio.testing
from _helpers import no_thread_left_behind  # noqa: F401 - a fixture used by pytestmark
from langgraph.errors import GraphInterrupt
from structlog.testing import capture_logs

from resilient_nodes import Policy, _threads, create_node
from resilient_nodes import _timeout as timeout_module
from resilient_nodes._config import TimeoutConfig
from resilient_nodes._context import create_execution_context, current_context, use_context
from resilient_nodes._deadline import async_remaining, sync_remaining
from resilient_nodes._logging import LogEvent
from resilient_nodes._timeout import (
    TimeoutResult,
    _accepts_one_argument,
    create_timeout_controller,
    is_async_callable,
    with_timeout,
    with_timeout_result,
    wrap_timeout,
)
from resilient_nodes._tokens import CancelToken
from resilient_nodes.errors import (
    AbandonedThreadLimitError,
    ConfigError,
    NodeCancellationError,
    NodeTimeoutError,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence


pytestmark = pytest.mark.usefixtures("no_thread_left_behind")


async def sleep_long() -> str:
    await anyio.sleep(100)
    return "late"


async def echo(x: int, *, y: int = 0) -> int:
    await anyio.lowlevel.checkpoint()
    return x + y


def events(logs: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


# --- async, on both backends, real (tiny) time --------------------------------------


@pytest.mark.anyio
async def test_async_success_returns_value() -> None:
    """A call that finishes in time returns its value and logs nothing."""
    with capture_logs() as logs:
        assert await with_timeout(functools.partial(echo, 2, y=3), 5) == 5
    assert logs == []


@pytest.mark.anyio
async def test_async_timeout_raises_node_timeout_error() -> None:
    """Our deadline gives NodeTimeoutError with .timeout, .node and a log event."""
    start = time.monotonic()
    with capture_logs() as logs, pytest.raises(NodeTimeoutError) as caught:
        await with_timeout(sleep_long, 0.01, name="fetch")
    assert time.monotonic() - start < 1
    assert caught.value.timeout == 0.01
    assert caught.value.node == "fetch"
    assert isinstance(caught.value, TimeoutError)
    assert events(logs, LogEvent.NODE_TIMED_OUT) == [
        {"event": LogEvent.NODE_TIMED_OUT, "log_level": "warning", "node": "fetch", "timeout": 0.01}
    ]


@pytest.mark.anyio
async def test_timed_out_log_carries_context_ids() -> None:
    """node.timed_out carries trace id, graph execution id and attempt of the context."""
    context = create_execution_context("plan", trace_id="t1", graph_execution_id="g1", attempt=2)
    timed = wrap_timeout(sleep_long, TimeoutConfig(seconds=0.01), name="plan")
    with capture_logs() as logs, use_context(context), pytest.raises(NodeTimeoutError):
        await timed()
    (entry,) = events(logs, LogEvent.NODE_TIMED_OUT)
    assert entry["trace_id"] == "t1"
    assert entry["graph_execution_id"] == "g1"
    assert entry["attempt"] == 2
    assert entry["node"] == "plan"


@pytest.mark.anyio
async def test_outer_scope_cancellation_passes_through() -> None:
    """An enclosing scope's cancellation is not a timeout and skips on_timeout."""
    calls: list[object] = []
    with capture_logs() as logs, anyio.CancelScope() as outer:
        outer.cancel()
        await with_timeout(sleep_long, 10, on_timeout=lambda: calls.append(1))
    assert outer.cancelled_caught
    assert calls == []
    assert events(logs, LogEvent.NODE_TIMED_OUT) == []


@pytest.mark.anyio
async def test_outer_deadline_shorter_than_ours_passes_through() -> None:
    """An outer deadline firing first propagates as the backend's cancellation."""
    seen: list[type[BaseException]] = []
    with anyio.move_on_after(0.01) as outer:
        try:
            await with_timeout(sleep_long, 10, on_timeout=lambda: seen.append(TimeoutError))
        except BaseException as exc:
            seen.append(type(exc))
            raise
    assert outer.cancelled_caught
    assert seen == [anyio.get_cancelled_exc_class()]


@pytest.mark.anyio
async def test_body_raising_own_timeout_error_is_not_ours() -> None:
    """A builtin TimeoutError raised by the function propagates as itself."""

    async def own() -> None:
        await anyio.lowlevel.checkpoint()
        raise TimeoutError("upstream said so")

    with capture_logs() as logs, pytest.raises(TimeoutError) as caught:
        await with_timeout(own, 5)
    assert type(caught.value) is TimeoutError
    assert events(logs, LogEvent.NODE_TIMED_OUT) == []


@pytest.mark.anyio
async def test_body_swallowing_cancel_still_times_out() -> None:
    """A body that swallows our cancellation and returns is reported as a timeout."""

    async def swallow() -> str:
        try:
            await anyio.sleep(100)
        except anyio.get_cancelled_exc_class():
            return "partial"
        return "never"  # pragma: no cover

    with pytest.raises(NodeTimeoutError):
        await with_timeout(swallow, 0.01)


@pytest.mark.anyio
async def test_body_converting_cancel_to_error_times_out_with_context() -> None:
    """An error raised after our deadline becomes the timeout's __context__."""

    async def convert() -> None:
        try:
            await anyio.sleep(100)
        except anyio.get_cancelled_exc_class():
            raise ValueError("converted") from None

    with pytest.raises(NodeTimeoutError) as caught:
        await with_timeout(convert, 0.01)
    assert isinstance(caught.value.__context__, ValueError)


@pytest.mark.anyio
async def test_body_error_before_deadline_propagates() -> None:
    """An ordinary error inside the deadline propagates unchanged."""

    async def boom() -> None:
        await anyio.lowlevel.checkpoint()
        raise KeyError("x")

    with pytest.raises(KeyError):
        await with_timeout(boom, 5)


@pytest.mark.anyio
async def test_on_timeout_runs_once_with_the_error() -> None:
    """A one-argument async on_timeout runs exactly once and receives the error."""
    received: list[BaseException] = []

    async def cleanup(error: NodeTimeoutError) -> None:
        await anyio.lowlevel.checkpoint()
        received.append(error)

    with pytest.raises(NodeTimeoutError) as caught:
        await with_timeout(sleep_long, 0.01, on_timeout=cleanup)
    assert received == [caught.value]


@pytest.mark.anyio
async def test_sync_on_timeout_runs_in_a_thread() -> None:
    """A zero-argument sync on_timeout runs once, off the event loop thread."""
    threads: list[threading.Thread] = []
    with pytest.raises(NodeTimeoutError):
        await with_timeout(
            sleep_long, 0.01, on_timeout=lambda: threads.append(threading.current_thread())
        )
    assert len(threads) == 1
    assert threads[0] is not threading.current_thread()


@pytest.mark.anyio
async def test_sync_on_timeout_returning_awaitable_is_awaited() -> None:
    """A lambda returning a coroutine as on_timeout gets that coroutine awaited."""
    done: list[int] = []

    async def cleanup() -> None:
        await anyio.lowlevel.checkpoint()
        done.append(1)

    with pytest.raises(NodeTimeoutError):
        await with_timeout(sleep_long, 0.01, on_timeout=lambda: cleanup())  # noqa: PLW0108
    assert done == [1]


@pytest.mark.anyio
async def test_on_timeout_failure_is_chained_not_replacing() -> None:
    """A failing on_timeout is logged and becomes __cause__; the timeout still wins."""

    async def cleanup() -> None:
        await anyio.lowlevel.checkpoint()
        raise RuntimeError("cleanup broke")

    with capture_logs() as logs, pytest.raises(NodeTimeoutError) as caught:
        await with_timeout(sleep_long, 0.01, on_timeout=cleanup, name="n")
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert any("cleanup broke" in note for note in caught.value.__notes__)
    (entry,) = events(logs, LogEvent.NODE_ON_TIMEOUT_FAILED)
    assert entry["error_type"] == "RuntimeError"
    assert entry["node"] == "n"


@pytest.mark.anyio
async def test_sync_on_timeout_failure_is_chained() -> None:
    """A failing sync on_timeout (run in a thread) is chained as __cause__."""

    def cleanup() -> None:
        raise OSError("disk")

    with pytest.raises(NodeTimeoutError) as caught:
        await with_timeout(sleep_long, 0.01, on_timeout=cleanup)
    assert isinstance(caught.value.__cause__, OSError)


@pytest.mark.anyio
async def test_on_timeout_is_bounded_by_cleanup_timeout() -> None:
    """An on_timeout that overruns cleanup_timeout is cut off and reported."""
    timed = wrap_timeout(
        sleep_long,
        TimeoutConfig(seconds=0.01, on_timeout=sleep_long, cleanup_timeout=0.02),
        name="n",
    )
    start = time.monotonic()
    with capture_logs() as logs, pytest.raises(NodeTimeoutError) as caught:
        await timed()
    assert time.monotonic() - start < 1
    assert type(caught.value.__cause__) is TimeoutError
    assert events(logs, LogEvent.NODE_ON_TIMEOUT_FAILED)


@pytest.mark.anyio
async def test_sync_on_timeout_overrun_abandons_its_thread() -> None:
    """A sync on_timeout overrunning its bound is abandoned, and finishes later."""
    release = threading.Event()
    timed = wrap_timeout(
        sleep_long,
        TimeoutConfig(seconds=0.01, on_timeout=lambda: release.wait(2), cleanup_timeout=0.02),
        name="n",
    )
    with pytest.raises(NodeTimeoutError) as caught:
        await timed()
    assert type(caught.value.__cause__) is TimeoutError
    assert _threads.abandoned_threads() == 1
    release.set()
    await _wait_for(lambda: _threads.abandoned_threads() == 0)


async def _wait_for(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(2):
        while not condition():  # noqa: ASYNC110 - the condition is set by a thread
            await anyio.sleep(0.001)


@pytest.mark.anyio
async def test_on_timeout_is_shielded_and_outer_cancel_wins_after() -> None:
    """An outer cancel during on_timeout waits for it, then propagates (not our error)."""
    log: list[str] = []

    async def cleanup() -> None:
        log.append("start")
        await anyio.sleep(0.03)
        log.append("end")

    with anyio.move_on_after(0.02) as outer:
        await with_timeout(sleep_long, 0.01, on_timeout=cleanup)
    assert log == ["start", "end"]
    assert outer.cancelled_caught


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_native_task_cancel_during_on_timeout_waits_for_it() -> None:
    """On asyncio, task.cancel() (which pierces anyio's shield) still lets on_timeout end."""
    log: list[str] = []

    async def cleanup() -> None:
        log.append("start")
        await anyio.sleep(0.03)
        log.append("end")

    task = asyncio.ensure_future(with_timeout(sleep_long, 0.01, on_timeout=cleanup))
    await anyio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == ["start", "end"]


@pytest.mark.anyio
async def test_deadline_is_visible_inside() -> None:
    """Code under the timeout sees the deadline through async_remaining()."""

    async def probe() -> float:
        await anyio.lowlevel.checkpoint()
        return async_remaining()

    remaining = await with_timeout(probe, 5)
    assert 4 < remaining <= 5


@pytest.mark.anyio
async def test_timedelta_seconds_accepted() -> None:
    """A timedelta works as the duration."""
    with pytest.raises(NodeTimeoutError) as caught:
        await with_timeout(sleep_long, timedelta(milliseconds=10))
    assert caught.value.timeout == 0.01


def test_invalid_seconds_is_config_error() -> None:
    """A non-positive duration is rejected before anything runs."""
    with pytest.raises(ConfigError, match="seconds"):
        with_timeout(lambda: None, 0)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["ours", "anyio", "threading"])
async def test_cancel_token_stops_async_call(kind: str) -> None:
    """Setting any kind of token ends the call with NodeCancellationError promptly."""
    token: Any = {"ours": CancelToken, "anyio": anyio.Event, "threading": threading.Event}[kind]()

    async def set_later() -> None:
        await anyio.sleep(0.01)
        token.cancel("stop") if kind == "ours" else token.set()

    start = time.monotonic()
    async with anyio.create_task_group() as group:
        group.start_soon(set_later)
        with pytest.raises(NodeCancellationError) as caught:
            await with_timeout(sleep_long, 10, cancel_token=token, name="n")
    assert time.monotonic() - start < 0.5
    assert caught.value.node == "n"
    if kind == "ours":
        assert caught.value.reason == "stop"


@pytest.mark.anyio
async def test_cancel_token_set_before_skips_the_call() -> None:
    """A token set before the call raises at once without calling the function."""
    token = CancelToken()
    token.cancel("early")
    called: list[int] = []

    async def fn() -> None:
        called.append(1)  # pragma: no cover

    with pytest.raises(NodeCancellationError, match="early"):
        await with_timeout(fn, 5, cancel_token=token)
    assert called == []


@pytest.mark.anyio
async def test_timeout_still_fires_with_a_token() -> None:
    """With an unset token, our deadline still gives NodeTimeoutError."""
    with pytest.raises(NodeTimeoutError):
        await with_timeout(sleep_long, 0.01, cancel_token=CancelToken())


# --- exact timing on trio's mock clock ----------------------------------------------


class TestMockClock:
    """Exact timing, in virtual time."""

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, object]]:
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})

    @pytest.mark.anyio
    async def test_timeout_fires_exactly_at_the_deadline(self) -> None:
        """The caller gets the error exactly at the deadline in virtual time."""
        start = anyio.current_time()
        with pytest.raises(NodeTimeoutError):
            await with_timeout(sleep_long, 30)
        assert anyio.current_time() - start == pytest.approx(30)

    @pytest.mark.anyio
    async def test_on_timeout_bound_exact(self) -> None:
        """on_timeout is cut at exactly cleanup_timeout after the deadline."""
        timed = wrap_timeout(
            sleep_long,
            TimeoutConfig(seconds=30, on_timeout=sleep_long, cleanup_timeout=5),
            name="n",
        )
        start = anyio.current_time()
        with pytest.raises(NodeTimeoutError):
            await timed()
        assert anyio.current_time() - start == pytest.approx(35)

    @pytest.mark.anyio
    async def test_result_elapsed_is_virtual(self) -> None:
        """with_timeout_result reports elapsed time on the loop's clock."""
        result = await with_timeout_result(sleep_long, 12)
        assert result.timed_out
        assert result.elapsed == pytest.approx(12)

    @pytest.mark.anyio
    async def test_controller_scope_times_out(self) -> None:
        """A controller's scope raises NodeTimeoutError at its deadline."""
        now = [0.0]
        controller = create_timeout_controller(10, name="c", clock=lambda: now[0])
        start = anyio.current_time()
        with pytest.raises(NodeTimeoutError) as caught, controller.scope():
            await anyio.sleep(100)
        assert anyio.current_time() - start == pytest.approx(10)
        assert caught.value.node == "c"


# --- with_timeout_result --------------------------------------------------------------


@pytest.mark.anyio
async def test_result_ok_and_error() -> None:
    """with_timeout_result returns values and captures errors instead of raising."""
    ok = await with_timeout_result(functools.partial(echo, 1), 5)
    assert ok.ok
    assert ok.unwrap() == 1
    assert ok.elapsed >= 0

    async def boom() -> None:
        await anyio.lowlevel.checkpoint()
        raise ValueError("bad")

    failed = await with_timeout_result(boom, 5)
    assert not failed.ok
    assert not failed.timed_out
    assert isinstance(failed.error, ValueError)
    with pytest.raises(ValueError, match="bad"):
        failed.unwrap()


@pytest.mark.anyio
async def test_result_lets_cancellation_propagate() -> None:
    """with_timeout_result never captures the caller's cancellation."""
    with anyio.CancelScope() as outer:
        outer.cancel()
        await with_timeout_result(sleep_long, 5)
        pytest.fail("not reached")  # pragma: no cover
    assert outer.cancelled_caught


def test_result_is_frozen() -> None:
    """TimeoutResult cannot be mutated."""
    result: TimeoutResult[int] = TimeoutResult(value=1)
    with pytest.raises(AttributeError):
        result.value = 2  # type: ignore[misc]


def test_result_control_flow_propagates() -> None:
    """LangGraph control flow (GraphBubbleUp) is not captured by the result."""

    def interrupt() -> None:
        raise GraphInterrupt(())

    with pytest.raises(GraphInterrupt):
        with_timeout_result(interrupt, 5)


@pytest.mark.anyio
async def test_async_result_control_flow_propagates() -> None:
    """Async: GraphBubbleUp passes through with_timeout_result."""

    async def interrupt() -> None:
        await anyio.lowlevel.checkpoint()
        raise GraphInterrupt(())

    with pytest.raises(GraphInterrupt):
        await with_timeout_result(interrupt, 5)


# --- wrap_timeout ----------------------------------------------------------------------


def test_wrap_keeps_kind_and_signature() -> None:
    """Async stays async, sync stays sync, and the signature is the function's."""

    def sync_fn(a: int, /, b: str = "x", *, c: float = 1.0) -> str:
        return f"{a}{b}{c}"

    config = TimeoutConfig(seconds=5)
    wrapped_async = wrap_timeout(echo, config, name="a")
    wrapped_sync = wrap_timeout(sync_fn, config, name="s")
    assert inspect.iscoroutinefunction(wrapped_async)
    assert not inspect.iscoroutinefunction(wrapped_sync)
    assert inspect.signature(wrapped_async) == inspect.signature(echo)
    assert inspect.signature(wrapped_sync) == inspect.signature(sync_fn)
    assert wrapped_sync(1, "y", c=2.0) == "1y2.0"
    assert wrapped_async.__name__ == "echo"


class AsyncCallable:
    async def __call__(self, x: int) -> int:
        await anyio.lowlevel.checkpoint()
        return x * 2


def test_is_async_callable_sees_through_partials_and_objects() -> None:
    """Kind detection handles partials, async __call__, classes and plain functions."""
    assert is_async_callable(functools.partial(functools.partial(echo, 1)))
    assert is_async_callable(AsyncCallable())
    assert not is_async_callable(lambda: None)
    assert not is_async_callable(AsyncCallable)
    assert not is_async_callable(print)
    assert not is_async_callable(functools.partial(len, "x"))


@pytest.mark.anyio
async def test_wrap_async_partial_and_callable_object() -> None:
    """A partial of an async function and an async callable object become async."""
    config = TimeoutConfig(seconds=5)
    wrapped_partial = wrap_timeout(functools.partial(echo, y=10), config, name="p")
    wrapped_object = wrap_timeout(AsyncCallable(), config, name="o")
    assert inspect.iscoroutinefunction(wrapped_partial)
    assert await wrapped_partial(1) == 11
    assert await wrapped_object(4) == 8


@pytest.mark.anyio
async def test_wrap_binds_logger_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bound logger is created at wrap time, not per call or per timeout."""
    calls: list[dict[str, Any]] = []
    real = timeout_module.get_logger  # type: ignore[attr-defined]

    def counting(**initial: Any) -> Any:
        calls.append(initial)
        return real(**initial)

    monkeypatch.setattr(timeout_module, "get_logger", counting)  # the name the module uses
    timed = wrap_timeout(sleep_long, TimeoutConfig(seconds=0.001), name="n")
    for _ in range(3):
        with pytest.raises(NodeTimeoutError):
            await timed()
    assert calls == [{"node": "n"}]


def test_on_timeout_with_no_signature_is_called_without_arguments() -> None:
    """A callable without an inspectable signature is treated as zero-argument."""
    assert not _accepts_one_argument(dict.clear.__get__({}))
    assert _accepts_one_argument(lambda error: None)
    assert not _accepts_one_argument(lambda: None)

    class NoSignature:
        __signature__ = "not a signature"

        def __call__(self) -> None:  # pragma: no cover
            pass

    assert not _accepts_one_argument(NoSignature())


# --- controller ---------------------------------------------------------------------


def test_controller_from_sync_code() -> None:
    """remaining, deadline, elapsed, expired and check() follow the injected clock."""
    now = [100.0]
    controller = create_timeout_controller(5, name="c", clock=lambda: now[0])
    assert controller.deadline == 105
    assert controller.remaining == 5
    expired_at_start = controller.expired
    assert not expired_at_start
    controller.check()
    now[0] = 103.5
    assert controller.remaining == pytest.approx(1.5)
    assert controller.elapsed == pytest.approx(3.5)
    now[0] = 106
    assert controller.remaining == 0
    assert controller.expired
    assert "TimeoutController" in repr(controller)
    with pytest.raises(NodeTimeoutError):
        controller.check()


def test_controller_cancel() -> None:
    """cancel() is one-shot, and check() then raises NodeCancellationError."""
    controller = create_timeout_controller(5)
    assert controller.cancel("enough")
    assert not controller.cancel("again")
    assert controller.cancelled
    with pytest.raises(NodeCancellationError, match="enough"):
        controller.check()


@pytest.mark.anyio
async def test_controller_scope_cancel_from_another_thread() -> None:
    """cancel() from another thread ends an async scope with NodeCancellationError."""
    controller = create_timeout_controller(10)
    timer = threading.Timer(0.01, controller.cancel, args=("from thread",))
    timer.start()
    try:
        with pytest.raises(NodeCancellationError, match="from thread"):
            async with controller.scope():
                await anyio.sleep(5)
    finally:
        timer.join()


@pytest.mark.anyio
async def test_controller_scope_passes_results_and_outer_cancel() -> None:
    """A block that finishes is untouched; an outer cancellation passes through."""
    controller = create_timeout_controller(10)
    with controller.scope() as inside:
        assert inside is controller
        await anyio.lowlevel.checkpoint()
    with anyio.CancelScope() as outer:
        outer.cancel()
        with controller.scope():
            await anyio.sleep(5)
    assert outer.cancelled_caught


@pytest.mark.anyio
async def test_controller_scope_after_cancel_refuses_to_start() -> None:
    """Entering the scope of a cancelled controller raises at once."""
    controller = create_timeout_controller(10)
    controller.cancel()
    with pytest.raises(NodeCancellationError):
        async with controller.scope():
            pytest.fail("not reached")  # pragma: no cover


# --- sync functions in worker threads -----------------------------------------------


def test_sync_success_in_thread_with_context_and_deadline() -> None:
    """A sync call runs in a worker thread that sees the context and the deadline."""
    context = create_execution_context("n", trace_id="tid")

    def fn() -> tuple[str | None, float, str]:
        found = current_context()
        return (
            found.trace_id if found else None,
            sync_remaining(),
            threading.current_thread().name,
        )

    with use_context(context):
        trace_id, remaining, thread_name = with_timeout(fn, 5, name="n")
    assert trace_id == "tid"
    assert 4 < remaining <= 5
    assert thread_name == "resilient_nodes:n"
    assert sync_remaining() == math.inf


def test_sync_timeout_returns_at_deadline_while_thread_runs() -> None:
    """The caller gets NodeTimeoutError at the deadline; the thread keeps running."""
    release = threading.Event()
    started: list[threading.Thread] = []
    on_timeout_calls: list[NodeTimeoutError] = []

    def stuck() -> str:
        started.append(threading.current_thread())
        release.wait(2)
        return "done"

    start = time.monotonic()
    with capture_logs() as logs, pytest.raises(NodeTimeoutError) as caught:
        with_timeout(stuck, 0.02, name="s", on_timeout=on_timeout_calls.append)
    elapsed = time.monotonic() - start
    assert 0.02 <= elapsed < 0.5
    assert caught.value.timeout == 0.02
    assert on_timeout_calls == [caught.value]
    (worker,) = started
    assert worker.is_alive()
    assert _threads.abandoned_threads() == 1
    assert [e["event"] for e in logs if e["event"] != "node.thread_abandoned"] == [
        LogEvent.NODE_TIMED_OUT
    ]
    assert events(logs, LogEvent.NODE_THREAD_ABANDONED)
    with capture_logs() as later:
        release.set()
        worker.join(2)
    assert not worker.is_alive()
    assert _threads.abandoned_threads() == 0
    assert events(later, LogEvent.NODE_ABANDONED_THREAD_FINISHED) == [
        {
            "event": LogEvent.NODE_ABANDONED_THREAD_FINISHED,
            "log_level": "info",
            "node": "s",
            "error": None,
        }
    ]


def test_sync_own_timeout_error_and_other_errors_propagate() -> None:
    """A sync function's own TimeoutError (or any error) is re-raised as itself."""

    def own() -> None:
        raise TimeoutError("mine")

    with pytest.raises(TimeoutError, match="mine") as caught:
        with_timeout(own, 5)
    assert type(caught.value) is TimeoutError


def test_sync_lambda_around_async_function_is_a_type_error() -> None:
    """A lambda returning a coroutine is refused with a clear TypeError."""
    with pytest.raises(TypeError, match="coroutine"):
        with_timeout(lambda: sleep_long(), 5)  # type: ignore[unused-coroutine]  # noqa: PLW0108


def test_sync_async_on_timeout_and_overrun() -> None:
    """In sync code an async on_timeout runs on its own loop; an overrun is cut off."""
    release = threading.Event()
    ran: list[int] = []

    async def async_cleanup() -> None:
        await anyio.lowlevel.checkpoint()
        ran.append(1)

    with pytest.raises(NodeTimeoutError) as caught:
        with_timeout(lambda: release.wait(2), 0.01, on_timeout=async_cleanup)
    assert ran == [1]
    assert caught.value.__cause__ is None

    timed = wrap_timeout(
        lambda: release.wait(2),
        TimeoutConfig(seconds=0.01, on_timeout=lambda: release.wait(2), cleanup_timeout=0.01),
        name="n",
    )
    with capture_logs() as logs, pytest.raises(NodeTimeoutError) as caught:
        timed()
    assert type(caught.value.__cause__) is TimeoutError
    assert events(logs, LogEvent.NODE_ON_TIMEOUT_FAILED)
    release.set()


def test_sync_caller_on_timeout_failure_is_chained() -> None:
    """A failing on_timeout in sync code is chained, not raised."""
    release = threading.Event()

    def cleanup() -> None:
        raise RuntimeError("nope")

    with pytest.raises(NodeTimeoutError) as caught:
        with_timeout(lambda: release.wait(2), 0.01, on_timeout=cleanup)
    release.set()
    assert isinstance(caught.value.__cause__, RuntimeError)


def test_abandoned_thread_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the limit of abandoned threads is reached, new sync calls fail fast."""
    monkeypatch.setattr(_threads, "MAX_ABANDONED_THREADS", 1)
    release = threading.Event()
    with pytest.raises(NodeTimeoutError):  # the limit is per node: the same node
        with_timeout(lambda: release.wait(2), 0.01, name="n")
    called: list[int] = []
    with capture_logs() as logs, pytest.raises(AbandonedThreadLimitError) as caught:
        with_timeout(lambda: called.append(1), 5, name="n")
    assert called == []
    assert caught.value.limit == 1
    assert isinstance(caught.value, RuntimeError)
    assert events(logs, LogEvent.NODE_THREAD_LIMIT_REACHED)
    release.set()
    deadline = time.monotonic() + 2
    while _threads.abandoned_threads() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert with_timeout(lambda: 7, 5) == 7


def _hang(name: str, count: int, release: threading.Event) -> None:
    """Leave *count* sync calls of node *name* stuck in abandoned threads until *release*."""
    for _ in range(count):
        with pytest.raises(NodeTimeoutError):
            with_timeout(lambda: release.wait(5), 0.005, name=name)


def _wait_until_no_abandoned_threads() -> None:
    deadline = time.monotonic() + 2
    while _threads.abandoned_threads() and time.monotonic() < deadline:
        time.sleep(0.001)


def test_one_hung_node_does_not_fail_a_healthy_one() -> None:
    """A node that used up its own abandoned-thread budget leaves other nodes alone.

    The issue's figures: node ``hung`` left 32 threads stuck; a healthy sync node
    under ``breaker | timeout`` then failed every call with
    AbandonedThreadLimitError and tripped its breaker.
    """
    release = threading.Event()
    try:
        _hang("hung", _threads.MAX_ABANDONED_THREADS, release)
        assert _threads.node_abandoned_threads("hung") == _threads.MAX_ABANDONED_THREADS
        with pytest.raises(AbandonedThreadLimitError) as caught:
            with_timeout(lambda: 1, 5, name="hung")
        assert (caught.value.limit, caught.value.scope, caught.value.node) == (32, "node", "hung")

        calls: list[int] = []
        healthy = (Policy.breaker(failure_threshold=3) | Policy.timeout(5)).wrap(
            lambda: calls.append(1) or len(calls), name="healthy"
        )
        assert [healthy() for _ in range(5)] == [1, 2, 3, 4, 5]
        assert _threads.node_abandoned_threads("healthy") == 0
    finally:
        release.set()
    _wait_until_no_abandoned_threads()


def test_process_wide_cap_is_neutral_for_a_healthy_nodes_breaker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At the process-wide cap every node is refused, and no breaker counts it."""
    monkeypatch.setattr(_threads, "MAX_ABANDONED_THREADS_TOTAL", 2)
    release = threading.Event()
    try:
        _hang("a", 1, release)
        _hang("b", 1, release)
        assert _threads.abandoned_threads() == 2
        node = create_node(
            lambda state: {"ok": True},
            name="healthy",
            policy=Policy.breaker(failure_threshold=1) | Policy.timeout(5),
        )
        with capture_logs() as logs:
            updates = [node({}) for _ in range(3)]
        assert node.breaker is not None
        assert node.breaker.status().state == "closed"
        assert node.breaker.status().failure_count == 0
        (record,) = updates[-1]["errors"]
        assert (record["error_type"], record["category"], record["retryable"]) == (
            "AbandonedThreadLimitError",
            "rejected",  # a local refusal, no longer filed under circuit_open
            False,
        )
        assert "2 abandoned worker threads in this process" in record["message"]
        limits = events(logs, LogEvent.NODE_THREAD_LIMIT_REACHED)
        assert [(e["limit"], e["scope"]) for e in limits] == [(2, "process")] * 3
    finally:
        release.set()
    _wait_until_no_abandoned_threads()
    assert create_node(lambda state: {"ok": True}, name="c", policy=Policy.timeout(5))({}) == {
        "ok": True
    }


def test_a_node_at_its_own_limit_does_not_trip_its_breaker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The refusals after a node's own timeouts add nothing to its breaker's count."""
    monkeypatch.setattr(_threads, "MAX_ABANDONED_THREADS", 1)
    release = threading.Event()
    breaker_timeout = (Policy.breaker(failure_threshold=2) | Policy.timeout(0.005)).wrap(
        lambda: release.wait(5), name="stuck"
    )
    try:
        with pytest.raises(NodeTimeoutError):
            breaker_timeout()  # a real timeout: counted
        for _ in range(3):
            with pytest.raises(AbandonedThreadLimitError):
                breaker_timeout()  # our refusals: neutral
    finally:
        release.set()
    _wait_until_no_abandoned_threads()
    # Still closed, with the one counted timeout: the next call runs.
    assert breaker_timeout() is True


@pytest.mark.parametrize("limit", ["node", "process"])
@pytest.mark.anyio
async def test_sync_on_timeout_runs_once_per_timeout_at_the_thread_limit(
    limit: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync on_timeout is never refused by the abandoned-thread limits.

    The issue's figures: after 32 stuck calls elsewhere an async node timed out
    3 times and its cleanup ran 0 times.
    """
    if limit == "node":
        monkeypatch.setattr(_threads, "MAX_ABANDONED_THREADS", 1)
    else:
        monkeypatch.setattr(_threads, "MAX_ABANDONED_THREADS_TOTAL", 1)
    release = threading.Event()
    ran: list[threading.Thread] = []
    timed = wrap_timeout(
        sleep_long,
        TimeoutConfig(seconds=0.01, on_timeout=lambda: ran.append(threading.current_thread())),
        name="a",
    )
    try:
        _hang("a" if limit == "node" else "elsewhere", 1, release)
        with capture_logs() as logs:
            for _ in range(3):
                with pytest.raises(NodeTimeoutError) as caught:
                    await timed()
                assert caught.value.__cause__ is None
        assert len(ran) == 3
        assert threading.current_thread() not in ran
        assert events(logs, LogEvent.NODE_ON_TIMEOUT_FAILED) == []
        assert events(logs, LogEvent.NODE_THREAD_LIMIT_REACHED) == []
    finally:
        release.set()
    await _wait_for(lambda: _threads.abandoned_threads() == 0)


@pytest.mark.anyio
async def test_sync_on_timeout_does_not_queue_behind_anyios_thread_limiter() -> None:
    """With anyio's default thread limiter used up, a sync on_timeout still runs."""
    limiter = anyio.to_thread.current_default_thread_limiter()
    saved = limiter.total_tokens
    release = threading.Event()
    ran: list[int] = []
    timed = wrap_timeout(
        sleep_long,
        TimeoutConfig(seconds=0.01, on_timeout=lambda: ran.append(1), cleanup_timeout=0.5),
        name="q",
    )
    limiter.total_tokens = 1
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(functools.partial(anyio.to_thread.run_sync, release.wait, 5))
            await _wait_for(lambda: limiter.borrowed_tokens == 1)
            with pytest.raises(NodeTimeoutError) as caught:
                await timed()
            release.set()
    finally:
        release.set()
        limiter.total_tokens = saved
    assert caught.value.__cause__ is None
    assert ran == [1]


def test_sync_on_timeout_runs_for_the_timeout_that_reaches_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The cleanup of the timeout that fills a sync node's budget still runs."""
    monkeypatch.setattr(_threads, "MAX_ABANDONED_THREADS", 1)
    release = threading.Event()
    ran: list[NodeTimeoutError] = []
    try:
        with pytest.raises(NodeTimeoutError) as caught:
            with_timeout(lambda: release.wait(5), 0.005, name="s", on_timeout=ran.append)
        assert ran == [caught.value]
        assert caught.value.__cause__ is None
    finally:
        release.set()
    _wait_until_no_abandoned_threads()


def test_an_overrunning_cleanup_is_counted_against_its_node() -> None:
    """A cleanup thread that overruns its bound is counted as the node's abandoned thread."""
    release = threading.Event()
    try:
        with pytest.raises(NodeTimeoutError):
            wrap_timeout(
                lambda: release.wait(5),
                TimeoutConfig(
                    seconds=0.005, on_timeout=lambda: release.wait(5), cleanup_timeout=0.005
                ),
                name="c",
            )()
        # The call's thread and its cleanup's, both still running.
        assert _threads.node_abandoned_threads("c") == 2
        assert _threads.node_abandoned_threads("other") == 0
    finally:
        release.set()
    _wait_until_no_abandoned_threads()
    assert _threads.node_abandoned_threads("c") == 0


@pytest.mark.parametrize("kind", ["ours", "threading"])
def test_sync_cancel_token(kind: str) -> None:
    """A token set from another thread ends a sync call promptly."""
    token: Any = CancelToken() if kind == "ours" else threading.Event()
    release = threading.Event()
    timer = threading.Timer(0.01, token.cancel if kind == "ours" else token.set)
    timer.start()
    start = time.monotonic()
    with pytest.raises(NodeCancellationError):
        with_timeout(lambda: release.wait(2), 10, cancel_token=token)
    assert time.monotonic() - start < 0.5
    release.set()
    timer.join()


def test_sync_cancel_token_set_before() -> None:
    """A token already set means the sync function is never called."""
    token = threading.Event()
    token.set()
    called: list[int] = []
    with pytest.raises(NodeCancellationError):
        with_timeout(lambda: called.append(1), 5, cancel_token=token)
    assert called == []


def test_sync_result() -> None:
    """with_timeout_result works for sync functions too."""
    assert with_timeout_result(lambda: 3, 5).unwrap() == 3
    release = threading.Event()
    result = with_timeout_result(lambda: release.wait(2), 0.01)
    release.set()
    assert result.timed_out
    assert result.elapsed >= 0.01


def test_sync_keyboard_interrupt_while_waiting_abandons_the_thread() -> None:
    """An interrupt while waiting propagates and leaves the thread counted as abandoned."""
    release = threading.Event()

    class Exploding:
        calls = 0

        def is_set(self) -> bool:
            self.calls += 1
            if self.calls > 1:
                raise KeyboardInterrupt
            return False

    with pytest.raises(KeyboardInterrupt):
        with_timeout(lambda: release.wait(2), 5, cancel_token=Exploding())  # type: ignore[call-overload]
    assert _threads.abandoned_threads() == 1
    release.set()
    deadline = time.monotonic() + 2
    while _threads.abandoned_threads() and time.monotonic() < deadline:
        time.sleep(0.001)


def test_sync_thread_finishing_after_abandon_logs_its_error() -> None:
    """An abandoned thread that later fails logs the error type when it ends."""
    release = threading.Event()

    def fail_later() -> None:
        release.wait(2)
        raise ValueError("late")

    with pytest.raises(NodeTimeoutError):
        with_timeout(fail_later, 0.01)
    with capture_logs() as logs:
        release.set()
        deadline = time.monotonic() + 2
        while _threads.abandoned_threads() and time.monotonic() < deadline:
            time.sleep(0.001)
    assert events(logs, LogEvent.NODE_ABANDONED_THREAD_FINISHED)[0]["error"] == "ValueError"


def test_trio_guest_mode_on_an_asyncio_loop_uses_trio_scopes() -> None:
    """With trio as a guest of asyncio, the asyncio fast path stays out of trio's way."""
    import asyncio

    import trio.lowlevel

    async def work() -> str:
        await anyio.sleep(0.01)
        return "ok"

    timed = wrap_timeout(work, TimeoutConfig(seconds=1), name="guest")

    async def host() -> str:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()

        def finished(outcome: Any) -> None:
            done.set_result(outcome)

        trio.lowlevel.start_guest_run(
            timed,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            done_callback=finished,
            host_uses_signal_set_wakeup_fd=True,
        )
        return (await done).unwrap()  # type: ignore[no-any-return]

    assert asyncio.run(host()) == "ok"
    # ...and plain asyncio afterwards still gets asyncio's scope.
    assert asyncio.run(timed()) == "ok"


def test_a_token_cancelled_sync_call_releases_the_timeout_wait_too() -> None:
    """A cancel during a sync call under a timeout frees both waits at once."""
    import time as _time

    from resilient_nodes import CancelToken, ErrorCode, Policy, create_node

    release = threading.Event()

    def slow(state: dict[str, Any]) -> dict[str, Any]:
        release.wait(2)
        return {}

    node = create_node(slow, name="t", policy=Policy.timeout(5))
    token = CancelToken()
    threading.Timer(0.05, token.cancel).start()
    started = _time.monotonic()
    update = node({}, config={"configurable": {"cancel_token": token}})
    assert _time.monotonic() - started < 1.0
    assert update["errors"][0]["code"] == ErrorCode.CANCELLED.value

    # The token's worker thread is released from the timeout's wait too, and
    # ends; what stays running (the impl's thread) is exactly what is counted.
    def ours() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name.startswith("resilient_nodes:")]

    deadline = _time.monotonic() + 1.0
    while len(ours()) > 1 and _time.monotonic() < deadline:
        _time.sleep(0.01)
    assert len(ours()) == 1
    assert _threads.abandoned_threads() == 1
    release.set()
