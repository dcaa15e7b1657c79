"""Tests for the bulkhead layer (resilient_nodes._bulkhead, Policy.bulkhead)."""

from __future__ import annotations

import inspect
import random
import threading
import time
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from structlog.testing import capture_logs

from resilient_nodes import (
    ConfigError,
    ErrorCategory,
    NodeBulkheadFullError,
    NodeCancellationError,
    Policy,
    classify_error,
)
from resilient_nodes._breaker import counts_as_failure
from resilient_nodes._bulkhead import Bulkhead, wrap_bulkhead
from resilient_nodes._deadline import sync_deadline_scope
from resilient_nodes._logging import LogEvent
from resilient_nodes._tokens import CancelToken, publish_thread_token


class Gauge:
    """Counts calls in flight and remembers the most there ever were."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0
        self.done = 0
        self.lock = threading.Lock()

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1
            self.done += 1


# --- admission, queue and rejection ----------------------------------------------------


@pytest.mark.anyio
async def test_cap_queue_and_rejection() -> None:
    """Two run, one waits, the fourth is rejected at once, logged, without running."""
    gate = anyio.Event()
    gauge = Gauge()

    async def work(i: int) -> int:
        gauge.enter()
        await gate.wait()
        gauge.leave()
        return i

    bulkhead = Bulkhead("n", 2, 1)
    guarded = wrap_bulkhead(work, bulkhead)
    results: list[int] = []

    async def run(i: int) -> None:
        results.append(await guarded(i))

    async with anyio.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(run, i)
        await anyio.wait_all_tasks_blocked()
        assert (bulkhead.in_flight, bulkhead.queued, gauge.now) == (2, 1, 2)
        with capture_logs() as logs, pytest.raises(NodeBulkheadFullError) as caught:
            await guarded(99)
        gate.set()
    assert sorted(results) == [0, 1, 2]
    assert gauge.most == 2
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)
    error = caught.value
    assert (error.max_concurrent, error.max_queue, error.node) == (2, 1, "n")
    assert "2 calls in flight and 1 waiting" in str(error)
    assert [e["event"] for e in logs] == [LogEvent.BULKHEAD_REJECTED]
    assert logs[0]["node"] == "n"
    assert logs[0]["log_level"] == "warning"


@pytest.mark.anyio
async def test_waiters_are_served_first_come_first_served() -> None:
    """A freed slot goes to the oldest waiter; a newcomer never overtakes the queue."""
    gate = anyio.Event()
    order: list[int] = []

    async def work(i: int) -> None:
        order.append(i)
        if i == 0:
            await gate.wait()

    bulkhead = Bulkhead("fifo", 1, 10)
    guarded = wrap_bulkhead(work, bulkhead)
    async with anyio.create_task_group() as tg:
        for i in range(5):
            tg.start_soon(guarded, i)
            await anyio.wait_all_tasks_blocked()
        gate.set()
    assert order == [0, 1, 2, 3, 4]


@pytest.mark.anyio
async def test_error_and_cancellation_free_the_slot() -> None:
    """A call that raises, or is cancelled while running, gives its slot back."""
    bulkhead = Bulkhead("free", 1)

    async def boom() -> None:
        raise ConnectionError("down")

    async def hang() -> None:
        await anyio.sleep_forever()

    with pytest.raises(ConnectionError):
        await wrap_bulkhead(boom, bulkhead)()
    assert bulkhead.in_flight == 0
    with anyio.move_on_after(0.01):
        await wrap_bulkhead(hang, bulkhead)()
    assert bulkhead.in_flight == 0


@pytest.mark.anyio
async def test_slot_handed_to_a_waiter_cancelled_at_that_moment_is_passed_on() -> None:
    """The race of hand-over and cancellation: the slot goes to the next waiter, not lost."""
    bulkhead = Bulkhead("race", 1, 5)
    await bulkhead.acquire_async()  # the running call holds the only slot
    got: list[str] = []

    async def wait(name: str, scope_box: list[anyio.CancelScope]) -> None:
        with anyio.CancelScope() as scope:
            scope_box.append(scope)
            await bulkhead.acquire_async()
            got.append(name)
            bulkhead.release()

    first: list[anyio.CancelScope] = []
    second: list[anyio.CancelScope] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(wait, "first", first)
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(wait, "second", second)
        await anyio.wait_all_tasks_blocked()
        # Hand the slot to "first", then cancel it before it can run.
        bulkhead.release()
        first[0].cancel()
    # asyncio may let "first" use the slot it was handed (its wait had already
    # completed when the cancel came); trio cancels it. Either way the slot
    # reaches "second" and none is lost.
    assert got in (["second"], ["first", "second"])
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)


@pytest.mark.anyio
async def test_cancelled_waiter_leaves_the_queue_and_consumes_nothing() -> None:
    """A waiter cancelled before its turn frees its queue place; the cap is intact."""
    bulkhead = Bulkhead("leave", 1, 1)
    await bulkhead.acquire_async()
    with anyio.move_on_after(0.01) as scope:
        await bulkhead.acquire_async()
    assert scope.cancelled_caught
    assert (bulkhead.in_flight, bulkhead.queued) == (1, 0)
    # The queue place is free again: another waiter fits.
    async with anyio.create_task_group() as tg:
        tg.start_soon(bulkhead.acquire_async)
        await anyio.wait_all_tasks_blocked()
        assert bulkhead.queued == 1
        bulkhead.release()
    assert (bulkhead.in_flight, bulkhead.queued) == (1, 0)
    bulkhead.release()
    assert bulkhead.in_flight == 0


# --- stress: thousands of cancelled waiters ----------------------------------------------


@pytest.mark.anyio
async def test_stress_thousands_of_cancelled_waiters_async() -> None:
    """3,000 callers, two in three cancelled at random points: cap held, nothing leaked."""
    rng = random.Random(18)
    cap = 3
    bulkhead = Bulkhead("stress", cap, 10_000)
    gauge = Gauge()

    async def work() -> None:
        gauge.enter()
        try:
            for _ in range(rng.randint(0, 3)):
                await anyio.lowlevel.checkpoint()
        finally:
            gauge.leave()

    guarded = wrap_bulkhead(work, bulkhead)
    scopes = [anyio.CancelScope() for _ in range(3_000)]
    finished = 0

    async def caller(scope: anyio.CancelScope) -> None:
        nonlocal finished
        with scope:
            await guarded()
            finished += 1

    async with anyio.create_task_group() as tg:
        for scope in scopes:
            tg.start_soon(caller, scope)
        for _ in range(5):
            await anyio.lowlevel.checkpoint()
        victims = rng.sample(range(3_000), 2_000)
        for count, index in enumerate(victims):
            scopes[index].cancel()
            if count % 7 == 0:
                await anyio.lowlevel.checkpoint()
    assert gauge.most <= cap
    assert gauge.now == 0
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)
    assert finished >= 1_000
    assert gauge.done >= finished


def test_stress_cancelled_waiters_threads() -> None:
    """400 threads, a third cancelled through their token and a third past a deadline."""
    cap = 2
    bulkhead = Bulkhead("threads", cap, 10_000)
    gauge = Gauge()

    go = threading.Event()

    def work() -> None:
        gauge.enter()
        go.wait(30)  # the first callers hold their slots until the queue has formed
        gauge.leave()

    guarded = wrap_bulkhead(work, bulkhead)
    tokens = [CancelToken() for _ in range(400)]
    outcomes: list[str] = []
    lock = threading.Lock()

    def caller(i: int) -> None:
        unpublish = publish_thread_token(tokens[i]) if i % 3 == 0 else None
        try:
            if i % 3 == 1:
                with sync_deadline_scope(0.005):
                    guarded()
            else:
                guarded()
            outcome = "ok"
        except NodeCancellationError:
            outcome = "cancelled"
        except NodeBulkheadFullError:
            outcome = "deadline"
        finally:
            if unpublish is not None:
                unpublish()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(400)]
    for thread in threads:
        thread.start()
    # Cancel once every caller is running, waiting, or gone past its deadline.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with lock:
            settled = len(outcomes)
        if settled + bulkhead.queued + bulkhead.in_flight == 400:
            break
        time.sleep(0.005)
    for token in tokens[::3]:
        token.cancel("test")
    go.set()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert gauge.most <= cap
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)
    assert len(outcomes) == 400
    assert outcomes.count("ok") == gauge.done
    assert "cancelled" in outcomes
    assert "deadline" in outcomes


def test_sync_rejection_and_queue() -> None:
    """Sync callers: one runs, one waits in its thread, the third is rejected at once."""
    release = threading.Event()
    started = threading.Event()

    def work(i: int) -> int:
        if i == 0:
            started.set()
            release.wait(5)
        return i

    bulkhead = Bulkhead("sync", 1, 1)
    guarded = wrap_bulkhead(work, bulkhead)
    assert not inspect.iscoroutinefunction(guarded)
    results: list[int] = []
    first = threading.Thread(target=lambda: results.append(guarded(0)))
    first.start()
    started.wait(5)
    second = threading.Thread(target=lambda: results.append(guarded(1)))
    second.start()
    deadline = time.monotonic() + 5
    while bulkhead.queued != 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    with pytest.raises(NodeBulkheadFullError):
        guarded(2)
    release.set()
    first.join(5)
    second.join(5)
    assert results == [0, 1]
    assert (bulkhead.in_flight, bulkhead.queued) == (0, 0)


# --- in a policy -------------------------------------------------------------------------


def test_policy_builder_repr_and_round_trip() -> None:
    """`Policy.bulkhead` prints as its expression and round-trips through plain data."""
    policy = Policy.retry() | Policy.bulkhead(4, max_queue=8) | Policy.timeout(5)
    assert repr(policy) == "Policy.retry() | Policy.bulkhead(4, max_queue=8) | Policy.timeout(5)"
    assert repr(Policy.bulkhead(2)) == "Policy.bulkhead(2)"
    data = policy.to_dict()
    assert data["layers"][1] == {"type": "bulkhead", "max_concurrent": 4, "max_queue": 8}
    assert Policy.from_dict(data) == policy


def test_policy_bad_values_name_the_field() -> None:
    """Bad sizes are a ConfigError naming the field, built or loaded."""
    with pytest.raises(ConfigError, match=r"max_concurrent: must be >= 1, got 0"):
        Policy.bulkhead(0)
    with pytest.raises(ConfigError, match=r"max_queue: must be >= 0, got -1"):
        Policy.bulkhead(1, max_queue=-1)
    with pytest.raises(ConfigError) as caught:
        Policy.from_dict({"layers": [{"type": "bulkhead", "max_concurrent": "x", "queue": 1}]})
    text = str(caught.value)
    assert "layers[0]: unknown key(s): queue" in text
    assert "layers[0].max_concurrent: must be an integer" in text


def test_two_bulkheads_are_rejected() -> None:
    """A bulkhead inside a bulkhead means nothing useful: refused when built."""
    with pytest.raises(ConfigError, match=r"layers\[1\]: a bulkhead inside a bulkhead"):
        Policy.bulkhead(2) | Policy.bulkhead(3)


def test_rejection_is_a_neutral_local_refusal() -> None:
    """Not retryable, category `rejected`, never counted by a breaker."""
    error = NodeBulkheadFullError(2, 0, node="n")
    verdict = classify_error(error)
    assert (verdict.category, verdict.retryable) == (ErrorCategory.REJECTED, False)
    assert not counts_as_failure(error)


@pytest.mark.anyio
async def test_rejections_neither_retried_nor_counted_in_a_pipeline() -> None:
    """Behind a retry and a breaker, a full bulkhead fails fast and the circuit stays closed."""
    gate = anyio.Event()
    calls = 0

    async def work() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        return "ok"

    policy = Policy.retry(backoff=0) | Policy.breaker(failure_threshold=1) | Policy.bulkhead(1)
    guarded: Any = policy.wrap(work, name="piped")
    async with anyio.create_task_group() as tg:
        tg.start_soon(guarded)
        await anyio.wait_all_tasks_blocked()
        for _ in range(3):
            with pytest.raises(NodeBulkheadFullError):
                await guarded()
        gate.set()
    assert calls == 1
    assert await guarded() == "ok"  # the breaker never opened


# --- over a stream -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_over_a_stream_the_slot_is_held_until_the_stream_ends() -> None:
    """A bulkhead bounds streams in flight, not just their openings."""

    async def tokens() -> Any:
        for token in ("a", "b", "c"):
            yield token

    policy = Policy.bulkhead(1) | Policy.stream(idle=5)
    stream_fn: Any = policy.wrap(tokens, name="streams")
    async with stream_fn() as first:
        assert await first.__anext__() == "a"
        # The first stream is still being read: a second one is refused.
        with pytest.raises(NodeBulkheadFullError):
            async with stream_fn() as second:
                await second.__anext__()
        assert [item async for item in first] == ["b", "c"]
    async with stream_fn() as again:  # the slot came back when the stream ended
        assert [item async for item in again] == ["a", "b", "c"]
