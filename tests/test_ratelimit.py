"""Tests for the in-process rate limit (resilient_nodes._ratelimit, Policy.rate_limit)."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from resilient_nodes import (
    ConfigError,
    ErrorCategory,
    NodeCancellationError,
    NodeRateLimitedError,
    Policy,
    classify_error,
)
from resilient_nodes._breaker import counts_as_failure
from resilient_nodes._config import RateLimitConfig
from resilient_nodes._deadline import sync_deadline_scope
from resilient_nodes._logging import LogEvent
from resilient_nodes._ratelimit import LocalWindow, RateLimiter, wrap_rate_limit
from resilient_nodes._tokens import CancelToken, publish_thread_token

_keys = itertools.count()


def fresh_key() -> str:
    """A key no other test uses (in-process windows are shared by key)."""
    return f"test-key-{next(_keys)}"


class FakeClock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


class TooManyRequestsError(Exception):
    """A 429 with a Retry-After, as provider SDKs raise it."""

    status_code = 429

    def __init__(self, retry_after: float) -> None:
        super().__init__("429 Too Many Requests")
        self.retry_after = retry_after


# --- the window --------------------------------------------------------------------------


def test_window_admits_limit_per_period_and_says_how_long_to_wait() -> None:
    """3 per second: the 4th waits until the first leaves the window; then it fits."""
    clock = FakeClock()
    window = LocalWindow(3, 1.0, clock)
    for _ in range(3):
        assert window.acquire(1) == 0.0
        clock.now += 0.25
    assert window.acquire(1) == pytest.approx(0.25)  # at 50.75: the one of 50.0 leaves at 51
    clock.now += 0.25
    assert window.acquire(1) == 0.0
    assert window.acquire(1) == pytest.approx(0.25)  # the one of 50.25 leaves next


def test_window_weighs_costs() -> None:
    """Cost units, not calls: 6 + 5 does not fit in 10 until the 6 have left."""
    clock = FakeClock()
    window = LocalWindow(10, 2.0, clock)
    assert window.acquire(6) == 0.0
    clock.now += 0.5
    assert window.acquire(3) == 0.0
    assert window.acquire(5) == pytest.approx(1.5)  # when the 6 leave
    clock.now += 1.5
    assert window.acquire(5) == 0.0


def test_window_pause() -> None:
    """A pause admits nothing until it ends, whatever room the window has."""
    clock = FakeClock()
    window = LocalWindow(100, 1.0, clock)
    window.pause(3.0)
    assert window.acquire(1) == pytest.approx(3.0)
    clock.now += 3.0
    assert window.acquire(1) == 0.0


# --- admission, waiting, refusal ---------------------------------------------------------


def _limiter(limit: int, per: float, **options: Any) -> RateLimiter:
    return RateLimiter("rl", RateLimitConfig(limit=limit, per=per, key=fresh_key(), **options))


@pytest.mark.anyio
async def test_waits_for_capacity_then_runs() -> None:
    """Past the limit a call waits for the window to free a slot, then runs."""
    limiter = _limiter(2, 0.05)
    calls: list[float] = []

    async def work() -> None:
        calls.append(time.monotonic())

    limited = wrap_rate_limit(work, limiter)
    for _ in range(3):
        await limited()
    assert calls[2] - calls[0] >= 0.04  # the third waited for the first to leave


@pytest.mark.anyio
async def test_max_wait_zero_refuses_at_once_logged_and_consumes_nothing() -> None:
    """With no room and max_wait=0: NodeRateLimitedError, logged; the window is unchanged."""
    limiter = _limiter(1, 60, max_wait=0)
    ran = 0

    async def work() -> None:
        nonlocal ran
        ran += 1

    limited = wrap_rate_limit(work, limiter)
    await limited()
    with capture_logs() as logs, pytest.raises(NodeRateLimitedError) as caught:
        await limited()
    assert ran == 1
    error = caught.value
    assert (error.limit, error.per, error.key, error.node) == (1, 60.0, limiter.key, "rl")
    assert error.retry_after == pytest.approx(60, abs=1)
    assert "past max_wait" in str(error)
    assert [e["event"] for e in logs] == [LogEvent.RATE_LIMIT_REJECTED]
    assert logs[0]["log_level"] == "warning"
    assert limiter.local.used() == 1


@pytest.mark.anyio
async def test_refused_at_once_when_the_wait_would_pass_the_enclosing_deadline() -> None:
    """Capacity in 60 s under a 5 s timeout: refused now, not a timeout 5 s later."""
    policy = Policy.timeout(5) | Policy.rate_limit(1, per=60, key=fresh_key())

    async def work() -> str:
        return "ok"

    limited: Any = policy.wrap(work, name="deadline")
    assert await limited() == "ok"
    start = time.monotonic()
    with pytest.raises(NodeRateLimitedError, match="past the enclosing deadline"):
        await limited()
    assert time.monotonic() - start < 1.0


@pytest.mark.anyio
async def test_cancelled_while_waiting_consumes_nothing() -> None:
    """A caller cancelled in its wait leaves the window as it found it."""
    limiter = _limiter(1, 0.2)

    async def work() -> None:
        return None

    limited = wrap_rate_limit(work, limiter)
    await limited()
    scope = anyio.CancelScope()

    async def waiting() -> None:
        with scope:
            await limited()

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiting)
        await anyio.wait_all_tasks_blocked()
        scope.cancel()
    assert scope.cancelled_caught
    assert limiter.local.used() == 1


@pytest.mark.anyio
async def test_cost_weighs_calls_and_an_oversized_one_is_refused() -> None:
    """`cost` reads the call's arguments; a call costing more than the limit never runs."""
    limiter = _limiter(10, 60, max_wait=0, cost=len)

    async def work(text: str) -> str:
        return text

    limited = wrap_rate_limit(work, limiter)
    assert await limited("abcdef") == "abcdef"
    with pytest.raises(NodeRateLimitedError, match="past max_wait"):
        await limited("abcde")
    assert await limited("abcd") == "abcd"
    with pytest.raises(NodeRateLimitedError, match="exceeds the whole limit"):
        await limited("x" * 11)
    with pytest.raises(TypeError, match="must be a number >= 0"):
        await wrap_rate_limit(work, _limiter(10, 1, cost=lambda text: "many"))("a")


