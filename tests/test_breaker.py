"""Tests for the circuit breaker adapter (resilient_nodes._breaker)."""

from __future__ import annotations

import abc
import contextlib
import functools
import inspect
import math
import pickle
import threading
import traceback
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from resilient_nodes import errors
from resilient_nodes._breaker import (
    BreakerState,
    BreakerStatus,
    NodeCircuitBreaker,
    counts_as_failure,
    wrap_breaker,
)
from resilient_nodes._config import BreakerConfig
from resilient_nodes._logging import LogEvent
from resilient_nodes.errors import (
    ConfigError,
    NodeCancellationError,
    NodeCircuitOpenError,
    NodeRetryExhaustedError,
    NodeTimeoutError,
    _error_attributes,
)

if TYPE_CHECKING:
    from collections.abc import Callable


class FakeClock:
    """A settable clock: recovery timeouts pass when a test says so."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class DictStorage:
    """A minimal BreakerStorage; shared by two breakers it plays a remote store."""

    name = "dict"

    def __init__(self) -> None:
        self.state = "closed"
        self.counter = 0
        self.success_counter = 0
        self.opened_at: datetime | None = None

    def increment_counter(self) -> None:
        self.counter += 1

    def reset_counter(self) -> None:
        self.counter = 0

    def increment_success_counter(self) -> None:
        self.success_counter += 1

    def reset_success_counter(self) -> None:
        self.success_counter = 0


class DownError(ConnectionError):
    """A dependency failure that counts."""


def make(clock: FakeClock | None = None, **kwargs: Any) -> NodeCircuitBreaker:
    kwargs.setdefault("failure_threshold", 3)
    kwargs.setdefault("recovery_timeout", 30.0)
    return NodeCircuitBreaker("node", clock=clock or FakeClock(), **kwargs)


def fail_n(breaker: NodeCircuitBreaker, n: int, error: Exception | None = None) -> None:
    for _ in range(n):
        ticket = breaker.admit()
        breaker.release(ticket, error or DownError("down"))


async def afail() -> None:
    raise DownError("down")


async def aok(value: int = 1) -> int:
    return value


# --- state machine ------------------------------------------------------------------


@pytest.mark.anyio
async def test_trips_after_threshold() -> None:
    """The breaker opens on exactly the failure_threshold-th counted failure."""
    breaker = make(failure_threshold=3)
    guarded = wrap_breaker(afail, breaker, name="node")
    for expected in (1, 2):
        with pytest.raises(DownError):
            await guarded()
        assert breaker.state is BreakerState.CLOSED
        assert breaker.status().failure_count == expected
    with pytest.raises(DownError):
        await guarded()
    assert breaker.state is BreakerState.OPEN


@pytest.mark.anyio
async def test_open_rejects_without_calling() -> None:
    """While open, calls fail with NodeCircuitOpenError and the function never runs."""
    clock = FakeClock()
    breaker = make(clock, failure_threshold=2, recovery_timeout=30.0)
    fail_n(breaker, 2)
    calls = 0

    async def target() -> int:
        nonlocal calls
        calls += 1
        return 1

    guarded = wrap_breaker(target, breaker, name="plan")
    clock.advance(10.0)
    with pytest.raises(NodeCircuitOpenError) as caught:
        await guarded()
    assert calls == 0
    assert caught.value.failure_count == 2
    assert caught.value.recovery_time == pytest.approx(20.0)
    assert caught.value.node == "plan"


def test_rejection_error_is_the_real_error() -> None:
    """The fast-built rejection equals one built by NodeCircuitOpenError itself."""
    clock = FakeClock()
    breaker = make(clock, failure_threshold=2, recovery_timeout=30.0)
    fail_n(breaker, 2)
    for step in (0.0, 7.25, 0.0004, 12.3456):
        clock.advance(step)
        with pytest.raises(NodeCircuitOpenError) as caught:
            breaker.admit()
        error = caught.value
        reference = NodeCircuitOpenError(
            failure_count=2, recovery_time=error.recovery_time, node="node"
        )
        assert type(error) is NodeCircuitOpenError
        assert error.args == reference.args
        assert _error_attributes(error) == _error_attributes(reference)
        assert vars(error) == vars(reference)
        assert set(vars(error)) == {"failure_count", "node", "recovery_time"}
        clone = pickle.loads(pickle.dumps(error))
        assert _error_attributes(clone) == _error_attributes(error)
        assert str(clone) == str(reference)


@pytest.mark.anyio
async def test_half_open_admits_one_probe_among_50() -> None:
    """In half-open, 50 concurrent callers: exactly one runs, 49 are rejected at once."""
    clock = FakeClock()
    breaker = make(clock, failure_threshold=1, recovery_timeout=5.0)
    fail_n(breaker, 1)
    clock.advance(5.0)
    gate = anyio.Event()
    runs = 0
    rejected: list[NodeCircuitOpenError] = []

    async def probe() -> None:
        nonlocal runs
        runs += 1
        await gate.wait()

    guarded = wrap_breaker(probe, breaker, name="node")

    async def caller() -> None:
        try:
            await guarded()
        except NodeCircuitOpenError as error:
            rejected.append(error)

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(caller)
        await anyio.wait_all_tasks_blocked()
        assert runs == 1
        assert len(rejected) == 49
        assert {e.recovery_time for e in rejected} == {0.0}
        assert breaker.status().probe_in_flight
        gate.set()
    assert breaker.state is BreakerState.CLOSED


def test_half_open_admits_one_probe_among_50_threads() -> None:
    """The one-probe rule holds for 50 threads racing through a sync node."""
    clock = FakeClock()
    breaker = make(clock, failure_threshold=1, recovery_timeout=5.0)
    fail_n(breaker, 1)
    clock.advance(5.0)
    gate = threading.Event()
    start = threading.Barrier(50)
    runs: list[int] = []
    rejected: list[int] = []

    def probe() -> None:
        runs.append(1)
        gate.wait(5.0)

    guarded = wrap_breaker(probe, breaker, name="node")

    def caller() -> None:
        start.wait()
        try:
            guarded()
        except NodeCircuitOpenError:
            rejected.append(1)

    threads = [threading.Thread(target=caller) for _ in range(50)]
    for thread in threads:
        thread.start()
    for _ in range(500):
        if len(runs) + len(rejected) == 50:
            break
        threading.Event().wait(0.01)
    assert (len(runs), len(rejected)) == (1, 49)
    gate.set()
    for thread in threads:
        thread.join()
    assert breaker.state is BreakerState.CLOSED


@pytest.mark.anyio
async def test_cancelled_probe_frees_slot_and_records_nothing() -> None:
    """A probe cancelled by the backend records nothing, and the next caller may probe."""
    clock = FakeClock()
    breaker = make(clock, failure_threshold=2, recovery_timeout=5.0)
    fail_n(breaker, 2)
    clock.advance(5.0)
    started = anyio.Event()

    async def hang() -> None:
        started.set()
        await anyio.sleep_forever()

    guarded = wrap_breaker(hang, breaker, name="node")
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(guarded)
            await started.wait()
            assert breaker.status().probe_in_flight
            scope.cancel()
    status = breaker.status()
    assert status.state is BreakerState.HALF_OPEN
    assert status.failure_count == 2
    assert status.success_count == 0
    assert not status.probe_in_flight
    assert await wrap_breaker(aok, breaker, name="node")(7) == 7
    assert breaker.state is BreakerState.CLOSED


@pytest.mark.anyio
async def test_cancelled_call_in_closed_state_records_nothing() -> None:
    """A cancelled call neither counts as a failure nor resets the failure count."""
    breaker = make(failure_threshold=3)
    fail_n(breaker, 2)

    async def hang() -> None:
        await anyio.sleep_forever()

    with anyio.move_on_after(0):
        await wrap_breaker(hang, breaker, name="node")()
    assert breaker.status().failure_count == 2
    assert breaker.state is BreakerState.CLOSED


def test_control_flow_records_nothing() -> None:
    """KeyboardInterrupt and LangGraph-style control flow pass through uncounted."""

    class GraphBubbleUp(Exception):  # noqa: N818 - mirrors LangGraph's class name
        pass

    GraphBubbleUp.__module__ = "langgraph.errors"
    breaker = make(failure_threshold=1)
    for error in (KeyboardInterrupt(), GraphBubbleUp()):

        def raiser(error: BaseException = error) -> None:
            raise error

        with pytest.raises(type(error)) as caught:
            wrap_breaker(raiser, breaker, name="node")()
        assert caught.value is error
    assert breaker.state is BreakerState.CLOSED
    assert breaker.status().failure_count == 0


def test_stale_success_does_not_close_reopened_breaker() -> None:
    """A success admitted while closed, finishing after open-probe-reopen, changes nothing."""
    clock = FakeClock()
    breaker = make(clock, failure_threshold=1, recovery_timeout=5.0)
    slow = breaker.admit()
    fail_n(breaker, 1)
    clock.advance(5.0)
    probe = breaker.admit()
    breaker.release(probe, DownError("still down"))
    assert breaker.state is BreakerState.OPEN
    breaker.release(slow, None)
    assert breaker.state is BreakerState.OPEN
    assert breaker.status().failure_count == 2


def test_stale_probe_does_not_close_after_reset_and_reopen() -> None:
    """A probe from an earlier half-open period is ignored, and releasing twice is harmless."""
    clock = FakeClock()
    breaker = make(clock, failure_threshold=1, recovery_timeout=5.0)
    fail_n(breaker, 1)
    clock.advance(5.0)
    old_probe = breaker.admit()
    breaker.reset()
    fail_n(breaker, 1)
    breaker.release(old_probe, None)
    breaker.release(old_probe, None)
    assert breaker.state is BreakerState.OPEN


@pytest.mark.anyio
async def test_stale_success_on_both_backends() -> None:
    """Same as the sync case, with real tasks: the slow success arrives last."""
    clock = FakeClock()
    breaker = make(clock, failure_threshold=1, recovery_timeout=5.0)
    gate = anyio.Event()
    results: list[int] = []

    async def slow() -> int:
        await gate.wait()
        return 1

    async with anyio.create_task_group() as tg:

        async def run_slow() -> None:
            results.append(await wrap_breaker(slow, breaker, name="node")())

        tg.start_soon(run_slow)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(DownError):
            await wrap_breaker(afail, breaker, name="node")()
        clock.advance(5.0)
        with pytest.raises(DownError):
            await wrap_breaker(afail, breaker, name="node")()
        assert breaker.state is BreakerState.OPEN
        gate.set()
    assert results == [1]
    assert breaker.state is BreakerState.OPEN


def test_success_threshold_above_one() -> None:
    """With success_threshold=3, three successful probes in a row close the breaker."""
    clock = FakeClock()
    breaker = make(clock, failure_threshold=1, recovery_timeout=5.0, success_threshold=3)
    fail_n(breaker, 1)
    clock.advance(5.0)
    for done in (1, 2):
        breaker.release(breaker.admit(), None)
        assert breaker.state is BreakerState.HALF_OPEN
        assert breaker.status().success_count == done
    breaker.release(breaker.admit(), None)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.status().failure_count == 0


def test_failed_probe_reopens_for_a_full_timeout() -> None:
    """A failed probe opens the circuit again, with the recovery clock restarted."""
    clock = FakeClock()
    breaker = make(clock, failure_threshold=1, recovery_timeout=5.0, success_threshold=2)
    fail_n(breaker, 1)
    clock.advance(5.0)
    breaker.release(breaker.admit(), None)
    breaker.release(breaker.admit(), DownError("again"))
    status = breaker.status()
    assert status.state is BreakerState.OPEN
    assert status.time_until_recovery == pytest.approx(5.0)
    assert status.success_count == 0


# --- what counts --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "counted"),
    [
        (DownError("x"), True),
        (TimeoutError(), True),
        (NodeTimeoutError(1.0), True),
        (NodeRetryExhaustedError(3, DownError("x")), True),
        (RuntimeError("who knows"), True),
        (ValueError("bad input"), False),
        (TypeError("bug"), False),
        (NodeCancellationError(), False),
        (NodeCircuitOpenError(failure_count=1, recovery_time=1.0), False),
        (KeyboardInterrupt(), False),
    ],
)
def test_counts_as_failure_table(error: BaseException, counted: bool) -> None:
    """The documented table: dependency failures count, caller mistakes do not."""
    assert counts_as_failure(error) is counted


def test_http_status_decides() -> None:
    """A 503 counts, a 404 (the server answered) does not."""

    class HTTPError(Exception):
        def __init__(self, status_code: int) -> None:
            super().__init__(status_code)
            self.status_code = status_code

    assert counts_as_failure(HTTPError(503))
    assert not counts_as_failure(HTTPError(404))


def test_validation_errors_neither_trip_nor_reset() -> None:
    """Validation errors never open the circuit and keep the consecutive-failure count."""
    breaker = make(failure_threshold=3)
    fail_n(breaker, 2)
    fail_n(breaker, 10, ValueError("bad input"))
    assert breaker.state is BreakerState.CLOSED
    assert breaker.status().failure_count == 2
    fail_n(breaker, 1)
    assert breaker.state is BreakerState.OPEN


def test_neutral_probe_keeps_half_open_and_frees_slot() -> None:
    """A probe ending in a validation error neither closes nor reopens the circuit."""
    clock = FakeClock()
    breaker = make(clock, failure_threshold=1, recovery_timeout=5.0)
    fail_n(breaker, 1)
    clock.advance(5.0)
    breaker.release(breaker.admit(), ValueError("bad"))
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.can_execute()


def test_abc_exception_classes_are_not_all_excluded() -> None:
    """pybreaker's exclude trap: ABC-derived exceptions are judged by their class, not called."""

    class AbstractDownError(ConnectionError, metaclass=abc.ABCMeta):
        pass

    class AbstractBadInputError(ValueError, metaclass=abc.ABCMeta):
        pass

    breaker = make(failure_threshold=2)
    fail_n(breaker, 5, AbstractBadInputError("bad"))
    assert breaker.status().failure_count == 0
    fail_n(breaker, 2, AbstractDownError("down"))
    assert breaker.state is BreakerState.OPEN


