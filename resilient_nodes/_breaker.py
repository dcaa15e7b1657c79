"""A per-node circuit breaker: pybreaker's state machine behind an async-safe adapter.

pybreaker owns the states (closed, open, half-open), the counters and their storage,
and decides every transition: the failure count that opens the circuit, the
successful probes that close it. This module owns when pybreaker is asked, so that
the breaker is correct for concurrent async and threaded callers:

* **No lock is held across the call.** Admission and recording are two short
  critical sections under one ``threading.Lock`` per breaker; the user's call (and
  every ``await`` in it) runs outside both. pybreaker is only ever driven from inside
  that lock, so its own re-entrant lock is never contended.
* **One probe at a time in half-open.** The first caller after the recovery timeout
  takes the probe slot; everyone else gets `NodeCircuitOpenError` at once, with
  ``recovery_time == 0``.
* **Outcomes are recorded against the state they were admitted under.** Every
  transition starts a new *epoch*; a ticket remembers its epoch, and an outcome
  whose epoch has ended is dropped. A slow success admitted while closed cannot
  close a breaker that has opened, probed and re-opened since.
* **Cancellation records nothing.** The backend's cancellation, any other
  non-`Exception` and LangGraph's control flow (see `resilient_nodes._control`)
  free the probe slot and leave the counters alone.

What counts as a failure
------------------------
The error is classified with `resilient_nodes._classification.classify_error`:

======================================================  ==========================
category                                                effect on the breaker
======================================================  ==========================
timeout, network, server (5xx, 425), rate limit (429),  **failure**: counted
unknown, retry exhausted
validation, programming, client (other 4xx),            **neutral**: neither
circuit open, cancelled (`NodeCancellationError`),      failure nor success
rejected (rate limit, bulkhead, thread limit), and
a retry exhausted on those refusals
control flow (cancellation, interrupts, GraphBubbleUp)  **ignored**: as if the
                                                        call never happened
======================================================  ==========================

Neutral errors do not reset the consecutive-failure count, unlike pybreaker's
``exclude`` (which counts an excluded error as a success): a ``ValueError`` raised
while building a request says nothing about whether the dependency is healthy, so
it must not wipe out the evidence that it is not. A neutral probe frees the slot and
leaves the breaker half-open. Because we classify before pybreaker sees anything,
its ``exclude`` list is never used, and neither is its metaclass bug.

Time
----
pybreaker stamps ``opened_at`` with ``datetime.now`` and compares against it when a
call reaches its open state. We never let a call reach its open state: recovery is
decided here, against the injected *clock* (default `time.time`), and
``opened_at`` in the storage is overwritten with that clock's reading when the
circuit opens. So tests advance a fake clock instead of waiting, and a shared
storage still holds a wall-clock ``opened_at`` that other processes can compare
against. This relies only on pybreaker's public ``open``/``half_open``/``close``,
``call`` and listener API, not on subclassing its state classes.

Storage
-------
``storage=None`` keeps the state in memory (pybreaker's ``CircuitMemoryStorage``).
Any object with the `BreakerStorage` shape (pybreaker's storage interface) can be
passed instead; then every admission re-reads the stored state, so a transition made
by another process is noticed (and logged) on the next call.

A storage that mirrors a remote store (`resilient_nodes._redis_storage`) offers
``for_breaker(name, *, config, clock)``, which returns this breaker's own view of
it. Such a view also has ``sync()`` (take in what the remote store said, called
under our lock before every read, so the state never changes in the middle of a
critical section), ``subscribe(callback)`` (called from the storage's thread when
the remote state changed, so our epoch follows it without any caller asking),
``try_probe()`` / ``end_probe()`` (the cross-process probe lease, around the local
probe slot) and an ``adopting`` flag (set while we replay a state it reported, so
pybreaker's counter resets on entering that state stay local). Because the epoch is
kept current by the callback, the lock-free fast paths stay on for such a view.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import functools
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, ParamSpec, Protocol, TypeVar, cast, overload

import attrs
import pybreaker as _pb

from . import _telemetry
from ._callables import is_async_callable
from ._classification import ErrorCategory, classify_error
from ._config import BreakerConfig
from ._control import is_control_flow
from ._logging import LogEvent, emit, get_logger
from ._tokens import is_token_cancelled, sync_cancel_token, token_reason
from .errors import NodeCancellationError, NodeCircuitOpenError, NodeRetryExhaustedError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = [
    "AdmissionTicket",
    "BreakerState",
    "BreakerStatus",
    "BreakerStorage",
    "NodeCircuitBreaker",
    "counts_as_failure",
    "wrap_breaker",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class BreakerState(enum.StrEnum):
    """The state of a circuit breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


