"""nbcanvas.handle: this process's view of one workflow -- where outcomes are, the registry."""
from __future__ import annotations

import pickle
import re
import threading
import uuid
from typing import Any

import pytest

import nbcanvas as nc
from nbcanvas.compile import Lst, Ref
from nbcanvas.errors import ResultNotFound
from nbcanvas.events import get_store, register_store
from nbcanvas.handle import (EagerBackend, WorkflowHandle, drop_handle, find_handle, handles,
                             register_handle, supersede)
from nbcanvas.runtime.outcome import GroupOutcome, value_of
from nbcanvas.store import StateStore

app = nc.App("tests.test_handle", set_as_current=False)


@app.task(name="th.inc")
def inc(x):
    return x + 1


@app.task(name="th.add")
def add(x, y):
    return x + y


@app.task(name="th.seq")
def seq(n):
    return list(range(n))


@app.task(name="th.tsum")
def tsum(xs):
    return sum(xs)


def test_where_the_workflow_and_a_group_member_are():
    sig = nc.chain(inc.s(1), nc.group(inc.s(), add.s(10)), tsum.s()).freeze()
    h = sig.apply().handle
    g = sig.tasks[1]
    assert h.where(sig.id) == h.result and isinstance(h.where(sig.id), Ref)
    w = h.where(g.id)
    assert isinstance(w, Lst) and [r.id for r in w.items] == [t.id for t in g.tasks]
    assert h.where(g.tasks[1].id) == Ref(h.nodes[g.tasks[1].id][4], g.tasks[1].id)
    assert value_of(h.outcome(w)) == ([3, 12], None)
    assert h.kind(g.id) == "group" and h.kind(sig.id) == "signature" and h.kind("nope") is None


def test_where_a_foreach_element_is():
    sig = nc.chain(seq.s(3), nc.foreach(inc.s())).freeze()
    h = sig.apply().handle
    fe = sig.tasks[1]
    for i in range(3):
        el = f"{fe.body.id}:{i}"
        assert h.kind(el) == "signature"
        w = h.where(el)
        assert w == Ref(h.nodes[fe.id][4], el)  # in the unit of its foreach
        assert h.outcome(w) == i + 1
    assert nc.AsyncResult(f"{fe.body.id}:2").get() == 3


def test_where_a_step_inside_a_foreach_chain_element_is():
    sig = nc.chain(seq.s(2), nc.foreach(nc.chain(inc.s(), inc.s()))).freeze()
    h = sig.apply().handle
    first = sig.tasks[1].body.tasks[0]
    assert h.outcome(h.where(f"{first.id}:1")) == 2


def test_where_an_unknown_node_is_not():
    h = inc.s(1).apply().handle
    with pytest.raises(ResultNotFound, match="not a node"):
        h.where("nope")


def test_keys_of():
    h = inc.s(1).apply().handle
    assert h.keys_of(Ref("k1", "a")) == ["k1"]
    keys = h.keys_of(Lst((Ref("k1", "a"), Lst((Ref("k2", "b"), Ref("k1", "c"))), Ref("k3", "d"))))
    assert sorted(keys) == ["k1", "k2", "k3"] and len(keys) == 3


def test_structure_comes_from_the_canvas_or_is_given():
    sig = nc.chain(inc.s(1), inc.s()).freeze()
    h = sig.apply().handle
    assert h.structure == sig.to_dict(strict=False)
    bare = WorkflowHandle("wf", {}, Ref("k", "wf"), StateStore("wf", {}), EagerBackend({}),
                          structure={"type": "signature", "id": "wf"})
    assert bare.structure == {"type": "signature", "id": "wf"} and bare.name == "wf"
    assert repr(bare) == "<WorkflowHandle wf wf>"


def test_eager_backend():
    done = {"k1": {"a": 1}, "k2": {"b": 2}}
    b = EagerBackend(done)
    assert b.gather(["k2"], None) == {"k2": {"b": 2}} and b.done(["k1"]) and b.future("k1") is None
    b.forget(None)  # type: ignore[arg-type]
    assert done == {}


def test_forget_drops_the_handle_and_the_store():
    sig = inc.s(1).freeze()
    h = sig.apply().handle
    assert find_handle(sig.id) is h and get_store(sig.id) is h.store
    h.forget()
    assert h.forgotten and find_handle(sig.id) is None and get_store(sig.id) is None
    with pytest.raises(ResultNotFound, match="forgotten"):
        h.where(sig.id)


class Releasing:
    """A cluster backend's part in expiry: what this process holds of the workflow goes."""

    def __init__(self) -> None:
        self.released = 0

    def release(self, handle: Any) -> None:
        self.released += 1


