"""nbcanvas.workerplugin: revoke on every worker (late joiners too), and a unit's last events
in the same write as its result. On real LocalClusters (processes) and the embedded threads pool.
"""
from __future__ import annotations

import logging
import uuid

import pytest

import nbcanvas as nc
from nbcanvas.cluster import connection
from nbcanvas.runtime.emit import TOPIC


def test_a_worker_that_joins_later_learns_what_is_revoked():
    from distributed import Client, LocalCluster
    token = f"wf-{uuid.uuid4()}"
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster, \
            Client(cluster, set_as_default=False) as client:
        conn = connection(nc.App("tests.test_workerplugin.late", client=client, set_as_current=False))
        assert conn.rpc("nbcanvas_revoke", wf=token) == 1  # one worker acknowledged
        assert token in conn.rpc("nbcanvas_revoked")
        first = set(client.scheduler_info()["workers"])
        cluster.scale(2)
        client.wait_for_workers(2, timeout=60)
        (late,) = set(client.scheduler_info()["workers"]) - first

        def knows(token=token):
            from nbcanvas.runtime.interp import REVOKED
            return token in REVOKED

        assert client.run(knows, workers=[late]) == {late: True}


# -- a unit's last events leave with its result --------------------------------------------

def _spy_on_writes(dask_worker) -> None:
    """Note what each write of the worker's stream to the scheduler carries, send at once
    (as the embedded cluster does), and give the worker an event sink whose background thread
    never sends: every event then leaves either with a unit's result or when a unit returns."""
    from nbcanvas import runtime
    from nbcanvas.runtime.emit import WorkerSink
    stream = dask_worker.batched_stream
    old = runtime._sinks.pop(dask_worker, None)
    quiet = runtime._worker_sink(dask_worker)
    runtime._sinks[dask_worker] = WorkerSink(quiet._deliver, interval=3600)
    dask_worker._nbcanvas_spied = (stream.interval, old)
    stream.interval, writes, comm = 0.0, [], stream.comm
    write = comm.write

    async def write_and_note(msgs, *args, **kwargs):
        writes.append([(m.get("op"), m.get("topic") or m.get("key")) for m in msgs])
        return await write(msgs, *args, **kwargs)
    comm.write, comm.nbcanvas_writes = write_and_note, writes
    comm.write_now = lambda *a, **k: None  # a lean stream then writes through comm.write


def _writes_and_restore(dask_worker) -> list:
    from nbcanvas import runtime
    stream, comm = dask_worker.batched_stream, dask_worker.batched_stream.comm
    stream.interval, old = dask_worker._nbcanvas_spied
    runtime._sinks.pop(dask_worker, None)
    if old is not None:
        runtime._sinks[dask_worker] = old
    del comm.write, comm.write_now
    dask_worker._nbcanvas_releases = True
    return comm.nbcanvas_writes


@pytest.mark.parametrize("fixture", ["dask_client", "threads_client"])
def test_a_units_last_events_reach_the_scheduler_in_the_same_write_as_its_result(fixture,
                                                                                  request):
    """One write (one wake-up of the scheduler) per task, not two; the events first, so the
    client sees a step's final state before the unit's result. A worker without the plugin's
    flag sends them when the unit returns, as before."""
    client = request.getfixturevalue(fixture)
    mine = nc.App(f"tests.test_workerplugin.{fixture}.writes", set_as_current=False)
    mine.connect(client)
    one = mine.task(lambda x: x + 1, name="tp.writes.inc")
    client.run(_spy_on_writes)
    try:
        results = [one.delay(i) for i in range(4)]
        assert [r.get(timeout=60) for r in results] == [1, 2, 3, 4]
        client.run(lambda dask_worker: setattr(dask_worker, "_nbcanvas_releases", False))
        late = one.delay(10)
        assert late.get(timeout=60) == 11  # the thread never sends: the unit flushed
        assert late.handle.store.get(late.id).state == "SUCCESS"
    finally:
        writes = [w for ws in client.run(_writes_and_restore).values() for w in ws]
    ours = [w for w in writes if (("log-event", TOPIC) in w)]
    keys = {k for r in results for k in r.handle.backend.futures}
    with_result = [w for w in ours if any(op == "task-finished" and k in keys for op, k in w)]
    assert len(with_result) == 4, writes
    for w in with_result:
        assert w.index(("log-event", TOPIC)) < min(i for i, (op, _) in enumerate(w)
                                                    if op == "task-finished")
    for r in [*results, late]:
        r.forget()


def test_held_events_wait_for_a_task_that_stops_running_not_for_any_transition(threads_client):
    """A unit returned and its events are held; a task arriving on the worker meanwhile
    (released -> waiting -> ready) does not send them (they would then leave in a write of
    their own, before the unit's result in another); a task leaving executing does."""
    def check(dask_worker) -> list:
        from nbcanvas import runtime
        from nbcanvas.runtime.emit import WorkerSink
        plugin, old = dask_worker.plugins["nbcanvas"], runtime._sinks.pop(dask_worker, None)
        sent: list = []
        sink = runtime._sinks[dask_worker] = WorkerSink(sent.append, interval=3600)
        try:
            sink.emit("wf", ["E", "step", 1.0, "h", 0, 2.0])
            sink.hold()
            seen = []
            for start, finish in [("released", "waiting"), ("waiting", "ready"),
                                  ("ready", "executing"), ("executing", "memory")]:
                plugin.transition("tp-held-x", start, finish)
                seen.append((finish, len(sent), sink.held))
            sink.emit("wf", ["E", "step2", 1.0, "h", 0, 2.0])
            sink.hold()
            plugin.transition("tp-held-y", "cancelled", "released")
            seen.append(("released", len(sent), sink.held))
            return seen
        finally:
            runtime._sinks.pop(dask_worker, None)
            if old is not None:
                runtime._sinks[dask_worker] = old
    for seen in threads_client.run(check).values():
        assert seen == [("waiting", 0, True), ("ready", 0, True), ("executing", 0, True),
                        ("memory", 1, False), ("released", 2, False)]
