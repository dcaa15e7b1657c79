"""Backoff-maths behaviour that mutation testing showed no other test pinned.

`tests/mutation/run.py` (``tox -e mutation``) is the run that found the gaps.
"""

from __future__ import annotations

import pytest

from resilient_nodes._classification import ErrorCategory
from resilient_nodes._config import RetryConfig
from resilient_nodes._retry import BackoffWait, _CallState, retry_delay
from resilient_nodes._switches import switches


class _CountingRng:
    def __init__(self, value: float) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.value


def test_rng_may_return_one() -> None:
    """A draw of exactly 1.0 is accepted and adds the whole jitter."""
    config = RetryConfig(backoff=2, jitter=0.5)
    assert retry_delay(1, config, rng=lambda: 1.0) == 3.0


@pytest.mark.parametrize(
    "config",
    [RetryConfig(backoff=2, jitter=0), RetryConfig(backoff=0, max_backoff=0, jitter=0.5)],
    ids=["no jitter", "no backoff"],
)
def test_nothing_is_drawn_without_jitter_to_add(config: RetryConfig) -> None:
    """With no jitter, or a zero delay, the random source is not consulted at all."""
    rng = _CountingRng(5.0)  # out of range: a draw would raise
    assert retry_delay(1, config, rng=rng) == config.backoff
    assert rng.calls == 0


def _failed_state(error: BaseException) -> _CallState:
    state = _CallState(print, (), {})
    state.fail(error)
    return state


def test_backoff_wait_uses_its_own_rng_first() -> None:
    """BackoffWait draws from the rng it was given, before the testing switch."""
    config = RetryConfig(backoff=2, jitter=0.5)
    own = _CountingRng(0.5)
    switched = _CountingRng(1.0)
    saved, switches.rng = switches.rng, switched
    try:
        assert BackoffWait(config, rng=own)(_failed_state(ConnectionError("x"))) == 2.5
        assert (own.calls, switched.calls) == (1, 0)
        assert BackoffWait(config)(_failed_state(ConnectionError("x"))) == 3.0
        assert switched.calls == 1
    finally:
        switches.rng = saved


def test_backoff_wait_caches_the_classification_on_the_call_state() -> None:
    """The wait leaves its classification on the call state for the predicate to reuse."""
    error = ConnectionError("x")
    state = _failed_state(error)
    BackoffWait(RetryConfig(jitter=0))(state)
    assert state.classified is not None
    cached_error, verdict = state.classified
    assert cached_error is error
    assert verdict.category is ErrorCategory.NETWORK
