"""Policy.fallback: routes by error, never on control flow, breaker-aware, says who served."""

from __future__ import annotations

import pickle
from typing import Any

import anyio
import pytest
from langgraph.errors import GraphInterrupt
from structlog.testing import capture_logs

from resilient_nodes import (
    ConfigError,
    ErrorCategory,
    ErrorCode,
    LogEvent,
    NodeCancellationError,
    NodeCircuitOpenError,
    NodeFallbackExhaustedError,
    NodeRetryExhaustedError,
    NodeTimeoutError,
    Policy,
    classify_error,
    create_node,
    current_context,
    get_error_category,
)
from resilient_nodes._callables import callable_name
from resilient_nodes._fallback import falls_back_by_default
from resilient_nodes.testing import no_backoff


class ProviderError(Exception):
    """Shaped like an SDK's status error."""

    def __init__(self, status: int, code: str | None = None) -> None:
        super().__init__(f"{status} {code}")
        self.status_code = status
        self.code = code


class Recorder:
    """A callable recording its calls and the context it saw, failing as told."""

    def __init__(self, name: str, *failures: BaseException, result: Any = None) -> None:
        self.__qualname__ = name
        self.__name__ = name
        self.failures = list(failures)
        self.result = result if result is not None else name
        self.calls: list[tuple[Any, ...]] = []
        self.served_by: list[str | None] = []

    def record(self, args: tuple[Any, ...]) -> Any:
        self.calls.append(args)
        context = current_context()
        self.served_by.append(None if context is None else context.served_by)
        if self.failures:
            raise self.failures.pop(0)
        return self.result


class AsyncRecorder(Recorder):
    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        await anyio.lowlevel.checkpoint()
        return self.record(args)


class SyncRecorder(Recorder):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.record(args)


pytestmark = pytest.mark.anyio


async def test_primary_success_never_calls_the_alternative() -> None:
    """A primary that returns is the answer; served_by stays None."""
    primary, backup = AsyncRecorder("primary"), AsyncRecorder("backup")
    wrapped = Policy.fallback(backup).wrap(primary)
    assert await wrapped(1) == "primary"
    assert backup.calls == []
    assert primary.served_by == [None]


async def test_retryable_failure_goes_to_the_alternative_with_the_same_arguments() -> None:
    """A 503 sends the call on; the alternative sees itself in current_context()."""
    primary = AsyncRecorder("primary", ProviderError(503))
    backup = AsyncRecorder("backup")
    wrapped = Policy.fallback(backup).wrap(primary, name="plan")
    with capture_logs() as logs:
        assert await wrapped("state", 2) == "backup"
    assert backup.calls == [("state", 2)]
    assert backup.served_by == [callable_name(backup)]
    started = [e for e in logs if e["event"] == LogEvent.FALLBACK_STARTED]
    assert started[0]["failed"] == "plan"
    assert started[0]["alternative"] == callable_name(backup) == "test_fallback.backup"
    assert started[0]["error_type"] == "ProviderError"
    assert started[0]["category"] == "server"
    served = [e for e in logs if e["event"] == LogEvent.FALLBACK_SERVED]
    assert served[0]["served_by"] == callable_name(backup)
    assert served[0]["node"] == "plan"


async def test_primary_retries_run_first_then_the_alternative() -> None:
    """``fallback | llm | breaker``: the primary's retries, then the alternative."""
    primary = AsyncRecorder("primary", *(ConnectionError("down") for _ in range(3)))
    backup = AsyncRecorder("backup")
    policy = Policy.fallback(backup) | Policy.llm(attempts=3) | Policy.breaker()
    with no_backoff():
        assert await policy.wrap(primary)() == "backup"
    assert len(primary.calls) == 3
    assert len(backup.calls) == 1


async def test_open_breaker_on_the_primary_means_zero_primary_calls() -> None:
    """Once the primary's breaker is open, the alternative answers without calling it."""
    primary = AsyncRecorder("primary", *(ConnectionError("down") for _ in range(10)))
    backup = AsyncRecorder("backup")
    policy = Policy.fallback(backup) | Policy.llm(attempts=2) | Policy.breaker(failure_threshold=2)
    wrapped = policy.wrap(primary)
    with no_backoff():
        assert await wrapped() == "backup"  # two attempts trip the breaker
        calls = len(primary.calls)
        assert await wrapped() == "backup"
        assert await wrapped() == "backup"
    assert calls == 2
    assert len(primary.calls) == calls
    assert len(backup.calls) == 3


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad input"),
        TypeError("bug"),
        ProviderError(429, "insufficient_quota"),
        ProviderError(401),
        ProviderError(403),
        ProviderError(400, "context_length_exceeded"),
        NodeCancellationError("stop"),
        RuntimeError("unknown"),
    ],
    ids=lambda e: type(e).__name__ + str(getattr(e, "status_code", "")),
)
async def test_no_fallback_by_default_on_errors_another_route_would_share(
    error: Exception,
) -> None:
    """Validation, programming, quota, auth, context length, a cancel token: raised as is."""
    primary, backup = AsyncRecorder("primary", error), AsyncRecorder("backup")
    with pytest.raises(type(error)) as caught:
        await Policy.fallback(backup).wrap(primary)()
    assert caught.value is error
    assert backup.calls == []


