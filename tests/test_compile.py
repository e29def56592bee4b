"""nbcanvas.compile: a frozen canvas -> units, node table and result location.

Covers ``compile/__init__`` (``compile_canvas``, ``CompiledGraph``), ``lower`` (fusion,
batching, routing splits, node table, selectors, callbacks, salt), ``flat`` (arity checks,
options) and ``programs`` (plain, picklable data). Nothing here runs a task.
"""
from __future__ import annotations

import gc
import math
import time

import cloudpickle
import pytest

import nbcanvas as nc
from nbcanvas.compile import CompiledGraph, Lst, NodeInfo, Ref, compile_canvas
from nbcanvas.compile.flat import is_flat, split_options
from nbcanvas.compile.lower import BATCH_TARGET, selector
from nbcanvas.compile.programs import Batch, Dyn, MapStep, Par, Seq, Step, UnitProgram

app = nc.App("tests.test_compile", set_as_current=False)


@app.task(name="tc.add")
def add(x, y):
    return x + y


@app.task(name="tc.inc")
def inc(x):
    return x + 1


@app.task(name="tc.tsum")
def tsum(xs):
    return sum(xs)


@app.task(name="tc.zero")
def zero():
    return 0


@app.task(name="tc.on_error")
def on_error(exc, tb):
    return str(exc)


@app.task(name="tc.gpu", resources={"GPU": 1}, max_retries=7)
def gpu(x):
    return x


def compiled(sig, **kw) -> tuple[nc.Signature, CompiledGraph]:
    f = sig.freeze()
    return f, compile_canvas(f, f.id, **kw)


def steps_of(cg: CompiledGraph) -> list:
    return [p for u in cg.units.values() for p, _ in u.progs]


# -- fusion ---------------------------------------------------------------------------------


def test_a_chain_of_flat_steps_is_one_unit():
    sig, cg = compiled(nc.chain(add.s(1, 1), inc.s(), inc.s(), inc.s(), inc.s()))
    assert len(cg.units) == 1
    (unit,) = cg.units.values()
    (prog, sel), = unit.progs
    assert isinstance(prog, Seq) and sel is None and unit.deps == []
    assert [p.id for p in prog.items] == [t.id for t in sig.tasks]
    assert {cg.nodes[t.id].key for t in sig.tasks} == {unit.key}  # every step has its row
    assert cg.result == Ref(unit.key, sig.id)


def test_without_fusion_every_step_is_a_unit_fed_by_the_one_before():
    sig, cg = compiled(nc.chain(add.s(1, 1), inc.s(), inc.s(), inc.s(), inc.s()), fusion=False)
    assert len(cg.units) == 5
    units = list(cg.units.values())
    assert units[0].deps == [] and units[0].progs[0][1] is None
    for prev, unit, step in zip(units, units[1:], sig.tasks):
        assert unit.deps == [prev.key]
        assert unit.progs[0][1] == ("r", 0, step.id)  # the previous step's outcome


def test_fan_out_splits_a_chain_into_fused_runs():
    sig, cg = compiled(nc.chain(add.s(1, 1), inc.s(), nc.group(inc.s(), inc.s()), tsum.s(),
                                inc.s()))
    a, b, g, c, d = sig.tasks
    assert cg.nodes[a.id].key == cg.nodes[b.id].key
    assert cg.nodes[c.id].key == cg.nodes[d.id].key != cg.nodes[a.id].key
    assert len(cg.units) == 4  # [add, inc] + 2 members + [tsum, inc]


