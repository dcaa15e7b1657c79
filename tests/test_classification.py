"""Classification: categories, HTTP duck typing, Retry-After, groups, user rules."""

from __future__ import annotations

import asyncio
import errno
import math
import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any, Literal

import pytest
from _helpers import trio_cancelled
from cattrs.errors import ClassValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient_nodes._breaker import counts_as_failure
from resilient_nodes._classification import (
    ClassificationRule,
    ErrorCategory,
    ErrorClassification,
    classify_error,
    get_error_category,
    is_retryable_node_error,
    register_classification_rule,
    unregister_classification_rule,
)
from resilient_nodes.errors import (
    AbandonedThreadLimitError,
    ConfigError,
    ErrorCode,
    NodeCancellationError,
    NodeCircuitOpenError,
    NodeExecutionError,
    NodeRetryExhaustedError,
    NodeTimeoutError,
    NodeValidationError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator


class HTTPError(Exception):
    """An HTTP error shaped like requests'/httpx's, with any attributes given."""

    def __init__(self, message: str = "http error", **attributes: Any) -> None:
        super().__init__(message)
        for name, value in attributes.items():
            setattr(self, name, value)


class Response:
    def __init__(self, **attributes: Any) -> None:
        for name, value in attributes.items():
            setattr(self, name, value)


@pytest.fixture
def rules() -> Iterator[list[ClassificationRule]]:
    """Rules registered through this list are removed after the test."""
    added: list[ClassificationRule] = []
    yield added
    for rule in added:
        unregister_classification_rule(rule)


# --- HTTP by duck typing ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "category", "retryable"),
    [
        (408, ErrorCategory.TIMEOUT, True),
        (425, ErrorCategory.SERVER, True),
        (429, ErrorCategory.RATE_LIMIT, True),
        (500, ErrorCategory.SERVER, True),
        (502, ErrorCategory.SERVER, True),
        (503, ErrorCategory.SERVER, True),
        (504, ErrorCategory.SERVER, True),
        (599, ErrorCategory.SERVER, True),
        (400, ErrorCategory.CLIENT, False),
        # authentication and permission errors are their own category
        (401, ErrorCategory.AUTH, False),
        (402, ErrorCategory.QUOTA, False),
        (403, ErrorCategory.AUTH, False),
        (404, ErrorCategory.CLIENT, False),
        (529, ErrorCategory.SERVER, True),
        (422, ErrorCategory.CLIENT, False),
    ],
)
@pytest.mark.parametrize(
    "make",
    [
        lambda s: HTTPError(status_code=s),
        lambda s: HTTPError(status=s),
        lambda s: HTTPError(response=Response(status_code=s)),
        lambda s: HTTPError(response=Response(status=s)),
    ],
    ids=["status_code", "status", "response.status_code", "response.status"],
)
def test_http_status_by_duck_typing(
    make: Any, status: int, category: ErrorCategory, retryable: bool
) -> None:
    """HTTP statuses are read from any of the four places; 408/425/429/5xx are retryable."""
    verdict = classify_error(make(status))
    assert verdict.category is category
    assert verdict.retryable is retryable


def test_non_error_status_and_bool_status_are_ignored() -> None:
    """A 2xx/3xx status or a bool says nothing; the other rules decide."""
    assert classify_error(HTTPError(status_code=200)).category is ErrorCategory.UNKNOWN
    assert get_error_category(type("E", (ConnectionError,), {"status": 302})()) is (
        ErrorCategory.NETWORK
    )
    assert classify_error(HTTPError(status_code=True)).category is ErrorCategory.UNKNOWN
    assert classify_error(HTTPError(status_code="503")).category is ErrorCategory.UNKNOWN


def test_http_attribute_that_raises_counts_as_absent() -> None:
    """A `response` property that raises does not hide the status on the error itself."""

    class FussyError(Exception):
        status_code = 503

        @property
        def response(self) -> object:
            raise RuntimeError("no response")

    assert classify_error(FussyError()).category is ErrorCategory.SERVER


