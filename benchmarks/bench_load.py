"""Load-control cases: the bulkhead and the in-process rate limit, against their peers.

Also, outside the timed groups, the Redis-shared rate limit's round trips per
admitted call (`redis_round_trips`: a redis-server of its own on 127.0.0.1,
round trips counted at ``Connection.send_packed_command``).

Success path only (the call is admitted at once): what a layer costs when it does
not have to wait. The bulkhead is held to a bare ``anyio.CapacityLimiter`` around
the call (``async with limiter: await f(x)``); the rate limit to LangChain's
``InMemoryRateLimiter.aacquire()`` and ``aiolimiter.AsyncLimiter`` before the
call, each with a limit far above the call rate, so nobody waits.
"""

from __future__ import annotations

import time
from typing import Any

import anyio

from resilient_nodes import Policy

from ._common import f
from ._timing import Case, Loop, call_loop

SECTION = "load"
SLOTS = 10
RATE = 10**9  # per second: far above any call rate, so nobody waits


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


def _acquire_loop(acquire: object) -> Loop:
    async def loop(n: int) -> int:
        start = time.perf_counter_ns()
        for i in range(n):
            await acquire()  # type: ignore[operator]
            await f(i)
        return time.perf_counter_ns() - start

    return loop


def _aiolimiter_loop(limiter: object) -> Loop:
    async def loop(n: int) -> int:
        start = time.perf_counter_ns()
        for i in range(n):
            async with limiter:  # type: ignore[attr-defined]
                await f(i)
        return time.perf_counter_ns() - start

    return loop


def rate_limit_cases() -> list[Case]:
    import aiolimiter
    from langchain_core.rate_limiters import InMemoryRateLimiter

    ours = Policy.rate_limit(RATE).wrap(f, name="bench_rate_limit")
    langchain = InMemoryRateLimiter(
        requests_per_second=RATE, check_every_n_seconds=0.1, max_bucket_size=RATE
    )
    return [
        Case(
            "rate_limit_ours",
            f"ours: `Policy.rate_limit({RATE:.0e}).wrap(f)` (in-process)",
            call_loop(ours),
            ours=True,
        ),
        Case(
            "rate_limit_langchain",
            "LangChain `await InMemoryRateLimiter(...).aacquire()`, then `await f(x)`",
            _acquire_loop(langchain.aacquire),
        ),
        Case(
            "rate_limit_aiolimiter",
            "`async with aiolimiter.AsyncLimiter(...): await f(x)`",
            _aiolimiter_loop(aiolimiter.AsyncLimiter(RATE, 1)),
        ),
    ]


def cases() -> list[Case]:
    """Every case of the section."""
    return [*bulkhead_cases(), *rate_limit_cases()]


def redis_round_trips(calls: int) -> dict[str, Any]:
    """Round trips and time per admitted call of a rate limit shared on Redis.

    Starts its own redis-server (stopped by PID); the limit is far above the call
    rate, so every call is admitted. A sync node, so nothing but the round trip
    is measured (an async one adds a worker-thread hop).
    """
    import sys
    from pathlib import Path

    from redis.connection import Connection

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from redis_fixtures import RedisServer

    sent = 0
    original = Connection.send_packed_command

    def counting(self: Connection, *args: Any, **kwargs: Any) -> None:
        nonlocal sent
        sent += 1
        original(self, *args, **kwargs)

    Connection.send_packed_command = counting  # type: ignore[method-assign]
    try:
        with RedisServer() as server:
            node = Policy.rate_limit(10**9, per=1, key="bench_shared", storage=server.url).wrap(
                lambda: 1, name="bench_rate_limit_redis"
            )
            for _ in range(50):  # connection, script load
                node()
            before = sent
            started = time.perf_counter()
            for _ in range(calls):
                node()
            elapsed = time.perf_counter() - started
            trips = sent - before
    finally:
        Connection.send_packed_command = original  # type: ignore[method-assign]
    return {
        "calls": calls,
        "round_trips_per_call": trips / calls,
        "us_per_call": elapsed / calls * 1e6,
    }
