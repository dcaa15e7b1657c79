"""Outer cancellation at every phase of every layer, through `create_node`.

The matrix: 5 pipelines x the phases each has (attempt; backoff sleep when it
retries; ``on_timeout`` cleanup when it has a timeout; half-open probe when it has
a breaker) = 13 cases, x sync/async impls, x asyncio/trio = 52 runs.

Async impls are cancelled by an outer cancel scope. A sync impl runs in a worker
thread that cannot be interrupted, so it is cancelled the documented way: the
run's cancel token is set (and the awaiting caller's scope cancelled, as an
application cancelling a run would do). A sync call that was already running
when the token was set finishes in its abandoned thread, and its own outcome (a
failure that did happen) is what the breaker sees; no *further* attempt is made.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import anyio
import pytest

from resilient_nodes import Policy, create_node
from resilient_nodes._tokens import CancelToken
from resilient_nodes.errors import NodeCancellationError

pytestmark = pytest.mark.anyio

SHORT = 0.05  # the per-attempt timeout when the on_timeout phase is under test
LONG = 5.0  # a per-attempt timeout that must not fire


def _pipeline(kind: str, phase: str, on_retry: Any, on_timeout: Any) -> Policy:
    seconds = SHORT if phase == "on_timeout" else LONG
    timeout = Policy.timeout(seconds, on_timeout=on_timeout)
    breaker = Policy.breaker(failure_threshold=2, recovery_timeout=0.05)
    if kind == "retry":
        return Policy.retry(attempts=3, backoff=0.5, jitter=0.0, on_retry=on_retry)
    if kind == "breaker":
        return breaker
    if kind == "timeout":
        return timeout
    if kind == "llm|breaker|timeout":
        return Policy.llm(on_retry=on_retry) | breaker | timeout
    assert kind == "timeout|retry|timeout"
    return Policy.timeout(30) | Policy.retry(backoff=0.5, on_retry=on_retry) | timeout


PHASES_OF = {
    "retry": ("attempt", "backoff"),
    "breaker": ("attempt", "probe"),
    "timeout": ("attempt", "on_timeout"),
    "llm|breaker|timeout": ("attempt", "backoff", "on_timeout", "probe"),
    "timeout|retry|timeout": ("attempt", "backoff", "on_timeout"),
}
CASES = [(kind, phase) for kind, phases in PHASES_OF.items() for phase in phases]
assert len(CASES) == 13


def _our_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("resilient_nodes:")}


def _live_tasks() -> int:
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:
        import trio

        return trio.lowlevel.current_statistics().tasks_living


async def _wait_until(predicate: Any, limit: float = 3.0) -> bool:
    end = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > end:
            return False
        await anyio.sleep(0.005)
    return True


class _Harness:
    """The impl, callbacks and events for one case."""

    def __init__(self, phase: str, sync: bool) -> None:
        self.phase = phase
        self.sync = sync
        self.reached = threading.Event()  # the phase under test has begun
        self.release = threading.Event()  # lets a blocked sync impl/cleanup finish
        self.calls = 0
        self.cleanups = 0

    def on_retry(self) -> None:
        if self.phase == "backoff":
            self.reached.set()

    def impl(self) -> Any:
        harness = self
        if self.sync:

            def sync_impl(state: dict[str, Any]) -> dict[str, Any]:
                harness.calls += 1
                if harness.phase == "backoff":
                    raise ConnectionError("first attempt fails")
                if harness.phase != "on_timeout":
                    harness.reached.set()
                harness.release.wait(3)
                raise ConnectionError("the dependency failed after all")

            return sync_impl

        async def async_impl(state: dict[str, Any]) -> dict[str, Any]:
            harness.calls += 1
            if harness.phase == "backoff":
                raise ConnectionError("first attempt fails")
            if harness.phase != "on_timeout":
                harness.reached.set()
            await anyio.sleep_forever()
            raise AssertionError("unreachable")

        return async_impl

    def cleanup(self) -> Any:
        harness = self
        if self.sync:

            def sync_cleanup() -> None:
                harness.cleanups += 1
                harness.reached.set()
                harness.release.wait(3)

            return sync_cleanup

        async def async_cleanup() -> None:
            harness.cleanups += 1
            harness.reached.set()
            await anyio.sleep(0.1)

        return async_cleanup


def _trip(node: Any) -> None:
    breaker = node.breaker
    for _ in range(2):
        breaker.record_failure(ConnectionError("down"))
    assert breaker.status().state == "open"
    time.sleep(0.06)  # past the 0.05 s recovery timeout: the next call is the probe


async def _call_async(node: Any, harness: _Harness) -> BaseException | None:
    caught: BaseException | None = None

    async def cancel_when_reached(scope: anyio.CancelScope) -> None:
        await _wait_until(harness.reached.is_set)
        scope.cancel()

    try:
        async with anyio.create_task_group() as group:
            with anyio.CancelScope() as scope:
                group.start_soon(cancel_when_reached, scope)
                try:
                    result = await node({"story_id": "s"})
                except BaseException as exc:
                    caught = exc
                    raise
                pytest.fail(f"the node returned {result!r} instead of being cancelled")
    except BaseException:  # noqa: S110 - inspected below
        pass
    return caught


async def _call_sync(node: Any, harness: _Harness) -> tuple[BaseException | None, Any]:
    token = CancelToken()
    outcome: dict[str, Any] = {}
    finished = threading.Event()

    def run() -> None:
        try:
            outcome["result"] = node(
                {"story_id": "s"}, config={"configurable": {"cancel_token": token}}
            )
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            finished.set()

    caught: BaseException | None = None
    with anyio.CancelScope() as scope:
        try:
            async with anyio.create_task_group() as group:

                async def cancel_when_reached() -> None:
                    await _wait_until(harness.reached.is_set)
                    token.cancel("run stopped")
                    scope.cancel()

                group.start_soon(cancel_when_reached)
                await anyio.to_thread.run_sync(run, abandon_on_cancel=True)
        except BaseException as exc:
            caught = exc
            raise
    assert await _wait_until(finished.is_set), "the cancelled node never returned"
    harness.release.set()
    return caught, outcome


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
@pytest.mark.parametrize(("kind", "phase"), CASES, ids=[f"{k}-{p}" for k, p in CASES])
async def test_outer_cancellation_is_clean(kind: str, phase: str, sync: bool) -> None:
    """Cancellation at this phase propagates, stops retrying and leaves nothing behind."""
    harness = _Harness(phase, sync)
    policy = _pipeline(kind, phase, harness.on_retry, harness.cleanup())
    node = create_node(
        harness.impl(),
        name=f"cancel-{kind}-{phase}",
        policy=policy,
        on_error="raise" if sync else "capture",
    )
    if phase == "probe":
        _trip(node)
    breaker = node.breaker
    threads_before = _our_threads()
    tasks_before = _live_tasks()

    if sync:
        caught, outcome = await _call_sync(node, harness)
        # The caller saw its own backend's cancellation; the node itself stopped
        # with the explicit cancellation, not a captured record or a retry.
        assert not isinstance(caught, Exception)
        assert isinstance(outcome.get("error"), NodeCancellationError), outcome
    else:
        caught = await _call_async(node, harness)
        assert isinstance(caught, anyio.get_cancelled_exc_class()), caught

    # Every thread we started is gone (a sync impl was released above).
    assert await _wait_until(lambda: _our_threads() <= threads_before), _our_threads()
    assert _live_tasks() == tasks_before
    # Our threads are gone, so no sync retry loop is left to start an attempt.
    await anyio.sleep(0.02)
    assert harness.calls == 1, "a further attempt was made after the cancellation"
    if phase == "on_timeout":
        assert harness.cleanups == 1
    if breaker is not None:
        status = breaker.status()
        assert not status.probe_in_flight
        # Nothing recorded but what happened before the cancel (the failed first
        # attempt of the backoff phase, when the breaker counts attempts), sync or
        # async: a sync call that ends in its abandoned thread after the token
        # released its caller records the (neutral) cancellation, not its outcome.
        if phase == "probe":
            assert status.state == "half_open"
            assert status.failure_count == 2
        else:
            assert status.state == "closed"
            assert status.failure_count == (1 if phase == "backoff" else 0)
        assert status.success_count == 0


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_cancelled_probe_frees_the_slot_for_the_next_call(sync: bool) -> None:
    """After a cancelled async probe the next call is admitted and closes the breaker."""
    harness = _Harness("probe", sync=False)
    node = create_node(
        harness.impl(),
        name="probe-slot",
        policy=Policy.breaker(failure_threshold=2, recovery_timeout=0.05),
    )
    _trip(node)
    caught = await _call_async(node, harness)
    assert isinstance(caught, anyio.get_cancelled_exc_class())

    def ok(state: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True}

    async def aok(state: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True}

    # The same breaker, reached through a fresh wrapper of another function.
    from resilient_nodes._breaker import wrap_breaker

    guarded = wrap_breaker(ok if sync else aok, node.breaker, name="probe-slot")
    result = guarded({}) if sync else await guarded({})
    assert result == {"ok": True}
    assert node.breaker.status().state == "closed"


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("token_kind", ["ours", "threading", "anyio"])
async def test_abandoned_sync_retry_stops_for_every_token_kind(token_kind: str) -> None:
    """A sync retry whose caller was released by any kind of token makes no new attempt."""
    token: Any = {
        "ours": CancelToken,
        "threading": threading.Event,
        "anyio": anyio.Event,
    }[token_kind]()
    calls = 0

    def impl(state: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    policy = Policy.retry(attempts=3, backoff=0.3, jitter=0.0)
    node = create_node(impl, name="tokens", policy=policy, on_error="raise")
    threads_before = _our_threads()

    def run() -> BaseException | None:
        try:
            node({}, config={"configurable": {"cancel_token": token}})
        except BaseException as exc:
            return exc
        return None

    async with anyio.create_task_group() as group:

        async def cancel_soon() -> None:
            await anyio.sleep(0.05)
            if isinstance(token, CancelToken):
                token.cancel()
            else:
                token.set()

        group.start_soon(cancel_soon)
        outcome = await anyio.to_thread.run_sync(run)
    assert isinstance(outcome, NodeCancellationError)
    # The abandoned thread wakes from its backoff when the token is set and ends.
    assert await _wait_until(lambda: _our_threads() <= threads_before, 1.0)
    assert calls == 1
