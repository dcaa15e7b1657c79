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
be taken under the breaker's lock (that would be I/O on the caller's path), so the
thread takes it *before* the call:

* **Ahead of the call.** When the mirror shows the circuit is due to recover, the
  thread of each process that used the breaker lately (recorded an outcome or was
  refused a probe within ``recovery_timeout + probe_lease + refresh_interval``)
  asks for the lease at that moment; the one that gets it moves the shared
  breaker to half-open. Its next call, however late it comes, is the probe: a
  process calling once every few seconds recovers on its first call, as with an
  in-memory breaker. The lease is held unused for as long as the circuit stays
  due and nobody else wants it, extended every ``refresh_interval / 5``.
* **On a refused call.** A call in a process without the lease is refused (as if
  another probe were running); its thread asks for the lease, retrying after
  ``refresh_interval / 5``, doubling up to ``refresh_interval``, and marks it
  wanted. An unused lease taken ahead of calls goes back as soon as its holder
  sees that mark, so a busy process waits at most about
  ``2 * refresh_interval / 5`` (0.2 s by default) for an idle one, and the
  holder then stands back for a refresh interval. A lease taken for a refused
  call is kept unused for up to ``probe_lease``, waiting for that process's
  next call, before it yields too.
* **While the probe runs** the thread extends the lease at every refresh (and at
  least every ``probe_lease / 3``), so no other process probes however long it
  takes; a probe that never returns keeps the breaker half-open everywhere, as
  it would in memory (bound it with ``Policy.timeout``). The outcome and a
  compare-and-delete of the lease go out in one script run. A holder that dies
  stops extending it, and the lease expires within ``probe_lease``; so does a
  lease whose holder cannot reach Redis for that long, and then another process
  may probe alongside.

Forked processes
----------------
A storage built before ``os.fork()`` (gunicorn ``--preload``, Celery prefork,
multiprocessing's fork) works in the child: ``os.register_at_fork`` hooks make the
parent's thread finish what it is doing (under a lock it holds whenever it calls
into a breaker) before the fork, and give the child new locks, new events and its
own thread and connections. Operations and a lease that the parent had not sent
yet stay the parent's; the child keeps the mirror and syncs from Redis. A child
that exits right away (``os._exit``) may leave its last writes unsent, unless it
calls `RedisBreakerStorage.close`.

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
opened_at in epoch milliseconds, and wanted: when a refused process last asked for
the lease) and ``{prefix}:{name}:probe``, so one storage
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

# Seconds a fork waits for a storage thread to finish what it is doing.
_FORK_WAIT: Final = 2.0

