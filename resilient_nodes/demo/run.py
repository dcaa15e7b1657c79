"""One run of the demo: the batch of stories through the graph, then the report.

`run_demo` wires the pieces together: the schedule and the simulated services
(`services`), the graph (`graph`), the log routing and display (`display`), and
the report built from what was recorded (`report`); then the `fanout`, a ``Send``
fan-out held under one shared rate limit. Each story is one
``ainvoke`` of the compiled graph; the nodes, and so their breakers, live for the
whole batch.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import anyio
import attrs
import structlog

from .display import Display, Recorder, render_summary, routed_logs
from .fanout import run_fanout
from .graph import NODE_ORDER, build_graph
from .report import DemoReport, check_failure_modes, node_stats, retry_wait, story_result
from .services import Services, schedule

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from resilient_nodes import AsyncNode

    from .services import Call, StoryPlan

__all__ = ["run_demo"]


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
    plans = schedule(seed)
    display = Display(out, progress=progress)
    recorder = Recorder(display, len(plans))
    finals: list[tuple[StoryPlan, dict[str, Any], float]] = []
    with (
        tempfile.TemporaryDirectory(prefix="resilient-nodes-demo-") as artifacts,
        routed_logs(recorder),
    ):
        services = Services(plans, seed, Path(artifacts))
        app, nodes = build_graph(services)

        async def batch() -> None:
            display.line(
                f"Processing {len(plans)} stories (seed {seed}): "
                "outline, research, draft, check, blurb, publish"
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
    report = _build_report(seed, recorder, services.calls, finals, nodes)
    # Then a Send fan-out held under one shared rate limit (its own small graph;
    # its log events are not part of the story display).
    with routed_logs(_drop):
        fanout = run_fanout()
    report = attrs.evolve(report, fanout=fanout, summary=report.summary + fanout.summary + "\n")
    display.write(report.summary)
    return report


def _drop(_logger: object, _method: str, _event: object) -> Any:
    raise structlog.DropEvent


def _story_line(final: Mapping[str, Any]) -> str:
    errors = final.get("errors") or []
    if not errors:
        return "published"
    last = errors[-1]
    return f"blocked at {last['node']}: {last['code']}"


def _build_report(
    seed: int,
    recorder: Recorder,
    calls: Sequence[Call],
    finals: Sequence[tuple[StoryPlan, dict[str, Any], float]],
    nodes: Mapping[str, AsyncNode[..., Any]],
) -> DemoReport:
    """Assemble the report from the recorded events, calls and final states."""
    attempts = Counter((call.story_id, call.node) for call in calls)
    stories = tuple(
        story_result(plan, final, seconds, recorder.finished, attempts)
        for plan, final, seconds in finals
    )
    retries = tuple(retry_wait(entry, calls) for entry in recorder.retries)
    stats = tuple(
        node_stats(name, repr(nodes[name].policy), stories, retries, recorder.timeouts[name])
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
        checks=check_failure_modes(stories, retries, transitions, recorder.events),
        seconds=recorder.elapsed(),
        summary="",
    )
    return attrs.evolve(report, summary=render_summary(report))
