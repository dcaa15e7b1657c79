"""Bad input gets a clear error or is handled; the error path never crashes.

Tried: invalid values, types, unknown keys, negative/NaN/inf durations through
every builder and `create_node`; a non-callable impl; impls returning non-updates;
non-mapping states (int, None, dataclass, pydantic); and hostile exceptions
(raising ``__str__``/``__repr__``, megabyte messages, cyclic cause chains,
exception groups, an exception whose ``__traceback__`` walk fails) through a full
node with capture on and off.
"""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import timedelta
from typing import Any

import pydantic
import pytest
from structlog.testing import capture_logs

from resilient_nodes import ConfigError, Policy, create_node
from resilient_nodes.testing import no_backoff

# --- config -------------------------------------------------------------------------

BAD_BUILDS = [
    ("retry attempts 0", lambda: Policy.retry(attempts=0), "attempts"),
    ("retry attempts float", lambda: Policy.retry(attempts=2.5), "attempts"),  # type: ignore[arg-type]
    ("retry attempts bool", lambda: Policy.retry(attempts=True), "attempts"),
    ("retry backoff NaN", lambda: Policy.retry(backoff=math.nan), "backoff"),
    ("retry backoff -1", lambda: Policy.retry(backoff=-1), "backoff"),
    ("retry backoff inf", lambda: Policy.retry(backoff=math.inf), "backoff"),
    ("retry backoff str", lambda: Policy.retry(backoff="1s"), "backoff"),  # type: ignore[arg-type]
    ("retry max_backoff neg td", lambda: Policy.retry(max_backoff=timedelta(-1)), "max_backoff"),
    ("retry multiplier NaN", lambda: Policy.retry(multiplier=math.nan), "multiplier"),
    ("retry jitter 2", lambda: Policy.retry(jitter=2), "jitter"),
    ("retry retry_on int", lambda: Policy.retry(retry_on=3), "retry_on"),  # type: ignore[arg-type]
    ("retry on_retry str", lambda: Policy.retry(on_retry="log"), "on_retry"),  # type: ignore[arg-type]
    ("llm unknown key", lambda: Policy.llm(retries=3), "llm"),
    ("llm NaN backoff", lambda: Policy.llm(backoff=math.nan), "backoff"),
    ("timeout 0", lambda: Policy.timeout(0), "seconds"),
    ("timeout NaN", lambda: Policy.timeout(math.nan), "seconds"),
    ("timeout -inf", lambda: Policy.timeout(-math.inf), "seconds"),
    ("timeout None", lambda: Policy.timeout(None), "seconds"),  # type: ignore[arg-type]
    ("timeout neg td", lambda: Policy.timeout(timedelta(seconds=-3)), "seconds"),
    ("timeout on_timeout int", lambda: Policy.timeout(1, on_timeout=1), "on_timeout"),  # type: ignore[arg-type]
    ("timeout cleanup NaN", lambda: Policy.timeout(1, cleanup_timeout=math.nan), "cleanup_timeout"),
    ("breaker threshold 0", lambda: Policy.breaker(failure_threshold=0), "failure_threshold"),
    ("breaker threshold str", lambda: Policy.breaker(failure_threshold="5"), "failure_threshold"),  # type: ignore[arg-type]
    ("breaker recovery NaN", lambda: Policy.breaker(recovery_timeout=math.nan), "recovery_timeout"),
    ("breaker recovery 0", lambda: Policy.breaker(recovery_timeout=0), "recovery_timeout"),
    ("breaker success 0", lambda: Policy.breaker(success_threshold=0), "success_threshold"),
]


@pytest.mark.parametrize(("label", "build", "field"), BAD_BUILDS, ids=[b[0] for b in BAD_BUILDS])
def test_bad_builder_values_name_the_field(label: str, build: Any, field: str) -> None:
    """Each invalid builder argument raises ConfigError whose text names the field."""
    with pytest.raises(ConfigError) as raised:
        build()
    assert field in str(raised.value)
    assert isinstance(raised.value, ValueError)


BAD_DATA = [
    ({"layers": [{"type": "timeout", "seconds": "NaN"}]}, "layers[0].seconds"),
    ({"layers": [{"type": "timeout", "seconds": -1.0}]}, "layers[0].seconds"),
    ({"layers": [{"type": "retry", "attempts": 3, "tries": 2}]}, "layers[0]"),
    ({"layers": [{"type": "breaker", "storage": {"type": "memcached"}}]}, "layers[0].storage"),
    ({"layers": [{"type": "retry", "preset": "gpt"}]}, "layers[0].preset"),
    ({"layers": [{"seconds": 3}]}, "layers[0].type"),
    ({"layers": ["retry"]}, "layers[0]"),
    ({"layers": "retry"}, "layers"),
    ({"layers": [], "extra": 1}, ""),
    ([1, 2], ""),
]


@pytest.mark.parametrize(("data", "path"), BAD_DATA)
def test_bad_plain_data_names_the_path(data: Any, path: str) -> None:
    """Policy.from_dict refuses bad data with the offending path."""
    with pytest.raises(ConfigError) as raised:
        Policy.from_dict(data)
    assert path in [p for p, _ in raised.value.problems]


@pytest.mark.parametrize("impl", [None, 3, "plan", object()])
def test_non_callable_impl_is_a_config_error(impl: Any) -> None:
    """create_node refuses an impl that cannot be called, naming it."""
    with pytest.raises(ConfigError, match=r"nodes\.plan\.impl"):
        create_node(impl, name="plan")


@pytest.mark.parametrize("name", ["", None, 3])
def test_bad_node_name_is_a_config_error(name: Any) -> None:
    """create_node refuses an empty or non-string name."""
    with pytest.raises(ConfigError, match="name"):
        create_node(lambda s: {}, name=name)


