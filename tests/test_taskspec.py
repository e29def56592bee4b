"""nbcanvas.compile.taskspec: units -> one graph in dask's public task spec."""
from __future__ import annotations

import pytest
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph
from dask.task_spec import Task, TaskRef

import nbcanvas as nc
from nbcanvas.compile import compile_canvas
from nbcanvas.compile.programs import Step, UnitProgram
from nbcanvas.compile.taskspec import annotations_of, graph_expr, to_dask_graph
from nbcanvas.runtime import run_unit

app = nc.App("tests.test_taskspec", set_as_current=False)


@app.task(name="ts.add")
def add(x, y):
    return x + y


@app.task(name="ts.tsum")
def tsum(xs):
    return sum(xs)


def graph_of(sig, **kw):
    f = sig.freeze()
    cg = compile_canvas(f, f.id, **kw)
    return f, cg, to_dask_graph(cg)


def test_every_unit_is_a_task_calling_run_unit_with_its_deps_as_refs():
    sig, cg, graph = graph_of(nc.chain(nc.group(add.s(1, 1), add.s(2, 2)), tsum.s()))
    assert isinstance(graph, dict) and list(graph) == list(cg.units)
    for key, task in graph.items():
        unit = cg.units[key]
        assert isinstance(task, Task) and task.key == key and task.func is run_unit
        prog, wf, *refs = task.args
        assert isinstance(prog, UnitProgram) and prog.key == key and wf == sig.id
        assert prog.progs == tuple(unit.progs) and not prog.reuse
        assert all(isinstance(r, TaskRef) for r in refs)
        assert [r.key for r in refs] == unit.deps  # in the order selectors count them
        assert task.dependencies == frozenset(unit.deps)


def test_keys_are_readable():
    sig, cg, graph = graph_of(nc.chain(nc.group(add.s(1, 1), add.s(2, 2)), tsum.s()))
    assert set(graph) == {f"add-{t.id}" for t in sig.tasks[0].tasks} | {f"tsum-{sig.id}"}


def test_only_the_result_unit_inlines_the_workflow_result():
    sig, cg, graph = graph_of(nc.chain(nc.group(add.s(1, 1), add.s(2, 2)), tsum.s()))
    inline = {k: t.args[0].inline for k, t in graph.items()}
    assert inline.pop(cg.result.key) == frozenset({sig.id})
    assert all(v == frozenset() for v in inline.values())
    sig, cg, graph = graph_of(nc.group(add.s(1, 1), add.s(2, 2)))  # a small result group:
    inline = {k: t.args[0].inline for k, t in graph.items()}      # each unit, its members
    assert sorted(i for v in inline.values() for i in v) == sorted(t.id for t in sig.tasks)
    _, _, graph = graph_of(nc.group(add.s(i, i) for i in range(100)))  # too many to inline
    assert all(t.args[0].inline == frozenset() for t in graph.values())


def test_routing_options_become_layer_annotations():
    sig, cg, graph = graph_of(nc.group(add.s(1, 1), add.s(2, 2).set(priority=5),
                                       add.s(3, 3).set(resources={"GPU": 1}, workers="tcp://a:1"),
                                       add.s(4, 4).set(priority=5)), batching=False)
    assert isinstance(graph, HighLevelGraph)
    assert set(graph.keys()) == set(cg.units)
    by_key = {k: layer.annotations for layer in graph.layers.values() for k in layer}
    plain, p5, routed, p5b = (cg.nodes[t.id].key for t in sig.tasks)
    assert not by_key[plain]
    assert by_key[p5] == by_key[p5b] == {"priority": 5}
    assert by_key[routed] == {"resources": {"GPU": 1}, "workers": ["tcp://a:1"]}
    assert len(graph.layers) == 3  # plain, priority 5, GPU + worker
    assert all(isinstance(graph[k], Task) for k in cg.units)


def test_no_annotations_without_routing_options():
    _, _, graph = graph_of(nc.group(add.s(i, 1) for i in range(100)))
    assert type(graph) is dict


@pytest.mark.parametrize("routing,expected", [
    ({}, {}),
    ({"queue": "gpu"}, {"resources": {"gpu": 1}}),
    ({"queue": "gpu", "resources": {"gpu": 2}}, {"resources": {"gpu": 2}}),
    ({"workers": "tcp://a:1"}, {"workers": ["tcp://a:1"]}),
    ({"workers": ("tcp://a:1", "tcp://b:2")}, {"workers": ["tcp://a:1", "tcp://b:2"]}),
    ({"priority": 0}, {"priority": 0}),
    ({"priority": None}, {}),
])
def test_annotations_of(routing, expected):
    assert annotations_of(routing) == expected


class Spy:
    """Counts how often dask hashes it."""

    calls = 0

    def __dask_tokenize__(self) -> str:
        Spy.calls += 1
        return "spy"


@pytest.mark.parametrize("n,batching", [(10_000, True), (1_000, False)])
def test_tokenizing_the_graph_never_hashes_the_programs(n, batching):
    Spy.calls = 0
    _, cg, graph = graph_of(nc.group(add.s(i, Spy()) for i in range(n)), batching=batching,
                            parallelism=2)
    assert len(graph) == (40 if batching else n)
    tokenize(graph)
    assert Spy.calls == 0


def test_a_unit_token_is_its_key():
    heavy = UnitProgram("add-1", (Step("1", "add", add.run, False, (list(range(50_000)),), {},
                                       False, {}),))
    assert tokenize(heavy) == tokenize(UnitProgram("add-1", ())) != \
        tokenize(UnitProgram("add-2", ()))


def test_graph_expr_is_named_by_its_keys_not_by_hashing_the_programs():
    sig, cg, graph = graph_of(nc.chain(nc.group(add.s(1, 1), add.s(2, 2)), tsum.s()))
    keys = list(cg.units)
    expr = graph_expr(graph, keys)
    # without a given token, dask would have set it to a hash of the whole graph
    assert expr._determ_token == f"nbcanvas-{keys[0]}-{len(keys)}"
    assert expr._name.endswith(expr._determ_token)
    assert dict(expr.__dask_graph__()) == graph


def test_graph_expr_keeps_routing_layers():
    sig, cg, graph = graph_of(nc.group(add.s(1, 1).set(priority=5), add.s(2, 2)))
    expr = graph_expr(graph, list(cg.units))
    assert isinstance(graph, HighLevelGraph)
    assert expr.hlg is graph
