"""Typed, validated, immutable configuration for the layers.

Every class here is a frozen attrs class that validates at construction, so an
invalid value never gets as far as a running node. Durations are seconds, given as
``float`` or ``timedelta`` and normalised to ``float`` once. Loading from dicts or
TOML goes through a private cattrs converter that rejects unknown keys; every
problem becomes one ``path: what is wrong`` line of a `ConfigError`.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping
from datetime import timedelta
from os import PathLike
from typing import Any, Final, TypeVar

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)

from .errors import ConfigError

__all__ = [
    "LLM_RETRY",
    "TOOL_RETRY",
    "VALIDATION_RETRY",
    "BreakerConfig",
    "RetryConfig",
    "Seconds",
    "TimeoutConfig",
    "load_config",
    "load_toml",
    "to_seconds",
    "unstructure_config",
]

Seconds = float | int | timedelta
"""A duration: seconds as a number, or a `timedelta`."""

_T = TypeVar("_T")


# --- field converters and validators -------------------------------------------------


def _describe(value: object) -> str:
    try:
        text = repr(value)
    except Exception:
        text = "<unrepresentable>"
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({type(value).__name__})"


def to_seconds(value: object, /, *, name: str = "seconds") -> float:
    """Normalise a duration to float seconds.

    Args:
        value: ``int``, ``float`` or ``timedelta``.
        name: Field name used in the error message.

    Returns:
        The duration in seconds.

    Raises:
        ConfigError: If the value is not a finite, non-negative duration.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ConfigError(
            [(name, f"must be a duration in seconds (int, float or timedelta), got {_describe(value)}")]
        )
    if not math.isfinite(seconds):
        raise ConfigError([(name, f"must be finite, got {seconds}")])
    if seconds < 0:
        raise ConfigError([(name, f"must be >= 0, got {seconds:g}")])
    return seconds


def _seconds_converter(value: object, _self: object, field: attrs.Attribute[Any]) -> float:
    return to_seconds(value, name=field.name)


_SECONDS = attrs.Converter(_seconds_converter, takes_self=True, takes_field=True)  # type: ignore[misc,call-overload]


