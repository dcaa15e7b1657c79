"""Fault injection: make a node fail, stall or hang on purpose, at a seeded rate.

Resilience that is never exercised is resilience nobody knows works. The chaos
layer lets you test your own graph's behaviour under faults without touching the
node's code:

.. code-block:: python

    policy = Policy.llm() | Policy.chaos(error_rate=0.3, seed=7) | Policy.timeout(5)
    plan = create_node(plan_impl, name="plan", policy=policy)

Like every layer, it acts where it stands in the pipeline (left is outermost):
inside a retry it injects into each *attempt*, so the retry has something to
absorb; outside it, into each whole call. Before calling the function it
enclosed, the layer makes up to three independent draws from its own random
generator, in this order:

1. **latency**: with probability ``latency_rate``, sleep ``latency`` seconds
   (``anyio.sleep`` for async functions, so cancellation cuts it short;
   ``time.sleep`` for sync ones);
2. **hang**: with probability ``hang_rate``, never return. An async function
   sleeps until something cancels it: put a `Policy.timeout` outside the chaos
   layer to cut it (``Policy.llm() | Policy.timeout(5) | Policy.chaos(...)``
   times out each hung attempt and retries). A sync function cannot be
   cancelled, so its hang is bounded:
   it lasts until just past the enclosing sync deadline (a sync timeout layer
   publishes one), or ``max_hang`` seconds when there is none, and then raises
   `ChaosHangError` (a ``TimeoutError``), as a socket read would after a stall;
3. **error**: with probability ``error_rate``, raise one of ``errors`` (picked
   uniformly) instead of calling the function. Each entry is an exception class,
   built with a message that says it was injected, or a zero-argument factory
   returning the exception (for example one that carries an HTTP status).

If no fault fires, the function is called as usual. With ``seed`` set, the same
sequence of calls sees the same faults (concurrent calls draw in the order they
arrive). Every injected fault is logged at info level as ``chaos.injected`` with
its ``fault`` (``latency``, ``hang`` or ``error``), so a test can count them
with ``structlog.testing.capture_logs``.

Cancellation passes through the layer untouched, as through every other layer.
"""

from __future__ import annotations

import builtins
import functools
import importlib
import math
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar

import anyio
import attrs

from ._callables import is_async_callable
from ._config import check_every_field, float_field, number, seconds_field
from ._deadline import sync_remaining
from ._logging import LogEvent, emit, get_logger
from .errors import ChaosHangError, ConfigError

if TYPE_CHECKING:
    from collections.abc import Awaitable
    from datetime import timedelta

