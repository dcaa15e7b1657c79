"""The performance targets, each checked against the figures of one run.

Every target compares ours with a reference measured in the same run (a peer, a
bare ``await``, a bare ``anyio.fail_after``), never with a figure from another
run: the machines are shared and their speed drifts. A target whose section did
not run (``--only``) is left out; one whose section ran but whose reference came
out unusable (an overhead of zero or less, which only noise gives) is NOT MET,
as nothing was shown. Informational rows carry a figure that used to be a target
or puts one in context; they have no bar and are neither MET nor NOT MET.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._timing import Result

Groups = dict[str, list["Result"]]


def get(groups: Groups, group: str, key: str) -> Result | None:
    """The result of *key* in *group*, or None if it did not run."""
    for r in groups.get(group, []):
        if r.key == key:
            return r
    return None


def overhead_ratio(groups: Groups, group: str, ours: str, peer: str) -> float | None:
    """Our overhead over the floor divided by the peer's (None if not measurable)."""
    a, b = get(groups, group, ours), get(groups, group, peer)
    if a is None or b is None or b.overhead_ns <= 0:
        return None
    return a.overhead_ns / b.overhead_ns


def relative(groups: Groups, group: str, key: str, ref: str) -> tuple[float, float, float] | None:
    """Median, min and max over repeats of *key*'s ratio to the floor over *ref*'s.

    Both variants ran once in every repeat, each bracketed by the same floor, so
    their per-repeat ratios pair up: the quotient is how much slower *key* is than
    *ref*, with the drift between repeats taken out twice.
    """
    a, b = get(groups, group, key), get(groups, group, ref)
    if a is None or b is None:
        return None
    quotients = [x / y for x, y in zip(a.samples, b.samples, strict=True)]
    return statistics.median(quotients), min(quotients), max(quotients)


def target(
    name: str, value: float | None, bar: float, fmt: str, detail: str = ""
) -> dict[str, Any]:
    """A target row: *value* at most *bar* is MET; no value is NOT MET."""
    if value is None:
        measured, met = "not measurable", False
    else:
        measured, met = fmt.format(value) + (f" ({detail})" if detail else ""), value <= bar
    return {
        "kind": "target",
        "name": name,
        "measured": measured,
        "bar": f"≤ {bar:g}",
        "met": met,
        "value": value,
    }


def info(name: str, value: float, fmt: str, detail: str = "") -> dict[str, Any]:
    """An informational row: a figure without a bar."""
    return {
        "kind": "info",
        "name": name,
        "measured": fmt.format(value) + (f" ({detail})" if detail else ""),
        "bar": "—",
        "met": None,
        "value": value,
    }


def status(row: dict[str, Any]) -> str:
    """MET, NOT MET, or info (no bar)."""
    if row["kind"] == "info":
        return "info"
    return "MET" if row["met"] else "NOT MET"


def _over(groups: Groups, group: str, key: str) -> str:
    r = get(groups, group, key)
    return "?" if r is None else f"{r.overhead_ns:,.0f} ns"


def _vs_peer(groups: Groups, group: str, ours: str, peer: str) -> str:
    return f"{_over(groups, group, ours)} vs {_over(groups, group, peer)}"


def peer_target(
    groups: Groups, name: str, group: str, ours: str, peer: str, *, bar: float, fmt: str = "{:.3f}x"
) -> dict[str, Any]:
    """A target on our overhead over a peer's, both timed in *group*."""
    return target(
        name,
        overhead_ratio(groups, group, ours, peer),
        bar,
        fmt,
        _vs_peer(groups, group, ours, peer),
    )


