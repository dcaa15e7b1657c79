"""Tests for resilient_nodes._state: record shapes, reducers and partial-update helpers."""

from __future__ import annotations

import copy
import enum
import json
import math
import operator
import pickle
import string
import typing
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from resilient_nodes import _records as records_module
from resilient_nodes import _state as state_module
from resilient_nodes._classification import ErrorCategory, classify_error
from resilient_nodes._records import (
    MAX_MESSAGE_LENGTH,
    NodeErrorRecord,
    create_error_update,
    create_node_error,
)
from resilient_nodes._state import (
    GATE_DECISIONS,
    GraphState,
    add_errors,
    add_evidence_refs,
    create_blocked_update,
    is_blocked,
    merge_dicts,
    merge_state_updates,
    update_artifact_paths,
    update_gate_decisions,
    update_routing_flags,
    update_state,
)
from resilient_nodes.errors import (
    ErrorCode,
    NodeCancellationError,
    NodeCircuitOpenError,
    NodeRetryExhaustedError,
    NodeTimeoutError,
    NodeValidationError,
    StateValidationError,
)

FAST = settings(max_examples=30, deadline=None)

RECORD_KEYS = {
    "code",
    "category",
    "message",
    "node",
    "attempts",
    "timestamp",
    "traceback",
    "retryable",
    "error_type",
}


def _raised(error: BaseException) -> BaseException:
    """Raise and catch *error* so it carries a real traceback."""
    try:
        raise error
    except BaseException as caught:
        return caught


def _problem_text(excinfo: pytest.ExceptionInfo[StateValidationError]) -> str:
    return str(excinfo.value)


# --- merge_dicts and the GraphState schema -----------------------------------------


def test_merge_dicts_returns_new_dict_right_wins():
    """merge_dicts returns a new dict where the right side wins and neither input changes."""
    left = {"a": 1, "b": 2}
    right = {"b": 3, "c": 4}
    merged = merge_dicts(left, right)
    assert merged == {"a": 1, "b": 3, "c": 4}
    assert merged is not left
    assert merged is not right
    assert left == {"a": 1, "b": 2}
    assert right == {"b": 3, "c": 4}


def test_merge_dicts_treats_none_as_empty():
    """merge_dicts accepts None on either side and still returns a fresh dict."""
    right = {"x": 1}
    merged = merge_dicts(None, right)
    assert merged == right
    assert merged is not right
    assert merge_dicts({"y": 2}, None) == {"y": 2}
    assert merge_dicts(None, None) == {}


def test_graph_state_reducers_match_merge_state_updates_tables():
    """GraphState's annotated reducers are exactly the ones merge_state_updates emulates."""
    hints = typing.get_type_hints(GraphState, include_extras=True)
    reducers = {
        key: hint.__metadata__[-1]
        for key, hint in hints.items()
        if typing.get_origin(hint) is typing.Annotated
    }
    assert {k for k, r in reducers.items() if r is operator.add} == state_module._LIST_KEYS
    assert {k for k, r in reducers.items() if r is merge_dicts} == state_module._DICT_KEYS
    assert set(hints) - set(reducers) == {"story_id"}
    assert GraphState.__total__ is False


def test_validation_schemas_have_the_public_records_keys():
    """The private schemas the helpers validate against list the same keys as the public types."""
    pairs = [
        (state_module._GraphState, GraphState),
        (state_module._EvidenceRef, state_module.EvidenceRef),
        (state_module._GateDecision, state_module.GateDecision),
        (state_module._NodeErrorRecord, NodeErrorRecord),
    ]
    for schema, public in pairs:
        assert schema.__required_keys__ == public.__required_keys__, public
        assert schema.__optional_keys__ == public.__optional_keys__, public
    assert set(GraphState.__annotations__) == state_module._STATE_KEYS


def test_gate_decision_values_are_the_documented_closed_set():
    """The gate decisions are exactly pass, fail, blocked and skip."""
    assert frozenset({"pass", "fail", "blocked", "skip"}) == GATE_DECISIONS


# --- update_state -----------------------------------------------------------------


def test_update_state_mapping_and_keywords_are_equivalent():
    """update_state accepts a mapping or keywords and gives the same update."""
    assert update_state({"story_id": "S-1"}) == update_state(story_id="S-1") == {"story_id": "S-1"}
    assert update_state({"story_id": "S-1"}, routing_flags={"ok": True}) == {
        "story_id": "S-1",
        "routing_flags": {"ok": True},
    }
    assert update_state() == {}


def test_update_state_passes_unknown_keys_through_untouched():
    """Keys of the user's own state pass through as the very same objects."""
    payload = object()
    update = update_state({"my_field": payload})
    assert update["my_field"] is payload


def test_update_state_copies_known_fields_without_mutating_input():
    """update_state returns copies of known fields, so mutating the result leaves the input intact."""
    source = {
        "artifact_paths": {"plan": "out/plan.md"},
        "evidence_refs": [{"kind": "log", "uri": "logs/a.txt"}],
        "errors": [create_node_error(ValueError("x"), node="n")],
    }
    before = copy.deepcopy(source)
    update = update_state(source)
    assert update == source
    update["artifact_paths"]["new"] = "x"
    update["evidence_refs"][0]["kind"] = "changed"
    update["errors"][0]["message"] = "changed"
    assert source == before


def test_update_state_rejects_non_mapping():
    """A non-mapping update is rejected with a message naming it."""
    with pytest.raises(
        StateValidationError, match=r"^updates: must be a mapping, got \[1\] \(list\)$"
    ):
        update_state([1])


