"""Traces and metrics through OpenTelemetry and Prometheus. Strictly private.

Semantics, in one place:

* **Off by default, free when off.** Nothing is imported from OpenTelemetry or
  ``prometheus_client`` until `enable_opentelemetry` or `enable_prometheus` is
  called. Every hook in the other modules reads the module-level `active` and
  does nothing more while it is None: one attribute load and a None test per
  hook point passed.
* **On by one explicit call**, at any time, also after the nodes were built
  (nodes are often built at import time, before the application configures
  its exporters). `disable_telemetry` switches everything off again and takes
  our collectors out of the Prometheus registry.
* **Traces** (OpenTelemetry API): one span per node call, started as a child of
  the caller's current span and made current for the call, so the spans of the
  node's own code (an instrumented HTTP or LLM client) nest under it. One span
  event per attempt (``resilient_nodes.attempt``), and events for a timeout, a
  breaker transition, a rate-limit wait and a fallback taking over.
* **Metrics** (OpenTelemetry metrics API, ``prometheus_client``, or both): see
  `SPECS` for every instrument, its names in each ecosystem and its labels.
  State (a breaker's state, a bulkhead's queue) is *observed* when the metrics
  are collected, from the live breakers and bulkheads, so it costs the calls
  nothing and is right also for those built before telemetry was switched on.
* **Never the node's outcome.** A failing exporter or SDK is ignored: every
  entry point here suppresses ``Exception`` (never cancellation), as logging
  does.

Attribute keys follow OpenTelemetry's semantic conventions where one exists
(``error.type``: the exception's fully qualified class name) and are namespaced
``resilient_nodes.*`` otherwise. Prometheus names follow its conventions: snake
case, ``_total`` on counters, base units (``_seconds``) in the name.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final

import attrs

from ._classification import ErrorCategory, classify_error
from ._control import is_control_flow
from ._sanitize import error_text
from .errors import NodeRetryExhaustedError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Sequence
    from contextvars import Token

    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation
    from opentelemetry.trace import Span, Tracer, TracerProvider
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

__all__ = [
    "SPECS",
    "CallTrace",
    "MetricSpec",
    "Telemetry",
    "active",
    "disable_telemetry",
    "enable_opentelemetry",
    "enable_prometheus",
    "watch",
]

INSTRUMENTATION_NAME: Final = "resilient_nodes"

# --- what is measured --------------------------------------------------------------------

COUNTER: Final = "counter"
HISTOGRAM: Final = "histogram"
GAUGE: Final = "gauge"  # observed at collection, never recorded by a call

# OpenTelemetry attribute key of each label (Prometheus uses the label itself).
ATTRIBUTE_KEYS: Final = {
    "node": "resilient_nodes.node",
    "outcome": "resilient_nodes.outcome",
    "category": "resilient_nodes.error.category",
    "state": "resilient_nodes.breaker.state",
    "from_state": "resilient_nodes.breaker.from_state",
    "to_state": "resilient_nodes.breaker.to_state",
    "key": "resilient_nodes.rate_limit.key",
}

# Seconds: from a cached tool call to a slow LLM completion.
DURATION_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)


@attrs.frozen
class MetricSpec:
    """One instrument, named in both ecosystems.

    Attributes:
        index: Its position in `SPECS`.
        kind: `COUNTER`, `HISTOGRAM` or `GAUGE`.
        otel: The OpenTelemetry instrument name.
        prometheus: The Prometheus metric name, without the ``_total`` that
            ``prometheus_client`` appends to counters.
        unit: The UCUM unit (OpenTelemetry).
        description: What it measures.
        labels: Label names, in the order the hooks pass their values.
    """

    index: int
    kind: str
    otel: str
    prometheus: str
    unit: str
    description: str
    labels: tuple[str, ...]


def _specs() -> tuple[MetricSpec, ...]:
    rows = (
        (COUNTER, "node.calls", "calls", "{call}", "Node calls, by outcome.", ("node", "outcome")),
        (
            HISTOGRAM,
            "node.duration",
            "call_duration_seconds",
            "s",
            "Duration of node calls, backoff sleeps and fallbacks included.",
            ("node", "outcome"),
        ),
        (
            COUNTER,
            "node.attempts",
            "attempts",
            "{attempt}",
            "Attempts made by node calls.",
            ("node",),
        ),
        (
            COUNTER,
            "retries",
            "retries",
            "{retry}",
            "Retries scheduled, by the error category of the failed attempt.",
            ("node", "category"),
        ),
        (
            COUNTER,
            "timeouts",
            "timeouts",
            "{timeout}",
            "Timeout layers' deadlines that fired.",
            ("node",),
        ),
        (
            GAUGE,
            "breaker.state",
            "breaker_state",
            "1",
            "Circuit breaker state: 1 for the current state, 0 for the others.",
            ("node", "state"),
        ),
        (
            COUNTER,
            "breaker.transitions",
            "breaker_transitions",
            "{transition}",
            "Circuit breaker state changes.",
            ("node", "from_state", "to_state"),
        ),
        (
            HISTOGRAM,
            "rate_limit.wait.duration",
            "rate_limit_wait_seconds",
            "s",
            "Waits for rate-limit capacity (count: waits; sum: time waited).",
            ("node", "key"),
        ),
        (
            COUNTER,
            "rate_limit.rejections",
            "rate_limit_rejections",
            "{call}",
            "Calls refused by a rate limit (no capacity within the time they may wait).",
            ("node", "key"),
        ),
        (
            GAUGE,
            "bulkhead.queue_depth",
            "bulkhead_queue_depth",
            "{call}",
            "Calls waiting for a bulkhead slot.",
            ("node",),
        ),
        (
            GAUGE,
            "bulkhead.in_flight",
            "bulkhead_in_flight",
            "{call}",
            "Calls holding a bulkhead slot.",
            ("node",),
        ),
        (
            COUNTER,
            "bulkhead.rejections",
            "bulkhead_rejections",
            "{call}",
            "Calls refused by a full bulkhead.",
            ("node",),
        ),
    )
    return tuple(
        MetricSpec(
            index=index,
            kind=kind,
            otel=f"{INSTRUMENTATION_NAME}.{otel}",
            prometheus=f"{INSTRUMENTATION_NAME}_{prometheus}",
            unit=unit,
            description=description,
            labels=labels,
        )
        for index, (kind, otel, prometheus, unit, description, labels) in enumerate(rows)
    )


SPECS: Final = _specs()
(
    CALLS,
    DURATION,
    ATTEMPTS,
    RETRIES,
    TIMEOUTS,
    BREAKER_STATE,
    BREAKER_TRANSITIONS,
    RATE_LIMIT_WAIT,
    RATE_LIMIT_REJECTIONS,
    BULKHEAD_QUEUE,
    BULKHEAD_IN_FLIGHT,
    BULKHEAD_REJECTIONS,
) = SPECS

# Call outcomes (the ``outcome`` label).
SUCCESS: Final = "success"
FALLBACK: Final = "fallback"  # succeeded, served by an alternative of Policy.fallback
FAILURE: Final = "failure"
REJECTED: Final = "rejected"  # refused without running: open circuit, full bulkhead, rate limit
INTERRUPTED: Final = "interrupted"  # LangGraph control flow (interrupt(), Command to a parent)
CANCELLED: Final = "cancelled"  # cancellation or another BaseException passed through

_REFUSALS: Final = frozenset({ErrorCategory.REJECTED, ErrorCategory.CIRCUIT_OPEN})
_BREAKER_STATES: Final = ("closed", "open", "half_open")
_UNNAMED: Final = "<unnamed>"


# --- live breakers and bulkheads, for the observed gauges --------------------------------

_watched: weakref.WeakValueDictionary[tuple[str, str], Any] = weakref.WeakValueDictionary()
_watch_lock = threading.Lock()


def watch(kind: str, obj: Any) -> None:
    """Make *obj* (a breaker or a bulkhead, with a ``name``) observable by the gauges.

    Called once per breaker or bulkhead, when it is built, whether telemetry is
    on or not: the gauges then also report those built before it was switched
    on. Held weakly; the newest one of a name stands for that name.

    Args:
        kind: ``"breaker"`` or ``"bulkhead"``.
        obj: The object, read when the gauges are collected.
    """
    with _watch_lock:
        _watched[kind, obj.name] = obj


def _watched_now(kind: str) -> list[Any]:
    with _watch_lock:
        return [obj for (seen, _), obj in _watched.items() if seen == kind]


def _observed() -> Iterator[tuple[MetricSpec, tuple[str, ...], float]]:
    """Every gauge value now: (spec, label values, value)."""
    for breaker in _watched_now("breaker"):
        with contextlib.suppress(Exception):
            state = breaker.state.value
            for name in _BREAKER_STATES:
                yield BREAKER_STATE, (breaker.name, name), 1.0 if name == state else 0.0
    for bulkhead in _watched_now("bulkhead"):
        yield BULKHEAD_QUEUE, (bulkhead.name,), float(bulkhead.queued)
        yield BULKHEAD_IN_FLIGHT, (bulkhead.name,), float(bulkhead.in_flight)


# --- the backends ------------------------------------------------------------------------


def _missing_extra(switch: str, extra: str, error: ImportError) -> ModuleNotFoundError:
    return ModuleNotFoundError(
        f"{switch} needs the {extra!r} extra: pip install 'resilient-nodes[{extra}]' ({error})",
        name=error.name,
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("resilient-nodes")
    except PackageNotFoundError:
        return "0+unknown"


# One set of instruments per meter provider: a meter cannot drop an instrument, and
# making it again would only get the first one back (with its callbacks).
_instruments: weakref.WeakKeyDictionary[Any, _OTelMetrics] = weakref.WeakKeyDictionary()


def _otel_metrics_for(meter_provider: MeterProvider | None) -> _OTelMetrics:
    """Our instruments on *meter_provider* (None: the global one), made once per provider."""
    from opentelemetry import metrics  # noqa: PLC0415 - the otel extra

    provider = meter_provider or metrics.get_meter_provider()
    try:
        made = _instruments.get(provider)
    except TypeError:  # a provider that cannot be weakly referenced: made anew
        return _OTelMetrics(provider)
    if made is None:
        made = _instruments[provider] = _OTelMetrics(provider)
    return made


class _OTelMetrics:
    """Our instruments on an OpenTelemetry meter."""

    def __init__(self, provider: MeterProvider) -> None:
        meter = provider.get_meter(INSTRUMENTATION_NAME, _version())
        self._record: list[Callable[..., None] | None] = []
        for spec in SPECS:
            if spec.kind == COUNTER:
                counter = meter.create_counter(spec.otel, spec.unit, spec.description)
                self._record.append(counter.add)
            elif spec.kind == HISTOGRAM:
                histogram = meter.create_histogram(
                    spec.otel,
                    spec.unit,
                    spec.description,
                    explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
                )
                self._record.append(histogram.record)
            else:
                meter.create_observable_gauge(
                    spec.otel, [self._callback(spec)], spec.unit, spec.description
                )
                self._record.append(None)
        # Attribute dicts by (instrument, label values): built once, not per call.
        self._attributes: dict[tuple[int, tuple[str, ...]], dict[str, str]] = {}

    def _callback(self, spec: MetricSpec) -> Callable[[CallbackOptions], Iterable[Observation]]:
        from opentelemetry.metrics import Observation  # noqa: PLC0415 - the otel extra

        def observe(_options: CallbackOptions) -> Iterable[Observation]:
            # An instrument outlives a later enable or disable (a meter cannot
            # drop one): only the metrics of the active telemetry report.
            now = active
            if now is None or now.otel_metrics is not self:
                return []
            return [
                Observation(value, self._attributes_of(spec, labels))
                for seen, labels, value in _observed()
                if seen is spec
            ]

        return observe

    def _attributes_of(self, spec: MetricSpec, labels: tuple[str, ...]) -> dict[str, str]:
        key = (spec.index, labels)
        attributes = self._attributes.get(key)
        if attributes is None:
            attributes = {
                ATTRIBUTE_KEYS[name]: value for name, value in zip(spec.labels, labels, strict=True)
            }
            self._attributes[key] = attributes
        return attributes

    def record(self, spec: MetricSpec, labels: tuple[str, ...], value: float) -> None:
        record = self._record[spec.index]
        assert record is not None  # noqa: S101 - gauges are only observed
        record(value, self._attributes_of(spec, labels))

    def close(self) -> None:
        """Nothing to undo: the callbacks stop reporting once we are not active."""


class _PrometheusMetrics:
    """Our metrics in a ``prometheus_client`` registry."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        import prometheus_client  # noqa: PLC0415 - the prometheus extra

        self.registry = registry if registry is not None else prometheus_client.REGISTRY
        self._metrics: list[Any] = []
        self._registered: list[Any] = []
        try:
            for spec in SPECS:
                metric: Any = None
                if spec.kind == COUNTER:
                    metric = prometheus_client.Counter(
                        spec.prometheus, spec.description, spec.labels, registry=self.registry
                    )
                elif spec.kind == HISTOGRAM:
                    metric = prometheus_client.Histogram(
                        spec.prometheus,
                        spec.description,
                        spec.labels,
                        registry=self.registry,
                        buckets=(*DURATION_BUCKETS, float("inf")),
                    )
                if metric is not None:
                    self._registered.append(metric)
                self._metrics.append(metric)
            gauges = _PrometheusGauges()
            self.registry.register(gauges)
            self._registered.append(gauges)
        except BaseException:
            self.close()  # a name taken in the registry: leave it as it was
            raise
        # Bound ``inc`` / ``observe`` of each labelled child, by (metric, labels).
        self._children: dict[tuple[int, tuple[str, ...]], Callable[[float], None]] = {}

    def record(self, spec: MetricSpec, labels: tuple[str, ...], value: float) -> None:
        key = (spec.index, labels)
        child = self._children.get(key)
        if child is None:
            labelled = self._metrics[spec.index].labels(*labels)
            child = labelled.inc if spec.kind == COUNTER else labelled.observe
            self._children[key] = child
        child(value)

    def close(self) -> None:
        """Take our collectors out of the registry."""
        for collector in self._registered:
            with contextlib.suppress(KeyError):
                self.registry.unregister(collector)
        self._registered.clear()