async def test_control_flow_passes_through_untouched() -> None:
    """A LangGraph interrupt and the backend's cancellation never fall back."""
    interrupt = GraphInterrupt(())
    primary, backup = AsyncRecorder("primary", interrupt), AsyncRecorder("backup")
    with pytest.raises(GraphInterrupt) as caught:
        await Policy.fallback(backup).wrap(primary)()
    assert caught.value is interrupt
    assert backup.calls == []

    async def hangs() -> str:
        await anyio.sleep_forever()
        return "never"

    with anyio.move_on_after(0.01) as scope:
        await Policy.fallback(backup).wrap(hangs)()
    assert scope.cancelled_caught
    assert backup.calls == []


async def test_cancellation_inside_an_alternative_passes_through() -> None:
    """An alternative cancelled from outside ends the route with the cancellation."""
    later = AsyncRecorder("later")

    async def hangs() -> str:
        await anyio.sleep_forever()
        return "never"

    primary = AsyncRecorder("primary", ConnectionError())
    wrapped = Policy.fallback(hangs, later).wrap(primary)
    with anyio.move_on_after(0.01) as scope:
        await wrapped()
    assert scope.cancelled_caught
    assert later.calls == []
    assert current_context() is None  # the alternative's context was restored


async def test_on_replaces_the_default() -> None:
    """``on`` routes context-length errors to a larger model, and only those."""
    too_long = ProviderError(400, "context_length_exceeded")
    primary, large = AsyncRecorder("primary", too_long), AsyncRecorder("large")

    def on(error: Exception) -> bool:
        return get_error_category(error) is ErrorCategory.CONTEXT_LENGTH

    wrapped = Policy.fallback(large, on=on).wrap(primary)
    assert await wrapped() == "large"
    timeout = NodeTimeoutError(1.0)
    primary.failures.append(timeout)
    with pytest.raises(NodeTimeoutError):
        await wrapped()
    assert len(large.calls) == 1


async def test_every_route_failing_says_what_each_raised() -> None:
    """The error lists one error per callable tried, primary first, chained from the last."""
    first, second, third = ConnectionError("a"), ProviderError(503), TimeoutError("c")
    primary = AsyncRecorder("primary", first)
    b1, b2 = AsyncRecorder("b1", second), AsyncRecorder("b2", third)
    with pytest.raises(NodeFallbackExhaustedError) as caught:
        await Policy.fallback(b1, b2).wrap(primary, name="plan")()
    error = caught.value
    assert error.errors == (first, second, third)
    assert error.callables == ("plan", callable_name(b1), callable_name(b2))
    assert error.__cause__ is third
    assert error.code is ErrorCode.RETRY_EXHAUSTED
    assert "plan: ConnectionError: a" in str(error)
    assert "test_fallback.b2: TimeoutError: c" in str(error)
    # Every route failed transiently: a retry around the route may try again.
    assert classify_error(error).retryable
    copy = pickle.loads(pickle.dumps(error))
    assert [type(e) for e in copy.errors] == [ConnectionError, ProviderError, TimeoutError]


async def test_an_alternative_error_that_on_rejects_ends_the_route() -> None:
    """The first alternative's auth error is not a reason to try the second."""
    auth = ProviderError(401)
    primary = AsyncRecorder("primary", ConnectionError())
    b1, b2 = AsyncRecorder("b1", auth), AsyncRecorder("b2")
    with pytest.raises(NodeFallbackExhaustedError) as caught:
        await Policy.fallback(b1, b2).wrap(primary)()
    assert caught.value.errors[-1] is auth
    assert b2.calls == []
    assert not classify_error(caught.value).retryable


async def test_a_predicate_that_raises_is_logged_and_the_error_propagates() -> None:
    """A broken ``on`` does not hide the caller's own error."""
    error = ConnectionError("down")
    primary, backup = AsyncRecorder("primary", error), AsyncRecorder("backup")

    def broken(_: Exception) -> bool:
        raise KeyError("oops")

    with capture_logs() as logs, pytest.raises(ConnectionError) as caught:
        await Policy.fallback(backup, on=broken).wrap(primary)()
    assert caught.value is error
    failed = [e for e in logs if e["event"] == LogEvent.FALLBACK_PREDICATE_FAILED]
    assert failed[0]["error_type"] == "KeyError"
    assert failed[0]["judged_error_type"] == "ConnectionError"


