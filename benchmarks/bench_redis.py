"""Success-path cost and Redis round trips per call: ours against pybreaker's Redis storage.

Run from the repository root: ``python -m benchmarks.bench_redis``. Starts its own
redis-server on a free port of 127.0.0.1 (stopped by PID at the end), runs every
variant in interleaved repeats in this one process, and prints a table.

Variants, each calling a trivial sync function that succeeds:

* ``memory``: `wrap_breaker` with the default in-process storage;
* ``ours (redis)``: `wrap_breaker` with `RedisBreakerStorage` (refresh every 0.5 s);
* ``pybreaker CircuitRedisStorage``: ``breaker.call(f)`` on pybreaker's own Redis
  storage, the way its documentation uses it.

Round trips are counted by wrapping ``Connection.send_packed_command`` (one call
per request or pipeline sent), in every thread, including our background thread.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

import pybreaker
import redis
from redis.connection import Connection

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from redis_fixtures import RedisServer

from resilient_nodes._breaker import NodeCircuitBreaker, wrap_breaker
from resilient_nodes._redis_storage import RedisBreakerStorage

CALLS = 2_000
REPEATS = 5
BUDGET_S = 50.0

_sent = 0
_original_send = Connection.send_packed_command


def _counting_send(self: Connection, *args: Any, **kwargs: Any) -> None:
    global _sent  # noqa: PLW0603 - a benchmark-wide counter
    _sent += 1
    _original_send(self, *args, **kwargs)


def work() -> int:
    return 1


def measure(fn: Any, calls: int) -> tuple[float, float]:
    """Seconds per call and round trips per call over *calls* calls."""
    before = _sent
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    elapsed = time.perf_counter() - started
    return elapsed / calls, (_sent - before) / calls


def main() -> None:
    Connection.send_packed_command = _counting_send  # type: ignore[method-assign]
    deadline = time.monotonic() + BUDGET_S
    with RedisServer() as server:
        memory = wrap_breaker(work, NodeCircuitBreaker("bench_memory"), name="bench_memory")
        storage = RedisBreakerStorage(server.url, prefix="bench")
        ours = wrap_breaker(work, NodeCircuitBreaker("bench", storage=storage), name="bench")
        client = redis.Redis(port=server.port)
        pb_storage = pybreaker.CircuitRedisStorage(
            pybreaker.STATE_CLOSED, client, namespace="bench_pybreaker"
        )
        pb = pybreaker.CircuitBreaker(state_storage=pb_storage)
        theirs = lambda: pb.call(work)  # noqa: E731
        variants = {
            "memory (in-process)": memory,
            "ours: RedisBreakerStorage": ours,
            "pybreaker CircuitRedisStorage": theirs,
        }
        for fn in variants.values():  # warm up: connections, script load, first refresh
            measure(fn, 200)
        time.sleep(0.1)
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        # Interleaved so that drift (CPU frequency, the refresh thread) hits every
        # variant alike. Our refresh adds 2 round trips per second whatever the load;
        # over a 2000-call run that shows up as a small fraction per call.
        for _ in range(REPEATS):
            for name, fn in variants.items():
                if time.monotonic() > deadline:
                    break
                results[name].append(measure(fn, CALLS))
        # Our cost is per second, not per call: the refresh of the mirror.
        before = _sent
        time.sleep(1.0)
        idle_rate = _sent - before
        storage.close()
        client.close()
    Connection.send_packed_command = _original_send  # type: ignore[method-assign]

    base = statistics.median(t for t, _ in results["pybreaker CircuitRedisStorage"])
    print(f"success path, {CALLS} calls x {REPEATS} interleaved repeats (median per call)")
    print(f"{'variant':32} {'us/call':>10} {'round trips/call':>18} {'vs pybreaker':>14}")
    for name, runs in results.items():
        per_call = statistics.median(t for t, _ in runs)
        trips = statistics.median(r for _, r in runs)
        print(f"{name:32} {per_call * 1e6:10.2f} {trips:18.4f} {per_call / base:13.4f}x")
    print(f"ours, background refresh: {idle_rate} round trips per second, whatever the call rate")


if __name__ == "__main__":
    main()
