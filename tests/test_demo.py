"""The demo workflow: it runs end to end, shows every failure mode, and is reproducible."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from resilient_nodes import ErrorCode, LogEvent
from resilient_nodes.demo import Check, DemoReport, StoryResult, cli, main, render_summary, run_demo
from resilient_nodes.demo.display import WIDTH, Display, Recorder, is_tty
from resilient_nodes.demo.graph import NODE_ORDER
from resilient_nodes.demo.report import CLOCK_SLACK
from resilient_nodes.demo.services import RETRY_AFTER, schedule

ROOT = Path(__file__).resolve().parent.parent


class FakeTerminal(io.StringIO):
    """A StringIO that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def run() -> tuple[DemoReport, str]:
    """One run of the demo with the default seed, and everything it wrote."""
    out = io.StringIO()
    report = run_demo(out=out)
    return report, out.getvalue()


@pytest.fixture(scope="module")
def report(run: tuple[DemoReport, str]) -> DemoReport:
    return run[0]


def story_with(report: DemoReport, code: ErrorCode) -> list[StoryResult]:
    return [s for s in report.stories if any(e.code == code for e in s.errors)]


def step(story: StoryResult, node: str) -> tuple[int, str]:
    (found,) = [(s.attempts, s.outcome) for s in story.steps if s.node == node]
    return found


# --- what the run shows ------------------------------------------------------------


def test_output_is_progress_lines_then_the_summary(run: tuple[DemoReport, str]) -> None:
    """Off a terminal: plain progress lines, then the summary, all within 80 columns."""
    report, text = run
    assert text.endswith(report.summary)
    progress = text[: -len(report.summary)]
    assert progress.startswith("Processing 7 stories")
    assert "\r" not in text
    assert "\x1b" not in text
    assert all(len(line) <= WIDTH for line in text.splitlines())
    for heading in ("Per node", "Breaker transitions", "Stories", "Failure modes shown"):
        assert f"\n{heading}" in report.summary
    for node in NODE_ORDER:
        assert f"\n  {node} " in report.summary
    assert "Totals: 2 of 7 stories published" in report.summary
    assert "closed -> open" in report.summary
    assert "[ ]" not in report.summary
    # Seven since the LLM strategies: a fallback to the backup model and a restarted stream.
    assert report.summary.count("[x]") == len(report.checks) == 7


def test_every_failure_mode_is_shown(report: DemoReport) -> None:
    """All five checks pass: every scripted failure happened and was handled."""
    assert report.ok, [check for check in report.checks if not check.passed]


def test_transient_503s_are_retried_until_they_succeed(report: DemoReport) -> None:
    """The outline LLM's 503s are retried, and those calls end ok."""
    outline = report.node("outline")
    assert outline.retries > 0
    assert outline.attempts == outline.calls + outline.retries
    assert outline.outcomes == (("ok", 7),)
    retried = [s for s in report.stories if step(s, "outline")[0] > 1]
    assert retried
    assert all(step(s, "outline")[1] == "ok" for s in retried)
    waits = [w for w in report.retries if w.node == "outline"]
    assert {w.error_type for w in waits} == {"APIStatusError"}
    # Exponential backoff, no jitter: 0.05 s, then 0.1 s.
    assert all(w.delay == 0.05 * 2 ** (w.attempt - 1) for w in waits)


def test_429_backoff_waits_at_least_retry_after(report: DemoReport) -> None:
    """The 429's Retry-After raises the backoff above the tool's own, and it is waited."""
    (wait,) = [w for w in report.retries if w.node == "research"]
    assert wait.retry_after == RETRY_AFTER
    assert wait.delay >= RETRY_AFTER > 0.02  # the tool's own backoff is 0.02 s
    assert wait.waited >= RETRY_AFTER - CLOCK_SLACK


