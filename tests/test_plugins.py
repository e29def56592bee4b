"""nbcanvas.plugins: workflow records on the scheduler, results held until forget, revoke sets.

The record-keeping logic is tested on a bare ``NbcanvasScheduler``; what needs the scheduler
itself (records of sent workflows, who holds the results, result expiry) runs on real
LocalClusters.
"""
from __future__ import annotations

import uuid

import pytest

import nbcanvas as nc
from nbcanvas.cluster import connection
from nbcanvas.errors import ResultNotFound
from nbcanvas.plugins import HOLDER, NbcanvasScheduler, summary
from nbcanvas.runtime.emit import TOPIC
from nbcanvas.submit import _lists, structure_of
from tests.waiting import wait_until

app = nc.App("tests.test_plugins", set_as_current=False)


@app.task(name="tp.add")
def add(x, y):
    return x + y


@app.task(name="tp.inc")
def inc(x):
    return x + 1


@app.task(name="tp.tsum")
def tsum(xs):
    return sum(xs)


def record(wf: str = "wf") -> dict:
    return {"id": wf, "name": "chain: a → b", "structure": {}, "created": 1.0,
            "nodes": {"a": ["signature", "a", 0, None, "k1", []],
                      "g": ["group", "group", 1, None, None, ["b"]],
                      "b": ["signature", "b", 1, "g", "k2", []]},
            "keys": ["k1", "k2"], "result": ["r", "k2", "b"]}


def plugin_with(rec: dict) -> NbcanvasScheduler:
    p = NbcanvasScheduler()
    p.register(client="c1", record=rec)
    return p


# -- the record, without a scheduler --------------------------------------------------------


def test_register_indexes_every_node_and_waits_for_the_keys():
    p = plugin_with(record())
    rec = p.records["wf"]
    assert rec["client"] == "c1" and rec["states"] == {} and rec["dyn"] == {}
    assert p.lookup(id="wf") is rec and p.lookup(id="b") is rec and p.lookup(id="x") is None
    assert p._pending_keys == {"k1": "wf", "k2": "wf"}


def test_events_update_the_record_and_final_states_stay():
    p = plugin_with(record())
    p.log_event(TOPIC, {"wf": "wf", "ev": [
        ["S", "a", 1.0, 0, "h"], ["U", "a", 2.0, "PROGRESS", {"i": 1}],
        ["D", "a", 3.0, "SUCCESS", None], ["S", "a", 4.0, 1, "h"],
        ["R", "b", 5.0, "OSError", 1], ["N", "b:0", 6.0, "b", "inc", "signature", 0],
        ["B", "g", 7.0, "then"]]})
    rec = p.records["wf"]
    assert rec["states"]["a"] == ("SUCCESS", {"i": 1}, 1.0, 3.0, 0, None)
    assert rec["states"]["b"][0] == "RETRY" and rec["states"]["b"][5] == "OSError"
    assert rec["dyn"] == {"b:0": ["signature", "inc", 0, "b"]} and p.lookup(id="b:0") is rec
    assert rec["branches"] == {"g": "then"}


def test_a_started_and_ended_event_fills_the_row_as_its_start_and_end_would():
    p = plugin_with(record())
    p.log_event(TOPIC, {"wf": "wf", "ev": [["E", "a", 1.0, 2, "h", 3.0, "SUCCESS", None, b"x"]]})
    assert p.records["wf"]["states"]["a"] == ("SUCCESS", None, 1.0, 3.0, 2, None)


def test_state_rows_of_plain_values_are_left_alone_by_the_garbage_collector():
    """A 10k-task workflow keeps a row per task: rows the collector tracks would make it walk
    them all at every full collection, and bring the next one sooner."""
    import gc
    p = plugin_with(record())
    p.log_event(TOPIC, {"wf": "wf", "ev": [["S", "a", 1.0, 0, "h"], ["D", "a", 2.0, "SUCCESS", None],
                                            ["U", "b", 3.0, "PROGRESS", {"i": 1}]]})
    gc.collect()
    states = p.records["wf"]["states"]
    assert states["a"] == ("SUCCESS", None, 1.0, 2.0, 0, None) and not gc.is_tracked(states["a"])
    assert gc.is_tracked(states["b"])  # it holds a dict: the collector must look inside


def test_events_of_other_topics_and_workflows_are_ignored():
    p = plugin_with(record())
    p.log_event("other-topic", {"wf": "wf", "ev": [["D", "a", 1.0, "SUCCESS", None]]})
    p.log_event(TOPIC, {"wf": "unknown", "ev": [["D", "a", 1.0, "SUCCESS", None]]})
    p.log_event(TOPIC, "not a dict")
    assert p.records["wf"]["states"] == {}


