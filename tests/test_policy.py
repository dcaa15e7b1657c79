"""The policy algebra: composition, meaning of order, repr, plain-data round trips."""

from __future__ import annotations

import math
import textwrap
import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient_nodes import (
    CancelToken,
    ConfigError,
    ErrorCode,
    NodeCircuitOpenError,
    NodeRetryExhaustedError,
    NodeTimeoutError,
    Policy,
    RedisBreakerStorage,
    create_node,
    load_node_policies,
)
from resilient_nodes._config import MAX_DURATION
from resilient_nodes.testing import no_backoff

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

# --- strategies ----------------------------------------------------------------------

retry_policies = st.one_of(
    st.builds(
        Policy.retry,
        attempts=st.integers(1, 10),
        backoff=st.floats(0, 5),
        multiplier=st.floats(1, 4),
        max_backoff=st.just(60.0),
        jitter=st.floats(0, 1),
    ),
    st.sampled_from([Policy.llm(), Policy.tool(), Policy.validation(), Policy.llm(attempts=5)]),
)
timeout_policies = st.builds(Policy.timeout, st.floats(0.001, 1000))
breaker_policies = st.builds(
    Policy.breaker,
    failure_threshold=st.integers(1, 20),
    recovery_timeout=st.floats(0.001, 600),
    success_threshold=st.integers(1, 5),
)
single_layers = st.one_of(
    st.just(Policy.none()), retry_policies, timeout_policies, breaker_policies
)


def _compose(*policies: Policy) -> Policy | None:
    """Compose, or None when the composition is rejected."""
    result = Policy.none()
    try:
        for policy in policies:
            result = result | policy
    except ConfigError:
        return None
    return result


# --- algebra ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(single_layers, single_layers, single_layers)
def test_or_is_associative(a: Policy, b: Policy, c: Policy) -> None:
    """(a | b) | c and a | (b | c) are the same policy, or both are rejected."""
    try:
        left: Policy | None = (a | b) | c
    except ConfigError:
        left = None
    try:
        right: Policy | None = a | (b | c)
    except ConfigError:
        right = None
    if left is None or right is None:
        assert _compose(a, b, c) is None
    else:
        assert left == right
        assert left.layers == right.layers


@given(single_layers)
def test_none_is_the_identity(p: Policy) -> None:
    """Policy.none() is neutral on both sides."""
    assert Policy.none() | p == p
    assert p | Policy.none() == p


def test_left_is_outermost() -> None:
    """a | b keeps a's layers first (outermost)."""
    p = Policy.timeout(120) | Policy.llm() | Policy.timeout(30)
    assert [layer.kind for layer in p.layers] == ["timeout", "retry", "timeout"]
    assert p.layers[0].config.seconds == 120
    assert p.layers[2].config.seconds == 30


def test_policy_is_immutable() -> None:
    """Policies cannot be changed after construction."""
    p = Policy.llm()
    with pytest.raises(AttributeError):
        p.layers = ()  # type: ignore[misc]


def test_or_with_a_non_policy_is_a_type_error() -> None:
    """| with something that is not a Policy is refused."""
    with pytest.raises(TypeError):
        Policy.llm() | 3  # type: ignore[operator]


@pytest.mark.parametrize(
    ("build", "path", "fragment"),
    [
        (lambda: Policy.llm() | Policy.tool(), "layers[1]", "multiplies the attempts (3 x 3 = 9"),
        (lambda: Policy.breaker() | Policy.llm() | Policy.breaker(), "layers[2]", "second breaker"),
        (lambda: Policy.timeout(10) | Policy.timeout(30), "layers[1]", "can never fire first"),
        (
            lambda: Policy.timeout(10) | Policy.breaker() | Policy.timeout(10),
            "layers[2]",
            "never fire",
        ),
    ],
)
def test_meaningless_compositions_are_rejected(build, path: str, fragment: str) -> None:
    """Nested retries, two breakers and a non-shorter nested timeout raise ConfigError."""
    with pytest.raises(ConfigError) as caught:
        build()
    assert caught.value.problems[0][0] == path
    assert fragment in str(caught.value)


def test_timeouts_separated_by_a_retry_are_fine() -> None:
    """A total budget around a retry around a per-attempt timeout is the canonical shape."""
    p = Policy.timeout(30) | Policy.llm() | Policy.timeout(60)
    assert len(p.layers) == 3
    assert len((Policy.timeout(30) | Policy.timeout(10)).layers) == 2


