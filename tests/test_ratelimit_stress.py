"""Stress and model tests for the in-process rate limit's window (no lock on its path).

The window admits without a lock (`resilient_nodes._ratelimit.LocalWindow`), so
these tests race it: threads with a tiny switch interval, thousands of async
callers cancelled or refused while they wait, and a model of an exact moving
window that every single-threaded sequence of operations must agree with.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import random
import sys
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient_nodes import NodeCancellationError, NodeRateLimitedError
from resilient_nodes._config import RateLimitConfig
from resilient_nodes._ratelimit import LocalWindow, RateLimiter, _put_back, wrap_rate_limit
from resilient_nodes._tokens import CancelToken, publish_thread_token

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

_keys = itertools.count()


def over_limit(admissions: list[tuple[float, int]], limit: int, per: float) -> int:
    """Admissions after which some window of *per* seconds holds more than *limit* units.

    An admission at ``t`` occupies its units during ``[t, t + per)``, as the window
    promises; *admissions* are ``(time, cost)`` pairs.
    """
    ordered = sorted(admissions)
    times = [t for t, _ in ordered]
    sums = list(itertools.accumulate((cost for _, cost in ordered), initial=0))
    bad = 0
    for i, (t, _) in enumerate(ordered):
        first = bisect.bisect_right(times, t - per)  # the oldest one still in the window
        if sums[i + 1] - sums[first] > limit:
            bad += 1
    return bad


@contextmanager
def frequent_switches() -> Iterator[None]:
    """Make threads switch every few bytecodes, so races show up."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


class StampingClock:
    """A monotonic clock that remembers, per thread, the last time it gave out.

    The window reads its clock once per admission, so right after an admission
    the thread's last reading is the time the window stamped it with.
    """

    def __init__(self, read: Callable[[], float]) -> None:
        self._read = read
        self._local = threading.local()

    def __call__(self) -> float:
        now = self._read()
        self._local.last = now
        return now

    @property
    def last(self) -> float:
        return float(self._local.last)


class CountingSlots(collections.deque[float]):
    """A window's slots that count the ones taken.

    Every admission, whichever way it goes (the fast way, the slow way, or
    `LocalWindow.guard_async`'s inline copy of the fast way), adds the slots
    it takes at the back, and nothing else does.
    """

    def __init__(self) -> None:
        super().__init__()
        self.taken = 0
        self._count_lock = threading.Lock()

    def append(self, free_at: float) -> None:
        with self._count_lock:
            self.taken += 1
        super().append(free_at)

    def extend(self, free_at: Iterable[float]) -> None:
        items = list(free_at)
        with self._count_lock:
            self.taken += len(items)
        super().extend(items)


class CountingWindow(LocalWindow):
    """A window that counts what it admitted (in cost units), for "consumes nothing"."""

    def __init__(self, limit: int, per: float, clock: Callable[[], float]) -> None:
        super().__init__(limit, per, clock)
        self._slots = self.slots = CountingSlots()

    @property
    def taken(self) -> int:
        return self.slots.taken


def _limiter(
    limit: int, per: float, clock: StampingClock, **options: Any
) -> tuple[RateLimiter, CountingWindow]:
    config = RateLimitConfig(limit=limit, per=per, key=f"stress-{next(_keys)}", **options)
    limiter = RateLimiter("stress", config, clock=clock)
    limiter.local = window = CountingWindow(limit, per, clock)
    return limiter, window


PER = 50 / 1024  # with clock readings in 1/1024 s, every sum and difference is exact


# --- the checker can fail -----------------------------------------------------------------


class LookThenTakeWindow:
    """The mistake the window's slots avoid: count the room, then take it, unlocked."""

    def __init__(self, limit: int, per: float, clock: Callable[[], float]) -> None:
        self.limit, self.per, self.clock = limit, per, clock
        self.stamps: collections.deque[float] = collections.deque()

    def acquire(self, cost: int) -> float:
        now = self.clock()
        room = self.limit - sum(1 for stamp in list(self.stamps) if stamp > now - self.per)
        if cost > room:
            return self.per
        time.sleep(0)  # another thread may look in between, as it may anywhere
        self.stamps.extend([now] * cost)
        return 0.0


