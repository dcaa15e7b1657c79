"""Typed, validated, immutable configuration for the layers.

Every class here is a frozen attrs class that validates at construction, so an
invalid value never gets as far as a running node. Durations are seconds, given as
``float`` or ``timedelta`` and normalised to ``float`` once; every duration is
finite and at most `MAX_DURATION` (24 days). Loading from dicts or
TOML goes through a private cattrs converter that rejects unknown keys; every
problem becomes one ``path: what is wrong`` line of a `ConfigError`.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)

from ._text import describe, safe_text
from .errors import ConfigError

if TYPE_CHECKING:
    from os import PathLike

__all__ = [
    "LLM_RETRY",
    "MAX_DURATION",
    "TOOL_RETRY",
    "VALIDATION_RETRY",
    "BreakerConfig",
    "BulkheadConfig",
    "RateLimitConfig",
    "RetryBudget",
    "RetryConfig",
    "Seconds",
    "TimeoutConfig",
    "load_config",
    "unstructure_config",
]

Seconds = float | int | timedelta
"""A duration: seconds as a number, or a `timedelta` (finite, 0..`MAX_DURATION`)."""

_T = TypeVar("_T")


# --- field converters and validators -------------------------------------------------


_DURATION_TYPES: Final = "a duration in seconds (int, float or timedelta)"

MAX_DURATION: Final = 24 * 24 * 3600.0
"""The longest duration any option accepts: 24 days, in seconds.

Checked when a config is built, so a huge finite value (``Policy.timeout(1e10)``)
is a `ConfigError` naming the field rather than an ``OverflowError`` from a wait
at call time. It is the same on every platform and under the smallest
``threading.TIMEOUT_MAX`` of any (Windows: 49.7 days) with room for a backoff
that jitter has doubled; longer than any sensible timeout, backoff or recovery
time (an open breaker that should stay open is reset by hand).
"""


def _duration_problem(value: object, *, positive: bool = False) -> str | None:
    """What is wrong with *value* as a duration in seconds (> 0 if *positive*), or None."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    elif not isinstance(value, int | float) or isinstance(value, bool):
        return f"must be {_DURATION_TYPES}, got {describe(value)}"
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return f"must be finite, got {describe(value)}"
    if not finite:
        return f"must be finite, got {value}"
    return _range_problem(value, positive=positive)


def _range_problem(value: float, *, positive: bool) -> str | None:
    if positive and value <= 0:
        return f"must be > 0, got {value:g}"
    if value < 0:
        return f"must be >= 0, got {value:g}"
    if value > MAX_DURATION:
        return f"must be <= {MAX_DURATION:.0f} (24 days), got {value:g}"
    return None


def checked_duration(
    value: object, name: str, problems: list[tuple[str, str]], *, positive: bool, default: float
) -> float:
    """*value* in seconds, or *default* after adding its problem to *problems*.

    The one check-and-convert of a duration: `to_seconds` raises what it
    collects, and the chaos and Redis storage options collect every problem of
    their mapping before raising one `ConfigError`.
    """
    problem = _duration_problem(value, positive=positive)
    if problem is not None:
        problems.append((name, problem))
        return default
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)  # type: ignore[arg-type]


def to_seconds(value: object, /, *, name: str = "seconds") -> float:
    """Normalise a duration to float seconds.

    Args:
        value: ``int``, ``float`` or ``timedelta``.
        name: Field name used in the error message.

    Returns:
        The duration in seconds.

    Raises:
        ConfigError: If the value is not a finite, non-negative duration of at
            most `MAX_DURATION` (a bool is not a number here).
    """
    problems: list[tuple[str, str]] = []
    seconds = checked_duration(value, name, problems, positive=False, default=0.0)
    if problems:
        raise ConfigError(problems)
    return seconds


# attrs converters cannot name the field they convert (not in a form the mypy
# plugin understands), so they only normalise what is valid and pass anything else
# through unchanged; the validators, which do get the field, report the problem.


def seconds_field(value: Seconds) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float_field(value)


def float_field(value: float) -> float:
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # too large for a float: the validator says so
            return value
    return value