def test_update_state_rejects_key_given_twice_and_non_str_key():
    """A key given both ways, or a non-str key, is reported by name."""
    with pytest.raises(StateValidationError) as excinfo:
        update_state({"story_id": "a", 7: "x"}, story_id="b")
    text = _problem_text(excinfo)
    assert "story_id: given both in the mapping and as a keyword argument" in text
    assert "updates[7]: key must be a str, got 7 (int)" in text


def test_update_state_validates_known_fields_and_reports_every_problem():
    """Every bad known field is reported, each with its path."""
    with pytest.raises(StateValidationError) as excinfo:
        update_state(
            story_id=5,
            artifact_paths={"plan": 3},
            routing_flags={"ready": "yes"},
            evidence_refs={"kind": "log"},
            gate_decisions={"review": {"decision": "maybe", "reason": "r"}},
            errors="boom",
        )
    problems = dict(excinfo.value.problems)
    assert problems["story_id"] == "must be a str, got 5 (int)"
    assert problems["artifact_paths['plan']"] == "must be a non-empty str, got 3 (int)"
    assert problems["routing_flags['ready']"] == "must be a bool, got 'yes' (str)"
    assert problems["evidence_refs"] == "must be a list, got {'kind': 'log'} (dict)"
    assert problems["gate_decisions['review'].decision"].startswith("must be one of 'blocked'")
    assert problems["errors"] == "must be a list, got 'boom' (str)"


# --- field helpers ----------------------------------------------------------------


def test_update_artifact_paths_accepts_pathlike_and_returns_str():
    """os.PathLike paths are stored as str so the state stays JSON data."""
    update = update_artifact_paths({"plan": PurePosixPath("out/plan.md"), "log": "out/log.txt"})
    assert update == {"artifact_paths": {"plan": "out/plan.md", "log": "out/log.txt"}}


def test_update_artifact_paths_rejects_bad_names_and_paths():
    """A non-str path, an empty path and an empty name are each named in the error."""
    with pytest.raises(StateValidationError) as excinfo:
        update_artifact_paths({"plan": 42, "empty": "", "": "x"})
    text = _problem_text(excinfo)
    assert "artifact_paths['plan']: must be a non-empty str, got 42 (int)" in text
    assert "artifact_paths['empty']: must be a non-empty str, got '' (str)" in text
    assert "artifact_paths['']: key must be a non-empty str, got '' (str)" in text


class _BrokenPath:
    def __fspath__(self) -> str:
        raise RuntimeError("disk on fire")


def test_a_value_that_fails_to_read_is_reported_with_the_others():
    """A path whose __fspath__ raises is a problem at its path, next to the other problems."""
    with pytest.raises(StateValidationError) as excinfo:
        update_artifact_paths({"plan": _BrokenPath(), "log": ""})
    assert excinfo.value.problems == (
        ("artifact_paths['plan']", "could not be read (RuntimeError: disk on fire)"),
        ("artifact_paths['log']", "must be a non-empty str, got '' (str)"),
    )


def test_update_artifact_paths_rejects_non_mapping():
    """A list of paths instead of a mapping is rejected by field name."""
    with pytest.raises(StateValidationError, match=r"^artifact_paths: must be a mapping"):
        update_artifact_paths(["a"])


def test_update_routing_flags_requires_real_bools():
    """Routing flags must be bools: 'yes' and 1 are rejected with the exact field path."""
    assert update_routing_flags({"ready": True, "done": False}) == {
        "routing_flags": {"ready": True, "done": False}
    }
    with pytest.raises(StateValidationError) as excinfo:
        update_routing_flags({"ready": "yes", "count": 1})
    assert excinfo.value.problems == (
        ("routing_flags['ready']", "must be a bool, got 'yes' (str)"),
        ("routing_flags['count']", "must be a bool, got 1 (int)"),
    )
    assert str(excinfo.value).splitlines()[0] == (
        "routing_flags['ready']: must be a bool, got 'yes' (str)"
    )


def test_add_evidence_refs_returns_list_of_copies():
    """add_evidence_refs appends copies of the refs, with optional fields kept."""
    ref = {"kind": "test_report", "uri": "reports/junit.xml", "description": "ci", "node": "test"}
    update = add_evidence_refs(ref, {"kind": "log", "uri": "logs/x"})
    assert update == {"evidence_refs": [ref, {"kind": "log", "uri": "logs/x"}]}
    assert update["evidence_refs"][0] is not ref
    assert add_evidence_refs() == {"evidence_refs": []}


def test_add_evidence_refs_rejects_malformed_refs():
    """Missing uri, unknown keys, wrong types and non-mappings are reported per index."""
    with pytest.raises(StateValidationError) as excinfo:
        add_evidence_refs(
            {"kind": "log"},
            {"kind": "log", "url": "x", "uri": "y"},
            {"kind": "log", "uri": "y", "description": 3},
            "just a string",
        )
    text = _problem_text(excinfo)
    assert "evidence_refs[0].uri: is required" in text
    assert "evidence_refs[1]: unknown key(s) 'url'; allowed: description, kind, node, uri" in text
    assert "evidence_refs[2].description: must be a str, got 3 (int)" in text
    assert "evidence_refs[3]: must be a mapping, got 'just a string' (str)" in text


def test_update_gate_decisions_accepts_every_decision_value():
    """Each of pass, fail, blocked and skip is accepted, with optional node and timestamp."""
    decisions = {
        value: {"decision": value, "reason": f"because {value}"} for value in sorted(GATE_DECISIONS)
    }
    decisions["pass"]["node"] = "review"
    decisions["pass"]["timestamp"] = "2024-05-01T10:00:00Z"
    update = update_gate_decisions(decisions)
    assert update == {"gate_decisions": decisions}


