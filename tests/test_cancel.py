"""Tests for resilient_nodes._cancel: cancel tokens and the cancellation seam."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest
from _helpers import no_thread_left_behind  # noqa: F401 - a fixture used by pytestmark

from resilient_nodes._cancel import call_with_cancel_token, call_with_cancel_token_sync
from resilient_nodes._classification import classify_error
from resilient_nodes._context import create_execution_context, current_context, use_context
from resilient_nodes._tokens import CancelToken, in_event_loop, is_token_cancelled, token_reason
from resilient_nodes.errors import ErrorCode, NodeCancellationError

pytestmark = pytest.mark.usefixtures("no_thread_left_behind")


def make_token(kind: str) -> Any:
    return {"ours": CancelToken, "anyio": anyio.Event, "threading": threading.Event}[kind]()


def set_token(token: Any, reason: str = "stop") -> None:
    if isinstance(token, CancelToken):
        token.cancel(reason)
    else:
        token.set()


async def sleep_long() -> str:
    await anyio.sleep(100)
    return "late"


# --- the token -------------------------------------------------------------------------


def test_token_is_one_shot_and_keeps_first_reason() -> None:
    """The first cancel() wins; later ones change nothing and return False."""
    token = CancelToken()
    assert not is_token_cancelled(token)
    reason_before = token.reason
    assert reason_before is None
    assert "not cancelled" in repr(token)
    assert token.cancel("first")
    assert not token.cancel("second")
    assert token.cancelled
    assert token.reason == "first"
    assert "first" in repr(token)
    assert token_reason(token) == "first"


def test_token_probes_for_every_kind() -> None:
    """is_token_cancelled and token_reason accept all three kinds."""
    for kind in ("ours", "anyio", "threading"):
        token = make_token(kind)
        assert not is_token_cancelled(token)
        set_token(token)
        assert is_token_cancelled(token)
    assert token_reason(threading.Event()) == "cancel token was set"


def test_wait_sync_wakes_on_cancel_from_another_thread() -> None:
    """wait_sync returns True when another thread cancels, False on its own timeout."""
    token = CancelToken()
    assert not token.wait_sync(0.001)
    timer = threading.Timer(0.01, token.cancel)
    timer.start()
    assert token.wait_sync(2)
    timer.join()


def test_cancellation_error_is_cancelled_and_not_retryable() -> None:
    """NodeCancellationError has code CANCELLED and is classified as not retryable."""
    error = NodeCancellationError("why", node="n")
    assert error.code is ErrorCode.CANCELLED
    assert not classify_error(error).retryable


@pytest.mark.anyio
async def test_async_wait_woken_from_another_thread() -> None:
    """await token.wait() wakes promptly when a plain thread cancels the token."""
    token = CancelToken()
    timer = threading.Timer(0.01, token.cancel)
    start = time.monotonic()
    timer.start()
    with anyio.fail_after(2):
        await token.wait()
    timer.join()
    assert time.monotonic() - start < 0.5
    assert not token._wakers
    await token.wait()  # already set: returns at once


@pytest.mark.anyio
async def test_async_wait_woken_from_another_task() -> None:
    """await token.wait() wakes when a sibling task cancels the token."""
    token = CancelToken()
    async with anyio.create_task_group() as group:
        group.start_soon(token.wait)
        await anyio.sleep(0.001)
        token.cancel()
    assert token.cancelled


def test_trigger_after_loop_finished_is_harmless() -> None:
    """A loop trigger fired after its event loop has ended does nothing."""
    for backend in ("asyncio", "trio"):
        fired: list[int] = []

        async def make() -> Any:
            return in_event_loop(lambda: fired.append(1))  # noqa: B023

        trigger = anyio.run(make, backend=backend)
        trigger()
        assert fired == []


# --- call_with_cancel_token (async) --------------------------------------------------


@pytest.mark.anyio
async def test_no_token_is_a_plain_await() -> None:
    """With no token the function is simply awaited."""

    async def fn() -> int:
        await anyio.lowlevel.checkpoint()
        return 3

    assert await call_with_cancel_token(fn, None) == 3


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["ours", "anyio", "threading"])
async def test_token_set_before_skips_call(kind: str) -> None:
    """A token already set raises NodeCancellationError without calling fn."""
    token = make_token(kind)
    set_token(token)
    called: list[int] = []

    async def fn() -> None:
        called.append(1)  # pragma: no cover

    with pytest.raises(NodeCancellationError):
        await call_with_cancel_token(fn, token, name="n")
    assert called == []


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["ours", "anyio", "threading"])
async def test_token_set_during_call_cancels_promptly(kind: str) -> None:
    """Setting the token from a sibling task ends the call within a small bound."""
    token = make_token(kind)

    async def set_later() -> None:
        await anyio.sleep(0.01)
        set_token(token, "user stop")

    start = time.monotonic()
    async with anyio.create_task_group() as group:
        group.start_soon(set_later)
        with pytest.raises(NodeCancellationError) as caught:
            await call_with_cancel_token(sleep_long, token, name="n")
    assert time.monotonic() - start < 0.5
    assert caught.value.node == "n"
    assert caught.value.reason == ("user stop" if kind == "ours" else "cancel token was set")


@pytest.mark.anyio
async def test_our_token_set_from_another_thread_cancels() -> None:
    """Our token cancelled from a plain thread wakes the loop and ends the call."""
    token = CancelToken()
    timer = threading.Timer(0.01, token.cancel, args=("from thread",))
    timer.start()
    start = time.monotonic()
    with pytest.raises(NodeCancellationError, match="from thread"):
        await call_with_cancel_token(sleep_long, token)
    timer.join()
    assert time.monotonic() - start < 0.5


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["ours", "anyio", "threading"])
async def test_finished_call_returns_and_unsubscribes(kind: str) -> None:
    """A call that finishes first returns its value; setting the token later is harmless."""
    token = make_token(kind)

    async def fn() -> str:
        await anyio.lowlevel.checkpoint()
        return "ok"

    assert await call_with_cancel_token(fn, token) == "ok"
    if isinstance(token, CancelToken):
        assert not token._wakers
    set_token(token)
    await anyio.sleep(0.001)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["ours", "anyio", "threading"])
async def test_swallowed_or_converted_cancel_is_still_cancellation(kind: str) -> None:
    """A body that swallows the token's cancel, or turns it into an error, still yields
    NodeCancellationError (with the error as context)."""
    token = make_token(kind)

    async def swallow() -> str:
        try:
            await anyio.sleep(100)
        except anyio.get_cancelled_exc_class():
            return "partial"
        return "never"  # pragma: no cover

    async def convert() -> None:
        try:
            await anyio.sleep(100)
        except anyio.get_cancelled_exc_class():
            raise ValueError("converted") from None

    async def set_later() -> None:
        await anyio.sleep(0.01)
        set_token(token)

    async with anyio.create_task_group() as group:
        group.start_soon(set_later)
        with pytest.raises(NodeCancellationError):
            await call_with_cancel_token(swallow, token)
    token = make_token(kind)
    async with anyio.create_task_group() as group:
        group.start_soon(set_later)
        with pytest.raises(NodeCancellationError) as caught:
            await call_with_cancel_token(convert, token)
    assert isinstance(caught.value.__cause__, ValueError)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["ours", "anyio", "threading"])
async def test_body_error_without_cancel_propagates(kind: str) -> None:
    """An ordinary error with the token unset propagates unchanged (not in a group)."""

    async def boom() -> None:
        await anyio.lowlevel.checkpoint()
        raise KeyError("k")

    with pytest.raises(KeyError):
        await call_with_cancel_token(boom, make_token(kind))


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["ours", "anyio", "threading"])
async def test_outer_cancellation_passes_through(kind: str) -> None:
    """The caller's own cancellation is not turned into NodeCancellationError."""
    with anyio.move_on_after(0.01) as outer:
        await call_with_cancel_token(sleep_long, make_token(kind))
    assert outer.cancelled_caught


