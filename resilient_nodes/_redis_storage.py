"""Circuit-breaker state shared across processes through Redis.

``Policy.breaker(storage=RedisBreakerStorage("redis://127.0.0.1:6379/0"))`` makes
every process that wraps a node of the same name use one breaker. This is the only
module that imports redis (the ``redis`` extra).

How it works
------------
A breaker reads and writes its storage under its own lock, synchronously, and
calls may come from an event loop. So no Redis I/O ever happens on the caller's
side. Instead each breaker gets a *view* (`RedisBreakerStorage.for_breaker`):

* **Reads come from a local mirror.** One daemon thread per storage owns the
  Redis client. Every ``refresh_interval`` (default 0.5 s) it fetches the state of
  every bound breaker in a single pipelined round trip. A transition made by one
  process is therefore seen by every other within ``refresh_interval`` plus one
  round trip, which is at most ``refresh_interval + timeout`` (0.7 s by default).
  A newly created breaker starts closed until its first refresh.
* **Writes are queued and pushed at once.** A failure, a success that clears a
  non-zero count, a move to half-open or a reset is queued as a one-letter
  operation and the thread is woken. One Lua script applies a view's batch
  atomically and returns the new state, so concurrent workers never lose a count,
  and the failure that reaches the threshold also opens the circuit (stamping
  ``opened_at`` in milliseconds) in the same step. Until the reply arrives, the
  mirror is the last reply with the queued operations replayed on top, through
  a Python copy of the script's rules, so local reads never go backwards.
* **Redis is the truth.** A process that trips on its own count but whose
  operations, applied in Redis, do not trip the shared breaker (another process
  recorded a success in between) goes back to the shared state on the next reply.
* **Steady state costs nothing.** A success while closed with no failures
  recorded queues nothing; only the periodic refresh talks to Redis.

One probe across all processes
------------------------------
In half-open state a call may only probe while its process holds the probe lease,
a Redis key set with ``SET NX PX`` (``probe_lease``, default 5 s). The lease cannot
be taken synchronously under the breaker's lock, so the first caller that finds no
lease is rejected (as if another probe were running) and the thread asks Redis
for it; once it is granted, the next call in that process is the probe. The
outcome and a compare-and-delete of the lease go out in one script run. A lease
that is not used within ``refresh_interval`` is handed back, and a lease whose
holder died expires on its own.

When Redis is unreachable or slow
---------------------------------
Every round trip is bounded by ``timeout`` (connect and read, default 0.2 s) with
no retries, and happens on the thread, so breaker decisions never wait for it:
they simply use the mirror, which stops changing, so the breaker behaves like an
in-process one (half-open probes are then admitted locally, one per process). A
warning ``breaker.storage_unavailable`` is logged at most once per
``warn_interval`` (30 s). Operations recorded meanwhile stay queued (up to 1000
per breaker; the oldest are dropped beyond that) and are replayed in order when
Redis answers again, through the same conditional script: failures seen during
the outage count in the shared breaker, a local reset closes it, and stale moves
(a half-open based on an old ``opened_at``) are ignored. After that the shared
state wins. A batch whose reply was lost may be applied twice (at least once).

Keys are ``{prefix}:{name}:state`` (a hash: state, failures, successes,
opened_at in epoch milliseconds) and ``{prefix}:{name}:probe``, so one storage
serves any number of nodes and two nodes never share keys. Processes sharing a
breaker should use the same thresholds: each applies its own in the script.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import time
import uuid
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Self
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.exceptions import NoScriptError, RedisError
from redis.retry import Retry

from ._config import checked_duration
from ._logging import LogEvent, emit, get_logger
from ._sanitize import error_text
from .errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._config import BreakerConfig

__all__ = ["RedisBreakerStorage"]


_CLOSED: Final = "closed"
_OPEN: Final = "open"
_HALF_OPEN: Final = "half-open"

_MAX_OPS: Final = 1000

# One script for every operation. KEYS: state hash, probe lease. ARGV: now (ms),
# failure threshold, success threshold, recovery (ms), lease (ms), then operations:
# f<ms> failure, s success, h<ms> move to half-open if recovered by then, c close
# (reset), a<token> take the lease, r<token> give it back. `_replay` below must
# follow the same rules.
_SCRIPT: Final = """
local key, lease = KEYS[1], KEYS[2]
local now = tonumber(ARGV[1])
local fmax, smax = tonumber(ARGV[2]), tonumber(ARGV[3])
local recovery, lease_ms = tonumber(ARGV[4]), ARGV[5]
local state = redis.call('HGET', key, 'state') or 'closed'
local acquired = 0
local function trip(at)
  state = 'open'
  redis.call('HSET', key, 'state', 'open', 'opened_at', at, 'successes', 0)
