"""A story pipeline that fails on purpose, to show what the policies do.

Run it with ``python -m resilient_nodes.demo`` (``--seed N`` for another
schedule, ``--quiet`` for the summary alone). It builds a real LangGraph
``StateGraph`` of seven nodes and sends a batch of stories through it, one
invocation per story::

    outline --> research --> draft --> check --> blurb --> publish --> END
       |           |            |         |        |          |
       +-----------+------------+---------+--------+----------+--> handle_error --> END
                 (as soon as an error is recorded in the state)

The LLM and tool "services" behind the nodes are simulated in-process (no
network, no API keys; published stories go to a temporary directory that is
removed at the end) and misbehave on a schedule drawn from ``random.Random(seed)``:

* ``outline`` (an LLM) answers some calls with ``503 Service Unavailable``; the
  retry layer backs off and tries again. Policy:
  ``Policy.llm(...) | Policy.breaker(...)``, a breaker that counts every attempt
  (it stays closed: a success resets its count).
* ``research`` (a search tool) is rate limited once: ``429`` with
  ``Retry-After``, which the backoff waits out. Policy:
  ``Policy.timeout(...) | Policy.tool(...) | Policy.timeout(...)``, a budget for
  the whole call (backoff included) and a bound per attempt.
* ``draft`` (an LLM) hangs once; the per-attempt timeout cuts it off and the
  retry succeeds. Policy: ``Policy.llm(...) | Policy.timeout(...)``.
* ``check`` rejects a truncated draft with a validation error, which is not
  retried (although the node has a retry layer): it is recorded in the state's
  ``errors``, and a conditional edge sends the story to ``handle_error``, which
  records a ``blocked`` gate decision.
* ``blurb`` (an LLM) streams its tokens under ``Policy.llm(...) |
  Policy.stream(first_item=..., idle=...)``: once its stream sends nothing, and
  is cut at the first-token bound and restarted (no token was delivered yet, so
  none is delivered twice). For one story its primary model is overloaded
  (``529``) on every attempt, and the node's ``Policy.fallback(...)`` hands the
  call to a backup model; the logs say which one served.
* ``publish`` depends on a service that is down for the first stories. Policy:
  ``Policy.breaker(...) | Policy.tool(...)``, so each exhausted call counts once;
  after two the breaker opens, the next stories fail fast with
  ``CIRCUIT_OPEN``, and after the recovery timeout one probe gets through and
  closes it again.

After the batch, `fanout` sends twelve ``Send`` branches at once to a search
node under ``Policy.tool(...) | Policy.rate_limit(4, per=0.5, key=...)``: the
branches share the key's window, wait their turn instead of failing, and no half
second sees more than four calls.

Progress comes from the library's own structlog events, streamed as they
happen; a summary table follows at the end. Backoff jitter is 0 in every
policy, so the same seed gives the same run, with the policies' round numbers
as delays. The time the demo takes is real time (backoffs of tens of
milliseconds, a Retry-After of 0.3 s, timeouts of a fraction of a second): a
second or two.

Where to look, in the order a reader might want them:

* `services`: the simulated services, how each one fails, and the schedule.
* `graph`: the ``StateGraph``, one `Policy` per node, and the routing.
* `display`: the structlog events streamed to the terminal, and the summary.
* `report`: what a run produced, as data, and the check of every failure mode.
* `fanout`: the ``Send`` fan-out held under one shared rate limit.
* `run`: `run_demo`, which wires the above together.
* `cli`: `main`, the command line.

The demo uses only the public ``resilient_nodes`` root, so any of it can be
copied into an application as it is.
"""

from __future__ import annotations

from .cli import main
from .display import render_summary
from .report import (
    BreakerTransition,
    Check,
    DemoReport,
    ErrorEntry,
    NodeStats,
    ProgressEvent,
    RetryWait,
    Step,
    StoryResult,
)
from .run import run_demo
from .services import APIStatusError, DraftValidationError, StoryState

__all__ = [
    "APIStatusError",
    "BreakerTransition",
    "Check",
    "DemoReport",
    "DraftValidationError",
    "ErrorEntry",
    "NodeStats",
    "ProgressEvent",
    "RetryWait",
    "Step",
    "StoryResult",
    "StoryState",
    "main",
    "render_summary",
    "run_demo",
]
