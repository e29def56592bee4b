"""Cluster runners: the same semantic tests on a real LocalCluster (2 worker processes).

"cluster": fusion and batching on (the default); "cluster-plain": both off; "cluster-tiny":
as "cluster" with every task of the canvas known to be tiny (small groups go in one unit, and
fan-outs made at run time run in place, inside the unit that makes them); "threads":
nbcanvas's embedded cluster with its workers in this process (``nbcanvas.embedded.pool:
threads``). They wait until the workflow is over before the test looks. "cluster-async"
returns at once (on request).
"""
from __future__ import annotations

from typing import Any

from .conftest import register


def _finished(result: Any, timeout: float = 60.0) -> Any:
    """Wait until the workflow is over (callbacks too), so tests see final states as with
    ``apply()``; tests of the asynchronous behaviour itself live elsewhere."""
    result.get(timeout=timeout, propagate=False)
    store = result.handle.store
    if not store.wait(lambda s: s.finished(), timeout):
        raise TimeoutError(f"workflow did not finish: {dict(store.counts())}")
    return result


def _cluster(canvas: Any, **kw: Any) -> Any:
    return _finished(canvas.apply_async(**kw))


def _plain(canvas: Any, **kw: Any) -> Any:
    from nbcanvas.eager import _app_of
    app = _app_of(canvas)
    saved = (app.fusion, app.batching)
    app.fusion = app.batching = False
    try:
        result = canvas.apply_async(**kw)
    finally:
        app.fusion, app.batching = saved
    return _finished(result)


def _task_names(canvas: Any) -> set[str]:
    """Every task name in ``canvas``, the bodies of ``foreach`` and the callbacks included."""
    names, stack = set(), [canvas]
    while stack:
        node = stack.pop()
        if node.kind == "signature":
            names.add(node.name)
        stack.extend((*node.children(), *node.links, *node.errbacks))
    return names


def _tiny(canvas: Any, **kw: Any) -> Any:
    from nbcanvas import store
    saved = dict(store.DURATIONS)
    store.DURATIONS.update({name: 1e-6 for name in _task_names(canvas)})
    try:
        return _finished(canvas.apply_async(**kw))
    finally:  # what the run taught the client goes too: the next test starts as this one did
        store.DURATIONS.clear()
        store.DURATIONS.update(saved)


def _threads(canvas: Any, **kw: Any) -> Any:
    from nbcanvas import embedded
    from nbcanvas.eager import _app_of
    app = _app_of(canvas)
    saved = (app._target, app._runtime)
    app.connect(embedded.start())
    try:
        result = canvas.apply_async(**kw)
    finally:
        app._target, app._runtime = saved
    return _finished(result)


register("cluster", _cluster, needs=("dask_client",))
# Returns at once, as delay() does: for tests of what happens while a workflow runs.
register("cluster-async", lambda canvas, **kw: canvas.apply_async(**kw), needs=("dask_client",),
         default=False)
register("cluster-plain", _plain, needs=("dask_client",))
register("cluster-tiny", _tiny, needs=("dask_client",))
register("threads", _threads, needs=("threads_client",))
