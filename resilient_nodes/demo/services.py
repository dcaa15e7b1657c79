"""The simulated LLM and tool services, and the schedule on which they fail.

Nothing here knows about retries, timeouts or breakers: each service simply
misbehaves the way a real one does (a 503, a 429 with ``Retry-After``, a call
that never answers, a truncated answer, refused connections, a 529 overload, a
token stream that sends nothing) and raises what a real client would. The node
implementations on top of them are plain async functions of the state,
returning state updates built with the library's helpers; `graph` wraps them in
policies.

The failures follow a schedule (`schedule`): a fixed storyline, so that every
failure mode shows up whatever the seed, with the details drawn from
``random.Random(seed)``.
"""

from __future__ import annotations

import contextlib
import random
import time
from typing import TYPE_CHECKING, Any, Final, Literal

import anyio
import attrs

from resilient_nodes import (
    GraphState,
    add_evidence_refs,
    create_blocked_update,
    current_context,
    merge_state_updates,
    update_artifact_paths,
    update_gate_decisions,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping, Sequence
    from pathlib import Path

__all__ = [
    "PUBLISH_ATTEMPTS",
    "RETRY_AFTER",
    "APIStatusError",
    "Behaviour",
    "Call",
    "DraftValidationError",
    "Services",
    "StoryPlan",
    "StoryState",
    "schedule",
]

RETRY_AFTER: Final = 0.3
"""What the rate-limited search tool asks us to wait, in seconds."""

PUBLISH_ATTEMPTS: Final = 2
"""Attempts the publish node's retry layer makes (the outage refuses them all)."""

_HANG: Final = 30.0  # how long a hung call would take if nothing cut it off
_STORIES: Final = 7
_OUTAGE_STORIES: Final = 2  # the publish service refuses every call of the first two
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

Behaviour = Literal["ok", "503", "429", "529", "hang", "refused", "truncated", "stall"]


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
    blurb: str


# --- the failure schedule ----------------------------------------------------------


@attrs.frozen
class StoryPlan:
    """How the simulated services treat one story."""

    story_id: str
    title: str
    outline_503s: int  # the outline LLM's first N attempts answer 503
    rate_limited: bool  # the search tool's first attempt answers 429
    hangs: bool  # the draft LLM's first attempt never answers
    truncated: bool  # the draft comes back cut off (fails the check)
    blurb_overloaded: bool = False  # the primary blurb model answers 529 every time
    blurb_stalls: bool = False  # its first stream sends no token at all


def schedule(seed: int) -> tuple[StoryPlan, ...]:
    """The schedule of one run.

    The storyline is fixed so that every failure mode shows up whatever the
    seed: stories 1-2 meet the publish outage (the breaker opens), 3-4 are quick
    and fail fast against the open breaker, 5 is rate limited and hangs once
    (slow enough for the recovery timeout to pass, so its publish is the probe),
    and one of 6-7 has a truncated draft. The blurb step's primary model is
    overloaded for story 1 (it falls back to the backup model), and its token
    stream stalls once, before the first token, for whichever of 6-7 is not
    truncated (the retry restarts it: nothing was delivered yet). Both are away
    from 3-5, whose timing the breaker storyline needs. The seed picks the
    titles, which
    stories the outline LLM answers with 503s (never 3-4: they must stay quick)
    and how often, and the call latencies.

    Args:
        seed: The seed of the schedule.

    Returns:
        One plan per story, in processing order.
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
        StoryPlan(
            story_id=f"story-{index}",
            title=titles[index - 1],
            outline_503s=outline_503s[index],
            rate_limited=index == 5,
            hangs=index == 5,
            truncated=index == truncated,
            blurb_overloaded=index == 1,
            blurb_stalls=index == 13 - truncated,
        )
        for index in range(1, _STORIES + 1)
    )


# --- the services and the node implementations on them -----------------------------


@attrs.define
class Call:
    """One entry into a node implementation."""

    story_id: str
    node: str
    attempt: int
    behaviour: Behaviour
    started: float
    ended: float | None = None
    retry_after: float | None = None


class Services:
    """The simulated LLM and tool backends, and the node implementations on them.

    Args:
        plans: The schedule (`schedule`).
        seed: Seed of the simulated latencies.
        artifacts: Where published stories are written.
    """

    def __init__(self, plans: Sequence[StoryPlan], seed: int, artifacts: Path) -> None:
        self.plans = {plan.story_id: plan for plan in plans}
        self.calls: list[Call] = []
        self._latency = random.Random(seed + 1)
        self._artifacts = artifacts
        self._refusals_left = _OUTAGE_STORIES * PUBLISH_ATTEMPTS

    @contextlib.asynccontextmanager
    async def _attempt(
        self, node: str, state: StoryState, decide: Callable[[StoryPlan, int], Behaviour]
    ) -> AsyncIterator[tuple[StoryPlan, Call]]:
        """Log one attempt, simulate the service's latency, and time it."""
        context = current_context()
        attempt = context.attempt if context is not None else 1
        plan = self.plans[state["story_id"]]
        call = Call(plan.story_id, node, attempt, decide(plan, attempt), time.perf_counter())
        self.calls.append(call)
        try:
            await anyio.sleep(self._latency.uniform(0.002, 0.008))
            yield plan, call
        finally:
            call.ended = time.perf_counter()

    async def outline(self, state: StoryState) -> Mapping[str, Any]:
        """The outline LLM: overloaded (503) for a story's first attempts."""

        def decide(plan: StoryPlan, attempt: int) -> Behaviour:
            return "503" if attempt <= plan.outline_503s else "ok"

        async with self._attempt("outline", state, decide) as (plan, call):
            if call.behaviour == "503":
                raise APIStatusError(503, "Service Unavailable: the model is overloaded")
            return {"outline": f"Three acts about {plan.title.lower()}."}

    async def research(self, state: StoryState) -> Mapping[str, Any]:
        """The search tool: rate limited (429, Retry-After) once."""

        def decide(plan: StoryPlan, attempt: int) -> Behaviour:
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

        def decide(plan: StoryPlan, attempt: int) -> Behaviour:
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

    async def blurb_tokens(self, state: StoryState) -> AsyncIterator[str]:
        """The primary blurb model's token stream: overloaded (529) or stalling, per plan.

        An async generator, as a chat model's ``astream`` is: the stream policy
        bounds the wait for its first token and the gaps between tokens.
        """

        def decide(plan: StoryPlan, attempt: int) -> Behaviour:
            if plan.blurb_overloaded:
                return "529"
            return "stall" if plan.blurb_stalls and attempt == 1 else "ok"

        async with self._attempt("blurb", state, decide) as (plan, call):
            if call.behaviour == "529":
                raise APIStatusError(529, "Overloaded: the blurb model is overloaded")
            if call.behaviour == "stall":
                await anyio.sleep(_HANG)  # cut off by the first-token bound
            for word in f"A story of {plan.title.lower()}, told in three acts.".split():
                await anyio.sleep(0.001)
                yield word

    async def blurb(
        self, state: StoryState, tokens: Callable[[StoryState], AsyncIterator[str]]
    ) -> Mapping[str, Any]:
        """The blurb, streamed from the primary model through *tokens* (the wrapped stream)."""
        words = [word async for word in tokens(state)]
        return {"blurb": " ".join(words)}

    async def blurb_backup(self, state: StoryState) -> Mapping[str, Any]:
        """The backup blurb model: smaller, not streamed, always up."""
        async with self._attempt("blurb.backup", state, lambda _plan, _attempt: "ok") as (
            plan,
            _call,
        ):
            return {"blurb": f"{plan.title}: a short story."}

    async def publish(self, state: StoryState) -> Mapping[str, Any]:
        """The publishing service: refuses connections for the first stories."""

        def decide(_plan: StoryPlan, _attempt: int) -> Behaviour:
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
            # Only reached through the graph's conditional edges, which require
            # an error in the state.
            last = state["errors"][-1]
            return create_blocked_update(
                f"{last['node']} failed with {last['code']}",
                node="handle_error",
                gate=last["node"],
                route_to="needs_human",
            )
