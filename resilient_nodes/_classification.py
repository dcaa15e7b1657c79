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
5. Provider and HTTP errors, read by duck typing (no SDK is imported), in this
   order:

   a. the error code or type in the body, as the OpenAI and Anthropic SDKs
      carry it (``code``, ``type``, ``error_code`` attributes; ``body["code"]``,
      ``body["type"]``, ``body["error"][...]``, ``body["error"]["details"]
      ["error_code"]``): a used-up quota (``insufficient_quota``,
      ``billing_error``, ``*spend_limit_reached``...) is a non-retryable
      ``QUOTA``; ``context_length_exceeded`` a non-retryable
      ``CONTEXT_LENGTH``; ``authentication_error`` / ``permission_error`` /
      ``invalid_api_key`` a non-retryable ``AUTH``; ``overloaded_error`` and
      ``api_error`` / ``server_error`` a retryable ``SERVER``;
      ``rate_limit_error`` / ``rate_limit_exceeded`` a retryable
      ``RATE_LIMIT``. The body wins over the status: a 429 whose code is
      ``insufficient_quota`` is a quota, not throttling, and an error event in
      the middle of a stream (status 200) is read too;
   b. the HTTP status (``status_code``, ``status``, or ``response.status_code``
      / ``response.status``): 401 and 403 are a non-retryable ``AUTH``, 402 a
      non-retryable ``QUOTA``, 408 a retryable ``TIMEOUT``, 425 and 5xx (529
      overload included) a retryable ``SERVER``, 429 a retryable
      ``RATE_LIMIT``; a 400, 413 or 422 whose message says the input is too
      long for the model's context is a ``CONTEXT_LENGTH``; any other 4xx is a
      non-retryable ``CLIENT`` error. Statuses below 400 say nothing;
   c. a class named like ``*ContextWindow*`` / ``*ContextLength*`` (LiteLLM's
      ``ContextWindowExceededError``): ``CONTEXT_LENGTH``;
   d. then an ``x-should-retry: true|false`` response header, when present,
      decides ``retryable`` (the category stays): the server's explicit word
      wins over the status and the body, as in the SDKs themselves.

   When none of a-c applies, the next rules decide.
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

