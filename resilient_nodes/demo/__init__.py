"""A story pipeline that fails on purpose, to show what the policies do.

Run it with ``python -m resilient_nodes.demo`` (``--seed N`` for another
schedule, ``--quiet`` for the summary alone). It builds a real LangGraph
``StateGraph`` of six nodes and sends a batch of stories through it, one
invocation per story::

    outline --> research --> draft --> check --> publish --> END
       |           |            |         |          |
       +-----------+------------+---------+----------+--> handle_error --> END
                 (as soon as an error is recorded in the state)

The LLM and tool "services" behind the nodes are simulated in-process (no
network, no API keys; published stories go to a temporary directory that is
removed at the end) and misbehave on a schedule drawn from ``random.Random(seed)``:

* ``outline`` (an LLM) answers some calls with ``503 Service Unavailable``; the
  retry layer backs off and tries again. Policy:
  ``Policy.llm(...) | Policy.breaker(...)``, a breaker that counts every attempt
  (it stays closed: a success resets its count).
* ``research`` (a search tool) is rate limited once: ``429`` with
  ``Retry-After``, which the backoff waits out. Policy:
  ``Policy.timeout(...) | Policy.tool(...) | Policy.timeout(...)``, a budget for
  the whole call (backoff included) and a bound per attempt.
* ``draft`` (an LLM) hangs once; the per-attempt timeout cuts it off and the
  retry succeeds. Policy: ``Policy.llm(...) | Policy.timeout(...)``.
* ``check`` rejects a truncated draft with a validation error, which is not
  retried (although the node has a retry layer): it is recorded in the state's
  ``errors``, and a conditional edge sends the story to ``handle_error``, which
  records a ``blocked`` gate decision.
* ``publish`` depends on a service that is down for the first stories. Policy:
  ``Policy.breaker(...) | Policy.tool(...)``, so each exhausted call counts once;
  after two the breaker opens, the next stories fail fast with
  ``CIRCUIT_OPEN``, and after the recovery timeout one probe gets through and
  closes it again.

Progress comes from the library's own structlog events (``node.retry_scheduled``,
``node.timed_out``, ``breaker.state_changed``, ``node.failed``...): while the demo
runs, structlog is configured with a processor that feeds the display, and the
previous configuration is restored afterwards. On a terminal a status line is
kept updated under the event lines; otherwise (a pipe, CI, a test) only plain
lines are written. A summary table follows at the end.

Backoff jitter is set to 0 in every policy, so the printed delays are the round
numbers of the policies (`resilient_nodes.testing.seed_jitter` would also make
a jittered schedule repeat, but round numbers read better in a demo).

The time the demo takes is real time (backoffs of tens of milliseconds, a
Retry-After of 0.3 s, timeouts of a fraction of a second): a second or two.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TextIO

import anyio
import attrs
import structlog

from resilient_nodes import (
    AsyncNode,
    BreakerState,
    ErrorCode,
    GraphState,
    LogEvent,
    Policy,
    add_evidence_refs,
    create_blocked_update,
    create_node,
    current_context,
    merge_state_updates,
    update_artifact_paths,
    update_gate_decisions,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence

    from langgraph.graph.state import CompiledStateGraph
    from structlog.typing import EventDict, WrappedLogger

__all__ = [
    "APIStatusError",
    "BreakerTransition",
    "Check",
    "DemoReport",
    "DraftValidationError",
    "NodeStats",
    "ProgressEvent",
    "RetryWait",
    "Step",
    "StoryResult",
    "StoryState",
    "main",
    "render_summary",
    "run_demo",
]

WIDTH: Final = 80
"""Width of every line the demo writes."""

NODE_ORDER: Final = ("outline", "research", "draft", "check", "publish", "handle_error")

RETRY_AFTER: Final = 0.3
"""What the rate-limited search tool asks us to wait, in seconds."""

ATTEMPT_TIMEOUT: Final = 0.25
"""The draft LLM's per-attempt timeout, in seconds."""