def test_update_gate_decisions_unknown_decision_names_field_and_gate():
    """An unknown decision value raises an error naming the gate and the field."""
    with pytest.raises(StateValidationError) as excinfo:
        update_gate_decisions({"code_review": {"decision": "maybe", "reason": "unsure"}})
    assert str(excinfo.value) == (
        "gate_decisions['code_review'].decision: must be one of "
        "'blocked', 'fail', 'pass', 'skip', got 'maybe' (str)"
    )
    assert isinstance(excinfo.value, ValueError)


def test_update_gate_decisions_rejects_other_bad_shapes():
    """A bad reason, timestamp, unknown key or non-mapping decision is reported by path."""
    with pytest.raises(StateValidationError) as excinfo:
        update_gate_decisions(
            {
                "a": {"decision": "pass", "reason": None, "timestamp": "yesterday"},
                "b": "pass",
                "c": {"decision": "pass", "reason": "", "why": 1, "node": 5},
            }
        )
    text = _problem_text(excinfo)
    assert "gate_decisions['a'].reason: must be a str, got None (NoneType)" in text
    assert (
        "gate_decisions['a'].timestamp: must be an ISO-8601 timestamp, got 'yesterday' (str)"
        in text
    )
    assert "gate_decisions['b']: must be a mapping, got 'pass' (str)" in text
    assert "gate_decisions['c']: unknown key(s) 'why'" in text
    assert "gate_decisions['c'].node: must be a str, got 5 (int)" in text


def test_add_errors_accepts_records_from_create_node_error():
    """Records built by create_node_error pass add_errors' validation unchanged."""
    records = [
        create_node_error(_raised(NodeTimeoutError(3.0, node="n")), node="n", details={"k": [1]}),
        create_node_error("plain text", node="m", attempts=0),
    ]
    update = add_errors(*records)
    assert update == {"errors": records}
    assert update["errors"][0] is not records[0]
    assert update["errors"][0]["details"] is not records[0]["details"]


def _good_record() -> dict[str, Any]:
    return dict(create_node_error(ValueError("x"), node="n"))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"code": "NOPE"}, "errors[0].code: must be one of BULKHEAD_FULL, CANCELLED, CIRCUIT_OPEN"),
        ({"category": 3}, "errors[0].category: must be one of auth, cancelled, circuit_open"),
        ({"attempts": True}, "errors[0].attempts: must be an int >= 0, got True (bool)"),
        ({"attempts": -1}, "errors[0].attempts: must be an int >= 0, got -1 (int)"),
        ({"retryable": "no"}, "errors[0].retryable: must be a bool, got 'no' (str)"),
        ({"node": ""}, "errors[0].node: must be a non-empty str, got '' (str)"),
        ({"message": None}, "errors[0].message: must be a str, got None (NoneType)"),
        ({"timestamp": "noon"}, "errors[0].timestamp: must be an ISO-8601 timestamp"),
        ({"details": [1]}, "errors[0].details: must be a mapping, got [1] (list)"),
        ({"details": {"x": object()}}, "errors[0].details['x']: must be JSON data"),
        ({"details": {"x": math.nan}}, "errors[0].details['x']: must be a finite number"),
        ({"details": {1: "x"}}, "errors[0].details[1]: key must be a non-empty str"),
        ({"extra": 1}, "errors[0]: unknown key(s) 'extra'"),
    ],
)
def test_add_errors_rejects_malformed_records(change, expected):
    """Each malformed record field is reported with its path."""
    record = {**_good_record(), **change}
    with pytest.raises(StateValidationError) as excinfo:
        add_errors(record)
    assert expected in _problem_text(excinfo)


def test_add_errors_reports_missing_keys_and_non_mappings():
    """A record missing keys, and a non-mapping record, are both named."""
    with pytest.raises(StateValidationError) as excinfo:
        add_errors({"code": "UNKNOWN", "category": "unknown"}, 42)
    missing = ["attempts", "error_type", "message", "node", "retryable", "timestamp", "traceback"]
    assert sorted(excinfo.value.problems) == [
        *((f"errors[0].{key}", "is required") for key in missing),
        ("errors[1]", "must be a mapping, got 42 (int)"),
    ]


def test_add_errors_accepts_nested_json_details_and_rejects_too_deep():
    """Details may nest JSON data a few levels, but not without bound."""
    nested: Any = {"a": [1, 2.5, None, True, {"b": "c"}]}
    assert add_errors({**_good_record(), "details": nested})["errors"][0]["details"] == nested
    deep: Any = "leaf"
    for _ in range(12):
        deep = [deep]
    with pytest.raises(StateValidationError, match="nested deeper than 8 levels"):
        add_errors({**_good_record(), "details": {"deep": deep}})
    looped: dict[str, Any] = {}
    looped["self"] = [looped]
    with pytest.raises(StateValidationError, match=r"errors\[0\]\.details: is nested deeper"):
        add_errors({**_good_record(), "details": looped})
    seven: Any = {}  # with details itself, eight levels: the most allowed
    for _ in range(6):
        seven = [seven]
    assert add_errors({**_good_record(), "details": {"k": seven}})["errors"][0]["details"] == {
        "k": seven
    }
    with pytest.raises(StateValidationError, match="nested deeper than 8 levels"):
        add_errors({**_good_record(), "details": {"k": [seven]}})


# --- blocked ----------------------------------------------------------------------


def test_create_blocked_update_sets_flag_and_blocked_gate_decision():
    """A blocked update raises the 'blocked' flag and records a blocked gate decision."""
    update = create_blocked_update("waiting for a human review", node="review")
    assert update["routing_flags"] == {"blocked": True}
    decision = update["gate_decisions"]["review"]
    assert decision["decision"] == "blocked"
    assert decision["reason"] == "waiting for a human review"
    assert decision["node"] == "review"
    assert datetime.fromisoformat(decision["timestamp"]).tzinfo is not None
    assert is_blocked(update)
    # The update itself is valid input for the helpers it is made of.
    assert update_state(update) == update


