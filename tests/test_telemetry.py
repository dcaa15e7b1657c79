"""Traces and metrics (resilient_nodes._telemetry), with the real OpenTelemetry SDK and
a real prometheus_client registry.

Spans go to the SDK's in-memory exporter, metrics to its in-memory reader; the
Prometheus metrics are scraped as text with ``generate_latest`` and parsed back.
"""

from __future__ import annotations

import gc
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import trio
import trio.testing
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import resilient_nodes
from resilient_nodes import (
    NodeBulkheadFullError,
    NodeRateLimitedError,
    NodeTimeoutError,
    Policy,
    _telemetry,
    create_node,
    disable_telemetry,
    enable_opentelemetry,
    enable_prometheus,
)
from resilient_nodes._breaker import NodeCircuitBreaker, wrap_breaker
from resilient_nodes._bulkhead import Bulkhead, wrap_bulkhead
from resilient_nodes.testing import no_backoff, reset_rate_limits

if TYPE_CHECKING:
    from collections.abc import Iterator

    from opentelemetry.sdk.trace import ReadableSpan


# --- fixtures and readers ------------------------------------------------------------


class OTel:
    """The SDK's providers with in-memory exporters, switched on for one test."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.tracer = self.tracer_provider.get_tracer("tests")

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self, name: str) -> dict[frozenset[tuple[str, Any]], Any]:
        """The data points of instrument *name*, by their attributes (value or histogram)."""
        data = self.reader.get_metrics_data()
        found: dict[frozenset[tuple[str, Any]], Any] = {}
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name != name:
                        continue
                    for point in metric.data.data_points:
                        key = frozenset((point.attributes or {}).items())
                        found[key] = point.value if hasattr(point, "value") else point
        return found


def attrs_of(**labels: str) -> frozenset[tuple[str, Any]]:
    """An OpenTelemetry attribute set from label names (``node=...`` -> ``resilient_nodes.node``)."""
    return frozenset((_telemetry.ATTRIBUTE_KEYS[name], value) for name, value in labels.items())


@pytest.fixture
def otel() -> Iterator[OTel]:
    """OpenTelemetry switched on with in-memory exporters; off again afterwards."""
    sdk = OTel()
    enable_opentelemetry(tracer_provider=sdk.tracer_provider, meter_provider=sdk.meter_provider)
    try:
        yield sdk
    finally:
        disable_telemetry()
        sdk.meter_provider.shutdown()
        sdk.tracer_provider.shutdown()


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    """Prometheus switched on with a fresh registry; off again afterwards."""
    fresh = CollectorRegistry()
    enable_prometheus(registry=fresh)
    try:
        yield fresh
    finally:
        disable_telemetry()


def scrape(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The registry scraped as Prometheus text and parsed back: {(sample, labels): value}."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def sample(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    return samples.get((name, frozenset(labels.items())))


# --- the switch ---------------------------------------------------------------------------


def test_off_by_default_and_off_again_after_disable() -> None:
    """Nothing is on until asked; disable_telemetry takes our metrics out of the registry."""
    assert _telemetry.active is None
    fresh = CollectorRegistry()
    enable_prometheus(registry=fresh)
    assert _telemetry.active is not None
    assert "resilient_nodes_calls_total" in generate_latest(fresh).decode()
    disable_telemetry()
    assert _telemetry.active is None
    assert "resilient_nodes" not in generate_latest(fresh).decode()
    disable_telemetry()  # a no-op when off


def test_the_switches_are_exported_from_the_root() -> None:
    """The three switches are the package's public names."""
    assert resilient_nodes.enable_opentelemetry is enable_opentelemetry
    assert resilient_nodes.enable_prometheus is enable_prometheus
    assert resilient_nodes.disable_telemetry is disable_telemetry


@pytest.mark.parametrize(
    ("module", "switch", "extra"),
    [
        ("prometheus_client", enable_prometheus, "prometheus"),
        ("opentelemetry.trace", enable_opentelemetry, "otel"),
    ],
)
def test_a_missing_extra_is_named(
    monkeypatch: pytest.MonkeyPatch, module: str, switch: Any, extra: str
) -> None:
    """Without the package, the switch says which extra to install; nothing is switched on."""
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(
        ModuleNotFoundError, match=rf"^{switch.__name__} needs the '{extra}' extra"
    ) as caught:
        switch()
    assert f"resilient-nodes[{extra}]" in str(caught.value)
    assert _telemetry.active is None


