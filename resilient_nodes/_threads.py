"""Worker threads for sync functions that must be abandoned at a deadline or token.

Python cannot kill a thread. A sync function under a timeout (or a cancel token)
therefore runs in a worker thread, and the caller stops *waiting* for it at the
deadline; the thread runs on until the function returns, and its result is then
dropped. Such abandoned threads are counted per node, and new sync calls are
refused with `AbandonedThreadLimitError` (before they start) instead of piling up
more stuck threads, once either

- the node has `MAX_ABANDONED_THREADS` (32) abandoned threads still running: a
  node whose dependency hangs uses up its own budget and no other node's; or
- the process has `MAX_ABANDONED_THREADS_TOTAL` (256) of them, over all nodes: a
  safety cap for when many nodes hang at once (or names are made up per call),
  so that the process keeps room for the threads it needs for everything else
  (a container's limit on processes and threads is often 1024 or a few
  thousand).

Calls without a node name share one budget. Cleanup threads (a sync
``on_timeout``) are never refused: the timeout has already happened and its
cleanup must run; the wait for them is bounded by ``cleanup_timeout``, and one
that overruns is counted like any other abandoned thread.

Worker threads are daemon threads, so abandoned ones never block interpreter
exit; they run with a copy of the caller's context variables, so
`current_context()` and structlog's context variables work inside.
"""

from __future__ import annotations

import contextvars
import threading
import time
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, TypeVar

from . import _tokens
from ._deadline import sync_deadline_scope
from ._logging import LogEvent, emit, get_logger
from .errors import AbandonedThreadLimitError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "MAX_ABANDONED_THREADS",
    "MAX_ABANDONED_THREADS_TOTAL",
    "Job",
    "Outcome",
    "abandoned_threads",
    "admit",
    "node_abandoned_threads",
    "run",
]

T = TypeVar("T")

MAX_ABANDONED_THREADS: Final = 32
"""How many abandoned worker threads one node may have running (see module docs)."""

MAX_ABANDONED_THREADS_TOTAL: Final = 256
"""How many abandoned worker threads the process may have running (see module docs)."""


_lock = threading.Lock()
_total = 0
# Only nodes with abandoned threads have an entry, so names made up per call
# (``with_timeout(..., name=url)``) do not accumulate.
_by_node: dict[str | None, int] = {}


def abandoned_threads() -> int:
    """How many abandoned worker threads are still running, over all nodes."""
    return _total


def node_abandoned_threads(name: str | None) -> int:
    """How many abandoned worker threads of node *name* are still running."""
    return _by_node.get(name, 0)


def admit(name: str | None, logger: Any) -> None:
    """Refuse a new worker thread for node *name* if a limit is reached.

    Raises:
        AbandonedThreadLimitError: The node's or the process's limit is reached.
    """
    # Read without the lock: a call racing with a thread that ends (or is
    # abandoned) just now may go either way, as it could a moment later.
    scope: Literal["node", "process"]
    if _by_node.get(name, 0) >= MAX_ABANDONED_THREADS:
        limit, scope = MAX_ABANDONED_THREADS, "node"
    elif _total >= MAX_ABANDONED_THREADS_TOTAL:
        limit, scope = MAX_ABANDONED_THREADS_TOTAL, "process"
    else:
        return
    emit(logger.error, LogEvent.NODE_THREAD_LIMIT_REACHED, limit=limit, scope=scope)
    raise AbandonedThreadLimitError(limit, node=name, scope=scope)


def _count(name: str | None, change: int) -> tuple[int, int]:
    """Add *change* to node *name*'s count and the total; the lock is held."""
    global _total  # noqa: PLW0603
    own = _by_node.get(name, 0) + change
    if own:
        _by_node[name] = own
    else:
        del _by_node[name]
    _total += change
    return own, _total


