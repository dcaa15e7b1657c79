"""The error taxonomy: codes, leaves, message templates, pickling."""

from __future__ import annotations

import pickle
import threading
from concurrent.futures import ProcessPoolExecutor

import pytest

from resilient_nodes.errors import (
    MESSAGE_TEMPLATES,
    ConfigError,
    ErrorCode,
    NodeBulkheadFullError,
    NodeCancellationError,
    NodeCircuitOpenError,
    NodeExecutionError,
    NodeRateLimitedError,
    NodeRetryExhaustedError,
    NodeTimeoutError,
    NodeValidationError,
    _error_attributes,
    _format_message,
)


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")


def test_error_codes_are_the_designed_set() -> None:
    """ErrorCode has the six seed codes and the designed new ones, each a str equal to its name."""
    assert {code.name for code in ErrorCode} == {
        "NODE_TIMEOUT",
        "RETRY_EXHAUSTED",
        "VALIDATION_FAILED",
        "CANCELLED",
        "CIRCUIT_OPEN",
        "UNKNOWN",
        # load control: our own refusals
        "RATE_LIMITED",
        "BULKHEAD_FULL",
    }
    for code in ErrorCode:
        assert code == code.name
        assert str(code) == code.name
        assert f"{code}" == code.name


def test_every_code_has_a_template() -> None:
    """Every code has a template mentioning the node."""
    assert set(MESSAGE_TEMPLATES) == set(ErrorCode)
    for template in MESSAGE_TEMPLATES.values():
        assert "{node}" in template


@pytest.mark.parametrize("code", list(ErrorCode))
def test_format_message_with_no_fields_never_raises(code: ErrorCode) -> None:
    """Missing fields render as visible placeholders instead of raising."""
    message = _format_message(code)
    assert "<unnamed>" in message
    assert "{" not in message


def test_format_message_fills_fields_and_shortens_floats() -> None:
    """Fields are substituted; floats print in their shortest form."""
    assert _format_message(ErrorCode.NODE_TIMEOUT, node="plan", timeout=5.0) == (
        "node plan timed out after 5s"
    )
    assert "<timeout?>" in _format_message(ErrorCode.NODE_TIMEOUT, node="plan")


def test_format_message_survives_unprintable_and_huge_values() -> None:
    """A field whose str() raises, or that is huge, still gives a bounded message."""
    message = _format_message(ErrorCode.UNKNOWN, node="n", detail=_Unprintable())
    assert "_Unprintable" in message
    long = _format_message(ErrorCode.UNKNOWN, node="n", detail="x" * 1_000_000)
    assert len(long) < 1000


def test_hierarchy_and_codes() -> None:
    """Every leaf is a NodeExecutionError with its own code and builtin base."""
    cases: list[tuple[NodeExecutionError, ErrorCode, type[BaseException]]] = [
        (NodeTimeoutError(1.5, node="n"), ErrorCode.NODE_TIMEOUT, TimeoutError),
        (NodeCancellationError(node="n"), ErrorCode.CANCELLED, NodeExecutionError),
        (
            NodeCircuitOpenError(failure_count=5, recovery_time=3.0, node="n"),
            ErrorCode.CIRCUIT_OPEN,
            NodeExecutionError,
        ),
        (NodeRetryExhaustedError(3, OSError("x"), node="n"), ErrorCode.RETRY_EXHAUSTED, Exception),
        (NodeValidationError("bad", node="n"), ErrorCode.VALIDATION_FAILED, ValueError),
        (ConfigError([("a", "b")]), ErrorCode.VALIDATION_FAILED, ValueError),
        (NodeExecutionError(node="n"), ErrorCode.UNKNOWN, Exception),
    ]
    for error, code, builtin in cases:
        assert isinstance(error, NodeExecutionError)
        assert isinstance(error, builtin)
        assert error.code is code
        assert error.message == str(error)
        assert str(error)


def test_root_accepts_an_explicit_code_and_message() -> None:
    """The root error takes a message and an overriding code."""
    error = NodeExecutionError("boom", node="n", code=ErrorCode.CANCELLED)
    assert error.code is ErrorCode.CANCELLED
    assert error.node == "n"
    assert str(error) == "boom"
    assert NodeExecutionError(node="x").message == "node x failed: unknown error"


def test_timeout_error() -> None:
    """NodeTimeoutError is a TimeoutError with .timeout in seconds and a templated message."""
    error = NodeTimeoutError(30, node="plan")
    assert isinstance(error, TimeoutError)
    assert error.timeout == 30.0
    assert isinstance(error.timeout, float)
    assert str(error) == "node plan timed out after 30s"
    with pytest.raises(TimeoutError):
        raise error


def test_cancellation_error_reason() -> None:
    """NodeCancellationError carries its reason into the message."""
    error = NodeCancellationError("user pressed stop", node="n")
    assert error.reason == "user pressed stop"
    assert str(error) == "node n was cancelled: user pressed stop"


def test_circuit_open_error() -> None:
    """NodeCircuitOpenError exposes failure_count and a non-negative recovery_time."""
    error = NodeCircuitOpenError(failure_count=5, recovery_time=12.3456, node="llm")
    assert error.failure_count == 5
    assert error.recovery_time == 12.3456
    assert "after 5 failures" in str(error)
    assert "12.346s" in str(error)
    assert NodeCircuitOpenError(failure_count=1, recovery_time=-3).recovery_time == 0.0


