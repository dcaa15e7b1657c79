"""Rate limiting a node: calls (or weighted cost) per period, local or shared on Redis.

Semantics, in one place:

* **A moving window.** At most ``limit`` calls, or cost units (``cost`` weighs a
  call from its arguments, for example by estimated tokens), in any window of
  ``per`` seconds. A call whose cost exceeds the whole limit can never run and is
  refused at once.
* **Waiting.** A call without capacity waits until the window frees enough, if
  that is within ``max_wait`` and the time left before the enclosing deadline
  (every enclosing cancel scope for async callers,
  `resilient_nodes._deadline.sync_deadline_scope` for sync ones). Otherwise it
  is refused at once with `NodeRateLimitedError` (category ``rejected``: not
  retried, never counted by a breaker), rather than sleeping into a timeout.
  The wait is a plain sleep: cancellable, and a call cancelled (or refused)
  while waiting has consumed nothing, since capacity is only taken when the
  call is admitted. A sync caller's wait also ends when its cancel token is set.
  (With Redis, a cancellation that arrives during the admission round trip
  itself waits for it, at most `REDIS_TIMEOUT`; if that round trip admitted
  the call, the admission stays counted: a moving window cannot take one back.)
* **Retry-After.** When the call fails with an error that carries a
  ``Retry-After`` (a 429 from the provider, read by `classify_error`), the key
  is paused for that long, for every caller of the key: with a shared storage,
  in every process.
* **Shared storage.** ``storage="redis://..."`` keeps the window in Redis through
  the ``limits`` library (its moving-window strategy, one Lua script per
  admission: one round trip per admitted call). Every process using the same
  key and URL shares the limit. A pause is written into the same window, as
  entries that fill it until the pause ends, so it costs callers no extra round
  trip. Async callers run the round trip in a worker thread (the ``limits``
  async storages are asyncio-only, and nodes also run on trio).
* **Redis down.** Connections time out after `REDIS_TIMEOUT` and are not
  retried; a failed round trip switches the limit to a local window of the same
  size for `FALLBACK_PERIOD` seconds (logged once, ``rate_limit.storage_unavailable``;
  ``rate_limit.storage_recovered`` when Redis answers again). So a call is never
  held up for long by Redis and never lost; the price is that, while it is down,
  each process enforces the limit on its own.

The in-process window (`LocalWindow`) is our own exact moving window rather
than ``limits``' memory storage: that one costs 8 to 13 µs per admission
(measured), 4 to 6 times the peers this layer is held to, takes a lock per
admission and reads the wall clock with no way to inject one for tests. Ours
admits without a lock (see `LocalWindow`): 0.40x the success overhead of
LangChain's ``InMemoryRateLimiter``, which takes one, in the full benchmark run;
with a lock it was 1.00-1.07x. The shared window is ``limits``' own moving
window, so both have the same semantics.
"""

from __future__ import annotations

import collections
import functools
import itertools
import math
import threading
import time
from typing import TYPE_CHECKING, Any, Final, cast

import anyio
import anyio.lowlevel
import anyio.to_thread

from . import _telemetry
from ._callables import is_async_callable
from ._classification import classify_error
from ._deadline import async_remaining, sync_remaining
from ._logging import LogEvent, emit, get_logger
from ._sanitize import error_text
from ._tokens import sleep_unless_cancelled, sync_cancel_token
from .errors import NodeExecutionError, NodeRateLimitedError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._config import RateLimitConfig

__all__ = [
    "FALLBACK_PERIOD",
    "REDIS_TIMEOUT",
    "LocalWindow",
    "RateLimiter",
    "local_window",
    "reset_local_windows",
    "wrap_rate_limit",
]

REDIS_TIMEOUT: Final = 0.25
"""Seconds a Redis connect or reply may take before the local fallback is used."""

FALLBACK_PERIOD: Final = 5.0
"""Seconds the local window stands in after a failed Redis round trip."""

_MIN_WAIT: Final = 0.005  # the wait when none can be worked out now; a Redis wait's floor
_RETIRE_BATCH: Final = 256  # slots one admission returns to the count, at most
_IDLE_WINDOWS: Final = 10  # windows a slot stays free before it is returned
_REORDER_DEPTH: Final = 16  # front slots the slow way puts back in order
_KEY_PREFIX: Final = "resilient_nodes:ratelimit"


