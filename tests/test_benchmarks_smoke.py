"""The benchmark suite's quick smoke mode runs and reports every variant.

Timings are not asserted: CI machines are too noisy, and the full run is what
the figures come from. This only keeps the suite from rotting.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("stamina")
pytest.importorskip("backoff")
pytest.importorskip("matplotlib")
pytest.importorskip("langgraph")


def test_quick_mode_writes_a_table_with_every_variant(tmp_path: Path) -> None:
    """`python -m benchmarks --quick` writes results.md naming every variant and target."""
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
            "lg_asyncio_timeout",
        },
    }
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
        # The references beside the node: asyncio.timeout alone, and the naive stack.
        assert row["timeout_ref_ratio"] > 0
        assert row["naive_ratio"] > 0
    assert len(raw["targets"]) == 12
    for target in raw["targets"]:
        assert target["name"] in table
    assert table.count("MET") >= len(raw["targets"])
    assert "Produced by `python -m benchmarks --quick" in table
    for name in ("overhead.png", "concurrency.png", "memory.png"):
        assert (out / name).stat().st_size > 1000, name