RECOVERY_TIMEOUT: Final = 0.5
"""How long the publish breaker stays open before a probe, in seconds."""

CLOCK_SLACK: Final = 0.02
"""How much earlier than asked a sleep may measurably end (coarse timers)."""

_HANG: Final = 30.0  # how long a hung call would take if nothing cut it off
_STORIES: Final = 7
_OUTAGE_STORIES: Final = 2  # the publish service refuses every call of the first two
_PUBLISH_ATTEMPTS: Final = 2
_TITLES: Final = (
    "The Lighthouse Keeper's Ledger",
    "A Map of Borrowed Rivers",
    "Seven Bells for Marrow Street",
    "The Cartographer's Apprentice",
    "Salt and Static",
    "Letters from the Glass Orchard",
    "The Quiet Engine",
    "Night Train to Vell",
    "A Garden Under Ice",
)

Behaviour = Literal["ok", "503", "429", "hang", "refused", "truncated"]


# --- what the simulated services raise ---------------------------------------------


class APIStatusError(Exception):
    """An HTTP error from a simulated API, shaped like an HTTP client's.

    The library reads ``status_code`` and the ``Retry-After`` header by duck
    typing, exactly as it would from a real client's exception.

    Args:
        status_code: The HTTP status.
        message: The reason text.
        headers: Response headers (``Retry-After`` among them, for a 429).
    """

    def __init__(
        self, status_code: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status_code} {message}")
        self.status_code = status_code
        self.headers = dict(headers or {})


class DraftValidationError(ValueError):
    """A draft that does not meet the house rules (classified as validation)."""


# --- the state ---------------------------------------------------------------------


class StoryState(GraphState, total=False):
    """`GraphState` plus the pipeline's own keys (last write wins for each)."""

    title: str
    outline: str
    notes: str
    draft: str


# --- the report --------------------------------------------------------------------


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


# --- the failure schedule ----------------------------------------------------------


@attrs.frozen
class _StoryPlan:
    """How the simulated services treat one story."""

    story_id: str
    title: str
    outline_503s: int  # the outline LLM's first N attempts answer 503
    rate_limited: bool  # the search tool's first attempt answers 429
    hangs: bool  # the draft LLM's first attempt never answers
    truncated: bool  # the draft comes back cut off (fails the check)


def _plan(seed: int) -> tuple[_StoryPlan, ...]:
    """The schedule of one run.

    The storyline is fixed so that every failure mode shows up whatever the
    seed: stories 1-2 meet the publish outage (the breaker opens), 3-4 are quick
    and fail fast against the open breaker, 5 is rate limited and hangs once
    (slow enough for the recovery timeout to pass, so its publish is the probe),
    and one of 6-7 has a truncated draft. The seed picks the titles, which
    stories the outline LLM answers with 503s (never 3-4: they must stay quick)
    and how often, and the call latencies.
    """
    rng = random.Random(seed)
    titles = rng.sample(_TITLES, _STORIES)
    flaky = [1, 2, 5, 6, 7]
    outline_503s = dict.fromkeys(range(1, _STORIES + 1), 0)
    outline_503s[rng.choice(flaky)] = 2
    for index in flaky:
        if not outline_503s[index]:
            outline_503s[index] = rng.choice((0, 0, 1))
    truncated = rng.choice((6, 7))
    return tuple(
        _StoryPlan(
            story_id=f"story-{index}",
            title=titles[index - 1],
            outline_503s=outline_503s[index],
            rate_limited=index == 5,
            hangs=index == 5,
            truncated=index == truncated,
        )
        for index in range(1, _STORIES + 1)
    )


@attrs.define
class _Call:
    """One entry into a node implementation."""

    story_id: str
    node: str
    attempt: int
    behaviour: Behaviour
    started: float
    ended: float | None = None
    retry_after: float | None = None