def _integer(low: int, high: int) -> Callable[[object, attrs.Attribute[Any], object], None]:
    def check(_inst: object, field: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError([(field.name, f"must be an integer, got {describe(value)}")])
        if value < low:
            raise ConfigError([(field.name, f"must be >= {low}, got {value}")])
        if value > high:
            raise ConfigError([(field.name, f"must be <= {high}, got {value}")])

    return check


def _number_problem(value: object, *, duration: bool) -> str | None:
    if duration:
        return _duration_problem(value)
    if isinstance(value, int) and not isinstance(value, bool):  # left as is: too large
        return f"must be finite, got {describe(value)}"
    if not isinstance(value, float):
        return f"must be a number, got {describe(value)}"
    if not math.isfinite(value):
        return f"must be finite, got {value}"
    return None


def number(
    *,
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
    duration: bool = False,
) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    def check(_inst: object, field: attrs.Attribute[Any], value: Any) -> None:
        problem = _number_problem(value, duration=duration)
        if problem is None and gt is not None and not value > gt:
            problem = f"must be > {gt:g}, got {value:g}"
        if problem is None and ge is not None and not value >= ge:
            problem = f"must be >= {ge:g}, got {value:g}"
        if problem is None and le is not None and not value <= le:
            problem = f"must be <= {le:g}, got {value:g}"
        if problem is not None:
            raise ConfigError([(field.name, problem)])

    return check


def _optional_callable(_inst: object, field: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not callable(value):
        raise ConfigError([(field.name, f"must be callable or None, got {describe(value)}")])


def check_every_field(self: attrs.AttrsInstance, **values: Any) -> None:
    """An ``__attrs_pre_init__`` that reports every invalid field, not the first.

    attrs stops at the first validator that raises. A class that sets
    ``__attrs_pre_init__ = check_every_field`` runs each field's validator on its
    own first, and one `ConfigError` lists them all.

    Raises:
        ConfigError: Naming every invalid field.
    """
    problems = _field_problems(type(self), values)
    if problems:
        raise ConfigError(problems)


_LOCAL: Final = {"serialize": False}


# --- the config classes ---------------------------------------------------------------


# --- load control: bulkhead, retry budget, rate limit --------------------


@attrs.frozen(kw_only=True)
class BulkheadConfig:
    """How many calls of a node may run at once, and how many may wait.

    Attributes:
        max_concurrent: Calls in flight at once (>= 1).
        max_queue: Calls that may wait for a slot (>= 0); the rest are rejected
            at once with `NodeBulkheadFullError`.
    """

    max_concurrent: int = attrs.field(validator=_integer(1, 1_000_000))
    max_queue: int = attrs.field(default=0, validator=_integer(0, 1_000_000))


@attrs.frozen(kw_only=True, repr=False)
class RetryBudget:
    """How many retries a node may make, relative to its calls (per node, shared).

    Over the last ``window`` seconds, the node's retries may be at most
    ``ratio`` x its first attempts, plus ``minimum``. Past that, a failed
    attempt that would have been retried is raised as it is: in an outage the
    load on the dependency stays near one request per call instead of
    multiplying by the attempts.

    Attributes:
        ratio: Retries allowed per first attempt in the window (0 = only
            ``minimum``).
        minimum: Retries always allowed per window, so that a node with little
            traffic can still retry.
        window: The sliding window, in seconds.
        clock: Seconds (monotonic) for tests; None for `time.monotonic`. Code,
            so it is not written to plain data.
    """

    ratio: float = attrs.field(
        default=0.2, converter=float_field, validator=number(ge=0.0, le=1000.0)
    )
    minimum: int = attrs.field(default=10, validator=_integer(0, 1_000_000_000))
    window: float = attrs.field(
        default=10.0, converter=seconds_field, validator=number(gt=0.0, duration=True)
    )
    clock: Callable[[], float] | None = attrs.field(
        default=None, validator=_optional_callable, eq=False, metadata=_LOCAL
    )

    def __repr__(self) -> str:
        parts = []
        for name, default in (("ratio", 0.2), ("minimum", 10), ("window", 10.0)):
            value = getattr(self, name)
            if value != default:
                shown = int(value) if isinstance(value, float) and value.is_integer() else value
                parts.append(f"{name}={shown!r}")
        return f"RetryBudget({', '.join(parts)})"


def _optional_text(_inst: object, field: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError(
            [(field.name, f"must be a non-empty string or None, got {describe(value)}")]
        )


def _optional_float(value: object) -> Any:
    return None if value is None else float_field(value)  # type: ignore[arg-type]


def _optional_duration(value: object) -> Any:
    return None if value is None else seconds_field(value)  # type: ignore[arg-type]


@attrs.frozen(kw_only=True)
class RateLimitConfig:
    """How many calls (or how much cost) a node may make per period.

    Attributes:
        limit: Calls, or cost units, per period (>= 1).
        per: The period, in seconds (>= 0.001; a moving window of this length). With a
            shared storage, a whole number of seconds (the ``limits`` library
            counts Redis windows in seconds).
        cost: A callable of the call's arguments giving its weight (an int >= 0,
            for example estimated tokens); None counts every call as 1. Code, so
            it is not written to plain data.
        key: The limit's name: calls of every node and process using the same
            key, limit, period and storage share one window. None: the node's
            name.
        storage: None for this process only, or a ``redis://`` / ``rediss://``
            URL to share the limit across processes.
        max_wait: Longest wait for capacity, in seconds; None waits as long as
            the enclosing deadline allows, 0 never waits.
    """

    limit: int = attrs.field(validator=_integer(1, 10**12))
    per: float = attrs.field(
        # Shorter, a stamp plus the window can round to the stamp itself at a
        # clock of days, and no limit would hold.
        default=1.0,
        converter=seconds_field,
        validator=number(ge=0.001, duration=True),
    )
    cost: Callable[..., Any] | None = attrs.field(
        default=None, validator=_optional_callable, metadata=_LOCAL
    )
    key: str | None = attrs.field(default=None, validator=_optional_text)
    storage: str | None = attrs.field(default=None, validator=_optional_text)
    max_wait: float | None = attrs.field(
        default=None,
        converter=_optional_duration,
        validator=attrs.validators.optional(number(duration=True)),
    )

    @storage.validator
    def _check_storage(self, _field: attrs.Attribute[Any], value: str | None) -> None:
        if value is None:
            return
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                [("storage", f"must be a redis:// or rediss:// URL or None, got {value!r}")]
            )
        if not float(self.per).is_integer():
            raise ConfigError(
                [
                    (
                        "per",
                        f"must be whole seconds with a shared storage, got {self.per:g}",
                    )
                ]
            )


_LOAD_CONTROL_CONFIGS: Final = (BulkheadConfig, RetryBudget, RateLimitConfig)


def _budget_field(value: object) -> Any:
    """A retry budget from plain data (a policy file); anything else as it is.

    Never raises (see the note above `seconds_field`): data that does not load
    is left for the validator, which reports each of its problems.
    """
    if isinstance(value, Mapping):
        try:
            return load_config(value, RetryBudget)
        except ConfigError:
            return value
    return value


@attrs.frozen(kw_only=True)
class RetryConfig:
    """How to retry: attempts, backoff and what counts as retryable.

    The delay before attempt ``n + 1`` is
    ``min(backoff * multiplier ** (n - 1), max_backoff)`` plus a random
    ``0..jitter`` fraction of it, and at least a classified ``Retry-After``
    (capped at ``max_retry_after``).

    Attributes:
        attempts: Total attempts, the first included (1 disables retrying).
        backoff: Delay before the first retry, in seconds.
        multiplier: Growth factor per retry (>= 1).
        max_backoff: Cap on the exponential part, in seconds.
        jitter: Fraction of the delay added at random, 0..1 (0.25 = up to +25%).
        max_retry_after: Longest ``Retry-After`` we honour, in seconds; a server
            asking for longer gets this much.
        retry_on: Exception type(s) or a predicate deciding retryability instead
            of the classification. Never sees cancellation or control flow.
        on_retry: Called (sync or async) before each backoff sleep.
        budget: A `RetryBudget` bounding the node's retries over a window, or None.
    """

    attempts: int = attrs.field(default=3, validator=_integer(1, 1000))
    backoff: float = attrs.field(
        default=1.0, converter=seconds_field, validator=number(duration=True)
    )
    multiplier: float = attrs.field(
        default=2.0,
        converter=float_field,
        validator=number(ge=1.0, le=100.0),
    )
    max_backoff: float = attrs.field(
        default=30.0, converter=seconds_field, validator=number(duration=True)
    )
    jitter: float = attrs.field(
        default=0.25, converter=float_field, validator=number(ge=0.0, le=1.0)
    )
    max_retry_after: float = attrs.field(
        default=120.0, converter=seconds_field, validator=number(duration=True)
    )
    retry_on: (
        type[BaseException] | tuple[type[BaseException], ...] | Callable[[Exception], bool] | None
    ) = attrs.field(default=None, metadata=_LOCAL)
    on_retry: Callable[..., Any] | None = attrs.field(
        default=None, validator=_optional_callable, metadata=_LOCAL
    )
    # Issue 18: a retry budget (`RetryBudget`), per wrapped node.
    budget: RetryBudget | None = attrs.field(
        default=None, converter=_budget_field, metadata={"omit_if_none": True}
    )

    @budget.validator
    def _check_budget(self, _field: attrs.Attribute[Any], value: object) -> None:
        if value is None or isinstance(value, RetryBudget):
            return
        if isinstance(value, Mapping):  # plain data the converter could not load
            load_config(value, RetryBudget, path="budget")
        raise ConfigError([("budget", f"must be a RetryBudget or None, got {describe(value)}")])

    @max_backoff.validator
    def _check_cap(self, _field: attrs.Attribute[Any], value: float) -> None:
        # Runs after max_backoff's own check, and backoff's check ran before both.
        if value < self.backoff:
            raise ConfigError(
                [("max_backoff", f"must be >= backoff ({self.backoff:g}), got {value:g}")]
            )

    @retry_on.validator
    def _check_retry_on(self, _field: attrs.Attribute[Any], value: object) -> None:
        if value is None or (callable(value) and not isinstance(value, type)):
            return
        types = value if isinstance(value, tuple) else (value,)
        if not types or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in types
        ):
            raise ConfigError(
                [("retry_on", f"must be exception type(s) or a predicate, got {describe(value)}")]
            )


@attrs.frozen(kw_only=True)
class BreakerConfig:
    """When a node's circuit opens and how it recovers.

    Attributes:
        failure_threshold: Consecutive counted failures that open the circuit.
        recovery_timeout: Seconds the circuit stays open before one probe is let
            through.
        success_threshold: Successful probes in half-open state that close it.
        failure_rate: Open when at least this fraction (0..1] of the last
            ``window`` counted calls failed, once ``minimum_calls`` were made.
        slow_call_duration: A call taking at least this long (seconds) is slow.
        slow_call_rate: Open when at least this fraction of the last ``window``
            calls were slow, once ``minimum_calls`` were made.
        window: How many of the most recent counted calls the rates look at.
        minimum_calls: Calls in the window before a rate rule may open it.
    """

    failure_threshold: int = attrs.field(default=5, validator=_integer(1, 1_000_000))
    recovery_timeout: float = attrs.field(
        default=60.0,
        converter=seconds_field,
        validator=number(gt=0.0, duration=True),
    )
    success_threshold: int = attrs.field(default=1, validator=_integer(1, 1_000_000))
    # --- trip rules over the last `window` calls ---
    failure_rate: float | None = attrs.field(
        default=None,
        converter=_optional_float,
        validator=attrs.validators.optional(number(gt=0.0, le=1.0)),
        metadata={"omit_if_none": True},
    )
    slow_call_duration: float | None = attrs.field(
        default=None,
        converter=_optional_duration,
        validator=attrs.validators.optional(number(gt=0.0, duration=True)),
        metadata={"omit_if_none": True},
    )
    slow_call_rate: float | None = attrs.field(
        default=None,
        converter=_optional_float,
        validator=attrs.validators.optional(number(gt=0.0, le=1.0)),
        metadata={"omit_if_none": True},
    )
    window: int = attrs.field(default=20, validator=_integer(1, 100_000))
    minimum_calls: int = attrs.field(default=10, validator=_integer(1, 100_000))

    @slow_call_rate.validator
    def _check_slow_rule(self, _field: attrs.Attribute[Any], value: float | None) -> None:
        if (value is None) != (self.slow_call_duration is None):
            raise ConfigError(
                [
                    (
                        "slow_call_rate",
                        "slow_call_duration and slow_call_rate go together: give both or neither",
                    )
                ]
            )

    @minimum_calls.validator
    def _check_minimum(self, _field: attrs.Attribute[Any], value: int) -> None:
        if value > self.window:
            raise ConfigError(
                [("minimum_calls", f"must be <= window ({self.window}), got {value}")]
            )

    @property
    def rate_rules(self) -> bool:
        """Whether a failure-rate or slow-call-rate rule is set."""
        return self.failure_rate is not None or self.slow_call_rate is not None


@attrs.frozen(kw_only=True)
class TimeoutConfig:
    """A deadline for whatever the layer encloses.

    Attributes:
        seconds: The deadline, in seconds (> 0).
        on_timeout: Cleanup called (sync or async) when our deadline fires; it
            runs shielded from cancellation, bounded by ``cleanup_timeout``.
        cleanup_timeout: Bound on ``on_timeout``, in seconds.
    """

    seconds: float = attrs.field(converter=seconds_field, validator=number(gt=0.0, duration=True))
    on_timeout: Callable[..., Any] | None = attrs.field(
        default=None, validator=_optional_callable, metadata=_LOCAL
    )
    cleanup_timeout: float = attrs.field(
        default=5.0,
        converter=seconds_field,
        validator=number(gt=0.0, duration=True),
    )


LLM_RETRY: Final = RetryConfig(
    attempts=3, backoff=1.0, multiplier=2.0, max_backoff=30.0, jitter=0.25
)
"""The seed's LLM preset: 3 attempts, 1 s doubling to at most 30 s, +0..25% jitter."""

TOOL_RETRY: Final = RetryConfig(
    attempts=3, backoff=0.5, multiplier=2.0, max_backoff=10.0, jitter=0.25
)
"""The seed's tool preset: 3 attempts, 0.5 s doubling to at most 10 s."""

VALIDATION_RETRY: Final = RetryConfig(
    attempts=2, backoff=0.1, multiplier=1.0, max_backoff=1.0, jitter=0.25
)
"""The seed's validation preset: one quick retry (0.1 s) for cheap local nodes."""


# --- loading -------------------------------------------------------------------------

_converter: Final = cattrs.Converter(forbid_extra_keys=True)
# Hand values to the attrs converters and validators as they are, so the messages
# (and the strictness: no "3" -> 3, no 3.7 -> 3) are the same however a config is built.
for _passthrough in (int, float, str, bool):
    _converter.register_structure_hook(_passthrough, lambda value, _type: value)
# Fields that hold code are validated by attrs too; cattrs has no hook for them.
_CALLABLE_TYPES: Final = frozenset(
    attrs.fields_dict(attrs.resolve_types(cls))[name].type
    for cls, name in (
        (RetryConfig, "retry_on"),
        (RetryConfig, "on_retry"),
        (TimeoutConfig, "on_timeout"),
        (RateLimitConfig, "cost"),
    )
)
_converter.register_structure_hook_func(lambda t: t in _CALLABLE_TYPES, lambda value, _type: value)

_CONFIG_CLASSES: Final = frozenset(
    {RetryConfig, BreakerConfig, TimeoutConfig, *_LOAD_CONTROL_CONFIGS}
)


def _field_problems(cls: type[Any], data: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every field's problem, not just the first one ``__init__`` stops at.

    The given values are converted (our converters never raise) and each is
    validated against a stand-in instance holding the converted values and the
    defaults, so cross-field checks see what ``__init__`` would. A cross-field
    check tripping over a broken other field is skipped: that field already
    reports its own problem.
    """
    fields = attrs.fields_dict(cls)
    values = {name: field.default for name, field in fields.items()}
    for name, value in data.items():
        converter: Any = fields[name].converter  # only plain functions on our classes
        values[name] = value if converter is None else converter(value)
    stand_in = SimpleNamespace(**values)
    problems: list[tuple[str, str]] = []
    for name in (name for name in fields if name in data):  # in declaration order
        validator = fields[name].validator
        try:
            if validator is not None:
                validator(stand_in, fields[name], values[name])
        except ConfigError as error:
            problems.extend(error.problems)
        except Exception:  # noqa: S110 - see the docstring
            pass
    return problems


def _structure_config(data: object, cls: type[_T]) -> _T:
    """Build one of our config classes, reporting every problem at once."""
    if not isinstance(data, Mapping):
        raise ConfigError([("", f"must be a table/mapping, got {describe(data)}")])
    fields = attrs.fields_dict(cls)  # type: ignore[arg-type]
    problems: list[tuple[str, str]] = []
    unknown = sorted(str(key) for key in data if key not in fields or not fields[key].init)
    if unknown:
        problems.append(("", f"unknown key(s): {', '.join(unknown)}"))
    problems.extend(
        (name, "is required")
        for name, field in fields.items()
        if field.init and field.default is attrs.NOTHING and name not in data
    )
    known = {key: value for key, value in data.items() if key in fields and fields[key].init}
    if not problems:
        try:
            return cls(**known)
        except ConfigError as error:
            problems.extend(_field_problems(cls, known) or error.problems)
    else:
        problems.extend(_field_problems(cls, known))
    raise ConfigError(problems)


_converter.register_structure_hook_func(lambda t: t in _CONFIG_CLASSES, _structure_config)


def _problems(error: BaseException, path: str) -> list[tuple[str, str]]:
    """Flatten a (possibly nested) structuring error into ``(path, message)`` pairs."""
    if isinstance(error, ConfigError):
        return list(error.prefixed(path).problems)
    if isinstance(error, ClassValidationError | IterableValidationError):
        found: list[tuple[str, str]] = []
        with_notes, without_notes = error.group_exceptions()
        for sub, note in with_notes:
            if isinstance(note, IterableValidationNote):
                sub_path = f"{path}[{note.index!r}]"
            else:
                sub_path = f"{path}.{note.name}" if path else note.name
            found.extend(_problems(sub, sub_path))
        for other in without_notes:
            found.extend(_problems(other, path))
        return found
    if isinstance(error, ForbiddenExtraKeysError):
        keys = ", ".join(sorted(error.extra_fields))
        return [(path, f"unknown key(s): {keys}")]
    if isinstance(error, KeyError):
        return [(path, "is required")]
    if isinstance(error, BaseExceptionGroup):
        return [found for sub in error.exceptions for found in _problems(sub, path)]
    return [(path, f"invalid value: {safe_text(error) or type(error).__name__}")]


def load_config(data: object, cls: type[_T], /, *, path: str = "") -> _T:
    """Build a config object from plain data (a dict, as from JSON or TOML).

    Works for our config classes and for any attrs class built from them (a
    ``list[RetryConfig]`` field reports paths like ``layers[1].attempts``).

    Args:
        data: The plain data.
        cls: The config class to build.
        path: Prefix for error paths (for example ``nodes.plan``).

    Returns:
        The validated config object.

    Raises:
        ConfigError: Listing every problem as ``path: message``.
    """
    if not isinstance(data, Mapping):
        raise ConfigError([(path, f"must be a table/mapping, got {describe(data)}")])
    try:
        return _converter.structure(data, cls)
    except Exception as error:
        raise ConfigError(_problems(error, path)) from None


def unstructure_config(config: object, /) -> dict[str, Any]:
    """Turn a config object into plain data that `load_config` reads back.

    Fields that hold code (``retry_on``, ``on_retry``, ``on_timeout``) cannot be
    written out: they are left out when unset, and refused when set.

    Raises:
        ConfigError: If a code-holding field is set, or *config* is not an
            attrs instance.
    """
    if not attrs.has(type(config)):
        raise ConfigError([("", f"is not a config object: {describe(config)}")])
    data: dict[str, Any] = {}
    for field in attrs.fields(cast("type[attrs.AttrsInstance]", type(config))):
        value = getattr(config, field.name)
        if value is None and field.metadata.get("omit_if_none"):
            continue  # an optional part left out, as in a hand-written file
        if field.metadata.get("serialize", True):
            data[field.name] = _converter.unstructure(value)
        elif value is not None:
            raise ConfigError(
                [(field.name, "holds a callable, which cannot be written to plain data")]
            )
    return data


def _unstructure_budget(budget: RetryBudget) -> dict[str, Any]:
    # Written like a top-level config: a test clock is refused, with its path.
    try:
        return unstructure_config(budget)
    except ConfigError as error:
        raise error.prefixed("budget") from None


_converter.register_unstructure_hook(RetryBudget, _unstructure_budget)


def load_toml(path: str | PathLike[str], /) -> dict[str, Any]:
    """Read a TOML file into plain data.

    Raises:
        ConfigError: If the file cannot be read or is not valid TOML (including
            text that is not UTF-8, and arrays or tables nested too deeply for
            the parser), with the file name as the path.
    """
    try:
        with Path(path).open("rb") as handle:
            return tomllib.load(handle)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError([(str(path), f"invalid TOML: {error}")]) from error
    except RecursionError as error:
        # tomllib parses nested arrays and inline tables recursively, with no
        # depth limit of its own: a few hundred levels exhaust the stack.
        raise ConfigError(
            [(str(path), "invalid TOML: arrays or tables nested too deeply")]
        ) from error
    except OSError as error:
        raise ConfigError([(str(path), f"cannot read: {error.strerror or error}")]) from error
