"""Tests for retry budgets (resilient_nodes._budget, Policy.retry(budget=...))."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from resilient_nodes import ConfigError, NodeRetryExhaustedError, Policy, RetryBudget
from resilient_nodes._budget import BudgetTracker
from resilient_nodes._logging import LogEvent


class FakeClock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class ServiceUnavailableError(Exception):
    """An HTTP 503 as an SDK would raise it (classified retryable by its status)."""

    status_code = 503


# --- the tracker -------------------------------------------------------------------------


def test_retries_at_most_ratio_times_calls_plus_minimum() -> None:
    """10 calls at ratio 0.5 and minimum 2 allow 7 retries, then none."""
    clock = FakeClock()
    tracker = BudgetTracker(RetryBudget(ratio=0.5, minimum=2, window=10, clock=clock))
    for _ in range(10):
        tracker.record_call()
    allowed = [tracker.try_retry() for _ in range(9)]
    assert allowed == [True] * 7 + [False] * 2
    assert tracker.counts() == (10, 7)


def test_the_window_slides() -> None:
    """Calls and retries older than the window no longer count; the minimum stays."""
    clock = FakeClock()
    tracker = BudgetTracker(RetryBudget(ratio=1.0, minimum=1, window=10, clock=clock))
    for _ in range(5):
        tracker.record_call()
    assert all(tracker.try_retry() for _ in range(6))
    assert not tracker.try_retry()
    clock.now += 5.0  # half a window later: everything still counts
    assert not tracker.try_retry()
    clock.now += 5.5  # past the window: only the minimum is left
    assert tracker.counts() == (0, 0)
    assert tracker.try_retry()
    assert not tracker.try_retry()


def test_refund_gives_a_retry_back() -> None:
    """A retry taken and then not made (stopped at the deadline) is given back."""
    tracker = BudgetTracker(RetryBudget(ratio=0.0, minimum=1, clock=FakeClock()))
    assert tracker.try_retry()
    assert not tracker.try_retry()
    tracker.refund()
    assert tracker.try_retry()


# --- config ------------------------------------------------------------------------------


def test_policy_repr_round_trip_and_errors() -> None:
    """The budget prints, round-trips, and a bad one names its path."""
    policy = Policy.retry(budget=RetryBudget(ratio=0.5, window=30))
    assert repr(policy) == "Policy.retry(budget=RetryBudget(ratio=0.5, window=30))"
    assert repr(Policy.llm(budget=RetryBudget())) == "Policy.llm(budget=RetryBudget())"
    data = policy.to_dict()
    assert data["layers"][0]["budget"] == {"ratio": 0.5, "minimum": 10, "window": 30.0}
    assert Policy.from_dict(data) == policy
    with pytest.raises(ConfigError) as caught:
        Policy.from_dict({"layers": [{"type": "retry", "budget": {"ratio": -1, "window": 0}}]})
    assert str(caught.value).splitlines() == [
        "layers[0].budget.ratio: must be >= 0, got -1",
        "layers[0].budget.window: must be > 0, got 0",
    ]
    with pytest.raises(ConfigError, match=r"budget: must be a RetryBudget or None, got 3"):
        Policy.retry(budget=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"layers\[0\]\.budget\.clock: holds a callable"):
        Policy.retry(budget=RetryBudget(clock=FakeClock())).to_dict()


# --- in a retry layer --------------------------------------------------------------------


async def _outage(policy: Policy, callers: int) -> tuple[int, list[BaseException]]:
    """Run *callers* concurrent calls against an always-503 service; count its requests."""
    requests = 0

    async def service() -> None:
        nonlocal requests
        requests += 1
        await anyio.lowlevel.checkpoint()
        raise ServiceUnavailableError("503 Service Unavailable")

    node: Any = policy.wrap(service, name="outage")
    errors: list[BaseException] = []

    async def caller() -> None:
        try:
            await node()
        except Exception as error:
            errors.append(error)

    async with anyio.create_task_group() as tg:
        for _ in range(callers):
            tg.start_soon(caller)
    return requests, errors


@pytest.mark.anyio
async def test_outage_simulation_budget_holds_requests_near_one_per_call() -> None:
    """100 callers, 3 attempts, always 503: 130 requests with the budget, 300 without."""
    without, _ = await _outage(Policy.retry(attempts=3, backoff=0), 100)
    with capture_logs() as logs:
        with_budget, errors = await _outage(
            Policy.retry(attempts=3, backoff=0, budget=RetryBudget()), 100
        )
    assert without == 300  # 3.0x the calls
    assert with_budget <= 1.2 * 100 + 10  # 130: 1.3x the calls (1.2x + minimum)
    assert with_budget == 130
    assert len(errors) == 100
    # Calls that got a retry fail as before; the others with the 503 itself, noted.
    refused = [e for e in errors if isinstance(e, ServiceUnavailableError)]
    exhausted = [e for e in errors if isinstance(e, NodeRetryExhaustedError)]
    assert len(refused) + len(exhausted) == 100
    assert refused
    assert "retry budget of node outage is spent" in refused[0].__notes__[0]
    spent = [e for e in logs if e["event"] == LogEvent.RETRY_BUDGET_EXHAUSTED]
    assert len(spent) == len(refused)
    assert spent[0]["log_level"] == "warning"
    assert spent[0]["error_type"] == "ServiceUnavailableError"


def test_sync_retries_share_the_same_budget() -> None:
    """A sync node's calls draw on one budget per wrapped node."""
    requests = 0

    def service() -> None:
        nonlocal requests
        requests += 1
        raise ServiceUnavailableError("503")

    node = Policy.retry(attempts=3, backoff=0, budget=RetryBudget(ratio=0.0, minimum=3)).wrap(
        service, name="sync_outage"
    )
    outcomes = []
    for _ in range(5):
        try:
            node()
        except Exception as error:
            outcomes.append(type(error).__name__)
    # Three retries in all: the first call uses two, the second one (and is
    # refused its second, so it raises the 503 itself), then none.
    assert requests == 5 + 3
    assert outcomes == [
        "NodeRetryExhaustedError",
        "ServiceUnavailableError",
        "ServiceUnavailableError",
        "ServiceUnavailableError",
        "ServiceUnavailableError",
    ]


@pytest.mark.anyio
async def test_successes_earn_retries() -> None:
    """Successful calls count as calls: they raise the budget for later failures."""
    clock = FakeClock()
    fail = False
    requests = 0

    async def service() -> str:
        nonlocal requests
        requests += 1
        if fail:
            raise ServiceUnavailableError("503")
        return "ok"

    node: Any = Policy.retry(
        attempts=2, backoff=0, budget=RetryBudget(ratio=0.5, minimum=0, clock=clock)
    ).wrap(service, name="earn")
    for _ in range(4):
        assert await node() == "ok"
    fail = True
    requests = 0
    for _ in range(4):
        with pytest.raises((ServiceUnavailableError, NodeRetryExhaustedError)):
            await node()
    # 8 calls in the window at ratio 0.5: 4 retries allowed, one per failing call.
    assert requests == 8