def test_non_policy_is_a_config_error() -> None:
    """create_node refuses a policy that is not a Policy."""
    with pytest.raises(ConfigError, match="policy"):
        create_node(lambda s: {}, name="n", policy={"layers": []})  # type: ignore[arg-type]


@pytest.mark.parametrize("result", [3, "done", b"x", [{"a": 1}], object(), 1.5])
@pytest.mark.parametrize("capture", [True, False])
def test_any_result_passes_through_for_langgraph_to_judge(result: Any, capture: bool) -> None:
    """The node is no stricter than LangGraph: any result is returned as is, once.

    A root channel (``StateGraph(int)``) takes any value; LangGraph itself
    rejects an update its state cannot take (tests/test_langgraph_fidelity.py).
    """
    calls = 0

    def impl(state: dict[str, Any]) -> Any:
        nonlocal calls
        calls += 1
        return result

    node = create_node(
        impl, name="n", policy=Policy.llm(), on_error="capture" if capture else "raise"
    )
    assert node({}) is result
    assert calls == 1


# --- states that are not mappings -----------------------------------------------------


@dataclasses.dataclass
class DataState:
    story_id: str
    count: int = 0


class ModelState(pydantic.BaseModel):
    story_id: str
    count: int = 0


@pytest.mark.parametrize(
    "state", [DataState("s1"), ModelState(story_id="s1")], ids=["dataclass", "pydantic"]
)
def test_object_states_work_and_carry_story_id(state: Any) -> None:
    """Dataclass and pydantic states reach the impl; story_id is logged from them."""

    def impl(s: Any) -> dict[str, Any]:
        return {"count": s.count + 1}

    def boom(s: Any) -> dict[str, Any]:
        raise ConnectionError("down")

    with capture_logs() as logs:
        assert create_node(impl, name="ok")(state) == {"count": 1}
        (record,) = create_node(boom, name="boom")(state)["errors"]
    assert record["node"] == "boom"
    assert {e.get("story_id") for e in logs if e["event"].startswith("node.")} == {"s1"}


@pytest.mark.parametrize("state", [7, None, "text", ["a"]])
def test_plain_value_state_does_not_break_the_error_path(state: Any) -> None:
    """A non-mapping state reaches the impl; its failure is still recorded."""

    def impl(s: Any) -> dict[str, Any]:
        raise ValueError(f"cannot use {s!r}")

    (record,) = create_node(impl, name="n")(state)["errors"]
    assert record["code"] == "VALIDATION_FAILED"
    assert repr(state) in record["message"]


# --- hostile exceptions ----------------------------------------------------------------


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str exploded")

    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")


class HugeError(Exception):
    pass


def _cyclic() -> Exception:
    a, b = ConnectionError("a"), ValueError("b")
    a.__cause__, b.__cause__ = b, a
    a.__context__ = b
    return a


def _deep_chain() -> Exception:
    error: Exception = ConnectionError("root")
    for index in range(2000):
        outer = RuntimeError(f"level {index}")
        outer.__cause__ = error
        error = outer
    return error


def _group() -> Exception:
    return ExceptionGroup(
        "several",
        [ConnectionError("x"), ExceptionGroup("inner", [TimeoutError("t")]), UnprintableError()],
    )


HOSTILE = {
    "unprintable": UnprintableError,
    "huge": lambda: HugeError("x" * 3_000_000),
    "cyclic": _cyclic,
    "deep chain": _deep_chain,
    "group": _group,
    "empty message": RuntimeError,
    "non-str args": lambda: RuntimeError(object(), {"k": [1, 2]}, b"\xff"),
}


@pytest.mark.parametrize("make", HOSTILE.values(), ids=list(HOSTILE))
@pytest.mark.parametrize("capture", [True, False])
def test_hostile_exceptions_never_crash_the_error_path(make: Any, capture: bool) -> None:
    """The node records or re-raises the very exception; records stay bounded and JSON."""
    errors: list[Exception] = []

    def impl(state: dict[str, Any]) -> dict[str, Any]:
        error = make()
        errors.append(error)
        raise error

    policy = Policy.llm(attempts=2) | Policy.breaker() | Policy.timeout(5)
    node = create_node(
        impl, name="hostile", policy=policy, on_error="capture" if capture else "raise"
    )
    with no_backoff(), capture_logs() as logs:
        if capture:
            (record,) = node({"story_id": "s"})["errors"]
        else:
            with pytest.raises(BaseException) as raised:
                node({"story_id": "s"})
    assert errors
    if capture:
        text = json.dumps(record)
        assert len(text) < 20_000
        assert record["node"] == "hostile"
        assert record["attempts"] == len(errors)
    else:
        final = raised.value
        if final is not errors[-1]:
            # Retries exhausted: the original is kept as the cause and last_error.
            assert final.last_error is errors[-1]  # type: ignore[attr-defined]
            assert final.__cause__ is errors[-1]
    assert any(e["event"] == "node.failed" for e in logs)
    for event in logs:
        assert len(str(event)) < 20_000


def test_capture_off_propagates_the_identical_object_through_every_layer() -> None:
    """With capture off, a non-retryable error comes out as the same object."""
    original = UnprintableError()

    def impl(state: dict[str, Any]) -> dict[str, Any]:
        raise original

    policy = Policy.retry(retry_on=ConnectionError) | Policy.breaker() | Policy.timeout(5)
    node = create_node(impl, name="same", policy=policy, on_error="raise")
    with pytest.raises(UnprintableError) as raised:
        node({})
    assert raised.value is original
