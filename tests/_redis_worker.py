"""One worker process of the multi-process breaker test (run as a script).

Usage: _redis_worker.py URL PREFIX WORKER_ID. Waits for the test's go key, then
calls one breaker-wrapped node in a loop until the stop key (or 8 s), recording
each outcome in Redis. The dependency fails until the test sets ``t:healthy``;
a call that runs while the shared breaker is half-open counts as a probe.
"""

from __future__ import annotations

import sys
import time

import redis

from resilient_nodes import NodeCircuitOpenError, Policy
from resilient_nodes._redis_storage import RedisBreakerStorage

NAME = "shared_node"


def main() -> int:
    url, prefix, worker = sys.argv[1], sys.argv[2], sys.argv[3]
    probe = redis.Redis.from_url(url, socket_timeout=2.0)
    state_key = f"{prefix}:{NAME}:state"
    stats = f"t:stats:{worker}"

    def dependency() -> str:
        probe.incr("t:calls")
        if probe.get("t:healthy"):
            if probe.hget(state_key, "state") == b"half-open":
                probe.incr("t:probes")
                time.sleep(0.2)  # a slow probe: a second one would overlap it
            return "ok"
        raise ConnectionError("dependency down")

    with RedisBreakerStorage(url, prefix=prefix, refresh_interval=0.1) as storage:
        policy = Policy.breaker(failure_threshold=6, recovery_timeout=0.5, storage=storage)
        node = policy.wrap(dependency, name=NAME)
        deadline = time.monotonic() + 5.0
        while not probe.get("t:go"):
            if time.monotonic() > deadline:
                return 2
            time.sleep(0.005)
        deadline = time.monotonic() + 8.0
        while time.monotonic() < deadline and not probe.get("t:stop"):
            try:
                node()
            except NodeCircuitOpenError:
                probe.hincrby(stats, "rejected", 1)
            except ConnectionError:
                probe.hincrby(stats, "failed", 1)
            else:
                probe.hincrby(stats, "ok", 1)
            time.sleep(0.005)
    probe.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
