"""nbcanvas.structure: parent/child links read from the ``to_dict`` form of a workflow."""
from __future__ import annotations

import nbcanvas as nc
from nbcanvas.structure import children_of, parent_map, parent_of, result_id

app = nc.App("tests.test_structure", set_as_current=False)


@app.task(name="tst.inc")
def inc(x):
    return x + 1


@app.task(name="tst.tsum")
def tsum(xs):
    return sum(xs)


@app.task(name="tst.seq")
def seq(n):
    return list(range(n))


def frozen(sig):
    f = sig.freeze()
    return f, f.to_dict(strict=False)


def test_result_id_of_each_kind():
    sig, d = frozen(nc.chain(inc.s(1), nc.chord([inc.s(), inc.s()], tsum.s())))
    assert result_id(d) == sig.id == sig.tasks[1].body.id
    g, dg = frozen(nc.group(inc.s(1), inc.s(2)))
    assert result_id(dg) == g.id
    assert result_id({"type": "chain", "tasks": [], "id": "c"}) == "c"
    assert result_id({"type": "chord", "id": "x"}) == "x"


def test_chain_steps_have_the_previous_step_as_parent():
    sig, d = frozen(nc.chain(inc.s(1), inc.s(), inc.s()))
    a, b, c = sig.tasks
    assert parent_map(d) == {b.id: a.id, c.id: b.id}


def test_a_group_in_a_chain():
    sig, d = frozen(nc.chain(inc.s(1), nc.group(inc.s(), nc.chain(inc.s(), inc.s())), tsum.s()))
    a, g, s = sig.tasks
    pm = parent_map(d)
    assert pm[g.id] == a.id  # the group's entry (Celery: the group result's parent)
    assert pm[s.id] == g.id
    inner = g.tasks[1]
    assert pm[inner.tasks[1].id] == inner.tasks[0].id


def test_a_chord_body_has_its_header_as_parent():
    sig, d = frozen(nc.chord([inc.s(1), inc.s(2)], tsum.s()))
    assert parent_map(d)[sig.body.id] == sig.header.id
    nested, dn = frozen(nc.chain(inc.s(1), nc.chord([inc.s(), inc.s()], tsum.s()), inc.s()))
    first, ch, last = nested.tasks
    pm = parent_map(dn)
    assert pm[ch.body.id] == ch.header.id and pm[last.id] == ch.body.id


def test_callbacks_and_branches_are_walked():
    sig, d = frozen(nc.chain(inc.s(1), nc.branch(inc.s(), nc.chain(inc.s(), inc.s())))
                    .set(link=nc.chain(inc.s(), inc.s())))
    pm = parent_map(d)
    then = sig.tasks[1].then
    assert pm[then.tasks[1].id] == then.tasks[0].id
    cb = sig.links[0]
    assert pm[cb.tasks[1].id] == cb.tasks[0].id


def test_parent_of_caches_the_map_on_the_handle():
    sig = nc.chain(inc.s(1), inc.s()).freeze()
    h = sig.apply().handle
    assert parent_of(h, sig.id) == sig.tasks[0].id and parent_of(h, sig.tasks[0].id) is None
    h._parents = {"x": "y"}
    assert parent_of(h, "x") == "y"  # read from the cache, not recomputed


def test_children_are_callbacks_and_run_time_nodes():
    sig = nc.chain(seq.s(2), nc.foreach(inc.s())).set(link=inc.s()).freeze()
    h = sig.apply().handle
    fe = sig.tasks[1]
    assert fe.id == sig.id  # the chain's result, which owns the chain's callback
    assert set(children_of(h, fe.id)) == {f"{fe.body.id}:0", f"{fe.body.id}:1", sig.links[0].id}
    assert children_of(h, sig.tasks[0].id) == []
