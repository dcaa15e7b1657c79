"""Deciding what an error means: category, retryable, code and ``Retry-After``.

The rules, in the order they are tried (the first that matches decides):

1. Control flow (cancellation, ``KeyboardInterrupt``, ``SystemExit``,
   ``GeneratorExit``, LangGraph's ``GraphBubbleUp``): ``CANCELLED``, never
   retryable. User rules cannot change this.
2. User rules added with `register_classification_rule`, newest first.
3. Our own errors: ``NodeTimeoutError`` is a retryable ``TIMEOUT``; an open
   circuit, a cancellation token, an exhausted retry and config/validation errors
   are not retryable.
4. Exception groups: classified by their members. Retryable only if every member
   is; otherwise the first non-retryable member decides.
5. An HTTP status read by duck typing (``status_code``, ``status``, or
   ``response.status_code`` / ``response.status``): 408 and 425 are retryable
   ``TIMEOUT``/``SERVER``, 429 a retryable ``RATE_LIMIT``, 5xx a retryable
   ``SERVER``; any other 4xx is a non-retryable ``CLIENT`` error.
6. Timeouts (``TimeoutError`` or a class named ``*Timeout*``): retryable.
7. Network errors (``ConnectionError``, socket address errors, network errnos, or
   a class named like ``*Connect*``, ``*Network*``, ``*Transport*``): retryable.
8. Validation errors (``ValueError`` and its kin, cattrs and pydantic validation
   errors by class name): not retryable.
9. Programming errors (``TypeError``, ``NameError``, ``AttributeError``,
   ``LookupError``, ``AssertionError``, ``ArithmeticError``, ``ImportError``,
   ``NotImplementedError``, ``RecursionError``, ``SyntaxError``): not retryable.
10. An explicit ``__cause__`` is classified in place of an otherwise unknown error.
11. A message naming a transient condition (``ECONNRESET``, ``rate limit``,
    ``service unavailable``, ``overloaded``, a 429/502/503/504 status...): retryable.
12. Anything else: ``UNKNOWN``, not retryable.

``Retry-After`` comes from a ``retry_after`` attribute (seconds or timedelta) or
a ``Retry-After`` header on ``headers`` / ``response.headers`` (seconds or an
HTTP date). Classification never raises, whatever it is given.
"""

from __future__ import annotations

import enum
import errno
import re
import socket
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Final

import attrs

from ._control import is_control_flow
from .errors import (
    ConfigError,
    ErrorCode,
    NodeCancellationError,
    NodeCircuitOpenError,
    NodeExecutionError,
    NodeRetryExhaustedError,
    NodeTimeoutError,
    NodeValidationError,
)

__all__ = [
    "ClassificationRule",
    "ErrorCategory",
    "ErrorClassification",
    "classify_error",
    "get_error_category",
    "is_retryable_node_error",
    "register_classification_rule",
    "unregister_classification_rule",
]


class ErrorCategory(str, enum.Enum):
    """What kind of failure an error is."""

    TIMEOUT = "timeout"
    NETWORK = "network"
    RATE_LIMIT = "rate_limit"
    SERVER = "server"
    CLIENT = "client"
    VALIDATION = "validation"
    PROGRAMMING = "programming"
    CIRCUIT_OPEN = "circuit_open"
    CANCELLED = "cancelled"
    RETRY_EXHAUSTED = "retry_exhausted"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


_CODE_FOR: Final[Mapping[ErrorCategory, ErrorCode]] = {
    ErrorCategory.TIMEOUT: ErrorCode.NODE_TIMEOUT,
    ErrorCategory.VALIDATION: ErrorCode.VALIDATION_FAILED,
    ErrorCategory.CIRCUIT_OPEN: ErrorCode.CIRCUIT_OPEN,
    ErrorCategory.CANCELLED: ErrorCode.CANCELLED,
    ErrorCategory.RETRY_EXHAUSTED: ErrorCode.RETRY_EXHAUSTED,
}


@attrs.frozen
class ErrorClassification:
    """The verdict on one error.

    Attributes:
        category: What kind of failure it is.
        retryable: Whether another attempt may succeed.
        code: The `ErrorCode` to record.
        retry_after: Seconds the server asked us to wait, if it said so.
    """

    category: ErrorCategory
    retryable: bool
    code: ErrorCode = attrs.field()
    retry_after: float | None = None

    @code.default
    def _code_default(self) -> ErrorCode:
        return _CODE_FOR.get(self.category, ErrorCode.UNKNOWN)


def _predicate_for(
    match: type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool],
) -> Callable[[BaseException], bool]:
    if isinstance(match, type) or isinstance(match, tuple):
        # isinstance() with a class, never a call: pybreaker's exclude mistakes
        # metaclassed exception classes for predicates; we do not.
        types = match
        return lambda error: isinstance(error, types)
    if callable(match):
        return match
    raise ConfigError([("match", f"must be an exception type, a tuple of them or a predicate, got {match!r}")])