def test_bad_values_name_the_field() -> None:
    """Builders validate at construction with a field-naming message."""
    with pytest.raises(ConfigError, match=r"seconds: must be > 0"):
        Policy.timeout(0)
    with pytest.raises(ConfigError, match=r"attempts: must be >= 1, got 0"):
        Policy.retry(attempts=0)
    with pytest.raises(ConfigError, match=r"failure_threshold"):
        Policy.breaker(failure_threshold=0)
    with pytest.raises(ConfigError, match="seconds: must be finite"):
        Policy.timeout(math.nan)
    with pytest.raises(ConfigError, match="llm"):
        Policy.llm(attemps=3)


def test_durations_accept_timedelta() -> None:
    """timedelta durations are normalised to seconds once."""
    assert Policy.timeout(timedelta(minutes=2)) == Policy.timeout(120)
    assert Policy.retry(backoff=timedelta(milliseconds=500)) == Policy.retry(backoff=0.5)


# --- repr ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "text"),
    [
        (Policy.none(), "Policy.none()"),
        (Policy.llm(), "Policy.llm()"),
        (Policy.retry(), "Policy.retry()"),
        (Policy.llm(attempts=5), "Policy.llm(attempts=5)"),
        (Policy.retry(attempts=4, backoff=0.5), "Policy.retry(attempts=4, backoff=0.5)"),
        (
            Policy.llm() | Policy.breaker() | Policy.timeout(30),
            "Policy.llm() | Policy.breaker() | Policy.timeout(30)",
        ),
        (Policy.timeout(2.5, cleanup_timeout=1), "Policy.timeout(2.5, cleanup_timeout=1)"),
        (Policy.breaker(failure_threshold=3), "Policy.breaker(failure_threshold=3)"),
        (Policy.retry(retry_on=ValueError), "Policy.retry(retry_on=ValueError)"),
    ],
)
def test_repr_reads_like_the_expression(policy: Policy, text: str) -> None:
    """repr(policy) is the expression that builds it."""
    assert repr(policy) == text


policies = (
    st.lists(st.one_of(retry_policies, timeout_policies, breaker_policies), max_size=4)
    .map(lambda ps: _compose(*ps))
    .filter(lambda p: p is not None)
)


@settings(max_examples=150, deadline=None)
@given(policies)
def test_repr_round_trips_through_eval(policy: Policy) -> None:
    """eval(repr(p)) == p for every serialisable policy."""
    assert eval(repr(policy), {"Policy": Policy}) == policy  # noqa: S307 - the round trip under test


# --- plain data ---------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(policies)
def test_to_dict_round_trips(policy: Policy) -> None:
    """Policy.from_dict(p.to_dict()) == p, repr included (presets are kept)."""
    again = Policy.from_dict(policy.to_dict())
    assert again == policy
    assert repr(again) == repr(policy)


def test_to_dict_refuses_callables() -> None:
    """A layer holding code cannot be written to plain data; the path says which."""
    with pytest.raises(ConfigError, match=r"layers\[1\]\.on_timeout"):
        (Policy.llm() | Policy.timeout(3, on_timeout=lambda: None)).to_dict()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"layers": [{"type": "retry"}, {"type": "timeout", "seconds": 0}]},
            "layers[1].seconds: must be > 0, got 0",
        ),
        ({"layers": [{"type": "retyr"}]}, "layers[0].type: unknown layer type 'retyr'"),
        (
            {"layers": [{"type": "retry", "preset": "gpt"}]},
            "layers[0].preset: unknown preset 'gpt'",
        ),
        ({"layers": [{"type": "retry", "atempts": 3}]}, "layers[0]: unknown key(s): atempts"),
        (
            {"layers": [{"type": "retry", "attempts": "3"}]},
            "layers[0].attempts: must be an integer",
        ),
        ({"layers": "retry"}, "layers: must be a list"),
        ({"layers": [3]}, "layers[0]: must be a table/mapping"),
        ({"layer": []}, "unknown key(s): layer"),
        ([], "must be a table/mapping"),
        ({"layers": [{"type": "retry"}, {"type": "retry"}]}, "layers[1]: a retry inside a retry"),
        ({"layers": [{"type": "breaker", "storage": {"type": "memcached"}}]}, "layers[0].storage"),
    ],
)
def test_from_dict_errors_have_paths(data: object, message: str) -> None:
    """Every bad value raises ConfigError naming its path."""
    with pytest.raises(ConfigError) as caught:
        Policy.from_dict(data)
    assert message in str(caught.value)