class _PrometheusGauges:
    """A custom collector: the observed gauges, read at scrape time."""

    def describe(self) -> list[Metric]:
        return [family for _, family in self._families()]

    def collect(self) -> list[Metric]:
        families = dict(self._families())
        for spec, labels, value in _observed():
            families_by_index = families.get(spec.index)
            if families_by_index is not None:
                families_by_index.add_metric(list(labels), value)
        return list(families.values())

    @staticmethod
    def _families() -> Iterator[tuple[int, Any]]:
        from prometheus_client.core import GaugeMetricFamily  # noqa: PLC0415 - the extra

        for spec in SPECS:
            if spec.kind == GAUGE:
                family = GaugeMetricFamily(spec.prometheus, spec.description, labels=spec.labels)
                yield spec.index, family


# --- one node call -----------------------------------------------------------------------

_current_call: ContextVar[CallTrace | None] = ContextVar("resilient_nodes_call_trace", default=None)


def _error_type(error: BaseException) -> str:
    """``error.type``: the exception's fully qualified class name (builtins: bare)."""
    cls = type(error)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _error_attributes(error: BaseException) -> dict[str, Any]:
    classification = classify_error(error)
    return {
        "error.type": _error_type(error),
        "resilient_nodes.error.category": classification.category.value,
        "resilient_nodes.error.code": classification.code.value,
    }


