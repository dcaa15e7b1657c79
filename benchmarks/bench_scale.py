"""Scale: N concurrent node calls, each awaiting ``anyio.sleep(0.01)``.

``python -m benchmarks.bench_scale MODE N ROUNDS`` prints one JSON line:

- ``MODE=wall``: one interpreter times the variants, unwrapped ``impl(state)``
  and the full node, rotating their order for ROUNDS rounds (wall time from
  spawning the first task to the last finishing; median per variant). Three
  references run beside them: ``impl`` under a bare ``anyio.fail_after(30)`` (the
  node's wall ratio is held to at most 1.5x this one's), under
  ``asyncio.timeout(30)`` alone (what the standard library's own deadline costs
  at this scale) and, up to ``NAIVE_MAX`` calls, the naive stack (tenacity +
  pybreaker + ``fail_after``).
- ``MODE=peak-bare`` / ``peak-node``: a fresh interpreter runs one round of one
  variant under tracemalloc and reports its peak traced memory per call (the
  process's peak RSS is dominated by the interpreter and imports below 100,000).
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import subprocess
import sys
import time
import tracemalloc
from typing import Any

import anyio

SLEEP = 0.01
NAIVE_MAX = 10_000  # the naive stack costs ~10x; above this it would dominate the run


async def _impl(state: dict[str, Any]) -> dict[str, Any]:
    await anyio.sleep(SLEEP)
    return {"value": state["value"] + 1}


def _node() -> Any:
    from resilient_nodes import create_node

    from ._common import full_policy

    return create_node(_impl, name="scale", policy=full_policy())


async def _run(call: Any, n: int) -> float:
    state = {"value": 1}
    gc.collect()
    start = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(n):
            group.create_task(call(state))
    return time.perf_counter() - start


async def _child(mode: str, n: int, rounds: int) -> dict[str, Any]:
    from ._common import configure_logging

    configure_logging()
    node = _node()
    if mode == "wall":
        from ._common import naive_stack, under_asyncio_timeout, under_fail_after

        variants = [
            ("bare", _impl),
            ("node", node),
            ("fail_after_ref", under_fail_after(_impl)),
            ("timeout_ref", under_asyncio_timeout(_impl)),
        ]
        if n <= NAIVE_MAX:
            variants.append(("naive", naive_stack(_impl)))
        for _, call in variants:
            await _run(call, 200)
        walls: dict[str, list[float]] = {name: [] for name, _ in variants}
        for i in range(rounds):
            shift = i % len(variants)
            for name, call in variants[shift:] + variants[:shift]:
                walls[name].append(await _run(call, n))
        out: dict[str, Any] = {"n": n, "rounds": rounds}
        for name, times in walls.items():
            out[f"{name}_s"] = statistics.median(times)
        return out
    call = node if mode == "peak-node" else _impl
    await _run(call, 200)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    await _run(call, n)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"n": n, "peak_bytes_per_call": (peak - base) / n}


def _spawn(*args: str, timeout_s: float) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_scale", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def measure(sizes: list[int], rounds: int, *, timeout_s: float = 400) -> list[dict[str, Any]]:
    """Wall time and peak RSS per call for each N, bare and full node."""
    rows = []
    for n in sizes:
        wall = _spawn("wall", str(n), str(rounds), timeout_s=timeout_s)
        bare = _spawn("peak-bare", str(n), "1", timeout_s=timeout_s)
        node = _spawn("peak-node", str(n), "1", timeout_s=timeout_s)
        rows.append(
            {
                "n": n,
                "bare_s": wall["bare_s"],
                "node_s": wall["node_s"],
                "ratio": wall["node_s"] / wall["bare_s"],
                "bare_us_per_call": wall["bare_s"] / n * 1e6,
                "node_us_per_call": wall["node_s"] / n * 1e6,
                "fail_after_ref_ratio": wall["fail_after_ref_s"] / wall["bare_s"],
                "timeout_ref_ratio": wall["timeout_ref_s"] / wall["bare_s"],
                "naive_ratio": wall["naive_s"] / wall["bare_s"] if "naive_s" in wall else None,
                "bare_peak_per_call": bare["peak_bytes_per_call"],
                "node_peak_per_call": node["peak_bytes_per_call"],
                "rounds": rounds,
            }
        )
    return rows


if __name__ == "__main__":
    out = asyncio.run(_child(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
    sys.stdout.write(json.dumps(out) + "\n")