def test_hung_call_times_out_then_recovers(report: DemoReport) -> None:
    """The hung draft attempt is cut off (NODE_TIMEOUT), retried, and succeeds."""
    assert report.node("draft").timeouts == 1
    (wait,) = [w for w in report.retries if w.node == "draft"]
    assert wait.error_type == "NodeTimeoutError"
    assert any(e.kind == LogEvent.NODE_TIMED_OUT and e.node == "draft" for e in report.events)
    story = next(s for s in report.stories if s.story_id == wait.story_id)
    assert step(story, "draft") == (2, "ok")
    assert story.status == "published"


def test_validation_error_is_recorded_not_retried_and_routed(report: DemoReport) -> None:
    """VALIDATION_FAILED lands in state after one attempt; handle_error blocks the story."""
    (story,) = story_with(report, ErrorCode.VALIDATION_FAILED)
    (error,) = story.errors
    assert (error.node, error.attempts) == ("check", 1)
    assert step(story, "check") == (1, ErrorCode.VALIDATION_FAILED)
    assert [s.node for s in story.steps][-2:] == ["check", "handle_error"]
    assert story.status == "blocked"
    assert ("check", "blocked") in story.gate_decisions
    decision = story.state["gate_decisions"]["check"]
    assert decision["node"] == "handle_error"
    assert "VALIDATION_FAILED" in decision["reason"]
    assert story.state["routing_flags"] == {"blocked": True, "needs_human": True}
    assert story.state["errors"][0]["category"] == "validation"


def test_breaker_opens_fails_fast_and_recovers(report: DemoReport) -> None:
    """publish's breaker goes closed->open->half_open->closed, rejecting calls while open."""
    moves = [(t.old, t.new) for t in report.transitions if t.node == "publish"]
    assert moves == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert [t.node for t in report.transitions] == ["publish"] * 3
    opened, probed, _ = report.transitions
    ids = [s.story_id for s in report.stories]
    during = report.stories[ids.index(opened.story_id) + 1 : ids.index(probed.story_id)]
    assert len(during) >= 2
    for story in during:
        assert step(story, "publish") == (0, ErrorCode.CIRCUIT_OPEN)  # never called
        assert story.state["errors"][-1]["code"] == "CIRCUIT_OPEN"
    exhausted = story_with(report, ErrorCode.RETRY_EXHAUSTED)
    assert [s.story_id for s in exhausted] == ids[: ids.index(opened.story_id) + 1]
    probe = report.stories[ids.index(probed.story_id)]
    assert probe.status == "published"
    assert ("publish", "pass") in probe.gate_decisions


def test_primary_model_down_falls_back_to_the_backup(report: DemoReport) -> None:
    """The blurb's primary model answers 529 twice; the backup model serves the story."""
    (story,) = [s for s in report.stories if s.story_id == "story-1"]
    assert step(story, "blurb") == (2, "ok")  # two primary attempts, then the backup
    assert story.state["blurb"].endswith("a short story.")
    kinds = [(e.kind, e.text) for e in report.events if e.story_id == "story-1"]
    assert (LogEvent.FALLBACK_STARTED, "primary: retries exhausted; trying backup_blurb") in kinds
    assert (LogEvent.FALLBACK_SERVED, "served by backup_blurb") in kinds
    waits = [w for w in report.retries if w.node == "blurb" and w.story_id == "story-1"]
    assert [w.error_type for w in waits] == ["APIStatusError"]


def test_a_stalled_stream_is_restarted_before_its_first_token(report: DemoReport) -> None:
    """The blurb stream sends nothing once: cut at the first-token bound, retried, whole."""
    stalled = {e.story_id for e in report.events if e.kind == LogEvent.STREAM_STALLED}
    (story_id,) = stalled
    story = next(s for s in report.stories if s.story_id == story_id)
    assert step(story, "blurb") == (2, "ok")
    words = story.state["blurb"].split()
    assert len(words) == len(set(words))  # no token twice
    assert story.state["blurb"].endswith("told in three acts.")
    assert story.status == "published"
    assert not any(e.kind == LogEvent.STREAM_INTERRUPTED for e in report.events)