def test_from_dict_collects_every_problem() -> None:
    """Problems in several layers are all reported at once."""
    with pytest.raises(ConfigError) as caught:
        Policy.from_dict(
            {"layers": [{"type": "timeout", "seconds": -1}, {"type": "retry", "jitter": 3}]}
        )
    paths = [path for path, _ in caught.value.problems]
    assert paths == ["layers[0].seconds", "layers[1].jitter"]


def test_preset_with_overrides_from_dict() -> None:
    """A retry layer can name a preset and override some of its fields."""
    p = Policy.from_dict({"layers": [{"type": "retry", "preset": "llm", "attempts": 6}]})
    assert p == Policy.llm(attempts=6)
    assert repr(p) == "Policy.llm(attempts=6)"


def test_load_node_policies_from_toml(tmp_path: Path) -> None:
    """One TOML file gives a policy per node."""
    path = tmp_path / "policies.toml"
    path.write_text(
        textwrap.dedent(
            """
            [nodes.plan]
            layers = [
                { type = "retry", preset = "llm" },
                { type = "breaker", failure_threshold = 3 },
                { type = "timeout", seconds = 30 },
            ]

            [[nodes.fetch.layers]]
            type = "timeout"
            seconds = 5
            """
        )
    )
    policies = load_node_policies(path)
    assert policies["plan"] == Policy.llm() | Policy.breaker(failure_threshold=3) | Policy.timeout(
        30
    )
    assert policies["fetch"] == Policy.timeout(5)


def test_load_node_policies_errors_have_node_paths(tmp_path: Path) -> None:
    """A bad value in the TOML file is reported with the node's path."""
    path = tmp_path / "policies.toml"
    path.write_text('[nodes.plan]\nlayers = [{ type = "timeout", seconds = 0 }]\n[other]\nx = 1\n')
    with pytest.raises(ConfigError, match="unknown top-level key"):
        load_node_policies(path)
    with pytest.raises(ConfigError, match=r"nodes\.plan\.layers\[0\]\.seconds: must be > 0"):
        load_node_policies({"nodes": {"plan": {"layers": [{"type": "timeout", "seconds": 0}]}}})
    with pytest.raises(ConfigError, match="nodes: must be a table"):
        load_node_policies({"nodes": [1]})
    with pytest.raises(ConfigError, match="invalid TOML"):
        bad = tmp_path / "bad.toml"
        bad.write_text("[nodes\n")
        load_node_policies(bad)


# --- malformed config files (defect 9) ---------------------------------------------------


def _deep(depth: int) -> object:
    value: object = "llm"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("preset", "shown"),
    [
        (["llm"], "must be a preset (one of: llm, tool, validation), got ['llm'] (list)"),
        (
            {"name": "llm"},
            "must be a preset (one of: llm, tool, validation), got {'name': 'llm'} (dict)",
        ),
        (3, "must be a preset (one of: llm, tool, validation), got 3 (int)"),
    ],
)
def test_a_preset_that_is_not_a_name_is_a_config_error(preset: object, shown: str) -> None:
    """``preset = ["llm"]`` or a table is a ConfigError at its path, not a TypeError."""
    with pytest.raises(ConfigError) as caught:
        Policy.from_dict({"layers": [{"type": "retry", "preset": preset}]})
    ((path, message),) = caught.value.problems
    assert path == "layers[0].preset"
    assert message == shown


def test_every_problem_of_a_file_is_listed(tmp_path: Path) -> None:
    """A bad preset no longer aborts the file: every node's problems are listed."""
    path = tmp_path / "policies.toml"
    path.write_text(
        textwrap.dedent(
            """
            surprise = 1

            [nodes.plan]
            layers = [{ type = "retry", preset = ["llm"], attempts = 0 }]

            [nodes.fetch]
            layers = [{ type = "retry", preset = { name = "llm" } }, { type = "timeout", seconds = 0 }]

            [nodes.check]
            layers = [{ type = ["timeout"] }]
            extra = true
            """
        )
    )
    with pytest.raises(ConfigError) as caught:
        load_node_policies(path)
    assert [path for path, _ in caught.value.problems] == [
        "",
        "nodes.plan.layers[0].preset",
        "nodes.plan.layers[0].attempts",
        "nodes.fetch.layers[0].preset",
        "nodes.fetch.layers[1].seconds",
        "nodes.check",
        "nodes.check.layers[0].type",
    ]


