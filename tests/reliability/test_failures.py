"""A failure mid-workflow, 100 times per engine (issue 12: 2).

Guarantee: the steps after a failed one never run (they report ``NOT_RUN``), the errback runs
exactly once, and ``.get()`` raises the task's own exception type with the remote traceback in
``exc.__notes__``. A chord whose header fails runs its errback once and never its body. Celery's
tracker has many reports of the opposite (errbacks run twice or never, chains continuing); here
each is checked 100 times, eagerly and on the cluster (with and without fusion and batching),
the cluster workflows all in flight at once.
"""
from __future__ import annotations

import pytest

import nbcanvas as nc

from .conftest import chain_states, settle
from .rtasks import Boom, records, rel, tasks_for

REPS = 100

#: Same tasks with fusion and batching off: every step is its own dask task.
plain = tasks_for(nc.App("reliability-plain", set_as_current=False, fusion=False,
                         batching=False), "relp")

RUNNERS = {
    "eager": (rel, lambda canvas, **kw: canvas.apply(**kw)),
    "cluster": (rel, lambda canvas, **kw: canvas.apply_async(**kw)),
    "cluster-plain": (plain, lambda canvas, **kw: canvas.apply_async(**kw)),
}


@pytest.fixture(params=list(RUNNERS))
def engine(request):
    if request.param != "eager":
        request.getfixturevalue("dask_client")
    return RUNNERS[request.param]


def _assert_raises_original(result, message):
    with pytest.raises(Boom) as info:
        result.get(timeout=60)
    exc = info.value
    assert type(exc) is Boom and str(exc) == message
    notes = "\n".join(getattr(exc, "__notes__", ()))
    assert notes.startswith("Remote traceback:"), notes[:200]
    assert "Traceback (most recent call last)" in notes
    assert "raise Boom(message)" in notes  # the source line, from the worker
    assert f"Boom: {message}" in notes


@pytest.mark.timeout(240)
def test_failure_mid_chain_later_steps_never_run_errback_once(engine, tmp_path):
    t, send = engine
    sent = []
    for i in range(REPS):
        log = str(tmp_path / f"{i}.jsonl")
        wf = nc.chain(t.add.s(i, 1), t.fail.s(message=f"kaput {i}"),
                      t.record.s(path=log, tag="after"), t.add.s(1))
        sent.append((i, log, send(wf, link_error=t.errback.s(path=log))))
    for i, log, r in sent:
        _assert_raises_original(r, f"kaput {i}")
        settle(r)
        assert records(log, "after") == [], f"run {i}: a step after the failure ran"
        errbacks = records(log, "errback")
        assert len(errbacks) == 1, f"run {i}: errback ran {len(errbacks)} times"
        assert errbacks[0]["exc_type"] == "Boom" and errbacks[0]["exc"] == f"kaput {i}"
        assert chain_states(r) == ["NOT_RUN", "NOT_RUN", "FAILURE", "SUCCESS"], f"run {i}"
        assert r.parent.parent.parent.get(timeout=10) == i + 1  # the first step keeps its result


@pytest.mark.timeout(240)
def test_chord_header_failure_errback_once_body_never_runs(engine, tmp_path):
    t, send = engine
    sent = []
    for i in range(REPS):
        log = str(tmp_path / f"{i}.jsonl")
        c = nc.chord([t.add.s(i, 1), t.fail.s(message=f"header {i}"), t.add.s(2, 2)],
                     t.record.s(path=log, tag="body"))
        sent.append((i, log, send(c, link_error=t.errback.s(path=log))))
    for i, log, r in sent:
        _assert_raises_original(r, f"header {i}")
        settle(r)
        assert records(log, "body") == [], f"run {i}: the chord body ran"
        errbacks = records(log, "errback")
        assert len(errbacks) == 1, f"run {i}: errback ran {len(errbacks)} times"
        assert errbacks[0]["exc"] == f"header {i}"
        assert r.state == "NOT_RUN"
        assert [m.state for m in r.parent.results] == ["SUCCESS", "FAILURE", "SUCCESS"]
