"""nbcanvas.eager: ``sig.apply()`` runs the compiled units in this process (no cluster).

The semantics every engine shares are in tests/semantics; this file is about the eager
engine itself: where things run, what the result objects and the state store hold, and that
the compile options (fusion, batching) do not change results.
"""
from __future__ import annotations

import os
import threading

import pytest

import nbcanvas as nc
from nbcanvas import chain, chord, group
from nbcanvas.compile import Lst, Ref, compile_canvas
from nbcanvas.events import get_store
from nbcanvas.runtime import Ctx, execute_local, outcome_at, run_units_local
from nbcanvas.runtime.emit import Sink
from nbcanvas.runtime.outcome import value_of
from nbcanvas.store import StateStore

app = nc.App("test_eager")


@app.task(name="eager.add")
def add(x, y):
    return x + y


@app.task(name="eager.inc")
def inc(x):
    return x + 1


@app.task(name="eager.tsum")
def tsum(xs):
    return sum(xs)


@app.task(name="eager.where")
def where():
    return [os.getpid(), threading.get_ident()]


@app.task(name="eager.request", bind=True)
def request(self):
    r = self.request
    return {"id": r.id, "eager": r.is_eager, "host": r.hostname, "wf": r.workflow_id,
            "root": r.root_id}


@app.task(name="eager.progress", bind=True)
def progress(self, n):
    """Reports PROGRESS and returns the state the store showed while it ran."""
    self.update_state(state="PROGRESS", meta={"done": 1, "total": n})
    seen = get_store(self.request.workflow_id).state(self.request.id)
    self.update_state(state="PROGRESS", meta={"done": n, "total": n})
    return seen


@app.task(name="eager.retrying", bind=True)
def retrying(self):
    if self.request.retries < 2:
        raise self.retry(countdown=0)
    return self.request.retries


@app.task(name="eager.boom")
def boom(*args):
    raise KeyError("boom")


# -- what apply returns ---------------------------------------------------------------------


@pytest.mark.parametrize("canvas, cls, value", [
    (lambda: add.s(1, 1), nc.AsyncResult, 2),
    (lambda: chain(add.s(1, 1), inc.s()), nc.AsyncResult, 3),
    (lambda: group(add.s(1, 1), add.s(2, 2)), nc.GroupResult, [2, 4]),
    (lambda: chord([add.s(1, 1)], tsum.s()), nc.AsyncResult, 2),
    (lambda: chain(add.s(1, 1), group(inc.s(), inc.s())), nc.GroupResult, [3, 3]),
    (lambda: add.chunks([(1, 1), (2, 2)], 1), nc.GroupResult, [[2], [4]]),
    (lambda: inc.map([1, 2]), nc.AsyncResult, [2, 3]),
    (lambda: chain(add.s(1, 1), nc.foreach(inc.s())).clone(), None, None),
])
def test_apply_returns_a_ready_result_of_the_right_kind(canvas, cls, value):
    sig = canvas()
    if cls is None:  # foreach over an int: fails at run time, reported as a failure
        r = sig.apply()
        assert r.ready() and r.failed()
        with pytest.raises(TypeError, match="foreach needs an iterable"):
            r.get()
        return
    r = sig.apply()
    assert type(r) is cls
    assert r.ready()
    assert r.get() == value


def test_apply_runs_here_in_this_thread():
    assert where.s().apply().get() == [os.getpid(), threading.get_ident()]
    assert group(where.s(), where.s()).apply().get() == [[os.getpid(), threading.get_ident()]] * 2


def test_request_in_eager_mode():
    r = chain(add.s(1, 1), request.si()).apply()
    req = r.get()
    assert req["id"] == r.id and req["eager"] is True and req["host"] == "eager"
    assert req["wf"] == req["root"] == r.id


def test_no_future_after_apply():
    assert add.s(1, 1).apply().future is None


def test_apply_with_task_id():
    r = add.s(1, 1).apply(task_id="my-own-id")
    assert r.id == "my-own-id" and nc.AsyncResult("my-own-id").get() == 2


# -- the state store --------------------------------------------------------------------------


def test_store_has_every_step_final():
    wf = chain(add.s(1, 1), group(inc.s(), inc.s()), tsum.s()).freeze()
    r = wf.apply()
    store = r.handle.store
    assert store.finished()
    snap = store.snapshot()
    ids = [wf.tasks[0].id, *[m.id for m in wf.tasks[1].tasks], wf.tasks[2].id]
    assert [snap[i] for i in ids] == ["SUCCESS"] * 4
    assert store.done_total() == (4, 4)
    assert all(store.get(i).started is not None and store.get(i).finished is not None
               for i in ids)
    assert store.get(ids[0]).host == "eager"


def test_store_states_after_a_failure():
    wf = chain(add.s(1, 1), boom.s(), inc.s()).freeze()
    r = wf.apply()
    store = r.handle.store
    assert [store.state(t.id) for t in wf.tasks] == ["SUCCESS", "FAILURE", "NOT_RUN"]
    assert "KeyError" in store.get(wf.tasks[1].id).info
    assert "boom failed" in store.get(wf.tasks[2].id).info
    assert store.counts() == {"SUCCESS": 1, "FAILURE": 1, "NOT_RUN": 1}


def test_update_state_is_seen_while_running_and_meta_kept():
    r = progress.s(3).apply()
    assert r.get() == "PROGRESS"
    st = r.handle.store.get(r.id)
    assert st.state == "SUCCESS"
    assert st.meta == {"done": 3, "total": 3}