class CallTrace:
    """The telemetry of one node call: its span (if tracing) and what ends it.

    Built by `Telemetry.start_call` when the call begins; the node shell then
    says how it ended (`succeeded` or `failed`) and always calls `end`. The
    layers find it (`Telemetry.call_of`) to add their events and to say which
    fallback served.
    """

    __slots__ = (
        "attempts",
        "breakers",
        "context_token",
        "error",
        "name",
        "outcome",
        "served_by",
        "span",
        "started",
        "telemetry",
        "token",
    )

    def __init__(self, telemetry: Telemetry, name: str, breakers: Sequence[Any]) -> None:
        self.telemetry = telemetry
        self.name = name
        self.breakers = breakers
        self.outcome: str | None = None
        self.attempts = 1
        self.error: BaseException | None = None
        self.served_by: str | None = None
        self.span: Span | None = None
        self.context_token: Token[Any] | None = None
        tracing = telemetry.tracing
        if tracing is not None:
            self.span, self.context_token = tracing.start(name)
        self.token: Token[CallTrace | None] = _current_call.set(self)
        self.started = time.perf_counter()

    def event(self, name: str, attributes: dict[str, Any]) -> None:
        """Add a span event (nothing without a span)."""
        if self.span is not None:
            self.span.add_event(name, attributes)

    def succeeded(self, attempts: int) -> None:
        """The call returned its update after *attempts* attempts."""
        with contextlib.suppress(Exception):
            self.attempts = attempts
            self.outcome = SUCCESS if self.served_by is None else FALLBACK
            self.event(
                "resilient_nodes.attempt",
                {"resilient_nodes.attempt": attempts, "resilient_nodes.outcome": SUCCESS},
            )

    def failed(self, error: Exception, attempts: int) -> None:
        """A failure survived the policy, after at least *attempts* attempts."""
        with contextlib.suppress(Exception):
            if is_control_flow(error):
                self.outcome = INTERRUPTED
                return
            if isinstance(error, NodeRetryExhaustedError):
                attempts = max(attempts, error.attempts)
            self.attempts = attempts
            self.error = error
            category = classify_error(error).category
            self.outcome = REJECTED if category in _REFUSALS else FAILURE
            # The last attempt's own error: an exhausted retry wraps it.
            last = error.last_error if isinstance(error, NodeRetryExhaustedError) else error
            attributes = {"resilient_nodes.attempt": attempts, "resilient_nodes.outcome": FAILURE}
            if isinstance(last, BaseException):
                attributes.update(_error_attributes(last))
            self.event("resilient_nodes.attempt", attributes)

    def end(self) -> None:
        """End the call: its span, and its metrics. Always called, once."""
        with contextlib.suppress(Exception):
            _current_call.reset(self.token)
        with contextlib.suppress(Exception):
            self._end()

    def _end(self) -> None:
        duration = time.perf_counter() - self.started
        outcome = self.outcome or CANCELLED
        telemetry = self.telemetry
        labels = (self.name, outcome)
        telemetry.record(CALLS, labels, 1.0)
        telemetry.record(DURATION, labels, duration)
        telemetry.record(ATTEMPTS, (self.name,), float(self.attempts))
        span = self.span
        tracing = telemetry.tracing
        if span is None or tracing is None or self.context_token is None:
            return
        tracing.detach(self.context_token)
        attributes: dict[str, Any] = {
            "resilient_nodes.outcome": outcome,
            "resilient_nodes.attempts": self.attempts,
        }
        if self.served_by is not None:
            attributes["resilient_nodes.served_by"] = self.served_by
        if self.breakers:
            with contextlib.suppress(Exception):
                attributes["resilient_nodes.breaker.state"] = self.breakers[0].state.value
        error = self.error
        if error is not None:
            attributes.update(_error_attributes(error))
            span.set_status(tracing.error_status, f"{type(error).__name__}: {error_text(error)}")
        span.set_attributes(attributes)
        span.end()


