"""Counting node states per top-level step, kept up to date from the store's change log.

A redraw of a 10k-task workflow would otherwise walk every node each time: that walk, done
several times a second while results arrive, competes for the GIL with distributed's IO thread
and slows the workflow it shows. Here each redraw looks only at the nodes that changed since
the last one; a full count happens once, and again only if the log can't be followed (the
store's ``epoch`` changed, or nodes were added at run time).

>>> from nbcanvas.store import StateStore
>>> store = StateStore("wf", {"a": ("signature", "f", 0, None), "b": ("signature", "f", 0, None)})
>>> counts = StepCounts()
>>> counts.update(store, dict(store.nodes), {"a": 0, "b": 0})
>>> counts.counts
{(0, 'PENDING'): 2}
>>> store.apply({"wf": "wf", "ev": [["D", "a", 1.0, "SUCCESS", None]]})
>>> counts.update(store, dict(store.nodes), {"a": 0, "b": 0})
>>> sorted((k, v) for k, v in counts.counts.items() if v)
[((0, 'PENDING'), 1), ((0, 'SUCCESS'), 1)]
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

from ..states import FAILURE, NOT_RUN, PENDING, RECEIVED, RETRY, REVOKED, SUCCESS
from ..store import TASK_KINDS, StateStore

__all__ = ["StepCounts", "BUCKETS"]

#: state -> bucket of a bar; any other state (STARTED, RETRY, PROGRESS...) is "running"
BUCKETS: Final[Mapping[str, str]] = {
    PENDING: PENDING, RECEIVED: PENDING, SUCCESS: SUCCESS, FAILURE: FAILURE, REVOKED: REVOKED,
    NOT_RUN: NOT_RUN}


class StepCounts:
    """(step, bucket) -> count, step -> [first start, last finish], running id -> note."""

    def __init__(self, note: Callable[[Any], str] = str) -> None:
        self.note = note
        self.counts: dict[tuple[int, str], int] = {}
        self.times: dict[int, list[float]] = {}
        self.notes: dict[str, str] = {}
        self._bucket: dict[str, tuple[int, str]] = {}
        self._epoch: int | None = None
        self._nodes = -1
        self._pos = 0

    def update(self, store: StateStore, nodes: Mapping[str, tuple],
               step_of: Mapping[str, int]) -> None:
        """Bring the counts up to date with ``store``."""
        log = store.track()
        if self._epoch != store.epoch or self._nodes != len(nodes):
            self._epoch, self._nodes = store.epoch, len(nodes)
            self._pos = len(log)  # what happens from here on is in the log
            self.counts, self.times, self.notes, self._bucket = {}, {}, {}, {}
            self._count(store, nodes, step_of, nodes)
            return
        end = len(log)
        changed = dict.fromkeys(log[self._pos:end])
        self._pos = end
        self._count(store, nodes, step_of, changed)

    def _count(self, store: StateStore, nodes: Mapping[str, tuple], step_of: Mapping[str, int],
               ids: Iterable[str]) -> None:
        get, counts, times, notes, bucket_of = store.get, self.counts, self.times, self.notes, \
            self._bucket
        for i in ids:  # the hot loop: a full count of 10,000 nodes takes a few ms
            row = nodes.get(i)
            if row is None or row[0] not in TASK_KINDS:
                continue
            step, st = step_of[i], get(i)
            b = PENDING if st is None else BUCKETS.get(st.state, "running")
            key = (step, b)
            old = bucket_of.get(i)
            if old != key:
                if old is not None:
                    counts[old] -= 1
                counts[key] = counts.get(key, 0) + 1
                bucket_of[i] = key
            if st is None:
                continue
            if st.started is not None:
                t = times.get(step)
                if t is None:
                    times[step] = [st.started, st.finished or 0.0]
                else:
                    t[0] = min(t[0], st.started)
                    t[1] = max(t[1], st.finished or 0.0)
            if b == "running" and (st.meta is not None or st.state == RETRY):
                notes[i] = self.note(st)
            else:
                notes.pop(i, None)
