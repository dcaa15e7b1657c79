"""What a run produced, as data: per story, per node, breaker transitions, checks.

The report is built from three sources, none of which needs to trust the
others: the library's own log events (retries, timeouts, breaker transitions,
node outcomes), the services' record of every call they received, and each
story's final graph state (the errors, gate decisions and artifacts the nodes
wrote). `check_failure_modes` then asks whether every failure the demo is meant
to show did happen and was handled as designed.

Equality leaves out everything that depends on timing, so two runs with the same
seed compare equal.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs

from resilient_nodes import BreakerState, ErrorCode

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from .fanout import FanoutReport
    from .services import Call, StoryPlan

__all__ = [
    "CLOCK_SLACK",
    "BreakerTransition",
    "Check",
    "DemoReport",
    "ErrorEntry",
    "NodeStats",
    "ProgressEvent",
    "RetryWait",
    "Step",
    "StoryResult",
    "check_failure_modes",
    "node_stats",
    "retry_wait",
    "story_result",
]

CLOCK_SLACK: Final = 0.02
"""How much earlier than asked a sleep may measurably end (coarse timers)."""


@attrs.frozen
class Step:
    """One node call within one story.

    Attributes:
        node: The node.
        attempts: How many times its implementation was entered (0 when the
            breaker rejected the call before it started).
        outcome: ``"ok"``, or the `ErrorCode` value recorded in state.
        seconds: Time spent in the node, backoff included (not compared).
    """

    node: str
    attempts: int
    outcome: str
    seconds: float = attrs.field(eq=False)


@attrs.frozen
class ErrorEntry:
    """The gist of one `NodeErrorRecord` found in a story's final state.

    Attributes:
        node: The node that failed.
        code: Its `ErrorCode` value.
        attempts: The attempts the record counts.
        message: The recorded message (not compared: it may contain timings).
    """

    node: str
    code: str
    attempts: int
    message: str = attrs.field(eq=False)


@attrs.frozen
class StoryResult:
    """What happened to one story.

    Attributes:
        story_id: Its id.
        title: Its title.
        status: ``"published"`` or ``"blocked"``.
        steps: The node calls, in order.
        errors: The error records in its final state.
        gate_decisions: Gate name to decision (``"pass"``, ``"blocked"``...).
        seconds: Wall time of its graph invocation (not compared).
        state: The final state (not compared: timestamps, temporary paths).
    """

    story_id: str
    title: str
    status: Literal["published", "blocked"]
    steps: tuple[Step, ...]
    errors: tuple[ErrorEntry, ...]
    gate_decisions: tuple[tuple[str, str], ...]
    seconds: float = attrs.field(eq=False)
    state: Mapping[str, Any] = attrs.field(eq=False, repr=False)


@attrs.frozen
class NodeStats:
    """One node's totals over the batch.

    Attributes:
        node: The node.
        policy: ``repr`` of its policy (the expression that builds it).
        calls: Graph calls of the node.
        attempts: Entries into its implementation.
        retries: Backoffs scheduled by its retry layer.
        timeouts: Attempts cut off by a timeout.
        outcomes: ``(outcome, count)`` pairs, ``"ok"`` first, then by code.
        seconds: Total time spent in it (not compared).
    """

    node: str
    policy: str
    calls: int
    attempts: int
    retries: int
    timeouts: int
    outcomes: tuple[tuple[str, int], ...]
    seconds: float = attrs.field(eq=False)


@attrs.frozen
class BreakerTransition:
    """A ``breaker.state_changed`` event.

    Attributes:
        node: The breaker's node.
        old: The state it left.
        new: The state it entered.
        failure_count: Consecutive counted failures at the time.
        story_id: The story being processed.
        at: Seconds since the start of the run (not compared).
    """

    node: str
    old: str | None
    new: str
    failure_count: int
    story_id: str
    at: float = attrs.field(eq=False)


@attrs.frozen
class RetryWait:
    """A backoff between two attempts.

    Attributes:
        node: The node.
        story_id: The story.
        attempt: The attempt that failed.
        error_type: What it raised.
        delay: The backoff the retry layer scheduled, in seconds.
        retry_after: What the failed call asked for (``Retry-After``), if anything.
        waited: Measured time from the end of the failed attempt to the start of
            the next one (not compared).
    """

    node: str
    story_id: str
    attempt: int
    error_type: str
    delay: float
    retry_after: float | None
    waited: float = attrs.field(eq=False)


@attrs.frozen
class ProgressEvent:
    """One line of the progress display.

    Attributes:
        story_id: The story being processed (empty before the first).
        node: The node it concerns (empty for story-level lines).
        kind: The structlog event name, or ``story.finished``.
        text: What the display says.
        at: Seconds since the start of the run (not compared).
    """

    story_id: str
    node: str
    kind: str
    text: str
    at: float = attrs.field(eq=False)


@attrs.frozen
class Check:
    """Whether a failure mode the demo is meant to show did happen.

    Attributes:
        name: The failure mode.
        passed: Whether it was seen, with the expected recovery.
        detail: Evidence, for the summary (not compared: may hold timings).
    """

    name: str
    passed: bool
    detail: str = attrs.field(eq=False)


@attrs.frozen
class DemoReport:
    """Everything one run of the demo produced.

    Equality compares only what the seed decides: timings, messages with
    timings in them, final states and the summary text are left out, so two
    runs with the same seed compare equal.

    Attributes:
        seed: The seed of the failure schedule.
        stories: Per story, in processing order.
        nodes: Per node, in pipeline order.
        transitions: Breaker state changes, in order.
        retries: Backoffs, in order.
        events: The progress lines, in order.
        checks: The failure modes and whether each was shown.
        seconds: Wall time of the batch (not compared).
        summary: The rendered summary (not compared).
        fanout: The fan-out held under a shared rate limit, if it ran.
    """

    seed: int
    stories: tuple[StoryResult, ...]
    nodes: tuple[NodeStats, ...]
    transitions: tuple[BreakerTransition, ...]
    retries: tuple[RetryWait, ...]
    events: tuple[ProgressEvent, ...]
    checks: tuple[Check, ...]
    seconds: float = attrs.field(eq=False)
    summary: str = attrs.field(eq=False, repr=False)
    # Issue 18: the Send fan-out under one shared rate limit, run after the batch.
    fanout: FanoutReport | None = None

    @property
    def ok(self) -> bool:
        """Whether every failure mode was shown."""
        return all(check.passed for check in self.checks)

    def node(self, name: str) -> NodeStats:
        """The stats of node *name*.

        Raises:
            KeyError: If there is no such node.
        """
        for stats in self.nodes:
            if stats.node == name:
                return stats
        raise KeyError(name)


# --- from what was recorded to the report ------------------------------------------


def story_result(
    plan: StoryPlan,
    final: Mapping[str, Any],
    seconds: float,
    finished: Sequence[tuple[str, str, bool, float]],
    attempts: Mapping[tuple[str, str], int],
) -> StoryResult:
    """One story's result, from its final state and the node outcomes logged for it.

    Args:
        plan: The story's plan.
        final: Its final graph state.
        seconds: Wall time of its graph invocation.
        finished: ``(story_id, node, ok, seconds)`` per node call of the batch.
        attempts: ``(story_id, node)`` to entries into the node's implementation.

    Returns:
        The `StoryResult`.
    """
    errors = tuple(
        ErrorEntry(record["node"], record["code"], record["attempts"], _cause(record))
        for record in final.get("errors") or []
    )
    failed = {entry.node: entry.code for entry in errors}
    steps = tuple(
        Step(
            node,
            attempts.get((plan.story_id, node), 0),
            "ok" if ok else failed.get(node, ErrorCode.UNKNOWN.value),
            node_seconds,
        )
        for story_id, node, ok, node_seconds in finished
        if story_id == plan.story_id
    )
    gates = tuple(
        (gate, decision["decision"])
        for gate, decision in sorted((final.get("gate_decisions") or {}).items())
    )
    return StoryResult(
        story_id=plan.story_id,
        title=plan.title,
        status="blocked" if errors else "published",
        steps=steps,
        errors=errors,
        gate_decisions=gates,
        seconds=seconds,
        state=final,
    )


def _cause(record: Mapping[str, Any]) -> str:
    """The message worth showing: an exhausted retry's last error, or the message."""
    last = (record.get("details") or {}).get("last_error")
    if isinstance(last, dict):
        return f"{last.get('error_type')}: {last.get('message')}"
    return str(record["message"])


