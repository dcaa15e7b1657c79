"""What passes through untouched: cancellation, exits and LangGraph control flow."""

from __future__ import annotations

import asyncio

import pytest
from _helpers import trio_cancelled

from resilient_nodes._control import is_control_flow


@pytest.mark.parametrize(
    "make",
    [
        asyncio.CancelledError,
        trio_cancelled,
        KeyboardInterrupt,
        SystemExit,
        GeneratorExit,
        lambda: BaseExceptionGroup("g", [ValueError(), KeyboardInterrupt()]),
    ],
    ids=[
        "CancelledError",
        "trio.Cancelled",
        "KeyboardInterrupt",
        "SystemExit",
        "GeneratorExit",
        "group",
    ],
)
def test_base_exceptions_are_control_flow(make: object) -> None:
    """Every non-Exception (and a group holding one) is control flow."""
    assert is_control_flow(make())  # type: ignore[operator]


def test_langgraph_bubble_up_family() -> None:
    """GraphInterrupt and ParentCommand (Exceptions) are control flow, also inside a group."""
    errors = pytest.importorskip("langgraph.errors")
    interrupt = errors.GraphInterrupt()
    assert isinstance(interrupt, Exception)
    assert is_control_flow(interrupt)
    assert is_control_flow(errors.GraphBubbleUp())
    assert is_control_flow(ExceptionGroup("g", [ValueError(), interrupt]))
    assert is_control_flow(ExceptionGroup("g", [ExceptionGroup("h", [interrupt])]))
    assert not is_control_flow(errors.InvalidUpdateError("not control flow"))


def test_lookalike_outside_langgraph_is_not_control_flow() -> None:
    """A class merely named GraphBubbleUp outside langgraph is an ordinary error."""
    fake = type("GraphBubbleUp", (Exception,), {})
    assert not is_control_flow(fake())


def test_ordinary_errors_are_not_control_flow() -> None:
    """Ordinary exceptions and groups of them are not control flow (checked twice: cached)."""
    for _ in range(2):
        assert not is_control_flow(ValueError())
        assert not is_control_flow(TimeoutError())
        assert not is_control_flow(ExceptionGroup("g", [ValueError(), OSError()]))
