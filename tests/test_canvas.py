"""nbcanvas.canvas: immutable signatures, the primitives, the ``|`` rules, freeze and walking."""
from __future__ import annotations

import pickle

import pytest

import nbcanvas as nc
from nbcanvas import Signature, chain, chord, group
from nbcanvas.canvas import chunks, count_nodes, iter_nodes, rekey, xmap

from .growth import assert_linear

app = nc.App("test_canvas")


# Functions stay importable under their own names, so plain pickle can find them.
def _add(x, y):
    return x + y


def _tsum(xs):
    return sum(xs)


def _inc(x):
    return x + 1


def _noargs():
    return 0


def _record(path, *args):
    with open(path, "a") as f:
        f.write(repr(args) + "\n")
    return args


add = app.task(_add, name="canvas.add")
tsum = app.task(_tsum, name="canvas.tsum")
inc = app.task(_inc, name="canvas.inc")
noargs = app.task(_noargs, name="canvas.noargs")
record = app.task(_record, name="canvas.record")


# -- immutability -----------------------------------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda: add.s(1, 1),
    lambda: chain(add.s(1, 1), inc.s()),
    lambda: group(add.s(1, 1)),
    lambda: chord([add.s(1, 1)], tsum.s()),
    lambda: nc.foreach(inc.s()),
    lambda: nc.branch(inc.s(), inc.s()),
    lambda: inc.map([1]),
    lambda: add.chunks([(1, 1)], 1),
])
def test_setattr_raises(make):
    sig = make()
    for attr in ("args", "options", "immutable", "task", "links", "new_attr"):
        with pytest.raises(AttributeError, match="immutable"):
            setattr(sig, attr, None)
    with pytest.raises(AttributeError):
        del sig.args


def test_builders_return_copies():
    s = add.s(1)
    s_set = s.set(countdown=1)
    s_clone = s.clone((2,))
    s_link = s.link(inc.s())
    s_err = s.link_error(inc.s())
    s_frozen = s.freeze()
    for other in (s_set, s_clone, s_link, s_err, s_frozen):
        assert other is not s
    assert s.set() is not s
    # the original is untouched
    assert (s.args, s.options, s.links, s.errbacks, s.id) == ((1,), {}, (), (), None)
    assert s_set.options == {"countdown": 1}
    assert s_clone.args == (2, 1)
    assert s_link.links == (inc.s(),) and s_link.errbacks == ()
    assert s_err.errbacks == (inc.s(),) and s_err.links == ()
    assert s_frozen.id is not None


def test_set_merges_and_does_not_touch_the_original_dict():
    s = add.s(1, 1).set(countdown=1)
    t = s.set(priority=2)
    assert s.options == {"countdown": 1}
    assert t.options == {"countdown": 1, "priority": 2}
    assert t.set(countdown=5).options == {"countdown": 5, "priority": 2}


def test_clone_prepends_args_and_overrides_kwargs():
    s = add.s(y=1)
    c = s.clone((5,), {"y": 2})
    assert (c.args, c.kwargs) == ((5,), {"y": 2})
    assert s.kwargs == {"y": 1}
    assert add.s(2).clone((3,)).args == (3, 2)
    assert add.si(2, 3).clone((1,), {"y": 9}) == add.si(2, 3)
    assert add.s(1).clone(countdown=3).options == {"countdown": 3}


def test_clone_of_containers():
    c = chain(add.s(1), inc.s()).clone((5,))
    assert c.tasks[0].args == (5, 1) and c.tasks[1].args == ()
    g = group(add.s(1), add.s(2)).clone((5,))
    assert [t.args for t in g.tasks] == [(5, 1), (5, 2)]
    ch = chord([add.s(1)], tsum.s()).clone((5,))
    assert ch.header.tasks[0].args == (5, 1) and ch.body.args == ()


def test_link_accepts_lists_and_keeps_order():
    s = add.s(1, 1).link([inc.s(), tsum.s()]).link(inc.si(0))
    assert s.links == (inc.s(), tsum.s(), inc.si(0))
    with pytest.raises(TypeError, match="link callback is not a signature"):
        add.s(1, 1).link(42)
    with pytest.raises(TypeError, match="did you mean _inc.s"):
        add.s(1, 1).link_error(inc)
    assert add.s(1, 1).on_error(inc.s()) == add.s(1, 1).link_error(inc.s())