def test_a_name_taken_in_the_registry_is_refused_and_the_registry_left_alone() -> None:
    """A registry holding one of our names: ValueError, and none of ours stays registered."""
    from prometheus_client import Counter

    taken = CollectorRegistry()
    Counter("resilient_nodes_timeouts", "someone else's", registry=taken)
    with pytest.raises(ValueError, match="Duplicated"):
        enable_prometheus(registry=taken)
    assert _telemetry.active is None
    names = {
        family.name for family in text_string_to_metric_families(generate_latest(taken).decode())
    }
    assert names <= {"resilient_nodes_timeouts", "resilient_nodes_timeouts_created"}


def test_enabling_again_moves_the_metrics_to_the_new_registry() -> None:
    """A second enable_prometheus replaces the first: the old registry is left empty."""
    first, second = CollectorRegistry(), CollectorRegistry()
    try:
        enable_prometheus(registry=first)
        enable_prometheus(registry=second)
        assert "resilient_nodes" not in generate_latest(first).decode()
        assert "resilient_nodes_calls_total" in generate_latest(second).decode()
        enable_prometheus(registry=second)  # the same registry again: no duplicate error
    finally:
        disable_telemetry()


def test_opentelemetry_and_prometheus_are_on_together(otel: OTel) -> None:
    """Enabling Prometheus keeps OpenTelemetry on, and the reverse."""
    fresh = CollectorRegistry()
    enable_prometheus(registry=fresh)
    active = _telemetry.active
    assert active is not None
    assert active.tracing is not None
    assert active.otel_metrics is not None
    assert active.prometheus is not None


