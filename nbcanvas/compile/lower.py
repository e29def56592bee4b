"""Lowering: a frozen canvas -> units of work (one dask task each) and the node table.

Fusion: consecutive chain steps with no fan-out between them become one unit (one dask task,
no scheduler hop per step). Batching: simple members of a large group share units; each member
keeps its own id, state and result. Both can be switched off; results do not change.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any, NamedTuple

from ..canvas import Signature, branch, chain, chord, foreach, group
from .flat import ROUTING_OPTIONS, _callbacks, _inherit, is_flat, split_options, to_prog
from .programs import Batch, Prog, Seq

__all__ = ["Unit", "Ref", "Lst", "NodeInfo", "Lowering", "selector", "BATCH_TARGET", "TINY_UNIT",
           "cheap_in_place"]

#: Members per unit a large group of simple calls aims at (at least 4 units per thread).
BATCH_TARGET = 256
#: seconds of work below which a group of tiny tasks runs as one unit
TINY_UNIT = 0.002
#: options that tie a call to a place or a time: such a call never runs in place of a hop
_PLACED = ROUTING_OPTIONS | {"countdown", "eta"}


def cheap_in_place(sig: Signature, tiny: Mapping[str, float]) -> bool:
    """True if running ``sig`` right here costs less than handing it to dask: every task in
    it is known to be tiny (``tiny``: name -> typical seconds), all of them together take at
    most ``TINY_UNIT``, and none is routed (queue, resources, workers, priority) or delayed
    (countdown, eta). Only tasks, chains, groups and chords qualify: a ``foreach`` or
    ``branch`` inside decides for itself when it runs.

    >>> from nbcanvas import App, group
    >>> app = App("doc-in-place")
    >>> @app.task
    ... def inc(x):
    ...     return x + 1
    >>> g = group(inc.s(i) for i in range(10))
    >>> cheap_in_place(g, {"inc": 0.00005}), cheap_in_place(g, {})
    (True, False)
    >>> cheap_in_place(g, {"inc": 0.001})   # ten of them: more work than a hop
    False
    >>> cheap_in_place(group(inc.s(1).set(queue="gpu")), {"inc": 0.00005})
    False
    """
    if not tiny:
        return False
    total = 0.0
    stack = [sig]
    while stack:
        node = stack.pop()
        if node.options and not _PLACED.isdisjoint(node.options):
            return False
        if type(node) is Signature:
            seconds = tiny.get(node.name)
            if seconds is None or (node._type is not None
                                   and not _PLACED.isdisjoint(node._type.options)):
                return False
            total += seconds
            if total > TINY_UNIT:
                return False
        elif not isinstance(node, (chain, group, chord)):
            return False
        stack.extend(node.children())
        stack.extend(node.links)
        stack.extend(node.errbacks)
    return True


@dataclass(frozen=True)
class Ref:
    """The outcome of node ``id``, found in the result of unit ``key``."""

    key: str
    id: str


@dataclass(frozen=True)
class Lst:
    """A list of outcomes spread over units (a group run in parallel)."""

    items: tuple[Any, ...]  # Ref | Lst


@dataclass
class Unit:
    """One dask task: programs run in order, each with its input selector."""

    key: str
    progs: list[tuple[Prog, Any]]
    deps: list[str]
    routing: dict[str, Any]
    label: str


class NodeInfo(NamedTuple):
    """A row of the node table that the diagram, the store and the results share."""

    kind: str          # signature, xmap, group, chord, foreach, branch, callback
    name: str          # short task name or primitive name
    step: int          # index of the top-level step it belongs to
    parent: str | None  # the container it is drawn in (group, foreach, branch, callback owner)
    key: str | None    # unit holding its outcome (None for a group spread over units)
    members: tuple[str, ...] = ()  # a group's member result ids, in order


def selector(inp: Ref | Lst | None, deps: list[str], index: dict[str, int]) -> Any:
    """Encode where a unit's input comes from, relative to its dependency list."""
    def dep(key: str) -> int:
        if key not in index:
            index[key] = len(deps)
            deps.append(key)
        return index[key]

    if inp is None:
        return None
    if isinstance(inp, Ref):
        return ("r", dep(inp.key), inp.id)
    parts: list[Any] = []
    run_key: str | None = None
    run_ids: list[str] = []
    for item in inp.items:  # consecutive refs of one unit become one splice
        if isinstance(item, Ref) and item.key == run_key:
            run_ids.append(item.id)
            continue
        if run_ids:
            parts.append(("x", dep(run_key), tuple(run_ids)))  # type: ignore[arg-type]
            run_key, run_ids = None, []
        if isinstance(item, Ref):
            run_key, run_ids = item.key, [item.id]
        else:
            parts.append(selector(item, deps, index))
    if run_ids:
        parts.append(("x", dep(run_key), tuple(run_ids)))  # type: ignore[arg-type]
    return ("l", tuple(parts))


