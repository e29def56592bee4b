"""What a running task sees: ``self.request``, ``update_state``, ``retry``; and the retry delay,
time limits and revoke interruption (compile stage: runs on workers, stdlib only).

Time limits and ``revoke(terminate=True)`` raise an exception inside the running thread
(``PyThreadState_SetAsyncExc``). Python delivers it at the next bytecode: a step blocked in C
code (a long ``time.sleep``, a socket read, a numpy call) is interrupted only when that call
returns.
"""
from __future__ import annotations

import ctypes
import random
import threading
from typing import Any

from ..errors import MaxRetriesExceededError, Retry, SoftTimeLimitExceeded, TimeLimitExceeded
from ..task import Request

__all__ = ["BoundTask", "retry_delay", "interrupt_thread", "TimeLimits"]


class BoundTask:
    """The ``self`` of a ``bind=True`` task while it runs in a workflow."""

    def __init__(self, step: Any, request: Request, report: Any) -> None:
        self.name = step.name
        self.request = request
        self.max_retries = step.opts.get("max_retries", 3)
        self.default_retry_delay = step.opts.get("default_retry_delay", 180)
        self._report = report

    def __repr__(self) -> str:
        return f"<bound task {self.name} id={self.request.id}>"

    def update_state(self, task_id: str | None = None, state: str | None = None,
                     meta: Any = None) -> None:
        """Report a custom state (e.g. ``PROGRESS``) and meta; seen live by the client."""
        self._report(task_id or self.request.id, state or "PROGRESS", meta)

    def retry(self, args: Any = None, kwargs: Any = None, exc: BaseException | None = None,
              countdown: float | None = None, max_retries: int | None = None,
              throw: bool = True, **options: Any) -> Retry:
        """Ask for another attempt after ``countdown`` s (default ``default_retry_delay``).

        Past ``max_retries`` this raises ``exc`` (or ``MaxRetriesExceededError``), as Celery.
        """
        if args is not None or kwargs is not None:
            raise TypeError("retry(args=..., kwargs=...) is not supported: a retry re-runs the "
                            "same call")
        limit = self.max_retries if max_retries is None else max_retries
        if limit is not None and self.request.retries >= limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(
                f"{self.name}: can't retry, max_retries={limit} used up")
        delay = self.default_retry_delay if countdown is None else countdown
        err = Retry(f"Retry in {delay}s" + (f": {exc!r}" if exc is not None else ""), exc, delay)
        if throw:
            raise err
        return err


def retry_delay(opts: dict[str, Any], retries: int) -> float:
    """Celery's autoretry countdown: exponential backoff with full jitter, or the default delay."""
    backoff = opts.get("retry_backoff", False)
    if not backoff:
        return float(opts.get("default_retry_delay", 180))
    factor = 1 if backoff is True else float(backoff)
    delay = min(float(opts.get("retry_backoff_max", 600)), factor * (2 ** retries))
    if opts.get("retry_jitter", True):
        delay = random.uniform(0, delay)
    return delay


def interrupt_thread(thread_id: int, exc_type: type[BaseException]) -> bool:
    """Raise ``exc_type`` in another thread at its next bytecode; True if delivered."""
    n = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id),
                                                   ctypes.py_object(exc_type))
    if n > 1:  # should not happen; undo as the C API asks
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)
        return False
    return n == 1


class TimeLimits:
    """Soft and hard time limits for one step, as timers that interrupt the step's thread."""

    def __init__(self, soft: float | None, hard: float | None) -> None:
        self._timers: list[threading.Timer] = []
        self._lock = threading.Lock()
        self._done = False
        tid = threading.get_ident()
        for limit, exc in ((soft, SoftTimeLimitExceeded), (hard, TimeLimitExceeded)):
            if limit:
                t = threading.Timer(limit, self._fire, (tid, exc))
                t.daemon = True
                self._timers.append(t)

    def _fire(self, tid: int, exc: type[BaseException]) -> None:
        with self._lock:  # never interrupt a thread that has left the step
            if not self._done:
                interrupt_thread(tid, exc)

    def __enter__(self) -> TimeLimits:
        for t in self._timers:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        with self._lock:
            self._done = True
        for t in self._timers:
            t.cancel()
