"""Workflow state: the record shapes, LangGraph reducers and partial-update helpers.

A LangGraph node returns a *partial update*: a dict holding only the keys it
changes. LangGraph folds each key into the state with that key's reducer, so
parallel nodes in one superstep can write the same key without conflict.
`GraphState` declares the story-workflow keys and their reducers:

==================  =============================  ===============================
key                 type                           reducer
==================  =============================  ===============================
``story_id``        ``str``                        none: last write wins (two
                                                   writes in one superstep are an
                                                   error in LangGraph)
``artifact_paths``  ``dict[str, str]``             `merge_dicts` (right wins)
``routing_flags``   ``dict[str, bool]``            `merge_dicts`
``evidence_refs``   ``list[EvidenceRef]``          ``operator.add`` (append)
``gate_decisions``  ``dict[str, GateDecision]``    `merge_dicts`
``errors``          ``list[NodeErrorRecord]``      ``operator.add``
==================  =============================  ===============================

The records are TypedDicts, i.e. plain dicts of JSON values at run time, so they
survive any checkpointer and ``json.dumps``:

- `NodeErrorRecord`: ``code`` (an `ErrorCode` value), ``category`` (an
  `ErrorCategory` value), ``message`` (secrets redacted, length bounded),
  ``node``, ``attempts``, ``timestamp`` (ISO-8601 UTC), ``traceback``
  (sanitized), ``retryable``, ``error_type`` (the exception class name) and,
  optionally, ``details`` (JSON values: timeout, retry_after, group members...).
- `EvidenceRef`: ``kind`` and ``uri`` (a path or URI), optionally
  ``description`` and ``node``.
- `GateDecision`: ``decision`` (one of ``"pass"``, ``"fail"``, ``"blocked"``,
  ``"skip"``) and ``reason``, optionally ``node`` and ``timestamp``.

The helpers build partial updates. They never mutate what they are given and
never return an object that aliases it; bad input raises `StateValidationError`
listing every problem as ``path: message`` (for example
``routing_flags['ready']: must be a bool, got 'yes' (str)``).
`merge_state_updates` folds several updates exactly as the reducers would, which
makes it the way to combine helpers' results inside one node.

Nodes are generic over the user's own state type: a state that subclasses
`GraphState`, or any other mapping, works with every helper. Keys the helpers
do not know pass through unchanged.
"""

# No ``from __future__ import annotations`` here on purpose: LangGraph reads the
# reducers out of GraphState's annotations, and real (not string) annotations need
# no name resolution in the caller's namespace.

import math
import operator
import os
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, Final, Literal, NotRequired, TypedDict, TypeVar, get_args

from ._classification import ErrorCategory
from ._records import ERROR_CODES, NodeErrorRecord, minimal_record, now_iso
from ._sanitize import redact_secrets
from ._text import safe_text
from .errors import StateValidationError

__all__ = [
    "GATE_DECISIONS",
    "EvidenceRef",
    "GateDecision",
    "GateDecisionValue",
    "GraphState",
    "add_errors",
    "add_evidence_refs",
    "create_blocked_update",
    "is_blocked",
    "merge_dicts",
    "merge_state_updates",
    "update_artifact_paths",
    "update_gate_decisions",
    "update_routing_flags",
    "update_state",
]

_K = TypeVar("_K")
_V = TypeVar("_V")

_MAX_JSON_DEPTH: Final = 8
_BLOCKED_FLAG: Final = "blocked"


# --- reducer ----------------------------------------------------------------------


def merge_dicts(left: Mapping[_K, _V] | None, right: Mapping[_K, _V] | None, /) -> dict[_K, _V]:
    """LangGraph reducer for dict-valued keys: a new dict, keys of *right* win.

    Neither argument is modified. ``None`` counts as an empty mapping.

    Args:
        left: The current value.
        right: The update.

    Returns:
        A new dict with the entries of both.
    """
    merged: dict[_K, _V] = dict(left) if left else {}
    if right:
        merged.update(right)
    return merged