@pytest.mark.parametrize("text", ["[" * 2000 + "]" * 2000, "{ a = " * 2000 + "1" + " }" * 2000])
def test_a_deeply_nested_toml_file_is_a_config_error(tmp_path: Path, text: str) -> None:
    """Nesting too deep for the TOML parser is a ConfigError naming the file."""
    path = tmp_path / "deep.toml"
    path.write_text(f'[nodes.plan]\nlayers = [{{ type = "timeout", seconds = {text} }}]\n')
    with pytest.raises(ConfigError) as caught:
        load_node_policies(path)
    assert caught.value.problems == (
        (str(path), "invalid TOML: arrays or tables nested too deeply"),
    )


@pytest.mark.parametrize("field", ["type", "preset", "attempts"])
def test_deeply_nested_values_in_plain_data_are_config_errors(field: str) -> None:
    """A value nested too deeply to repr is still reported, at its path."""
    layer = {"type": "retry", field: _deep(5000)}
    with pytest.raises(ConfigError) as caught:
        Policy.from_dict({"layers": [layer]})
    assert [path for path, _ in caught.value.problems] == [f"layers[0].{field}"]


def test_keys_of_mixed_types_are_listed() -> None:
    """Unknown keys of different types (from a dict built in code) are all named."""
    with pytest.raises(ConfigError) as caught:
        Policy.from_dict({1: 2, "x": 3, "layers": "no"})
    assert caught.value.problems == (
        ("", "unknown key(s): 1, x"),
        ("layers", "must be a list, got str"),
    )
    with pytest.raises(ConfigError) as caught:
        load_node_policies({2: 1, "y": 1, "nodes": {"plan": {"layers": []}}})
    assert caught.value.problems == (("", "unknown top-level key(s): 2, y"),)


def test_a_loader_tripping_over_odd_data_still_gives_a_config_error() -> None:
    """A layer's loader failing on data it did not expect is reported at that layer."""
    storage = {"type": "redis", "url": "redis://127.0.0.1:1", 1: 2, "x": 3}
    with pytest.raises(ConfigError) as caught:
        Policy.from_dict(
            {
                "layers": [
                    {"type": "breaker", "storage": storage},
                    {"type": "timeout", "seconds": -1},
                ]
            }
        )
    (first, second) = caught.value.problems
    assert first[0] == "layers[0]"
    assert first[1].startswith("invalid layer: TypeError: ")
    assert second == ("layers[1].seconds", "must be >= 0, got -1")
    assert isinstance(caught.value.__cause__, TypeError)


# --- huge durations (defect 8) ----------------------------------------------------------


_HUGE = 1e10


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Policy.timeout(_HUGE), "seconds"),
        (lambda: Policy.timeout(1, cleanup_timeout=_HUGE), "cleanup_timeout"),
        (lambda: Policy.breaker(recovery_timeout=1e308), "recovery_timeout"),
        (lambda: Policy.retry(backoff=_HUGE, max_backoff=_HUGE), "backoff"),
        (lambda: Policy.retry(max_backoff=_HUGE), "max_backoff"),
        (lambda: Policy.retry(max_retry_after=_HUGE), "max_retry_after"),
        (lambda: Policy.llm(max_backoff=_HUGE), "max_backoff"),
        (lambda: Policy.chaos(latency=_HUGE), "latency"),
        (lambda: Policy.chaos(max_hang=_HUGE), "max_hang"),
        (lambda: RedisBreakerStorage("redis://127.0.0.1:1", timeout=_HUGE), "timeout"),
        (
            lambda: RedisBreakerStorage("redis://127.0.0.1:1", refresh_interval=_HUGE),
            "refresh_interval",
        ),
        (lambda: RedisBreakerStorage("redis://127.0.0.1:1", probe_lease=_HUGE), "probe_lease"),
        (
            lambda: RedisBreakerStorage("redis://127.0.0.1:1", warn_interval=_HUGE),
            "warn_interval",
        ),
    ],
)
def test_huge_durations_are_refused_when_built(build: Callable[[], object], field: str) -> None:
    """Every duration option refuses a huge finite value at build time, naming the field.

    Before, ``Policy.timeout(1e10)`` on a sync function, an open breaker with
    ``recovery_timeout=1e308`` and a sync retry with a 1e10 s backoff raised
    OverflowError at call time.
    """
    with pytest.raises(ConfigError) as caught:
        build()
    (problem,) = caught.value.problems
    assert problem[0] == field
    assert problem[1].startswith("must be <= 2073600 (24 days), got 1e+")


