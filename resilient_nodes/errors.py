"""The node error taxonomy.

Every error this library raises on purpose derives from one root, and each leaf
also subclasses the builtin it resembles::

    Exception
    └── NodeExecutionError                        .code: ErrorCode, .node
        ├── NodeTimeoutError (TimeoutError)        .timeout
        ├── NodeCancellationError                  .reason
        ├── NodeCircuitOpenError                   .failure_count, .recovery_time
        ├── NodeRetryExhaustedError                .attempts, .last_error (= __cause__)
        ├── NodeValidationError (ValueError)       .detail
        │   └── StateValidationError               .problems
        ├── ConfigError (ValueError)               .problems
        ├── AbandonedThreadLimitError (RuntimeError)  .limit, .scope
        ├── ChaosHangError (TimeoutError)          (injected by Policy.chaos)
        ├── NodeFallbackExhaustedError             .errors, .callables (Policy.fallback)
        ├── NodeStreamInterruptedError             .items_delivered (a committed stream)
        ├── NodeRateLimitedError                   .limit, .per, .key, .retry_after
        └── NodeBulkheadFullError                  .max_concurrent, .max_queue

The last two, `AbandonedThreadLimitError` and `NodeCircuitOpenError` are our own
refusals to start a call: none of them says anything about the node's dependency.

The message of each error is built from a template per code
(`MESSAGE_TEMPLATES`), so logs and recorded state read the same everywhere.
All errors pickle with their attributes: they cross process boundaries in worker
pools.
"""

from __future__ import annotations

import enum
import pickle
from types import MemberDescriptorType
from typing import TYPE_CHECKING, Any, Final, Literal

from ._text import safe_text

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "MESSAGE_TEMPLATES",
    "AbandonedThreadLimitError",
    "ChaosHangError",
    "ConfigError",
    "ErrorCode",
    "NodeBulkheadFullError",
    "NodeCancellationError",
    "NodeCircuitOpenError",
    "NodeExecutionError",
    "NodeFallbackExhaustedError",
    "NodeRateLimitedError",
    "NodeRetryExhaustedError",
    "NodeStreamInterruptedError",
    "NodeTimeoutError",
    "NodeValidationError",
    "StateValidationError",
]


class ErrorCode(enum.StrEnum):
    """Machine-readable code carried by every `NodeExecutionError`."""

    NODE_TIMEOUT = "NODE_TIMEOUT"
    RETRY_EXHAUSTED = "RETRY_EXHAUSTED"
    VALIDATION_FAILED = "VALIDATION_FAILED"
    CANCELLED = "CANCELLED"
    CIRCUIT_OPEN = "CIRCUIT_OPEN"
    UNKNOWN = "UNKNOWN"
    # Load control (Policy.rate_limit, Policy.bulkhead): our own refusals.
    RATE_LIMITED = "RATE_LIMITED"
    BULKHEAD_FULL = "BULKHEAD_FULL"


MESSAGE_TEMPLATES: Final[Mapping[ErrorCode, str]] = {
    ErrorCode.NODE_TIMEOUT: "node {node} timed out after {timeout}s",
    ErrorCode.RETRY_EXHAUSTED: "node {node} failed after {attempts} attempts: {last_error}",
    ErrorCode.VALIDATION_FAILED: "node {node} failed validation: {detail}",
    ErrorCode.CANCELLED: "node {node} was cancelled: {reason}",
    ErrorCode.CIRCUIT_OPEN: (
        "circuit for node {node} is open after {failure_count} failures; "
        "next probe in {recovery_time}s"
    ),
    ErrorCode.UNKNOWN: "node {node} failed: {detail}",
    ErrorCode.RATE_LIMITED: "node {node} is rate limited ({limit} per {per}s{key}): {detail}",
    ErrorCode.BULKHEAD_FULL: (
        "node {node} has {max_concurrent} calls in flight and {max_queue} waiting; call rejected"
    ),
}


class _SafeDict(dict[str, Any]):
    """Formatting namespace that renders a missing key as a visible placeholder."""

    def __missing__(self, key: str) -> str:
        return f"<{key}?>"


def _format_message(code: ErrorCode, /, **fields: Any) -> str:
    """Render the message template for *code*.

    Building an error message must never fail on the error path: a missing
    field renders as ``<name?>``, a float as its shortest form (``5`` rather than
    ``5.0``), and a value whose ``str()`` raises, or that is very long, through
    the same guard the errors use for their causes.

    Args:
        code: Which template to use.
        **fields: Values for the template's placeholders.

    Returns:
        The formatted message.
    """
    values = _SafeDict({key: _render(value) for key, value in fields.items()})
    values.setdefault("node", "<unnamed>")
    return MESSAGE_TEMPLATES[code].format_map(values)