# --- the switch ----------------------------------------------------------------------------


class _Tracing:
    """A tracer and the few OpenTelemetry functions a call needs, bound once."""

    __slots__ = ("attach", "detach", "error_status", "in_context", "kind", "tracer")

    def __init__(self, tracer_provider: TracerProvider | None) -> None:
        from opentelemetry import context, trace  # noqa: PLC0415 - the otel extra

        provider = tracer_provider or trace.get_tracer_provider()
        self.tracer: Tracer = provider.get_tracer(INSTRUMENTATION_NAME, _version())
        self.attach = context.attach
        self.detach = context.detach
        self.in_context = trace.set_span_in_context
        self.kind = trace.SpanKind.INTERNAL
        self.error_status = trace.StatusCode.ERROR

    def start(self, name: str) -> tuple[Span, Token[Any]]:
        """Start node *name*'s call span and make it current; returns it and the token.

        A child of the caller's current span (LangGraph's, the application's);
        current for the call, so the node's own spans nest under it.
        """
        span = self.tracer.start_span(
            f"node {name}", kind=self.kind, attributes={"resilient_nodes.node": name}
        )
        return span, self.attach(self.in_context(span))


class Telemetry:
    """What is switched on: tracing, metric backends.

    The hooks of the other modules call its methods only while it is `active`.
    Every method ignores a failing backend.
    """

    __slots__ = ("otel_metrics", "prometheus", "sinks", "tracing")

    def __init__(
        self,
        tracing: _Tracing | None,
        otel_metrics: _OTelMetrics | None,
        prometheus: _PrometheusMetrics | None,
    ) -> None:
        self.tracing = tracing
        self.otel_metrics = otel_metrics
        self.prometheus = prometheus
        self.sinks: tuple[_OTelMetrics | _PrometheusMetrics, ...] = tuple(
            sink for sink in (otel_metrics, prometheus) if sink is not None
        )

    def record(self, spec: MetricSpec, labels: tuple[str, ...], value: float) -> None:
        """Add *value* to a counter, or observe it in a histogram, in every backend."""
        for sink in self.sinks:
            with contextlib.suppress(Exception):
                sink.record(spec, labels, value)

    # --- the hooks -----------------------------------------------------------------------

    def start_call(self, name: str, breakers: Sequence[Any] = ()) -> CallTrace | None:
        """A node call of *name* begins (the node shell); None if that failed."""
        try:
            return CallTrace(self, name, breakers)
        except Exception:
            return None

    @staticmethod
    def call_of(name: str | None) -> CallTrace | None:
        """The node call of *name* running now, if any (a layer's own node's)."""
        call = _current_call.get()
        return call if call is not None and call.name == name else None

    def retrying(self, name: str, attempt: int, error: Exception, delay: float) -> None:
        """Attempt *attempt* failed with *error*; a retry follows after *delay* s."""
        with contextlib.suppress(Exception):
            attributes = _error_attributes(error)
            category = attributes["resilient_nodes.error.category"]
            self.record(RETRIES, (name, category), 1.0)
            call = self.call_of(name)
            if call is not None:
                attributes["resilient_nodes.attempt"] = attempt
                attributes["resilient_nodes.outcome"] = "retry"
                attributes["resilient_nodes.retry.delay"] = delay
                call.event("resilient_nodes.attempt", attributes)

    def timed_out(self, name: str | None, seconds: float) -> None:
        """A timeout layer's deadline of *seconds* fired."""
        with contextlib.suppress(Exception):
            self.record(TIMEOUTS, (name or _UNNAMED,), 1.0)
            call = self.call_of(name)
            if call is not None:
                call.event("resilient_nodes.timeout", {"resilient_nodes.timeout": seconds})

    def breaker_changed(self, name: str, old: str | None, new: str) -> None:
        """Breaker *name* moved from *old* (None: unknown) to *new*."""
        with contextlib.suppress(Exception):
            self.record(BREAKER_TRANSITIONS, (name, old or "unknown", new), 1.0)
            call = self.call_of(name)
            if call is not None:
                call.event(
                    "resilient_nodes.breaker.state_change",
                    {
                        "resilient_nodes.breaker.from_state": old or "unknown",
                        "resilient_nodes.breaker.to_state": new,
                    },
                )

    def rate_limit_waiting(self, name: str, key: str, seconds: float) -> None:
        """A call of *name* waits *seconds* for capacity under limit *key*."""
        with contextlib.suppress(Exception):
            self.record(RATE_LIMIT_WAIT, (name, key), seconds)
            call = self.call_of(name)
            if call is not None:
                call.event(
                    "resilient_nodes.rate_limit.wait",
                    {
                        "resilient_nodes.rate_limit.key": key,
                        "resilient_nodes.rate_limit.wait": seconds,
                    },
                )

    def rate_limit_rejected(self, name: str, key: str) -> None:
        """A call of *name* was refused by rate limit *key*."""
        with contextlib.suppress(Exception):
            self.record(RATE_LIMIT_REJECTIONS, (name, key), 1.0)

    def bulkhead_rejected(self, name: str) -> None:
        """A call of *name* was refused by its full bulkhead."""
        with contextlib.suppress(Exception):
            self.record(BULKHEAD_REJECTIONS, (name,), 1.0)

    def fallback_served(self, name: str, served_by: str) -> None:
        """Alternative *served_by* of node *name*'s fallback returned."""
        with contextlib.suppress(Exception):
            call = self.call_of(name)
            if call is not None:
                call.served_by = served_by
                call.event("resilient_nodes.fallback", {"resilient_nodes.served_by": served_by})

    def close(self) -> None:
        """Take the metrics out of the registries that can drop them."""
        for sink in self.sinks:
            with contextlib.suppress(Exception):
                sink.close()


