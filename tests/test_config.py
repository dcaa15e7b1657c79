"""Typed config: defaults, presets, validators, loading with paths, round trips."""

from __future__ import annotations

import math
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilient_nodes._config import (
    LLM_RETRY,
    MAX_DURATION,
    TOOL_RETRY,
    VALIDATION_RETRY,
    BreakerConfig,
    RetryConfig,
    TimeoutConfig,
    checked_duration,
    load_config,
    load_toml,
    to_seconds,
    unstructure_config,
)
from resilient_nodes.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path


def _problems(data: object, cls: type[Any] = RetryConfig, path: str = "retry") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(data, cls, path=path)
    assert str(caught.value).splitlines() == [
        f"{p}: {m}" if p else m for p, m in caught.value.problems
    ]
    return str(caught.value).splitlines()


def test_defaults() -> None:
    """Defaults match the design (3 attempts, 1 s doubling to 30 s, 25% jitter)."""
    retry = RetryConfig()
    assert (retry.attempts, retry.backoff, retry.multiplier, retry.max_backoff, retry.jitter) == (
        3,
        1.0,
        2.0,
        30.0,
        0.25,
    )
    assert retry.retry_on is None
    assert retry.on_retry is None
    breaker = BreakerConfig()
    assert (breaker.failure_threshold, breaker.recovery_timeout, breaker.success_threshold) == (
        5,
        60.0,
        1,
    )
    timeout = TimeoutConfig(seconds=30)
    assert (timeout.seconds, timeout.cleanup_timeout, timeout.on_timeout) == (30.0, 5.0, None)


def test_presets() -> None:
    """The seed's presets: LLM, tool and validation retries."""
    assert (LLM_RETRY.attempts, LLM_RETRY.backoff, LLM_RETRY.max_backoff) == (3, 1.0, 30.0)
    assert (TOOL_RETRY.attempts, TOOL_RETRY.backoff, TOOL_RETRY.max_backoff) == (3, 0.5, 10.0)
    assert (VALIDATION_RETRY.attempts, VALIDATION_RETRY.backoff) == (2, 0.1)
    for preset in (LLM_RETRY, TOOL_RETRY, VALIDATION_RETRY):
        assert 0 <= preset.jitter <= 1
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            preset.attempts = 9  # type: ignore[misc]


def test_timedelta_accepted_and_normalised() -> None:
    """Durations may be timedeltas or ints and are stored as float seconds."""
    retry = RetryConfig(backoff=timedelta(milliseconds=250), max_backoff=timedelta(minutes=1))
    assert retry.backoff == 0.25
    assert retry.max_backoff == 60.0
    assert type(RetryConfig(backoff=2).backoff) is float
    assert TimeoutConfig(seconds=timedelta(seconds=3)).seconds == 3.0
    assert to_seconds(timedelta(seconds=1.5)) == 1.5
    assert to_seconds(3) == 3.0


@pytest.mark.parametrize(
    ("data", "line"),
    [
        ({"attempts": 0}, "retry.attempts: must be >= 1, got 0"),
        ({"attempts": 1001}, "retry.attempts: must be <= 1000, got 1001"),
        ({"attempts": True}, "retry.attempts: must be an integer, got True (bool)"),
        ({"attempts": "3"}, "retry.attempts: must be an integer, got '3' (str)"),
        ({"attempts": 3.0}, "retry.attempts: must be an integer, got 3.0 (float)"),
        ({"backoff": -1}, "retry.backoff: must be >= 0, got -1"),
        ({"backoff": float("nan")}, "retry.backoff: must be finite, got nan"),
        ({"backoff": float("inf")}, "retry.backoff: must be finite, got inf"),
        (
            {"backoff": 10**400},
            "retry.backoff: must be finite, got 1" + "0" * 76 + "... (int)",
        ),
        (
            {"backoff": "1s"},
            "retry.backoff: must be a duration in seconds (int, float or timedelta), got '1s' (str)",
        ),
        (
            {"backoff": False},
            "retry.backoff: must be a duration in seconds (int, float or timedelta), got False (bool)",
        ),
        ({"backoff": 5, "max_backoff": 1}, "retry.max_backoff: must be >= backoff (5), got 1"),
        ({"max_backoff": -2}, "retry.max_backoff: must be >= 0, got -2"),
        ({"multiplier": 0.5}, "retry.multiplier: must be >= 1, got 0.5"),
        ({"multiplier": 101}, "retry.multiplier: must be <= 100, got 101"),
        ({"multiplier": "2"}, "retry.multiplier: must be a number, got '2' (str)"),
        ({"multiplier": True}, "retry.multiplier: must be a number, got True (bool)"),
        ({"multiplier": float("nan")}, "retry.multiplier: must be finite, got nan"),
        (
            {"multiplier": 10**400},
            "retry.multiplier: must be finite, got 1" + "0" * 76 + "... (int)",
        ),
        ({"jitter": 1.5}, "retry.jitter: must be <= 1, got 1.5"),
        ({"jitter": -0.1}, "retry.jitter: must be >= 0, got -0.1"),
        ({"max_retry_after": -1}, "retry.max_retry_after: must be >= 0, got -1"),
        ({"bogus": 1, "other": 2}, "retry: unknown key(s): bogus, other"),
    ],
)
def test_retry_validators(data: dict[str, Any], line: str) -> None:
    """Each retry validator reports `path: message` through load_config."""
    assert _problems(data) == [line]