def _integer(low: int, high: int) -> Callable[[object, attrs.Attribute[Any], object], None]:
    def check(_inst: object, field: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError([(field.name, f"must be an integer, got {_describe(value)}")])
        if value < low:
            raise ConfigError([(field.name, f"must be >= {low}, got {value}")])
        if value > high:
            raise ConfigError([(field.name, f"must be <= {high}, got {value}")])

    return check


def _number(
    *, gt: float | None = None, ge: float | None = None, le: float | None = None
) -> Callable[[object, attrs.Attribute[Any], float], None]:
    def check(_inst: object, field: attrs.Attribute[Any], value: float) -> None:
        if gt is not None and not value > gt:
            raise ConfigError([(field.name, f"must be > {gt:g}, got {value:g}")])
        if ge is not None and not value >= ge:
            raise ConfigError([(field.name, f"must be >= {ge:g}, got {value:g}")])
        if le is not None and not value <= le:
            raise ConfigError([(field.name, f"must be <= {le:g}, got {value:g}")])

    return check


def _float_converter(value: object, _self: object, field: attrs.Attribute[Any]) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        result = float(value)
        if math.isfinite(result):
            return result
        raise ConfigError([(field.name, f"must be finite, got {result}")])
    raise ConfigError([(field.name, f"must be a number, got {_describe(value)}")])


_FLOAT = attrs.Converter(_float_converter, takes_self=True, takes_field=True)  # type: ignore[misc,call-overload]


def _optional_callable(_inst: object, field: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not callable(value):
        raise ConfigError([(field.name, f"must be callable or None, got {_describe(value)}")])


_LOCAL: Final = {"serialize": False}


# --- the config classes ---------------------------------------------------------------


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
    """

    attempts: int = attrs.field(default=3, validator=_integer(1, 1000))
    backoff: float = attrs.field(default=1.0, converter=_SECONDS)
    multiplier: float = attrs.field(default=2.0, converter=_FLOAT, validator=_number(ge=1.0, le=100.0))
    max_backoff: float = attrs.field(default=30.0, converter=_SECONDS)
    jitter: float = attrs.field(default=0.25, converter=_FLOAT, validator=_number(ge=0.0, le=1.0))
    max_retry_after: float = attrs.field(default=120.0, converter=_SECONDS)
    retry_on: (
        type[BaseException] | tuple[type[BaseException], ...] | Callable[[Exception], bool] | None
    ) = attrs.field(default=None, metadata=_LOCAL)
    on_retry: Callable[..., Any] | None = attrs.field(
        default=None, validator=_optional_callable, metadata=_LOCAL
    )

    @max_backoff.validator
    def _check_cap(self, _field: attrs.Attribute[Any], value: float) -> None:
        if value < self.backoff:
            raise ConfigError(
                [("max_backoff", f"must be >= backoff ({self.backoff:g}), got {value:g}")]
            )

    @retry_on.validator
    def _check_retry_on(self, _field: attrs.Attribute[Any], value: object) -> None:
        if value is None or callable(value) and not isinstance(value, type):
            return
        types = value if isinstance(value, tuple) else (value,)
        if not types or not all(isinstance(t, type) and issubclass(t, BaseException) for t in types):
            raise ConfigError(
                [("retry_on", f"must be exception type(s) or a predicate, got {_describe(value)}")]
            )


@attrs.frozen(kw_only=True)
class BreakerConfig:
    """When a node's circuit opens and how it recovers.

    Attributes:
        failure_threshold: Consecutive counted failures that open the circuit.
        recovery_timeout: Seconds the circuit stays open before one probe is let
            through.
        success_threshold: Successful probes in half-open state that close it.
    """

    failure_threshold: int = attrs.field(default=5, validator=_integer(1, 1_000_000))
    recovery_timeout: float = attrs.field(
        default=60.0, converter=_SECONDS, validator=_number(gt=0.0)
    )
    success_threshold: int = attrs.field(default=1, validator=_integer(1, 1_000_000))


@attrs.frozen(kw_only=True)
class TimeoutConfig:
    """A deadline for whatever the layer encloses.

    Attributes:
        seconds: The deadline, in seconds (> 0).
        on_timeout: Cleanup called (sync or async) when our deadline fires; it
            runs shielded from cancellation, bounded by ``cleanup_timeout``.
        cleanup_timeout: Bound on ``on_timeout``, in seconds.
    """

    seconds: float = attrs.field(converter=_SECONDS, validator=_number(gt=0.0))
    on_timeout: Callable[..., Any] | None = attrs.field(
        default=None, validator=_optional_callable, metadata=_LOCAL
    )
    cleanup_timeout: float = attrs.field(
        default=5.0, converter=_SECONDS, validator=_number(gt=0.0)
    )


LLM_RETRY: Final = RetryConfig(attempts=3, backoff=1.0, multiplier=2.0, max_backoff=30.0, jitter=0.25)
"""The seed's LLM preset: 3 attempts, 1 s doubling to at most 30 s, +0..25% jitter."""

TOOL_RETRY: Final = RetryConfig(attempts=3, backoff=0.5, multiplier=2.0, max_backoff=10.0, jitter=0.25)
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
    for cls, name in ((RetryConfig, "retry_on"), (RetryConfig, "on_retry"), (TimeoutConfig, "on_timeout"))
)
_converter.register_structure_hook_func(lambda t: t in _CALLABLE_TYPES, lambda value, _type: value)


def _problems(error: BaseException, path: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if isinstance(error, ConfigError):
        found.extend(error.prefixed(path).problems)
    elif isinstance(error, ClassValidationError | IterableValidationError):
        with_notes, without_notes = error.group_exceptions()
        for sub, note in with_notes:
            if isinstance(error, IterableValidationError):
                sub_path = f"{path}[{note.index}]"  # type: ignore[attr-defined]
            else:
                name = note.name  # type: ignore[attr-defined]
                sub_path = f"{path}.{name}" if path else name
            found.extend(_problems(sub, sub_path))
        for sub in without_notes:
            found.extend(_problems(sub, path))
    elif isinstance(error, ForbiddenExtraKeysError):
        keys = ", ".join(sorted(error.extra_fields))
        found.append((path, f"unknown key(s): {keys}"))
    elif isinstance(error, KeyError):
        found.append((path, f"missing required key {error.args[0]!r}"))
    elif isinstance(error, BaseExceptionGroup):
        for sub in error.exceptions:
            found.extend(_problems(sub, path))
    else:
        found.append((path, f"invalid value: {error}"))
    return found


def load_config(data: object, cls: type[_T], /, *, path: str = "") -> _T:
    """Build a config object from plain data (a dict, as from JSON or TOML).

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
        raise ConfigError([(path, f"must be a table/mapping, got {_describe(data)}")])
    try:
        return _converter.structure(data, cls)
    except ConfigError as error:
        raise error.prefixed(path) from None
    except (ClassValidationError, IterableValidationError) as error:
        raise ConfigError(_problems(error, path)) from None


def unstructure_config(config: object, /) -> dict[str, Any]:
    """Turn a config object into plain data that `load_config` reads back.

    Fields that hold code (``retry_on``, ``on_retry``, ``on_timeout``) cannot be
    written out: they are left out when unset, and refused when set.

    Raises:
        ConfigError: If a code-holding field is set.
    """
    data: dict[str, Any] = {}
    for field in attrs.fields(type(config)):
        value = getattr(config, field.name)
        if field.metadata.get("serialize", True):
            data[field.name] = _converter.unstructure(value)
        elif value is not None:
            raise ConfigError(
                [(field.name, "holds a callable, which cannot be written to plain data")]
            )
    return data


def load_toml(path: str | PathLike[str], /) -> dict[str, Any]:
    """Read a TOML file into plain data, with a `ConfigError` if it is malformed."""
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([(str(path), f"invalid TOML: {error}")]) from error
    except OSError as error:
        raise ConfigError([(str(path), f"cannot read: {error.strerror or error}")]) from error
