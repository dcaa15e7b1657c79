"""Small helpers shared by several test modules (imported as ``_helpers``)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest
import trio

from resilient_nodes import _sanitize, _threads

if TYPE_CHECKING:
    from collections.abc import Iterator


def trio_cancelled() -> BaseException:
    """A real ``trio.Cancelled``, caught from a cancelled scope (it has no public constructor)."""
    caught: list[BaseException] = []

    async def main() -> None:
        with trio.CancelScope() as scope:
            scope.cancel()
            try:
                await trio.sleep(1)
            except trio.Cancelled as error:
                caught.append(error)
                raise

    trio.run(main)
    return caught[0]


def spy_on_redaction(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The lengths of the texts handed to the redaction patterns from now on."""
    seen: list[int] = []
    redact = _sanitize._redact

    def spy(text: str, cut: int, *, keep_head: bool) -> tuple[str, int]:
        seen.append(len(text))
        return redact(text, cut, keep_head=keep_head)

    monkeypatch.setattr(_sanitize, "_redact", spy)
    return seen


@pytest.fixture
def no_thread_left_behind() -> Iterator[None]:
    """Every worker thread a test starts has finished when it ends."""
    yield
    for thread in threading.enumerate():
        if thread.name.startswith("resilient_nodes:"):
            thread.join(2)
            assert not thread.is_alive(), f"{thread.name} left running"
    assert _threads.abandoned_threads() == 0