def test_user_error_propagates_unchanged() -> None:
    """The caller gets its own exception object, with no pybreaker frames grafted on."""
    breaker = make(failure_threshold=1)
    error = DownError("down")

    def boom() -> None:
        raise error

    with pytest.raises(DownError) as caught:
        wrap_breaker(boom, breaker, name="node")()
    assert caught.value is error
    frames = traceback.extract_tb(caught.value.__traceback__)
    assert not any("pybreaker" in frame.filename for frame in frames)
    assert breaker.state is BreakerState.OPEN


# --- reset, status, queries ----------------------------------------------------------


def test_reset_closes_and_forgets() -> None:
    """reset() closes an open breaker, clears failures, and stale tickets stay stale."""
    clock = FakeClock()
    breaker = make(clock, failure_threshold=2)
    early = breaker.admit()
    fail_n(breaker, 2)
    breaker.reset()
    status = breaker.status()
    assert status.state is BreakerState.CLOSED
    assert (status.failure_count, status.last_failure_time) == (0, None)
    fail_n(breaker, 1)
    breaker.release(early, None)  # from before the reset: must not wipe the new failure
    assert breaker.status().failure_count == 1


def test_status_figures() -> None:
    """status() reports state, counts, last failure time and time until recovery."""
    clock = FakeClock(100.0)
    breaker = make(clock, failure_threshold=2, recovery_timeout=30.0)
    assert breaker.status() == BreakerStatus(
        name="node",
        state=BreakerState.CLOSED,
        failure_count=0,
        success_count=0,
        last_failure_time=None,
        time_until_recovery=0.0,
        probe_in_flight=False,
    )
    fail_n(breaker, 1)
    clock.advance(3.0)
    fail_n(breaker, 1)
    clock.advance(10.0)
    status = breaker.status()
    assert status.state is BreakerState.OPEN
    assert status.failure_count == 2
    assert status.last_failure_time == 103.0
    assert status.time_until_recovery == pytest.approx(20.0)
    clock.advance(25.0)
    assert breaker.status().time_until_recovery == 0.0
    assert breaker.state is BreakerState.OPEN  # moves to half-open on the next admission