@attrs.frozen(eq=False)
class ClassificationRule:
    """A user rule: errors that match get the given verdict.

    Attributes:
        match: Exception type(s), or a predicate taking the exception.
        category: Category to assign.
        retryable: Whether matching errors are retryable.
        code: Code to assign (derived from the category if omitted).
    """

    match: type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool]
    category: ErrorCategory
    retryable: bool
    code: ErrorCode | None = None
    _predicate: Callable[[BaseException], bool] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_predicate", _predicate_for(self.match))

    def matches(self, error: BaseException) -> bool:
        """Whether the rule applies to *error* (a failing predicate means no)."""
        try:
            return bool(self._predicate(error))
        except Exception:
            return False


_rules: tuple[ClassificationRule, ...] = ()
_rules_lock = threading.Lock()


def register_classification_rule(
    match: type[BaseException] | tuple[type[BaseException], ...] | Callable[[BaseException], bool],
    /,
    *,
    category: ErrorCategory | str,
    retryable: bool,
    code: ErrorCode | None = None,
) -> ClassificationRule:
    """Add a rule that is tried before the built-in ones (newest first).

    Rules never apply to control flow (cancellation, interrupts).

    Args:
        match: Exception type(s), or a predicate taking the exception.
        category: The category to assign (an `ErrorCategory` or its value).
        retryable: Whether matching errors may be retried.
        code: The code to assign; derived from the category if omitted.

    Returns:
        The rule, for `unregister_classification_rule`.

    Raises:
        ConfigError: If *match* or *category* is not valid.
    """
    global _rules  # noqa: PLW0603 - a copy-on-write registry read without a lock
    try:
        category = ErrorCategory(category)
    except ValueError:
        raise ConfigError([("category", f"unknown category {category!r}")]) from None
    rule = ClassificationRule(match, category, bool(retryable), code)
    with _rules_lock:
        _rules = (rule, *_rules)
    return rule


def unregister_classification_rule(rule: ClassificationRule, /) -> None:
    """Remove a rule added with `register_classification_rule` (no error if absent)."""
    global _rules  # noqa: PLW0603
    with _rules_lock:
        _rules = tuple(r for r in _rules if r is not rule)


# --- duck-typed readers -----------------------------------------------------------

_RETRY_AFTER_CAP: Final = 24 * 3600.0


def _http_status(error: BaseException) -> int | None:
    for owner in (error, getattr(error, "response", None)):
        if owner is None:
            continue
        for attr in ("status_code", "status"):
            value = getattr(owner, attr, None)
            if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
                return value
    return None


def _header(headers: object, name: str) -> object:
    if headers is None:
        return None
    getter = getattr(headers, "get", None)
    if getter is None:
        return None
    for key in (name, name.lower()):
        value = getter(key)
        if value is not None:
            return value
    return None


def _parse_retry_after(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    seconds: float | None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, bytes | str):
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        text = text.strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                when = parsedate_to_datetime(text)
            except (TypeError, ValueError, IndexError):
                return None
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = (when - datetime.now(UTC)).total_seconds()
    else:
        return None
    if seconds != seconds:  # NaN
        return None
    return min(max(0.0, seconds), _RETRY_AFTER_CAP)


def _retry_after(error: BaseException) -> float | None:
    found = _parse_retry_after(getattr(error, "retry_after", None))
    if found is not None:
        return found
    for owner in (error, getattr(error, "response", None)):
        if owner is None:
            continue
        found = _parse_retry_after(_header(getattr(owner, "headers", None), "Retry-After"))
        if found is not None:
            return found
    return None


def _mro_names(error: BaseException) -> tuple[str, ...]:
    return tuple(klass.__name__ for klass in type(error).__mro__)


_NETWORK_ERRNOS: Final = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNREFUSED", "ECONNRESET", "ECONNABORTED", "ETIMEDOUT", "EHOSTUNREACH",
        "ENETUNREACH", "ENETDOWN", "EPIPE", "EAI_AGAIN",
    )
    if hasattr(errno, name)
)
_NETWORK_NAME = re.compile(r"Connect|Network|Transport|RemoteProtocol|ServerDisconnected")
_VALIDATION_NAME = re.compile(r"ValidationError|ValidationException|SchemaError")
_TRANSIENT_TEXT = re.compile(
    r"(?i)\b(?:ECONNRESET|ETIMEDOUT|ECONNREFUSED|EPIPE|EAI_AGAIN|socket hang up"
    r"|rate[ -]?limit(?:ed)?|too many requests|service unavailable|temporarily unavailable"
    r"|overloaded|bad gateway|gateway timeout|try again later)\b|\b(?:429|502|503|504)\b"
)
_PROGRAMMING: Final = (
    TypeError, NameError, AttributeError, LookupError, AssertionError, ArithmeticError,
    ImportError, NotImplementedError, RecursionError, SyntaxError,
)