@pytest.mark.parametrize(
    ("data", "line"),
    [
        ({"failure_threshold": 0}, "breaker.failure_threshold: must be >= 1, got 0"),
        ({"success_threshold": 0}, "breaker.success_threshold: must be >= 1, got 0"),
        ({"recovery_timeout": 0}, "breaker.recovery_timeout: must be > 0, got 0"),
        ({"recovery_timeout": -5}, "breaker.recovery_timeout: must be >= 0, got -5"),
    ],
)
def test_breaker_validators(data: dict[str, Any], line: str) -> None:
    """Each breaker validator names its field."""
    assert _problems(data, BreakerConfig, "breaker") == [line]


@pytest.mark.parametrize(
    ("data", "line"),
    [
        ({}, "timeout.seconds: is required"),
        ({"seconds": 0}, "timeout.seconds: must be > 0, got 0"),
        ({"seconds": 1, "cleanup_timeout": 0}, "timeout.cleanup_timeout: must be > 0, got 0"),
        (
            {"seconds": 1, "on_timeout": 3},
            "timeout.on_timeout: must be callable or None, got 3 (int)",
        ),
    ],
)
def test_timeout_validators(data: dict[str, Any], line: str) -> None:
    """Each timeout validator names its field; seconds is required."""
    assert _problems(data, TimeoutConfig, "timeout") == [line]


_DURATION_FIELDS = [
    (TimeoutConfig, "seconds", {}),
    (TimeoutConfig, "cleanup_timeout", {"seconds": 1}),
    (BreakerConfig, "recovery_timeout", {}),
    (RetryConfig, "backoff", {}),
    (RetryConfig, "max_backoff", {}),
    (RetryConfig, "max_retry_after", {}),
]


@pytest.mark.parametrize(("cls", "field", "base"), _DURATION_FIELDS)
@pytest.mark.parametrize(
    ("value", "shown"),
    [(1e10, "1e+10"), (1e308, "1e+308"), (10**12, "1e+12"), (timedelta(days=365), "3.1536e+07")],
)
def test_huge_finite_durations_are_config_errors(
    cls: type[Any], field: str, base: dict[str, Any], value: object, shown: str
) -> None:
    """A finite duration past MAX_DURATION is refused when built, naming the field.

    Before, ``Policy.timeout(1e10)`` on a sync function (and a breaker or retry
    with such durations) raised OverflowError only when called.
    """
    line = f"must be <= 2073600 (24 days), got {shown}"
    with pytest.raises(ConfigError) as caught:
        cls(**base, **{field: value})
    assert caught.value.problems == ((field, line),)
    assert _problems({**base, field: value}, cls, "cfg") == [f"cfg.{field}: {line}"]