def test_sync_functions_fall_back_synchronously() -> None:
    """A sync primary and sync alternatives stay sync."""
    primary = SyncRecorder("primary", ConnectionError())
    backup = SyncRecorder("backup")
    wrapped = Policy.fallback(backup).wrap(primary)
    assert wrapped(7) == "backup"
    assert backup.calls == [(7,)]
    assert backup.served_by == [callable_name(backup)]
    failing = SyncRecorder("failing", ProviderError(502))
    primary.failures.append(ConnectionError())
    with pytest.raises(NodeFallbackExhaustedError) as caught:
        Policy.fallback(failing).wrap(primary)()
    assert len(caught.value.errors) == 2


def test_alternatives_must_be_of_the_primarys_kind() -> None:
    """A sync alternative for an async primary is refused when wrapping, naming it."""

    async def primary() -> str:
        return "p"

    def sync_backup() -> str:
        return "b"

    with pytest.raises(ConfigError, match=r"alternatives\[0\]: .*sync_backup is sync"):
        Policy.fallback(sync_backup).wrap(primary)
    with pytest.raises(ConfigError, match=r"alternatives\[0\]: .*primary is async"):
        Policy.fallback(primary).wrap(sync_backup)


def test_builder_validation_repr_and_plain_data() -> None:
    """Bad arguments name the field; repr is the expression; to_dict refuses code."""
    with pytest.raises(ConfigError, match="alternatives: at least one"):
        Policy.fallback()
    with pytest.raises(ConfigError, match=r"alternatives\[1\]: must be callable"):
        Policy.fallback(print, "nope")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="on: must be a predicate"):
        Policy.fallback(print, on=3)  # type: ignore[arg-type]
    policy = Policy.fallback(print, on=callable) | Policy.llm() | Policy.breaker()
    assert repr(policy) == "Policy.fallback(print, on=callable) | Policy.llm() | Policy.breaker()"
    with pytest.raises(ConfigError, match=r"layers\[0\].alternatives: .*cannot be written"):
        policy.to_dict()
    assert (Policy.fallback(print) | Policy.none()) == Policy.fallback(print)


def test_default_rule() -> None:
    """What falls back by default, and what never does."""
    assert falls_back_by_default(ConnectionError())
    assert falls_back_by_default(NodeCircuitOpenError(failure_count=3, recovery_time=5))
    assert falls_back_by_default(NodeRetryExhaustedError(3, TimeoutError()))
    # A server that said "do not retry" is still a failing server: another route may work.
    unavailable = ProviderError(503)
    unavailable.headers = {"x-should-retry": "false"}  # type: ignore[attr-defined]
    assert falls_back_by_default(unavailable)
    assert not falls_back_by_default(
        NodeRetryExhaustedError(3, ProviderError(429, "insufficient_quota"))
    )
    assert not falls_back_by_default(ProviderError(401))
    assert not falls_back_by_default(KeyboardInterrupt())
    assert not falls_back_by_default(GraphInterrupt(()))


async def test_node_records_a_failed_route() -> None:
    """In a node, a route that failed everywhere is captured with its own code."""
    primary = AsyncRecorder("primary", ConnectionError("a"))
    backup = AsyncRecorder("backup", ProviderError(502))

    async def impl(state: dict[str, Any]) -> dict[str, Any]:
        return await primary(state)

    node = create_node(impl, name="plan", policy=Policy.fallback(backup))
    update = await node({"errors": []})
    record = update["errors"][0]
    assert record["code"] == "RETRY_EXHAUSTED"
    assert "backup: ProviderError: 502" in record["message"]


def test_sync_route_ends_on_a_rejected_error_and_passes_control_flow() -> None:
    """Sync alternatives: a rejected error ends the route; an interrupt passes through."""
    primary = SyncRecorder("primary", ConnectionError())
    bad = SyncRecorder("bad", ValueError("bad input"))
    never = SyncRecorder("never")
    with pytest.raises(NodeFallbackExhaustedError) as caught:
        Policy.fallback(bad, never).wrap(primary)()
    assert [type(e) for e in caught.value.errors] == [ConnectionError, ValueError]
    assert never.calls == []
    primary.failures.append(ConnectionError())
    interrupt = GraphInterrupt(())
    with pytest.raises(GraphInterrupt):
        Policy.fallback(SyncRecorder("paused", interrupt)).wrap(primary)()


async def test_control_flow_from_an_alternative_or_a_predicate_passes_through() -> None:
    """An interrupt raised by an alternative, or by ``on`` itself, is never swallowed."""
    primary = AsyncRecorder("primary", ConnectionError())
    interrupt = GraphInterrupt(())
    with pytest.raises(GraphInterrupt):
        await Policy.fallback(AsyncRecorder("paused", interrupt)).wrap(primary)()

    def on(_: Exception) -> bool:
        raise GraphInterrupt(())

    primary.failures.append(ConnectionError())
    with pytest.raises(GraphInterrupt):
        await Policy.fallback(AsyncRecorder("backup"), on=on).wrap(primary)()