@pytest.mark.parametrize("dynamic", ["foreach", "branch"])
def test_a_step_decided_at_run_time_is_fused_with_its_neighbours(dynamic):
    """A foreach / branch runs inside a unit (its fan-out, if any, is sent from there): the
    steps before and after it share that unit, with no hop between them."""
    step = nc.foreach(inc.s()) if dynamic == "foreach" else \
        nc.branch(zero.si(), nc.group(inc.s(), inc.s()))
    canvas = nc.chain(add.s(1, 1), inc.s(), step, tsum.s())
    sig, cg = compiled(canvas)
    (key,) = cg.units
    assert {cg.nodes[t.id].key for t in sig.tasks} == {key}
    assert cg.fan_outs == {key}
    _, plain = compiled(canvas, fusion=False)  # without fusion, a unit per step as before
    assert len(plain.units) == 4 and len(plain.fan_outs) == 1


def test_units_are_in_dependency_order():
    _, cg = compiled(nc.chain(add.s(1, 1), nc.group(inc.s(), nc.chain(inc.s(), inc.s())),
                              tsum.s(), nc.chord([inc.s(), inc.s()], tsum.s())))
    seen: set[str] = set()
    for key, unit in cg.units.items():
        assert set(unit.deps) <= seen, key
        seen.add(key)
    assert cg.keys == list(cg.units)


# -- batching -------------------------------------------------------------------------------


def expected_units(n: int, parallelism: int) -> int:
    k = max(4 * parallelism, math.ceil(n / BATCH_TARGET))
    return math.ceil(n / math.ceil(n / k))


@pytest.mark.parametrize("parallelism", [2, 8, 50])
def test_a_large_group_of_simple_calls_is_batched_by_column(parallelism):
    n = 10_000
    sig, cg = compiled(nc.group(add.s(i, 1) for i in range(n)), parallelism=parallelism)
    assert len(cg.units) == expected_units(n, parallelism)
    assert expected_units(n, parallelism) == max(4 * parallelism, math.ceil(n / 256))
    progs = steps_of(cg)
    assert all(type(p) is Batch for p in progs)
    assert [i for p in progs for i in p.ids] == [t.id for t in sig.tasks]  # order kept
    first = progs[0]
    assert first.args[:3] == [(0, 1), (1, 1), (2, 1)] and first.kwargs is None
    assert all(cg.nodes[t.id].key is not None for t in sig.tasks)
    assert [r.id for r in cg.where(sig.id).items] == [t.id for t in sig.tasks]


def test_without_batching_every_member_is_a_unit():
    sig, cg = compiled(nc.group(add.s(i, 1) for i in range(10_000)), batching=False)
    assert len(cg.units) == 10_000
    assert all(type(p) is Step for p in steps_of(cg))


def test_a_small_group_is_not_batched():
    _, cg = compiled(nc.group(add.s(i, 1) for i in range(8)), parallelism=2)
    assert len(cg.units) == 8


def test_batch_columns_keep_kwargs_and_become_steps_again():
    sig, cg = compiled(nc.group(add.s(i, y=i) for i in range(100)), parallelism=1)
    progs = steps_of(cg)
    assert all(type(p) is Batch for p in progs)
    b = progs[0]
    assert b.kwargs[:2] == [{"y": 0}, {"y": 1}]
    steps = b.steps()
    assert [s.id for s in steps] == b.ids and steps[1].args == (1,) and steps[1].kwargs == {"y": 1}
    assert all(s.fn is add.run and s.name == "add" for s in steps)


def test_mixed_members_batch_runs_of_one_task_by_column():
    members = [add.s(i, 1) for i in range(30)] + [inc.s(i) for i in range(30)] + \
        [add.s(1, 1).set(max_retries=1)]
    sig, cg = compiled(nc.group(members), parallelism=1)
    progs = steps_of(cg)
    assert {type(p) for p in progs} <= {Batch, Step}
    batched = [i for p in progs if type(p) is Batch for i in p.ids]
    single = [p.id for p in progs if type(p) is Step]
    assert sig.tasks[-1].id in single  # a member with options of its own is not a column
    assert sorted(batched + single) == sorted(t.id for t in sig.tasks)
    assert all(len({sig.tasks[[t.id for t in sig.tasks].index(i)].name for i in p.ids}) == 1
               for p in progs if type(p) is Batch)