def test_create_blocked_update_routes_and_uses_the_given_gate():
    """route_to raises that flag too, and gate chooses where the decision is filed."""
    update = create_blocked_update("no spec", node="plan", route_to="needs_human", gate="spec_gate")
    assert update["routing_flags"] == {"blocked": True, "needs_human": True}
    assert set(update["gate_decisions"]) == {"spec_gate"}


def test_create_blocked_update_redacts_secrets_from_reason():
    """A reason that leaks a credential is stored redacted."""
    update = create_blocked_update("auth failed with token=abc123secret", node="n")
    assert "abc123secret" not in json.dumps(update)


def test_create_blocked_update_rejects_bad_arguments():
    """Empty or non-str reason, node, route_to or gate are reported by name."""
    with pytest.raises(StateValidationError) as excinfo:
        create_blocked_update("", node=3, route_to="", gate=1)
    assert [path for path, _ in excinfo.value.problems] == ["reason", "node", "route_to", "gate"]


def test_parallel_blocks_merge_instead_of_conflicting():
    """Two blocked updates combine: both gates are kept and the flag stays set."""
    merged = merge_state_updates(
        create_blocked_update("a", node="x"), create_blocked_update("b", node="y", route_to="r")
    )
    assert set(merged["gate_decisions"]) == {"x", "y"}
    assert merged["routing_flags"] == {"blocked": True, "r": True}


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({}, False),
        ({"routing_flags": {"blocked": False}}, False),
        ({"routing_flags": {"blocked": "yes"}}, False),
        ({"routing_flags": "blocked"}, False),
        ({"routing_flags": {"blocked": True}, "my_key": 1}, True),
    ],
)
def test_is_blocked_reads_any_mapping(state, expected):
    """is_blocked is true only for a real True flag, on any state mapping."""
    assert is_blocked(state) is expected


# --- merge_state_updates ----------------------------------------------------------


def test_merge_state_updates_applies_each_reducer():
    """Lists append, dicts merge right-wins, other keys take the last write."""
    e1 = create_node_error("one", node="a")
    e2 = create_node_error("two", node="b")
    merged = merge_state_updates(
        {"story_id": "S-1", "errors": [e1], "artifact_paths": {"a": "1", "b": "1"}, "mine": 1},
        {"story_id": "S-2", "errors": (e2,), "artifact_paths": {"b": "2"}, "mine": 2},
        {},
    )
    assert merged == {
        "story_id": "S-2",
        "errors": [e1, e2],
        "artifact_paths": {"a": "1", "b": "2"},
        "mine": 2,
    }
    assert merge_state_updates() == {}


def test_merge_state_updates_rejects_bad_updates_by_position():
    """A non-mapping update or a wrongly typed reducer value names its position and key."""
    with pytest.raises(StateValidationError) as excinfo:
        merge_state_updates(
            {"errors": "x"},
            None,
            {"routing_flags": ["a"]},
        )
    text = _problem_text(excinfo)
    assert "updates[0]['errors']: must be a list, got 'x' (str)" in text
    assert "updates[1]: must be a mapping, got None (NoneType)" in text
    assert "updates[2]['routing_flags']: must be a mapping, got ['a'] (list)" in text


def test_merge_state_updates_does_not_mutate_or_alias_inputs():
    """The merged result shares no list or dict of a reducer key with its inputs."""
    a = {"errors": [create_node_error("x", node="n")], "routing_flags": {"f": True}}
    b = {"routing_flags": {"g": False}}
    before = copy.deepcopy((a, b))
    merged = merge_state_updates(a, b)
    merged["errors"].append("junk")
    merged["routing_flags"]["h"] = True
    assert (a, b) == before


# --- StateValidationError ---------------------------------------------------------


def test_state_validation_error_is_a_validation_failure_and_pickles():
    """The error is a NodeValidationError/ValueError, classified non-retryable, and pickles."""
    with pytest.raises(StateValidationError) as excinfo:
        update_routing_flags({"x": 1})
    error = excinfo.value
    assert isinstance(error, NodeValidationError)
    assert isinstance(error, ValueError)
    assert error.code is ErrorCode.VALIDATION_FAILED
    verdict = classify_error(error)
    assert verdict.category is ErrorCategory.VALIDATION
    assert not verdict.retryable
    clone = pickle.loads(pickle.dumps(error))
    assert clone.problems == error.problems
    assert str(clone) == str(error)


def test_state_validation_error_without_problems_has_a_message():
    """An empty problem list still gives a readable message."""
    assert str(StateValidationError([])) == "invalid state update"


# --- create_node_error ------------------------------------------------------------


def _check_record(record: NodeErrorRecord) -> None:
    assert RECORD_KEYS <= set(record) <= RECORD_KEYS | {"details"}
    assert ErrorCode(record["code"])
    assert ErrorCategory(record["category"])
    assert datetime.fromisoformat(record["timestamp"]).utcoffset() == timedelta(0)
    assert json.loads(json.dumps(record)) == record
    add_errors(record)  # valid by our own validation


def _boom_with_traceback() -> None:
    def inner() -> None:
        raise KeyError("missing 'plan' key")

    inner()


def test_create_node_error_plain_exception_has_relative_traceback():
    """A plain exception gives its class, message, category and a traceback with frames."""
    try:
        _boom_with_traceback()
    except KeyError as error:
        record = create_node_error(error, node="plan", attempts=2)
    _check_record(record)
    assert record["error_type"] == "KeyError"
    assert record["message"] == "\"missing 'plan' key\""
    assert record["category"] == "programming"
    assert record["code"] == "UNKNOWN"
    assert record["retryable"] is False
    assert record["node"] == "plan"
    assert record["attempts"] == 2
    assert "in inner" in record["traceback"]
    assert "test_state.py" in record["traceback"]
    assert "/work/" not in record["traceback"]
    assert "details" not in record