# --- record shapes ----------------------------------------------------------------

GateDecisionValue = Literal["pass", "fail", "blocked", "skip"]
"""The closed set of gate outcomes.

``pass``: the gate's check succeeded. ``fail``: it ran and failed.
``blocked``: it could not run or decide (a missing input, a human needed); see
`create_blocked_update`. ``skip``: deliberately not evaluated.
"""

GATE_DECISIONS: Final[frozenset[str]] = frozenset(get_args(GateDecisionValue))


class EvidenceRef(TypedDict):
    """A pointer to evidence a node produced or relied on.

    Attributes:
        kind: What the evidence is, e.g. ``"test_report"``, ``"log"``, ``"diff"``.
        uri: Where it is: a path or a URI.
        description: Optional human-readable note.
        node: Optional name of the node that recorded it.
    """

    kind: str
    uri: str
    description: NotRequired[str]
    node: NotRequired[str]


class GateDecision(TypedDict):
    """The outcome of one gate, with the reason for it.

    Attributes:
        decision: One of `GATE_DECISIONS`.
        reason: Why.
        node: Optional name of the node that decided.
        timestamp: Optional ISO-8601 time of the decision.
    """

    decision: GateDecisionValue
    reason: str
    node: NotRequired[str]
    timestamp: NotRequired[str]


class GraphState(TypedDict, total=False):
    """The story-workflow state, with the reducers LangGraph applies per key.

    Subclass it to add your own keys; use it directly as
    ``StateGraph(GraphState)``.
    """

    story_id: str
    artifact_paths: Annotated[dict[str, str], merge_dicts]
    routing_flags: Annotated[dict[str, bool], merge_dicts]
    evidence_refs: Annotated[list[EvidenceRef], operator.add]
    gate_decisions: Annotated[dict[str, GateDecision], merge_dicts]
    errors: Annotated[list[NodeErrorRecord], operator.add]


# Must match GraphState's annotations (a test holds them together).
_LIST_KEYS: Final = frozenset({"evidence_refs", "errors"})
_DICT_KEYS: Final = frozenset({"artifact_paths", "routing_flags", "gate_decisions"})


# --- validation -------------------------------------------------------------------


