"""What the run looks like: events streamed as they happen, and the summary.

Progress comes from the library's own structlog events (``node.retry_scheduled``,
``node.timed_out``, ``breaker.state_changed``, ``node.failed``...): while the
demo runs, `routed_logs` configures structlog with one processor, a `Recorder`,
that records each event and feeds the `Display`; the previous configuration is
restored afterwards. On a terminal a status line is kept updated under the
event lines; otherwise (a pipe, CI, a test) only plain lines are written.
`render_summary` turns the finished report into the table printed at the end.
"""

from __future__ import annotations

import contextlib
import logging
import textwrap
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Final, TextIO

import structlog

from resilient_nodes import LogEvent

from .report import BreakerTransition, ProgressEvent

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from structlog.typing import EventDict, WrappedLogger

    from .report import DemoReport
    from .services import StoryPlan

__all__ = [
    "WIDTH",
    "Display",
    "Recorder",
    "is_tty",
    "render_summary",
    "routed_logs",
]

WIDTH: Final = 80
"""Width of every line the demo writes."""


# --- progress display --------------------------------------------------------------


def is_tty(out: TextIO) -> bool:
    """Whether *out* is a terminal; a stream that cannot say (closed, odd) is not."""
    try:
        return bool(out.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class Display:
    """Event lines, plus a status line kept updated under them on a terminal.

    Not a terminal (a pipe, a file, a test's StringIO): plain lines only, no
    carriage returns or escape codes.

    Args:
        out: Where to write; None writes nothing.
        progress: Whether to show progress lines (`write` writes either way).
    """

    _CLEAR: Final = "\r\x1b[K"

    def __init__(self, out: TextIO | None, *, progress: bool) -> None:
        self._out = out
        self._progress = progress and out is not None
        self._live = self._progress and out is not None and is_tty(out)
        self._status = ""

    def write(self, text: str) -> None:
        """Write *text* as it is (the summary)."""
        if self._out is None:
            return
        try:
            self._out.write(text)
            self._out.flush()
        except (BrokenPipeError, ValueError):
            # The reader went away (``| head``) or the stream was closed: stop
            # writing, but let the run finish rather than fail a node's logging.
            self._out = None
            self._progress = self._live = False

    def line(self, text: str) -> None:
        """Write one progress line (above the status line, on a terminal)."""
        if not self._progress:
            return
        if self._live and self._status:
            self.write(f"{self._CLEAR}{text}\n{self._status}")
        else:
            self.write(f"{text}\n")

    def status(self, text: str) -> None:
        """Replace the status line; nothing happens off a terminal."""
        if not self._live:
            return
        self._status = text[: WIDTH - 1]
        self.write(f"{self._CLEAR}{self._status}")

    def close(self) -> None:
        """Remove the status line."""
        if self._live and self._status:
            self._status = ""
            self.write(self._CLEAR)


def _reason(error_type: str, message: str) -> str:
    """A few words on why an attempt failed: an HTTP status line, or the error type."""
    if message[:3].isdigit():
        return message.split(":", 1)[0]
    return error_type


def _strategy_text(name: str, node: str, event: Mapping[str, Any]) -> str:
    """What the display says for a fallback or stream event (its name if unknown)."""
    if name == LogEvent.FALLBACK_STARTED:
        failed = _short(str(event.get("failed", "")), node)
        error_type = str(event.get("error_type", ""))
        reason = (
            "retries exhausted"
            if error_type == "NodeRetryExhaustedError"
            else _reason(error_type, str(event.get("error_message", "")))
        )
        alternative = _short(str(event.get("alternative", "")), node)
        return f"{failed}: {reason}; trying {alternative}"
    if name == LogEvent.FALLBACK_SERVED:
        return f"served by {_short(str(event.get('served_by', '')), node)}"
    if name == LogEvent.STREAM_STALLED:
        what = "first token" if event.get("phase") == "first_item" else "next token"
        return f"stream stalled: no {what} within {event.get('bound')}s"
    if name == LogEvent.STREAM_INTERRUPTED:
        return f"stream cut after {event.get('items_delivered')} tokens: not retried"
    return name


def _short(name: str, node: str) -> str:
    """A callable's name as the display shows it: the node's own, or its last part."""
    return "primary" if name == node else name.rsplit(".", 1)[-1]


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


class Recorder:
    """The structlog processor of the run: records events and feeds the display.

    Args:
        display: Where progress goes.
        stories: How many stories the batch has (for the status line).
    """

    def __init__(self, display: Display, stories: int) -> None:
        self.display = display
        self.started = time.perf_counter()
        self.story_id = ""
        self._story_number = 0
        self._stories = stories
        self.events: list[ProgressEvent] = []
        self.transitions: list[BreakerTransition] = []
        self.retries: list[tuple[str, str, int, str, float]] = []
        self.timeouts: Counter[str] = Counter()
        self.finished: list[tuple[str, str, bool, float]] = []  # story, node, ok, seconds

    def restart(self) -> None:
        """Measure times from now on (the batch starts)."""
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.started

    def begin_story(self, plan: StoryPlan) -> None:
        """Note that *plan*'s story is being processed now."""
        self.story_id = plan.story_id
        self._story_number += 1
        self.display.status(
            f"{self.elapsed():6.2f}s  story {self._story_number}/{self._stories}  {plan.title}"
        )

    def emit(self, node: str, kind: str, text: str) -> None:
        """Record a progress event and show it."""
        at = self.elapsed()
        self.events.append(ProgressEvent(self.story_id, node, kind, text, at))
        prefix = f"{at:5.2f}s {self.story_id:<7} {node:<12} "
        self.display.line(prefix + _fit(text, WIDTH - len(prefix)))

    def __call__(self, _logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        """Take one structlog event; it is always dropped afterwards."""
        self.observe(event_dict)
        raise structlog.DropEvent

    def observe(self, event: Mapping[str, Any]) -> None:
        """Turn one library event into records and display output."""
        name = event.get("event")
        node = str(event.get("node", ""))
        if name == LogEvent.NODE_STARTED:
            self.display.status(
                f"{self.elapsed():6.2f}s  story {self._story_number}/{self._stories}  "
                f"{self.story_id}  {node}..."
            )
        elif name in (LogEvent.NODE_SUCCEEDED, LogEvent.NODE_FAILED):
            seconds = float(event.get("duration_ms", 0.0)) / 1000
            self.finished.append((self.story_id, node, name == LogEvent.NODE_SUCCEEDED, seconds))
            if name == LogEvent.NODE_FAILED:
                error_type = event.get("error_type")
                if error_type == "NodeCircuitOpenError":
                    text = "breaker open: rejected without calling the service"
                else:
                    attempts = event.get("attempts", 1)
                    plural = "" if attempts == 1 else "s"
                    text = f"failed after {attempts} attempt{plural}: {error_type}"
                self.emit(node, name, text)
        elif name == LogEvent.NODE_RETRY_SCHEDULED:
            attempt = int(event.get("attempt", 0))
            delay = float(event.get("delay", 0.0))
            error_type = str(event.get("error_type", ""))
            self.retries.append((self.story_id, node, attempt, error_type, delay))
            reason = _reason(error_type, str(event.get("error_message", "")))
            self.emit(node, name, f"{reason}; attempt {attempt + 1} in {delay:.2f}s")
            self.display.status(
                f"{self.elapsed():6.2f}s  story {self._story_number}/{self._stories}  "
                f"{self.story_id}  {node} waiting {delay:.2f}s before attempt {attempt + 1}"
            )
        elif name == LogEvent.NODE_TIMED_OUT:
            self.timeouts[node] += 1
            self.emit(node, name, f"attempt cut off by its {event.get('timeout')}s timeout")
        elif name == LogEvent.BREAKER_STATE_CHANGED:
            old, new = event.get("old_state"), str(event.get("new_state"))
            failures = int(event.get("failure_count", 0))
            self.transitions.append(
                BreakerTransition(node, old, new, failures, self.story_id, self.elapsed())
            )
            self.emit(node, name, f"breaker {old} -> {new} ({failures} failures)")
        elif isinstance(name, str) and name.startswith(("fallback.", "stream.")):
            self.emit(node, name, _strategy_text(name, node, event))
        elif isinstance(name, str) and name.startswith(("node.", "breaker.")):
            self.emit(node, name, name)


@contextlib.contextmanager
def routed_logs(processor: Callable[[WrappedLogger, str, EventDict], EventDict]) -> Iterator[None]:
    """Send every structlog event to *processor* alone; restore the config after.

    Loggers are bound when nodes are built, so the nodes must be built inside
    this block.
    """
    was_configured = structlog.is_configured()
    saved = structlog.get_config()
    structlog.configure(
        processors=[processor],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        cache_logger_on_first_use=False,
    )
    try:
        yield
    finally:
        if was_configured:
            structlog.configure(**saved)
        else:
            structlog.reset_defaults()


# --- the summary -------------------------------------------------------------------


def _table(rows: Sequence[Sequence[str]], widths: Sequence[int], right: set[int]) -> list[str]:
    """Rows as aligned columns; the last column wraps within what is left of WIDTH."""
    lines = []
    indent = sum(widths[:-1]) + 2 * (len(widths) - 1) + 2
    for row in rows:
        cells = [
            cell.rjust(width) if index in right else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(row[:-1], widths, strict=False))
        ]
        wrapped = textwrap.wrap(row[-1], WIDTH - indent) or [""]
        lines.append(("  " + "  ".join([*cells, wrapped[0]])).rstrip())
        lines.extend(" " * indent + more for more in wrapped[1:])
    return lines


def _outcomes(outcomes: Sequence[tuple[str, int]]) -> str:
    return ", ".join(f"{outcome} x{count}" for outcome, count in outcomes) or "-"


def render_summary(report: DemoReport) -> str:
    """The end-of-run summary: plain text, no line longer than 80 columns.

    Args:
        report: The run to summarise.

    Returns:
        The text, ending with a newline.
    """
    published = sum(1 for story in report.stories if story.status == "published")
    title = (
        f"resilient_nodes demo: seed {report.seed}, {len(report.stories)} stories, "
        f"{report.seconds:.2f}s"
    )
    lines = ["", title, "=" * len(title), ""]
    lines.append("Policies (left is outermost; jitter 0, so a seed fixes the schedule)")
    for stats in report.nodes:
        layers = stats.policy.split(" | ")
        first, *rest = layers
        # A long layer (a fallback names its alternatives) wraps under itself.
        lines.extend(
            textwrap.wrap(
                first, WIDTH, initial_indent=f"  {stats.node:<13}", subsequent_indent=" " * 17
            )
        )
        for layer in rest:
            lines.extend(
                textwrap.wrap(
                    layer, WIDTH, initial_indent=f"  {'':<13}| ", subsequent_indent=" " * 17
                )
            )

    lines += ["", "Per node"]
    rows = [["node", "calls", "attempts", "retries", "time", "outcomes"]]
    rows += [
        [
            s.node,
            str(s.calls),
            str(s.attempts),
            str(s.retries),
            f"{s.seconds:.2f}s",
            _outcomes(s.outcomes) + (f"; {s.timeouts} timed out" if s.timeouts else ""),
        ]
        for s in report.nodes
    ]
    lines += _table(rows, (12, 5, 8, 7, 6, 0), right={1, 2, 3, 4})

    lines += ["", "Breaker transitions"]
    if report.transitions:
        rows = [["at", "story", "node", "change"]]
        rows += [
            [
                f"{t.at:.2f}s",
                t.story_id,
                t.node,
                f"{t.old} -> {t.new} (failures: {t.failure_count})",
            ]
            for t in report.transitions
        ]
        lines += _table(rows, (6, 8, 12, 0), right={0})
    else:
        lines.append("  none")

    lines += ["", "Stories (and the errors recorded in their state)"]
    rows = [["story", "result", "time", "title"]]
    rows += [
        [story.story_id, story.status, f"{story.seconds:.2f}s", story.title]
        for story in report.stories
    ]
    table = _table(rows, (8, 9, 6, 0), right={2})
    lines.append(table[0])
    for story, row in zip(report.stories, table[1:], strict=True):
        lines.append(row)
        for error in story.errors:
            lines.append(f"{'':12}{error.node}: {error.code} (attempts={error.attempts})")
            wrapped = textwrap.wrap(error.message, WIDTH - 14, max_lines=2, placeholder=" ...")
            lines.extend(f"{'':14}{text}" for text in wrapped)

    lines += ["", "Failure modes shown"]
    for check in report.checks:
        mark = "x" if check.passed else " "
        lines.append(f"  [{mark}] {check.name}")
        lines.append(f"      {_fit(check.detail, WIDTH - 6)}")

    attempts = sum(s.attempts for s in report.nodes)
    retries = sum(s.retries for s in report.nodes)
    timeouts = sum(s.timeouts for s in report.nodes)
    errors = sum(len(story.errors) for story in report.stories)
    totals = (
        f"Totals: {published} of {len(report.stories)} stories published, "
        f"{len(report.stories) - published} blocked; {attempts} attempts, {retries} retries, "
        f"{timeouts} timeout{'' if timeouts == 1 else 's'}, "
        f"{len(report.transitions)} breaker transitions, "
        f"{errors} errors in state; {report.seconds:.2f}s."
    )
    lines += ["", *textwrap.wrap(totals, WIDTH), ""]
    return "\n".join(lines)