def retry_wait(entry: tuple[str, str, int, str, float], calls: Sequence[Call]) -> RetryWait:
    """One logged backoff, with what the services saw of it (asked and waited).

    Args:
        entry: ``(story_id, node, attempt, error_type, delay)`` from the log event.
        calls: Every call the services received.

    Returns:
        The `RetryWait`.
    """
    story_id, node, attempt, error_type, delay = entry
    mine = {call.attempt: call for call in calls if (call.story_id, call.node) == (story_id, node)}
    failed, following = mine.get(attempt), mine.get(attempt + 1)
    waited = 0.0
    if failed is not None and following is not None and failed.ended is not None:
        waited = following.started - failed.ended
    retry_after = failed.retry_after if failed is not None else None
    return RetryWait(node, story_id, attempt, error_type, delay, retry_after, waited)


def node_stats(
    name: str,
    policy: str,
    stories: Sequence[StoryResult],
    retries: Sequence[RetryWait],
    timeouts: int,
) -> NodeStats:
    """One node's totals over the stories.

    Args:
        name: The node.
        policy: ``repr`` of its policy.
        stories: Every story's result.
        retries: Every backoff.
        timeouts: Attempts of the node cut off by a timeout.

    Returns:
        The `NodeStats`.
    """
    steps = [step for story in stories for step in story.steps if step.node == name]
    outcomes = Counter(step.outcome for step in steps)
    ordered = sorted(outcomes.items(), key=lambda item: (item[0] != "ok", item[0]))
    return NodeStats(
        node=name,
        policy=policy,
        calls=len(steps),
        attempts=sum(step.attempts for step in steps),
        retries=sum(1 for wait in retries if wait.node == name),
        timeouts=timeouts,
        outcomes=tuple(ordered),
        seconds=sum(step.seconds for step in steps),
    )