def test_set_with_link_options():
    s = add.s(1, 1).set(link=inc.s(), link_error=tsum.s(), countdown=1)
    assert s.links == (inc.s(),) and s.errbacks == (tsum.s(),)
    assert s.options == {"countdown": 1}


def test_primitives_refuse_link_keywords():
    with pytest.raises(TypeError, match="link"):
        group(add.s(1, 1), link=inc.s())


def test_kwargs_of_a_copy_are_not_shared_on_override():
    s = add.s(y=1)
    c = s.clone(kwargs={"y": 2})
    assert s.kwargs == {"y": 1} and c.kwargs == {"y": 2}


# -- freeze -------------------------------------------------------------------------------------


def test_freeze_assigns_ids_everywhere_and_returns_a_copy():
    c = chain(add.s(1, 1), group(inc.s(), inc.s()), chord([inc.s()], tsum.s()),
              nc.foreach(inc.s()), nc.branch(inc.s(), inc.s(), inc.s()))
    c = c.link(inc.s()).link_error(inc.s())
    f = c.freeze()
    # (a chain's and a chord's id are those of their last step / body)
    assert all(n.id is None for n in iter_nodes(c))
    ids = [n.id for n in iter_nodes(f) if n.kind not in ("chain", "chord")]
    assert all(ids) and len(ids) == len(set(ids))
    assert f.id == f.tasks[-1].id  # a chain's result is its last step's
    assert f.tasks[2].id == f.tasks[2].body.id  # a chord's result is its body's


def test_freeze_keeps_existing_ids_and_accepts_one():
    f = group(add.s(1, 1), add.s(2, 2)).freeze()
    assert f.freeze() == f
    g = add.s(1, 1).freeze("my-id")
    assert g.id == "my-id"
    assert add.s(1, 1).set(task_id="fixed").freeze().id == "fixed"
    assert add.s(1, 1).set(task_id="fixed").id == "fixed"
    c = chain(add.s(1, 1), inc.s()).freeze("result-id")
    assert c.id == "result-id" and c.tasks[0].id != "result-id"
    assert add.s(1, 1).freeze().id != add.s(1, 1).freeze().id


def test_copies_keep_every_field_of_every_kind():
    """``_replace`` (each slot's own setter) and the fast copies of ``task.s()`` and
    ``freeze()`` give the same node as a field-by-field rebuild, for every kind of node."""
    from nbcanvas.canvas.base import _rebuild, _slots
    nodes = list(iter_nodes(chain(add.s(1, 1).set(countdown=1), group(inc.si(2), inc.s()),
                                  chord([inc.s()], tsum.s()), nc.foreach(inc.s()),
                                  nc.branch(inc.s(), inc.s(), inc.s()), inc.map([1, 2]),
                                  add.chunks([(1, 1)], 1)).link(inc.s())))
    assert {n.kind for n in nodes} >= {"chain", "group", "chord", "foreach", "branch", "xmap",
                                       "chunks", "signature"}
    for n in nodes:
        fields = {f: getattr(n, f) for f, _ in _slots(type(n))}
        copy = n._replace()
        assert copy is not n and type(copy) is type(n)
        assert {f: getattr(copy, f) for f in fields} == fields == \
            {f: getattr(_rebuild(type(n), fields), f) for f in fields}
    s = add.s(1, 2)
    assert s._with_id("x") == s._replace(_id="x") == Signature(add, (1, 2)).freeze("x")
    assert inc.si(2)._with_id("y") == inc.si(2)._replace(_id="y")
    assert add.s(1, 2)._type is add and add.s(1, 2).options == {} and add.s(1, 2).links == ()


def test_freeze_expands_chunks_into_their_group():
    f = add.chunks([(1, 1)] * 5, 2).freeze()
    assert isinstance(f, group) and len(f.tasks) == 3


# -- | rules ------------------------------------------------------------------------------------


