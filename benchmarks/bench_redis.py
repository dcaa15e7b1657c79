"""Success-path cost and Redis round trips per call: ours against pybreaker's Redis storage.

The ``redis`` section of ``python -m benchmarks`` (part of the default run): it
runs ``python -m benchmarks.bench_redis --json CALLS REPEATS`` in a fresh
interpreter, which starts its own redis-server on a free port of 127.0.0.1
(stopped by PID at the end), runs every variant in interleaved repeats and prints
one JSON line. Without ``--json`` it prints a table instead. Skipped, with a note,
where no redis-server is installed: it needs nothing else that the run does not
bring.

Variants, each calling a trivial sync function that succeeds:

* ``memory``: `wrap_breaker` with the default in-process storage;
* ``ours (redis)``: `wrap_breaker` with `RedisBreakerStorage` (refresh every 0.5 s);
* ``pybreaker CircuitRedisStorage``: ``breaker.call(f)`` on pybreaker's own Redis
  storage, the way its documentation uses it.

Round trips are counted by wrapping ``Connection.send_packed_command`` (one call
per request or pipeline sent), in every thread, including our background thread.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
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


def server_missing() -> str | None:
    """Why this section cannot run here (no redis-server), or None."""
    if shutil.which("redis-server") is None:
        return (
            "redis-server is not installed, so the redis section was skipped "
            "(Debian: apt-get install redis-server)"
        )
    return None


def _measure(calls: int, repeats: int) -> dict[str, Any]:
    """Every variant against one fresh redis-server, in this interpreter."""
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
        for _ in range(repeats):
            for name, fn in variants.items():
                if time.monotonic() > deadline:
                    break
                results[name].append(measure(fn, calls))
        # Our cost is per second, not per call: the refresh of the mirror.
        before = _sent
        time.sleep(1.0)
        idle_rate = _sent - before
        storage.close()
        client.close()
    Connection.send_packed_command = _original_send  # type: ignore[method-assign]

    base = statistics.median(t for t, _ in results["pybreaker CircuitRedisStorage"])
    rows = []
    for name, runs in results.items():
        per_call = statistics.median(t for t, _ in runs)
        rows.append(
            {
                "variant": name,
                "us_per_call": per_call * 1e6,
                "round_trips_per_call": statistics.median(r for _, r in runs),
                "vs_pybreaker": per_call / base,
                "repeats": len(runs),
            }
        )
    return {"calls": calls, "rows": rows, "refresh_round_trips_per_s": idle_rate}


def run(calls: int, repeats: int, *, timeout_s: float = 300) -> dict[str, Any]:
    """`_measure` in a fresh interpreter: its patch, thread and server stay out of ours."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_redis", "--json", str(calls), str(repeats)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: list[str]) -> None:
    if argv[:1] == ["--json"]:
        sys.stdout.write(json.dumps(_measure(int(argv[1]), int(argv[2]))) + "\n")
        return
    out = _measure(CALLS, REPEATS)
    print(f"success path, {CALLS} calls x {REPEATS} interleaved repeats (median per call)")
    print(f"{'variant':32} {'us/call':>10} {'round trips/call':>18} {'vs pybreaker':>14}")
    for row in out["rows"]:
        print(
            f"{row['variant']:32} {row['us_per_call']:10.2f} "
            f"{row['round_trips_per_call']:18.4f} {row['vs_pybreaker']:13.4f}x"
        )
    print(
        f"ours, background refresh: {out['refresh_round_trips_per_s']} round trips per second, "
        "whatever the call rate"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
