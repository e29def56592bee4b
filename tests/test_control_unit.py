"""nbcanvas.control, unit level: which units a retry runs again, and the eager retry.

The cluster side (retry, revoke, reattach) is tests/integration/test_control.py.
"""
from __future__ import annotations

import pytest

import nbcanvas as nc
from nbcanvas.compile import Ref, compile_canvas
from nbcanvas.control import _canvas, plan_retry
from nbcanvas.errors import NbcanvasError
from nbcanvas.handle import EagerBackend, WorkflowHandle
from nbcanvas.store import StateStore

app = nc.App("tests.test_control_unit", set_as_current=False)
RUNS: dict[str, int] = {}
BROKEN: set[str] = set()


@app.task(name="tcu.step")
def step(x, tag):
    RUNS[tag] = RUNS.get(tag, 0) + 1
    if tag in BROKEN:
        raise OSError(f"{tag} is broken")
    return x + 1


@pytest.fixture(autouse=True)
def _clean():
    RUNS.clear()
    BROKEN.clear()
    yield
    RUNS.clear()
    BROKEN.clear()


def plan(result):
    h = result.handle
    cg = compile_canvas(h.canvas, f"{h.id}~{h.attempt + 1}", **h.compile_args)
    return h, cg, plan_retry(h, cg)


def test_only_units_with_a_step_that_did_not_succeed_run_again():
    BROKEN.add("b")
    sig = nc.group(step.s(1, "a"), step.s(2, "b"), step.s(3, "c")).freeze()
    h, cg, (rerun, reset, reused) = plan(sig.apply())
    a, b, c = (h.nodes[t.id][4] for t in sig.tasks)
    assert rerun == {b: f"{b}~1"} and reset == [sig.tasks[1].id]
    assert sorted(reused) == sorted([a, c])


def test_in_a_fused_chain_the_successes_are_kept_and_the_rest_reset():
    BROKEN.add("b")
    sig = nc.chain(step.s(1, "a"), step.s("b"), step.s("c")).freeze()
    h, cg, (rerun, reset, reused) = plan(sig.apply())
    (key,) = cg.units
    assert rerun == {key: f"{key}~1"} and reused == []
    assert sorted(reset) == sorted([sig.tasks[1].id, sig.tasks[2].id])  # not the success


def test_nothing_to_run_when_everything_succeeded():
    r = nc.group(step.s(1, "a"), step.s(2, "b")).apply()
    h, cg, (rerun, reset, reused) = plan(r)
    assert rerun == {} and reset == [] and len(reused) == 2
    assert r.retry() is r and RUNS == {"a": 1, "b": 1}


def test_a_later_attempt_follows_the_live_keys():
    BROKEN.add("b")
    sig = nc.group(step.s(1, "a"), step.s(2, "b")).freeze()
    r = sig.apply()
    r.retry()  # still broken: attempt 1 fails again
    h = r.handle
    assert h.attempt == 1
    _, cg, (rerun, reset, _) = plan(r)
    first = cg.nodes[sig.tasks[1].id].key  # the key as compiled
    assert h.keymap == {first: f"{first}~1"}
    assert rerun == {f"{first}~1": f"{first}~2"} and reset == [sig.tasks[1].id]


def test_an_eager_retry_runs_each_success_once():
    BROKEN.add("b")
    sig = nc.chain(step.s(1, "a"), step.s("b"), step.s("c")).freeze()
    r = sig.apply()
    assert r.state == "NOT_RUN" and RUNS == {"a": 1, "b": 1}
    BROKEN.clear()
    again = r.retry()
    assert again.get() == 4 and again.id == r.id
    assert RUNS == {"a": 1, "b": 2, "c": 1}
    h = r.handle
    assert h.attempt == 1 and all(k.endswith("~1") for k in h.keymap.values())
    assert h.nodes[sig.id][4] == h.result.key == h.keymap[next(iter(h.keymap))]
    assert [h.store.state(t.id) for t in sig.tasks] == ["SUCCESS"] * 3


def test_retry_needs_the_tasks_registered():
    structure = {"nbcanvas": 1, "type": "signature", "task": "nowhere.missing", "id": "wf"}
    h = WorkflowHandle("wf", {}, Ref("k", "wf"), StateStore("wf", {}), EagerBackend({}),
                       structure=structure)
    with pytest.raises(NbcanvasError, match="registered"):
        _canvas(h)
