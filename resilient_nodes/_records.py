"""Error records: a failure made safe to keep in graph state.

`create_node_error` turns any error value into a `NodeErrorRecord`, a TypedDict of
JSON values (so it survives any checkpointer and ``json.dumps``): ``code`` (an
`ErrorCode` value), ``category`` (an `ErrorCategory` value), ``message`` (secrets
redacted, length bounded), ``node``, ``attempts``, ``timestamp`` (ISO-8601 UTC),
``traceback`` (sanitized by `resilient_nodes._sanitize`), ``retryable``,
``error_type`` (the exception class name) and, optionally, ``details`` (JSON
values: timeout, retry_after, group members...). Building one never raises.
"""

import enum
import math
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final, NotRequired, TypedDict

from ._classification import ErrorCategory, ErrorClassification, classify_error, http_status
from ._sanitize import normalize_error, redact_secrets, redacted_head, sanitize_traceback
from ._text import safe_text
from .errors import (
    ErrorCode,
    NodeCancellationError,
    NodeCircuitOpenError,
    NodeRetryExhaustedError,
    NodeTimeoutError,
)

__all__ = [
    "ERROR_CODES",
    "MAX_MESSAGE_LENGTH",
    "NodeErrorRecord",
    "create_error_update",
    "create_node_error",
    "minimal_record",
    "now_iso",
]

#: Longest recorded error message before the truncation marker is added.
MAX_MESSAGE_LENGTH: Final = 2000
_MAX_DETAIL_TEXT: Final = 500
_MAX_GROUP_MEMBERS: Final = 10
_MAX_JSON_DEPTH: Final = 8
_MAX_JSON_ITEMS: Final = 50

ERROR_CODES: Final = frozenset(code.value for code in ErrorCode)


class NodeErrorRecord(TypedDict):
    """A failure recorded in state instead of crashing the run.

    Attributes:
        code: An `ErrorCode` value, e.g. ``"NODE_TIMEOUT"``.
        category: An `ErrorCategory` value, e.g. ``"timeout"``.
        message: The error message, secrets redacted, length bounded.
        node: The node that failed.
        attempts: How many attempts were made.
        timestamp: When it was recorded, ISO-8601 UTC.
        traceback: The sanitized traceback.
        retryable: Whether the classification deemed it retryable.
        error_type: The exception class name.
        details: Optional JSON values, e.g. ``timeout``, ``retry_after``.
    """

    code: str
    category: str
    message: str
    node: str
    attempts: int
    timestamp: str
    traceback: str
    retryable: bool
    error_type: str
    details: NotRequired[dict[str, Any]]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _full_text(value: object) -> str:
    return safe_text(value, None)


def _bounded_text(text: str, limit: int) -> str:
    """Cut *text* to about *limit* characters, secrets redacted.

    The cut goes back to a whitespace when one is near, for readability.
    `redacted_head` redacts a little past the cut before making it, so a secret
    crossing the cut is redacted whole, and costs the same for a megabyte.
    """
    if len(text) > limit:
        head = text[:limit]
        space = max(head.rfind(" "), head.rfind("\n"), head.rfind("\t"))
        cut = space if space >= limit // 2 else limit
        text = f"{redacted_head(text, cut)} ...[{len(text) - cut} more chars]"
    else:
        text = redact_secrets(text)
    # Redaction can lengthen text slightly; keep a hard bound.
    return text[: limit + 64]


def _message_of(error: BaseException) -> str:
    text = _full_text(error)
    return _bounded_text(text, MAX_MESSAGE_LENGTH) if text else "(no message)"


_NOT_SCALAR: Final = object()


def _json_scalar(value: object) -> Any:
    """*value* as a JSON scalar, or `_NOT_SCALAR` for containers and objects."""
    if isinstance(value, enum.Enum):
        # str() of a str-mixin enum is "Class.NAME" on 3.11; the value is the data.
        value = value.value
    result: Any = _NOT_SCALAR
    if value is None or isinstance(value, bool):
        result = value
    elif isinstance(value, int):
        result = int(value)
    elif isinstance(value, float):
        result = float(value) if math.isfinite(value) else str(value)
    elif isinstance(value, str):
        result = _bounded_text(str(value), _MAX_DETAIL_TEXT)
    elif isinstance(value, timedelta):
        result = value.total_seconds()
    elif isinstance(value, datetime | date | time):
        result = value.isoformat()
    return result


def _json_safe(value: object, depth: int = 0) -> Any:
    """Turn any value into JSON data, never raising (text is redacted and bounded)."""
    scalar = _json_scalar(value)
    if scalar is not _NOT_SCALAR:
        return scalar
    if depth < _MAX_JSON_DEPTH:
        if isinstance(value, Mapping):
            items = list(value.items())[:_MAX_JSON_ITEMS]
            return {
                key if isinstance(key, str) else _full_text(key): _json_safe(item, depth + 1)
                for key, item in items
            }
        if isinstance(value, list | tuple | set | frozenset):
            return [_json_safe(item, depth + 1) for item in list(value)[:_MAX_JSON_ITEMS]]
    return _bounded_text(_full_text(value), _MAX_DETAIL_TEXT)


