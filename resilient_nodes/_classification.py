"""Deciding what an error means: category, retryable, code and ``Retry-After``.

The rules, in the order they are tried (the first that matches decides):

1. Control flow (cancellation, ``KeyboardInterrupt``, ``SystemExit``,
   ``GeneratorExit``, LangGraph's ``GraphBubbleUp``): ``CANCELLED``, never
   retryable. User rules cannot change this.
2. User rules added with `register_classification_rule`, newest first.
3. Our own errors: ``NodeTimeoutError`` (and an injected ``ChaosHangError``) is a
   retryable ``TIMEOUT``; an open
   circuit, a cancellation token, an exhausted retry and config/validation errors
   are not retryable. Our own refusals to start a call, other than an open
   circuit, are ``REJECTED``, not retryable: a rate limit with no capacity in the
   time it may wait (``NodeRateLimitedError``), a full bulkhead
   (``NodeBulkheadFullError``), and too many of a node's sync calls still stuck
   in their threads (``AbandonedThreadLimitError``). Each is a local decision
   before the call starts, which says nothing about the dependency, so no
   breaker counts it; a fallback may answer instead.
4. Exception groups: a group whose class is named like a validation error
   (cattrs' ``ClassValidationError``) is a ``VALIDATION`` error; any other group
   is classified by its members. Retryable only if every member is (with the
   longest ``Retry-After`` of them); otherwise the first non-retryable member
   decides.
5. An HTTP error status read by duck typing (``status_code``, ``status``, or
   ``response.status_code`` / ``response.status``): 408 is a retryable
   ``TIMEOUT``, 425 and 5xx a retryable ``SERVER``, 429 a retryable
   ``RATE_LIMIT``; any other 4xx is a non-retryable ``CLIENT`` error. Statuses
   below 400 say nothing and the next rules decide.
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
a ``Retry-After`` header on ``headers`` / ``response.headers`` (seconds as text,
bytes or a number, or an HTTP date; header names match in any case). Negative,
non-finite or unparseable values are ignored, a date in the past means 0, and
anything longer than a day is capped at a day. Classification never raises,
whatever it is given: attributes whose lookup raises count as absent.
"""

from __future__ import annotations

import enum
import errno
import math
import re
import socket
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Final

import attrs

from ._control import is_control_flow
from ._text import safe_text
from .errors import (
    AbandonedThreadLimitError,
    ChaosHangError,
    ConfigError,
    ErrorCode,
    NodeBulkheadFullError,
    NodeCancellationError,
    NodeCircuitOpenError,
    NodeExecutionError,
    NodeRateLimitedError,
    NodeRetryExhaustedError,
    NodeTimeoutError,
    NodeValidationError,
)

if TYPE_CHECKING:
    from collections.abc import Callable

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


class ErrorCategory(enum.StrEnum):
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
    REJECTED = "rejected"
    """Our own refusal to start the call (rate limit, bulkhead, thread limit)."""


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
    if isinstance(match, type | tuple):
        # isinstance() with a class, never a call: pybreaker's exclude mistakes
        # metaclassed exception classes for predicates; we do not.
        types = match
        return lambda error: isinstance(error, types)
    if callable(match):
        return match
    raise ConfigError(
        [("match", f"must be an exception type, a tuple of them or a predicate, got {match!r}")]
    )


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


def _attr(owner: object, name: str) -> object:
    """``getattr(owner, name, None)``, where a raising property counts as absent."""
    try:
        return getattr(owner, name, None)
    except Exception:
        return None


def http_status(error: BaseException) -> int | None:
    """The HTTP error status (400-599) the error carries, if any."""
    for owner in (error, _attr(error, "response")):
        if owner is None:
            continue
        for attr in ("status_code", "status"):
            value = _attr(owner, attr)
            if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
                return int(value)
    return None


