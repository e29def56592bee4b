"""What the live view shows, computed from a workflow's state store (show stage, no widgets).

Counting lives here; the widget (``live.py``), the coloured SVG and the text line
(``nbcanvas.progress``) are skins over one :class:`ViewModel`. Everything is derived from the
store's node table -- id -> (kind, name, step, parent), nodes made at run time included -- so a
workflow re-attached from another process shows the same.

>>> from nbcanvas.store import StateStore
>>> store = StateStore("wf", {
...     "g": ("group", "group", 0, None),
...     "a": ("signature", "fetch", 0, "g"), "b": ("signature", "fetch", 0, "g"),
...     "s": ("signature", "aggregate", 1, None)})
>>> store.apply({"wf": "wf", "ev": [["S", "a", 1.0, 0, "w1"], ["D", "a", 2.0, "SUCCESS", None],
...                                 ["S", "b", 1.0, 0, "w2"],
...                                 ["U", "b", 1.5, "PROGRESS", {"step": 7, "total": 10}]]})
>>> vm = view_model(Source("chord: fetch → aggregate", store), now=3.0)
>>> vm.overall.text, [(b.label, b.done, b.total) for b in vm.steps]
('1/3 done · 1 running · 2.0 s', [('1. fetch × 2', 1, 2), ('2. aggregate', 0, 1)])
>>> vm.notes
('fetch[1]: step 7/10',)
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ..states import FAILURE, NOT_RUN, READY_STATES, RETRY, REVOKED
from ..store import TASK_KINDS, StateStore
from .counts import StepCounts

__all__ = ["Bar", "Source", "ViewModel", "view_model", "source_of", "format_meta",
           "structure_steps",
           "format_seconds", "MAX_NOTES", "MAX_STEPS"]

MAX_NOTES: Final = 8    # lines of update_state meta shown
MAX_STEPS: Final = 20   # step bars shown (the rest are summed up in one line)
_META_WIDTH: Final = 60
_COUNT_KEYS: Final = ("step", "current", "done", "i", "n", "count", "progress", "completed")


def format_seconds(s: float | None) -> str:
    """``0.25 s``, ``12.3 s``, ``2 min 05 s``, ``1 h 02 min``; empty for None.

    >>> format_seconds(0.25), format_seconds(12.34), format_seconds(125), format_seconds(3720)
    ('0.25 s', '12.3 s', '2 min 05 s', '1 h 02 min')
    """
    if s is None:
        return ""
    s = max(0.0, s)
    if s < 1:
        return f"{s:.2f} s"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def format_meta(meta: Any, width: int = _META_WIDTH) -> str:
    """One short, printable line for ``update_state`` meta (plain text: escape it for HTML).

    >>> format_meta({"step": 7, "total": 10}), format_meta({"rows": 5, "file": "a.csv"})
    ('step 7/10', 'rows: 5, file: a.csv')
    >>> format_meta("<b>" + "x" * 100)[:8], len(format_meta("x" * 100))
    ('<b>xxxxx', 60)
    """
    if isinstance(meta, Mapping):
        items = dict(meta)
        total = items.pop("total", None)
        key = next((k for k in _COUNT_KEYS if k in items), None) if total is not None else None
        parts = [f"{key} {items.pop(key)}/{total}"] if key is not None else \
            ([f"total: {total}"] if total is not None else [])
        parts += [f"{k}: {v}" for k, v in items.items()]
        text = ", ".join(parts)
    else:
        text = str(meta)
    text = "".join(c if c.isprintable() else " " for c in text)
    return text if len(text) <= width else text[:width - 1] + "…"


@dataclass(frozen=True)
class Bar:
    """Counts of one progress bar (the whole workflow, or one top-level step)."""

    label: str
    done: int = 0
    total: int = 0
    failed: int = 0
    running: int = 0
    revoked: int = 0
    skipped: int = 0
    elapsed: float | None = None

    @property
    def style(self) -> str:
        """ipywidgets ``bar_style``: danger on any failure, success when all done, warning when
        revoked, '' (grey) when nothing of it ran, info while running, '' while waiting."""
        if self.failed:
            return "danger"
        if self.done >= self.total and (self.total or self.elapsed is not None):
            if self.revoked:
                return "warning"
            return "" if self.total and self.skipped == self.total else "success"
        return "info" if self.running or self.done else ""

    @property
    def text(self) -> str:
        """``3/5 done · 1 failed · 1 running · 2.0 s`` (zero counts left out)."""
        parts = [f"{self.done:,}/{self.total:,} done"]
        for n, word in ((self.failed, "failed"), (self.revoked, "revoked"),
                        (self.skipped, "not run"), (self.running, "running")):
            if n:
                parts.append(f"{n:,} {word}")
        if self.elapsed is not None:
            parts.append(format_seconds(self.elapsed))
        return " · ".join(parts)


@dataclass(frozen=True)
class Source:
    """What a view reads: the workflow's name, its state store, and optionally its structure
    (the canvas as ``to_dict(strict=False)``, for the diagram), the ids known when it was sent
    (others were made at run time), the dask dashboard link, and ``watch_done(fn)``, which
    calls ``fn()`` once the workflow's result is in (or lost) even if no event says so."""

    name: str
    store: StateStore
    structure: Callable[[], Mapping[str, Any]] | None = None
    static: frozenset[str] = field(default_factory=frozenset)
    dashboard: str | None = None
    watch_done: Callable[[Callable[[], None]], None] | None = None
    results_done: Callable[[], bool] | None = None
    cache: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class ViewModel:
    """Everything one redraw shows; plain data (text is not escaped yet)."""

    title: str
    overall: Bar
    steps: tuple[Bar, ...]
    notes: tuple[str, ...]          # "long_step[2]: step 7/10"
    meta: Mapping[str, str]         # node id -> meta text, for the diagram
    finished: bool
    version: int

    @property
    def more_steps(self) -> int:
        return max(0, len(self.steps) - MAX_STEPS)