end
local function recovered(at)
  if state ~= 'open' then return false end
  return at >= (tonumber(redis.call('HGET', key, 'opened_at')) or 0) + recovery
end
local function half_open()
  state = 'half-open'
  redis.call('HSET', key, 'state', 'half-open', 'successes', 0)
end
for i = 6, #ARGV do
  local op = ARGV[i]
  local code, arg = string.sub(op, 1, 1), string.sub(op, 2)
  if code == 'f' then
    if state == 'closed' then
      if redis.call('HINCRBY', key, 'failures', 1) >= fmax then trip(arg) end
    elseif state == 'half-open' then
      redis.call('HINCRBY', key, 'failures', 1)
      trip(arg)
    end
  elseif code == 's' then
    if state == 'closed' then
      redis.call('HSET', key, 'failures', 0)
    elseif state == 'half-open' then
      if redis.call('HINCRBY', key, 'successes', 1) >= smax then
        state = 'closed'
        redis.call('HSET', key, 'state', 'closed', 'failures', 0, 'successes', 0)
      end
    end
  elseif code == 'h' then
    if recovered(tonumber(arg)) then half_open() end
  elseif code == 'c' then
    state = 'closed'
    redis.call('HSET', key, 'state', 'closed', 'failures', 0, 'successes', 0)
    redis.call('DEL', lease)
  elseif code == 'a' then
    if recovered(now) then half_open() end
    if state == 'half-open' and redis.call('SET', lease, arg, 'NX', 'PX', lease_ms) then
      acquired = 1
    end
  elseif code == 'r' then
    if redis.call('GET', lease) == arg then redis.call('DEL', lease) end
  end
end
local v = redis.call('HMGET', key, 'failures', 'successes', 'opened_at')
return {state, tonumber(v[1]) or 0, tonumber(v[2]) or 0, v[3] or '', acquired,
        redis.call('PTTL', lease)}
"""
_SHA: Final = hashlib.sha1(_SCRIPT.encode(), usedforsecurity=False).hexdigest()

# A reply: state, failures, successes, and opened_at in epoch milliseconds if ever set.
_Snapshot = tuple[str, int, int, int | None]


def _replay(  # noqa: C901 - one branch per operation, laid out like the script
    snap: _Snapshot, ops: list[str], fmax: int, smax: int, recovery_ms: int
) -> _Snapshot:
    """Apply queued operations to a snapshot exactly as the Lua script would."""
    state, failures, successes, opened = snap
    for op in ops:
        code = op[0]
        if code == "f":
            if state == _CLOSED:
                failures += 1
                if failures >= fmax:
                    state, opened, successes = _OPEN, int(op[1:]), 0
            elif state == _HALF_OPEN:
                failures += 1
                state, opened, successes = _OPEN, int(op[1:]), 0
        elif code == "s":
            if state == _CLOSED:
                failures = 0
            elif state == _HALF_OPEN:
                successes += 1
                if successes >= smax:
                    state, failures, successes = _CLOSED, 0, 0
        elif code == "h":
            if state == _OPEN and int(op[1:]) >= (opened or 0) + recovery_ms:
                state, successes = _HALF_OPEN, 0
        else:  # "c"
            state, failures, successes = _CLOSED, 0, 0
    return state, failures, successes, opened


def _text(value: object) -> str:
    # The client is ours and never decodes, but a URL can still ask it to.
    return value.decode() if isinstance(value, bytes) else str(value)


def _seconds(value: object, field: str, problems: list[tuple[str, str]]) -> float:
    return checked_duration(value, field, problems, positive=True, default=1.0)


def _mask(url: str) -> str:
    """The URL with its password hidden, for logs and repr."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


_DEFAULTS: Final[dict[str, float]] = {
    "refresh_interval": 0.5,
    "timeout": 0.2,
    "probe_lease": 5.0,
    "warn_interval": 30.0,
}


