"""The state store: per workflow, node id -> state, meta and times; fed by events (observe stage).

Thread-safe. The live widget, the coloured SVG, the text progress line and
``AsyncResult.state`` all read it. Observers are called after each batch of events; they
rate-limit themselves.

>>> s = StateStore("wf", {"a": ("signature", "add", 0, None)})
>>> s.apply({"wf": "wf", "ev": [["S", "a", 1.0, 0, "w1"], ["D", "a", 2.0, "SUCCESS", None]]})
>>> s.state("a"), s.counts()["SUCCESS"], s.done_total()
('SUCCESS', 1, (1, 1))
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from .states import READY_STATES

__all__ = ["NodeState", "StateStore", "TASK_KINDS", "CHANGE_LOG_LIMIT", "DURATIONS",
           "tiny_tasks"]

#: Node kinds that count as work in progress bars (groups and chains are containers).
TASK_KINDS = frozenset({"signature", "xmap", "foreach", "branch", "callback"})


#: Longest change log kept for views; past it they recount once (and the log starts again).
CHANGE_LOG_LIMIT = 200_000


#: task name -> typical duration in seconds (moving average over the tasks seen finishing here)
DURATIONS: dict[str, float] = {}
TINY_SECONDS = 0.002


def _learn(name: str, seconds: float) -> None:
    old = DURATIONS.get(name)
    DURATIONS[name] = seconds if old is None else 0.9 * old + 0.1 * seconds


def tiny_tasks() -> dict[str, float]:
    """Short name -> typical seconds, of tasks seen finishing in about a millisecond or less."""
    return {n: d for n, d in list(DURATIONS.items()) if d <= TINY_SECONDS}


class NodeState:
    """What is known of one node."""

    __slots__ = ("state", "meta", "started", "finished", "retries", "info", "host", "inline")

    def __init__(self) -> None:
        self.state = "PENDING"
        self.meta: Any = None
        self.started: float | None = None
        self.finished: float | None = None
        self.retries = 0
        self.info: Any = None
        self.host: str | None = None
        self.inline: bytes | None = None  # the pickled outcome, for a small workflow result

    def as_list(self) -> list[Any]:
        return [self.state, self.meta, self.started, self.finished, self.retries, self.info]


class StateStore:
    """States of one workflow's nodes. ``nodes`` maps id -> (kind, name, step, parent, ...):
    the compiled node table's rows themselves (shared, not copied), and rows of 4 for nodes
    made at run time."""

    def __init__(self, workflow_id: str, nodes: dict[str, tuple[Any, ...]]) -> None:
        self.workflow_id = workflow_id
        self.nodes = dict(nodes)
        self._states: dict[str, NodeState] = {}
        self._lock = threading.RLock()
        #: made while someone waits: a kept workflow holds no Condition (eight objects
        #: fewer, of about 50, for the garbage collector to walk)
        self._cond: threading.Condition | None = None
        self._waiters = 0
        self._observers: list[Callable[[StateStore], None]] = []
        self.version = 0
        self.created = time.time()
        self.branches: dict[str, str] = {}
        #: (node id, state, meta) of the latest update_state, for the workflow's own progress
        self.latest: tuple[str, str, Any] | None = None
        #: ids whose state changed, in order (kept once a view asks, see ``track``); ``epoch``
        #: changes when the log can't be followed (reset, load, or too long): recount then
        self.changes: list[str] | None = None
        self.epoch = 0

    # -- feeding --------------------------------------------------------------------------------
    def _node(self, id: str) -> NodeState:
        st = self._states.get(id)
        if st is None:
            st = self._states[id] = NodeState()
        return st

    def apply(self, msg: dict[str, Any]) -> None:
        """Apply one event message ``{"wf": ..., "ev": [[code, id, t, ...], ...]}``."""
        with self._lock:
            for ev in msg["ev"]:
                self._apply_one(ev)
        self._changed()

    def track(self) -> list[str]:
        """Start (or keep) the change log that views follow instead of recounting every node."""
        with self._lock:
            if self.changes is None:
                self.changes = []
            return self.changes

    def _changed(self) -> None:
        """Wake waiters, then tell the observers (outside the lock)."""
        with self._lock:
            self.version += 1
            self._wake()
            observers = list(self._observers)
        for fn in observers:
            try:
                fn(self)
            except Exception:  # an observer must never break the feed
                pass

    def _apply_one(self, ev: list[Any]) -> None:
        code, id, t = ev[0], ev[1], ev[2]
        if code == "N":
            parent = ev[3]
            pkind = self.nodes.get(parent, ("", "", 0, None))
            self.nodes.setdefault(id, (ev[5] if ev[5] != "signature" else "signature", ev[4],
                                       pkind[2], parent))
            return
        if code == "B":
            self.branches[id] = ev[3]
            return
        st = self._node(id)
        if st.state in READY_STATES:  # a final state is never undone by a late event
            return
        if self.changes is not None:
            if len(self.changes) >= CHANGE_LOG_LIMIT:
                self.changes.clear()
                self.epoch += 1
            self.changes.append(id)
        if code == "E":  # started and ended: S and D in one event
            st.retries, st.host, st.started = ev[3], ev[4], st.started or t
            self._done(id, st, ev[5], ev[6], ev[7], ev[8:])
        elif code == "S":
            st.state, st.retries, st.host = "STARTED", ev[3], ev[4]
            st.started = st.started or t
        elif code == "R":
            st.state, st.info = "RETRY", ev[3]
            st.retries += 1
        elif code == "U":
            st.state, st.meta = ev[3], ev[4]
            self.latest = (id, ev[3], ev[4])
        elif code == "D":
            self._done(id, st, t, ev[3], ev[4], ev[5:])

    def _done(self, id: str, st: NodeState, t: float, state: str, info: Any,
              inline: list[Any]) -> None:
        st.state, st.info, st.finished = state, info, t
        if inline:
            st.inline = inline[0]
        if st.started is not None and state == "SUCCESS":
            node = self.nodes.get(id)
            if node is not None and node[0] == "signature":
                _learn(node[1], t - st.started)

    def load(self, states: dict[str, list[Any]], nodes: dict[str, Any] | None = None) -> None:
        """Merge a snapshot (e.g. from the scheduler's record when re-attaching)."""
        with self._lock:
            if nodes:
                for k, v in nodes.items():
                    self.nodes.setdefault(k, tuple(v))  # type: ignore[arg-type]
            for id, row in states.items():
                st = self._node(id)
                if st.state in READY_STATES:
                    continue
                st.state, st.meta, st.started, st.finished, st.retries, st.info = row[:6]
            self.epoch += 1
            self.version += 1
            self._wake()

    def poke(self) -> None:
        """Wake up waiters (e.g. when a future finished without an event)."""
        with self._lock:
            self.version += 1
            self._wake()

    def reset(self, ids: list[str]) -> None:
        """Forget the states of ``ids`` (they run again after ``retry()``)."""
        with self._lock:
            for i in ids:
                self._states.pop(i, None)
            self.epoch += 1
        self._changed()

    # -- reading ----------------------------------------------------------------------------------
    def state(self, id: str) -> str:
        st = self._states.get(id)
        return st.state if st is not None else "PENDING"

    def get(self, id: str) -> NodeState | None:
        return self._states.get(id)

    def task_ids(self) -> list[str]:
        with self._lock:  # nodes made at run time arrive on the event loop's thread
            return [i for i, n in self.nodes.items() if n[0] in TASK_KINDS]

    def counts(self, ids: Iterable[str] | None = None) -> Counter[str]:
        with self._lock:
            ids = self.task_ids() if ids is None else ids
            return Counter(self.state(i) for i in ids)

    def done_total(self, ids: Iterable[str] | None = None) -> tuple[int, int]:
        c = self.counts(ids)
        return sum(v for k, v in c.items() if k in READY_STATES), sum(c.values())

    def snapshot(self) -> dict[str, str]:
        """id -> state for every node with a known state."""
        with self._lock:
            return {i: s.state for i, s in self._states.items()}

    def progress_state(self) -> tuple[str, Any]:
        """(state, meta) of the workflow as a whole while it runs: the latest custom state of
        a running step (e.g. ``PROGRESS`` and its meta), else ``STARTED``, else ``PENDING``."""
        with self._lock:
            if self.latest is not None and self.state(self.latest[0]) == self.latest[1]:
                return self.latest[1], self.latest[2]
            running = [s for s in self._states.values() if s.state not in READY_STATES
                       and s.state != "PENDING"]
            if running:
                return running[0].state, running[0].meta
            if any(s.state in READY_STATES for s in self._states.values()):
                return "STARTED", None
            return "PENDING", None

    def finished(self) -> bool:
        done, total = self.done_total()
        return total > 0 and done == total

    def wait(self, predicate: Callable[[StateStore], bool], timeout: float | None = None) -> bool:
        """Block until ``predicate(store)`` holds (re-checked after every event batch)."""
        with self._lock:
            if predicate(self):
                return True
            cond = self._cond
            if cond is None:
                cond = self._cond = threading.Condition(self._lock)
            self._waiters += 1
            try:
                return cond.wait_for(lambda: predicate(self), timeout)
            finally:
                self._waiters -= 1
                if not self._waiters:  # the last one out: a finished workflow keeps none
                    self._cond = None

    def _wake(self) -> None:
        """Wake the waiters, if any (with ``_lock`` held)."""
        if self._cond is not None:
            self._cond.notify_all()

    # -- observers ----------------------------------------------------------------------------------
    def subscribe(self, fn: Callable[[StateStore], None]) -> Callable[[], None]:
        """Call ``fn(store)`` after every event batch; returns the unsubscribe function."""
        with self._lock:
            self._observers.append(fn)

        def unsubscribe() -> None:
            with self._lock:
                if fn in self._observers:
                    self._observers.remove(fn)
        return unsubscribe