def test_create_node_error_timeout():
    """NodeTimeoutError becomes a retryable NODE_TIMEOUT record with the timeout in details."""
    record = create_node_error(_raised(NodeTimeoutError(2.5, node="llm")), node="llm", attempts=3)
    _check_record(record)
    assert record["code"] == "NODE_TIMEOUT"
    assert record["category"] == "timeout"
    assert record["retryable"] is True
    assert record["error_type"] == "NodeTimeoutError"
    assert record["details"] == {"timeout": 2.5}
    assert "timed out after 2.5s" in record["message"]


def test_create_node_error_retry_exhausted_chained_from_connection_error():
    """An exhausted retry records its last error and shows the chain in the traceback."""
    try:
        try:
            raise ConnectionError("connection reset by peer")
        except ConnectionError as cause:
            raise NodeRetryExhaustedError(3, cause, node="fetch") from cause
    except NodeRetryExhaustedError as error:
        record = create_node_error(error, node="fetch", attempts=3)
    _check_record(record)
    assert record["code"] == "RETRY_EXHAUSTED"
    assert record["category"] == "retry_exhausted"
    assert record["retryable"] is False
    assert record["details"] == {
        "retry_attempts": 3,
        "last_error": {"error_type": "ConnectionError", "message": "connection reset by peer"},
    }
    assert "ConnectionError: connection reset by peer" in record["traceback"]
    assert "direct cause" in record["traceback"]


def test_create_node_error_exception_group_lists_members():
    """An exception group is classified by its members, which are listed in details."""
    group = _raised(ExceptionGroup("tools failed", [ConnectionError("down"), ValueError("bad")]))
    record = create_node_error(group, node="tools")
    _check_record(record)
    assert record["error_type"] == "ExceptionGroup"
    assert record["category"] == "validation"  # the non-retryable member decides
    assert record["retryable"] is False
    assert record["details"]["exceptions"] == [
        {"error_type": "ConnectionError", "message": "down"},
        {"error_type": "ValueError", "message": "bad"},
    ]
    assert "ValueError: bad" in record["traceback"]


def test_create_node_error_large_group_is_capped():
    """A group with many members lists ten and counts the rest."""
    group = ExceptionGroup("many", [TimeoutError(str(i)) for i in range(25)])
    record = create_node_error(group, node="n")
    _check_record(record)
    assert len(record["details"]["exceptions"]) == 10
    assert record["details"]["exceptions_omitted"] == 15
    assert record["retryable"] is True


def test_create_node_error_from_string_and_none():
    """A string or None becomes a NodeExecutionError record with a readable message."""
    text = create_node_error("the tool said no", node="tool")
    _check_record(text)
    assert text["message"] == "the tool said no"
    assert text["error_type"] == "NodeExecutionError"
    nothing = create_node_error(None, node="tool")
    _check_record(nothing)
    assert "None" in nothing["message"]
    assert nothing["code"] == "UNKNOWN"


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    def __repr__(self) -> str:
        raise RuntimeError("no repr either")


class _UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def test_create_node_error_survives_unprintable_values():
    """Objects and exceptions whose __str__ raises still give a record."""
    obj = create_node_error(_Unprintable(), node="n")
    _check_record(obj)
    assert "unprintable" in obj["message"]
    exc = create_node_error(_raised(_UnprintableError()), node="n")
    _check_record(exc)
    assert exc["message"] == "<_UnprintableError with unprintable message>"
    assert exc["error_type"] == "_UnprintableError"


def test_create_node_error_empty_message():
    """An exception without a message says so instead of recording an empty string."""
    record = create_node_error(ValueError(), node="n")
    assert record["message"] == "(no message)"


LEAKY = (
    "call failed: key sk-proj-abcdefghijklmnop1234 header Bearer eyJhbGciOiJIUzI1NiJ9.payload "
    "password=hunter2secret file /home/alice/projects/app/config.yaml"
)
SECRETS = ("sk-proj-abcdefghijklmnop1234", "eyJhbGciOiJIUzI1NiJ9", "hunter2secret", "/home/alice")


def _leaky_failure() -> None:
    # The secrets are in this source line too, which the traceback quotes.
    raise RuntimeError("token sk-proj-abcdefghijklmnop1234 at /home/alice/x password=hunter2secret")


def test_create_node_error_redacts_secrets_everywhere():
    """No secret, home path or password survives in message, traceback, details or chain."""
    try:
        try:
            _leaky_failure()
        except RuntimeError as cause:
            raise NodeRetryExhaustedError(2, ConnectionError(LEAKY), node="n") from cause
    except NodeRetryExhaustedError as error:
        record = create_node_error(
            error, node="n", details={"url": "https://bob:hunter2secret@example.com", "hint": LEAKY}
        )
    _check_record(record)
    dumped = json.dumps(record)
    for secret in SECRETS:
        assert secret not in dumped, secret
    assert "[REDACTED]" in record["message"]
    assert "[REDACTED]" in record["traceback"]


