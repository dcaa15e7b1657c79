"""Breaker overhead: resilient_nodes' NodeCircuitBreaker against pybreaker.

One process, asyncio, variants interleaved round-robin over repeats so that machine
drift hits all of them alike; the figure is the median ns per call. Overheads are
differences from the bare call timed in the same rounds.

Run from the repository root::

    /tmp/venv/bin/python -m benchmarks.bench_breaker [--quick]
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import statistics
import sys
import time
from typing import TYPE_CHECKING

import pybreaker

from resilient_nodes.breaker import NodeCircuitBreaker, wrap_breaker
from resilient_nodes.errors import NodeCircuitOpenError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

QUICK = "--quick" in sys.argv
REPEATS = 5 if QUICK else 11
TARGET_S = 0.03 if QUICK else 0.12  # per timed block
BUDGET_S = 55.0


async def f(x: int) -> int:
    return x


def sf(x: int) -> int:
    return x


class BoomError(ConnectionError):
    pass


async def bad(x: int) -> int:
    raise BoomError


def make_async_variants() -> tuple[
    dict[str, Callable[[int], Awaitable[float]]], Callable[[], Awaitable[None]]
]:
    """Each variant runs n calls and returns the elapsed ns."""
    ours = wrap_breaker(f, NodeCircuitBreaker("bench"), name="bench")
    pb = pybreaker.CircuitBreaker()

    open_ours_breaker = NodeCircuitBreaker("open", failure_threshold=1, recovery_timeout=3600)
    open_ours = wrap_breaker(f, open_ours_breaker, name="open")
    pb_open = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=3600)

    async def trip() -> None:
        with contextlib.suppress(BoomError):
            await wrap_breaker(bad, open_ours_breaker, name="open")(0)
        try:
            with pb_open.calling():
                await bad(0)
        except pybreaker.CircuitBreakerError:
            pass
        assert str(open_ours_breaker.state) == "open"
        assert pb_open.current_state == "open"

    async def bare(n: int) -> float:
        t = time.perf_counter_ns()
        for i in range(n):
            await f(i)
        return time.perf_counter_ns() - t

    async def bare_try(n: int) -> float:
        t = time.perf_counter_ns()
        for i in range(n):
            # try/except, not contextlib.suppress: the floor must cost what the
            # rejection loops' own try/except costs.
            try:  # noqa: SIM105
                await f(i)
            except Exception:  # noqa: S110
                pass
        return time.perf_counter_ns() - t

    async def ours_closed(n: int) -> float:
        t = time.perf_counter_ns()
        for i in range(n):
            await ours(i)
        return time.perf_counter_ns() - t

    async def pb_calling(n: int) -> float:
        t = time.perf_counter_ns()
        for i in range(n):
            with pb.calling():
                await f(i)
        return time.perf_counter_ns() - t

    async def ours_open(n: int) -> float:
        t = time.perf_counter_ns()
        for i in range(n):
            try:  # noqa: SIM105
                await open_ours(i)
            except NodeCircuitOpenError:
                pass
        return time.perf_counter_ns() - t

    async def pb_calling_open(n: int) -> float:
        t = time.perf_counter_ns()
        for i in range(n):
            try:
                with pb_open.calling():
                    await f(i)
            except pybreaker.CircuitBreakerError:
                pass
        return time.perf_counter_ns() - t

    variants = {
        "bare": bare,
        "bare_try": bare_try,
        "ours_closed": ours_closed,
        "pb_calling": pb_calling,
        "ours_open": ours_open,
        "pb_calling_open": pb_calling_open,
    }
    return variants, trip


def make_sync_variants() -> dict[str, Callable[[int], float]]:
    ours = wrap_breaker(sf, NodeCircuitBreaker("bench-sync"), name="bench-sync")
    pb = pybreaker.CircuitBreaker()

    def bare_sync(n: int) -> float:
        t = time.perf_counter_ns()
        for i in range(n):
            sf(i)
        return time.perf_counter_ns() - t

    def ours_sync(n: int) -> float:
        t = time.perf_counter_ns()
        for i in range(n):
            ours(i)
        return time.perf_counter_ns() - t

    def pb_call_sync(n: int) -> float:
        t = time.perf_counter_ns()
        for i in range(n):
            pb.call(sf, i)
        return time.perf_counter_ns() - t

    return {"bare_sync": bare_sync, "ours_sync": ours_sync, "pb_call_sync": pb_call_sync}


LABELS = {
    "bare": "bare `await f(x)`",
    "bare_try": "bare `try: await f(x) except` (floor for rejections)",
    "ours_closed": "ours: wrap_breaker, closed",
    "pb_calling": "pybreaker `with breaker.calling(): await f(x)`",
    "ours_open": "ours: wrap_breaker, open (rejected)",
    "pb_calling_open": "pybreaker `calling()`, open (rejected)",
    "bare_sync": "bare sync `sf(x)`",
    "ours_sync": "ours: wrap_breaker(sync), closed",
    "pb_call_sync": "pybreaker `breaker.call(sf, x)`",
}


async def calibrate(fn: Callable[[int], Awaitable[float]]) -> int:
    n = 200
    while True:
        elapsed = await fn(n)
        if elapsed >= TARGET_S * 1e9 / 4 or n >= 5_000_000:
            return max(200, int(n * TARGET_S * 1e9 / max(elapsed, 1.0)))
        n *= 4


def calibrate_sync(fn: Callable[[int], float]) -> int:
    n = 200
    while True:
        elapsed = fn(n)
        if elapsed >= TARGET_S * 1e9 / 4 or n >= 5_000_000:
            return max(200, int(n * TARGET_S * 1e9 / max(elapsed, 1.0)))
        n *= 4


async def run_async(deadline: float) -> dict[str, list[float]]:
    variants, trip = make_async_variants()
    await trip()
    sizes = {name: await calibrate(fn) for name, fn in variants.items()}
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(REPEATS):
        for name, fn in variants.items():
            gc.collect()
            samples[name].append(await fn(sizes[name]) / sizes[name])
            await asyncio.sleep(0)
        if time.monotonic() > deadline:
            break
    return samples


def run_sync(deadline: float) -> dict[str, list[float]]:
    variants = make_sync_variants()
    sizes = {name: calibrate_sync(fn) for name, fn in variants.items()}
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(REPEATS):
        for name, fn in variants.items():
            gc.collect()
            samples[name].append(fn(sizes[name]) / sizes[name])
        if time.monotonic() > deadline:
            break
    return samples


def main() -> None:
    start = time.monotonic()
    samples = asyncio.run(run_async(start + BUDGET_S * 0.7))
    samples.update(run_sync(start + BUDGET_S))
    med = {name: statistics.median(values) for name, values in samples.items()}

    def over(name: str, floor: str) -> float:
        return med[name] - med[floor]

    floors = {
        "bare": "bare",
        "bare_try": "bare_try",
        "ours_closed": "bare",
        "pb_calling": "bare",
        "ours_open": "bare_try",
        "pb_calling_open": "bare_try",
        "bare_sync": "bare_sync",
        "ours_sync": "bare_sync",
        "pb_call_sync": "bare_sync",
    }
    print(f"repeats={len(samples['bare'])}, median ns/call, {time.monotonic() - start:.1f} s\n")
    print(f"| {'variant':<56} | {'ns/call':>9} | {'overhead ns':>11} | {'min':>8} | {'max':>8} |")
    print(f"|{'-' * 58}|{'-' * 11}:|{'-' * 12}:|{'-' * 9}:|{'-' * 9}:|")
    for name, label in LABELS.items():
        floor = floors[name]
        overhead = "-" if floor == name else f"{over(name, floor):,.0f}"
        print(
            f"| {label:<56} | {med[name]:>9,.0f} | {overhead:>11} | "
            f"{min(samples[name]):>8,.0f} | {max(samples[name]):>8,.0f} |"
        )
    ours = over("ours_closed", "bare")
    pb = over("pb_calling", "bare")
    rej = over("ours_open", "bare_try")
    print()
    print(f"success overhead, ours / pybreaker calling():   {ours / pb:.3f}  (target <= 0.5)")
    print(f"our rejection / our success overhead:           {rej / ours:.2f}  (target <= 2)")
    print(
        f"our rejection / pybreaker calling() rejection:  "
        f"{rej / over('pb_calling_open', 'bare_try'):.3f}"
    )
    print(
        f"sync success overhead, ours / pybreaker call(): "
        f"{over('ours_sync', 'bare_sync') / over('pb_call_sync', 'bare_sync'):.3f}"
    )


if __name__ == "__main__":
    main()
