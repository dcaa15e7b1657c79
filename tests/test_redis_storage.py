"""Shared breaker state on a real redis-server (resilient_nodes._redis_storage)."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis_fixtures import RedisServer, free_port
from structlog.testing import capture_logs

from resilient_nodes import ConfigError, NodeCircuitOpenError, Policy
from resilient_nodes._breaker import BreakerState, NodeCircuitBreaker, wrap_breaker
from resilient_nodes._logging import LogEvent
from resilient_nodes._redis_storage import (
    _SCRIPT,
    RedisBreakerStorage,
    _replay,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
THREAD_PREFIX = "resilient_nodes-redis"


# --- fixtures and helpers --------------------------------------------------------------


@pytest.fixture
def prefix() -> str:
    """A fresh key prefix, so tests sharing the server never see each other's keys."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def _no_thread_left() -> Iterator[None]:
    yield
    deadline = time.monotonic() + 2.0
    while any(t.name.startswith(THREAD_PREFIX) for t in threading.enumerate()):
        assert time.monotonic() < deadline, "a storage thread outlived its test"
        time.sleep(0.01)


def wait_for(predicate: Callable[[], object], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def shared(server: RedisServer, prefix: str, name: str = "node") -> dict[bytes, bytes]:
    with server.client() as client:
        return client.hgetall(f"{prefix}:{name}:state")  # type: ignore[return-value]


def breaker(storage: RedisBreakerStorage, name: str = "node", **kwargs: Any) -> NodeCircuitBreaker:
    kwargs.setdefault("failure_threshold", 3)
    kwargs.setdefault("recovery_timeout", 0.3)
    return NodeCircuitBreaker(name, storage=storage, **kwargs)


def boom() -> None:
    raise ConnectionError("down")


def fail(guarded: Callable[[], Any], times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(ConnectionError):
            guarded()


# --- configuration ---------------------------------------------------------------------


def test_round_trip_through_policy_data() -> None:
    """A Redis storage survives Policy.to_dict / from_dict with its options."""
    storage = RedisBreakerStorage("redis://127.0.0.1:1/0", prefix="p", refresh_interval=0.25)
    data = Policy.breaker(storage=storage).to_dict()
    assert data["layers"][0]["storage"] == {
        "type": "redis",
        "url": "redis://127.0.0.1:1/0",
        "prefix": "p",
        "refresh_interval": 0.25,
    }
    again = Policy.from_dict(data).to_dict()
    assert again == data
    assert RedisBreakerStorage("redis://h/0").to_dict() == {
        "type": "redis",
        "url": "redis://h/0",
        "prefix": "resilient_nodes",
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"type": "redis"}, "x.url: is required"),
        ({"type": "redis", "url": "http://h"}, "x.url: Redis URL must specify one of"),
        ({"type": "redis", "url": 5}, "x.url: must be a string, got int"),
        ({"type": "redis", "url": "redis://h", "prefix": ""}, "x.prefix: must be a non-empty"),
        ({"type": "redis", "url": "redis://h", "timeout": -1}, "x.timeout: must be > 0, got -1"),
        (
            {"type": "redis", "url": "redis://h", "timeout": "1"},
            "x.timeout: must be a duration in seconds",
        ),
        ({"type": "redis", "url": "redis://h", "db": 1}, "x: unknown key(s): db"),
        ({"type": "memcached", "url": "redis://h"}, 'x.type: must be "redis"'),
        (["redis"], "x: must be a table/mapping, got list"),
    ],
)
def test_from_dict_errors_name_the_path(data: Any, message: str) -> None:
    """Bad plain data raises ConfigError with the path of the bad field."""
    with pytest.raises(ConfigError) as caught:
        RedisBreakerStorage.from_dict(data, path="x")
    assert message in str(caught.value)


def test_policy_from_dict_reports_storage_paths() -> None:
    """Through Policy.from_dict the path includes the layer."""
    data = {
        "layers": [
            {
                "type": "breaker",
                "storage": {"type": "redis", "url": "redis://h", "refresh_interval": 0},
            }
        ]
    }
    with pytest.raises(ConfigError, match=r"layers\[0\]\.storage\.refresh_interval: must be > 0"):
        Policy.from_dict(data)


def test_repr_hides_the_password() -> None:
    """repr shows a buildable expression without the secret."""
    storage = RedisBreakerStorage("redis://user:s3cret@h:6380/1", prefix="p", timeout=0.1)
    assert (
        repr(storage) == "RedisBreakerStorage('redis://user:***@h:6380/1', prefix='p', timeout=0.1)"
    )
    assert "s3cret" not in repr(Policy.breaker(storage=storage))


