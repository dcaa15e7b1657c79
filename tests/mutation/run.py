"""Mutation-test the pure modules with mutmut, one module at a time, and print the scores.

Run from the repository root (``python3 -m tox -e mutation`` does):

    python tests/mutation/run.py                 # every module, from a fresh mutants/
    python tests/mutation/run.py config state    # some of them
    python tests/mutation/run.py --keep config   # reuse mutants/ (and its test stats)

mutmut reads ``[tool.mutmut]`` in pyproject.toml, copies the package to ``mutants/``
and runs, for each mutant, the tests of the selected files that reached the mutated
function. Its progress goes to ``mutants/<module>.log``; this prints, per module,
killed/total and every mutant that was not killed (``mutmut show NAME`` shows one).
The survivors that no test can kill are described in ``tests/mutation/equivalent.md``.
The exit status is 1 if a module scores under ``--fail-under`` (95%).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

# Module name -> (source file, the mutant-name globs that belong to it). Only the
# backoff maths of _retry.py is pure; the rest of it is the retry state machine.
MODULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "config": ("resilient_nodes/_config.py", ("resilient_nodes._config.*",)),
    "sanitize": ("resilient_nodes/_sanitize.py", ("resilient_nodes._sanitize.*",)),
    "records": ("resilient_nodes/_records.py", ("resilient_nodes._records.*",)),
    "state": ("resilient_nodes/_state.py", ("resilient_nodes._state.*",)),
    "backoff": (
        "resilient_nodes/_retry.py",
        (
            "resilient_nodes._retry.x_retry_delay__mutmut_*",
            "resilient_nodes._retry.x__draw__mutmut_*",
            "resilient_nodes._retry.x\u01c1BackoffWait\u01c1*",
        ),
    ),
    "classification": (
        "resilient_nodes/_classification.py",
        ("resilient_nodes._classification.*",),
    ),
}

# mutmut's exit codes per mutant (mutmut/stats.py): 1 and 3 mean a test failed.
_KILLED = {1, 3}
_STATUS = {0: "survived", 5: "no tests", 33: "no tests", 34: "skipped", 36: "timeout"}


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _results(module: str) -> dict[str, int | None]:
    source, globs = MODULES[module]
    meta = json.loads(Path("mutants", source + ".meta").read_text(encoding="utf-8"))
    return {
        name: code
        for name, code in meta["exit_code_by_key"].items()
        if any(fnmatch(name, pattern) for pattern in globs)
    }


def _run(module: str, max_children: int) -> None:
    log = Path("mutants", f"{module}.log")
    log.parent.mkdir(exist_ok=True)
    command = [sys.executable, "-m", "mutmut", "run", f"--max-children={max_children}"]
    with log.open("w", encoding="utf-8") as out:
        # Our own fixed command line, with this interpreter.
        subprocess.run(  # noqa: S603
            [*command, *MODULES[module][1]], stdout=out, stderr=out, check=True
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=", ".join(MODULES))
    parser.add_argument("--keep", action="store_true", help="reuse mutants/ from a last run")
    parser.add_argument("--max-children", type=int, default=2, help="mutants run at once")
    parser.add_argument("--fail-under", type=float, default=95.0, help="percent killed")
    args = parser.parse_args()
    modules = args.modules or list(MODULES)
    unknown = sorted(set(modules) - set(MODULES))
    if unknown:
        parser.error(f"unknown module(s): {', '.join(unknown)}; known: {', '.join(MODULES)}")
    if not args.keep:
        shutil.rmtree("mutants", ignore_errors=True)
    rows = []
    for module in modules:
        _say(f"mutmut: {module} ...")
        _run(module, args.max_children)
        results = _results(module)
        killed = sum(code in _KILLED for code in results.values())
        rows.append((module, killed, len(results)))
        for name, code in sorted(results.items()):
            if code not in _KILLED:
                _say(f"    {_STATUS.get(code, f'exit code {code}')}: {name}")
    _say(f"\n{'module':<16}{'killed':>8}{'total':>8}{'score':>9}")
    for module, killed, total in rows:
        _say(f"{module:<16}{killed:>8}{total:>8}{100 * killed / total:>8.1f}%")
    return int(any(100 * killed < args.fail_under * total for _, killed, total in rows))


if __name__ == "__main__":
    sys.exit(main())