def test_pipe_builds_chains_and_flattens():
    a, b, c, d = add.s(1, 1), inc.s(), inc.s(), inc.s()
    assert isinstance(a | b, chain) and (a | b).tasks == (a, b)
    assert (a | b | c).tasks == (a, b, c)
    assert (a | (b | c)).tasks == (a, b, c)
    assert ((a | b) | (c | d)).tasks == (a, b, c, d)
    assert chain(chain(a, b), chain(c, d)).tasks == (a, b, c, d)
    assert chain([a, b, c]).tasks == (a, b, c)
    assert (a | b) == chain(a, b)


def test_chain_with_options_or_callbacks_is_not_flattened():
    inner = chain(add.s(1, 1), inc.s()).set(priority=1)
    outer = chain(inner, inc.s())
    assert len(outer.tasks) == 2 and outer.tasks[0] == inner
    linked = chain(add.s(1, 1), inc.s()).link(inc.s())
    assert len((linked | inc.s()).tasks) == 2


def test_group_pipe_signature_is_a_chord():
    g = group(add.s(1, 1), add.s(2, 2))
    c = g | tsum.s()
    assert isinstance(c, chord)
    assert c.header == g and c.body == tsum.s()
    assert c == chord(g, tsum.s())
    assert isinstance(g | inc.map([1]), chord)


def test_chain_of_group_then_signature_runs_as_a_chord():
    c = chain(group(add.s(1, 1), add.s(2, 2)), tsum.s())
    r = c.apply()
    assert r.get() == 6
    assert isinstance(r.parent, nc.GroupResult)
    assert r.parent.get() == [2, 4]
    assert chord(group(add.s(1, 1), add.s(2, 2)), tsum.s()).apply().get() == 6


def test_pipe_with_non_signature_is_not_implemented():
    with pytest.raises(TypeError):
        add.s(1, 1) | 42
    with pytest.raises(TypeError):
        42 | add.s(1, 1)


def test_shared_prefix_of_pipe_chains_stays_independent():
    base = add.s(1, 1) | inc.s()
    x = base | inc.s().set(priority=1)
    y = base | inc.s().set(priority=2)
    z = x | inc.s().set(priority=3)
    w = x | inc.s().set(priority=4)
    assert len(base.tasks) == 2
    assert [t.options.get("priority") for t in x.tasks] == [None, None, 1]
    assert [t.options.get("priority") for t in y.tasks] == [None, None, 2]
    assert [t.options.get("priority") for t in z.tasks] == [None, None, 1, 3]
    assert [t.options.get("priority") for t in w.tasks] == [None, None, 1, 4]
    assert x.apply().get() == 4 and base.apply().get() == 3


def test_empty_chain():
    assert chain().tasks == ()
    assert repr(chain()) == "chain()"
    assert (chain() | add.s(1, 1)).tasks == (add.s(1, 1),)
    with pytest.raises(ValueError, match="empty chain"):
        chain().apply()


# -- group, chord and friends -----------------------------------------------------------------


def test_group_forms():
    a, b = add.s(1, 1), add.s(2, 2)
    assert group(a, b).tasks == (a, b)
    assert group([a, b]).tasks == (a, b)
    assert group((s for s in (a, b))).tasks == (a, b)
    assert group(add.s(i, i) for i in range(3)).tasks == tuple(add.s(i, i) for i in range(3))
    assert group().tasks == () and len(group(a, b)) == 2
    assert group(a).tasks == (a,)


@pytest.mark.parametrize("args, where", [
    ((add.s(1, 1), 42), "member 1"),
    (([add.s(1, 1), add.s(2, 2), None],), "member 2"),
    (("abc",), "argument"),
    ((42,), "argument"),
])
def test_group_non_signature_names_the_position(args, where):
    with pytest.raises(TypeError, match=f"group\\(\\) {where} is not a signature"):
        group(*args)


def test_group_of_a_task_hints_at_s():
    with pytest.raises(TypeError, match=r"did you mean _add.s\(\)"):  # the function's name
        group(add)
    with pytest.raises(TypeError, match=r"member 0 .*did you mean _add.s\(\)"):
        chain(add, inc.s())


def test_chain_of_a_list_hints_at_group():
    with pytest.raises(TypeError, match="member 1 .*wrap it in nc.group"):
        chain(add.s(1, 1), [inc.s(), inc.s()])