def test_creating_never_connects() -> None:
    """Building a storage for an unreachable server neither raises nor starts a thread."""
    RedisBreakerStorage(f"redis://127.0.0.1:{free_port()}/0")
    assert not any(t.name.startswith(THREAD_PREFIX) for t in threading.enumerate())


# --- the script and its Python twin ------------------------------------------------------

_OP = st.one_of(
    st.just("s"),
    st.just("c"),
    st.integers(0, 3000).map(lambda ms: f"f{ms}"),
    st.integers(0, 3000).map(lambda ms: f"h{ms}"),
    st.integers(0, 3000).map(lambda ms: f"t{ms}"),  # a rate rule's trip
)


@pytest.mark.redis
@settings(max_examples=60, deadline=None)
@given(ops=st.lists(st.lists(_OP, max_size=6), max_size=5))
def test_local_replay_matches_the_script(server: RedisServer, ops: list[list[str]]) -> None:
    """The mirror's replay of queued writes gives exactly what Redis computes."""
    key = f"replay:{uuid.uuid4().hex}"
    expected: tuple[str, int, int, int | None] = ("closed", 0, 0, None)
    with server.client() as client:
        script = client.register_script(_SCRIPT)
        for batch in ops:
            reply = script(keys=[f"{key}:state", f"{key}:probe"], args=[0, 3, 2, 500, 1000, *batch])
            expected = _replay(expected, batch, 3, 2, 500)
            opened = reply[3].decode()
            assert (
                reply[0].decode(),
                reply[1],
                reply[2],
                int(opened) if opened else None,
            ) == expected


# --- sharing ---------------------------------------------------------------------------------


@pytest.mark.redis
def test_two_processes_share_one_breaker(server: RedisServer, prefix: str) -> None:
    """Failures in two storages add up; the trip and the recovery reach both."""
    with (
        RedisBreakerStorage(server.url, prefix=prefix, refresh_interval=0.05) as one,
        RedisBreakerStorage(server.url, prefix=prefix, refresh_interval=0.05) as two,
    ):
        first, second = breaker(one), breaker(two)
        fail(wrap_breaker(boom, first, name="node"), 2)
        wait_for(lambda: shared(server, prefix).get(b"failures") == b"2")
        fail(wrap_breaker(boom, second, name="node"))  # the third overall trips it
        assert shared(server, prefix)[b"state"] == b"open" or second.state is BreakerState.OPEN
        wait_for(lambda: first.state is BreakerState.OPEN, timeout=0.5)
        opened_ms = int(shared(server, prefix)[b"opened_at"])
        assert abs(opened_ms / 1000.0 - time.time()) < 1.0  # milliseconds, not seconds
        with pytest.raises(NodeCircuitOpenError):
            wrap_breaker(boom, first, name="node")()
        time.sleep(0.3)
        ok = wrap_breaker(lambda: "ok", first, name="node")
        wait_for(lambda: _try(ok) == "ok")
        wait_for(lambda: second.state is BreakerState.CLOSED, timeout=0.5)
        assert shared(server, prefix)[b"state"] == b"closed"


