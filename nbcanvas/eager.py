"""``sig.apply()``: the same compiled units and runtime, run in this process with no cluster.

This is the executable specification the dask engine must match.
"""
from __future__ import annotations

from typing import Any

from .canvas import Signature
from .canvas.walk import title
from .compile import compile_canvas
from .events import drop_store, register_store
from .handle import EagerBackend, WorkflowHandle, register_handle, supersede
from .runtime import Ctx, execute_local, run_units_local
from .runtime.emit import Sink
from .store import StateStore

__all__ = ["run_eager", "node_rows"]


def node_rows(cg: Any) -> dict[str, tuple]:
    """The node table as tuples: id -> (kind, name, step, parent, key, members)."""
    return cg.nodes


def run_eager(sig: Signature) -> Any:
    """Run a frozen canvas here; returns an AsyncResult/GroupResult that is already ready."""
    from .result import result_for
    wf = sig.id
    supersede(wf)
    cg = compile_canvas(sig, wf, parallelism=1, fusion=True, batching=False)
    rows = node_rows(cg)
    drop_store(wf)  # running a frozen canvas again starts afresh: no stale final states
    store = register_store(StateStore(wf, {i: r[:4] for i, r in rows.items()}))
    ctx = Ctx(wf, Sink(store.apply), execute_local, host="eager", eager=True)
    done = run_units_local(cg.units, ctx)
    handle = register_handle(WorkflowHandle(wf, rows, cg.result, store, EagerBackend(done),
                                            canvas=sig, app=_app_of(sig), name=title(sig)))
    return result_for(wf, handle)


def _app_of(sig: Signature) -> Any:
    from .canvas import iter_nodes
    for node in iter_nodes(sig):
        if node._type is not None:
            return node._type.app
    from .app import current_app
    return current_app()