class LocalWindow:
    """An exact moving window in this process, with no lock on an admission's path.

    The window is ``limit`` *slots*; an admission of cost ``c`` takes ``c`` of them.
    A slot taken by a call admitted at ``t`` is busy until ``t + per`` (when that
    call leaves the window) and free after. Since each slot is taken at most once
    per window, no window of ``per`` seconds ever admits more than ``limit`` units.

    Slots in circulation sit in a deque, each as the time it frees, least recently
    taken first (so in order of those times); the rest are only counted, so a
    limit of a billion costs nothing until it is used. An admission of cost 1
    takes the front slot with ``deque.popleft``, which is atomic: the slot is then
    this caller's alone, whatever other threads do. Free, it goes to the back,
    busy until ``now + per``. Busy (the window is full, or traffic grows past the
    slots in circulation), the admission goes the slow way, under a lock: the slot
    goes back in its place and one is taken from the count if any is left, with
    an eighth more brought into circulation, free, so that the next calls go the
    fast way again. If none is left, the front is put back in order (threads
    appending or putting back at the same moment can leave a few slots slightly
    out of it) and the call is told how long to wait. A race can only hide a
    slot from a caller while another thread holds it, so that it waits a little
    longer; never admit one unit too many.

    Once per window an admission also returns slots that have been free for
    `_IDLE_WINDOWS` windows (traffic fell) to the count, up to `_RETIRE_BATCH` at
    a time, so the deque shrinks back to about that many windows of recent traffic.

    Args:
        limit: Cost units per window.
        per: The window, in seconds.
        clock: Monotonic seconds.
    """

    __slots__ = (
        "_clock",
        "_lock",
        "_next_retire",
        "_paused_until",
        "_slots",
        "_unused",
        "limit",
        "per",
    )

    def __init__(self, limit: int, per: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self.per = per
        self._clock = clock
        self._lock = threading.Lock()  # the slow way, _unused, and pauses' writers
        # A generation of slots: `clear` swaps in a new deque, and an admission
        # works on the one it read first, so one racing a reset changes only the
        # deque it began with, and the count only while that one is current.
        self._slots: collections.deque[float] = collections.deque()
        self._unused = limit  # slots never taken, or returned
        self._paused_until = -math.inf
        self._next_retire = -math.inf

    def acquire(self, cost: int) -> float:
        """Take *cost* if the window has room: 0.0; else the seconds until it may."""
        if cost == 1:
            return self.acquire_one()
        now = self._clock()
        if now < self._paused_until:
            return self._paused_until - now
        return self._acquire(self._slots, cost)

    def acquire_one(self) -> float:
        """`acquire` for a cost of 1: the path nearly every admission takes."""
        now = self._clock()
        if now < self._paused_until:
            return self._paused_until - now
        slots = self._slots
        try:
            free_at = slots.popleft()
        except IndexError:  # none in circulation yet, or other threads hold them all
            return self._acquire(slots, 1)
        if free_at > now:
            return self._acquire(slots, 1, free_at)
        slots.append(now + self.per)
        if now >= self._next_retire:
            self._retire(slots, now)
        return 0.0

    def guard_async(
        self,
        afn: Callable[..., Awaitable[Any]],
        wait_for_room: Callable[[int], Awaitable[None]],
        on_error: Callable[[Exception], None],
    ) -> Callable[..., Awaitable[Any]]:
        """*afn* admitted through this window at a cost of 1, `acquire_one` written inline.

        The common async case (in process, unweighted). The body is
        `acquire_one` copied into the wrapper, so an admission costs no call:
        0.42x the success overhead of LangChain's ``InMemoryRateLimiter``
        against 0.49-0.51x through a call to `acquire_one` (paired, three runs
        each; the target is 0.5x). Keep the two in step. A call the fast way
        does not admit goes on to *wait_for_room* (`RateLimiter.acquire_async`);
        *on_error* sees what the call raises (`RateLimiter.pause_for`).
        """
        clock = self._clock
        per = self.per

        async def limited(*args: Any, **kwargs: Any) -> Any:
            now = clock()
            if now < self._paused_until:
                await wait_for_room(1)
            else:
                slots = self._slots
                try:
                    free_at: float | None = slots.popleft()
                except IndexError:
                    free_at = None
                if free_at is not None and free_at <= now:
                    slots.append(now + per)
                    if now >= self._next_retire:
                        self._retire(slots, now)
                elif self._acquire(slots, 1, free_at):
                    await wait_for_room(1)
            try:
                return await afn(*args, **kwargs)
            except Exception as error:
                on_error(error)
                raise

        return limited

    def _acquire(
        self, slots: collections.deque[float], cost: int, held: float | None = None
    ) -> float:
        """The slow way: *cost* slots, free ones from the front, the rest from the count.

        *held* is a busy slot the caller took from the front; it goes back first,
        in its place (behind any free slots brought in meanwhile).
        The clock is read again under the lock: a reading from before waiting for
        it could make a slot that has freed since look busy.
        """
        with self._lock:
            if slots is not self._slots:  # the window was reset meanwhile
                slots = self._slots
                held = None
            now = self._clock()
            if held is not None:
                _put_back(slots, held)
            taken = _take_free(slots, now, cost)
            if cost - len(taken) > self._unused:
                # Racing callers may have put back a busy slot before a free one:
                # put the front in order and look once more before waiting.
                slots.extendleft(reversed(taken))
                _reorder_front(slots)
                taken = _take_free(slots, now, cost)
                if cost - len(taken) > self._unused:
                    slots.extendleft(reversed(taken))
                    return _wait(slots, now, cost - self._unused)
            short = cost - len(taken)
            if short:
                # Traffic outgrew the slots in circulation: bring an eighth more in
                # at once, free (at the front), so the next calls go the fast way.
                spare = min(self._unused - short, len(slots) >> 3)
                self._unused -= short + spare
                slots.extendleft(itertools.repeat(now, spare))
            slots.extend(itertools.repeat(now + self.per, cost))
        if now >= self._next_retire:
            self._retire(slots, now)
        return 0.0

    def _retire(self, slots: collections.deque[float], now: float) -> None:
        """Return long-free slots to the count: a batch, then again in a window."""
        retired = len(_take_free(slots, now - self.per * _IDLE_WINDOWS, _RETIRE_BATCH))
        # A full batch may have left more behind it: the next admission goes on.
        self._next_retire = now if retired == _RETIRE_BATCH else now + self.per
        if retired:
            with self._lock:
                if slots is self._slots:
                    self._unused += retired

    def used(self) -> int:
        """Cost units admitted in the last ``per`` seconds."""
        now = self._clock()
        return sum(1 for free_at in list(self._slots) if free_at > now)

    def held(self) -> int:
        """Slots in circulation, busy or free."""
        return len(self._slots)

    def unused(self) -> int:
        """Slots out of circulation: never taken, or returned."""
        return self._unused

    def pause(self, seconds: float) -> None:
        """Admit nothing for *seconds*."""
        until = self._clock() + seconds
        with self._lock:
            self._paused_until = max(self._paused_until, until)

    def clear(self) -> None:
        """Forget every admission and any pause (a new generation of slots)."""
        with self._lock:
            self._slots = collections.deque()
            self._unused = self.limit
            self._paused_until = -math.inf
            self._next_retire = -math.inf


def _take_free(slots: collections.deque[float], now: float, cost: int) -> list[float]:
    """Pop up to *cost* slots free by *now* from the front; stop at one that is not."""
    taken: list[float] = []
    while len(taken) < cost:
        try:
            free_at = slots.popleft()
        except IndexError:
            break
        if free_at > now:
            slots.appendleft(free_at)
            break
        taken.append(free_at)
    return taken


def _put_back(slots: collections.deque[float], held: float) -> None:
    """Put a slot back among the others in order of the times they free (lock held).

    Not simply at the front: while its caller waited for the lock, another may
    have brought free slots in there, and a busy slot before them would hide
    them. A binary search over the deque (in order, but for what racing callers
    take from its front meanwhile, which can only shift the place by a few).
    """
    low, high = 0, len(slots)
    try:
        while low < high:
            middle = (low + high) // 2
            if slots[middle] < held:
                low = middle + 1
            else:
                high = middle
    except IndexError:  # the front was taken from meanwhile
        low = min(low, len(slots))
    slots.insert(low, held)


def _reorder_front(slots: collections.deque[float]) -> None:
    """Put the front slots back in order of the times they free (lock held).

    A safety net before a wait is worked out: a put-back whose binary search
    met a shifting deque, or appends from threads that read the clock in one
    order and appended in the other, leave a few slots slightly out of order.
    """
    front: list[float] = []
    for _ in range(_REORDER_DEPTH):
        try:
            front.append(slots.popleft())
        except IndexError:
            break
    front.sort()
    slots.extendleft(reversed(front))


def _wait(slots: collections.deque[float], now: float, needed: int) -> float:
    """Seconds until *needed* busy slots are free (free ones are at the front)."""
    try:
        free_at = slots[needed - 1]
    except IndexError:  # other threads hold slots this instant: look again soon
        return _MIN_WAIT
    return free_at - now if free_at > now else _MIN_WAIT


_windows: dict[tuple[str, int, float], LocalWindow] = {}
_windows_lock = threading.Lock()


def reset_local_windows() -> None:
    """Forget every in-process window (`resilient_nodes.testing.reset_rate_limits`).

    Limiters built before keep the windows they hold; nodes built after get new
    ones. So the in-use windows are emptied too, rather than dropped.
    """
    with _windows_lock:
        windows = list(_windows.values())
    for window in windows:
        window.clear()


def local_window(key: str, limit: int, per: float) -> LocalWindow:
    """The process's window for *key* (and this limit): nodes naming one key share it."""
    with _windows_lock:
        found = _windows.get((key, limit, per))
        if found is None:
            found = _windows[key, limit, per] = LocalWindow(limit, per, time.monotonic)
        return found


class _RedisWindow:
    """``limits``' moving window on Redis, for one key (every call blocks: a thread's)."""

    def __init__(self, url: str, limit: int, per: float, key: str) -> None:
        from limits import RateLimitItemPerSecond  # noqa: PLC0415 - only with a storage
        from limits.strategies import MovingWindowRateLimiter  # noqa: PLC0415

        self.storage = _storage(url)
        self.item = RateLimitItemPerSecond(limit, int(per))
        self.strategy = MovingWindowRateLimiter(self.storage)
        self.key = key
        self.limit = limit

    def acquire(self, cost: int) -> float:
        if self.strategy.hit(self.item, self.key, cost=cost):
            return 0.0
        # Only a refused call pays a second round trip, to learn how long to wait.
        stats = self.strategy.get_window_stats(self.item, self.key)
        return max(_MIN_WAIT, stats.reset_time - time.time())

    def pause(self, seconds: float) -> None:
        # Fill the window with entries stamped so that they stay in it until the
        # pause ends: every process's next admission finds no room, with no
        # extra key to read. Stamps are wall-clock, as ``limits`` writes them.
        expiry = self.item.get_expiry()
        until = time.time() + seconds
        name = self.storage.prefixed_key(self.item.key_for(self.key))
        client: Any = self.storage.get_connection()
        pipe = client.pipeline(transaction=True)
        stamp = until - expiry
        for start in range(0, self.limit, 5000):
            pipe.lpush(name, *([stamp] * min(5000, self.limit - start)))
        pipe.ltrim(name, 0, self.limit - 1)
        pipe.expireat(name, math.ceil(until) + 1)
        pipe.execute()


_storages: dict[str, Any] = {}
_storages_lock = threading.Lock()


def _storage(url: str) -> Any:
    """One ``limits`` Redis storage (one connection pool) per URL in this process."""
    with _storages_lock:
        found = _storages.get(url)
        if found is None:
            from limits.storage import RedisStorage  # noqa: PLC0415 - needs the redis extra
            from redis.backoff import NoBackoff  # noqa: PLC0415
            from redis.retry import Retry  # noqa: PLC0415

            found = _storages[url] = RedisStorage(
                url,
                key_prefix=_KEY_PREFIX,
                socket_timeout=REDIS_TIMEOUT,
                socket_connect_timeout=REDIS_TIMEOUT,
                # redis-py retries 3 times with backoff by default: seconds, not
                # the bounded fallback we promise.
                retry=cast("Any", Retry(NoBackoff(), 0)),
            )
        return found


class RateLimiter:
    """One node's rate limit: admission, waiting, pauses and the Redis fallback.

    Args:
        name: The node's name (also the key when the config names none).
        config: The limit.
        clock: Monotonic seconds for the local window (tests inject one).
    """

    def __init__(
        self, name: str, config: RateLimitConfig, *, clock: Callable[[], float] | None = None
    ) -> None:
        self.name = name
        self.config = config
        self.key = config.key or name
        self._clock = clock or time.monotonic
        self.local = (
            local_window(self.key, config.limit, config.per)
            if clock is None
            else LocalWindow(config.limit, config.per, clock)
        )
        self._redis = (
            _RedisWindow(config.storage, config.limit, config.per, self.key)
            if config.storage is not None
            else None
        )
        self._down_until = -math.inf
        self._down = False
        self._max_wait = math.inf if config.max_wait is None else config.max_wait
        self._log = get_logger(node=name, rate_limit_key=self.key)

    # --- one try -------------------------------------------------------------------

    def cost_of(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
        """The weight of a call (1 without a ``cost`` callable)."""
        weigh = self.config.cost
        if weigh is None:
            return 1
        value = weigh(*args, **kwargs)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise TypeError(f"cost of a call to {self.name} must be a number >= 0, got {value!r}")
        return math.ceil(value)

    def try_acquire(self, cost: int) -> float:
        """Take *cost* now if there is room (0.0), else the seconds to wait first."""
        redis = self._redis
        if redis is not None and self._clock() >= self._down_until:
            try:
                wait = redis.acquire(cost)
            except Exception as error:
                self._storage_failed(error)
            else:
                if self._down:
                    self._storage_recovered()
                return wait
        return self.local.acquire(cost)

    def _storage_failed(self, error: Exception) -> None:
        self._down_until = self._clock() + FALLBACK_PERIOD
        if not self._down:
            self._down = True
            emit(
                self._log.warning,
                LogEvent.RATE_LIMIT_STORAGE_UNAVAILABLE,
                error_type=type(error).__name__,
                error_message=error_text(error),
                fallback_seconds=FALLBACK_PERIOD,
            )

    def _storage_recovered(self) -> None:
        self._down = False
        emit(self._log.info, LogEvent.RATE_LIMIT_STORAGE_RECOVERED)

    def refuse(self, wait: float, reason: str) -> NodeRateLimitedError:
        """The error for a call refused *wait* seconds before it could run (logged)."""
        config = self.config
        telemetry = _telemetry.active
        if telemetry is not None:
            telemetry.rate_limit_rejected(self.name, self.key)
        error = NodeRateLimitedError(
            config.limit,
            config.per,
            key=self.key,
            retry_after=None if math.isinf(wait) else wait,
            reason=reason,
            node=self.name,
        )
        emit(
            self._log.warning,
            LogEvent.RATE_LIMIT_REJECTED,
            limit=config.limit,
            per=config.per,
            wait=None if math.isinf(wait) else round(wait, 3),
            reason=reason,
        )
        return error

    def _too_long(self, wait: float, *, by_deadline: bool, cost: int) -> NodeRateLimitedError:
        if cost > self.config.limit:
            return self.refuse(math.inf, f"a cost of {cost} exceeds the whole limit")
        bound = "the enclosing deadline" if by_deadline else "max_wait"
        return self.refuse(wait, f"capacity in {wait:.3g}s, past {bound}")

    # --- admission with waiting ------------------------------------------------------

    def waiting(self, seconds: float) -> None:
        """A call is about to wait *seconds* for capacity (for the telemetry)."""
        telemetry = _telemetry.active
        if telemetry is not None:
            telemetry.rate_limit_waiting(self.name, self.key, seconds)

    async def acquire_async(self, cost: int) -> None:
        """Wait (cancellably) for room for *cost*, or raise `NodeRateLimitedError`."""
        if cost > self.config.limit:
            raise self._too_long(math.inf, by_deadline=False, cost=cost)
        remaining = async_remaining()
        by_deadline = remaining < self._max_wait
        end = anyio.current_time() + min(self._max_wait, remaining)
        redis = self._redis is not None
        while True:
            if redis:
                wait = await anyio.to_thread.run_sync(self.try_acquire, cost)
            else:
                wait = self.try_acquire(cost)
            if wait <= 0.0:
                return
            now = anyio.current_time()
            if now + wait >= end:
                # A cancelled enclosing scope reports no time left: its
                # cancellation, not our refusal, must propagate.
                await anyio.lowlevel.checkpoint_if_cancelled()
                raise self._too_long(wait, by_deadline=by_deadline, cost=cost)
            self.waiting(wait)
            await anyio.sleep(wait)

    def acquire_sync(self, cost: int) -> None:
        """Wait in this thread for room for *cost*, or raise `NodeRateLimitedError`."""
        if cost > self.config.limit:
            raise self._too_long(math.inf, by_deadline=False, cost=cost)
        remaining = sync_remaining()
        by_deadline = remaining < self._max_wait
        end = time.monotonic() + min(self._max_wait, remaining)
        while True:
            wait = self.try_acquire(cost)
            if wait <= 0.0:
                return
            now = time.monotonic()
            if now + wait >= end:
                raise self._too_long(wait, by_deadline=by_deadline, cost=cost)
            self.waiting(wait)
            token = sync_cancel_token()
            if token is None:
                time.sleep(wait)
            else:
                sleep_unless_cancelled(wait, token, name=self.name)

    # --- Retry-After ------------------------------------------------------------------

    def pause_for(self, error: BaseException) -> None:
        """Pause the key if *error* is the dependency's and carries a ``Retry-After``."""
        if isinstance(error, NodeExecutionError) or not isinstance(error, Exception):
            return  # ours (an open circuit's recovery time is no Retry-After), or control flow
        seconds = classify_error(error).retry_after
        if seconds is None or seconds <= 0:
            return
        self.local.pause(seconds)
        redis = self._redis
        if redis is not None and self._clock() >= self._down_until:
            try:
                redis.pause(seconds)
            except Exception as failure:
                self._storage_failed(failure)
        emit(
            self._log.warning, LogEvent.RATE_LIMIT_PAUSED, seconds=seconds, shared=redis is not None
        )


def wrap_rate_limit(fn: Callable[..., Any], limiter: RateLimiter, /) -> Any:
    """Guard *fn* with *limiter* (shared by all its calls); keeps its kind and signature.

    Args:
        fn: The callable to limit.
        limiter: The node's rate limiter.

    Returns:
        The limited callable.
    """
    shell = _async_shell if is_async_callable(fn) else _sync_shell
    return functools.update_wrapper(shell(fn, limiter), fn)


def _async_shell(fn: Callable[..., Any], limiter: RateLimiter) -> Callable[..., Any]:
    afn = cast("Callable[..., Awaitable[Any]]", fn)
    acquire = limiter.acquire_async
    cost_of = limiter.cost_of
    pause_for = limiter.pause_for
    if limiter.config.storage is None and limiter.config.cost is None:
        return limiter.local.guard_async(afn, acquire, pause_for)

    async def limited(*args: Any, **kwargs: Any) -> Any:
        await acquire(cost_of(args, kwargs))
        try:
            return await afn(*args, **kwargs)
        except Exception as error:
            pause_for(error)
            raise

    return limited


def _sync_shell(fn: Callable[..., Any], limiter: RateLimiter) -> Callable[..., Any]:
    acquire = limiter.acquire_sync
    cost_of = limiter.cost_of
    pause_for = limiter.pause_for

    def limited(*args: Any, **kwargs: Any) -> Any:
        acquire(cost_of(args, kwargs))
        try:
            return fn(*args, **kwargs)
        except Exception as error:
            pause_for(error)
            raise

    return limited