def test_create_node_error_bounds_a_megabyte_message_without_leaking():
    """A 1 MB message is cut to a bounded size and a secret on the cut is not left half-visible."""
    head = "word " * ((MAX_MESSAGE_LENGTH - 10) // 5)
    message = head + "sk-ABCDEFGHIJKLMNOPQRSTUVWX " + "x" * 1_000_000 + " password=hunter2secret"
    record = create_node_error(_raised(ValueError(message)), node="n")
    _check_record(record)
    assert len(record["message"]) <= MAX_MESSAGE_LENGTH + 64
    assert "more chars]" in record["message"]
    assert len(json.dumps(record)) < 10 * MAX_MESSAGE_LENGTH
    for fragment in ("sk-ABC", "ABCDEFGH", "hunter2secret"):
        assert fragment not in json.dumps(record), fragment


def test_create_node_error_long_token_without_spaces_is_cut_hard():
    """A message that is one long token is still cut to the bound."""
    record = create_node_error("y" * 50_000, node="n")
    assert len(record["message"]) <= MAX_MESSAGE_LENGTH + 64


class _HttpError(Exception):
    def __init__(self, status: int, retry_after: str) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status
        self.headers = {"Retry-After": retry_after}


def test_create_node_error_http_status_and_retry_after_in_details():
    """A duck-typed HTTP 429 records its status and Retry-After."""
    record = create_node_error(_HttpError(429, "7"), node="llm")
    _check_record(record)
    assert record["category"] == "rate_limit"
    assert record["retryable"] is True
    assert record["details"] == {"status_code": 429, "retry_after": 7.0}


def test_create_node_error_circuit_open_and_cancellation_details():
    """Circuit-open and cancellation errors carry their own facts into details."""
    opened = create_node_error(
        NodeCircuitOpenError(failure_count=5, recovery_time=12.0, node="n"), node="n", attempts=0
    )
    _check_record(opened)
    assert opened["code"] == "CIRCUIT_OPEN"
    assert opened["attempts"] == 0
    assert opened["details"] == {
        "failure_count": 5,
        "recovery_time": 12.0,
        "retry_after": 12.0,
    }
    cancelled = create_node_error(NodeCancellationError("user pressed stop"), node="n")
    _check_record(cancelled)
    assert cancelled["code"] == "CANCELLED"
    assert cancelled["details"] == {"reason": "user pressed stop"}


def test_create_node_error_uses_the_errors_own_code():
    """An error value that names one of our codes keeps it when classification has none."""
    record = create_node_error({"message": "gate refused", "code": "CIRCUIT_OPEN"}, node="n")
    assert record["code"] == "CIRCUIT_OPEN"

    class CodedError(Exception):
        code = "VALIDATION_FAILED"

    assert create_node_error(CodedError("x"), node="n")["code"] == "VALIDATION_FAILED"

    class HttpCodedError(Exception):
        code = 404  # unrelated meaning of .code: ignored

    assert create_node_error(HttpCodedError("x"), node="n")["code"] == "UNKNOWN"


class _Color(enum.Enum):
    RED = "red"


def test_create_node_error_makes_user_details_json_safe():
    """Arbitrary details become JSON data; user details win over derived ones."""
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    details = {
        "timeout": 99,
        "color": _Color.RED,
        "code": ErrorCode.NODE_TIMEOUT,
        "when": when,
        "wait": timedelta(seconds=1.5),
        "nan": math.nan,
        "obj": _Unprintable(),
        "items": {1, 2},
        "nested": {3: [{"deep": 1.0}]},
        "secret": "api_key=abcdef123456",
    }
    record = create_node_error(NodeTimeoutError(1.0), node="n", details=details)
    _check_record(record)
    got = record["details"]
    assert got["timeout"] == 99
    assert got["color"] == "red"
    assert got["code"] == "NODE_TIMEOUT"
    assert got["when"] == when.isoformat()
    assert got["wait"] == 1.5
    assert got["nan"] == "nan"
    assert "unprintable" in got["obj"]
    assert sorted(got["items"]) == [1, 2]
    assert got["nested"] == {"3": [{"deep": 1.0}]}
    assert "abcdef123456" not in got["secret"]


def test_create_node_error_non_mapping_details_are_kept_under_a_key():
    """Details that are not a mapping are recorded under 'details' instead of failing."""
    record = create_node_error("x", node="n", details=[1, 2])
    assert record["details"] == {"details": [1, 2]}


def test_create_node_error_tolerates_bad_node_and_attempts():
    """A non-str node or a nonsense attempt count never makes recording fail."""
    record = create_node_error("x", node=None, attempts="three")
    _check_record(record)
    assert record["node"] == "None"
    assert record["attempts"] == 1
    assert create_node_error("x", node="", attempts=-4)["attempts"] == 0
    assert create_node_error("x", node="")["node"] == "<unnamed>"


def test_create_node_error_falls_back_to_a_minimal_record(monkeypatch):
    """If building the record fails, a minimal UNKNOWN record is returned instead."""

    def broken(*args: object, **kwargs: object) -> str:
        raise RuntimeError("sanitizer exploded")

    monkeypatch.setattr(records_module, "sanitize_traceback", broken)
    record = create_node_error(ValueError("x"), node="n", attempts=2)
    _check_record(record)
    assert record["code"] == "UNKNOWN"
    assert record["message"] == "the error could not be recorded"
    assert record["attempts"] == 2
    odd = create_node_error(ValueError("x"), node=3, attempts=True)
    assert odd["node"] == "<unnamed>"
    assert odd["attempts"] == 1


def test_create_node_error_handles_exception_classes_and_cycles():
    """An exception class, and an error whose cause is itself, are recorded."""
    record = create_node_error(TimeoutError, node="n")
    assert record["error_type"] == "TimeoutError"
    error = ValueError("loop")
    error.__cause__ = error
    _check_record(create_node_error(error, node="n"))


def test_create_error_update_wraps_one_record():
    """create_error_update returns {'errors': [record]} built with the same arguments."""
    update = create_error_update(_raised(NodeTimeoutError(1.0)), node="n", attempts=4)
    assert list(update) == ["errors"]
    (record,) = update["errors"]
    assert record["node"] == "n"
    assert record["attempts"] == 4
    assert record["code"] == "NODE_TIMEOUT"


error_values = st.one_of(
    st.text(max_size=50),
    st.none(),
    st.integers(),
    st.builds(ValueError, st.text(max_size=30)),
    st.builds(ConnectionError, st.text(max_size=30)),
    st.builds(NodeTimeoutError, st.floats(min_value=0.001, max_value=1e6)),
    st.builds(
        lambda msgs: ExceptionGroup("g", [OSError(m) for m in msgs]),
        st.lists(st.text(max_size=5), min_size=1, max_size=3),
    ),
    st.dictionaries(st.sampled_from(["message", "code"]), st.text(max_size=10)),
    st.just(_Unprintable()),
)


@FAST
@given(error=error_values, attempts=st.integers(min_value=0, max_value=10))
def test_create_error_update_always_gives_a_valid_json_record(error, attempts):
    """Whatever the error value, the record is valid, JSON-serialisable and accepted by add_errors."""
    update = create_error_update(error, node="n", attempts=attempts)
    (record,) = update["errors"]
    _check_record(record)
    assert record["attempts"] == attempts


# --- real LangGraph graphs ---------------------------------------------------------


@pytest.mark.integration
def test_record_survives_langgraph_checkpointer():
    """An error record written by a node reads back unchanged through InMemorySaver."""
    written: list[NodeErrorRecord] = []

    def failing(state: GraphState) -> GraphState:
        try:
            _leaky_failure()
        except RuntimeError as error:
            update = create_error_update(error, node="failing", attempts=2)
            written.extend(update["errors"])
            return update
        raise AssertionError  # pragma: no cover

    def producing(state: GraphState) -> GraphState:
        return update_artifact_paths({"plan": "out/plan.md"})

    graph = StateGraph(GraphState)
    graph.add_node("failing", failing)
    graph.add_node("producing", producing)
    graph.add_edge(START, "failing")
    graph.add_edge(START, "producing")
    graph.add_edge("failing", END)
    graph.add_edge("producing", END)
    app = graph.compile(checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "thread-1"}}
    app.invoke({"story_id": "S-1"}, config)

    values = app.get_state(config).values
    assert values["story_id"] == "S-1"
    assert values["errors"] == written
    assert values["artifact_paths"] == {"plan": "out/plan.md"}
    stored = json.dumps(values)
    for secret in SECRETS:
        assert secret not in stored