# --- call_with_cancel_token_sync -----------------------------------------------------


def test_sync_no_token_runs_in_caller_thread() -> None:
    """With no token, the function runs directly in the calling thread."""
    assert call_with_cancel_token_sync(threading.current_thread, None) is threading.current_thread()


def test_sync_token_set_before_skips_call() -> None:
    """A token already set means fn is never called."""
    token = CancelToken()
    token.cancel("early")
    with pytest.raises(NodeCancellationError, match="early"):
        call_with_cancel_token_sync(lambda: pytest.fail("called"), token)


@pytest.mark.parametrize("kind", ["ours", "threading", "anyio"])
def test_sync_token_set_during_call_returns_promptly(kind: str) -> None:
    """The caller returns at the token while the worker thread keeps running."""
    token = make_token(kind)
    release = threading.Event()
    workers: list[threading.Thread] = []

    def stuck() -> None:
        workers.append(threading.current_thread())
        release.wait(2)

    timer = threading.Timer(0.01, set_token, args=(token,))
    timer.start()
    start = time.monotonic()
    with pytest.raises(NodeCancellationError):
        call_with_cancel_token_sync(stuck, token, name="n")
    assert time.monotonic() - start < 0.5
    timer.join()
    (worker,) = workers
    assert worker.is_alive()
    release.set()
    worker.join(2)


def test_sync_call_finishing_returns_value_with_context() -> None:
    """A sync call under a token returns its value and sees the caller's context."""
    token = CancelToken()
    with use_context(create_execution_context("n", trace_id="abc")):
        found = call_with_cancel_token_sync(current_context, token)
    assert found is not None
    assert found.trace_id == "abc"
    assert not token._wakers


def test_sync_call_error_propagates() -> None:
    """An error in the worker thread is re-raised in the caller."""

    def boom() -> None:
        raise LookupError("x")

    with pytest.raises(LookupError):
        call_with_cancel_token_sync(boom, threading.Event())


@pytest.mark.anyio
@pytest.mark.parametrize("make_token", [anyio.Event, threading.Event, CancelToken])
async def test_system_exit_is_not_wrapped_by_the_token_watcher(make_token: Any) -> None:
    """SystemExit from the body comes out as itself, not inside an exception group."""

    async def body() -> None:
        raise SystemExit(3)

    with pytest.raises(SystemExit) as caught:
        await call_with_cancel_token(body, make_token(), name="n")
    assert caught.value.code == 3
