"""nbcanvas.cluster, unit level: the Connection on the session's LocalCluster.

Where workflows run (explicit client, current client, address, embedded cluster, CLI) is
tests/integration/test_cluster.py.
"""
from __future__ import annotations

import uuid

import pytest

import nbcanvas as nc
from tests.conftest import cluster_comm
from nbcanvas.cluster import Connection, _for_client, connection, scheduler_address
from nbcanvas.events import drop_store, register_store
from nbcanvas.runtime.emit import TOPIC
from nbcanvas.store import StateStore

pytestmark = pytest.mark.cluster


def conn_of(client) -> Connection:
    return connection(nc.App(f"tests.test_cluster_unit.{uuid.uuid4()}", client=client,
                             set_as_current=False))


def test_one_connection_per_client(dask_client):
    a, b = conn_of(dask_client), conn_of(dask_client)
    assert a is b is _for_client(dask_client) and a.client is dask_client
    app = nc.App("tests.test_cluster_unit.cached", client=dask_client, set_as_current=False)
    assert connection(app) is connection(app) is a


def test_the_plugins_are_installed_on_the_scheduler_and_every_worker(dask_client):
    conn_of(dask_client)

    def on_scheduler(dask_scheduler):
        return ("nbcanvas" in dask_scheduler.plugins,
                {"nbcanvas_lookup", "nbcanvas_revoke", "nbcanvas_forget", "nbcanvas_list"}
                <= set(dask_scheduler.handlers),
                "nbcanvas-register" in dask_scheduler.stream_handlers)

    def on_worker(dask_worker):
        return "nbcanvas" in dask_worker.plugins and "nbcanvas_revoke" in dask_worker.handlers

    assert dask_client.run_on_scheduler(on_scheduler) == (True, True, True)
    assert set(dask_client.run(on_worker).values()) == {True}


def test_events_logged_on_a_worker_reach_the_store(dask_client):
    conn_of(dask_client)
    wf = f"wf-{uuid.uuid4()}"
    store = register_store(StateStore(wf, {"a": ("signature", "t", 0, None)}))
    try:
        worker = sorted(dask_client.scheduler_info()["workers"])[0]

        def emit(dask_worker, wf=wf):
            dask_worker.log_event(TOPIC, {"wf": wf, "ev": [["S", "a", 1.0, 0, "w"],
                                                           ["D", "a", 2.0, "SUCCESS", None]]})

        dask_client.run(emit, workers=[worker])
        assert store.wait(lambda s: s.state("a") == "SUCCESS", timeout=30)
        assert store.get("a").host == "w"
    finally:
        drop_store(wf)


def test_nthreads_counts_every_worker_thread(dask_client):
    assert conn_of(dask_client).nthreads == 2  # two worker processes, one thread each


def asked_for_workers(client) -> int:
    """Identity requests with per-worker rows (the periodic refresh asks for none)."""
    return client.run_on_scheduler(
        lambda dask_scheduler: sum(n != 0 for n in dask_scheduler._nc_identity))


def test_nthreads_needs_no_round_trip(dask_client):
    conn = conn_of(dask_client)

    def install(dask_scheduler):
        original = dask_scheduler.handlers["identity"]
        dask_scheduler._nc_identity = []

        def counted(*args, **kwargs):
            dask_scheduler._nc_identity.append(kwargs.get("n_workers"))
            return original(*args, **kwargs)
        counted._nc_original = original
        dask_scheduler.handlers["identity"] = counted

    def restore(dask_scheduler):
        h = dask_scheduler.handlers["identity"]
        dask_scheduler.handlers["identity"] = getattr(h, "_nc_original", h)

    dask_client.run_on_scheduler(install)
    try:
        dask_client.sync(dask_client._update_scheduler_info)  # what the periodic refresh does
        assert not dask_client._scheduler_identity.get("workers")
        assert [conn.nthreads for _ in range(3)] == [2, 2, 2]
        assert asked_for_workers(dask_client) == 0
    finally:
        dask_client.run_on_scheduler(restore)