# -- routing --------------------------------------------------------------------------------


def test_routing_options_split_a_chain():
    sig, cg = compiled(nc.chain(nc.group(add.s(1, 1), add.s(2, 2)), tsum.s(),
                                inc.s().set(resources={"GPU": 1}), inc.s(),
                                inc.s().set(priority=3), inc.s().set(priority=3),
                                inc.s().set(workers=["tcp://w:1"])))
    g, s, r, plain, p1, p2, w = sig.tasks
    key = {t.id: cg.nodes[t.id].key for t in sig.tasks[1:]}
    assert len({key[s.id], key[r.id], key[plain.id], key[p1.id], key[w.id]}) == 5
    assert key[p1.id] == key[p2.id]  # same route: fused
    assert cg.units[key[r.id]].routing == {"resources": {"GPU": 1}}
    assert cg.units[key[p1.id]].routing == {"priority": 3}
    assert cg.units[key[w.id]].routing == {"workers": ["tcp://w:1"]}
    assert cg.units[key[plain.id]].routing == {} == cg.units[key[s.id]].routing


def test_routing_options_inside_a_flat_chain_are_kept():
    sig, cg = compiled(nc.chain(add.s(1, 1), inc.s().set(resources={"GPU": 1})))
    routes = [u.routing for u in cg.units.values()]
    assert {"resources": {"GPU": 1}} in routes


def test_routing_options_of_a_flat_chain_reach_its_unit():
    _, cg = compiled(nc.chain(add.s(1, 1), inc.s()).set(priority=5))
    assert all(u.routing == {"priority": 5} for u in cg.units.values())


def test_routing_options_split_group_batches():
    members = [inc.s(i) for i in range(40)] + [inc.s(i).set(workers=["a"]) for i in range(40)]
    sig, cg = compiled(nc.group(members), parallelism=1)
    for unit in cg.units.values():
        ids = {p.id for p, _ in unit.progs} | {i for p, _ in unit.progs
                                                if type(p) is Batch for i in p.ids}
        routed = {t.id for t in sig.tasks[40:]}
        assert ids <= routed or not ids & routed  # never mixed in one unit
        assert (unit.routing == {"workers": ["a"]}) == bool(ids & routed)


def test_task_options_and_container_options_are_inherited():
    sig, cg = compiled(nc.group(gpu.s(1), inc.s(2)).set(priority=4, max_retries=2))
    g, i = sig.tasks
    assert cg.units[cg.nodes[g.id].key].routing == {"resources": {"GPU": 1}, "priority": 4}
    assert cg.units[cg.nodes[i.id].key].routing == {"priority": 4}
    run, route = split_options(gpu.s(1).set(max_retries=9), {"max_retries": 2, "priority": 1})
    assert run == {"max_retries": 9} and route == {"resources": {"GPU": 1}, "priority": 1}
    assert split_options(gpu.s(1), {})[0] == {"max_retries": 7}  # the task default


def test_countdown_and_expires_become_absolute_times_when_compiled():
    before = time.time()
    run, _ = split_options(inc.s(1).set(countdown=30, expires=60), {})
    after = time.time()
    assert before + 30 <= run["not_before"] <= after + 30
    assert before + 60 <= run["expires_at"] <= after + 60
    assert "countdown" not in run and "expires" not in run


# -- node table -----------------------------------------------------------------------------


