"""`Policy.chaos`: seeded fault injection, and the library surviving it."""

from __future__ import annotations

import math
import operator
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

import anyio
import attrs
import pytest
from langgraph.graph import END, START, StateGraph
from structlog.testing import capture_logs

from resilient_nodes import ConfigError, NodeTimeoutError, Policy, create_node
from resilient_nodes._chaos import ChaosConfig
from resilient_nodes._logging import LogEvent
from resilient_nodes.errors import ChaosHangError
from resilient_nodes.testing import no_backoff

if TYPE_CHECKING:
    from collections.abc import Callable


def _count(logs: list[dict[str, Any]], fault: str) -> int:
    return sum(1 for e in logs if e["event"] == LogEvent.CHAOS_INJECTED and e["fault"] == fault)


def test_seeded_errors_are_reproducible_and_near_the_rate() -> None:
    """The same seed injects the same faults; the rate is roughly honoured."""

    def run() -> list[bool]:
        wrapped = Policy.chaos(error_rate=0.3, seed=42).wrap(lambda: "ok")
        seen = []
        for _ in range(2000):
            try:
                wrapped()
                seen.append(False)
            except ConnectionError as error:
                seen.append("chaos: injected ConnectionError" in str(error))
        return seen

    first, second = run(), run()
    assert first == second
    assert 0.25 < sum(first) / len(first) < 0.35


def test_retries_absorb_a_30_percent_transient_error_rate() -> None:
    """Under Policy.llm() | Policy.chaos(error_rate=0.3) nearly every call succeeds."""
    calls = 0

    def impl(state: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"ok": True}

    policy = Policy.llm(attempts=5) | Policy.chaos(error_rate=0.3, seed=7)
    node = create_node(impl, name="flaky", policy=policy)
    with no_backoff(), capture_logs() as logs:
        results = [node({}) for _ in range(500)]
    failures = [r for r in results if "errors" in r]
    # 0.3 ** 5 = 0.24% of calls may exhaust their attempts.
    assert len(failures) <= 5
    assert calls == 500 - len(failures)
    assert _count(logs, "error") > 100  # the faults really were injected


