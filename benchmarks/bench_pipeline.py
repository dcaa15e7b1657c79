"""Full pipeline and full node cases, against the naive peer stack.

Pipeline: ``(Policy.retry() | Policy.breaker() | Policy.timeout(30)).wrap(f)``.
Node: ``create_node(impl, policy=<that policy>)`` called as ``await node(state)``
(context, logging filtered to warnings, error capture), against ``await
impl(state)``. The naive stack is tenacity ``@retry`` + pybreaker ``calling()`` +
``anyio.fail_after(30)`` per attempt, the usual hand-assembled alternative.
"""

from __future__ import annotations

from resilient_nodes import Policy, create_node

from ._common import STATE, Flaky, by_hand, f, flaky_impl, full_policy, impl, naive_stack
from ._timing import Case, call_loop

SECTION = "pipeline"


def success_cases() -> list[Case]:
    ours = full_policy().wrap(f, name="bench_pipeline")
    return [
        Case(
            "pipeline_ours",
            "ours: `(retry() | breaker() | timeout(30)).wrap(f)`",
            call_loop(ours),
            ours=True,
        ),
        Case(
            "pipeline_naive",
            "naive stack: tenacity `@retry` + pybreaker `calling()` + `fail_after(30)`",
            call_loop(naive_stack(f)),
        ),
    ]


def failure_cases() -> list[Case]:
    ours = full_policy(zero_backoff=True).wrap(Flaky(), name="bench_pipeline_fail")
    return [
        Case(
            "fail_pipeline_ours",
            "ours: `(retry(backoff=0) | breaker() | timeout(30)).wrap(f)`",
            call_loop(ours),
            ours=True,
        ),
        Case(
            "fail_pipeline_naive",
            "naive stack, `wait_none()`",
            call_loop(naive_stack(Flaky(), zero_wait=True)),
        ),
    ]


def node_floor() -> Case:
    return Case("node_floor", "bare `await impl(state)` (FLOOR)", call_loop(impl, STATE))


def node_cases() -> list[Case]:
    node = create_node(impl, name="bench_node", policy=full_policy())
    shell = create_node(impl, name="bench_shell", policy=Policy.none())
    return [
        Case(
            "node_ours",
            "ours: `create_node(impl, policy=retry() | breaker() | timeout(30))`",
            call_loop(node, STATE),
            ours=True,
        ),
        Case(
            "node_shell",
            "ours: `create_node(impl)` (no policy: context, logs, capture)",
            call_loop(shell, STATE),
            ours=True,
        ),
        Case("node_naive", "naive stack around `impl`", call_loop(naive_stack(impl), STATE)),
    ]


def node_failure_floor() -> Case:
    return Case(
        "fail_node_floor",
        "hand-written retry loop around `impl` (FLOOR)",
        call_loop(by_hand(flaky_impl()), STATE),
    )


def node_failure_cases() -> list[Case]:
    node = create_node(flaky_impl(), name="bench_node_fail", policy=full_policy(zero_backoff=True))
    return [
        Case(
            "fail_node_ours",
            "ours: full node, `retry(backoff=0)`",
            call_loop(node, STATE),
            ours=True,
        ),
        Case(
            "fail_node_naive",
            "naive stack around `impl`, `wait_none()`",
            call_loop(naive_stack(flaky_impl(), zero_wait=True), STATE),
        ),
    ]
