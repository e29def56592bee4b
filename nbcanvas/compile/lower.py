"""Lowering: a frozen canvas -> units of work (one dask task each) and the node table.

Fusion: consecutive chain steps with no fan-out between them become one unit (one dask task,
no scheduler hop per step). Batching: flat members of a large group share units; each member
keeps its own id, state and result. Both can be switched off; results do not change.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..canvas import Signature, branch, chain, chord, foreach, group
from .flat import _inherit, is_flat, split_options, to_prog
from .programs import Par, Prog, Seq

__all__ = ["Unit", "Ref", "Lst", "NodeInfo", "Lowering", "selector"]


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


@dataclass
class NodeInfo:
    """A row of the node table the diagram, the store and the results share."""

    id: str
    kind: str          # signature, xmap, group, chord, chain, foreach, branch, callback
    name: str          # short task name or primitive name
    step: int          # index of the top-level step it belongs to
    key: str | None    # unit holding its outcome (None for a group spread over units)
    parent: str | None = None
    members: tuple[str, ...] = field(default=())   # a group's member result ids, in order


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
    run_key, run_ids = None, []
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
    return tuple(sorted((k, repr(v)) for k, v in route.items()))


class Lowering:
    """Builds the units and the node table of one workflow."""

    def __init__(self, parallelism: int = 2, fusion: bool = True, batching: bool = True) -> None:
        self.parallelism = max(1, parallelism)
        self.fusion = fusion
        self.batching = batching
        self.units: dict[str, Unit] = {}
        self.nodes: dict[str, NodeInfo] = {}

    # -- node table --------------------------------------------------------------------------
    def _table(self, sig: Signature, step: int, key: str | None, parent: str | None) -> None:
        """Rows for ``sig`` and everything inside it run by unit ``key``."""
        stack = [(sig, parent, False)]
        while stack:
            node, par, cb = stack.pop()
            if node.id is not None and node.kind != "chain":
                kind = "callback" if cb else node.kind
                members = tuple(t.id for t in node.tasks) if isinstance(node, group) else ()
                self.nodes[node.id] = NodeInfo(node.id, kind, node.name, step, key, par, members)
            for c in node.children():
                if not (isinstance(node, (foreach, branch))):
                    stack.append((c, node.id if not isinstance(node, chain) else par, cb))
            for c in (*node.links, *node.errbacks):
                stack.append((c, node.id, True))
            if isinstance(node, (foreach, branch)):
                for c in node.children():  # inside a run-time step: rows, no unit of their own
                    stack.append((c, node.id, cb))

    # -- units ---------------------------------------------------------------------------------
    def _unit(self, progs: list[tuple[Prog, Ref | Lst | None]], route: dict[str, Any],
              label: str) -> str:
        first = progs[0][0]
        key = _key(label, first.id)
        deps: list[str] = []
        index: dict[str, int] = {}
        sels = [(p, selector(inp, deps, index)) for p, inp in progs]
        self.units[key] = Unit(key, sels, deps, route, label)
        return key

    def lower(self, sig: Signature, inp: Ref | Lst | None, step: int, inherited: dict[str, Any],
              parent: str | None = None) -> Ref | Lst:
        """Units for ``sig`` fed by ``inp``; returns where its result will be."""
        if (self.fusion and is_flat(sig)) or type(sig) is Signature or sig.kind == "xmap":
            prog = to_prog(sig, inp is not None, inherited)
            _, route = split_options(sig, inherited) if sig._type is not None else ({}, {})
            key = self._unit([(prog, inp)], route, sig.name)
            self._table(sig, step, key, parent)
            return Ref(key, prog.id)
        inner = _inherit(sig, inherited)
        if isinstance(sig, chain):
            out = self._chain(sig, inp, step, inner, parent)
        elif isinstance(sig, group):
            out = self._group(sig, inp, step, inner, parent)
        elif isinstance(sig, chord):
            if sig.body is None:
                raise ValueError("a chord without a body cannot run: chord(header)(body)")
            hdr = self._group(sig.header, inp, step, inner, sig.body.id)
            out = self.lower(sig.body, hdr, step + 1 if parent is None and step == 0 else step,
                             inner, parent)
        else:  # foreach, or a branch with fan-out inside: decided at run time, in one unit
            prog = to_prog(sig, inp is not None, inherited)
            key = self._unit([(prog, inp)], {}, sig.kind)
            self._table(sig, step, key, parent)
            return Ref(key, sig.id)
        if sig.links or sig.errbacks:
            self._callbacks(sig, out, step)
        return out

    def _chain(self, sig: chain, inp: Ref | Lst | None, step: int, inherited: dict[str, Any],
               parent: str | None) -> Ref | Lst:
        if not sig.tasks:
            raise ValueError("an empty chain cannot run: add a signature to it")
        top = parent is None and step == 0
        run: list[Signature] = []
        run_route: Any = None
        cur = inp
        for i, t in enumerate(sig.tasks):
            s = i if top else step
            flat = self.fusion and is_flat(t)
            route = _route_key(split_options(t, inherited)[1]) if flat and t._type else ()
            if run and (not flat or route != run_route):
                cur = self._segment(run, cur, inherited, parent,
                                    (s - len(run)) if top else step, top)
                run = []
            if flat:
                run.append(t)
                run_route = route
            else:
                cur = self.lower(t, cur, s, inherited, parent)
        if run:
            cur = self._segment(run, cur, inherited, parent,
                                (len(sig.tasks) - len(run)) if top else step, top)
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
        flat_idx = [i for i, t in enumerate(members) if is_flat(t)] if self.fusion else \
            [i for i, t in enumerate(members) if type(t) is Signature or t.kind == "xmap"]
        outs: list[Ref | Lst | None] = [None] * len(members)
        by_route: dict[Any, list[int]] = {}
        for i in flat_idx:
            t = members[i]
            by_route.setdefault(_route_key(split_options(t, inherited)[1]) if t._type else (),
                                []).append(i)
        for idxs in by_route.values():
            for batch in self._batches(idxs):
                progs = [(to_prog(members[i], inp is not None, inherited), inp) for i in batch]
                t0 = members[batch[0]]
                route = split_options(t0, inherited)[1] if t0._type is not None else {}
                key = self._unit(progs, route, t0.name if len(batch) == 1 else
                                 f"{t0.name}_batch")
                for i in batch:
                    self._table(members[i], step, key, sig.id)
                    outs[i] = Ref(key, members[i].id)
        for i, t in enumerate(members):
            if outs[i] is None:
                outs[i] = self.lower(t, inp, step, inherited, sig.id)
        self.nodes[sig.id] = NodeInfo(sig.id, "group", sig.name, step, None, parent,
                                      tuple(t.id for t in members))
        return Lst(tuple(outs))

    def _batches(self, idxs: list[int]) -> list[list[int]]:
        n = len(idxs)
        if not self.batching or n <= 4 * self.parallelism:
            return [[i] for i in idxs]
        k = max(4 * self.parallelism, math.ceil(n / 256))
        size = math.ceil(n / k)
        return [idxs[j:j + size] for j in range(0, n, size)]

    def _callbacks(self, sig: Signature, out: Ref | Lst, step: int) -> None:
        """A container's own link/link_error run once, where its result is known."""
        if isinstance(out, Ref) and out.key in self.units:
            unit = self.units[out.key]
            prog, sel = unit.progs[-1]
            if prog.id == out.id and not isinstance(sig, group):
                wrapped = Seq(out.id, (prog,), *to_prog_callbacks(sig))
                unit.progs[-1] = (wrapped, sel)
                self._table_callbacks(sig, step, out.key)
                return
        from .programs import Seq as _Seq
        links, errbacks = to_prog_callbacks(sig)
        holder = _Seq(sig.id or out_id(out), (), links, errbacks)
        key = self._unit([(holder, out)], {}, f"{sig.name}_callbacks")
        self._table_callbacks(sig, step, key)

    def _table_callbacks(self, sig: Signature, step: int, key: str) -> None:
        for c in (*sig.links, *sig.errbacks):
            self._table(c, step, key, sig.id)
            self.nodes[c.id].kind = "callback"


def to_prog_callbacks(sig: Signature) -> tuple[tuple, tuple]:
    """The programs of ``sig``'s own links and errbacks."""
    from .flat import _callbacks
    return _callbacks(sig, {})


def out_id(out: Ref | Lst) -> str:
    """Some id naming an output (for keys of callback units)."""
    return out.id if isinstance(out, Ref) else out_id(out.items[0])
