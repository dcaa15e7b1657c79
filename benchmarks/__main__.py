"""The benchmark suite: ``python -m benchmarks [--quick] [--out DIR]``.

Everything timed runs in this one process on asyncio, each variant bracketed by
its floor (see `benchmarks._timing`); memory and scale run in fresh interpreters.
Writes ``results.md``, ``results.json`` and PNG plots to ``--out`` (default:
``benchmarks/results`` for a full run, a temporary directory for ``--quick``) and
prints a summary with every target of issue 8 marked MET or NOT MET.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import (
    _report,
    bench_breaker,
    bench_memory,
    bench_pipeline,
    bench_retry,
    bench_scale,
    bench_timeout,
)
from ._common import Flaky, by_hand, configure_logging, f
from ._timing import Case, Result, call_loop, paired

RESULTS_DIR = Path(__file__).parent / "results"


@dataclasses.dataclass(frozen=True)
class Settings:
    target_s: float  # seconds per timed block
    repeats: int
    budget_s: float  # per group; repeats stop early past it (after 3)
    lg_target_s: float
    lg_repeats: int
    late_tries: int
    memory_n: int
    scale_sizes: tuple[int, ...]
    scale_small: int
    scale_large: int
    scale_rounds: int


FULL = Settings(
    target_s=0.04,
    repeats=21,
    budget_s=90,
    lg_target_s=0.08,
    lg_repeats=41,
    late_tries=200,
    memory_n=10_000,
    scale_sizes=(1_000, 10_000, 30_000, 100_000),
    scale_small=10_000,
    scale_large=100_000,
    scale_rounds=5,
)
QUICK = Settings(
    target_s=0.002,
    repeats=3,
    budget_s=5,
    lg_target_s=0.005,
    lg_repeats=3,
    late_tries=4,
    memory_n=300,
    scale_sizes=(500, 2_000),
    scale_small=500,
    scale_large=2_000,
    scale_rounds=1,
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
}


def _log(message: str) -> None:
    sys.stderr.write(f"[bench] {message}\n")
    sys.stderr.flush()


async def _timed_groups(s: Settings, only: set[str]) -> dict[str, list[Result]]:
    groups: dict[str, list[Result]] = {}
    common = {"repeats": s.repeats, "target_s": s.target_s, "budget_s": s.budget_s}
    if "success" in only:
        _log("success path: retry, breaker, timeout, pipeline")
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
        floor, cases = await bench_breaker.rejection_cases()
        groups["rejection"] = await paired("rejection", floor, cases, **common)
    if "node" in only:
        _log("full node")
        groups["node"] = await paired(
            "node", bench_pipeline.node_floor(), bench_pipeline.node_cases(), **common
        )
        groups["node_failure"] = await paired(
            "node_failure",
            bench_pipeline.node_failure_floor(),
            bench_pipeline.node_failure_cases(),
            **common,
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
        )
    return groups


def _get(groups: dict[str, list[Result]], group: str, key: str) -> Result | None:
    for r in groups.get(group, []):
        if r.key == key:
            return r
    return None


def _overhead_ratio(
    groups: dict[str, list[Result]], group: str, ours: str, peer: str
) -> float | None:
    a, b = _get(groups, group, ours), _get(groups, group, peer)
    if a is None or b is None or b.overhead_ns <= 0:
        return None
    return a.overhead_ns / b.overhead_ns


def _target(
    name: str, value: float | None, bar: float, fmt: str, detail: str = ""
) -> dict[str, Any]:
    if value is None:
        return {
            "name": name,
            "measured": "not measured",
            "bar": f"≤ {bar:g}",
            "met": False,
            "value": None,
        }
    measured = fmt.format(value) + (f" ({detail})" if detail else "")
    return {
        "name": name,
        "measured": measured,
        "bar": f"≤ {bar:g}",
        "met": value <= bar,
        "value": value,
    }


def _targets(
    groups: dict[str, list[Result]],
    late: dict[str, dict[str, float]] | None,
    memory: dict[str, dict[str, Any]] | None,
    scale: list[dict[str, Any]] | None,
    s: Settings,
) -> list[dict[str, Any]]:
    t = []

    def over(group: str, key: str) -> str:
        r = _get(groups, group, key)
        return "?" if r is None else f"{r.overhead_ns:,.0f} ns"

    v = _overhead_ratio(groups, "success", "pipeline_ours", "pipeline_naive")
    t.append(
        _target(
            "full pipeline success overhead / naive stack's",
            v,
            0.15,
            "{:.3f}x",
            f"{over('success', 'pipeline_ours')} vs {over('success', 'pipeline_naive')}",
        )
    )
    v = _overhead_ratio(groups, "node", "node_ours", "node_naive")
    t.append(
        _target(
            "full node success overhead / naive stack's (issue 6)",
            v,
            0.15,
            "{:.3f}x",
            f"{over('node', 'node_ours')} vs {over('node', 'node_naive')}",
        )
    )
    r = _get(groups, "success", "retry_ours")
    t.append(
        _target("retry layer success / bare await", None if r is None else r.ratio, 5, "{:.2f}x")
    )
    v = _overhead_ratio(groups, "failure", "fail_retry_ours", "fail_retry_tenacity")
    t.append(
        _target(
            "retry failure-path overhead / tenacity's",
            v,
            0.25,
            "{:.3f}x",
            f"{over('failure', 'fail_retry_ours')} vs {over('failure', 'fail_retry_tenacity')}",
        )
    )
    v = _overhead_ratio(groups, "success", "breaker_ours", "breaker_pybreaker")
    t.append(
        _target(
            "breaker success overhead / pybreaker calling()'s",
            v,
            0.5,
            "{:.3f}x",
            f"{over('success', 'breaker_ours')} vs {over('success', 'breaker_pybreaker')}",
        )
    )
    v = _overhead_ratio(groups, "rejection", "reject_ours", "reject_closed_ours")
    t.append(
        _target(
            "breaker rejection / our breaker success overhead",
            v,
            2,
            "{:.2f}x",
            f"{over('rejection', 'reject_ours')} vs {over('rejection', 'reject_closed_ours')}",
        )
    )
    v = _overhead_ratio(groups, "success", "timeout_ours", "timeout_fail_after")
    t.append(
        _target(
            "timeout success overhead / anyio.fail_after's",
            v,
            0.7,
            "{:.3f}x",
            f"{over('success', 'timeout_ours')} vs {over('success', 'timeout_fail_after')}",
        )
    )
    if late is not None:
        ours, fa = late["ours"]["p99"], late["anyio.fail_after"]["p99"]
        t.append(
            _target(
                "timeout p99 lateness / anyio.fail_after's",
                ours / fa,
                1.5,
                "{:.2f}x",
                f"{ours:.3f} ms vs {fa:.3f} ms",
            )
        )
    if memory is not None and "naive" in memory:
        ours, naive = memory["pipeline_ours"]["traced_wrapper"], memory["naive"]["traced_wrapper"]
        t.append(
            _target(
                "memory per in-flight full-pipeline call / naive stack's",
                ours / naive,
                0.4,
                "{:.3f}x",
                f"{ours:,.0f} B vs {naive:,.0f} B over a bare parked task",
            )
        )
    r = _get(groups, "langgraph", "lg_ours")
    ref = _get(groups, "langgraph", "lg_asyncio_timeout")
    detail = "" if r is None else f"pairs {r.ratio_min:.3f}-{r.ratio_max:.3f}"
    if r is not None and ref is not None:
        detail += f"; `asyncio.timeout` alone {ref.ratio:.3f}x"
    t.append(
        _target(
            "full node inside a 1-node LangGraph graph / plain node",
            None if r is None else r.ratio,
            1.03,
            "{:.3f}x",
            detail,
        )
    )
    if scale:
        by_n = {row["n"]: row for row in scale}
        small, large = by_n.get(s.scale_small), by_n.get(s.scale_large)
        if small is not None:
            t.append(
                _target(
                    f"{small['n']:,} concurrent node calls: wall / unwrapped",
                    small["ratio"],
                    1.5,
                    "{:.2f}x",
                    f"{small['node_s']:.3f} s vs {small['bare_s']:.3f} s; "
                    f"`asyncio.timeout` alone {small['timeout_ref_ratio']:.2f}x"
                    + (
                        ""
                        if small.get("naive_ratio") is None
                        else f", naive stack {small['naive_ratio']:.2f}x"
                    ),
                )
            )
        if small is not None and large is not None:
            v = large["node_us_per_call"] / small["node_us_per_call"]
            t.append(
                _target(
                    f"node cost per call at {large['n']:,} / at {small['n']:,}",
                    v,
                    1.5,
                    "{:.2f}x",
                    f"{large['node_us_per_call']:.1f} µs vs {small['node_us_per_call']:.1f} µs",
                )
            )
    return t


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
    s: Settings,
    quick: bool,
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
            "Every timed variant runs in this one process and is bracketed by its floor: each repeat runs "
            "floor, variant 1, floor, variant 2, ... floor, and a variant's ratio for that repeat is its "
            "time per call over the mean of the floor blocks just before and after it. Tables give the "
            "median of those per-pair ratios and their min-max; overhead = (ratio - 1) x the floor's median "
            f"time per call. Variant order rotates between repeats. Blocks of about {s.target_s * 1000:g} ms "
            f"({s.lg_target_s * 1000:g} ms for LangGraph), up to {s.repeats} repeats ({s.lg_repeats} for "
            "LangGraph); calls run in chunks of 500 with an untimed `asyncio.sleep(0)` between chunks so the "
            "loop purges cancelled deadline timers, as it would in an application. Ours are in **bold**."
        ),
        "",
        "## Targets (issue 8)",
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
    }
    notes = {
        "failure": "The floor is a hand-written `try/except` retry with one `await asyncio.sleep(0)` between "
        "attempts (every library yields to the loop once before retrying). For the layers that do not "
        "retry (breaker, timeout) the caller retries by hand, the same way.",
        "rejection": "Floor: a bare call inside the `try/except` the rejecting loops need. The closed-breaker row "
        "runs in the same `try/except`, so rejection and admission overheads are comparable.",
        "langgraph": "Each variant's ratio is to the plain graph (node = `impl`) timed just before and after it.",
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
        lines += [
            "## Scale: N concurrent calls, each awaiting `anyio.sleep(0.01)`",
            "",
            (
                f"Wall time: unwrapped `impl(state)`, the full node and two references (`impl` under "
                f"`asyncio.timeout(30)` alone; the naive stack up to {bench_scale.NAIVE_MAX:,} calls) run in one "
                f"interpreter in rotating order, median of {s.scale_rounds} rounds each (`asyncio.TaskGroup`, spawn "
                "to last finish). Peak memory: tracemalloc peak over one round, each variant in a fresh interpreter."
            ),
            "",
            "| N | unwrapped wall | node wall | **node / unwrapped** | `asyncio.timeout` alone / unwrapped | naive stack / unwrapped | unwrapped µs/call | node µs/call | unwrapped peak B/call (tracemalloc) | node peak B/call (tracemalloc) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in scale:
            naive = "—" if row.get("naive_ratio") is None else f"{row['naive_ratio']:.2f}x"
            lines.append(
                f"| {row['n']:,} | {row['bare_s']:.3f} s | {row['node_s']:.3f} s | **{row['ratio']:.2f}x** | "
                f"{row['timeout_ref_ratio']:.2f}x | {naive} | "
                f"{row['bare_us_per_call']:.1f} | {row['node_us_per_call']:.1f} | "
                f"{row['bare_peak_per_call']:,.0f} | {row['node_peak_per_call']:,.0f} |"
            )
        lines.append("")
    lines += [
        "## Plots",
        "",
        "- `overhead.png`: overhead per call over the floor, per variant and group (log scale).",
        "- `concurrency.png`: wall time per call and peak memory per call against concurrency.",
        "- `memory.png`: wrapper bytes per parked in-flight call.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke mode: tiny counts, under a minute"
    )
    parser.add_argument("--out", type=Path, default=None, help="output directory")
    sections = (
        "success",
        "failure",
        "rejection",
        "node",
        "langgraph",
        "lateness",
        "memory",
        "scale",
    )
    parser.add_argument(
        "--only", action="append", choices=sections, help="run only these sections (repeatable)"
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    args = parser.parse_args(argv)

    s = QUICK if args.quick else FULL
    only = set(args.only or sections)
    out = args.out or (Path(tempfile.mkdtemp(prefix="rn-bench-")) if args.quick else RESULTS_DIR)
    out.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python -m benchmarks", *(sys.argv[1:] if argv is None else argv)])
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()

    configure_logging()

    async def timed() -> tuple[dict[str, list[Result]], dict[str, dict[str, float]] | None]:
        groups = await _timed_groups(s, only)
        late = None
        if "lateness" in only:
            _log("timeout lateness")
            late = await bench_timeout.lateness(s.late_tries)
        return groups, late

    groups, late = asyncio.run(timed())
    memory = None
    if "memory" in only:
        _log(f"memory: {s.memory_n:,} parked calls per variant, one interpreter each")
        memory = bench_memory.measure(list(bench_memory.VARIANTS), s.memory_n)
    scale = None
    if "scale" in only:
        _log(f"scale: {', '.join(f'{n:,}' for n in s.scale_sizes)} concurrent node calls")
        scale = bench_scale.measure(list(s.scale_sizes), s.scale_rounds)

    elapsed = time.monotonic() - t0
    env = _report.environment()
    targets = _targets(groups, late, memory, scale, s)
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
        s=s,
        quick=args.quick,
    )
    (out / "results.md").write_text(md, encoding="utf-8")
    raw = {
        "command": command,
        "started": started.isoformat(),
        "elapsed_s": elapsed,
        "environment": env,
        "targets": targets,
        "groups": {g: [dataclasses.asdict(r) for r in rs] for g, rs in groups.items()},
        "lateness": late,
        "memory": memory,
        "scale": scale,
    }
    (out / "results.json").write_text(json.dumps(raw, indent=1, default=str), encoding="utf-8")
    if not args.no_plots:
        if groups:
            _report.plot_overhead(groups, out / "overhead.png")
        if scale:
            _report.plot_concurrency(scale, out / "concurrency.png")
        if memory:
            _report.plot_memory(memory, out / "memory.png")
    sys.stdout.write(_report.console_summary(targets, groups) + "\n")
    sys.stdout.write(f"\nwrote {out / 'results.md'} ({elapsed:.0f} s)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