@pytest.mark.anyio
async def test_async_hang_is_cut_by_the_timeout_and_retried() -> None:
    """An async hang sleeps until the per-attempt timeout cuts it; the retry recovers."""
    calls = 0

    async def impl(state: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return {"ok": True}

    policy = Policy.llm(attempts=6) | Policy.timeout(0.02) | Policy.chaos(hang_rate=0.5, seed=3)
    node = create_node(impl, name="hangs", policy=policy)
    with no_backoff(), capture_logs() as logs:
        results = [await node({}) for _ in range(10)]
    assert all(r == {"ok": True} for r in results)
    hangs = _count(logs, "hang")
    assert hangs >= 3
    assert sum(1 for e in logs if e["event"] == "node.timed_out") == hangs
    assert calls == 10


@pytest.mark.anyio
async def test_async_latency_is_added_and_cancellable() -> None:
    """Injected latency delays an async call; an outer scope can cut it short."""
    wrapped = Policy.chaos(latency=0.05, seed=1).wrap(_async_ok)
    started = time.monotonic()
    assert await wrapped() == "ok"
    assert time.monotonic() - started >= 0.045
    with anyio.move_on_after(0.01) as scope:
        await wrapped()
    assert scope.cancelled_caught


async def _async_ok() -> str:
    return "ok"


def test_sync_hang_ends_just_past_the_enclosing_deadline() -> None:
    """A sync hang under a timeout times out, and its thread ends soon after."""
    policy = Policy.timeout(0.05) | Policy.chaos(hang_rate=1.0, seed=0)
    wrapped = policy.wrap(lambda: "never")
    before = {t for t in threading.enumerate() if t.name.startswith("resilient_nodes:")}
    started = time.monotonic()
    with pytest.raises(NodeTimeoutError):
        wrapped()
    assert time.monotonic() - started < 0.5
    deadline = time.monotonic() + 2
    while {t for t in threading.enumerate() if t.name.startswith("resilient_nodes:")} - before:
        assert time.monotonic() < deadline, "the hung thread outlived its bound"
        time.sleep(0.01)


def test_sync_hang_without_a_deadline_is_bounded_by_max_hang() -> None:
    """With no timeout around it, a sync hang gives up after max_hang."""
    wrapped = Policy.chaos(hang_rate=1.0, max_hang=0.02).wrap(lambda: "never")
    with pytest.raises(ChaosHangError) as raised:
        wrapped()
    assert isinstance(raised.value, TimeoutError)


def test_sync_latency_and_error_factories() -> None:
    """Sync latency sleeps; a factory builds the injected error (e.g. with a status)."""

    class HTTPError(Exception):
        status_code = 503

    wrapped = Policy.chaos(
        error_rate=1.0, errors=[lambda: HTTPError("service unavailable")], latency=0.02
    ).wrap(lambda: "ok")
    started = time.monotonic()
    with pytest.raises(HTTPError) as raised:
        wrapped()
    assert time.monotonic() - started >= 0.015
    assert raised.value.status_code == 503


class _GraphState(TypedDict, total=False):
    done: Annotated[list[str], operator.add]
    errors: Annotated[list[dict[str, Any]], operator.add]


def test_a_graph_under_chaos_completes_with_errors_recorded() -> None:
    """A graph whose nodes fail at random still finishes, the failures in state."""

    def step(name: str) -> Any:
        def impl(state: _GraphState) -> dict[str, Any]:
            return {"done": [name]}

        return create_node(
            impl,
            name=name,
            policy=Policy.chaos(error_rate=0.5, errors=(TimeoutError, ValueError), seed=11),
        )

    builder = StateGraph(_GraphState)
    for name in ("a", "b", "c", "d", "e", "f"):
        builder.add_node(name, step(name))
    builder.add_edge(START, "a")
    for left, right in zip("abcde", "bcdef", strict=True):
        builder.add_edge(left, right)
    builder.add_edge("f", END)
    final = builder.compile().invoke({"done": []})
    failed = {e["node"] for e in final["errors"]}
    assert failed
    assert set(final["done"]) | failed == set("abcdef")
    assert not set(final["done"]) & failed
    assert all(e["message"].startswith("chaos: injected") for e in final["errors"])


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [
        ({"error_rate": 1.5}, "error_rate"),
        ({"error_rate": math.nan}, "error_rate"),
        ({"latency_rate": "often"}, "latency_rate"),
        ({"hang_rate": -0.1}, "hang_rate"),
        ({"latency": -1}, "latency"),
        ({"latency": math.inf}, "latency"),
        ({"max_hang": True}, "max_hang"),
        ({"errors": ()}, "errors"),
        ({"errors": (KeyboardInterrupt,)}, "errors[0]"),
        ({"errors": (UnicodeDecodeError,)}, "errors[0]"),
        ({"errors": ("ConnectionError",)}, "errors[0]"),
        ({"seed": 1.5}, "seed"),
    ],
)
@pytest.mark.parametrize("build", [Policy.chaos, ChaosConfig, ChaosConfig.create])
def test_bad_chaos_options_are_config_errors(
    build: Callable[..., object], kwargs: dict[str, Any], path: str
) -> None:
    """Every invalid option is refused with its name in the error, however the config is built."""
    with pytest.raises(ConfigError) as raised:
        build(**kwargs)
    assert path in [p for p, _ in raised.value.problems]