def test_chord_forms_are_lazy_and_equal(tmp_path):
    path = str(tmp_path / "ran")
    header = [record.s(path, i) for i in range(3)]
    a = chord(header)(tsum.si([1]))
    b = chord(header, tsum.si([1]))
    assert isinstance(a, chord) and a == b
    assert not (tmp_path / "ran").exists()  # nothing ran or was sent
    assert a.tasks == tuple(header)
    assert chord(group(header), tsum.si([1])) == a
    assert chord(s for s in header)(tsum.si([1])) == a
    assert chord(header).body is None
    with pytest.raises(TypeError, match="body signature is missing"):
        chord(header)()
    with pytest.raises(TypeError, match="chord body is not a signature"):
        chord(header, 42)
    with pytest.raises(ValueError, match="chord without a body"):
        chord(header).apply()


def test_chord_call_keeps_options():
    c = chord([add.s(1, 1)], priority=2)(tsum.s())
    assert c.options == {"priority": 2}


def test_get_on_a_canvas_never_sent():
    for sig in (add.s(1, 1), chain(add.s(1, 1), inc.s()), group(add.s(1, 1)),
                chord([add.s(1, 1)], tsum.s())):
        with pytest.raises(RuntimeError, match=r"call \.delay\(\)"):
            sig.get()


def test_signatures_are_not_iterable_nor_hashable():
    with pytest.raises(TypeError, match="not iterable"):
        list(add.s(1, 1))
    with pytest.raises(TypeError):
        hash(add.s(1, 1))


def test_equality():
    assert add.s(1) == add.s(1)
    assert add.s(1) != add.s(2)
    assert add.s(1, 2) != add.si(1, 2)
    assert add.s(1) != add.s(1).set(countdown=1)
    assert add.s(1) != add.s(1).link(inc.s())
    assert group(add.s(1)) != chain(add.s(1))
    assert group(add.s(1)) == group([add.s(1)])
    assert add.s(1) != "add.s(1)"


def test_reprs():
    assert repr(add.s(2, 2)) == "add.s(2, 2)"
    assert repr(add.si(5, y=1)) == "add.si(5, y=1)"
    assert repr(add.s(2) | inc.s()) == "add.s(2) | inc.s()"
    assert repr(chord([add.s(1, 1)], tsum.s())) == "chord([add.s(1, 1)], tsum.s())"
    assert repr(add.s(1).set(countdown=1).link(inc.s())) == \
        "add.s(1).set(countdown=1).link(inc.s())"
    assert repr(group(add.s(i, i) for i in range(12))).endswith("… 2 more])")
    assert repr(inc.map([1, 2])) == "inc.map([1, 2])"
    assert repr(nc.foreach(inc.s())) == "foreach(inc.s())"
    assert repr(add.s(1, 1).set(shadow="nice")) == "nice.s(1, 1)"


def test_signature_function_and_constructor():
    assert nc.signature("canvas.add", args=(2, 2)) == add.s(2, 2)
    assert nc.signature("canvas.add", args=(2, 2), immutable=True) == add.si(2, 2)
    assert nc.signature("canvas.add", (2,), {"y": 2}, countdown=1) == \
        add.s(2, y=2).set(countdown=1)
    s = add.s(2)
    assert nc.signature(s) is s
    assert nc.signature(s, args=(1,)) == add.s(1, 2)
    assert nc.signature(s.to_dict()) == s
    sig = Signature("canvas.add", (1, 1), link=inc.s())
    assert sig.links == (inc.s(),)
    assert Signature(add, (1, 1)) == add.s(1, 1)
    with pytest.raises(TypeError, match="needs a task"):
        Signature(42)
    with pytest.raises(TypeError):
        nc.signature("canvas.add", args=(1, 2, 3))


def test_map_starmap_chunks_values():
    assert inc.map([1, 2]) == inc.map((1, 2))
    assert inc.map([1]) != inc.map([2])
    assert inc.map([1]) != inc.starmap([(1,)])
    c = add.chunks([(1, 1)] * 5, 2)
    assert isinstance(c, chunks)
    assert c.group() == group(xmap(add, [(1, 1)] * 2, star=True),
                              xmap(add, [(1, 1)] * 2, star=True),
                              xmap(add, [(1, 1)], star=True))
    assert c.apply().get() == [[2, 2], [2, 2], [2]]


