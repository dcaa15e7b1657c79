"""The node logger: a node's own lines carry the ids of the node call, and cost nothing filtered."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from resilient_nodes import (
    LOGGER_NAME,
    ConfigError,
    ExecutionContext,
    LogEvent,
    NodeLogger,
    Policy,
    _node_logger,
    create_execution_context,
    create_node,
    create_node_logger,
)
from resilient_nodes.testing import no_backoff

IDS = ("node", "trace_id", "graph_execution_id", "attempt")


def _ids(event: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(event.get(key) for key in IDS)


def _named(logs: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [event for event in logs if event["event"] == name]


@pytest.fixture
def restore_structlog() -> Any:
    """Tests that configure structlog get the suite's configuration back afterwards."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


# --- inside a real node call ----------------------------------------------------------


@pytest.mark.anyio
async def test_lines_carry_the_wrappers_ids() -> None:
    """Entry, a plain line and exit carry the node, ids and attempt of node.succeeded."""

    async def plan(state: dict[str, Any]) -> dict[str, Any]:
        log = create_node_logger("plan")
        log.log_entry(topic=state["topic"])
        log.info("outline.drafted", sections=3)
        log.log_exit(words=120)
        return {"plan": "ok"}

    node = create_node(plan, name="plan", policy=Policy.timeout(5))
    with capture_logs() as logs:
        assert await node({"topic": "tides"}) == {"plan": "ok"}
    [succeeded] = _named(logs, LogEvent.NODE_SUCCEEDED)
    expected = ("plan", succeeded["trace_id"], succeeded["graph_execution_id"], 1)
    [entry] = _named(logs, "node.entry")
    [line] = _named(logs, "outline.drafted")
    [done] = _named(logs, "node.exit")
    assert [_ids(entry), _ids(line), _ids(done)] == [expected] * 3
    assert (entry["log_level"], entry["topic"]) == ("debug", "tides")
    assert (line["log_level"], line["sections"]) == ("info", 3)
    assert (done["log_level"], done["words"]) == ("info", 120)


@pytest.mark.anyio
async def test_a_logger_made_before_a_retry_reports_the_new_attempt() -> None:
    """The attempt is read when a line is logged, so a kept logger follows the retry."""
    kept: list[NodeLogger] = []

    async def flaky(state: dict[str, Any]) -> dict[str, Any]:
        if not kept:
            kept.append(create_node_logger("flaky"))
            kept[0].info("calling")
            raise ConnectionError("reset by peer")
        kept[0].info("calling")
        return {"ok": True}

    node = create_node(flaky, name="flaky", policy=Policy.retry(attempts=2))
    with no_backoff(), capture_logs() as logs:
        assert await node({}) == {"ok": True}
    [retry] = _named(logs, LogEvent.NODE_RETRY_SCHEDULED)
    lines = _named(logs, "calling")
    assert [line["attempt"] for line in lines] == [1, 2]
    assert {line["trace_id"] for line in lines} == {retry["trace_id"]}


def test_a_sync_node_in_a_worker_thread() -> None:
    """Under a timeout a sync impl runs in a worker thread; its lines carry the call's ids."""

    def plan(state: dict[str, Any]) -> dict[str, Any]:
        create_node_logger("plan").warning("slow.source", source="archive")
        return {}

    node = create_node(plan, name="plan", policy=Policy.timeout(5))
    with capture_logs() as logs:
        node({})
    [succeeded] = _named(logs, LogEvent.NODE_SUCCEEDED)
    [line] = _named(logs, "slow.source")
    assert _ids(line) == ("plan", succeeded["trace_id"], succeeded["graph_execution_id"], 1)
    assert line["log_level"] == "warning"


def test_a_logger_made_outside_any_node_takes_the_running_calls_ids() -> None:
    """Made at import time, the logger carries whichever node call runs when it logs."""
    log = create_node_logger("plan")

    def plan(state: dict[str, Any]) -> dict[str, Any]:
        log.info("inside")
        return {}

    node = create_node(plan, name="plan")
    with capture_logs() as logs:
        node({})
        node({})
        log.info("outside")
    first, second = _named(logs, "inside")
    assert first["trace_id"] != second["trace_id"]
    assert first["attempt"] == 1
    [outside] = _named(logs, "outside")
    assert _ids(outside) == ("plan", None, None, None)