def test_node_table_of_a_chain_numbers_its_steps():
    sig, cg = compiled(nc.chain(add.s(1, 1), nc.group(inc.s(), inc.s()), tsum.s(),
                                nc.chord([inc.s(), inc.s()], tsum.s()), inc.s()))
    a, g, s, ch, last = sig.tasks
    assert cg.nodes[a.id] == NodeInfo("signature", "add", 0, None, cg.nodes[a.id].key)
    assert cg.nodes[g.id][:5] == ("group", "group", 1, None, None)
    assert cg.nodes[g.id].members == tuple(t.id for t in g.tasks)
    assert all(cg.nodes[t.id].parent == g.id and cg.nodes[t.id].step == 1 for t in g.tasks)
    assert cg.nodes[s.id].step == 2
    assert cg.nodes[ch.header.id].step == cg.nodes[ch.body.id].step == 3  # one chain step
    assert cg.nodes[last.id].step == 4


def test_node_table_steps_do_not_depend_on_fusion():
    sig = nc.chain(add.s(1, 1), inc.s(), inc.s()).freeze()
    fused = compile_canvas(sig, sig.id)
    plain = compile_canvas(sig, sig.id, fusion=False)
    assert [plain.nodes[t.id].step for t in sig.tasks] == [0, 1, 2]
    assert [fused.nodes[t.id].step for t in sig.tasks] == [0, 1, 2]


def test_node_table_of_a_chord():
    sig, cg = compiled(nc.chord([inc.s(1), nc.chain(inc.s(2), inc.s())], tsum.s()))
    hdr = sig.header
    assert cg.nodes[hdr.id][:4] == ("group", "group", 0, None)
    assert cg.nodes[sig.body.id][:4] == ("signature", "tsum", 1, None)
    inner = hdr.tasks[1]
    assert all(cg.nodes[t.id].parent == hdr.id and cg.nodes[t.id].step == 0
               for t in (hdr.tasks[0], *inner.tasks))
    assert inner.id not in cg.nodes or cg.nodes[inner.id].kind != "chain"  # chains have no row


def test_node_table_of_dynamic_steps_and_callbacks():
    sig, cg = compiled(nc.chain(add.s(1, 1), nc.foreach(inc.s()),
                                nc.branch(zero.si(), inc.s(), tsum.s()).set(link=inc.s())))
    a, fe, br = sig.tasks
    assert cg.nodes[fe.id][:3] == ("foreach", "foreach", 1)
    assert fe.body.id not in cg.nodes  # a template: its elements come at run time
    assert cg.nodes[br.id][:3] == ("branch", "branch", 2)
    assert {cg.nodes[c.id].parent for c in (br.cond, br.then, br.otherwise)} == {br.id}
    cb = br.links[0]
    assert cg.nodes[cb.id][0] == "callback" and cg.nodes[cb.id].parent == br.id


# -- selectors and where ----------------------------------------------------------------------


def test_selector_encodes_inputs_relative_to_the_dependency_list():
    deps: list[str] = []
    index: dict[str, int] = {}
    assert selector(None, deps, index) is None and deps == []
    assert selector(Ref("k1", "a"), deps, index) == ("r", 0, "a")
    lst = Lst((Ref("k1", "a"), Ref("k1", "b"), Ref("k2", "c"), Lst((Ref("k1", "d"),)),
               Ref("k2", "e")))
    assert selector(lst, deps, index) == \
        ("l", (("x", 0, ("a", "b")), ("x", 1, ("c",)), ("l", (("x", 0, ("d",)),)),
               ("x", 1, ("e",))))
    assert deps == ["k1", "k2"]  # each dependency once


def test_a_chord_body_splices_each_header_unit_once():
    sig, cg = compiled(nc.chord([add.s(i, 1) for i in range(1000)], tsum.s()), parallelism=2)
    body = cg.units[cg.nodes[sig.body.id].key]
    (_, sel), = body.progs
    assert sel[0] == "l" and len(sel[1]) == len(body.deps) == len(cg.units) - 1
    assert [i for part in sel[1] for i in part[2]] == [t.id for t in sig.header.tasks]


