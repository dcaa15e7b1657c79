"""Config behaviour that mutation testing showed no other test pinned.

Each test names what it pins; `tests/mutation/run.py` (``tox -e mutation``) is the
run that found the gaps. The validator factories (`_integer`, `number`) are
called here directly: the classes call them once, at import, so a test through a
class could not tell a broken factory from a working one built before it broke.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from resilient_nodes._config import (
    BreakerConfig,
    RateLimitConfig,
    RetryConfig,
    _integer,
    check_every_field,
    checked_duration,
    load_config,
    load_toml,
    number,
    seconds_field,
    unstructure_config,
)
from resilient_nodes.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

_FIELD = attrs.fields(BreakerConfig).failure_threshold


def _problem(check: Any, value: object) -> tuple[tuple[str, str], ...]:
    with pytest.raises(ConfigError) as caught:
        check(None, _FIELD, value)
    return caught.value.problems


def test_integer_validator_bounds_and_messages() -> None:
    """`_integer(low, high)` accepts exactly the ints in [low, high], bools excluded."""
    check = _integer(2, 4)
    for value in (2, 3, 4):
        check(None, _FIELD, value)
    cases: list[tuple[object, str]] = [
        (1, "must be >= 2, got 1"),
        (5, "must be <= 4, got 5"),
        (True, "must be an integer, got True (bool)"),
        (2.0, "must be an integer, got 2.0 (float)"),
        ("3", "must be an integer, got '3' (str)"),
    ]
    for value, message in cases:
        assert _problem(check, value) == (("failure_threshold", message),)


def test_number_validator_bounds_and_messages() -> None:
    """`number` checks gt/ge/le exclusively as named, and only the bounds it is given."""
    gt = number(gt=0.0)
    gt(None, _FIELD, 0.5)
    assert _problem(gt, 0.0) == (("failure_threshold", "must be > 0, got 0"),)
    ge_le = number(ge=1.0, le=3.0)
    for value in (1.0, 2.0, 3.0):
        ge_le(None, _FIELD, value)
    assert _problem(ge_le, 0.5) == (("failure_threshold", "must be >= 1, got 0.5"),)
    assert _problem(ge_le, 3.5) == (("failure_threshold", "must be <= 3, got 3.5"),)
    # Unbounded and not a duration: any finite float, negative included.
    number()(None, _FIELD, -1.0)


def test_number_validator_type_problem_comes_first() -> None:
    """A value of the wrong type is reported as such, before any bound is compared."""
    for check in (number(), number(gt=0.0), number(ge=1.0), number(le=1.0)):
        assert _problem(check, "x") == (("failure_threshold", "must be a number, got 'x' (str)"),)


def test_number_validator_duration_mode() -> None:
    """``duration=True`` adds the duration checks (>= 0) to the given bounds."""
    duration = number(duration=True)
    duration(None, _FIELD, 0.0)
    assert _problem(duration, -1.0) == (("failure_threshold", "must be >= 0, got -1"),)
    assert _problem(number(gt=0.0, duration=True), 0.0) == (
        ("failure_threshold", "must be > 0, got 0"),
    )


def test_checked_duration_positive() -> None:
    """``positive=True`` refuses zero (and only values <= 0), returning the default."""
    problems: list[tuple[str, str]] = []
    assert checked_duration(0, "lease", problems, positive=True, default=7.0) == 7.0
    assert problems == [("lease", "must be > 0, got 0")]
    assert checked_duration(0.5, "lease", problems, positive=True, default=7.0) == 0.5
    assert checked_duration(0, "lease", problems, positive=False, default=7.0) == 0.0
    assert problems == [("lease", "must be > 0, got 0")]


@attrs.frozen(kw_only=True)
class _Checked:
    __attrs_pre_init__ = check_every_field

    count: int = attrs.field(default=1, validator=_integer(1, 10))
    delay: float = attrs.field(
        default=1.0, converter=seconds_field, validator=number(gt=0.0, duration=True)
    )


def test_check_every_field_lists_every_problem() -> None:
    """`check_every_field` as ``__attrs_pre_init__`` reports all bad fields, not the first."""
    assert _Checked(count=3, delay=2).delay == 2.0
    with pytest.raises(ConfigError) as caught:
        _Checked(count=0, delay=-1)
    assert caught.value.problems == (
        ("count", "must be >= 1, got 0"),
        ("delay", "must be >= 0, got -1"),
    )


def test_cross_field_problem_is_listed_with_the_others() -> None:
    """A bad field does not hide ``max_backoff < backoff`` (checked on the converted values)."""
    with pytest.raises(ConfigError) as caught:
        load_config({"attempts": 0, "backoff": 5, "max_backoff": 1}, RetryConfig)
    assert caught.value.problems == (
        ("attempts", "must be >= 1, got 0"),
        ("max_backoff", "must be >= backoff (5), got 1"),
    )


def test_load_config_paths_default_to_the_field() -> None:
    """Without a *path*, a problem's path is the field's name alone."""
    with pytest.raises(ConfigError) as caught:
        load_config({"attempts": 0}, RetryConfig)
    assert caught.value.problems == (("attempts", "must be >= 1, got 0"),)


class _Color(enum.Enum):
    RED = "red"


@attrs.frozen
class _Outer:
    retry: RetryConfig
    color: _Color = _Color.RED


def _validated(_inst: object, _field: object, value: int) -> None:
    if value < 0:
        raise ExceptionGroup(
            "two problems",
            [ConfigError([("sign", "must be >= 0")]), ValueError()],
        )


@attrs.frozen
class _Grouped:
    value: int = attrs.field(validator=_validated)


def test_unknown_keys_of_a_nested_class_at_the_path() -> None:
    """Unknown keys of a user's attrs class are all named, sorted, at the given path."""
    with pytest.raises(ConfigError) as caught:
        load_config({"retry": {}, "y": 1, "x": 2}, _Outer, path="cfg")
    assert caught.value.problems == (("cfg", "unknown key(s): x, y"),)