class RedisBreakerStorage:
    """Breaker state shared by every process through one Redis server.

    Pass it as ``Policy.breaker(storage=...)``; one storage can serve many nodes,
    each under its own keys. Creating it never touches Redis: a daemon thread
    connects when the first breaker is bound, and keeps trying while Redis is
    down. See the module docstring for the staleness bound and the fallback.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL. Response decoding,
            timeouts and retries in it are overridden.
        prefix: Key prefix; breakers with the same name and prefix are one breaker.
        refresh_interval: Seconds between two reads of the shared state.
        timeout: Seconds allowed to connect and for each round trip.
        probe_lease: Seconds a half-open probe may hold the shared probe slot.
        warn_interval: Minimum seconds between two "unavailable" warnings.

    Raises:
        ConfigError: On an invalid URL, prefix or duration.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "resilient_nodes",
        refresh_interval: float | timedelta = 0.5,
        timeout: float | timedelta = 0.2,
        probe_lease: float | timedelta = 5.0,
        warn_interval: float | timedelta = 30.0,
    ) -> None:
        problems: list[tuple[str, str]] = []
        options: dict[str, Any] = {}
        # Plain data (from_dict) reaches here unchecked, so the types are checked too.
        raw_url: object = url
        raw_prefix: object = prefix
        if not isinstance(raw_url, str):
            problems.append(("url", f"must be a string, got {type(raw_url).__name__}"))
        else:
            try:
                options = parse_url(raw_url)  # type: ignore[no-untyped-call]
            except ValueError as error:
                problems.append(("url", str(error)))
        if not isinstance(raw_prefix, str) or not raw_prefix:
            problems.append(("prefix", f"must be a non-empty string, got {prefix!r}"))
        self.refresh_interval = _seconds(refresh_interval, "refresh_interval", problems)
        self.timeout = _seconds(timeout, "timeout", problems)
        self.probe_lease = _seconds(probe_lease, "probe_lease", problems)
        self.warn_interval = _seconds(warn_interval, "warn_interval", problems)
        if problems:
            raise ConfigError(problems)
        self.url = url
        self.prefix = prefix
        options.update(
            decode_responses=False,
            protocol=2,
            socket_timeout=self.timeout,
            socket_connect_timeout=self.timeout,
            # redis-py's default retries made one call take 21 s with Redis down.
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._options = options
        self._log = get_logger(storage="redis", prefix=prefix, url=_mask(url))
        self._views: weakref.WeakSet[_BreakerView] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._closed = False
        self.healthy = False
        self._down_since: float | None = None
        self._last_warning = -math.inf
        self._retry_at = 0.0

    # --- plain data ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain data that `from_dict` reads back (non-default durations included)."""
        data: dict[str, Any] = {"type": "redis", "url": self.url, "prefix": self.prefix}
        for field, default in _DEFAULTS.items():
            value = getattr(self, field)
            if value != default:
                data[field] = value
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], /, *, path: str = "") -> RedisBreakerStorage:
        """Build a storage from ``{"type": "redis", "url": ..., "prefix": ...}``.

        Args:
            data: The plain data, as written by `to_dict`.
            path: Where *data* sits in a larger document, for error messages.

        Returns:
            The new storage.

        Raises:
            ConfigError: Naming the path of every problem.
        """

        def at(field: str) -> str:
            return f"{path}.{field}" if path else field

        if not isinstance(data, Mapping):
            raise ConfigError([(path, f"must be a table/mapping, got {type(data).__name__}")])
        problems: list[tuple[str, str]] = []
        if data.get("type") != "redis":
            problems.append((at("type"), f'must be "redis", got {data.get("type")!r}'))
        extra = sorted(set(data) - {"type", "url", "prefix", *_DEFAULTS})
        if extra:
            problems.append((path, f"unknown key(s): {', '.join(map(str, extra))}"))
        if "url" not in data:
            problems.append((at("url"), "is required"))
        if problems:
            raise ConfigError(problems)
        kwargs = {key: value for key, value in data.items() if key in _DEFAULTS}
        try:
            return cls(data["url"], prefix=data.get("prefix", "resilient_nodes"), **kwargs)
        except ConfigError as error:
            raise error.prefixed(path) from None

    def __repr__(self) -> str:
        args = [repr(_mask(self.url)), f"prefix={self.prefix!r}"]
        args += [
            f"{field}={getattr(self, field)!r}"
            for field, default in _DEFAULTS.items()
            if getattr(self, field) != default
        ]
        return f"RedisBreakerStorage({', '.join(args)})"

    # --- binding ---------------------------------------------------------------------

    def for_breaker(
        self, name: str, /, *, config: BreakerConfig, clock: Callable[[], float]
    ) -> _BreakerView:
        """The storage of the breaker *name*; called by `NodeCircuitBreaker`.

        Args:
            name: The breaker's (node's) name; its keys live under the prefix.
            config: The breaker's thresholds and recovery timeout.
            clock: The breaker's wall clock (seconds), for ``opened_at``.

        Returns:
            A per-breaker view answering from the local mirror.

        Raises:
            RuntimeError: If the storage was closed.
        """
        if self._closed:
            raise RuntimeError("this RedisBreakerStorage is closed")
        view = _BreakerView(self, name, config, clock, wake=self._wake, closed=self._stop)
        with self._lock:
            self._views.add(view)
            self._start()
        self._wake.set()
        return view

    def close(self) -> None:
        """Push what is queued (if Redis answers), then stop the thread.

        Breakers bound to a closed storage keep working on their local state.
        """
        with self._lock:
            self._closed = True
            thread = self._thread
        self._stop.set()
        self._wake.set()
        if thread is not None and thread.is_alive():
            thread.join()
        self.healthy = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- the thread ------------------------------------------------------------------

    def _start(self) -> None:
        # Lock held. A forked child inherits the object but not the thread.
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._thread = None
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run, name=f"resilient_nodes-redis-{self.prefix}", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        pool = redis.ConnectionPool(**self._options)
        client = redis.Redis(connection_pool=pool)
        try:
            next_refresh = 0.0
            while not self._stop.is_set():
                now = time.monotonic()
                if now < self._retry_at:
                    # Redis is down: wait out the pause whatever gets queued.
                    self._stop.wait(self._retry_at - now)
                    continue
                if now < next_refresh:
                    self._wake.wait(next_refresh - now)
                self._wake.clear()
                if self._stop.is_set():
                    break
                now = time.monotonic()
                refresh = now >= next_refresh
                if refresh:
                    next_refresh = now + self.refresh_interval
                self._cycle(client, refresh=refresh)
            if self._down_since is None:  # not known to be down: push what is queued
                self._cycle(client, refresh=False)
        finally:
            pool.disconnect()

    def _cycle(self, client: redis.Redis, *, refresh: bool) -> None:
        """One pipelined round trip for every view with something to send."""
        started = time.monotonic()
        batch = [(view, request) for view in list(self._views) if (request := view.take(refresh))]
        if not batch:
            return
        try:
            replies = self._send(client, batch)
        except (RedisError, OSError) as error:
            self._down(error)
            return
        self._up()
        for (view, request), reply in zip(batch, replies, strict=True):
            if isinstance(reply, Exception):
                view.discard(request)
                self._warn("rejected by Redis", reply)
            else:
                view.apply(request, reply, started)

    def _send(self, client: redis.Redis, batch: list[tuple[_BreakerView, _Request]]) -> list[Any]:
        for attempt in (1, 2):
            pipe = client.pipeline(transaction=False)
            for view, request in batch:
                pipe.execute_command(  # type: ignore[no-untyped-call]
                    "EVALSHA", _SHA, 2, *view.keys, *request.args
                )
            replies = pipe.execute(raise_on_error=False)
            if attempt == 1 and any(isinstance(reply, NoScriptError) for reply in replies):
                # A restarted server forgot the script; NOSCRIPT means nothing ran.
                client.script_load(_SCRIPT)
                continue
            return list(replies)
        raise RedisError("the breaker script could not be loaded")  # pragma: no cover

    def _down(self, error: BaseException) -> None:
        self.healthy = False
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
        self._retry_at = now + self.refresh_interval
        self._warn("unreachable; breakers fall back to local state", error)

    def _up(self) -> None:
        self.healthy = True
        self._retry_at = 0.0
        if self._down_since is not None:
            down_ms = round((time.monotonic() - self._down_since) * 1000.0)
            self._down_since = None
            emit(self._log.info, LogEvent.BREAKER_STORAGE_RECOVERED, down_ms=down_ms)

    def _warn(self, reason: str, error: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_warning < self.warn_interval:
            return
        self._last_warning = now
        emit(
            self._log.warning,
            LogEvent.BREAKER_STORAGE_UNAVAILABLE,
            reason=reason,
            error=f"{type(error).__name__}: {error_text(error)}",
        )


class _Request:
    """What one view sent in one round trip, to settle it when the reply comes."""

    __slots__ = ("acquire", "args", "n_ops", "n_releases")

    def __init__(self, args: list[str], n_ops: int, n_releases: int, acquire: str | None) -> None:
        self.args = args
        self.n_ops = n_ops
        self.n_releases = n_releases
        self.acquire = acquire


class _BreakerView:
    """One breaker's storage: a local mirror of its Redis hash plus a write queue.

    The mirror fields are read and written only under the breaker's lock; the
    queue, the inbox (latest reply) and the lease fields are shared with the
    storage thread under ``_lock``, which is never held across I/O.
    """

    def __init__(
        self,
        storage: RedisBreakerStorage,
        name: str,
        config: BreakerConfig,
        clock: Callable[[], float],
        *,
        wake: threading.Event,
        closed: threading.Event,
    ) -> None:
        self._storage = storage
        # The storage thread's events: set `wake` when there is something to
        # send; `closed` is set once the storage is closed and nobody will send.
        self._wake = wake
        self._closed = closed
        self.name = f"redis:{storage.prefix}:{name}"
        base = f"{storage.prefix}:{name}"
        self.keys = (f"{base}:state", f"{base}:probe")
        self._clock = clock
        self._fmax = config.failure_threshold
        self._smax = config.success_threshold
        self._recovery_ms = round(config.recovery_timeout * 1000.0)
        self._lease_ms = round(storage.probe_lease * 1000.0)
        # Set by the breaker while it adopts a state it read from us: pybreaker
        # then resets counters as if it had made the transition itself, and
        # those resets must not wipe the shared counts.
        self.adopting = False
        self._state = _CLOSED
        self._counter = 0
        self._successes = 0
        self._opened_at: datetime | None = None
        self._expect_close = False
        self._lock = threading.Lock()
        self._ops: list[str] = []
        self._inbox: _Snapshot | None = None
        self._seen: _Snapshot | None = None
        self._notify: weakref.WeakMethod[Callable[[], None]] | None = None
        self._lease: str | None = None
        self._lease_until = 0.0
        self._lease_idle_at = 0.0
        self._lease_busy = False
        self._want_lease = False
        self._lease_retry_at = 0.0
        self._releases: list[str] = []

    # --- the BreakerStorage interface (breaker's lock held) ----------------------------

    @property
    def state(self) -> str:
        """The mirrored state."""
        return self._state

    @state.setter
    def state(self, state: str) -> None:
        old, self._state = self._state, state
        if state == _HALF_OPEN and old == _OPEN:
            self._queue(f"h{self._now_ms()}")
        elif state == _CLOSED and old != _CLOSED:
            if self._expect_close:
                self._expect_close = False  # the probe's success closes it in Redis
            else:
                self._queue("c")
        # A move to open is the script's doing: the failure that trips it is queued.

    @property
    def counter(self) -> int:
        """The mirrored consecutive-failure count."""
        return self._counter

    @property
    def success_counter(self) -> int:
        """The mirrored successful probes."""
        return self._successes

    @property
    def opened_at(self) -> datetime | None:
        """When the circuit opened (milliseconds from Redis, or local)."""
        return self._opened_at

    @opened_at.setter
    def opened_at(self, value: datetime) -> None:
        self._opened_at = value

    def increment_counter(self) -> None:
        """Count a failure here and in Redis."""
        self._counter += 1
        self._queue(f"f{self._now_ms()}")

    def reset_counter(self) -> None:
        """Forget failures; a success in closed state clears the shared count."""
        if self.adopting:
            return
        if self._state == _CLOSED and self._counter:
            self._queue("s")
        self._counter = 0

    def increment_success_counter(self) -> None:
        """Count a successful probe here and in Redis."""
        self._successes += 1
        if self._successes >= self._smax:
            self._expect_close = True
        self._queue("s")

    def reset_success_counter(self) -> None:
        """Forget successful probes (the script resets them on its transitions)."""
        if not self.adopting:
            self._successes = 0

    # --- hooks for NodeCircuitBreaker (breaker's lock held) ----------------------------

    def subscribe(self, callback: Callable[[], None], /) -> None:
        """Have *callback* called (from the storage thread) when Redis changes."""
        self._notify = weakref.WeakMethod(callback)

    def sync(self) -> None:
        """Take the latest reply into the mirror, with the queued writes on top."""
        with self._lock:
            snap, self._inbox = self._inbox, None
            if snap is None:
                return
            ops = list(self._ops)
        state, failures, successes, opened = _replay(
            snap, ops, self._fmax, self._smax, self._recovery_ms
        )
        self._state, self._counter, self._successes = state, failures, successes
        if opened is not None:
            self._opened_at = datetime.fromtimestamp(opened / 1000.0, UTC)

    def try_probe(self) -> bool:
        """Whether this process may send the half-open probe now.

        True while holding the shared lease, or when Redis is unreachable
        (local fallback); otherwise asks the thread for the lease and says no.
        """
        storage = self._storage
        if not storage.healthy:
            return True
        with self._lock:
            if self._lease is not None and not self._lease_busy:
                if time.monotonic() < self._lease_until:
                    self._lease_busy = True
                    return True
                self._lease = None
            self._want_lease = True
        self._wake.set()
        return False

    def end_probe(self) -> None:
        """The probe finished: give the lease back after its outcome."""
        with self._lock:
            if self._lease is None or not self._lease_busy:
                return
            self._releases.append(self._lease)
            self._lease = None
            self._lease_busy = False
        self._wake.set()

    # --- the storage thread's side -----------------------------------------------------

    def _now_ms(self) -> int:
        return round(self._clock() * 1000.0)

    def _queue(self, op: str) -> None:
        if self._closed.is_set():
            return
        with self._lock:
            if len(self._ops) >= _MAX_OPS:
                del self._ops[0]
            self._ops.append(op)
        self._wake.set()

    def take(self, refresh: bool) -> _Request | None:
        """The next request for this view, or None if it has nothing to send."""
        now = time.monotonic()
        with self._lock:
            if self._lease is not None and not self._lease_busy and now >= self._lease_idle_at:
                # Granted but unused: hand it back so another process can probe.
                self._releases.append(self._lease)
                self._lease = None
            acquire = None
            if self._want_lease and self._lease is None and now >= self._lease_retry_at:
                acquire = uuid.uuid4().hex
            self._want_lease = False
            if not (refresh or self._ops or self._releases or acquire):
                return None
            ops = [*self._ops, *(f"r{token}" for token in self._releases)]
            n_ops, n_releases = len(self._ops), len(self._releases)
        if acquire is not None:
            ops.append(f"a{acquire}")
        args = [
            str(self._now_ms()),
            str(self._fmax),
            str(self._smax),
            str(self._recovery_ms),
            str(self._lease_ms),
            *ops,
        ]
        return _Request(args, n_ops, n_releases, acquire)

    def apply(self, request: _Request, reply: list[Any], started: float) -> None:
        """Settle *request* with Redis's reply and tell the breaker if it matters."""
        opened = _text(reply[3])
        snap: _Snapshot = (
            _text(reply[0]),
            int(reply[1]),
            int(reply[2]),
            int(opened) if opened else None,
        )
        with self._lock:
            del self._ops[: request.n_ops]
            del self._releases[: request.n_releases]
            self._inbox = snap
            if request.acquire is not None:
                if int(reply[4]):
                    self._lease = request.acquire
                    # Redis set the key after `started`, so it outlives this; the
                    # margin absorbs clock drift between here and the server.
                    self._lease_until = started + self._lease_ms / 1000.0 * 0.9
                    self._lease_idle_at = started + self._storage.refresh_interval
                    self._lease_busy = False
                else:
                    pttl = int(reply[5])
                    wait = pttl / 1000.0 if pttl > 0 else 0.02
                    self._lease_retry_at = started + min(wait, self._storage.refresh_interval)
            changed = request.n_ops > 0 or snap != self._seen
            self._seen = snap
        notify = self._notify() if self._notify is not None and changed else None
        if notify is not None:
            notify()

    def discard(self, request: _Request) -> None:
        """Drop a request Redis refused (the key holds something else)."""
        with self._lock:
            del self._ops[: request.n_ops]
            del self._releases[: request.n_releases]
