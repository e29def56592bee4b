"""nbcanvas.cluster, unit level: the Connection on the session's LocalCluster.

Where workflows run (explicit client, current client, address, embedded cluster, CLI) is
tests/integration/test_cluster.py.
"""
from __future__ import annotations

import uuid

import pytest

import nbcanvas as nc
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
    assert scheduler_address(dask_client).startswith("tcp://")