# --- Retry-After --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        (b"30", 30.0),
        (45, 45.0),
        (2.5, 2.5),
        (0, 0.0),
        ("-5", None),
        (-5, None),
        (float("nan"), None),
        (float("-inf"), None),
        ("nan", None),
        ("soon", None),
        (b"\xff\xfe", None),
        ([], None),
        (True, None),
        ("99999999", 86400.0),
        (10**400, 86400.0),
    ],
)
def test_retry_after_header_values(value: object, expected: float | None) -> None:
    """Retry-After in seconds (str, bytes, number) parses; negative/NaN/garbage is ignored."""
    error = HTTPError(status_code=429, headers={"Retry-After": value})
    assert classify_error(error).retry_after == expected


def test_retry_after_http_date() -> None:
    """A Retry-After HTTP date becomes the seconds until then; a past date means 0."""
    future = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    verdict = classify_error(HTTPError(status_code=503, headers={"retry-after": future}))
    assert verdict.retry_after is not None
    assert 85 <= verdict.retry_after <= 90
    past = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert (
        classify_error(HTTPError(status_code=503, headers={"Retry-After": past})).retry_after == 0
    )
    naive = format_datetime(datetime.now(UTC).replace(tzinfo=None) + timedelta(seconds=60))
    naive_wait = classify_error(HTTPError(status_code=503, headers={"Retry-After": naive}))
    assert naive_wait.retry_after is not None
    assert 55 <= naive_wait.retry_after <= 60


def test_retry_after_attribute_number_and_timedelta() -> None:
    """A retry_after attribute (number or timedelta) wins over headers."""
    error = HTTPError(
        status_code=429, retry_after=timedelta(seconds=12), headers={"Retry-After": "1"}
    )
    assert classify_error(error).retry_after == 12.0
    assert classify_error(HTTPError(status_code=429, retry_after=3)).retry_after == 3.0
    garbage = HTTPError(status_code=429, retry_after="x", headers={"Retry-After": "4"})
    assert classify_error(garbage).retry_after == 4.0


def test_retry_after_on_response_headers_any_case() -> None:
    """Headers on .response.headers are read, with the name matched in any case."""
    error = HTTPError(response=Response(status_code=429, headers={"RETRY-AFTER": "8"}))
    verdict = classify_error(error)
    assert verdict.category is ErrorCategory.RATE_LIMIT
    assert verdict.retry_after == 8.0


def test_retry_after_with_raising_headers_object() -> None:
    """A headers object whose get() raises is ignored rather than breaking classification."""

    class BadHeaders:
        def get(self, key: str) -> object:
            raise KeyError(key)

    error = HTTPError(status_code=503, headers=BadHeaders())
    assert classify_error(error) == ErrorClassification(ErrorCategory.SERVER, retryable=True)
    assert classify_error(HTTPError(status_code=503, headers=object())).retry_after is None


def test_retry_after_on_plain_timeout() -> None:
    """Retry-After is also read for non-HTTP retryable errors."""

    class ThrottledError(TimeoutError):
        retry_after = 2

    assert classify_error(ThrottledError()).retry_after == 2.0


# --- timeouts and network ---------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        TimeoutError("slow"),
        TimeoutError(),
        type("ConnectTimeout", (Exception,), {})(),
        type("ReadTimeout", (OSError,), {})(),
    ],
    ids=repr,
)
def test_timeouts_are_retryable(error: BaseException) -> None:
    """Timeouts (builtin or named *Timeout*) are retryable TIMEOUT errors."""
    verdict = classify_error(error)
    assert verdict.category is ErrorCategory.TIMEOUT
    assert verdict.retryable
    assert verdict.code is ErrorCode.NODE_TIMEOUT


@pytest.mark.parametrize(
    "error",
    [
        ConnectionError("refused"),
        ConnectionResetError(),
        BrokenPipeError(),
        socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
        OSError(errno.ECONNRESET, "Connection reset by peer"),
        OSError(errno.ENETUNREACH, "Network is unreachable"),
        type("NetworkError", (Exception,), {})(),
        type("RemoteProtocolError", (Exception,), {})(),
        type("APIConnectionError", (Exception,), {})(),
    ],
    ids=repr,
)
def test_network_errors_are_retryable(error: BaseException) -> None:
    """Connection errors, resolver errors, network errnos and network-named classes retry."""
    verdict = classify_error(error)
    assert verdict.category is ErrorCategory.NETWORK
    assert verdict.retryable


