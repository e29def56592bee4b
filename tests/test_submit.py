"""nbcanvas.submit: one workflow, one submission -- what reaches dask and what is refused."""
from __future__ import annotations

import logging
import threading
import time

import pytest

import nbcanvas as nc
from nbcanvas.cluster import connection
from nbcanvas.compile import Lst, Ref, compile_canvas
from nbcanvas.events import drop_store
from nbcanvas.handle import drop_handle, find_handle
from nbcanvas.canvas.walk import title as _name_of
from nbcanvas.submit import _lists, decode_where, encode_where

pytestmark = pytest.mark.cluster
app = nc.App("tests.test_submit", set_as_current=False)


@app.task(name="tsb.add")
def add(x, y):
    return x + y


@app.task(name="tsb.inc")
def inc(x):
    return x + 1


@app.task(name="tsb.tsum")
def tsum(xs):
    return sum(xs)


@app.task(name="tsb.where", bind=True)
def where(self, *_):
    return self.request.hostname


#: an app of its own for the cluster with a GPU worker (a workflow runs where its tasks' app does)
gpu_app = nc.App("tests.test_submit.gpu", set_as_current=False)


@gpu_app.task(name="tsb.where_gpu", bind=True)
def where_gpu(self, *_):
    return self.request.hostname


@app.task(name="tsb.spin")
def spin(seconds):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


def lookup(id: str):
    return connection(app).rpc("nbcanvas_lookup", id=id)


# -- pure helpers -------------------------------------------------------------------------------


def test_where_round_trips_through_plain_lists():
    w = Lst((Ref("k1", "a"), Lst((Ref("k2", "b"),)), Ref("k1", "c")))
    enc = encode_where(w)
    assert enc == ("l", (("r", "k1", "a"), ("l", (("r", "k2", "b"),)), ("r", "k1", "c")))
    assert decode_where(enc) == w
    assert decode_where(_lists(enc)) == w  # as it comes back over msgpack


def test_lists_undoes_msgpack_tuples():
    assert _lists({"a": (1, (2, {"b": (3,)}))}) == {"a": [1, [2, {"b": [3]}]]}


def test_name_of_a_workflow():
    assert _name_of(add.s(1, 1)) == "add"
    assert _name_of(nc.chain(add.s(1, 1), inc.s(), inc.s(), tsum.s())) == \
        "chain: add → inc → tsum"
    assert _name_of(nc.chain(add.s(1, 1), inc.s(), tsum.s(), where.s(), spin.s())) == \
        "chain: add → inc → tsum"  # the first three names
    assert _name_of(nc.chord([add.s(1, 1), inc.s(1)], tsum.s())) == "chord: add → inc → tsum"


# -- one submission ---------------------------------------------------------------------------


def test_a_workflow_is_one_graph_with_a_future_per_unit(dask_client):
    sig = nc.chain(add.s(1, 1), nc.group(inc.s(), inc.s()), tsum.s(), inc.s()).freeze()
    r = sig.delay()
    h = r.handle
    assert find_handle(sig.id) is h and r.id == sig.id
    cg = compile_canvas(sig, sig.id, **{k: v for k, v in h.compile_args.items()})
    assert list(h.backend.futures) == list(cg.units)
    assert r.get(timeout=60) == 7
    assert h.store.get(sig.id).inline is not None  # the small result rode in its event
    r.forget()


def test_reattach_rebuilds_the_handle_from_the_scheduler(dask_client):
    sig = nc.chain(add.s(1, 1), nc.group(inc.s(), inc.s()), tsum.s()).freeze()
    r = sig.delay()
    assert r.get(timeout=60) == 6
    old = r.handle
    drop_handle(old)
    drop_store(sig.id)
    again = nc.AsyncResult(sig.id, app=app)
    assert again.get(timeout=60) == 6
    h = again.handle
    assert h is not old and h.nodes == old.nodes and h.result == old.result
    assert h.structure == old.structure == sig.to_dict(strict=False)  # from the record's bytes
    assert h.store.state(sig.tasks[1].tasks[0].id) == "SUCCESS"
    assert nc.AsyncResult(sig.tasks[0].id, app=app).get(timeout=60) == 2
    again.forget()


def test_the_garbage_collector_waits_until_a_workflow_is_sent(dask_client):
    """A large delay() makes tens of thousands of long-lived objects: collecting meanwhile
    walks them while they are young, again and again (about 40 times for a 10k group)."""
    import gc
    import threading
    sig = nc.group(add.s(i, i) for i in range(3000))
    add.delay(1, 1).get(timeout=60)  # connected, nothing left to start
    seen: list[int] = []
    me = threading.get_ident()

    def note(phase: str, info: dict) -> None:
        # this thread's: the client's event loop thread works on the graph meanwhile, and
        # collects when its own allocations call for it once the pause is over
        if phase == "start" and threading.get_ident() == me:
            seen.append(info["generation"])
    gc.callbacks.append(note)
    try:
        r = sig.delay()
    finally:
        gc.callbacks.remove(note)
    # what is left: the one collection deferred to the end of the call (where the kernel's
    # loop thread or this one allocates next; of whichever generation is due then); without
    # the wait, 3000 members take more than ten
    assert gc.isenabled() and len(seen) <= 2, seen
    assert r.get(timeout=60)[-1] == 5998
    r.forget()


