"""Streams: ``policy.wrap`` of a function returning an async iterator, and ``Policy.stream``.

Semantics, in one place:

- **An attempt of a stream is the call and its first item.** ``policy.wrap(fn)``
  of an async generator function (or of any function returning an async
  iterator, awaited first if it returns an awaitable, when the policy has a
  ``Policy.stream`` layer) gives a plain function that returns an async
  iterator at once; its first ``__anext__`` runs the pipeline. Every layer acts
  on attempts: a retry retries the call until an attempt produced its first
  item, a fallback moves on to an alternative (itself a stream function) while
  no item has been delivered, a chaos layer injects into the attempt.
- **After the first item the stream is committed.** The first item goes to the
  caller, and from then on nothing retries or falls back: a failure of a later
  item (the stream's own error, a stall, a whole-stream timeout) closes the
  underlying iterator and raises `NodeStreamInterruptedError` (``.items_delivered``,
  ``from`` the error). No item is ever delivered twice or dropped.
- **Position is meaning, as for timeouts.** ``Policy.stream(first_item=, idle=)``
  bounds the wait for the first item of whatever it encloses and the gap
  between later items: ``Policy.llm() | Policy.stream(first_item=10)`` gives
  each attempt 10 s to start, ``Policy.stream(first_item=10) | Policy.llm()``
  10 s for all attempts together. A stall is a `NodeTimeoutError` (retryable
  before the first item). A ``Policy.timeout(s)`` bounds the whole stream it
  encloses, from its call to the last item: before the first item as any
  timeout; afterwards each item's wait ends at that deadline too.
- **A breaker counts the whole stream.** Admission happens when an attempt
  starts; the outcome is recorded when the stream ends: a success when it ran
  out or the caller closed it early, a failure when a later item failed in a
  way that counts (a stall does). A stream dropped without being closed is
  recorded as a success when it is garbage collected, so a half-open probe is
  never held forever.
- **Closing.** Every underlying iterator we stop using (a failed attempt, a
  stall, a committed stream's failure, the caller's ``aclose()`` or ``async
  with``) is closed with ``aclose()`` (or an async ``close()``), shielded and
  bounded by `CLOSE_TIMEOUT`, so its connection is released; an error from the
  close itself is dropped in favour of the one being reported. A caller that
  breaks out of ``async for`` should close the stream (``async with
  policy.wrap(fn)(...) as stream:`` or ``contextlib.aclosing``), as with any
  async generator.
- **Cancellation** from outside passes through untouched (after the underlying
  iterator was closed), before and after the first item, on asyncio and trio.

**No scope across a yield, and the cheap path.** A cancel scope cannot be held
across the caller's code (anyio and trio forbid it: the caller's own scopes
would be corrupted) and cannot be entered twice, so "one scope per attempt
whose deadline moves" is not possible with anyio. What does move is the
deadline: one float per stream, the earliest of the idle gap and any
whole-stream deadline. On asyncio it is enforced by one timer per stream (see
`_Watchdog`), so a bounded item costs a few attribute writes, not a scope. On
trio a native ``trio.CancelScope`` (cheaper than anyio's wrapper of it) is
entered around each ``__anext__`` and left before the item is returned: trio
cancels only through scopes. (Entering the scope only when the item's
awaitable actually suspends is not safe: the stream may have entered a scope of
its own before suspending, and ours would then close out of order.)
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
from typing import TYPE_CHECKING, Any, Final, NoReturn, Self

import anyio
import anyio.lowlevel
import attrs

from ._callables import callable_name
from ._config import checked_duration
from ._control import is_control_flow
from ._fallback import Route
from ._logging import LogEvent, emit, get_logger
from ._sanitize import error_text
from ._text import describe
from ._timeout import report_timeout
from .errors import ConfigError, NodeStreamInterruptedError, NodeTimeoutError

try:
    import sniffio
except ImportError:  # pragma: no cover - anyio installs it on every supported version
    sniffio = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
    from types import TracebackType

    from ._breaker import NodeCircuitBreaker
    from ._config import TimeoutConfig

    Opener = Callable[..., Awaitable["Opened"]]

__all__ = [
    "CLOSE_TIMEOUT",
    "Opened",
    "StreamConfig",
    "base_opener",
    "bound_attempts",
    "close_quietly",
    "guard_stream",
    "is_stream_function",
    "route_stream",
    "stream_shell",
    "time_stream",
]

CLOSE_TIMEOUT: Final = 5.0
"""Bound, in seconds, on closing an underlying stream we abandon."""

EMPTY: Final = object()
"""The first item of a stream that ended without any."""


# --- configuration ------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class StreamConfig:
    """The bounds of `Policy.stream`, per attempt of whatever the layer encloses.

    Attributes:
        first_item: Seconds to wait for the first item (None: no bound).
        idle: Seconds to wait for each later item (None: no bound).
    """

    first_item: float | None = None
    idle: float | None = None

    @classmethod
    def create(cls, *, first_item: object = None, idle: object = None, path: str = "") -> Any:
        """Validate and normalise (``float`` or ``timedelta`` seconds, > 0).

        Raises:
            ConfigError: Naming each bad field.
        """
        prefix = f"{path}." if path else ""
        problems: list[tuple[str, str]] = []
        values: dict[str, float | None] = {}
        for name, value in (("first_item", first_item), ("idle", idle)):
            values[name] = (
                None
                if value is None
                else checked_duration(
                    value, f"{prefix}{name}", problems, positive=True, default=1.0
                )
            )
        if problems:
            raise ConfigError(problems)
        return cls(**values)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, path: str = "") -> StreamConfig:
        """Read the plain data `to_dict` wrote.

        Raises:
            ConfigError: On an unknown key or a bad value, with its path.
        """
        extra = sorted(describe(key) for key in data if key not in {"first_item", "idle"})
        if extra:
            raise ConfigError([(path, f"unknown key(s): {', '.join(extra)}")])
        config: StreamConfig = cls.create(
            first_item=data.get("first_item"), idle=data.get("idle"), path=path
        )
        return config

    def to_dict(self) -> dict[str, Any]:
        """The bounds that are set, as plain data."""
        return {key: value for key, value in attrs.asdict(self).items() if value is not None}


def is_stream_function(fn: object, /) -> bool:
    """Whether calling *fn* gives an async generator.

    Seen through partials and ``__wrapped__`` (so a stream function wrapped by
    another policy is one too).
    """
    while isinstance(fn, functools.partial):
        fn = fn.func
    if callable(fn):
        try:
            fn = inspect.unwrap(fn)
        except ValueError:  # a __wrapped__ cycle
            return False
    if inspect.isasyncgenfunction(fn):
        return True
    if inspect.isroutine(fn) or isinstance(fn, type) or not callable(fn):
        return False
    return inspect.isasyncgenfunction(type(fn).__call__)


# --- an opened attempt ------------------------------------------------------------------


class Opened:
    """An attempt that produced its first item, and what its layers ask of the rest.

    Attributes:
        iterator: The underlying async iterator, positioned after ``first``.
        first: The first item, or `EMPTY` if the stream ended at once.
        idle: The bound on each later item's wait, if any.
        deadline: The earliest whole-stream deadline (``anyio.current_time``
            clock), or ``math.inf``.
        timeout: The timeout layer whose deadline that is.
        enders: Called once with the stream's final error (None: success).
    """

    __slots__ = ("deadline", "enders", "first", "idle", "iterator", "timeout")

    def __init__(self, iterator: AsyncIterator[Any], first: object) -> None:
        self.iterator = iterator
        self.first = first
        self.idle: float | None = None
        self.deadline = math.inf
        self.timeout: TimeoutConfig | None = None
        self.enders: list[Callable[[BaseException | None], None]] = []

    def end(self, error: BaseException | None) -> None:
        """Tell the layers how the stream ended (each is told once)."""
        enders, self.enders = self.enders, []
        for ender in reversed(enders):
            ender(error)

    async def discard(self, error: BaseException) -> None:
        """Abandon this attempt: close the iterator and end it with *error*."""
        await close_quietly(self.iterator)
        self.end(error)


async def close_quietly(iterator: object) -> None:
    """Close *iterator* (``aclose()``, or an async ``close()``), shielded and bounded.

    A failure of the close is dropped: the caller is reporting another error,
    or none, and the close only releases a connection.
    """
    close = getattr(iterator, "aclose", None) or getattr(iterator, "close", None)
    if not callable(close):
        return
    with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
        try:
            result = close()
            if inspect.isawaitable(result):
                await result
        except Exception:
            return


async def _start(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    if hasattr(result, "__anext__"):
        return result
    if hasattr(result, "__aiter__"):
        return result.__aiter__()
    await close_quietly(result)
    raise TypeError(
        f"{callable_name(fn)} returned {describe(result)}, not an async iterator; "
        "a stream policy needs a function returning one"
    )


def base_opener(fn: Callable[..., Any]) -> Opener:
    """The innermost attempt: call *fn* and wait for the first item."""

    async def open_stream(*args: Any, **kwargs: Any) -> Opened:
        iterator = await _start(fn, args, kwargs)
        try:
            first = await iterator.__anext__()
        except StopAsyncIteration:
            return Opened(iterator, EMPTY)
        except BaseException:
            await close_quietly(iterator)
            raise
        return Opened(iterator, first)

    return open_stream


# --- layers over attempts -------------------------------------------------------------------


def _stalled(seconds: float, name: str, phase: str, delivered: int, log: Any) -> NodeTimeoutError:
    if phase == "first_item":
        text = f"node {name}: no first item within {seconds:g}s"
    else:
        text = f"node {name}: no item for {seconds:g}s after {delivered} items"
    emit(log.warning, LogEvent.STREAM_STALLED, phase=phase, bound=seconds, items=delivered)
    return NodeTimeoutError(seconds, node=name, message=text)


async def _open_before(
    deadline: float, opener: Opener, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Opened | None, Exception | None, bool]:
    """Open an attempt under *deadline*: what it opened, what it raised once cut, whether cut.

    Nothing but the deadline cancels this scope, so ``cancel_called`` means it
    fired; an error raised before that is the opener's own and propagates.
    """
    late: Exception | None = None
    found: Opened | None = None
    with anyio.CancelScope(deadline=deadline) as scope:
        try:
            found = await opener(*args, **kwargs)
        except Exception as exc:
            if not scope.cancel_called:
                raise
            late = exc
    return found, late, scope.cancel_called


def bound_attempts(opener: Opener, config: StreamConfig, name: str) -> Opener:
    """`Policy.stream`: bound the first item of what *opener* opens, and set the idle gap."""
    first_item, idle = config.first_item, config.idle
    log = get_logger(node=name)

    async def open_bounded(*args: Any, **kwargs: Any) -> Opened:
        if first_item is None:
            opened = await opener(*args, **kwargs)
        else:
            deadline = anyio.current_time() + first_item
            found, late, cut = await _open_before(deadline, opener, args, kwargs)
            if cut:
                error = _stalled(first_item, name, "first_item", 0, log)
                error.__context__ = late
                if found is not None:  # it overran: not trusted
                    await found.discard(error)
                # The caller's cancellation, if it came meanwhile, must win.
                await anyio.lowlevel.checkpoint_if_cancelled()
                raise error
            assert found is not None  # noqa: S101 - narrowing: no error means a result
            opened = found
        if idle is not None:
            opened.idle = idle if opened.idle is None else min(opened.idle, idle)
        return opened

    return open_bounded


def time_stream(opener: Opener, config: TimeoutConfig, name: str) -> Opener:
    """``Policy.timeout`` over a stream: one deadline for the attempt and its later items."""
    seconds = config.seconds

    async def open_timed(*args: Any, **kwargs: Any) -> Opened:
        deadline = anyio.current_time() + seconds
        found, late, cut = await _open_before(deadline, opener, args, kwargs)
        if cut:
            if found is not None:
                await found.discard(NodeTimeoutError(seconds, node=name))
            await report_timeout(config, name, late)
        assert found is not None  # noqa: S101 - narrowing: no error means a result
        if deadline < found.deadline:
            found.deadline, found.timeout = deadline, config
        return found

    return open_timed


def guard_stream(opener: Opener, breaker: NodeCircuitBreaker, name: str) -> Opener:
    """A breaker over a stream: admitted per attempt, recorded when the stream ends."""
    admit, release = breaker.admit, breaker.release

    async def open_guarded(*args: Any, **kwargs: Any) -> Opened:
        ticket = admit(node=name)
        try:
            opened = await opener(*args, **kwargs)
        except BaseException as error:
            release(ticket, error)
            raise
        opened.enders.append(functools.partial(release, ticket))
        return opened

    return open_guarded


def route_stream(
    opener: Opener,
    alternatives: Sequence[Callable[..., Any]],
    on: Callable[..., Any] | None,
    name: str,
) -> Opener:
    """A fallback over a stream: alternatives are tried until one gives a first item."""
    names = (name, *(callable_name(alternative) for alternative in alternatives))
    route = Route([base_opener(alt) for alt in alternatives], on, name, names=names)
    run_async = route.run_async

    async def open_routed(*args: Any, **kwargs: Any) -> Opened:
        try:
            return await opener(*args, **kwargs)
        except Exception as error:
            first = error
        opened: Opened = await run_async(args, kwargs, first)
        return opened

    return open_routed


# --- the stream the caller gets ---------------------------------------------------------------


class _Watchdog:
    """asyncio's bound on an item's wait: one timer per stream, whose deadline moves.

    A cancel scope per item would cost more than the rest of a stream step
    (anyio's scope on asyncio schedules and cancels a timer handle and keeps a
    stack per task), and one scope cannot span items (it would stay entered
    across the caller's code). So on asyncio the wait is bounded the way
    ``asyncio.timeout`` bounds it: while an item is awaited the watchdog is
    *armed* with the deadline (two attribute writes); one ``loop.call_at``
    timer per stream checks it, reschedules itself when the deadline moved
    later, and when it has passed while an item is awaited cancels the waiting
    task (``task.cancel()``). The stream takes that cancellation back
    (``task.uncancel()``) and reports the stall, unless someone else cancelled
    the task too (its ``cancelling()`` count says so), in which case the
    cancellation propagates. Nothing is pushed on anyio's scope stack, so
    scopes the underlying stream enters and leaves are untouched.
    """

    __slots__ = ("deadline", "fired", "handle", "loop", "task", "when")

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.task: asyncio.Task[Any] | None = None
        self.handle: asyncio.TimerHandle | None = None
        self.when = math.inf
        self.deadline = math.inf
        self.fired = False

    def arm(self, deadline: float, task: asyncio.Task[Any]) -> None:
        self.deadline = deadline
        self.task = task
        if self.handle is None or self.when > deadline:
            if self.handle is not None:
                self.handle.cancel()
            self.when = deadline
            self.handle = self.loop.call_at(deadline, self._check)

    def disarm(self) -> None:
        self.task = None

    def _check(self) -> None:
        self.handle = None
        task = self.task
        if task is None:  # between items: the next wait arms it again
            return
        if self.deadline - self.loop.time() > _EARLY:
            self.when = self.deadline
            self.handle = self.loop.call_at(self.deadline, self._check)
            return
        self.fired = True
        task.cancel()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        self.task = None


def _scope_factory() -> tuple[Callable[..., Any], Callable[[], float]]:
    """The cheapest cancel scope of the running (non-asyncio) backend, and its clock."""
    library = None
    if sniffio is not None:
        try:
            library = sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            library = None
    if library == "trio":
        import trio  # noqa: PLC0415 - only on trio, an optional extra

        return trio.CancelScope, trio.current_time
    return anyio.CancelScope, anyio.current_time


# asyncio runs a timer up to its clock resolution early.
_EARLY: Final = 1e-3


def _on_asyncio() -> bool:
    try:
        asyncio.current_task()
    except RuntimeError:
        return False
    return True


_NEW, _OPENING, _OPEN, _DONE = 0, 1, 2, 3


class Stream:
    """The async iterator a wrapped stream function returns (see the module docstring).

    Attributes:
        delivered: Items handed to the caller so far.
    """

    __slots__ = (
        "__weakref__",
        "_args",
        "_clock",
        "_deadline",
        "_dog",
        "_idle",
        "_iterator",
        "_kwargs",
        "_log",
        "_name",
        "_next",
        "_opened",
        "_opener",
        "_scope",
        "_state",
        "delivered",
    )

    def __init__(
        self, opener: Opener, args: tuple[Any, ...], kwargs: dict[str, Any], name: str, log: Any
    ) -> None:
        self._opener = opener
        self._args: tuple[Any, ...] | None = args
        self._kwargs: dict[str, Any] | None = kwargs
        self._name = name
        self._log = log
        self._state = _NEW
        self._opened: Opened | None = None
        self._iterator: Any = None
        self._idle: float | None = None
        self._deadline = math.inf
        self._dog: _Watchdog | None = None
        self._scope: Callable[..., Any] = anyio.CancelScope
        self._clock: Callable[[], float] = anyio.current_time
        self._next: Callable[[], Awaitable[Any]] = self._next_plain
        self.delivered = 0

    def __repr__(self) -> str:
        states = {_NEW: "new", _OPENING: "opening", _OPEN: "open", _DONE: "done"}
        return f"<Stream {self._name} {states[self._state]} delivered={self.delivered}>"

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Any:
        if self._state != _OPEN:
            return await self._first()
        try:
            item = await self._next()
        except StopAsyncIteration:
            self._finish(None)
            raise
        except BaseException as error:
            await self._fail(error)
        self.delivered += 1
        return item

    async def _first(self) -> Any:
        if self._state == _DONE:
            raise StopAsyncIteration
        if self._state == _OPENING:
            raise RuntimeError("anext(): the stream is already waiting for its first item")
        self._state = _OPENING
        args, kwargs = self._args or (), self._kwargs or {}
        self._args = self._kwargs = None
        try:
            opened = await self._opener(*args, **kwargs)
        except BaseException:
            self._state = _DONE
            raise
        if self._state == _DONE:  # closed from another task meanwhile
            await opened.discard(GeneratorExit())
            raise StopAsyncIteration
        self._opened = opened
        if opened.first is EMPTY:
            self._finish(None)
            raise StopAsyncIteration
        self._iterator = opened.iterator
        self._idle = opened.idle
        self._deadline = opened.deadline
        if self._idle is not None or self._deadline != math.inf:
            # Chosen once per stream: the cheapest bound the backend allows.
            if _on_asyncio():
                self._dog = _Watchdog()
                self._clock = self._dog.loop.time
                self._next = self._next_watched
            else:
                self._scope, self._clock = _scope_factory()
                self._next = self._next_scoped
        self._state = _OPEN
        self.delivered = 1
        return opened.first

    # --- one item ---------------------------------------------------------------------

    def _next_plain(self) -> Awaitable[Any]:
        return self._iterator.__anext__()  # type: ignore[no-any-return]

    def _item_deadline(self) -> float:
        if self._idle is None:
            return self._deadline
        return min(self._deadline, self._clock() + self._idle)

    async def _next_watched(self) -> Any:
        dog = self._dog
        assert dog is not None  # noqa: S101 - set with this method
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 - we are awaited in one
        cancelling = task.cancelling()
        dog.arm(self._item_deadline(), task)
        try:
            item = await self._iterator.__anext__()
        except BaseException as exc:
            if not dog.fired:
                raise
            late = exc
        else:
            if not dog.fired:
                return item
            # Our cancellation was swallowed by the stream and an item came:
            # take the cancellation back and keep the item.
            dog.fired = False
            task.uncancel()
            return item
        finally:
            dog.disarm()
        dog.fired = False
        if task.uncancel() > cancelling:
            # Someone else cancelled the task too: that cancellation wins.
            if isinstance(late, asyncio.CancelledError):
                raise late
            raise asyncio.CancelledError from late
        return await self._stalled(late if isinstance(late, Exception) else None)

    async def _next_scoped(self) -> Any:
        late: Exception | None = None
        with self._scope(deadline=self._item_deadline()) as scope:
            try:
                return await self._iterator.__anext__()
            except Exception as exc:
                if not scope.cancel_called:
                    raise
                late = exc
        await anyio.lowlevel.checkpoint_if_cancelled()
        return await self._stalled(late)

    async def _stalled(self, late: Exception | None) -> NoReturn:
        """Raise the error of the bound that ended an item's wait."""
        opened = self._opened
        if opened is not None and opened.timeout is not None and self._clock() >= self._deadline:
            await report_timeout(opened.timeout, self._name, late)
        assert self._idle is not None  # noqa: S101 - only the idle bound is left
        error = _stalled(self._idle, self._name, "idle", self.delivered, self._log)
        error.__context__ = late
        raise error

    # --- the end ----------------------------------------------------------------------

    def _finish(self, error: BaseException | None) -> None:
        self._state = _DONE
        self._iterator = None
        if self._dog is not None:
            self._dog.close()
        opened, self._opened = self._opened, None
        if opened is not None:
            opened.end(error)

    async def _fail(self, error: BaseException) -> NoReturn:
        iterator = self._iterator
        self._finish(error)
        await close_quietly(iterator)
        if is_control_flow(error) or isinstance(error, NodeStreamInterruptedError):
            raise error
        emit(
            self._log.warning,
            LogEvent.STREAM_INTERRUPTED,
            items_delivered=self.delivered,
            error_type=type(error).__name__,
            error_message=error_text(error),
        )
        raise NodeStreamInterruptedError(self.delivered, error, node=self._name) from error

    async def aclose(self) -> None:
        """Stop the stream: close the underlying iterator and record a success.

        The caller stopping early says nothing against the dependency.
        """
        state, iterator = self._state, self._iterator
        if state == _DONE:
            return
        self._finish(None)
        if state == _OPEN:
            await close_quietly(iterator)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # Dropped while open: release what the layers hold (a half-open probe).
        # The underlying iterator, if an async generator, is finalised by the
        # event loop's own hooks.
        if self._state == _OPEN:
            self._finish(None)


def stream_shell(opener: Opener, fn: Callable[..., Any], name: str) -> Callable[..., Stream]:
    """The function the caller gets: returns a `Stream` over *opener*'s attempts."""
    log = get_logger(node=name)

    def open_call(*args: Any, **kwargs: Any) -> Stream:
        return Stream(opener, args, kwargs, name, log)

    return functools.update_wrapper(open_call, fn)
