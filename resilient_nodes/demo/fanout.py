"""A ``Send`` fan-out held under one shared rate limit.

A LangGraph ``Send`` fan-out starts every branch at once: twelve research queries
against a search API that allows four calls per half second would get 429s for
eight of them. Here each branch is a ``search`` node under
``Policy.tool(...) | Policy.rate_limit(4, per=0.5, key="search-api")``: the
branches share the key's window, the ones past the limit wait for room (within
their deadline) instead of failing, and no half second ever sees more than four
calls. With ``storage="redis://..."`` the same key would hold every worker
process to the limit together.

    plan --Send x 12--> search (rate limited) --> collect --> END
"""

from __future__ import annotations

import operator
import time
from typing import Annotated, Any, Final, TypedDict

import anyio
import attrs

from resilient_nodes import Policy, create_node

__all__ = ["BRANCHES", "LIMIT", "PER", "FanoutReport", "run_fanout"]

BRANCHES: Final = 12
LIMIT: Final = 4
PER: Final = 0.5


class FanoutState(TypedDict, total=False):
    """The fan-out's state: the queries, and the results the branches append."""

    queries: list[str]
    query: str
    results: Annotated[list[str], operator.add]
    errors: Annotated[list[dict[str, Any]], operator.add]


@attrs.frozen
class FanoutReport:
    """What the fan-out showed.

    Attributes:
        branches: Branches started at once.
        limit: Calls allowed per window.
        per: The window, in seconds.
        results: Branches that returned.
        most_in_window: The most calls that reached the API in any window.
        seconds: Wall time of the whole fan-out (not compared).
        summary: The lines the demo prints (not compared).
    """

    branches: int
    limit: int
    per: float
    results: int
    most_in_window: int
    seconds: float = attrs.field(eq=False)
    summary: str = attrs.field(eq=False, repr=False)


_STAMP_SLACK: Final = 0.01  # a call is stamped a little after its admission


def _most_in_window(stamps: list[float], per: float) -> int:
    stamps = sorted(stamps)
    most = 0
    for index, start in enumerate(stamps):
        inside = sum(1 for stamp in stamps[index:] if stamp - start < per - _STAMP_SLACK)
        most = max(most, inside)
    return most


def run_fanout(*, key: str = "search-api") -> FanoutReport:
    """Fan out `BRANCHES` searches at once under a shared limit; report what reached the API.

    Args:
        key: The rate limit's key (shared by every node naming it).

    Returns:
        The `FanoutReport`.
    """
    from langgraph.graph import END, START, StateGraph  # noqa: PLC0415 - optional extra
    from langgraph.types import Send  # noqa: PLC0415

    calls: list[float] = []

    async def search(state: FanoutState) -> dict[str, Any]:
        calls.append(time.monotonic())  # the moment the "API" is called
        await anyio.sleep(0.01)
        return {"results": [f"hits for {state['query']}"]}

    # Named ``state``: a node's type is its impl's, and LangGraph's node protocols
    # name the parameter so.
    async def plan(state: FanoutState) -> dict[str, Any]:  # noqa: ARG001
        return {"queries": [f"query {i}" for i in range(BRANCHES)]}

    # LangGraph reads these functions' type hints at run time: only names it
    # can resolve (module-level ones) appear in them.
    def fan_out(state: FanoutState) -> list[Any]:
        return [Send("search", {"query": query}) for query in state["queries"]]

    async def collect(state: FanoutState) -> dict[str, Any]:  # noqa: ARG001
        return {}

    policy = Policy.tool(backoff=0.02, jitter=0) | Policy.rate_limit(LIMIT, per=PER, key=key)
    graph: StateGraph[Any, Any, Any, Any] = StateGraph(FanoutState)
    graph.add_node("plan", create_node(plan, name="plan"))
    graph.add_node("search", create_node(search, name="search", policy=policy))
    graph.add_node("collect", create_node(collect, name="collect"))
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", fan_out, ["search"])
    graph.add_edge("search", "collect")
    graph.add_edge("collect", END)
    app = graph.compile()

    async def main() -> dict[str, Any]:
        return dict(await app.ainvoke({}))

    began = time.monotonic()
    final = anyio.run(main, backend="asyncio")
    seconds = time.monotonic() - began
    most = _most_in_window(calls, PER)
    results = len(final.get("results", []))
    summary = (
        f"\nFan-out: {BRANCHES} Send branches at once under one shared rate limit,\n"
        f"  Policy.rate_limit({LIMIT}, per={PER:g}, key={key!r}):\n"
        f"  {results}/{BRANCHES} searches returned, at most {most} calls in any {PER:g} s;\n"
        f"  the rest waited their turn ({seconds:.2f} s in all)"
    )
    return FanoutReport(
        branches=BRANCHES,
        limit=LIMIT,
        per=PER,
        results=results,
        most_in_window=most,
        seconds=seconds,
        summary=summary,
    )
