"""A node's retry budget: retries at most ``ratio`` x first attempts, plus ``minimum``.

Counted over a sliding window of ``window`` seconds, in ten buckets of a tenth of
it each (so the window counted is between 0.9 and 1 times ``window``). Every call
of the node records its first attempt; a retry is allowed only while, counting
it, the retries in the window stay at most ``ratio x first attempts + minimum``.
One tracker per wrapped node, shared by all its calls (threads included: one
short lock, never held across a call).

Why a budget: retries multiply load exactly when the dependency is least able to
take it. With 3 attempts an outage triples the requests; with a budget of
``ratio=0.2`` it adds at most a fifth, plus the ``minimum`` that lets a quiet
node still retry a one-off failure.
"""

from __future__ import annotations

import math
import threading
import time
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._config import RetryBudget

__all__ = ["BudgetTracker"]

_BUCKETS: Final = 10


class BudgetTracker:
    """The sliding-window counts of one node's first attempts and retries.

    Args:
        budget: The ratio, minimum, window and (for tests) clock.
    """

    __slots__ = ("_calls", "_clock", "_lock", "_retries", "_stamps", "_width", "budget")

    def __init__(self, budget: RetryBudget) -> None:
        self.budget = budget
        self._clock = budget.clock or time.monotonic
        self._width = budget.window / _BUCKETS
        self._lock = threading.Lock()
        self._calls = [0] * _BUCKETS
        self._retries = [0] * _BUCKETS
        # Which bucket number (time // width) each slot holds now; stale slots
        # are emptied when their turn comes round again.
        self._stamps = [-math.inf] * _BUCKETS

    def _slot(self, now: float) -> int:
        # Lock held.
        number = math.floor(now / self._width)
        index = number % _BUCKETS
        if self._stamps[index] != number:
            self._stamps[index] = number
            self._calls[index] = 0
            self._retries[index] = 0
        return index

    def _totals(self, now: float) -> tuple[int, int]:
        # Lock held.
        oldest = math.floor(now / self._width) - _BUCKETS + 1
        calls = retries = 0
        for index in range(_BUCKETS):
            if self._stamps[index] >= oldest:
                calls += self._calls[index]
                retries += self._retries[index]
        return calls, retries

    def record_call(self) -> None:
        """Count one call's first attempt."""
        now = self._clock()
        with self._lock:
            self._calls[self._slot(now)] += 1

    def try_retry(self) -> bool:
        """Take one retry from the budget if it allows one.

        Returns:
            True (and the retry is counted) if the budget allows it.
        """
        now = self._clock()
        budget = self.budget
        with self._lock:
            index = self._slot(now)
            calls, retries = self._totals(now)
            if retries + 1 > budget.ratio * calls + budget.minimum:
                return False
            self._retries[index] += 1
            return True

    def refund(self) -> None:
        """Give back a retry taken by `try_retry` that did not happen after all."""
        now = self._clock()
        with self._lock:
            index = self._slot(now)
            if self._retries[index] > 0:
                self._retries[index] -= 1

    def counts(self) -> tuple[int, int]:
        """(first attempts, retries) in the window now."""
        now = self._clock()
        with self._lock:
            self._slot(now)
            return self._totals(now)