def test_a_logger_kept_after_its_call_keeps_its_ids() -> None:
    """Made inside a call and used after it ended, the logger still says which call."""
    kept: list[NodeLogger] = []

    def plan(state: dict[str, Any]) -> dict[str, Any]:
        kept.append(create_node_logger("plan"))
        return {}

    node = create_node(plan, name="plan")
    with capture_logs() as logs:
        node({})
        kept[0].info("later")
        node({})  # another call of the same node: not the one the logger belongs to
    first, _ = _named(logs, LogEvent.NODE_SUCCEEDED)
    [later] = _named(logs, "later")
    assert _ids(later) == ("plan", first["trace_id"], first["graph_execution_id"], 1)


def test_an_explicit_context_wins() -> None:
    """With ``context=`` the lines carry that context's ids, inside another call too."""
    context = create_execution_context("plan", trace_id="t" * 32, graph_execution_id="g", attempt=3)
    log = create_node_logger("plan", context)

    def other(state: dict[str, Any]) -> dict[str, Any]:
        log.info("inside")
        return {}

    with capture_logs() as logs:
        log.info("outside")
        create_node(other, name="other")({})
    assert [_ids(event) for event in _named(logs, "outside") + _named(logs, "inside")] == [
        ("plan", "t" * 32, "g", 3)
    ] * 2


# --- what the methods log ---------------------------------------------------------------


def test_log_error_describes_the_error_with_secrets_redacted() -> None:
    """``node.error`` at error level: type and bounded, redacted message; no traceback."""
    log = create_node_logger("plan", ExecutionContext(node_name="plan"))
    error = RuntimeError("upstream said no; Authorization: Bearer abcdefgh12345678 " + "x" * 600)
    with capture_logs() as logs:
        log.log_error(error, step="fetch")
    [event] = logs
    assert event["event"] == LogEvent.NODE_ERROR == "node.error"
    assert event["log_level"] == "error"
    assert event["error_type"] == "RuntimeError"
    assert "abcdefgh12345678" not in event["error_message"]
    assert "Bearer [REDACTED]" in event["error_message"]
    assert event["error_message"].endswith("more chars]")
    assert event["step"] == "fetch"
    assert "exc_info" not in event
    assert "exception" not in event


