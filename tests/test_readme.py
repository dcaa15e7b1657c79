"""The README's first examples run as written and print what they say; its event list is whole."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from resilient_nodes import LogEvent

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _python_blocks(section: str) -> list[str]:
    """The ```python blocks of one README section (the part before the first heading: "")."""
    parts = re.split(r"^## (.+)$", README, flags=re.MULTILINE)
    sections = {"": parts[0]} | dict(zip(parts[1::2], parts[2::2], strict=True))
    return re.findall(r"^```python\n(.*?)^```$", sections[section], flags=re.MULTILINE | re.DOTALL)


def _shown_output(code: str) -> list[str]:
    """What the block says its ``print`` calls print: a trailing comment, or the comment below."""
    lines = code.splitlines()
    shown = []
    for number, line in enumerate(lines):
        if not line.startswith("print("):
            continue
        if "  # " in line:
            shown.append(line.split("  # ", 1)[1].strip())
        else:
            shown.append(lines[number + 1].removeprefix("# ").strip())
    return shown


def _run(code: str, tmp_path: Path) -> list[str]:
    """Run *code* as a script in a fresh interpreter; its stdout lines (it must exit 0)."""
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    result = subprocess.run(  # noqa: S603 - the README's own code, no shell
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.splitlines()


def test_the_first_example_prints_its_result_after_two_log_lines(tmp_path: Path) -> None:
    """The opening example runs as written: two structlog lines, as the README warns, then the result."""
    example, _ = _python_blocks("")
    *logs, result = _run(example, tmp_path)
    assert [result] == _shown_output(example) == ["{'plan': '3 steps to ship it'}"]
    assert len(logs) == 2
    assert "node.started" in logs[0]
    assert "node.succeeded" in logs[1]


def test_the_readmes_structlog_line_quiets_the_first_example(tmp_path: Path) -> None:
    """With the configuration the README suggests, the opening example prints its result alone."""
    example, quiet = _python_blocks("")
    assert _run(quiet + example, tmp_path) == _shown_output(example)


@pytest.mark.integration
def test_the_graph_example_runs_as_written(tmp_path: Path) -> None:
    """'A node in ten lines' runs in a real StateGraph, retries its failing call, prints the result."""
    [example] = _python_blocks("A node in ten lines")
    shown = _shown_output(example)
    assert shown == [
        "{'question': 'Why is the sky blue?', 'answer': 'Rayleigh scattering.', 'errors': []}"
    ]
    assert _run(example, tmp_path) == shown


def test_the_readme_lists_every_log_event() -> None:
    """Every `LogEvent` is in the README's event table, so a new event cannot go undocumented."""
    [logs_section] = re.findall(r"^## Logs\n(.*?)^## ", README, flags=re.MULTILINE | re.DOTALL)
    rows = set(re.findall(r"^\| `([a-z_.]+)` \|", logs_section, flags=re.MULTILINE))
    assert rows == {event.value for event in LogEvent}