def _key(name: str, id: str) -> str:
    return f"{name.replace('-', '_')}-{id}"


def _route_key(route: dict[str, Any]) -> Any:
    return tuple(sorted((k, repr(v)) for k, v in route.items())) if route else ()


def _route_of(sig: Signature, inherited: dict[str, Any]) -> dict[str, Any]:
    """Routing options of a node run as one unit: its task's, its containers', its own."""
    if sig._type is not None:
        return split_options(sig, inherited)[1]
    merged = {**inherited, **sig.options}
    return {k: v for k, v in merged.items() if k in ("priority", "resources", "workers", "queue")}


def _simple(sig: Signature) -> bool:
    """A plain task call with no callbacks and no options of its own: batched by column."""
    return type(sig) is Signature and not sig.links and not sig.errbacks and not sig.options


class Lowering:
    """Builds the units and the node table of one workflow."""

    def __init__(self, parallelism: int = 2, fusion: bool = True, batching: bool = True,
                 salt: str = "", tag: str = "", tiny: Mapping[str, float] | None = None) -> None:
        self.salt = salt  # appended to every key: a canvas sent again gets keys of its own
        # With a tag, batch units are named per workflow ("add_batch.1a2b3c4d"): dask
        # co-assigns the "root-ish" tasks of one name to a worker in blocks, and with an
        # earlier workflow's batches still held in memory under the same name, that put 6 of
        # 8 batches on one worker. But every name is a task group and a task prefix that the
        # scheduler and the workers walk on every graph and transition (and keep forever): a
        # round trip grew by ~2.6 ms per 1,000 kept workflows. nbcanvas's embedded cluster
        # treats no task as root-ish, and its batches go untagged.
        self.tag = tag
        #: task name -> seconds, for tasks known to take about a millisecond or less: their
        #: small groups are packed tighter (each extra dask task costs ~1 ms)
        self.tiny = dict(tiny or {})
        self.parallelism = max(1, parallelism)
        self.fusion = fusion
        self.batching = batching
        self.units: dict[str, Unit] = {}
        self.nodes: dict[str, NodeInfo] = {}
        #: keys of units holding a step decided at run time (foreach, branch)
        self.fan_outs: set[str] = set()

    # -- node table --------------------------------------------------------------------------
    def _table(self, sig: Signature, step: int, key: str | None, parent: str | None,
               callback: bool = False) -> None:
        """Rows for ``sig`` and everything inside it, run by unit ``key``."""
        stack = [(sig, parent, callback)]
        while stack:
            node, par, cb = stack.pop()
            if node.id is not None and node.kind != "chain":
                members = tuple(t.id for t in node.tasks) if isinstance(node, group) else ()
                self.nodes[node.id] = NodeInfo("callback" if cb else node.kind, node.name, step,
                                               par, key, members)
            inside = node.id if not isinstance(node, chain) else par
            if isinstance(node, foreach):  # its body is a template: announced at run time
                if key is not None:
                    self.fan_outs.add(key)
            else:
                if key is not None and isinstance(node, branch):
                    self.fan_outs.add(key)
                for c in node.children():
                    stack.append((c, inside, cb))
            for c in (*node.links, *node.errbacks):
                stack.append((c, node.id if node.id is not None else par, True))

    # -- units ---------------------------------------------------------------------------------
    def _unit(self, progs: list[tuple[Prog, Ref | Lst | None]], route: dict[str, Any],
              label: str) -> str:
        key = _key(label, progs[0][0].id) + self.salt
        deps: list[str] = []
        index: dict[str, int] = {}
        sels = [(p, selector(inp, deps, index)) for p, inp in progs]
        self.units[key] = Unit(key, sels, deps, route, label)
        return key

    def lower(self, sig: Signature, inp: Ref | Lst | None, step: int, inherited: dict[str, Any],
              parent: str | None = None, numbered: bool = True) -> Ref | Lst:
        """Units for ``sig`` fed by ``inp``; returns where its result will be."""
        if type(sig) is Signature or sig.kind == "xmap" or (
                self.fusion and is_flat(sig) and not isinstance(sig, chain)):
            prog = to_prog(sig, inp is not None, inherited)
            key = self._unit([(prog, inp)], _route_of(sig, inherited), sig.name)
            self._table(sig, step, key, parent)
            return Ref(key, sig.id)  # type: ignore[arg-type]
        inner = _inherit(sig, inherited)
        if isinstance(sig, chain):
            out: Ref | Lst = self._chain(sig, inp, step, inner, parent, numbered)
        elif isinstance(sig, group):
            out = self._group(sig, inp, step, inner, parent)
        elif isinstance(sig, chord):
            if sig.body is None:
                raise ValueError("a chord without a body cannot run: chord(header)(body)")
            hdr = self._group(sig.header, inp, step, inner, parent)
            out = self.lower(sig.body, hdr, step + 1 if numbered else step, inner, parent,
                             numbered=False)
        else:  # foreach, or a branch with fan-out inside: decided at run time, in one unit
            prog = to_prog(sig, inp is not None, inherited)
            key = self._unit([(prog, inp)], {}, sig.kind)
            self._table(sig, step, key, parent)
            return Ref(key, sig.id)  # type: ignore[arg-type]
        if sig.links or sig.errbacks:
            self._callbacks(sig, out, step)
        return out

    def _chain(self, sig: chain, inp: Ref | Lst | None, step: int, inherited: dict[str, Any],
               parent: str | None, numbered: bool) -> Ref | Lst:
        if not sig.tasks:
            raise ValueError("an empty chain cannot run: add a signature to it")
        run: list[Signature] = []
        run_route: Any = None
        cur = inp
        for i, t in enumerate(sig.tasks):
            s = step + i if numbered else step
            # a foreach / branch runs inside a unit too (its fan-out, if any, is sent from
            # there): fused with its neighbours, the chain needs no hop before or after it
            flat = self.fusion and (is_flat(t) or isinstance(t, (foreach, branch)))
            route = _route_key(split_options(t, inherited)[1]) if flat and t._type else ()
            if run and (not flat or route != run_route):
                cur = self._segment(run, cur, inherited, parent, s - len(run), numbered)
                run = []
            if flat:
                run.append(t)
                run_route = route
            else:
                cur = self.lower(t, cur, s, inherited, parent, numbered=False)
        if run:
            last = step + len(sig.tasks) if numbered else step
            cur = self._segment(run, cur, inherited, parent, last - len(run) if numbered
                                else step, numbered)
        assert cur is not None
        return cur

    def _segment(self, steps: list[Signature], inp: Ref | Lst | None, inherited: dict[str, Any],
                 parent: str | None, first_step: int, numbered: bool) -> Ref:
        """One unit running consecutive chain steps."""
        progs = [to_prog(t, inp is not None or i > 0, inherited) for i, t in enumerate(steps)]
        prog: Prog = progs[0] if len(progs) == 1 else Seq(progs[-1].id, tuple(progs))
        route = split_options(steps[0], inherited)[1] if steps[0]._type is not None else {}
        key = self._unit([(prog, inp)], route, steps[0].name)
        for i, t in enumerate(steps):
            self._table(t, first_step + i if numbered else first_step, key, parent)
        return Ref(key, prog.id)

    def _group(self, sig: group, inp: Ref | Lst | None, step: int, inherited: dict[str, Any],
               parent: str | None) -> Lst:
        members = sig.tasks
        outs: list[Ref | Lst | None] = [None] * len(members)
        by_route: dict[Any, list[int]] = {}
        for i, t in enumerate(members):
            if type(t) is Signature or t.kind == "xmap" or (self.fusion and is_flat(t)):
                plain = not t.options and not inherited and (t._type is None or not t._type.options)
                rk = () if plain or t._type is None else \
                    _route_key(split_options(t, inherited)[1])
                by_route.setdefault(rk, []).append(i)
        for idxs in by_route.values():
            for batch in self._batches(idxs, members[idxs[0]].name):
                key = self._batch_unit([members[i] for i in batch], inp, step, inherited, sig.id)
                for i in batch:
                    outs[i] = Ref(key, members[i].id)  # type: ignore
        for i, t in enumerate(members):
            if outs[i] is None:
                outs[i] = self.lower(t, inp, step, inherited, sig.id, numbered=False)
        self.nodes[sig.id] = NodeInfo("group", sig.name, step, parent, None,  # type: ignore
                                      tuple(t.id for t in members))
        return Lst(tuple(outs))

    def _batch_unit(self, sigs: list[Signature], inp: Ref | Lst | None, step: int,
                    inherited: dict[str, Any], parent: str) -> str:
        """One unit for flat group members (its key); runs of simple calls of one task go by
        column."""
        has_input = inp is not None
        progs: list[Prog] = []
        i = 0
        while i < len(sigs):
            t = sigs[i]
            j = i
            if _simple(t) and not inherited:
                while j + 1 < len(sigs) and _simple(sigs[j + 1]) and \
                        sigs[j + 1]._type is t._type and sigs[j + 1].immutable == t.immutable:
                    j += 1
            if j > i:
                progs.append(self._column(sigs[i:j + 1], has_input))
            else:
                progs.append(to_prog(t, has_input, inherited))
            i = j + 1
        first = sigs[0]
        route = split_options(first, inherited)[1] if first._type is not None else {}
        label = first.name if len(sigs) == 1 else f"{first.name}_batch" + (
            f".{self.tag}" if self.tag else "")
        key = self._unit([(p, inp) for p in progs], route, label)
        for t in sigs:
            if _simple(t):  # the common case, without the generic walk
                self.nodes[t.id] = NodeInfo(t.kind, t.name, step, parent, key)  # type: ignore
            else:
                self._table(t, step, key, parent)
        return key

    @staticmethod
    def _column(sigs: list[Signature], has_input: bool) -> Batch:
        t0 = sigs[0]
        task = t0._type
        spec = task.argspec
        extra = 1 if has_input and not t0.immutable else 0
        if spec is not None:
            lo, hi = spec.complete_counts
            for s in sigs:
                if s.kwargs or not lo <= len(s.args) + extra <= hi:  # else it binds: no check
                    spec.check(s.task, s.args, s.kwargs, extra=extra, complete=True)
        run, _ = split_options(t0, {})
        kwargs = [s.kwargs for s in sigs]
        return Batch(t0.name, task.run, task.bind, t0.immutable, run, [s.id for s in sigs],
                     [s.args for s in sigs], kwargs if any(kwargs) else None)

    def _batches(self, idxs: list[int], task: str = "") -> list[list[int]]:
        n = len(idxs)
        tiny = task in self.tiny
        if not self.batching or (n <= 4 * self.parallelism and not tiny) or n == 1:
            return [[i] for i in idxs]
        if tiny and n * self.tiny[task] <= TINY_UNIT:  # all of it costs less than a hop
            return [idxs]
        per_thread = 1 if tiny else 4  # units per thread: spread unknown or long tasks wider
        k = max(per_thread * self.parallelism, math.ceil(n / BATCH_TARGET))
        size = math.ceil(n / k)
        return [idxs[j:j + size] for j in range(0, n, size)]

    def _callbacks(self, sig: Signature, out: Ref | Lst, step: int) -> None:
        """A container's own link/link_error run once, where its result is known."""
        links, errbacks = _callbacks(sig, {})
        unit = self.units.get(out.key) if isinstance(out, Ref) else None
        if unit is not None and isinstance(out, Ref) and unit.progs[-1][0].id == out.id \
                and not isinstance(sig, group):
            prog, sel = unit.progs[-1]
            unit.progs[-1] = (Seq(out.id, (prog,), links, errbacks), sel)
            key = out.key
        else:
            holder = Seq(sig.id or _some_id(out), (), links, errbacks)
            key = self._unit([(holder, out)], {}, f"{sig.name}_callbacks")
        for c in (*sig.links, *sig.errbacks):
            self._table(c, step, key, sig.id or _some_id(out), callback=True)


def _some_id(out: Ref | Lst) -> str:
    """Some id naming an output (for keys of callback units)."""
    return out.id if isinstance(out, Ref) else _some_id(out.items[0])