def test_log_error_never_raises_on_an_unprintable_error() -> None:
    """An error whose ``__str__`` raises is still logged, with a placeholder message."""

    class UnprintableError(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    with capture_logs() as logs:
        create_node_logger("plan").log_error(UnprintableError())
    assert logs[0]["error_type"] == "UnprintableError"
    assert logs[0]["error_message"] == "<UnprintableError with unprintable message>"


def test_log_retry_fields() -> None:
    """``node.retry`` at info: the error, the delay, and the caller's own counter."""
    log = create_node_logger("plan", ExecutionContext(node_name="plan", attempt=2))
    with capture_logs() as logs:
        log.log_retry(TimeoutError("model slow"), delay=1.5, retry=2)
        log.log_retry()
    first, bare = logs
    assert first["event"] == LogEvent.NODE_RETRY == "node.retry"
    assert first["log_level"] == "info"
    assert (first["error_type"], first["error_message"]) == ("TimeoutError", "model slow")
    assert (first["delay"], first["retry"], first["attempt"]) == (1.5, 2, 2)
    assert set(bare) == {"event", "log_level", *IDS}


def test_fields_of_a_call_win_and_bind_adds_fields() -> None:
    """A field passed in a call overrides the logger's; bind returns a copy with more fields."""
    log = create_node_logger("plan", ExecutionContext(node_name="plan"))
    story = log.bind(story_id="s-1")
    with capture_logs() as logs:
        log.info("a", attempt=9, node="other")
        story.info("b")
        log.info("c")
    a, b, c = logs
    assert (a["attempt"], a["node"]) == (9, "other")
    assert b["story_id"] == "s-1"
    assert "story_id" not in c
    assert isinstance(story, NodeLogger)
    assert story is not log


# --- cost and configuration ---------------------------------------------------------------


def test_filtered_levels_read_nothing(
    monkeypatch: pytest.MonkeyPatch, restore_structlog: None
) -> None:
    """Below the configured level, no line is logged and neither context nor error is read."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    reads: list[str] = []
    real_context = _node_logger.current_context
    real_text = _node_logger.error_text

    def counted_context() -> ExecutionContext | None:
        reads.append("context")
        return real_context()

    def counted_text(error: object) -> str:
        reads.append("error_text")
        return real_text(error)

    monkeypatch.setattr(_node_logger, "current_context", counted_context)
    monkeypatch.setattr(_node_logger, "error_text", counted_text)
    log = create_node_logger("plan", ExecutionContext(node_name="plan"))
    with capture_logs() as logs:
        log.debug("d")
        log.info("i")
        log.log_entry()
        log.log_exit()
        log.log_retry(ValueError("x"), delay=1.0)
        assert (logs, reads) == ([], [])
        log.warning("w")
        log.log_error(ValueError("x"))
    assert [event["event"] for event in logs] == ["w", "node.error"]
    assert reads == ["context", "error_text", "context"]


@pytest.mark.parametrize(
    ("floor", "logged"),
    [
        (logging.DEBUG, ["debug", "info", "warning", "error"]),
        (logging.INFO, ["info", "warning", "error"]),
        (logging.WARNING, ["warning", "error"]),
        (logging.ERROR, ["error"]),
        (logging.CRITICAL, []),
    ],
)
def test_plain_methods_log_at_their_level(
    floor: int, logged: list[str], restore_structlog: None
) -> None:
    """debug, info, warning and error log at their own level, down to the configured floor."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(floor))
    log = create_node_logger("plan")
    with capture_logs() as logs:
        for level in ("debug", "info", "warning", "error"):
            getattr(log, level)(f"said.{level}")
    assert [(event["event"], event["log_level"]) for event in logs] == [
        (f"said.{level}", level) for level in logged
    ]


def test_a_wrapper_without_level_filtering_or_a_method(restore_structlog: None) -> None:
    """A wrapper class with no ``is_enabled_for`` lets every level through; a missing method is skipped."""

    class InfoOnly(structlog.BoundLoggerBase):
        def info(self, event: str, **fields: Any) -> Any:
            return self._proxy_to_logger("info", event, **fields)

    structlog.configure(wrapper_class=InfoOnly)
    log = create_node_logger("plan")
    with capture_logs() as logs:
        log.debug("no.debug.method")
        log.info("said.info")
    assert [event["event"] for event in logs] == ["said.info"]


def test_binds_on_the_first_line_not_at_creation(restore_structlog: None) -> None:
    """A logger made before structlog is configured follows the configuration set later."""
    log = create_node_logger("plan")
    seen: list[str] = []

    def collect(logger: object, method: str, event: dict[str, Any]) -> dict[str, Any]:
        seen.append(event["event"])
        raise structlog.DropEvent

    structlog.configure(processors=[collect])
    log.info("configured.later")
    assert seen == ["configured.later"]


def test_a_broken_sink_never_raises(restore_structlog: None) -> None:
    """A processor or a logger factory that raises is ignored, and the next line retries."""

    def broken(logger: object, method: str, event: dict[str, Any]) -> dict[str, Any]:
        raise BrokenPipeError("stdout closed")

    def no_factory(*args: object) -> object:
        raise OSError("no log file")

    structlog.configure(processors=[broken])
    log = create_node_logger("plan")
    log.info("x")
    log.log_error(ValueError("y"))
    structlog.configure(logger_factory=no_factory)
    unbound = create_node_logger("plan")
    unbound.log_error(ValueError("y"))
    structlog.configure(
        **structlog.get_config() | {"logger_factory": structlog.ReturnLoggerFactory()}
    )
    with capture_logs() as logs:
        unbound.info("recovered")
    assert [event["event"] for event in logs] == ["recovered"]


def test_bad_arguments_are_config_errors() -> None:
    """An empty name or a context that is not an ExecutionContext is refused, with its path."""
    with pytest.raises(ConfigError, match=r"^name: must be a non-empty string, got '' \(str\)$"):
        create_node_logger("")
    with pytest.raises(ConfigError, match=r"^context: must be an ExecutionContext or None"):
        create_node_logger("plan", {"trace_id": "t"})  # type: ignore[arg-type]


def test_repr_says_what_the_ids_are() -> None:
    """The repr names the node and whether the ids are fixed or the running call's."""
    assert repr(create_node_logger("plan")) == ("<NodeLogger 'plan': ids of the running node call>")
    fixed = create_node_logger("plan", ExecutionContext(trace_id="t1"))
    assert repr(fixed) == "<NodeLogger 'plan': trace_id='t1'>"


def test_the_suite_prints_no_log_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """conftest routes structlog's output nowhere: no event reaches stdout outside capture_logs."""
    structlog.get_logger(LOGGER_NAME).warning("loud")
    create_node(lambda state: {}, name="quiet")({})
    create_node_logger("quiet").log_error(ValueError("x"))
    assert capsys.readouterr() == ("", "")
