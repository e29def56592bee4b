"""nbcanvas.task: the Task object, its signature builders and in-process helpers."""
from __future__ import annotations

import pytest

import nbcanvas as nc
from nbcanvas.canvas import chunks, xmap
from nbcanvas.task import Request

app = nc.App("test_task")


@app.task(name="test_task.add")
def add(x, y):
    return x + y


@app.task(name="test_task.bound", bind=True)
def bound(self, x, y=1):
    return [self.request.id, x, y]


@app.task(name="test_task.anything", typing=False)
def anything(x):
    return x


def test_call_runs_the_function_now():
    assert add(2, 2) == 4
    assert add(y=1, x=2) == 3
    with pytest.raises(TypeError):
        add(1)  # a plain Python call: Python's own error


def test_bound_call_gets_the_task_as_self():
    rid, x, y = bound(5)
    assert rid is None and (x, y) == (5, 1)
    assert isinstance(bound.request, Request)


def test_s_si_signature():
    s = add.s(2, 2)
    assert isinstance(s, nc.Signature)
    assert (s.task, s.args, s.kwargs, s.immutable, s.options) == ("test_task.add", (2, 2), {},
                                                                  False, {})
    si = add.si(5, 5)
    assert si.immutable is True and si.args == (5, 5)
    sig = add.signature((1, 2), {}, countdown=1)
    assert sig.args == (1, 2) and sig.options == {"countdown": 1}
    assert add.signature(kwargs={"y": 2}).kwargs == {"y": 2}
    assert add.signature((1, 2), immutable=True).immutable is True
    assert add.subtask((1, 2)) == add.s(1, 2)
    assert s.type is add
    assert s.name == "add"


def test_signature_options_are_validated():
    with pytest.raises(nc.ImproperlyConfigured, match="acks_late"):
        add.signature((1, 2), acks_late=True)


def test_bound_signature_checks_without_self():
    assert bound.s(1).args == (1,)
    assert bound.argspec.positional == ("x", "y")
    with pytest.raises(TypeError, match=r"bound\(x, y=1\)"):
        bound.s(1, 2, 3)


def test_typing_false_skips_argument_checks():
    assert anything.argspec is None
    assert anything.s(1, 2, 3).args == (1, 2, 3)


def test_map_starmap_chunks_types():
    m = anything.map([1, 2])
    assert isinstance(m, xmap) and m.star is False and m.items == (1, 2)
    sm = add.starmap([(1, 2), [3, 4]])
    assert isinstance(sm, xmap) and sm.star is True and sm.items == ((1, 2), (3, 4))
    ch = add.chunks(zip(range(5), range(5)), 2)
    assert isinstance(ch, chunks) and ch.n == 2
    g = ch.group()
    assert isinstance(g, nc.group) and len(g.tasks) == 3
    assert [len(t.items) for t in g.tasks] == [2, 2, 1]


def test_map_checks_each_item():
    with pytest.raises(TypeError, match="add"):
        add.map([1, 2])  # add needs two arguments: add(1) can never run
    with pytest.raises(TypeError, match="3 were given"):
        add.starmap([(1, 2), (1, 2, 3)])
    with pytest.raises(TypeError):
        add.chunks([(1, 2), (1,)], 1)


def test_chunks_n_must_be_positive():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="positive int"):
            add.chunks([(1, 2)], bad)


def test_apply_on_the_task_runs_eagerly():
    r = add.apply((2, 3))
    assert r.get() == 5
    assert bound.apply((9,), {"y": 2}).get()[1:] == [9, 2]


def test_update_state_outside_a_workflow_is_a_noop():
    assert add.update_state(state="PROGRESS", meta={"x": 1}) is None


def test_retry_outside_a_workflow_reraises():
    with pytest.raises(OSError, match="disk"):
        add.retry(exc=OSError("disk"))
    with pytest.raises(nc.Retry):
        add.retry(countdown=1)


def test_request_fields():
    r = Request("id-1", 2, (1,), {"k": 3}, "wf-1", "host", eager=False)
    assert (r.id, r.retries, r.args, r.kwargs, r.workflow_id, r.root_id, r.hostname,
            r.is_eager) == ("id-1", 2, (1,), {"k": 3}, "wf-1", "wf-1", "host", False)
    assert Request().kwargs == {}
    assert "id-1" in repr(r)


def test_async_result_shortcut_reattaches():
    r = add.apply((1, 1))
    assert add.AsyncResult(r.id).get() == 2