def test_chaos_config_reports_every_invalid_field_at_once() -> None:
    """The class itself validates at construction, and one error lists every bad field."""
    with pytest.raises(ConfigError) as raised:
        ChaosConfig(error_rate=5, errors=(KeyError, 3), latency=-1, hang_rate=2, seed="x")  # type: ignore[arg-type]
    assert raised.value.problems == (
        ("error_rate", "must be <= 1, got 5"),
        ("errors[1]", "must be an exception class or a factory, got int"),
        ("latency", "must be >= 0, got -1"),
        ("hang_rate", "must be <= 1, got 2"),
        ("seed", "must be an int or None, got str"),
    )
    with pytest.raises(ConfigError, match=r"^error_rate: must be <= 1, got 5$"):
        attrs.evolve(ChaosConfig(), error_rate=5)


def test_chaos_config_normalises_like_create() -> None:
    """Built directly, a config stores float seconds and rates and a tuple of errors."""
    config = ChaosConfig(error_rate=1, errors=KeyError, latency=timedelta(seconds=2), max_hang=3)
    assert config == ChaosConfig.create(error_rate=1.0, errors=(KeyError,), latency=2.0, max_hang=3)
    assert (config.error_rate, config.latency, config.max_hang) == (1.0, 2.0, 3.0)
    assert all(type(v) is float for v in (config.error_rate, config.latency, config.max_hang))
    assert config.errors == (KeyError,)


def test_chaos_round_trips_through_plain_data() -> None:
    """to_dict/from_dict and repr round-trip a chaos layer; factories are refused."""
    policy = Policy.llm() | Policy.chaos(
        error_rate=0.2, errors=(TimeoutError, ChaosHangError), latency=0.1, seed=5
    )
    assert Policy.from_dict(policy.to_dict()) == policy
    assert repr(policy).startswith("Policy.llm() | Policy.chaos(error_rate=0.2")
    with pytest.raises(ConfigError, match=r"layers\[0\]\.errors\[0\]"):
        Policy.chaos(errors=[lambda: ValueError("factory")]).to_dict()
    bad = {"layers": [{"type": "chaos", "errors": ["NoSuchError", 3], "rate": 1}]}
    with pytest.raises(ConfigError, match=r"layers\[0\]: unknown key\(s\): rate"):
        Policy.from_dict(bad)
    bad = {"layers": [{"type": "chaos", "errors": ["NoSuchError"]}]}
    with pytest.raises(ConfigError, match=r"layers\[0\]\.errors\[0\]"):
        Policy.from_dict(bad)
    bad = {"layers": [{"type": "chaos", "errors": [3]}]}
    with pytest.raises(ConfigError, match=r"layers\[0\]\.errors\[0\]"):
        Policy.from_dict(bad)
    bad = {"layers": [{"type": "chaos", "errors": 3}]}
    with pytest.raises(ConfigError, match=r"layers\[0\]\.errors"):
        Policy.from_dict(bad)
    bad = {"layers": [{"type": "chaos", "error_rate": 2}]}
    with pytest.raises(ConfigError, match=r"layers\[0\]\.error_rate"):
        Policy.from_dict(bad)
    dotted = {"layers": [{"type": "chaos", "errors": "resilient_nodes.errors.ChaosHangError"}]}
    assert Policy.from_dict(dotted).layers[0].config.errors == (ChaosHangError,)
    missing = {"layers": [{"type": "chaos", "errors": ["no_such_module.Error"]}]}
    with pytest.raises(ConfigError):
        Policy.from_dict(missing)
    assert ChaosConfig.create().to_dict()["errors"] == ["ConnectionError"]


@pytest.mark.anyio
async def test_async_error_injection_and_timedelta_latency() -> None:
    """Async calls get injected errors too; latency may be given as a timedelta."""
    wrapped = Policy.chaos(error_rate=1.0, errors=KeyError, latency=timedelta(0)).wrap(_async_ok)
    with capture_logs() as logs, pytest.raises(KeyError, match="chaos: injected KeyError"):
        await wrapped()
    assert _count(logs, "error") == 1
    assert _count(logs, "latency") == 0  # zero latency is never injected