def test_save_group_needs_a_known_id():
    p = plugin_with(record())
    assert p.save_group(id="g") is True and p.save_group(id="nope") is False
    assert p.groups == {"g"}


@pytest.mark.parametrize("states,revoked,expected", [
    ({}, False, ("PENDING", 0)),
    ({"a": ["STARTED", None, 1.0, None, 0, None]}, False, ("STARTED", 0)),
    ({"a": ["SUCCESS", None, 1.0, 2.0, 0, None]}, False, ("STARTED", 1)),
    ({"a": ["FAILURE", None, 1.0, 2.0, 0, "x"]}, False, ("FAILURE", 1)),
    ({"a": ["SUCCESS", None, 1.0, 2.0, 0, None], "b": ["SUCCESS", None, 1.5, 3.0, 0, None]},
     False, ("SUCCESS", 2)),
    ({"a": ["SUCCESS", None, 1.0, 2.0, 0, None]}, True, ("REVOKING", 1)),
    ({"a": ["SUCCESS", None, 1.0, 2.0, 0, None], "b": ["REVOKED", None, None, 3.0, 0, None]},
     True, ("REVOKED", 2)),
])
def test_summary(states, revoked, expected):
    rec = {**record(), "states": states, "dyn": {}}
    if revoked:
        rec["revoked"] = 5.0
    row = summary(rec)
    assert (row["state"], row["done"]) == expected and row["total"] == 2  # not the group
    assert row["id"] == "wf" and row["name"] == "chain: a → b"
    if expected[0] == "SUCCESS":
        assert (row["started"], row["finished"]) == (1.0, 3.0)


def test_summary_counts_run_time_nodes():
    rec = {**record(), "states": {"b:0": ["SUCCESS", None, 1.0, 2.0, 0, None]},
           "dyn": {"b:0": ["signature", "inc", 0, "b"], "b:all": ["group", "all", 0, "b"]}}
    row = summary(rec)
    assert (row["done"], row["total"]) == (1, 3)


# -- on the scheduler -----------------------------------------------------------------------


def on_scheduler(client, fn):
    return client.run_on_scheduler(lambda dask_scheduler: fn(dask_scheduler))


def holders(client, keys):
    def get(s):
        return {k: sorted(c.client_key for c in s.tasks[k].who_wants) if k in s.tasks else None
                for k in keys}
    return on_scheduler(client, get)


def test_the_record_of_a_sent_workflow(dask_client):
    sig = nc.chain(nc.group(add.s(1, 1), add.s(2, 2)), tsum.s(), inc.s()).freeze()
    r = sig.delay()
    r.get(timeout=60)
    conn = connection(app)
    rec = _lists(conn.rpc("nbcanvas_lookup", id=sig.id))  # msgpack made the lists tuples
    assert rec["id"] == sig.id and rec["keys"] == list(r.handle.backend.futures)
    assert structure_of(rec) == sig.to_dict(strict=False)
    assert isinstance(rec["structure"], bytes)  # one object, not a container per node
    assert set(rec["nodes"]) == set(r.handle.nodes) and rec["name"].startswith("chain: ")
    member = sig.tasks[0].tasks[1].id
    assert conn.rpc("nbcanvas_lookup", id=member)["id"] == sig.id
    assert all(rec["states"][i][0] == "SUCCESS" for i, row in rec["nodes"].items()
               if row[0] != "group")
    row = next(x for x in conn.rpc("nbcanvas_list") if x["id"] == sig.id)
    assert (row["state"], row["done"], row["total"]) == ("SUCCESS", 4, 4)
    r.forget()


def test_results_are_held_by_the_records_until_forget(dask_client):
    r = nc.group(add.s(1, 1), add.s(2, 2)).delay()
    assert r.get(timeout=60) == [2, 4]
    keys = list(r.handle.backend.futures)
    before = holders(dask_client, keys)
    assert all(HOLDER in h for h in before.values())
    for f in r.handle.backend.futures.values():  # this client lets go: the records keep them
        f.release()
    wait_until(lambda: all(h == [HOLDER] for h in holders(dask_client, keys).values()), 30,
               "only the records holding the results")  # the release travels on the stream
    states = on_scheduler(dask_client, lambda s: [s.tasks[k].state for k in keys])
    assert states == ["memory"] * len(keys)
    r.forget()
    assert connection(app).rpc("nbcanvas_lookup", id=r.id) is None
    assert all(h is None or HOLDER not in h for h in holders(dask_client, keys).values())


# -- result_expires ----------------------------------------------------------------------------

expiring = nc.App("tests.test_plugins.expiring", set_as_current=False, result_expires=1.0)


@expiring.task(name="tp.exp.add")
def exp_add(x, y):
    return x + y


