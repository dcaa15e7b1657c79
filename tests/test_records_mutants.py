"""Error-record behaviour that mutation testing showed no other test pinned.

`tests/mutation/run.py` (``tox -e mutation``) is the run that found the gaps.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from resilient_nodes._records import (
    MAX_MESSAGE_LENGTH,
    _bounded_text,
    create_error_update,
    create_node_error,
    minimal_record,
    now_iso,
)

_ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


# The mixin, not a StrEnum: its str() is "_Node.PLAN", not the value.
class _Node(str, enum.Enum):  # noqa: UP042
    PLAN = "plan"


# --- the message ---------------------------------------------------------------------


def test_a_message_of_exactly_the_limit_is_kept_whole() -> None:
    """A message of `MAX_MESSAGE_LENGTH` characters is not cut or marked."""
    text = "x" * MAX_MESSAGE_LENGTH
    assert create_node_error(ValueError(text), node="n")["message"] == text


@pytest.mark.parametrize("separator", [" ", "\n", "\t"], ids=["space", "newline", "tab"])
def test_a_long_message_is_cut_at_its_last_whitespace(separator: str) -> None:
    """The cut goes back to the last space, newline or tab before the limit."""
    text = f"abcd{separator}" * 600  # 3000 characters, a separator every 5
    message = create_node_error(ValueError(text), node="n")["message"]
    assert message == text[:1999] + " ...[1001 more chars]"


@pytest.mark.parametrize(
    ("space", "cut"),
    [
        (1, 2000),  # far before the limit: cut at the limit instead
        (800, 2000),  # still in the first half
        (1000, 1000),  # exactly half way: near enough
    ],
)
def test_the_cut_uses_a_whitespace_only_in_the_second_half(space: int, cut: int) -> None:
    """A whitespace earlier than half the limit is too far back to cut at."""
    text = "a" * space + " " + "b" * 3000
    message = create_node_error(ValueError(text), node="n")["message"]
    assert message == f"{text[:cut]} ...[{len(text) - cut} more chars]"


def test_half_of_an_odd_limit_rounds_down() -> None:
    """With an odd limit (11), a whitespace at 5 (11 // 2) is in the second half."""
    assert _bounded_text("xxxxx yyyyyyyyyy", 11) == "xxxxx ...[11 more chars]"


def test_the_message_has_a_hard_bound_after_redaction() -> None:
    """Redaction that lengthens a message cannot push it past the limit plus 64."""
    message = create_node_error(ValueError("pwd=a " * 333), node="n")["message"]
    assert len(message) == MAX_MESSAGE_LENGTH + 64


# --- code, details -------------------------------------------------------------------


class _ForeignCodeError(Exception):
    code = "ECONNRESET"


def test_a_foreign_string_code_is_ignored() -> None:
    """An error's own ``.code`` that is not one of ours leaves the code UNKNOWN."""
    record = create_node_error(_ForeignCodeError("reset"), node="n")
    assert record["code"] == "UNKNOWN"
    assert record["message"] == "reset"
    assert record["error_type"] == "_ForeignCodeError"


def test_a_group_of_exactly_ten_omits_nothing() -> None:
    """Ten members are all summarised, with no ``exceptions_omitted``."""
    group = ExceptionGroup("g", [ValueError(i) for i in range(10)])
    details = create_node_error(group, node="n")["details"]
    assert len(details["exceptions"]) == 10
    assert "exceptions_omitted" not in details


def _nested_dicts(levels: int) -> Any:
    value: Any = "v"
    for _ in range(levels):
        value = {"k": value}
    return value


def _nested_lists(levels: int) -> Any:
    value: Any = "v"
    for _ in range(levels):
        value = [value]
    return value


def test_details_keep_eight_levels() -> None:
    """Details nest eight containers deep; the ninth becomes its text."""
    details = create_node_error(ValueError("x"), node="n", details=_nested_dicts(9))["details"]
    assert json.dumps(details) == '{"k": ' * 8 + "\"{'k': 'v'}\"" + "}" * 8
    listed = create_node_error(ValueError("x"), node="n", details={"l": _nested_lists(8)})
    assert json.dumps(listed["details"]) == '{"l": ' + "[" * 7 + "\"['v']\"" + "]" * 7 + "}"


def test_details_keep_scalars_and_str_keys_as_given() -> None:
    """Bools and None stay themselves; a str-enum key is kept, not its enum text."""
    details = create_node_error(
        ValueError("x"), node="n", details={"flag": True, "none": None, _Node.PLAN: 1}
    )["details"]
    assert json.dumps(details) == '{"flag": true, "none": null, "plan": 1}'


# --- node, attempts, the update ------------------------------------------------------


@pytest.mark.parametrize(
    ("node", "label"),
    [(_Node.PLAN, "plan"), (123, "123"), ("n" * 300, "n" * 200)],
    ids=["str-enum", "not-a-str", "long"],
)
def test_the_node_label(node: object, label: str) -> None:
    """A str (enum or not) is the label as is, anything else its text; 200 chars at most."""
    record = create_node_error(ValueError("x"), node=node)  # type: ignore[arg-type]
    assert json.dumps(record["node"]) == json.dumps(label)


def test_attempts_default_to_one() -> None:
    """Without *attempts*, a record says one attempt."""
    assert create_node_error(ValueError("x"), node="n")["attempts"] == 1
    assert create_error_update(ValueError("x"), node="n")["errors"][0]["attempts"] == 1


def test_the_update_passes_details_on() -> None:
    """create_error_update records the *details* it is given."""
    (record,) = create_error_update(ValueError("x"), node="n", details={"step": 2})["errors"]
    assert record["details"] == {"step": 2}


class _BrokenMapping(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("cannot iterate")

    def __len__(self) -> int:
        return 1


def test_a_record_that_cannot_be_built_is_minimal() -> None:
    """If building fails, the minimal record still names the node and attempts."""
    record = create_node_error(ValueError("x"), node="plan", attempts=3, details=_BrokenMapping())
    assert record == {
        "code": "UNKNOWN",
        "category": "unknown",
        "message": "the error could not be recorded",
        "node": "plan",
        "attempts": 3,
        "timestamp": record["timestamp"],
        "traceback": "",
        "retryable": False,
        "error_type": "<unknown>",
    }
    assert _ISO_UTC.fullmatch(record["timestamp"])


def test_minimal_record_replaces_what_is_not_json() -> None:
    """A non-str node and a non-int attempts are replaced, not recorded."""
    record = minimal_record(None, "3")
    assert (record["node"], record["attempts"]) == ("<unnamed>", 1)
    assert minimal_record("n", True)["attempts"] == 1


def test_now_iso_is_utc_with_a_z() -> None:
    """Timestamps are ISO-8601 UTC to the millisecond, written with ``Z``."""
    assert _ISO_UTC.fullmatch(now_iso())