def _header(headers: object, name: str) -> object:
    if headers is None:
        return None
    getter = _attr(headers, "get")
    if callable(getter):
        for key in (name, name.lower()):
            try:
                value = getter(key)
            except Exception:
                value = None
            if value is not None:
                return value
    if isinstance(headers, Mapping):
        # A plain dict is case-sensitive; HTTP header names are not.
        wanted = name.lower()
        for key, value in headers.items():
            if isinstance(key, str) and key.lower() == wanted:
                return value
    return None


def _parse_retry_after(value: object) -> float | None:
    """Seconds to wait from a ``Retry-After`` value, or None if it is not valid."""
    if value is None or isinstance(value, bool):
        return None
    seconds: float
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # an int beyond float range: "a very long time"
            seconds = math.inf if value > 0 else -math.inf
        if math.isinf(seconds) and seconds > 0:
            return _RETRY_AFTER_CAP
    elif isinstance(value, bytes | str):
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        return _parse_retry_after_text(text.strip())
    else:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, _RETRY_AFTER_CAP)


_DELAY_SECONDS: Final = re.compile(r"\d+(?:\.\d+)?")


def _parse_retry_after_text(text: str) -> float | None:
    if _DELAY_SECONDS.fullmatch(text):
        return min(float(text), _RETRY_AFTER_CAP)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    # A date in the past means "now".
    return min(max(0.0, (when - datetime.now(UTC)).total_seconds()), _RETRY_AFTER_CAP)


def _retry_after(error: BaseException) -> float | None:
    found = _parse_retry_after(_attr(error, "retry_after"))
    if found is not None:
        return found
    for owner in (error, _attr(error, "response")):
        if owner is None:
            continue
        found = _parse_retry_after(_header(_attr(owner, "headers"), "Retry-After"))
        if found is not None:
            return found
    return None


def _mro_names(error: BaseException) -> tuple[str, ...]:
    return tuple(klass.__name__ for klass in type(error).__mro__)


_NETWORK_ERRNOS: Final = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNREFUSED",
        "ECONNRESET",
        "ECONNABORTED",
        "ETIMEDOUT",
        "EHOSTUNREACH",
        "ENETUNREACH",
        "ENETDOWN",
        "EPIPE",
        "EAI_AGAIN",
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
    TypeError,
    NameError,
    AttributeError,
    LookupError,
    AssertionError,
    ArithmeticError,
    ImportError,
    NotImplementedError,
    RecursionError,
    SyntaxError,
)
_MAX_DEPTH: Final = 16


def _http_verdict(status: int, retry_after: float | None) -> ErrorClassification:
    if status == 429:
        category, retryable = ErrorCategory.RATE_LIMIT, True
    elif status == 408:
        category, retryable = ErrorCategory.TIMEOUT, True
    elif status == 425 or status >= 500:
        category, retryable = ErrorCategory.SERVER, True
    else:
        category, retryable = ErrorCategory.CLIENT, False
    return ErrorClassification(category, retryable=retryable, retry_after=retry_after)


_CANCELLED: Final = ErrorClassification(ErrorCategory.CANCELLED, retryable=False)
_UNKNOWN: Final = ErrorClassification(ErrorCategory.UNKNOWN, retryable=False)
_VALIDATION: Final = ErrorClassification(ErrorCategory.VALIDATION, retryable=False)