_CLOSED: Final = BreakerState.CLOSED
_OPEN: Final = BreakerState.OPEN
_HALF_OPEN: Final = BreakerState.HALF_OPEN

_FROM_PB: Final[dict[str, BreakerState]] = {
    _pb.STATE_CLOSED: _CLOSED,
    _pb.STATE_OPEN: _OPEN,
    _pb.STATE_HALF_OPEN: _HALF_OPEN,
}

_COUNTED: Final = frozenset(
    {
        ErrorCategory.TIMEOUT,
        ErrorCategory.NETWORK,
        ErrorCategory.SERVER,
        ErrorCategory.RATE_LIMIT,
        ErrorCategory.UNKNOWN,
        ErrorCategory.RETRY_EXHAUSTED,
    }
)


# Our own refusals: never evidence about the dependency.
_REFUSALS: Final = frozenset({ErrorCategory.REJECTED, ErrorCategory.CIRCUIT_OPEN})


def counts_as_failure(error: BaseException, /) -> bool:
    """Whether *error* counts against a breaker (see the module docstring).

    Args:
        error: The exception a guarded call raised.

    Returns:
        True if it is evidence that the dependency is failing.
    """
    if is_control_flow(error):
        return False
    category = classify_error(error).category
    if category is ErrorCategory.RETRY_EXHAUSTED and isinstance(error, NodeRetryExhaustedError):
        # A retry told to retry our own refusals (retry_on=Exception) and run out
        # of attempts on them has still seen nothing of the dependency.
        return classify_error(error.last_error).category not in _REFUSALS
    return category in _COUNTED


class _SharedView(Protocol):
    """A per-breaker view of a remote store (see "Storage" in the module docstring)."""

    adopting: bool

    def sync(self) -> None: ...

    def subscribe(self, callback: Callable[[], None], /) -> None: ...

    def try_probe(self) -> bool: ...

    def end_probe(self) -> None: ...


class BreakerStorage(Protocol):
    """Where a breaker keeps its state: the shape of pybreaker's storage interface.

    ``state`` holds one of ``"closed"``, ``"open"``, ``"half-open"``; ``counter``
    is the consecutive-failure count, ``success_counter`` the successful probes in
    half-open state, ``opened_at`` an aware UTC datetime stamped from the breaker's
    clock. Reads and writes are synchronous and are made while the breaker's lock
    is held, so an implementation backed by a network store must answer from a
    local mirror and push writes in the background rather than block.
    """

    @property
    def name(self) -> str:
        """A label for the storage."""
        ...

    @property
    def state(self) -> str:
        """The stored state."""
        ...

    @state.setter
    def state(self, state: str) -> None: ...

    @property
    def counter(self) -> int:
        """The consecutive-failure count."""
        ...

    @property
    def success_counter(self) -> int:
        """Successful probes in half-open state."""
        ...

    @property
    def opened_at(self) -> datetime | None:
        """When the circuit last opened."""
        ...

    @opened_at.setter
    def opened_at(self, value: datetime) -> None: ...

    def increment_counter(self) -> None:
        """Add one counted failure."""

    def reset_counter(self) -> None:
        """Forget counted failures."""

    def increment_success_counter(self) -> None:
        """Add one successful probe."""

    def reset_success_counter(self) -> None:
        """Forget successful probes."""


@attrs.frozen(kw_only=True)
class BreakerStatus:
    """A snapshot of a breaker (the seed's ``getStatus``).

    Attributes:
        name: The breaker's (node's) name.
        state: Its state when the snapshot was taken.
        failure_count: Consecutive counted failures (kept while open).
        success_count: Successful probes so far in half-open state.
        last_failure_time: Clock reading of the last counted failure, or None.
        time_until_recovery: Seconds until a probe will be admitted; 0 unless open.
        probe_in_flight: Whether a half-open probe is running.
    """

    name: str
    state: BreakerState
    failure_count: int
    success_count: int
    last_failure_time: float | None
    time_until_recovery: float
    probe_in_flight: bool


