"""The shared deadline timer behind the asyncio timeout layer (resilient_nodes._timers).

These run on asyncio only: on trio the timeout layer uses trio's own deadlines.
Deadlines here are tens of milliseconds; nothing waits for a long one.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
import math
import time
import warnings
import weakref
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from anyio._backends._asyncio import CancelScope as AsyncioCancelScope

from resilient_nodes import _timers
from resilient_nodes import timeout as timeout_module
from resilient_nodes.config import TimeoutConfig
from resilient_nodes.errors import NodeTimeoutError
from resilient_nodes.timeout import with_timeout, wrap_timeout

_ON_ASYNCIO = pytest.mark.parametrize("anyio_backend", ["asyncio"])


def _queue() -> _timers.DeadlineQueue:
    return _timers.deadline_queue(asyncio.get_running_loop())


def _live_handles() -> list[asyncio.TimerHandle]:
    loop = asyncio.get_running_loop()
    return [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]


@_ON_ASYNCIO
@pytest.mark.anyio
async def test_calls_with_one_timeout_share_one_timer() -> None:
    """100 calls in flight under the same timeout arm one loop timer, not 100."""
    release = asyncio.Event()

    async def parked(i: int) -> int:
        await release.wait()
        return i

    guarded = wrap_timeout(parked, TimeoutConfig(seconds=30), name="shared")
    before = len(_live_handles())
    tasks = [asyncio.create_task(guarded(i)) for i in range(100)]
    await asyncio.sleep(0)
    assert _queue().pending == 100
    assert len(_live_handles()) - before <= 1
    release.set()
    assert await asyncio.gather(*tasks) == list(range(100))
    assert _queue().pending == 0
    assert _queue()._heap == []  # nothing left once no call is in flight


@_ON_ASYNCIO
@pytest.mark.anyio
async def test_the_deadline_still_fires() -> None:
    """A call past its deadline is cancelled by the shared timer and reported as ours."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(NodeTimeoutError):
        await with_timeout(functools.partial(anyio.sleep, 10), 0.02, name="late")
    assert 0.02 <= loop.time() - start < 1.0
    assert _queue().pending == 0


@_ON_ASYNCIO
@pytest.mark.anyio
async def test_an_earlier_deadline_rearms_the_timer() -> None:
    """A short deadline that arrives after a long one is not held up by it."""
    release = asyncio.Event()
    long_call = asyncio.create_task(with_timeout(release.wait, 30, name="long"))
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(NodeTimeoutError):
        await with_timeout(functools.partial(anyio.sleep, 10), 0.02, name="short")
    assert loop.time() - start < 1.0
    release.set()
    assert await long_call is True


@_ON_ASYNCIO
@pytest.mark.anyio
async def test_the_deadline_is_visible_to_anyio() -> None:
    """anyio.current_effective_deadline() inside the call is our deadline."""
    seen: list[float] = []

    async def look() -> None:
        seen.append(anyio.current_effective_deadline() - anyio.current_time())
        await anyio.lowlevel.checkpoint()

    await with_timeout(look, 5, name="visible")
    assert 4.5 < seen[0] <= 5


@_ON_ASYNCIO
@pytest.mark.anyio
async def test_the_timer_keeps_no_caller_context() -> None:
    """The armed timer does not hold the caller's context variables (and what they hold)."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("caller_var")
    var.set("run data")
    release = asyncio.Event()
    call = asyncio.create_task(with_timeout(release.wait, 30, name="ctx"))
    await asyncio.sleep(0)
    ref = _queue()._handle
    handle = ref() if ref is not None else None
    assert handle is not None
    assert var not in handle._context  # type: ignore[attr-defined]
    release.set()
    await call


@_ON_ASYNCIO
@pytest.mark.anyio
async def test_finished_calls_do_not_pile_up() -> None:
    """With a long call in flight, thousands of finished calls leave a bounded heap."""
    release = asyncio.Event()
    long_call = asyncio.create_task(with_timeout(release.wait, 30, name="long"))
    await asyncio.sleep(0)
    quick = wrap_timeout(anyio.lowlevel.checkpoint, TimeoutConfig(seconds=30), name="quick")
    for _ in range(2_000):
        await quick()
    queue = _queue()
    assert queue.pending == 1
    assert len(queue._heap) <= 2 * queue.pending + _timers._COMPACT_SLACK + 1
    release.set()
    await long_call


@_ON_ASYNCIO
@pytest.mark.anyio
async def test_a_shielded_section_inside_still_defers_the_timeout() -> None:
    """anyio's shield inside the call holds off our deadline until it ends."""
    log: list[str] = []

    async def shielded() -> None:
        with anyio.CancelScope(shield=True):
            await anyio.sleep(0.05)
            log.append("shield done")
        await anyio.lowlevel.checkpoint()  # the deferred cancellation lands here
        log.append("after shield")  # pragma: no cover - the deadline cancels this

    with pytest.raises(NodeTimeoutError):
        await with_timeout(shielded, 0.01, name="shield")
    assert log == ["shield done"]


