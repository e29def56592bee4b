"""nbcanvas.result: AsyncResult and GroupResult over a workflow handle."""
from __future__ import annotations

import pickle
import uuid
from typing import Any

import pytest

import nbcanvas as nc
from nbcanvas.compile import Ref
from nbcanvas.errors import NbcanvasError, ResultNotFound
from nbcanvas.events import drop_store, register_store
from nbcanvas.handle import WorkflowHandle, drop_handle, register_handle
from nbcanvas.result import AsyncResult, GroupResult, result_for
from nbcanvas.store import StateStore

app = nc.App("tests.test_result", set_as_current=False)


@app.task(name="tr.inc")
def inc(x):
    return x + 1


@app.task(name="tr.boom")
def boom(x):
    raise ValueError(f"boom {x}")


@app.task(name="tr.tsum")
def tsum(xs):
    return sum(xs)


# -- ids nobody knows (asks the scheduler) ------------------------------------------------------


def test_an_unknown_id_is_pending(dask_client):
    r = AsyncResult(f"never-sent-{uuid.uuid4()}", app=app)
    assert (r.state, r.status, r.info, r.ready(), r.successful(), r.failed()) == \
        ("PENDING", "PENDING", None, False, False, False)
    g = GroupResult(f"never-sent-{uuid.uuid4()}", app=app)
    assert g.ready() is False


def test_get_on_an_unknown_id_raises_result_not_found(dask_client):
    r = AsyncResult(f"never-sent-{uuid.uuid4()}", app=app)
    with pytest.raises(ResultNotFound, match="never sent"):
        r.get(timeout=5)
    with pytest.raises(KeyError):  # also a KeyError, as Celery users catch
        r.get(timeout=5)


# -- values and states ------------------------------------------------------------------------


def test_a_successful_chain():
    sig = nc.chain(inc.s(1), inc.s(), inc.s()).freeze()
    r = sig.apply()
    assert isinstance(r, AsyncResult) and r.id == sig.id
    assert (r.get(), r.state, r.info, r.result, r.ready(), r.successful(), r.failed()) == \
        (4, "SUCCESS", 4, 4, True, True, False)
    assert r.traceback is None and r.future is None
    p = r.parent
    assert p == AsyncResult(sig.tasks[1].id) and p.get() == 3
    assert p.parent.parent is None
    assert r.as_tuple() == ((sig.id, ((sig.tasks[1].id, ((sig.tasks[0].id, None), None)),
                                      None)), None)
    assert repr(r) == f"<AsyncResult: {sig.id}>"


def test_a_failed_step_and_the_steps_after_it():
    sig = nc.chain(inc.s(1), boom.s(), inc.s()).freeze()
    r = sig.apply()
    failed = AsyncResult(sig.tasks[1].id)
    assert (failed.state, failed.failed(), failed.ready()) == ("FAILURE", True, True)
    assert isinstance(failed.info, ValueError) and str(failed.info) == "boom 2"
    assert "ValueError: boom 2" in failed.traceback
    with pytest.raises(ValueError, match="boom 2") as info:
        failed.get()
    assert any("Remote traceback" in n for n in info.value.__notes__)
    assert r.state == "NOT_RUN" and not r.successful() and not r.failed()
    with pytest.raises(ValueError, match="boom 2"):  # the cause of the skip
        r.get()
    assert isinstance(r.get(propagate=False), ValueError)


def test_a_group_result():
    sig = nc.group(inc.s(1), boom.s(2), inc.s(3)).freeze()
    g = sig.apply()
    assert isinstance(g, GroupResult) and len(g) == 3
    assert [r.id for r in g] == [t.id for t in sig.tasks] and g[2].get() == 4
    assert g.results == list(g) and all(isinstance(r, AsyncResult) for r in g.results)
    assert (g.ready(), g.successful(), g.failed(), g.waiting(), g.completed_count()) == \
        (True, False, True, False, 2)
    assert g.state == "FAILURE"
    with pytest.raises(ValueError, match="boom 2"):
        g.get()
    out = g.join(propagate=False)
    assert out[0] == 2 and isinstance(out[1], ValueError) and out[2] == 4
    assert repr(g) == f"<GroupResult: {sig.id} [3 results]>"
    ok = nc.group(inc.s(1), inc.s(2)).apply()
    assert (ok.state, ok.get(), ok.successful()) == ("SUCCESS", [2, 3], True)