class AdmissionTicket:
    """Proof of admission returned by `NodeCircuitBreaker.admit`; opaque.

    Pass it back to `NodeCircuitBreaker.release` exactly once.
    """

    __slots__ = ()


class _Epoch(AdmissionTicket):
    """One stretch of time between two transitions; also the ticket of closed calls.

    Closed admissions share the epoch object itself, so the common path allocates
    nothing; ``ticket is breaker._epoch`` is then the whole staleness check.
    """

    __slots__ = ("failure_count", "messages", "recover_at", "state")

    def __init__(self, state: BreakerState, failure_count: int, recover_at: float) -> None:
        self.state = state
        self.failure_count = failure_count
        self.recover_at = recover_at
        # Per node: (the remaining times its message fits, strictly between; the
        # error's args and instance dict). See `reject`.
        self.messages: dict[str, tuple[float, float, tuple[Any, ...], dict[str, Any]]] = {}

    def reject(self, node: str, remaining: float) -> NodeCircuitOpenError:
        """The error for a call to *node* rejected *remaining* seconds before recovery.

        The hot path of an open circuit, and the one speed trick of the breaker,
        kept for its target (a rejection's overhead <= 0.3x pybreaker's). The
        first rejection per node and millisecond of remaining time is built by
        the error's constructor; the next ones are copies of it, made with
        ``__new__`` and a copy of its instance dict with their own
        ``recovery_time``, because the constructor's template rendering (the float
        formatting alone costs as much as raising the error) and its keyword
        handling were most of a rejection. The message shows the remaining time
        to the millisecond, so the copies' messages are the constructor's own.
        Measured (``python -m benchmarks --only rejection``): a rejection's
        overhead is 0.27x pybreaker's this way, against 0.58x with the
        constructor on every call (its message memoised) in the full run before.
        """
        memo = self.messages.get(node)
        if memo is None or not memo[0] < remaining < memo[1]:
            error = NodeCircuitOpenError(
                failure_count=self.failure_count, recovery_time=remaining, node=node
            )
            # Reused strictly inside the millisecond the message shows, a little
            # short of its edges, where rounding could go either way. A snapshot
            # of the dict: the caller may add notes to the error it is given.
            shown = round(remaining, 3)
            self.messages[node] = (
                shown - _EDGE,
                shown + _EDGE,
                error.args,
                dict(error.__dict__),
            )
            return error
        error = _new_open_error(NodeCircuitOpenError, *memo[2])
        fields = memo[3].copy()
        fields["recovery_time"] = remaining
        error.__dict__ = fields
        return error


_new_open_error: Final = NodeCircuitOpenError.__new__
_EDGE: Final = 0.00049  # under half a millisecond: see _Epoch.reject


class _Probe(AdmissionTicket):
    """The single half-open probe's ticket."""

    __slots__ = ("epoch", "released")

    def __init__(self, epoch: _Epoch) -> None:
        self.epoch = epoch
        self.released = False


class _CountedFailureError(Exception):
    """What we feed pybreaker for a counted failure, never the user's exception.

    Raising the user's exception inside pybreaker would graft pybreaker's frames
    onto its traceback; a private exception keeps it untouched.
    """


def _fail() -> None:
    raise _CountedFailureError


def _succeed() -> None:
    return None


class _Listener(_pb.CircuitBreakerListener):
    """Turns pybreaker's transitions into new epochs; runs under the breaker's lock."""

    def __init__(self, on_transition: Callable[[BreakerState | None, BreakerState], None]) -> None:
        self._on_transition = on_transition

    def state_change(self, _cb: object, old: Any, new: Any) -> None:
        self._on_transition(_FROM_PB[old.name] if old is not None else None, _FROM_PB[new.name])


