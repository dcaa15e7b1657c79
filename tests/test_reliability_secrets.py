"""Secrets that leak into error text never reach state or logs."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from resilient_nodes import Policy, create_node
from resilient_nodes._records import MAX_MESSAGE_LENGTH
from resilient_nodes.testing import no_backoff

OPENAI_KEY = "sk-proj-Q3v9xT2mB7nR4kL8pW1zY6cJ0hF5dA2s"
BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTQyIn0.c2lnbmF0dXJlLXZhbHVl"
QUERY_KEY = "AbC123dEf456GhI789"
PASSWORD = "hunter2-Sup3r"  # noqa: S105 - a fake secret, leaked on purpose
HOME = "/home/alice"
SECRETS = (OPENAI_KEY, BEARER, QUERY_KEY, PASSWORD, HOME, "x-api-key: 9f8e")


class Request:
    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url = url
        self.headers = headers


class Response:
    def __init__(self, status_code: int, request: Request) -> None:
        self.status_code = status_code
        self.headers = {"retry-after": "0"}
        self.request = request


class HTTPStatusError(Exception):
    """Shaped like httpx's: the message names the URL; request and response attached."""

    def __init__(self, message: str, *, request: Request, response: Response) -> None:
        super().__init__(message)
        self.request = request
        self.response = response


def _leaky_error() -> HTTPStatusError:
    url = f"https://api.example.com/v1/chat?api_key={QUERY_KEY}&model=gpt"
    headers = {"Authorization": f"Bearer {BEARER}", "x-api-key": "9f8e7d6c5b4a"}
    request = Request(url, headers)
    message = (
        f"Server error '503 Service Unavailable' for url '{url}'\n"
        f"request headers: {headers}\n"
        f"client: OpenAI(api_key='{OPENAI_KEY}')\n"
        f"db: postgresql://admin:{PASSWORD}@db.internal:5432/app\n"
        f"config loaded from {HOME}/work/.env; password={PASSWORD}"
    )
    return HTTPStatusError(message, request=request, response=Response(503, request))


def _assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked in: {text[:2000]}"


def _events(logs: list[dict[str, Any]], *names: str) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"] in names]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_leaked_secrets_are_not_recorded_or_logged(kind: str) -> None:
    """State records and failure/retry logs of a leaky HTTP error hold no secret."""
    policy = Policy.llm() | Policy.breaker() | Policy.timeout(5)

    def impl(state: dict[str, Any]) -> dict[str, Any]:
        raise _leaky_error()

    async def aimpl(state: dict[str, Any]) -> dict[str, Any]:
        raise _leaky_error()

    node = create_node(impl if kind == "sync" else aimpl, name="leaky", policy=policy)
    with no_backoff(), capture_logs() as logs:
        result = node({}) if kind == "sync" else anyio.run(node, {})
    (record,) = result["errors"]
    assert record["code"] == "RETRY_EXHAUSTED"
    assert record["attempts"] == 3
    _assert_clean(json.dumps(record))
    events = _events(logs, "node.failed", "node.retry_scheduled")
    assert {e["event"] for e in events} == {"node.failed", "node.retry_scheduled"}
    _assert_clean(repr(logs))
    assert "[REDACTED]" in record["message"]


@pytest.mark.anyio
async def test_timeout_logs_and_cleanup_failures_hold_no_secret() -> None:
    """node.timed_out, a failing on_timeout's log and the record stay clean."""

    async def cleanup() -> None:
        raise _leaky_error()

    async def slow(state: dict[str, Any]) -> dict[str, Any]:
        await anyio.sleep(10)
        return {}

    node = create_node(slow, name="slow", policy=Policy.timeout(0.01, on_timeout=cleanup))
    with capture_logs() as logs:
        (record,) = (await node({}))["errors"]
    assert record["code"] == "NODE_TIMEOUT"
    assert _events(logs, "node.timed_out")
    assert _events(logs, "node.on_timeout_failed")
    _assert_clean(repr(logs))
    _assert_clean(json.dumps(record))