def test_other_oserror_is_not_network() -> None:
    """An OSError with an unrelated errno is not a network error."""
    assert not is_retryable_node_error(OSError(errno.ENOENT, "No such file"))


# --- validation and programming -----------------------------------------------------------


class ValidationError(ValueError):
    """Shaped like pydantic's (which is a ValueError)."""


class SchemaValidationError(Exception):
    """A validation error by name only."""


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad"),
        ValidationError("pydantic-like"),
        SchemaValidationError("by name"),
        ClassValidationError("cattrs", [KeyError("a"), TypeError("b")], dict),
        ConfigError([("x", "y")]),
        NodeValidationError("not a mapping"),
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_validation_errors_are_not_retryable(error: BaseException) -> None:
    """Validation errors (incl. cattrs' group and pydantic by name) are not retryable."""
    verdict = classify_error(error)
    assert verdict.category is ErrorCategory.VALIDATION
    assert not verdict.retryable
    assert verdict.code is ErrorCode.VALIDATION_FAILED


def test_real_pydantic_validation_error() -> None:
    """A real pydantic ValidationError is a non-retryable validation error."""
    pydantic = pytest.importorskip("pydantic")

    class Model(pydantic.BaseModel):
        n: int

    with pytest.raises(pydantic.ValidationError) as caught:
        Model(n="not a number")
    assert get_error_category(caught.value) is ErrorCategory.VALIDATION


@pytest.mark.parametrize(
    "error",
    [
        TypeError(),
        NameError(),
        AttributeError(),
        KeyError("k"),
        IndexError(),
        AssertionError(),
        ZeroDivisionError(),
        ImportError(),
        NotImplementedError(),
        RecursionError(),
    ],
    ids=lambda e: type(e).__name__,
)
def test_programming_errors_are_not_retryable(error: BaseException) -> None:
    """Programming errors are PROGRAMMING and never retried."""
    verdict = classify_error(error)
    assert verdict.category is ErrorCategory.PROGRAMMING
    assert not verdict.retryable


# --- our own errors -----------------------------------------------------------------------


def test_own_errors() -> None:
    """Our timeout retries; open circuit, cancellation token and exhausted retry do not."""
    timeout = classify_error(NodeTimeoutError(1))
    assert (timeout.category, timeout.retryable, timeout.code) == (
        ErrorCategory.TIMEOUT,
        True,
        ErrorCode.NODE_TIMEOUT,
    )
    circuit = classify_error(NodeCircuitOpenError(failure_count=3, recovery_time=4.0))
    assert (circuit.category, circuit.retryable, circuit.code, circuit.retry_after) == (
        ErrorCategory.CIRCUIT_OPEN,
        False,
        ErrorCode.CIRCUIT_OPEN,
        4.0,
    )
    cancelled = classify_error(NodeCancellationError())
    assert (cancelled.category, cancelled.retryable) == (ErrorCategory.CANCELLED, False)
    exhausted = classify_error(NodeRetryExhaustedError(3, TimeoutError()))
    assert (exhausted.category, exhausted.retryable, exhausted.code) == (
        ErrorCategory.RETRY_EXHAUSTED,
        False,
        ErrorCode.RETRY_EXHAUSTED,
    )
    plain = classify_error(NodeExecutionError("x"))
    assert (plain.category, plain.retryable) == (ErrorCategory.UNKNOWN, False)


@pytest.mark.parametrize("scope", ["node", "process"])
def test_abandoned_thread_limit_is_a_neutral_refusal(scope: Literal["node", "process"]) -> None:
    """Our refusal to start one more thread is not retried and no breaker counts it."""
    error = AbandonedThreadLimitError(32, node="plan", scope=scope)
    verdict = classify_error(error)
    # A local refusal: once filed under circuit_open for want of a
    # better category, now `rejected` with the bulkhead and the rate limit.
    assert (verdict.category, verdict.retryable, verdict.retry_after) == (
        ErrorCategory.REJECTED,
        False,
        None,
    )
    assert not counts_as_failure(error)
    # Unlike the unknown errors it used to be classified as, which a breaker counts.
    assert counts_as_failure(NodeExecutionError("x"))


