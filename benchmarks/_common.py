"""Targets, flaky functions and the naive peer stack shared by the case modules."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import anyio
import pybreaker
import structlog
from tenacity import retry, stop_after_attempt, wait_exponential_jitter, wait_none

from resilient_nodes import Policy

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

STATE: dict[str, Any] = {"value": 1}


def configure_logging() -> None:
    """structlog as a production service would run it, filtered to warnings.

    Warnings (``node.timed_out`` in the lateness test) are rendered to JSON but
    returned, not printed: the cost of building the event is measured, terminal
    I/O is not. Must run before any wrapper is built (loggers bind at wrap time).
    """
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.ReturnLoggerFactory(),
        cache_logger_on_first_use=True,
    )


async def f(x: Any) -> Any:
    """The wrapped target: returns at once."""
    return x


async def impl(state: dict[str, Any]) -> dict[str, Any]:
    """A node implementation that returns at once."""
    return {"value": state["value"] + 1}


class Flaky:
    """Fails every other call with ConnectionError: one failure, then a success."""

    def __init__(self, result: Callable[[Any], Any] = lambda x: x) -> None:
        self.fail_next = True
        self.result = result

    async def __call__(self, x: Any) -> Any:
        if self.fail_next:
            self.fail_next = False
            raise ConnectionError("flaky")
        self.fail_next = True
        return self.result(x)


def flaky_fn() -> Callable[[Any], Awaitable[Any]]:
    """A `Flaky` as a plain coroutine function (stamina and backoff only see those)."""
    flaky = Flaky()

    async def fn(x: Any) -> Any:
        return await flaky(x)

    return fn


def flaky_impl() -> Flaky:
    return Flaky(lambda state: {"value": state["value"] + 1})


def by_hand(fn: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
    """A hand-written retry loop around *fn*, yielding to the loop between attempts.

    The failure-path floor (around the bare flaky function), and the caller's own
    retry around layers that do not retry (breaker, timeout). Every library under
    test yields to the loop once before its retry too (a zero sleep).
    """

    async def retried(x: Any) -> Any:
        try:
            return await fn(x)
        except ConnectionError:
            await asyncio.sleep(0)
        return await fn(x)

    return retried


def full_policy(*, zero_backoff: bool = False) -> Policy:
    """``Policy.retry() | Policy.breaker() | Policy.timeout(30)``."""
    if zero_backoff:
        retry_layer = Policy.retry(backoff=0, jitter=0, max_backoff=0)
    else:
        retry_layer = Policy.retry()
    return retry_layer | Policy.breaker() | Policy.timeout(30)


def under_asyncio_timeout(fn: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
    """``fn`` under ``asyncio.timeout(30)``: the standard library's deadline, as a yardstick."""

    async def timed(x: Any) -> Any:
        async with asyncio.timeout(30):
            return await fn(x)

    return timed


def under_fail_after(fn: Callable[[Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
    """``fn`` under a bare ``anyio.fail_after(30)``, the usual anyio deadline.

    The reference of the LangGraph and scale targets: our timeout is an anyio
    cancel scope too, so the node is held to what such a scope alone costs in
    the same place, measured in the same run.
    """

    async def timed(x: Any) -> Any:
        with anyio.fail_after(30):
            return await fn(x)

    return timed


def naive_stack(
    fn: Callable[[Any], Awaitable[Any]], *, zero_wait: bool = False
) -> Callable[[Any], Awaitable[Any]]:
    """tenacity ``@retry`` + pybreaker ``calling()`` + ``anyio.fail_after(30)`` per attempt."""
    breaker = pybreaker.CircuitBreaker()
    wait = wait_none() if zero_wait else wait_exponential_jitter()

    @retry(stop=stop_after_attempt(3), wait=wait)
    async def naive(x: Any) -> Any:
        with breaker.calling(), anyio.fail_after(30):
            return await fn(x)

    return naive