class Job(Generic[T]):
    """One function call in a worker thread, and what became of it.

    The thread and the waiter hand over under the module lock, so a call that
    finishes just as it is abandoned is counted exactly once either way.
    """

    __slots__ = ("_error", "_result", "abandoned", "done", "finished", "logger", "name")

    def __init__(self, logger: Any, name: str | None) -> None:
        self.done = threading.Event()
        self.finished = False
        self.abandoned = False
        self.logger = logger
        self.name = name
        self._result: T | None = None
        self._error: BaseException | None = None

    def run(self, fn: Callable[[], T], deadline: float | None = None) -> None:
        """Thread body: call *fn* and record the outcome for `value`.

        Returns nothing, even when *fn* returned an awaitable: trio's worker
        threads refuse functions that look asynchronous.
        """
        try:
            if deadline is None:
                self._result = fn()
            else:
                # Published inside the thread's own context, so a retry running
                # in this thread sees the deadline and never sleeps past it.
                with sync_deadline_scope(max(0.0, deadline - time.monotonic())):
                    self._result = fn()
        except BaseException as exc:  # handed to the waiting caller, not classified
            self._error = exc
        with _lock:
            self.finished = True
            late = self.abandoned
            if late:
                _count(self.name, -1)
        self.done.set()
        if late:
            emit(
                self.logger.info,
                LogEvent.NODE_ABANDONED_THREAD_FINISHED,
                error=None if self._error is None else type(self._error).__name__,
            )

    def abandon(self) -> bool:
        """Stop waiting for the thread.

        Returns:
            True if the thread is still running (now counted as abandoned);
            False if it finished meanwhile (its outcome is valid).
        """
        with _lock:
            if self.finished:
                return False
            self.abandoned = True
            own, total = _count(self.name, 1)
        emit(
            self.logger.warning,
            LogEvent.NODE_THREAD_ABANDONED,
            abandoned_threads=own,
            abandoned_threads_total=total,
        )
        return True

    def value(self) -> T:
        """The call's return value, or re-raise its exception."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return self._result  # type: ignore[return-value]


class Outcome(Generic[T]):
    """What `run` saw: the call finished, or the caller stopped waiting."""

    __slots__ = ("finished", "job")

    def __init__(self, job: Job[T], finished: bool) -> None:
        self.job = job
        self.finished = finished

    def value(self) -> T:
        """The finished call's value (or its exception, re-raised)."""
        return self.job.value()


def _wait(
    job: Job[Any],
    deadline: float | None,
    token: _tokens.CancelTokenLike | None,
    poll: float | None,
) -> bool:
    """Wait for *job*; False once the deadline passes or the token is set."""
    while True:
        if token is not None and _tokens.is_token_cancelled(token):
            return False
        wait = None if deadline is None else deadline - time.monotonic()
        if wait is not None and wait <= 0:
            return False
        if poll is not None:
            wait = poll if wait is None else min(wait, poll)
        # A finished job sets `done`; so does our token, which is told apart by
        # `finished`.
        if job.done.wait(wait) and job.finished:
            return True


def run(
    fn: Callable[[], T],
    *,
    timeout: float | None,
    token: _tokens.CancelTokenLike | None,
    name: str | None,
    logger: Any = None,
    refusable: bool = True,
) -> Outcome[T]:
    """Run *fn* in a worker thread and wait for it, the deadline or the token.

    Args:
        fn: Zero-argument sync callable.
        timeout: Seconds to wait (None: no deadline). Also published to the
            thread as its sync deadline.
        token: Stop waiting when this is set (None: no token).
        name: Node name for errors, log events and the per-node count.
        logger: Bound logger for the thread events.
        refusable: False for cleanup threads, which the limits never refuse
            (they are still counted if abandoned).

    Returns:
        The outcome; when it is not finished, the thread has been abandoned.

    Raises:
        AbandonedThreadLimitError: If *refusable* and the node's or the
            process's abandoned-thread limit is reached.
    """
    if logger is None:
        logger = get_logger(node=name)
    if refusable:
        admit(name, logger)
    deadline = None if timeout is None else time.monotonic() + timeout
    job: Job[T] = Job(logger, name)
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run,
        args=(job.run, fn, deadline),
        name=f"resilient_nodes:{name or 'call'}",
        daemon=True,
    )
    thread.start()
    remove: Callable[[], None] | None = None
    poll: float | None = None
    if isinstance(token, _tokens.CancelToken):
        remove = token.on_cancel(job.done.set)
    elif token is not None:
        poll = _tokens.POLL_INTERVAL
    try:
        if _wait(job, deadline, token, poll):
            return Outcome(job, finished=True)
    except BaseException:
        # KeyboardInterrupt while waiting: the thread runs on, like any other
        # abandoned one.
        job.abandon()
        raise
    finally:
        if remove is not None:
            remove()
    return Outcome(job, finished=not job.abandon())