def test_result_for_picks_the_kind():
    sig = nc.chain(nc.group(inc.s(1), inc.s(2)), tsum.s()).freeze()
    h = sig.apply().handle
    assert type(result_for(sig.tasks[0].id, h)) is GroupResult
    assert type(result_for(sig.id, h)) is AsyncResult
    assert AsyncResult(sig.id).parent == GroupResult(sig.tasks[0].id)


# -- identity and pickling --------------------------------------------------------------------


def test_equality_and_hash_by_kind_and_id():
    assert AsyncResult("x") == AsyncResult("x") != AsyncResult("y")
    assert AsyncResult("x") != GroupResult("x")
    assert len({AsyncResult("x"), AsyncResult("x"), GroupResult("x")}) == 2


def test_pickling_a_result_is_small_and_never_recurses():
    sig = nc.chain(inc.s(0), *[inc.s() for _ in range(2_000)]).freeze()
    r = sig.apply()
    assert r.get() == 2_001 and r.parent is not None  # a long parent chain
    data = pickle.dumps(r)
    assert len(data) < 200
    back = pickle.loads(data)
    assert back == r and back._handle is None and back.get() == 2_001
    g = nc.group(inc.s(i) for i in range(1_000)).apply()
    assert len(g.results) == 1_000
    gdata = pickle.dumps(g)
    assert len(gdata) < 200 and pickle.loads(gdata).get()[-1] == 1_000


# -- while a workflow runs --------------------------------------------------------------------


class Running:
    """A backend whose units are not done yet."""

    def gather(self, keys: list[str], timeout: float | None) -> dict[str, Any]:
        raise AssertionError("a running result must not be gathered here")

    def done(self, keys: list[str]) -> bool:
        return False

    def revoke(self, handle: Any, terminate: bool) -> None: ...
    def forget(self, handle: Any) -> None: ...
    def release(self, handle: Any) -> None: ...

    def future(self, key: str) -> Any:
        return None


@pytest.fixture
def running():
    wf = f"wf-{uuid.uuid4()}"
    rows = {"a": ("signature", "step", 0, None, "k1", ()),
            wf: ("signature", "last", 1, None, "k2", ())}
    store = register_store(StateStore(wf, {i: r[:4] for i, r in rows.items()}))
    h = register_handle(WorkflowHandle(wf, rows, Ref("k2", wf), store, Running()))
    yield h
    drop_handle(h)
    drop_store(wf)


def test_a_running_step_reports_its_host_then_its_meta(running):
    h = running
    a = AsyncResult("a", handle=h)
    assert (a.state, a.info, a.ready()) == ("PENDING", None, False)
    h.store.apply({"wf": h.id, "ev": [["S", "a", 1.0, 0, "tcp://w:1"]]})
    assert (a.state, a.info) == ("STARTED", {"hostname": "tcp://w:1"})
    h.store.apply({"wf": h.id, "ev": [["U", "a", 2.0, "PROGRESS", {"i": 3}]]})
    assert (a.state, a.info) == ("PROGRESS", {"i": 3})


def test_the_workflow_reports_the_progress_of_its_running_steps(running):
    h = running
    r = AsyncResult(h.id, handle=h)
    assert (r.state, r.info) == ("PENDING", None)
    h.store.apply({"wf": h.id, "ev": [["S", "a", 1.0, 0, "h"],
                                      ["U", "a", 2.0, "PROGRESS", {"i": 1}]]})
    assert (r.state, r.info) == ("PROGRESS", {"i": 1})
    h.store.apply({"wf": h.id, "ev": [["D", "a", 3.0, "SUCCESS", None]]})
    assert (r.state, r.info, r.ready()) == ("STARTED", None, False)


def test_retry_of_an_unfinished_workflow_is_refused(running):
    with pytest.raises(NbcanvasError, match="finished workflow"):
        AsyncResult(running.id, handle=running).retry()
