"""Breaker trip rules over a window of calls: failure rate and slow-call rate."""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import pytest

from resilient_nodes import (
    ConfigError,
    NodeBulkheadFullError,
    NodeCircuitBreaker,
    NodeCircuitOpenError,
    NodeRateLimitedError,
    Policy,
)
from resilient_nodes._breaker import BreakerState, wrap_breaker


class FakeClock:
    """A settable clock; a slow call advances it."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _outcomes(breaker: NodeCircuitBreaker, pattern: str) -> None:
    """Feed *pattern* through the breaker: ``s`` success, ``f`` failure, ``n`` neutral."""
    for mark in pattern:
        ticket = breaker.admit()
        error: BaseException | None = {
            "s": None,
            "f": ConnectionError("down"),
            "n": ValueError("bad request"),
            "r": NodeRateLimitedError(1, 1.0),
            "b": NodeBulkheadFullError(1, 0),
        }[mark]
        breaker.release(ticket, error)


def test_failure_rate_opens_once_minimum_calls_are_in_the_window() -> None:
    """Half the window failing opens it, but only from the minimum number of calls."""
    breaker = NodeCircuitBreaker(
        "rate", failure_threshold=1000, failure_rate=0.5, window=10, minimum_calls=6
    )
    _outcomes(breaker, "fffff")  # 100% but only 5 calls
    assert breaker.state is BreakerState.CLOSED
    _outcomes(breaker, "s")  # 5 of 6 failed
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(NodeCircuitOpenError):
        breaker.admit()


def test_failure_rate_slides_over_the_last_window_calls() -> None:
    """Old failures leave the window: 4 of the last 10 stay under a 0.5 rate."""
    breaker = NodeCircuitBreaker(
        "slide", failure_threshold=1000, failure_rate=0.5, window=10, minimum_calls=10
    )
    _outcomes(breaker, "ffff" + "s" * 5)  # 9 calls: below the minimum
    _outcomes(breaker, "s" * 10)  # the failures slide out
    _outcomes(breaker, "sfsfsfsf")  # 4 of the last 10
    assert breaker.state is BreakerState.CLOSED
    _outcomes(breaker, "f")  # 5 of the last 10
    assert breaker.state is BreakerState.OPEN


def test_neutral_errors_and_our_rejections_are_not_in_the_window() -> None:
    """Validation errors, rate-limit and bulkhead refusals neither fail nor count as calls."""
    breaker = NodeCircuitBreaker(
        "neutral", failure_threshold=1000, failure_rate=0.5, window=4, minimum_calls=4
    )
    _outcomes(breaker, "nrbnrbnrb" * 5)
    assert breaker.state is BreakerState.CLOSED
    _outcomes(breaker, "fss")  # three calls in the window: under the minimum
    assert breaker.state is BreakerState.CLOSED
    _outcomes(breaker, "f")
    assert breaker.state is BreakerState.OPEN


def test_consecutive_rule_still_applies() -> None:
    """The rate rules add to the consecutive-failure rule; they do not replace it."""
    breaker = NodeCircuitBreaker(
        "both", failure_threshold=3, failure_rate=0.9, window=20, minimum_calls=20
    )
    _outcomes(breaker, "fff")
    assert breaker.state is BreakerState.OPEN


@pytest.mark.anyio
async def test_slow_calls_open_it_and_the_slow_call_itself_returns() -> None:
    """Two slow calls in four: the second returns its result, the next call is refused."""
    clock = FakeClock()
    breaker = NodeCircuitBreaker(
        "slow",
        failure_threshold=1000,
        slow_call_duration=2.0,
        slow_call_rate=0.5,
        window=4,
        minimum_calls=4,
        clock=clock,
    )

    async def call(seconds: float) -> str:
        clock.now += seconds
        await anyio.lowlevel.checkpoint()
        return f"took {seconds:g}"

    guarded: Any = wrap_breaker(call, breaker, name="slow")
    assert await guarded(0.1) == "took 0.1"
    assert await guarded(3) == "took 3"
    assert await guarded(0.1) == "took 0.1"
    assert breaker.state is BreakerState.CLOSED
    assert await guarded(2) == "took 2"  # slow (>= 2 s): 2 of 4, and it trips
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(NodeCircuitOpenError):
        await guarded(0.1)


def test_after_a_rate_trip_one_probe_decides_and_the_window_starts_afresh() -> None:
    """The same half-open state machine: one probe; closing clears the window."""
    clock = FakeClock()
    breaker = NodeCircuitBreaker(
        "probe",
        failure_threshold=1000,
        recovery_timeout=10,
        failure_rate=0.5,
        window=4,
        minimum_calls=4,
        clock=clock,
    )
    _outcomes(breaker, "ffss")
    assert breaker.state is BreakerState.OPEN
    clock.now += 10
    probe = breaker.admit()
    with pytest.raises(NodeCircuitOpenError) as caught:
        breaker.admit()  # one probe at a time
    assert caught.value.recovery_time == 0
    breaker.release(probe)
    assert breaker.state is BreakerState.CLOSED
    _outcomes(breaker, "ff")  # the old failures are gone: 2 calls, under the minimum
    assert breaker.state is BreakerState.CLOSED


def test_sync_slow_calls_are_timed_too() -> None:
    """A sync node's calls are timed on the breaker's clock."""
    clock = FakeClock()

    def call() -> str:
        clock.now += 5
        return "ok"

    breaker = NodeCircuitBreaker(
        "sync_slow",
        failure_threshold=1000,
        slow_call_duration=1.0,
        slow_call_rate=1.0,
        window=2,
        minimum_calls=2,
        clock=clock,
    )
    guarded = wrap_breaker(call, breaker, name="sync_slow")
    assert [guarded(), guarded()] == ["ok", "ok"]
    assert breaker.state is BreakerState.OPEN


def test_policy_builder_repr_round_trip_and_checks() -> None:
    """The rules print, round-trip, and bad combinations name their field."""
    policy = Policy.breaker(failure_rate=0.5, slow_call_duration=2, slow_call_rate=0.3)
    assert repr(policy) == (
        "Policy.breaker(failure_rate=0.5, slow_call_duration=2, slow_call_rate=0.3)"
    )
    data = policy.to_dict()["layers"][0]
    assert (data["window"], data["minimum_calls"]) == (20, 10)
    assert Policy.from_dict(policy.to_dict()) == policy
    assert Policy.breaker().to_dict()["layers"][0] == {
        "type": "breaker",
        "failure_threshold": 5,
        "recovery_timeout": 60.0,
        "success_threshold": 1,
    }
    with pytest.raises(ConfigError, match="slow_call_duration and slow_call_rate go together"):
        Policy.breaker(slow_call_duration=1)
    with pytest.raises(ConfigError, match=r"failure_rate: must be > 0, got 0"):
        Policy.breaker(failure_rate=0)
    with pytest.raises(ConfigError, match=r"minimum_calls: must be <= window \(5\), got 10"):
        Policy.breaker(failure_rate=0.5, window=5)


# --- our own refusals are never the dependency's failure ----------------------


@pytest.mark.parametrize(
    "refusal",
    [
        NodeRateLimitedError(1, 1.0),
        NodeBulkheadFullError(1, 0),
        NodeCircuitOpenError(failure_count=1, recovery_time=1.0),
    ],
)
def test_a_retry_exhausted_on_our_refusals_is_not_counted(refusal: Exception) -> None:
    """retry_on=Exception retrying our refusals: the exhaustion says nothing of the dependency."""
    from resilient_nodes import NodeRetryExhaustedError
    from resilient_nodes._breaker import counts_as_failure

    assert not counts_as_failure(refusal)
    assert not counts_as_failure(NodeRetryExhaustedError(3, refusal))
    assert counts_as_failure(NodeRetryExhaustedError(3, ConnectionError("down")))


@pytest.mark.anyio
async def test_rejections_in_a_pipeline_never_open_any_breaker() -> None:
    """Breaker outside a retry told to retry everything, outside a full rate limit."""
    from resilient_nodes import NodeRetryExhaustedError

    async def work() -> str:
        return "ok"

    policy = (
        Policy.breaker(failure_threshold=1, failure_rate=0.1, window=2, minimum_calls=1)
        | Policy.retry(attempts=2, backoff=0, max_retry_after=0, retry_on=Exception)
        | Policy.rate_limit(1, per=60, key=f"pipeline-refusals-{id(work)}", max_wait=0)
    )
    node: Any = policy.wrap(work, name="refusals")
    assert await node() == "ok"
    for _ in range(3):
        with pytest.raises(NodeRetryExhaustedError) as caught:
            await node()
        assert isinstance(caught.value.last_error, NodeRateLimitedError)
    # Still closed: the refusals (and the retries' exhaustion on them) were neutral.
    with pytest.raises(NodeRetryExhaustedError):
        await node()


@pytest.mark.anyio
async def test_timed_shells_record_failures_too() -> None:
    """With a slow rule, a failing call is timed and counted, async and sync."""
    clock = FakeClock()

    async def boom() -> None:
        clock.now += 3
        raise ConnectionError("down")

    def sync_boom() -> None:
        raise ConnectionError("down")

    options: dict[str, Any] = {
        "failure_threshold": 1000,
        "slow_call_duration": 1.0,
        "slow_call_rate": 1.0,
        "window": 2,
        "minimum_calls": 2,
        "clock": clock,
    }
    breaker = NodeCircuitBreaker("timed_async", **options)
    guarded: Any = wrap_breaker(boom, breaker, name="timed_async")
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await guarded()
    assert breaker.state is BreakerState.OPEN  # two slow failures of two
    sync_breaker = NodeCircuitBreaker("timed_sync", **{**options, "failure_rate": 1.0})
    sync_guarded = wrap_breaker(sync_boom, sync_breaker, name="timed_sync")
    for _ in range(2):
        with pytest.raises(ConnectionError):
            sync_guarded()
    assert sync_breaker.state is BreakerState.OPEN


# --- with a shared (Redis) storage -------------------------------------------------------


@pytest.mark.redis
def test_a_rate_trip_opens_the_shared_breaker_for_every_process() -> None:
    """Two storages (two processes, in effect): one's failure rate opens the breaker for both.

    The window is each process's own; its trip is sent to Redis, and from then on
    it is the shared breaker: the other process fails fast, one probe closes it.
    """
    import time
    import uuid

    from redis_fixtures import RedisServer

    from resilient_nodes import RedisBreakerStorage

    prefix = f"t{uuid.uuid4().hex[:12]}"

    def wait_for(predicate: Any, timeout: float = 3.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "condition not reached in time"
            time.sleep(0.005)

    def boom() -> None:
        raise ConnectionError("down")

    rules: dict[str, Any] = {
        "failure_threshold": 1000,
        "recovery_timeout": 0.3,
        "failure_rate": 0.5,
        "window": 4,
        "minimum_calls": 4,
    }
    with (
        RedisServer() as server,
        RedisBreakerStorage(server.url, prefix=prefix, refresh_interval=0.05) as one,
        RedisBreakerStorage(server.url, prefix=prefix, refresh_interval=0.05) as two,
    ):
        first = NodeCircuitBreaker("node", storage=one, **rules)
        second = NodeCircuitBreaker("node", storage=two, **rules)
        failing = wrap_breaker(boom, first, name="node")
        ok_first = wrap_breaker(lambda: "ok", first, name="node")
        for call in (ok_first, failing, ok_first, failing):  # 2 of 4: the rate trips
            with contextlib.suppress(ConnectionError):
                call()
        assert first.state is BreakerState.OPEN
        client = server.client()
        wait_for(lambda: client.hget(f"{prefix}:node:state", "state") == b"open")
        wait_for(lambda: second.state is BreakerState.OPEN)
        with pytest.raises(NodeCircuitOpenError):
            wrap_breaker(lambda: "ok", second, name="node")()
        # Recovery as for any trip: one probe, and both see it closed.
        time.sleep(0.35)
        ok_second = wrap_breaker(lambda: "ok", second, name="node")

        def probe_closes() -> bool:
            with contextlib.suppress(NodeCircuitOpenError):
                ok_second()
            return second.state is BreakerState.CLOSED

        wait_for(probe_closes)
        wait_for(lambda: first.state is BreakerState.CLOSED)
        wait_for(lambda: client.hget(f"{prefix}:node:state", "state") == b"closed")
        client.close()