def test_huge_durations_in_plain_data_name_their_path() -> None:
    """Loaded from data, each huge duration is listed with its path, all at once."""
    with pytest.raises(ConfigError) as caught:
        Policy.from_dict(
            {
                "layers": [
                    {"type": "retry", "backoff": _HUGE, "max_backoff": _HUGE},
                    {
                        "type": "breaker",
                        "recovery_timeout": _HUGE,
                        "storage": {"type": "redis", "url": "redis://127.0.0.1:1", "timeout": 1e12},
                    },
                    {"type": "timeout", "seconds": _HUGE, "cleanup_timeout": _HUGE},
                ]
            }
        )
    assert [path for path, _ in caught.value.problems] == [
        "layers[0].backoff",
        "layers[0].max_backoff",
        "layers[1].recovery_timeout",
        "layers[1].storage.timeout",
        "layers[2].seconds",
        "layers[2].cleanup_timeout",
    ]


def test_the_longest_durations_work_at_call_time() -> None:
    """At MAX_DURATION a sync timeout, an open breaker and a jittered backoff do not overflow."""
    assert Policy.timeout(MAX_DURATION).wrap(lambda: time.sleep(0.01) or 1)() == 1

    def down(_state: object = None) -> None:
        raise ConnectionError("down")

    guarded = Policy.breaker(failure_threshold=1, recovery_timeout=MAX_DURATION).wrap(down)
    with pytest.raises(ConnectionError):
        guarded()
    with pytest.raises(NodeCircuitOpenError) as caught:
        guarded()
    assert MAX_DURATION - 60 < caught.value.recovery_time <= MAX_DURATION

    # The backoff (up to twice MAX_DURATION with full jitter) really starts to
    # wait, and a cancel token ends it.
    node = create_node(
        down,
        name="backoff",
        policy=Policy.retry(backoff=MAX_DURATION, max_backoff=MAX_DURATION, jitter=1.0),
    )
    token = CancelToken()
    timer = threading.Timer(0.05, token.cancel)
    timer.start()
    started = time.monotonic()
    update = node({}, config={"configurable": {"cancel_token": token}})
    timer.join()
    assert time.monotonic() - started < 2
    assert update["errors"][0]["code"] == ErrorCode.CANCELLED.value


# --- wrap keeps kind and signature --------------------------------------------------


def test_wrap_keeps_sync_kind_and_signature() -> None:
    """A sync function stays sync, with its name and signature."""

    def add(x: int, y: int = 1) -> int:
        return x + y

    wrapped = (Policy.llm() | Policy.breaker() | Policy.timeout(5)).wrap(add)
    assert wrapped(2, y=3) == 5
    assert wrapped.__name__ == "add"
    import inspect

    assert str(inspect.signature(wrapped)) == str(inspect.signature(add))
    assert not inspect.iscoroutinefunction(wrapped)


@pytest.mark.anyio
async def test_wrap_keeps_async_kind() -> None:
    """An async function stays async and is awaited through every layer."""
    import inspect

    async def double(x: int) -> int:
        await anyio.lowlevel.checkpoint()
        return 2 * x

    wrapped = (Policy.llm() | Policy.breaker() | Policy.timeout(5)).wrap(double)
    assert inspect.iscoroutinefunction(wrapped)
    assert await wrapped(21) == 42


def test_none_wrap_is_the_function_itself() -> None:
    """The empty policy adds nothing, not even a frame."""

    def f() -> int:
        return 1

    assert Policy.none().wrap(f) is f


def test_wrap_rejects_non_callables() -> None:
    """wrap() on something that cannot be called fails at wrap time."""
    with pytest.raises(ConfigError, match="must be callable"):
        Policy.llm().wrap(3, name="x")  # type: ignore[arg-type]


# --- meaning of order ---------------------------------------------------------------