# One script for every operation. KEYS: state hash, probe lease. ARGV: now (ms),
# failure threshold, success threshold, recovery (ms), lease (ms), then operations:
# f<ms> failure, s success, t<ms> trip if closed (a breaker's rate rule opened it),
# h<ms> move to half-open if recovered by then, c close
# (reset), r<token> give the lease back, and at most one lease operation last:
# a<token> take it for a call that was refused (or mark it wanted), p<token> take it
# ahead of any call unless someone wants it, e<token> extend it. `_replay` below
# must follow the same rules for f, s, h and c.
_SCRIPT: Final = """
local key, lease = KEYS[1], KEYS[2]
local now = tonumber(ARGV[1])
local fmax, smax = tonumber(ARGV[2]), tonumber(ARGV[3])
local recovery, lease_ms = tonumber(ARGV[4]), ARGV[5]
local state = redis.call('HGET', key, 'state') or 'closed'
local held = 0
local function trip(at)
  state = 'open'
  redis.call('HSET', key, 'state', 'open', 'opened_at', at, 'successes', 0)
  redis.call('HDEL', key, 'wanted')
end
local function close()
  state = 'closed'
  redis.call('HSET', key, 'state', 'closed', 'failures', 0, 'successes', 0)
  redis.call('HDEL', key, 'wanted')
end
local function recovered(at)
  if state ~= 'open' then return false end
  return at >= (tonumber(redis.call('HGET', key, 'opened_at')) or 0) + recovery
end
local function half_open()
  state = 'half-open'
  redis.call('HSET', key, 'state', 'half-open', 'successes', 0)
end
local function wanted()
  local at = tonumber(redis.call('HGET', key, 'wanted'))
  return at ~= nil and at + tonumber(lease_ms) > now
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
      if redis.call('HINCRBY', key, 'successes', 1) >= smax then close() end
    end
  elseif code == 't' then
    if state == 'closed' then trip(arg) end
  elseif code == 'h' then
    if recovered(tonumber(arg)) then half_open() end
  elseif code == 'c' then
    close()
    redis.call('DEL', lease)
  elseif code == 'r' then
    if redis.call('GET', lease) == arg then redis.call('DEL', lease) end
  elseif code == 'e' then
    if redis.call('GET', lease) == arg then
      redis.call('PEXPIRE', lease, lease_ms)
      held = 1
    end
  elseif code == 'a' or code == 'p' then
    if code == 'a' or not wanted() then
      if recovered(now) then half_open() end
      if state == 'half-open' then
        if redis.call('SET', lease, arg, 'NX', 'PX', lease_ms) then
          held = 1
          redis.call('HDEL', key, 'wanted')
        elseif code == 'a' then
          redis.call('HSET', key, 'wanted', now)
        end
      end
    end
  end
end
local v = redis.call('HMGET', key, 'failures', 'successes', 'opened_at')
return {state, tonumber(v[1]) or 0, tonumber(v[2]) or 0, v[3] or '', held,
        redis.call('PTTL', lease), wanted() and 1 or 0}
"""
_SHA: Final = hashlib.sha1(_SCRIPT.encode(), usedforsecurity=False).hexdigest()

# A reply: state, failures, successes, and opened_at in epoch milliseconds if ever set.
_Snapshot = tuple[str, int, int, int | None]


