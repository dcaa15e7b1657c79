"""Timing helpers shared by every case module: paired, interleaved, bracketed.

The machine these figures come from is shared and noisy: its speed drifts by tens
of percent within a minute. So a variant is never compared with a floor measured
at another time. Each repeat runs, in order::

    floor, variant 1, floor, variant 2, floor, ..., variant k, floor

and a variant's ratio for that repeat is its ns/call over the mean of the floor
blocks timed just before and just after it. The reported ratio is the median of
those per-repeat ratios, with their min-max; the overhead in ns is
``(ratio - 1) x the floor's median ns/call``. The order of the variants rotates
from one repeat to the next, so none always runs right after the same neighbour.

A block runs its calls in chunks; between chunks the harness awaits one untimed
``asyncio.sleep(0)``, so the event loop purges the cancelled deadline timers that
cancel scopes leave behind, as it would between calls in an application.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

Loop = Callable[[int], Awaitable[int]]
"""Runs n calls of one variant and returns the elapsed ns (its own timing only)."""

CHUNK = 500


def call_loop(fn: Callable[[Any], Awaitable[Any]], arg: Any = None) -> Loop:
    """The standard loop: ``await fn(arg)`` n times (arg None: the index)."""
    if arg is None:

        async def loop(n: int) -> int:
            start = time.perf_counter_ns()
            for i in range(n):
                await fn(i)
            return time.perf_counter_ns() - start

        return loop

    async def loop_arg(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            await fn(arg)
        return time.perf_counter_ns() - start

    return loop_arg


@dataclass
class Case:
    """One variant: a key, a human label and its loop."""

    key: str
    label: str
    loop: Loop
    ours: bool = False


@dataclass
class Result:
    """The paired statistics of one variant against its group's floor."""

    key: str
    label: str
    group: str
    ns_per_call: float  # median over repeats
    ratio: float  # median of per-repeat ratios to the bracketing floors
    ratio_min: float
    ratio_max: float
    overhead_ns: float  # (ratio - 1) * floor median
    n_per_block: int
    repeats: int
    ours: bool = False
    is_floor: bool = False
    samples: list[float] = field(default_factory=list)


async def _block(loop: Loop, n: int, chunk: int = CHUNK) -> float:
    """ns/call of one block of *n* calls."""
    elapsed = 0
    done = 0
    while done < n:
        k = min(chunk, n - done)
        elapsed += await loop(k)
        done += k
        await asyncio.sleep(0)  # untimed: let the loop purge cancelled timers
    return elapsed / n


async def calibrate(loop: Loop, target_s: float, *, floor_n: int = 50, cap: int = 2_000_000) -> int:
    """Calls per block so that one block takes about *target_s*."""
    n = floor_n
    while True:
        per_call = await _block(loop, n)
        total = per_call * n
        if total >= target_s * 1e9 / 4 or n >= cap:
            return max(floor_n, min(cap, int(target_s * 1e9 / max(per_call, 1.0))))
        n *= 4


async def paired(
    group: str,
    floor: Case,
    cases: list[Case],
    *,
    repeats: int,
    target_s: float,
    budget_s: float,
    min_repeats: int = 3,
    floor_n: int = 50,
    warm_calls: int,
) -> list[Result]:
    """Measure *cases* against *floor*, interleaved and bracketed (see the module doc).

    Every variant first runs *warm_calls* calls, untimed. Block sizes come from
    the first timed calls, and a cold variant (a node binding its logger, a
    limiter whose first call sleeps) would otherwise get blocks tens of times
    shorter than its neighbours': measured, about 10 % more time per call for
    the first variant of a group, and 50-call blocks for LangChain's rate
    limiter (its bucket starts empty, so its first call sleeps 0.1 s).
    """
    for variant in (floor, *cases):
        await variant.loop(warm_calls)
    sizes = {floor.key: await calibrate(floor.loop, target_s, floor_n=floor_n)}
    for case in cases:
        sizes[case.key] = await calibrate(case.loop, target_s, floor_n=floor_n)
    # Everything built so far (modules, wrappers) moves out of the collector's
    # sight, so the collection before each block costs little and is alike for all.
    gc.collect()
    gc.freeze()
    floor_samples: list[float] = []
    ns: dict[str, list[float]] = {c.key: [] for c in cases}
    ratios: dict[str, list[float]] = {c.key: [] for c in cases}
    deadline = time.monotonic() + budget_s
    for rep in range(repeats):
        shift = rep % len(cases)
        order = cases[shift:] + cases[:shift]
        gc.collect()
        before = await _block(floor.loop, sizes[floor.key])
        floor_samples.append(before)
        for case in order:
            gc.collect()
            value = await _block(case.loop, sizes[case.key])
            gc.collect()
            after = await _block(floor.loop, sizes[floor.key])
            floor_samples.append(after)
            ns[case.key].append(value)
            ratios[case.key].append(value / ((before + after) / 2))
            before = after
        if rep + 1 >= min_repeats and time.monotonic() > deadline:
            break
    floor_med = statistics.median(floor_samples)
    results = [
        Result(
            key=floor.key,
            label=floor.label,
            group=group,
            ns_per_call=floor_med,
            ratio=1.0,
            ratio_min=1.0,
            ratio_max=1.0,
            overhead_ns=0.0,
            n_per_block=sizes[floor.key],
            repeats=len(floor_samples),
            is_floor=True,
            samples=floor_samples,
        )
    ]
    for case in cases:
        r = statistics.median(ratios[case.key])
        results.append(
            Result(
                key=case.key,
                label=case.label,
                group=group,
                ns_per_call=statistics.median(ns[case.key]),
                ratio=r,
                ratio_min=min(ratios[case.key]),
                ratio_max=max(ratios[case.key]),
                overhead_ns=(r - 1.0) * floor_med,
                n_per_block=sizes[case.key],
                repeats=len(ratios[case.key]),
                ours=case.ours,
                samples=ratios[case.key],
            )
        )
    return results


def percentile(values: list[float], q: float) -> float:
    """The *q* quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