active: Telemetry | None = None
"""The telemetry switched on, or None: the one value every hook tests."""

_lock = threading.Lock()  # serialises enable / disable; never taken by a call


def _activate(
    tracing: _Tracing | None,
    otel_metrics: _OTelMetrics | None,
    prometheus: _PrometheusMetrics | None,
) -> None:
    global active  # noqa: PLW0603 - the one switch, read by every hook
    telemetry = Telemetry(tracing, otel_metrics, prometheus)
    active = telemetry if tracing is not None or telemetry.sinks else None


def enable_opentelemetry(
    *,
    tracer_provider: TracerProvider | None = None,
    meter_provider: MeterProvider | None = None,
    traces: bool = True,
    metrics: bool = True,
) -> None:
    """Report spans and metrics through the OpenTelemetry API.

    Each node call becomes a span (a child of the caller's current span) with
    an event per attempt; the README lists the metrics. Calling it again
    replaces the providers (Prometheus stays as it is); `disable_telemetry`
    switches everything off.

    Args:
        tracer_provider: Where spans go; None: OpenTelemetry's global provider.
        meter_provider: Where metrics go; None: the global provider.
        traces: Whether to trace node calls.
        metrics: Whether to record metrics.

    Raises:
        ModuleNotFoundError: If the ``otel`` extra (``opentelemetry-api``) is not
            installed.
    """
    try:
        import opentelemetry.trace  # noqa: PLC0415, F401 - the otel extra
    except ImportError as error:
        raise _missing_extra("enable_opentelemetry", "otel", error) from error
    with _lock:
        tracing = _Tracing(tracer_provider) if traces else None
        otel_metrics = _otel_metrics_for(meter_provider) if metrics else None
        current = active
        _activate(tracing, otel_metrics, current.prometheus if current is not None else None)


