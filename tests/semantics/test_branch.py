"""``nc.branch`` (issue 13): wherever a signature goes, decided on the cluster, same both ways."""
from __future__ import annotations

import json

import pytest

import nbcanvas as nc
from nbcanvas import chain, chord, group

from . import seedtasks as t
from .seedtasks import records


def test_branch_as_group_member(run):
    br = nc.branch(t.is_even.s(), t.mul.s(10), t.add.s(1))
    assert run(chain(t.identity.s(4), group(br, t.add.s(1)))).get() == [40, 5]
    assert run(chain(t.identity.s(5), group(br, t.add.s(1)))).get() == [6, 6]


def test_branch_as_chord_header_member(run):
    br = nc.branch(t.is_even.s(), t.mul.s(10))
    wf = chain(t.identity.s(2), chord([br, t.add.s(1)], t.tsum.s()))
    assert run(wf).get() == 20 + 3


def test_nested_branches(run):
    inner = nc.branch(t.is_even.s(), t.mul.s(100), t.mul.s(1000))
    outer = nc.branch(t.is_even.s(), chain(t.add.s(2), inner), t.add.s(1))
    assert run(chain(t.identity.s(2), outer)).get() == 400   # 2 -> 4 -> even -> 400
    assert run(chain(t.identity.s(3), outer)).get() == 4


def test_immutable_branch_ignores_the_input(run):
    br = nc.branch(t.is_even.s(), t.add.si(1, 1), t.add.si(5, 5))
    assert run(chain(t.identity.s(8), br)).get() == 2
    assert run(chain(t.identity.s(9), br)).get() == 10


def test_retries_inside_a_branch(run, log):
    br = nc.branch(t.is_even.s(), chain(t.identity.si(3), t.flaky.s(path=log)))
    assert run(chain(t.identity.s(2), br)).get() == 2  # third attempt: two retries
    assert [r["attempt"] for r in records(log)] == [1, 2, 3]


def test_steps_inside_a_branch_have_their_own_results(run):
    wf = chain(t.identity.s(6), nc.branch(t.is_even.s(), chain(t.add.s(1), t.mul.s(2)))).freeze()
    b = wf.tasks[1]
    r = run(wf)
    assert r.get() == 14
    first, second = b.then.tasks
    assert nc.AsyncResult(first.id).get() == 7 and nc.AsyncResult(first.id).state == "SUCCESS"
    assert nc.AsyncResult(second.id).get() == 14
    assert nc.AsyncResult(b.cond.id).get() is True


def test_link_and_link_error_inside_a_branch(run, log, settle):
    then = t.fail.s().link_error(t.record.s(path=log, tag="errback"))
    otherwise = t.add.s(1).link(t.record.s(path=log, tag="link"))
    wf_odd = chain(t.identity.s(3), nc.branch(t.is_even.s(), then, otherwise))
    assert settle(run(wf_odd)).get() == 4
    wf_even = chain(t.identity.s(4), nc.branch(t.is_even.s(), then, otherwise))
    r = run(wf_even)
    with pytest.raises(t.Boom):
        r.get()
    settle(r)
    assert [rec["task"] for rec in records(log)] == ["link", "errback"]


def test_branch_round_trips_through_json():
    br = chain(t.identity.s(1), nc.branch(t.is_even.s(), group(t.add.s(1), t.mul.s(2)),
                                          chord([t.add.s(1)], t.tsum.s()))).freeze()
    again = nc.Signature.from_dict(json.loads(json.dumps(br.to_dict())))
    assert again == br


@pytest.mark.runners("cluster")
def test_a_flat_branch_adds_no_submission(run, dask_client):
    wf = chain(t.identity.s(3), nc.branch(t.is_even.s(), t.mul.s(10), t.add.s(1)), t.add.s(1))
    r = run(wf)
    assert r.get() == 5
    keys = set(r.handle.backend.futures)
    assert len(keys) == 1  # the whole chain, branch included, is one dask task
    ids = list(r.handle.nodes)

    def tasks_of(dask_scheduler):
        return sorted(str(k) for k in dask_scheduler.tasks if any(i in str(k) for i in ids))
    assert dask_client.run_on_scheduler(tasks_of) == sorted(keys)  # nothing else was submitted


@pytest.mark.runners("cluster-async")
def test_revoke_reaches_steps_inside_a_branch(run, tmp_path):
    gate = str(tmp_path / "gate")
    wf = chain(t.identity.si(2), nc.branch(t.is_even.s(), chain(t.delayed.s(0.0), t.add.s(1),
                                                                  t.add.s(1))))
    wf = chain(t.gate.si(gate), wf)  # hold the workflow until it is revoked
    r = run(wf)
    r.revoke()
    open(gate, "w").close()
    with pytest.raises(nc.TaskRevokedError):
        r.get(timeout=30)