def test_where_finds_every_node():
    sig, cg = compiled(nc.group(inc.s(1), nc.group(inc.s(2), inc.s(3))), batching=False)
    w = cg.where(sig.id)
    assert isinstance(w, Lst) and isinstance(w.items[1], Lst)
    assert w.items[1].items[0] == Ref(cg.nodes[sig.tasks[1].tasks[0].id].key,
                                      sig.tasks[1].tasks[0].id)
    assert cg.where("no-such-node") is None


# -- callbacks ------------------------------------------------------------------------------


def test_a_task_callback_travels_with_its_step():
    sig, cg = compiled(add.s(1, 1).set(link=inc.s(), link_error=on_error.s()))
    (unit,) = cg.units.values()
    (step, _), = unit.progs
    assert [c.id for c in step.links] == [sig.links[0].id]
    eb = step.errbacks[0]
    assert eb.opts.get("errback_traceback") is True and eb.args == ()  # (exc, traceback)


def test_a_chain_callback_attaches_inline():
    sig, cg = compiled(nc.chain(add.s(1, 1), inc.s()).set(link=inc.s()))
    assert len(cg.units) == 1
    (unit,) = cg.units.values()
    prog = unit.progs[-1][0]
    assert isinstance(prog, Seq) and [c.id for c in prog.links] == [sig.links[0].id]
    assert cg.nodes[sig.links[0].id] == NodeInfo("callback", "inc", 0, sig.id, unit.key)


def test_a_group_callback_gets_a_unit_after_every_member():
    sig, cg = compiled(nc.group(inc.s(1), inc.s(2)).set(link=tsum.s()))
    key = cg.nodes[sig.links[0].id].key
    unit = cg.units[key]
    assert key.startswith("group_callbacks-") and list(cg.units)[-1] == key
    assert set(unit.deps) == {cg.nodes[t.id].key for t in sig.tasks}
    (holder, sel), = unit.progs
    assert isinstance(holder, Seq) and holder.items == () and len(holder.links) == 1
    assert sel[0] == "l"


# -- keys and salt --------------------------------------------------------------------------


def test_keys_read_task_name_and_id():
    sig, cg = compiled(nc.chain(nc.group(add.s(1, 1), inc.s(2)), tsum.s()), fusion=False)
    assert cg.nodes[sig.tasks[0].tasks[0].id].key == f"add-{sig.tasks[0].tasks[0].id}"
    assert cg.nodes[sig.id].key == f"tsum-{sig.id}"


def test_batch_units_are_named_per_workflow_only_with_batch_tags():
    """Tagged (``add_batch.<8 chars of the workflow id>``) for schedulers that hand a name's
    root tasks out in blocks; untagged, every workflow's batches share one name, so one task
    group and prefix on the scheduler and the workers however many workflows are kept."""
    from distributed.utils import key_split, key_split_group
    sig = nc.group(add.s(i, 1) for i in range(1000)).freeze()
    tagged = compile_canvas(sig, sig.id, parallelism=2)
    plain = compile_canvas(sig, sig.id, parallelism=2, batch_tags=False)
    tag = sig.id.replace("-", "")[:8]
    assert len(tagged.units) == len(plain.units) > 1
    assert {key_split_group(k) for k in tagged.units} == {f"add_batch.{tag}"}
    assert {key_split_group(k) for k in plain.units} == {key_split(k) for k in plain.units} \
        == {"add_batch"}
    assert [k.replace(f".{tag}", "", 1) for k in tagged.units] == list(plain.units)


def test_salt_is_appended_to_every_key_and_dependency():
    sig = nc.chain(nc.group(add.s(1, 1), inc.s(2)), tsum.s(), inc.s()).freeze()
    plain = compile_canvas(sig, sig.id)
    salted = compile_canvas(sig, sig.id, salt="~sabc")
    assert list(salted.units) == [k + "~sabc" for k in plain.units]
    assert all(d.endswith("~sabc") for u in salted.units.values() for d in u.deps)
    assert salted.result == Ref(plain.result.key + "~sabc", plain.result.id)


# -- argument completeness at compile time --------------------------------------------------