def test_can_execute_takes_nothing() -> None:
    """can_execute() answers for each state without consuming the probe slot."""
    clock = FakeClock()
    breaker = make(clock, failure_threshold=1, recovery_timeout=5.0)
    assert breaker.can_execute()
    fail_n(breaker, 1)
    assert not breaker.can_execute()
    clock.advance(5.0)
    assert breaker.can_execute()
    assert breaker.can_execute()
    probe = breaker.admit()
    assert breaker.state is BreakerState.HALF_OPEN
    assert not breaker.can_execute()
    breaker.release(probe, None)
    assert breaker.can_execute()


def test_manual_recording() -> None:
    """record_failure/record_success drive the breaker without tickets; open ignores them."""
    clock = FakeClock()
    breaker = make(clock, failure_threshold=2, recovery_timeout=5.0)
    breaker.record_failure(ValueError("not counted"))
    breaker.record_failure(DownError("a"))
    breaker.record_success()
    assert breaker.status().failure_count == 0
    breaker.record_failure(DownError("a"))
    breaker.record_failure(DownError("b"))
    assert breaker.state is BreakerState.OPEN
    breaker.record_success()
    assert breaker.state is BreakerState.OPEN
    clock.advance(5.0)
    breaker.release(breaker.admit(), None)
    assert breaker.state is BreakerState.CLOSED


