"""Environment notes, the Markdown results file, the console summary and the plots."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import textwrap
from typing import TYPE_CHECKING, Any

from . import _targets

if TYPE_CHECKING:
    from pathlib import Path

    from ._timing import Result

PACKAGES = (
    "resilient-nodes",
    "tenacity",
    "stamina",
    "backoff",
    "pybreaker",
    "anyio",
    "trio",
    "langgraph",
    "langchain-core",
    "structlog",
    "attrs",
    "cattrs",
    "matplotlib",
)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:  # noqa: PTH123
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def environment() -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {
        "python": sys.version.replace("\n", " "),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cores": os.cpu_count(),
        "cpu": cpu_model(),
        "versions": versions,
    }


def _ns(value: float) -> str:
    if abs(value) >= 100_000:
        return f"{value / 1000:,.0f} µs"
    if abs(value) >= 10_000:
        return f"{value / 1000:,.1f} µs"
    return f"{value:,.0f} ns"


def _ratio(r: Result) -> str:
    if r.is_floor:
        return "1.00x (floor)"
    return f"{r.ratio:.2f}x ({r.ratio_min:.2f}-{r.ratio_max:.2f})"


def result_table(results: list[Result], *, peers: dict[str, str] | None = None) -> list[str]:
    """Rows: variant, ns/call, ratio to floor (min-max of pairs), overhead, vs peer."""
    by_key = {r.key: r for r in results}
    lines = [
        "| variant | median per call | ratio to floor (min-max of pairs) | overhead | overhead vs peer | repeats x calls |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        name = f"**{r.label}**" if r.ours else r.label
        vs = ""
        if peers and r.key in peers and peers[r.key] in by_key:
            peer = by_key[peers[r.key]]
            if peer.overhead_ns > 0:
                vs = f"{r.overhead_ns / peer.overhead_ns:.3f}x {peer.key}"
        overhead = "—" if r.is_floor else _ns(r.overhead_ns)
        lines.append(
            f"| {name} | {_ns(r.ns_per_call)} | {_ratio(r)} | {overhead} | {vs} | {r.repeats} x {r.n_per_block:,} |"
        )
    return lines


def targets_table(targets: list[dict[str, Any]]) -> list[str]:
    """Rows: target, measured, bar, status (MET / NOT MET in bold; info rows plain)."""
    if not targets:
        return ["None: no section that ran feeds a target."]
    lines = ["| target | measured | bar | status |", "|---|---:|---:|---|"]
    for t in targets:
        status = _targets.status(t)
        shown = status if t["kind"] == "info" else f"**{status}**"
        lines.append(f"| {t['name']} | {t['measured']} | {t['bar']} | {shown} |")
    return lines


def console_summary(
    targets: list[dict[str, Any]],
    groups: dict[str, list[Result]],
    *,
    quick_note: str | None = None,
) -> str:
    """The targets, each ending in its status, then every variant's overhead."""
    out = [""]
    if quick_note is not None:
        out += [*textwrap.wrap(quick_note, width=88), ""]
    out.append("Targets:" if targets else "Targets: none (no section that ran feeds one).")
    width = max(len(t["name"]) for t in targets) if targets else 10
    for t in targets:
        out.append(
            f"  {_targets.status(t):<7}  {t['name']:<{width}}  bar {t['bar']:<6}  {t['measured']}"
        )
    if not any(groups.values()):
        return "\n".join(out)
    out.append("")
    out.append("Overhead per call over the floor (median of paired ratios):")
    for group, results in groups.items():
        for r in results:
            if r.is_floor:
                continue
            mark = "*" if r.ours else " "
            out.append(
                f"  {mark} {group:<10} {r.key:<24} {r.ratio:8.2f}x  {_ns(r.overhead_ns):>12}"
            )
    return "\n".join(out)


def plot_overhead(groups: dict[str, list[Result]], path: Path) -> None:
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(g, [r for r in rs if not r.is_floor]) for g, rs in groups.items()]
    panels = [(g, rs) for g, rs in panels if rs]
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(10, 1.2 + 0.42 * sum(len(rs) for _, rs in panels) + 0.6 * len(panels)),
    )
    if len(panels) == 1:
        axes = [axes]
    for ax, (group, results) in zip(axes, panels, strict=True):
        labels = [r.key for r in results]
        values = [max(r.overhead_ns, 1.0) for r in results]
        colors = ["#1f77b4" if r.ours else "#bbbbbb" for r in results]
        ax.barh(labels, values, color=colors)
        ax.set_xscale("log")
        ax.invert_yaxis()
        ax.set_title(
            f"{group}: overhead per call over the floor (ns, log scale; ours in blue)", fontsize=9
        )
        for y, r in enumerate(results):
            ax.text(
                values[y], y, f" {_ns(r.overhead_ns)} ({r.ratio:.2f}x)", va="center", fontsize=7
            )
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_concurrency(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    ns = [row["n"] for row in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.plot(
        ns, [r["bare_us_per_call"] for r in rows], "o-", color="#888888", label="unwrapped impl"
    )
    left.plot(ns, [r["node_us_per_call"] for r in rows], "o-", color="#1f77b4", label="full node")
    left.set_xscale("log")
    left.set_xlabel("concurrent calls (each awaits anyio.sleep(0.01))")
    left.set_ylabel("wall time per call (µs)")
    left.set_title("wall time / N")
    left.legend()
    right.plot(
        ns, [r["bare_peak_per_call"] for r in rows], "o-", color="#888888", label="unwrapped impl"
    )
    right.plot(
        ns, [r["node_peak_per_call"] for r in rows], "o-", color="#1f77b4", label="full node"
    )
    right.set_xscale("log")
    right.set_xlabel("concurrent calls")
    right.set_ylabel("peak traced memory per call (bytes)")
    right.set_title("peak memory / N")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_memory(memory: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for key, row in memory.items() if key != "bare"]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.2))
    labels = [row["variant"] for row in rows]
    values = [row["traced_wrapper"] for row in rows]
    colors = ["#1f77b4" if row["variant"].endswith("_ours") else "#bbbbbb" for row in rows]
    ax.barh(labels, values, color=colors)
    ax.invert_yaxis()
    ax.set_xlabel("wrapper bytes per parked call (tracemalloc, over a bare parked task)")
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:,.0f} B", va="center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