@pytest.mark.parametrize("make", [
    lambda: add.s(1),                                            # a first step must be complete
    lambda: nc.group(add.s(i) for i in range(100)),              # batched members too
    lambda: nc.group(inc.s(1), add.s(2)),                        # a member with no input
    lambda: nc.chain(inc.s(1), nc.foreach(add.s())),             # checked though run later
    lambda: nc.chain(inc.s(1), nc.branch(add.s(), inc.s())),
    lambda: add.s(1, 1).set(link=zero.s()),                      # a link gets the result
    lambda: add.s(1, 1).set(link_error=zero.s()),                # an errback gets the exception
], ids=["first", "batched", "member", "foreach", "branch", "link", "errback"])
def test_a_call_that_cannot_be_completed_is_refused_naming_the_task(make):
    # each of these is a valid partial when built; only the whole canvas shows it can't run
    sig = make().freeze()
    with pytest.raises(TypeError, match=r"\[task 'tc\.(add|zero)'\]"):
        compile_canvas(sig, sig.id)


def test_shapes_that_cannot_run_are_refused():
    with pytest.raises(ValueError, match="empty chain"):
        compile_canvas(nc.chain().freeze(), "w")
    with pytest.raises(ValueError, match="without a body"):
        compile_canvas(nc.chord([inc.s(1)]).freeze(), "w")
    with pytest.raises(TypeError, match="nothing to map over"):
        compile_canvas(nc.foreach(inc.s()).freeze(), "w")


def test_is_flat():
    assert is_flat(add.s(1, 1)) and is_flat(inc.map([1, 2]))
    assert is_flat(nc.chain(add.s(1, 1), inc.s())) and is_flat(nc.group(inc.s(1)))
    assert not is_flat(nc.group(inc.s(1), inc.s(2)))
    assert not is_flat(nc.chain(add.s(1, 1), nc.foreach(inc.s())))
    assert is_flat(nc.branch(zero.si(), inc.s()))
    assert not is_flat(nc.chord([inc.s(1), inc.s(2)], tsum.s()))


# -- programs -------------------------------------------------------------------------------


def test_programs_pickle_as_plain_data():
    _, cg = compiled(nc.chain(add.s(1, 1), nc.group(inc.s(), nc.chain(inc.s(), inc.s())),
                              tsum.s(), inc.map([1, 2]), nc.foreach(inc.s())).set(link=inc.s()),
                     fusion=False)
    for unit in cg.units.values():
        for prog, sel in unit.progs:
            back = cloudpickle.loads(cloudpickle.dumps(prog))
            assert type(back) is type(prog) and back.id == prog.id
            assert [c.id for c in back.links] == [c.id for c in prog.links]
    kinds = {type(p) for p in steps_of(cg)}
    kinds |= {type(i) for p in steps_of(cg) if type(p) is Seq for i in p.items}
    assert {Step, MapStep, Dyn, Seq} <= kinds
    par = Par("p", (Step("s", "n", inc.run, False, (1,), {}, False, {}),))
    back = cloudpickle.loads(cloudpickle.dumps(par))
    assert back.members[0].args == (1,) and back.members[0].fn(1) == 2


def test_a_program_token_is_its_id_not_its_contents():
    big = Step("same-id", "n", inc.run, False, (list(range(10_000)),), {}, False, {})
    small = Step("same-id", "n", inc.run, False, (), {}, False, {})
    assert big.__dask_tokenize__() == small.__dask_tokenize__() == ("Step", "same-id")
    u = UnitProgram("k-1", (big,))
    assert u.__dask_tokenize__() == ("nbcanvas-unit", "k-1")
    back = cloudpickle.loads(cloudpickle.dumps(u))
    assert back.key == "k-1" and back.progs[0].args[0][-1] == 9_999 and not back.reuse


# -- compile cost grows linearly --------------------------------------------------------------