def test_from_config_and_validation() -> None:
    """from_config copies the config; bad values raise ConfigError naming the field."""
    breaker = NodeCircuitBreaker.from_config(
        "n", BreakerConfig(failure_threshold=7, recovery_timeout=timedelta(seconds=9))
    )
    assert breaker.config == BreakerConfig(failure_threshold=7, recovery_timeout=9.0)
    assert "closed" in repr(breaker)
    with pytest.raises(ConfigError, match="failure_threshold"):
        NodeCircuitBreaker("n", failure_threshold=0)


def test_guard_context_manager() -> None:
    """guard() admits on entry and records the body's outcome on exit."""
    breaker = make(failure_threshold=2)
    for _ in range(2):
        with pytest.raises(DownError), breaker.guard():
            raise DownError("x")
    with pytest.raises(NodeCircuitOpenError), breaker.guard(node="other"):
        pytest.fail("body must not run")  # pragma: no cover


# --- concurrency ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_no_lock_held_across_await() -> None:
    """While one call awaits inside the breaker, others are admitted and finish."""
    breaker = make()
    gate = anyio.Event()
    finished: list[str] = []

    async def slow() -> None:
        await gate.wait()
        finished.append("slow")

    async with anyio.create_task_group() as tg:
        tg.start_soon(wrap_breaker(slow, breaker, name="node"))
        await anyio.wait_all_tasks_blocked()
        with anyio.fail_after(5):
            assert await wrap_breaker(aok, breaker, name="node")(3) == 3
            breaker.status()
            breaker.reset()
        finished.append("fast")
        gate.set()
    assert finished == ["fast", "slow"]