def _bar(label: str, counts: Counter[str], started: float | None, ended: float | None,
         now: float) -> Bar:
    """A bar from state counts; elapsed runs from the first start to the last finish (or now)."""
    total = sum(counts.values())
    done = sum(counts[s] for s in READY_STATES)
    end = ended if done == total and ended else now
    return Bar(label, done, total, counts[FAILURE], counts["running"], counts[REVOKED],
               counts[NOT_RUN], None if started is None else end - started)


_PARTS: Final = ("tasks", "header", "body", "cond", "then", "otherwise", "links", "errbacks")
_PARTS_REVERSED: Final = tuple(reversed(_PARTS))


def structure_steps(structure: Mapping[str, Any]) -> dict[str, int]:
    """id -> top-level step, from the canvas's dict form: chain step ``i``; chord header 0,
    body 1; anything else 0. Callbacks of the whole canvas count with its last step.

    >>> sig = lambda i: {"type": "signature", "task": "t.f", "id": i}
    >>> structure_steps({"type": "chain", "tasks": [sig("a"), {"type": "group", "id": "g",
    ...                  "tasks": [sig("b"), sig("c")]}], "links": [sig("cb")]})
    {'a': 0, 'g': 1, 'b': 1, 'c': 1, 'cb': 1}
    """
    kind = structure.get("type")
    parts = list(structure.get("tasks") or ()) if kind == "chain" else \
        [structure.get("header"), structure.get("body")] if kind == "chord" else [structure]
    top = {k: structure.get(k) for k in ("links", "errbacks")} if kind in ("chain", "chord") \
        else {}
    out: dict[str, int] = {}
    for n, part in [*enumerate(parts), (len(parts) - 1, top)]:
        stack = [part]
        while stack:
            d = stack.pop()
            if type(d) is not dict and not isinstance(d, Mapping):  # plain dicts: no abc check
                continue
            i = d.get("id")
            if type(i) is str and d is not top:
                out.setdefault(i, n)
            for k in _PARTS_REVERSED:
                v = d.get(k)
                if not v:
                    continue
                if type(v) is list:
                    stack.extend(reversed(v))
                elif type(v) is dict or isinstance(v, Mapping):
                    stack.append(v)
    return out


