"""What must pass through every layer untouched.

The backend's cancellation, ``KeyboardInterrupt``, ``SystemExit``,
``GeneratorExit`` (all ``BaseException`` but not ``Exception``) and LangGraph's
control flow (``GraphBubbleUp``: interrupts, ``Command`` to a parent, which *are*
``Exception`` subclasses) are never classified, retried, counted or captured.
LangGraph is optional, so its class is recognised by name in the MRO instead of
imported.
"""

from __future__ import annotations

from typing import Final

__all__ = ["is_control_flow"]

_BUBBLE_UP: Final = ("GraphBubbleUp", "langgraph.errors")
_cache: dict[type[BaseException], bool] = {}


def _is_bubble_up_type(cls: type[BaseException]) -> bool:
    try:
        return _cache[cls]
    except KeyError:
        pass
    result = any(
        klass.__name__ == _BUBBLE_UP[0] and klass.__module__.startswith("langgraph")
        for klass in cls.__mro__
    )
    if len(_cache) < 4096:  # bounded: exception classes can be created dynamically
        _cache[cls] = result
    return result


def is_control_flow(error: BaseException, /) -> bool:
    """Whether *error* must pass through untouched.

    Args:
        error: Any exception.

    Returns:
        True for every non-`Exception` (cancellation, interrupts, exits) and for
        LangGraph's ``GraphBubbleUp`` family, also inside an exception group.
    """
    if not isinstance(error, Exception):
        return True
    if _is_bubble_up_type(type(error)):
        return True
    if isinstance(error, BaseExceptionGroup):
        return any(is_control_flow(member) for member in error.exceptions)
    return False
