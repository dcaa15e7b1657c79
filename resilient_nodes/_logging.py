"""Structured logging through structlog, under the logger name ``resilient_nodes``.

Loggers are bound once, when a node or layer is built, never per call: with
``structlog.make_filtering_bound_logger`` a filtered-out level then costs a no-op
method call.
"""

from __future__ import annotations

import contextlib
import enum
from typing import TYPE_CHECKING, Any, Final

import structlog

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["LOGGER_NAME", "LogEvent", "emit", "get_logger"]

LOGGER_NAME: Final = "resilient_nodes"


class LogEvent(enum.StrEnum):
    """Every event this library logs, by name (each member is its event string).

    Compare with the plain string or the member: ``event["event"] ==
    LogEvent.NODE_FAILED`` and ``== "node.failed"`` are the same test.

    The wrapper's events are past tense (``node.started``, ``node.failed``); the
    four a node's own code logs through `NodeLogger` are named after its methods
    (``log_entry`` logs ``node.entry``), so a reader can tell who wrote a line.
    """

    NODE_STARTED = "node.started"
    """A node call began (debug)."""
    NODE_SUCCEEDED = "node.succeeded"
    """A node call returned its update (info)."""
    NODE_FAILED = "node.failed"
    """A failure survived the policy (warning)."""
    NODE_RETRY_SCHEDULED = "node.retry_scheduled"
    """An attempt failed and another follows after ``delay`` seconds (info)."""
    NODE_TIMED_OUT = "node.timed_out"
    """A timeout layer's own deadline fired (warning)."""
    NODE_ON_RETRY_FAILED = "node.on_retry_failed"
    """An ``on_retry`` callback raised; retrying went on (warning)."""
    NODE_RETRY_PREDICATE_FAILED = "node.retry_predicate_failed"
    """A ``retry_on`` predicate raised; the error counted as not retryable (warning)."""
    NODE_ON_TIMEOUT_FAILED = "node.on_timeout_failed"
    """An ``on_timeout`` cleanup raised or overran its bound (error)."""
    NODE_THREAD_ABANDONED = "node.thread_abandoned"
    """A sync call's worker thread was left running past its deadline (warning)."""
    NODE_ABANDONED_THREAD_FINISHED = "node.abandoned_thread_finished"
    """An abandoned worker thread ended; its result was dropped (info)."""
    NODE_THREAD_LIMIT_REACHED = "node.thread_limit_reached"
    """Too many abandoned threads: a sync call was refused (error)."""
    BREAKER_STATE_CHANGED = "breaker.state_changed"
    """A breaker moved between closed, open and half-open (info; warning on open)."""
    BREAKER_STORAGE_UNAVAILABLE = "breaker.storage_unavailable"
    """A shared breaker storage could not be reached; local state in use (warning)."""
    BREAKER_STORAGE_RECOVERED = "breaker.storage_recovered"
    """A shared breaker storage answers again (info)."""
    CHAOS_INJECTED = "chaos.injected"
    """`Policy.chaos` injected a fault (info)."""
    NODE_ENTRY = "node.entry"
    """A node's own code logged its start: `NodeLogger.log_entry` (debug)."""
    NODE_EXIT = "node.exit"
    """A node's own code logged its end: `NodeLogger.log_exit` (info)."""
    NODE_ERROR = "node.error"
    """A node's own code logged an error: `NodeLogger.log_error` (error)."""
    NODE_RETRY = "node.retry"
    """A node's own code logged a retry of its own: `NodeLogger.log_retry` (info)."""
    FALLBACK_STARTED = "fallback.started"
    """The callable serving a call failed; the next alternative is tried (info)."""
    FALLBACK_SERVED = "fallback.served"
    """An alternative returned; ``served_by`` names it (info)."""
    FALLBACK_PREDICATE_FAILED = "fallback.predicate_failed"
    """A fallback's ``on`` predicate raised; the judged error propagates (warning)."""
    STREAM_STALLED = "stream.stalled"
    """A stream's first item or next item did not come within its bound (warning)."""
    STREAM_INTERRUPTED = "stream.interrupted"
    """A stream failed after items reached the caller; not retried (warning)."""
    # --- load control (Policy.bulkhead, Policy.rate_limit, retry budgets) ---
    BULKHEAD_REJECTED = "bulkhead.rejected"
    """A full bulkhead (every slot busy, the queue full) rejected a call (warning)."""
    RATE_LIMIT_REJECTED = "rate_limit.rejected"
    """A rate limit had no capacity within the time a call may wait (warning)."""
    RATE_LIMIT_PAUSED = "rate_limit.paused"
    """A ``Retry-After`` from the dependency paused a rate limit's key (warning)."""
    RATE_LIMIT_STORAGE_UNAVAILABLE = "rate_limit.storage_unavailable"
    """A shared rate-limit storage failed; a local limit stands in for it (warning)."""
    RATE_LIMIT_STORAGE_RECOVERED = "rate_limit.storage_recovered"
    """A shared rate-limit storage answers again (info)."""
    RETRY_BUDGET_EXHAUSTED = "node.retry_budget_exhausted"
    """A retry was due but the node's retry budget was spent: the error is raised (warning)."""


def emit(log_method: Callable[..., Any], event: str, /, **fields: Any) -> None:
    """Log *event*; a logger that raises is ignored.

    Every event of this library is logged on a node's path (or in a background
    thread), so a broken log sink (a closed pipe, a failing processor) must
    never become the node's outcome, replace the error being reported, or stop
    a thread.
    """
    with contextlib.suppress(Exception):
        log_method(event, **fields)


def get_logger(**initial: Any) -> Any:
    """A structlog logger named ``resilient_nodes``, bound to *initial* values.

    Call it when building a wrapper (after the application configured
    structlog), not on every call.
    """
    return structlog.get_logger(LOGGER_NAME).bind(**initial)