def _step_map(source: Source, nodes: Mapping[str, tuple]) -> dict[str, int]:
    """id -> step for every node: from the structure when there is one (the node table's own
    step numbers are those of compiled units), a node made at run time with its parent's."""
    key = ("steps", len(nodes))
    found = source.cache.get(key)
    if found is not None:
        return found
    static = source.cache.get("structure-steps")
    if static is None:
        static = source.cache["structure-steps"] = (
            structure_steps(source.structure()) if source.structure is not None else {})
    out: dict[str, int] = {}
    for i, row in nodes.items():
        step, cur = static.get(i), i
        for _ in range(16):  # up through parents made at run time
            if step is not None:
                break
            cur = nodes[cur][3] if cur in nodes else None
            if cur is None:
                break
            step = static.get(cur)
        out[i] = row[2] if step is None else step
    source.cache.clear()  # older node counts are stale
    source.cache.update({"structure-steps": static, key: out})
    return out


def _step_labels(nodes: Mapping[str, tuple], steps: list[int],
                 step_of: Mapping[str, int]) -> dict[int, str]:
    """A name per top-level step: ``fetch × 5``, ``slow × 3 → total``, ``foreach add``."""
    children: dict[str, list[str]] = {}
    tops: dict[int, list[str]] = {}
    for i, row in nodes.items():
        parent = row[3] if len(row) > 3 else None
        if parent is not None and parent in nodes:
            children.setdefault(parent, []).append(i)
        else:
            tops.setdefault(step_of[i], []).append(i)

    def describe(i: str) -> str:
        kind, name = nodes[i][0], str(nodes[i][1])
        kids = [k for k in children.get(i, ()) if nodes[k][0] in TASK_KINDS or
                nodes[k][0] == "group"]
        names = list(dict.fromkeys(str(nodes[k][1]) for k in kids))
        if kind == "group":
            return f"{names[0]} × {len(kids):,}" if len(names) == 1 else f"group of {len(kids):,}"
        if kind == "foreach":
            return f"foreach {names[0]} × {len(kids):,}" if len(names) == 1 else "foreach"
        return name

    many = len(steps) > 1
    return {s: (f"{n + 1}. " if many else "") + " → ".join(describe(i) for i in tops.get(s, ()))
            for n, s in enumerate(steps)}


def view_model(source: Source, now: float | None = None) -> ViewModel:
    """One pass over the store: counts per step and overall, elapsed times, meta notes."""
    store = source.store
    now = time.time() if now is None else now
    version = store.version
    nodes = dict(store.nodes)  # copied under the GIL: the IO thread may add nodes meanwhile
    step_of = _step_map(source, nodes)
    tally = source.cache.get("counts")
    if tally is None:
        tally = source.cache["counts"] = StepCounts(_note)
    tally.update(store, nodes, step_of)
    counts, times = tally.counts, tally.times
    running = list(tally.notes.items())
    per_step: dict[int, Counter[str]] = {}
    for (step, b), n in counts.items():
        if n:
            per_step.setdefault(step, Counter())[b] = n
    finished = bool(per_step) and all(sum(c[s] for s in READY_STATES) == sum(c.values())
                                      for c in per_step.values())
    order = sorted(per_step)
    labels = source.cache.get(("labels", len(nodes)))
    if labels is None or set(labels) != set(order):
        labels = source.cache[("labels", len(nodes))] = _step_labels(nodes, order, step_of)
    steps = tuple(_bar(labels[s], per_step[s], *times.get(s, (None, None)), now)
                  for s in order)
    total = sum(per_step.values(), Counter())
    starts = [t[0] for t in times.values()]
    ends = [t[1] for t in times.values() if t[1]]
    overall = _bar("workflow", total, min(starts) if starts else None,
                   max(ends) if ends else None, now)
    return ViewModel(source.name, overall, steps, _notes(nodes, running), dict(running),
                     finished, version)