def check_failure_modes(
    stories: Sequence[StoryResult],
    retries: Sequence[RetryWait],
    transitions: Sequence[BreakerTransition],
    events: Sequence[ProgressEvent] = (),
) -> tuple[Check, ...]:
    """Did each failure mode happen, and did the pipeline cope as designed?

    Args:
        stories: Every story's result.
        retries: Every backoff.
        transitions: Every breaker transition.
        events: The progress events (fallbacks and stream stalls are seen there).

    Returns:
        One `Check` per failure mode.
    """

    def steps(node: str) -> list[Step]:
        return [step for story in stories for step in story.steps if step.node == node]

    recovered_503 = [s for s in steps("outline") if s.attempts > 1 and s.outcome == "ok"]
    honoured = [
        w
        for w in retries
        if w.retry_after is not None
        and w.delay >= w.retry_after
        and w.waited >= w.retry_after - CLOCK_SLACK
    ]
    timed_out = [w for w in retries if w.error_type == "NodeTimeoutError" and w.node == "draft"]
    draft_recovered = [s for s in steps("draft") if s.attempts > 1 and s.outcome == "ok"]
    invalid = [
        story
        for story in stories
        if any(e.code == ErrorCode.VALIDATION_FAILED for e in story.errors)
        and ("check", "blocked") in story.gate_decisions
        and any(step.node == "handle_error" for step in story.steps)
    ]
    path = [(t.old, t.new) for t in transitions if t.node == "publish"]
    cycle = [
        (BreakerState.CLOSED, BreakerState.OPEN),
        (BreakerState.OPEN, BreakerState.HALF_OPEN),
        (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    ]
    rejected = [s for s in steps("publish") if s.outcome == ErrorCode.CIRCUIT_OPEN]
    wait = honoured[0] if honoured else None
    served = {e.story_id for e in events if e.kind == "fallback.served" and e.node == "blurb"}
    fell_back = [s for s in stories if s.story_id in served and _step_ok(s, "blurb")]
    stalled = {e.story_id for e in events if e.kind == "stream.stalled" and e.node == "blurb"}
    restarted = [
        s
        for s in stories
        if s.story_id in stalled and s.story_id not in served and _step_ok(s, "blurb")
    ]
    return (
        Check(
            "transient 503s recovered after retries",
            bool(recovered_503),
            f"{len(recovered_503)} outline calls needed more than one attempt",
        ),
        Check(
            "429 Retry-After honoured by the backoff",
            wait is not None,
            "no Retry-After seen"
            if wait is None
            else f"asked {wait.retry_after:.2f}s, waited {wait.waited:.2f}s",
        ),
        Check(
            "hung call cut by its per-attempt timeout, then retried",
            bool(timed_out) and bool(draft_recovered),
            f"{len(timed_out)} timed out, {len(draft_recovered)} recovered on retry",
        ),
        Check(
            "validation error not retried, routed to handle_error",
            bool(invalid),
            ", ".join(story.story_id for story in invalid) + " blocked at check",
        ),
        Check(
            "breaker opened, failed fast, probed, closed again",
            path == cycle and bool(rejected),
            f"{len(rejected)} calls rejected with CIRCUIT_OPEN while open",
        ),
        Check(
            "primary model down: the backup model answered",
            bool(fell_back),
            ", ".join(s.story_id for s in fell_back) + " served by the backup blurb model",
        ),
        Check(
            "stream stalled before its first token, restarted",
            bool(restarted),
            ", ".join(s.story_id for s in restarted) + " got every token once, on attempt 2",
        ),
    )


def _step_ok(story: StoryResult, node: str) -> bool:
    return any(step.node == node and step.outcome == "ok" for step in story.steps)
