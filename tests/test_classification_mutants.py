"""Classification behaviour that mutation testing showed no other test pinned.

`tests/mutation/run.py` (``tox -e mutation``) is the run that found the gaps.
"""

from __future__ import annotations

import http.client
import urllib.error
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import pytest

from resilient_nodes._classification import (
    ErrorCategory,
    ErrorClassification,
    classify_error,
    register_classification_rule,
    unregister_classification_rule,
)
from resilient_nodes.errors import (
    ConfigError,
    ErrorCode,
    NodeFallbackExhaustedError,
    NodeStreamInterruptedError,
)

_URL = "http://127.0.0.1/v1"


class _CountedError(Exception):
    """An unknown error that counts how often its text is read."""

    reads: ClassVar[int] = 0

    def __str__(self) -> str:
        type(self).reads += 1
        return "counted"


@pytest.fixture(autouse=True)
def _reset_count() -> None:
    _CountedError.reads = 0


def _verdict(
    category: ErrorCategory,
    retryable: bool,
    code: ErrorCode = ErrorCode.UNKNOWN,
    retry_after: float | None = None,
) -> ErrorClassification:
    return ErrorClassification(category, retryable, code, retry_after)


class _ProviderError(Exception):
    """A bare provider-style error: only the attributes it is given."""

    def __init__(self, message: str = "provider error", **attributes: object) -> None:
        super().__init__(message)
        for name, value in attributes.items():
            setattr(self, name, value)


# --- headers -------------------------------------------------------------------------


def _http_error(status: int, **headers: str) -> urllib.error.HTTPError:
    message = http.client.HTTPMessage()
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    return urllib.error.HTTPError(_URL, status, "refused", message, None)


def test_urllib_http_errors_are_read_through_their_headers_get() -> None:
    """urllib's HTTPError (headers not a Mapping, but with .get) gives its Retry-After."""
    assert classify_error(_http_error(429, Retry_After="5")) == _verdict(
        ErrorCategory.RATE_LIMIT, True, retry_after=5.0
    )
    assert classify_error(_http_error(503, x_should_retry="false")) == _verdict(
        ErrorCategory.SERVER, False
    )


class _CaseSensitiveHeaders:
    """Headers with a case-sensitive ``get`` and no Mapping interface."""

    def __init__(self, **values: str) -> None:
        self._values = {name.replace("_", "-"): value for name, value in values.items()}

    def get(self, name: str) -> str | None:
        return self._values.get(name)


@pytest.mark.parametrize(
    "headers",
    [_CaseSensitiveHeaders(Retry_After="5"), _CaseSensitiveHeaders(retry_after="5")],
    ids=["canonical", "lower"],
)
def test_a_case_sensitive_get_is_tried_with_both_spellings(headers: object) -> None:
    """``Retry-After`` is asked for as written and in lower case."""
    error = _ProviderError(status_code=429, headers=headers)
    assert classify_error(error).retry_after == 5.0


class _GetRaises(Mapping[str, str]):
    """A mapping whose ``get`` raises, while iterating it works."""

    def __init__(self, **values: str) -> None:
        self._values = {name.replace("_", "-"): value for name, value in values.items()}

    def get(self, key: str, default: object = None) -> Any:
        raise RuntimeError("no get")

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def test_a_raising_get_falls_back_to_reading_the_mapping() -> None:
    """A header mapping whose ``get`` raises is still searched, case-insensitively."""
    error = _ProviderError(status_code=429, headers=_GetRaises(Retry_After="5"))
    assert classify_error(error).retry_after == 5.0


def test_byte_headers() -> None:
    """``retry-after-ms`` and ``x-should-retry`` may be bytes (latin-1)."""
    error = _ProviderError(
        status_code=500, headers={"retry-after-ms": b"1500", "x-should-retry": b"false"}
    )
    assert classify_error(error) == _verdict(ErrorCategory.SERVER, False, retry_after=1.5)


@pytest.mark.parametrize(
    ("retry_after", "seconds"),
    [(10**400, 24 * 3600.0), (-(10**400), None)],
    ids=["huge", "huge negative"],
)
def test_a_retry_after_beyond_float_range(retry_after: int, seconds: float | None) -> None:
    """An int too large for a float is a day if positive, and ignored if negative."""
    assert classify_error(_ProviderError(retry_after=retry_after)).retry_after == seconds


# --- bodies and statuses -------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "category", "retryable"),
    [
        ({"type": "overloaded_error"}, ErrorCategory.SERVER, True),
        ({"code": "monthly_spend_limit_reached"}, ErrorCategory.QUOTA, False),
        ({"body": {"code": "insufficient_quota"}}, ErrorCategory.QUOTA, False),
        ({"body": {"type": "overloaded_error"}}, ErrorCategory.SERVER, True),
        ({"body": {"error_code": "rate_limit_exceeded"}}, ErrorCategory.RATE_LIMIT, True),
    ],
    ids=["type attribute", "spend limit", "body code", "body type", "body error_code"],
)
def test_provider_codes_wherever_they_are(
    attributes: dict[str, object], category: ErrorCategory, retryable: bool
) -> None:
    """The error's ``type`` attribute and a body's own code, type and error_code count."""
    assert classify_error(_ProviderError(**attributes)) == _verdict(category, retryable)


