"""One worker process of the multi-process rate-limit tests (run as a script).

Usage: _ratelimit_worker.py URL KEY WORKER_ID LIMIT THROTTLE_AT. Waits for the
test's go key, then calls one rate-limited node in a loop until the stop key (or
6 s), pushing the wall-clock time of every admitted call to ``t:admitted``. With
THROTTLE_AT > 0 the dependency answers that call (counted from 1) with a 429
carrying ``Retry-After: 1``, and records when in ``t:throttled``.
"""

from __future__ import annotations

import contextlib
import sys
import time

import redis

from resilient_nodes import NodeRateLimitedError, Policy


class TooManyRequestsError(Exception):
    """A 429 as a provider SDK raises it."""

    status_code = 429
    headers = {"Retry-After": "1"}  # noqa: RUF012 - read-only test double


def main() -> int:
    url, key, worker, limit, throttle_at = sys.argv[1:6]
    probe = redis.Redis.from_url(url, socket_timeout=2.0)
    calls = 0

    def dependency() -> str:
        nonlocal calls
        calls += 1
        if calls == int(throttle_at):
            probe.set("t:throttled", repr(time.time()))
            raise TooManyRequestsError("429 Too Many Requests")
        probe.rpush("t:admitted", repr(time.time()))
        return "ok"

    node = Policy.rate_limit(int(limit), per=1, key=key, storage=url, max_wait=0.5).wrap(
        dependency, name=f"worker{worker}"
    )
    probe.incr("t:ready")
    deadline = time.monotonic() + 30.0
    while not probe.get("t:go"):
        if time.monotonic() > deadline:
            return 2
        time.sleep(0.005)
    deadline = time.monotonic() + 6.0
    while time.monotonic() < deadline and not probe.get("t:stop"):
        with contextlib.suppress(NodeRateLimitedError, TooManyRequestsError):
            node()
        time.sleep(0.01)
    probe.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