class _Problems:
    """Collects validation problems so one error can report all of them."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, path: str, message: str) -> None:
        self.items.append((path, message))

    def raise_if_any(self) -> None:
        if self.items:
            raise StateValidationError(self.items)


def _short_repr(value: object, limit: int = 60) -> str:
    return redact_secrets(safe_text(value, limit, as_repr=True))


def _describe(value: object) -> str:
    return f"{_short_repr(value)} ({type(value).__name__})"


def _item_path(path: str, key: object) -> str:
    return f"{path}[{_short_repr(key, 40)}]"


def _check_str(value: object, path: str, problems: _Problems, *, non_empty: bool = True) -> bool:
    if isinstance(value, str) and (value or not non_empty):
        return True
    what = "a non-empty str" if non_empty else "a str"
    problems.add(path, f"must be {what}, got {_describe(value)}")
    return False


def _check_timestamp(value: object, path: str, problems: _Problems) -> bool:
    if not _check_str(value, path, problems):
        return False
    try:
        datetime.fromisoformat(value)  # type: ignore[arg-type]  # checked above
    except ValueError:
        problems.add(path, f"must be an ISO-8601 timestamp, got {_describe(value)}")
        return False
    return True


def _mapping(value: object, path: str, problems: _Problems) -> Mapping[Any, Any] | None:
    if isinstance(value, Mapping):
        return value
    problems.add(path, f"must be a mapping, got {_describe(value)}")
    return None


def _sequence(value: object, path: str, problems: _Problems) -> list[Any] | None:
    if isinstance(value, list | tuple):
        return list(value)
    problems.add(path, f"must be a list, got {_describe(value)}")
    return None


def _keyed_items(value: object, path: str, problems: _Problems) -> list[tuple[str, Any]]:
    """The items of a str-keyed mapping; bad keys are reported and skipped."""
    mapping = _mapping(value, path, problems)
    if mapping is None:
        return []
    items: list[tuple[str, Any]] = []
    for key, item in mapping.items():
        if isinstance(key, str) and key:
            items.append((key, item))
        else:
            problems.add(
                _item_path(path, key), f"key must be a non-empty str, got {_describe(key)}"
            )
    return items


def _unknown_keys(
    record: Mapping[Any, Any], allowed: frozenset[str], path: str, problems: _Problems
) -> None:
    extra = [key for key in record if key not in allowed]
    if extra:
        names = ", ".join(sorted(_short_repr(key, 40) for key in extra))
        problems.add(path, f"unknown key(s) {names}; allowed: {', '.join(sorted(allowed))}")


def _copy_json(value: object, path: str, problems: _Problems, depth: int = 0) -> Any:  # noqa: PLR0911
    """A deep copy of JSON-shaped data; anything else is reported."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        problems.add(path, f"must be a finite number, got {_describe(value)}")
        return None
    if depth >= _MAX_JSON_DEPTH:
        problems.add(path, f"is nested deeper than {_MAX_JSON_DEPTH} levels")
        return None
    if isinstance(value, list | tuple):
        return [
            _copy_json(item, f"{path}[{i}]", problems, depth + 1) for i, item in enumerate(value)
        ]
    if isinstance(value, Mapping):
        return {
            key: _copy_json(item, _item_path(path, key), problems, depth + 1)
            for key, item in _keyed_items(value, path, problems)
        }
    problems.add(
        path, f"must be JSON data (str, number, bool, None, list, dict), got {_describe(value)}"
    )
    return None


def _copy_story_id(value: object, path: str, problems: _Problems) -> str:
    _check_str(value, path, problems, non_empty=False)
    return value  # type: ignore[return-value]  # only returned when no problem was found


def _copy_artifact_paths(value: object, path: str, problems: _Problems) -> dict[str, str]:
    paths: dict[str, str] = {}
    for name, item in _keyed_items(value, path, problems):
        location = os.fspath(item) if isinstance(item, os.PathLike) else item
        if _check_str(location, _item_path(path, name), problems):
            paths[name] = location
    return paths


def _copy_routing_flags(value: object, path: str, problems: _Problems) -> dict[str, bool]:
    flags: dict[str, bool] = {}
    for name, item in _keyed_items(value, path, problems):
        if isinstance(item, bool):
            flags[name] = item
        else:
            problems.add(_item_path(path, name), f"must be a bool, got {_describe(item)}")
    return flags


_EVIDENCE_KEYS: Final = frozenset({"kind", "uri", "description", "node"})


def _copy_evidence_ref(value: object, path: str, problems: _Problems) -> EvidenceRef:
    ref = _mapping(value, path, problems)
    if ref is None:
        return {"kind": "", "uri": ""}
    _unknown_keys(ref, _EVIDENCE_KEYS, path, problems)
    _check_str(ref.get("kind"), f"{path}.kind", problems)
    _check_str(ref.get("uri"), f"{path}.uri", problems)
    for key in ("description", "node"):
        if key in ref:
            _check_str(ref[key], f"{path}.{key}", problems, non_empty=False)
    return {key: ref[key] for key in _EVIDENCE_KEYS if key in ref}  # type: ignore[return-value]


def _copy_evidence_refs(value: object, path: str, problems: _Problems) -> list[EvidenceRef]:
    refs = _sequence(value, path, problems)
    if refs is None:
        return []
    return [_copy_evidence_ref(ref, f"{path}[{i}]", problems) for i, ref in enumerate(refs)]


_GATE_KEYS: Final = frozenset({"decision", "reason", "node", "timestamp"})
_GATE_CHOICES: Final = ", ".join(repr(choice) for choice in sorted(GATE_DECISIONS))


