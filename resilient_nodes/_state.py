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
from typing import (
    Annotated,
    Any,
    Final,
    Literal,
    NotRequired,
    TypedDict,
    TypeVar,
    get_args,
    get_origin,
    is_typeddict,
)

import cattrs
from cattrs.cols import list_structure_factory, mapping_structure_factory
from cattrs.errors import ForbiddenExtraKeysError
from cattrs.gen.typeddicts import make_dict_structure_fn as make_typeddict_structure_fn

from ._classification import ErrorCategory
from ._records import ERROR_CODES, NodeErrorRecord, now_iso
from ._sanitize import CUT_CONTEXT, redact_secrets, redacted_head
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
_T = TypeVar("_T")

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
_STATE_KEYS: Final = _LIST_KEYS | _DICT_KEYS | {"story_id"}


# --- validation -------------------------------------------------------------------
#
# The helpers check their input by structuring it, with a private cattrs converter,
# into the private TypedDicts below. cattrs walks the data, builds new dicts and
# lists (so a result never aliases its input) and collects every problem with its
# path. A constrained value is ``Annotated[type, check]``: the check returns the
# value or raises `_InvalidError` saying what is wrong, and cattrs records where.


class _InvalidError(ValueError):
    """What is wrong with a value; cattrs records where it was."""


def _short_repr(value: object, limit: int = 60) -> str:
    # Redacted before the cut, not after: a secret cut in two is no longer
    # recognisable, and its first half would be kept.
    text = safe_text(value, limit + CUT_CONTEXT, as_repr=True)
    if len(text) <= limit:
        return redact_secrets(text)
    return redacted_head(text, limit - 3) + "..."


def _describe(value: object) -> str:
    return f"{_short_repr(value)} ({type(value).__name__})"


