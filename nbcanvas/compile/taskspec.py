"""Units -> one dask graph in dask's public task spec (``Task``/``TaskRef``), not ``delayed``.

Units with routing options (``resources``, ``workers``, ``priority``, ``queue``) go into their
own ``MaterializedLayer`` carrying those annotations; without any, the graph is a plain dict.
"""
from __future__ import annotations

from typing import Any

from dask.task_spec import Task, TaskRef

from ..shipping import in_this_process, runs_here
from . import CompiledGraph
from .programs import UnitProgram

__all__ = ["to_dask_graph", "graph_expr", "send_graph", "annotations_of", "inline_ids",
           "INLINE_NODES"]


def annotations_of(routing: dict[str, Any]) -> dict[str, Any]:
    """dask annotations for a unit's routing options (``queue=X`` needs resource ``X``)."""
    ann: dict[str, Any] = {}
    res = dict(routing.get("resources") or {})
    if routing.get("queue"):
        res.setdefault(str(routing["queue"]), 1)
    if res:
        ann["resources"] = res
    if routing.get("workers"):
        w = routing["workers"]
        ann["workers"] = [w] if isinstance(w, str) else list(w)
    if routing.get("priority") is not None:
        ann["priority"] = routing["priority"]
    return ann


#: A result of up to this many nodes rides in their done events (no gather round trip).
INLINE_NODES = 64


def inline_ids(result: Any, nodes: Any = None) -> dict[str, frozenset[str]]:
    """unit key -> ids whose small outcomes go in their done events: the workflow's result,
    or the members of a result group of at most ``INLINE_NODES`` (also a group run in one
    unit: its members are recorded there too)."""
    refs: list[Any] = []
    stack = [result]
    while stack and len(refs) <= INLINE_NODES:
        w = stack.pop()
        if hasattr(w, "key"):
            row = nodes.get(w.id) if nodes is not None else None
            if row is not None and row.kind == "group" and row.members:
                stack.extend(type(w)(w.key, m) for m in row.members)
            else:
                refs.append(w)
        else:
            stack.extend(w.items)
    if len(refs) > INLINE_NODES:
        return {}
    out: dict[str, set[str]] = {}
    for r in refs:
        out.setdefault(r.key, set()).add(r.id)
    return {k: frozenset(v) for k, v in out.items()}


def to_dask_graph(cg: CompiledGraph) -> Any:
    """The workflow as one graph: ``{key: Task(run_unit, programs, wf, *TaskRef(deps))}``."""
    from ..runtime import run_unit
    wf = cg.workflow_id
    plain: dict[str, Task] = {}
    layers: dict[Any, dict[str, Task]] = {}
    anns: dict[Any, dict[str, Any]] = {}
    inline = inline_ids(cg.result, cg.nodes)
    for key, unit in cg.units.items():
        prog = UnitProgram(key, tuple(unit.progs), inline=inline.get(key, frozenset()),
                           tiny=cg.tiny_for(key))
        task = Task(key, run_unit, prog, wf, *[TaskRef(d) for d in unit.deps])
        if not unit.routing:
            plain[key] = task
            continue
        ann = annotations_of(unit.routing)
        tag = repr(sorted(ann.items()))
        layers.setdefault(tag, {})[key] = task
        anns[tag] = ann
    if not layers:
        return plain
    from dask.highlevelgraph import HighLevelGraph, MaterializedLayer
    hl: dict[str, Any] = {f"nbcanvas-{wf}": MaterializedLayer(plain)}
    for i, (tag, mapping) in enumerate(layers.items()):
        hl[f"nbcanvas-{wf}-{i}"] = MaterializedLayer(mapping, annotations=anns[tag])
    return HighLevelGraph(hl, {name: set() for name in hl})


def graph_expr(graph: Any, keys: list[str]) -> Any:
    """``graph`` as the expression ``Client.get`` sends, named after its keys.

    Given a dict, ``Client.get`` wraps it in an expression whose name is a token of the whole
    graph: hashing every unit's pickled program, 0.15 ms of a single task's 0.45 ms client
    side. Unit keys are unique per submission already, so they name it (distributed's own
    ``submit`` names its expressions with a uuid the same way).
    """
    try:
        from dask._expr import HLGExpr, LLGExpr
    except ImportError:  # pragma: no cover - a dask without expressions: let it tokenize
        return graph
    token = f"nbcanvas-{keys[0] if keys else 'empty'}-{len(keys)}"
    kind = LLGExpr if isinstance(graph, dict) else HLGExpr
    return kind(graph, _determ_token=token)


_ORDERED: list[bool] = []  # [whether this distributed takes internal_priority], once


def send_graph(client: Any, graph: Any, keys: list[str]) -> list[Any]:
    """Submit ``graph`` on ``client``; the futures of ``keys``, in order.

    Units come out of compilation in dependency order, so their index is their priority:
    passing it spares the scheduler ``dask.order`` on every graph (an extra hop to its
    offload thread, ~0.2 ms for a single task; more on large graphs). Through distributed's
    ``_graph_to_futures`` where it takes ``internal_priority``; else plain ``Client.get``.
    """
    expr = graph_expr(graph, keys)
    if runs_here(client):  # the whole cluster lives here: task functions go as themselves
        with in_this_process():
            return _send(client, expr, keys)
    return _send(client, expr, keys)


def _send(client: Any, expr: Any, keys: list[str]) -> list[Any]:
    if not _ORDERED:
        import inspect
        params = inspect.signature(type(client)._graph_to_futures).parameters
        _ORDERED.append("internal_priority" in params and "span_metadata" in params)
    if not _ORDERED[0]:
        return list(client.get(expr, keys, sync=False))
    from distributed.spans import SpanMetadata
    futures = client._graph_to_futures(
        expr=expr, keys=set(keys), internal_priority={k: i for i, k in enumerate(keys)},
        span_metadata=SpanMetadata(collections=[{"type": "low-level-graph"}]))
    return [futures[k] for k in keys]
