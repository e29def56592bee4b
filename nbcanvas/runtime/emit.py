"""Worker side of the event feed: buffered, batched task-state events (compile stage).

Each event is a list ``[code, node id, time, ...]``:

- ``S`` started (retries, host), ``R`` retry (error, countdown), ``U`` update_state
  (state, meta), ``D`` done (state, info[, inline result]), ``N`` a node made at run time
  (parent, name, kind), ``B`` a branch choice (``then``/``otherwise``);
- ``E`` a step that started and ended with nothing in between (the common case of a quick
  step): its ``S`` and ``D`` as one, ``[E, id, started, retries, host, ended, state, info,
  ...]``. The worker's buffer makes it when a step's ``D`` follows its own ``S``, so a 10k
  group sends half the events.

Events go into one buffer per process; a background thread sends them every 20 ms as one
``log_event`` message per workflow. A unit's last events leave before its result: when it
returns, the buffer is *held* (the thread waits) until the worker's event loop, handling the
result, sends it first (``hold``/``release``, called by the worker plugin), so the events and
the result reach the scheduler as one message batch, one wake-up instead of two. A worker
without the plugin flushes when the unit returns, as a sink that is not held always may.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any, Final

__all__ = ["TOPIC", "Sink", "WorkerSink", "jsonable", "set_sink_factory"]

TOPIC: Final = "nbcanvas"
_META_LIMIT: Final = 2000


def jsonable(value: Any) -> Any:
    """A msgpack/JSON-safe copy of ``value`` (reprs for the rest), cut to a sane size."""
    try:
        text = json.dumps(value, default=repr)
    except (TypeError, ValueError):
        text = json.dumps(repr(value))
    if len(text) > _META_LIMIT:
        return {"truncated": repr(value)[:_META_LIMIT]}
    return json.loads(text)


class Sink:
    """Where events go. The base class delivers them at once to ``deliver(msg)``."""

    def __init__(self, deliver: Callable[[dict[str, Any]], None]) -> None:
        self._deliver = deliver

    def emit(self, wf: str, event: list[Any]) -> None:
        self._deliver({"wf": wf, "ev": [event]})

    def flush(self) -> None:
        """Send what is buffered (nothing here)."""


class WorkerSink(Sink):
    """Buffers events in the worker process; a daemon thread flushes every ``interval`` s."""

    def __init__(self, deliver: Callable[[dict[str, Any]], None], interval: float = 0.02,
                 hold_limit: float = 1.0) -> None:
        super().__init__(deliver)
        #: how long held events wait for the worker's event loop before the thread sends them
        self.hold_limit = hold_limit
        self._buf: list[tuple[str, list[Any]]] = []
        self._lock = threading.Lock()
        self._interval = interval
        self._thread: threading.Thread | None = None
        #: a unit returned and its last events wait for the worker's event loop
        self._held = False
        self._held_since = 0.0

    def emit(self, wf: str, event: list[Any]) -> None:
        with self._lock:
            buf = self._buf
            if event[0] == "D" and buf:
                last_wf, last = buf[-1]
                if last[0] == "S" and last[1] == event[1] and last_wf == wf:
                    buf[-1] = (wf, ["E", event[1], last[2], last[3], last[4], *event[2:]])
                    return
            buf.append((wf, event))
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="nbcanvas-events",
                                                daemon=True)
                self._thread.start()

    def hold(self) -> None:
        """A unit returned: the background thread sends nothing until :meth:`release`, which
        the worker's event loop calls as it handles the unit's result. A batch the thread sent
        now would be queued on the loop after that result, and overtaken by it."""
        with self._lock:
            if not self._held:
                self._held_since = time.monotonic()
            self._held = True

    @property
    def held(self) -> bool:
        """Whether a unit returned and its events wait for :meth:`release`."""
        return self._held

    def release(self) -> None:
        """Send what is buffered, from the worker's event loop (before the result it is
        handling is reported), and let the background thread send again."""
        self.flush(release=True)

    def _loop(self) -> None:
        while True:
            time.sleep(self._interval)  # a pacing interval, not a wait for a condition
            if self._buf:
                try:
                    self.flush(background=True)
                except Exception:  # the worker may be closing; events are best effort here
                    pass

    def flush(self, release: bool = False, background: bool = False) -> None:
        # Delivering under the lock keeps events in order: a unit's final flush never
        # overtakes an earlier batch that the background thread has taken.
        with self._lock:
            if release:  # with the lock held: the thread cannot slip a batch in between
                self._held = False
            elif background and self._held and \
                    time.monotonic() - self._held_since < self.hold_limit:
                return  # checked under the lock: a unit may have returned a moment ago
            buf, self._buf = self._buf, []
            if not buf:
                return
            by_wf: dict[str, list[list[Any]]] = {}
            for wf, ev in buf:
                by_wf.setdefault(wf, []).append(ev)
            for wf, evs in by_wf.items():
                self._deliver({"wf": wf, "ev": evs})


_factory: list[Callable[[], Sink]] = []


def set_sink_factory(factory: Callable[[], Sink]) -> None:
    """Used by tests and the eager runner to route events elsewhere."""
    _factory[:] = [factory]