``Retry-After`` comes from a ``retry_after`` attribute (seconds or timedelta), a
``retry-after-ms`` header (milliseconds, preferred, as the SDKs do) or a
``Retry-After`` header on ``headers`` / ``response.headers`` (seconds as text,
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
from typing import TYPE_CHECKING, Any, Final, NamedTuple

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
    NodeFallbackExhaustedError,
    NodeRateLimitedError,
    NodeRetryExhaustedError,
    NodeStreamInterruptedError,
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
    QUOTA = "quota"
    """A used-up quota or spending limit (``insufficient_quota``): not retried,
    and no fallback by default (it needs an operator, not another attempt)."""
    CONTEXT_LENGTH = "context_length"
    """The input is too long for the model: not retried; a fallback to a larger
    model can route on it (``Policy.fallback(big, on=...)``)."""
    AUTH = "auth"
    """Authentication or permission refused (401/403): not retried, no fallback."""
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


def _parse_retry_after_ms(value: object) -> float | None:
    """Seconds from a ``retry-after-ms`` value (milliseconds, as a number or text)."""
    if isinstance(value, bytes | str):
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        if not _DELAY_SECONDS.fullmatch(text.strip()):
            return None
        value = float(text)
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        return _parse_retry_after(float(value) / 1000.0)
    except OverflowError:
        return _RETRY_AFTER_CAP


def _response_headers(error: BaseException) -> tuple[object, ...]:
    """The header collections the error carries: its own, then its response's."""
    found = []
    for owner in (error, _attr(error, "response")):
        if owner is not None:
            headers = _attr(owner, "headers")
            if headers is not None:
                found.append(headers)
    return tuple(found)


def _retry_after(error: BaseException) -> float | None:
    found = _parse_retry_after(_attr(error, "retry_after"))
    if found is not None:
        return found
    for headers in _response_headers(error):
        # Milliseconds first, as the OpenAI and Anthropic SDKs read them.
        found = _parse_retry_after_ms(_header(headers, "retry-after-ms"))
        if found is None:
            found = _parse_retry_after(_header(headers, "Retry-After"))
        if found is not None:
            return found
    return None


def _should_retry(error: BaseException) -> bool | None:
    """The server's ``x-should-retry`` answer, if it gave one (``true``/``false``)."""
    for headers in _response_headers(error):
        value = _header(headers, "x-should-retry")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(value, str):
            answer = value.strip().lower()
            if answer in {"true", "false"}:
                return answer == "true"
    return None


class _Names(NamedTuple):
    """What the class names in an error type's MRO say (rules 4-8), per type."""

    context_length: bool
    timeout: bool
    network: bool
    validation: bool


_names_by_type: dict[type[BaseException], _Names] = {}


def _names(error: BaseException) -> _Names:
    """The name-based facts of *error*'s type, worked out once per type.

    Matching the patterns against every class name of the MRO was a large part
    of classifying an ordinary error on a retry's path; a type's names never
    change, so the answers are kept (bounded: classes can be made at run time).
    """
    cls = type(error)
    found = _names_by_type.get(cls)
    if found is None:
        names = [klass.__name__ for klass in cls.__mro__]
        found = _Names(
            context_length=any(_CONTEXT_NAME.search(name) for name in names),
            timeout=any("Timeout" in name for name in names),
            network=any(_NETWORK_NAME.search(name) for name in names),
            validation=any(_VALIDATION_NAME.search(name) for name in names),
        )
        if len(_names_by_type) < 4096:
            _names_by_type[cls] = found
    return found


def _carries_nothing(error: BaseException) -> bool:
    """A builtin exception with no attributes of its own: nothing to read by duck typing.

    Such an error has no status, headers or body (the builtin classes define
    none), so the provider and ``Retry-After`` reading is skipped for it.
    """
    return type(error).__module__ == "builtins" and not getattr(error, "__dict__", None)


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


# --- provider errors (rule 5) ---------------------------------------------------------

# Error codes and types as the providers put them in the body (OpenAI's ``code`` /
# ``type``, Anthropic's ``error.type`` and ``error.details.error_code``), lower case.
_BODY_CATEGORIES: Final[Mapping[str, tuple[ErrorCategory, bool]]] = {
    # A used-up quota or spending limit: waiting does not refill it.
    "insufficient_quota": (ErrorCategory.QUOTA, False),
    "billing_hard_limit_reached": (ErrorCategory.QUOTA, False),
    "billing_error": (ErrorCategory.QUOTA, False),
    "quota_exceeded": (ErrorCategory.QUOTA, False),
    # The input does not fit the model.
    "context_length_exceeded": (ErrorCategory.CONTEXT_LENGTH, False),
    "context_window_exceeded": (ErrorCategory.CONTEXT_LENGTH, False),
    "model_context_window_exceeded": (ErrorCategory.CONTEXT_LENGTH, False),
    # A key or a permission is wrong: every attempt would be refused alike.
    "authentication_error": (ErrorCategory.AUTH, False),
    "permission_error": (ErrorCategory.AUTH, False),
    "invalid_api_key": (ErrorCategory.AUTH, False),
    # Transient: overload, throttling, the provider's own failure.
    "overloaded_error": (ErrorCategory.SERVER, True),
    "api_error": (ErrorCategory.SERVER, True),
    "server_error": (ErrorCategory.SERVER, True),
    "rate_limit_error": (ErrorCategory.RATE_LIMIT, True),
    "rate_limit_exceeded": (ErrorCategory.RATE_LIMIT, True),
    "timeout_error": (ErrorCategory.TIMEOUT, True),
}
# When a body carries several codes (a type and a code), the most specific wins.
_BODY_PRECEDENCE: Final = (
    ErrorCategory.QUOTA,
    ErrorCategory.CONTEXT_LENGTH,
    ErrorCategory.AUTH,
    ErrorCategory.RATE_LIMIT,
    ErrorCategory.TIMEOUT,
    ErrorCategory.SERVER,
)
_SPEND_LIMIT = re.compile(r"spend_limit_reached$")
_CONTEXT_NAME = re.compile(r"ContextWindow|ContextLength")
_CONTEXT_TEXT = re.compile(
    r"(?i)maximum context length|context[ _]length[ _]exceeded|context window"
    r"|prompt is too long|input is too long|too many (?:input )?tokens"
)
_MAX_BODY_DEPTH: Final = 3


def _body_strings(body: object, depth: int = 0) -> list[str]:
    """``code`` / ``type`` / ``error_code`` strings of a provider error body."""
    if not isinstance(body, Mapping) or depth > _MAX_BODY_DEPTH:
        return []
    found = []
    for key in ("code", "type", "error_code"):
        try:
            value = body.get(key)
        except Exception:
            value = None
        if isinstance(value, str):
            found.append(value)
    for key in ("error", "details"):
        try:
            inner = body.get(key)
        except Exception:
            inner = None
        found.extend(_body_strings(inner, depth + 1))
    return found


def _body_category(error: BaseException) -> tuple[ErrorCategory, bool] | None:
    """What the provider's error code or type says the error is, if it says."""
    codes = [
        value
        for value in (_attr(error, "code"), _attr(error, "type"), _attr(error, "error_code"))
        if isinstance(value, str)
    ]
    codes.extend(_body_strings(_attr(error, "body")))
    found: dict[ErrorCategory, bool] = {}
    for code in codes:
        key = code.strip().lower()
        verdict = _BODY_CATEGORIES.get(key)
        if verdict is None and _SPEND_LIMIT.search(key):
            verdict = (ErrorCategory.QUOTA, False)
        if verdict is not None:
            found.setdefault(*verdict)
    for category in _BODY_PRECEDENCE:
        if category in found:
            return category, found[category]
    return None


_STATUS_CATEGORIES: Final[Mapping[int, tuple[ErrorCategory, bool]]] = {
    401: (ErrorCategory.AUTH, False),
    402: (ErrorCategory.QUOTA, False),
    403: (ErrorCategory.AUTH, False),
    408: (ErrorCategory.TIMEOUT, True),
    425: (ErrorCategory.SERVER, True),
    429: (ErrorCategory.RATE_LIMIT, True),
}


def _status_category(status: int, error: BaseException) -> tuple[ErrorCategory, bool]:
    known = _STATUS_CATEGORIES.get(status)
    if known is not None:
        return known
    if status >= 500:
        return ErrorCategory.SERVER, True
    if status in {400, 413, 422} and _CONTEXT_TEXT.search(safe_text(error, None)[:2000]):
        return ErrorCategory.CONTEXT_LENGTH, False
    return ErrorCategory.CLIENT, False


def _provider_verdict(
    error: BaseException, names: _Names, retry_after: float | None
) -> ErrorClassification | None:
    """Rule 5 of the module docstring: body code, status, class name, x-should-retry."""
    verdict = _body_category(error)
    if verdict is None:
        status = http_status(error)
        if status is not None:
            verdict = _status_category(status, error)
        elif names.context_length:
            verdict = (ErrorCategory.CONTEXT_LENGTH, False)
        else:
            return None
    category, retryable = verdict
    should_retry = _should_retry(error)
    if should_retry is not None:
        retryable = should_retry
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


def _strategy_error(
    error: NodeFallbackExhaustedError | NodeStreamInterruptedError, depth: int, seen: set[int]
) -> ErrorClassification:
    """Rule 3 for the errors of `Policy.fallback` and `Policy.stream`.

    A fallback that ran out is judged by what its routes raised, as a group is
    (so a retry around the whole route may try it again); a committed stream's
    failure keeps the category of its cause, for the breaker, but is never
    retryable: a retry would deliver its items again.
    """
    if depth >= _MAX_DEPTH:
        return ErrorClassification(ErrorCategory.UNKNOWN, retryable=False, code=error.code)
    if isinstance(error, NodeFallbackExhaustedError):
        members = [e for e in error.errors if id(e) not in seen] or [_NO_ROUTE]
        verdict = _classify_group(BaseExceptionGroup("routes", members), depth, seen)
        return attrs.evolve(verdict, code=error.code)
    cause = _classify(error.last_error, depth + 1, seen)
    return ErrorClassification(cause.category, retryable=False, code=error.code)


_NO_ROUTE: Final = Exception("no route was tried")


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


def _is_network(error: BaseException, names: _Names) -> bool:
    return (
        isinstance(error, ConnectionError | socket.gaierror | socket.herror)
        or (isinstance(error, OSError) and error.errno in _NETWORK_ERRNOS)
        or names.network
    )


def _classify(error: BaseException, depth: int, seen: set[int]) -> ErrorClassification:
    """Rules 1-4 of the module docstring, then `_classify_other`."""
    if is_control_flow(error):
        return _CANCELLED
    verdict = _matching_rule(error)
    if verdict is not None:
        return verdict
    if isinstance(error, NodeFallbackExhaustedError | NodeStreamInterruptedError):
        return _strategy_error(error, depth, seen)
    if isinstance(error, NodeExecutionError):
        return _own_error(error)
    names = _names(error)
    if isinstance(error, BaseExceptionGroup):
        return _VALIDATION if names.validation else _classify_group(error, depth, seen)
    return _classify_other(error, names, depth, seen)


def _classify_other(  # noqa: PLR0911 - one return per rule reads best
    error: BaseException, names: _Names, depth: int, seen: set[int]
) -> ErrorClassification:
    """Rules 5-12 of the module docstring."""
    retry_after = None
    if not _carries_nothing(error):
        retry_after = _retry_after(error)
        verdict = _provider_verdict(error, names, retry_after)
        if verdict is not None:
            return verdict
    if isinstance(error, TimeoutError) or names.timeout:
        return ErrorClassification(ErrorCategory.TIMEOUT, retryable=True, retry_after=retry_after)
    if _is_network(error, names):
        return ErrorClassification(ErrorCategory.NETWORK, retryable=True, retry_after=retry_after)
    if names.validation or isinstance(error, ValueError):
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