def nested_chord(depth: int, fan_out: int = 3) -> nc.Signature:
    if depth == 0:
        return inc.s(1)
    return nc.chord([nested_chord(depth - 1, fan_out) for _ in range(fan_out)], tsum.s())


def per_node_ratio(small: nc.Signature, large: nc.Signature, repeat: int = 7,
                   **kw) -> tuple[float, int, int]:
    """(time per node of ``large`` / time per node of ``small``, their node counts).

    Best of ``repeat`` runs of each, interleaved, in CPU time of this thread (a long run is
    more likely to be preempted on a busy box: wall time would inflate the larger one), with
    the garbage collector off while timing, as ``timeit`` does: a full collection walks the
    whole heap of the test process, which says nothing about the compiler's own growth.
    """
    best = [math.inf, math.inf]
    nodes = [0, 0]
    gc.collect()
    for _ in range(repeat):
        for i, sig in enumerate((small, large)):
            gc.disable()
            try:
                t0 = time.thread_time()
                cg = compile_canvas(sig, sig.id, **kw)
                best[i] = min(best[i], time.thread_time() - t0)
            finally:
                gc.enable()
            nodes[i] = len(cg.nodes)
            del cg
    (t1, t2), (n1, n2) = best, nodes
    print(f"compile: {n1} nodes {t1 * 1e3:.1f} ms, {n2} nodes {t2 * 1e3:.1f} ms, "
          f"per node x{(t2 / n2) / (t1 / n1):.2f}")
    return (t2 / n2) / (t1 / n1), n1, n2


@pytest.mark.slow
def test_nested_chord_compile_cost_is_linear_in_nodes():
    small, large = nested_chord(4).freeze(), nested_chord(6).freeze()
    ratio, n1, n2 = per_node_ratio(small, large)
    # 3**d leaves, plus a group and a body per chord
    assert (n1, n2) == (3 ** 4 + 2 * sum(3 ** i for i in range(4)),
                        3 ** 6 + 2 * sum(3 ** i for i in range(6)))
    # 9x the nodes; quadratic would make each node 9x dearer, exponential far more
    assert ratio < 4, f"time per node grew {ratio:.1f}x from {n1} to {n2} nodes"


@pytest.mark.slow
def test_chords_nested_in_bodies_compile_linearly():
    def deep(d):
        sig = tsum.s()
        for _ in range(d):
            sig = nc.chord([inc.s(), inc.s()], sig)
        return nc.chain(nc.group(inc.s(1), inc.s(2)), sig)
    ratio, n1, n2 = per_node_ratio(deep(50).freeze(), deep(400).freeze())
    assert n2 / n1 == pytest.approx(8, rel=0.05)
    # 8x the nodes; quadratic would make each node 8x dearer
    assert ratio < 4, f"time per node grew {ratio:.1f}x from {n1} to {n2} nodes"


@pytest.mark.slow
@pytest.mark.parametrize("batching", [True, False])
def test_group_compile_cost_is_linear_in_members(batching):
    small = nc.group(add.s(i, 1) for i in range(2_500)).freeze()
    large = nc.group(add.s(i, 1) for i in range(10_000)).freeze()
    ratio, n1, n2 = per_node_ratio(small, large, batching=batching, parallelism=2)
    assert (n1, n2) == (2_501, 10_001)
    # time(4n) / time(n) < 10; quadratic would be 16
    assert ratio < 2.5, f"time per node grew {ratio:.1f}x from {n1} to {n2} nodes"


