"""Static typing checks, run by mypy --strict in tox's ``types`` env; never executed.

Each ``assert_type`` states what mypy must infer. Each ``# type: ignore[code]`` marks
a misuse that must stay a type error: with ``warn_unused_ignores`` (part of strict)
an ignore that no longer suppresses anything is itself reported, so accepting the
misuse would fail the check.

The file name does not match pytest's ``test_*.py``, so pytest never collects it.
"""

from collections.abc import Awaitable
from typing import Any, TypedDict, assert_type

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph

from resilient_nodes import (
    GraphState,
    Policy,
    create_llm_node,
    create_node,
    create_simple_node,
    create_tool_node,
)
from resilient_nodes._node import AsyncNode, SyncNode

ErrorUpdate = dict[str, list[Any]]


class ReviewState(TypedDict):
    """A user's own state type, unrelated to the library's GraphState."""

    draft: str
    score: int


class ReviewUpdate(TypedDict, total=False):
    """The partial update the review nodes return."""

    score: int
    verdict: str


class StoryState(GraphState, total=False):
    """A user's extension of the library's state."""

    outline: str


# --- create_node infers the state and update types from the impl ------------------------


def review(state: ReviewState) -> ReviewUpdate:
    return {"score": len(state["draft"])}


async def review_async(state: ReviewState) -> ReviewUpdate:
    return {"verdict": state["draft"]}


def review_with_config(state: ReviewState, config: RunnableConfig) -> ReviewUpdate:
    return {"verdict": str(config.get("tags"))}


async def review_async_with_config(state: ReviewState, config: RunnableConfig) -> ReviewUpdate:
    return {"verdict": str(config.get("tags"))}


def outline(state: StoryState) -> StoryState:
    return {"outline": state.get("story_id", "")}


def no_update(state: ReviewState) -> None:
    return None


def plain_dict(state: dict[str, Any]) -> dict[str, Any]:
    return dict(state)


def review_optional_config(
    state: ReviewState, config: RunnableConfig | None = None
) -> ReviewUpdate:
    return {}


def check_sync_nodes(state: ReviewState, story: StoryState) -> None:
    node = create_node(review, name="review", policy=Policy.llm())
    assert_type(node, SyncNode[ReviewState, ReviewUpdate])
    assert_type(node(state), ReviewUpdate | ErrorUpdate)
    assert_type(node(state, {"tags": ["x"]}), ReviewUpdate | ErrorUpdate)
    assert_type(node(state, None), ReviewUpdate | ErrorUpdate)

    with_config = create_node(review_with_config, name="review_with_config")
    assert_type(with_config, SyncNode[ReviewState, ReviewUpdate])

    optional_config = create_node(review_optional_config, name="optional_config")
    assert_type(optional_config, SyncNode[ReviewState, ReviewUpdate])

    story_node = create_node(outline, name="outline")
    assert_type(story_node, SyncNode[StoryState, StoryState])
    assert_type(story_node(story), StoryState | ErrorUpdate)

    assert_type(create_node(no_update, name="quiet"), SyncNode[ReviewState, None])
    assert_type(create_node(plain_dict, name="plain"), SyncNode[dict[str, Any], dict[str, Any]])


async def check_async_nodes(state: ReviewState) -> None:
    node = create_node(review_async, name="review_async", policy=Policy.timeout(5))
    assert_type(node, AsyncNode[ReviewState, ReviewUpdate])
    assert_type(await node(state), ReviewUpdate | ErrorUpdate)

    with_config = create_node(review_async_with_config, name="review_async_with_config")
    assert_type(with_config, AsyncNode[ReviewState, ReviewUpdate])
    assert_type(await with_config(state, {"tags": ["y"]}), ReviewUpdate | ErrorUpdate)


async def check_preset_factories(state: ReviewState) -> None:
    # The preset factories infer exactly as create_node does, kind included.
    simple = create_simple_node(review, name="simple")
    assert_type(simple, SyncNode[ReviewState, ReviewUpdate])
    assert_type(simple(state), ReviewUpdate | ErrorUpdate)
    llm = create_llm_node(review_async, name="llm", timeout=30, breaker=True)
    assert_type(llm, AsyncNode[ReviewState, ReviewUpdate])
    assert_type(await llm(state), ReviewUpdate | ErrorUpdate)
    tool = create_tool_node(review_with_config, name="tool", timeout=5)
    assert_type(tool, SyncNode[ReviewState, ReviewUpdate])
    create_tool_node(returns_text, name="text")  # type: ignore[arg-type]