@expiring.task(name="tp.exp.gated")
def gated(gate, x):
    """Runs until the test sets the dask ``Event`` named ``gate``."""
    from distributed import Event
    if not Event(gate).wait(timeout=60):
        raise TimeoutError(f"gate {gate} was never opened")
    return x


def _forgotten_here(r) -> None:
    """Wait for the scheduler's word that ``r``'s workflow expired to reach this process."""
    import threading

    from nbcanvas.events import add_listener
    h, gone = r.handle, threading.Event()
    remove = add_listener(lambda wf: gone.set() if wf == r.id and h.forgotten else None)
    try:
        assert h.forgotten or gone.wait(60), "the expiry never reached this process"
    finally:
        remove()


def _record(r):
    return connection(expiring).rpc("nbcanvas_lookup", id=r.id)


def test_a_finished_workflow_is_forgotten_result_expires_after_it_ends(dask_client):
    r = nc.chain(exp_add.s(1, 1), exp_add.s(2)).delay()
    # the record is there (its message may still be on the way: the lookup takes another
    # connection); it can go one second after the workflow ends, not before
    wait_until(lambda: _record(r) is not None, 30, "the record on the scheduler")
    keys = list(r.handle.backend.futures)
    assert r.get(timeout=60) == 4
    _forgotten_here(r)
    assert _record(r) is None
    with pytest.raises(ResultNotFound):
        r.get(timeout=5)
    with pytest.raises(ResultNotFound):
        expiring.AsyncResult(r.id).get(timeout=5)
    # no one holds its results any more: neither the records nor this client
    wait_until(lambda: not any(on_scheduler(dask_client, lambda s: [k in s.tasks for k in keys])),
               30, "the expired results leaving the scheduler")


def test_a_running_workflow_does_not_expire(dask_client):
    from distributed import Event
    expiring.result_expires = 0.2  # the scheduler looks every 0.05 s
    try:
        gate = f"tp-gate-{uuid.uuid4()}"
        r = nc.chain(gated.s(gate, 5), exp_add.s(1)).delay()
        assert r.handle.store.wait(lambda s: s.state(r.parent.id) == "STARTED", 60)
        sweeps = on_scheduler(dask_client, lambda s: s.plugins["nbcanvas"].sweeps)
        wait_until(lambda: _record(r) is None or on_scheduler(
            dask_client, lambda s: s.plugins["nbcanvas"].sweeps) >= sweeps + 10, 30,
            "ten looks at the records while the step runs")
        assert _record(r) is not None, "forgotten while it ran"
        assert not r.handle.forgotten
        Event(gate, client=dask_client).set()
        assert r.get(timeout=60) == 6
        _forgotten_here(r)
        assert _record(r) is None
    finally:
        expiring.result_expires = 1.0


def test_workflows_of_apps_without_result_expires_are_kept(dask_client):
    r = add.delay(2, 2)
    assert r.get(timeout=60) == 4
    e = nc.chain(exp_add.s(1, 1), exp_add.s(2)).delay()
    _forgotten_here(e)  # a sweep ran after the other workflow ended
    assert connection(app).rpc("nbcanvas_lookup", id=r.id) is not None
    assert r.get(timeout=5) == 4
    r.forget()


@pytest.mark.parametrize("fixture, blocks", [("dask_client", True), ("threads_client", False)])
def test_the_scheduler_says_whether_it_hands_root_ish_tasks_out_in_blocks(fixture, blocks,
                                                                          request):
    """``worker-saturation: inf`` (the session's LocalCluster) hands them out in blocks; the
    embedded cluster treats no task as root-ish. The connection names batches accordingly."""
    client = request.getfixturevalue(fixture)
    mine = nc.App(f"tests.test_plugins.{fixture}.blocks", set_as_current=False)
    mine.connect(client)
    assert connection(mine).batch_tags is blocks  # (it installs the scheduler plugin)
    assert client.sync(client.scheduler.nbcanvas_hands_out_blocks) is blocks


def _streams(dask_scheduler=None) -> dict:
    return {a: (type(s).__name__, s.interval) for a, s in dask_scheduler.stream_comms.items()}


def test_a_worker_that_joins_the_embedded_cluster_later_gets_a_stream_without_delay(
        threads_client):
    """As its first workers' (``tune``): no batching interval, written without dask's
    coroutine (``leansend``); a restarted worker joins the same way."""
    from nbcanvas import embedded
    cluster = embedded._embedded[0]
    before = set(threads_client.run_on_scheduler(_streams))
    cluster.scale(3)
    try:
        threads_client.wait_for_workers(3, timeout=60)
        streams = threads_client.run_on_scheduler(_streams)
        assert len(set(streams) - before) == 1
        assert set(streams.values()) == {("LeanSend", 0.0)}, streams
    finally:
        cluster.scale(2)
        wait_until(lambda: len(threads_client.scheduler_info()["workers"]) == 2, timeout=60)