# --- exception groups ---------------------------------------------------------------------


def test_group_of_retryable_members_is_retryable_with_longest_wait() -> None:
    """A group whose members all retry is retryable, waiting the longest Retry-After."""
    group = ExceptionGroup(
        "all transient",
        [
            HTTPError(status_code=429, retry_after=5),
            TimeoutError(),
            ExceptionGroup("nested", [HTTPError(status_code=503, retry_after=9)]),
        ],
    )
    verdict = classify_error(group)
    assert verdict.retryable
    assert verdict.category is ErrorCategory.RATE_LIMIT
    assert verdict.retry_after == 9.0


def test_group_with_one_non_retryable_member_is_not_retryable() -> None:
    """One non-retryable member makes the group non-retryable, with that member's verdict."""
    group = ExceptionGroup("mixed", [TimeoutError(), KeyError("x"), ValueError()])
    verdict = classify_error(group)
    assert not verdict.retryable
    assert verdict.category is ErrorCategory.PROGRAMMING


def test_deeply_nested_group_does_not_raise() -> None:
    """A very deep group nesting still gives a verdict."""
    error: Exception = TimeoutError()
    for _ in range(200):
        error = ExceptionGroup("deep", [error])
    assert isinstance(classify_error(error), ErrorClassification)
    assert not is_retryable_node_error(error)


# --- cancellation and control flow ------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        asyncio.CancelledError,
        trio_cancelled,
        KeyboardInterrupt,
        SystemExit,
        GeneratorExit,
        lambda: BaseExceptionGroup("g", [KeyboardInterrupt()]),
        lambda: ExceptionGroup("g", [TimeoutError(), _graph_interrupt()]),
    ],
    ids=[
        "CancelledError",
        "trio.Cancelled",
        "KeyboardInterrupt",
        "SystemExit",
        "GeneratorExit",
        "group with interrupt",
        "group with GraphInterrupt",
    ],
)
def test_cancellation_is_never_retryable_even_with_rules(
    make: Any, rules: list[ClassificationRule]
) -> None:
    """Cancellation and exits are CANCELLED, never retryable; a catch-all rule cannot change that."""
    error = make()
    rules.append(
        register_classification_rule(BaseException, category=ErrorCategory.NETWORK, retryable=True)
    )
    rules.append(register_classification_rule(lambda _e: True, category="server", retryable=True))
    verdict = classify_error(error)
    assert verdict.category is ErrorCategory.CANCELLED
    assert verdict.code is ErrorCode.CANCELLED
    assert not verdict.retryable


def _graph_interrupt() -> Exception:
    errors = pytest.importorskip("langgraph.errors")
    return errors.GraphInterrupt()  # type: ignore[no-any-return]


def test_langgraph_interrupt_is_control_flow() -> None:
    """A real LangGraph GraphInterrupt (an Exception) is control flow, not a failure."""
    verdict = classify_error(_graph_interrupt())
    assert verdict.category is ErrorCategory.CANCELLED
    assert not verdict.retryable


# --- user rules ---------------------------------------------------------------------------


class QuotaExceededError(Exception):
    pass


def test_user_rule_by_type_tuple_and_predicate(rules: list[ClassificationRule]) -> None:
    """Rules match by type, tuple of types or predicate, and carry retry_after."""
    assert get_error_category(QuotaExceededError()) is ErrorCategory.UNKNOWN
    rules.append(
        register_classification_rule(
            QuotaExceededError, category=ErrorCategory.RATE_LIMIT, retryable=True
        )
    )
    error = QuotaExceededError()
    error.retry_after = 7  # type: ignore[attr-defined]
    verdict = classify_error(error)
    assert (verdict.category, verdict.retryable, verdict.retry_after) == (
        ErrorCategory.RATE_LIMIT,
        True,
        7.0,
    )
    rules.append(
        register_classification_rule((KeyError, IndexError), category="validation", retryable=False)
    )
    assert get_error_category(IndexError()) is ErrorCategory.VALIDATION
    rules.append(
        register_classification_rule(
            lambda e: "flaky" in str(e),
            category=ErrorCategory.SERVER,
            retryable=True,
            code=ErrorCode.UNKNOWN,
        )
    )
    assert is_retryable_node_error(RuntimeError("flaky backend"))
    assert not is_retryable_node_error(RuntimeError("solid failure"))