@_ON_ASYNCIO
@pytest.mark.anyio
async def test_a_failing_cancel_does_not_lose_later_deadlines() -> None:
    """If one scope's cancel() raised, the deadlines after it still fire."""
    loop = asyncio.get_running_loop()
    problems: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: problems.append(context))
    cancelled: list[str] = []

    class Broken:
        def cancel(self) -> None:
            raise RuntimeError("broken scope")

    class Fine:
        def cancel(self) -> None:
            cancelled.append("fine")

    queue = _timers.DeadlineQueue(loop)
    try:
        now = loop.time()
        queue.add(now, now + 0.001, Broken())
        queue.add(now, now + 0.01, Fine())
        await asyncio.sleep(0.05)
    finally:
        loop.set_exception_handler(None)
    assert cancelled == ["fine"]
    assert any(isinstance(p.get("exception"), RuntimeError) for p in problems)
    assert queue.pending == 0


@_ON_ASYNCIO
@pytest.mark.anyio
async def test_falls_back_to_the_scopes_own_timer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a writable deadline slot the layer uses anyio's per-scope timer."""
    timeout_module._learn_asyncio_scope()
    monkeypatch.setattr(timeout_module, "_shared_timer", False)
    pending = _queue().pending
    seen: list[float] = []

    async def look() -> None:
        seen.append(anyio.current_effective_deadline() - anyio.current_time())
        assert _queue().pending == pending
        await anyio.lowlevel.checkpoint()

    await with_timeout(look, 5, name="fallback")
    assert 4.5 < seen[0] <= 5
    with pytest.raises(NodeTimeoutError):
        await with_timeout(functools.partial(anyio.sleep, 10), 0.01, name="fallback")


def test_scope_takes_deadline() -> None:
    """Only a scope class with a ``_deadline`` slot and a ``deadline`` property qualifies."""

    class NoSlot:
        @property
        def deadline(self) -> float:
            return math.inf

    class SlotNoProperty:
        __slots__ = ("_deadline",)

    assert _timers.scope_takes_deadline(AsyncioCancelScope)
    assert not _timers.scope_takes_deadline(NoSlot)
    assert not _timers.scope_takes_deadline(SlotNoProperty)


def test_a_loops_queue_goes_with_the_loop() -> None:
    """Nothing here keeps a loop alive: its queue goes when the loop is garbage."""

    async def one_call() -> None:
        await with_timeout(anyio.lowlevel.checkpoint, 5, name="loop")

    loop = asyncio.new_event_loop()
    loop.run_until_complete(one_call())
    key = id(loop)
    assert key in _timers._queues
    ref = weakref.ref(loop)
    with warnings.catch_warnings():
        # Dropped without close(), as a careless caller would: the loop's own
        # __del__ closes it and warns.
        warnings.simplefilter("ignore", ResourceWarning)
        del loop
        gc.collect()
    assert ref() is None
    assert key not in _timers._queues


@_ON_ASYNCIO
@pytest.mark.anyio
@pytest.mark.parametrize("seconds", [1e-300, 1e-9, 1e-6])
async def test_a_deadline_past_on_entry_cancels_at_once(seconds: float) -> None:
    """As with anyio's deadline: one already past inside the scope cancels at once."""

    async def never_yields() -> str:
        time.sleep(0.002)  # noqa: ASYNC251 - a body that never yields to the loop
        return "value"

    with pytest.raises(NodeTimeoutError):
        await with_timeout(never_yields, seconds, name="tiny")
    assert _queue().pending == 0


@_ON_ASYNCIO
@pytest.mark.anyio
async def test_the_cancellation_gives_anyios_deadline_reason() -> None:
    """The cancellation our timer delivers reads like anyio's own deadline's."""
    seen: list[str] = []

    async def watch() -> None:
        try:
            await anyio.sleep(10)
        except asyncio.CancelledError as cancelled:
            seen.append(str(cancelled))
            raise

    with pytest.raises(NodeTimeoutError):
        await with_timeout(watch, 0.01, name="reason")
    assert "deadline exceeded" in seen[0]
