"""Timeout layer cases: ours against ``anyio.fail_after`` and ``asyncio.timeout``.

Success path: a 30 s deadline around a call that returns at once. Lateness: a
50 ms deadline around a 1 s sleep; the time from the deadline to the caller
catching the timeout error, ours (which also builds and logs ``node.timed_out``
through structlog's JSON renderer) and ``anyio.fail_after``, interleaved.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import anyio

from resilient_nodes import Policy
from resilient_nodes.errors import NodeTimeoutError

from ._common import Flaky, by_hand, f, under_asyncio_timeout
from ._timing import Case, Loop, call_loop, percentile

SECTION = "timeout"
LATE_TIMEOUT = 0.05


def _fail_after_loop(fn: object) -> Loop:
    async def loop(n: int) -> int:
        start = time.perf_counter_ns()
        for i in range(n):
            with anyio.fail_after(30):
                await fn(i)  # type: ignore[operator]
        return time.perf_counter_ns() - start

    return loop


def _asyncio_timeout_loop(fn: object) -> Loop:
    async def loop(n: int) -> int:
        start = time.perf_counter_ns()
        for i in range(n):
            async with asyncio.timeout(30):
                await fn(i)  # type: ignore[operator]
        return time.perf_counter_ns() - start

    return loop


def success_cases() -> list[Case]:
    ours = Policy.timeout(30).wrap(f, name="bench_timeout")
    return [
        Case("timeout_ours", "ours: `Policy.timeout(30).wrap(f)`", call_loop(ours), ours=True),
        Case("timeout_fail_after", "`with anyio.fail_after(30): await f(x)`", _fail_after_loop(f)),
        Case(
            "timeout_asyncio",
            "`async with asyncio.timeout(30): await f(x)`",
            _asyncio_timeout_loop(f),
        ),
    ]


def failure_cases() -> list[Case]:
    ours = Policy.timeout(30).wrap(Flaky(), name="bench_timeout_fail")
    fa_flaky = Flaky()

    async def fa(x: object) -> object:
        with anyio.fail_after(30):
            return await fa_flaky(x)

    return [
        Case(
            "fail_timeout_ours",
            "ours: `Policy.timeout(30)` (caller retries by hand)",
            call_loop(by_hand(ours)),
            ours=True,
        ),
        Case(
            "fail_timeout_fail_after",
            "`anyio.fail_after(30)` (caller retries by hand)",
            call_loop(by_hand(fa)),
        ),
        Case(
            "fail_timeout_asyncio",
            "`asyncio.timeout(30)` (caller retries by hand)",
            call_loop(by_hand(under_asyncio_timeout(Flaky()))),
        ),
    ]


async def _sleep_one() -> None:
    await anyio.sleep(1)


async def lateness(tries: int) -> dict[str, dict[str, float]]:
    """Median, p90, p99 and max lateness in ms, ours and the peers, interleaved."""
    ours = Policy.timeout(LATE_TIMEOUT).wrap(_sleep_one, name="bench_late")

    async def late_ours() -> float:
        start = time.perf_counter()
        try:
            await ours()
        except NodeTimeoutError:
            return time.perf_counter() - start - LATE_TIMEOUT
        raise AssertionError("no timeout")

    async def late_fail_after() -> float:
        start = time.perf_counter()
        try:
            with anyio.fail_after(LATE_TIMEOUT):
                await anyio.sleep(1)
        except TimeoutError:
            return time.perf_counter() - start - LATE_TIMEOUT
        raise AssertionError("no timeout")

    async def late_asyncio() -> float:
        start = time.perf_counter()
        try:
            async with asyncio.timeout(LATE_TIMEOUT):
                await asyncio.sleep(1)
        except TimeoutError:
            return time.perf_counter() - start - LATE_TIMEOUT
        raise AssertionError("no timeout")

    runners = {
        "ours": late_ours,
        "anyio.fail_after": late_fail_after,
        "asyncio.timeout": late_asyncio,
    }
    values: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    # One untimed round first: ours builds its logger and renders its first JSON
    # line then, a one-off cost that would be the p99 of a short run.
    for runner in runners.values():
        await runner()
    for i in range(tries):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:  # rotate who goes first
            values[name].append(await runners[name]() * 1000)
    return {
        name: {
            "median": statistics.median(ms),
            "p90": percentile(ms, 0.9),
            "p99": percentile(ms, 0.99),
            "max": max(ms),
            "n": len(ms),
        }
        for name, ms in values.items()
    }