def _try(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except NodeCircuitOpenError:
        return None


@pytest.mark.redis
def test_successes_in_steady_state_cost_no_round_trip(server: RedisServer, prefix: str) -> None:
    """1000 successful closed calls send nothing; a success after a failure sends one write."""
    with RedisBreakerStorage(server.url, prefix=prefix, refresh_interval=30.0) as storage:
        node = breaker(storage)
        ok = wrap_breaker(lambda: 1, node, name="node")
        with server.client() as client:
            wait_for(lambda: storage.healthy)

            def evalshas() -> int:
                stats = client.info("commandstats").get("cmdstat_evalsha", {})
                return int(stats.get("calls", 0))

            before = evalshas()
            assert sum(ok() for _ in range(1000)) == 1000
            time.sleep(0.05)
            assert evalshas() == before
            fail(wrap_breaker(boom, node, name="node"))
            ok()
            wait_for(lambda: shared(server, prefix).get(b"failures") == b"0")
            assert evalshas() - before <= 2


@pytest.mark.redis
def test_nodes_have_their_own_keys(server: RedisServer, prefix: str) -> None:
    """One storage serves two nodes; tripping one leaves the other closed."""
    with RedisBreakerStorage(server.url, prefix=prefix) as storage:
        plan, tool = breaker(storage, "plan", failure_threshold=1), breaker(storage, "tool")
        fail(wrap_breaker(boom, plan, name="plan"))
        assert plan.state is BreakerState.OPEN
        wait_for(lambda: shared(server, prefix, "plan").get(b"state") == b"open")
        assert tool.state is BreakerState.CLOSED
        assert shared(server, prefix, "tool") == {}


@pytest.mark.redis
def test_decode_responses_in_the_url_does_not_matter(server: RedisServer, prefix: str) -> None:
    """A URL asking for decoded responses still works: the client is ours."""
    url = f"{server.url}?decode_responses=True"
    with RedisBreakerStorage(url, prefix=prefix) as storage:
        node = breaker(storage, failure_threshold=1)
        fail(wrap_breaker(boom, node, name="node"))
        wait_for(lambda: shared(server, prefix).get(b"state") == b"open")
        wait_for(lambda: storage.healthy)
        assert node.state is BreakerState.OPEN


@pytest.mark.redis
def test_concurrent_failures_are_all_counted(server: RedisServer, prefix: str) -> None:
    """8 workers with their own connections record 400 failures; Redis counts 400."""
    storages = [RedisBreakerStorage(server.url, prefix=prefix) for _ in range(8)]
    try:
        breakers = [breaker(s, failure_threshold=10_000) for s in storages]
        start = threading.Barrier(len(breakers))

        def work(node: NodeCircuitBreaker) -> None:
            guarded = wrap_breaker(boom, node, name="node")
            start.wait(timeout=5)
            for _ in range(50):
                with pytest.raises(ConnectionError):
                    guarded()

        threads = [threading.Thread(target=work, args=(b,)) for b in breakers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        wait_for(lambda: shared(server, prefix).get(b"failures") == b"400")
    finally:
        for storage in storages:
            storage.close()


@pytest.mark.redis
def test_reset_closes_the_shared_breaker(server: RedisServer, prefix: str) -> None:
    """reset() in one process closes the breaker for the others."""
    with (
        RedisBreakerStorage(server.url, prefix=prefix, refresh_interval=0.05) as one,
        RedisBreakerStorage(server.url, prefix=prefix, refresh_interval=0.05) as two,
    ):
        first, second = breaker(one, failure_threshold=1), breaker(two, failure_threshold=1)
        fail(wrap_breaker(boom, first, name="node"))
        wait_for(lambda: second.state is BreakerState.OPEN)
        second.reset()
        wait_for(lambda: first.state is BreakerState.CLOSED, timeout=0.5)
        assert shared(server, prefix)[b"state"] == b"closed"


# --- one probe across processes ---------------------------------------------------------


@pytest.mark.redis
def test_one_probe_across_processes(server: RedisServer, prefix: str) -> None:
    """While one storage's probe runs, another's calls are rejected; success closes both."""
    with (
        RedisBreakerStorage(server.url, prefix=prefix, refresh_interval=0.05) as one,
        RedisBreakerStorage(server.url, prefix=prefix, refresh_interval=0.05) as two,
    ):
        first = breaker(one, failure_threshold=1, success_threshold=2)
        second = breaker(two, failure_threshold=1, success_threshold=2)
        fail(wrap_breaker(boom, first, name="node"))
        wait_for(lambda: second.state is BreakerState.OPEN)
        time.sleep(0.3)
        running, finish = threading.Event(), threading.Event()
        calls: list[str] = []

        def slow() -> str:
            calls.append("probe")
            running.set()
            finish.wait(timeout=5)
            return "ok"

        outcome: list[Any] = []
        guarded = wrap_breaker(slow, first, name="node")

        def prober() -> None:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and not outcome:
                if (result := _try(guarded)) is not None:
                    outcome.append(result)
                time.sleep(0.005)

        thread = threading.Thread(target=prober)
        thread.start()
        assert running.wait(timeout=3)
        other = wrap_breaker(lambda: "other", second, name="node")
        end = time.monotonic() + 0.3
        while time.monotonic() < end:
            assert _try(other) is None  # rejected: the lease is elsewhere
            time.sleep(0.01)
        finish.set()
        thread.join(timeout=5)
        assert outcome == ["ok"]
        # success_threshold=2: the second probe may come from the other process.
        wait_for(lambda: _try(other) == "other" or _try(guarded) == "ok")
        wait_for(lambda: first.state is second.state is BreakerState.CLOSED, timeout=1.0)
        assert len(calls) <= 2


@pytest.mark.redis
def test_a_dead_probers_lease_expires(server: RedisServer, prefix: str) -> None:
    """A lease left by a crashed prober blocks probes only until it expires."""
    with RedisBreakerStorage(server.url, prefix=prefix, refresh_interval=0.05) as storage:
        node = breaker(storage, failure_threshold=1)
        fail(wrap_breaker(boom, node, name="node"))
        wait_for(lambda: shared(server, prefix).get(b"state") == b"open")
        with server.client() as client:
            client.set(f"{prefix}:node:probe", "dead", px=600)
        time.sleep(0.3)
        ok = wrap_breaker(lambda: "ok", node, name="node")
        started = time.monotonic()
        wait_for(lambda: _try(ok) == "ok")
        assert time.monotonic() - started > 0.2  # it waited for the dead lease
        assert shared(server, prefix)[b"state"] == b"closed"


@pytest.mark.redis
def test_unused_lease_is_handed_back(server: RedisServer, prefix: str) -> None:
    """A lease held by a process that does not call goes to a process that asks for it."""
    with (
        RedisBreakerStorage(server.url, prefix=prefix, refresh_interval=0.05) as one,
        RedisBreakerStorage(server.url, prefix=prefix, refresh_interval=0.05) as two,
    ):
        first, second = breaker(one, failure_threshold=1), breaker(two, failure_threshold=1)
        fail(wrap_breaker(boom, first, name="node"))
        with server.client() as client:
            # Taken ahead of any call when the circuit was due, and kept while unused.
            wait_for(lambda: client.exists(f"{prefix}:node:probe"))
            time.sleep(0.2)
            assert client.exists(f"{prefix}:node:probe")
        ok = wrap_breaker(lambda: "ok", second, name="node")
        asked = time.monotonic()
        wait_for(lambda: _try(ok) == "ok")
        assert time.monotonic() - asked < 0.5  # a few refresh intervals, not the lease
        wait_for(lambda: first.state is BreakerState.CLOSED, timeout=1.0)


def _sparse(calls: list[Callable[[], Any]], first_at: float, every: float) -> list[Any]:
    """Call each of *calls* in turn, one every *every* seconds from *first_at* (epoch)."""
    results = []
    for i, call in enumerate(calls):
        time.sleep(max(0.0, first_at + i * every - time.time()))
        results.append(_try(call))
    return results


def _opened_at(server: RedisServer, prefix: str) -> float:
    wait_for(lambda: shared(server, prefix).get(b"state") == b"open")
    return int(shared(server, prefix)[b"opened_at"]) / 1000.0


@pytest.mark.redis
def test_sparse_calls_probe_on_the_first_call_after_recovery(
    server: RedisServer, prefix: str
) -> None:
    """A process calling every 4 refresh intervals recovers on its first call, as in memory."""
    with RedisBreakerStorage(server.url, prefix=prefix, refresh_interval=0.05) as storage:
        node = breaker(storage, failure_threshold=1, recovery_timeout=0.3)
        fail(wrap_breaker(boom, node, name="node"))
        opened = _opened_at(server, prefix)
        ok = wrap_breaker(lambda: "ok", node, name="node")
        with server.client() as client:
            time.sleep(max(0.0, opened + 0.35 - time.time()))
            before = _evalshas(client)
            time.sleep(max(0.0, opened + 0.55 - time.time()))
            # Holding the lease unused costs one round trip per refresh_interval / 5.
            assert _evalshas(client) - before <= 0.2 / 0.01 + 5
            results = _sparse([ok] * 3, first_at=opened + 0.55, every=0.2)
        assert results == ["ok"] * 3
        assert shared(server, prefix)[b"state"] == b"closed"


@pytest.mark.redis
def test_sparse_calls_in_two_processes_recover(server: RedisServer, prefix: str) -> None:
    """Two processes taking turns every 3 refresh intervals recover within three calls."""
    with (
        RedisBreakerStorage(server.url, prefix=prefix, refresh_interval=0.05) as one,
        RedisBreakerStorage(server.url, prefix=prefix, refresh_interval=0.05) as two,
    ):
        first, second = breaker(one, failure_threshold=2), breaker(two, failure_threshold=2)
        fail(wrap_breaker(boom, first, name="node"))
        wait_for(lambda: shared(server, prefix).get(b"failures") == b"1")
        fail(wrap_breaker(boom, second, name="node"))
        opened = _opened_at(server, prefix)
        turns = [wrap_breaker(lambda: "ok", b, name="node") for b in (first, second)] * 3
        results = _sparse(turns, first_at=opened + 0.4, every=0.15)
        assert "ok" in results[:3], results
        assert results[-2:] == ["ok", "ok"]


@pytest.mark.redis
def test_a_slow_probe_keeps_the_lease(server: RedisServer, prefix: str) -> None:
    """A probe running four times the lease still excludes every other process."""
    options: dict[str, Any] = {"refresh_interval": 0.05, "probe_lease": 0.25}
    with (
        RedisBreakerStorage(server.url, prefix=prefix, **options) as one,
        RedisBreakerStorage(server.url, prefix=prefix, **options) as two,
    ):
        first = breaker(one, failure_threshold=1, recovery_timeout=0.2)
        second = breaker(two, failure_threshold=1, recovery_timeout=0.2)
        fail(wrap_breaker(boom, first, name="node"))
        wait_for(lambda: second.state is BreakerState.OPEN)
        running, finish = threading.Event(), threading.Event()

        def slow() -> str:
            running.set()
            finish.wait(timeout=5)
            return "probe"

        guarded = wrap_breaker(slow, first, name="node")
        outcome: list[Any] = []
        thread = threading.Thread(target=lambda: outcome.append(_until_admitted(guarded)))
        thread.start()
        try:
            assert running.wait(timeout=3)
            other = wrap_breaker(lambda: "other", second, name="node")
            end = time.monotonic() + 4 * 0.25
            admitted = []
            with server.client() as client:
                while time.monotonic() < end:
                    admitted.append(_try(other))
                    assert client.exists(f"{prefix}:node:probe")
                    time.sleep(0.01)
            assert admitted == [None] * len(admitted)
        finally:
            finish.set()
            thread.join(timeout=5)
        assert outcome == ["probe"]
        wait_for(lambda: first.state is second.state is BreakerState.CLOSED, timeout=1.0)


def _until_admitted(fn: Callable[[], Any], timeout: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (result := _try(fn)) is not None:
            return result
        time.sleep(0.005)
    return None


def _evalshas(client: redis.Redis) -> int:
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0))


@pytest.mark.redis
def test_four_worker_processes_share_one_breaker(server: RedisServer, prefix: str) -> None:
    """4 processes trip one breaker at the shared threshold, fail fast, and probe once."""
    client = server.client()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    client.delete(
        "t:go", "t:stop", "t:healthy", "t:calls", "t:probes", *(f"t:stats:{i}" for i in range(4))
    )
    workers = [
        subprocess.Popen(  # noqa: S603 - our own worker script, no shell
            [sys.executable, str(HERE / "_redis_worker.py"), server.url, prefix, str(i)], env=env
        )
        for i in range(4)
    ]
    try:
        state = f"{prefix}:shared_node:state"
        client.set("t:go", 1)
        wait_for(lambda: client.hget(state, "state") == b"open", timeout=5)
        assert client.hget(state, "failures") == b"6"  # the shared threshold, counted atomically

        def stats(field: str) -> list[int]:
            return [int(client.hget(f"t:stats:{i}", field) or 0) for i in range(4)]

        wait_for(lambda: all(stats("rejected")), timeout=3)
        tripped_calls = int(client.get("t:calls") or 0)
        # Four separate breakers would allow 4 x 6 calls; a reply to each failure
        # brings the shared count back, so far fewer get through.
        assert tripped_calls < 4 * 6, f"{tripped_calls} calls: each process counted alone"
        opened = int(client.hget(state, "opened_at") or 0) / 1000.0
        time.sleep(max(0.0, opened + 0.4 - time.time()))
        assert int(client.get("t:calls") or 0) == tripped_calls, "a call ran while open"
        client.set("t:healthy", 1)
        wait_for(lambda: client.hget(state, "state") == b"closed", timeout=3)
        ok_before = stats("ok")
        wait_for(lambda: all(a > b for a, b in zip(stats("ok"), ok_before, strict=True)), timeout=3)
        assert int(client.get("t:probes") or 0) == 1
    finally:
        client.set("t:stop", 1)
        codes = []
        for worker in workers:
            try:
                codes.append(worker.wait(timeout=10))
            except subprocess.TimeoutExpired:
                worker.kill()
                codes.append(worker.wait())
        client.close()
    assert codes == [0, 0, 0, 0]


# --- fork ------------------------------------------------------------------------------------


def _fork() -> Any:
    """multiprocessing's fork context (looked up late: not every platform has it)."""
    return multiprocessing.get_context("fork")


def _in_child(target: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Run *target* in a forked child; its return value, or its exception re-raised here."""
    queue = _fork().SimpleQueue()

    def run() -> None:
        try:
            queue.put(("ok", target()))
        except BaseException as error:  # reported to the parent, whatever it is
            queue.put(("error", repr(error)))

    child = _fork().Process(target=run, daemon=True)
    child.start()
    try:
        child.join(timeout)
        assert child.exitcode == 0, f"the child ended with {child.exitcode}"
        status, value = queue.get()
    finally:
        if child.is_alive():
            child.kill()
            child.join()
    assert status == "ok", value
    return value


@pytest.mark.redis
def test_a_storage_built_before_fork_works_in_the_child(server: RedisServer, prefix: str) -> None:
    """The child's failures trip the shared breaker and its first call after recovery probes."""
    with RedisBreakerStorage(server.url, prefix=prefix, refresh_interval=0.05) as storage:
        node = breaker(storage, failure_threshold=3, recovery_timeout=0.3)
        wait_for(lambda: storage.healthy)

        def child() -> tuple[bool, list[Any]]:
            fail(wrap_breaker(boom, node, name="node"), 3)
            try:
                opened = _opened_at(server, prefix)
            except AssertionError:
                return False, []
            ok = wrap_breaker(lambda: "ok", node, name="node")
            results = _sparse([ok] * 3, first_at=opened + 0.4, every=0.15)
            storage.close()  # the child's own thread
            return THREAD_PREFIX not in str(threading.enumerate()), results

        stopped, results = _in_child(child)
        assert (stopped, results) == (True, ["ok"] * 3)
        assert shared(server, prefix)[b"state"] == b"closed"
        # The parent's thread went on, and followed the child's trip and recovery.
        wait_for(lambda: node.state is BreakerState.CLOSED, timeout=1.0)
        assert storage.healthy


@pytest.mark.redis
def test_a_fork_leaves_the_parents_queue_to_the_parent() -> None:
    """A failure queued while Redis is down is pushed once, by the parent, not by the child."""
    with (
        RedisServer() as server,
        RedisBreakerStorage(server.url, prefix="q", refresh_interval=0.05, timeout=0.1) as storage,
    ):
        node = breaker(storage, failure_threshold=10)
        wait_for(lambda: storage.healthy)
        # Killed, not paused: a paused server would still run what was sent to it.
        server.kill()
        fail(wrap_breaker(boom, node, name="node"))  # queued: nobody answers
        wait_for(lambda: not storage.healthy)
        restarted = _fork().Event()

        def child() -> str | None:
            assert restarted.wait(timeout=5)
            wait_for(lambda: storage.healthy)
            time.sleep(0.2)  # a few round trips: the parent's failure would go out now
            counted = shared(server, "q").get(b"failures")
            fail(wrap_breaker(boom, node, name="node"))
            storage.close()
            return counted.decode() if counted else None

        queue = _fork().SimpleQueue()
        process = _fork().Process(target=lambda: queue.put(child()), daemon=True)
        process.start()
        try:
            server.start()
            restarted.set()
            process.join(timeout=10)
            assert process.exitcode == 0
        finally:
            if process.is_alive():
                process.kill()
                process.join()
        assert queue.get() == "1"  # the parent's failure, once
        wait_for(lambda: shared(server, "q").get(b"failures") == b"2")
        time.sleep(0.15)
        assert shared(server, "q").get(b"failures") == b"2"


@pytest.mark.redis
def test_a_killed_probers_lease_expires(server: RedisServer, prefix: str) -> None:
    """A probe's lease is renewed while its process lives and expires once it is killed."""
    options: dict[str, Any] = {"refresh_interval": 0.05, "probe_lease": 0.3}
    running = _fork().Event()

    def child() -> None:
        with RedisBreakerStorage(server.url, prefix=prefix, **options) as storage:
            node = breaker(storage, failure_threshold=1, recovery_timeout=0.2)
            fail(wrap_breaker(boom, node, name="node"))

            def hang() -> None:
                running.set()
                time.sleep(30)

            _until_admitted(wrap_breaker(hang, node, name="node"))

    process = _fork().Process(target=child, daemon=True)
    process.start()
    try:
        assert running.wait(timeout=5)
        with RedisBreakerStorage(server.url, prefix=prefix, **options) as storage:
            node = breaker(storage, failure_threshold=1, recovery_timeout=0.2)
            # A new process reads closed until its first refresh.
            wait_for(lambda: node.state is BreakerState.HALF_OPEN)
            other = wrap_breaker(lambda: "other", node, name="node")
            end = time.monotonic() + 3 * 0.3
            while time.monotonic() < end:
                assert _try(other) is None  # the live prober keeps renewing
                time.sleep(0.01)
            process.kill()
            process.join(timeout=5)
            killed = time.monotonic()
            wait_for(lambda: _try(other) == "other")
            assert time.monotonic() - killed < 0.3 + 0.3
    finally:
        if process.is_alive():
            process.kill()
            process.join()


# --- faults ------------------------------------------------------------------------------------


def _timed_calls(fn: Callable[[], Any], count: int) -> tuple[list[Any], float]:
    results, slowest = [], 0.0
    for _ in range(count):
        started = time.perf_counter()
        try:
            results.append(fn())
        except Exception as error:
            results.append(type(error).__name__)
        slowest = max(slowest, time.perf_counter() - started)
        time.sleep(0.005)
    return results, slowest


@pytest.mark.redis
def test_redis_killed_mid_run() -> None:
    """Calls stay fast and keep their results while Redis is dead; state resumes after."""
    prefix = "killed"
    with RedisServer() as server:
        storage = RedisBreakerStorage(server.url, prefix=prefix, refresh_interval=0.05, timeout=0.1)
        other = RedisBreakerStorage(server.url, prefix=prefix, refresh_interval=0.05, timeout=0.1)
        try:
            node = breaker(storage, failure_threshold=5)
            watcher = breaker(other, failure_threshold=5)
            ok = wrap_breaker(lambda: "ok", node, name="node")
            wait_for(lambda: storage.healthy)
            with capture_logs() as logs:
                server.kill()
                results, slowest = _timed_calls(ok, 40)
                fail(wrap_breaker(boom, node, name="node"), 2)  # counted locally while down
                wait_for(lambda: not storage.healthy)
                assert results == ["ok"] * 40
                assert slowest < 0.05
                server.start()
                wait_for(lambda: storage.healthy)
            warnings = [e for e in logs if e["event"] == LogEvent.BREAKER_STORAGE_UNAVAILABLE]
            assert len(warnings) == 2  # one per storage, not one per failed attempt
            assert warnings[0]["log_level"] == "warning"
            assert any(e["event"] == LogEvent.BREAKER_STORAGE_RECOVERED for e in logs)
            # The outage's failures were replayed into the restarted server.
            wait_for(lambda: shared(server, prefix).get(b"failures") == b"2")
            fail(wrap_breaker(boom, watcher, name="node"), 3)
            wait_for(lambda: node.state is BreakerState.OPEN, timeout=1.0)
        finally:
            storage.close()
            other.close()


@pytest.mark.redis
def test_redis_paused_with_sigstop() -> None:
    """A frozen Redis: calls complete at local speed, and the shared state resumes on SIGCONT."""
    prefix = "paused"
    with (
        RedisServer() as server,
        RedisBreakerStorage(server.url, prefix=prefix, refresh_interval=0.05, timeout=0.1) as one,
        RedisBreakerStorage(server.url, prefix=prefix, refresh_interval=0.05, timeout=0.1) as two,
    ):
        first, second = breaker(one), breaker(two)
        wait_for(lambda: one.healthy and two.healthy)
        with capture_logs() as logs:
            server.pause()
            results, slowest = _timed_calls(wrap_breaker(lambda: 7, first, name="node"), 40)
            fail(wrap_breaker(boom, first, name="node"), 2)
            wait_for(lambda: not one.healthy)
            assert results == [7] * 40
            assert slowest < 0.05
            server.resume()
            wait_for(lambda: one.healthy and two.healthy)
        assert any(e["event"] == LogEvent.BREAKER_STORAGE_UNAVAILABLE for e in logs)
        wait_for(lambda: shared(server, prefix).get(b"failures") == b"2")
        fail(wrap_breaker(boom, second, name="node"))
        wait_for(lambda: first.state is BreakerState.OPEN, timeout=1.0)


@pytest.mark.redis
@pytest.mark.anyio
async def test_event_loop_keeps_ticking_while_redis_is_paused() -> None:
    """Async calls through a Redis-backed breaker never block the loop, even on SIGSTOP."""
    with (
        RedisServer() as server,
        RedisBreakerStorage(
            server.url, prefix="loop", refresh_interval=0.05, timeout=0.1
        ) as storage,
    ):
        node = breaker(storage, failure_threshold=1_000)

        async def work(value: int) -> int:
            await anyio.lowlevel.checkpoint()
            if value % 3 == 0:
                raise ConnectionError("down")
            return value

        guarded = wrap_breaker(work, node, name="node")
        wait_for(lambda: storage.healthy)
        gaps: list[float] = []
        results: list[Any] = []
        stop = anyio.Event()

        async def ticker() -> None:
            last = time.perf_counter()
            while not stop.is_set():
                await anyio.sleep(0.01)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        async with anyio.create_task_group() as group:
            group.start_soon(ticker)
            server.pause()
            try:
                for i in range(60):
                    try:
                        results.append(await guarded(i))
                    except ConnectionError:
                        results.append("down")
                    await anyio.sleep(0.005)
            finally:
                server.resume()
            stop.set()
        assert results == ["down" if i % 3 == 0 else i for i in range(60)]
        assert len(gaps) > 10
        assert max(gaps) < 0.06, f"the loop stalled for {max(gaps):.3f} s"
        assert not storage.healthy or shared(server, "loop").get(b"failures")


@pytest.mark.redis
def test_started_while_redis_is_down_connects_later() -> None:
    """A storage built and used before Redis exists works locally, then joins the shared state."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    # Logs captured from the start: the first failed connect may come at once.
    with (
        capture_logs() as logs,
        RedisBreakerStorage(url, prefix="late", refresh_interval=0.05, timeout=0.1) as storage,
    ):
        node = breaker(storage, failure_threshold=1, recovery_timeout=0.05)
        fail(wrap_breaker(boom, node, name="node"))
        assert node.state is BreakerState.OPEN
        time.sleep(0.06)
        # No Redis, no lease: the probe is admitted locally.
        assert wrap_breaker(lambda: "ok", node, name="node")() == "ok"
        wait_for(lambda: any(e["event"] == LogEvent.BREAKER_STORAGE_UNAVAILABLE for e in logs))
        with RedisServer(port) as server:
            wait_for(lambda: storage.healthy)
            wait_for(lambda: shared(server, "late").get(b"state") == b"closed")
            fail(wrap_breaker(boom, node, name="node"))
            wait_for(lambda: shared(server, "late").get(b"state") == b"open")


@pytest.mark.redis
def test_a_key_of_the_wrong_type_is_reported_not_retried(server: RedisServer, prefix: str) -> None:
    """If the breaker's key holds something else, the writes are dropped with a warning."""
    with server.client() as client:
        client.set(f"{prefix}:node:state", "not a hash")
    with capture_logs() as logs, RedisBreakerStorage(server.url, prefix=prefix) as storage:
        node = breaker(storage)
        fail(wrap_breaker(boom, node, name="node"))
        wait_for(lambda: any(e["event"] == LogEvent.BREAKER_STORAGE_UNAVAILABLE for e in logs))
    assert "WRONGTYPE" in next(
        e["error"] for e in logs if e["event"] == LogEvent.BREAKER_STORAGE_UNAVAILABLE
    )


@pytest.mark.redis
def test_close_stops_the_thread_and_the_breaker_goes_local(
    server: RedisServer, prefix: str
) -> None:
    """After close() no thread is left, the breaker still works, and binding again is refused."""
    storage = RedisBreakerStorage(server.url, prefix=prefix)
    node = breaker(storage, failure_threshold=1)
    assert any(t.name.startswith(THREAD_PREFIX) for t in threading.enumerate())
    storage.close()
    assert not any(t.name.startswith(THREAD_PREFIX) for t in threading.enumerate())
    fail(wrap_breaker(boom, node, name="node"))
    assert node.state is BreakerState.OPEN
    with pytest.raises(RuntimeError, match="closed"):
        storage.for_breaker("x", config=node.config, clock=time.time)


@pytest.mark.redis
def test_queued_writes_are_pushed_on_close(server: RedisServer, prefix: str) -> None:
    """close() sends what is still queued before stopping."""
    storage = RedisBreakerStorage(server.url, prefix=prefix)
    node = breaker(storage, failure_threshold=10)
    fail(wrap_breaker(boom, node, name="node"), 3)
    storage.close()
    assert shared(server, prefix).get(b"failures") == b"3"


@pytest.mark.redis
def test_policy_with_redis_storage_end_to_end(server: RedisServer, prefix: str) -> None:
    """Policy.breaker(storage=...) wraps a node whose breaker lives in Redis."""
    with RedisBreakerStorage(server.url, prefix=prefix) as storage:
        node = Policy.breaker(failure_threshold=2, storage=storage).wrap(boom, name="plan")
        for _ in range(2):
            with pytest.raises(ConnectionError):
                node()
        with pytest.raises(NodeCircuitOpenError):
            node()
        wait_for(lambda: shared(server, prefix, "plan").get(b"state") == b"open")


def test_redis_is_not_imported_by_the_package() -> None:
    """`import resilient_nodes` works without redis (it is an optional extra)."""
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "import resilient_nodes, resilient_nodes._breaker, resilient_nodes._policy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=30)  # noqa: S603


def test_client_options_override_the_url() -> None:
    """Timeouts, retries and decoding are ours whatever the URL says."""
    storage = RedisBreakerStorage(
        "redis://h/0?decode_responses=True&socket_timeout=30", timeout=0.15
    )
    options = storage._options
    assert options["decode_responses"] is False
    assert options["socket_timeout"] == options["socket_connect_timeout"] == 0.15
    assert options["retry"].get_retries() == 0
    assert isinstance(
        redis.Redis(**{k: v for k, v in options.items() if k != "connection_class"}), redis.Redis
    )
