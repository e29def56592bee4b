"""Pacer: coalesce bursts of "something changed" into at most one call per interval (show stage).

Observers run on distributed's IO-loop thread and only call :meth:`Pacer.poke` (a flag and, if
none is running, a thread start). A worker thread lives only while there is work: it waits out
the interval, clears the flag, calls ``fn`` once, and exits when no poke came meanwhile. So a
burst of 10,000 events costs a handful of calls, the last one always after the last poke, and
an idle view holds no thread. An expensive ``fn`` stretches its own interval so that it takes at
most ``budget`` of one thread's time, up to ``max_interval``; ``poke(urgent=True)`` (e.g. "the
results are in") skips the wait.

>>> calls = []
>>> p = Pacer(lambda: calls.append(1) or False, interval=0.01)
>>> for _ in range(1000):
...     p.poke()
>>> p.wait_idle(5)
True
>>> 1 <= len(calls) <= 2
True
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Pacer"]


class Pacer:
    """Calls ``fn()`` after :meth:`poke`, at most once per ``interval`` seconds.

    ``fn`` returns True when there will be nothing more to do: the pacer then closes itself
    (later pokes are ignored). ``budget``: the largest share of one thread's time ``fn`` may
    take; a call that costs ``c`` seconds delays the next one by at least ``c / budget``.
    """

    def __init__(self, fn: Callable[[], bool], interval: float = 0.1, budget: float = 0.05,
                 max_interval: float = 1.0, name: str = "nbcanvas-pacer") -> None:
        self._fn, self.interval, self.budget, self._name = fn, interval, budget, name
        self.max_interval = max(interval, max_interval)
        self._cond = threading.Condition()
        self._pending = False
        self._running: threading.Thread | None = None
        self._next = 0.0  # monotonic time before which fn is not called again
        self._wake = threading.Event()  # set by close() and urgent pokes: cuts a wait short
        self.closed = False
        self.calls = 0
        self.error: Exception | None = None  # the last exception fn raised
        self.cost = 0.0  # seconds spent in fn so far (wall)
        self.cpu = 0.0  # of which this process's thread ran (CPU; a dot subprocess is not in it)

    def poke(self, urgent: bool = False) -> None:
        """Something changed: call ``fn`` soon (cheap; safe from any thread); ``urgent``: now."""
        with self._cond:
            if self.closed:
                return
            self._pending = True
            if urgent:
                self._next = 0.0
                self._wake.set()
            if self._running is None:
                self._running = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._running.start()

    def close(self) -> None:
        """No more calls; a call in progress finishes."""
        with self._cond:
            self.closed = True
            self._wake.set()
            self._cond.notify_all()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no call is pending or running (True), or ``timeout`` (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._running is None, timeout)

    def _run(self) -> None:
        try:
            while True:
                delay = self._next - time.monotonic()
                if delay > 0:
                    self._wake.wait(delay)  # the rate limit; close() and urgent pokes cut it
                with self._cond:
                    self._wake.clear()
                    if self.closed or not self._pending:  # decided under the lock that
                        self._running = None              # poke() takes: no poke is lost
                        self._cond.notify_all()
                        return
                    self._pending = False
                t0, c0 = time.monotonic(), time.thread_time()
                try:
                    done = self._fn()
                except Exception as e:  # a failed redraw must not kill the view: try next time
                    self.error, done = e, False
                cost = time.monotonic() - t0
                self.calls, self.cost = self.calls + 1, self.cost + cost
                self.cpu += time.thread_time() - c0
                stretch = cost / self.budget if self.budget else 0.0
                self._next = t0 + min(self.max_interval, max(self.interval, stretch))
                if done:
                    self.close()
        except BaseException:
            with self._cond:
                self._running = None
                self._cond.notify_all()
            raise
