"""Execution context: ids, RunnableConfig reading, the current context across tasks/threads."""

from __future__ import annotations

import pickle
import re
import uuid
from datetime import UTC, datetime

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

from resilient_nodes._context import (
    ExecutionContext,
    create_execution_context,
    current_context,
    generate_graph_execution_id,
    generate_trace_id,
    use_context,
)


def test_generated_ids() -> None:
    """Trace ids are 32 lowercase hex digits; execution ids are UUIDs; both unique."""
    trace = generate_trace_id()
    assert re.fullmatch(r"[0-9a-f]{32}", trace)
    assert trace != generate_trace_id()
    execution = generate_graph_execution_id()
    assert str(uuid.UUID(execution)) == execution
    assert execution != generate_graph_execution_id()


def test_defaults() -> None:
    """A bare context has fresh ids, attempt 1 and a UTC start time."""
    context = ExecutionContext()
    assert re.fullmatch(r"[0-9a-f]{32}", context.trace_id)
    assert context.attempt == 1
    assert context.node_name == "<unnamed>"
    assert context.started_at.tzinfo is UTC
    assert abs((datetime.now(UTC) - context.started_at).total_seconds()) < 60
    assert dict(context.metadata) == {}


def test_reads_a_runnable_config() -> None:
    """Ids, run id, thread id and metadata come from a RunnableConfig-shaped mapping."""
    run_id = uuid.uuid4()
    config = {
        "run_id": run_id,
        "metadata": {"trace_id": "t" * 32, "graph_execution_id": "g-1", "story_id": "s-9"},
        "configurable": {"thread_id": 42},
    }
    context = create_execution_context("plan", config=config, attempt=2)
    assert context.trace_id == "t" * 32
    assert context.graph_execution_id == "g-1"
    assert context.run_id == str(run_id)
    assert context.thread_id == "42"
    assert context.node_name == "plan"
    assert context.attempt == 2
    assert context.metadata["story_id"] == "s-9"


def test_run_id_is_the_fallback_execution_id() -> None:
    """Without a graph_execution_id in metadata, the run id is used."""
    context = create_execution_context("n", config={"run_id": "run-7"})
    assert context.graph_execution_id == "run-7"
    fresh = create_execution_context("n")
    assert fresh.run_id is None
    assert fresh.thread_id is None
    assert str(uuid.UUID(fresh.graph_execution_id)) == fresh.graph_execution_id


def test_explicit_arguments_win() -> None:
    """Explicit ids and metadata override what the config carries."""
    config = {"metadata": {"trace_id": "from-config", "k": 1}, "run_id": "r"}
    context = create_execution_context(
        "n",
        config=config,
        trace_id="explicit",
        graph_execution_id="explicit-g",
        metadata={"k": 2, "extra": True},
    )
    assert context.trace_id == "explicit"
    assert context.graph_execution_id == "explicit-g"
    assert dict(context.metadata) == {"trace_id": "from-config", "k": 2, "extra": True}


def test_odd_shaped_config_is_tolerated() -> None:
    """Non-mapping metadata/configurable are ignored rather than raising."""
    context = create_execution_context("n", config={"metadata": "x", "configurable": ["y"]})
    assert context.thread_id is None
    assert dict(context.metadata) == {}


def test_metadata_is_read_only_and_copied() -> None:
    """Metadata cannot be mutated through the context, nor by mutating the source."""
    source = {"a": 1}
    context = ExecutionContext(metadata=source)
    source["a"] = 2
    assert context.metadata["a"] == 1
    with pytest.raises(TypeError):
        context.metadata["a"] = 3  # type: ignore[index]


def test_with_attempt() -> None:
    """with_attempt returns a copy with the new attempt and everything else kept."""
    context = create_execution_context("n", metadata={"m": 1})
    second = context.with_attempt(2)
    assert second.attempt == 2
    assert context.attempt == 1
    assert (second.trace_id, second.graph_execution_id, second.started_at) == (
        context.trace_id,
        context.graph_execution_id,
        context.started_at,
    )
    assert dict(second.metadata) == {"m": 1}


def test_log_fields() -> None:
    """log_fields has the ids every log event carries."""
    context = create_execution_context("n", trace_id="t", graph_execution_id="g", attempt=3)
    assert context.log_fields() == {
        "node": "n",
        "trace_id": "t",
        "graph_execution_id": "g",
        "attempt": 3,
    }


def test_pickles() -> None:
    """A context survives pickling with all fields and its metadata."""
    context = create_execution_context(
        "n", config={"run_id": "r", "configurable": {"thread_id": "th"}}, metadata={"x": [1]}
    )
    copy = pickle.loads(pickle.dumps(context))
    assert copy == context
    assert dict(copy.metadata) == {"x": [1]}
    assert copy.started_at == context.started_at


def test_current_context_outside_and_inside() -> None:
    """current_context() is None outside use_context and the context inside, restored after."""
    assert current_context() is None
    outer, inner = ExecutionContext(node_name="outer"), ExecutionContext(node_name="inner")
    with use_context(outer) as entered:
        assert entered is outer
        assert current_context() is outer
        with use_context(inner):
            assert current_context() is inner
        assert current_context() is outer
    assert current_context() is None


def test_context_restored_after_an_error() -> None:
    """An exception inside use_context still restores the previous context."""
    with pytest.raises(RuntimeError), use_context(ExecutionContext()):
        raise RuntimeError
    assert current_context() is None


@pytest.mark.anyio
async def test_context_reaches_child_tasks_and_threads() -> None:
    """Child tasks and to_thread workers see the context of the code that started them."""
    context = ExecutionContext(node_name="parent")
    seen: list[ExecutionContext | None] = []

    async def child() -> None:
        await anyio.lowlevel.checkpoint()
        seen.append(current_context())

    with use_context(context):
        async with anyio.create_task_group() as group:
            group.start_soon(child)
        seen.append(await anyio.to_thread.run_sync(current_context))
    assert seen == [context, context]
    assert current_context() is None
