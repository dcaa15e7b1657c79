"""The pipeline as a LangGraph ``StateGraph``: one policy per node, and the routing.

Each node is a plain async function (`services.Services`) wrapped by
`create_node` in a `Policy`, the README's canonical pipelines with demo-sized
times. A conditional edge after every step sends the story to ``handle_error``
as soon as a failure has been recorded in the state::

    outline --> research --> draft --> check --> blurb --> publish --> END
       |           |            |         |         |          |
       +-----------+------------+---------+---------+----------+--> handle_error --> END

``blurb`` shows the strategies for LLM calls: its primary model streams tokens
(`stream_policy`: each attempt must start within `STREAM_BOUND`, and a retry
restarts a stream only while no token has been delivered), and when that model
is down the node falls back to a backup model (``Policy.fallback``).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Final

from resilient_nodes import AsyncNode, Policy, create_node

from .services import PUBLISH_ATTEMPTS, StoryState

if TYPE_CHECKING:
    from collections.abc import Callable

    from langgraph.graph.state import CompiledStateGraph

    from .services import Services

__all__ = [
    "ATTEMPT_TIMEOUT",
    "INSTALL_LANGGRAPH",
    "NODE_ORDER",
    "RECOVERY_TIMEOUT",
    "STREAM_BOUND",
    "backup_blurb",
    "build_graph",
    "policies",
    "route",
    "stream_policy",
]

INSTALL_LANGGRAPH: Final = "pip install 'resilient-nodes[langgraph]'"
"""What installs the one dependency the demo adds to the library's own."""

NODE_ORDER: Final = (
    "outline",
    "research",
    "draft",
    "check",
    "blurb",
    "publish",
    "handle_error",
)

ATTEMPT_TIMEOUT: Final = 0.25
"""The draft LLM's per-attempt timeout, in seconds."""

RECOVERY_TIMEOUT: Final = 0.5
"""How long the publish breaker stays open before a probe, in seconds."""

STREAM_BOUND: Final = 0.1
"""The blurb stream's bound on its first token and on each gap, in seconds."""


def stream_policy() -> Policy:
    """The primary blurb model's token stream: two attempts, each bounded in time.

    Position is meaning: the stream bounds are right of the retry, so they hold
    per attempt. A stall before the first token is retried; after it, a failure
    would be `NodeStreamInterruptedError` (nothing is delivered twice).
    """
    return Policy.llm(attempts=2, backoff=0.02, jitter=0) | Policy.stream(
        first_item=STREAM_BOUND, idle=STREAM_BOUND
    )


async def backup_blurb(services: Services, state: StoryState) -> Any:
    """The blurb node's alternative: the backup model (a short name for the summary)."""
    return await services.blurb_backup(state)


def policies(services: Services) -> dict[str, Policy]:
    """One policy per node: the README's canonical pipelines, with demo-sized times.

    Jitter is 0 everywhere, so the printed delays are the policies' round
    numbers (`resilient_nodes.testing.seed_jitter` would also make a jittered
    schedule repeat, but round numbers read better in a demo).

    Args:
        services: The node implementations (the blurb's backup model is one).

    Returns:
        Node name to policy.
    """
    backup = Policy.tool(attempts=2, backoff=0.02, jitter=0).wrap(
        functools.partial(backup_blurb, services), name="blurb.backup"
    )
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
        # The primary streams (its retries live in `stream_policy`); when they
        # are exhausted, the backup model answers instead.
        "blurb": Policy.fallback(backup),
        # The breaker counts each whole (retried) call once.
        "publish": Policy.breaker(failure_threshold=2, recovery_timeout=RECOVERY_TIMEOUT)
        | Policy.tool(attempts=PUBLISH_ATTEMPTS, backoff=0.02, jitter=0),
        "handle_error": Policy.none(),
    }


def route(next_node: str) -> Callable[[StoryState], str]:
    """A conditional edge: to *next_node*, or to ``handle_error`` once anything failed.

    Args:
        next_node: Where the story goes when nothing has failed.

    Returns:
        The routing function, named after its destination.
    """

    def decide(state: StoryState) -> str:
        return "handle_error" if state.get("errors") else next_node

    decide.__name__ = f"route_to_{next_node}"
    return decide


def build_graph(
    services: Services,
) -> tuple[CompiledStateGraph[Any, Any, Any, Any], dict[str, AsyncNode[..., Any]]]:
    """The compiled pipeline and its nodes (whose breakers live as long as they do).

    Loggers are bound when nodes are built: build them where the log
    configuration the run wants is in force.

    Args:
        services: The node implementations.

    Returns:
        The compiled graph, and node name to node.

    Raises:
        ModuleNotFoundError: langgraph is not installed; the message says which
            extra to install, and ``name`` is ``"langgraph"`` whatever module
            was found missing on the way.
    """
    try:
        from langgraph.graph import END, START, StateGraph  # noqa: PLC0415 - optional extra
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            f"the demo needs the 'langgraph' extra: {INSTALL_LANGGRAPH} ({error})",
            name="langgraph",
        ) from error

    tokens = stream_policy().wrap(services.blurb_tokens, name="blurb")

    async def blurb(state: StoryState) -> Any:
        return await services.blurb(state, tokens)

    impls: dict[str, Callable[[StoryState], Any]] = {
        "outline": services.outline,
        "research": services.research,
        "draft": services.draft,
        "check": services.check,
        "blurb": blurb,
        "publish": services.publish,
        "handle_error": services.handle_error,
    }
    by_node = policies(services)
    nodes: dict[str, AsyncNode[..., Any]] = {
        name: create_node(impls[name], name=name, policy=by_node[name]) for name in NODE_ORDER
    }
    graph: StateGraph[Any, Any, Any, Any] = StateGraph(StoryState)
    for name, node in nodes.items():
        graph.add_node(name, node)
    graph.add_edge(START, "outline")
    pipeline = ("outline", "research", "draft", "check", "blurb", "publish")
    for here, after in zip(pipeline, (*pipeline[1:], END), strict=True):
        graph.add_conditional_edges(here, route(after), [after, "handle_error"])
    graph.add_edge("handle_error", END)
    return graph.compile(), nodes