def test_published_stories_record_artifacts_and_evidence(report: DemoReport) -> None:
    """A published story's state has its artifact path, evidence and passing gates."""
    published = [s for s in report.stories if s.status == "published"]
    assert published
    for story in published:
        assert story.state["artifact_paths"]["story"].endswith(f"{story.story_id}.md")
        assert story.state["evidence_refs"][0]["node"] == "research"
        assert dict(story.gate_decisions) == {"check": "pass", "publish": "pass"}
        assert "errors" not in story.state or not story.state["errors"]


# --- reproducibility and the command line ------------------------------------------


def test_same_seed_same_report_and_caller_logging_untouched(report: DemoReport) -> None:
    """Same seed, same report (on a terminal too); the caller's structlog config survives."""
    out = FakeTerminal()
    with capture_logs() as caller_logs:
        before = structlog.get_config()
        again = run_demo(seed=7, out=out)
        assert structlog.get_config() == before
    assert caller_logs == []  # the demo's events went to its own display only
    assert again == report
    assert again.events == report.events
    assert again.seconds != 0
    text = out.getvalue()
    assert "\r\x1b[K" in text  # the live status line
    assert text.endswith(again.summary)
    assert text[: -len(again.summary)].endswith("\r\x1b[K")  # cleared before the summary


def test_other_seed_other_schedule() -> None:
    """Another seed draws another schedule (titles and 503s), same storyline."""
    assert schedule(3) != schedule(7)
    assert schedule(7) == schedule(7)


@given(st.integers(min_value=0, max_value=2**32))
def test_every_seed_schedules_every_failure_mode(seed: int) -> None:
    """Whatever the seed, the schedule has 503s, a 429 + hang, and a truncated draft."""
    plans = schedule(seed)
    assert len({p.title for p in plans}) == len(plans) == 7
    assert any(p.outline_503s == 2 for p in plans)
    assert all(0 <= p.outline_503s <= 2 for p in plans)  # the LLM preset makes 3 attempts
    assert plans[2].outline_503s == plans[3].outline_503s == 0  # the open window stays quick
    assert [p.rate_limited and p.hangs for p in plans] == [i == 4 for i in range(7)]
    assert sum(p.truncated for p in plans) == 1
    assert plans[5].truncated or plans[6].truncated
    # The blurb's fallback and stalled stream stay away from the breaker's window.
    assert [p.blurb_overloaded for p in plans] == [i == 0 for i in range(7)]
    assert sum(p.blurb_stalls for p in plans) == 1
    assert all(p.blurb_stalls != p.truncated for p in plans[5:])