def test_a_saved_group_is_known_to_the_scheduler(dask_client):
    g = nc.group(add.s(1, 1), add.s(2, 2)).delay()
    g.get(timeout=60)
    g.save()
    saved = dask_client.run_on_scheduler(
        lambda dask_scheduler, id=g.id: id in dask_scheduler.plugins["nbcanvas"].groups)
    assert saved
    g.forget()


# -- refused before anything runs -------------------------------------------------------------


@pytest.mark.parametrize("make,named", [
    (lambda lock: add.s(lock, 1), "argument 0"),
    (lambda lock: add.s(1, y=lock), "argument 'y'"),
    (lambda lock: nc.group(add.s(i, lock) for i in range(100)), "argument 1"),
    (lambda lock: inc.map([1, lock]), "argument item 1"),
], ids=["positional", "keyword", "batched", "map"])
def test_an_unpicklable_argument_is_named_with_its_task(dask_client, make, named):
    sig = make(threading.Lock()).freeze()
    with pytest.raises(TypeError, match=rf"task '(add|inc)': {named} \(lock"):
        sig.delay()
    assert lookup(sig.id) is None  # nothing left on the scheduler


@pytest.mark.parametrize("option", [{"queue": "nowhere"}, {"resources": {"TPU": 1}}])
def test_a_resource_no_worker_has_is_refused(dask_client, option):
    sig = inc.s(1).set(**option).freeze()
    with pytest.raises(nc.ImproperlyConfigured, match=r"no worker has.*--resources"):
        sig.delay()
    assert lookup(sig.id) is None


def test_a_resource_no_worker_has_is_refused_inside_a_chain(dask_client):
    sig = nc.chain(inc.s(1), inc.s().set(queue="nowhere")).freeze()
    try:
        with pytest.raises(nc.ImproperlyConfigured):
            sig.delay()
    finally:
        h = find_handle(sig.id)
        if h is not None:
            h.forget()


# -- routing options reach dask ---------------------------------------------------------------


def test_workers_option_runs_on_that_worker(dask_client):
    addrs = sorted(dask_client.scheduler_info()["workers"])
    assert len(addrs) == 2
    for addr in addrs:
        r = nc.group(where.s(i).set(workers=[addr]) for i in range(6)).delay()
        assert r.get(timeout=60) == [addr] * 6
        r.forget()


def test_units_are_sent_in_dependency_order_as_their_priority(dask_client):
    sig = nc.chain(add.s(1, 1), nc.group(inc.s(), nc.chain(inc.s(), inc.s())), tsum.s(),
                   nc.group(inc.s(), inc.s()), tsum.s()).freeze()
    cg = compile_canvas(sig, sig.id, parallelism=2, fusion=False, batching=False)
    order = list(cg.units)
    for i, unit in enumerate(cg.units.values()):
        assert all(order.index(d) < i for d in unit.deps), (unit.key, unit.deps)
    app.fusion, app.batching = False, False  # one unit per step: many units to order
    try:
        r = sig.delay()
    finally:
        app.fusion, app.batching = True, True
    assert r.get(timeout=60) == 16  # 2; [3, 4]; 7; [8, 8]; 16
    keys = list(r.handle.backend.futures)
    assert len(keys) > 5
    prios = dask_client.run_on_scheduler(
        lambda dask_scheduler, keys=keys: [dask_scheduler.tasks[k].priority[-1] for k in keys])
    assert prios == list(range(len(keys)))  # given, not computed by dask.order
    r.forget()


def test_priority_reaches_the_scheduler(dask_client):
    high = add.s(1, 1).set(priority=5).delay()
    plain = add.s(1, 1).delay()
    high.get(timeout=60), plain.get(timeout=60)
    keys = [high.handle.result.key, plain.handle.result.key]
    prios = dask_client.run_on_scheduler(
        lambda dask_scheduler, keys=keys: [dask_scheduler.tasks[k].priority[0] for k in keys])
    assert prios == [-5, 0]  # dask keeps -priority first: higher runs first
    high.forget()
    plain.forget()


def test_a_time_limit_interrupts_a_busy_step_on_the_cluster(dask_client):
    r = spin.s(60).set(time_limit=0.5).delay()
    with pytest.raises(nc.TimeLimitExceeded):
        r.get(timeout=60)
    assert r.state == "FAILURE"
    r.forget()