def check_node_properties() -> None:
    node = create_node(review, name="review")
    assert_type(node.name, str)
    assert_type(node.policy, Policy)
    assert_type(node.capture_errors, bool)


# --- create_node rejects misuse --------------------------------------------------------


def returns_text(state: ReviewState) -> str:
    return state["draft"]


def takes_three(state: ReviewState, config: RunnableConfig, extra: int) -> ReviewUpdate:
    return {}


def check_node_misuse(state: ReviewState, story: StoryState) -> None:
    # The state passed in must be the impl's state type.
    node = create_node(review, name="review")
    node(story)  # type: ignore[arg-type]
    node({"draft": "x"})  # type: ignore[typeddict-item]
    node(state, config="not a config")  # type: ignore[arg-type]

    # An update must be a mapping (or None), not any value.
    create_node(returns_text, name="text")  # type: ignore[arg-type]

    # An impl takes (state) or (state, config), nothing more.
    create_node(takes_three, name="three")  # type: ignore[arg-type]

    # name is required and keyword-only; the policy must be a Policy.
    create_node(review)  # type: ignore[call-overload]
    create_node(review, "review")  # type: ignore[call-overload]
    create_node(review, name="review", policy="llm")  # type: ignore[call-overload]


async def check_kind_misuse(state: ReviewState) -> None:
    # A sync node's result is not awaitable, and an async node's must be awaited.
    sync_node = create_node(review, name="review")
    await sync_node(state)  # type: ignore[misc]
    async_node = create_node(review_async, name="review_async")
    async_node(state)["score"]  # type: ignore[index]


# --- Policy.wrap keeps the signature (ParamSpec) and the kind ---------------------------


def fetch(url: str, /, *, attempts_hint: int = 0) -> bytes:
    return url.encode()


async def fetch_async(url: str, *, limit: float = 1.0) -> bytes:
    return url.encode()


def double(value: int) -> int:
    return value * 2


async def check_wrap() -> None:
    policy = Policy.retry(attempts=2) | Policy.breaker() | Policy.timeout(3)

    wrapped = policy.wrap(fetch)
    assert_type(wrapped("https://example.org"), bytes)
    assert_type(wrapped("https://example.org", attempts_hint=2), bytes)

    wrapped_async = policy.wrap(fetch_async, name="fetch")
    assert_type(wrapped_async("https://example.org"), Awaitable[bytes])
    assert_type(await wrapped_async("https://example.org", limit=0.5), bytes)

    assert_type(Policy.none().wrap(double)(2), int)


async def check_wrap_misuse() -> None:
    policy = Policy.retry()
    wrapped = policy.wrap(fetch)
    wrapped(b"bytes")  # type: ignore[arg-type]
    wrapped(url="https://example.org")  # type: ignore[call-arg]
    wrapped("https://example.org", retries=3)  # type: ignore[call-arg]
    wrapped("https://example.org", 2)  # type: ignore[call-arg]
    await wrapped("https://example.org")  # type: ignore[misc]

    wrapped_async = policy.wrap(fetch_async)
    wrapped_async("https://example.org").decode()  # type: ignore[attr-defined]
    wrapped_async("https://example.org", limit="slow")  # type: ignore[arg-type]

    policy.wrap(fetch, "fetch")  # type: ignore[call-overload]


# --- the Policy algebra ----------------------------------------------------------------


def check_policy_algebra() -> None:
    assert_type(Policy.llm() | Policy.breaker() | Policy.timeout(30), Policy)
    assert_type(Policy.none() | Policy.tool(), Policy)
    assert_type(Policy.from_dict(Policy.validation().to_dict()), Policy)
    assert_type(Policy.retry().to_dict(), dict[str, Any])

    Policy.timeout(seconds=30)  # type: ignore[call-arg]
    Policy.retry(5)  # type: ignore[call-arg]
    Policy.timeout("30s")  # type: ignore[arg-type]
    Policy.breaker(failure_threshold=2.5)  # type: ignore[arg-type]

    policy = Policy.llm()
    policy.layers = ()  # type: ignore[misc]


# --- nodes fit LangGraph's StateGraph.add_node -----------------------------------------


def check_graph_building() -> None:
    builder = StateGraph(ReviewState)
    builder.add_node("review", create_node(review, name="review"))
    builder.add_node("review_async", create_node(review_async, name="review_async"))
    builder.add_node("with_config", create_node(review_with_config, name="with_config"))
    builder.add_edge(START, "review")
    builder.add_edge("review", END)
    builder.compile()

    story = StateGraph(StoryState)
    story.add_node("outline", create_node(outline, name="outline"))
