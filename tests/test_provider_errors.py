"""Provider errors: body codes, statuses and headers as the OpenAI and Anthropic SDKs carry them.

These build the SDKs' own exception classes the way their clients do (the body as
the client passes it, a real response object), so a change in how an SDK shapes
its errors shows up here. `test_llm_sdks.py` drives the real clients over HTTP.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilient_nodes import ErrorCategory, classify_error
from resilient_nodes._breaker import counts_as_failure

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")
_openai_base = pytest.importorskip("openai._base_client")
# The SDKs' own HTTP client: httpx, or the httpx2 fork newer releases use.
http = getattr(_openai_base, "httpx2", None) or _openai_base.httpx

URL = "http://127.0.0.1/v1/chat/completions"


def response(status: int, headers: dict[str, str] | None = None) -> Any:
    return http.Response(status, headers=headers or {}, request=http.Request("POST", URL))


def openai_error(status: int, error: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    """What OpenAI's client raises: the class for the status, the body's inner ``error``."""
    classes = {
        400: openai.BadRequestError,
        401: openai.AuthenticationError,
        403: openai.PermissionDeniedError,
        429: openai.RateLimitError,
    }
    cls = classes.get(status, openai.InternalServerError)
    return cls(error.get("message", "error"), response=response(status, headers), body=error)


def anthropic_error(
    status: int, kind: str, message: str = "error", headers: dict[str, str] | None = None
) -> Any:
    """What Anthropic's client raises: the whole body, ``{"type": "error", "error": {...}}``."""
    body = {"type": "error", "error": {"type": kind, "message": message}}
    client = anthropic.Anthropic(api_key="test", base_url="http://127.0.0.1:9")
    return client._make_status_error(
        f"{status} {message}", body=body, response=response(status, headers)
    )


QUOTA = {
    "message": "You exceeded your current quota, please check your plan and billing details.",
    "type": "insufficient_quota",
    "param": None,
    "code": "insufficient_quota",
}
THROTTLED = {
    "message": "Rate limit reached for gpt-4o on requests per min (RPM): Limit 3.",
    "type": "requests",
    "param": None,
    "code": "rate_limit_exceeded",
}
TOO_LONG = {
    "message": "This model's maximum context length is 8192 tokens. However, your "
    "messages resulted in 9000 tokens. Please reduce the length of the messages.",
    "type": "invalid_request_error",
    "param": "messages",
    "code": "context_length_exceeded",
}
BAD_KEY = {
    "message": "Incorrect API key provided: sk-test.",
    "type": "invalid_request_error",
    "param": None,
    "code": "invalid_api_key",
}


def test_openai_quota_429_is_not_throttling() -> None:
    """A 429 whose code is ``insufficient_quota`` is a non-retryable quota, not a rate limit."""
    verdict = classify_error(openai_error(429, QUOTA))
    assert (verdict.category, verdict.retryable) == (ErrorCategory.QUOTA, False)
    throttled = classify_error(openai_error(429, THROTTLED))
    assert (throttled.category, throttled.retryable) == (ErrorCategory.RATE_LIMIT, True)


def test_openai_context_length_and_auth() -> None:
    """``context_length_exceeded`` and a 401 have their own non-retryable categories."""
    too_long = classify_error(openai_error(400, TOO_LONG))
    assert (too_long.category, too_long.retryable) == (ErrorCategory.CONTEXT_LENGTH, False)
    bad_key = classify_error(openai_error(401, BAD_KEY))
    assert (bad_key.category, bad_key.retryable) == (ErrorCategory.AUTH, False)
    denied = classify_error(openai_error(403, {"message": "no", "type": "invalid_request_error"}))
    assert denied.category is ErrorCategory.AUTH