def _copy_gate_decision(value: object, path: str, problems: _Problems) -> GateDecision:
    gate = _mapping(value, path, problems)
    if gate is None:
        return {"decision": "skip", "reason": ""}
    _unknown_keys(gate, _GATE_KEYS, path, problems)
    decision = gate.get("decision")
    if not isinstance(decision, str) or decision not in GATE_DECISIONS:
        problems.add(
            f"{path}.decision", f"must be one of {_GATE_CHOICES}, got {_describe(decision)}"
        )
    _check_str(gate.get("reason"), f"{path}.reason", problems, non_empty=False)
    if "node" in gate:
        _check_str(gate["node"], f"{path}.node", problems, non_empty=False)
    if "timestamp" in gate:
        _check_timestamp(gate["timestamp"], f"{path}.timestamp", problems)
    return {key: gate[key] for key in _GATE_KEYS if key in gate}  # type: ignore[return-value]


def _copy_gate_decisions(value: object, path: str, problems: _Problems) -> dict[str, GateDecision]:
    return {
        gate: _copy_gate_decision(item, _item_path(path, gate), problems)
        for gate, item in _keyed_items(value, path, problems)
    }


_ERROR_KEYS: Final = frozenset(NodeErrorRecord.__annotations__)
_ERROR_CATEGORIES: Final = frozenset(category.value for category in ErrorCategory)


_ERROR_TEXT_FIELDS: Final = (
    ("message", False),
    ("traceback", False),
    ("node", True),
    ("error_type", True),
)


def _check_choice(value: object, choices: frozenset[str], path: str, problems: _Problems) -> None:
    if not isinstance(value, str) or value not in choices:
        names = ", ".join(sorted(choices))
        problems.add(path, f"must be one of {names}, got {_describe(value)}")


def _check_error_fields(record: Mapping[Any, Any], path: str, problems: _Problems) -> None:
    _check_choice(record.get("code"), ERROR_CODES, f"{path}.code", problems)
    _check_choice(record.get("category"), _ERROR_CATEGORIES, f"{path}.category", problems)
    for key, non_empty in _ERROR_TEXT_FIELDS:
        if key in record:
            _check_str(record[key], f"{path}.{key}", problems, non_empty=non_empty)
    if "timestamp" in record:
        _check_timestamp(record["timestamp"], f"{path}.timestamp", problems)
    attempts = record.get("attempts", 0)
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
        problems.add(f"{path}.attempts", f"must be an int >= 0, got {_describe(attempts)}")
    if "retryable" in record and not isinstance(record["retryable"], bool):
        problems.add(f"{path}.retryable", f"must be a bool, got {_describe(record['retryable'])}")


def _copy_error_record(value: object, path: str, problems: _Problems) -> NodeErrorRecord:
    record = _mapping(value, path, problems)
    if record is None:
        return minimal_record("<invalid>", 0)
    _unknown_keys(record, _ERROR_KEYS, path, problems)
    missing = sorted(key for key in _ERROR_KEYS - {"details"} if key not in record)
    if missing:
        problems.add(path, f"missing key(s) {', '.join(missing)}")
    _check_error_fields(record, path, problems)
    copied: dict[str, Any] = {key: record[key] for key in _ERROR_KEYS if key in record}
    if "details" in record:
        if isinstance(record["details"], Mapping):
            copied["details"] = _copy_json(record["details"], f"{path}.details", problems)
        else:
            problems.add(
                f"{path}.details", f"must be a mapping, got {_describe(record['details'])}"
            )
    return copied  # type: ignore[return-value]  # every key was checked above


def _copy_errors(value: object, path: str, problems: _Problems) -> list[NodeErrorRecord]:
    records = _sequence(value, path, problems)
    if records is None:
        return []
    return [
        _copy_error_record(record, f"{path}[{i}]", problems) for i, record in enumerate(records)
    ]