@pytest.mark.parametrize(("cls", "field", "base"), _DURATION_FIELDS)
def test_max_duration_itself_is_accepted(cls: type[Any], field: str, base: dict[str, Any]) -> None:
    """MAX_DURATION (as seconds or as a timedelta) is a valid value of every duration."""
    extra = {"max_backoff": MAX_DURATION} if field == "backoff" else {}
    assert getattr(cls(**base, **extra, **{field: MAX_DURATION}), field) == MAX_DURATION
    assert getattr(cls(**base, **extra, **{field: timedelta(days=24)}), field) == MAX_DURATION
    with pytest.raises(ConfigError):
        cls(**base, **extra, **{field: math.nextafter(MAX_DURATION, math.inf)})


def test_max_duration_fits_every_platforms_waits() -> None:
    """24 days; a jittered backoff (up to twice it) still fits every platform's waits.

    ``threading.TIMEOUT_MAX`` is 49.7 days on Windows (2**32 ms), the smallest
    of any platform; larger waits raise OverflowError.
    """
    assert timedelta(seconds=MAX_DURATION) == timedelta(days=24)
    assert min(threading.TIMEOUT_MAX, 2**32 / 1000) > 2 * MAX_DURATION


def test_the_shared_duration_check_refuses_huge_values() -> None:
    """to_seconds and checked_duration (used by chaos and Redis options) share the bound."""
    with pytest.raises(ConfigError, match=r"^delay: must be <= 2073600 \(24 days\), got 1e\+10$"):
        to_seconds(1e10, name="delay")
    problems: list[tuple[str, str]] = []
    assert checked_duration(1e10, "lease", problems, positive=True, default=1.0) == 1.0
    assert problems == [("lease", "must be <= 2073600 (24 days), got 1e+10")]
    assert checked_duration(MAX_DURATION, "lease", problems, positive=True, default=1.0) == (
        MAX_DURATION
    )


def test_every_problem_is_listed() -> None:
    """All problems are reported at once, unknown keys included."""
    lines = _problems({"attempts": 0, "jitter": 2, "backoff": "x", "surprise": 1})
    assert lines == [
        "retry: unknown key(s): surprise",
        "retry.attempts: must be >= 1, got 0",
        "retry.backoff: must be a duration in seconds (int, float or timedelta), got 'x' (str)",
        "retry.jitter: must be <= 1, got 2",
    ]


def test_direct_construction_raises_config_error_with_field_path() -> None:
    """Building a config directly raises ConfigError naming the field."""
    with pytest.raises(ConfigError, match=r"^attempts: must be >= 1, got 0$"):
        RetryConfig(attempts=0)
    with pytest.raises(ConfigError, match="retry_on"):
        RetryConfig(retry_on=(ValueError, "nope"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="retry_on"):
        RetryConfig(retry_on=())
    with pytest.raises(ConfigError, match="on_retry"):
        RetryConfig(on_retry="callback")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="seconds: must be >= 0"):
        to_seconds(-1)
    assert RetryConfig(retry_on=(ValueError, KeyError)).retry_on == (ValueError, KeyError)
    assert RetryConfig(retry_on=lambda _e: True).retry_on is not None


@attrs.frozen
class Layers:
    layers: list[RetryConfig]
    breaker: BreakerConfig = attrs.field(factory=BreakerConfig)


def test_nested_paths_through_lists() -> None:
    """Problems inside a list of configs carry the index path."""
    lines = _problems(
        {"layers": [{}, {"attempts": 0}, {"nope": 1}, 5], "breaker": {"failure_threshold": 0}},
        Layers,
        "cfg",
    )
    assert lines == [
        "cfg.layers[1].attempts: must be >= 1, got 0",
        "cfg.layers[2]: unknown key(s): nope",
        "cfg.layers[3]: must be a table/mapping, got 5 (int)",
        "cfg.breaker.failure_threshold: must be >= 1, got 0",
    ]
    assert _problems({"layers": [{}, {"attempts": 0}]}, Layers, "") == [
        "layers[1].attempts: must be >= 1, got 0"
    ]
    assert _problems({}, Layers, "") == ["layers: is required"]
    assert _problems({"layers": 3}, Layers, "")[0].startswith("layers: invalid value")
    assert _problems({"layers": [], "extra": 1}, Layers, "") == ["unknown key(s): extra"]
    loaded = load_config({"layers": [{"attempts": 5}]}, Layers)
    assert loaded.layers == [RetryConfig(attempts=5)]