@pytest.mark.integration
def test_parallel_nodes_errors_are_both_kept():
    """Two parallel failing nodes both land in state['errors'] via the append reducer."""

    def node_a(state: GraphState) -> GraphState:
        return create_error_update(ConnectionError("a down"), node="a")

    def node_b(state: GraphState) -> GraphState:
        return create_error_update(NodeTimeoutError(1.0, node="b"), node="b", attempts=3)

    graph = StateGraph(GraphState)
    for name, fn in (("a", node_a), ("b", node_b)):
        graph.add_node(name, fn)
        graph.add_edge(START, name)
        graph.add_edge(name, "join")
    graph.add_node("join", lambda state: {})
    graph.add_edge("join", END)
    out = graph.compile().invoke({"story_id": "S-9"})
    assert [(e["node"], e["code"]) for e in out["errors"]] == [
        ("a", "UNKNOWN"),
        ("b", "NODE_TIMEOUT"),
    ]
    assert out["errors"][0]["category"] == "network"


# --- hypothesis: merges equal LangGraph's reducers ---------------------------------

_names = st.sampled_from(["a", "b", "c"])
_short_text = st.text(alphabet=string.ascii_letters + " ", max_size=8)
_paths = st.text(alphabet=string.ascii_lowercase + "/._", min_size=1, max_size=8)
_refs = st.fixed_dictionaries(
    {"kind": st.sampled_from(["log", "diff", "report"]), "uri": _paths},
    optional={"description": _short_text, "node": _names},
)
_decisions = st.fixed_dictionaries(
    {"decision": st.sampled_from(sorted(GATE_DECISIONS)), "reason": _short_text},
    optional={"node": _names},
)
_RECORDS = [
    create_node_error(ConnectionError("down"), node="a"),
    create_node_error(NodeTimeoutError(1.0), node="b", attempts=2),
    create_node_error("plain", node="c", details={"k": [1, "v"]}),
]
_records = st.sampled_from(_RECORDS).map(copy.deepcopy)
_updates = st.fixed_dictionaries(
    {},
    optional={
        "artifact_paths": st.dictionaries(_names, _paths, max_size=3),
        "routing_flags": st.dictionaries(_names, st.booleans(), max_size=3),
        "evidence_refs": st.lists(_refs, max_size=2),
        "gate_decisions": st.dictionaries(_names, _decisions, max_size=2),
        "errors": st.lists(_records, max_size=2),
    },
)


def _visible(state: dict[str, Any] | None) -> dict[str, Any]:
    """Drop reducer keys LangGraph shows as empty containers even when never written."""
    return {k: v for k, v in (state or {}).items() if v not in ([], {})}


def _returning(update: dict[str, Any]) -> Any:
    return lambda state: copy.deepcopy(update)


@st.composite
def _parallel_updates(draw: st.DrawFn) -> list[dict[str, Any]]:
    updates = draw(st.lists(_updates, min_size=1, max_size=4))
    # story_id has no reducer: LangGraph rejects two writes in one superstep, so at
    # most one parallel node writes it.
    writer = draw(st.none() | st.integers(min_value=0, max_value=len(updates) - 1))
    if writer is not None:
        updates[writer] = {**updates[writer], "story_id": draw(_short_text)}
    return updates


