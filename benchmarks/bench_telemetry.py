"""Telemetry: the full node with it off against the node before it, and on.

"Before" is this very package with the telemetry hooks taken out: its source,
parsed, every statement that reads the telemetry switch removed (`strip_hooks`),
written to a temporary directory and imported as ``resilient_nodes_before``.
So the off/before pair differs in exactly the hooks, whatever else changed in
the package since, and needs no git checkout.

Rows (floor: a bare ``await impl(state)``):

* before: the full node (``retry() | breaker() | timeout(30)``) without hooks;
* off: the same node, telemetry off (the default);
* OpenTelemetry on: the SDK's ``TracerProvider`` (a span per call, handed to a
  processor whose exporter drops it) and ``MeterProvider`` (an in-memory reader
  that is never collected);
* Prometheus on: a fresh ``CollectorRegistry``.

The switch is global, so each telemetry row sets it for its own blocks only.
A failure-path pair (one failure, then success) shows the retry hook too.
"""

from __future__ import annotations

import ast
import atexit
import importlib
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import resilient_nodes
from resilient_nodes import _telemetry, create_node

from ._common import STATE, flaky_impl, full_policy, impl
from ._timing import Case, Loop, call_loop

if TYPE_CHECKING:
    from types import ModuleType

SECTION = "telemetry"
BEFORE = "resilient_nodes_before"


def _mentions_telemetry(node: ast.AST) -> bool:
    """Whether *node* reads the telemetry switch or a call's trace."""
    for child in ast.walk(node):
        if isinstance(child, ast.Name) and "telemetry" in child.id:
            return True
        if isinstance(child, ast.Attribute) and child.attr == "trace":
            return True
    return False


class _StripHooks(ast.NodeTransformer):
    """Drops each statement of a hook: the switch read, its test, the watch call."""

    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        for field in ("body", "orelse", "finalbody"):
            body = getattr(node, field, None)
            if not isinstance(body, list) or not body or not isinstance(body[0], ast.stmt):
                continue
            kept = [stmt for stmt in body if not self._hook(stmt)]
            if not kept and field == "body":
                kept = [ast.Pass()]
            setattr(node, field, kept)
        return node

    @staticmethod
    def _hook(stmt: ast.stmt) -> bool:
        if isinstance(stmt, ast.If):
            return not stmt.orelse and _mentions_telemetry(stmt.test)
        if isinstance(stmt, ast.Assign | ast.AnnAssign | ast.Expr):
            return _mentions_telemetry(stmt)
        return False


def strip_hooks(source: str) -> str:
    """*source* without its telemetry hooks (comments and formatting are lost)."""
    tree = _StripHooks().visit(ast.parse(source))
    return ast.unparse(ast.fix_missing_locations(tree))


def _leftover(name: str, text: str) -> list[str]:
    """What in a stripped module still reads the telemetry (its imports aside)."""
    if name in {"_telemetry.py", "__init__.py"}:
        return []
    return sorted(
        {
            ast.unparse(node)
            for node in ast.walk(ast.parse(text))
            if isinstance(node, ast.Name | ast.Attribute) and _mentions_telemetry(node)
        }
    )


def before_package() -> ModuleType:
    """The package without its telemetry hooks, imported as ``resilient_nodes_before``."""
    loaded = sys.modules.get(BEFORE)
    if loaded is not None:
        return loaded
    source = Path(resilient_nodes.__file__).parent
    root = Path(tempfile.mkdtemp(prefix="rn-before-"))
    target = root / BEFORE
    target.mkdir()
    problems: list[str] = []
    for path in sorted(source.glob("*.py")):
        text = strip_hooks(path.read_text(encoding="utf-8"))
        problems += [f"{path.name}: {what}" for what in _leftover(path.name, text)]
        (target / path.name).write_text(text, encoding="utf-8")
    if problems:
        # A hook written another way would be measured on both sides: say so loudly.
        raise RuntimeError("telemetry hooks left in the 'before' package:\n" + "\n".join(problems))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    sys.path.insert(0, str(root))
    try:
        return importlib.import_module(BEFORE)
    finally:
        sys.path.remove(str(root))


def _switched(telemetry: Any, loop: Loop) -> Loop:
    """*loop* with *telemetry* switched on for its own blocks only."""

    async def switched(n: int) -> int:
        previous = _telemetry.active
        _telemetry.active = telemetry
        try:
            return await loop(n)
        finally:
            _telemetry.active = previous

    return switched


def _otel() -> Any:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class Dropping(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            del spans
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(Dropping()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return _telemetry.Telemetry(
        _telemetry._Tracing(tracer_provider), _telemetry._otel_metrics_for(meter_provider), None
    )


def _prometheus() -> Any:
    from prometheus_client import CollectorRegistry

    return _telemetry.Telemetry(None, None, _telemetry._PrometheusMetrics(CollectorRegistry()))


def floor() -> Case:
    return Case("tel_floor", "bare `await impl(state)` (FLOOR)", call_loop(impl, STATE))


def cases() -> list[Case]:
    """Off against before, alone in their group: the pair alternates with the floor only."""
    before = before_package()
    old_policy = before.Policy.retry() | before.Policy.breaker() | before.Policy.timeout(30)
    old = before.create_node(impl, name="bench_tel_before", policy=old_policy)
    node = create_node(impl, name="bench_tel", policy=full_policy())
    return [
        Case(
            "tel_before",
            "full node before telemetry (hooks stripped from the source)",
            call_loop(old, STATE),
        ),
        Case(
            "tel_off", "full node, telemetry off (the default)", call_loop(node, STATE), ours=True
        ),
    ]


def on_cases() -> list[Case]:
    """The node off, and with each backend on: what switching it on costs."""
    node = create_node(impl, name="bench_tel_on", policy=full_policy())
    return [
        Case("tel_on_off", "full node, telemetry off", call_loop(node, STATE), ours=True),
        Case(
            "tel_otel",
            "full node, OpenTelemetry on (SDK: span per call, metrics)",
            _switched(_otel(), call_loop(node, STATE)),
            ours=True,
        ),
        Case(
            "tel_prometheus",
            "full node, Prometheus on",
            _switched(_prometheus(), call_loop(node, STATE)),
            ours=True,
        ),
    ]


def failure_floor() -> Case:
    from ._common import by_hand

    return Case(
        "tel_fail_floor",
        "hand-written retry loop around `impl` (FLOOR)",
        call_loop(by_hand(flaky_impl()), STATE),
    )


def failure_cases() -> list[Case]:
    before = before_package()
    zero = before.Policy.retry(backoff=0, jitter=0, max_backoff=0)
    old_policy = zero | before.Policy.breaker() | before.Policy.timeout(30)
    old = before.create_node(flaky_impl(), name="bench_tel_fail_before", policy=old_policy)
    node = create_node(flaky_impl(), name="bench_tel_fail", policy=full_policy(zero_backoff=True))
    return [
        Case(
            "tel_fail_before",
            "full node before telemetry, one failure then success",
            call_loop(old, STATE),
        ),
        Case(
            "tel_fail_off",
            "full node, telemetry off, one failure then success",
            call_loop(node, STATE),
            ours=True,
        ),
    ]
