"""Global switches for users' tests. Strictly private.

`resilient_nodes.testing` flips them; the retry layer reads them only when a
backoff sleep is due, so they cost nothing on the success path. They are
process-global on purpose (see `resilient_nodes.testing`).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Final

__all__ = ["Rng", "Switches", "switches"]

Rng = random.Random | Callable[[], float]
"""A random source for jitter: a `random.Random`, or a callable returning [0, 1)."""


class Switches:
    """What users' tests may change: backoff delays, the sleeps, the jitter source."""

    __slots__ = ("async_sleep", "rng", "sync_sleep", "zero_backoff")

    def __init__(self) -> None:
        self.zero_backoff = False
        self.rng: Rng | None = None
        self.sync_sleep: Callable[[float], object] | None = None
        self.async_sleep: Callable[[float], Awaitable[object]] | None = None


switches: Final = Switches()