class _Services:
    """The simulated LLM and tool backends, and the node implementations on them."""

    def __init__(self, plans: Sequence[_StoryPlan], seed: int, artifacts: Path) -> None:
        self.plans = {plan.story_id: plan for plan in plans}
        self.calls: list[_Call] = []
        self._latency = random.Random(seed + 1)
        self._artifacts = artifacts
        self._refusals_left = _OUTAGE_STORIES * _PUBLISH_ATTEMPTS

    @contextlib.asynccontextmanager
    async def _attempt(
        self, node: str, state: StoryState, decide: Callable[[_StoryPlan, int], Behaviour]
    ) -> AsyncIterator[tuple[_StoryPlan, _Call]]:
        """Log one attempt, simulate the service's latency, and time it."""
        context = current_context()
        attempt = context.attempt if context is not None else 1
        plan = self.plans[state["story_id"]]
        call = _Call(plan.story_id, node, attempt, decide(plan, attempt), time.perf_counter())
        self.calls.append(call)
        try:
            await anyio.sleep(self._latency.uniform(0.002, 0.008))
            yield plan, call
        finally:
            call.ended = time.perf_counter()

    async def outline(self, state: StoryState) -> Mapping[str, Any]:
        """The outline LLM: overloaded (503) for a story's first attempts."""

        def decide(plan: _StoryPlan, attempt: int) -> Behaviour:
            return "503" if attempt <= plan.outline_503s else "ok"

        async with self._attempt("outline", state, decide) as (plan, call):
            if call.behaviour == "503":
                raise APIStatusError(503, "Service Unavailable: the model is overloaded")
            return {"outline": f"Three acts about {plan.title.lower()}."}

    async def research(self, state: StoryState) -> Mapping[str, Any]:
        """The search tool: rate limited (429, Retry-After) once."""

        def decide(plan: _StoryPlan, attempt: int) -> Behaviour:
            return "429" if plan.rate_limited and attempt == 1 else "ok"

        async with self._attempt("research", state, decide) as (plan, call):
            if call.behaviour == "429":
                call.retry_after = RETRY_AFTER
                raise APIStatusError(
                    429, "Too Many Requests", headers={"Retry-After": f"{RETRY_AFTER:g}"}
                )
            slug = plan.story_id
            return merge_state_updates(
                {"notes": f"Background reading for {plan.title!r}."},
                add_evidence_refs(
                    {"kind": "source", "uri": f"https://example.org/{slug}", "node": "research"}
                ),
            )

    async def draft(self, state: StoryState) -> Mapping[str, Any]:
        """The drafting LLM: its first attempt hangs for one story."""

        def decide(plan: _StoryPlan, attempt: int) -> Behaviour:
            if plan.hangs and attempt == 1:
                return "hang"
            return "truncated" if plan.truncated else "ok"

        async with self._attempt("draft", state, decide) as (plan, call):
            if call.behaviour == "hang":
                await anyio.sleep(_HANG)  # cut off by the per-attempt timeout
            text = f"# {plan.title}\n\n{state.get('outline', '')}\n"
            if call.behaviour == "truncated":
                return {"draft": text + "It was the last train of the"}
            return {"draft": text + "It was the last train of the night.\n\nThe end.\n"}

    async def check(self, state: StoryState) -> Mapping[str, Any]:
        """The house-rules check: a finished draft ends with "The end."."""
        async with self._attempt("check", state, lambda _plan, _attempt: "ok"):
            draft = state.get("draft", "").rstrip()
            if not draft.endswith("The end."):
                raise DraftValidationError(
                    f"draft is cut off mid-sentence (finish_reason=length): ...{draft[-24:]!r}"
                )
            return update_gate_decisions(
                {"check": {"decision": "pass", "reason": "draft meets the house rules"}}
            )

    async def publish(self, state: StoryState) -> Mapping[str, Any]:
        """The publishing service: refuses connections for the first stories."""

        def decide(_plan: _StoryPlan, _attempt: int) -> Behaviour:
            if self._refusals_left > 0:
                self._refusals_left -= 1
                return "refused"
            return "ok"

        async with self._attempt("publish", state, decide) as (plan, call):
            if call.behaviour == "refused":
                raise ConnectionRefusedError(111, "publishing service refused the connection")
            path = self._artifacts / f"{plan.story_id}.md"
            path.write_text(state.get("draft", ""), encoding="utf-8")
            return merge_state_updates(
                update_artifact_paths({"story": path}),
                update_gate_decisions({"publish": {"decision": "pass", "reason": "published"}}),
            )

    async def handle_error(self, state: StoryState) -> Mapping[str, Any]:
        """Block the story at the gate of the node that failed, saying why."""
        async with self._attempt("handle_error", state, lambda _plan, _attempt: "ok"):
            # Only reached through `_route`, which requires an error in the state.
            last = state["errors"][-1]
            return create_blocked_update(
                f"{last['node']} failed with {last['code']}",
                node="handle_error",
                gate=last["node"],
                route_to="needs_human",
            )