def test_main_quiet_prints_only_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """main(["--seed", "3", "--quiet"]) returns 0 and writes the summary alone."""
    assert main(["--seed", "3", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert text.lstrip().startswith("resilient_nodes demo: seed 3, 7 stories")
    assert "Processing" not in text
    assert "[ ]" not in text


def test_module_runs_as_a_script() -> None:
    """`python -m resilient_nodes.demo` exits 0 and prints progress and the summary."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "resilient_nodes.demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Processing 7 stories")
    assert "breaker closed -> open" in result.stdout
    assert "Failure modes shown" in result.stdout
    assert result.stdout.count("[x]") == 7
    assert "Traceback" not in result.stderr


# Runs the demo as `python -m` would, with langgraph (and langchain_core, which
# comes with it) unimportable, as on an install without the extra.
WITHOUT_LANGGRAPH = (
    "import runpy, sys\n"
    "sys.modules['langgraph'] = sys.modules['langchain_core'] = None\n"
    "runpy.run_module('resilient_nodes.demo', run_name='__main__', alter_sys=True)\n"
)


def test_without_langgraph_the_command_names_the_extra() -> None:
    """No langgraph: a one-line error on stderr says what to install; exit status 1."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(  # noqa: S603 - our own interpreter and code, no shell
        [sys.executable, "-c", WITHOUT_LANGGRAPH, "--quiet"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("python -m resilient_nodes.demo: ")
    assert "needs the 'langgraph' extra: pip install 'resilient-nodes[langgraph]'" in line


def test_main_without_langgraph_leaves_logging_as_it_was(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In process: main returns 1, names the extra on stderr, and restores structlog."""
    monkeypatch.setitem(sys.modules, "langgraph", None)
    monkeypatch.setitem(sys.modules, "langgraph.graph", None)  # already imported here
    before = structlog.get_config()
    assert main(["--quiet"]) == 1
    assert structlog.get_config() == before
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "pip install 'resilient-nodes[langgraph]'" in captured.err


def test_main_lets_other_missing_modules_through(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the missing extra becomes a one-line message; any other import error propagates."""

    def broken(**_: object) -> DemoReport:
        raise ModuleNotFoundError("No module named 'typo'", name="typo")

    monkeypatch.setattr(cli, "run_demo", broken)
    with pytest.raises(ModuleNotFoundError, match="typo"):
        main([])


def test_closed_pipe_ends_quietly() -> None:
    """When the reader goes away early (`| head`), the demo still exits 0, silently."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(
        [sys.executable, "-m", "resilient_nodes.demo"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        assert child.stderr is not None
        assert child.stdout.readline().startswith("Processing 7 stories")
        child.stdout.close()
        errors = child.stderr.read()
        assert child.wait(timeout=60) == 0
    assert errors == ""


# --- the pieces --------------------------------------------------------------------


def test_summary_says_when_something_was_not_shown(report: DemoReport) -> None:
    """A report without transitions or with a failed check says so in the summary."""
    text = render_summary(
        attrs.evolve(report, transitions=(), checks=(Check("a 503", False, "not seen"),))
    )
    assert "Breaker transitions\n  none\n" in text
    assert "  [ ] a 503\n      not seen\n" in text
    assert not attrs.evolve(report, checks=(Check("a 503", False, "x"),)).ok
    with pytest.raises(KeyError):
        report.node("nope")


def test_display_degrades_to_plain_lines() -> None:
    """Odd streams count as not a terminal; no output at all when out is None."""
    closed = io.StringIO()
    closed.close()
    assert not is_tty(closed)
    assert is_tty(FakeTerminal())
    silent = Display(None, progress=True)
    silent.line("x")
    silent.status("y")
    silent.write("z")
    silent.close()
    gone = io.StringIO()
    gone.close()
    display = Display(gone, progress=True)
    display.line("to a closed stream")  # no error: the display just stops
    display.write("summary")
    quiet = io.StringIO()
    display = Display(quiet, progress=False)
    display.line("hidden")
    display.write("shown")
    assert quiet.getvalue() == "shown"


def test_unknown_library_events_are_still_shown() -> None:
    """A library event the display has no wording for is shown by its name."""
    out = io.StringIO()
    recorder = Recorder(Display(out, progress=True), 1)
    recorder.observe({"event": "node.on_timeout_failed", "node": "draft"})
    recorder.observe({"event": "something.else", "node": "draft"})
    assert [e.kind for e in recorder.events] == ["node.on_timeout_failed"]
    assert "draft        node.on_timeout_failed" in out.getvalue()
    with pytest.raises(structlog.DropEvent):
        recorder(
            None,
            "info",
            {"event": LogEvent.BREAKER_STATE_CHANGED, "node": "n", "new_state": "open"},
        )
    assert recorder.transitions[0].new == "open"


def test_fan_out_is_held_under_the_shared_rate_limit(report: DemoReport) -> None:
    """After the batch, 12 Send branches share one rate limit: never more than 4 per 0.5 s."""
    fanout = report.fanout
    assert fanout is not None
    assert (fanout.branches, fanout.limit, fanout.per) == (12, 4, 0.5)
    assert fanout.results == 12  # every branch waited its turn; none was refused
    assert 1 <= fanout.most_in_window <= fanout.limit
    assert fanout.seconds >= 0.9  # 12 calls at 4 per 0.5 s take two more windows
    assert "Fan-out: 12 Send branches" in report.summary
    assert report.summary.rstrip().endswith("s in all)")