def _nested_body(levels: int) -> dict[str, object]:
    body: dict[str, object] = {"code": "insufficient_quota"}
    for _ in range(levels):
        body = {"error": body}
    return body


def test_body_codes_are_read_three_levels_deep_and_no_further() -> None:
    """A code nested three ``error``/``details`` levels deep is read; a fourth is not."""
    assert classify_error(_ProviderError(body=_nested_body(3))).category is ErrorCategory.QUOTA
    assert classify_error(_ProviderError(body=_nested_body(4))).category is ErrorCategory.UNKNOWN


class _GetterBody:
    """Not a mapping, but with a ``get`` that would answer."""

    def get(self, key: str) -> str | None:
        return "insufficient_quota" if key == "code" else None


def test_only_a_mapping_is_read_as_a_body() -> None:
    """A body that is not a Mapping is ignored, whatever its ``get`` would say."""
    assert classify_error(_ProviderError(body=_GetterBody())).category is ErrorCategory.UNKNOWN


@pytest.mark.parametrize("status", [400, 413, 422])
def test_a_too_long_input_by_status_and_message(status: int) -> None:
    """A 400, 413 or 422 saying the input is too long is a CONTEXT_LENGTH."""
    error = _ProviderError("prompt is too long for this model", status_code=status)
    assert classify_error(error) == _verdict(ErrorCategory.CONTEXT_LENGTH, False)


def test_only_the_first_2000_characters_of_a_message_are_read() -> None:
    """Messages are searched up to 2000 characters: past 500, and not past 2000."""
    late = "x" * 600 + " prompt is too long"
    assert classify_error(_ProviderError(late, status_code=400)).category is (
        ErrorCategory.CONTEXT_LENGTH
    )
    assert classify_error(RuntimeError("x" * 600 + " service unavailable")).retryable
    too_late = "x" * 1990 + " overloaded"  # 2001 characters: the word is cut
    assert not classify_error(RuntimeError(too_late)).retryable
    assert classify_error(RuntimeError(too_late[1:])).retryable


def test_a_too_long_input_is_recognised_in_the_first_2000_characters_only() -> None:
    """The context-length phrase of a 400 counts up to character 2000, not past it."""
    too_late = "x" * 1986 + " context window"  # 2001 characters: the phrase is cut
    assert classify_error(_ProviderError(too_late, status_code=400)).category is (
        ErrorCategory.CLIENT
    )
    assert classify_error(_ProviderError(too_late[1:], status_code=400)).category is (
        ErrorCategory.CONTEXT_LENGTH
    )


def test_a_class_named_context_window_is_not_retryable() -> None:
    """A ``*ContextWindow*`` class (LiteLLM's) is a non-retryable CONTEXT_LENGTH."""
    context_window_exceeded_error = type("ContextWindowExceededError", (Exception,), {})
    assert classify_error(context_window_exceeded_error("too long")) == _verdict(
        ErrorCategory.CONTEXT_LENGTH, False
    )


def test_status_600_is_not_an_http_error() -> None:
    """Only 400-599 are error statuses; 600 says nothing."""
    assert classify_error(_ProviderError(status_code=600)).category is ErrorCategory.UNKNOWN


def test_retry_after_kept_by_network_and_unknown_errors() -> None:
    """A network error and an unknown one keep the Retry-After they carry."""
    network = ConnectionError("refused")
    network.retry_after = 3  # type: ignore[attr-defined]
    assert classify_error(network) == _verdict(ErrorCategory.NETWORK, True, retry_after=3.0)
    assert classify_error(_ProviderError(retry_after=7)) == _verdict(
        ErrorCategory.UNKNOWN, False, retry_after=7.0
    )


# --- groups, causes and depth --------------------------------------------------------


def test_a_group_member_is_classified_with_the_whole_walk() -> None:
    """A group's unknown member still gets its transient-text verdict."""
    group = ExceptionGroup("g", [RuntimeError("service unavailable")])
    assert classify_error(group) == _verdict(ErrorCategory.UNKNOWN, True)


def _in_groups(error: Exception, levels: int) -> Exception:
    for _ in range(levels):
        error = ExceptionGroup("g", [error])
    return error


def test_groups_are_followed_sixteen_levels_deep() -> None:
    """Sixteen nested groups are looked through; a seventeenth is UNKNOWN."""
    assert classify_error(_in_groups(ConnectionError(), 16)) == _verdict(
        ErrorCategory.NETWORK, True
    )
    assert classify_error(_in_groups(ConnectionError(), 17)) == _verdict(
        ErrorCategory.UNKNOWN, False
    )


def _chain(levels: int, root: BaseException) -> BaseException:
    """*levels* unknown errors, each raised from the next, ending in *root*."""
    error = root
    for _ in range(levels):
        outer = RuntimeError("wrapped")
        outer.__cause__ = error
        error = outer
    return error