# --- the graph ---------------------------------------------------------------------


def _policies() -> dict[str, Policy]:
    """One policy per node: the README's canonical pipelines, with demo-sized times.

    Jitter is 0 everywhere: see the module docstring.
    """
    return {
        # The breaker counts every attempt; transient 503s do not open it because
        # a success resets the count.
        "outline": Policy.llm(backoff=0.05, max_backoff=0.2, jitter=0)
        | Policy.breaker(failure_threshold=5, recovery_timeout=1),
        # 1 s for the whole call (the Retry-After wait included), 0.3 s per attempt.
        "research": Policy.timeout(1.0)
        | Policy.tool(backoff=0.02, max_backoff=0.1, jitter=0)
        | Policy.timeout(0.3),
        # Each attempt bounded; a hung attempt is cut off and retried.
        "draft": Policy.llm(backoff=0.05, max_backoff=0.2, jitter=0)
        | Policy.timeout(ATTEMPT_TIMEOUT),
        # A retry layer, yet validation errors are not retryable: one attempt.
        "check": Policy.validation(backoff=0.01, jitter=0),
        # The breaker counts each whole (retried) call once.
        "publish": Policy.breaker(failure_threshold=2, recovery_timeout=RECOVERY_TIMEOUT)
        | Policy.tool(attempts=_PUBLISH_ATTEMPTS, backoff=0.02, jitter=0),
        "handle_error": Policy.none(),
    }


def _route(next_node: str) -> Callable[[StoryState], str]:
    """A conditional edge: to *next_node*, or to ``handle_error`` once anything failed."""

    def route(state: StoryState) -> str:
        return "handle_error" if state.get("errors") else next_node

    route.__name__ = f"route_to_{next_node}"
    return route


def _build_graph(
    services: _Services,
) -> tuple[CompiledStateGraph[Any, Any, Any, Any], dict[str, AsyncNode[Any, Any]]]:
    """The compiled pipeline and its nodes (whose breakers live as long as they do)."""
    from langgraph.graph import END, START, StateGraph  # noqa: PLC0415 - optional extra

    impls: dict[str, Callable[[StoryState], Any]] = {
        "outline": services.outline,
        "research": services.research,
        "draft": services.draft,
        "check": services.check,
        "publish": services.publish,
        "handle_error": services.handle_error,
    }
    policies = _policies()
    nodes: dict[str, AsyncNode[Any, Any]] = {
        name: create_node(impls[name], name=name, policy=policies[name]) for name in NODE_ORDER
    }
    graph: StateGraph[Any, Any, Any, Any] = StateGraph(StoryState)
    for name, node in nodes.items():
        graph.add_node(name, node)
    graph.add_edge(START, "outline")
    pipeline = ("outline", "research", "draft", "check", "publish")
    for here, after in zip(pipeline, (*pipeline[1:], END), strict=True):
        graph.add_conditional_edges(here, _route(after), [after, "handle_error"])
    graph.add_edge("handle_error", END)
    return graph.compile(), nodes


# --- progress display --------------------------------------------------------------


