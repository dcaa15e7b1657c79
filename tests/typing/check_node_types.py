"""Static typing checks, run by mypy --strict in tox's ``types`` env; never executed.

Each ``assert_type`` states what mypy must infer. Each ``# type: ignore[code]`` marks
a misuse that must stay a type error: with ``warn_unused_ignores`` (part of strict)
an ignore that no longer suppresses anything is itself reported, so accepting the
misuse would fail the check.

The file name does not match pytest's ``test_*.py``, so pytest never collects it.
"""

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Literal, ParamSpec, TypedDict, TypeVar, assert_type

from langchain_core.runnables import RunnableConfig
from langgraph.func import entrypoint, task
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.store.base import BaseStore
from langgraph.types import Command, StreamWriter

from resilient_nodes import (
    GraphState,
    Policy,
    create_llm_node,
    create_node,
    create_simple_node,
    create_tool_node,
)
from resilient_nodes._breaker import NodeCircuitBreaker
from resilient_nodes._node import AsyncNode, OnError, SyncNode

ErrorUpdate = dict[str, list[Any]]
P = ParamSpec("P")
R = TypeVar("R")


def is_sync(node: SyncNode[P, R], /) -> None:
    """Accepts only a sync node: mypy rejects an async one here."""


def is_async(node: AsyncNode[P, R], /) -> None:
    """Accepts only an async node."""


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


@dataclass
class Ctx:
    """A run's context (``context_schema``), reached through ``Runtime[Ctx]``."""

    user: str


# --- create_node presents the impl's signature and return type -------------------------


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


def returns_text(state: ReviewState) -> str:
    return state["draft"]


def check_sync_nodes(state: ReviewState, story: StoryState) -> None:
    node = create_node(review, name="review", policy=Policy.llm())
    is_sync(node)
    assert_type(node(state), ReviewUpdate | ErrorUpdate)

    with_config = create_node(review_with_config, name="review_with_config")
    is_sync(with_config)
    assert_type(with_config(state, {"tags": ["x"]}), ReviewUpdate | ErrorUpdate)

    optional_config = create_node(review_optional_config, name="optional_config")
    is_sync(optional_config)
    assert_type(optional_config(state, None), ReviewUpdate | ErrorUpdate)

    story_node = create_node(outline, name="outline")
    is_sync(story_node)
    assert_type(story_node(story), StoryState | ErrorUpdate)

    is_sync(create_node(no_update, name="quiet"))
    is_sync(create_node(plain_dict, name="plain"))
    # A root channel's value is an update too (StateGraph(str)): LangGraph decides.
    is_sync(create_node(returns_text, name="text"))


async def check_async_nodes(state: ReviewState) -> None:
    node = create_node(review_async, name="review_async", policy=Policy.timeout(5))
    is_async(node)
    assert_type(await node(state), ReviewUpdate | ErrorUpdate)

    with_config = create_node(review_async_with_config, name="review_async_with_config")
    is_async(with_config)
    assert_type(await with_config(state, {"tags": ["y"]}), ReviewUpdate | ErrorUpdate)


async def check_preset_factories(state: ReviewState) -> None:
    # The preset factories infer exactly as create_node does, kind included.
    simple = create_simple_node(review, name="simple")
    is_sync(simple)
    assert_type(simple(state), ReviewUpdate | ErrorUpdate)
    llm = create_llm_node(review_async, name="llm", timeout=30, breaker=True)
    is_async(llm)
    assert_type(await llm(state), ReviewUpdate | ErrorUpdate)
    tool = create_tool_node(review_with_config, name="tool", timeout=5)
    is_sync(tool)


def check_node_properties() -> None:
    node = create_node(review, name="review")
    assert_type(node.name, str)
    assert_type(node.policy, Policy)
    assert_type(node.breaker, NodeCircuitBreaker | None)
    assert_type(node.on_error, OnError)


# --- what LangGraph injects, and Command returns --------------------------------------


def personal(state: ReviewState, runtime: Runtime[Ctx]) -> ReviewUpdate:
    return {"verdict": runtime.context.user}


async def personal_async(state: ReviewState, runtime: Runtime[Ctx]) -> ReviewUpdate:
    return {"verdict": runtime.context.user}


def remember(state: ReviewState, *, store: BaseStore) -> ReviewUpdate:
    store.put(("drafts",), "last", {"draft": state["draft"]})
    return {}


async def remember_async(state: ReviewState, *, store: BaseStore) -> ReviewUpdate:
    await store.aput(("drafts",), "last", {"draft": state["draft"]})
    return {}


def progress(state: ReviewState, *, writer: StreamWriter) -> ReviewUpdate:
    writer({"progress": 0.5})
    return {}


async def progress_async(state: ReviewState, *, writer: StreamWriter) -> ReviewUpdate:
    writer({"progress": 0.5})
    return {}


def everything(
    state: ReviewState,
    *,
    config: RunnableConfig,
    writer: StreamWriter,
    store: BaseStore,
) -> ReviewUpdate:
    return {}


def route(state: ReviewState) -> Command[Literal["accept", "reject"]]:
    return Command(goto="accept" if state["score"] else "reject")


