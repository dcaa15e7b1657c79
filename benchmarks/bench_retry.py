"""Cost of the retry layer against a bare call and against tenacity's decorator.

Run from the repository root::

    /tmp/venv/bin/python -m benchmarks.bench_retry

Two scenarios, all on one asyncio loop in one process, repeats interleaved so
drift (CPU frequency, other load) hits every contender alike:

- success: the function returns at once. Contenders: a bare ``await f(x)``, our
  `wrap_retry`, tenacity's ``@retry(stop=stop_after_attempt(3), wait=wait_none())``.
- one failure: the first attempt raises ``ConnectionError``, the second succeeds,
  zero backoff. Contenders: a hand-written ``try/except`` loop with a checkpoint
  between attempts (the floor: both libraries also yield to the loop before
  retrying), ours (backoff=0, jitter=0), tenacity's decorator.

Overhead is measured against the bare call (success) or the floor (one failure).
structlog is configured to drop info-level events, as a production service would:
tenacity logs nothing by default, so an enabled retry log line (tens of µs of
rendering and I/O) would measure structlog, not the retry layer.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from tenacity import retry, stop_after_attempt, wait_none

from resilient_nodes.config import RetryConfig
from resilient_nodes.retry import wrap_retry

INNER = 2_000  # calls per timed batch
REPEATS = 25  # interleaved batches per contender
BUDGET_S = 45.0  # stop repeating early past this

Bench = Callable[[], Awaitable[Any]]


async def _f(x: int) -> int:
    return x + 1


class _FailOnce:
    """Fails every other call, so each timed call is one failure then a success."""

    def __init__(self) -> None:
        self.fail_next = True

    async def __call__(self, x: int) -> int:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("flaky")
        self.fail_next = True
        return x + 1


def _success_contenders() -> dict[str, Callable[[int], Awaitable[int]]]:
    ours = wrap_retry(_f, RetryConfig(attempts=3), name="bench")
    theirs = retry(stop=stop_after_attempt(3), wait=wait_none())(_f)
    return {"bare": _f, "ours": ours, "tenacity": theirs}


def _failure_contenders() -> dict[str, Callable[[int], Awaitable[int]]]:
    floor_fn = _FailOnce()

    async def floor(x: int) -> int:
        for attempt in range(1, 4):
            try:
                return await floor_fn(x)
            except ConnectionError:
                if attempt == 3:
                    raise
            await asyncio.sleep(0)
        raise AssertionError("unreachable")

    config = RetryConfig(attempts=3, backoff=0, jitter=0, max_backoff=0)
    ours = wrap_retry(_FailOnce(), config, name="bench")
    theirs = retry(stop=stop_after_attempt(3), wait=wait_none())(_FailOnce())
    return {"floor": floor, "ours": ours, "tenacity": theirs}


async def _batch(fn: Callable[[int], Awaitable[int]]) -> float:
    start = time.perf_counter_ns()
    for i in range(INNER):
        await fn(i)
    return (time.perf_counter_ns() - start) / INNER


async def _measure(contenders: dict[str, Callable[[int], Awaitable[int]]]) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for fn in contenders.values():  # warm up
        await _batch(fn)
    deadline = time.monotonic() + BUDGET_S / 2
    for _ in range(REPEATS):
        for name, fn in contenders.items():
            samples[name].append(await _batch(fn))
        if time.monotonic() > deadline:
            break
    return {name: statistics.median(values) for name, values in samples.items()}


def _row(label: str, ns: float, ratio: str) -> str:
    return f"| {label:<28} | {ns:>14,.0f} | {ratio:>28} |"


async def _main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    success = await _measure(_success_contenders())
    failure = await _measure(_failure_contenders())

    bare, ours_ok, ten_ok = success["bare"], success["ours"], success["tenacity"]
    floor, ours_fail, ten_fail = failure["floor"], failure["ours"], failure["tenacity"]
    ours_over = ours_fail - floor
    ten_over = ten_fail - floor

    print(f"| {'contender':<28} | {'median ns/call':>14} | {'ratio':>28} |")
    print(f"|{'-' * 30}|{'-' * 15}:|{'-' * 29}:|")
    print(_row("success: bare await f(x)", bare, "1.00x"))
    print(_row("success: ours", ours_ok, f"{ours_ok / bare:.2f}x bare"))
    print(_row("success: tenacity @retry", ten_ok, f"{ten_ok / bare:.0f}x bare"))
    print(_row("1 failure: try/except floor", floor, "1.00x"))
    print(_row("1 failure: ours", ours_fail, f"overhead {ours_over:,.0f} ns"))
    print(_row("1 failure: tenacity @retry", ten_fail, f"overhead {ten_over:,.0f} ns"))
    print()
    print(f"success path: ours / bare = {ours_ok / bare:.2f}x (target <= 5x)")
    print(
        "failure path: our overhead / tenacity's overhead = "
        f"{ours_over / ten_over:.3f} (target <= 0.25)"
    )


if __name__ == "__main__":
    asyncio.run(_main())