@pytest.mark.anyio
async def test_retry_after_pauses_the_key() -> None:
    """A 429 with Retry-After pauses every caller of the key for that long."""
    key = fresh_key()
    failing = True

    async def work() -> str:
        if failing:
            raise TooManyRequestsError(retry_after=30)
        return "ok"

    first: Any = Policy.rate_limit(100, key=key, max_wait=0).wrap(work, name="a")
    other: Any = Policy.rate_limit(100, key=key, max_wait=0).wrap(work, name="b")
    with capture_logs() as logs, pytest.raises(TooManyRequestsError):
        await first()
    failing = False
    with pytest.raises(NodeRateLimitedError) as caught:
        await other()
    assert caught.value.retry_after == pytest.approx(30, abs=1)
    paused = [e for e in logs if e["event"] == LogEvent.RATE_LIMIT_PAUSED]
    assert [(e["seconds"], e["shared"]) for e in paused] == [(30.0, False)]


@pytest.mark.anyio
async def test_weighted_async_shell_pauses_the_key_too() -> None:
    """The weighted shell (not the inline one) also reads a Retry-After."""
    key = fresh_key()

    async def work(text: str) -> str:
        raise TooManyRequestsError(retry_after=30)

    limited: Any = Policy.rate_limit(100, key=key, cost=len, max_wait=0).wrap(work, name="w")
    with pytest.raises(TooManyRequestsError):
        await limited("abc")
    with pytest.raises(NodeRateLimitedError) as caught:
        await limited("abc")
    assert caught.value.retry_after == pytest.approx(30, abs=1)


@pytest.mark.parametrize("weighted", [False, True])
def test_sync_nodes_pause_the_key_and_refuse_oversized_costs(weighted: bool) -> None:
    """A sync node, plain or weighted, reads a Retry-After; a cost above the limit never runs."""
    key = fresh_key()
    cost = {"cost": lambda size: size} if weighted else {}

    def work(size: int) -> int:
        raise TooManyRequestsError(retry_after=30)

    limited: Any = Policy.rate_limit(10, key=key, max_wait=0, **cost).wrap(work, name="s")
    with pytest.raises(TooManyRequestsError):
        limited(1)
    with pytest.raises(NodeRateLimitedError) as caught:
        limited(1)
    assert caught.value.retry_after == pytest.approx(30, abs=1)
    if weighted:
        with pytest.raises(NodeRateLimitedError, match="exceeds the whole limit"):
            limited(11)


def test_only_a_dependency_s_error_pauses_the_key() -> None:
    """Our own refusals and control flow carry no Retry-After of the dependency's."""
    limiter = _limiter(10, 1)
    limiter.pause_for(KeyboardInterrupt())
    limiter.pause_for(NodeRateLimitedError(10, 1.0, key="k", retry_after=30, reason="r", node="n"))
    assert limiter.local.acquire(1) == 0.0


@pytest.mark.anyio
async def test_nodes_naming_one_key_share_the_window() -> None:
    """Two nodes with the same key and limit draw on one window in the process."""
    key = fresh_key()

    async def work() -> str:
        return "ok"

    a: Any = Policy.rate_limit(2, per=60, key=key, max_wait=0).wrap(work, name="a")
    b: Any = Policy.rate_limit(2, per=60, key=key, max_wait=0).wrap(work, name="b")
    assert await a() == "ok"
    assert await b() == "ok"
    with pytest.raises(NodeRateLimitedError):
        await a()


@pytest.mark.anyio
async def test_inside_a_retry_every_attempt_spends_quota() -> None:
    """rate_limit inside retry: attempts count; the refusal ends retrying at once."""
    attempts = 0

    class UnavailableError(Exception):
        status_code = 503

    async def work() -> None:
        nonlocal attempts
        attempts += 1
        raise UnavailableError("503")

    policy = Policy.retry(attempts=5, backoff=0) | Policy.rate_limit(
        2, per=60, key=fresh_key(), max_wait=0
    )
    limited: Any = policy.wrap(work, name="quota")
    with pytest.raises(NodeRateLimitedError):
        await limited()
    assert attempts == 2


