"""Error records: bounded cost and no secret left at a cut, whatever the message."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from _helpers import spy_on_redaction

from resilient_nodes import create_node
from resilient_nodes._records import MAX_MESSAGE_LENGTH, create_node_error
from resilient_nodes._sanitize import CUT_CONTEXT

# 60 KB of base64url (letters, digits, "-" and "_"): a payload echoed in an error.
BLOB = base64.urlsafe_b64encode(bytes(range(256)) * 176).decode()[:60_000]
# 32 KB of "a-a-a-...": every "-" started a lazy key scan to the end of the run.
DASHES = "a-" * 16_000


def _raised(error: BaseException) -> BaseException:
    """Raise and catch *error* so it carries a real traceback."""
    try:
        raise error
    except BaseException as caught:
        return caught


@pytest.mark.parametrize("message", [f"bad payload {BLOB}", DASHES], ids=["blob", "dashes"])
def test_recording_a_huge_message_is_fast(message: str) -> None:
    """A 60 KB base64url blob or 32 KB of a-a-a is recorded well under a second.

    Before the fix these took about 9 s and 80 s (the whole traceback was redacted
    by patterns that backtracked quadratically); now a few milliseconds.
    """
    started = time.perf_counter()
    record = create_node_error(_raised(ValueError(message)), node="n")
    assert time.perf_counter() - started < 1.0
    assert len(record["message"]) <= MAX_MESSAGE_LENGTH + 64
    assert len(record["traceback"]) <= 4000


@pytest.mark.anyio
async def test_an_async_node_failing_with_a_huge_message_does_not_block_the_loop() -> None:
    """The record of an async node's failure is built without stalling the event loop."""

    async def fail(state: dict[str, Any]) -> dict[str, Any]:
        raise ValueError(f"bad payload {BLOB} {DASHES}")

    node = create_node(fail, name="huge")
    started = time.perf_counter()
    (record,) = (await node({}))["errors"]
    assert time.perf_counter() - started < 1.0
    assert record["error_type"] == "ValueError"


def test_recording_redacts_a_bounded_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the kept part of a 1 MB message (plus CUT_CONTEXT) is handed to the patterns."""
    seen = spy_on_redaction(monkeypatch)
    create_node_error(_raised(ValueError("a-" * 500_000)), node="n")
    assert seen
    assert max(seen) <= 4000 + CUT_CONTEXT


@pytest.mark.parametrize(
    ("secret_part", "leaked"),
    [
        ('{"user":"bob","password":"hunter2-Sup3r-secret-value"}', "hunter"),
        (",postgres://admin:hunter2secret@db.internal/app", "hunter"),
        (",sk-proj-AbC123dEf456GhI789jKl0", "proj-"),
    ],
)
def test_a_message_cut_inside_a_secret_keeps_none_of_it(secret_part: str, leaked: str) -> None:
    """The message cut (at 2,000 characters, no space near) never leaves the start of a secret."""
    # No whitespace, so the cut cannot step back to one; it lands inside the secret.
    for offset in range(3, len(secret_part) - 3):
        message = "x" * (MAX_MESSAGE_LENGTH - offset) + secret_part + "y" * 5000
        record = create_node_error(_raised(ValueError(message)), node="n")
        assert leaked not in json.dumps(record), offset
        assert record["message"].endswith("more chars]")


def test_a_cut_message_still_says_how_much_was_cut() -> None:
    """A long message keeps its head, cut at a space when one is near, and counts the rest."""
    message = "word " * 1000
    record = create_node_error(ValueError(message), node="n")
    head, _, rest = record["message"].rpartition(" ...[")
    assert message.startswith(head)
    assert len(head) <= MAX_MESSAGE_LENGTH
    assert rest == f"{len(message) - len(head)} more chars]"


def test_huge_details_are_bounded_and_fast() -> None:
    """Detail strings are cut and redacted the same way, in bounded time."""
    started = time.perf_counter()
    record = create_node_error(
        ValueError("x"),
        node="n",
        details={"payload": DASHES, "blob": BLOB, "url": "postgres://app:pw1@h"},
    )
    assert time.perf_counter() - started < 1.0
    details = record["details"]
    assert len(details["payload"]) < 600
    assert details["url"] == "postgres://[REDACTED]@h"