def _is_tty(out: TextIO) -> bool:
    try:
        return bool(out.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class _Display:
    """Event lines, plus a status line kept updated under them on a terminal.

    Not a terminal (a pipe, a file, a test's StringIO): plain lines only, no
    carriage returns or escape codes.
    """

    _CLEAR: Final = "\r\x1b[K"

    def __init__(self, out: TextIO | None, *, progress: bool) -> None:
        self._out = out
        self._progress = progress and out is not None
        self._live = self._progress and out is not None and _is_tty(out)
        self._status = ""

    def write(self, text: str) -> None:
        """Write *text* as it is (the summary)."""
        if self._out is None:
            return
        try:
            self._out.write(text)
            self._out.flush()
        except (BrokenPipeError, ValueError):
            # The reader went away (``| head``) or the stream was closed: stop
            # writing, but let the run finish rather than fail a node's logging.
            self._out = None
            self._progress = self._live = False

    def line(self, text: str) -> None:
        """Write one progress line (above the status line, on a terminal)."""
        if not self._progress:
            return
        if self._live and self._status:
            self.write(f"{self._CLEAR}{text}\n{self._status}")
        else:
            self.write(f"{text}\n")

    def status(self, text: str) -> None:
        """Replace the status line; nothing happens off a terminal."""
        if not self._live:
            return
        self._status = text[: WIDTH - 1]
        self.write(f"{self._CLEAR}{self._status}")

    def close(self) -> None:
        """Remove the status line."""
        if self._live and self._status:
            self._status = ""
            self.write(self._CLEAR)


def _reason(error_type: str, message: str) -> str:
    """A few words on why an attempt failed: an HTTP status line, or the error type."""
    if message[:3].isdigit():
        return message.split(":", 1)[0]
    return error_type


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


class _Recorder:
    """The structlog processor of the run: records events and feeds the display."""

    def __init__(self, display: _Display, stories: int) -> None:
        self.display = display
        self.started = time.perf_counter()
        self.story_id = ""
        self._story_number = 0
        self._stories = stories
        self.events: list[ProgressEvent] = []
        self.transitions: list[BreakerTransition] = []
        self.retries: list[tuple[str, str, int, str, float]] = []
        self.timeouts: Counter[str] = Counter()
        self.finished: list[tuple[str, str, bool, float]] = []  # story, node, ok, seconds

    def restart(self) -> None:
        """Measure times from now on (the batch starts)."""
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.started

    def begin_story(self, plan: _StoryPlan) -> None:
        """Note that *plan*'s story is being processed now."""
        self.story_id = plan.story_id
        self._story_number += 1
        self.display.status(
            f"{self.elapsed():6.2f}s  story {self._story_number}/{self._stories}  {plan.title}"
        )

    def emit(self, node: str, kind: str, text: str) -> None:
        """Record a progress event and show it."""
        at = self.elapsed()
        self.events.append(ProgressEvent(self.story_id, node, kind, text, at))
        prefix = f"{at:5.2f}s {self.story_id:<7} {node:<12} "
        self.display.line(prefix + _fit(text, WIDTH - len(prefix)))

    def __call__(self, _logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        """Take one structlog event; it is always dropped afterwards."""
        self.observe(event_dict)
        raise structlog.DropEvent

    def observe(self, event: Mapping[str, Any]) -> None:
        """Turn one library event into records and display output."""
        name = event.get("event")
        node = str(event.get("node", ""))
        if name == LogEvent.NODE_STARTED:
            self.display.status(
                f"{self.elapsed():6.2f}s  story {self._story_number}/{self._stories}  "
                f"{self.story_id}  {node}..."
            )
        elif name in (LogEvent.NODE_SUCCEEDED, LogEvent.NODE_FAILED):
            seconds = float(event.get("duration_ms", 0.0)) / 1000
            self.finished.append((self.story_id, node, name == LogEvent.NODE_SUCCEEDED, seconds))
            if name == LogEvent.NODE_FAILED:
                error_type = event.get("error_type")
                if error_type == "NodeCircuitOpenError":
                    text = "breaker open: rejected without calling the service"
                else:
                    attempts = event.get("attempts", 1)
                    plural = "" if attempts == 1 else "s"
                    text = f"failed after {attempts} attempt{plural}: {error_type}"
                self.emit(node, name, text)
        elif name == LogEvent.NODE_RETRY_SCHEDULED:
            attempt = int(event.get("attempt", 0))
            delay = float(event.get("delay", 0.0))
            error_type = str(event.get("error_type", ""))
            self.retries.append((self.story_id, node, attempt, error_type, delay))
            reason = _reason(error_type, str(event.get("error_message", "")))
            self.emit(node, name, f"{reason}; attempt {attempt + 1} in {delay:.2f}s")
            self.display.status(
                f"{self.elapsed():6.2f}s  story {self._story_number}/{self._stories}  "
                f"{self.story_id}  {node} waiting {delay:.2f}s before attempt {attempt + 1}"
            )
        elif name == LogEvent.NODE_TIMED_OUT:
            self.timeouts[node] += 1
            self.emit(node, name, f"attempt cut off by its {event.get('timeout')}s timeout")
        elif name == LogEvent.BREAKER_STATE_CHANGED:
            old, new = event.get("old_state"), str(event.get("new_state"))
            failures = int(event.get("failure_count", 0))
            self.transitions.append(
                BreakerTransition(node, old, new, failures, self.story_id, self.elapsed())
            )
            self.emit(node, name, f"breaker {old} -> {new} ({failures} failures)")
        elif isinstance(name, str) and name.startswith(("node.", "breaker.")):
            self.emit(node, name, name)


@contextlib.contextmanager
def _routed_logs(processor: Callable[[WrappedLogger, str, EventDict], EventDict]) -> Iterator[None]:
    """Send every structlog event to *processor* alone; restore the config after.

    Loggers are bound when nodes are built, so the nodes must be built inside
    this block.
    """
    was_configured = structlog.is_configured()
    saved = structlog.get_config()
    structlog.configure(
        processors=[processor],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=False,
    )
    try:
        yield
    finally:
        if was_configured:
            structlog.configure(**saved)
        else:
            structlog.reset_defaults()


# --- running it --------------------------------------------------------------------


def run_demo(*, seed: int = 7, out: TextIO | None = None, progress: bool = True) -> DemoReport:
    """Run the story batch through the pipeline and report what happened.

    Takes a couple of seconds of real time. Must not be called from a running
    event loop (it starts its own, on asyncio, as LangGraph requires).

    Args:
        seed: Seed of the failure schedule and the simulated latencies.
        out: Where to write the progress display and the summary; None writes
            nothing (the report has it all).
        progress: Whether to show progress while running (the summary is
            written either way).

    Returns:
        The `DemoReport`.
    """
    plans = _plan(seed)
    display = _Display(out, progress=progress)
    recorder = _Recorder(display, len(plans))
    finals: list[tuple[_StoryPlan, dict[str, Any], float]] = []
    with (
        tempfile.TemporaryDirectory(prefix="resilient-nodes-demo-") as artifacts,
        _routed_logs(recorder),
    ):
        services = _Services(plans, seed, Path(artifacts))
        app, nodes = _build_graph(services)

        async def batch() -> None:
            display.line(
                f"Processing {len(plans)} stories (seed {seed}): "
                "outline > research > draft > check > publish"
            )
            recorder.restart()
            for plan in plans:
                recorder.begin_story(plan)
                began = time.perf_counter()
                final = await app.ainvoke({"story_id": plan.story_id, "title": plan.title})
                seconds = time.perf_counter() - began
                finals.append((plan, dict(final), seconds))
                recorder.emit("", "story.finished", f"=> {_story_line(final)}")

        try:
            anyio.run(batch, backend="asyncio")
        finally:
            display.close()
    report = _report(seed, recorder, services.calls, finals, nodes)
    display.write(report.summary)
    return report


def _story_line(final: Mapping[str, Any]) -> str:
    errors = final.get("errors") or []
    if not errors:
        return "published"
    last = errors[-1]
    return f"blocked at {last['node']}: {last['code']}"


def _report(
    seed: int,
    recorder: _Recorder,
    calls: Sequence[_Call],
    finals: Sequence[tuple[_StoryPlan, dict[str, Any], float]],
    nodes: Mapping[str, AsyncNode[Any, Any]],
) -> DemoReport:
    """Assemble the report from the recorded events, calls and final states."""
    attempts = Counter((call.story_id, call.node) for call in calls)
    stories = tuple(
        _story_result(plan, final, seconds, recorder.finished, attempts)
        for plan, final, seconds in finals
    )
    retries = tuple(_retry_wait(entry, calls) for entry in recorder.retries)
    stats = tuple(
        _node_stats(name, repr(nodes[name].policy), stories, retries, recorder.timeouts[name])
        for name in NODE_ORDER
    )
    transitions = tuple(recorder.transitions)
    report = DemoReport(
        seed=seed,
        stories=stories,
        nodes=stats,
        transitions=transitions,
        retries=retries,
        events=tuple(recorder.events),
        checks=_checks(stories, retries, transitions),
        seconds=recorder.elapsed(),
        summary="",
    )
    return attrs.evolve(report, summary=render_summary(report))


def _story_result(
    plan: _StoryPlan,
    final: Mapping[str, Any],
    seconds: float,
    finished: Sequence[tuple[str, str, bool, float]],
    attempts: Mapping[tuple[str, str], int],
) -> StoryResult:
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


def _retry_wait(entry: tuple[str, str, int, str, float], calls: Sequence[_Call]) -> RetryWait:
    story_id, node, attempt, error_type, delay = entry
    mine = {call.attempt: call for call in calls if (call.story_id, call.node) == (story_id, node)}
    failed, following = mine.get(attempt), mine.get(attempt + 1)
    waited = 0.0
    if failed is not None and following is not None and failed.ended is not None:
        waited = following.started - failed.ended
    retry_after = failed.retry_after if failed is not None else None
    return RetryWait(node, story_id, attempt, error_type, delay, retry_after, waited)


def _node_stats(
    name: str,
    policy: str,
    stories: Sequence[StoryResult],
    retries: Sequence[RetryWait],
    timeouts: int,
) -> NodeStats:
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


def _checks(
    stories: Sequence[StoryResult],
    retries: Sequence[RetryWait],
    transitions: Sequence[BreakerTransition],
) -> tuple[Check, ...]:
    """Did each failure mode happen, and did the pipeline cope as designed?"""

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
    timed_out = [w for w in retries if w.error_type == "NodeTimeoutError"]
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
    )


# --- the summary -------------------------------------------------------------------


def _table(rows: Sequence[Sequence[str]], widths: Sequence[int], right: set[int]) -> list[str]:
    """Rows as aligned columns; the last column wraps within what is left of WIDTH."""
    lines = []
    indent = sum(widths[:-1]) + 2 * (len(widths) - 1) + 2
    for row in rows:
        cells = [
            cell.rjust(width) if index in right else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(row[:-1], widths, strict=False))
        ]
        wrapped = textwrap.wrap(row[-1], WIDTH - indent) or [""]
        lines.append(("  " + "  ".join([*cells, wrapped[0]])).rstrip())
        lines.extend(" " * indent + more for more in wrapped[1:])
    return lines


