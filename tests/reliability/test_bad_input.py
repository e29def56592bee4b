"""Bad input, one row each (issue 12: 3): a clear error at the earliest point, nothing lost.

Each case says where its error comes: at *build* time (making the signature), at *send* time
(``delay()``, before anything reaches the cluster), or at *run* time (a step's failure, which
flows like any other). After every case the suite checks that nothing was lost: the task
registry is as it was, no workflow record was left behind, and a new workflow still runs.

Decided: a task returning an unpicklable value *fails that step* on a cluster (``TypeError``
naming the task: its result must leave the worker), and *just works* with ``apply()``, which
runs in this process and pickles nothing.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable

import pytest

import nbcanvas as nc
import nbcanvas.cluster
from nbcanvas.cluster import connection
from nbcanvas.errors import ResultNotFound

from .conftest import ROOT, chain_states, settle
from . import rtasks
from .rtasks import Boom, records, rel

pytestmark = pytest.mark.cluster

CASES: dict[str, Callable[..., None]] = {}
SLOW = {"100k-group"}


def case(name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def register(fn: Callable[..., None]) -> Callable[..., None]:
        CASES[name] = fn
        return fn
    return register


def _records_on_scheduler() -> set[str]:
    return {w["id"] for w in connection(rel.app).rpc("nbcanvas_list")}


# -- build time --------------------------------------------------------------------------------
@case("wrong-arity-positional")
def _(tmp_path):
    with pytest.raises(TypeError, match=r"takes 2 positional arguments but 3 were given.*"
                                        r"\[task 'rel.add'\]"):
        rel.add.s(1, 2, 3)


@case("wrong-arity-keyword")
def _(tmp_path):
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'z'.*\[task 'rel.add'\]"):
        rel.add.s(1, z=3)


@case("wrong-arity-at-send")  # a partial completed at delay(): checked before connecting
def _(tmp_path):
    before = _records_on_scheduler()
    with pytest.raises(TypeError, match=r"3 were given.*\[task 'rel.add'\]"):
        rel.add.s(1).delay(2, 3)
    assert _records_on_scheduler() == before


@case("unknown-task-name-suggests")
def _(tmp_path):
    with pytest.raises(nc.NotRegistered, match=r"no task named 'rel.ad'; did you mean 'rel.add'"):
        nc.signature("rel.ad", args=(1, 2))
    with pytest.raises(KeyError):  # a plain `except KeyError` keeps working
        nc.signature("rel.ad", args=(1, 2))


@case("ambiguous-short-name")
def _(tmp_path):
    a = nc.App("amb-one", set_as_current=False)
    b = nc.App("amb-two", set_as_current=False)
    a.task(rtasks.add, name="amb1.twin_name")
    b.task(rtasks.add, name="amb2.twin_name")
    with pytest.raises(nc.NotRegistered, match=r"'twin_name' is ambiguous.*'amb1.twin_name'.*"
                                               r"'amb2.twin_name'.*use the full name"):
        nc.signature("twin_name", args=(1, 2))
    assert nc.signature("amb1.twin_name", args=(1, 2)).apply().get() == 3
    a.tasks.clear()
    b.tasks.clear()


@case("meaningless-option-acks_late")
def _(tmp_path):
    pattern = r"'acks_late' means nothing here.*re-run by dask"
    with pytest.raises(nc.ImproperlyConfigured, match=pattern):
        rel.add.s(1, 2).set(acks_late=True)
    with pytest.raises(nc.ImproperlyConfigured, match=pattern):
        rel.add.signature((1, 2), acks_late=True)
    with pytest.raises(nc.ImproperlyConfigured, match=pattern):
        nc.App("acks", set_as_current=False).task(rtasks.add, name="acks.add", acks_late=True)
    with pytest.raises(ValueError):  # ImproperlyConfigured is a ValueError
        rel.add.s(1, 2).apply_async(acks_late=True)


@case("misspelt-option-suggests")
def _(tmp_path):
    with pytest.raises(nc.ImproperlyConfigured, match=r"'max_retires'; did you mean 'max_retries'"):
        rel.add.s(1, 2).set(max_retires=3)


@case("queue-no-worker-has")  # send time: refused before the graph is sent
def _(tmp_path):
    before = _records_on_scheduler()
    with pytest.raises(nc.ImproperlyConfigured, match=r"no worker has the resource\(s\) 'gpu'"):
        rel.add.s(1, 2).set(queue="gpu").delay()
    assert _records_on_scheduler() == before


@case("non-signature-in-group")
def _(tmp_path):
    with pytest.raises(TypeError, match=r"group\(\) member 1 is not a signature: 5"):
        nc.group(rel.add.s(1, 2), 5)
    with pytest.raises(TypeError, match=r"group\(\) member 1 is not a signature"):
        nc.group(rel.add.s(1, 2), lambda: 1)
    with pytest.raises(TypeError, match=r"chain\(\) member 1 is not a signature: 'x'"):
        nc.chain(rel.add.s(1, 2), "x")
    with pytest.raises(TypeError, match=r"chord body is not a signature: 5"):
        nc.chord([rel.add.s(1, 2)], 5)


# -- send time: unpicklable arguments ------------------------------------------------------------
def _unsendable(make: Callable[[threading.Lock], object], pattern: str) -> None:
    before = _records_on_scheduler()
    with pytest.raises(TypeError, match=pattern):
        make(threading.Lock()).delay()
    assert _records_on_scheduler() == before, "a refused workflow left a record"


@case("unpicklable-argument")
def _(tmp_path):
    _unsendable(lambda lock: rel.identity.s(lock),
                r"task 'identity': argument 0 \(lock: .*\) cannot be sent to the cluster: "
                r"TypeError: cannot pickle '_thread.lock' object")


@case("unpicklable-keyword-argument")
def _(tmp_path):
    _unsendable(lambda lock: rel.record.s(1, tag=lock),
                r"task 'record': argument 'tag' \(lock")


@case("unpicklable-argument-in-batched-group")
def _(tmp_path):
    _unsendable(lambda lock: nc.group([rel.identity.s(i) for i in range(50)] +
                                      [rel.identity.s(lock)]),
                r"task 'identity': argument 0 \(lock")


@case("unpicklable-map-item")
def _(tmp_path):
    _unsendable(lambda lock: rel.identity.map([1, lock]), r"task 'identity': argument item 1")


@case("unpicklable-function")
def _(tmp_path):
    def guarded(x, lock=threading.Lock()):  # a notebook function: pickled by value, with its lock
        with lock:
            return x
    task = nc.App("bad-input-function", set_as_current=False).task(guarded, name="bad.guarded")
    _unsendable(lambda lock: task.s(1),
                r"task 'guarded': its function cannot be sent to the cluster's worker "
                r"processes: TypeError: cannot pickle '_thread.lock' object\. .*threads")


@case("unpicklable-argument-in-errback")
def _(tmp_path):
    before = _records_on_scheduler()
    with pytest.raises(TypeError, match=r"task 'errback': argument 'tag' \(lock"):
        rel.add.s(1, 2).apply_async(link_error=rel.errback.s(tag=threading.Lock()))
    assert _records_on_scheduler() == before


# -- run time --------------------------------------------------------------------------------------
@case("task-returns-unpicklable")
def _(tmp_path):
    log = str(tmp_path / "log.jsonl")
    r = nc.chain(rel.make_lock.s(), rel.record.s(path=log, tag="after")).apply_async(
        link_error=rel.errback.s(path=log))
    with pytest.raises(TypeError, match=r"task 'make_lock' returned a lock that cannot be sent "
                                        r"from the worker .*cannot pickle '_thread.lock'"):
        r.get(timeout=30)
    settle(r)
    assert chain_states(r) == ["NOT_RUN", "FAILURE"]
    assert records(log, "after") == [] and len(records(log, "errback")) == 1
    # In this process nothing is pickled: apply() returns the lock itself.
    assert type(rel.make_lock.s().apply().get()) is type(threading.Lock())


@case("1000-deep-chain")
def _(tmp_path):
    wf = nc.chain(rel.add.si(0, 0), *[rel.add.s(1) for _ in range(999)])
    assert wf.apply().get() == 999
    r = wf.delay()
    assert r.get(timeout=60) == 999
    assert r.parent.get(timeout=10) == 998


@case("100k-group")
def _(tmp_path):
    g = nc.group(rel.identity.s(i) for i in range(100_000))
    r = g.delay()
    assert r.get(timeout=240) == list(range(100_000))
    assert r.results[77_777].get(timeout=10) == 77_777
    r.forget()


@case("empty-chord-header")
def _(tmp_path):
    for canvas, expected in [(nc.chord([], rel.collect.s()), []),
                             (nc.chord(nc.group(), rel.tsum.s()), 0),
                             (nc.chord([])(rel.collect.s()), []),
                             (nc.chain(nc.group([]), rel.collect.s()), [])]:
        assert canvas.apply().get() == expected
        assert canvas.delay().get(timeout=30) == expected


# -- from_dict: JSON from elsewhere --------------------------------------------------------------
@case("from_dict-of-os.system")
def _(tmp_path):
    with pytest.raises(nc.NotRegistered, match=r"no task named 'os.system'"):
        nc.Signature.from_dict({"type": "signature", "task": "os.system", "args": ["echo pwned"]})
    # Nothing is imported to resolve a name: checked in a fresh interpreter, with a module
    # that prints the Zen of Python if it is ever imported.
    code = textwrap.dedent("""
        import sys, nbcanvas as nc
        for name in ("this.s", "os.system", "subprocess.call"):
            try:
                nc.Signature.from_dict({"type": "signature", "task": name, "args": ["x"]})
            except nc.NotRegistered as e:
                print("refused", name)
        print("this" in sys.modules, "subprocess" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["refused", "this.s", "refused", "os.system",
                                  "refused", "subprocess.call", "False", "False"], out.stdout


@case("malformed-dict")
def _(tmp_path):
    for bad, pattern in [
        ([1, 2], r"expected a dict, got list"),
        ({"type": "bogus"}, r"unknown canvas type 'bogus'"),
        ({"type": "signature"}, r"signature has no 'task' field"),
        ({"type": "signature", "task": "rel.add", "args": "12"}, r"field 'args' should be"),
        ({"type": "chain", "tasks": 5}, r"chain field 'tasks' should be"),
        ({"type": "group", "tasks": [{"type": "signature", "task": "rel.add"}, 7]},
         r"expected a dict, got int"),
    ]:
        with pytest.raises(ValueError, match=pattern):
            nc.Signature.from_dict(bad)


# -- results ---------------------------------------------------------------------------------------
@case("get-on-forgotten-id")
def _(tmp_path):
    r = (rel.add.s(1, 2) | rel.add.s(3)).delay()
    assert r.get(timeout=30) == 6
    first = r.parent.id
    r.forget()
    with pytest.raises(ResultNotFound, match=r"was forgotten"):
        r.get(timeout=5)
    for id in (r.id, first):
        with pytest.raises(ResultNotFound, match=rf"{id}.*never sent there, or it was forgotten"):
            nc.AsyncResult(id).get(timeout=5)
        with pytest.raises(KeyError):
            nc.AsyncResult(id).get(timeout=5)
    assert r.id not in _records_on_scheduler()


@case("get-on-canvas-never-sent")
def _(tmp_path):
    for canvas in (rel.add.s(1, 2), rel.add.s(1, 2) | rel.add.s(3),
                   nc.group(rel.add.s(1, 2)), nc.chord([rel.add.s(1, 2)], rel.tsum.s())):
        with pytest.raises(RuntimeError, match=r"has not been sent: call \.delay\(\)"):
            canvas.get()


@case("get-timeout-cancels-nothing")
def _(tmp_path):
    gate = tmp_path / "open"
    r = (rel.gate.si(str(gate)) | rel.add.si(1, 1)).delay()
    with pytest.raises(nc.TimeoutError, match=r"not ready after 0.2 s \(nothing was cancelled\)"):
        r.get(timeout=0.2)
    gate.touch()
    assert r.get(timeout=60) == 2


@case("connect-to-dead-address")
def _(tmp_path):
    dead = nc.App("dead", address="tcp://127.0.0.1:9", set_as_current=False)
    t0 = time.monotonic()
    with pytest.raises(nc.ImproperlyConfigured,
                       match=r"could not reach a dask scheduler at 'tcp://127.0.0.1:9' within"):
        connection(dead)
    # A correctness bound (no hang): the connect timeout, plus slack for a loaded machine.
    assert time.monotonic() - t0 < nbcanvas.cluster.CONNECT_TIMEOUT + 20


# -- the table ---------------------------------------------------------------------------------------
def test_table_has_at_least_15_cases():
    assert len(CASES) >= 15


@pytest.fixture
def nothing_lost(dask_client):
    """Around each case: a workflow finished before it keeps its record and results, the task
    registry is unchanged, and new workflows still run (on the cluster and in process)."""
    canary = (rel.add.s(2, 3) | rel.add.s(1)).delay()
    assert canary.get(timeout=60) == 6
    tasks = dict(rel.app.tasks)
    records_before = _records_on_scheduler()
    yield
    assert dict(rel.app.tasks) == tasks, "the case changed the task registry"
    assert records_before <= _records_on_scheduler(), "the case dropped another workflow"
    assert nc.AsyncResult(canary.id).get(timeout=30) == 6
    assert nc.AsyncResult(canary.parent.id).get(timeout=30) == 5
    canary.forget()
    assert (rel.add.s(1, 2) | rel.add.s(3)).delay().get(timeout=60) == 6
    assert rel.add.s(2, 2).apply().get() == 4


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in CASES])
def test_bad_input(name, tmp_path, nothing_lost):
    CASES[name](tmp_path)