def _race(window: Any, clock: StampingClock, threads: int, tries: int) -> list[tuple[float, int]]:
    """*threads* threads each try *tries* admissions of cost 1 or 2; the admitted ones."""
    admitted: list[tuple[float, int]] = []
    start = threading.Barrier(threads)

    def run(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        for _ in range(tries):
            cost = rng.choice((1, 1, 1, 2))
            if window.acquire(cost) <= 0:
                admitted.append((clock.last, cost))  # list.append is atomic

    workers = [threading.Thread(target=run, args=(seed,)) for seed in range(threads)]
    with frequent_switches():
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
    assert not any(worker.is_alive() for worker in workers)
    return admitted


def test_the_checker_catches_a_window_that_looks_then_takes() -> None:
    """The same race and check find over-admission in a look-then-take window."""
    ticks = itertools.count()
    clock = StampingClock(lambda: next(ticks) / 1024)  # about 1 ms a reading, exact in binary
    admitted = _race(LookThenTakeWindow(5, PER, clock), clock, threads=8, tries=300)
    assert over_limit(admitted, 5, PER) > 0


@pytest.mark.parametrize("limit", [5, 200])
def test_racing_threads_never_exceed_the_window(limit: int) -> None:
    """8 threads, 3,000 tries each, switching every few bytecodes: never over the limit.

    And no slot is lost or made twice: afterwards the window still has exactly
    ``limit`` slots, and once they are all free a single caller gets them all.
    (With 200, slots come into circulation an eighth at a time while racing.)
    """
    ticks = itertools.count()
    clock = StampingClock(lambda: next(ticks) / 1024)
    window = LocalWindow(limit, PER, clock)
    admitted = _race(window, clock, threads=8, tries=3_000)
    assert over_limit(admitted, limit, PER) == 0
    assert len(admitted) > 1_000
    assert window.held() + window.unused() == limit
    for _ in range(64):  # a window's worth of readings later, every slot is free
        clock()
    assert window.acquire(limit) == 0.0


def test_a_busy_slot_put_back_late_goes_behind_free_ones() -> None:
    """A caller that took a busy slot and then waited for the lock puts it back in order.

    Meanwhile another caller found the count nearly spent and brought the rest
    in, free, at the front; the busy slot must not land in front of them.
    """
    now = [1.0]
    window = LocalWindow(247, 60.0, lambda: now[0])
    while window.held() < 200 or window.used() < window.held():  # busy until 61 s
        assert window.acquire_one() == 0.0
    assert (window.held(), window.unused()) == (221, 26)
    now[0] = 10.0
    held = window._slots.popleft()  # caller A, fast way: a busy slot
    assert window.acquire_one() == 0.0  # caller B, slow way: 26 more come in
    assert window._acquire(window._slots, 1, held) == 0.0  # A, under the lock now
    assert window.unused() == 0
    assert window.acquire(24) == 0.0  # the 24 free ones are all at the front
    assert window.acquire(1) == pytest.approx(51.0)


def test_callers_polling_a_full_window_leave_its_slots_in_order() -> None:
    """Racing callers that find the window full must not hide a free slot behind a busy one.

    Each puts back the busy slot it took; put back in the wrong order, a slot
    freeing at 110 s would stand before one freeing at 60 s, and at 61 s a
    caller would be told to wait 49 s with a slot free.
    """
    with frequent_switches():
        for _ in range(20):
            assert _poll_a_full_window() == 0.0


def _poll_a_full_window() -> float:
    """8 threads poll a window full until 60 s; what a caller is told at 61 s."""
    now = [0.0]
    window = LocalWindow(2, 60.0, lambda: now[0])
    window.acquire_one()
    now[0] = 50.0
    window.acquire_one()
    now[0] = 55.0
    start = threading.Barrier(8)

    def poll() -> None:
        start.wait()
        for _ in range(500):
            assert window.acquire_one() > 0

    threads = [threading.Thread(target=poll) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    now[0] = 61.0
    return window.acquire_one()


def test_a_reset_racing_admissions_keeps_the_window_whole() -> None:
    """`clear` while threads admit: the new window has exactly ``limit`` slots."""
    ticks = itertools.count()
    clock = StampingClock(lambda: next(ticks) / 1024)
    window = LocalWindow(50, PER, clock)
    stop = threading.Event()

    def admit() -> None:
        while not stop.is_set():
            window.acquire(1 + next(ticks) % 3)

    threads = [threading.Thread(target=admit) for _ in range(6)]
    with frequent_switches():
        for thread in threads:
            thread.start()
        for _ in range(200):
            window.clear()
            time.sleep(0)
        stop.set()
        for thread in threads:
            thread.join(30)
    assert window.held() + window.unused() == 50
    for _ in range(64):
        clock()
    assert window.acquire(50) == 0.0


# --- thousands of waiters: asyncio and trio -----------------------------------------------


@pytest.mark.anyio
async def test_thousands_of_async_waiters_cancelled_or_refused() -> None:
    """3,000 callers of a node at 50 per 200 ms; over 2,000 cancelled while waiting, some refused.

    The cap holds at every admission; every admission ran the call (a cancelled
    or refused waiter took nothing); the survivors all ran.
    """
    rng = random.Random(18)
    limit, per = 50, 0.2
    clock = StampingClock(anyio.current_time)
    limiter, window = _limiter(limit, per, clock)
    stamps: list[tuple[float, int]] = []

    async def work() -> None:
        # Nothing ran since the admission (one task, no await in between).
        stamps.append((clock.last, 1))
        await anyio.lowlevel.checkpoint()

    limited = wrap_rate_limit(work, limiter)
    outcomes: collections.Counter[str] = collections.Counter()
    scopes = [anyio.CancelScope() for _ in range(3_000)]

    async def caller(i: int) -> None:
        with scopes[i]:
            try:
                if i % 10 == 0:  # a short deadline: refused rather than waiting past it
                    with anyio.fail_after(0.01):
                        await limited()
                else:
                    await limited()
            except NodeRateLimitedError:
                outcomes["refused"] += 1
                return
            except TimeoutError:  # the loop ran late: the deadline fired in the wait
                outcomes["timed out"] += 1
                return
            outcomes["ran"] += 1

    async with anyio.create_task_group() as tg:
        for i in range(3_000):
            tg.start_soon(caller, i)
        for _ in range(3):  # each caller gets as far as its admission, or its wait
            await anyio.lowlevel.checkpoint()
        # All but 300 of those without a deadline, cancelled within the first
        # 200 ms or so: while the first 50 calls hold the window.
        waiting = [i for i in range(3_000) if i % 10]
        victims = rng.sample(waiting, len(waiting) - 300)
        for index in victims:
            scopes[index].cancel()
    cancelled = sum(1 for scope in scopes if scope.cancelled_caught)
    assert over_limit(stamps, limit, per) == 0
    assert window.taken == len(stamps)
    assert outcomes["ran"] <= len(stamps)
    assert outcomes["refused"] > 0
    assert cancelled >= 2_000
    assert sum(outcomes.values()) + cancelled == 3_000


# --- threads through the node: waits, tokens, deadlines -----------------------------------


def test_threads_waiting_cancelled_and_past_deadlines_keep_the_cap() -> None:
    """64 threads x 12 sync calls at 20 per 20 ms; a third cancelled through their token."""
    limit, per = 20, 0.02
    clock = StampingClock(time.monotonic)
    limiter, window = _limiter(limit, per, clock, cost=lambda cost: cost)
    stamps: list[tuple[float, int]] = []
    tokens = [CancelToken() for _ in range(64)]

    def work(cost: int) -> None:
        stamps.append((clock.last, cost))

    limited = wrap_rate_limit(work, limiter)
    outcomes: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def caller(i: int) -> None:
        unpublish = publish_thread_token(tokens[i])
        rng = random.Random(i)
        try:
            for _ in range(12):
                try:
                    limited(rng.choice((1, 1, 2, 3)))
                    outcome = "ran"
                except NodeCancellationError:
                    outcome = "cancelled"
                except NodeRateLimitedError:
                    outcome = "refused"
                with lock:
                    outcomes[outcome] += 1
        finally:
            unpublish()

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(64)]
    with frequent_switches():
        for thread in threads:
            thread.start()
        time.sleep(0.05)
        for token in tokens[::3]:
            token.cancel("test")
        for thread in threads:
            thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert over_limit(stamps, limit, per) == 0
    assert window.taken == sum(cost for _, cost in stamps)
    assert outcomes["ran"] == len(stamps)
    assert outcomes["cancelled"] > 0
    assert sum(outcomes.values()) == 64 * 12


# --- a model: an exact moving window, one admission stamp per unit -------------------------


class ModelWindow:
    """What the window must do, written the plain way: a list of admission stamps."""

    def __init__(self, limit: int, per: float) -> None:
        self.limit, self.per = limit, per
        self.stamps: list[float] = []
        self.paused_until = -float("inf")

    def acquire(self, now: float, cost: int) -> float:
        if now < self.paused_until:
            return self.paused_until - now
        inside = sorted(stamp for stamp in self.stamps if stamp > now - self.per)
        room = self.limit - len(inside)
        if cost <= room:
            self.stamps += [now] * cost
            return 0.0
        return inside[cost - room - 1] + self.per - now


_steps = st.lists(
    st.one_of(
        # Binary fractions: sums stay exact, so "just left the window" is well defined.
        st.tuples(st.just("wait"), st.sampled_from([0.0, 1 / 64, 1 / 8, 3 / 8, 1.0, 3.0, 12.0])),
        st.tuples(st.just("take"), st.integers(min_value=0, max_value=6)),
        st.tuples(st.just("pause"), st.sampled_from([1 / 16, 1 / 2, 2.0])),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(limit=st.integers(min_value=1, max_value=6), steps=_steps)
def test_the_window_is_an_exact_moving_window(limit: int, steps: list[tuple[str, Any]]) -> None:
    """Any single-threaded sequence: the same admissions and waits as the model."""
    now = [100.0]
    window = LocalWindow(limit, 1.0, lambda: now[0])
    model = ModelWindow(limit, 1.0)
    for kind, value in steps:
        if kind == "wait":
            now[0] += value
        elif kind == "pause":
            window.pause(value)
            model.paused_until = max(model.paused_until, now[0] + value)
        elif value <= limit:
            assert window.acquire(value) == pytest.approx(model.acquire(now[0], value))
    assert window.used() == sum(1 for stamp in model.stamps if stamp > now[0] - 1.0)


def test_a_wait_is_worked_out_only_with_the_front_in_order() -> None:
    """Slots out of order at the front (racing put-backs): ordered, a free one is found."""
    now = [0.0]
    window = LocalWindow(2, 60.0, lambda: now[0])
    window.acquire_one()  # frees at 60
    now[0] = 50.0
    window.acquire_one()  # frees at 110
    now[0] = 61.0
    window._slots.reverse()  # as racing callers could have left it: [110, 60]
    assert window._acquire(window._slots, 1) == 0.0
    assert list(window._slots) == [110.0, 121.0]


def test_a_put_back_survives_the_front_being_taken_meanwhile() -> None:
    """The binary search may find the deque shorter than it was: the slot still goes in."""

    class TakenFrom(collections.deque[float]):
        def __getitem__(self, index: Any) -> Any:
            if len(self) == 3:
                self.popleft()  # another caller takes the front slot right now
            return super().__getitem__(index)

    slots = TakenFrom([1.0, 2.0, 3.0])
    _put_back(slots, 4.0)
    assert sorted(slots) == [2.0, 3.0, 4.0]


@pytest.mark.anyio
async def test_slots_long_free_are_returned_through_the_async_wrapper() -> None:
    """The async wrapper's inline admission returns long-free slots too."""
    now = [0.0]
    config = RateLimitConfig(limit=5_000, per=1.0, key=f"stress-{next(_keys)}")
    limiter = RateLimiter("shrink", config, clock=lambda: now[0])

    async def work() -> None:
        return None

    limited = wrap_rate_limit(work, limiter)
    for i in range(5_000):
        now[0] = i * 1e-4
        await limited()
    assert (limiter.local.held(), limiter.local.unused()) == (5_000, 0)
    now[0] = 20.0
    for _ in range(200):
        now[0] += 0.3
        await limited()
    assert limiter.local.held() < 500
    assert limiter.local.held() + limiter.local.unused() == 5_000


@pytest.mark.parametrize("cost", [1, 7])
def test_slots_long_free_are_returned(cost: int) -> None:
    """After a burst, slots free for ten windows go back to the count and can be taken again."""
    now = [0.0]
    window = LocalWindow(7_000, 1.0, lambda: now[0])
    for i in range(1_000):  # every slot taken: all in circulation
        now[0] = i * 1e-4
        assert window.acquire(7) == 0.0
    assert (window.held(), window.unused()) == (7_000, 0)
    now[0] = 20.0
    for _ in range(200):  # a quiet trickle: a few calls per window
        now[0] += 0.3
        assert window.acquire(cost) == 0.0
    assert window.held() < 500
    assert window.held() + window.unused() == 7_000
    # What went back is usable: all but the last window's calls fit at once.
    assert window.acquire(7_000 - window.used()) == 0.0