def test_foreach_and_branch_structure():
    f = nc.foreach(inc.s())
    assert f.children() == (inc.s(),) and f.kind == "foreach"
    assert f.clone(([1, 2],)).args == ([1, 2],)
    with pytest.raises(TypeError, match="one input"):
        f.clone((1, 2))
    b = nc.branch(inc.s(), add.s(1))
    assert b.children() == (inc.s(), add.s(1)) and b.otherwise is None
    with pytest.raises(TypeError, match="one input"):
        b.clone((1,), {"x": 2})
    with pytest.raises(TypeError, match="branch condition is not a signature"):
        nc.branch(lambda x: x, inc.s())


# -- walking ------------------------------------------------------------------------------------


def test_iter_nodes_order_and_count():
    c = chain(add.s(1, 1), group(inc.s(), inc.s()), tsum.s().link(inc.s()))
    nodes = list(iter_nodes(c))
    assert nodes[0] is c
    assert [n.kind for n in nodes] == ["chain", "signature", "group", "signature", "signature",
                                       "signature", "signature"]
    assert count_nodes(c) == 7
    assert len(list(iter_nodes(c, include_callbacks=False))) == 6


def test_rekey_suffixes_every_id():
    f = chain(add.s(1, 1), group(inc.s(), inc.s())).link(inc.s()).freeze()
    r = rekey(f, "7")
    old = [n.id for n in iter_nodes(f) if n.kind != "chain"]
    new = [n.id for n in iter_nodes(r) if n.kind != "chain"]
    assert r.id == f"{f.id}:7"
    assert new == [f"{i}:7" for i in old]


def test_pickle_round_trip():
    c = chain(add.s(1, 1), group(inc.s(), inc.s()), tsum.s()).link(inc.s()).freeze()
    d = pickle.loads(pickle.dumps(c))
    assert d == c and d.id == c.id
    assert d.apply().get() == 6


# -- size and growth ----------------------------------------------------------------------------


def test_build_10k_group_and_1000_deep_chain():
    g = group(add.s(i, i) for i in range(10_000))
    assert len(g.tasks) == 10_000 and g.tasks[-1] == add.s(9999, 9999)
    c = add.s(0, 0)
    for _ in range(999):
        c = c | inc.s()
    assert len(c.tasks) == 1000
    assert count_nodes(c) == 1001
    f = c.freeze()
    assert len({t.id for t in f.tasks}) == 1000
    assert count_nodes(g.freeze()) == 10_001
    assert repr(g).endswith("… 9,990 more])")


def _pipe_chain(n):
    sig = add.s(0, 0)
    for _ in range(n):
        sig = sig | inc.s()
    return sig


def test_building_a_chain_by_pipe_is_linear():
    assert len(_pipe_chain(2000).tasks) == 2001
    # n=1000 -> 4000: linear growth gives ~4x; quadratic (Celery's) would give ~16x
    assert_linear(lambda n: lambda: _pipe_chain(n), 1000)


def test_building_a_group_is_linear():
    assert_linear(lambda n: lambda: group(add.s(i, i) for i in range(n)), 2500)


def test_freezing_is_linear():
    assert_linear(lambda n: _pipe_chain(n).freeze, 1500)
    assert_linear(lambda n: group(add.s(i, i) for i in range(n)).freeze, 1500)


def test_the_garbage_collector_stays_paused_while_any_thread_builds():
    """``no_gc`` is one pause for the process: a thread that leaves it first does not switch
    the collector back on under another thread still inside; the last one out does."""
    import gc
    import threading

    from nbcanvas.canvas.base import no_gc
    inside, leave, states = threading.Event(), threading.Event(), []

    def other() -> None:
        with no_gc():
            inside.set()
            assert leave.wait(30)
    assert gc.isenabled()
    helper = threading.Thread(target=other)
    helper.start()
    assert inside.wait(30)
    with no_gc():
        leave.set()
        helper.join(30)
        states.append(gc.isenabled())  # the helper has left; this thread has not
    states.append(gc.isenabled())
    assert not helper.is_alive() and states == [False, True]
