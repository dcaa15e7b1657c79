"""Strategies for LLM calls: fallback and streams, against LangChain and a hand-written bound.

Fallback success path: ``Policy.fallback(g).wrap(f)`` against LangChain's
``RunnableLambda(f).with_fallbacks([RunnableLambda(g)])``, the primary returning
at once (the fallback layer's whole cost is then its wrapper).

Stream per-item cost: iterating a stream of 500 items, each block a new stream.
The floor is the bare ``async for``; the reference bounds each ``__anext__`` with a
hand-written ``anyio.fail_after``; ours is ``Policy.stream(idle=30).wrap(source)``.
Two sources: one whose items are ready (the tokens of one network read) and one
that yields to the event loop before every item (the worst case for a bound).

Stall cut: a stream delivers one item and then goes silent; the time from its
last item to the caller catching `NodeStreamInterruptedError`, against the idle
bound (asyncio, and trio where it is installed).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import TYPE_CHECKING, Any

import anyio

from resilient_nodes import NodeStreamInterruptedError, Policy

from ._common import f
from ._timing import Case, Loop, call_loop, percentile

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

STALL_IDLE = 0.02


async def g(x: Any) -> Any:
    """The alternative: never called on the success path."""
    return x


def fallback_floor() -> Case:
    return Case("fallback_floor", "bare `await f(x)` (FLOOR)", call_loop(f))


def fallback_cases() -> list[Case]:
    from langchain_core.runnables import RunnableLambda

    ours = Policy.fallback(g).wrap(f, name="bench_fallback")
    runnable = RunnableLambda(f).with_fallbacks([RunnableLambda(g)])
    return [
        Case("fallback_ours", "ours: `Policy.fallback(g).wrap(f)`", call_loop(ours), ours=True),
        Case(
            "fallback_langchain",
            "LangChain `RunnableLambda(f).with_fallbacks([RunnableLambda(g)]).ainvoke(x)`",
            call_loop(runnable.ainvoke),
        ),
    ]


# --- stream per item ------------------------------------------------------------------------


async def ready_source(n: int) -> AsyncIterator[int]:
    for i in range(n):
        yield i


async def yielding_source(n: int) -> AsyncIterator[int]:
    for i in range(n):
        await asyncio.sleep(0)
        yield i


def _bare_loop(source: Callable[[int], AsyncIterator[int]]) -> Loop:
    async def loop(n: int) -> int:
        start = time.perf_counter_ns()
        async for _ in source(n):
            pass
        return time.perf_counter_ns() - start

    return loop


def _fail_after_loop(source: Callable[[int], AsyncIterator[int]]) -> Loop:
    async def bounded(n: int) -> AsyncIterator[int]:
        iterator = source(n).__aiter__()
        while True:
            with anyio.fail_after(30):
                try:
                    item = await iterator.__anext__()
                except StopAsyncIteration:
                    return
            yield item

    return _bare_loop(bounded)


def _ours_loop(source: Callable[[int], AsyncIterator[int]], name: str) -> Loop:
    return _bare_loop(Policy.stream(idle=30).wrap(source, name=name))


def stream_floor(kind: str) -> Case:
    source = ready_source if kind == "ready" else yielding_source
    return Case(
        f"stream_{kind}_floor",
        f"bare `async for` over the {kind} source (FLOOR)",
        _bare_loop(source),
    )


def stream_cases(kind: str) -> list[Case]:
    source = ready_source if kind == "ready" else yielding_source
    return [
        Case(
            f"stream_{kind}_ours",
            f"ours: `Policy.stream(idle=30).wrap(source)`, {kind} items",
            _ours_loop(source, f"bench_stream_{kind}"),
            ours=True,
        ),
        Case(
            f"stream_{kind}_fail_after",
            f"`with anyio.fail_after(30)` around each `__anext__`, {kind} items",
            _fail_after_loop(source),
        ),
    ]


# --- stall cut --------------------------------------------------------------------------------


async def _stalls() -> AsyncIterator[int]:
    yield 1
    await anyio.sleep(3600)
    yield 2


async def _cut_times(tries: int) -> list[float]:
    """Seconds from the last item to the interruption, minus the idle bound, in ms."""
    wrapped = Policy.stream(idle=STALL_IDLE).wrap(_stalls, name="bench_stall")
    late: list[float] = []
    for _ in range(tries):
        stream = wrapped()
        await stream.__anext__()
        start = time.perf_counter()
        try:
            await stream.__anext__()
        except NodeStreamInterruptedError:
            late.append((time.perf_counter() - start - STALL_IDLE) * 1000)
        else:
            raise AssertionError("no stall")
    return late


def _summary(late: list[float]) -> dict[str, float]:
    return {
        "n": len(late),
        "median": statistics.median(late),
        "p90": percentile(late, 0.9),
        "p99": percentile(late, 0.99),
        "max": max(late),
    }


async def stall_cut(tries: int) -> dict[str, dict[str, float]]:
    """Lateness of the cut past the idle bound, in ms, on asyncio (run in the caller's loop)."""
    return {"asyncio": _summary(await _cut_times(tries))}


def stall_cut_trio(tries: int) -> dict[str, float] | None:
    """The same on trio, in a trio run of its own (None where trio is not installed)."""
    try:
        import trio
    except ImportError:
        return None
    return _summary(trio.run(_cut_times, tries))


def trio_per_item(items: int, repeats: int) -> dict[str, float] | None:
    """Per-item overhead on trio (a native scope per item), ours over ``fail_after``'s.

    Not paired like the asyncio groups (the harness runs on asyncio): the best of
    *repeats* interleaved blocks of each, on the yielding source.
    """
    try:
        import trio
    except ImportError:
        return None

    async def trio_source(n: int) -> AsyncIterator[int]:
        for i in range(n):
            await trio.lowlevel.checkpoint()
            yield i

    loops = {
        "bare": _bare_loop(trio_source),
        "fail_after": _fail_after_loop(trio_source),
        "ours": _ours_loop(trio_source, "bench_stream_trio"),
    }

    async def main() -> dict[str, float]:
        best = dict.fromkeys(loops, float("inf"))
        for _ in range(repeats):
            for key, loop in loops.items():
                best[key] = min(best[key], await loop(items) / items)
        return best

    best = trio.run(main)
    fail_after = best["fail_after"] - best["bare"]
    ours = best["ours"] - best["bare"]
    return {
        "bare_ns": best["bare"],
        "fail_after_overhead_ns": fail_after,
        "ours_overhead_ns": ours,
        "ratio": ours / fail_after if fail_after > 0 else float("nan"),
    }