def _own_error(error: NodeExecutionError) -> ErrorClassification:
    category, retryable, retry_after = ErrorCategory.UNKNOWN, False, None
    if isinstance(error, NodeTimeoutError | ChaosHangError):
        category, retryable = ErrorCategory.TIMEOUT, True
    elif isinstance(error, NodeCircuitOpenError):
        category, retry_after = ErrorCategory.CIRCUIT_OPEN, error.recovery_time
    elif isinstance(error, AbandonedThreadLimitError | NodeBulkheadFullError):
        # Our own refusal to start the call. Counted as a failure it would trip
        # the breaker of a node whose dependency is fine (with Redis, in every
        # process) because of a local limit.
        category = ErrorCategory.REJECTED
    elif isinstance(error, NodeRateLimitedError):
        category, retry_after = ErrorCategory.REJECTED, error.retry_after
    elif isinstance(error, NodeCancellationError):
        category = ErrorCategory.CANCELLED
    elif isinstance(error, NodeRetryExhaustedError):
        category = ErrorCategory.RETRY_EXHAUSTED
    elif isinstance(error, ConfigError | NodeValidationError):
        category = ErrorCategory.VALIDATION
    return ErrorClassification(category, retryable, error.code, retry_after)


def _classify_group(
    group: BaseExceptionGroup[Any], depth: int, seen: set[int]
) -> ErrorClassification:
    if depth >= _MAX_DEPTH:
        return _UNKNOWN
    verdicts = [_classify(member, depth + 1, seen) for member in group.exceptions]
    for verdict in verdicts:
        if not verdict.retryable:
            return verdict
    waits = [v.retry_after for v in verdicts if v.retry_after is not None]
    return attrs.evolve(verdicts[0], retry_after=max(waits) if waits else None)


def _matching_rule(error: BaseException) -> ErrorClassification | None:
    for rule in _rules:
        if rule.matches(error):
            return ErrorClassification(
                rule.category,
                rule.retryable,
                rule.code or _CODE_FOR.get(rule.category, ErrorCode.UNKNOWN),
                _retry_after(error),
            )
    return None


def _is_network(error: BaseException, names: tuple[str, ...]) -> bool:
    return (
        isinstance(error, ConnectionError | socket.gaierror | socket.herror)
        or (isinstance(error, OSError) and error.errno in _NETWORK_ERRNOS)
        or any(_NETWORK_NAME.search(name) for name in names)
    )


def _classify(error: BaseException, depth: int, seen: set[int]) -> ErrorClassification:
    """Rules 1-4 of the module docstring, then `_classify_other`."""
    if is_control_flow(error):
        return _CANCELLED
    verdict = _matching_rule(error)
    if verdict is not None:
        return verdict
    if isinstance(error, NodeExecutionError):
        return _own_error(error)
    names = _mro_names(error)
    is_validation = any(_VALIDATION_NAME.search(name) for name in names)
    if isinstance(error, BaseExceptionGroup):
        return _VALIDATION if is_validation else _classify_group(error, depth, seen)
    return _classify_other(error, names, is_validation, depth, seen)


def _classify_other(  # noqa: PLR0911 - one return per rule reads best
    error: BaseException, names: tuple[str, ...], is_validation: bool, depth: int, seen: set[int]
) -> ErrorClassification:
    """Rules 5-12 of the module docstring."""
    retry_after = _retry_after(error)
    status = http_status(error)
    if status is not None:
        return _http_verdict(status, retry_after)
    if isinstance(error, TimeoutError) or any("Timeout" in name for name in names):
        return ErrorClassification(ErrorCategory.TIMEOUT, retryable=True, retry_after=retry_after)
    if _is_network(error, names):
        return ErrorClassification(ErrorCategory.NETWORK, retryable=True, retry_after=retry_after)
    if is_validation or isinstance(error, ValueError):
        return _VALIDATION
    if isinstance(error, _PROGRAMMING):
        return ErrorClassification(ErrorCategory.PROGRAMMING, retryable=False)
    cause = error.__cause__
    seen.add(id(error))
    if cause is not None and id(cause) not in seen and depth < _MAX_DEPTH:
        verdict = _classify(cause, depth + 1, seen)
        if verdict.category is not ErrorCategory.UNKNOWN:
            return verdict
    transient = bool(_TRANSIENT_TEXT.search(safe_text(error, None)[:2000]))
    return ErrorClassification(ErrorCategory.UNKNOWN, retryable=transient, retry_after=retry_after)


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
