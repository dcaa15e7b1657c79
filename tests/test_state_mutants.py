"""State-helper behaviour that mutation testing showed no other test pinned.

`tests/mutation/run.py` (``tox -e mutation``) is the run that found the gaps. The
check and hook factories (`_check`, `_one_of`, `_only`, `_origin_is`) are called
here directly: the module calls them once, at import, to build its converter, so
a test through the helpers could not tell a broken factory from a working one
built before it broke.
"""

from __future__ import annotations

import math
import os
from types import MappingProxyType
from typing import Any

import pytest

from resilient_nodes._state import (
    _check,
    _InvalidError,
    _levels,
    _one_of,
    _only,
    _origin_is,
    add_errors,
    add_evidence_refs,
    merge_state_updates,
    update_artifact_paths,
    update_routing_flags,
    update_state,
)
from resilient_nodes.errors import StateValidationError


def _problems(helper: Any, *args: Any) -> tuple[tuple[str, str], ...]:
    with pytest.raises(StateValidationError) as caught:
        helper(*args)
    return caught.value.problems


# --- the factories -------------------------------------------------------------------


def test_check_returns_the_value_or_says_what_is_wrong() -> None:
    """`_check(test, what)` passes what *test* accepts and names what it refuses."""
    positive = _check(lambda value: value > 0, "must be positive")
    assert positive(3) == 3
    with pytest.raises(_InvalidError, match=r"^must be positive, got 0 \(int\)$"):
        positive(0)


def test_one_of_accepts_only_its_strings() -> None:
    """`_one_of` accepts exactly its choices, and lists them sorted, shown by *show*."""
    choice = _one_of(frozenset({"b", "a"}), repr)
    assert choice("a") == "a"
    message = r"^must be one of 'a', 'b', got "
    with pytest.raises(_InvalidError, match=message + r"'c' \(str\)$"):
        choice("c")
    with pytest.raises(_InvalidError, match=message + r"1 \(int\)$"):
        choice(1)
    with pytest.raises(_InvalidError, match=r"^must be one of x, y, got 'z' \(str\)$"):
        _one_of(frozenset({"y", "x"}))("z")


def test_only_refuses_other_kinds_then_delegates() -> None:
    """An `_only` hook refuses other kinds, and hands cattrs' hook a plain copy."""
    made: list[tuple[object, object]] = []

    def make_hook(type_: object, converter: object) -> Any:
        made.append((type_, converter))
        return lambda value, type_: (value, type_)

    converter = object()
    lists = _only((list, tuple), "a list", make_hook)(list[int], converter)
    mappings = _only(MappingProxyType, "a proxy", make_hook)(dict[str, int], converter)
    assert made == [(list[int], converter), (dict[str, int], converter)]
    assert lists([1], None) == ([1], list[int])
    value, type_ = mappings(MappingProxyType({"a": 1}), None)
    assert (type(value), value, type_) == (dict, {"a": 1}, dict[str, int])
    with pytest.raises(_InvalidError, match=r"^must be a list, got 'ab' \(str\)$"):
        lists("ab", None)


def test_origin_is() -> None:
    """`_origin_is(origin)` matches the parameterised types of that origin only."""
    is_list = _origin_is(list)
    assert is_list(list[int]) is True
    assert is_list(dict[str, int]) is False


def test_levels_counts_to_one_past_the_limit() -> None:
    """`_levels` stops counting at *limit* + 1, however deep the value goes."""
    deep: Any = "leaf"
    for _ in range(20):
        deep = [deep]
    assert _levels(deep, 3) == 4
    assert _levels([[1]], 3) == 2


# --- messages ------------------------------------------------------------------------


def test_values_are_quoted_up_to_sixty_characters() -> None:
    """A bad value's repr is quoted whole up to 60 characters, else cut to 60 with ``...``."""
    at_limit = "y" * 58  # its repr, with quotes, is 60 characters
    assert _problems(update_routing_flags, {"a": at_limit}) == (
        ("routing_flags['a']", f"must be a bool, got '{at_limit}' (str)"),
    )
    assert _problems(update_routing_flags, {"a": "y" * 100}) == (
        ("routing_flags['a']", f"must be a bool, got '{'y' * 56}... (str)"),
    )


def test_a_quoted_value_is_redacted_before_it_is_cut() -> None:
    """A URL password past the first 500 characters of a repr is still redacted."""
    value = "postgres://u:" + "p" * 600 + "@host"
    assert _problems(update_routing_flags, {"a": value}) == (
        ("routing_flags['a']", "must be a bool, got 'postgres://[REDACTED]@... (str)"),
    )


def test_unknown_keys_are_quoted_to_forty_characters() -> None:
    """Unknown keys are listed sorted, each quoted to at most 40 characters."""
    ref = {"kind": "k", "uri": "u", "x" * 100: 1, "y": 2}
    assert _problems(add_evidence_refs, ref) == (
        (
            "evidence_refs[0]",
            f"unknown key(s) '{'x' * 36}..., 'y'; allowed: description, kind, node, uri",
        ),
    )


def test_a_key_that_is_not_a_str_is_quoted_to_forty_characters() -> None:
    """update_state names a non-str key by its repr, cut to 40 characters."""
    key = ("k" * 50,)
    assert _problems(update_state, {key: 1}) == (
        (f"updates[('{'k' * 35}...]", f"key must be a str, got {key!r} (tuple)"),
    )


class _UnreadablePath(os.PathLike[str]):
    def __init__(self, message: str) -> None:
        self.message = message

    def __fspath__(self) -> str:
        raise ValueError(self.message)


def test_a_value_that_cannot_be_read_is_reported_bounded() -> None:
    """A value whose reading raises is reported with the error, cut to 200 characters."""
    assert _problems(update_artifact_paths, {"a": _UnreadablePath("x" * 300)}) == (
        ("artifact_paths['a']", f"could not be read (ValueError: {'x' * 200}... [100 more chars])"),
    )


def test_a_message_holding_the_separator_is_kept_whole() -> None:
    """The path is split off at the last ``NUL @``, so a message holding one survives."""
    assert _problems(update_artifact_paths, {"a": _UnreadablePath("a\0 @ b")}) == (
        ("artifact_paths['a']", "could not be read (ValueError: a\0 @ b)"),
    )


def test_merge_names_an_update_that_is_not_a_mapping() -> None:
    """merge_state_updates names the position and the value of a non-mapping update."""
    assert _problems(merge_state_updates, {}, 5) == (
        ("updates[1]", "must be a mapping, got 5 (int)"),
    )


_RECORD = {
    "code": "UNKNOWN",
    "category": "unknown",
    "message": "m",
    "node": "n",
    "attempts": 1,
    "timestamp": "2024-01-01T00:00:00Z",
    "traceback": "",
    "retryable": False,
    "error_type": "E",
}


def test_nested_details_are_checked_and_copied() -> None:
    """A record's nested details are validated at every level and never aliased."""
    inner = {"b": 1}
    (record,) = add_errors({**_RECORD, "details": {"a": inner}})["errors"]  # type: ignore[typeddict-item]
    assert record["details"] == {"a": {"b": 1}}
    assert record["details"]["a"] is not inner
    bad = {**_RECORD, "details": {"a": {"": 1}, "s": {1, 2}, "f": math.inf}}
    assert _problems(add_errors, bad) == (
        ("errors[0].details['a']['']", "key must be a non-empty str, got '' (str)"),
        (
            "errors[0].details['s']",
            "must be JSON data (str, number, bool, None, list, dict), got {1, 2} (set)",
        ),
        ("errors[0].details['f']", "must be a finite number, got inf (float)"),
    )