def _outcomes(outcomes: Sequence[tuple[str, int]]) -> str:
    return ", ".join(f"{outcome} x{count}" for outcome, count in outcomes) or "-"


def render_summary(report: DemoReport) -> str:
    """The end-of-run summary: plain text, no line longer than 80 columns.

    Args:
        report: The run to summarise.

    Returns:
        The text, ending with a newline.
    """
    published = sum(1 for story in report.stories if story.status == "published")
    title = (
        f"resilient_nodes demo: seed {report.seed}, {len(report.stories)} stories, "
        f"{report.seconds:.2f}s"
    )
    lines = ["", title, "=" * len(title), ""]
    lines.append("Policies (left is outermost; jitter 0, so a seed fixes the schedule)")
    for stats in report.nodes:
        layers = stats.policy.split(" | ")
        lines.append(f"  {stats.node:<13}{layers[0]}")
        lines.extend(f"  {'':<13}| {layer}" for layer in layers[1:])

    lines += ["", "Per node"]
    rows = [["node", "calls", "attempts", "retries", "time", "outcomes"]]
    rows += [
        [
            s.node,
            str(s.calls),
            str(s.attempts),
            str(s.retries),
            f"{s.seconds:.2f}s",
            _outcomes(s.outcomes) + (f"; {s.timeouts} timed out" if s.timeouts else ""),
        ]
        for s in report.nodes
    ]
    lines += _table(rows, (12, 5, 8, 7, 6, 0), right={1, 2, 3, 4})

    lines += ["", "Breaker transitions"]
    if report.transitions:
        rows = [["at", "story", "node", "change"]]
        rows += [
            [
                f"{t.at:.2f}s",
                t.story_id,
                t.node,
                f"{t.old} -> {t.new} (failures: {t.failure_count})",
            ]
            for t in report.transitions
        ]
        lines += _table(rows, (6, 8, 12, 0), right={0})
    else:
        lines.append("  none")

    lines += ["", "Stories (and the errors recorded in their state)"]
    rows = [["story", "result", "time", "title"]]
    rows += [
        [story.story_id, story.status, f"{story.seconds:.2f}s", story.title]
        for story in report.stories
    ]
    table = _table(rows, (8, 9, 6, 0), right={2})
    lines.append(table[0])
    for story, row in zip(report.stories, table[1:], strict=True):
        lines.append(row)
        for error in story.errors:
            lines.append(f"{'':12}{error.node}: {error.code} (attempts={error.attempts})")
            wrapped = textwrap.wrap(error.message, WIDTH - 14, max_lines=2, placeholder=" ...")
            lines.extend(f"{'':14}{text}" for text in wrapped)

    lines += ["", "Failure modes shown"]
    for check in report.checks:
        mark = "x" if check.passed else " "
        lines.append(f"  [{mark}] {check.name}")
        lines.append(f"      {_fit(check.detail, WIDTH - 6)}")

    attempts = sum(s.attempts for s in report.nodes)
    retries = sum(s.retries for s in report.nodes)
    timeouts = sum(s.timeouts for s in report.nodes)
    errors = sum(len(story.errors) for story in report.stories)
    totals = (
        f"Totals: {published} of {len(report.stories)} stories published, "
        f"{len(report.stories) - published} blocked; {attempts} attempts, {retries} retries, "
        f"{timeouts} timeout{'' if timeouts == 1 else 's'}, "
        f"{len(report.transitions)} breaker transitions, "
        f"{errors} errors in state; {report.seconds:.2f}s."
    )
    lines += ["", *textwrap.wrap(totals, WIDTH), ""]
    return "\n".join(lines)


# --- command line ------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """The ``python -m resilient_nodes.demo`` command.

    Args:
        argv: Arguments (``--seed N``, ``--quiet``); ``sys.argv[1:]`` when None.

    Returns:
        The exit status: 0 once the batch has run (the summary says which
        failure modes were shown), also when stdout was closed early
        (``| head``): the rest of the output is dropped.
    """
    parser = argparse.ArgumentParser(
        prog="python -m resilient_nodes.demo",
        description="Run a story pipeline whose simulated LLM and tool calls fail on "
        "purpose, and show how resilient_nodes copes.",
    )
    parser.add_argument(
        "--seed", type=int, default=7, help="seed of the failure schedule (default: 7)"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress display, only the summary"
    )
    args = parser.parse_args(argv)
    run_demo(seed=args.seed, out=sys.stdout, progress=not args.quiet)
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        # The reader went away: what is still buffered would fail again when the
        # interpreter flushes at exit (exit status 120), so send it nowhere.
        _discard_stdout()
    return 0


def _discard_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # pragma: no cover - no real stdout to redirect
        pass