def test_no_lock_held_across_a_sync_call_in_a_thread() -> None:
    """A sync call blocked in one thread does not stop another thread's call."""
    breaker = make()
    gate = threading.Event()
    inside = threading.Event()

    def slow() -> None:
        inside.set()
        assert gate.wait(5.0)

    worker = threading.Thread(target=wrap_breaker(slow, breaker, name="node"))
    worker.start()
    assert inside.wait(5.0)
    done = threading.Event()

    def quick() -> None:
        wrap_breaker(lambda: None, breaker, name="node")()
        done.set()

    threading.Thread(target=quick).start()
    assert done.wait(5.0)
    gate.set()
    worker.join()


def test_threads_hammering_keep_counts_consistent() -> None:
    """8 threads x 250 failures: no count is lost, and the breaker opens exactly at the threshold."""
    big = make(failure_threshold=1_000_000)
    small = make(failure_threshold=500)
    start = threading.Barrier(8)

    def boom() -> None:
        raise DownError("x")

    guarded_big = wrap_breaker(boom, big, name="node")
    guarded_small = wrap_breaker(boom, small, name="node")

    def hammer() -> None:
        start.wait()
        for _ in range(250):
            for guarded in (guarded_big, guarded_small):
                with contextlib.suppress(DownError, NodeCircuitOpenError):
                    guarded()

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert big.status().failure_count == 2000
    assert small.state is BreakerState.OPEN
    assert small.status().failure_count == 500


# --- logging -------------------------------------------------------------------------


