"""Memory per in-flight call: N concurrent calls parked on one ``anyio.Event``.

Each variant runs in a fresh interpreter (``python -m benchmarks.bench_memory
VARIANT N`` prints one JSON line), after a 200-call warm-up round:

1. RSS: resident set (``/proc/self/statm``) while all N are parked, minus before.
2. tracemalloc: live Python-allocated bytes after ``gc.collect()`` while all N are
   parked, minus before (a second round, with tracing on).

"wrapper bytes" subtract the bare row: a task awaiting the target directly.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import tracemalloc
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

VARIANTS = {
    "bare": "bare task awaiting the target",
    "retry_ours": "ours: `Policy.retry()`",
    "breaker_ours": "ours: `Policy.breaker()`",
    "timeout_ours": "ours: `Policy.timeout(30)`",
    "pipeline_ours": "ours: full pipeline `retry() | breaker() | timeout(30)`",
    "node_ours": "ours: full node (`create_node` with that policy)",
    "tenacity": "tenacity `@retry(stop_after_attempt(3), wait_exponential_jitter())`",
    "fail_after": "`with anyio.fail_after(30)`",
    "naive": "naive stack: tenacity + pybreaker `calling()` + `fail_after(30)`",
}


def _build(  # noqa: PLR0911 - one branch per variant reads best
    variant: str, event: anyio.Event, parked: list[int]
) -> Callable[[], Awaitable[Any]]:
    from tenacity import retry, stop_after_attempt, wait_exponential_jitter

    from resilient_nodes import Policy, create_node

    from ._common import full_policy, naive_stack

    async def target(x: Any) -> Any:
        parked[0] += 1
        await event.wait()
        return x

    state = {"value": 1}

    async def target_impl(state: dict[str, Any]) -> dict[str, Any]:
        parked[0] += 1
        await event.wait()
        return {"value": state["value"] + 1}

    def calling(fn: Callable[[Any], Awaitable[Any]]) -> Callable[[], Awaitable[Any]]:
        return lambda: fn(1)

    if variant == "bare":
        return calling(target)
    if variant == "retry_ours":
        return calling(Policy.retry().wrap(target, name="mem"))
    if variant == "breaker_ours":
        return calling(Policy.breaker().wrap(target, name="mem"))
    if variant == "timeout_ours":
        return calling(Policy.timeout(30).wrap(target, name="mem"))
    if variant == "pipeline_ours":
        return calling(full_policy().wrap(target, name="mem"))
    if variant == "node_ours":
        node = create_node(target_impl, name="mem", policy=full_policy())
        return lambda: node(state)
    if variant == "tenacity":
        return calling(retry(stop=stop_after_attempt(3), wait=wait_exponential_jitter())(target))
    if variant == "fail_after":

        async def fa(x: Any) -> Any:
            with anyio.fail_after(30):
                return await target(x)

        return calling(fa)
    if variant == "naive":
        return calling(naive_stack(target))
    raise SystemExit(f"unknown variant {variant}")


def _rss() -> int:
    with open("/proc/self/statm") as fh:  # noqa: PTH123
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _round(variant: str, n: int, *, traced: bool) -> dict[str, float]:
    event = anyio.Event()
    parked = [0]
    call = _build(variant, event, parked)
    gc.collect()
    before = tracemalloc.get_traced_memory()[0] if traced else _rss()
    tasks = [asyncio.ensure_future(call()) for _ in range(n)]
    for _ in range(1000):  # bounded: every task parks within a few loop turns
        if parked[0] >= n:
            break
        await asyncio.sleep(0)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] if traced else _rss()
    event.set()
    await asyncio.gather(*tasks)
    return {"bytes_per_call": (after - before) / n, "parked": parked[0]}


async def _child(variant: str, n: int) -> dict[str, Any]:
    from ._common import configure_logging

    configure_logging()
    await _round(variant, 200, traced=False)  # warm-up: lazy bindings, caches
    rss = await _round(variant, n, traced=False)
    tracemalloc.start()
    traced = await _round(variant, n, traced=True)
    tracemalloc.stop()
    return {
        "variant": variant,
        "n": n,
        "rss_per_call": rss["bytes_per_call"],
        "traced_per_call": traced["bytes_per_call"],
        "parked": min(rss["parked"], traced["parked"]),
    }


def measure(variants: list[str], n: int, *, timeout_s: float = 300) -> dict[str, dict[str, Any]]:
    """Run each variant in its own interpreter; bytes per call and over bare."""
    out: dict[str, dict[str, Any]] = {}
    for variant in variants:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_memory", variant, str(n)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=True,
        )
        out[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
    bare = out.get("bare")
    for row in out.values():
        row["label"] = VARIANTS[row["variant"]]
        if bare is not None:
            row["traced_wrapper"] = row["traced_per_call"] - bare["traced_per_call"]
            row["rss_wrapper"] = row["rss_per_call"] - bare["rss_per_call"]
    return out


if __name__ == "__main__":
    result = asyncio.run(_child(sys.argv[1], int(sys.argv[2])))
    sys.stdout.write(json.dumps(result) + "\n")
