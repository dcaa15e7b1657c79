"""Load-control cases: the bulkhead and the in-process rate limit, against their peers.

Success path only (the call is admitted at once): what a layer costs when it does
not have to wait. The bulkhead is held to a bare ``anyio.CapacityLimiter`` around
the call (``async with limiter: await f(x)``); the rate limit to LangChain's
``InMemoryRateLimiter.aacquire()`` and ``aiolimiter.AsyncLimiter`` before the
call, each with a limit far above the call rate, so nobody waits.
"""

from __future__ import annotations

import time

import anyio

from resilient_nodes import Policy

from ._common import f
from ._timing import Case, Loop, call_loop

SECTION = "load"
SLOTS = 10


def _limiter_loop(limiter: anyio.CapacityLimiter) -> Loop:
    async def loop(n: int) -> int:
        start = time.perf_counter_ns()
        for i in range(n):
            async with limiter:
                await f(i)
        return time.perf_counter_ns() - start

    return loop


def bulkhead_cases() -> list[Case]:
    ours = Policy.bulkhead(SLOTS).wrap(f, name="bench_bulkhead")
    return [
        Case(
            "bulkhead_ours",
            f"ours: `Policy.bulkhead({SLOTS}).wrap(f)`",
            call_loop(ours),
            ours=True,
        ),
        Case(
            "bulkhead_limiter",
            f"`async with anyio.CapacityLimiter({SLOTS}): await f(x)`",
            _limiter_loop(anyio.CapacityLimiter(SLOTS)),
        ),
    ]


def cases() -> list[Case]:
    """Every case of the section."""
    return bulkhead_cases()