def test_groups_of_tasks_known_to_be_tiny_are_packed_tighter():
    g = nc.group(add.s(i, i) for i in range(10))
    assert len(compiled(g, parallelism=2)[1].units) == 5  # unknown tasks: spread widely
    one = compiled(g, parallelism=2, tiny={"add": 1e-5})[1]  # all of it: less than a hop
    assert len(one.units) == 1
    two = compiled(g, parallelism=2, tiny={"add": 1e-3})[1]  # one unit per thread
    assert len(two.units) == 2
    for cg in (one, two):  # every member still has its own node and result
        assert sorted(i for i, r in cg.nodes.items() if r.kind == "signature") == \
            sorted(t.id for t in cg.canvas.tasks)
    big = compiled(nc.group(add.s(i, i) for i in range(10_000)), parallelism=2,
                   tiny={"add": 1e-5})[1]
    assert len(big.units) == math.ceil(10_000 / BATCH_TARGET)  # large groups as before


def test_a_canvas_runs_in_place_only_if_all_of_it_is_known_tiny_work_in_no_place_or_time():
    from nbcanvas.compile.lower import TINY_UNIT, cheap_in_place
    tiny = {"add": 1e-5, "inc": 1e-5, "tsum": 1e-5, "gpu": 1e-5}
    g = nc.group(add.s(i, i) for i in range(10))
    assert cheap_in_place(g, tiny) and cheap_in_place(nc.chord(g, tsum.s()), tiny)
    assert cheap_in_place(nc.chain(add.s(1, 1), inc.s()).set(link=inc.s()), tiny)
    assert not cheap_in_place(g, {})  # nothing known
    assert not cheap_in_place(nc.chain(add.s(1, 1), zero.si()), tiny)  # one unknown task
    assert not cheap_in_place(g, {"add": TINY_UNIT / 9})  # all of it: more than a hop
    assert not cheap_in_place(nc.chain(add.s(1, 1), inc.s()).set(link=zero.si()), tiny)
    for placed in (nc.group(add.s(1, 1).set(queue="q")), nc.group(gpu.s(1)),  # task default
                   nc.group(add.s(1, 1), inc.s(1)).set(workers=["w"]),  # a container's
                   nc.group(add.s(1, 1).set(countdown=1)), nc.group(add.s(1, 1).set(eta=1e12))):
        assert not cheap_in_place(placed, tiny), placed
    for nested in (nc.group(nc.foreach(inc.s())), nc.group(inc.map([1])),
                   nc.chain(add.s(1, 1), nc.branch(inc.s(), inc.s()))):
        assert not cheap_in_place(nested, tiny), nested  # decides for itself when it runs


def test_units_with_a_step_decided_at_run_time_carry_the_tiny_tasks_the_client_knows():
    from nbcanvas.compile.taskspec import to_dask_graph
    tiny = {"inc": 1e-5}
    _, cg = compiled(nc.chain(add.s(1, 1), nc.group(inc.s(), inc.s(), inc.s()), tsum.s(),
                              nc.foreach(inc.s())), tiny=tiny)
    graph = to_dask_graph(cg)
    carried = {k: t.args[0].tiny for k, t in graph.items()}
    assert {k for k, v in carried.items() if v} == cg.fan_outs and len(cg.fan_outs) == 1
    assert carried[next(iter(cg.fan_outs))] == tiny
    _, unknown = compiled(nc.chain(add.s(1, 1), nc.foreach(inc.s())))
    assert all(t.args[0].tiny is None for t in to_dask_graph(unknown).values())


def test_the_store_learns_how_long_tasks_take():
    from nbcanvas.store import DURATIONS, StateStore, tiny_tasks
    store = StateStore("wf", {"a": ("signature", "quick_one", 0, None),
                              "b": ("signature", "slow_one", 0, None)})
    store.apply({"wf": "wf", "ev": [["S", "a", 1.0, 0, "w"], ["D", "a", 1.0005, "SUCCESS", None],
                                    ["S", "b", 1.0, 0, "w"], ["D", "b", 2.0, "SUCCESS", None]]})
    assert DURATIONS["quick_one"] == pytest.approx(0.0005) and DURATIONS["slow_one"] == 1.0
    assert "quick_one" in tiny_tasks() and "slow_one" not in tiny_tasks()
