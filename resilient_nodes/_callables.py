"""Telling sync callables from async ones, once, at wrap time."""

from __future__ import annotations

import functools
import inspect

__all__ = ["callable_name", "is_async_callable"]

_MAX_UNWRAP = 64  # a __wrapped__ cycle must not hang naming


def is_async_callable(fn: object, /) -> bool:
    """Whether calling *fn* gives a coroutine.

    Sees through ``functools.partial`` and objects whose class defines
    ``async def __call__``. Every layer asks this once, when it wraps, so a sync
    function stays sync and an async one stays async.
    """
    while isinstance(fn, functools.partial):
        fn = fn.func
    if inspect.iscoroutinefunction(fn):
        return True
    if inspect.isroutine(fn) or isinstance(fn, type) or not callable(fn):
        return False
    return inspect.iscoroutinefunction(type(fn).__call__)


def callable_name(fn: object, /) -> str:
    """A readable qualified name for *fn* (used to name breakers and logs).

    Sees through partials and through wrappers that keep ``__wrapped__`` (a
    wrapper of a partial has no name of its own to copy).
    """
    for _ in range(_MAX_UNWRAP):
        if isinstance(fn, functools.partial):
            fn = fn.func
            continue
        try:
            wrapped = getattr(fn, "__wrapped__", None)
        except Exception:
            wrapped = None
        if wrapped is None or wrapped is fn:
            break
        fn = wrapped
    name = getattr(fn, "__qualname__", None) or getattr(type(fn), "__qualname__", None)
    module = getattr(fn, "__module__", None)
    if not isinstance(name, str):
        return repr(fn)
    return f"{module}.{name}" if isinstance(module, str) and module != "builtins" else name