def test_anthropic_overload_context_and_auth() -> None:
    """529 ``overloaded_error`` is a retryable server error; too long and 401 are not retried."""
    overloaded = classify_error(anthropic_error(529, "overloaded_error", "Overloaded"))
    assert (overloaded.category, overloaded.retryable) == (ErrorCategory.SERVER, True)
    too_long = classify_error(
        anthropic_error(400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000")
    )
    assert (too_long.category, too_long.retryable) == (ErrorCategory.CONTEXT_LENGTH, False)
    auth = classify_error(anthropic_error(401, "authentication_error", "invalid x-api-key"))
    assert (auth.category, auth.retryable) == (ErrorCategory.AUTH, False)
    billing = classify_error(anthropic_error(400, "billing_error", "credit balance is too low"))
    assert (billing.category, billing.retryable) == (ErrorCategory.QUOTA, False)
    plain_400 = classify_error(anthropic_error(400, "invalid_request_error", "bad field"))
    assert plain_400.category is ErrorCategory.CLIENT


def test_error_event_mid_stream_is_read_from_the_body() -> None:
    """A stream's error event arrives with status 200: the body's type still decides."""
    overloaded = classify_error(anthropic_error(200, "overloaded_error", "Overloaded"))
    assert (overloaded.category, overloaded.retryable) == (ErrorCategory.SERVER, True)
    # OpenAI raises a bare APIError (no status at all) with the event's error as body.
    mid_stream = openai.APIError(
        "server had an error", http.Request("POST", URL), body={"type": "server_error"}
    )
    assert classify_error(mid_stream).category is ErrorCategory.SERVER
    assert classify_error(mid_stream).retryable


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after": "3"}, 3.0),
        # Milliseconds win when both are sent, as in the SDKs.
        ({"retry-after-ms": "1500", "retry-after": "30"}, 1.5),
        ({"retry-after-ms": "soon", "retry-after": "2"}, 2.0),
        ({"retry-after-ms": "-5"}, None),
    ],
)
def test_retry_after_ms_and_seconds(headers: dict[str, str], expected: float | None) -> None:
    """``retry-after-ms`` is read (and preferred); a bad one falls back to ``retry-after``."""
    verdict = classify_error(openai_error(429, THROTTLED, headers))
    assert verdict.retry_after == expected


def test_x_should_retry_wins_over_the_status() -> None:
    """``x-should-retry: false`` stops a 503's retry; ``true`` makes a 400 retryable."""
    unavailable = classify_error(openai_error(503, {"message": "x"}, {"x-should-retry": "false"}))
    assert (unavailable.category, unavailable.retryable) == (ErrorCategory.SERVER, False)
    # Still a failure of the dependency for a breaker.
    assert counts_as_failure(openai_error(503, {"message": "x"}, {"x-should-retry": "false"}))
    bad = openai_error(400, {"message": "x", "type": "invalid_request_error"})
    bad.response.headers["x-should-retry"] = "TRUE"
    assert classify_error(bad).retryable
    bad.response.headers["x-should-retry"] = "maybe"
    assert not classify_error(bad).retryable


def test_new_categories_are_neutral_for_a_breaker() -> None:
    """Quota, context length and auth say nothing about the dependency's health."""
    for error in (
        openai_error(429, QUOTA),
        openai_error(400, TOO_LONG),
        openai_error(401, BAD_KEY),
    ):
        assert not counts_as_failure(error)
    assert counts_as_failure(anthropic_error(529, "overloaded_error"))


def test_duck_typed_without_any_sdk() -> None:
    """Plain objects shaped like the SDKs' errors classify the same (no import needed)."""

    class ProviderError(Exception):
        def __init__(self, **attributes: Any) -> None:
            super().__init__("provider error")
            self.__dict__.update(attributes)

    assert classify_error(ProviderError(code="insufficient_quota")).category is ErrorCategory.QUOTA
    assert (
        classify_error(ProviderError(error_code="enforced_spend_limit_reached", status_code=429))
    ).category is ErrorCategory.QUOTA
    nested = ProviderError(body={"error": {"details": {"error_code": "context_window_exceeded"}}})
    assert classify_error(nested).category is ErrorCategory.CONTEXT_LENGTH

    class ContextWindowExceededError(Exception):
        """LiteLLM's name for it."""

    assert classify_error(ContextWindowExceededError("x")).category is (
        ErrorCategory.CONTEXT_LENGTH
    )
    # An unknown code says nothing: the status decides.
    assert classify_error(ProviderError(code="weird", status_code=502)).category is (
        ErrorCategory.SERVER
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=10,
)


@given(
    body=json_values,
    code=json_values,
    headers=st.dictionaries(
        st.sampled_from(["retry-after", "retry-after-ms", "x-should-retry", "x"]),
        st.text(max_size=12),
    ),
)
def test_classification_never_raises_on_odd_bodies(
    body: object, code: object, headers: dict[str, str]
) -> None:
    """Whatever the body, code and headers hold, classification gives a verdict."""

    class OddError(Exception):
        pass

    error = OddError("x")
    error.body = body  # type: ignore[attr-defined]
    error.code = code  # type: ignore[attr-defined]
    error.headers = headers  # type: ignore[attr-defined]
    error.status_code = 429  # type: ignore[attr-defined]
    verdict = classify_error(error)
    assert isinstance(verdict.category, ErrorCategory)
    if verdict.retry_after is not None:
        assert 0 <= verdict.retry_after <= 24 * 3600