def test_refusal_is_a_neutral_local_refusal() -> None:
    """Not retryable, category `rejected`, never counted by a breaker; carries its wait."""
    error = NodeRateLimitedError(10, 1.0, key="k", retry_after=0.5, node="n")
    verdict = classify_error(error)
    assert (verdict.category, verdict.retryable, verdict.retry_after) == (
        ErrorCategory.REJECTED,
        False,
        0.5,
    )
    assert not counts_as_failure(error)


# --- sync callers ------------------------------------------------------------------------


def test_sync_waits_refuses_and_honours_the_cancel_token() -> None:
    """Sync: waits in its thread, refuses past the sync deadline, stops on its token."""
    limiter = _limiter(1, 0.05)
    ran = 0

    def work() -> None:
        nonlocal ran
        ran += 1

    limited = wrap_rate_limit(work, limiter)
    limited()
    limited()  # waited about 50 ms
    assert ran == 2
    slow = wrap_rate_limit(work, _limiter(1, 60))
    slow()
    with sync_deadline_scope(1.0), pytest.raises(NodeRateLimitedError):
        slow()
    token = CancelToken()
    errors: list[BaseException] = []
    blocked = _limiter(1, 2, max_wait=30)
    wrap_rate_limit(work, blocked)()
    thread = threading.Thread(
        target=lambda: _wait_with(token, errors, wrap_rate_limit(work, blocked))
    )
    thread.start()
    time.sleep(0.05)
    token.cancel("stop")
    thread.join(5)
    assert not thread.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], NodeCancellationError)
    assert blocked.local.used() == 1


def _wait_with(token: CancelToken, errors: list[BaseException], fn: Any) -> None:
    unpublish = publish_thread_token(token)
    try:
        fn()
    except BaseException as error:
        errors.append(error)
    finally:
        unpublish()


# --- config ------------------------------------------------------------------------------


def test_policy_repr_round_trip_and_refused_code() -> None:
    """The layer prints, round-trips, and refuses to write a `cost` callable."""
    policy = Policy.rate_limit(10, per=60, key="openai", storage="redis://127.0.0.1:1/0")
    assert repr(policy) == (
        "Policy.rate_limit(10, per=60, key='openai', storage='redis://127.0.0.1:1/0')"
    )
    assert repr(Policy.rate_limit(5, max_wait=0)) == "Policy.rate_limit(5, max_wait=0)"
    assert Policy.from_dict(policy.to_dict()) == policy
    assert policy.to_dict()["layers"][0] == {
        "type": "rate_limit",
        "limit": 10,
        "per": 60.0,
        "key": "openai",
        "storage": "redis://127.0.0.1:1/0",
    }
    with pytest.raises(ConfigError, match=r"layers\[0\]\.cost: holds a callable"):
        Policy.rate_limit(10, cost=len).to_dict()
    with pytest.raises(ConfigError, match="per: must be whole seconds with a shared storage"):
        Policy.rate_limit(10, per=0.5, storage="redis://127.0.0.1/0")
    with pytest.raises(ConfigError, match="storage: must be a redis://"):
        Policy.rate_limit(10, storage="memcached://x")
    with pytest.raises(ConfigError) as caught:
        Policy.from_dict({"layers": [{"type": "rate_limit", "limit": 0, "max_wait": -1}]})
    assert str(caught.value).splitlines() == [
        "layers[0].limit: must be >= 1, got 0",
        "layers[0].max_wait: must be >= 0, got -1",
    ]


@pytest.mark.anyio
async def test_testing_reset_rate_limits_empties_the_shared_windows() -> None:
    """`resilient_nodes.testing.reset_rate_limits` frees every in-process window and pause."""
    from resilient_nodes.testing import reset_rate_limits

    key = fresh_key()

    async def work() -> str:
        return "ok"

    node: Any = Policy.rate_limit(1, per=60, key=key, max_wait=0).wrap(work, name="reset")
    assert await node() == "ok"
    with pytest.raises(NodeRateLimitedError):
        await node()
    reset_rate_limits()
    assert await node() == "ok"


@pytest.mark.anyio
async def test_a_fallback_answers_our_refusals() -> None:
    """A full rate limit (or bulkhead) on the primary route sends the call to the alternative."""
    from resilient_nodes import NodeBulkheadFullError
    from resilient_nodes._fallback import falls_back_by_default

    assert falls_back_by_default(NodeRateLimitedError(1, 1.0))
    assert falls_back_by_default(NodeBulkheadFullError(1, 0))

    async def primary() -> str:
        return "primary"

    async def backup() -> str:
        return "backup"

    policy = Policy.fallback(backup) | Policy.rate_limit(1, per=60, key=fresh_key(), max_wait=0)
    node: Any = policy.wrap(primary, name="routes")
    assert [await node(), await node()] == ["primary", "backup"]
