"""A node implementation's own logger, whose lines carry the ids of the node call.

`create_node_logger` is the seed's ``createNodeLogger`` and
``createNodeLoggerWithContext`` in structlog's terms: a small `NodeLogger` over a
structlog logger named ``resilient_nodes``. What a line carries, in one place:

=================================  ========================  ===========================
created                            ``trace_id``,             ``attempt``
                                   ``graph_execution_id``
=================================  ========================  ===========================
with ``context=``                  the context's             the running attempt while
                                                             that call runs, else the
                                                             context's
inside a node call                 that call's               the running attempt while
                                                             that call runs, else the
                                                             one at creation
outside any node call              the node call running     that call's running
                                   when the line is logged   attempt
                                   (none outside one)
=================================  ========================  ===========================

``node`` is always the logger's name. The ids are decided when the logger is
created; the attempt is read when a line is logged, because a node call's
context is built lazily and its attempt moves on with every retry: a logger made
in the first attempt and used in the second says ``attempt=2``, like the
wrapper's own events.

Like the node wrappers, the structlog logger is bound on the first line (and
kept), not at creation: loggers are often made at import time, before the
application configures structlog. A level the configuration filters out costs a
comparison; the context is not read and no field is built.
"""

from __future__ import annotations

from typing import Any, Final

from ._context import ExecutionContext, current_context
from ._logging import LogEvent, emit, get_logger
from ._sanitize import error_text
from ._text import describe
from .errors import ConfigError

__all__ = ["NodeLogger", "create_node_logger"]

# The standard library's level numbers, which structlog's filtering loggers use.
_DEBUG: Final = 10
_INFO: Final = 20
_WARNING: Final = 30
_ERROR: Final = 40
_METHODS: Final = {_DEBUG: "debug", _INFO: "info", _WARNING: "warning", _ERROR: "error"}
_NOTHING: Final = 100  # above every level


