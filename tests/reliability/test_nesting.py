"""Deep nesting (issue 12: 4): the shapes of Celery's hang reports finish, and a 10k-deep chain's
result can be pickled, walked and forgotten.

Celery reports, reduced to their shape and nested until at least six containers deep:

* celery/celery#4681 "Nested chords/groups fail to complete":
  ``group([a.si(1) | group([a.si(2), a.si(3)]) | a.si(4)]) | a.si(5)`` -- a chord whose header
  is a chain holding a group followed by a task (an implicit chord inside a chain inside a
  chord header). Here the inner group holds the whole shape again.
* celery/celery#5612 "Chord callback not called when the group structure has multiple levels
  with nested chains": a group of chains of chords, whose chord headers hold the next level.
* celery/celery#3571: a chord whose body is a chain containing a group; the group holds the
  next level.

Each runs 10 times on the cluster (all in flight at once), with the engine's fusion and
batching on and off, and gives the value computed by hand (and by ``apply()``).
"""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap

import pytest

import nbcanvas as nc
from nbcanvas.cluster import connection
from nbcanvas.errors import ResultNotFound

from .conftest import ROOT
from .rtasks import rel
from .test_failures import plain

pytestmark = pytest.mark.cluster
RUNS = 10


def shape_4681(t, d):
    """v(0) = 1; v(d) = v(d-1) + 1."""
    if d == 0:
        return t.identity.si(1)
    return nc.group([t.identity.si(1) | nc.group([shape_4681(t, d - 1), t.identity.si(1)])
                     | t.tsum.s()]) | t.tsum.s()


def shape_5612(t, d):
    """v(0) = 2; v(d) = 2 * (v(d-1) + 2 + 1)."""
    if d == 0:
        return t.add.si(1, 1)
    return nc.group([nc.chain(nc.chord([shape_5612(t, d - 1), t.add.si(1, 1)], t.tsum.s()),
                              t.add.s(1)) for _ in range(2)]) | t.tsum.s()


def shape_3571(t, d):
    """v(0) = 2; v(d) = (1+1 + 2+2) + 1 + v(d-1)."""
    if d == 0:
        return t.add.si(1, 1)
    return nc.chord([t.add.si(1, 1), t.add.si(2, 2)],
                    nc.chain(t.tsum.s(), nc.group([t.add.s(1), shape_3571(t, d - 1)]),
                             t.tsum.s()))


SHAPES = {  # name: (builder, levels, value by hand)
    "4681-chord-of-chords-chain-in-header": (shape_4681, 2, 3),
    "5612-group-of-chains-of-chords": (shape_5612, 2, 26),
    "3571-chord-body-chain-with-group": (shape_3571, 2, 16),
}


def depth(d: dict) -> int:
    """Containers nested in a canvas's dict form (a task is 0)."""
    kind = d["type"]
    kids = d.get("tasks", []) if kind in ("chain", "group") else \
        [d["header"], d["body"]] if kind == "chord" else []
    return 1 + max(map(depth, kids)) if kids else 0


@pytest.mark.timeout(240)
@pytest.mark.parametrize("tasks", [rel, plain], ids=["optimised", "plain"])
@pytest.mark.parametrize("name", list(SHAPES))
def test_celery_hang_shapes_finish_with_correct_results(name, tasks, dask_client):
    build, levels, value = SHAPES[name]
    canvas = build(tasks, levels)
    assert depth(canvas.to_dict()) >= 6
    assert canvas.apply().get() == value
    results = [canvas.delay() for _ in range(RUNS)]
    assert [r.get(timeout=120) for r in results] == [value] * RUNS
    for r in results:
        assert r.handle.store.wait(lambda s: s.finished(), 60)
        assert set(r.handle.store.counts()) == {"SUCCESS"}
        r.forget()


@pytest.fixture(scope="module")
def deep_chain(dask_client):
    """A 10,000-step chain, run on the cluster: ``add(0, 0) | add(1) | ... `` = 9,999."""
    wf = nc.chain(rel.add.si(0, 0), *[rel.add.s(1) for _ in range(9_999)])
    r = wf.delay()
    assert r.get(timeout=120) == 9_999
    return r


def test_10k_chain_result_pickles_and_comes_back(deep_chain):
    data = pickle.dumps(deep_chain)
    back = pickle.loads(data)
    assert back == deep_chain and back.get(timeout=30) == 9_999
    assert pickle.loads(pickle.dumps(deep_chain.parent)).get(timeout=30) == 9_998


def test_10k_chain_result_unpickled_in_another_process(deep_chain, dask_client):
    code = textwrap.dedent("""
        import pickle, sys
        r = pickle.loads(sys.stdin.buffer.read())
        print(r.get(timeout=60), r.parent.get(timeout=60), r.state)
    """)
    env = {**os.environ, "DASK_SCHEDULER_ADDRESS": dask_client.scheduler.address}
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(deep_chain),
                         capture_output=True, timeout=120, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    assert out.stdout.decode().split() == ["9999", "9998", "SUCCESS"]


def test_10k_chain_result_walks_parents(deep_chain):
    limit = sys.getrecursionlimit()
    node, values = deep_chain, []
    while node is not None:
        values.append(node)
        node = node.parent
    assert len(values) == 10_000 > limit  # Celery: RecursionError past ~400 levels
    assert values[-1].get(timeout=30) == 0 and values[5_000].get(timeout=30) == 4_999
    assert all(v.state == "SUCCESS" for v in values[::500])


def test_10k_chain_result_as_tuple(deep_chain):
    t = deep_chain.as_tuple()
    assert t[0][0] == deep_chain.id


def test_10k_chain_result_forgotten(deep_chain):
    first = deep_chain
    while first.parent is not None:
        first = first.parent
    ids, wf = [deep_chain.id, first.id], deep_chain.handle.id
    assert wf in {w["id"] for w in connection(rel.app).rpc("nbcanvas_list")}
    deep_chain.forget()
    assert wf not in {w["id"] for w in connection(rel.app).rpc("nbcanvas_list")}
    for id in ids:
        with pytest.raises(ResultNotFound):
            nc.AsyncResult(id).get(timeout=10)