def test_causes_are_followed_sixteen_levels_deep() -> None:
    """A cause sixteen links down decides; one seventeen links down is not reached."""
    assert classify_error(_chain(16, ConnectionError())).category is ErrorCategory.NETWORK
    assert classify_error(_chain(17, ConnectionError())).category is ErrorCategory.UNKNOWN


def test_a_cycle_of_causes_is_walked_once() -> None:
    """Cycle protection: in a loop of causes each error is examined once, not 16 times."""
    first, second = _CountedError(), _CountedError()
    first.__cause__ = second
    second.__cause__ = first
    assert classify_error(first) == _verdict(ErrorCategory.UNKNOWN, False)
    assert _CountedError.reads == 2


# --- fallback and stream errors ------------------------------------------------------


@pytest.mark.parametrize(
    ("errors", "category", "retryable"),
    [
        ([ConnectionError(), TimeoutError()], ErrorCategory.NETWORK, True),
        ([ConnectionError(), ValueError()], ErrorCategory.VALIDATION, False),
        ([RuntimeError("service unavailable")], ErrorCategory.UNKNOWN, True),
        ([], ErrorCategory.UNKNOWN, False),
    ],
    ids=["all retryable", "one not", "unknown but transient", "no route"],
)
def test_an_exhausted_fallback_is_judged_by_its_routes(
    errors: list[BaseException], category: ErrorCategory, retryable: bool
) -> None:
    """Like a group of what its routes raised, with the fallback's own code."""
    error = NodeFallbackExhaustedError(errors)
    assert classify_error(error) == _verdict(category, retryable, ErrorCode.RETRY_EXHAUSTED)


def test_an_interrupted_stream_keeps_its_causes_category() -> None:
    """A committed stream's failure has its cause's category and is never retryable."""
    error = NodeStreamInterruptedError(3, ConnectionError("reset"))
    assert classify_error(error) == _verdict(ErrorCategory.NETWORK, False, error.code)


def test_an_interrupted_stream_keeps_its_own_code_and_walks_the_cause() -> None:
    """The stream's code (not the category's) is kept; its cause's own cause is read."""
    timed_out = NodeStreamInterruptedError(2, TimeoutError())
    assert classify_error(timed_out) == _verdict(ErrorCategory.TIMEOUT, False, timed_out.code)
    wrapped = RuntimeError("wrapped")
    wrapped.__cause__ = ConnectionError()
    assert classify_error(NodeStreamInterruptedError(2, wrapped)).category is (
        ErrorCategory.NETWORK
    )


def _in_streams(error: BaseException, levels: int) -> BaseException:
    for _ in range(levels):
        error = NodeStreamInterruptedError(1, error)
    return error


def test_strategy_errors_are_followed_sixteen_levels_deep() -> None:
    """Nested stream errors are looked through sixteen levels deep, and no further."""
    assert classify_error(_in_streams(ConnectionError(), 16)).category is ErrorCategory.NETWORK
    assert classify_error(_in_streams(ConnectionError(), 17)).category is ErrorCategory.UNKNOWN


def test_a_fallback_too_deep_to_follow_keeps_its_code() -> None:
    """At the depth limit a fallback error is UNKNOWN, not retryable, with its own code."""
    deep = _in_groups(NodeFallbackExhaustedError([ConnectionError()]), 16)  # type: ignore[arg-type]
    assert classify_error(deep) == _verdict(ErrorCategory.UNKNOWN, False, ErrorCode.RETRY_EXHAUSTED)


def test_a_fallback_in_a_cycle_is_walked_once() -> None:
    """A route's error caused by the fallback error itself is not walked again."""
    route = _CountedError()
    fallback = NodeFallbackExhaustedError([route])
    route.__cause__ = fallback
    _CountedError.reads = 0  # the fallback's message read it once
    assert classify_error(fallback).category is ErrorCategory.UNKNOWN
    assert _CountedError.reads == 1


# --- user rules ----------------------------------------------------------------------


def test_rule_codes() -> None:
    """A rule's code is used as given, and derived from the category (or UNKNOWN) if not."""

    class FlakyError(Exception):
        pass

    coded = register_classification_rule(
        FlakyError, category="network", retryable=True, code=ErrorCode.NODE_TIMEOUT
    )
    try:
        assert classify_error(FlakyError()).code is ErrorCode.NODE_TIMEOUT
    finally:
        unregister_classification_rule(coded)
    uncoded = register_classification_rule(FlakyError, category="network", retryable=True)
    try:
        assert classify_error(FlakyError()) == _verdict(ErrorCategory.NETWORK, True)
    finally:
        unregister_classification_rule(uncoded)


def test_rule_errors_name_the_argument() -> None:
    """A bad *match* or *category* is a ConfigError at that argument's name."""
    with pytest.raises(ConfigError) as caught:
        register_classification_rule(5, category="network", retryable=True)  # type: ignore[arg-type]
    assert caught.value.problems == (
        ("match", "must be an exception type, a tuple of them or a predicate, got 5"),
    )
    with pytest.raises(ConfigError) as caught:
        register_classification_rule(ValueError, category="nope", retryable=True)
    assert caught.value.problems == (("category", "unknown category 'nope'"),)