async def route_async(state: ReviewState) -> Command[Literal["accept", "reject"]]:
    return Command(goto="reject")


def route_or_update(state: ReviewState) -> Command[Literal["accept"]] | ReviewUpdate:
    return {"score": 1}


def check_injected_nodes(state: ReviewState, runtime: Runtime[Ctx], store: BaseStore) -> None:
    node = create_node(personal, name="personal", policy=Policy.llm())
    is_sync(node)
    assert_type(node(state, runtime), ReviewUpdate | ErrorUpdate)
    assert_type(node(state, runtime=runtime), ReviewUpdate | ErrorUpdate)
    node(state)  # type: ignore[call-arg]
    node(state, runtime=store)  # type: ignore[arg-type]

    remembering = create_node(remember, name="remember")
    assert_type(remembering(state, store=store), ReviewUpdate | ErrorUpdate)
    remembering(state, store)  # type: ignore[call-arg]

    create_node(progress, name="progress")(state, writer=lambda chunk: None)
    create_node(progress, name="progress")(state, writer="no")  # type: ignore[arg-type]


async def check_injected_async_nodes(
    state: ReviewState, runtime: Runtime[Ctx], store: BaseStore
) -> None:
    node = create_node(personal_async, name="personal_async", policy=Policy.timeout(5))
    is_async(node)
    assert_type(await node(state, runtime=runtime), ReviewUpdate | ErrorUpdate)
    assert_type(
        await create_node(remember_async, name="remember_async")(state, store=store),
        ReviewUpdate | ErrorUpdate,
    )
    await create_node(progress_async, name="progress_async")(state, writer=print)


def check_command_nodes(state: ReviewState) -> None:
    node = create_node(route, name="route", policy=Policy.llm())
    is_sync(node)
    assert_type(node(state), Command[Literal["accept", "reject"]] | ErrorUpdate)
    assert_type(
        create_node(route_or_update, name="route_or_update")(state),
        Command[Literal["accept"]] | ReviewUpdate | ErrorUpdate,
    )


async def check_async_command_nodes(state: ReviewState) -> None:
    node = create_node(route_async, name="route_async")
    is_async(node)
    assert_type(await node(state), Command[Literal["accept", "reject"]] | ErrorUpdate)


# --- create_node rejects misuse --------------------------------------------------------


def check_node_misuse(state: ReviewState, story: StoryState) -> None:
    # The state passed in must be the impl's state type.
    node = create_node(review, name="review")
    node(story)  # type: ignore[arg-type]
    node({"draft": "x"})  # type: ignore[typeddict-item]
    node(state, config={})  # type: ignore[call-arg]
    create_node(review_with_config, name="c")(state, config="x")  # type: ignore[arg-type]

    # name is required and keyword-only; the policy must be a Policy.
    create_node(review)  # type: ignore[call-overload]
    create_node(review, "review")  # type: ignore[call-overload]
    create_node(review, name="review", policy="llm")  # type: ignore[call-overload]


async def check_kind_misuse(state: ReviewState) -> None:
    # A sync node's result is not awaitable, and an async node's must be awaited.
    sync_node = create_node(review, name="review")
    await sync_node(state)  # type: ignore[misc]
    is_async(sync_node)  # type: ignore[arg-type]
    is_sync(create_node(review_async, name="a"))  # type: ignore[arg-type]
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


# --- nodes fit LangGraph's StateGraph.add_node and the functional API ---------------


def check_graph_building() -> None:
    builder = StateGraph(ReviewState)
    builder.add_node("review", create_node(review, name="review"))
    builder.add_node("review_async", create_node(review_async, name="review_async"))
    builder.add_node("with_config", create_node(review_with_config, name="with_config"))
    builder.add_node("remember", create_node(remember, name="remember"))
    builder.add_node("progress", create_node(progress, name="progress"))
    builder.add_node("everything", create_node(everything, name="everything"))
    builder.add_node("route", create_node(route, name="route"))
    builder.add_node("route_async", create_node(route_async, name="route_async"))
    builder.add_edge(START, "review")
    builder.add_edge("review", END)
    builder.compile()

    with_context = StateGraph(ReviewState, context_schema=Ctx)
    with_context.add_node("personal", create_node(personal, name="personal"))
    with_context.add_node("personal_async", create_node(personal_async, name="personal_async"))
    subgraph = with_context.compile()
    assert_type(create_node(subgraph, name="sub").policy, Policy)
    builder.add_node("sub", create_node(subgraph, name="sub"))

    story = StateGraph(StoryState)
    story.add_node("outline", create_node(outline, name="outline"))


def fetch_page(url: str) -> str:
    return url


def check_tasks() -> None:
    fetch = task(create_node(fetch_page, name="fetch", policy=Policy.tool()))
    fetch_plain = task(Policy.tool().wrap(fetch_page))

    @entrypoint()
    def workflow(url: str) -> str:
        page = fetch(url).result()
        assert_type(page, str | ErrorUpdate)
        return fetch_plain(url).result() + str(page)

    workflow.invoke("u")