def test_the_schedulers_word_that_a_workflow_expired_drops_it_here():
    from nbcanvas.events import dispatch
    wf = f"wf-{uuid.uuid4()}"
    store = register_store(StateStore(wf, {wf: ("signature", "t", 0, None)}))
    backend = Releasing()
    h = register_handle(WorkflowHandle(wf, {wf: ("signature", "t", 0, None, "k", ())},
                                       Ref("k", wf), store, backend))  # type: ignore[arg-type]
    dispatch((0.0, {"wf": f"other-{uuid.uuid4()}", "expired": True}))
    assert not h.forgotten and find_handle(wf) is h
    dispatch((0.0, {"wf": wf, "expired": True}))
    assert h.forgotten and backend.released == 1
    assert find_handle(wf) is None and get_store(wf) is None
    with pytest.raises(ResultNotFound, match="forgotten"):
        h.where(wf)


def test_an_eager_run_is_not_dropped_by_an_expiry_with_its_id():
    from nbcanvas.events import dispatch
    sig = inc.s(1).freeze()
    h = sig.apply().handle
    dispatch((0.0, {"wf": sig.id, "expired": True}))
    assert not h.forgotten and find_handle(sig.id) is h
    h.forget()


def test_find_handle_by_any_node_newest_first():
    sig = nc.chain(inc.s(1), inc.s()).freeze()
    h = sig.apply().handle
    assert find_handle(sig.tasks[0].id) is h and h in handles()
    assert find_handle(f"unknown-{uuid.uuid4()}") is None
    drop_handle(h)
    assert find_handle(sig.id) is None
    drop_handle(h)  # twice is harmless


def test_supersede_forgets_the_earlier_run_and_salts_the_next():
    assert supersede(f"never-sent-{uuid.uuid4()}") == ""
    sig = inc.s(1).freeze()
    first = sig.apply().handle
    salt = supersede(sig.id)
    assert re.fullmatch(r"~s[0-9a-f]{8}", salt) and first.forgotten
    again = sig.apply()
    assert again.get() == 2 and again.handle is not first


class FutureLike:
    """What a backend's ``future`` returns: only ``done()`` is used for the fast path."""

    def __init__(self) -> None:
        self.finished = threading.Event()

    def done(self) -> bool:
        return self.finished.is_set()


class NoGather:
    """A backend whose results are held elsewhere: gathering is the slow path."""

    def __init__(self, id: str) -> None:
        self.id = id
        self.fut = FutureLike()
        self.gathered = 0

    def gather(self, keys: list[str], timeout: float | None) -> dict[str, dict[str, Any]]:
        self.gathered += 1
        return {k: {self.id: GroupOutcome([])} for k in keys}

    def done(self, keys: list[str]) -> bool:
        return self.fut.done()

    def revoke(self, handle: Any, terminate: bool) -> None: ...
    def forget(self, handle: Any) -> None: ...
    def release(self, handle: Any) -> None: ...

    def future(self, key: str) -> Any:
        return self.fut


def test_a_small_result_is_read_from_its_done_event_without_gathering():
    wf = f"wf-{uuid.uuid4()}"
    store = register_store(StateStore(wf, {wf: ("signature", "t", 0, None)}))
    backend = NoGather(wf)
    h = WorkflowHandle(wf, {wf: ("signature", "t", 0, None, "k", ())}, Ref("k", wf), store,
                       backend)
    got: list[Any] = []
    waiting = threading.Event()

    def reader() -> None:
        waiting.set()
        got.append(h.outcome(h.where(wf), timeout=30))

    t = threading.Thread(target=reader)
    t.start()
    assert waiting.wait(10)
    store.apply({"wf": wf, "ev": [["D", wf, 1.0, "SUCCESS", None, pickle.dumps({"v": 42})]]})
    t.join(30)
    assert got == [{"v": 42}] and backend.gathered == 0
    h.forget()
    assert get_store(wf) is None  # forgotten with the handle


def test_without_an_inline_result_the_backend_is_gathered():
    wf = f"wf-{uuid.uuid4()}"
    store = StateStore(wf, {wf: ("signature", "t", 0, None)})
    backend = NoGather(wf)
    backend.fut.finished.set()  # the unit is done but its event carried no value
    store.apply({"wf": wf, "ev": [["D", wf, 1.0, "SUCCESS", None]]})
    h = WorkflowHandle(wf, {wf: ("signature", "t", 0, None, "k", ())}, Ref("k", wf), store,
                       backend)
    out = h.outcome(h.where(wf))
    assert isinstance(out, GroupOutcome) and backend.gathered == 1
    assert h.ready(h.where(wf))


def test_register_handle_replaces_an_earlier_one():
    wf = f"wf-{uuid.uuid4()}"
    mk = lambda: WorkflowHandle(wf, {}, Ref("k", wf), StateStore(wf, {}),  # noqa: E731
                                EagerBackend({}))
    a, b = register_handle(mk()), register_handle(mk())
    assert find_handle(wf) is b
    drop_handle(a)  # not the registered one: nothing happens
    assert find_handle(wf) is b
    drop_handle(b)