class _RateWindow:
    """The outcomes of the last ``window`` counted calls, for the rate rules.

    Used under the breaker's lock. Neutral errors and cancellations never get
    here, as they never reach pybreaker either.
    """

    __slots__ = ("_failure_rate", "_minimum", "_outcomes", "_slow_rate", "failures", "slow")

    def __init__(self, config: BreakerConfig) -> None:
        self._outcomes: collections.deque[tuple[bool, bool]] = collections.deque(
            maxlen=config.window
        )
        self._minimum = config.minimum_calls
        self._failure_rate = config.failure_rate
        self._slow_rate = config.slow_call_rate
        self.failures = 0
        self.slow = 0

    def add(self, *, failed: bool, slow: bool) -> bool:
        """Record one call; whether a rate rule now says to open."""
        outcomes = self._outcomes
        if len(outcomes) == outcomes.maxlen:
            old_failed, old_slow = outcomes[0]
            self.failures -= old_failed
            self.slow -= old_slow
        outcomes.append((failed, slow))
        self.failures += failed
        self.slow += slow
        calls = len(outcomes)
        if calls < self._minimum:
            return False
        if self._failure_rate is not None and self.failures >= self._failure_rate * calls:
            return True
        return self._slow_rate is not None and self.slow >= self._slow_rate * calls

    def clear(self) -> None:
        """Forget every call (on a transition)."""
        self._outcomes.clear()
        self.failures = self.slow = 0