class NodeLogger:
    """A structlog logger for a node's own lines, with the ids of its node call.

    Build one with `create_node_logger`. Every method takes an event name and
    keyword fields, like structlog's; fields given in a call win over the ones
    the logger adds. No method raises: a broken log sink never becomes the
    node's outcome.

    ========================  ===========  =======================================
    method                    level        event
    ========================  ===========  =======================================
    ``log_entry(**fields)``   debug        ``node.entry``
    ``log_exit(**fields)``    info         ``node.exit``
    ``log_error(error)``      error        ``node.error``, with ``error_type`` and
                                           ``error_message`` (bounded, secrets
                                           redacted; no traceback)
    ``log_retry(error)``      info         ``node.retry``, with ``error_type``,
                                           ``error_message`` and ``delay`` when
                                           given
    ``debug`` ... ``error``   as named     the event you pass
    ========================  ===========  =======================================

    Attributes:
        name: The node name every line carries as ``node``.
    """

    __slots__ = ("_context", "_log", "_min_level", "_values", "name")

    def __init__(
        self,
        name: str,
        *,
        context: ExecutionContext | None,
        values: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self._context = context
        self._values = values or {}
        self._log: Any = None
        self._min_level = 0

    def __repr__(self) -> str:
        if self._context is None:
            return f"<NodeLogger {self.name!r}: ids of the running node call>"
        return f"<NodeLogger {self.name!r}: trace_id={self._context.trace_id!r}>"

    def bind(self, **values: Any) -> NodeLogger:
        """A copy that also carries *values* on every line (this one is unchanged).

        For example ``log.bind(story_id=state["story_id"])``.
        """
        return NodeLogger(self.name, context=self._context, values={**self._values, **values})

    def debug(self, event: str, /, **fields: Any) -> None:
        """Log *event* at debug level."""
        if self._wants(_DEBUG):
            self._write(_DEBUG, event, fields)

    def info(self, event: str, /, **fields: Any) -> None:
        """Log *event* at info level."""
        if self._wants(_INFO):
            self._write(_INFO, event, fields)

    def warning(self, event: str, /, **fields: Any) -> None:
        """Log *event* at warning level."""
        if self._wants(_WARNING):
            self._write(_WARNING, event, fields)

    def error(self, event: str, /, **fields: Any) -> None:
        """Log *event* at error level (`log_error` describes an exception for you)."""
        if self._wants(_ERROR):
            self._write(_ERROR, event, fields)

    def log_entry(self, **fields: Any) -> None:
        """Log ``node.entry`` (debug): the node's own code has started."""
        if self._wants(_DEBUG):
            self._write(_DEBUG, LogEvent.NODE_ENTRY, fields)

    def log_exit(self, **fields: Any) -> None:
        """Log ``node.exit`` (info): the node's own code is done.

        The wrapper's ``node.succeeded`` already carries the call's
        ``duration_ms``; pass fields of your own (a count, a size) here.
        """
        if self._wants(_INFO):
            self._write(_INFO, LogEvent.NODE_EXIT, fields)

    def log_error(self, error: BaseException, /, **fields: Any) -> None:
        """Log ``node.error`` (error) describing *error*.

        The line carries ``error_type`` (the class name) and ``error_message``
        (its text, at most 500 characters, with secrets such as API keys and
        bearer tokens redacted). No traceback: a raw one can hold secrets too;
        the error recorded in state carries a sanitized one.

        Args:
            error: The exception (anything else is described as well as it can be).
            **fields: More fields for the line; they win over the ones above.
        """
        if self._wants(_ERROR):
            self._write(_ERROR, LogEvent.NODE_ERROR, {**_described(error), **fields})

    def log_retry(
        self, error: BaseException | None = None, /, *, delay: float | None = None, **fields: Any
    ) -> None:
        """Log ``node.retry`` (info): the node's own code is retrying something.

        The node's retry layer logs its own retries (``node.retry_scheduled``);
        this is for retries the impl makes itself, such as asking the model again
        after an unusable answer. ``attempt`` stays the node's attempt: count
        your own retries in a field of your own (``retry=2``).

        Args:
            error: What made the retry necessary, described as by `log_error`.
            delay: Seconds until the retry, if it waits.
            **fields: More fields for the line.
        """
        if self._wants(_INFO):
            described = _described(error) if error is not None else {}
            if delay is not None:
                described["delay"] = delay
            self._write(_INFO, LogEvent.NODE_RETRY, {**described, **fields})

    def _wants(self, level: int) -> bool:
        """Whether the configuration lets *level* through (binding on first use)."""
        if self._log is None:
            try:
                self._bind()
            except Exception:
                # A logger factory that raises: log nothing now, try again next line.
                return False
        return level >= self._min_level

    def _bind(self) -> None:
        context = self._context
        initial: dict[str, Any] = {"node": self.name}
        if context is not None:
            initial["trace_id"] = context.trace_id
            initial["graph_execution_id"] = context.graph_execution_id
        log = get_logger(**{**initial, **self._values})
        enabled = getattr(log, "is_enabled_for", None)
        if enabled is not None:
            # Filtering loggers filter by threshold: the first level let through
            # is the floor.
            self._min_level = next((level for level in _METHODS if enabled(level)), _NOTHING)
        self._log = log

    def _write(self, level: int, event: str, fields: dict[str, Any]) -> None:
        method = getattr(self._log, _METHODS[level], None)
        if method is not None:
            emit(method, event, **{**self._call_fields(), **fields})

    def _call_fields(self) -> dict[str, Any]:
        """The fields read at log time: the attempt, and the ids when not bound."""
        running = current_context()
        bound = self._context
        if bound is None:
            if running is None:
                return {}
            return {
                "trace_id": running.trace_id,
                "graph_execution_id": running.graph_execution_id,
                "attempt": running.attempt,
            }
        if (
            running is not None
            and running.trace_id == bound.trace_id
            and running.graph_execution_id == bound.graph_execution_id
            and running.node_name == bound.node_name
        ):
            return {"attempt": running.attempt}
        return {"attempt": bound.attempt}


def _described(error: object) -> dict[str, Any]:
    return {"error_type": type(error).__name__, "error_message": error_text(error)}


def create_node_logger(name: str, context: ExecutionContext | None = None) -> NodeLogger:
    """A logger for a node's own lines, carrying the same ids as the wrapper's.

    Every line carries ``node`` (*name*), ``trace_id``, ``graph_execution_id``
    and ``attempt``, so a node's own lines join the wrapper's ``node.started``
    and ``node.succeeded`` in one trace::

        async def plan(state):
            log = create_node_logger("plan")
            log.log_entry(topic=state["topic"])
            ...

    Args:
        name: The node's name (the ``node`` field of every line).
        context: The execution context whose ids the lines carry. None takes the
            node call running now; made outside any node call, the logger takes
            the ids of whichever node call is running when it logs.

    Returns:
        The logger. Its ids are fixed now; its ``attempt`` is read at each line,
        so it follows the node's retries.

    Raises:
        ConfigError: If *name* is not a non-empty string or *context* is not an
            `ExecutionContext`.
    """
    checked: object = name  # checked at run time too: callers may not run mypy
    if not isinstance(checked, str) or not checked:
        raise ConfigError([("name", f"must be a non-empty string, got {describe(checked)}")])
    given: object = context
    if given is not None and not isinstance(given, ExecutionContext):
        raise ConfigError(
            [("context", f"must be an ExecutionContext or None, got {describe(given)}")]
        )
    return NodeLogger(name, context=context if context is not None else current_context())
