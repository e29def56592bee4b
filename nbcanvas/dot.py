"""A canvas (and optionally a snapshot of its states) as a ``graphviz.Digraph`` (show stage).

Drawn from the ``to_dict(strict=False)`` form, as a re-attached workflow has only that. A task
is a box ``name(args)``: ``◦`` is the slot the previous result (errback: the exception) fills,
``add.si(5)`` is immutable (dashed grey edge in: order, no data), ``add × map(3)`` one looping
task. Solid edges carry data (chain steps; each header task into a chord body); a group is a
cluster, or past ``collapse`` members a 3-D box ``process_image × 10,000`` naming its first and
last members. ``link`` edges are green dotted, ``link_error`` red dashed; ``foreach`` fans out
(crow's foot) to its body; ``branch`` is a diamond ``cond(◦) ?`` with ``true``/``false`` edges.
User text is escaped (``escape`` + ``nohtml``: never an HTML label) and cut short. Nodes are
named by id when frozen, else ``n1``, ``n2``... in drawing order: the same canvas, the same DOT.

>>> from nbcanvas import App
>>> app = App("doc-dot")
>>> @app.task(name="tasks.add")
... def add(x, y):
...     return x + y
>>> print((add.s(2, 2) | add.s(4) | add.si(5, 5)).to_dot())  # doctest: +ELLIPSIS
digraph canvas {
...
    n1 [label="add(2, 2)" shape=box style=rounded]
    n2 [label="add(◦, 4)" shape=box style=rounded]
    n3 [label="add.si(5, 5)" shape=box style=rounded]
    n1 -> n2
    n2 -> n3 [arrowhead=empty color=gray55 style=dashed]
}
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Final

import graphviz

from .canvas import Signature, iter_nodes
from .states import FAILURE, NOT_RUN, PENDING, READY_STATES, REVOKED, STARTED, SUCCESS
from .structure import result_id

__all__ = ["STATE_COLOURS", "canvas_graph", "node_attrs", "state_colour"]

#: Fill colour of a node in each state; a custom state (``PROGRESS``...) uses ``STARTED``'s.
STATE_COLOURS: Final[Mapping[str, str]] = {
    "PENDING": "#eeeeee", "RECEIVED": "#e3f2fd", "STARTED": "#90caf9", "RETRY": "#ffcc80",
    "SUCCESS": "#a5d6a7", "FAILURE": "#ef9a9a", "REVOKED": "#b0bec5", "NOT_RUN": "#fafafa"}
SLOT: Final = "◦"       # the argument that the previous result fills
ARG_WIDTH: Final = 24   # characters per argument in a label
CALL_WIDTH: Final = 64  # characters per call in a label
GREY: Final = "gray55"
_MAX_ARGS, _FONT = 4, "Helvetica"
_SHAPES: Final[Mapping[str, Mapping[str, str]]] = {
    "signature": {"shape": "box", "style": "rounded"},
    "xmap": {"shape": "box", "style": "rounded", "peripheries": "2"},
    "group": {"shape": "box3d"}, "foreach": {"shape": "cds"}, "branch": {"shape": "diamond"},
    "empty": {"shape": "box", "style": "dashed"}, "pass": {"shape": "plaintext"},
    "junction": {"shape": "point", "width": "0.06"}}
_EDGES: Final[Mapping[str, Mapping[str, str]]] = {
    "immutable": {"style": "dashed", "color": GREY, "arrowhead": "empty"},
    "links": {"style": "dotted", "color": "#2e7d32", "fontcolor": "#2e7d32", "label": "link"},
    "errbacks": {"style": "dashed", "color": "#c62828", "fontcolor": "#c62828",
                 "label": "link_error"},
    "each": {"arrowhead": "crow", "label": "each"}, "taken": {"penwidth": "2.5"},
    "muted": {"color": GREY, "fontcolor": GREY, "style": "dashed"}}
_COUNTS: Final = ((SUCCESS, "✓"), (FAILURE, "✗"), ("running", "running"),
                  (REVOKED, "revoked"), (NOT_RUN, "skipped"), (PENDING, "waiting"))
_SAFE_NAME, _ADDRESS = re.compile(r"[A-Za-z0-9_.-]+$"), re.compile(r"0x[0-9a-fA-F]+")
_WRAPPED: Final = frozenset({"chain", "chord", "foreach", "branch"})

Port = tuple[str, Mapping[str, str]]  # a node name and attributes of the edges at that end


def state_colour(state: str) -> str:
    """The fill colour of ``state`` (a custom state is drawn like ``STARTED``).

    >>> state_colour("FAILURE"), state_colour("PROGRESS") == state_colour("STARTED")
    ('#ef9a9a', True)
    """
    return STATE_COLOURS.get(state, STATE_COLOURS[STARTED])


def node_attrs(kind: str, state: str | None = None, *, muted: bool = False) -> dict[str, str]:
    """DOT attributes of a node of ``kind``: neutral without a state (the static canvas), filled
    with the state's colour in the live view; ``muted`` greys out a branch not taken.

    >>> node_attrs("signature")
    {'shape': 'box', 'style': 'rounded'}
    >>> node_attrs("branch", "FAILURE")
    {'shape': 'diamond', 'fillcolor': '#ef9a9a', 'style': 'filled'}
    """
    attrs = dict(_SHAPES.get(kind, _SHAPES["signature"]))
    styles = [s for s in attrs.pop("style", "").split(",") if s]
    if state is not None:
        styles += ["filled", "dashed"] if state == NOT_RUN else ["filled"]
        attrs["fillcolor"] = state_colour(state)
    attrs.update({"color": GREY, "fontcolor": GREY} if muted else
                 {"fontcolor": GREY} if state == NOT_RUN or kind == "pass" else {})
    if styles:
        attrs["style"] = ",".join(styles)
    return attrs


def canvas_graph(canvas: Signature | Mapping[str, Any], *,
                 states: Mapping[str, str] | None = None,
                 branches: Mapping[str, str] | None = None,
                 dynamic: Mapping[str, Sequence[Any]] | None = None,
                 meta: Mapping[str, Any] | None = None,
                 collapse: int | None = 20, rankdir: str = "LR") -> graphviz.Digraph:
    """``canvas`` (any canvas, or its ``to_dict(strict=False)`` form) as a ``graphviz.Digraph``.

    ``states``: node id -> state (missing: ``PENDING``); ``branches``: branch id -> ``"then"`` or
    ``"otherwise"``; ``dynamic``: id of a node made at run time -> ``(kind, name, step, parent)``
    (a foreach shows its elements' done/total); ``meta``: id -> text under a running node. A
    group of more than ``collapse`` members (``None``: never) is drawn as one node.

    >>> work = [{"type": "signature", "task": "tasks.work", "args": [i]} for i in range(10_000)]
    >>> print(canvas_graph({"type": "group", "tasks": work}).source)  # doctest: +ELLIPSIS
    digraph canvas {
    ...
        n1 [label="work × 10,000\\nwork(0) … work(9999)" shape=box3d]
    }
    """
    d = canvas if isinstance(canvas, Mapping) else canvas.to_dict(strict=False)
    specs = {} if isinstance(canvas, Mapping) else {
        n.task: n.type.argspec for n in iter_nodes(canvas)
        if type(n) is Signature and n.type is not None}
    g = graphviz.Digraph("canvas", graph_attr={
        "rankdir": rankdir, "compound": "true", "fontname": _FONT, "fontsize": "10",
        "nodesep": "0.25", "ranksep": "0.4"},
        node_attr={"fontname": _FONT, "fontsize": "11", "height": "0.3"},
        edge_attr={"fontname": _FONT, "fontsize": "9", "arrowsize": "0.7"})
    drawer = _Drawer(states, branches or {}, dynamic or {}, meta or {}, collapse, specs)
    drawer.draw(g, d, False, False)
    for tail, head, attrs in drawer.edges:
        g.edge(tail, head, **attrs)
    return g


def _cut(s: str, width: int) -> str:
    """Printable and at most ``width`` long (labels do bounded work however long a value is)."""
    s = "".join(c if c.isprintable() else " " for c in s)
    return s if len(s) <= width else s[:width - 1] + "…"


def _value(v: Any, width: int = ARG_WIDTH) -> str:
    """A short Python-like repr of a value in its ``encode_value`` form."""
    tag, x = next(iter(v.items())) if isinstance(v, dict) and len(v) == 1 else (None, v)
    if tag == "__tuple__":
        return _cut(_seq(map(_value, x), "(", ",)" if len(x) == 1 else ")"), width)
    if tag in ("__repr__", "__exception__"):  # no addresses in reprs: stable text
        text = str(x) if tag == "__repr__" else str(x).rsplit(".")[-1]
        return _cut(_ADDRESS.sub("0x…", text), width)
    if tag == "__signature__" and isinstance(x, dict):
        return _cut(_call(x, 0), width)
    if tag == "__dict__":
        return _cut(_seq((f"{_value(a)}: {_value(b)}" for a, b in x), "{", "}"), width)
    if isinstance(v, dict):
        return _cut(_seq((f"{k!r}: {_value(y)}" for k, y in v.items()), "{", "}"), width)
    return _cut(_seq(map(_value, v), "[", "]") if isinstance(v, list) else repr(v), width)


def _seq(parts: Any, open_: str, close: str) -> str:
    """Items joined until the text is long enough to be cut (never walks a long list)."""
    out: list[str] = []
    for p in parts:
        if sum(map(len, out)) > ARG_WIDTH:
            out.append("…")
            break
        out.append(p)
    return open_ + ", ".join(out) + close


def _call(d: Mapping[str, Any], slots: int) -> str:
    """``name(◦, 1, k=2)``; ``name.si(1)`` for an immutable signature."""
    args = [SLOT] * slots + [_value(a) for a in (d.get("args") or ())[:_MAX_ARGS + 1]]
    args += [f"{k}={_value(v)}" for k, v in list((d.get("kwargs") or {}).items())[:_MAX_ARGS]]
    if len(args) > _MAX_ARGS:
        args = args[:_MAX_ARGS] + ["…"]
    return _cut(f"{_short(d)}{'.si' if d.get('immutable') else ''}({', '.join(args)})", CALL_WIDTH)


def _short(d: Mapping[str, Any]) -> str:
    shadow = (d.get("options") or {}).get("shadow")
    return shadow if isinstance(shadow, str) else str(d.get("task")).rsplit(".", 1)[-1]


def _summary(d: Mapping[str, Any], fed: bool) -> str:
    """One line for a member of a collapsed group."""
    kind = d.get("type")
    if kind == "signature":
        return _call(d, 1 if fed and not d.get("immutable") else 0)
    if kind == "xmap":
        how = "starmap" if d.get("star") else "map"
        return f"{_short(d)} × {how}({len(d.get('items', ())):,})"
    if kind == "chain":
        return " → ".join(_summary(t, fed or i > 0) for i, t in enumerate(d.get("tasks", [])[:3]))
    return str(kind)


def _label(*lines: str) -> str:
    """One DOT label from lines of user text: backslashes escaped, never an HTML label."""
    return graphviz.nohtml("\\n".join(graphviz.escape(line) for line in lines if line))


def _bucket(state: str | None) -> str:
    return PENDING if state in (None, PENDING, "RECEIVED") else \
        state if state in READY_STATES else "running"


def _aggregate(counts: Counter[str]) -> str:
    """The state that colours a collapsed group: any failure shows, else all alike, else running."""
    total = sum(counts.values())
    return FAILURE if counts[FAILURE] else next(
        (s for s in (SUCCESS, PENDING, REVOKED, NOT_RUN) if counts[s] == total), STARTED)


class _Drawer:
    """One walk: nodes go into (sub)graphs; edges wait for the end (none pulls a node in)."""

    def __init__(self, states: Mapping[str, str] | None, branches: Mapping[str, str],
                 dynamic: Mapping[str, Sequence[Any]], meta: Mapping[str, Any],
                 collapse: int | None, specs: dict[str, Any]) -> None:
        self.states, self.branches, self.dynamic, self.meta = states, branches, dynamic, meta
        self.collapse, self.specs = collapse, specs
        self.edges: list[tuple[str, str, dict[str, str]]] = []
        self._names: set[str] = set()  # node and cluster names given so far
        self._n = 0  # last synthetic name

    def name(self, d: Mapping[str, Any] | None = None, prefix: str = "n") -> str:
        nid = d.get("id") if d is not None else None
        while not (isinstance(nid, str) and _SAFE_NAME.match(nid)) or nid in self._names:
            self._n += 1
            nid = f"{prefix}{self._n}"
        self._names.add(nid)
        return nid

    def state(self, id: Any) -> str | None:
        return None if self.states is None else self.states.get(id) or PENDING

    def note(self, id: Any, state: str | None) -> str:
        """The latest ``update_state`` meta of a node that has not finished."""
        m = self.meta.get(id)
        return "" if m is None or state in READY_STATES else _cut(str(m), 32)

    def edge(self, tail: str, head: str, *attrs: Mapping[str, str]) -> None:
        self.edges.append((tail, head, {k: v for a in attrs for k, v in a.items()}))

    def connect(self, exits: list[Port], entries: list[Port], g: Any, muted: bool) -> None:
        """Data-flow edges; many-to-many goes through one junction point."""
        if len(exits) > 1 and len(entries) > 1:
            junction = self.leaf(g, None, [], "junction", muted)
            self.connect(exits, junction[0], g, muted)
            exits = junction[1]
        for x, xa in exits:
            for e, ea in entries:
                self.edge(x, e, xa, ea, _EDGES["muted"] if muted else {})

    def slots(self, d: Mapping[str, Any], fed: bool) -> int:
        """Leading arguments still to come: 1 if the canvas feeds it, else what its task needs."""
        if d.get("immutable") or fed:
            return 0 if d.get("immutable") else 1
        task = str(d.get("task"))
        if task not in self.specs:  # a dict from elsewhere: ask the registry, once per name
            from .app import lookup_task
            try:
                self.specs[task] = lookup_task(task).argspec
            except Exception:  # unknown or ambiguous here: no slot shown
                self.specs[task] = None
        spec, args, kwargs = self.specs[task], tuple(d.get("args") or ()), d.get("kwargs") or {}
        for extra in range(3 if spec is not None else 0):
            try:
                spec.check(task, args, kwargs, extra=extra, complete=True)
                return extra
            except TypeError:
                pass
        return 0

    def leaf(self, g: Any, d: Mapping[str, Any] | None, lines: list[str], kind: str, muted: bool,
             state: str | None = None, entry: Mapping[str, str] | None = None
             ) -> tuple[list[Port], list[Port]]:
        name = self.name(d)
        g.node(name, _label(*lines), **node_attrs(kind, state, muted=muted))
        return [(name, entry or {})], [(name, {})]

    def draw(self, g: Any, d: Mapping[str, Any], fed: bool, muted: bool,
             title: str = "group") -> tuple[list[Port], list[Port]]:
        """Draw ``d`` into ``g``; return its entry and exit ports."""
        kind, cluster = str(d.get("type")), None
        if (d.get("links") or d.get("errbacks")) and kind in _WRAPPED:
            cluster = self.name(prefix="cluster_")
            with g.subgraph(name=cluster) as sub:
                sub.attr(label=kind, style="dashed", color=GREY, fontcolor=GREY)
                entries, exits, _ = self.draw_kind(sub, kind, d, fed, muted, title)
        else:
            entries, exits, cluster = self.draw_kind(g, kind, d, fed, muted, title)
        tails = [(exits[0][0], {"ltail": cluster})] if cluster else exits
        for key in ("links", "errbacks"):
            for cb in d.get(key) or ():
                for e, _ in self.draw(g, cb, True, muted)[0]:
                    for t, ta in tails:
                        self.edge(t, e, ta, _EDGES[key], _EDGES["muted"] if muted else {})
        return entries, exits

    def draw_kind(self, g: Any, kind: str, d: Mapping[str, Any], fed: bool, muted: bool,
                  title: str) -> tuple[list[Port], list[Port], str | None]:
        if kind == "chunks":  # drawn as what it runs: a group of starmap tasks
            items, n = d.get("items") or [], int(d.get("n") or 1)
            parts = [{"type": "xmap", "task": d.get("task"), "items": items[i:i + n],
                      "star": True} for i in range(0, len(items), n)]
            return self.draw_kind(g, "group", {"type": "group", "tasks": parts}, fed, muted, title)
        if kind == "group" and d.get("tasks"):
            return self.group(g, d, d["tasks"], fed, muted, title)
        if kind == "chord" or kind == "chain" and d.get("tasks"):  # a chord: header, then body
            steps: list[Any] = d["tasks"] if kind == "chain" else [
                d.get("header") or {"type": "group"}, d.get("body")]
            entries, exits = self.draw(g, steps[0], fed, muted, kind if kind == "chord" else title)
            for step in filter(None, steps[1:]):
                step_entries, step_exits = self.draw(g, step, True, muted)
                self.connect(exits, step_entries, g, muted)
                exits = step_exits
            return entries, exits, None
        if kind in ("foreach", "branch"):
            return (*(self.foreach if kind == "foreach" else self.branch)(g, d, muted), None)
        if kind not in ("signature", "xmap"):
            return (*self.leaf(g, d, [f"{kind}()"], "empty", muted), None)
        state = self.state(d.get("id"))
        text = _summary(d, fed) if kind == "xmap" else _call(d, self.slots(d, fed))
        entry = _EDGES["immutable"] if d.get("immutable") or kind == "xmap" else None
        return (*self.leaf(g, d, [text, self.note(d.get("id"), state)], kind, muted, state, entry),
                None)

    def group(self, g: Any, d: Mapping[str, Any], tasks: list[Any], fed: bool, muted: bool,
              title: str) -> tuple[list[Port], list[Port], str | None]:
        if self.collapse is not None and len(tasks) > self.collapse:
            first, state = tasks[0], None
            same = all(t.get("type") == first.get("type") and t.get("task") == first.get("task")
                       for t in tasks) and first.get("type") in ("signature", "xmap")
            lines = [f"{_short(first) if same else title} × {len(tasks):,}",
                     f"{_summary(first, fed)} … {_summary(tasks[-1], fed)}"]
            if self.states is not None:
                counts = Counter(_bucket(self.states.get(result_id(t) or "")) for t in tasks)
                lines.append("  ".join(f"{counts[k]:,} {w}" for k, w in _COUNTS if counts[k]))
                state = _aggregate(counts)
            return (*self.leaf(g, d, lines, "group", muted, state), None)
        cluster = self.name(prefix="cluster_")
        entries: list[Port] = []
        exits: list[Port] = []  # every member's: a chord body is fed by each header task
        with g.subgraph(name=cluster) as sub:
            sub.attr(label=title, style="rounded", color=GREY if muted else "gray40",
                     fontcolor=GREY if muted else "gray30")
            for t in tasks:
                member_entries, member_exits = self.draw(sub, t, fed, muted)
                entries, exits = entries + member_entries, exits + member_exits
        return entries, exits, cluster

    def foreach(self, g: Any, d: Mapping[str, Any], muted: bool) -> tuple[list[Port], list[Port]]:
        fid, state = d.get("id"), self.state(d.get("id"))
        lines = [f"foreach({_value(d['args'][0])})" if d.get("args") else "foreach"]
        kids = [k for k, row in self.dynamic.items() if len(row) > 3 and row[3] == fid]
        if self.states is not None and kids:  # elements made at run time: counts, not nodes
            counts = Counter(_bucket(self.states.get(k)) for k in kids)
            lines.append(f"{sum(counts[s] for s in READY_STATES):,}/{len(kids):,} done"
                         + (f"  {counts[FAILURE]:,} ✗" if counts[FAILURE] else ""))
        entries, exits = self.leaf(g, d, [*lines, self.note(fid, state)], "foreach", muted, state)
        states, self.states = self.states, None  # the body is a template: its copies have states
        with g.subgraph(name=self.name(prefix="cluster_")) as sub:
            sub.attr(label="each element", style="dashed", color=GREY, fontcolor=GREY)
            body_in, body_out = self.draw(sub, d.get("body") or {"type": "chain"}, True, muted)
        self.states = states
        self.connect([(exits[0][0], _EDGES["each"])], body_in, g, muted)
        return entries, body_out

    def branch(self, g: Any, d: Mapping[str, Any], muted: bool) -> tuple[list[Port], list[Port]]:
        bid, cond = d.get("id"), d.get("cond") or {"type": "chain"}
        simple = cond.get("type") == "signature" and not (cond.get("links") or cond.get("errbacks"))
        state = self.state(bid if not simple or bid in (self.states or {}) else cond.get("id"))
        if simple:  # the diamond is the condition task itself
            lines = [_call(cond, self.slots(cond, True)) + " ?", self.note(bid, state)]
            entries = decision = self.leaf(g, d, lines, "branch", muted, state)[0]
        else:
            entries, cond_exits = self.draw(g, cond, True, muted)
            decision, _ = self.leaf(g, d, ["?"], "branch", muted, state)
            self.connect(cond_exits, decision, g, muted)
        taken = self.branches.get(str(bid))
        exits: list[Port] = []
        for key, word in (("then", "true"), ("otherwise", "false")):
            off = muted or (taken is not None and taken != key)
            part = d.get(key)
            part_entries, part_exits = (self.draw(g, part, True, off) if part else
                                        self.leaf(g, None, ["unchanged"], "pass", off))
            style = {"label": word, **(_EDGES["taken"] if taken == key else {})}
            self.connect([(decision[0][0], style)], part_entries, g, off)
            exits += [(x, {**a, **_EDGES["muted"]}) if off else (x, a) for x, a in part_exits]
        return entries, exits
