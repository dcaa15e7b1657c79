"""Tests for resilient_nodes.testing: the switches users flip in their own tests."""

from __future__ import annotations

import time

import anyio
import anyio.lowlevel
import pytest
import trio
import trio.testing

from resilient_nodes._config import RetryConfig
from resilient_nodes._retry import wrap_retry
from resilient_nodes._switches import switches as _hooks
from resilient_nodes.errors import NodeRetryExhaustedError
from resilient_nodes.testing import no_backoff, record_sleeps, use_sleep

SLOW = RetryConfig(attempts=3, backoff=10, multiplier=2, max_backoff=60, jitter=0)


def _failing_sync(calls: list[int]):
    def body() -> None:
        calls.append(1)
        raise ConnectionError("down")

    return body


def _failing_async(calls: list[int]):
    async def body() -> None:
        calls.append(1)
        raise ConnectionError("down")

    return body


@pytest.fixture(autouse=True)
def _hooks_are_restored():
    """Every test must leave the process-global switches as it found them."""
    before = (_hooks.zero_backoff, _hooks.sync_sleep, _hooks.async_sleep)
    yield
    assert (_hooks.zero_backoff, _hooks.sync_sleep, _hooks.async_sleep) == before


class TestVirtualTime:
    """Under trio's MockClock any real backoff would show as elapsed virtual time."""

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, object]]:
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})

    @pytest.mark.anyio
    async def test_no_backoff_makes_async_sleeps_zero_keeping_attempts(self):
        """no_backoff: all attempts happen, and no virtual time passes."""
        calls: list[int] = []
        start = anyio.current_time()
        with no_backoff(), pytest.raises(NodeRetryExhaustedError) as caught:
            await wrap_retry(_failing_async(calls), SLOW, name="n")()
        assert anyio.current_time() == start
        assert len(calls) == 3
        assert caught.value.attempts == 3

    @pytest.mark.anyio
    async def test_without_no_backoff_time_passes(self):
        """Control: the same retry outside no_backoff sleeps 10 + 20 virtual seconds."""
        calls: list[int] = []
        start = anyio.current_time()
        with pytest.raises(NodeRetryExhaustedError):
            await wrap_retry(_failing_async(calls), SLOW, name="n")()
        assert anyio.current_time() - start == 30

    @pytest.mark.anyio
    async def test_record_sleeps_async_records_without_sleeping(self):
        """record_sleeps lists the async schedule and spends no time."""
        calls: list[int] = []
        start = anyio.current_time()
        with record_sleeps() as delays, pytest.raises(NodeRetryExhaustedError):
            await wrap_retry(_failing_async(calls), SLOW, name="n")()
        assert delays == [10, 20]
        assert anyio.current_time() == start

    @pytest.mark.anyio
    async def test_record_sleeps_stays_cancellable(self):
        """The recording async sleep is a checkpoint: a pending cancel lands there."""
        from resilient_nodes._switches import switches as _hooks

        with record_sleeps() as delays:
            sleep = _hooks.async_sleep
            assert sleep is not None
            with anyio.CancelScope() as scope:
                scope.cancel()
                await sleep(10)
                pytest.fail("the recording sleep did not deliver the cancellation")
        assert scope.cancelled_caught
        assert delays == [10]

    @pytest.mark.anyio
    async def test_cancel_from_on_retry_lands_before_the_sleep(self):
        """A cancel requested by on_retry propagates before any backoff sleep."""
        calls: list[int] = []
        with anyio.CancelScope() as scope, record_sleeps() as delays:
            config = RetryConfig(
                attempts=3, backoff=10, max_backoff=10, jitter=0, on_retry=scope.cancel
            )
            await wrap_retry(_failing_async(calls), config, name="n")()
        assert scope.cancelled_caught
        assert delays == []
        assert len(calls) == 1


def test_no_backoff_makes_sync_sleeps_zero():
    """A sync retry with 10 s backoff finishes at once, with every attempt made."""
    calls: list[int] = []
    started = time.monotonic()
    with no_backoff(), pytest.raises(NodeRetryExhaustedError):
        wrap_retry(_failing_sync(calls), SLOW, name="n")()
    assert time.monotonic() - started < 1
    assert len(calls) == 3


