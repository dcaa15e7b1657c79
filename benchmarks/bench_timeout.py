"""Success-path cost and lateness of the timeout layer, against anyio and asyncio.

Run from the repository root::

    python -m benchmarks.bench_timeout [--quick]

Everything runs in one process on asyncio (anyio's asyncio backend), with the
variants interleaved round by round so that drift (CPU frequency, other load)
hits them all alike. Reported:

1. median ns per call of a trivial ``await f(x)`` under each wrapper, its
   overhead over the bare call, and the ratio of our overhead to
   ``anyio.fail_after``'s (target: at most 0.7);
2. lateness: a 50 ms timeout around a 1 s sleep, the time from the deadline to
   the caller catching the timeout error, median and p99 (target: our p99 at
   most 1.5x ``fail_after``'s).

structlog is configured as in production (level, ISO timestamp, JSON) but into a
``ReturnLogger``: the cost of building and rendering ``node.timed_out`` is
included in our lateness, terminal I/O is not.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from resilient_nodes.config import TimeoutConfig
from resilient_nodes.errors import NodeTimeoutError
from resilient_nodes.timeout import wrap_timeout

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

BATCH = 2_000
ROUNDS = 25
LATE_TRIES = 200
LATE_TIMEOUT = 0.05


async def target(x: int) -> int:
    return x


async def run_bare(n: int) -> None:
    for i in range(n):
        await target(i)


async def run_ours(n: int) -> None:
    ours = OURS[0]
    for i in range(n):
        await ours(i)


async def run_fail_after(n: int) -> None:
    for i in range(n):
        with anyio.fail_after(30):
            await target(i)


async def run_cancel_scope(n: int) -> None:
    for i in range(n):
        with anyio.CancelScope(deadline=anyio.current_time() + 30):
            await target(i)


async def run_asyncio_timeout(n: int) -> None:
    for i in range(n):
        async with asyncio.timeout(30):
            await target(i)


SUCCESS: dict[str, Callable[[int], Awaitable[None]]] = {
    "bare await f(x)": run_bare,
    "ours: wrap_timeout(30 s)": run_ours,
    "anyio.fail_after(30)": run_fail_after,
    "anyio.CancelScope(deadline=...)": run_cancel_scope,
    "asyncio.timeout(30)": run_asyncio_timeout,
}


async def success_path(rounds: int, batch: int) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in SUCCESS}
    for fn in SUCCESS.values():  # warm-up
        await fn(batch // 10)
    for _ in range(rounds):
        for name, fn in SUCCESS.items():
            start = time.perf_counter_ns()
            await fn(batch)
            samples[name].append((time.perf_counter_ns() - start) / batch)
            # Let the loop purge the cancelled deadline timers, as it would in an
            # application, so they do not pile up into the next variant's round.
            await asyncio.sleep(0)
    return {name: statistics.median(values) for name, values in samples.items()}


async def late_ours() -> float:
    start = time.perf_counter()
    try:
        await OURS[1]()
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


async def sleep_one() -> None:
    await anyio.sleep(1)


# Wrapped in main(), after structlog is configured: loggers are bound at wrap time.
OURS: list[Any] = []


async def lateness(tries: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {"ours": [], "anyio.fail_after": []}
    for i in range(tries):
        # Alternate who goes first, so neither always runs right after the other.
        if i % 2:
            results["ours"].append(await late_ours())
            results["anyio.fail_after"].append(await late_fail_after())
        else:
            results["anyio.fail_after"].append(await late_fail_after())
            results["ours"].append(await late_ours())
    return results


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


async def main(quick: bool) -> None:
    rounds, batch, tries = (5, 500, 40) if quick else (ROUNDS, BATCH, LATE_TRIES)
    OURS[:] = [
        wrap_timeout(target, TimeoutConfig(seconds=30), name="bench"),
        wrap_timeout(sleep_one, TimeoutConfig(seconds=LATE_TIMEOUT), name="bench"),
    ]
    medians = await success_path(rounds, batch)
    bare = medians["bare await f(x)"]
    fail_after = medians["anyio.fail_after(30)"] - bare
    print(f"Success path: median ns/call over {rounds} interleaved rounds of {batch} calls")
    print(f"{'variant':34} {'ns/call':>10} {'overhead ns':>12} {'/ fail_after':>13}")
    for name, value in medians.items():
        overhead = value - bare
        ratio = "" if name.startswith("bare") else f"{overhead / fail_after:.2f}x"
        print(f"{name:34} {value:10.0f} {overhead:12.0f} {ratio:>13}")
    ratio_ours = (medians["ours: wrap_timeout(30 s)"] - bare) / fail_after
    print(f"\nours / fail_after overhead: {ratio_ours:.2f}x (target <= 0.70)\n")

    late = await lateness(tries)
    print(f"Lateness: {LATE_TIMEOUT * 1000:.0f} ms timeout around a 1 s sleep, {tries} tries each")
    print(f"{'scope':20} {'median ms':>10} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, values in late.items():
        ms = [v * 1000 for v in values]
        print(
            f"{name:20} {statistics.median(ms):10.3f} "
            f"{sorted(ms)[int(0.9 * (len(ms) - 1))]:8.3f} {p99(ms):8.3f} {max(ms):8.3f}"
        )
    ratio_late = p99(late["ours"]) / p99(late["anyio.fail_after"])
    print(f"\nours / fail_after p99 lateness: {ratio_late:.2f}x (target <= 1.50)")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few seconds, for smoke tests")
    args = parser.parse_args()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=True,
    )
    anyio.run(main, args.quick, backend="asyncio")


if __name__ == "__main__":
    cli()