def enable_prometheus(*, registry: CollectorRegistry | None = None) -> None:
    """Export the metrics to Prometheus through ``prometheus_client``.

    Serve them as usual, for example with ``prometheus_client.start_http_server``.
    Calling it again moves the metrics to *registry*, from zero (OpenTelemetry
    stays as it is); `disable_telemetry` takes them out of the registry.

    Args:
        registry: The registry to register the metrics in; None:
            ``prometheus_client.REGISTRY``.

    Raises:
        ModuleNotFoundError: If the ``prometheus`` extra (``prometheus_client``)
            is not installed.
        ValueError: If one of our metric names is already taken in *registry*
            (by something else): the registry is left as it was, and no
            metrics go to Prometheus.
    """
    try:
        import prometheus_client  # noqa: PLC0415, F401 - the prometheus extra
    except ImportError as error:
        raise _missing_extra("enable_prometheus", "prometheus", error) from error
    with _lock:
        current = active
        tracing = otel_metrics = None
        if current is not None:
            tracing, otel_metrics = current.tracing, current.otel_metrics
            if current.prometheus is not None:
                # Out of the old registry first: the same registry takes the names again.
                current.prometheus.close()
        try:
            prometheus = _PrometheusMetrics(registry)
        except BaseException:
            _activate(tracing, otel_metrics, None)
            raise
        _activate(tracing, otel_metrics, prometheus)


def disable_telemetry() -> None:
    """Switch traces and metrics off (a no-op when they are off).

    Our metrics leave the Prometheus registry; OpenTelemetry instruments stay
    on their meter (a meter cannot drop them) but report nothing more.
    """
    global active
    with _lock:
        current, active = active, None
        if current is not None:
            current.close()