_FIELD_COPIERS: Final[Mapping[str, Callable[[object, str, _Problems], Any]]] = {
    "story_id": _copy_story_id,
    "artifact_paths": _copy_artifact_paths,
    "routing_flags": _copy_routing_flags,
    "evidence_refs": _copy_evidence_refs,
    "gate_decisions": _copy_gate_decisions,
    "errors": _copy_errors,
}


# --- update helpers ---------------------------------------------------------------


def update_state(updates: Mapping[str, Any] | None = None, /, **fields: Any) -> dict[str, Any]:
    """Build a validated partial update from a mapping and/or keyword arguments.

    The `GraphState` keys are validated and copied; other keys (your own state's)
    pass through unchanged. ``update_state({"story_id": "S-1"})`` and
    ``update_state(story_id="S-1")`` are the same.

    Args:
        updates: The update as a mapping.
        **fields: More keys, as keyword arguments.

    Returns:
        A new dict holding the update.

    Raises:
        StateValidationError: If *updates* is not a mapping, a key is given both
            ways or is not a str, or a known key's value has the wrong shape.
    """
    problems = _Problems()
    source = _mapping(updates, "updates", problems) if updates is not None else {}
    result: dict[str, Any] = {}
    for key, value in [*(source or {}).items(), *fields.items()]:
        if not isinstance(key, str):
            problems.add(_item_path("updates", key), f"key must be a str, got {_describe(key)}")
        elif key in result:
            problems.add(key, "given both in the mapping and as a keyword argument")
        else:
            copier = _FIELD_COPIERS.get(key)
            result[key] = value if copier is None else copier(value, key, problems)
    problems.raise_if_any()
    return result


def _single(key: str, value: object) -> Any:
    problems = _Problems()
    copied = _FIELD_COPIERS[key](value, key, problems)
    problems.raise_if_any()
    return copied


def update_artifact_paths(paths: Mapping[str, str | os.PathLike[str]], /) -> GraphState:
    """Record artifact locations by name (merged into ``artifact_paths``).

    Args:
        paths: Artifact name to path. ``os.PathLike`` values are stored as str.

    Returns:
        ``{"artifact_paths": {...}}``.

    Raises:
        StateValidationError: If *paths* is not a mapping, or a name or path is
            not a non-empty str.
    """
    return {"artifact_paths": _single("artifact_paths", paths)}


def update_routing_flags(flags: Mapping[str, bool], /) -> GraphState:
    """Set routing flags (merged into ``routing_flags``).

    Args:
        flags: Flag name to bool (exactly ``True`` or ``False``; ``1`` is rejected).

    Returns:
        ``{"routing_flags": {...}}``.

    Raises:
        StateValidationError: If *flags* is not a mapping, or a name is not a
            non-empty str, or a value is not a bool.
    """
    return {"routing_flags": _single("routing_flags", flags)}


def add_evidence_refs(*refs: EvidenceRef) -> GraphState:
    """Append evidence references (``evidence_refs`` is append-only).

    Args:
        *refs: The references.

    Returns:
        ``{"evidence_refs": [...]}``.

    Raises:
        StateValidationError: If a reference is not a mapping, lacks ``kind`` or
            ``uri``, has a non-str value or an unknown key.
    """
    return {"evidence_refs": _single("evidence_refs", refs)}


def update_gate_decisions(decisions: Mapping[str, GateDecision], /) -> GraphState:
    """Record gate decisions by gate name (merged into ``gate_decisions``).

    Args:
        decisions: Gate name to `GateDecision`.

    Returns:
        ``{"gate_decisions": {...}}``.

    Raises:
        StateValidationError: If *decisions* is not a mapping, or a decision is not
            one of `GATE_DECISIONS`, or a field has the wrong type.
    """
    return {"gate_decisions": _single("gate_decisions", decisions)}