def _check(test: Callable[[Any], object], what: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if test(value):
            return value
        raise _InvalidError(f"{what}, got {_describe(value)}")

    return check


def _one_of(choices: frozenset[str], show: Callable[[str], str] = str) -> Callable[[Any], Any]:
    names = ", ".join(map(show, sorted(choices)))
    return _check(
        lambda value: isinstance(value, str) and value in choices, f"must be one of {names}"
    )


_is_str = _check(lambda value: isinstance(value, str), "must be a str")
_is_bool = _check(lambda value: isinstance(value, bool), "must be a bool")
_count = _check(
    lambda n: isinstance(n, int) and not isinstance(n, bool) and n >= 0, "must be an int >= 0"
)
_non_empty = _check(lambda value: isinstance(value, str) and value, "must be a non-empty str")


def _artifact_path(value: object) -> Any:
    return _non_empty(os.fspath(value) if isinstance(value, os.PathLike) else value)


def _timestamp(value: object) -> Any:
    text = _non_empty(value)
    try:
        datetime.fromisoformat(text)
    except ValueError:
        raise _InvalidError(f"must be an ISO-8601 timestamp, got {_describe(value)}") from None
    return value


def _levels(value: object, limit: int) -> int:
    """How deep *value*'s lists and dicts nest, counted to at most *limit* + 1."""
    if isinstance(value, Mapping):
        value = list(value.values())
    if not isinstance(value, list | tuple):
        return 0
    return 1 + max((_levels(item, limit - 1) for item in value if limit > 0), default=0)


def _json(value: object) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise _InvalidError(f"must be a finite number, got {_describe(value)}")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return _converter.structure(value, list[_Json])
    if isinstance(value, Mapping):
        return _converter.structure(value, dict[_Key, _Json])
    raise _InvalidError(
        f"must be JSON data (str, number, bool, None, list, dict), got {_describe(value)}"
    )


def _details(value: object) -> Any:
    # Bounded first, so a deep or self-containing value cannot exhaust the stack.
    if _levels(value, _MAX_JSON_DEPTH) > _MAX_JSON_DEPTH:
        raise _InvalidError(f"is nested deeper than {_MAX_JSON_DEPTH} levels")
    return _converter.structure(value, dict[_Key, _Json])


_Key = Annotated[
    str, _check(lambda key: isinstance(key, str) and key, "key must be a non-empty str")
]
_NonEmpty = Annotated[str, _non_empty]
_Timestamp = Annotated[str, _timestamp]
_Json = Annotated[Any, _json]


class _EvidenceRef(TypedDict):
    kind: _NonEmpty
    uri: _NonEmpty
    description: NotRequired[str]
    node: NotRequired[str]


class _GateDecision(TypedDict):
    decision: Annotated[GateDecisionValue, _one_of(GATE_DECISIONS, repr)]
    reason: str
    node: NotRequired[str]
    timestamp: NotRequired[_Timestamp]


class _NodeErrorRecord(TypedDict):
    code: Annotated[str, _one_of(ERROR_CODES)]
    category: Annotated[str, _one_of(frozenset(category.value for category in ErrorCategory))]
    message: str
    node: _NonEmpty
    attempts: Annotated[int, _count]
    timestamp: _Timestamp
    traceback: str
    retryable: bool
    error_type: _NonEmpty
    details: NotRequired[Annotated[dict[str, Any], _details]]


class _GraphState(TypedDict, total=False):
    story_id: str
    artifact_paths: dict[_Key, Annotated[str, _artifact_path]]
    routing_flags: dict[_Key, bool]
    evidence_refs: list[_EvidenceRef]
    gate_decisions: dict[_Key, _GateDecision]
    errors: list[_NodeErrorRecord]


class _BlockedArgs(TypedDict):
    reason: _NonEmpty
    node: _NonEmpty
    route_to: _NonEmpty | None
    gate: _NonEmpty | None


_StructureHook = Callable[[Any, Any], Any]


def _only(
    kinds: type | tuple[type, ...], what: str, make_hook: Callable[[Any, Any], _StructureHook]
) -> Callable[[Any, cattrs.BaseConverter], _StructureHook]:
    """A hook factory: refuse anything but *kinds*, then let cattrs' own hook work.

    Left alone, cattrs turns any iterable into a list (a str into its letters) and
    fails on a non-mapping without a word about the value.
    """

    def factory(type_: Any, converter: cattrs.BaseConverter) -> _StructureHook:
        structure = make_hook(type_, converter)

        def checked(value: object, _type: object) -> Any:
            if not isinstance(value, kinds):
                raise _InvalidError(f"must be {what}, got {_describe(value)}")
            return structure(dict(value) if isinstance(value, Mapping) else value, type_)

        return checked

    return factory


def _origin_is(origin: object) -> Callable[[Any], bool]:
    return lambda type_: get_origin(type_) is origin


_converter: Final = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
# cattrs would coerce (5 to "5", "no" to True); the state takes only the real thing.
_converter.register_structure_hook(str, lambda value, _: _is_str(value))
_converter.register_structure_hook(bool, lambda value, _: _is_bool(value))
_converter.register_structure_hook_func(
    _origin_is(Annotated), lambda value, type_: type_.__metadata__[0](value)
)
_converter.register_structure_hook_factory(
    _origin_is(list), _only((list, tuple), "a list", list_structure_factory)
)
_converter.register_structure_hook_factory(
    _origin_is(dict), _only(Mapping, "a mapping", mapping_structure_factory)
)
_converter.register_structure_hook_factory(
    is_typeddict, _only(Mapping, "a mapping", make_typeddict_structure_fn)
)


def _message(error: BaseException) -> str:
    if isinstance(error, _InvalidError):
        return str(error)
    if isinstance(error, KeyError):
        return "is required"
    if isinstance(error, ForbiddenExtraKeysError):
        extra = ", ".join(sorted(_short_repr(key, 40) for key in error.extra_fields))
        return f"unknown key(s) {extra}; allowed: {', '.join(sorted(error.cl.__annotations__))}"
    # Reading the value raised (a broken __fspath__ or mapping, say).
    return f"could not be read ({type(error).__name__}: {safe_text(error, 200)})"


def _structured(value: object, schema: type[_T]) -> _T:
    """*value*, checked against *schema* and copied.

    Raises:
        StateValidationError: Listing every problem as ``path: message``.
    """
    try:
        return _converter.structure(value, schema)
    except Exception as error:
        # transform_error gives "message @ path" lines. A NUL ends the message: no
        # path holds one (keys appear as their repr).
        lines = cattrs.transform_error(error, "", lambda exc, _: f"{_message(exc)}\0")
        problems = [line.rpartition("\0 @ ") for line in lines]
        raise StateValidationError(
            (path.removeprefix("."), message) for message, _, path in problems
        ) from error


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
    problems: list[tuple[str, str]] = []
    source: object = {} if updates is None else updates  # checked for untyped callers
    if not isinstance(source, Mapping):
        problems.append(("updates", f"must be a mapping, got {_describe(source)}"))
        source = {}
    for key in source:
        if not isinstance(key, str):
            problems.append(
                (f"updates[{_short_repr(key, 40)}]", f"key must be a str, got {_describe(key)}")
            )
        elif key in fields:
            problems.append((key, "given both in the mapping and as a keyword argument"))
    result = {**source, **fields}
    known = {key: value for key, value in result.items() if key in _STATE_KEYS}
    try:
        result.update(_structured(known, _GraphState))
    except StateValidationError as error:
        problems.extend(error.problems)
    if problems:
        raise StateValidationError(problems)
    return result


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
    return _structured({"artifact_paths": paths}, _GraphState)


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
    return _structured({"routing_flags": flags}, _GraphState)


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
    return _structured({"evidence_refs": refs}, _GraphState)


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
    return _structured({"gate_decisions": decisions}, _GraphState)


def add_errors(*records: NodeErrorRecord) -> GraphState:
    """Append error records (``errors`` is append-only).

    Args:
        *records: Records, normally from `create_node_error`.

    Returns:
        ``{"errors": [...]}``.

    Raises:
        StateValidationError: If a record is not a well-formed `NodeErrorRecord`.
    """
    return _structured({"errors": records}, _GraphState)


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
    _structured({"reason": reason, "node": node, "route_to": route_to, "gate": gate}, _BlockedArgs)
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
    problems: list[tuple[str, str]] = []
    merged: dict[str, Any] = {}
    checked: tuple[object, ...] = updates  # checked for untyped callers
    for index, update in enumerate(checked):
        if not isinstance(update, Mapping):
            problems.append((f"updates[{index}]", f"must be a mapping, got {_describe(update)}"))
            continue
        for key, value in update.items():
            if key in _LIST_KEYS and isinstance(value, list | tuple):
                merged[key] = [*merged.get(key, ()), *value]
            elif key in _DICT_KEYS and isinstance(value, Mapping):
                merged[key] = merge_dicts(merged.get(key), value)
            elif key in _LIST_KEYS | _DICT_KEYS:
                shape = "a list" if key in _LIST_KEYS else "a mapping"
                problems.append(
                    (f"updates[{index}][{key!r}]", f"must be {shape}, got {_describe(value)}")
                )
            else:
                merged[key] = value
    if problems:
        raise StateValidationError(problems)
    return merged
