"""Making errors safe to record: traceback sanitising, secret redaction, normalising.

Everything here runs on the error path, so nothing here may raise: every public
function falls back to a plainer answer rather than fail.
"""

from __future__ import annotations

import os
import re
import sysconfig
import traceback
from collections.abc import Mapping
from pathlib import PurePath
from typing import Final

from .errors import ErrorCode, NodeExecutionError, _safe_str

__all__ = ["normalize_error", "redact_secrets", "sanitize_traceback"]

_REDACTED: Final = "[REDACTED]"

# Ordered: URL credentials first, so the password inside a URL is not half-matched
# by the key=value rule.
_SECRET_PATTERNS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    # scheme://user:password@host -> scheme://[REDACTED]@host
    (re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/@:]+:[^\s/@]+@"), r"\g<scheme>"
     + _REDACTED + "@"),
    # Authorization: Bearer <token> / Basic <token>
    (re.compile(r"(?i)\b(?P<kind>bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\g<kind> " + _REDACTED),
    # Provider key shapes: OpenAI/Anthropic sk-..., GitHub, Slack, AWS, Google.
    (re.compile(r"\bsk-[A-Za-z0-9_-]{12,}"), _REDACTED),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), _REDACTED),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"), _REDACTED),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), _REDACTED),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"), _REDACTED),
    # key=value, key: value, "key": "value" for secret-looking keys.
    (
        re.compile(
            r"(?i)(?P<key>\b[\w-]*(?:password|passwd|pwd|secret|token|api[_-]?key|apikey"
            r"|access[_-]?key|private[_-]?key|auth|credential|session[_-]?id)[\w-]*)"
            r"(?P<sep>[\"']?\s*[=:]\s*[\"']?)(?P<value>[^\s\"',;&}\]]+)"
        ),
        r"\g<key>\g<sep>" + _REDACTED,
    ),
)


def redact_secrets(text: str) -> str:
    """Replace secrets that commonly leak into error text with ``[REDACTED]``.

    Covers API keys shaped like ``sk-...`` (and GitHub, Slack, AWS, Google keys),
    ``Bearer``/``Basic`` credentials, ``password=``/``token=``/``api_key=``-style
    values (also JSON-quoted), credentials inside URLs, and absolute home paths
    (replaced with ``~``).

    Args:
        text: Any text.

    Returns:
        The text with secrets replaced.
    """
    try:
        for pattern, replacement in _SECRET_PATTERNS:
            text = pattern.sub(replacement, text)
        return _HOME_RE.sub("~", text)
    except Exception:  # pragma: no cover - re.sub on a str does not fail
        return _REDACTED


_HOME_RE: Final = re.compile(r"(?:/home/[^/\s\"']+|/Users/[^/\s\"']+|/root)(?=/|\b)")


def _library_dirs() -> tuple[str, ...]:
    dirs: set[str] = set()
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        try:
            path = sysconfig.get_paths()[key]
        except KeyError:  # pragma: no cover - every CPython has these
            continue
        dirs.add(os.path.normcase(os.path.abspath(path)))
    dirs.add(os.path.normcase(os.path.abspath(os.path.dirname(os.__file__))))
    return tuple(sorted(dirs, key=len, reverse=True))


_LIB_DIRS: Final = _library_dirs()


def _is_library_frame(filename: str) -> bool:
    if "site-packages" in filename or "dist-packages" in filename:
        return True
    if filename.startswith("<frozen "):
        return True
    norm = os.path.normcase(os.path.abspath(filename)) if os.path.isabs(filename) else ""
    return any(norm.startswith(d + os.sep) for d in _LIB_DIRS) if norm else False


def _relative_path(filename: str, base: str) -> str:
    if not os.path.isabs(filename):
        return filename
    try:
        rel = os.path.relpath(filename, base)
    except ValueError:  # pragma: no cover - different drive on Windows
        rel = filename
    if rel.startswith(".."):
        # Outside the project: keep only the last two parts, never an absolute path.
        parts = PurePath(filename).parts
        return "/".join(parts[-2:])
    return rel


def _clean_stack(te: traceback.TracebackException, base: str, drop_library: bool) -> None:
    frames = [
        frame
        for frame in te.stack
        if not (drop_library and _is_library_frame(frame.filename))
    ]
    for frame in frames:
        frame.filename = _relative_path(frame.filename, base)
    te.stack = traceback.StackSummary.from_list(frames)
    for linked in (te.__cause__, te.__context__):
        if linked is not None:
            _clean_stack(linked, base, drop_library)
    for member in te.exceptions or ():
        _clean_stack(member, base, drop_library)


def sanitize_traceback(
    error: BaseException | str,
    /,
    *,
    max_length: int = 4000,
    drop_library_frames: bool = True,
    relative_to: str | os.PathLike[str] | None = None,
) -> str:
    """Format an exception's traceback so it is safe to store and show.

    Frames from site-packages and the standard library are dropped (by default),
    paths are made relative to *relative_to* (the working directory by default)
    and never left absolute, secrets are redacted, and the result is cut to
    *max_length* characters, keeping the end, where the error is.

    Args:
        error: The exception (or an already formatted traceback string).
        max_length: Longest result, in characters.
        drop_library_frames: Drop site-packages and standard-library frames.
        relative_to: Directory that paths are made relative to.

    Returns:
        The sanitized traceback text. Never raises.
    """
    base = os.fspath(relative_to) if relative_to is not None else os.getcwd()
    try:
        if isinstance(error, str):
            text = error
        else:
            te = traceback.TracebackException.from_exception(
                error, capture_locals=False, compact=True, max_group_width=10, max_group_depth=5
            )
            _clean_stack(te, base, drop_library_frames)
            text = "".join(te.format())
    except Exception:
        text = _fallback_text(error)
    text = redact_secrets(text)
    if len(text) > max_length > 0:
        marker = "...[truncated]...\n"
        text = marker + text[-(max_length - len(marker)) :]
    return text


def _fallback_text(error: object) -> str:
    try:
        return f"{type(error).__name__}: {_safe_str(error)}\n"
    except Exception:  # pragma: no cover - _safe_str never raises
        return "<unformattable error>\n"


def normalize_error(value: object, /) -> BaseException:
    """Turn anything raised or passed as an error into an exception.

    An exception (including an exception group) is returned as is, so its type,
    members and chain stay inspectable. A string becomes a `NodeExecutionError`
    with that message; a mapping with a ``message`` key likewise (its ``code``, if
    it names an `ErrorCode`, is kept); anything else becomes a `NodeExecutionError`
    describing the value.

    Args:
        value: The error value.

    Returns:
        An exception instance. Never raises.
    """
    if isinstance(value, BaseException):
        return value
    if isinstance(value, type) and issubclass(value, BaseException):
        try:
            return value()
        except Exception:
            return NodeExecutionError(f"error of type {value.__name__}")
    if isinstance(value, str):
        return NodeExecutionError(_safe_str(value, limit=10_000))
    if isinstance(value, Mapping):
        message = value.get("message")
        if message is not None:
            error = NodeExecutionError(_safe_str(message, limit=10_000))
            code = value.get("code")
            if isinstance(code, str) and code in ErrorCode.__members__:
                error.code = ErrorCode(code)
            return error
    if value is None:
        return NodeExecutionError("unknown error (None was given as the error)")
    return NodeExecutionError(f"non-exception error value: {_safe_str(value)}")