@pytest.mark.integration
@FAST
@given(updates=_parallel_updates())
def test_merge_equals_langgraph_reducers_for_parallel_nodes(updates):
    """Fan-out/fan-in: the graph's final state equals merge_state_updates of the node updates."""
    graph = StateGraph(GraphState)
    for index, update in enumerate(updates):
        # LangGraph applies one superstep's writes in task-name order: n0, n1, ...
        name = f"n{index}"
        graph.add_node(name, _returning(update))
        graph.add_edge(START, name)
        graph.add_edge(name, "join")
    graph.add_node("join", lambda state: {})
    graph.add_edge("join", END)
    before = copy.deepcopy(updates)
    out = graph.compile().invoke({})
    assert _visible(out) == _visible(merge_state_updates(*updates))
    assert updates == before


class _UserState(GraphState, total=False):
    step: str


@pytest.mark.integration
@FAST
@given(
    initial=_updates,
    updates=st.lists(
        st.tuples(_updates, st.none() | _short_text, st.none() | _short_text),
        min_size=1,
        max_size=4,
    ),
)
def test_merge_equals_langgraph_reducers_for_sequential_nodes(initial, updates):
    """A chain of nodes on a user subclass of GraphState: own keys and story_id last-write-win."""
    steps: list[dict[str, Any]] = []
    for update, story_id, step in updates:
        extra = {"story_id": story_id} if story_id is not None else {}
        if step is not None:
            extra["step"] = step
        steps.append({**update, **extra})
    graph = StateGraph(_UserState)
    previous = START
    for index, update in enumerate(steps):
        name = f"n{index}"
        graph.add_node(name, _returning(update))
        graph.add_edge(previous, name)
        previous = name
    graph.add_edge(previous, END)
    out = graph.compile().invoke(copy.deepcopy(initial))
    assert _visible(out) == _visible(merge_state_updates(initial, *steps))


# --- hypothesis: helpers never mutate their input ----------------------------------


def _scramble(value: Any) -> None:
    """Mutate every container in *value*, to prove the caller's data is not shared."""
    if isinstance(value, dict):
        for item in value.values():
            _scramble(item)
        value["__scrambled__"] = True
    elif isinstance(value, list):
        for item in value:
            _scramble(item)
        value.append("__scrambled__")


@FAST
@given(update=_updates, story_id=st.none() | _short_text)
def test_helpers_never_mutate_or_alias_their_input(update, story_id):
    """Every helper leaves its input equal to a deep copy taken before, even after the result is mutated."""
    if story_id is not None:
        update = {**update, "story_id": story_id}
    before = copy.deepcopy(update)
    results = [
        update_state(update),
        update_artifact_paths(update.get("artifact_paths", {})),
        update_routing_flags(update.get("routing_flags", {})),
        add_evidence_refs(*update.get("evidence_refs", [])),
        update_gate_decisions(update.get("gate_decisions", {})),
        add_errors(*update.get("errors", [])),
    ]
    merged = merge_state_updates(update, update)
    assert results[0] == update
    assert update == before
    for result in results:
        _scramble(result)
    # Like LangGraph's reducers, the merge makes new lists and dicts per key but
    # shares the records inside them; scramble only what it owns.
    for value in merged.values():
        if isinstance(value, list):
            value.append("__scrambled__")
        elif isinstance(value, dict):
            value["__scrambled__"] = True
    assert update == before


@FAST
@given(reason=_short_text.filter(str.strip), node=_names, route=st.none() | _names)
def test_blocked_update_is_always_valid_input(reason, node, route):
    """create_blocked_update's result passes the helpers' own validation and sets the flag."""
    update = create_blocked_update(reason, node=node, route_to=route)
    assert update_state(update) == update
    assert is_blocked(merge_state_updates({"routing_flags": {"blocked": False}}, update))


def test_validation_messages_bound_and_survive_odd_values():
    """Bad values that cannot be repr'd, or are huge, still give a short, readable message."""
    with pytest.raises(StateValidationError) as excinfo:
        update_routing_flags({"odd": _Unprintable(), "long": "z" * 500})
    problems = dict(excinfo.value.problems)
    assert (
        problems["routing_flags['odd']"] == "must be a bool, got <unrepresentable> (_Unprintable)"
    )
    assert len(problems["routing_flags['long']"]) < 100
    assert problems["routing_flags['long']"].endswith("... (str)")


def test_gate_timestamp_must_be_a_string():
    """A non-str gate timestamp is reported before any parsing is tried."""
    with pytest.raises(
        StateValidationError, match=r"timestamp: must be a non-empty str, got 5 \(int\)"
    ):
        update_gate_decisions({"g": {"decision": "pass", "reason": "", "timestamp": 5}})


def test_create_node_error_details_keep_none_and_flatten_deep_nesting():
    """None stays None in details, and nesting beyond the bound becomes text."""
    deep: Any = "leaf"
    for _ in range(12):
        deep = [deep]
    record = create_node_error("x", node="n", details={"none": None, "deep": deep})
    _check_record(record)
    got = record["details"]
    assert got["none"] is None
    level, depth = got["deep"], 0
    while isinstance(level, list):
        level, depth = level[0], depth + 1
    assert depth < 12
    assert "leaf" in level


def test_a_secret_in_a_long_bad_value_is_not_cut_in_half() -> None:
    """A problem message quotes a bad value redacted before it is shortened.

    The key starts where the 60-character quote would cut it to "sk-" and nine
    characters, too short for any key pattern to recognise.
    """
    secret = "sk-" + "A1b2C3d4" * 6
    with pytest.raises(StateValidationError) as excinfo:
        update_routing_flags({"ready": ["p" * 42 + " " + secret]})  # type: ignore[dict-item]
    text = str(excinfo.value)
    assert "[REDACTED]" in text
    assert "A1b2C3d4" not in text