def test_retry_exhausted_error_chains_from_last_error() -> None:
    """NodeRetryExhaustedError keeps .attempts/.last_error and, raised from it, __cause__."""
    last = ConnectionError("reset by peer")
    with pytest.raises(NodeRetryExhaustedError) as caught:
        raise NodeRetryExhaustedError(3, last, node="fetch") from last
    error = caught.value
    assert error.attempts == 3
    assert error.last_error is last
    assert error.__cause__ is last
    assert str(error) == "node fetch failed after 3 attempts: ConnectionError: reset by peer"


def test_retry_exhausted_message_survives_unprintable_last_error() -> None:
    """An unprintable last error does not break the message."""

    class WeirdError(Exception):
        def __str__(self) -> str:
            raise RuntimeError

    error = NodeRetryExhaustedError(2, WeirdError())
    assert "Weird" in str(error)


def test_config_error_lists_problems() -> None:
    """ConfigError is a ValueError whose message has one `path: message` line per problem."""
    error = ConfigError([("retry.attempts", "must be >= 1, got 0"), ("", "top-level")])
    assert isinstance(error, ValueError)
    assert error.problems == (("retry.attempts", "must be >= 1, got 0"), ("", "top-level"))
    assert str(error).splitlines() == ["retry.attempts: must be >= 1, got 0", "top-level"]
    assert ConfigError("just text").problems == (("", "just text"),)
    assert str(ConfigError([])) == "invalid configuration"


def test_config_error_prefixed() -> None:
    """prefixed() nests paths, joining an index without a dot."""
    error = ConfigError([("attempts", "x"), ("[1].backoff", "y"), ("", "z")])
    assert error.prefixed("") is error
    assert error.prefixed("layers").problems == (
        ("layers.attempts", "x"),
        ("layers[1].backoff", "y"),
        ("layers", "z"),
    )


def _all_errors() -> list[NodeExecutionError]:
    try:
        raise NodeRetryExhaustedError(4, ValueError("last"), node="r") from ValueError("last")
    except NodeRetryExhaustedError as error:
        exhausted = error
    coded = NodeExecutionError("plain", node="p", code=ErrorCode.CANCELLED)
    coded.add_note("a note")
    return [
        NodeTimeoutError(2.5, node="t"),
        NodeCancellationError("why", node="c"),
        NodeCircuitOpenError(failure_count=7, recovery_time=1.5, node="b"),
        exhausted,
        NodeValidationError("detail", node="v"),
        ConfigError([("a.b", "bad")]),
        coded,
        NodeRateLimitedError(10, 60.0, key="openai", retry_after=1.5, node="l"),
        NodeBulkheadFullError(4, 8, node="h"),
    ]


@pytest.mark.parametrize("error", _all_errors(), ids=lambda e: type(e).__name__)
def test_every_error_pickles(error: NodeExecutionError) -> None:
    """Every error unpickles as the same type with the same message and attributes."""
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.args == error.args
    assert copy.code is error.code
    for name, value in _error_attributes(error).items():
        if isinstance(value, BaseException):
            assert type(getattr(copy, name)) is type(value)
            assert str(getattr(copy, name)) == str(value)
        else:
            assert getattr(copy, name) == value, name
    if error.__cause__ is not None:
        assert type(copy.__cause__) is type(error.__cause__)


def test_unpicklable_last_error_is_replaced_by_a_stand_in() -> None:
    """A last_error that cannot pickle does not stop the error itself from pickling."""

    class HolderError(Exception):
        def __init__(self) -> None:
            super().__init__("holds a lock")
            self.lock = threading.Lock()

    error = NodeRetryExhaustedError(2, HolderError(), node="n")
    copy = pickle.loads(pickle.dumps(error))
    assert copy.attempts == 2
    assert "HolderError: holds a lock" in str(copy.last_error)


def _raise_exhausted(attempts: int) -> None:
    last = ConnectionError("down")
    raise NodeRetryExhaustedError(attempts, last, node="worker") from last


def test_error_crosses_a_process_boundary() -> None:
    """An error raised in a worker process re-raises in the parent with its attributes."""
    with ProcessPoolExecutor(max_workers=1) as pool:
        future = pool.submit(_raise_exhausted, 4)
        with pytest.raises(NodeRetryExhaustedError) as caught:
            future.result()
    assert caught.value.attempts == 4
    assert caught.value.node == "worker"
    assert isinstance(caught.value.last_error, ConnectionError)


class _TupleSlotsError(NodeCircuitOpenError):
    __slots__ = ("tag",)


class _StringSlotError(NodeCircuitOpenError):
    __slots__ = "tag"  # noqa: PLC0205 - the spelling under test


class _PrivateSlotError(NodeExecutionError):
    __slots__ = ("__secret",)

    def __init__(self, secret: str) -> None:
        super().__init__("m")
        self.__secret = secret

    def secret(self) -> str:
        return self.__secret


@pytest.mark.parametrize("cls", [_TupleSlotsError, _StringSlotError])
def test_a_subclass_with_slots_keeps_them_through_pickle(cls: type[NodeCircuitOpenError]) -> None:
    """A user's slotted subclass pickles its slots, however __slots__ is spelled."""
    error = cls(failure_count=1, recovery_time=1.0, node="n")
    error.tag = "T"  # type: ignore[attr-defined]
    copy = pickle.loads(pickle.dumps(error))
    assert copy.tag == "T"
    assert (copy.failure_count, copy.node) == (1, "n")


def test_a_private_slot_survives_pickle() -> None:
    """A name-mangled slot is read and restored under its stored name."""
    assert pickle.loads(pickle.dumps(_PrivateSlotError("S"))).secret() == "S"