class NodeCircuitBreaker:
    """A circuit breaker for one node, safe for concurrent async and threaded use.

    Args:
        name: The node's name; used in errors and log events.
        failure_threshold: Consecutive counted failures that open the circuit.
        recovery_timeout: Seconds (or a timedelta) the circuit stays open before a
            probe is admitted.
        success_threshold: Successful probes in half-open state that close it.
        storage: Where the state lives (a `BreakerStorage`); None for memory.
        clock: Zero-argument callable returning seconds; defaults to `time.time`.
            A wall clock, because ``opened_at`` may be shared between processes.

    Raises:
        ConfigError: If a threshold or the timeout is invalid.
    """

    def __init__(
        self,
        name: str,
        /,
        *,
        failure_threshold: int = 5,
        recovery_timeout: float | timedelta = 60.0,
        success_threshold: int = 1,
        storage: BreakerStorage | None = None,
        clock: Callable[[], float] | None = None,
        failure_rate: float | None = None,
        slow_call_duration: float | timedelta | None = None,
        slow_call_rate: float | None = None,
        window: int = 20,
        minimum_calls: int = 10,
    ) -> None:
        self.config = BreakerConfig(
            failure_threshold=failure_threshold,
            recovery_timeout=recovery_timeout,
            success_threshold=success_threshold,
            failure_rate=failure_rate,
            slow_call_duration=slow_call_duration,
            slow_call_rate=slow_call_rate,
            window=window,
            minimum_calls=minimum_calls,
        )
        # Trip rules over a window of recent calls (None: consecutive failures only).
        self._rates = _RateWindow(self.config) if self.config.rate_rules else None
        self.slow_call_duration = self.config.slow_call_duration
        self.name = name
        self._clock: Callable[[], float] = clock or time.time
        self.clock = self._clock  # for the shells timing slow calls
        self._recovery: float = self.config.recovery_timeout
        self._lock = threading.Lock()
        # An external storage may change under us (another process); then every
        # locked section re-reads it. The lock-free paths read only our epoch, so
        # they stay on when the storage tells us about changes (a shared view) and
        # are off for a plain external storage.
        self._external = storage is not None
        bind = getattr(storage, "for_breaker", None)
        if bind is not None:
            storage = bind(name, config=self.config, clock=self._clock)
        self._shared: _SharedView | None = cast("_SharedView", storage) if bind else None
        self._fast = storage is None or self._shared is not None
        # A success with nothing to reset needs no lock, unless a rate rule
        # must see it.
        self._quiet_success = self._fast and self._rates is None
        self._storage: Any = (
            storage if storage is not None else _pb.CircuitMemoryStorage(_pb.STATE_CLOSED)
        )
        self._adopting = False
        self._pending: list[tuple[BreakerState | None, BreakerState, int]] = []
        self._probe: _Probe | None = None
        self._last_failure: float | None = None
        self._log = get_logger(node=name)
        self._cb = _pb.CircuitBreaker(
            fail_max=self.config.failure_threshold,
            reset_timeout=self._recovery,
            success_threshold=self.config.success_threshold,
            listeners=[_Listener(self._on_transition)],
            state_storage=cast("Any", self._storage),
            name=name,
            # Our private failure comes back out, not a CircuitBreakerError.
            throw_new_error_on_trip=False,
        )
        self._epoch = self._epoch_from_storage(_FROM_PB[self._cb.current_state])
        if self._shared is not None:
            self._shared.subscribe(self._on_storage_change)
        _telemetry.watch("breaker", self)  # for the state gauge, read when collected

    @classmethod
    def from_config(
        cls,
        name: str,
        config: BreakerConfig,
        /,
        *,
        storage: BreakerStorage | None = None,
        clock: Callable[[], float] | None = None,
    ) -> NodeCircuitBreaker:
        """Build a breaker from a `BreakerConfig`.

        Args:
            name: The node's name.
            config: Thresholds and recovery timeout.
            storage: Where the state lives; None for memory.
            clock: Zero-argument callable returning seconds.

        Returns:
            The new breaker.
        """
        return cls(
            name,
            failure_threshold=config.failure_threshold,
            recovery_timeout=config.recovery_timeout,
            success_threshold=config.success_threshold,
            storage=storage,
            clock=clock,
            failure_rate=config.failure_rate,
            slow_call_duration=config.slow_call_duration,
            slow_call_rate=config.slow_call_rate,
            window=config.window,
            minimum_calls=config.minimum_calls,
        )

    def __repr__(self) -> str:
        return f"<NodeCircuitBreaker {self.name!r} {self._epoch.state.value}>"

    # --- transitions (called by pybreaker through the listener, lock held) ------------

    def _epoch_from_storage(self, state: BreakerState) -> _Epoch:
        recover_at = 0.0
        if state is _OPEN:
            opened = self._storage.opened_at
            recover_at = (opened.timestamp() if opened else self._clock()) + self._recovery
        return _Epoch(state, self._storage.counter, recover_at)

    def _on_transition(self, old: BreakerState | None, new: BreakerState) -> None:
        if new is _OPEN and not self._adopting:
            # pybreaker has just stamped opened_at with datetime.now; ours wins so
            # that recovery follows the injected clock.
            now = self._clock()
            self._storage.opened_at = datetime.fromtimestamp(now, UTC)
            self._epoch = _Epoch(new, self._storage.counter, now + self._recovery)
        else:
            self._epoch = self._epoch_from_storage(new)
        self._probe = None
        if self._rates is not None:
            self._rates.clear()  # a new state starts a new window
        if old is not new:
            self._pending.append((old, new, self._storage.counter))

    def _refresh(self) -> None:
        # pybreaker's ``state`` property notices a state written by someone else
        # and replays it through the listener.
        shared = self._shared
        if shared is not None:
            shared.sync()
            shared.adopting = True
        self._adopting = True
        try:
            self._cb.state  # noqa: B018 - read for its side effect
        finally:
            self._adopting = False
            if shared is not None:
                shared.adopting = False
        epoch = self._epoch
        if shared is not None and epoch.state is _OPEN:
            # Still open, but maybe re-opened elsewhere (a failed probe): follow
            # the shared opened_at. Within 2 ms it is our own stamp, rounded.
            fresh = self._epoch_from_storage(_OPEN)
            if abs(fresh.recover_at - epoch.recover_at) > 0.002:
                self._epoch = fresh
                self._probe = None

    def _on_storage_change(self) -> None:
        # Called from the shared storage's thread.
        with self._lock:
            self._refresh()
            events = self._take_pending()
        self._emit(events)

    def _take_pending(self) -> list[tuple[BreakerState | None, BreakerState, int]] | None:
        if not self._pending:
            return None
        events, self._pending = self._pending, []
        return events

    def _emit(self, events: list[tuple[BreakerState | None, BreakerState, int]] | None) -> None:
        # Logged after the lock is released: a slow log sink must not serialise calls.
        if not events:
            return
        telemetry = _telemetry.active
        for old, new, failures in events:
            if telemetry is not None:
                telemetry.breaker_changed(
                    self.name, old.value if old is not None else None, new.value
                )
            method = self._log.warning if new is _OPEN else self._log.info
            emit(
                method,
                LogEvent.BREAKER_STATE_CHANGED,
                old_state=old.value if old is not None else None,
                new_state=new.value,
                failure_count=failures,
            )

    # --- queries ---------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state.

        An open breaker whose recovery timeout has passed still reads OPEN until
        the next admission moves it to half-open (as in pybreaker).
        """
        if self._external:
            with self._lock:
                self._refresh()
                events = self._take_pending()
            self._emit(events)
        return self._epoch.state

    def can_execute(self) -> bool:
        """Whether a call would be admitted now; takes nothing (no probe slot).

        Returns:
            True when closed, when open past the recovery timeout, or when
            half-open with no probe in flight.
        """
        state = self.state
        if state is _CLOSED:
            return True
        if state is _OPEN:
            return self._clock() >= self._epoch.recover_at
        return self._probe is None

    def status(self) -> BreakerStatus:
        """A consistent snapshot of the breaker.

        Returns:
            The `BreakerStatus`.
        """
        with self._lock:
            if self._external:
                self._refresh()
            epoch = self._epoch
            failures = self._storage.counter
            successes = self._storage.success_counter
            last_failure = self._last_failure
            probing = self._probe is not None
            events = self._take_pending()
        self._emit(events)
        wait = max(0.0, epoch.recover_at - self._clock()) if epoch.state is _OPEN else 0.0
        return BreakerStatus(
            name=self.name,
            state=epoch.state,
            failure_count=failures,
            success_count=successes,
            last_failure_time=last_failure,
            time_until_recovery=wait,
            probe_in_flight=probing,
        )

    # --- admission -------------------------------------------------------------------

    def admit(self, *, node: str | None = None) -> AdmissionTicket:
        """Ask to make one call; the low-level half of `wrap_breaker`.

        Every ticket must be handed back to `release` once, whatever happens,
        with the call's error (or None). It holds no lock, so the call may await
        or run in another thread.

        Args:
            node: Node name for the rejection error; defaults to the breaker's.

        Returns:
            An opaque `AdmissionTicket`.

        Raises:
            NodeCircuitOpenError: The circuit is open, or half-open with its probe
                in flight (then ``recovery_time`` is 0).
        """
        epoch = self._epoch
        if self._fast:
            if epoch.state is _CLOSED:
                return epoch
            if epoch.state is _OPEN:
                remaining = epoch.recover_at - self._clock()
                if remaining > 0.0:
                    raise epoch.reject(node or self.name, remaining)
            elif self._probe is not None:
                raise epoch.reject(node or self.name, 0.0)
        return self._admit_locked(node)

    def _admit_locked(self, node: str | None) -> AdmissionTicket:
        ticket: AdmissionTicket | None = None
        remaining = 0.0
        with self._lock:
            if self._external:
                self._refresh()
            epoch = self._epoch
            if epoch.state is _CLOSED:
                ticket = epoch
            else:
                if epoch.state is _OPEN:
                    remaining = epoch.recover_at - self._clock()
                    if remaining <= 0.0:
                        self._cb.half_open()
                        epoch = self._epoch
                if (
                    epoch.state is _HALF_OPEN
                    and self._probe is None
                    and (self._shared is None or self._shared.try_probe())
                ):
                    ticket = self._probe = _Probe(epoch)
            events = self._take_pending()
        self._emit(events)
        if ticket is None:
            raise epoch.reject(node or self.name, max(0.0, remaining))
        return ticket

    def release(
        self,
        ticket: AdmissionTicket,
        error: BaseException | None = None,
        duration: float | None = None,
        /,
    ) -> None:
        """Record the outcome of an admitted call.

        Args:
            ticket: What `admit` returned.
            error: The exception the call raised, or None if it returned.
                Cancellation and control flow record nothing; see the module
                docstring for what counts as a failure.
            duration: How long the call took, in seconds, for the slow-call
                rule (None: not measured).
        """
        # Closed and still the same epoch: a success only resets the failure count,
        # so when it is already 0 there is nothing for pybreaker to do.
        if (
            error is None
            and ticket is self._epoch
            and self._quiet_success
            and self._storage.counter == 0
        ):
            return
        self._release_locked(ticket, error, duration)

    def _release_locked(
        self, ticket: AdmissionTicket, error: BaseException | None, duration: float | None = None
    ) -> None:
        # Classify before taking the lock: it is pure and may be slow.
        if error is None:
            outcome: bool | None = True
        elif is_control_flow(error):
            outcome = None
        elif counts_as_failure(error):
            outcome = False
        else:
            outcome = None
        with self._lock:
            probe = isinstance(ticket, _Probe)
            if isinstance(ticket, _Probe):
                if ticket.released:
                    return
                ticket.released = True
                if self._probe is ticket:
                    self._probe = None
                epoch: AdmissionTicket = ticket.epoch
            else:
                epoch = ticket
            if self._external:
                self._refresh()
            if epoch is self._epoch and outcome is not None:
                slow = (
                    duration is not None
                    and self.slow_call_duration is not None
                    and duration >= self.slow_call_duration
                )
                self._record(outcome=outcome, slow=slow)
            if probe and self._shared is not None:
                # After the outcome, so the lease goes back with it, not before.
                self._shared.end_probe()
            events = self._take_pending()
        self._emit(events)

    def _record(self, *, outcome: bool, slow: bool = False) -> None:
        # Lock held; the current epoch is closed or half-open.
        closed = self._epoch.state is _CLOSED
        if outcome:
            self._cb.call(_succeed)
        else:
            self._last_failure = self._clock()
            with contextlib.suppress(_CountedFailureError):
                self._cb.call(_fail)
        rates = self._rates
        # The rate rules judge closed-state calls; a half-open probe is judged
        # by pybreaker alone, as before. If the consecutive rule has just
        # opened the circuit, the window was cleared with it.
        if (
            rates is not None
            and closed
            and self._epoch.state is _CLOSED
            and rates.add(failed=not outcome, slow=slow)
        ):
            open_by_rule = getattr(self._shared, "open_by_rule", None)
            if open_by_rule is not None:
                open_by_rule()  # a shared storage: open it for every process
            self._cb.open()

    def guard(self, *, node: str | None = None) -> _Guard:
        """A context manager around one call: `admit` on entry, `release` on exit.

        Works around an ``await`` too (``with breaker.guard(): await f()``); the
        body's exception propagates unchanged.

        Args:
            node: Node name for the rejection error; defaults to the breaker's.

        Returns:
            A single-use context manager.

        Raises:
            NodeCircuitOpenError: On entry, if the call is not admitted.
        """
        return _Guard(self, node)

    # --- manual recording ------------------------------------------------------------

    def record_success(self) -> None:
        """Record a success against the current state (without a ticket).

        For code that decides admission itself with `can_execute`; concurrent code
        should use `admit` / `release`, which guard against stale outcomes.
        """
        self._record_now(outcome=True)

    def record_failure(self, error: BaseException, /) -> None:
        """Record *error* against the current state, if it counts (without a ticket).

        Args:
            error: The exception; neutral and control-flow errors are ignored.
        """
        if counts_as_failure(error):
            self._record_now(outcome=False)

    def _record_now(self, *, outcome: bool) -> None:
        with self._lock:
            if self._external:
                self._refresh()
            # An open circuit has no outcome to record: nothing was admitted.
            if self._epoch.state is not _OPEN:
                self._record(outcome=outcome)
            events = self._take_pending()
        self._emit(events)

    def reset(self) -> None:
        """Close the circuit and forget failures; in-flight outcomes become stale."""
        with self._lock:
            self._cb.close()
            self._last_failure = None
            events = self._take_pending()
        self._emit(events)


class _Guard:
    __slots__ = ("_breaker", "_node", "_ticket")

    def __init__(self, breaker: NodeCircuitBreaker, node: str | None) -> None:
        self._breaker = breaker
        self._node = node
        self._ticket: AdmissionTicket | None = None

    def __enter__(self) -> None:
        self._ticket = self._breaker.admit(node=self._node)

    def __exit__(self, _type: object, error: BaseException | None, _tb: object) -> None:
        ticket, self._ticket = self._ticket, None
        if ticket is not None:
            self._breaker.release(ticket, error)


@overload
def wrap_breaker(
    fn: Callable[_P, Awaitable[_R]], breaker: NodeCircuitBreaker, /, *, name: str
) -> Callable[_P, Awaitable[_R]]: ...


@overload
def wrap_breaker(
    fn: Callable[_P, _R], breaker: NodeCircuitBreaker, /, *, name: str
) -> Callable[_P, _R]: ...


def wrap_breaker(fn: Callable[_P, Any], breaker: NodeCircuitBreaker, /, *, name: str) -> Any:
    """Guard *fn* with *breaker*: admission before each call, recording after.

    The result is of the same kind as *fn*, decided once here: a coroutine function
    (also a `functools.partial` of one, or an object with an async ``__call__``)
    gives a coroutine function, anything else a plain function. It keeps *fn*'s
    signature (through ``__wrapped__``) and propagates every error unchanged.

    Args:
        fn: The callable to guard.
        breaker: The breaker shared by every call of this node.
        name: The node name reported by rejections.

    Returns:
        The guarded callable.

    Raises:
        TypeError: If *fn* is not callable.
    """
    if not callable(fn):
        raise TypeError(f"wrap_breaker() needs a callable, got {type(fn).__name__}")
    shell = _async_shell if is_async_callable(fn) else _sync_shell
    # update_wrapper skips what a partial or callable object lacks (__name__...);
    # __wrapped__ is what inspect.signature follows.
    return functools.update_wrapper(shell(fn, breaker, name), fn)


def _async_shell(
    fn: Callable[..., Any], breaker: NodeCircuitBreaker, name: str
) -> Callable[..., Any]:
    afn = cast("Callable[..., Awaitable[Any]]", fn)
    admit = breaker.admit
    release = breaker.release
    if breaker.slow_call_duration is not None:
        return _timed_async_shell(afn, breaker, name)

    async def guarded(*args: Any, **kwargs: Any) -> Any:
        ticket = admit(node=name)
        try:
            result = await afn(*args, **kwargs)
        except BaseException as error:
            release(ticket, error)
            raise
        release(ticket)
        return result

    return guarded


def _sync_shell(
    fn: Callable[..., Any], breaker: NodeCircuitBreaker, name: str
) -> Callable[..., Any]:
    admit = breaker.admit
    release = breaker.release
    if breaker.slow_call_duration is not None:
        return _timed_sync_shell(fn, breaker, name)

    def guarded(*args: Any, **kwargs: Any) -> Any:
        ticket = admit(node=name)
        try:
            result = fn(*args, **kwargs)
        except BaseException as error:
            release(ticket, _unless_abandoned(error))
            raise
        release(ticket, _unless_abandoned(None))
        return result

    return guarded


# With a slow-call rule every call is timed, on the breaker's clock (so tests
# advance a fake one); without one the shells above time nothing.


def _timed_async_shell(
    afn: Callable[..., Awaitable[Any]], breaker: NodeCircuitBreaker, name: str
) -> Callable[..., Any]:
    admit = breaker.admit
    release = breaker.release
    clock = breaker.clock

    async def guarded(*args: Any, **kwargs: Any) -> Any:
        ticket = admit(node=name)
        start = clock()
        try:
            result = await afn(*args, **kwargs)
        except BaseException as error:
            release(ticket, error, clock() - start)
            raise
        release(ticket, None, clock() - start)
        return result

    return guarded


def _timed_sync_shell(
    fn: Callable[..., Any], breaker: NodeCircuitBreaker, name: str
) -> Callable[..., Any]:
    admit = breaker.admit
    release = breaker.release
    clock = breaker.clock

    def guarded(*args: Any, **kwargs: Any) -> Any:
        ticket = admit(node=name)
        start = clock()
        try:
            result = fn(*args, **kwargs)
        except BaseException as error:
            release(ticket, _unless_abandoned(error), clock() - start)
            raise
        release(ticket, _unless_abandoned(None), clock() - start)
        return result

    return guarded


def _unless_abandoned(outcome: BaseException | None) -> BaseException | None:
    """The outcome to record for a sync call, or a neutral one if nobody waits for it.

    A sync node cancelled through its token releases its caller at once and
    leaves this thread running; when the call ends, its outcome is as stale as
    an async call's that was cancelled, which records nothing. So it is
    recorded as the (neutral) cancellation instead.
    """
    token = sync_cancel_token()
    if token is not None and is_token_cancelled(token):
        return NodeCancellationError(token_reason(token))
    return outcome
