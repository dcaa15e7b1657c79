"""The benchmark suite: its quick smoke run, its targets, and running without its peers.

Timings are not asserted: CI machines are too noisy, and the full run is what
the figures come from. The quick run only keeps the suite from rotting; the
targets are checked on made-up figures, where the outcome is known.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import _targets
from benchmarks._timing import Result

ROOT = Path(__file__).resolve().parent.parent

# Everything outside the standard library the suite can import.
NOT_STDLIB = (
    "resilient_nodes",
    "anyio",
    "pybreaker",
    "structlog",
    "tenacity",
    "backoff",
    "stamina",
    "langgraph",
    "matplotlib",
    "redis",
    "aiolimiter",
    "langchain_core",
)

# Runs `python -m benchmarks ARGS` with the modules named in argv[1] made
# unimportable (None in sys.modules: `import` raises, `find_spec` finds nothing).
_BLOCKED_RUN = """\
import runpy, sys
sys.modules.update(dict.fromkeys(filter(None, sys.argv[1].split(","))))
sys.argv = ["benchmarks", *sys.argv[2:]]
runpy.run_module("benchmarks", run_name="__main__", alter_sys=True)
"""


def _bench(*args: str, blocked: tuple[str, ...] = (), timeout: float = 60) -> Any:
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-c", _BLOCKED_RUN, ",".join(blocked), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _result(key: str, group: str, samples: list[float], floor_ns: float = 100.0) -> Result:
    ratio = sorted(samples)[len(samples) // 2]
    return Result(
        key=key,
        label=key,
        group=group,
        ns_per_call=ratio * floor_ns,
        ratio=ratio,
        ratio_min=min(samples),
        ratio_max=max(samples),
        overhead_ns=(ratio - 1.0) * floor_ns,
        n_per_block=1,
        repeats=len(samples),
        samples=samples,
    )


def _targets_table(markdown: str) -> list[list[str]]:
    """The cells of every row of results.md's targets table."""
    lines = markdown.split("## Targets\n", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| target |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _console_targets(stdout: str) -> list[str]:
    """The lines of the console summary's target list."""
    lines = stdout.split("\nTargets:\n", 1)[1].splitlines()
    return [line.strip() for line in lines[: lines.index("")]]


def test_help_needs_nothing_beyond_the_standard_library() -> None:
    """`--help` works with no peer (nor the package) importable, in plain text."""
    proc = _bench("--help", blocked=NOT_STDLIB)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.startswith("usage: python -m benchmarks")
    assert "``" not in proc.stdout
    assert "python3 -m pip install -e . --group bench" in proc.stdout
    assert "python3 -m pip install -U pip" in proc.stdout
    assert "--quick is a smoke run, not evidence" in " ".join(proc.stdout.split())
    for section in ("success", "rejection", "langgraph", "scale", "redis"):
        assert f"\n  {section} " in proc.stdout, section


@pytest.mark.parametrize(
    ("blocked", "args", "named"),
    [
        (
            ("backoff", "stamina"),
            ("--only", "success", "--only", "node", "--no-plots"),
            ["backoff (needed by: success)", "stamina (needed by: success)"],
        ),
        (("langgraph",), ("--no-plots",), ["langgraph (needed by: langgraph)"]),
        (("matplotlib",), ("--only", "node"), ["matplotlib (needed by: the plots)", "--no-plots"]),
        (("redis",), ("--only", "redis", "--no-plots"), ["redis (needed by: redis)"]),
        (
            ("langchain_core",),
            ("--only", "llm", "--no-plots"),
            ["langchain_core (needed by: llm)"],
        ),
    ],
)
def test_a_missing_peer_is_named_with_the_install_command_before_anything_runs(
    tmp_path: Path, blocked: tuple[str, ...], args: tuple[str, ...], named: list[str]
) -> None:
    """A section's missing peer stops the run up front, naming it and how to install it."""
    out = tmp_path / "results"
    proc = _bench("--quick", "--out", str(out), *args, blocked=blocked)
    assert proc.returncode == 2, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr
    for text in named:
        assert text in proc.stderr, text
    assert "python3 -m pip install -e . --group bench" in proc.stderr
    assert "python3 -m pip install -U pip" in proc.stderr
    assert "needed by: node" not in proc.stderr
    assert not out.exists()
    assert proc.stdout == ""


def test_sections_whose_peers_are_there_run_without_the_others(tmp_path: Path) -> None:
    """With the bench-only peers missing, a section that needs none of them still runs."""
    out = tmp_path / "results"
    proc = _bench(
        "--quick",
        "--only",
        "rejection",
        "--no-plots",
        "--out",
        str(out),
        blocked=("backoff", "stamina", "langgraph", "matplotlib", "redis"),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    raw = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert set(raw["groups"]) == {"rejection"}
    assert [t["name"] for t in raw["targets"]] == ["breaker rejection overhead / pybreaker's"]


def test_targets_compare_with_the_references_of_the_same_run() -> None:
    """Each target divides by its reference and meets its bar; info rows have none."""
    groups = {
        "node": [_result("node_ours", "node", [19.0]), _result("node_naive", "node", [101.0])],
        "rejection": [
            _result("reject_closed_ours", "rejection", [3.0]),
            _result("reject_ours", "rejection", [7.0]),
            _result("reject_pybreaker", "rejection", [31.0]),
        ],
        "langgraph": [
            # Per repeat, ours over fail_after: 1.02, 1.01, 1.05 -> median 1.02.
            _result("lg_ours", "langgraph", [1.071, 1.0908, 1.05]),
            _result("lg_fail_after", "langgraph", [1.05, 1.08, 1.0]),
            _result("lg_asyncio_timeout", "langgraph", [1.02, 1.02, 1.02]),
        ],
    }
    scale = [
        {
            "n": 10,
            "ratio": 3.0,
            "fail_after_ref_ratio": 2.5,
            "timeout_ref_ratio": 1.8,
            "naive_ratio": 9.0,
            "bare_s": 1.0,
            "node_us_per_call": 50.0,
        },
        {
            "n": 100,
            "ratio": 4.0,
            "fail_after_ref_ratio": 2.0,
            "timeout_ref_ratio": 1.8,
            "naive_ratio": None,
            "bare_s": 1.0,
            "node_us_per_call": 80.0,
        },
    ]
    rows = _targets.evaluate(groups, None, None, scale, scale_small=10, scale_large=100)
    by_name = {row["name"]: row for row in rows}

    node = by_name["full node success overhead / naive stack's"]
    assert node["value"] == pytest.approx(0.18)
    assert node["met"] is True  # the bar is 0.20 now
    rejection = by_name["breaker rejection overhead / pybreaker's"]
    assert rejection["value"] == pytest.approx(0.2)  # against pybreaker, not our admission
    assert rejection["met"] is True
    lg = by_name["1-node LangGraph graph: full node / `impl` under a bare `fail_after(30)`"]
    assert lg["value"] == pytest.approx(1.02)
    assert lg["met"] is True
    plain = by_name["1-node LangGraph graph: full node / plain `impl`"]
    assert plain["kind"] == "info"
    assert plain["met"] is None
    assert _targets.status(plain) == "info"
    wall = by_name["10 concurrent calls: node's wall ratio / bare `fail_after`'s"]
    assert wall["value"] == pytest.approx(1.2)
    assert wall["met"] is True
    growth = by_name["node cost per call at 100 / at 10"]
    assert growth["value"] == pytest.approx(1.6)
    assert _targets.status(growth) == "NOT MET"
    # Sections that did not run speak to no target.
    assert len(rows) == 6


def test_an_unusable_reference_is_not_met() -> None:
    """A peer overhead of zero or less (noise) cannot show a target met."""
    groups = {
        "rejection": [
            _result("reject_ours", "rejection", [7.0]),
            _result("reject_pybreaker", "rejection", [0.9]),
        ]
    }
    (row,) = _targets.evaluate(groups, None, None, None, scale_small=1, scale_large=2)
    assert row["measured"] == "not measurable"
    assert _targets.status(row) == "NOT MET"


def test_quick_mode_writes_a_table_with_every_variant(tmp_path: Path) -> None:
    """`python -m benchmarks --quick` reports every variant, and every target exactly once."""
    pytest.importorskip("stamina")
    pytest.importorskip("backoff")
    pytest.importorskip("matplotlib")
    pytest.importorskip("langgraph")
    pytest.importorskip("redis")
    out = tmp_path / "results"
    proc = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    table = (out / "results.md").read_text(encoding="utf-8")
    raw = json.loads((out / "results.json").read_text(encoding="utf-8"))

    from benchmarks import bench_memory

    expected = {
        "success": {
            "floor",
            "retry_ours",
            "retry_tenacity",
            "retry_stamina",
            "retry_backoff",
            "breaker_ours",
            "breaker_pybreaker",
            "timeout_ours",
            "timeout_fail_after",
            "timeout_asyncio",
            "pipeline_ours",
            "pipeline_naive",
        },
        "failure": {
            "fail_floor",
            "fail_retry_ours",
            "fail_retry_tenacity",
            "fail_retry_stamina",
            "fail_retry_backoff",
            "fail_breaker_ours",
            "fail_breaker_pybreaker",
            "fail_timeout_ours",
            "fail_timeout_fail_after",
            "fail_timeout_asyncio",
            "fail_pipeline_ours",
            "fail_pipeline_naive",
        },
        "rejection": {"reject_floor", "reject_closed_ours", "reject_ours", "reject_pybreaker"},
        "node": {"node_floor", "node_ours", "node_shell", "node_naive"},
        "node_failure": {"fail_node_floor", "fail_node_ours", "fail_node_naive"},
        "langgraph": {
            "lg_plain",
            "lg_ours",
            "lg_shell",
            "lg_naive",
            "lg_retry_policy",
            "lg_timeout",
            "lg_fail_after",
            "lg_asyncio_timeout",
        },
        "llm_fallback": {"fallback_floor", "fallback_ours", "fallback_langchain"},
        "llm_stream_ready": {"stream_ready_floor", "stream_ready_ours", "stream_ready_fail_after"},
        "llm_stream_yielding": {
            "stream_yielding_floor",
            "stream_yielding_ours",
            "stream_yielding_fail_after",
        },
        "load": {
            "load_floor",
            "bulkhead_ours",
            "bulkhead_limiter",
            "rate_limit_ours",
            "rate_limit_langchain",
            "rate_limit_aiolimiter",
        },
    }
    assert set(raw["groups"]) == set(expected)
    for group, keys in expected.items():
        results = raw["groups"][group]
        assert {r["key"] for r in results} == keys, group
        for r in results:
            assert r["label"] in table, r["label"]
            assert r["ns_per_call"] > 0
    assert set(raw["memory"]) == set(bench_memory.VARIANTS)
    for row in raw["memory"].values():
        assert row["label"] in table
    assert set(raw["lateness"]) == {"ours", "anyio.fail_after", "asyncio.timeout"}
    assert [row["n"] for row in raw["scale"]] == [500, 2_000]
    for row in raw["scale"]:
        # The references beside the node: fail_after and asyncio.timeout alone, the naive stack.
        assert row["fail_after_ref_ratio"] > 0
        assert row["timeout_ref_ratio"] > 0
        assert row["naive_ratio"] > 0
    if shutil.which("redis-server") is None:
        assert "redis-server is not installed" in raw["redis"]["skipped"]
        assert "redis-server is not installed" in proc.stdout
    else:
        variants = [row["variant"] for row in raw["redis"]["rows"]]
        assert variants == [
            "memory (in-process)",
            "ours: RedisBreakerStorage",
            "pybreaker CircuitRedisStorage",
        ]
        for variant in variants:
            assert variant in table

    # Every target row says exactly one of MET / NOT MET, the one its figure earns;
    # the informational rows say neither.
    # The strategies for LLM calls: a stall cut on each backend, per-item cost on trio.
    assert set(raw["llm"]["stall"]) == {"asyncio", "trio"}
    assert raw["llm"]["trio_per_item"]["bare_ns"] > 0
    kinds = [t["kind"] for t in raw["targets"]]
    # The Redis-shared rate limit's round trips are a target where redis-server is.
    has_redis = shutil.which("redis-server") is not None
    assert kinds.count("target") == 17 + 3 + has_redis
    if has_redis:
        assert raw["load_redis"]["round_trips_per_call"] == 1.0
    assert kinds.count("info") == 2
    md_rows = _targets_table(table)
    console = _console_targets(proc.stdout)
    assert len(md_rows) == len(console) == len(raw["targets"])
    for target, cells, line in zip(raw["targets"], md_rows, console, strict=True):
        assert cells[0] == target["name"]
        assert target["name"] in line
        if target["kind"] == "info":
            assert target["met"] is None
            assert cells[3] == "info"
            assert line.startswith("info ")
            continue
        status = "MET" if target["met"] else "NOT MET"
        assert cells[3] == f"**{status}**", cells
        assert line.startswith(f"{status} "), line
        other = "NOT MET" if target["met"] else "MET"
        assert not line.startswith(f"{other} "), line

    # Quick figures are a smoke run, and both reports say so.
    assert "--quick is a smoke run, not evidence" in " ".join(proc.stdout.split())
    assert "--quick is a smoke run, not evidence" in table
    assert raw["quick"] is True
    assert "Produced by `python -m benchmarks --quick" in table
    for name in ("overhead.png", "concurrency.png", "memory.png"):
        assert (out / name).stat().st_size > 1000, name