def _render(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return safe_text(value)


class NodeExecutionError(Exception):
    """Root of every error raised by resilient_nodes.

    Attributes:
        code: The `ErrorCode` of this error.
        node: Name of the node the error is about, if known.
    """

    code: ErrorCode = ErrorCode.UNKNOWN

    def __init__(
        self,
        message: str | None = None,
        /,
        *,
        node: str | None = None,
        code: ErrorCode | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        self.node = node
        if message is None:
            message = _format_message(self.code, node=node or "<unnamed>", detail="unknown error")
        super().__init__(message)

    @property
    def message(self) -> str:
        """The human-readable message."""
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors defeat BaseException's default pickling, which
        # replays only ``args``: rebuild from args and restore the instance dict.
        # An attribute holding an exception that does not pickle (a cause carrying
        # a lock or a socket) is replaced by a stand-in with the same text, so the
        # error itself still crosses a process boundary. ``__cause__`` is carried
        # too, which the default pickling of exceptions drops.
        state = {key: _picklable(value) for key, value in _error_attributes(self).items()}
        cause = _picklable(self.__cause__) if self.__cause__ is not None else None
        return (_rebuild, (type(self), self.args, cause), state)


def _error_attributes(error: BaseException) -> dict[str, Any]:
    """An error's own attributes: its instance dict and any slots that are set.

    Slots matter for a user's subclass that declares them (``vars()`` misses
    those); the built-in exception classes' own members are left to them.
    """
    fields = dict(getattr(error, "__dict__", {}))
    for cls in type(error).__mro__:
        if cls.__module__ == "builtins":
            continue
        for name, member in vars(cls).items():
            # The descriptor's key is the name as stored (private names mangled).
            if isinstance(member, MemberDescriptorType) and name not in fields:
                try:
                    fields[name] = member.__get__(error, cls)
                except AttributeError:  # a slot never set
                    continue
    return fields


def _picklable(value: object) -> object:
    if not isinstance(value, BaseException):
        return value
    try:
        pickle.dumps(value)
    except Exception:
        return NodeExecutionError(f"{type(value).__name__}: {safe_text(value)}")
    return value


def _rebuild(
    cls: type[NodeExecutionError],
    args: tuple[Any, ...],
    cause: BaseException | None = None,
) -> NodeExecutionError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__cause__ = cause
    return error


class NodeTimeoutError(NodeExecutionError, TimeoutError):
    """Our own deadline fired (not the caller's cancellation).

    Attributes:
        timeout: The deadline that was exceeded, in seconds.
    """

    code = ErrorCode.NODE_TIMEOUT

    def __init__(
        self, timeout: float, /, *, node: str | None = None, message: str | None = None
    ) -> None:
        self.timeout = float(timeout)
        super().__init__(
            message or _format_message(self.code, node=node or "<unnamed>", timeout=self.timeout),
            node=node,
        )


class NodeCancellationError(NodeExecutionError):
    """The run was cancelled explicitly through a cancel token.

    This is never retried and never counted by a breaker. It is distinct from the
    async backend's own cancellation exception, which always passes through
    untouched.

    Attributes:
        reason: Why the run was cancelled, when the token said so.
    """

    code = ErrorCode.CANCELLED

    def __init__(
        self,
        reason: str = "cancel token was set",
        /,
        *,
        node: str | None = None,
        message: str | None = None,
    ) -> None:
        self.reason = reason
        super().__init__(
            message or _format_message(self.code, node=node or "<unnamed>", reason=reason),
            node=node,
        )


class NodeCircuitOpenError(NodeExecutionError):
    """The node's circuit breaker rejected the call without running it.

    Attributes:
        failure_count: Failures counted when the breaker opened (or now).
        recovery_time: Seconds until the breaker admits a probe (0 when a probe
            is already in flight in half-open state).
    """

    code = ErrorCode.CIRCUIT_OPEN

    def __init__(
        self,
        *,
        failure_count: int,
        recovery_time: float,
        node: str | None = None,
        message: str | None = None,
    ) -> None:
        self.failure_count = int(failure_count)
        self.recovery_time = max(0.0, float(recovery_time))
        super().__init__(
            message
            or _format_message(
                self.code,
                node=node or "<unnamed>",
                failure_count=self.failure_count,
                recovery_time=round(self.recovery_time, 3),
            ),
            node=node,
        )


class NodeRetryExhaustedError(NodeExecutionError):
    """Every allowed attempt failed with a retryable error.

    Raised ``from`` the last error, so ``__cause__`` is the same object as
    `last_error`.

    Attributes:
        attempts: How many attempts were made.
        last_error: The exception the final attempt raised.
    """

    code = ErrorCode.RETRY_EXHAUSTED

    def __init__(
        self,
        attempts: int,
        last_error: BaseException,
        /,
        *,
        node: str | None = None,
        message: str | None = None,
    ) -> None:
        self.attempts = int(attempts)
        self.last_error = last_error
        super().__init__(
            message
            or _format_message(
                self.code,
                node=node or "<unnamed>",
                attempts=self.attempts,
                last_error=f"{type(last_error).__name__}: {safe_text(last_error)}",
            ),
            node=node,
        )


class NodeValidationError(NodeExecutionError, ValueError):
    """A node broke its contract (for example returned a non-mapping update)."""

    code = ErrorCode.VALIDATION_FAILED

    def __init__(self, detail: str, /, *, node: str | None = None) -> None:
        self.detail = detail
        super().__init__(
            _format_message(self.code, node=node or "<unnamed>", detail=detail), node=node
        )


class ConfigError(NodeExecutionError, ValueError):
    """Invalid configuration.

    The message lists every problem as ``path: what is wrong``, one per line, for
    example ``retry.attempts: must be >= 1, got 0``.

    Attributes:
        problems: ``(path, message)`` pairs, in the order they were found.
    """

    code = ErrorCode.VALIDATION_FAILED

    def __init__(self, problems: Iterable[tuple[str, str]] | str, /) -> None:
        if isinstance(problems, str):
            problems = [("", problems)]
        self.problems: tuple[tuple[str, str], ...] = tuple(problems)
        lines = [f"{path}: {msg}" if path else msg for path, msg in self.problems]
        super().__init__("\n".join(lines) or "invalid configuration")

    def prefixed(self, prefix: str) -> ConfigError:
        """Return a copy whose paths are nested under *prefix*."""
        if not prefix:
            return self
        return ConfigError((_join_path(prefix, path), msg) for path, msg in self.problems)


def _join_path(prefix: str, path: str) -> str:
    """``prefix.path``, or ``prefix[1]...`` when *path* starts with an index."""
    if not path:
        return prefix
    if path.startswith("["):
        return prefix + path
    return f"{prefix}.{path}"


class StateValidationError(NodeValidationError):
    """A state update or record is malformed.

    The message lists every problem as ``path: what is wrong``, one per line.
    Being a `NodeValidationError`, it is also a ``ValueError`` and is
    classified as a non-retryable validation failure.

    Attributes:
        problems: ``(path, message)`` pairs, in the order they were found.
    """

    def __init__(self, problems: Iterable[tuple[str, str]], /) -> None:
        self.problems: tuple[tuple[str, str], ...] = tuple(problems)
        self.detail = "\n".join(f"{path}: {msg}" if path else msg for path, msg in self.problems)
        # Skip NodeValidationError's "node X failed validation" template: these
        # errors are about an update, raised before any node is involved.
        NodeExecutionError.__init__(self, self.detail or "invalid state update")


class AbandonedThreadLimitError(NodeExecutionError, RuntimeError):
    """Too many abandoned worker threads are still running to start another.

    Raised before the function is called, when the node has
    ``MAX_ABANDONED_THREADS`` (32) abandoned threads still running, or the whole
    process ``MAX_ABANDONED_THREADS_TOTAL`` (256). It is our own refusal, not
    evidence about the node's dependency: classified as a local refusal
    (category ``rejected``, like a full bulkhead or a rate limit), so a breaker
    neither counts it nor resets its count, and it is not retried (a retry
    would be refused the same way until the stuck threads finish).

    Attributes:
        limit: The limit that was reached.
        scope: Which one: ``"node"`` (this node's own budget) or ``"process"``
            (the cap over all nodes).
    """

    def __init__(
        self, limit: int, /, *, node: str | None = None, scope: Literal["node", "process"] = "node"
    ) -> None:
        self.limit = limit
        self.scope = scope
        running = "of this node" if scope == "node" else "in this process"
        super().__init__(
            f"node {node or '<unnamed>'}: {limit} abandoned worker threads {running} are "
            "still running; refusing to start another sync call under a timeout or cancel "
            "token",
            node=node,
        )


class ChaosHangError(NodeExecutionError, TimeoutError):
    """A sync call that `Policy.chaos` made hang gave up, as a stalled read would.

    Classified like a timeout: retryable, and counted by a breaker.
    """

    code = ErrorCode.NODE_TIMEOUT


# --- strategies for LLM calls -----------------------------------------------


class NodeFallbackExhaustedError(NodeExecutionError):
    """The primary callable and every alternative tried after it failed.

    Raised by `Policy.fallback` ``from`` the last error. Its code is
    ``RETRY_EXHAUSTED`` (a route is a retry across callables); it is classified
    by its members, like an exception group: retryable only if every error is.

    Attributes:
        errors: What each callable tried raised, in order, the primary first.
        callables: The names of those callables, in the same order.
    """

    code = ErrorCode.RETRY_EXHAUSTED

    def __init__(
        self,
        errors: Iterable[BaseException],
        /,
        *,
        callables: Iterable[str] = (),
        node: str | None = None,
        message: str | None = None,
    ) -> None:
        self.errors: tuple[BaseException, ...] = tuple(errors)
        names = tuple(callables)
        self.callables: tuple[str, ...] = names + tuple(
            f"#{index}" for index in range(len(names), len(self.errors))
        )
        routes = "; ".join(
            f"{name}: {type(error).__name__}: {safe_text(error, 300)}"
            for name, error in zip(self.callables, self.errors, strict=False)
        )
        super().__init__(
            message or f"node {node or '<unnamed>'} failed on every route it tried: {routes}",
            node=node,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        rebuild, args, state = super().__reduce__()
        state["errors"] = tuple(_picklable(error) for error in self.errors)
        return (rebuild, args, state)


class NodeStreamInterruptedError(NodeExecutionError):
    """A stream failed after its first item reached the caller.

    From then on the stream is committed: a retry or a fallback would deliver
    the items again, so neither happens. Raised ``from`` the error that ended the
    stream; the underlying stream has been closed. Not retryable; its code is
    ``UNKNOWN`` and its category (in `classify_error`) that of its cause.

    Attributes:
        items_delivered: How many items the caller received before the failure.
        last_error: The error that ended the stream (also ``__cause__``).
    """

    def __init__(
        self,
        items_delivered: int,
        last_error: BaseException,
        /,
        *,
        node: str | None = None,
        message: str | None = None,
    ) -> None:
        self.items_delivered = int(items_delivered)
        self.last_error = last_error
        super().__init__(
            message
            or (
                f"node {node or '<unnamed>'}: the stream failed after {self.items_delivered} "
                f"items were delivered: {type(last_error).__name__}: {safe_text(last_error)}"
            ),
            node=node,
        )


# --- load control: our own refusals (Policy.rate_limit, Policy.bulkhead) --------------


class NodeRateLimitedError(NodeExecutionError):
    """A rate limit had no capacity for the call within the time it may wait.

    Raised before the function is called, so nothing of the limit was spent. It is
    our own refusal, not evidence about the dependency: never counted by a
    breaker, and not retried (the layer already waited as long as it was allowed
    to: within ``max_wait`` and the enclosing deadline).

    Attributes:
        limit: The limit (calls, or cost units) per period.
        per: The period, in seconds.
        key: The limit's key (shared by every process using it), if named.
        retry_after: Seconds until the limit has capacity again, when known.
    """

    code = ErrorCode.RATE_LIMITED

    def __init__(
        self,
        limit: int,
        per: float,
        /,
        *,
        key: str | None = None,
        retry_after: float | None = None,
        reason: str = "no capacity within the time it may wait",
        node: str | None = None,
        message: str | None = None,
    ) -> None:
        self.limit = int(limit)
        self.per = float(per)
        self.key = key
        self.retry_after = None if retry_after is None else max(0.0, float(retry_after))
        super().__init__(
            message
            or _format_message(
                self.code,
                node=node or "<unnamed>",
                limit=self.limit,
                per=self.per,
                key=f", key {key!r}" if key else "",
                detail=reason,
            ),
            node=node,
        )


class NodeBulkheadFullError(NodeExecutionError):
    """A bulkhead had every slot in use and its queue full: the call was rejected.

    Raised at once, before the function is called. Our own refusal: never counted
    by a breaker and not retried.

    Attributes:
        max_concurrent: Calls the bulkhead lets run at once.
        max_queue: Calls it lets wait for a slot.
    """

    code = ErrorCode.BULKHEAD_FULL

    def __init__(
        self,
        max_concurrent: int,
        max_queue: int,
        /,
        *,
        node: str | None = None,
        message: str | None = None,
    ) -> None:
        self.max_concurrent = int(max_concurrent)
        self.max_queue = int(max_queue)
        super().__init__(
            message
            or _format_message(
                self.code,
                node=node or "<unnamed>",
                max_concurrent=self.max_concurrent,
                max_queue=self.max_queue,
            ),
            node=node,
        )
