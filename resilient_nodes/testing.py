"""Helpers for testing code that uses resilient_nodes.

Retries sleep between attempts. In your own test suite you usually want the
attempts (so the behaviour under test is real) without the waiting:

.. code-block:: python

    from resilient_nodes.testing import no_backoff, record_sleeps

    def test_flaky_node_recovers():
        with no_backoff():
            assert plan(state)["ok"]          # retried, but no time spent asleep

    def test_backoff_schedule():              # plan runs under Policy.retry(jitter=0)
        with record_sleeps() as delays:
            plan(state)
        assert delays == [1.0, 2.0]           # what would have been slept

`seed_jitter(n)` draws every retry's jitter from one seeded generator, so a
backoff schedule repeats exactly without turning jitter off. `no_backoff` makes
every backoff delay zero (attempt counts are unchanged; the
zero delay is also what ``on_retry`` and the ``node.retry_scheduled`` log see).
`use_sleep` replaces the sleep functions themselves, which is how you plug in a
fake clock; `record_sleeps` is a ready-made one that records each delay instead of
sleeping. Async code still reaches a checkpoint (``anyio.sleep(0)``) at every
retry under `no_backoff` and `record_sleeps`, so cancellation stays prompt.
`reset_rate_limits` empties the in-process rate-limit windows, which nodes
naming one key share for as long as the process runs.

The switches are **process-global**, like stamina's ``set_testing``: they apply to
every thread and task, which is what a pytest fixture wants (async tests run in a
task created outside the fixture's context, so a context variable would not reach
them). They nest, and each block restores what it found on exit. They are only
consulted when a retry is about to sleep, so they cost nothing on the success path.
Do not flip them from tests that run in parallel threads of one process.

For fault injection into your own graphs, see `Policy.chaos` (documented in
`resilient_nodes._chaos`); its config and hang error are re-exported here.
"""

from __future__ import annotations

import random
from contextlib import contextmanager
from typing import TYPE_CHECKING

import anyio.lowlevel

from ._ratelimit import reset_local_windows
from ._switches import switches

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

__all__ = [
    "no_backoff",
    "record_sleeps",
    "reset_rate_limits",
    "seed_jitter",
    "use_sleep",
]


@contextmanager
def no_backoff() -> Iterator[None]:
    """Make every retry backoff zero inside the block.

    Attempts, classification and exhaustion behave as usual; only the delays
    become 0.

    Yields:
        None.
    """
    previous = switches.zero_backoff
    switches.zero_backoff = True
    try:
        yield
    finally:
        switches.zero_backoff = previous


@contextmanager
def use_sleep(
    *,
    sync_sleep: Callable[[float], object] | None = None,
    async_sleep: Callable[[float], Awaitable[object]] | None = None,
) -> Iterator[None]:
    """Replace the functions retries sleep with, inside the block.

    Sync retries call ``sync_sleep(delay)`` instead of ``time.sleep``; async ones
    await ``async_sleep(delay)`` instead of ``anyio.sleep``. Either left as None
    keeps whatever was in force.

    Args:
        sync_sleep: Called with the delay in seconds.
        async_sleep: Awaited with the delay in seconds. To keep cancellation
            prompt it should itself reach a checkpoint (for example
            ``await anyio.sleep(0)``).

    Yields:
        None.
    """
    previous = (switches.sync_sleep, switches.async_sleep)
    if sync_sleep is not None:
        switches.sync_sleep = sync_sleep
    if async_sleep is not None:
        switches.async_sleep = async_sleep
    try:
        yield
    finally:
        switches.sync_sleep, switches.async_sleep = previous


@contextmanager
def seed_jitter(seed: int | random.Random, /) -> Iterator[random.Random]:
    """Draw every retry's jitter from one seeded generator, inside the block.

    With it, a test (or a demo) sees the same backoff schedule on every run
    without turning jitter off.

    Args:
        seed: An integer seed, or a `random.Random` to draw from.

    Yields:
        The generator in use.
    """
    rng = seed if isinstance(seed, random.Random) else random.Random(seed)
    previous = switches.rng
    switches.rng = rng
    try:
        yield rng
    finally:
        switches.rng = previous


@contextmanager
def record_sleeps() -> Iterator[list[float]]:
    """Record the backoff delays instead of sleeping them.

    Yields:
        A list that receives each delay, in order, as retries would sleep it.
    """
    delays: list[float] = []

    async def async_sleep(delay: float) -> None:
        delays.append(delay)
        await anyio.lowlevel.checkpoint()

    with use_sleep(sync_sleep=delays.append, async_sleep=async_sleep):
        yield delays


def reset_rate_limits() -> None:
    """Forget every in-process rate-limit window (and pause) of this process.

    Nodes naming one ``key`` share a window for as long as the process runs, so
    a test that fills one would hold back the next test's calls. Call this
    between tests (an autouse fixture). A shared (Redis) window is not touched:
    use a fresh key, or clear the Redis database, for that.
    """
    reset_local_windows()
