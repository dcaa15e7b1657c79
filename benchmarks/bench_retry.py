"""Retry layer cases: ours against tenacity, stamina and backoff.

- success: the function returns at once (ours: ``Policy.retry().wrap(f)``;
  tenacity ``@retry(stop_after_attempt(3), wait_exponential_jitter())``; stamina
  ``@retry(on=Exception, attempts=3)``; backoff ``@on_exception(expo, Exception,
  max_tries=3)``).
- one failure: the first attempt raises ``ConnectionError``, the second returns;
  zero backoff everywhere. stamina's retry hooks are switched off and backoff's
  logger is None, as our retry log line is filtered out: the figures compare
  retry machinery, not logging.
"""

from __future__ import annotations

import backoff
import stamina
import stamina.instrumentation
from tenacity import retry, stop_after_attempt, wait_exponential_jitter, wait_none

from resilient_nodes import Policy

from ._common import Flaky, f, flaky_fn
from ._timing import Case, call_loop

SECTION = "retry"


def success_cases() -> list[Case]:
    ours = Policy.retry().wrap(f, name="bench_retry")
    ten = retry(stop=stop_after_attempt(3), wait=wait_exponential_jitter())(f)
    sta = stamina.retry(on=Exception, attempts=3)(f)
    bo = backoff.on_exception(backoff.expo, Exception, max_tries=3)(f)
    return [
        Case("retry_ours", "ours: `Policy.retry().wrap(f)`", call_loop(ours), ours=True),
        Case(
            "retry_tenacity",
            "tenacity `@retry(stop_after_attempt(3), wait_exponential_jitter())`",
            call_loop(ten),
        ),
        Case("retry_stamina", "stamina `@retry(on=Exception, attempts=3)`", call_loop(sta)),
        Case(
            "retry_backoff", "backoff `@on_exception(expo, Exception, max_tries=3)`", call_loop(bo)
        ),
    ]


def failure_cases() -> list[Case]:
    stamina.instrumentation.set_on_retry_hooks([])
    ours = Policy.retry(backoff=0, jitter=0, max_backoff=0).wrap(Flaky(), name="bench_retry_fail")
    ten = retry(stop=stop_after_attempt(3), wait=wait_none())(Flaky())
    sta = stamina.retry(on=ConnectionError, attempts=3, wait_initial=0, wait_max=0, wait_jitter=0)(
        flaky_fn()
    )
    bo = backoff.on_exception(
        backoff.constant, ConnectionError, interval=0, jitter=None, max_tries=3, logger=None
    )(flaky_fn())
    return [
        Case(
            "fail_retry_ours",
            "ours: `Policy.retry(backoff=0, jitter=0)`",
            call_loop(ours),
            ours=True,
        ),
        Case(
            "fail_retry_tenacity",
            "tenacity `@retry(stop_after_attempt(3), wait_none())`",
            call_loop(ten),
        ),
        Case(
            "fail_retry_stamina",
            "stamina `@retry(on=ConnectionError, attempts=3)`, zero wait, no hooks",
            call_loop(sta),
        ),
        Case(
            "fail_retry_backoff",
            "backoff `@on_exception(constant, interval=0, logger=None)`",
            call_loop(bo),
        ),
    ]
