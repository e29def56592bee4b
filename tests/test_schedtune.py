"""nbcanvas.schedtune: what the scheduler does differently for nbcanvas's graphs and events,
on real LocalClusters."""
from __future__ import annotations

import uuid

import nbcanvas as nc
from nbcanvas.cluster import connection
from nbcanvas.runtime.emit import TOPIC
from nbcanvas.schedtune import (INLINE_UNITS, KEEP_EVENTS, _small_nbcanvas_graph,
                                inline_small_graphs)

app = nc.App("tests.test_schedtune", set_as_current=False)


@app.task(name="ts.add")
def add(x, y):
    return x + y


def _graph(n: int):
    from dask.task_spec import Task
    keys = [f"tp-{uuid.uuid4().hex[:8]}-{i}" for i in range(n)]
    return {k: Task(k, max, 1, 2) for k in keys}, keys


def _expr(n: int):
    from nbcanvas.compile.taskspec import graph_expr
    return graph_expr(*_graph(n))


def test_small_nbcanvas_graphs_are_told_by_their_name():
    from dask._expr import LLGExpr
    from dask.task_spec import Task
    assert _small_nbcanvas_graph(_expr(1))
    assert _small_nbcanvas_graph(_expr(INLINE_UNITS))
    assert not _small_nbcanvas_graph(_expr(INLINE_UNITS + 1))
    assert not _small_nbcanvas_graph(LLGExpr({"x": Task("x", max, 1, 2)}))  # not ours
    assert not _small_nbcanvas_graph(None)


def test_small_graphs_unpack_on_the_loop_and_the_rest_on_the_offload_thread(dask_client):
    from nbcanvas.compile.taskspec import send_graph

    def install(dask_scheduler):
        import threading

        import distributed.scheduler as ds
        original = ds._materialize_graph
        seen: list = []

        def recording(*a, **k):
            out = original(*a, **k)
            seen.append(("offload" if "Offload" in threading.current_thread().name else "loop",
                         len(out[0])))
            return out
        recording.original, recording.seen = original, seen
        ds._materialize_graph = recording
        return inline_small_graphs()

    def collect(dask_scheduler):
        import distributed.scheduler as ds
        rec = ds._materialize_graph
        ds._materialize_graph = rec.original
        return rec.seen

    assert dask_client.run_on_scheduler(install) is True
    try:
        assert add.delay(1, 2).get(timeout=60) == 3
        big, keys = _graph(INLINE_UNITS + 1)
        assert dask_client.gather(send_graph(dask_client, big, keys)) == [2] * len(keys)
        assert dask_client.submit(max, 3, 4, pure=False).result(timeout=60) == 4
    finally:
        seen = dask_client.run_on_scheduler(collect)
    assert seen == [("loop", 1), ("offload", INLINE_UNITS + 1), ("offload", 1)]


def test_the_scheduler_keeps_few_nbcanvas_event_messages(dask_client):
    """dask keeps the last 1,000 messages of every event topic; nbcanvas's are consumed as
    they arrive, and kept they only hold the scheduler's memory."""
    connection(nc.App(f"tests.test_plugins.{uuid.uuid4()}", client=dask_client,
                      set_as_current=False))
    kept = dask_client.run_on_scheduler(
        lambda dask_scheduler: dask_scheduler._broker._topics[TOPIC].events.maxlen)
    assert kept == KEEP_EVENTS < 1000