def test_top_level_must_be_a_mapping() -> None:
    """Non-mapping data is a ConfigError at the given path."""
    assert _problems([1, 2], RetryConfig, "retry") == [
        "retry: must be a table/mapping, got [1, 2] (list)"
    ]


_valid_retry = st.builds(
    lambda attempts, backoff, extra, multiplier, jitter, max_retry_after: RetryConfig(
        attempts=attempts,
        backoff=backoff,
        max_backoff=backoff + extra,
        multiplier=multiplier,
        jitter=jitter,
        max_retry_after=max_retry_after,
    ),
    st.integers(1, 1000),
    st.floats(0, 1e6),
    st.floats(0, 1e6),
    st.floats(1, 100),
    st.floats(0, 1),
    st.floats(0, 1e6),
)


@given(_valid_retry)
def test_retry_round_trip(config: RetryConfig) -> None:
    """unstructure then load gives an equal RetryConfig."""
    data = unstructure_config(config)
    assert set(data) == {
        "attempts",
        "backoff",
        "multiplier",
        "max_backoff",
        "jitter",
        "max_retry_after",
    }
    assert load_config(data, RetryConfig) == config


@given(st.integers(1, 10**6), st.floats(1e-3, 1e6), st.integers(1, 10**6))
def test_breaker_and_timeout_round_trip(failures: int, seconds: float, successes: int) -> None:
    """Breaker and timeout configs round-trip too."""
    breaker = BreakerConfig(
        failure_threshold=failures, recovery_timeout=seconds, success_threshold=successes
    )
    assert load_config(unstructure_config(breaker), BreakerConfig) == breaker
    timeout = TimeoutConfig(seconds=seconds, cleanup_timeout=seconds)
    assert load_config(unstructure_config(timeout), TimeoutConfig) == timeout


def test_unstructure_refuses_callables() -> None:
    """Code-holding fields cannot be written to plain data when set."""
    with pytest.raises(ConfigError, match="on_retry: holds a callable"):
        unstructure_config(RetryConfig(on_retry=print))
    with pytest.raises(ConfigError, match="retry_on"):
        unstructure_config(RetryConfig(retry_on=ValueError))
    with pytest.raises(ConfigError, match="on_timeout"):
        unstructure_config(TimeoutConfig(seconds=1, on_timeout=print))
    with pytest.raises(ConfigError, match="not a config object"):
        unstructure_config(object())


def test_callables_pass_through_load_config() -> None:
    """Callables given in data are kept and validated by the class."""
    loaded = load_config({"seconds": 1, "on_timeout": print}, TimeoutConfig)
    assert loaded.on_timeout is print


def test_load_toml(tmp_path: Path) -> None:
    """A TOML file loads into data that load_config accepts."""
    path = tmp_path / "nodes.toml"
    path.write_text("[retry]\nattempts = 5\nbackoff = 0.5\n\n[breaker]\nfailure_threshold = 2\n")
    data = load_toml(path)
    assert load_config(data["retry"], RetryConfig, path="retry") == RetryConfig(
        attempts=5, backoff=0.5
    )
    bad = tmp_path / "bad.toml"
    bad.write_text("[retry]\nattempts = 0\n")
    assert _problems(load_toml(bad)["retry"]) == ["retry.attempts: must be >= 1, got 0"]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"[retry\nattempts = ", "invalid TOML"),
        (b"\xff\xfe = 1", "invalid TOML"),
        (None, "cannot read"),
    ],
    ids=["malformed", "not utf-8", "missing"],
)
def test_load_toml_errors(tmp_path: Path, content: bytes | None, fragment: str) -> None:
    """Malformed, undecodable or missing files raise ConfigError naming the file."""
    path = tmp_path / "config.toml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_toml(path)
    ((where, message),) = caught.value.problems
    assert where == str(path)
    assert fragment in message


def test_nan_is_not_silently_accepted_anywhere() -> None:
    """NaN is rejected in every float field."""
    for name in ("backoff", "max_backoff", "multiplier", "jitter", "max_retry_after"):
        with pytest.raises(ConfigError, match=name):
            RetryConfig(**{name: math.nan})