@pytest.mark.slow
def test_resources_run_only_where_they_exist():
    from distributed import Client, LocalCluster
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster, \
            Client(cluster, set_as_default=False) as client:
        plain = set(client.scheduler_info()["workers"])
        spec = cluster.new_spec
        cluster.new_spec = {**spec, "options": {**spec["options"], "resources": {"GPU": 1}}}
        cluster.scale(2)
        client.wait_for_workers(2, timeout=60)
        (gpu,) = set(client.scheduler_info()["workers"]) - plain
        gpu_app.connect(client)
        try:
            assert connection(gpu_app).worker_resources() == {"GPU"}
            for option in ({"resources": {"GPU": 1}}, {"queue": "GPU"}):
                sig = nc.group(where_gpu.s(i).set(**option) for i in range(8))
                assert sig.delay().get(timeout=60) == [gpu] * 8
        finally:
            gpu_app._target = gpu_app._runtime = None


# -- batch names on the embedded cluster and elsewhere ------------------------------------------


def _batch_groups(client, name: str) -> set[str]:
    return set(client.run_on_scheduler(
        lambda dask_scheduler, name=name: [g for g in dask_scheduler.task_groups if name in g]))


def test_kept_batched_workflows_share_one_task_group_on_the_embedded_cluster(threads_client):
    """The embedded cluster treats no task as root-ish, so batches need no per-workflow names:
    kept workflows add no task group or prefix for the scheduler and the workers to walk on
    every graph and transition, and a new group's batches still spread over both workers."""
    from tests.integration.controltasks import slow
    mine = nc.App("tests.test_submit.embedded-batches", set_as_current=False)
    mine.connect(threads_client)
    task = mine.task(slow.run, name="tsub.nap")  # x + 1 after 2 ms: the batches take time
    kept = [nc.group(task.s(i, 0.002) for i in range(800)).delay() for _ in range(5)]
    try:
        for r in kept:
            assert r.get(timeout=60) == list(range(1, 801))
            assert _batch_groups(threads_client, "nap_batch") == {"nap_batch"}  # (short name)
        last = kept[-1].handle.backend.futures
        assert len(last) == 8
        who = threads_client.who_has(list(last.values()))
        per_worker = sorted(sum(1 for ws in who.values() if w in ws)
                            for w in threads_client.scheduler_info()["workers"])
        assert len(per_worker) == 2 and min(per_worker) >= 3, per_worker
    finally:
        for r in kept:
            r.forget()


def test_kept_batched_workflows_share_one_task_group_on_a_queuing_users_cluster():
    """With dask's default ``worker-saturation`` (1.1: root-ish tasks queue on the scheduler
    and go one by one to the least busy worker) a user's cluster needs no per-workflow batch
    names either: kept workflows add no task group, and the batches still spread."""
    from distributed import Client, LocalCluster

    from tests.integration.controltasks import slow
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, \
            Client(cluster, set_as_default=False) as client:
        mine = nc.App("tests.test_submit.queuing-batches", client=client, set_as_current=False)
        assert connection(mine).batch_tags is False
        task = mine.task(slow.run, name="tsub.queued_nap")  # x + 1 after 2 ms
        kept = [nc.group(task.s(i, 0.002) for i in range(800)).delay() for _ in range(3)]
        for r in kept:
            assert r.get(timeout=60) == list(range(1, 801))
        assert _batch_groups(client, "queued_nap_batch") == {"queued_nap_batch"}
        last = kept[-1].handle.backend.futures
        who = client.who_has(list(last.values()))
        per_worker = sorted(sum(1 for ws in who.values() if w in ws)
                            for w in client.scheduler_info()["workers"])
        assert len(last) == 8 and min(per_worker) >= 3, per_worker


def test_batches_are_named_per_workflow_on_a_users_cluster(dask_client):
    """A user's scheduler with queuing off (``worker-saturation: inf``, as this one) hands
    root-ish tasks out in blocks by name: its batches keep per-workflow names, or one worker
    would get most of a group's batches."""
    mine = nc.App("tests.test_submit.user-batches", client=dask_client, set_as_current=False)
    assert connection(mine).batch_tags is True
    task = mine.task(lambda x: x + 1, name="tsub.tagged_inc")  # sent by value
    rs = [nc.group(task.s(i) for i in range(100)).delay() for _ in range(2)]
    try:
        assert [r.get(timeout=60) for r in rs] == [[i + 1 for i in range(100)]] * 2
        groups = _batch_groups(dask_client, "_batch")
        ours = {g for g in groups if g.startswith("tagged_inc_batch")}
        assert len(ours) == 2 and all(g.startswith("tagged_inc_batch.") for g in ours), groups
    finally:
        for r in rs:
            r.forget()
