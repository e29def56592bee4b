"""``result.retry()``: run again only what did not succeed (run stage).

The canvas is compiled again with the same ids and settings, so its units match the first
run's one for one. A unit whose steps all succeeded is reused as it is (its result is still
held on the cluster); every other unit runs again under a new key, with its previous result as
an extra dependency, and the steps that succeeded there are reused, not run: a step that
succeeded runs exactly once in total. The workflow keeps its id: its live view, its state
store and every AsyncResult of it follow the new run.
"""
from __future__ import annotations

from typing import Any

from .canvas import Signature
from .compile import compile_canvas
from .compile.programs import UnitProgram
from .errors import NbcanvasError
from .handle import EagerBackend, WorkflowHandle
from .runtime.outcome import UnitResult
from .states import READY_STATES, SUCCESS

__all__ = ["retry_workflow", "plan_retry"]


def _canvas(h: WorkflowHandle) -> Signature:
    if h.canvas is not None:
        return h.canvas
    try:
        return Signature.from_dict(h.structure)
    except Exception as e:
        raise NbcanvasError(f"retry() needs the workflow's tasks registered in this process "
                            f"(import the module that defines them): {e}") from e


def plan_retry(h: WorkflowHandle, cg: Any) -> tuple[dict[str, str], list[str], list[str]]:
    """(old live key -> new key for units to run again, node ids to reset, reused keys)."""
    states = h.store.snapshot()
    by_key: dict[str, list[str]] = {}
    for node_id, row in cg.nodes.items():
        if row.key is not None and row.kind != "group":
            by_key.setdefault(row.key, []).append(node_id)
    attempt = h.attempt + 1
    rerun: dict[str, str] = {}
    reset: list[str] = []
    reused: list[str] = []
    for key in cg.units:
        ids = by_key.get(key, [])
        live = h.keymap.get(key, key)
        if ids and all(states.get(i) == SUCCESS for i in ids):
            reused.append(live)
        else:
            rerun[live] = f"{key}~{attempt}"
            reset += [i for i in ids if states.get(i) != SUCCESS]
    return rerun, reset, reused


def retry_workflow(result: Any) -> Any:
    """Re-run the failed, revoked and not-run steps of a finished workflow; return its result."""
    from .result import result_for
    h = result.handle
    if not all(h.store.state(i) in READY_STATES for i in h.store.task_ids()):
        raise NbcanvasError("retry() needs a finished workflow: wait for it (or revoke it) first")
    sig = _canvas(h)
    token = f"{h.id}~{h.attempt + 1}"
    cg = compile_canvas(sig, token, **h.compile_args)
    rerun, reset, _ = plan_retry(h, cg)
    if not rerun:
        return result  # everything succeeded: nothing to do
    if isinstance(h.backend, EagerBackend):
        _retry_eager(h, cg, rerun, reset)
    else:
        _retry_cluster(h, cg, rerun, reset, token)
    return result_for(h.id, h)


def _new_rows(h: WorkflowHandle, rerun: dict[str, str]) -> None:
    h.nodes = {i: r._replace(key=rerun[r.key]) if r.key in rerun else r
               for i, r in h.nodes.items()}


def _retry_eager(h: WorkflowHandle, cg: Any, rerun: dict[str, str], reset: list[str]) -> None:
    from .runtime import Ctx, execute_local, known_results
    from .runtime.emit import Sink
    from .runtime.interp import resolve, run_prog
    done: dict[str, Any] = h.backend._done  # type: ignore[attr-defined]
    h.store.reset(reset)
    ctx = Ctx(f"{h.id}~{h.attempt + 1}", Sink(h.store.apply), execute_local, host="eager",
              eager=True)
    for key, unit in cg.units.items():
        live = h.keymap.get(key, key)
        if live not in rerun:
            continue
        deps = tuple(done[h.keymap.get(d, d) if h.keymap.get(d, d) not in rerun
                          else rerun[h.keymap.get(d, d)]] for d in unit.deps)
        uctx = Ctx(ctx.token, ctx.sink, ctx.execute, host="eager", eager=True,
                   known=known_results(done[live]))
        for prog, sel in unit.progs:
            run_prog(prog, resolve(sel, deps), uctx)
        done[rerun[live]] = uctx.results
    _finish(h, cg, rerun)


def _finish(h: WorkflowHandle, cg: Any, rerun: dict[str, str]) -> None:
    from .compile import Lst, Ref
    _new_rows(h, rerun)
    for key in cg.units:
        live = h.keymap.get(key, key)
        if live in rerun:
            h.keymap[key] = rerun[live]

    def remap(w: Any) -> Any:
        if isinstance(w, Ref):
            return Ref(h.keymap.get(w.key, w.key), w.id)
        return Lst(tuple(remap(i) for i in w.items))
    h.result = remap(cg.result)
    h.attempt += 1


def _retry_cluster(h: WorkflowHandle, cg: Any, rerun: dict[str, str], reset: list[str],
                   token: str) -> None:
    from dask.task_spec import Task, TaskRef
    from distributed import Future

    from .compile.taskspec import send_graph
    from .runtime import run_unit
    from .submit import encode_where
    backend: Any = h.backend
    conn = backend.conn
    graph: dict[str, Any] = {}
    for key, unit in cg.units.items():
        live = h.keymap.get(key, key)
        if live not in rerun:
            continue
        deps = [rerun.get(h.keymap.get(d, d), h.keymap.get(d, d)) for d in unit.deps]
        new = rerun[live]
        prog = UnitProgram(new, tuple(unit.progs), reuse=True, tiny=cg.tiny_for(key))
        graph[new] = Task(new, run_unit, prog, token, *[TaskRef(d) for d in deps], TaskRef(live))
    h.store.reset(reset)
    old_futures = {k: backend.futures[k] for k in rerun if k in backend.futures}
    _finish(h, cg, rerun)
    conn.send({"op": "nbcanvas-retry", "wf": h.id, "token": token, "keys": rerun,
               "reset": reset, "result": encode_where(h.result)})
    keys = list(graph)
    # the reused and previous units are referenced by key: keep futures on them meanwhile
    futures = send_graph(conn.client, graph, keys)
    backend.futures.update(dict(zip(keys, futures)))
    for old, f in old_futures.items():
        backend.futures.pop(old, None)
        f.release()
    _ = (Future, UnitResult)