def test_other_structuring_errors_become_invalid_values() -> None:
    """A foreign error is ``invalid value: <its message>``, or its type without one."""
    with pytest.raises(ConfigError) as caught:
        load_config({"retry": {}, "color": "blue"}, _Outer, path="cfg")
    assert caught.value.problems == (("cfg.color", "invalid value: 'blue' is not a valid _Color"),)
    with pytest.raises(ConfigError) as caught:
        load_config({"value": -1}, _Grouped, path="cfg")
    assert caught.value.problems == (
        ("cfg.sign", "must be >= 0"),
        ("cfg", "invalid value: ValueError"),
    )


def test_unstructure_refuses_non_configs_exactly() -> None:
    """`unstructure_config` on a non-attrs value names it, at the top-level path."""
    with pytest.raises(ConfigError) as caught:
        unstructure_config(5)
    assert caught.value.problems == (("", "is not a config object: 5 (int)"),)


def test_load_toml_messages(tmp_path: Path) -> None:
    """load_toml's messages: too deep nesting, and a missing file's OS reason alone."""
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError) as caught:
        load_toml(deep)
    assert caught.value.problems == (
        (str(deep), "invalid TOML: arrays or tables nested too deeply"),
    )
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as caught:
        load_toml(missing)
    assert caught.value.problems == ((str(missing), "cannot read: No such file or directory"),)


@pytest.mark.parametrize(
    ("value", "shown"), [(5, "5 (int)"), ("", "'' (str)")], ids=["not a str", "empty"]
)
def test_rate_limit_names_must_be_non_empty_strings(value: object, shown: str) -> None:
    """A rate limit's key and storage are a non-empty str or None, said exactly."""
    for field in ("key", "storage"):
        with pytest.raises(ConfigError) as caught:
            RateLimitConfig(limit=1, **{field: value})
        assert caught.value.problems == (
            (field, f"must be a non-empty string or None, got {shown}"),
        )


def test_a_rate_limit_period_under_a_millisecond_is_refused() -> None:
    """A window shorter than the clock's precision at large values would hold nothing."""
    assert RateLimitConfig(limit=1, per=0.001).per == 0.001
    with pytest.raises(ConfigError) as caught:
        RateLimitConfig(limit=1, per=1e-4)
    assert caught.value.problems == (("per", "must be >= 0.001, got 0.0001"),)