def test_worker_resources_of_a_plain_cluster(dask_client):
    assert conn_of(dask_client).worker_resources() == set()


def test_rpc_calls_the_scheduler_plugin(dask_client):
    conn = conn_of(dask_client)
    assert conn.rpc("nbcanvas_lookup", id=f"nope-{uuid.uuid4()}") is None
    assert isinstance(conn.rpc("nbcanvas_list"), (list, tuple))


def test_address_is_what_other_processes_reach(dask_client):
    assert conn_of(dask_client).address == dask_client.scheduler.address
    scheme = cluster_comm().get("protocol", "tcp://")  # NBCANVAS_TEST_COMM: nbtcp://
    assert scheduler_address(dask_client).startswith(scheme)


# -- a workflow's messages reach the client's loop together ------------------------------------

@pytest.mark.parametrize("fixture", ["dask_client", "threads_client"])
def test_a_workflows_record_and_graph_reach_the_scheduler_in_one_write(fixture, request):
    """One hand-off to the client's loop per workflow: its record and its graph leave in the
    same write (with no batching delay on the stream, as on the embedded cluster, they left in
    two when each woke the loop on its own)."""
    client = request.getfixturevalue(fixture)
    app = nc.App(f"tests.test_cluster_unit.{fixture}.together", client=client,
                 set_as_current=False)
    one = app.task(lambda x: x + 1, name="tcu.together.inc")
    assert one.delay(0).get(timeout=60) == 1 and connection(app).holds
    stream = client.scheduler_comm
    comm, interval, writes = stream.comm, stream.interval, []
    write = comm.write

    async def write_and_note(msgs, *args, **kwargs):
        writes.append([m.get("op") for m in msgs])
        return await write(msgs, *args, **kwargs)
    stream.interval, comm.write = 0.0, write_and_note
    comm.write_now = lambda *a, **k: None  # a lean stream then writes through comm.write
    try:
        results = []
        for i in range(20):
            results.append(one.delay(i))
            assert results[-1].get(timeout=60) == i + 1
    finally:
        stream.interval = interval
        del comm.write, comm.write_now
    ops = [op for w in writes for op in w]
    assert ops.count("nbcanvas-register") == ops.count("update-graph") == 20
    for w in writes:
        for i, op in enumerate(w):
            if op == "nbcanvas-register":
                assert w[i + 1:i + 2] == ["update-graph"], writes
    for r in results:
        r.forget()


def test_together_sends_nothing_if_the_block_raises_and_passes_other_threads_on(dask_client):
    """Held messages are dropped when the block raises (nothing of it reached the scheduler);
    another thread's messages are not held. Records stand for messages: the scheduler keeps
    what arrives, and the stream is ordered, so once a later record arrived, an earlier one
    sent on it has too."""
    import threading

    from distributed.protocol import ToPickle

    from .waiting import wait_until
    conn = conn_of(dask_client)
    assert conn.holds
    never, other, later = (f"tcu-together-{n}-{uuid.uuid4()}" for n in ("never", "other", "later"))

    def register(wf: str) -> None:
        conn.send({"op": "nbcanvas-register",
                   "record": ToPickle({"id": wf, "nodes": {}, "keys": []})})

    def known(wf: str) -> bool:
        return conn.rpc("nbcanvas_lookup", id=wf) is not None
    sender = threading.Thread(target=register, args=(other,))
    try:
        with pytest.raises(RuntimeError, match="in the block"):
            with conn.together():
                register(never)
                sender.start()
                sender.join()
                wait_until(lambda: known(other), 30, "another thread's message was held")
                raise RuntimeError("in the block")
        register(later)
        wait_until(lambda: known(later), 30, "a message after the block never arrived")
        assert not known(never)
    finally:
        for wf in (never, other, later):
            conn.rpc("nbcanvas_forget", wf=wf)
