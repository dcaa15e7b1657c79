"""A rate limit shared on a real redis-server (resilient_nodes._ratelimit, storage=...)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
from redis_fixtures import RedisServer, free_port
from structlog.testing import capture_logs

from resilient_nodes import NodeRateLimitedError, Policy
from resilient_nodes._logging import LogEvent

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
pytestmark = pytest.mark.redis


@pytest.fixture
def key() -> str:
    """A fresh limit key, so tests sharing the server never share a window."""
    return f"k{uuid.uuid4().hex[:12]}"


def _run_workers(server: RedisServer, key: str, limit: int, throttle_at: list[int]) -> list[float]:
    """Run one worker per entry of *throttle_at* for ~2.5 s; the admission times, sorted."""
    client = server.client()
    client.delete("t:go", "t:stop", "t:ready", "t:admitted", "t:throttled")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    workers = [
        subprocess.Popen(  # noqa: S603 - our own worker script, no shell
            [
                sys.executable,
                str(HERE / "_ratelimit_worker.py"),
                server.url,
                key,
                str(i),
                str(limit),
                str(at),
            ],
            env=env,
        )
        for i, at in enumerate(throttle_at)
    ]
    try:
        deadline = time.monotonic() + 30  # the workers import and connect
        while int(client.get("t:ready") or 0) < len(workers):
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.01)
        client.set("t:go", 1)
        time.sleep(2.5)
    finally:
        client.set("t:stop", 1)
        codes = []
        for worker in workers:
            try:
                codes.append(worker.wait(timeout=15))
            except subprocess.TimeoutExpired:
                worker.kill()
                codes.append(worker.wait())
    assert codes == [0] * len(workers)
    admitted = sorted(float(stamp) for stamp in client.lrange("t:admitted", 0, -1))
    throttled = client.get("t:throttled")
    client.close()
    return [*admitted, -1.0 if throttled is None else -float(throttled)]


def test_a_shared_limit_is_never_exceeded_by_several_processes(
    server: RedisServer, key: str
) -> None:
    """3 processes, 10 per second shared: no 1-second window ever holds more than 10."""
    *admitted, _ = _run_workers(server, key, 10, [0, 0, 0])
    assert len(admitted) >= 20  # the limit was reached, window after window
    # Each admission is stamped just after its round trip: allow that much slack.
    for first, eleventh in zip(admitted, admitted[10:], strict=False):
        assert eleventh - first >= 1.0 - 0.05, (first, eleventh)


def test_a_429_seen_by_one_process_pauses_all(server: RedisServer, key: str) -> None:
    """Worker 0 gets a 429 with Retry-After: 1; no process is admitted for that second."""
    *admitted, throttled = _run_workers(server, key, 1000, [10, 0, 0])
    at = -throttled
    assert at > 0, "the 429 never happened"
    before = [t for t in admitted if t < at]
    during = [t for t in admitted if at + 0.05 < t < at + 0.95]
    after = [t for t in admitted if t > at + 1.0]
    assert before
    assert during == []
    assert after  # the pause ends: calls resume


def test_one_round_trip_per_admitted_call(
    server: RedisServer, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Admitted calls cost one Redis round trip each (the limits Lua script)."""
    import redis.connection

    node = Policy.rate_limit(1000, per=1, key=key, storage=server.url).wrap(
        lambda: "ok", name="trips"
    )
    node()  # loads the script once
    sent = 0
    send = redis.connection.AbstractConnection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        nonlocal sent
        sent += 1
        send(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    client = server.client()
    client.config_resetstat()
    before = sent
    for _ in range(50):
        assert node() == "ok"
    trips = sent - before
    stats = client.info("commandstats")
    client.close()
    assert trips == 50
    assert stats["cmdstat_evalsha"]["calls"] == 50


@pytest.mark.anyio
async def test_async_callers_wait_for_the_shared_window(server: RedisServer, key: str) -> None:
    """Async (asyncio and trio): the round trip runs in a thread; a full window waits."""

    async def work() -> float:
        return time.monotonic()

    node: Any = Policy.rate_limit(2, per=1, key=key, storage=server.url, max_wait=3).wrap(
        work, name="async_shared"
    )
    stamps = [await node() for _ in range(3)]
    assert stamps[2] - stamps[0] >= 0.9
    with pytest.raises(NodeRateLimitedError, match="past the enclosing deadline"):
        with anyio.fail_after(0.2):
            await node()
            await node()


@pytest.mark.parametrize("fault", ["refused", "stalled"])
def test_redis_down_gives_a_bounded_logged_local_fallback(fault: str, key: str) -> None:
    """Connection refused, or a server that stopped answering: a local limit, promptly."""
    down = RedisServer(free_port())
    if fault == "stalled":
        down.start()
        down.pause()
    try:
        node = Policy.rate_limit(2, per=1, key=key, storage=down.url, max_wait=0).wrap(
            lambda: "ok", name="fallback"
        )
        start = time.monotonic()
        with capture_logs() as logs:
            results = [node(), node()]
            with pytest.raises(NodeRateLimitedError):
                node()  # the local stand-in enforces the same limit
        assert time.monotonic() - start < 1.5
        assert results == ["ok", "ok"]
        unavailable = [e for e in logs if e["event"] == LogEvent.RATE_LIMIT_STORAGE_UNAVAILABLE]
        assert len(unavailable) == 1
        assert unavailable[0]["log_level"] == "warning"
    finally:
        down.stop()


def test_recovery_is_logged(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the fallback period, Redis is tried again; its return is logged."""
    from resilient_nodes import _ratelimit

    monkeypatch.setattr(_ratelimit, "FALLBACK_PERIOD", 0.05)
    port = free_port()
    server = RedisServer(port)
    node = Policy.rate_limit(100, per=1, key=key, storage=server.url).wrap(
        lambda: "ok", name="recovering"
    )
    with capture_logs() as logs:
        assert node() == "ok"  # down: local
        server.start()
        try:
            time.sleep(0.1)
            assert node() == "ok"  # back
        finally:
            server.stop()
    events = [e["event"] for e in logs]
    assert events == [
        LogEvent.RATE_LIMIT_STORAGE_UNAVAILABLE,
        LogEvent.RATE_LIMIT_STORAGE_RECOVERED,
    ]


def test_a_pause_is_written_into_the_shared_window(server: RedisServer, key: str) -> None:
    """A sync 429 fills the key's Redis window, so a limiter with its own local window is refused."""
    from resilient_nodes._config import RateLimitConfig
    from resilient_nodes._ratelimit import RateLimiter, wrap_rate_limit

    class TooManyRequestsError(Exception):
        status_code = 429
        retry_after = 5

    def throttled() -> None:
        raise TooManyRequestsError("429")

    config = RateLimitConfig(limit=3, per=1, key=key, storage=server.url, max_wait=0)
    with pytest.raises(TooManyRequestsError):
        wrap_rate_limit(throttled, RateLimiter("a", config))()
    client = server.client()
    assert client.llen(f"resilient_nodes:ratelimit:LIMITER/{key}/3/1/second") == 3
    client.close()
    # Another "process": its own local window (a private clock), the same Redis key.
    other = wrap_rate_limit(lambda: "ok", RateLimiter("b", config, clock=time.monotonic))
    with pytest.raises(NodeRateLimitedError) as caught:
        other()
    assert caught.value.retry_after == pytest.approx(5, abs=0.5)