def evaluate(
    groups: Groups,
    late: dict[str, dict[str, float]] | None,
    memory: dict[str, dict[str, Any]] | None,
    scale: list[dict[str, Any]] | None,
    *,
    scale_small: int,
    scale_large: int,
    llm: dict[str, Any] | None = None,
    load_redis: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every target (and informational row) the sections that ran can speak to."""
    t: list[dict[str, Any]] = []
    if "success" in groups:
        t.append(
            peer_target(
                groups,
                "full pipeline success overhead / naive stack's",
                "success",
                "pipeline_ours",
                "pipeline_naive",
                bar=0.15,
            )
        )
    if "node" in groups:
        t.append(
            peer_target(
                groups,
                "full node success overhead / naive stack's",
                "node",
                "node_ours",
                "node_naive",
                bar=0.20,
            )
        )
    if "success" in groups:
        r = get(groups, "success", "retry_ours")
        t.append(
            target(
                "retry layer success / bare await",
                None if r is None else r.ratio,
                5,
                "{:.2f}x",
            )
        )
    if "failure" in groups:
        t.append(
            peer_target(
                groups,
                "retry failure-path overhead / tenacity's",
                "failure",
                "fail_retry_ours",
                "fail_retry_tenacity",
                bar=0.25,
            )
        )
    if "success" in groups:
        t.append(
            peer_target(
                groups,
                "breaker success overhead / pybreaker calling()'s",
                "success",
                "breaker_ours",
                "breaker_pybreaker",
                bar=0.5,
            )
        )
    if "rejection" in groups:
        t.append(
            peer_target(
                groups,
                "breaker rejection overhead / pybreaker's",
                "rejection",
                "reject_ours",
                "reject_pybreaker",
                bar=0.3,
            )
        )
    if "success" in groups:
        t.append(
            peer_target(
                groups,
                "timeout success overhead / anyio.fail_after's",
                "success",
                "timeout_ours",
                "timeout_fail_after",
                bar=0.7,
            )
        )
    if late is not None:
        ours, fa = late["ours"]["p99"], late["anyio.fail_after"]["p99"]
        t.append(
            target(
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
            target(
                "memory per in-flight full-pipeline call / naive stack's",
                ours / naive,
                0.4,
                "{:.3f}x",
                f"{ours:,.0f} B vs {naive:,.0f} B over a bare parked task",
            )
        )
    if "load" in groups:
        t.extend(_load(groups))
    if load_redis is not None:
        t.append(
            target(
                "Redis-shared rate limit: round trips per admitted call",
                load_redis["round_trips_per_call"],
                1,
                "{:.3f}",
                f"{load_redis['us_per_call']:.0f} µs per call, sync, {load_redis['calls']:,} calls",
            )
        )
    if "telemetry" in groups:
        t.extend(_telemetry(groups))
    if "langgraph" in groups:
        t.extend(_langgraph(groups))
    if scale:
        t.extend(_scale(scale, scale_small, scale_large))
    t.extend(_llm(groups, llm))
    return t


# Strategies for LLM calls.
STALL_LATENESS_MS = 50.0


def _llm(groups: Groups, llm: dict[str, Any] | None) -> list[dict[str, Any]]:
    rows = []
    if "llm_fallback" in groups:
        rows.append(
            peer_target(
                groups,
                "fallback success overhead / LangChain `with_fallbacks`'",
                "llm_fallback",
                "fallback_ours",
                "fallback_langchain",
                bar=0.1,
                fmt="{:.4f}x",
            )
        )
    for kind, what in (("yielding", "items yield to the loop"), ("ready", "items ready")):
        group = f"llm_stream_{kind}"
        if group in groups:
            ours, peer = f"stream_{kind}_ours", f"stream_{kind}_fail_after"
            rows.append(
                peer_target(
                    groups,
                    f"stream per-item overhead / hand-written `fail_after`'s ({what})",
                    group,
                    ours,
                    peer,
                    bar=0.5,
                )
            )
    if llm is not None:
        for backend, row in llm["stall"].items():
            rows.append(
                target(
                    f"stalled stream cut: p99 ms past the idle bound ({backend})",
                    row["p99"],
                    STALL_LATENESS_MS,
                    "{:.2f} ms",
                    f"median {row['median']:.2f} ms over {row['n']} tries",
                )
            )
        trio_row = llm.get("trio_per_item")
        if trio_row is not None:
            rows.append(
                info(
                    "stream per-item overhead / `fail_after`'s on trio (a native scope per item)",
                    trio_row["ratio"],
                    "{:.2f}x",
                    f"{trio_row['ours_overhead_ns']:,.0f} ns vs "
                    f"{trio_row['fail_after_overhead_ns']:,.0f} ns, not paired",
                )
            )
    return rows


def _langgraph(groups: Groups) -> list[dict[str, Any]]:
    rows = []
    rel = relative(groups, "langgraph", "lg_ours", "lg_fail_after")
    ref = get(groups, "langgraph", "lg_fail_after")
    detail = ""
    if rel is not None and ref is not None:
        detail = (
            f"pairs {rel[1]:.3f}-{rel[2]:.3f}; `fail_after` alone {ref.ratio:.3f}x the plain graph"
        )
    rows.append(
        target(
            "1-node LangGraph graph: full node / `impl` under a bare `fail_after(30)`",
            None if rel is None else rel[0],
            1.03,
            "{:.3f}x",
            detail,
        )
    )
    r = get(groups, "langgraph", "lg_ours")
    if r is not None:
        asyncio_ref = get(groups, "langgraph", "lg_asyncio_timeout")
        detail = f"pairs {r.ratio_min:.3f}-{r.ratio_max:.3f}"
        if asyncio_ref is not None:
            detail += f"; `asyncio.timeout` alone {asyncio_ref.ratio:.3f}x"
        rows.append(
            info("1-node LangGraph graph: full node / plain `impl`", r.ratio, "{:.3f}x", detail)
        )
    return rows


def _scale(scale: list[dict[str, Any]], small_n: int, large_n: int) -> list[dict[str, Any]]:
    rows = []
    by_n = {row["n"]: row for row in scale}
    small, large = by_n.get(small_n), by_n.get(large_n)
    if small is not None:
        naive = (
            "" if small.get("naive_ratio") is None else f", naive stack {small['naive_ratio']:.2f}x"
        )
        rows.append(
            target(
                f"{small['n']:,} concurrent calls: node's wall ratio / bare `fail_after`'s",
                small["ratio"] / small["fail_after_ref_ratio"],
                1.5,
                "{:.2f}x",
                f"node {small['ratio']:.2f}x, bare `fail_after` {small['fail_after_ref_ratio']:.2f}x "
                f"the unwrapped {small['bare_s']:.3f} s; `asyncio.timeout` alone "
                f"{small['timeout_ref_ratio']:.2f}x{naive}",
            )
        )
    if small is not None and large is not None:
        rows.append(
            target(
                f"node cost per call at {large['n']:,} / at {small['n']:,}",
                large["node_us_per_call"] / small["node_us_per_call"],
                1.5,
                "{:.2f}x",
                f"{large['node_us_per_call']:.1f} µs vs {small['node_us_per_call']:.1f} µs",
            )
        )
    return rows


def _load(groups: Groups) -> list[dict[str, Any]]:
    """Load control: each layer's admitted-call overhead against its peers."""
    return [
        peer_target(
            groups,
            "bulkhead success overhead / bare anyio.CapacityLimiter's",
            "load",
            "bulkhead_ours",
            "bulkhead_limiter",
            bar=1.5,
        ),
        peer_target(
            groups,
            "in-process rate limit success overhead / LangChain InMemoryRateLimiter's",
            "load",
            "rate_limit_ours",
            "rate_limit_langchain",
            bar=0.5,
        ),
        peer_target(
            groups,
            "in-process rate limit success overhead / aiolimiter's",
            "load",
            "rate_limit_ours",
            "rate_limit_aiolimiter",
            bar=1.5,
        ),
    ]


def _telemetry(groups: Groups) -> list[dict[str, Any]]:
    """Telemetry: free when off, against the node without the hooks; its cost on."""
    rows = []
    for group, off, before, path in (
        ("telemetry", "tel_off", "tel_before", "success"),
        ("telemetry_failure", "tel_fail_off", "tel_fail_before", "failure"),
    ):
        pair = relative(groups, group, off, before)
        rows.append(
            target(
                f"full node, telemetry off / before it ({path} path)",
                None if pair is None else pair[0],
                1.03,
                "{:.3f}x",
                "" if pair is None else f"pairs {pair[1]:.3f}-{pair[2]:.3f}",
            )
        )
    off = get(groups, "telemetry_on", "tel_on_off")
    for key, what in (("tel_otel", "OpenTelemetry"), ("tel_prometheus", "Prometheus")):
        pair = relative(groups, "telemetry_on", key, "tel_on_off")
        on = get(groups, "telemetry_on", key)
        if pair is None or on is None or off is None:
            continue
        rows.append(
            info(
                f"full node, {what} on / off",
                pair[0],
                "{:.2f}x",
                f"+{(on.ns_per_call - off.ns_per_call) / 1000:.1f} µs per call",
            )
        )
    return rows