def test_state_changes_are_logged() -> None:
    """Every transition logs breaker.state_changed with node, old and new state."""
    clock = FakeClock()
    with capture_logs() as logs:
        breaker = make(clock, failure_threshold=1, recovery_timeout=5.0)
        fail_n(breaker, 1)
        clock.advance(5.0)
        breaker.release(breaker.admit(), None)
        breaker.reset()  # already closed: no event
    changes = [
        (entry["node"], entry["old_state"], entry["new_state"], entry["log_level"])
        for entry in logs
        if entry["event"] == LogEvent.BREAKER_STATE_CHANGED
    ]
    assert changes == [
        ("node", "closed", "open", "warning"),
        ("node", "open", "half_open", "info"),
        ("node", "half_open", "closed", "info"),
    ]


# --- wrap_breaker ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_wrap_breaker_keeps_kind_and_signature() -> None:
    """Async stays async (also partials and async __call__), sync stays sync; signatures kept."""

    async def afn(state: dict[str, int], config: object = None) -> int:
        return state["x"]

    def sfn(state: dict[str, int], *, flag: bool = False) -> int:
        return state["x"] + flag

    class AsyncCallable:
        async def __call__(self, state: dict[str, int]) -> int:
            return state["x"] * 10

    breaker = make()
    cases: list[tuple[Callable[..., Any], bool, int]] = [
        (afn, True, 1),
        (sfn, False, 1),
        (functools.partial(afn, config=None), True, 1),
        (AsyncCallable(), True, 10),
        (functools.partial(sfn, flag=True), False, 2),
    ]
    for fn, is_async, expected in cases:
        guarded = wrap_breaker(fn, breaker, name="node")
        assert inspect.iscoroutinefunction(guarded) is is_async
        assert inspect.signature(guarded) == inspect.signature(fn)
        result = guarded({"x": 1})
        assert (await result if is_async else result) == expected
    assert wrap_breaker(afn, breaker, name="node").__name__ == "afn"
    with pytest.raises(TypeError):
        wrap_breaker(42, breaker, name="node")  # type: ignore[call-overload]


def test_sync_wrapper_rejects_and_probes() -> None:
    """The sync shell follows the same admission rules as the async one."""
    clock = FakeClock()
    breaker = make(clock, failure_threshold=1, recovery_timeout=5.0)

    def boom() -> None:
        raise DownError("x")

    with pytest.raises(DownError):
        wrap_breaker(boom, breaker, name="node")()
    with pytest.raises(NodeCircuitOpenError):
        wrap_breaker(boom, breaker, name="node")()
    clock.advance(5.0)
    assert wrap_breaker(lambda: 5, breaker, name="node")() == 5
    assert breaker.state is BreakerState.CLOSED


# --- storage seam and fast/slow equivalence -------------------------------------------


def test_shared_storage_sees_another_breakers_transition() -> None:
    """Two breakers on one storage (two processes) act as one breaker."""
    storage = DictStorage()
    clock = FakeClock()
    first = make(clock, failure_threshold=2, recovery_timeout=5.0, storage=storage)
    second = make(clock, failure_threshold=2, recovery_timeout=5.0, storage=storage)
    fail_n(first, 1)
    fail_n(second, 1)  # the second failure overall: this one trips it
    assert storage.opened_at == datetime.fromtimestamp(clock.now, UTC)
    clock.advance(1.0)
    with capture_logs() as logs, pytest.raises(NodeCircuitOpenError) as caught:
        first.admit()
    # first adopts the stored opened_at instead of stamping its own.
    assert caught.value.recovery_time == pytest.approx(4.0)
    assert [(e["old_state"], e["new_state"]) for e in logs] == [("closed", "open")]
    clock.advance(4.0)
    clock.advance(5.0)
    second.release(second.admit(), None)
    assert first.state is BreakerState.CLOSED
    assert first.can_execute()


_OPS = st.lists(
    st.one_of(
        st.just("ok"),
        st.just("fail"),
        st.just("neutral"),
        st.just("cancel"),
        st.just("reset"),
        st.floats(min_value=0.0, max_value=8.0),
    ),
    max_size=40,
)