def _http_verdict(status: int, retry_after: float | None) -> ErrorClassification:
    if status == 429:
        return ErrorClassification(ErrorCategory.RATE_LIMIT, True, retry_after=retry_after)
    if status == 408:
        return ErrorClassification(ErrorCategory.TIMEOUT, True, retry_after=retry_after)
    if status == 425 or status >= 500:
        return ErrorClassification(ErrorCategory.SERVER, True, retry_after=retry_after)
    if status >= 400:
        return ErrorClassification(ErrorCategory.CLIENT, False, retry_after=retry_after)
    return ErrorClassification(ErrorCategory.UNKNOWN, False, retry_after=retry_after)


_CANCELLED: Final = ErrorClassification(ErrorCategory.CANCELLED, False)
_UNKNOWN: Final = ErrorClassification(ErrorCategory.UNKNOWN, False)


def _own_error(error: NodeExecutionError) -> ErrorClassification:
    if isinstance(error, NodeTimeoutError):
        return ErrorClassification(ErrorCategory.TIMEOUT, True, error.code)
    if isinstance(error, NodeCircuitOpenError):
        return ErrorClassification(
            ErrorCategory.CIRCUIT_OPEN, False, error.code, retry_after=error.recovery_time
        )
    if isinstance(error, NodeCancellationError):
        return ErrorClassification(ErrorCategory.CANCELLED, False, error.code)
    if isinstance(error, NodeRetryExhaustedError):
        return ErrorClassification(ErrorCategory.RETRY_EXHAUSTED, False, error.code)
    if isinstance(error, ConfigError | NodeValidationError):
        return ErrorClassification(ErrorCategory.VALIDATION, False, error.code)
    return ErrorClassification(ErrorCategory.UNKNOWN, False, error.code)


def _classify_group(group: BaseExceptionGroup[Any], depth: int, seen: set[int]) -> ErrorClassification:
    verdicts = [_classify(member, depth + 1, seen) for member in group.exceptions]
    if not verdicts:
        return _UNKNOWN
    for verdict in verdicts:
        if not verdict.retryable:
            return verdict
    waits = [v.retry_after for v in verdicts if v.retry_after is not None]
    first = verdicts[0]
    return attrs.evolve(first, retry_after=max(waits) if waits else None)


def _classify(error: BaseException, depth: int, seen: set[int]) -> ErrorClassification:  # noqa: C901, PLR0911, PLR0912
    if is_control_flow(error):
        return _CANCELLED
    for rule in _rules:
        if rule.matches(error):
            return ErrorClassification(
                rule.category,
                rule.retryable,
                rule.code or _CODE_FOR.get(rule.category, ErrorCode.UNKNOWN),
                _retry_after(error),
            )
    if isinstance(error, NodeExecutionError):
        return _own_error(error)
    if isinstance(error, BaseExceptionGroup):
        return _classify_group(error, depth, seen)
    retry_after = _retry_after(error)
    status = _http_status(error)
    if status is not None:
        return _http_verdict(status, retry_after)
    names = _mro_names(error)
    if isinstance(error, TimeoutError) or any("Timeout" in name for name in names):
        return ErrorClassification(ErrorCategory.TIMEOUT, True, retry_after=retry_after)
    if (
        isinstance(error, ConnectionError | socket.gaierror | socket.herror)
        or (isinstance(error, OSError) and error.errno in _NETWORK_ERRNOS)
        or any(_NETWORK_NAME.search(name) for name in names)
    ):
        return ErrorClassification(ErrorCategory.NETWORK, True, retry_after=retry_after)
    if any(_VALIDATION_NAME.search(name) for name in names) or isinstance(error, ValueError):
        return ErrorClassification(ErrorCategory.VALIDATION, False)
    if isinstance(error, _PROGRAMMING):
        return ErrorClassification(ErrorCategory.PROGRAMMING, False)
    cause = error.__cause__
    if cause is not None and id(cause) not in seen and depth < 16:
        seen.add(id(error))
        verdict = _classify(cause, depth + 1, seen)
        if verdict.category is not ErrorCategory.UNKNOWN:
            return verdict
    if _TRANSIENT_TEXT.search(_message(error)):
        return ErrorClassification(ErrorCategory.UNKNOWN, True, retry_after=retry_after)
    return ErrorClassification(ErrorCategory.UNKNOWN, False, retry_after=retry_after)


def _message(error: BaseException) -> str:
    try:
        text = str(error)
    except Exception:
        return ""
    return text[:2000]


def classify_error(error: BaseException, /) -> ErrorClassification:
    """Classify *error*. Never raises.

    Args:
        error: Any exception (an exception group is judged by its members).

    Returns:
        The `ErrorClassification`.
    """
    try:
        return _classify(error, 0, set())
    except Exception:
        return _UNKNOWN


def is_retryable_node_error(error: BaseException, /) -> bool:
    """Whether another attempt after *error* may succeed (see `classify_error`)."""
    return classify_error(error).retryable


def get_error_category(error: BaseException, /) -> ErrorCategory:
    """The `ErrorCategory` of *error* (see `classify_error`)."""
    return classify_error(error).category