def _replay(  # noqa: C901, PLR0912 - one branch per operation, laid out like the script
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
        elif code == "t":
            if state == _CLOSED:
                state, opened, successes = _OPEN, int(op[1:]), 0
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
        probe_lease: Seconds the shared probe slot outlives a holder that stopped
            extending it (died, or cannot reach Redis); see the module docstring.
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
        # Held by the thread whenever it is not waiting or talking to Redis (it
        # calls into breakers then, under their locks), and by `os.fork` hooks,
        # so a child never inherits a lock that a vanished thread holds.
        self._quiet = threading.RLock()
        self._forking = False
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._closed = False
        self.healthy = False
        self._down_since: float | None = None
        self._last_warning = -math.inf
        self._retry_at = 0.0
        _STORAGES.add(self)

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

    # --- fork ------------------------------------------------------------------------

    def before_fork(self) -> None:
        """Called by `os.fork` in the forking thread: wait until the thread is quiet."""
        # Bounded: a fork must never hang on us, even if the wait cannot succeed.
        self._forking = self._quiet.acquire(timeout=_FORK_WAIT)

    def after_fork_in_parent(self) -> None:
        """Called by `os.fork` in the parent: let the thread go on."""
        if self._forking:
            self._forking = False
            self._quiet.release()

    def after_fork_in_child(self) -> None:
        """Called by `os.fork` in the child, which has no thread: start its own.

        Locks and events may have been held by threads that do not exist here,
        so they are new. What was queued or leased belongs to the parent (which
        still sends it); the child keeps the mirror and syncs from Redis.
        """
        self._quiet = threading.RLock()
        self._forking = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        if self._closed:
            self._stop.set()
        self._pid = os.getpid()
        self._thread = None
        views = list(self._views)
        for view in views:
            view.after_fork(wake=self._wake, closed=self._stop)
        if views and not self._closed:
            with self._lock:
                self._start()

    # --- the thread ------------------------------------------------------------------

    def _start(self) -> None:
        # Lock held. A forked child inherits the object but not the thread.
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._thread = None
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._run,
                args=(self._wake, self._stop),
                name=f"resilient_nodes-redis-{self.prefix}",
                daemon=True,
            )
            self._thread.start()

    def _run(self, wake: threading.Event, stop: threading.Event) -> None:
        # The events are passed in: a forked child replaces ours with new ones.
        pool = redis.ConnectionPool(**self._options)
        client = redis.Redis(connection_pool=pool)
        try:
            next_refresh = 0.0
            while not stop.is_set():
                now = time.monotonic()
                if now < self._retry_at:
                    # Redis is down: wait out the pause whatever gets queued.
                    stop.wait(self._retry_at - now)
                    continue
                # Besides the refresh, a view may need a round trip at a given
                # time: to extend or give back a lease, or to take it as soon as
                # the circuit is due to recover.
                due = min(next_refresh, self._next_due())
                if now < due:
                    wake.wait(due - now)
                wake.clear()
                if stop.is_set():
                    break
                now = time.monotonic()
                refresh = now >= next_refresh
                if refresh:
                    next_refresh = now + self.refresh_interval
                self._cycle(client, refresh=refresh)
            if self._down_since is None:  # not known to be down: push what is queued
                self._cycle(client, refresh=False, closing=True)
        finally:
            pool.disconnect()

    def _next_due(self) -> float:
        return min((view.due_at() for view in list(self._views)), default=math.inf)

    def _cycle(self, client: redis.Redis, *, refresh: bool, closing: bool = False) -> None:
        """One pipelined round trip for every view with something to send."""
        started = time.monotonic()
        with self._quiet:
            batch = [
                (view, request)
                for view in list(self._views)
                if (request := view.take(refresh=refresh, closing=closing))
            ]
        if not batch:
            return
        try:
            replies = self._send(client, batch)
        except (RedisError, OSError) as error:
            with self._quiet:
                self._down(error)
            return
        with self._quiet:
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

    __slots__ = ("args", "lease_op", "n_ops", "n_releases")

    def __init__(self, args: list[str], n_ops: int, n_releases: int, lease_op: str | None) -> None:
        self.args = args
        self.n_ops = n_ops
        self.n_releases = n_releases
        # "a<token>", "p<token>" or "e<token>", sent after everything else.
        self.lease_op = lease_op


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
        self._lease_s = storage.probe_lease
        self._refresh_s = storage.refresh_interval
        # How often an unused lease checks whether another process wants it, and
        # how soon a refused process first asks again: the hand-over time.
        self._poll_s = storage.refresh_interval / 5.0
        # A process that recorded anything this long ago still takes the lease
        # ahead of its calls: that covers the open period after its failures.
        self._interest_s = config.recovery_timeout + storage.probe_lease + storage.refresh_interval
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
        self._wanted = False
        self._notify: weakref.WeakMethod[Callable[[], None]] | None = None
        self._active_at = -math.inf
        self._reset_lease()

    def _reset_lease(self) -> None:
        # Every time below is time.monotonic().
        self._lease: str | None = None
        self._lease_busy = False
        self._lease_until = 0.0  # held (as far as we know) until then
        self._lease_renew_at = 0.0
        self._lease_yield_at = 0.0  # from then on, an unused lease yields to a want
        self._lease_retry_at = 0.0
        self._retry_gap = 0.0  # doubles while the lease stays elsewhere
        self._demand_until = 0.0  # a call was refused the lease: keep asking until then
        self._releases: list[str] = []

    def after_fork(self, *, wake: threading.Event, closed: threading.Event) -> None:
        """In a forked child: new lock and events; the parent's queue and lease are not ours."""
        self._lock = threading.Lock()
        self._wake = wake
        self._closed = closed
        self._ops = []
        self._reset_lease()

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
        # A move to open is the script's doing: the failure that trips it is
        # queued (or, for a rate rule, `open_by_rule`'s trip).

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

    def open_by_rule(self) -> None:
        """The breaker's rate rule (failure or slow-call rate) is about to open it.

        Its window is this process's, so the script cannot see the rule: it is
        told to trip the shared breaker if that is still closed. A consecutive
        trip needs no such op (its failure trips it in the script, or the
        shared count says it should not).
        """
        self._queue(f"t{self._now_ms()}")

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
        now = time.monotonic()
        with self._lock:
            self._active_at = now
            if self._lease is not None and not self._lease_busy:
                if now < self._lease_until:
                    self._lease_busy = True
                    return True
                self._releases.append(self._lease)
                self._lease = None
            if now >= self._demand_until:
                self._retry_gap = self._poll_s
            self._demand_until = now + self._lease_s
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
            self._active_at = time.monotonic()
            if len(self._ops) >= _MAX_OPS:
                del self._ops[0]
            self._ops.append(op)
        self._wake.set()

    def _recovers_in(self) -> float:
        """Seconds until the last reply's state admits a probe (<= 0: now; inf: never)."""
        # _lock held.
        if self._seen is None:
            return math.inf
        state, _, _, opened = self._seen
        if state == _HALF_OPEN:
            return 0.0
        if state != _OPEN:
            return math.inf
        return ((opened or 0) + self._recovery_ms - self._now_ms()) / 1000.0

    def _lease_step(self, now: float, *, refresh: bool, closing: bool) -> str | None:
        """Decide what to do about the lease now; the lease operation to send, if any."""
        # _lock held. `due_at` must agree: what is due here by `now` is done here.
        lease = self._lease
        if lease is not None:
            if not self._lease_busy and (
                closing
                or now >= self._lease_until
                or self._recovers_in() > 0.0
                or (self._wanted and now >= self._lease_yield_at)
            ):
                # Unused, and lapsing, no longer useful, or wanted elsewhere.
                if self._wanted and not closing:
                    # Stand back until the process that asked (it retries
                    # within a refresh interval) has had its turn.
                    self._lease_retry_at = now + self._refresh_s + self._storage.timeout
                self._releases.append(lease)
                self._lease = None
            elif not closing and (refresh or now >= self._lease_renew_at):
                # A running probe keeps its lease however long it takes; an
                # unused one is extended often, to hear soon that it is wanted.
                gap = self._lease_s / 3.0 if self._lease_busy else self._poll_s
                self._lease_renew_at = now + min(gap, self._lease_s / 3.0)
                return f"e{lease}"
            else:
                return None
        if closing or now < self._lease_retry_at:
            return None
        if now < self._demand_until:
            kind = "a"
        elif self._may_take_ahead(now) and (refresh or self._ahead_at(now) <= now):
            # Taken ahead of the call, so that the first call after recovery
            # probes at once instead of being refused while the lease is asked for.
            kind = "p"
        else:
            return None
        # Provisional: the reply sets the real retry time; a lost one must not spin.
        self._lease_retry_at = now + self._poll_s
        return f"{kind}{uuid.uuid4().hex}"

    def _may_take_ahead(self, now: float) -> bool:
        # _lock held. Only a process that used the breaker lately, only if nobody
        # is waiting for the lease, and only once the circuit is due.
        return (
            not self._wanted
            and now - self._active_at <= self._interest_s
            and self._recovers_in() <= 0.0
        )

    def _ahead_at(self, now: float) -> float:
        """When to take the lease ahead of any call outside the refreshes (inf: never)."""
        # _lock held. At the moment the circuit is due to recover; later tries
        # (another process was faster, and holds it) ride on the refreshes.
        if (
            self._wanted
            or now - self._active_at > self._interest_s
            or self._seen is None
            or self._seen[0] != _OPEN
        ):
            return math.inf
        return max(now + self._recovers_in(), self._lease_retry_at)

    def due_at(self) -> float:
        """When (monotonic) this view next needs a round trip for its lease."""
        now = time.monotonic()
        with self._lock:
            if self._lease is not None:
                if self._lease_busy:
                    return self._lease_renew_at
                due = min(self._lease_renew_at, self._lease_until)
                if self._wanted:
                    due = min(due, self._lease_yield_at)
                return due
            if now < self._demand_until:
                return self._lease_retry_at
            return self._ahead_at(now)

    def take(self, *, refresh: bool, closing: bool = False) -> _Request | None:
        """The next request for this view, or None if it has nothing to send."""
        now = time.monotonic()
        with self._lock:
            lease_op = self._lease_step(now, refresh=refresh, closing=closing)
            if not (refresh or self._ops or self._releases or lease_op):
                return None
            ops = [*self._ops, *(f"r{token}" for token in self._releases)]
            n_ops, n_releases = len(self._ops), len(self._releases)
        if lease_op is not None:
            ops.append(lease_op)
        args = [
            str(self._now_ms()),
            str(self._fmax),
            str(self._smax),
            str(self._recovery_ms),
            str(self._lease_ms),
            *ops,
        ]
        return _Request(args, n_ops, n_releases, lease_op)

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
            self._wanted = bool(int(reply[6]))
            if request.lease_op is not None:
                self._settle_lease(
                    request.lease_op,
                    snap,
                    held=bool(int(reply[4])),
                    pttl=int(reply[5]),
                    started=started,
                )
            changed = request.n_ops > 0 or snap != self._seen
            self._seen = snap
        notify = self._notify() if self._notify is not None and changed else None
        if notify is not None:
            notify()

    def _settle_lease(
        self, op: str, snap: _Snapshot, *, held: bool, pttl: int, started: float
    ) -> None:
        # _lock held. Redis set or extended the key after `started`, so it outlives
        # `started + lease`; the margin absorbs clock drift between here and the server.
        kind, token = op[0], op[1:]
        until = started + self._lease_s * 0.9
        if kind == "e":
            if self._lease != token:
                pass  # the probe ended meanwhile; the lease is on its way back
            elif held:
                self._lease_until = until
            elif not self._lease_busy:
                self._lease = None  # lost (expired during an outage, or a reset)
            return
        if held:
            self._lease = token
            self._lease_busy = False
            self._lease_until = until
            self._lease_renew_at = started + min(self._poll_s, self._lease_s / 3.0)
            # A lease taken for a refused call waits for that process's next
            # call before yielding; one taken ahead of any call yields at once.
            self._lease_yield_at = until if kind == "a" else started
            self._demand_until = 0.0
            return
        # Held elsewhere: ask again soon (an unused lease is handed over within
        # a poll), then less often (a running probe may take long).
        gap = max(self._retry_gap, self._poll_s)
        self._retry_gap = min(gap * 2.0, self._refresh_s)
        self._lease_retry_at = started + (min(pttl / 1000.0, gap) if pttl > 0 else self._refresh_s)
        if snap[0] != _HALF_OPEN:
            self._demand_until = 0.0  # no probe to make (closed, or not recovered)

    def discard(self, request: _Request) -> None:
        """Drop a request Redis refused (the key holds something else)."""
        with self._lock:
            del self._ops[: request.n_ops]
            del self._releases[: request.n_releases]
            self._lease_retry_at = time.monotonic() + self._refresh_s


# Every storage, so that a fork can pause their threads and restart them in the child.
_STORAGES: weakref.WeakSet[RedisBreakerStorage] = weakref.WeakSet()


def _before_fork() -> None:
    for storage in list(_STORAGES):
        storage.before_fork()


def _after_fork_in_parent() -> None:
    for storage in list(_STORAGES):
        storage.after_fork_in_parent()


def _after_fork_in_child() -> None:
    for storage in list(_STORAGES):
        storage.after_fork_in_child()


if hasattr(os, "register_at_fork"):  # not on Windows, which cannot fork
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
