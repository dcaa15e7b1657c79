"""Many concurrent callers through one breaker: the invariants hold throughout.

Sizes: 2,000 concurrent async tasks x 4 calls each (on asyncio and on trio) and 8 threads x 500
sync calls, each call picking at random (seeded) to succeed, fail with a counted
error, fail with a neutral error, or be cancelled mid-call. Checked:

1. every logged transition is legal (closed->open, open->half_open,
   half_open->open, half_open->closed; ->closed from anywhere on reset), and the
   transitions chain up from closed to the final state;
2. never more than one half-open probe admitted at once (counted from the
   tickets the breaker hands out), and the probe path was exercised;
3. snapshots taken while the storm runs are consistent: closed means fewer
   failures than the threshold and no probe; open means no probe; the
   half-open state has no recovery wait;
4. afterwards no probe is left in flight, and a reset closes it.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from resilient_nodes._breaker import NodeCircuitBreaker, _Probe, wrap_breaker
from resilient_nodes.errors import NodeCircuitOpenError

SEED = 20261127
TASKS = 2000
CALLS_PER_TASK = 4
THRESHOLD = 5
LEGAL = {
    ("closed", "open"),
    ("open", "half_open"),
    ("half_open", "open"),
    ("half_open", "closed"),
}


class _Probes:
    """Counts half-open probes in flight by instrumenting admit/release."""

    def __init__(self, breaker: NodeCircuitBreaker) -> None:
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most = 0
        self.total = 0
        admit, release = breaker.admit, breaker.release

        def counted_admit(*, node: str | None = None) -> Any:
            ticket = admit(node=node)
            if isinstance(ticket, _Probe):
                with self.lock:
                    self.in_flight += 1
                    self.total += 1
                    self.most = max(self.most, self.in_flight)
            return ticket

        def counted_release(ticket: Any, error: BaseException | None = None) -> None:
            if isinstance(ticket, _Probe):
                with self.lock:
                    self.in_flight -= 1
            release(ticket, error)

        # The shells look these up when they are built, so patch before wrapping.
        breaker.admit = counted_admit  # type: ignore[method-assign]
        breaker.release = counted_release  # type: ignore[method-assign]


def _check_snapshot(breaker: NodeCircuitBreaker, problems: list[str]) -> None:
    status = breaker.status()
    if status.state == "closed" and (status.failure_count >= THRESHOLD or status.probe_in_flight):
        problems.append(f"inconsistent closed snapshot: {status}")
    if status.state == "open" and status.probe_in_flight:
        problems.append(f"probe in flight while open: {status}")
    if status.state == "half_open" and status.time_until_recovery != 0:
        problems.append(f"half-open with a recovery wait: {status}")


def _check_transitions(logs: list[dict[str, Any]], final: str) -> Counter[tuple[str, str]]:
    moves = [
        (event["old_state"], event["new_state"])
        for event in logs
        if event["event"] == "breaker.state_changed"
    ]
    illegal = [move for move in moves if move not in LEGAL]
    assert not illegal, f"illegal transitions: {Counter(illegal)}"
    # Events are logged after the lock is released, so threads may log them out of
    # order; the multiset must still chain from closed to the final state.
    balance: Counter[str] = Counter()
    for old, new in moves:
        balance[old] -= 1
        balance[new] += 1
    balance["closed"] += 1
    balance[final] -= 1
    assert all(v == 0 for v in balance.values()), (balance, Counter(moves))
    return Counter(moves)


def _make_breaker() -> NodeCircuitBreaker:
    return NodeCircuitBreaker(
        "stress",
        failure_threshold=THRESHOLD,
        recovery_timeout=0.003,
        clock=time.monotonic,
    )


@pytest.mark.anyio
async def test_thousands_of_async_callers_keep_the_invariants() -> None:
    """2,000 tasks x 4 calls with random failures and cancellations never break the breaker."""
    breaker = _make_breaker()
    probes = _Probes(breaker)
    problems: list[str] = []
    outcomes: Counter[str] = Counter()

    async def dependency(rng: random.Random) -> str:
        await anyio.sleep(rng.random() * 0.004)
        roll = rng.random()
        if roll < 0.35:
            raise ConnectionError("down")
        if roll < 0.45:
            raise ValueError("bad request")
        return "ok"

    guarded = wrap_breaker(dependency, breaker, name="stress")

    async def caller(index: int) -> None:
        rng = random.Random(SEED + index)
        for call in range(CALLS_PER_TASK):
            await anyio.sleep(rng.random() * 0.02)
            # About one call in five is cancelled by its caller, usually mid-call.
            budget = rng.random() * 0.004 if rng.random() < 0.2 else 1.0
            with anyio.move_on_after(budget) as scope:
                try:
                    await guarded(rng)
                    outcomes["ok"] += 1
                except NodeCircuitOpenError:
                    outcomes["rejected"] += 1
                except (ConnectionError, ValueError):
                    outcomes["failed"] += 1
            if scope.cancelled_caught:
                outcomes["cancelled"] += 1
            if (index + call) % 50 == 0:
                _check_snapshot(breaker, problems)

    started = time.monotonic()
    with capture_logs() as logs:
        async with anyio.create_task_group() as group:
            for index in range(TASKS):
                group.start_soon(caller, index)
    assert time.monotonic() - started < 10

    assert sum(outcomes.values()) == TASKS * CALLS_PER_TASK
    assert not problems, problems[:5]
    assert probes.most == 1, (probes.most, probes.total, outcomes)
    assert probes.in_flight == 0
    status = breaker.status()
    assert not status.probe_in_flight
    moves = _check_transitions(logs, status.state)
    # The storm went round the whole cycle, and every kind of outcome happened.
    assert moves[("closed", "open")] >= 1, moves
    assert moves[("open", "half_open")] >= 1, moves
    assert probes.total >= 1
    assert min(outcomes[k] for k in ("ok", "failed", "cancelled", "rejected")) > 50, outcomes


def test_thread_pool_of_sync_callers_keeps_the_invariants() -> None:
    """8 threads x 500 sync calls with random failures and cancellations stay consistent."""
    breaker = _make_breaker()
    probes = _Probes(breaker)
    problems: list[str] = []
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def dependency(rng: random.Random) -> str:
        time.sleep(rng.random() * 0.0005)
        roll = rng.random()
        if roll < 0.35:
            raise ConnectionError("down")
        if roll < 0.45:
            raise ValueError("bad request")
        if roll < 0.55:
            # What a cancelled call looks like to the breaker: a BaseException.
            raise asyncio.CancelledError
        return "ok"

    guarded = wrap_breaker(dependency, breaker, name="stress")

    def worker(index: int) -> None:
        rng = random.Random(SEED + index)
        local: Counter[str] = Counter()
        for call in range(500):
            try:
                guarded(rng)
                local["ok"] += 1
            except NodeCircuitOpenError:
                local["rejected"] += 1
                time.sleep(0.0005)
            except (ConnectionError, ValueError):
                local["failed"] += 1
            except asyncio.CancelledError:
                local["cancelled"] += 1
            if call % 25 == 0:
                _check_snapshot(breaker, problems)
        with lock:
            outcomes.update(local)

    started = time.monotonic()
    with capture_logs() as logs:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    assert time.monotonic() - started < 10
    assert not any(thread.is_alive() for thread in threads)

    assert sum(outcomes.values()) == 4000
    assert not problems, problems[:5]
    assert probes.most == 1
    assert probes.in_flight == 0
    status = breaker.status()
    assert not status.probe_in_flight
    moves = _check_transitions(logs, status.state)
    # The storm went round the whole cycle, and every kind of outcome happened.
    assert moves[("closed", "open")] >= 1, moves
    assert moves[("open", "half_open")] >= 1, moves
    assert probes.total >= 1
    assert min(outcomes[k] for k in ("ok", "failed", "cancelled", "rejected")) > 50, outcomes

    with capture_logs() as reset_logs:
        breaker.reset()
    assert breaker.status().state == "closed"
    assert breaker.status().failure_count == 0
    if status.state != "closed":
        assert [(e["old_state"], e["new_state"]) for e in reset_logs] == [(status.state, "closed")]