def test_no_backoff_reports_zero_delay_to_observers():
    """Under no_backoff the delay that on_retry and the sleeper see is zero."""
    seen: list[float] = []
    config = RetryConfig(attempts=3, backoff=10, max_backoff=10, on_retry=seen.append)
    calls: list[int] = []
    with no_backoff(), record_sleeps() as delays, pytest.raises(NodeRetryExhaustedError):
        wrap_retry(_failing_sync(calls), config, name="n")()
    assert delays == [0.0, 0.0]


def test_no_backoff_nests_and_restores_after_errors():
    """Leaving a nested block, or one that raised, restores the previous setting."""
    assert _hooks.zero_backoff is False
    with no_backoff():
        with no_backoff():
            assert _hooks.zero_backoff is True
        assert _hooks.zero_backoff is True
    assert _hooks.zero_backoff is False
    with pytest.raises(RuntimeError), no_backoff():
        raise RuntimeError
    assert _hooks.zero_backoff is False


def test_use_sleep_injects_the_sync_sleeper():
    """use_sleep(sync_sleep=...) receives each sync delay."""
    slept: list[float] = []
    calls: list[int] = []
    with use_sleep(sync_sleep=slept.append), pytest.raises(NodeRetryExhaustedError):
        wrap_retry(_failing_sync(calls), SLOW, name="n")()
    assert slept == [10, 20]


@pytest.mark.anyio
async def test_use_sleep_injects_the_async_sleeper_and_leaves_the_other():
    """use_sleep(async_sleep=...) receives async delays; the sync sleeper is untouched."""
    slept: list[float] = []

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)
        await anyio.lowlevel.checkpoint()

    calls: list[int] = []
    with use_sleep(async_sleep=fake_sleep):
        assert _hooks.sync_sleep is None
        with pytest.raises(NodeRetryExhaustedError):
            await wrap_retry(_failing_async(calls), SLOW, name="n")()
    assert slept == [10, 20]


def test_use_sleep_nests_and_restores():
    """Inner use_sleep blocks override and then restore the outer sleepers."""
    outer: list[float] = []
    inner: list[float] = []
    with use_sleep(sync_sleep=outer.append):
        with use_sleep(sync_sleep=inner.append):
            assert _hooks.sync_sleep == inner.append
        assert _hooks.sync_sleep == outer.append
    assert _hooks.sync_sleep is None


def test_record_sleeps_sync_schedule():
    """record_sleeps gives the sync schedule in order."""
    calls: list[int] = []
    config = RetryConfig(attempts=5, backoff=1, multiplier=3, max_backoff=20, jitter=0)
    with record_sleeps() as delays, pytest.raises(NodeRetryExhaustedError):
        wrap_retry(_failing_sync(calls), config, name="n")()
    assert delays == [1, 3, 9, 20]


def test_hooks_are_not_consulted_on_success():
    """A first-attempt success never reaches the sleepers."""

    def explode(_delay: float) -> None:
        raise AssertionError("slept on the success path")

    with use_sleep(sync_sleep=explode):
        assert wrap_retry(lambda: "ok", SLOW, name="n")() == "ok"


def test_seed_jitter_makes_the_schedule_repeatable() -> None:
    """Under seed_jitter(n) two runs sleep exactly the same jittered delays."""
    from resilient_nodes import Policy
    from resilient_nodes.testing import record_sleeps, seed_jitter

    def schedule(seed: int) -> list[float]:
        def always_down() -> None:
            raise ConnectionError("down")

        wrapped = Policy.retry(attempts=4, backoff=1.0, jitter=0.5).wrap(always_down)
        with seed_jitter(seed), record_sleeps() as delays, pytest.raises(Exception):
            wrapped()
        return delays

    first, again, other = schedule(3), schedule(3), schedule(4)
    assert len(first) == 3
    assert first == again
    assert first != other
    assert all(
        base <= delay <= base * 1.5 for base, delay in zip([1.0, 2.0, 4.0], first, strict=True)
    )