def test_retries_are_counted():
    r = retrying.s().apply()
    assert r.get() == 2
    assert r.handle.store.get(r.id).retries == 2


def test_store_observers_see_every_batch():
    seen = []
    # a store registered before the run receives its events (as the live view does)
    wf = chain(add.s(1, 1), inc.s()).freeze()
    from nbcanvas.events import drop_store, register_store
    store = StateStore(wf.id, {})
    store.subscribe(lambda s: seen.append(dict(s.snapshot())))
    register_store(store)
    try:
        ctx = Ctx(wf.id, Sink(store.apply), execute_local, host="eager", eager=True)
        cg = compile_canvas(wf, wf.id, parallelism=1)
        run_units_local(cg.units, ctx)
    finally:
        drop_store(wf.id)
    assert seen[-1] == {wf.tasks[0].id: "SUCCESS", wf.tasks[1].id: "SUCCESS"}
    assert {wf.tasks[0].id: "STARTED"} in seen  # the start was reported before the end


# -- compile options do not change results -------------------------------------------------------


def run_compiled(sig, **options):
    """Compile with ``options`` and run the units here; return (units, value or exception)."""
    f = sig.freeze()
    cg = compile_canvas(f, f.id, **options)
    ctx = Ctx(f.id, Sink(lambda msg: None), execute_local, eager=True)
    done = run_units_local(cg.units, ctx)
    value, cause = value_of(outcome_at(cg.result, done))
    return cg, (value if cause is None else type(cause.exc))


CANVASES = {
    "chain": lambda: chain(add.s(1, 1), inc.s(), inc.s()),
    "group": lambda: group(add.s(i, i) for i in range(40)),
    "chord": lambda: chord([add.s(i, i) for i in range(40)], tsum.s()),
    "nested": lambda: chain(add.s(1, 1), group(chain(inc.s(), inc.s()), chord([inc.s()], tsum.s())),
                            tsum.s(), inc.s()),
    "foreach": lambda: chain(add.s(1, 1), group(inc.s(), inc.s()), nc.foreach(inc.s())),
    "branch": lambda: chain(add.s(1, 1), nc.branch(inc.s(), group(inc.s(), inc.s()))),
    "failure": lambda: chain(add.s(1, 1), group(inc.s(), boom.s()), tsum.s()),
}


@pytest.mark.parametrize("name", list(CANVASES))
def test_fusion_and_batching_do_not_change_results(name):
    value = CANVASES[name]().apply().get(propagate=False)
    expected = type(value) if isinstance(value, BaseException) else value
    for p in (1, 4):
        for f in (True, False):
            for b in (True, False):
                got = run_compiled(CANVASES[name](), parallelism=p, fusion=f, batching=b)[1]
                assert got == expected, (p, f, b)


def test_fused_chain_is_one_unit_with_a_node_per_step():
    sig = chain(add.s(1, 1), inc.s(), inc.s()).freeze()
    cg = compile_canvas(sig, sig.id)
    assert len(cg.units) == 1
    assert [cg.nodes[t.id][0] for t in sig.tasks] == ["signature"] * 3  # kind column
    cg_plain, value = run_compiled(chain(add.s(1, 1), inc.s(), inc.s()), fusion=False)
    assert len(cg_plain.units) == 3 and value == 4


def test_where_a_group_result_is():
    sig = group(add.s(1, 1), add.s(2, 2)).freeze()
    cg = compile_canvas(sig, sig.id, batching=False)
    w = cg.where(sig.id)
    assert isinstance(w, Lst) and all(isinstance(i, Ref) for i in w.items)
    assert [i.id for i in w.items] == [t.id for t in sig.tasks]
    assert cg.where("not-a-node") is None


def test_batching_a_large_group_keeps_every_member():
    sig = group(add.s(i, 1) for i in range(1000)).freeze()
    batched = compile_canvas(sig, sig.id, parallelism=2, batching=True)
    plain = compile_canvas(sig, sig.id, parallelism=2, batching=False)
    assert len(batched.units) < len(plain.units) == 1000
    _, value = run_compiled(group(add.s(i, 1) for i in range(1000)), parallelism=2)
    assert value == [i + 1 for i in range(1000)]


# -- results after the run --------------------------------------------------------------------


def test_group_result_save_and_restore():
    g = group(add.s(1, 1), add.s(2, 2)).apply()
    assert g.save() is g
    again = nc.GroupResult.restore(g.id)
    assert again.get() == [2, 4] and again == g


def test_forget_drops_the_results():
    r = add.s(1, 1).apply()
    r.forget()
    with pytest.raises(KeyError, match="forgotten"):
        r.get()


def test_forget_resets_the_state():
    r = add.s(1, 1).apply()
    r.forget()
    assert r.state == "PENDING"
    assert not r.ready()


def test_await_result():
    import asyncio

    async def main():
        return await chain(add.s(1, 1), inc.s()).apply(), await group(add.s(1, 1)).apply()

    assert asyncio.run(main()) == (3, [2])


class _Unpicklable(Exception):
    def __init__(self, msg):
        super().__init__(msg)
        self.lock = threading.Lock()  # can't be pickled


@app.task(name="eager.locked")
def locked():
    raise _Unpicklable("has a lock")


def test_unpicklable_exception_is_raised_as_itself():
    # apply() keeps everything in this process: no need for a RemoteError stand-in
    r = chain(add.s(1, 1), locked.si()).apply()
    with pytest.raises(_Unpicklable, match="has a lock") as info:
        r.get()
    assert "Remote traceback" in "\n".join(info.value.__notes__)
    assert isinstance(r.get(propagate=False), _Unpicklable)
