"""Text of anything, without raising: the one helper the error paths share.

Errors are described, logged and recorded on paths that must never fail, and an
object's ``__str__`` or ``__repr__`` is user code that may raise or return
megabytes. Everything that turns an arbitrary value into text for a message goes
through `safe_text`.
"""

from __future__ import annotations

__all__ = ["describe", "safe_text"]


def safe_text(value: object, /, limit: int | None = 500, *, as_repr: bool = False) -> str:
    """``str(value)`` (or ``repr``) that never raises and never returns megabytes.

    Args:
        value: Anything.
        limit: Longest text kept; None keeps it all. ``str`` text past the limit
            ends with ``... [N more chars]``; ``repr`` text is cut to *limit*
            characters ending in ``...``.
        as_repr: Use ``repr`` instead of ``str``.

    Returns:
        The text, or a placeholder naming the type when converting it raised.
    """
    try:
        text = repr(value) if as_repr else str(value)
    except Exception:
        text = "<unrepresentable>" if as_repr else f"<{_type_name(value)} with unprintable message>"
    if limit is not None and len(text) > limit:
        if as_repr:
            return text[: max(0, limit - 3)] + "..."
        return text[:limit] + f"... [{len(text) - limit} more chars]"
    return text


def describe(value: object, /, limit: int = 80) -> str:
    """A value and its type for an error message: ``'yes' (str)``."""
    return f"{safe_text(value, limit, as_repr=True)} ({_type_name(value)})"


def _type_name(value: object) -> str:
    try:
        return type(value).__name__
    except Exception:  # pragma: no cover - type() and __name__ cannot really fail
        return "object"