def test_a_failing_backend_never_changes_the_outcome(
    registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A metric backend that raises is ignored: the call's result is unchanged."""
    active = _telemetry.active
    assert active is not None

    def broken(*_args: object) -> None:
        raise RuntimeError("exporter down")

    monkeypatch.setattr(active.prometheus, "record", broken)
    attempts = 0

    def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 2:
            raise ConnectionError("reset")
        return "ok"

    with no_backoff():
        assert Policy.retry(attempts=3).wrap(flaky, name="broken")() == "ok"


# --- layer metrics (no node shell: Policy.wrap) --------------------------------------------


def test_retries_are_counted_by_category_in_both_ecosystems(
    otel: OTel, registry: CollectorRegistry
) -> None:
    """Each scheduled retry counts once, labelled with the failed attempt's category."""
    errors = [ConnectionError("reset"), TimeoutError("slow"), ConnectionError("reset")]

    def flaky() -> str:
        if errors:
            raise errors.pop(0)
        return "ok"

    with no_backoff():
        assert Policy.retry(attempts=4).wrap(flaky, name="fetch")() == "ok"
    samples = scrape(registry)
    assert sample(samples, "resilient_nodes_retries_total", node="fetch", category="network") == 2
    assert sample(samples, "resilient_nodes_retries_total", node="fetch", category="timeout") == 1
    points = otel.points("resilient_nodes.retries")
    assert points[attrs_of(node="fetch", category="network")] == 2
    assert points[attrs_of(node="fetch", category="timeout")] == 1


class TestVirtualTime:
    """Timeouts in trio's virtual time."""

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, object]]:
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})

    @pytest.mark.anyio
    async def test_a_timeout_is_counted(self, otel: OTel, registry: CollectorRegistry) -> None:
        """The timeout layer's deadline firing counts once per firing."""

        async def slow() -> None:
            await anyio.sleep(60)

        timed: Any = Policy.timeout(5).wrap(slow, name="slow")
        for _ in range(2):
            with pytest.raises(NodeTimeoutError):
                await timed()
        assert sample(scrape(registry), "resilient_nodes_timeouts_total", node="slow") == 2
        assert otel.points("resilient_nodes.timeouts")[attrs_of(node="slow")] == 2


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.anyio
async def test_breaker_state_gauge_and_transitions(otel: OTel, registry: CollectorRegistry) -> None:
    """The state gauge follows the breaker; each transition counts, trip and recovery."""
    clock = FakeClock()
    breaker = NodeCircuitBreaker("pay", failure_threshold=2, recovery_timeout=30, clock=clock)
    outcomes = [ConnectionError("down"), ConnectionError("down"), None]

    async def pay() -> str:
        error = outcomes.pop(0)
        if error is not None:
            raise error
        return "paid"

    guarded: Any = wrap_breaker(pay, breaker, name="pay")
    samples = scrape(registry)
    assert sample(samples, "resilient_nodes_breaker_state", node="pay", state="closed") == 1
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await guarded()
    samples = scrape(registry)
    assert sample(samples, "resilient_nodes_breaker_state", node="pay", state="open") == 1
    assert sample(samples, "resilient_nodes_breaker_state", node="pay", state="closed") == 0
    gauge = otel.points("resilient_nodes.breaker.state")
    assert gauge[attrs_of(node="pay", state="open")] == 1
    assert gauge[attrs_of(node="pay", state="closed")] == 0
    clock.now += 30
    assert await guarded() == "paid"  # the half-open probe closes it
    samples = scrape(registry)
    assert sample(samples, "resilient_nodes_breaker_state", node="pay", state="closed") == 1
    transitions = {
        (old, new): sample(
            samples,
            "resilient_nodes_breaker_transitions_total",
            node="pay",
            from_state=old,
            to_state=new,
        )
        for old, new in [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    }
    assert transitions == {
        ("closed", "open"): 1,
        ("open", "half_open"): 1,
        ("half_open", "closed"): 1,
    }
    points = otel.points("resilient_nodes.breaker.transitions")
    assert points[attrs_of(node="pay", from_state="closed", to_state="open")] == 1


@pytest.mark.anyio
async def test_rate_limit_waits_and_rejections(otel: OTel, registry: CollectorRegistry) -> None:
    """A wait is observed with its length; a refusal counts, both by node and key."""
    reset_rate_limits()

    async def work() -> str:
        return "ok"

    waiting: Any = Policy.rate_limit(1, per=0.05, key="k-wait").wrap(work, name="wait")
    await waiting()
    await waiting()  # waits about 0.05 s for the window
    refusing: Any = Policy.rate_limit(1, per=60, key="k-refuse", max_wait=0).wrap(work, name="no")
    await refusing()
    with pytest.raises(NodeRateLimitedError):
        await refusing()
    samples = scrape(registry)
    assert (
        sample(samples, "resilient_nodes_rate_limit_wait_seconds_count", node="wait", key="k-wait")
        == 1
    )
    waited = sample(
        samples, "resilient_nodes_rate_limit_wait_seconds_sum", node="wait", key="k-wait"
    )
    assert waited is not None
    assert 0 < waited <= 0.05
    assert (
        sample(samples, "resilient_nodes_rate_limit_rejections_total", node="no", key="k-refuse")
        == 1
    )
    histogram = otel.points("resilient_nodes.rate_limit.wait.duration")[
        attrs_of(node="wait", key="k-wait")
    ]
    assert histogram.count == 1
    assert (
        otel.points("resilient_nodes.rate_limit.rejections")[attrs_of(node="no", key="k-refuse")]
        == 1
    )


@pytest.mark.anyio
async def test_bulkhead_queue_depth_in_flight_and_rejections(
    otel: OTel, registry: CollectorRegistry
) -> None:
    """The gauges show the slots in use and the queue at collection; a refusal counts."""
    bulkhead = Bulkhead("bh", 1, 1)
    release = anyio.Event()

    async def hold() -> None:
        await release.wait()

    guarded: Any = wrap_bulkhead(hold, bulkhead)
    async with anyio.create_task_group() as group:
        group.start_soon(guarded)
        group.start_soon(guarded)
        await anyio.wait_all_tasks_blocked()
        assert bulkhead.queued == 1
        with pytest.raises(NodeBulkheadFullError):
            await guarded()
        samples = scrape(registry)
        assert sample(samples, "resilient_nodes_bulkhead_in_flight", node="bh") == 1
        assert sample(samples, "resilient_nodes_bulkhead_queue_depth", node="bh") == 1
        assert otel.points("resilient_nodes.bulkhead.queue_depth")[attrs_of(node="bh")] == 1
        release.set()
    samples = scrape(registry)
    assert sample(samples, "resilient_nodes_bulkhead_in_flight", node="bh") == 0
    assert sample(samples, "resilient_nodes_bulkhead_queue_depth", node="bh") == 0
    assert sample(samples, "resilient_nodes_bulkhead_rejections_total", node="bh") == 1
    assert otel.points("resilient_nodes.bulkhead.rejections")[attrs_of(node="bh")] == 1


def test_gauges_report_objects_built_before_telemetry_was_on() -> None:
    """A breaker built before enable_prometheus is in the gauge; a collected one is not."""
    kept = NodeCircuitBreaker("built-early")
    gone = NodeCircuitBreaker("collected")
    del gone
    gc.collect()  # the breaker holds a reference cycle (its pybreaker listener)
    fresh = CollectorRegistry()
    enable_prometheus(registry=fresh)
    try:
        samples = scrape(fresh)
        assert (
            sample(samples, "resilient_nodes_breaker_state", node="built-early", state="closed")
            == 1
        )
        assert (
            sample(samples, "resilient_nodes_breaker_state", node="collected", state="closed")
            is None
        )
    finally:
        disable_telemetry()
    assert kept.state.value == "closed"


def test_watching_is_thread_safe() -> None:
    """Breakers built in many threads while the gauges are read: no error, all seen."""
    fresh = CollectorRegistry()
    enable_prometheus(registry=fresh)
    built: list[NodeCircuitBreaker] = []
    lock = threading.Lock()

    def build(index: int) -> None:
        for n in range(50):
            breaker = NodeCircuitBreaker(f"t{index}-{n}")
            with lock:
                built.append(breaker)

    try:
        threads = [threading.Thread(target=build, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for _ in range(20):
            generate_latest(fresh)
        for thread in threads:
            thread.join()
        samples = scrape(fresh)
        assert all(
            sample(samples, "resilient_nodes_breaker_state", node=b.name, state="closed") == 1
            for b in built
        )
    finally:
        disable_telemetry()


def test_the_readme_lists_every_metric_with_both_names() -> None:
    """Each instrument is a row of the README's table, with its Prometheus and OTel names."""
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    [section] = re.findall(
        r"^## Traces and metrics\n(.*?)^## ", readme, flags=re.MULTILINE | re.DOTALL
    )
    rows = re.findall(
        r"^\| `(resilient_nodes_[a-z_]+)` \| `(resilient_nodes\.[a-z_.]+)`",
        section,
        flags=re.MULTILINE,
    )
    expected = {
        (spec.prometheus + ("_total" if spec.kind == _telemetry.COUNTER else ""), spec.otel)
        for spec in _telemetry.SPECS
    }
    assert set(rows) == expected


# --- node calls: spans and call metrics ---------------------------------------------------


def span_named(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    [found] = [span for span in spans if span.name == name]
    return found


def attempt_events(span: ReadableSpan) -> list[dict[str, Any]]:
    return [
        dict(event.attributes or {})
        for event in span.events
        if event.name == "resilient_nodes.attempt"
    ]


@pytest.mark.anyio
async def test_a_node_call_is_a_span_under_the_callers_span_and_over_the_nodes_own(
    otel: OTel,
) -> None:
    """The node's span is a child of the current span, and current for the node's own code."""

    async def answer(state: dict[str, Any]) -> dict[str, Any]:
        with otel.tracer.start_as_current_span("llm call"):
            return {"answer": state["question"].upper()}

    node = create_node(answer, name="answer", policy=Policy.retry() | Policy.breaker())
    with otel.tracer.start_as_current_span("application") as parent:
        assert await node({"question": "why"}) == {"answer": "WHY"}
    spans = otel.finished()
    node_span = span_named(spans, "node answer")
    inner = span_named(spans, "llm call")
    assert node_span.parent is not None
    assert node_span.parent.span_id == parent.get_span_context().span_id
    assert node_span.context is not None
    assert inner.parent is not None
    assert inner.parent.span_id == node_span.context.span_id
    assert node_span.attributes == {
        "resilient_nodes.node": "answer",
        "resilient_nodes.outcome": "success",
        "resilient_nodes.attempts": 1,
        "resilient_nodes.breaker.state": "closed",
    }
    assert node_span.status.status_code is StatusCode.UNSET
    assert attempt_events(node_span) == [
        {"resilient_nodes.attempt": 1, "resilient_nodes.outcome": "success"}
    ]


@pytest.mark.anyio
async def test_each_attempt_is_an_event_and_a_failure_sets_the_error_attributes(
    otel: OTel, registry: CollectorRegistry
) -> None:
    """Retried attempts, the last one's error, error.type and the category on the span."""

    async def down(_state: dict[str, Any]) -> dict[str, Any]:
        raise ConnectionError("connection reset")

    node = create_node(down, name="down", policy=Policy.retry(attempts=3))
    with no_backoff():
        update = await node({})
    assert update["errors"][0]["code"] == "RETRY_EXHAUSTED"
    node_span = span_named(otel.finished(), "node down")
    attributes = dict(node_span.attributes or {})
    assert attributes["resilient_nodes.outcome"] == "failure"
    assert attributes["resilient_nodes.attempts"] == 3
    assert attributes["error.type"] == "resilient_nodes.errors.NodeRetryExhaustedError"
    assert attributes["resilient_nodes.error.category"] == "retry_exhausted"
    assert attributes["resilient_nodes.error.code"] == "RETRY_EXHAUSTED"
    assert node_span.status.status_code is StatusCode.ERROR
    events = attempt_events(node_span)
    assert [(e["resilient_nodes.attempt"], e["resilient_nodes.outcome"]) for e in events] == [
        (1, "retry"),
        (2, "retry"),
        (3, "failure"),
    ]
    assert {e["error.type"] for e in events} == {"ConnectionError"}
    assert {e["resilient_nodes.error.category"] for e in events} == {"network"}
    assert events[0]["resilient_nodes.retry.delay"] == 0
    samples = scrape(registry)
    assert sample(samples, "resilient_nodes_calls_total", node="down", outcome="failure") == 1
    assert sample(samples, "resilient_nodes_attempts_total", node="down") == 3
    assert sample(samples, "resilient_nodes_retries_total", node="down", category="network") == 2
    count = sample(
        samples, "resilient_nodes_call_duration_seconds_count", node="down", outcome="failure"
    )
    assert count == 1


@pytest.mark.anyio
async def test_a_fallback_that_served_is_named_and_is_the_outcome(
    otel: OTel, registry: CollectorRegistry
) -> None:
    """An alternative's answer: outcome "fallback", the span names it, an event says when."""

    async def primary(_state: dict[str, Any]) -> dict[str, Any]:
        raise ConnectionError("primary down")

    async def backup(_state: dict[str, Any]) -> dict[str, Any]:
        return {"answer": "from backup"}

    node = create_node(primary, name="ask", policy=Policy.fallback(backup))
    assert await node({}) == {"answer": "from backup"}
    node_span = span_named(otel.finished(), "node ask")
    attributes = dict(node_span.attributes or {})
    assert attributes["resilient_nodes.outcome"] == "fallback"
    assert attributes["resilient_nodes.served_by"].endswith("backup")
    assert [event.name for event in node_span.events] == [
        "resilient_nodes.fallback",
        "resilient_nodes.attempt",
    ]
    assert (
        sample(scrape(registry), "resilient_nodes_calls_total", node="ask", outcome="fallback") == 1
    )


@pytest.mark.anyio
async def test_an_open_circuit_is_a_rejection(otel: OTel, registry: CollectorRegistry) -> None:
    """A call refused by the open breaker: outcome "rejected", breaker state "open"."""

    async def down(_state: dict[str, Any]) -> dict[str, Any]:
        raise ConnectionError("down")

    node = create_node(down, name="gate", policy=Policy.breaker(failure_threshold=1))
    await node({})
    await node({})
    rejected = otel.finished()[-1]
    attributes = dict(rejected.attributes or {})
    assert attributes["resilient_nodes.outcome"] == "rejected"
    assert attributes["resilient_nodes.breaker.state"] == "open"
    assert attributes["resilient_nodes.error.category"] == "circuit_open"
    samples = scrape(registry)
    assert sample(samples, "resilient_nodes_calls_total", node="gate", outcome="failure") == 1
    assert sample(samples, "resilient_nodes_calls_total", node="gate", outcome="rejected") == 1


@pytest.mark.anyio
async def test_cancellation_and_control_flow_end_the_span_too(
    otel: OTel, registry: CollectorRegistry
) -> None:
    """A cancelled call and a LangGraph interrupt still end their spans, with their outcome."""
    from langgraph.errors import GraphInterrupt

    async def hang(_state: dict[str, Any]) -> dict[str, Any]:
        await anyio.sleep(60)
        return {}

    async def interrupt(_state: dict[str, Any]) -> dict[str, Any]:
        raise GraphInterrupt(())

    with anyio.move_on_after(0.01):
        await create_node(hang, name="hang")({})
    with pytest.raises(GraphInterrupt):
        await create_node(interrupt, name="ask_human")({})
    outcomes = {
        span.name: dict(span.attributes or {})["resilient_nodes.outcome"]
        for span in otel.finished()
    }
    assert outcomes == {"node hang": "cancelled", "node ask_human": "interrupted"}
    samples = scrape(registry)
    assert sample(samples, "resilient_nodes_calls_total", node="hang", outcome="cancelled") == 1
    assert (
        sample(samples, "resilient_nodes_calls_total", node="ask_human", outcome="interrupted") == 1
    )


def test_a_sync_node_with_a_timeout_in_a_worker_thread(
    otel: OTel, registry: CollectorRegistry
) -> None:
    """A sync node's timeout fires in its worker thread: the event reaches the node's span."""
    release = threading.Event()
    calls = 0

    def slow(_state: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            release.wait(5)
        return {"done": True}

    node = create_node(
        slow, name="slow_sync", policy=Policy.retry(attempts=2) | Policy.timeout(0.05)
    )
    try:
        with no_backoff():
            assert node({}) == {"done": True}
    finally:
        release.set()
    node_span = span_named(otel.finished(), "node slow_sync")
    assert [event.name for event in node_span.events] == [
        "resilient_nodes.timeout",
        "resilient_nodes.attempt",
        "resilient_nodes.attempt",
    ]
    assert dict(node_span.attributes or {})["resilient_nodes.attempts"] == 2
    samples = scrape(registry)
    assert sample(samples, "resilient_nodes_timeouts_total", node="slow_sync") == 1
    assert (
        sample(samples, "resilient_nodes_retries_total", node="slow_sync", category="timeout") == 1
    )


@pytest.mark.anyio
async def test_nothing_is_recorded_once_disabled() -> None:
    """After disable_telemetry a node call makes no span and no data point."""
    sdk = OTel()
    enable_opentelemetry(tracer_provider=sdk.tracer_provider, meter_provider=sdk.meter_provider)
    disable_telemetry()

    async def ok(_state: dict[str, Any]) -> dict[str, Any]:
        return {}

    await create_node(ok, name="quiet")({})
    assert sdk.finished() == []
    assert sdk.points("resilient_nodes.node.calls") == {}


@pytest.mark.integration
@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # LangGraph's async runtime is asyncio's
async def test_inside_a_langgraph_graph_the_span_nests_under_the_application(otel: OTel) -> None:
    """Run by a real StateGraph, the node's span is in the application's trace, under its span."""
    from typing import TypedDict

    from langgraph.graph import END, START, StateGraph

    class State(TypedDict, total=False):
        question: str
        answer: str

    async def answer(state: State) -> dict[str, Any]:
        return {"answer": state["question"] + "!"}

    builder = StateGraph(State)
    builder.add_node("answer", create_node(answer, name="answer", policy=Policy.retry()))
    builder.add_edge(START, "answer")
    builder.add_edge("answer", END)
    graph = builder.compile()
    with otel.tracer.start_as_current_span("request") as parent:
        result = await graph.ainvoke({"question": "hi"})
    assert result["answer"] == "hi!"
    spans = {span.context.span_id: span for span in otel.finished() if span.context is not None}
    node_span = span_named(list(spans.values()), "node answer")
    assert node_span.context is not None
    assert node_span.context.trace_id == parent.get_span_context().trace_id
    ancestors = []
    current = node_span
    while current.parent is not None and current.parent.span_id in spans:
        current = spans[current.parent.span_id]
        ancestors.append(current.name)
    assert ancestors[-1] == "request"


# --- the scripted run: retries, a timeout, a breaker trip and recovery --------------------


class TestScriptedRun:
    """One node through retries, a timeout, a trip and a recovery, in virtual time."""

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, object]]:
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})

    @pytest.mark.anyio
    async def test_counters_after_the_script(self, otel: OTel, registry: CollectorRegistry) -> None:
        """Every counter and gauge holds what the script did, in Prometheus and OpenTelemetry."""
        script: list[str] = []

        async def work(_state: dict[str, Any]) -> dict[str, Any]:
            step = script.pop(0)
            if step == "fail":
                raise ConnectionError("reset")
            if step == "hang":
                await anyio.sleep(100)
            return {"ok": True}

        policy = (
            Policy.breaker(failure_threshold=2, recovery_timeout=30)
            | Policy.retry(attempts=3, backoff=1, jitter=0)
            | Policy.timeout(5)
        )
        node = create_node(work, name="script", policy=policy)
        clock = FakeClock()
        assert node.breaker is not None
        node.breaker._clock = clock  # recovery on a settable clock
        runs = [
            ["fail", "ok"],  # a network retry
            ["hang", "ok"],  # a timeout, retried
            ["fail", "fail", "fail"],  # exhausted: the breaker counts 1
            ["fail", "fail", "fail"],  # exhausted: 2, the breaker opens
            [],  # rejected while open
        ]
        outcomes = []
        for steps in runs:
            script[:] = steps
            update = await node({})
            outcomes.append("errors" not in update)
            assert script == []
        clock.now += 30
        script[:] = ["ok"]  # the half-open probe succeeds: closed again
        assert await node({}) == {"ok": True}
        assert outcomes == [True, True, False, False, False]

        samples = scrape(registry)

        def prom(name: str, **labels: str) -> float | None:
            return sample(samples, name, node="script", **labels)

        assert prom("resilient_nodes_calls_total", outcome="success") == 3
        assert prom("resilient_nodes_calls_total", outcome="failure") == 2
        assert prom("resilient_nodes_calls_total", outcome="rejected") == 1
        assert prom("resilient_nodes_attempts_total") == 2 + 2 + 3 + 3 + 1 + 1
        assert prom("resilient_nodes_retries_total", category="network") == 1 + 2 + 2
        assert prom("resilient_nodes_retries_total", category="timeout") == 1
        assert prom("resilient_nodes_timeouts_total") == 1
        for old, new in [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]:
            assert (
                prom("resilient_nodes_breaker_transitions_total", from_state=old, to_state=new) == 1
            )
        assert prom("resilient_nodes_breaker_state", state="closed") == 1
        assert prom("resilient_nodes_breaker_state", state="open") == 0
        # Durations are wall time (perf_counter), not the virtual time of the script.
        assert prom("resilient_nodes_call_duration_seconds_count", outcome="success") == 3

        calls = otel.points("resilient_nodes.node.calls")
        assert calls[attrs_of(node="script", outcome="success")] == 3
        assert calls[attrs_of(node="script", outcome="failure")] == 2
        assert calls[attrs_of(node="script", outcome="rejected")] == 1
        retries = otel.points("resilient_nodes.retries")
        assert retries[attrs_of(node="script", category="network")] == 5
        assert retries[attrs_of(node="script", category="timeout")] == 1
        assert otel.points("resilient_nodes.timeouts")[attrs_of(node="script")] == 1
        assert otel.points("resilient_nodes.node.attempts")[attrs_of(node="script")] == 12
        transitions = otel.points("resilient_nodes.breaker.transitions")
        assert transitions[attrs_of(node="script", from_state="half_open", to_state="closed")] == 1
        duration = otel.points("resilient_nodes.node.duration")[
            attrs_of(node="script", outcome="failure")
        ]
        assert duration.count == 2
        assert [span.name for span in otel.finished()] == ["node script"] * 6


@pytest.mark.anyio
async def test_enabling_again_on_the_same_providers_keeps_every_metric(otel: OTel) -> None:
    """A second enable_opentelemetry on the same meter: counters count once, gauges report."""
    enable_opentelemetry(tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    breaker = NodeCircuitBreaker("again")

    async def ok(_state: dict[str, Any]) -> dict[str, Any]:
        return {}

    await create_node(ok, name="again")({})
    assert otel.points("resilient_nodes.node.calls")[attrs_of(node="again", outcome="success")] == 1
    gauge = otel.points("resilient_nodes.breaker.state")
    assert gauge[attrs_of(node="again", state="closed")] == 1
    assert breaker.name == "again"
    assert len([span for span in otel.finished() if span.name == "node again"]) == 1


def test_importing_the_package_imports_neither_backend() -> None:
    """Off by default means nothing loaded: a fresh interpreter importing us loads neither.

    redis-py is kept out: pybreaker imports it when installed, and recent redis-py
    versions load the OpenTelemetry SDK themselves when that is installed.
    """
    code = (
        "import sys\n"
        "sys.modules['redis'] = None\n"
        "import resilient_nodes\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'prometheus_client'))))"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert result.stdout.strip() == "[]"