def test_newest_rule_wins_and_unregister_restores(rules: list[ClassificationRule]) -> None:
    """The newest matching rule decides; unregistering it restores the previous verdict."""
    older = register_classification_rule(ValueError, category="server", retryable=True)
    newer = register_classification_rule(ValueError, category="client", retryable=False)
    rules.extend([older, newer])
    assert get_error_category(ValueError()) is ErrorCategory.CLIENT
    unregister_classification_rule(newer)
    assert get_error_category(ValueError()) is ErrorCategory.SERVER
    unregister_classification_rule(older)
    unregister_classification_rule(older)  # absent: no error
    assert get_error_category(ValueError()) is ErrorCategory.VALIDATION


def test_raising_predicate_is_ignored(rules: list[ClassificationRule]) -> None:
    """A predicate that raises counts as no match; the built-in rules still decide."""

    def explode(_error: BaseException) -> bool:
        raise RuntimeError("bad predicate")

    rules.append(register_classification_rule(explode, category="server", retryable=True))
    assert classify_error(TimeoutError()).category is ErrorCategory.TIMEOUT
    assert not rules[0].matches(TimeoutError())


def test_rule_code_defaults_from_category(rules: list[ClassificationRule]) -> None:
    """A rule without a code gets the category's code."""
    rules.append(
        register_classification_rule(QuotaExceededError, category="timeout", retryable=True)
    )
    assert classify_error(QuotaExceededError()).code is ErrorCode.NODE_TIMEOUT


def test_bad_rules_are_config_errors() -> None:
    """An unknown category or a non-callable match is a ConfigError."""
    with pytest.raises(ConfigError, match="category"):
        register_classification_rule(ValueError, category="nonsense", retryable=True)
    with pytest.raises(ConfigError, match="match"):
        register_classification_rule(42, category="server", retryable=True)  # type: ignore[arg-type]


# --- chains and hostile inputs ------------------------------------------------------------


def test_cause_chain_decides_unknown_errors() -> None:
    """An otherwise unknown error is classified by its explicit __cause__."""
    try:
        try:
            raise ConnectionResetError
        except ConnectionResetError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        verdict = classify_error(outer)
    assert verdict.category is ErrorCategory.NETWORK
    assert verdict.retryable


def test_cyclic_cause_chain() -> None:
    """A cyclic __cause__ chain terminates with a verdict."""
    first, second = RuntimeError("a"), RuntimeError("b")
    first.__cause__ = second
    second.__cause__ = first
    verdict = classify_error(first)
    assert verdict == ErrorClassification(ErrorCategory.UNKNOWN, retryable=False)
    long_chain = RuntimeError("0")
    head = long_chain
    for i in range(100):
        nxt = RuntimeError(str(i))
        head.__cause__ = nxt
        head = nxt
    head.__cause__ = TimeoutError()
    assert classify_error(long_chain).category is ErrorCategory.UNKNOWN


def test_transient_message_is_retryable() -> None:
    """An unknown error whose message names a transient condition is retryable."""
    assert is_retryable_node_error(RuntimeError("upstream said: 503 Service Unavailable"))
    assert is_retryable_node_error(RuntimeError("Rate limit reached for requests"))
    assert not is_retryable_node_error(RuntimeError("the answer was wrong"))


