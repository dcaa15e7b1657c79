"""Breaker layer cases: ours against pybreaker's ``calling()``.

pybreaker's ``calling()`` is its only entry point that sees an async call's
outcome (``call()`` on a coroutine function records the creation of the coroutine,
``call_async`` needs tornado), so it is the peer. Rejection: both breakers tripped
open with an hour to recovery; the floor is a bare call inside the same
``try/except`` the rejection loops need.
"""

from __future__ import annotations

import contextlib
import time

import pybreaker

from resilient_nodes import Policy
from resilient_nodes._breaker import NodeCircuitBreaker, wrap_breaker
from resilient_nodes.errors import NodeCircuitOpenError

from ._common import Flaky, by_hand, f
from ._timing import Case, Loop, call_loop

SECTION = "breaker"


def _calling_loop(breaker: pybreaker.CircuitBreaker) -> Loop:
    async def loop(n: int) -> int:
        start = time.perf_counter_ns()
        for i in range(n):
            with breaker.calling():
                await f(i)
        return time.perf_counter_ns() - start

    return loop


def success_cases() -> list[Case]:
    ours = Policy.breaker().wrap(f, name="bench_breaker")
    return [
        Case("breaker_ours", "ours: `Policy.breaker().wrap(f)`", call_loop(ours), ours=True),
        Case(
            "breaker_pybreaker",
            "pybreaker `with breaker.calling(): await f(x)`",
            _calling_loop(pybreaker.CircuitBreaker()),
        ),
    ]


def failure_cases() -> list[Case]:
    ours = Policy.breaker().wrap(Flaky(), name="bench_breaker_fail")
    pb = pybreaker.CircuitBreaker()
    flaky = Flaky()

    async def pb_call(x: object) -> object:
        with pb.calling():
            return await flaky(x)

    return [
        Case(
            "fail_breaker_ours",
            "ours: `Policy.breaker()` (caller retries by hand)",
            call_loop(by_hand(ours)),
            ours=True,
        ),
        Case(
            "fail_breaker_pybreaker",
            "pybreaker `calling()` (caller retries by hand)",
            call_loop(by_hand(pb_call)),
        ),
    ]


def _try_loop(fn: object, error: type[BaseException]) -> Loop:
    async def loop(n: int) -> int:
        start = time.perf_counter_ns()
        for i in range(n):
            try:  # noqa: SIM105 - the floor must cost what this costs
                await fn(i)  # type: ignore[operator]
            except error:
                pass
        return time.perf_counter_ns() - start

    return loop


async def rejection_cases() -> tuple[Case, list[Case]]:
    """The floor and the two rejecting variants (both breakers tripped)."""
    breaker = NodeCircuitBreaker("bench_open", failure_threshold=1, recovery_timeout=3600)
    ours = wrap_breaker(f, breaker, name="bench_open")
    with contextlib.suppress(ConnectionError):
        await wrap_breaker(Flaky(), breaker, name="bench_open")(0)
    assert str(breaker.state) == "open"

    pb = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=3600)
    with contextlib.suppress(pybreaker.CircuitBreakerError, ConnectionError), pb.calling():
        await Flaky()(0)
    assert pb.current_state == "open"

    async def pb_open(x: object) -> object:
        with pb.calling():
            return await f(x)

    closed = Policy.breaker().wrap(f, name="bench_closed")
    floor = Case(
        "reject_floor", "bare `try: await f(x) except: pass` (FLOOR)", _try_loop(f, Exception)
    )
    return floor, [
        Case(
            "reject_closed_ours",
            "ours: closed breaker admits (same `try/except`)",
            _try_loop(closed, NodeCircuitOpenError),
            ours=True,
        ),
        Case(
            "reject_ours",
            "ours: open breaker rejects (`NodeCircuitOpenError`)",
            _try_loop(ours, NodeCircuitOpenError),
            ours=True,
        ),
        Case(
            "reject_pybreaker",
            "pybreaker `calling()` open (`CircuitBreakerError`)",
            _try_loop(pb_open, pybreaker.CircuitBreakerError),
        ),
    ]