__all__ = ["ChaosConfig", "wrap_chaos"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


# How long past the enclosing sync deadline a sync hang lasts: long enough that
# the timeout surely fires first, short enough that the abandoned thread ends soon.
_HANG_OVERRUN: Final = 0.05

ErrorSpec = type[Exception] | Callable[[], Exception]
"""An injectable error: an exception class, or a factory returning an exception."""


def _error_specs(value: ErrorSpec | Sequence[ErrorSpec]) -> tuple[ErrorSpec, ...]:
    given: object = value  # a str is a Sequence too, for untyped callers
    if isinstance(given, Sequence) and not isinstance(given, str | bytes):
        return tuple(given)
    return (value,)  # type: ignore[return-value]  # the validator reports a non-spec


def _check_error_specs(
    _inst: object, _field: attrs.Attribute[Any], specs: tuple[object, ...]
) -> None:
    problems: list[tuple[str, str]] = []
    for index, spec in enumerate(specs):
        where = f"errors[{index}]"
        if not isinstance(spec, type):
            if not callable(spec):
                problems.append(
                    (where, f"must be an exception class or a factory, got {type(spec).__name__}")
                )
        elif not issubclass(spec, Exception):
            problems.append((where, f"must be an Exception subclass, got {spec.__name__}"))
        else:
            try:
                spec("chaos")
            except Exception:
                problems.append(
                    (where, f"{spec.__name__} cannot be built from a message; pass a factory")
                )
    if not specs:
        problems.append(("errors", "must name at least one exception"))
    if problems:
        raise ConfigError(problems)


def _check_seed(_inst: object, _field: attrs.Attribute[Any], seed: object) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError([("seed", f"must be an int or None, got {type(seed).__name__}")])


@attrs.frozen(kw_only=True)
class ChaosConfig:
    """What the chaos layer injects, and how often (see the module docs).

    Validated at construction: one `ConfigError` names every invalid field.
    Durations may be given as ``timedelta`` and are stored as float seconds; a
    single error class or factory may be given for ``errors``.

    Attributes:
        error_rate: Probability, per call, of raising an injected error.
        errors: The exception classes (or factories) to raise, picked uniformly.
        latency: Seconds of extra latency.
        latency_rate: Probability, per call, of adding the latency.
        hang_rate: Probability, per call, of hanging.
        max_hang: Longest sync hang when no sync deadline encloses the call.
        seed: Seed of the layer's random generator (None: unseeded).
    """

    __attrs_pre_init__ = check_every_field

    error_rate: float = attrs.field(
        default=0.0, converter=float_field, validator=number(ge=0.0, le=1.0)
    )
    errors: tuple[ErrorSpec, ...] = attrs.field(
        default=(ConnectionError,), converter=_error_specs, validator=_check_error_specs
    )
    latency: float = attrs.field(
        default=0.0, converter=seconds_field, validator=number(duration=True)
    )
    latency_rate: float = attrs.field(
        default=1.0, converter=float_field, validator=number(ge=0.0, le=1.0)
    )
    hang_rate: float = attrs.field(
        default=0.0, converter=float_field, validator=number(ge=0.0, le=1.0)
    )
    max_hang: float = attrs.field(
        default=60.0, converter=seconds_field, validator=number(duration=True)
    )
    seed: int | None = attrs.field(default=None, validator=_check_seed)

    @classmethod
    def create(
        cls,
        *,
        error_rate: float = 0.0,
        errors: ErrorSpec | Sequence[ErrorSpec] = (ConnectionError,),
        latency: float | timedelta = 0.0,
        latency_rate: float = 1.0,
        hang_rate: float = 0.0,
        max_hang: float | timedelta = 60.0,
        seed: int | None = None,
    ) -> ChaosConfig:
        """Validate and build a config; the same as calling the class.

        Raises:
            ConfigError: Naming every invalid field.
        """
        return cls(
            error_rate=error_rate,
            errors=errors,
            latency=latency,
            latency_rate=latency_rate,
            hang_rate=hang_rate,
            max_hang=max_hang,
            seed=seed,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data that `from_dict` reads back.

        Raises:
            ConfigError: If ``errors`` holds a factory (code cannot be written out).
        """
        names = []
        for index, spec in enumerate(self.errors):
            if not isinstance(spec, type):
                raise ConfigError(
                    [(f"errors[{index}]", "is a factory, which cannot be written to plain data")]
                )
            module = spec.__module__
            names.append(
                spec.__qualname__ if module == "builtins" else f"{module}.{spec.__qualname__}"
            )
        data: dict[str, Any] = {
            "error_rate": self.error_rate,
            "errors": names,
            "latency": self.latency,
            "latency_rate": self.latency_rate,
            "hang_rate": self.hang_rate,
            "max_hang": self.max_hang,
        }
        if self.seed is not None:
            data["seed"] = self.seed
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], /, *, path: str = "") -> ChaosConfig:
        """Build a config from plain data; error classes are named by (dotted) name.

        Raises:
            ConfigError: Listing every problem with its path.
        """
        fields = {field.name for field in attrs.fields(cls)}
        unknown = sorted(str(key) for key in data if key not in fields)
        if unknown:
            raise ConfigError([(path, f"unknown key(s): {', '.join(unknown)}")])
        values = dict(data)
        if "errors" in values:
            raw = values["errors"]
            names = [raw] if isinstance(raw, str) else raw
            if not isinstance(names, Sequence):
                raise ConfigError([(f"{path}.errors", "must be a list of exception names")])
            values["errors"] = tuple(
                _resolve(name, f"{path}.errors[{index}]") for index, name in enumerate(names)
            )
        try:
            return cls.create(**values)
        except ConfigError as error:
            raise error.prefixed(path) if path else error from None


def _resolve(name: object, where: str) -> type[Exception]:
    if not isinstance(name, str):
        raise ConfigError([(where, f"must be an exception name, got {type(name).__name__}")])
    found: object = getattr(builtins, name, None)
    if found is None and "." in name:
        module, _, attribute = name.rpartition(".")
        try:
            found = getattr(importlib.import_module(module), attribute, None)
        except ImportError:
            found = None
    if not (isinstance(found, type) and issubclass(found, Exception)):
        raise ConfigError([(where, f"{name!r} does not name an exception class")])
    return found


class _Injector:
    """The layer's random source and decisions; one per wrapped function."""

    __slots__ = ("_lock", "_log", "_rng", "config", "name")

    def __init__(self, config: ChaosConfig, name: str) -> None:
        self.config = config
        self.name = name
        self._rng = random.Random(config.seed)
        self._lock = threading.Lock()
        self._log = get_logger(node=name)

    def draw(self) -> tuple[bool, bool, Exception | None]:
        """(add latency, hang, error to raise) for one call."""
        config = self.config
        with self._lock:
            rng = self._rng
            slow = (
                config.latency > 0
                and config.latency_rate > 0
                and rng.random() < config.latency_rate
            )
            hang = config.hang_rate > 0 and rng.random() < config.hang_rate
            fail = config.error_rate > 0 and rng.random() < config.error_rate
            spec = config.errors[rng.randrange(len(config.errors))] if fail else None
        error = None
        if spec is not None:
            if isinstance(spec, type):
                error = spec(f"chaos: injected {spec.__name__} in node {self.name}")
            else:
                error = spec()
        return slow, hang, error

    def note(self, fault: str, **fields: Any) -> None:
        emit(self._log.info, LogEvent.CHAOS_INJECTED, fault=fault, **fields)

    def sync_hang(self) -> float:
        remaining = sync_remaining()
        if math.isinf(remaining):
            return self.config.max_hang
        return min(self.config.max_hang, max(0.0, remaining) + _HANG_OVERRUN)


def wrap_chaos(fn: Callable[_P, _R], config: ChaosConfig, /, *, name: str) -> Callable[_P, _R]:
    """Wrap *fn* so that each call may suffer an injected fault (see the module docs).

    The result keeps *fn*'s kind (sync or async) and signature.

    Args:
        fn: The function to wrap.
        config: What to inject.
        name: Node name for the log events.

    Returns:
        The wrapped callable.
    """
    injector = _Injector(config, name)
    if is_async_callable(fn):
        afn: Callable[..., Awaitable[Any]] = fn  # type: ignore[assignment]

        @functools.wraps(fn)
        async def chaotic_async(*args: Any, **kwargs: Any) -> Any:
            slow, hang, error = injector.draw()
            if slow:
                injector.note("latency", seconds=config.latency)
                await anyio.sleep(config.latency)
            if hang:
                injector.note("hang")
                await anyio.sleep_forever()
            if error is not None:
                injector.note("error", error_type=type(error).__name__)
                raise error
            return await afn(*args, **kwargs)

        return chaotic_async  # type: ignore[return-value]

    @functools.wraps(fn)
    def chaotic_sync(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        slow, hang, error = injector.draw()
        if slow:
            injector.note("latency", seconds=config.latency)
            time.sleep(config.latency)
        if hang:
            seconds = injector.sync_hang()
            injector.note("hang", seconds=seconds)
            time.sleep(seconds)
            raise ChaosHangError(f"chaos: injected hang in node {name} ended after {seconds:g}s")
        if error is not None:
            injector.note("error", error_type=type(error).__name__)
            raise error
        return fn(*args, **kwargs)

    return chaotic_sync
