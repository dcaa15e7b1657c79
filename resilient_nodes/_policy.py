"""The policy composer: ``Policy.llm() | Policy.breaker() | Policy.timeout(30)``.

A `Policy` is an immutable sequence of layers. ``a | b`` puts b's layers inside
a's: **left is outermost**. Position gives meaning:

* ``Policy.timeout(120) | Policy.llm() | Policy.timeout(30)``: 120 s for the whole
  call, backoff sleeps included, and 30 s per attempt.
* ``Policy.llm() | Policy.breaker()``: the breaker counts every attempt.
* ``Policy.breaker() | Policy.llm()``: the breaker counts each whole call once.

A retry never starts a backoff sleep that would end past an enclosing timeout: it
stops at once with `NodeRetryExhaustedError` instead.

Compositions that cannot mean anything useful are **rejected** with a
`ConfigError` when they are built, rather than warned about, because a warning in
a long-running worker is easily missed while the behaviour is plainly wrong:

* a retry inside a retry (the attempts multiply: 3 x 3 = 9 calls);
* more than one breaker (each failure would be counted twice);
* a timeout inside a timeout that is not shorter, with no retry between them
  (the inner one can never fire first).

* ``Policy.fallback(backup) | Policy.llm() | Policy.breaker()``: the primary's
  retries run first, then *backup*; an open breaker goes to *backup* at once.

Each layer is a thin adapter over its library (retry on tenacity, breaker on
pybreaker, timeout on anyio) or a small module of our own (fallback in
`resilient_nodes._fallback`); this module only composes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final, ParamSpec, TypeVar, overload

import attrs

from . import _config
from ._breaker import NodeCircuitBreaker, wrap_breaker
from ._bulkhead import Bulkhead, hold_stream, wrap_bulkhead
from ._callables import callable_name
from ._chaos import ChaosConfig, wrap_chaos
from ._config import (
    BreakerConfig,
    BulkheadConfig,
    RateLimitConfig,
    RetryBudget,
    RetryConfig,
    TimeoutConfig,
    load_config,
    unstructure_config,
)
from ._fallback import wrap_fallback
from ._ratelimit import RateLimiter, wrap_rate_limit
from ._retry import wrap_retry
from ._stream import (
    StreamConfig,
    base_opener,
    bound_attempts,
    guard_stream,
    is_stream_function,
    route_stream,
    stream_shell,
    time_stream,
)
from ._text import describe, safe_text
from ._timeout import wrap_timeout
from .errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable
    from os import PathLike


__all__ = ["Policy", "load_node_policies"]

P = ParamSpec("P")
T = TypeVar("T")

_PRESETS: Final[Mapping[str, RetryConfig]] = {
    "llm": _config.LLM_RETRY,
    "tool": _config.TOOL_RETRY,
    "validation": _config.VALIDATION_RETRY,
}


def _call_args(defaults: object, config: Any, skip: Sequence[str] = ()) -> str:
    """``name=value`` for every field of *config* that differs from *defaults*."""
    parts = []
    for field in attrs.fields(type(config)):
        if field.name in skip:
            continue
        value = getattr(config, field.name)
        if value != getattr(defaults, field.name, attrs.NOTHING):
            parts.append(f"{field.name}={_value_repr(value)}")
    return ", ".join(parts)


def _value_repr(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return repr(int(value)) if abs(value) < 1e15 else repr(value)
    if isinstance(value, type):
        return value.__qualname__
    if isinstance(value, tuple) and value and all(isinstance(v, type) for v in value):
        return (
            "(" + ", ".join(v.__qualname__ for v in value) + ("," if len(value) == 1 else "") + ")"
        )
    if callable(value):
        return callable_name(value)
    return repr(value)


@attrs.frozen
class _RetryLayer:
    kind: ClassVar[str] = "retry"
    config: RetryConfig
    preset: str | None = attrs.field(default=None, eq=False)

    def expr(self) -> str:
        if self.preset is not None:
            return f"Policy.{self.preset}({_call_args(_PRESETS[self.preset], self.config)})"
        return f"Policy.retry({_call_args(RetryConfig(), self.config)})"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.kind}
        if self.preset is not None:
            data["preset"] = self.preset
        data.update(unstructure_config(self.config))
        return data

    def wrap(self, fn: Callable[..., Any], name: str, breakers: list[NodeCircuitBreaker]) -> Any:
        del breakers
        return wrap_retry(fn, self.config, name=name)


@attrs.frozen
class _TimeoutLayer:
    kind: ClassVar[str] = "timeout"
    config: TimeoutConfig

    def expr(self) -> str:
        rest = _call_args(
            TimeoutConfig(seconds=self.config.seconds), self.config, skip=("seconds",)
        )
        seconds = _value_repr(self.config.seconds)
        return f"Policy.timeout({seconds}{', ' + rest if rest else ''})"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, **unstructure_config(self.config)}

    def wrap(self, fn: Callable[..., Any], name: str, breakers: list[NodeCircuitBreaker]) -> Any:
        del breakers
        return wrap_timeout(fn, self.config, name=name)

    def wrap_stream(
        self, opener: Callable[..., Any], name: str, breakers: list[NodeCircuitBreaker]
    ) -> Any:
        del breakers
        return time_stream(opener, self.config, name)


@attrs.frozen
class _BreakerLayer:
    kind: ClassVar[str] = "breaker"
    config: BreakerConfig
    storage: Any = attrs.field(default=None, eq=False)

    def expr(self) -> str:
        args = _call_args(BreakerConfig(), self.config)
        if self.storage is not None:
            args = f"{args}, storage={self.storage!r}" if args else f"storage={self.storage!r}"
        return f"Policy.breaker({args})"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.kind, **unstructure_config(self.config)}
        if not self.config.rate_rules:
            # The window sizes mean nothing without a rate rule: left out, so a
            # plain breaker writes what it always did.
            del data["window"], data["minimum_calls"]
        if self.storage is not None:
            to_dict = getattr(self.storage, "to_dict", None)
            if to_dict is None:
                raise ConfigError(
                    [("storage", "this breaker storage cannot be written to plain data")]
                )
            data["storage"] = to_dict()
        return data

    def breaker(self, name: str, breakers: list[NodeCircuitBreaker]) -> NodeCircuitBreaker:
        breaker = NodeCircuitBreaker.from_config(name, self.config, storage=self.storage)
        breakers.append(breaker)
        return breaker

    def wrap(self, fn: Callable[..., Any], name: str, breakers: list[NodeCircuitBreaker]) -> Any:
        return wrap_breaker(fn, self.breaker(name, breakers), name=name)

    def wrap_stream(
        self, opener: Callable[..., Any], name: str, breakers: list[NodeCircuitBreaker]
    ) -> Any:
        return guard_stream(opener, self.breaker(name, breakers), name)


@attrs.frozen
class _ChaosLayer:
    kind: ClassVar[str] = "chaos"
    config: ChaosConfig

    def expr(self) -> str:
        return f"Policy.chaos({_call_args(ChaosConfig(), self.config)})"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, **self.config.to_dict()}

    def wrap(self, fn: Callable[..., Any], name: str, breakers: list[NodeCircuitBreaker]) -> Any:
        del breakers
        return wrap_chaos(fn, self.config, name=name)


# --- load control layers ------------------------------------------------


@attrs.frozen
class _BulkheadLayer:
    kind: ClassVar[str] = "bulkhead"
    config: BulkheadConfig

    def expr(self) -> str:
        queue = f", max_queue={self.config.max_queue}" if self.config.max_queue else ""
        return f"Policy.bulkhead({self.config.max_concurrent}{queue})"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, **unstructure_config(self.config)}

    def wrap(self, fn: Callable[..., Any], name: str, breakers: list[NodeCircuitBreaker]) -> Any:
        del breakers
        return wrap_bulkhead(fn, Bulkhead.from_config(name, self.config))

    def wrap_stream(
        self, opener: Callable[..., Any], name: str, breakers: list[NodeCircuitBreaker]
    ) -> Any:
        del breakers
        return hold_stream(opener, Bulkhead.from_config(name, self.config))


@attrs.frozen
class _RateLimitLayer:
    kind: ClassVar[str] = "rate_limit"
    config: RateLimitConfig

    def expr(self) -> str:
        config = self.config
        rest = _call_args(RateLimitConfig(limit=config.limit), config, skip=("limit", "per"))
        per = "" if config.per == 1.0 else f", per={_value_repr(config.per)}"
        return f"Policy.rate_limit({config.limit}{per}{', ' + rest if rest else ''})"

    def to_dict(self) -> dict[str, Any]:
        data = {"type": self.kind, **unstructure_config(self.config)}
        return {key: value for key, value in data.items() if value is not None}

    def wrap(self, fn: Callable[..., Any], name: str, breakers: list[NodeCircuitBreaker]) -> Any:
        del breakers
        return wrap_rate_limit(fn, RateLimiter(name, self.config))


# --- strategies for LLM calls -------------------------------------------------


@attrs.frozen
class _FallbackLayer:
    kind: ClassVar[str] = "fallback"
    alternatives: tuple[Callable[..., Any], ...]
    on: Callable[..., Any] | None = None

    def expr(self) -> str:
        args = [_value_repr(alternative) for alternative in self.alternatives]
        if self.on is not None:
            args.append(f"on={_value_repr(self.on)}")
        return f"Policy.fallback({', '.join(args)})"

    def to_dict(self) -> dict[str, Any]:
        raise ConfigError(
            [("alternatives", "a fallback holds callables, which cannot be written as data")]
        )

    def wrap(self, fn: Callable[..., Any], name: str, breakers: list[NodeCircuitBreaker]) -> Any:
        del breakers
        return wrap_fallback(fn, self.alternatives, self.on, name=name)

    def wrap_stream(
        self, opener: Callable[..., Any], name: str, breakers: list[NodeCircuitBreaker]
    ) -> Any:
        del breakers
        return route_stream(opener, self.alternatives, self.on, name)


@attrs.frozen
class _StreamLayer:
    kind: ClassVar[str] = "stream"
    config: StreamConfig

    def expr(self) -> str:
        args = ", ".join(
            f"{key}={_value_repr(value)}" for key, value in self.config.to_dict().items()
        )
        return f"Policy.stream({args})"

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.kind, **self.config.to_dict()}

    def wrap(self, fn: Callable[..., Any], name: str, breakers: list[NodeCircuitBreaker]) -> Any:
        del breakers
        return bound_attempts(fn, self.config, name)

    wrap_stream = wrap


_Layer = (
    _RetryLayer
    | _TimeoutLayer
    | _BreakerLayer
    | _ChaosLayer
    | _FallbackLayer
    | _StreamLayer
    | _BulkheadLayer
    | _RateLimitLayer
)


def _retry_config(layer: _Layer) -> RetryConfig:
    assert isinstance(layer, _RetryLayer)  # noqa: S101 - narrowing for mypy
    return layer.config


def _check_composition(layers: Sequence[_Layer]) -> None:
    """Reject compositions whose meaning is surely not what was intended."""
    retries = [i for i, layer in enumerate(layers) if isinstance(layer, _RetryLayer)]
    if len(retries) > 1:
        outer, inner = (_retry_config(layers[i]) for i in retries[:2])
        calls = outer.attempts * inner.attempts
        message = (
            f"a retry inside a retry multiplies the attempts ({outer.attempts} x "
            f"{inner.attempts} = {calls} calls); use one retry layer"
        )
        raise ConfigError([(f"layers[{retries[1]}]", message)])
    breakers = [i for i, layer in enumerate(layers) if isinstance(layer, _BreakerLayer)]
    if len(breakers) > 1:
        raise ConfigError(
            [
                (
                    f"layers[{breakers[1]}]",
                    "a second breaker would count every failure twice; use one",
                )
            ]
        )
    bulkheads = [i for i, layer in enumerate(layers) if isinstance(layer, _BulkheadLayer)]
    if len(bulkheads) > 1:
        message = "a bulkhead inside a bulkhead: the inner one decides alone; use one"
        raise ConfigError([(f"layers[{bulkheads[1]}]", message)])
    enclosing: float | None = None  # the nearest outer timeout not separated by a retry
    for index, layer in enumerate(layers):
        if isinstance(layer, _RetryLayer):
            enclosing = None
        elif isinstance(layer, _TimeoutLayer):
            if enclosing is not None and layer.config.seconds >= enclosing:
                message = (
                    f"a {layer.config.seconds:g}s timeout inside a {enclosing:g}s timeout "
                    "with no retry between them can never fire first"
                )
                raise ConfigError([(f"layers[{index}]", message)])
            enclosing = layer.config.seconds


def _layers_converter(value: Sequence[_Layer]) -> tuple[_Layer, ...]:
    layers = tuple(value)
    _check_composition(layers)
    return layers


@attrs.frozen(repr=False)
class Policy:
    """An immutable pipeline of resilience layers; ``|`` composes (left is outermost).

    Build with `Policy.retry`, `Policy.timeout`, `Policy.breaker`, the retry presets
    `Policy.llm`, `Policy.tool`, `Policy.validation`, `Policy.fallback`, and the
    identity `Policy.none`. Apply with `Policy.wrap` or `create_node`.
    """

    layers: tuple[_Layer, ...] = attrs.field(default=(), converter=_layers_converter)

    # --- builders -------------------------------------------------------------------

    @classmethod
    def none(cls) -> Policy:
        """The empty policy: calls pass straight through. Identity of ``|``."""
        return _NONE

    @classmethod
    def retry(
        cls,
        *,
        attempts: int = 3,
        backoff: _config.Seconds = 1.0,
        multiplier: float = 2.0,
        max_backoff: _config.Seconds = 30.0,
        jitter: float = 0.25,
        max_retry_after: _config.Seconds = 120.0,
        retry_on: type[BaseException]
        | tuple[type[BaseException], ...]
        | Callable[[Exception], bool]
        | None = None,
        on_retry: Callable[..., Any] | None = None,
        budget: RetryBudget | None = None,
    ) -> Policy:
        """Retry retryable failures with jittered exponential backoff.

        Args:
            attempts: Total attempts, the first included.
            backoff: Delay before the first retry (seconds or timedelta).
            multiplier: Growth of the delay per retry.
            max_backoff: Cap on the delay before jitter.
            jitter: Random extra fraction of the delay, 0..1.
            max_retry_after: Longest server ``Retry-After`` honoured.
            retry_on: Exception type(s) or predicate replacing the classification.
            on_retry: Called (sync or async) before each backoff sleep.
            budget: A `RetryBudget`: the node's retries over a window stay at
                most ``ratio`` x its calls plus ``minimum``; past it a failure is
                raised as it is instead of retried. Per wrapped node.

        Raises:
            ConfigError: On an invalid value, naming the field.
        """
        config = RetryConfig(
            attempts=attempts,
            backoff=backoff,
            multiplier=multiplier,
            max_backoff=max_backoff,
            jitter=jitter,
            max_retry_after=max_retry_after,
            retry_on=retry_on,
            on_retry=on_retry,
            budget=budget,
        )
        return cls((_RetryLayer(config),))

    @classmethod
    def _preset(cls, preset: str, overrides: Mapping[str, Any]) -> Policy:
        try:
            config = attrs.evolve(_PRESETS[preset], **overrides)
        except TypeError as error:
            raise ConfigError([(preset, f"unknown option: {error}")]) from None
        return cls((_RetryLayer(config, preset),))

    @classmethod
    def llm(cls, **overrides: Any) -> Policy:
        """The LLM retry preset (3 attempts, 1 s doubling to 30 s, 25% jitter).

        Args:
            **overrides: `Policy.retry` options that differ from the preset.
        """
        return cls._preset("llm", overrides)

    @classmethod
    def tool(cls, **overrides: Any) -> Policy:
        """The tool retry preset (3 attempts, 0.5 s doubling to 10 s, 25% jitter)."""
        return cls._preset("tool", overrides)

    @classmethod
    def validation(cls, **overrides: Any) -> Policy:
        """The validation retry preset (2 attempts, 0.1 s apart)."""
        return cls._preset("validation", overrides)

    @classmethod
    def timeout(
        cls,
        seconds: _config.Seconds,
        /,
        *,
        on_timeout: Callable[..., Any] | None = None,
        cleanup_timeout: _config.Seconds = 5.0,
    ) -> Policy:
        """Bound whatever this layer encloses in time.

        Args:
            seconds: The deadline (seconds or timedelta, > 0).
            on_timeout: Cleanup run (shielded, bounded) when this deadline fires.
            cleanup_timeout: Bound on ``on_timeout``.

        Raises:
            ConfigError: On an invalid value, naming the field.
        """
        config = TimeoutConfig(
            seconds=seconds,
            on_timeout=on_timeout,
            cleanup_timeout=cleanup_timeout,
        )
        return cls((_TimeoutLayer(config),))

    @classmethod
    def breaker(
        cls,
        *,
        failure_threshold: int = 5,
        recovery_timeout: _config.Seconds = 60.0,
        success_threshold: int = 1,
        storage: Any = None,
        failure_rate: float | None = None,
        slow_call_duration: _config.Seconds | None = None,
        slow_call_rate: float | None = None,
        window: int = 20,
        minimum_calls: int = 10,
    ) -> Policy:
        """A circuit breaker, one per wrapped node (shared by all its calls).

        Besides consecutive failures, it can open on a failure rate or a
        slow-call rate over the last *window* counted calls, once
        *minimum_calls* were made (as in resilience4j and Polly v8): the call
        that trips it raises its own error (or returns, if only slow), later
        calls `NodeCircuitOpenError`, and one probe decides, as always.

        Args:
            failure_threshold: Consecutive counted failures that open it.
            recovery_timeout: How long it stays open before one probe.
            success_threshold: Successful probes that close it again.
            storage: Where the breaker state lives (None: in this process; a
                `RedisBreakerStorage` shares it across processes).
            failure_rate: Open when at least this fraction (0..1] of the
                window's calls failed.
            slow_call_duration: A call taking at least this long is slow.
            slow_call_rate: Open when at least this fraction of the window's
                calls were slow (needs *slow_call_duration*).
            window: How many recent counted calls the rates look at.
            minimum_calls: Calls in the window before a rate rule may open it.

        Raises:
            ConfigError: On an invalid value, naming the field.
        """
        config = BreakerConfig(
            failure_threshold=failure_threshold,
            recovery_timeout=recovery_timeout,
            success_threshold=success_threshold,
            failure_rate=failure_rate,
            slow_call_duration=slow_call_duration,
            slow_call_rate=slow_call_rate,
            window=window,
            minimum_calls=minimum_calls,
        )
        return cls((_BreakerLayer(config, storage),))

    @classmethod
    def chaos(
        cls,
        *,
        error_rate: float = 0.0,
        errors: Any = (ConnectionError,),
        latency: _config.Seconds = 0.0,
        latency_rate: float = 1.0,
        hang_rate: float = 0.0,
        max_hang: _config.Seconds = 60.0,
        seed: int | None = None,
    ) -> Policy:
        """Inject faults into whatever this layer encloses (see `resilient_nodes._chaos`).

        Args:
            error_rate: Probability per call of raising one of *errors*.
            errors: Exception class(es), or zero-argument factories, to raise.
            latency: Extra seconds of latency.
            latency_rate: Probability per call of adding *latency*.
            hang_rate: Probability per call of hanging (until cancelled; a sync
                hang ends just past the enclosing sync deadline, or after
                *max_hang*, with `ChaosHangError`).
            max_hang: Bound on a sync hang with no enclosing deadline.
            seed: Seed for reproducible faults.

        Raises:
            ConfigError: On an invalid value, naming the field.
        """
        config = ChaosConfig.create(
            error_rate=error_rate,
            errors=errors,
            latency=latency,
            latency_rate=latency_rate,
            hang_rate=hang_rate,
            max_hang=max_hang,
            seed=seed,
        )
        return cls((_ChaosLayer(config),))

    # --- strategies for LLM calls -------------------------------------

    @classmethod
    def fallback(
        cls,
        *alternatives: Callable[..., Any],
        on: Callable[[Exception], bool] | None = None,
    ) -> Policy:
        """Try *alternatives* in order when the layers to the right fail.

        ``Policy.fallback(backup) | Policy.llm() | Policy.breaker()`` runs the
        primary's retries first, then *backup*; an open breaker on the primary
        goes to *backup* at once, with no call to the primary.

        Args:
            *alternatives: Callables of the wrapped function's kind, called with
                the same arguments (typically each wrapped by its own policy).
            on: Predicate on the exception replacing the default rule (which
                falls back on retryable, timeout, network, server and rate-limit
                errors, exhausted retries and an open circuit; never on quota,
                auth, validation or programming errors, or control flow).

        Raises:
            ConfigError: No alternative, or one that is not callable, or an
                *on* that is not callable.
        """
        # Checked at run time too, for untyped callers.
        given: tuple[object, ...] = alternatives
        predicate: object = on
        problems = [
            (f"alternatives[{index}]", f"must be callable, got {describe(alternative)}")
            for index, alternative in enumerate(given)
            if not callable(alternative)
        ]
        if not alternatives:
            problems.append(("alternatives", "at least one alternative is required"))
        if predicate is not None and not callable(predicate):
            message = f"must be a predicate on the exception, got {describe(predicate)}"
            problems.append(("on", message))
        if problems:
            raise ConfigError(problems)
        return cls((_FallbackLayer(tuple(alternatives), on),))

    @classmethod
    def stream(
        cls,
        *,
        first_item: _config.Seconds | None = None,
        idle: _config.Seconds | None = None,
    ) -> Policy:
        """Bound a stream's wait for its first item and the gap between items.

        Makes the policy a stream policy: ``policy.wrap(fn)`` for a function
        returning an async iterator gives a function returning one. Retries and
        fallbacks act only before the first item reaches the caller; afterwards a
        failure is `NodeStreamInterruptedError`. Like a timeout, the bounds apply
        to what the layer encloses: put it right of a retry for per-attempt
        bounds (``Policy.llm() | Policy.stream(first_item=10, idle=5)``).

        Args:
            first_item: Seconds (or timedelta) to wait for the first item.
            idle: Seconds (or timedelta) to wait for each later item.

        Raises:
            ConfigError: On a bound that is not a positive duration.
        """
        return cls((_StreamLayer(StreamConfig.create(first_item=first_item, idle=idle)),))

    # --- load control builders -------------------------------------------

    @classmethod
    def bulkhead(cls, max_concurrent: int, *, max_queue: int = 0) -> Policy:
        """At most *max_concurrent* calls of the node in flight at once.

        Up to *max_queue* more wait for a slot (first come, first served); the
        rest are rejected at once with `NodeBulkheadFullError`, which is not
        retried and no breaker counts. One bulkhead per wrapped node, shared by
        all its calls. A slot is never leaked, cancellation included.

        Args:
            max_concurrent: Calls in flight at once (>= 1).
            max_queue: Calls that may wait for a slot (>= 0).

        Raises:
            ConfigError: On an invalid value, naming the field.
        """
        return cls(
            (_BulkheadLayer(BulkheadConfig(max_concurrent=max_concurrent, max_queue=max_queue)),)
        )

    @classmethod
    def rate_limit(
        cls,
        limit: int,
        per: _config.Seconds = 1.0,
        *,
        cost: Callable[..., Any] | None = None,
        key: str | None = None,
        storage: str | None = None,
        max_wait: _config.Seconds | None = None,
    ) -> Policy:
        """At most *limit* calls (or cost units) in any *per* seconds.

        A call without capacity waits for it within *max_wait* and the enclosing
        deadline, else raises `NodeRateLimitedError` (not retried, never counted
        by a breaker); a call refused or cancelled while waiting consumes
        nothing. A ``Retry-After`` from the dependency pauses the key. Put it
        inside the retry (every attempt spends quota) and outside the
        per-attempt timeout (waiting is not the attempt's time).

        Args:
            limit: Calls, or cost units, per period.
            per: The period (seconds or timedelta); a moving window.
            cost: A callable of the call's arguments giving its weight, for
                example estimated tokens; None counts each call as 1.
            key: The limit's name, shared by every node and process using it;
                None: the node's name.
            storage: None for this process, or a ``redis://`` URL to share the
                limit across processes (needs the ``redis`` extra).
            max_wait: Longest wait for capacity; None waits as long as the
                enclosing deadline allows, 0 never waits.

        Raises:
            ConfigError: On an invalid value, naming the field.
        """
        config = RateLimitConfig(
            limit=limit, per=per, cost=cost, key=key, storage=storage, max_wait=max_wait
        )
        return cls((_RateLimitLayer(config),))

    # --- algebra --------------------------------------------------------------------

    def __or__(self, other: Policy) -> Policy:
        checked: object = other  # still checked at run time, for untyped callers
        if not isinstance(checked, Policy):
            return NotImplemented
        if not other.layers:
            return self
        if not self.layers:
            return other
        return Policy(self.layers + other.layers)

    def __repr__(self) -> str:
        if not self.layers:
            return "Policy.none()"
        return " | ".join(layer.expr() for layer in self.layers)

    def __bool__(self) -> bool:
        return bool(self.layers)

    # --- plain data -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The policy as plain data (JSON/TOML-able) that `from_dict` reads back.

        Raises:
            ConfigError: If a layer holds code (a callback, a predicate) that
                cannot be written out.
        """
        layers = []
        for index, layer in enumerate(self.layers):
            try:
                layers.append(layer.to_dict())
            except ConfigError as error:
                raise error.prefixed(f"layers[{index}]") from None
        return {"layers": layers}

    @classmethod
    def from_dict(cls, data: object, /, *, path: str = "") -> Policy:
        """Build a policy from plain data, as written by `to_dict`.

        A retry layer may name a ``preset`` (``llm``, ``tool``, ``validation``) and
        override some of its fields.

        Args:
            data: ``{"layers": [{"type": "retry", ...}, ...]}``.
            path: Prefix for error paths (for example ``nodes.plan``).

        Raises:
            ConfigError: Listing every problem as ``path: message``.
        """
        prefix = f"{path}." if path else ""
        if not isinstance(data, Mapping):
            raise ConfigError([(path, f"must be a table/mapping, got {type(data).__name__}")])
        problems: list[tuple[str, str]] = []
        extra = _key_list(key for key in data if key != "layers")
        if extra:
            problems.append((path, f"unknown key(s): {extra}"))
        raw = data.get("layers", [])
        if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
            problems.append((f"{prefix}layers", f"must be a list, got {type(raw).__name__}"))
            raw = ()
        layers: list[_Layer] = []
        unexpected: Exception | None = None
        for index, item in enumerate(raw):
            where = f"{prefix}layers[{index}]"
            try:
                layers.append(_layer_from_dict(item, where))
            except ConfigError as error:
                problems.extend(error.problems)
            except Exception as error:
                # A loader tripping over a value it did not expect (a key of an
                # odd type, say) is still a problem with that layer, reported
                # with the others rather than aborting the whole file.
                unexpected = unexpected or error
                problems.append((where, f"invalid layer: {_error_line(error)}"))
        if problems:
            raise ConfigError(problems) from unexpected
        try:
            return cls(tuple(layers))
        except ConfigError as error:
            raise error.prefixed(path) if path else error from None

    # --- applying -------------------------------------------------------------------

    @overload
    def wrap(
        self, fn: Callable[P, AsyncIterator[T]], /, *, name: str | None = None
    ) -> Callable[P, AsyncIterator[T]]: ...
    @overload
    def wrap(
        self, fn: Callable[P, Awaitable[T]], /, *, name: str | None = None
    ) -> Callable[P, Awaitable[T]]: ...
    @overload
    def wrap(self, fn: Callable[P, T], /, *, name: str | None = None) -> Callable[P, T]: ...
    def wrap(self, fn: Callable[P, Any], /, *, name: str | None = None) -> Callable[P, Any]:
        """Apply the pipeline to *fn*, keeping its signature and kind.

        A sync callable stays sync and an async one stays async. An async
        generator function (or, under a `Policy.stream` layer, any function
        returning an async iterator) gives a function returning an async
        iterator (see `Policy.stream`). A breaker layer
        makes one breaker for this wrapped function, named *name* (by default the
        function's qualified name), shared by all its calls. Errors propagate.

        Args:
            fn: Any callable.
            name: Name for the breaker and the logs.

        Returns:
            The wrapped callable (*fn* itself for `Policy.none`).
        """
        wrapped, _ = build_pipeline(self, fn, name or callable_name(fn))
        return wrapped


def build_pipeline(
    policy: Policy, fn: Callable[..., Any], name: str
) -> tuple[Callable[..., Any], tuple[NodeCircuitBreaker, ...]]:
    """Wrap *fn* in *policy*'s layers; also return the breakers made for it.

    Each adapter keeps the function's kind and metadata (``functools.wraps``), so
    the result has *fn*'s name and signature.
    """
    if not callable(fn):
        raise ConfigError([(name, f"must be callable, got {type(fn).__name__}")])
    breakers: list[NodeCircuitBreaker] = []
    if policy.layers and (
        is_stream_function(fn) or any(isinstance(layer, _StreamLayer) for layer in policy.layers)
    ):
        return _build_stream(policy, fn, name, breakers), tuple(breakers)
    wrapped: Callable[..., Any] = fn
    for layer in reversed(policy.layers):
        wrapped = layer.wrap(wrapped, name, breakers)
    return wrapped, tuple(breakers)


def _build_stream(
    policy: Policy, fn: Callable[..., Any], name: str, breakers: list[NodeCircuitBreaker]
) -> Callable[..., Any]:
    """The pipeline over a function returning an async iterator (see `resilient_nodes._stream`).

    Each layer wraps an *attempt* (the call and its first item). Layers whose
    meaning reaches past the first item (stream bounds, timeout, breaker,
    fallback) have a ``wrap_stream``; any other layer wraps the attempt as the
    async function it is.
    """
    opener: Callable[..., Any] = base_opener(fn)
    for layer in reversed(policy.layers):
        wrap_stream = getattr(layer, "wrap_stream", None)
        if wrap_stream is not None:
            opener = wrap_stream(opener, name, breakers)
        else:
            opener = layer.wrap(opener, name, breakers)
    return stream_shell(opener, fn, name)


_NONE: Final = Policy()


_LAYER_TYPES: Final = (
    "breaker",
    "bulkhead",
    "chaos",
    "rate_limit",
    "retry",
    "stream",
    "timeout",
)


def _key_list(keys: Iterable[object]) -> str:
    """Keys for an ``unknown key(s)`` message: as text, sorted, never raising."""
    return ", ".join(sorted(safe_text(key, 80) for key in keys))


def _error_line(error: BaseException) -> str:
    text = safe_text(error, 200)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _choice_problem(what: str, value: object, choices: Iterable[str]) -> str:
    """What is wrong with *value* as one of *choices*, for any value at all."""
    expected = ", ".join(choices)
    if value is None:
        return f"is required (one of: {expected})"
    if not isinstance(value, str):
        # describe: the value may be a table, or a list nested too deeply to repr.
        return f"must be a {what} (one of: {expected}), got {describe(value)}"
    return f"unknown {what} {safe_text(value, 80, as_repr=True)} (expected one of: {expected})"


# Layers read from their data in one step, by type.
_PLAIN_LAYERS: Final[Mapping[str, Callable[[dict[str, Any], str], _Layer]]] = {
    "timeout": lambda body, where: _TimeoutLayer(load_config(body, TimeoutConfig, path=where)),
    "chaos": lambda body, where: _ChaosLayer(ChaosConfig.from_dict(body, path=where)),
    "stream": lambda body, where: _StreamLayer(StreamConfig.from_dict(body, path=where)),
    "bulkhead": lambda body, where: _BulkheadLayer(load_config(body, BulkheadConfig, path=where)),
    "rate_limit": lambda body, where: _RateLimitLayer(
        load_config(body, RateLimitConfig, path=where)
    ),
}


def _layer_from_dict(item: object, where: str) -> _Layer:
    """One layer from plain data, reporting every problem it has at once."""
    if not isinstance(item, Mapping):
        raise ConfigError([(where, f"must be a table/mapping, got {type(item).__name__}")])
    body = dict(item)
    kind = body.pop("type", None)
    # A list or a table is no name: told apart before any lookup that hashes it.
    if not isinstance(kind, str) or kind not in _LAYER_TYPES:
        raise ConfigError([(f"{where}.type", _choice_problem("layer type", kind, _LAYER_TYPES))])
    if kind == "retry":
        return _retry_layer_from_dict(body, where)
    plain = _PLAIN_LAYERS.get(kind)
    if plain is not None:
        return plain(body, where)
    problems: list[tuple[str, str]] = []
    storage_data = body.pop("storage", None)
    try:
        config = load_config(body, BreakerConfig, path=where)
    except ConfigError as error:
        problems.extend(error.problems)
    storage = None
    if storage_data is not None:
        try:
            storage = _storage_from_dict(storage_data, f"{where}.storage")
        except ConfigError as error:
            problems.extend(error.problems)
    if problems:
        raise ConfigError(problems)
    return _BreakerLayer(config, storage)


def _retry_layer_from_dict(body: dict[str, Any], where: str) -> _RetryLayer:
    preset = body.pop("preset", None)
    problems: list[tuple[str, str]] = []
    if preset is not None:
        if isinstance(preset, str) and preset in _PRESETS:
            body = {**unstructure_config(_PRESETS[preset]), **body}
        else:
            problems.append((f"{where}.preset", _choice_problem("preset", preset, _PRESETS)))
            preset = None
    try:
        config = load_config(body, RetryConfig, path=where)
    except ConfigError as error:
        # The other fields are still checked (against the plain defaults), so one
        # pass over the file lists everything to fix.
        problems.extend(error.problems)
    if problems:
        raise ConfigError(problems)
    return _RetryLayer(config, preset)


def _storage_from_dict(data: object, where: str) -> Any:
    if not isinstance(data, Mapping) or data.get("type") != "redis":
        raise ConfigError([(where, 'must be a table with type = "redis"')])
    try:
        from ._redis_storage import (  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415 - optional extra
            RedisBreakerStorage,
        )
    except ImportError as error:  # pragma: no cover - depends on the installed extras
        raise ConfigError([(where, f"needs the 'redis' extra: {error}")]) from error
    return RedisBreakerStorage.from_dict(data, path=where)


def load_node_policies(source: str | PathLike[str] | Mapping[str, Any], /) -> dict[str, Policy]:
    """Load one policy per node from a TOML file (or its parsed data).

    The file has one table per node::

        [nodes.plan]
        layers = [
            { type = "retry", preset = "llm" },
            { type = "breaker", failure_threshold = 3 },
            { type = "timeout", seconds = 30 },
        ]

    Args:
        source: A path to a TOML file, or the already parsed mapping.

    Returns:
        ``{node name: Policy}``.

    Raises:
        ConfigError: Listing every problem with its path, such as
            ``nodes.plan.layers[2].seconds: must be > 0, got 0``.
    """
    data = source if isinstance(source, Mapping) else _config.load_toml(source)
    problems: list[tuple[str, str]] = []
    extra = _key_list(key for key in data if key != "nodes")
    if extra:
        problems.append(("", f"unknown top-level key(s): {extra}"))
    nodes = data.get("nodes", {})
    if not isinstance(nodes, Mapping):
        problems.append(("nodes", f"must be a table, got {type(nodes).__name__}"))
        nodes = {}
    policies: dict[str, Policy] = {}
    for node, spec in nodes.items():
        name = safe_text(node, 200)
        try:
            policies[name] = Policy.from_dict(spec, path=f"nodes.{name}")
        except ConfigError as error:
            problems.extend(error.problems)
    if problems:
        raise ConfigError(problems)
    return policies
