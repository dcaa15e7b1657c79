"""The benchmark suite: ``python -m benchmarks [--quick] [--only SECTION] [--out DIR]``.

Everything timed runs in this one process on asyncio, each variant bracketed by
its floor (see `benchmarks._timing`); memory, scale and redis run in fresh
interpreters. Writes ``results.md``, ``results.json`` and PNG plots to ``--out``
(default: ``benchmarks/results`` for a full run, a temporary directory for
``--quick``) and prints a summary with every performance target (see
`benchmarks._targets`) marked MET or NOT MET.

Nothing outside the standard library is imported before the arguments are parsed
and every section's dependencies are known to be there, so ``--help`` works
anywhere and a missing peer is named, with the command that installs it, before
any time is spent.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import importlib.util
import json
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from . import _report, _targets
from ._timing import Case, Result, call_loop, paired

RESULTS_DIR = Path(__file__).parent / "results"


@dataclasses.dataclass(frozen=True)
class Settings:
    target_s: float  # seconds per timed block
    repeats: int
    warm_calls: int  # untimed calls per variant before its block size is calibrated
    budget_s: float  # per group; repeats stop early past it (after 3)
    lg_target_s: float
    lg_repeats: int
    late_tries: int
    memory_n: int
    scale_sizes: tuple[int, ...]
    scale_small: int
    scale_large: int
    scale_rounds: int
    redis_calls: int
    redis_repeats: int


FULL = Settings(
    target_s=0.04,
    repeats=21,
    warm_calls=2_000,
    budget_s=90,
    lg_target_s=0.08,
    lg_repeats=41,
    late_tries=200,
    memory_n=10_000,
    scale_sizes=(1_000, 10_000, 30_000, 100_000),
    scale_small=10_000,
    scale_large=100_000,
    scale_rounds=5,
    redis_calls=2_000,
    redis_repeats=5,
)
QUICK = Settings(
    target_s=0.002,
    repeats=3,
    warm_calls=20,
    budget_s=5,
    lg_target_s=0.005,
    lg_repeats=3,
    late_tries=4,
    memory_n=300,
    scale_sizes=(500, 2_000),
    scale_small=500,
    scale_large=2_000,
    scale_rounds=1,
    redis_calls=100,
    redis_repeats=1,
)

SECTIONS = {
    "success": "success path of each layer, ours and the peers",
    "failure": "one failure then success, zero backoff",
    "rejection": "breaker rejection while open",
    "node": "the full node against the naive stack",
    "langgraph": "one-node LangGraph graphs",
    "lateness": "how late a timeout fires",
    "memory": "memory per in-flight call (an interpreter per variant)",
    "scale": "N concurrent node calls (an interpreter per size)",
    "redis": "breaker state on Redis: starts its own redis-server on 127.0.0.1, "
    "skipped with a note where none is installed",
    "llm": "fallback against LangChain's with_fallbacks, stream per-item cost against "
    "a hand-written fail_after, time to cut a stalled stream",
    "load": "load control: bulkhead and in-process rate limit against their peers; "
    "round trips of a Redis-shared rate limit (its own redis-server, where installed)",
    "telemetry": "the full node with telemetry off against the node without its hooks; "
    "with OpenTelemetry and with Prometheus on",
}

# Modules every section imports (the package and its own dependencies), then what
# each section needs beyond them. The bench dependency group brings them all.
BASE_MODULES = ("resilient_nodes", "anyio", "pybreaker", "structlog", "tenacity")
SECTION_MODULES = {
    "success": ("backoff", "stamina"),
    "failure": ("backoff", "stamina"),
    "langgraph": ("langgraph",),
    "redis": ("redis",),
    "llm": ("langchain_core",),
    "load": ("aiolimiter", "langchain_core", "redis"),
    "telemetry": ("opentelemetry.sdk", "prometheus_client"),
}
PLOT_MODULES = ("matplotlib",)

INSTALL_HINT = (
    "Install the bench dependencies from the repository root with\n"
    "    python3 -m pip install -e . --group bench\n"
    "(--group needs pip 25.1 or newer; upgrade with: python3 -m pip install -U pip),\n"
    "or run the suite through tox: python3 -m tox -e bench"
)
QUICK_NOTE = (
    "--quick is a smoke run, not evidence: its counts are too small for the figures "
    "to mean anything, so its MET / NOT MET says nothing about the targets. "
    "The full run (no --quick) is what the figures come from."
)

# For each of our variants, the peer its overhead is compared with in the tables.
PEERS = {
    "retry_ours": "retry_tenacity",
    "breaker_ours": "breaker_pybreaker",
    "timeout_ours": "timeout_fail_after",
    "pipeline_ours": "pipeline_naive",
    "fail_retry_ours": "fail_retry_tenacity",
    "fail_breaker_ours": "fail_breaker_pybreaker",
    "fail_timeout_ours": "fail_timeout_fail_after",
    "fail_pipeline_ours": "fail_pipeline_naive",
    "node_ours": "node_naive",
    "node_shell": "node_naive",
    "fail_node_ours": "fail_node_naive",
    "reject_ours": "reject_pybreaker",
    "lg_ours": "lg_naive",
    "lg_shell": "lg_naive",
    "fallback_ours": "fallback_langchain",
    "stream_ready_ours": "stream_ready_fail_after",
    "stream_yielding_ours": "stream_yielding_fail_after",
    "bulkhead_ours": "bulkhead_limiter",
    "rate_limit_ours": "rate_limit_aiolimiter",
    "tel_off": "tel_before",
    "tel_otel": "tel_on_off",
    "tel_prometheus": "tel_on_off",
    "tel_fail_off": "tel_fail_before",
}


def _missing(modules: tuple[str, ...]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def missing_dependencies(only: set[str], *, plots: bool) -> dict[str, list[str]]:
    """For each module the chosen sections need but cannot import, the sections needing it."""
    needs: dict[str, list[str]] = {}
    for section in SECTIONS:
        if section not in only:
            continue
        for module in _missing(BASE_MODULES + SECTION_MODULES.get(section, ())):
            needs.setdefault(module, []).append(section)
    if plots:
        for module in _missing(PLOT_MODULES):
            needs.setdefault(module, []).append("the plots")
    return needs


def missing_message(needs: dict[str, list[str]]) -> str:
    lines = ["python -m benchmarks: not installed here, so nothing was run:"]
    lines += [f"  {module} (needed by: {', '.join(users)})" for module, users in needs.items()]
    lines += [
        "",
        INSTALL_HINT,
        "Or leave those sections out with --only SECTION"
        + (" and the plots with --no-plots." if "matplotlib" in needs else "."),
    ]
    return "\n".join(lines)


def _log(message: str) -> None:
    sys.stderr.write(f"[bench] {message}\n")
    sys.stderr.flush()


async def _timed_groups(s: Settings, only: set[str]) -> dict[str, list[Result]]:
    groups: dict[str, list[Result]] = {}
    common = {
        "repeats": s.repeats,
        "target_s": s.target_s,
        "budget_s": s.budget_s,
        "warm_calls": s.warm_calls,
    }
    if "success" in only:
        _log("success path: retry, breaker, timeout, pipeline")
        from . import bench_breaker, bench_pipeline, bench_retry, bench_timeout
        from ._common import f

        floor = Case("floor", "bare `await f(x)` (FLOOR)", call_loop(f))
        cases = [
            *bench_retry.success_cases(),
            *bench_breaker.success_cases(),
            *bench_timeout.success_cases(),
            *bench_pipeline.success_cases(),
        ]
        groups["success"] = await paired("success", floor, cases, **common)
    if "failure" in only:
        _log("failure path: one failure then success, zero backoff")
        from . import bench_breaker, bench_pipeline, bench_retry, bench_timeout
        from ._common import Flaky, by_hand

        floor = Case(
            "fail_floor",
            "hand-written retry loop with `sleep(0)` (FLOOR)",
            call_loop(by_hand(Flaky())),
        )
        cases = [
            *bench_retry.failure_cases(),
            *bench_breaker.failure_cases(),
            *bench_timeout.failure_cases(),
            *bench_pipeline.failure_cases(),
        ]
        groups["failure"] = await paired("failure", floor, cases, **common)
    if "rejection" in only:
        _log("breaker rejection")
        from . import bench_breaker

        floor, cases = await bench_breaker.rejection_cases()
        groups["rejection"] = await paired("rejection", floor, cases, **common)
    if "node" in only:
        _log("full node")
        from . import bench_pipeline

        groups["node"] = await paired(
            "node", bench_pipeline.node_floor(), bench_pipeline.node_cases(), **common
        )
        groups["node_failure"] = await paired(
            "node_failure",
            bench_pipeline.node_failure_floor(),
            bench_pipeline.node_failure_cases(),
            **common,
        )
    if "load" in only:
        _log("load control: bulkhead, rate limit")
        from . import bench_load
        from ._common import f

        floor = Case("load_floor", "bare `await f(x)` (FLOOR)", call_loop(f))
        groups["load"] = await paired("load", floor, bench_load.cases(), **common)
    if "telemetry" in only:
        _log("telemetry: off against before, on")
        from . import bench_telemetry

        # Its target is a 3 % bar on a shared, noisy machine: three times the repeats.
        tel = {**common, "repeats": s.repeats * 3, "budget_s": s.budget_s * 2}
        groups["telemetry"] = await paired(
            "telemetry", bench_telemetry.floor(), bench_telemetry.cases(), **tel
        )
        groups["telemetry_on"] = await paired(
            "telemetry_on",
            bench_telemetry.floor(),
            bench_telemetry.on_cases(),
            **common,
        )
        groups["telemetry_failure"] = await paired(
            "telemetry_failure",
            bench_telemetry.failure_floor(),
            bench_telemetry.failure_cases(),
            **tel,
        )
    if "langgraph" in only:
        _log("one-node LangGraph graphs")
        from . import bench_langgraph

        groups["langgraph"] = await paired(
            "langgraph",
            bench_langgraph.floor(),
            bench_langgraph.cases(),
            repeats=s.lg_repeats,
            target_s=s.lg_target_s,
            budget_s=s.budget_s * 2,
            floor_n=5,
            warm_calls=s.warm_calls // 10,
        )
    if "llm" in only:
        _log("strategies for LLM calls: fallback, stream per item")
        from . import bench_llm

        groups["llm_fallback"] = await paired(
            "llm_fallback", bench_llm.fallback_floor(), bench_llm.fallback_cases(), **common
        )
        for kind in ("ready", "yielding"):
            groups[f"llm_stream_{kind}"] = await paired(
                f"llm_stream_{kind}",
                bench_llm.stream_floor(kind),
                bench_llm.stream_cases(kind),
                **common,
            )
    return groups


def _llm_markdown(llm: dict[str, Any]) -> list[str]:
    from . import bench_llm

    lines = [
        f"## Cutting a stalled stream (`Policy.stream(idle={bench_llm.STALL_IDLE:g})`)",
        "",
        (
            "A stream delivers one item, then goes silent. Time from its last item to the caller "
            "catching `NodeStreamInterruptedError`, minus the idle bound, in ms (the cut includes "
            "closing the stream and logging `stream.stalled` and `stream.interrupted`)."
        ),
        "",
        "| backend | tries | median ms | p90 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for backend, row in llm["stall"].items():
        lines.append(
            f"| {backend} | {row['n']} | {row['median']:.3f} | {row['p90']:.3f} | "
            f"{row['p99']:.3f} | {row['max']:.3f} |"
        )
    trio_row = llm.get("trio_per_item")
    if trio_row is not None:
        lines += [
            "",
            (
                "On trio (a native cancel scope per item; not paired, best of interleaved blocks, "
                f"items that yield to the loop): bare {trio_row['bare_ns']:,.0f} ns per item, "
                f"`fail_after` +{trio_row['fail_after_overhead_ns']:,.0f} ns, "
                f"ours +{trio_row['ours_overhead_ns']:,.0f} ns ({trio_row['ratio']:.2f}x)."
            ),
        ]
    lines.append("")
    return lines


def _markdown(
    *,
    command: str,
    started: dt.datetime,
    elapsed: float,
    env: dict[str, Any],
    targets: list[dict[str, Any]],
    groups: dict[str, list[Result]],
    late: dict[str, dict[str, float]] | None,
    memory: dict[str, dict[str, Any]] | None,
    scale: list[dict[str, Any]] | None,
    redis: dict[str, Any] | None,
    s: Settings,
    quick: bool,
    llm: dict[str, Any] | None = None,
) -> str:
    lines = [
        "# resilient_nodes benchmark results",
        "",
        f"Produced by `{command}` on {started:%Y-%m-%d %H:%M} UTC in {elapsed:.0f} s"
        + (
            " (**quick smoke mode: counts too small for the figures to mean anything**)"
            if quick
            else ""
        )
        + ".",
        "",
        "## Machine and versions",
        "",
        f"- Python {env['python']} ({env['implementation']}), {env['platform']}",
        f"- {env['cores']} cores, CPU: {env['cpu']} (shared and noisy: read ratios, not absolute times)",
        (
            "- Event loop: asyncio (default selector loop); structlog filtered to warnings "
            "(`make_filtering_bound_logger(logging.WARNING)`, JSON renderer into a ReturnLogger)"
        ),
        "- " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
        "",
        "## Method",
        "",
        (
            f"Every timed variant runs in this one process, first {s.warm_calls:,} calls untimed (so cold "
            "first calls do not size its blocks), and is bracketed by its floor: each repeat runs "
            "floor, variant 1, floor, variant 2, ... floor, and a variant's ratio for that repeat is its "
            "time per call over the mean of the floor blocks just before and after it. Tables give the "
            "median of those per-pair ratios and their min-max; overhead = (ratio - 1) x the floor's median "
            f"time per call. Variant order rotates between repeats. Blocks of about {s.target_s * 1000:g} ms "
            f"({s.lg_target_s * 1000:g} ms for LangGraph), up to {s.repeats} repeats ({s.lg_repeats} for "
            "LangGraph); calls run in chunks of 500 with an untimed `asyncio.sleep(0)` between chunks so the "
            "loop purges cancelled deadline timers, as it would in an application. Ours are in **bold**."
        ),
        "",
        "## Targets",
        "",
        *([f"**{QUICK_NOTE}**", ""] if quick else []),
        (
            "Each target compares ours with a reference timed in the same run. Informational rows (no bar) "
            "put a target in context. The LangGraph target is the median over repeats of the full node's "
            "ratio to the plain graph over the bare-`fail_after` graph's ratio in the same repeat; the scale "
            "target divides the node's wall ratio to the unwrapped calls by a bare `fail_after`'s, timed in "
            "the same interpreter."
        ),
        "",
        *_report.targets_table(targets),
        "",
    ]
    titles = {
        "success": "Success path: `await wrapped(x)`, the function returns at once",
        "failure": "Failure path: one `ConnectionError`, then success, zero backoff",
        "rejection": "Breaker rejection (circuit open, an hour to recovery)",
        "node": "Full node: `await node(state)` against `await impl(state)`",
        "node_failure": "Full node, failure path: one failure then success, zero backoff",
        "langgraph": "Inside LangGraph: `await graph.ainvoke(state)`, one-node graph",
        "llm_fallback": "Fallback, success path: the primary returns at once",
        "llm_stream_ready": "Stream, per item: items ready (one network read's tokens)",
        "llm_stream_yielding": "Stream, per item: each item yields to the event loop first",
        "load": "Load control, admitted at once: `await wrapped(x)`",
        "telemetry": "Telemetry: the full node with it off, against the node before it",
        "telemetry_on": "Telemetry on: the full node with OpenTelemetry, with Prometheus",
        "telemetry_failure": "Telemetry, failure path: one failure then success, zero backoff",
    }
    notes = {
        "failure": "The floor is a hand-written `try/except` retry with one `await asyncio.sleep(0)` between "
        "attempts (every library yields to the loop once before retrying). For the layers that do not "
        "retry (breaker, timeout) the caller retries by hand, the same way.",
        "rejection": "Floor: a bare call inside the `try/except` the rejecting loops need. The closed-breaker row "
        "runs in the same `try/except`, so rejection and admission overheads are comparable.",
        "langgraph": "Each variant's ratio is to the plain graph (node = `impl`) timed just before and after it. "
        "The full node is held to the graph whose node is `impl` under a bare `anyio.fail_after(30)`.",
        "llm_stream_ready": "A call is one item: blocks iterate new streams of up to 500 items, so "
        "opening a stream is spread over its items.",
        "llm_stream_yielding": "As above; each item of the source awaits `asyncio.sleep(0)` first, so "
        "every item's wait reaches the event loop (where a bound has work to do).",
        "telemetry": "Before: this package with every telemetry hook stripped from its source "
        "(`benchmarks/bench_telemetry.py`), so the pair differs in the hooks alone.",
        "telemetry_on": "OpenTelemetry on: the SDK's providers, a span per call handed to an exporter "
        "that drops it, metrics into an in-memory reader. Prometheus on: a fresh `CollectorRegistry`.",
    }
    for group, results in groups.items():
        lines += [f"## {titles.get(group, group)}", ""]
        if group in notes:
            lines += [notes[group], ""]
        lines += [*_report.result_table(results, peers=PEERS), ""]
    if late is not None:
        lines += [
            "## Timeout lateness (50 ms deadline around a 1 s sleep, interleaved)",
            "",
            (
                "Time from the deadline to the caller catching the timeout error. Ours includes building the "
                "`NodeTimeoutError` and logging `node.timed_out` (rendered to JSON)."
            ),
            "",
            "| scope | tries | median ms | p90 ms | p99 ms | max ms |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, row in late.items():
            label = f"**{name}**" if name == "ours" else name
            lines.append(
                f"| {label} | {row['n']} | {row['median']:.3f} | {row['p90']:.3f} | {row['p99']:.3f} | {row['max']:.3f} |"
            )
        lines.append("")
    if memory is not None:
        lines += [
            f"## Memory per in-flight call ({s.memory_n:,} concurrent calls parked on one `anyio.Event`)",
            "",
            (
                "Each variant in a fresh interpreter after a warm-up round. tracemalloc: live Python bytes while "
                "all are parked (after `gc.collect()`); RSS: resident-set growth, separate round without tracing. "
                "Wrapper bytes subtract the bare parked task."
            ),
            "",
            "| variant | tracemalloc B/call | wrapper B (tracemalloc) | RSS B/call | wrapper B (RSS) |",
            "|---|---:|---:|---:|---:|",
        ]
        for row in memory.values():
            label = f"**{row['label']}**" if row["variant"].endswith("_ours") else row["label"]
            lines.append(
                f"| {label} | {row['traced_per_call']:,.0f} | {row.get('traced_wrapper', 0):,.0f} | "
                f"{row['rss_per_call']:,.0f} | {row.get('rss_wrapper', 0):,.0f} |"
            )
        lines.append("")
    if scale:
        from . import bench_scale

        lines += [
            "## Scale: N concurrent calls, each awaiting `anyio.sleep(0.01)`",
            "",
            (
                f"Wall time: unwrapped `impl(state)`, the full node and three references (`impl` under a bare "
                f"`anyio.fail_after(30)`, under `asyncio.timeout(30)` alone, and the naive stack up to "
                f"{bench_scale.NAIVE_MAX:,} calls) run in one interpreter in rotating order, median over "
                f"{s.scale_rounds} round(s) each (`asyncio.TaskGroup`, spawn to last finish). Peak memory: "
                "tracemalloc peak over one round, each variant in a fresh interpreter."
            ),
            "",
            "| N | unwrapped wall | node wall | node / unwrapped | `fail_after` alone / unwrapped | **node's / `fail_after`'s** | `asyncio.timeout` alone / unwrapped | naive stack / unwrapped | unwrapped µs/call | node µs/call | unwrapped peak B/call (tracemalloc) | node peak B/call (tracemalloc) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in scale:
            naive = "—" if row.get("naive_ratio") is None else f"{row['naive_ratio']:.2f}x"
            lines.append(
                f"| {row['n']:,} | {row['bare_s']:.3f} s | {row['node_s']:.3f} s | {row['ratio']:.2f}x | "
                f"{row['fail_after_ref_ratio']:.2f}x | **{row['ratio'] / row['fail_after_ref_ratio']:.2f}x** | "
                f"{row['timeout_ref_ratio']:.2f}x | {naive} | "
                f"{row['bare_us_per_call']:.1f} | {row['node_us_per_call']:.1f} | "
                f"{row['bare_peak_per_call']:,.0f} | {row['node_peak_per_call']:,.0f} |"
            )
        lines.append("")
    if redis is not None:
        lines += _redis_markdown(redis, s)
    if llm is not None:
        lines += _llm_markdown(llm)
    lines += [
        "## Plots",
        "",
        "- `overhead.png`: overhead per call over the floor, per variant and group (log scale).",
        "- `concurrency.png`: wall time per call and peak memory per call against concurrency.",
        "- `memory.png`: wrapper bytes per parked in-flight call.",
        "",
    ]
    return "\n".join(lines)


def _redis_markdown(redis: dict[str, Any], s: Settings) -> list[str]:
    lines = ["## Breaker state on Redis: ours against pybreaker's `CircuitRedisStorage`", ""]
    if "skipped" in redis:
        return [*lines, f"Not measured: {redis['skipped']}.", ""]
    lines += [
        (
            "A trivial sync function that succeeds, behind `wrap_breaker` with the in-process storage, with "
            "our `RedisBreakerStorage` (a local mirror refreshed every 0.5 s), and behind pybreaker's "
            "`breaker.call` on its own Redis storage. A fresh interpreter starts its own redis-server on "
            f"127.0.0.1; {redis['calls']:,} calls per block, interleaved repeats (up to {s.redis_repeats}), "
            "median per call. Round trips counted at `Connection.send_packed_command`, every thread included."
        ),
        "",
        "| variant | µs per call | round trips per call | vs pybreaker | repeats |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in redis["rows"]:
        label = f"**{row['variant']}**" if row["variant"].startswith("ours") else row["variant"]
        lines.append(
            f"| {label} | {row['us_per_call']:.2f} | {row['round_trips_per_call']:.4f} | "
            f"{row['vs_pybreaker']:.4f}x | {row['repeats']} |"
        )
    lines += [
        "",
        (
            f"Ours, idle: {redis['refresh_round_trips_per_s']} round trips per second (the mirror's "
            "refresh), whatever the call rate."
        ),
        "",
    ]
    return lines


def _parser() -> argparse.ArgumentParser:
    width = max(len(name) for name in SECTIONS)
    sections = "\n".join(
        textwrap.fill(
            f"{name:<{width}}  {text}",
            width=79,
            initial_indent="  ",
            subsequent_indent=" " * (width + 4),
        )
        for name, text in SECTIONS.items()
    )
    epilog = "\n\n".join(
        [
            "sections (all run by default):\n" + sections,
            textwrap.fill(
                "A full run writes results.md, results.json and PNG plots to benchmarks/results "
                "and takes several minutes; run it on a quiet machine. " + QUICK_NOTE,
                width=79,
            ),
            INSTALL_HINT,
        ]
    )
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=textwrap.fill(
            "Time resilient_nodes against its peers (tenacity, stamina, backoff, pybreaker, "
            "anyio.fail_after, asyncio.timeout, LangGraph) and check every performance target.",
            width=79,
        ),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: tiny counts, under a minute; its figures are not evidence",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="output directory (default: benchmarks/results; a temporary one with --quick)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=list(SECTIONS),
        metavar="SECTION",
        help="run only this section (repeatable; sections below)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    s = QUICK if args.quick else FULL
    only = set(args.only or SECTIONS)
    needs = missing_dependencies(only, plots=not args.no_plots)
    if needs:
        sys.stderr.write(missing_message(needs) + "\n")
        return 2

    from ._common import configure_logging

    out = args.out or (Path(tempfile.mkdtemp(prefix="rn-bench-")) if args.quick else RESULTS_DIR)
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python -m benchmarks", *(sys.argv[1:] if argv is None else argv)])
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()

    configure_logging()

    async def timed() -> tuple[
        dict[str, list[Result]], dict[str, dict[str, float]] | None, dict[str, Any] | None
    ]:
        groups = await _timed_groups(s, only)
        late = None
        if "lateness" in only:
            _log("timeout lateness")
            from . import bench_timeout

            late = await bench_timeout.lateness(s.late_tries)
        stall = None
        if "llm" in only:
            _log("stalled stream cut")
            from . import bench_llm

            stall = await bench_llm.stall_cut(s.late_tries)
        return groups, late, stall

    groups, late, stall = asyncio.run(timed())
    llm = None
    if stall is not None:
        from . import bench_llm

        _log("stalled stream cut and per-item cost on trio")
        trio_cut = bench_llm.stall_cut_trio(s.late_tries)
        if trio_cut is not None:
            stall["trio"] = trio_cut
        llm = {
            "stall": stall,
            "trio_per_item": bench_llm.trio_per_item(500, max(3, s.repeats)),
        }
    memory = None
    if "memory" in only:
        _log(f"memory: {s.memory_n:,} parked calls per variant, one interpreter each")
        from . import bench_memory

        memory = bench_memory.measure(list(bench_memory.VARIANTS), s.memory_n)
    scale = None
    if "scale" in only:
        _log(f"scale: {', '.join(f'{n:,}' for n in s.scale_sizes)} concurrent node calls")
        from . import bench_scale

        scale = bench_scale.measure(list(s.scale_sizes), s.scale_rounds)
    redis = None
    if "redis" in only:
        from . import bench_redis

        reason = bench_redis.server_missing()
        if reason is None:
            _log("redis: breaker storage on a redis-server of our own")
            redis = bench_redis.run(s.redis_calls, s.redis_repeats)
        else:
            _log(f"redis: {reason}")
            redis = {"skipped": reason}

    load_redis = None
    if "load" in only:
        from . import bench_load, bench_redis

        if bench_redis.server_missing() is None:
            _log("load: a rate limit shared on a redis-server of our own")
            load_redis = bench_load.redis_round_trips(s.redis_calls)

    elapsed = time.monotonic() - t0
    env = _report.environment()
    targets = _targets.evaluate(
        groups,
        late,
        memory,
        scale,
        scale_small=s.scale_small,
        scale_large=s.scale_large,
        llm=llm,
        load_redis=load_redis,
    )
    md = _markdown(
        command=command,
        started=started,
        elapsed=elapsed,
        env=env,
        targets=targets,
        groups=groups,
        late=late,
        memory=memory,
        scale=scale,
        redis=redis,
        s=s,
        quick=args.quick,
        llm=llm,
    )
    (out / "results.md").write_text(md, encoding="utf-8")
    raw = {
        "command": command,
        "started": started.isoformat(),
        "elapsed_s": elapsed,
        "quick": args.quick,
        "environment": env,
        "targets": targets,
        "groups": {g: [dataclasses.asdict(r) for r in rs] for g, rs in groups.items()},
        "lateness": late,
        "memory": memory,
        "scale": scale,
        "redis": redis,
        "llm": llm,
        "load_redis": load_redis,
    }
    (out / "results.json").write_text(json.dumps(raw, indent=1, default=str), encoding="utf-8")
    if not args.no_plots:
        if groups:
            _report.plot_overhead(groups, out / "overhead.png")
        if scale:
            _report.plot_concurrency(scale, out / "concurrency.png")
        if memory:
            _report.plot_memory(memory, out / "memory.png")
    sys.stdout.write(
        _report.console_summary(targets, groups, quick_note=QUICK_NOTE if args.quick else None)
        + "\n"
    )
    if redis is not None and "skipped" in redis:
        sys.stdout.write(f"\nredis: {redis['skipped']}\n")
    sys.stdout.write(f"\nwrote {out / 'results.md'} ({elapsed:.0f} s)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