def _drive(breaker: NodeCircuitBreaker, clock: FakeClock, ops: list[Any]) -> list[Any]:
    trace: list[Any] = []
    errors = {"fail": DownError("x"), "neutral": ValueError("x"), "cancel": KeyboardInterrupt()}
    for op in ops:
        if isinstance(op, float):
            clock.advance(op)
        elif op == "reset":
            breaker.reset()
        else:
            try:
                ticket = breaker.admit()
            except NodeCircuitOpenError as error:
                trace.append(("rejected", error.failure_count, round(error.recovery_time, 6)))
                continue
            breaker.release(ticket, errors.get(op))
        status = breaker.status()
        trace.append((status.state, status.failure_count, status.success_count))
    return trace


@settings(max_examples=150, deadline=None)
@given(ops=_OPS)
def test_fast_and_slow_paths_agree(ops: list[Any]) -> None:
    """In-memory (lock-free fast paths) and external storage (always locked) behave alike."""
    fast_clock, slow_clock = FakeClock(), FakeClock()
    fast = make(fast_clock, failure_threshold=2, recovery_timeout=5.0, success_threshold=2)
    slow = make(
        slow_clock,
        failure_threshold=2,
        recovery_timeout=5.0,
        success_threshold=2,
        storage=DictStorage(),
    )
    assert _drive(fast, fast_clock, ops) == _drive(slow, slow_clock, ops)


def test_manual_recording_on_shared_storage() -> None:
    """record_failure on an external storage re-reads it first and counts once."""
    storage = DictStorage()
    breaker = make(failure_threshold=2, storage=storage)
    breaker.record_failure(DownError("a"))
    assert storage.counter == 1


def test_rejection_with_a_template_lacking_the_recovery_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A customised template without {recovery_time} still yields the constructor's message."""
    template = "node {node} is open ({failure_count})"
    monkeypatch.setitem(errors.MESSAGE_TEMPLATES, errors.ErrorCode.CIRCUIT_OPEN, template)  # type: ignore[arg-type]
    breaker = make(failure_threshold=1)
    fail_n(breaker, 1)
    with pytest.raises(NodeCircuitOpenError) as caught:
        breaker.admit()
    assert str(caught.value) == "node node is open (1)"
    assert caught.value.recovery_time > 0


def test_rejection_messages_match_the_constructor() -> None:
    """The memoised rejection message is the one the error's constructor renders.

    Remaining times are swept in rising and falling order across millisecond
    rounding edges, so the memo is primed by a neighbour each time.
    """
    breaker = NodeCircuitBreaker("node", failure_threshold=1, recovery_timeout=60)
    breaker.record_failure(ConnectionError("down"))
    times = [k / 4000.0 for k in range(1, 8_001)]
    checked = 0
    for remaining in [*times, *reversed(times), math.nextafter(0.0005, 0.0), 0.0005]:
        got = breaker._epoch.reject("node", remaining)
        direct = NodeCircuitOpenError(failure_count=1, recovery_time=remaining, node="node")
        assert (got.args, got.recovery_time, got.failure_count) == (
            direct.args,
            direct.recovery_time,
            direct.failure_count,
        ), remaining
        checked += 1
    assert checked > 16_000


def test_circuit_open_error_mixes_with_os_errors() -> None:
    """Users can derive from NodeCircuitOpenError and an OSError-family class."""

    class CircuitDownError(NodeCircuitOpenError, ConnectionError):
        pass

    error = CircuitDownError(failure_count=3, recovery_time=1.5, node="n")
    assert isinstance(error, ConnectionError)
    assert (error.failure_count, error.recovery_time, error.node) == (3, 1.5, "n")


def test_a_note_added_to_one_rejection_is_not_in_the_next() -> None:
    """Rejections are separate errors: what a caller adds to one stays on it."""
    breaker = NodeCircuitBreaker("node", failure_threshold=1, recovery_timeout=60)
    breaker.record_failure(ConnectionError("down"))
    with pytest.raises(NodeCircuitOpenError) as first:
        breaker.admit()
    first.value.add_note("seen by the first caller")
    first.value.recovery_time = -1.0
    with pytest.raises(NodeCircuitOpenError) as second:
        breaker.admit()
    assert not getattr(second.value, "__notes__", [])
    assert second.value.recovery_time > 0
    assert second.value is not first.value
