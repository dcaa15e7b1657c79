"""Run LangGraph's own test suite plain, then with every node wrapped.

Usage (tox env ``langgraph-suite`` does this)::

    python tests/langgraph_suite/run.py [--src DIR] [--workers N] [-- pytest args]

``--src`` is an unpacked LangGraph sdist (``pip download --no-deps --no-binary
:all: langgraph==<version>``); without it the sdist of the installed version is
downloaded into a temporary directory. External services are left out
(``NO_DOCKER=true``: no postgres, no redis; in-memory and sqlite savers kept), as
are the test modules that need a LangGraph server. Each run's pass/fail counts go
to ``<src>/resilient_nodes-<mode>.txt`` and the tests that pass plain but fail
wrapped are listed at the end: there must be none.
"""

from __future__ import annotations

import argparse
import collections
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

# Need a LangGraph API server or docker services, not LangGraph itself.
EXCLUDED = (
    "tests/test_remote_graph.py",
    "tests/test_remote_graph_v3.py",
    "tests/test_prune_postgres.py",
    "tests/example_app",
)


def _sdist(version: str, into: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"langgraph=={version}",
            "-d",
            str(into),
        ],
        check=True,
    )
    (archive,) = into.glob("langgraph-*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / f"langgraph-{version}"


def _run(src: Path, *, wrap: bool, workers: int, extra: list[str]) -> set[str]:
    mode = "wrapped" if wrap else "plain"
    report = src / f"resilient_nodes-{mode}.txt"
    counts_file = src / f"resilient_nodes-{mode}.counts"
    counts_file.unlink(missing_ok=True)
    env = {
        "RESILIENT_NODES_COUNTS": str(counts_file),
        **os.environ,
        "NO_DOCKER": "true",
        "RESILIENT_NODES_WRAP": "1" if wrap else "0",
        "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT), str(src)]),
    }
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests",
        "-p",
        "lg_wrap_plugin",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rfE",
        "--no-header",
        "-o",
        "addopts=",
        *(f"--ignore={path}" for path in EXCLUDED),
        *(["-n", str(workers)] if workers > 1 else []),
        *extra,
    ]
    print(f"--- {mode}: {' '.join(command)}", flush=True)
    with report.open("w") as out:
        subprocess.run(command, cwd=src, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    text = report.read_text()
    summary = [line for line in text.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    print(f"{mode}: {summary[-1] if summary else '(no summary, see ' + str(report) + ')'}")
    counts: collections.Counter[str] = collections.Counter()
    if counts_file.exists():
        for line in counts_file.read_text().splitlines():
            counts.update(json.loads(line))
    print(f"{mode}: add_node calls {dict(sorted(counts.items()))}")
    return set(re.findall(r"^(?:FAILED|ERROR) (\S+)", text, flags=re.MULTILINE))


def main() -> int:
    """Run both suites and report the tests that only fail wrapped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, help="an unpacked LangGraph sdist")
    parser.add_argument("--workers", type=int, default=1, help="pytest-xdist workers")
    parser.add_argument("--only", choices=("plain", "wrapped"), help="run one mode")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest")
    args = parser.parse_args()
    src = args.src
    if src is None:
        version = importlib.metadata.version("langgraph")
        src = _sdist(version, Path(tempfile.mkdtemp(prefix="langgraph-sdist-")))
    failed = {}
    for wrap in (False, True):
        if args.only and args.only != ("wrapped" if wrap else "plain"):
            continue
        failed[wrap] = _run(src, wrap=wrap, workers=args.workers, extra=args.pytest_args)
    if len(failed) == 2:
        regressions = sorted(failed[True] - failed[False])
        print(f"fail wrapped but not plain: {len(regressions)}")
        for test in regressions:
            print(f"  {test}")
        return 1 if regressions else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