def test_unpicklable_result_also_fails_between_workers(dask_client, tmp_path):
    """The case that used to hang: a header member's unpicklable result, needed by a chord body
    on another worker, with fusion and batching off (one dask task per step)."""
    from .test_failures import plain
    c = nc.chord([plain.make_lock.s()] + [plain.nap.s(i, 0.1) for i in range(4)],
                 plain.collect.s())
    with pytest.raises(TypeError, match=r"task 'make_lock' returned a lock"):
        c.delay().get(timeout=60)


def test_boom_is_importable_by_workers():
    assert Boom.__module__ == "tests.reliability.rtasks"


def test_refused_send_leaves_no_record_even_when_the_stream_lags(dask_client):
    """The record goes on the client's batched stream, the clean-up by rpc: with a slow stream
    the clean-up used to overtake the record, which then stayed on the scheduler for good."""
    comm = connection(rel.app).client.scheduler_comm
    saved = comm.interval
    comm.interval = 0.3  # the stream flushes at most every 300 ms
    try:
        before = _records_on_scheduler()
        for _ in range(3):
            comm.send({"op": "heartbeat-client"})  # flushed now: the record waits 300 ms
            with pytest.raises(TypeError, match=r"argument 0 \(lock"):
                rel.identity.s(threading.Lock()).delay()
        # The stream is ordered: once a later workflow ran, every earlier message arrived.
        probe = rel.add.s(1, 1).delay()
        assert probe.get(timeout=60) == 2
        assert _records_on_scheduler() == before | {probe.id}
        probe.forget()
    finally:
        comm.interval = saved