def test_unprintable_error() -> None:
    """An exception whose __str__ raises is classified without raising."""

    class UnprintableError(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert classify_error(UnprintableError()) == ErrorClassification(
        ErrorCategory.UNKNOWN, retryable=False
    )


def test_megabyte_message() -> None:
    """A megabyte-long message is classified quickly and sensibly."""
    huge = RuntimeError("x" * 1_000_000 + " 503")
    assert not is_retryable_node_error(huge)  # only the head of the message is read
    assert is_retryable_node_error(RuntimeError("503 " + "x" * 1_000_000))


def test_attribute_lookup_that_raises_everywhere() -> None:
    """An error whose every attribute lookup raises is still classified."""

    class HostileError(Exception):
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError(name)

    assert classify_error(HostileError()).category is ErrorCategory.UNKNOWN


def test_classification_default_code_and_helpers() -> None:
    """ErrorClassification derives its code from the category; helpers agree with it."""
    assert ErrorClassification(ErrorCategory.CIRCUIT_OPEN, retryable=False).code is (
        ErrorCode.CIRCUIT_OPEN
    )
    assert ErrorClassification(ErrorCategory.NETWORK, retryable=True).code is ErrorCode.UNKNOWN
    assert str(ErrorCategory.RATE_LIMIT) == "rate_limit"
    error = HTTPError(status_code=429)
    assert is_retryable_node_error(error) is classify_error(error).retryable is True
    assert get_error_category(error) is ErrorCategory.RATE_LIMIT


_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.binary(max_size=20),
    st.timedeltas(),
    st.dictionaries(st.sampled_from(["Retry-After", "retry-after", "x"]), st.text(max_size=10)),
)
_attributes = st.dictionaries(
    st.sampled_from(["status_code", "status", "retry_after", "headers", "errno", "response"]),
    _values,
    max_size=6,
)
_bases = st.sampled_from(
    [Exception, ValueError, OSError, TimeoutError, ConnectionError, KeyError, RuntimeError]
)


@st.composite
def _random_errors(draw: st.DrawFn) -> BaseException:
    base = draw(_bases)
    name = draw(st.sampled_from(["Boom", "ConnectTimeout", "NetworkError", "ValidationError"]))
    cls = type(name, (base,), {})
    error: BaseException = cls(draw(st.text(max_size=50)))
    for key, value in draw(_attributes).items():
        setattr(error, key, Response(**draw(_attributes)) if key == "response" else value)
    if draw(st.booleans()):
        error.__cause__ = draw(_random_errors()) if draw(st.booleans()) else error
    if draw(st.booleans()):
        error = ExceptionGroup("g", [error]) if isinstance(error, Exception) else error
    return error


@settings(max_examples=300, deadline=None)
@given(_random_errors())
def test_classification_never_raises(error: BaseException) -> None:
    """Whatever the exception's shape, classification returns a valid verdict."""
    verdict = classify_error(error)
    assert isinstance(verdict, ErrorClassification)
    assert isinstance(verdict.category, ErrorCategory)
    assert isinstance(verdict.code, ErrorCode)
    assert isinstance(verdict.retryable, bool)
    if verdict.retry_after is not None:
        assert math.isfinite(verdict.retry_after)
        assert 0 <= verdict.retry_after <= 86400


def test_a_builtin_error_with_attributes_of_its_own_is_still_read() -> None:
    """The shortcut for bare builtin errors does not skip one that carries a status."""
    plain = ConnectionError("reset")
    assert classify_error(plain).category is ErrorCategory.NETWORK
    carrying = ConnectionError("refused")
    carrying.status_code = 401  # type: ignore[attr-defined]
    carrying.headers = {"Retry-After": "7"}  # type: ignore[attr-defined]
    verdict = classify_error(carrying)
    assert verdict.category is ErrorCategory.AUTH
    assert verdict.retry_after == 7.0


def test_name_facts_follow_each_type() -> None:
    """Types made at run time are judged by their own names, cached or not."""
    for index in range(5000):  # past the cache's bound
        slow = type(f"Slow{index}Timeout", (Exception,), {})
        other = type(f"Plain{index}", (Exception,), {})
        assert classify_error(slow()).category is ErrorCategory.TIMEOUT
        assert classify_error(other()).category is ErrorCategory.UNKNOWN