def add_errors(*records: NodeErrorRecord) -> GraphState:
    """Append error records (``errors`` is append-only).

    Args:
        *records: Records, normally from `create_node_error`.

    Returns:
        ``{"errors": [...]}``.

    Raises:
        StateValidationError: If a record is not a well-formed `NodeErrorRecord`.
    """
    return {"errors": _single("errors", records)}


def create_blocked_update(
    reason: str, /, *, node: str, route_to: str | None = None, gate: str | None = None
) -> GraphState:
    """Mark the run blocked, say why, and optionally raise a route's flag.

    The update sets ``routing_flags["blocked"]`` (and ``routing_flags[route_to]``
    when given) to ``True``, for a conditional edge to act on, and records a
    ``"blocked"`` `GateDecision` with the reason under *gate* (the node's name by
    default). Secrets in *reason* are redacted. Both keys merge, so parallel
    nodes may block in the same superstep.

    Args:
        reason: Why the run is blocked.
        node: The node that blocks it.
        route_to: Name of a routing flag to set as well, e.g. ``"needs_human"``.
        gate: The gate the decision is recorded under; defaults to *node*.

    Returns:
        ``{"routing_flags": {...}, "gate_decisions": {...}}``.

    Raises:
        StateValidationError: If an argument is not a non-empty str.
    """
    problems = _Problems()
    _check_str(reason, "reason", problems)
    _check_str(node, "node", problems)
    for name, value in (("route_to", route_to), ("gate", gate)):
        if value is not None:
            _check_str(value, name, problems)
    problems.raise_if_any()
    flags = {_BLOCKED_FLAG: True}
    if route_to is not None:
        flags[route_to] = True
    decision: GateDecision = {
        "decision": "blocked",
        "reason": redact_secrets(reason),
        "node": node,
        "timestamp": now_iso(),
    }
    return {"routing_flags": flags, "gate_decisions": {gate or node: decision}}


def is_blocked(state: Mapping[str, Any], /) -> bool:
    """Whether `create_blocked_update` (or anything else) set ``routing_flags["blocked"]``.

    Args:
        state: Any state mapping (yours or `GraphState`).

    Returns:
        ``True`` only if the flag is set to ``True``.
    """
    flags = state.get("routing_flags")
    return isinstance(flags, Mapping) and flags.get(_BLOCKED_FLAG) is True


def merge_state_updates(*updates: Mapping[str, Any]) -> dict[str, Any]:
    """Combine partial updates exactly as `GraphState`'s reducers would.

    Updates are applied left to right, as LangGraph applies the writes of
    consecutive nodes (or of parallel nodes, in task order): list keys are
    concatenated, dict keys merged with `merge_dicts`, and every other key (
    ``story_id``, your own keys) takes the last value written. The first argument
    may be a whole state. Like the reducers, it builds new lists and dicts for the
    reducer keys but shares the records inside them with the inputs. LangGraph's
    ``Overwrite`` is not interpreted.

    Args:
        *updates: The partial updates.

    Returns:
        A new dict; the inputs are not modified.

    Raises:
        StateValidationError: If an update is not a mapping, or a list key's value
            is not a list (or tuple), or a dict key's value is not a mapping.
    """
    problems = _Problems()
    merged: dict[str, Any] = {}
    for index, update in enumerate(updates):
        where = f"updates[{index}]"
        if _mapping(update, where, problems) is None:
            continue
        for key, value in update.items():
            if key in _LIST_KEYS:
                if isinstance(value, list | tuple):
                    merged[key] = [*merged.get(key, ()), *value]
                else:
                    problems.add(_item_path(where, key), f"must be a list, got {_describe(value)}")
            elif key in _DICT_KEYS:
                if isinstance(value, Mapping):
                    merged[key] = merge_dicts(merged.get(key), value)
                else:
                    problems.add(
                        _item_path(where, key), f"must be a mapping, got {_describe(value)}"
                    )
            else:
                merged[key] = value
    problems.raise_if_any()
    return merged
