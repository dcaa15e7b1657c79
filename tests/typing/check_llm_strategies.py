"""Static checks (mypy) of the strategies for LLM calls: what ``wrap`` infers for each kind.

Each ``assert_type`` states what mypy must infer; this file is checked, not run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import assert_type

from resilient_nodes import NodeFallbackExhaustedError, NodeStreamInterruptedError, Policy


async def tokens(prompt: str) -> AsyncIterator[str]:
    yield prompt


async def ask(prompt: str) -> str:
    return prompt


async def ask_backup(prompt: str) -> str:
    return prompt


def check_wrap_kinds() -> None:
    streamed = (Policy.llm() | Policy.stream(first_item=10, idle=5)).wrap(tokens)
    assert_type(streamed("story"), AsyncIterator[str])
    routed = (Policy.fallback(ask_backup) | Policy.llm()).wrap(ask)
    assert_type(routed("story"), Awaitable[str])


def check_errors(route: NodeFallbackExhaustedError, cut: NodeStreamInterruptedError) -> None:
    assert_type(route.errors, tuple[BaseException, ...])
    assert_type(route.callables, tuple[str, ...])
    assert_type(cut.items_delivered, int)
