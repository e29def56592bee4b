"""Worker-side callables that compiled units reference (distributed imported lazily).

``run_unit`` is the function of every dask task of a workflow; ``run_units_local`` runs the
same units in this process for ``sig.apply()``.
"""
from __future__ import annotations

import weakref
from typing import Any

from .emit import TOPIC, WorkerSink
from .interp import NO_INPUT, REVOKED, Ctx, resolve, revoke_local, run_prog
from .outcome import UnitResult


def _register_sizeof() -> None:
    """Tell dask how big a unit's results are (for its memory accounting and spilling)."""
    try:
        from dask.sizeof import sizeof
    except ImportError:  # pragma: no cover
        return

    @sizeof.register(UnitResult)
    def _sizeof_unit(r: UnitResult) -> int:
        return 64 + sum(sizeof(v) + 80 for v in r.outcomes.values())


_register_sizeof()

__all__ = ["run_unit", "run_units_local", "execute_local", "REVOKED", "revoke_local", "TOPIC",
           "NO_INPUT", "Ctx", "outcome_at", "known_results", "release_events"]

_sinks: weakref.WeakKeyDictionary[Any, WorkerSink] = weakref.WeakKeyDictionary()


def _worker_sink(worker: Any) -> WorkerSink:
    """The worker's event sink. A batch goes out as ``ToPickle(events)``: ``Worker.log_event``
    then skips walking every event to check it is msgpack-safe, and the in-memory comm of the
    threads pool hands the list over as it is instead of copying it."""
    sink = _sinks.get(worker)
    if sink is None:
        from distributed.protocol import ToPickle

        def deliver(msg: dict[str, Any], w: Any = weakref.ref(worker)) -> None:
            live = w()
            if live is not None:
                live.log_event(TOPIC, {"wf": msg["wf"], "ev": ToPickle(msg["ev"])})
        sink = _sinks[worker] = WorkerSink(deliver)
    return sink


def release_events(worker: Any) -> None:
    """On the worker's event loop, as it handles a unit's result: send the events held for it
    (see ``WorkerSink.hold``)."""
    sink = _sinks.get(worker)
    if sink is not None and sink.held:
        sink.release()


def known_results(previous: Any) -> dict[str, Any]:
    """The results of steps that succeeded in a previous run of a unit (for ``retry()``)."""
    from .outcome import Failed, GroupOutcome, Skipped
    outcomes = previous.outcomes if isinstance(previous, UnitResult) else previous
    return {k: v for k, v in outcomes.items()
            if not isinstance(v, (Failed, Skipped, GroupOutcome))}


def run_unit(unit: Any, token: str, *deps: Any) -> UnitResult:
    """The dask task of one unit: run its programs, return ``{node id: outcome}``.

    ``token`` is the workflow id (or ``<id>~<n>`` for a retry). A retried unit's last
    dependency is its previous result: the steps that succeeded there are reused.
    """
    progs = unit.progs
    known = None
    if getattr(unit, "reuse", False):
        known, deps = known_results(deps[-1]), deps[:-1]
    from distributed import get_worker
    worker = get_worker()
    ctx = Ctx(token, _worker_sink(worker), execute_on_cluster, host=worker.address, known=known)
    ctx.inline = getattr(unit, "inline", frozenset())
    ctx.tiny = getattr(unit, "tiny", None) or {}
    try:
        for prog, sel in progs:
            run_prog(prog, resolve(sel, deps), ctx)
    finally:
        if getattr(worker, "_nbcanvas_releases", False):
            ctx.sink.hold()  # the worker plugin sends them with the result (release_events)
        else:
            ctx.sink.flush()
    return UnitResult(ctx.results)


def outcome_at(where: Any, results: dict[str, dict[str, Any]]) -> Any:
    """The outcome a ``Ref``/``Lst`` points at, given unit results by key."""
    from .outcome import GroupOutcome
    if hasattr(where, "key"):
        return results[where.key][where.id]
    return GroupOutcome([outcome_at(w, results) for w in where.items])


def run_units_local(units: dict[str, Any], ctx: Ctx) -> dict[str, dict[str, Any]]:
    """Run units in order in this process; every node's outcome also lands in ``ctx.results``."""
    done: dict[str, dict[str, Any]] = {}
    for key, unit in units.items():
        deps = tuple(done[d] for d in unit.deps)
        uctx = Ctx(ctx.token, ctx.sink, ctx.execute, host=ctx.host, eager=ctx.eager,
                   known=ctx.known)
        uctx.tiny = ctx.tiny
        for prog, sel in unit.progs:
            run_prog(prog, resolve(sel, deps), uctx)
        done[key] = uctx.results
        ctx.results.update(uctx.results)
    return done


def execute_local(sig: Any, ctx: Ctx, in_place: bool = False) -> Any:
    """Run a canvas with fan-out in this process (``apply()``, and dynamic steps in it).

    ``in_place``: a fan-out of tasks known to be tiny, run on the worker that made it (see
    ``runtime.dynamic.run_canvas``); its groups run as the batches the client would send
    (one program per group, half the cost per element of a unit each).
    """
    from ..compile import compile_canvas
    cg = compile_canvas(sig, ctx.token, parallelism=1, fusion=True, batching=in_place,
                        tiny=ctx.tiny if in_place else None, batch_tags=False)
    done = run_units_local(cg.units, ctx)
    return outcome_at(cg.result, done)


def _worker_plugin() -> Any:
    """This worker's nbcanvas plugin: it knows what the client decided for this cluster
    (``batch_tags``: batches named per workflow, not on the embedded cluster, whose scheduler
    treats no task as root-ish; ``batch_interval``: 0 there, no batching delay)."""
    try:
        from distributed import get_worker
        return get_worker().plugins.get("nbcanvas")
    except (ImportError, ValueError):  # not on a worker
        return None


def execute_on_cluster(sig: Any, ctx: Ctx) -> Any:
    """Run a canvas with fan-out from inside a task: submitted by the worker's own client."""
    from distributed import worker_client
    from ..compile import compile_canvas
    from ..compile.taskspec import send_graph, to_dask_graph
    plugin = _worker_plugin()
    with worker_client() as client:
        if getattr(plugin, "batch_interval", None) == 0.0:  # the embedded cluster's streams
            client.scheduler_comm.interval = 0.0
        nthreads = sum(w.get("nthreads", 1) for w in
                       client.scheduler_info().get("workers", {}).values()) or 1
        cg = compile_canvas(sig, ctx.token, parallelism=nthreads, tiny=ctx.tiny,
                            batch_tags=bool(getattr(plugin, "batch_tags", True)))
        ctx.sink.flush()
        graph = to_dask_graph(cg)
        keys = list(cg.units)
        futures = send_graph(client, graph, keys)
        done = dict(zip(keys, client.gather(futures)))
    for res in done.values():
        ctx.results.update(res.outcomes)
    return outcome_at(cg.result, done)