def _note(st: Any) -> str:
    if st.state == RETRY and st.meta is None:
        return f"retry {st.retries} ({format_meta(st.info, 40)})"
    return format_meta(st.meta)


def _notes(nodes: Mapping[str, tuple], running: list[tuple[str, str]]) -> tuple[str, ...]:
    """``name[index]: meta`` for running tasks that reported something; index among siblings."""
    if not running:
        return ()
    wanted = {nodes[i][3] for i, _ in running[:MAX_NOTES] if nodes[i][3] is not None}
    position: dict[str, int] = {}
    seen: Counter[Any] = Counter()
    for i, row in nodes.items():
        if row[3] in wanted and row[0] in TASK_KINDS:
            position[i] = seen[row[3]]
            seen[row[3]] += 1
    lines = [f"{nodes[i][1]}" + (f"[{position[i]}]" if i in position else "") + f": {text}"
             for i, text in running[:MAX_NOTES]]
    if len(running) > MAX_NOTES:
        lines.append(f"… and {len(running) - MAX_NOTES:,} more running")
    return tuple(lines)


#: client id -> its dashboard link: distributed formats it from the whole environment each time
#: it is asked (0.2-0.4 ms of the ~2 ms a view costs to make while its workflow runs)
_dashboards: dict[str, str] = {}


def _dashboard(client: Any) -> str | None:
    key = getattr(client, "id", None)
    if key in _dashboards:
        return _dashboards[key]
    try:
        link = client.dashboard_link
    except Exception:  # no dashboard on this scheduler
        link = None
    if key is not None and link is not None:
        if len(_dashboards) > 64:  # clients come and go in a long session
            _dashboards.clear()
        _dashboards[key] = link
    return link


def source_of(obj: Any) -> Source:
    """The :class:`Source` of a result (``AsyncResult``/``GroupResult``) or workflow handle."""
    handle = getattr(obj, "handle", obj)
    backend = handle.backend
    conn = getattr(backend, "conn", None)
    dashboard = None if conn is None else _dashboard(conn.client)
    found: list[Any] = []

    def futures() -> list[Any]:  # looked up on first use (10,000 keys: tens of ms)
        if not found:
            try:
                keys = handle.keys_of(handle.result) if handle.result is not None else []
            except Exception:
                keys = []
            found.append([f for f in (backend.future(k) for k in keys) if f is not None])
        return found[0]

    def watch_done(fn: Callable[[], None]) -> None:
        # One waiter on the client's loop for all the result futures, not a callback each:
        # distributed runs each future's callbacks on its callback thread, a thread hand-off
        # per unit (40 for a 10k group) that took the GIL from the running workflow.
        futs = futures()
        if not futs or len(futs) > 1000:  # more: rely on the events alone
            return
        from distributed.client import _wait

        async def all_in() -> None:
            try:
                await _wait(futs)
            except asyncio.CancelledError:  # the loop is closing
                return
            except Exception:  # noqa: BLE001 - some were cancelled: lost, and in all the same
                pass
            fn()
        futs[0].client.loop.add_callback(all_in)

    def results_done() -> bool:
        return handle.forgotten or all(f.done() for f in futures())

    return Source(_name(handle), handle.store, lambda: handle.structure,
                  frozenset(handle.nodes), dashboard, watch_done, results_done)


def _name(handle: Any) -> str:
    """``chord fetch_user_data → aggregate_stats``: the kind and the first three task names,
    from the handle's name (``canvas.walk.title``, computed once when it was sent; the same
    for a run here, on a cluster, or re-attached from the scheduler's record)."""
    return str(handle.name).replace(": ", " ", 1)