def _error_summary(error: BaseException) -> dict[str, str]:
    return {
        "error_type": type(error).__name__,
        "message": _bounded_text(_full_text(error), _MAX_DETAIL_TEXT),
    }


def _derived_details(error: BaseException, verdict: ErrorClassification) -> dict[str, Any]:
    details: dict[str, Any] = {}
    if isinstance(error, NodeTimeoutError):
        details["timeout"] = error.timeout
    elif isinstance(error, NodeCircuitOpenError):
        details["failure_count"] = error.failure_count
        details["recovery_time"] = error.recovery_time
    elif isinstance(error, NodeCancellationError):
        details["reason"] = _bounded_text(_full_text(error.reason), _MAX_DETAIL_TEXT)
    elif isinstance(error, NodeRetryExhaustedError):
        details["retry_attempts"] = error.attempts
        details["last_error"] = _error_summary(error.last_error)
    elif isinstance(error, BaseExceptionGroup):
        members = error.exceptions
        details["exceptions"] = [_error_summary(m) for m in members[:_MAX_GROUP_MEMBERS]]
        if len(members) > _MAX_GROUP_MEMBERS:
            details["exceptions_omitted"] = len(members) - _MAX_GROUP_MEMBERS
    status = http_status(error)
    if status is not None:
        details["status_code"] = status
    if verdict.retry_after is not None:
        details["retry_after"] = verdict.retry_after
    return details


def _code_of(error: BaseException, verdict: ErrorClassification) -> ErrorCode:
    if verdict.code is not ErrorCode.UNKNOWN:
        return verdict.code
    # A foreign error may carry one of our codes (a mapping normalised by
    # normalize_error, say); an unrelated ``.code`` (an HTTP status) is ignored.
    own = getattr(error, "code", None)
    if isinstance(own, str) and own in ERROR_CODES:
        return ErrorCode(own)
    return ErrorCode.UNKNOWN


def _label(value: object) -> str:
    text = value if isinstance(value, str) else _full_text(value)
    return text[:200] or "<unnamed>"


def _count(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return max(0, value)
    return 1


def minimal_record(node: object, attempts: object) -> NodeErrorRecord:
    return {
        "code": ErrorCode.UNKNOWN.value,
        "category": ErrorCategory.UNKNOWN.value,
        "message": "the error could not be recorded",
        "node": node if isinstance(node, str) else "<unnamed>",
        "attempts": attempts if type(attempts) is int else 1,
        "timestamp": now_iso(),
        "traceback": "",
        "retryable": False,
        "error_type": "<unknown>",
    }


def create_node_error(
    error: object,
    /,
    *,
    node: str,
    attempts: int = 1,
    details: Mapping[str, Any] | None = None,
) -> NodeErrorRecord:
    """Build a `NodeErrorRecord` from any error value. Never raises.

    *error* may be an exception (groups included), a string, ``None`` or any
    object; `normalize_error` turns it into an exception and `classify_error`
    decides category, retryability and code (an error's own ``.code`` is used
    when the classification has none). The message has secrets redacted and is
    cut to about `MAX_MESSAGE_LENGTH` characters; the traceback comes from
    `sanitize_traceback`. ``details`` gets what the error itself says (a timeout's
    seconds, ``retry_after``, an HTTP status, an exhausted retry's last error, a
    group's members), then *details*, made JSON-safe. If building the record
    fails anyway, a minimal ``UNKNOWN`` record is returned.

    Args:
        error: The error value.
        node: The node that failed.
        attempts: How many attempts were made.
        details: Extra JSON-able data to record.

    Returns:
        The record.
    """
    try:
        exc = normalize_error(error)
        verdict = classify_error(exc)
        extra = _derived_details(exc, verdict)
        if details is not None:
            safe = _json_safe(details)
            extra.update(safe if isinstance(safe, dict) else {"details": safe})
        record: NodeErrorRecord = {
            "code": _code_of(exc, verdict).value,
            "category": verdict.category.value,
            "message": _message_of(exc),
            "node": _label(node),
            "attempts": _count(attempts),
            "timestamp": now_iso(),
            "traceback": sanitize_traceback(exc),
            "retryable": verdict.retryable,
            "error_type": type(exc).__name__,
        }
        if extra:
            record["details"] = extra
    except Exception:
        return minimal_record(node, attempts)
    return record


def create_error_update(
    error: object,
    /,
    *,
    node: str,
    attempts: int = 1,
    details: Mapping[str, Any] | None = None,
) -> dict[str, list[NodeErrorRecord]]:
    """The partial update that appends one error record: ``{"errors": [record]}``.

    Never raises; see `create_node_error`. Typed as a plain dict (not
    `GraphState`) so that it fits a node whose return type is
    ``dict[str, Any]``, as the node factory's is.

    Args:
        error: The error value.
        node: The node that failed.
        attempts: How many attempts were made.
        details: Extra JSON-able data to record.

    Returns:
        ``{"errors": [record]}``.
    """
    return {"errors": [create_node_error(error, node=node, attempts=attempts, details=details)]}
