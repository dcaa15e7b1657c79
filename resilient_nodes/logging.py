"""Structured logging through structlog, under the logger name ``resilient_nodes``.

Loggers are bound once, when a node or layer is built, never per call: with
``structlog.make_filtering_bound_logger`` a filtered-out level then costs a no-op
method call.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Final

import structlog

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "BREAKER_STATE_CHANGED",
    "LOGGER_NAME",
    "NODE_FAILED",
    "NODE_RETRY_SCHEDULED",
    "NODE_STARTED",
    "NODE_SUCCEEDED",
    "NODE_TIMED_OUT",
]

LOGGER_NAME: Final = "resilient_nodes"

NODE_STARTED: Final = "node.started"
NODE_SUCCEEDED: Final = "node.succeeded"
NODE_FAILED: Final = "node.failed"
NODE_RETRY_SCHEDULED: Final = "node.retry_scheduled"
NODE_TIMED_OUT: Final = "node.timed_out"
BREAKER_STATE_CHANGED: Final = "breaker.state_changed"


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