class _Flaky:
    """Fails with ConnectionError `failures` times, then returns 'ok'."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"flaky call {self.calls}")
        return "ok"


@pytest.mark.anyio
async def test_retry_outside_breaker_counts_every_attempt() -> None:
    """Policy.llm() | Policy.breaker(): each attempt is seen by the breaker."""
    flaky = _Flaky(failures=10)
    wrapped = (Policy.retry(attempts=3, backoff=0) | Policy.breaker(failure_threshold=3)).wrap(
        flaky, name="n"
    )
    with pytest.raises(NodeRetryExhaustedError) as caught:
        await wrapped()
    assert flaky.calls == 3
    assert isinstance(caught.value.last_error, NodeCircuitOpenError | ConnectionError)
    with pytest.raises((NodeCircuitOpenError, NodeRetryExhaustedError)):
        await wrapped()
    assert flaky.calls == 3  # the open breaker rejected every further attempt


@pytest.mark.anyio
async def test_breaker_outside_retry_counts_each_call_once() -> None:
    """Policy.breaker() | Policy.llm(): one exhausted call is one breaker failure."""
    flaky = _Flaky(failures=10)
    wrapped = (Policy.breaker(failure_threshold=2) | Policy.retry(attempts=3, backoff=0)).wrap(
        flaky, name="n"
    )
    with pytest.raises(NodeRetryExhaustedError):
        await wrapped()
    assert flaky.calls == 3
    with pytest.raises(NodeRetryExhaustedError):
        await wrapped()
    assert flaky.calls == 6
    with pytest.raises(NodeCircuitOpenError):
        await wrapped()
    assert flaky.calls == 6


class TestVirtualTime:
    """Order-dependent timing, on trio's virtual clock (instant and exact)."""

    @pytest.fixture
    def anyio_backend(self) -> tuple[str, dict[str, object]]:
        import trio.testing

        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})

    @pytest.mark.anyio
    async def test_timeout_right_of_retry_bounds_each_attempt(self) -> None:
        """retry | timeout(1): every attempt times out at 1 s, then the retry gives up."""
        calls = 0

        async def hang() -> None:
            nonlocal calls
            calls += 1
            await anyio.sleep(100)

        wrapped = (Policy.retry(attempts=3, backoff=2, jitter=0) | Policy.timeout(1)).wrap(
            hang, name="n"
        )
        start = anyio.current_time()
        with pytest.raises(NodeRetryExhaustedError) as caught:
            await wrapped()
        assert calls == 3
        assert isinstance(caught.value.last_error, NodeTimeoutError)
        # 3 attempts x 1 s + sleeps of 2 s and 4 s
        assert anyio.current_time() - start == pytest.approx(9.0)

    @pytest.mark.anyio
    async def test_timeout_left_of_retry_bounds_the_whole_call(self) -> None:
        """timeout(5) | retry: the budget includes backoff sleeps."""
        calls = 0

        async def hang() -> None:
            nonlocal calls
            calls += 1
            await anyio.sleep(100)

        wrapped = (Policy.timeout(5) | Policy.retry(attempts=3, backoff=0)).wrap(hang, name="n")
        start = anyio.current_time()
        with pytest.raises(NodeTimeoutError):
            await wrapped()
        assert calls == 1
        assert anyio.current_time() - start == pytest.approx(5.0)

    @pytest.mark.anyio
    async def test_retry_does_not_sleep_past_the_enclosing_deadline(self) -> None:
        """timeout(10) | retry(backoff=8) | timeout(3): after the first 3 s attempt the 8 s sleep would overrun, so it stops at once."""
        flaky = _Flaky(failures=10)

        async def slow_fail() -> str:
            await anyio.sleep(3)
            return await flaky()

        wrapped = (
            Policy.timeout(10) | Policy.retry(attempts=5, backoff=8, jitter=0) | Policy.timeout(4)
        ).wrap(slow_fail, name="n")
        start = anyio.current_time()
        with pytest.raises(NodeRetryExhaustedError) as caught:
            await wrapped()
        assert flaky.calls == 1
        assert caught.value.attempts == 1
        assert isinstance(caught.value.__cause__, ConnectionError)
        assert anyio.current_time() - start == pytest.approx(3.0)


def test_no_backoff_makes_sleeps_zero() -> None:
    """Under resilient_nodes.testing.no_backoff() a long backoff does not sleep."""
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("down")
        return "ok"

    with no_backoff():
        assert Policy.retry(attempts=3, backoff=1000, max_backoff=1000).wrap(flaky)() == "ok"
    assert calls == 3