class _UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


@pytest.mark.anyio
async def test_unprintable_on_timeout_failure_keeps_the_timeout() -> None:
    """An on_timeout whose error cannot be printed still yields the timeout."""

    async def cleanup() -> None:
        raise _UnprintableError

    async def slow() -> None:
        await anyio.sleep(10)

    wrapped = Policy.timeout(0.01, on_timeout=cleanup).wrap(slow)
    with capture_logs() as logs, pytest.raises(TimeoutError) as raised:
        await wrapped()
    assert isinstance(raised.value.__cause__, _UnprintableError)
    (event,) = _events(logs, "node.on_timeout_failed")
    assert event["error_type"] == "_UnprintableError"


def test_sync_unprintable_on_timeout_failure_keeps_the_timeout() -> None:
    """The sync timeout path survives an unprintable on_timeout failure too."""

    def cleanup() -> None:
        raise _UnprintableError

    def slow() -> None:
        import time

        time.sleep(0.2)

    wrapped = Policy.timeout(0.01, on_timeout=cleanup).wrap(slow)
    with pytest.raises(TimeoutError) as raised:
        wrapped()
    assert isinstance(raised.value.__cause__, _UnprintableError)


AWS_SECRET = "2O76UMFxFkM+R5Kjp1vRt/1fjORS+6ilI8ihN5KX"  # noqa: S105 - fake, leaked on purpose
PEM_BODY = "MIIEowIBAAKCAQEA1b2c3d4e5f6g7h8i9j0kLmNoPqRsTuVwXyZ"
MORE_SECRETS = (
    "Redis-Secret-9",
    "p@ss/w0rd",
    AWS_SECRET,
    PEM_BODY,
    "hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567",
    "sk_live_51H8abcdefGHIJKL0123456789",
    "T0001/B0002/XyZ123abcDEF456",
    "eyJzdWIiOiJib2IifQ",
    "cut-Sup3r-secret",
)


def _more_leaks() -> ConnectionError:
    head = (
        "cache redis://:Redis-Secret-9@cache:6379/0 and db postgres://app:p@ss/w0rd@db/app\n"
        f"boto: aws_secret_access_key {AWS_SECRET}\n"
        f"key:\n-----BEGIN PRIVATE KEY-----\n{PEM_BODY}\n-----END PRIVATE KEY-----\n"
        "hub: hf_AbCdEfGhIjKlMnOpQrStUvWxYz01234567 stripe: sk_live_51H8abcdefGHIJKL0123456789\n"
        "alert: https://hooks.slack.com/services/T0001/B0002/XyZ123abcDEF456\n"
        "id_token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJl\n"
    )
    # A request body echoed without spaces, so the message's 2,000-character cut
    # falls inside the password's value ("cut-S|up3r...").
    key = '{"password":"'
    padding = "x" * (MAX_MESSAGE_LENGTH - len(head) - len(key) - 5)
    body = f'{key}cut-Sup3r-secret","messages":"{"m" * 3000}"}}'
    return ConnectionError(head + padding + body)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_more_kinds_of_secret_are_not_recorded_or_logged(kind: str) -> None:
    """URL passwords with @ or / or no user, AWS and PEM keys, hf_/Stripe/Slack/JWT, a cut JSON value."""

    def impl(state: dict[str, Any]) -> dict[str, Any]:
        raise _more_leaks()

    async def aimpl(state: dict[str, Any]) -> dict[str, Any]:
        raise _more_leaks()

    node = create_node(impl if kind == "sync" else aimpl, name="leaky", policy=Policy.llm())
    with no_backoff(), capture_logs() as logs:
        result = node({}) if kind == "sync" else anyio.run(node, {})
    (record,) = result["errors"]
    dumped, logged = json.dumps(record), repr(logs)
    for secret in MORE_SECRETS:
        assert secret not in dumped, secret
        assert secret not in logged, secret
    assert "postgres://[REDACTED]@db/app" in record["message"]
