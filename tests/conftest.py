"""Shared fixtures: every async test runs on asyncio and on trio; logs print nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import structlog
from redis_fixtures import RedisServer

if TYPE_CHECKING:
    from collections.abc import Iterator


def quiet_logs() -> None:
    """Keep structlog's processors but send what they render nowhere.

    structlog's default configuration prints every event to stdout, and worker
    threads that outlive a test (``node.abandoned_thread_finished``) would print
    into later tests' output. Events still go through the processors, so
    `structlog.testing.capture_logs` (which swaps the processors) sees them all.
    """
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())


quiet_logs()


@pytest.fixture(autouse=True)
def _logs_stay_quiet() -> None:
    """Restore the quiet output before each test (some tests reset structlog's defaults)."""
    quiet_logs()


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("trio", {}), id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    """Run each ``@pytest.mark.anyio`` test on both backends."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    """One redis-server (free port, stopped by PID) for a module's tests that do not break it."""
    with RedisServer() as running:
        yield running
