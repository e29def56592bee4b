"""nbcanvas.runtime: the interpreter, dynamic steps, outcomes and the in-process unit runner.

Programs run here in this process with a ``Ctx`` and a ``Sink`` that collects the events, as
``run_unit`` runs them on a worker (the cluster side is covered by tests/test_submit.py).
"""
from __future__ import annotations

import pickle
import threading
import uuid
from typing import Any

import pytest
from dask.sizeof import sizeof

import nbcanvas as nc
from nbcanvas.compile import Lst, Ref, compile_canvas
from nbcanvas.compile.programs import Step
from nbcanvas.errors import RemoteError, TaskRevokedError, TimeLimitExceeded
from nbcanvas.runtime import (NO_INPUT, Ctx, execute_local, known_results, outcome_at,
                              revoke_local, run_units_local)
from nbcanvas.runtime.emit import Sink
from nbcanvas.runtime.interp import (INLINE_LIMIT, REVOKED, handoff, resolve, run_prog)
from nbcanvas.runtime.outcome import (Failed, GroupOutcome, NotTaken, Revoked, Skipped,
                                      UnitResult, failed_from, value_of)

app = nc.App("tests.test_runtime", set_as_current=False)
CALLS: dict[str, int] = {}
SEEN: list[Any] = []


@app.task(name="rt.add")
def add(x, y):
    return x + y


@app.task(name="rt.inc")
def inc(x):
    return x + 1


@app.task(name="rt.tsum")
def tsum(xs):
    return sum(xs)


@app.task(name="rt.count")
def count(x, tag):
    CALLS[tag] = CALLS.get(tag, 0) + 1
    return x


@app.task(name="rt.boom")
def boom(x):
    raise ValueError(f"boom {x}")


@app.task(name="rt.on_error")
def on_error(exc):
    SEEN.append(("exc", exc))


@app.task(name="rt.on_error_tb")
def on_error_tb(exc, traceback):
    SEEN.append(("exc+tb", exc, traceback))


@app.task(name="rt.flaky", bind=True)
def flaky(self, x, tag, fails=1):
    CALLS[tag] = CALLS.get(tag, 0) + 1
    if self.request.retries < fails:
        raise self.retry(exc=OSError("not yet"), countdown=0)
    return x


@app.task(name="rt.auto", autoretry_for=(OSError,), max_retries=2, default_retry_delay=0)
def auto(x, tag, fails):
    CALLS[tag] = CALLS.get(tag, 0) + 1
    if CALLS[tag] <= fails:
        raise OSError(f"attempt {CALLS[tag]}")
    return x


@app.task(name="rt.report", bind=True)
def report(self, x):
    self.update_state(state="PROGRESS", meta={"done": 1, "obj": object})
    return x


@app.task(name="rt.revoker", bind=True)
def revoker(self, x):
    revoke_local(self.request.workflow_id)
    return x


#: revoke_local(wf, interrupt) called twice from another thread while a step runs: the lists
TERMINATIONS: list[list[list[int]]] = []


@app.task(name="rt.terminated", bind=True)
def terminated(self, x):
    """Two workers in one process each handle revoke(terminate=True) for this workflow."""
    wf, me = self.request.workflow_id, threading.get_ident()
    calls: list[list[int]] = []

    def two_workers() -> None:
        calls.append(revoke_local(wf, TaskRevokedError))
        calls.append(revoke_local(wf, TaskRevokedError))
        TERMINATIONS.append([[t == me for t in c] for c in calls])

    helper = threading.Thread(target=two_workers)
    helper.start()
    while True:  # a step busy in Python code: interrupted at its next bytecode
        helper.join(0.001)


@app.task(name="rt.mutate")
def mutate(d):
    d["mutated"] = True
    return d


@app.task(name="rt.make")
def make(kind):
    return {"dict": {"a": 1}, "lock": threading.Lock(), "big": b"x" * (2 * INLINE_LIMIT),
            "small": b"x"}[kind]


@app.task(name="rt.seq")
def seq(n):
    return list(range(n))


@app.task(name="rt.positive")
def positive(x):
    return x > 0


@app.task(name="rt.spin")
def spin(x):
    import time
    end = time.monotonic() + 60
    while time.monotonic() < end:
        pass
    return x


class Run:
    """A canvas compiled and run in process; its events as lists."""

    def __init__(self, sig, eager=True, known=None, **compile_kw) -> None:
        self.sig = sig.freeze()
        self.events: list[list[Any]] = []
        self.wfs: set[str] = set()
        self.cg = compile_canvas(self.sig, self.sig.id, **compile_kw)
        self.ctx = Ctx(self.sig.id, Sink(self._deliver), execute_local, host="h1", eager=eager,
                       known=known)
        done = run_units_local(self.cg.units, self.ctx)
        self.outcome = outcome_at(self.cg.result, done)

    def _deliver(self, msg: dict[str, Any]) -> None:
        self.wfs.add(msg["wf"])
        self.events.extend(msg["ev"])

    def codes(self, id: str) -> list[str]:
        return [e[0] for e in self.events if e[1] == id]

    def done(self, id: str) -> list[Any]:
        (d,) = [e for e in self.events if e[1] == id and e[0] == "D"]
        return d

    @property
    def value(self) -> Any:
        return value_of(self.outcome)


@pytest.fixture(autouse=True)
def _clean():
    CALLS.clear()
    SEEN.clear()
    yield
    CALLS.clear()
    SEEN.clear()


# -- events -----------------------------------------------------------------------------------


def test_each_step_reports_start_then_done_in_order():
    r = Run(nc.chain(add.s(1, 1), inc.s(), inc.s()))
    assert r.value == (4, None)
    ids = [t.id for t in r.sig.tasks]
    assert [(e[0], e[1]) for e in r.events] == [(c, i) for i in ids for c in ("S", "D")]
    s, d = r.events[0], r.events[1]
    assert s[3:] == [0, "h1"]  # retries so far, host
    assert d[3:] == ["SUCCESS", None]
    assert all(isinstance(e[2], float) for e in r.events) and r.wfs == {r.sig.id}
    assert [e[2] for e in r.events] == sorted(e[2] for e in r.events)


def test_a_retry_reports_r_and_starts_again():
    r = Run(flaky.s(5, "f", fails=2))
    assert r.value == (5, None) and CALLS["f"] == 3
    assert r.codes(r.sig.id) == ["S", "R", "S", "R", "S", "D"]
    starts = [e for e in r.events if e[0] == "S"]
    assert [s[3] for s in starts] == [0, 1, 2]
    retry = next(e for e in r.events if e[0] == "R")
    assert "not yet" in retry[3] and retry[4] == 0.0


def test_autoretry_until_max_retries_then_failure():
    ok = Run(auto.s(1, "ok", 2))
    assert ok.value == (1, None) and ok.codes(ok.sig.id) == ["S", "R", "S", "R", "S", "D"]
    bad = Run(auto.s(1, "bad", 5))
    assert CALLS["bad"] == 3  # max_retries=2: three attempts
    assert bad.codes(bad.sig.id)[-1] == "D" and bad.done(bad.sig.id)[3] == "FAILURE"
    _, cause = bad.value
    assert isinstance(cause, Failed) and isinstance(cause.exc, OSError)


def test_update_state_reports_u_with_jsonable_meta():
    r = Run(report.s(3))
    assert r.codes(r.sig.id) == ["S", "U", "D"]
    u = next(e for e in r.events if e[0] == "U")
    assert u[3] == "PROGRESS" and u[4]["done"] == 1 and isinstance(u[4]["obj"], str)


def test_foreach_announces_its_elements_then_runs_them():
    r = Run(nc.chain(seq.s(3), nc.foreach(count.s("fe"))))
    fe = r.sig.tasks[1]
    assert r.value == ([0, 1, 2], None) and CALLS["fe"] == 3
    ns = [e for e in r.events if e[0] == "N"]
    assert [n[1] for n in ns] == [f"{fe.body.id}:{i}" for i in range(3)]
    assert [n[3:] for n in ns] == [[fe.id, "count", "signature", i] for i in range(3)]
    assert r.codes(fe.id) == ["S", "D"] and r.done(fe.id)[3] == "SUCCESS"
    order = [(e[0], e[1]) for e in r.events]
    for n in ns:
        assert order.index(("N", n[1])) < order.index(("S", n[1])) < order.index(("D", fe.id))


@pytest.mark.parametrize("body", ["chain", "group"])
def test_foreach_announces_every_step_of_a_canvas_element(body):
    inner = nc.chain(inc.s(), inc.s()) if body == "chain" else nc.group(inc.s(), inc.s())
    r = Run(nc.chain(seq.s(2), nc.foreach(inner)))
    announced = {e[1] for e in r.events if e[0] == "N"}
    ran = {e[1] for e in r.events if e[0] == "S"} - set(r.cg.nodes)
    assert len(ran) == 4 and ran <= announced


def test_foreach_of_a_non_iterable_fails_as_a_step():
    r = Run(nc.chain(add.s(1, 1), nc.foreach(inc.s())))
    fe = r.sig.tasks[1]
    assert r.done(fe.id)[3] == "FAILURE" and "iterable" in r.done(fe.id)[4]


@pytest.mark.parametrize("x,taken", [(1, "then"), (-1, "otherwise")])
def test_branch_reports_its_choice_and_skips_the_other_side(x, taken):
    r = Run(nc.chain(add.s(x, 0), nc.branch(positive.s(), inc.s(), nc.chain(inc.s(), inc.s()))))
    br = r.sig.tasks[1]
    assert r.value == ((x + 1 if taken == "then" else x + 2), None)
    (b,) = [e for e in r.events if e[0] == "B"]
    assert b[1] == br.id and b[3] == taken
    other = br.otherwise.tasks if taken == "then" else [br.then]
    for t in other:
        assert r.codes(t.id) == ["D"] and r.done(t.id)[3:] == ["NOT_RUN", "branch not taken"]


def test_a_branch_with_fan_out_runs_through_ctx_execute():
    r = Run(nc.chain(add.s(1, 0), nc.branch(positive.s(), nc.group(inc.s(), add.s(10)))))
    assert r.value == ([2, 11], None)
    g = r.sig.tasks[1].then
    assert all(r.done(t.id)[3] == "SUCCESS" for t in g.tasks)


# -- failures flow as values ------------------------------------------------------------------


def test_a_failure_skips_the_rest_and_runs_the_errback_once():
    r = Run(nc.chain(add.s(1, 1), boom.s(), inc.s(), inc.s()).set(link_error=on_error.s()))
    a, b, c, d = r.sig.tasks
    assert r.done(b.id)[3:5] == ["FAILURE", "ValueError: boom 2"]
    for t in (c, d):
        assert r.codes(t.id) == ["D"] and r.done(t.id)[3:] == ["NOT_RUN", "boom failed: ValueError"]
    assert len(SEEN) == 1 and SEEN[0][0] == "exc" and str(SEEN[0][1]) == "boom 2"
    _, cause = r.value
    assert isinstance(cause, Failed) and cause.id == b.id and cause.name == "boom"
    assert "Traceback" in cause.traceback and "boom 2" in cause.traceback


def test_an_errback_taking_one_more_argument_gets_the_traceback():
    Run(boom.s(7).set(link_error=on_error_tb.s()))
    (kind, exc, tb), = SEEN
    assert kind == "exc+tb" and isinstance(exc, ValueError)
    assert isinstance(tb, str) and "ValueError: boom 7" in tb


def test_a_failed_header_member_skips_the_chord_body_and_not_the_siblings():
    r = Run(nc.chord([inc.s(1), boom.s(2), inc.s(3)], tsum.s()), batching=False)
    h = r.sig.header.tasks
    assert [r.done(t.id)[3] for t in h] == ["SUCCESS", "FAILURE", "SUCCESS"]
    assert r.done(r.sig.body.id)[3] == "NOT_RUN"


def test_callbacks_run_on_success_and_are_not_run_on_failure():
    ok = Run(add.s(1, 1).set(link=count.s("cb"), link_error=on_error.s()))
    link, eb = ok.sig.links[0], ok.sig.errbacks[0]
    assert CALLS["cb"] == 1 and ok.done(link.id)[3] == "SUCCESS"
    assert ok.done(eb.id)[3:] == ["NOT_RUN", "callback not triggered"]
    bad = Run(boom.s(1).set(link=count.s("cb2"), link_error=on_error.s()))
    assert "cb2" not in CALLS and bad.done(bad.sig.links[0].id)[3] == "NOT_RUN"
    assert len(SEEN) == 1


# -- results of an earlier run, revoke, expiry ------------------------------------------------


def test_known_results_are_reused_not_run_again():
    sig = nc.chain(count.s(1, "a"), count.s("b"), add.s(1)).freeze()
    a, b, c = sig.tasks
    r = Run(sig, known={a.id: 41, b.id: 42})
    assert "a" not in CALLS and "b" not in CALLS
    assert r.done(a.id)[3:] == ["SUCCESS", "reused"] and r.codes(a.id) == ["D"]
    assert r.value == (43, None) and r.ctx.results[b.id] == 42


def test_known_results_keep_only_plain_successes():
    out = {"a": 1, "b": Failed(ValueError(), "", "b", "x"), "c": Skipped(Revoked()),
           "d": GroupOutcome([1]), "e": None}
    assert known_results(out) == {"a": 1, "e": None}
    assert known_results(UnitResult(out)) == {"a": 1, "e": None}


def test_revoked_before_it_starts_no_step_runs():
    sig = nc.chain(count.s(1, "x"), count.s("y")).freeze()
    revoke_local(sig.id)
    try:
        r = Run(sig)
    finally:
        REVOKED.discard(sig.id)
    assert not CALLS
    assert [r.done(t.id)[3] for t in sig.tasks] == ["REVOKED", "REVOKED"]
    assert isinstance(r.value[1], Revoked) and isinstance(r.value[1].exc, TaskRevokedError)


def test_revoke_while_running_makes_the_later_steps_revoked():
    sig = nc.chain(count.s(1, "x"), revoker.s(), count.s("y"), count.s("z")).freeze()
    try:
        r = Run(sig)
    finally:
        REVOKED.discard(sig.id)
    a, rv, c, d = sig.tasks
    assert CALLS == {"x": 1} and r.done(rv.id)[3] == "SUCCESS"
    assert [r.done(t.id)[3] for t in (c, d)] == ["REVOKED", "REVOKED"]


def test_terminate_interrupts_a_running_step_once_however_many_workers_ask():
    sig = nc.chain(terminated.s(1), count.s("after")).freeze()
    TERMINATIONS.clear()
    try:
        r = Run(sig)
    finally:
        REVOKED.discard(sig.id)
    step, after = sig.tasks
    # the first revoke found the step's thread and interrupted it; the second found no thread
    assert TERMINATIONS == [[[True], []]]
    assert r.done(step.id)[3:5] == ["REVOKED", "revoked while running (terminate=True)"]
    assert r.done(after.id)[3] == "REVOKED" and "after" not in CALLS


def test_a_revoke_wakes_a_waiting_countdown():
    token = f"wf-{uuid.uuid4()}"
    ctx = Ctx(token, Sink(lambda m: None), execute_local)
    started = threading.Event()
    got: list[bool] = []

    def waiter() -> None:
        started.set()
        got.append(ctx.wait(60))

    t = threading.Thread(target=waiter)
    t.start()
    started.wait(10)
    threads = revoke_local(token)
    t.join(30)
    REVOKED.discard(token)
    assert got == [True] and not t.is_alive()
    assert threads == []  # nothing of this token was running a step
    assert ctx.wait(0) is False


def test_a_finished_run_leaves_no_entry_in_the_running_table():
    """A worker lives long and runs many workflows: each run's entry goes with its last step."""
    from nbcanvas.runtime import interp
    r = Run(nc.chain(add.s(1, 1), inc.s(), inc.s()))
    assert r.value == (4, None)
    assert r.sig.id not in interp.RUNNING


def test_waits_leave_no_wake_up_behind_and_a_revoke_still_wakes_the_others():
    from nbcanvas.runtime import interp
    from tests.waiting import wait_until
    token = f"wf-{uuid.uuid4()}"
    ctx = Ctx(token, Sink(lambda m: None), execute_local)
    assert ctx.wait(0.001) is False and token not in interp._wake  # a countdown ran out
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(ctx.wait(60)))
    t.start()
    wait_until(lambda: token in interp._wake, 10, "the thread's wait")
    assert ctx.wait(0.001) is False  # another step's countdown ends meanwhile ...
    revoke_local(token)  # ... and a revoke still wakes the one still waiting
    t.join(30)
    REVOKED.discard(token)
    assert got == [True] and not t.is_alive()
    assert token not in interp._wake


def test_an_expired_step_is_revoked_without_running():
    r = Run(count.s(1, "late").set(expires=0))
    assert "late" not in CALLS
    assert r.done(r.sig.id)[3:] == ["REVOKED", "expired before it started"]


# -- what steps hand over ---------------------------------------------------------------------


def test_builtin_containers_are_handed_over_as_copies():
    for value in ({"a": [1]}, [1, [2]], {1, 2}, bytearray(b"ab")):
        copy = handoff(value)
        assert copy == value and copy is not value
    obj, tup = object(), (1, [2])
    assert handoff(obj) is obj and handoff(tup) is tup


def test_a_step_that_mutates_its_input_does_not_change_the_previous_result():
    r = Run(nc.chain(make.s("dict"), mutate.s()))
    first, second = r.sig.tasks
    assert r.ctx.results[first.id] == {"a": 1}
    assert r.ctx.results[second.id] == {"a": 1, "mutated": True}


def test_an_unsendable_result_fails_its_step_on_a_cluster_but_not_in_apply():
    r = Run(nc.chain(make.s("lock"), count.s("after")), eager=False)
    first = r.sig.tasks[0]
    assert r.done(first.id)[3] == "FAILURE" and "'make'" in r.done(first.id)[4]
    assert "after" not in CALLS
    assert isinstance(r.value[1].exc, TypeError)
    ok = Run(make.s("lock"), eager=True)
    assert ok.done(ok.sig.id)[3] == "SUCCESS"


@pytest.mark.parametrize("kind,inlined", [("small", True), ("big", False)])
def test_only_a_small_result_rides_in_its_done_event(kind, inlined):
    sig = make.s(kind).freeze()
    events: list[Any] = []
    for inline in (frozenset(), frozenset({sig.id})):
        ctx = Ctx(sig.id, Sink(lambda m: events.extend(m["ev"])), execute_local)
        ctx.inline = inline
        run_prog(Step(sig.id, "make", make.run, False, (kind,), {}, False, {}), NO_INPUT, ctx)
    without, with_ = [e for e in events if e[0] == "D"]
    assert len(without) == 5
    assert (len(with_) == 6) is inlined
    if inlined:
        assert pickle.loads(with_[5]) == b"x"


def test_an_inline_result_is_pickled_by_value_only_when_pickle_cannot_name_it(monkeypatch):
    import cloudpickle

    from nbcanvas.runtime.interp import _inline
    real, calls = cloudpickle.dumps, []
    monkeypatch.setattr(cloudpickle, "dumps", lambda *a, **k: calls.append(1) or real(*a, **k))
    ctx = Ctx("wf", Sink(lambda m: None), execute_local)
    ctx.inline = frozenset({"n"})
    (plain,) = _inline(ctx, "n", {"a": [1, 2.5, "x"]})
    assert pickle.loads(plain) == {"a": [1, 2.5, "x"]}
    assert calls == []  # its pickler costs ~10 us to make

    class Local:  # pickle cannot find it by name: cloudpickle sends the class along
        def __init__(self, v):
            self.v = v
    (by_value,) = _inline(ctx, "n", Local(3))
    assert calls == [1] and pickle.loads(by_value).v == 3
    (fn,) = _inline(ctx, "n", lambda x: x + 1)
    assert pickle.loads(fn)(1) == 2
    assert _inline(ctx, "other", 1) == ()  # not the workflow's result


def test_a_hard_time_limit_fails_a_busy_step():
    r = Run(spin.s(1).set(time_limit=0.2))
    assert r.done(r.sig.id)[3] == "FAILURE"
    assert isinstance(r.value[1].exc, TimeLimitExceeded)


# -- outcomes -------------------------------------------------------------------------------


class Unpicklable(Exception):
    def __init__(self, msg: str) -> None:
        super().__init__(msg)
        self.lock = threading.Lock()


def raised(exc: BaseException) -> BaseException:
    try:
        raise exc
    except BaseException as e:
        return e


def test_failed_from_makes_an_unpicklable_exception_a_remote_error():
    f = failed_from(raised(Unpicklable("locked")), "id1", "task")
    assert isinstance(f.exc, RemoteError) and f.exc.type_name.endswith("Unpicklable")
    assert f.exc.message == "locked" and "Unpicklable: locked" in f.traceback
    back = pickle.loads(pickle.dumps(f))
    assert (back.id, back.name, str(back.exc)) == ("id1", "task", str(f.exc))


def test_failed_from_keeps_a_picklable_exception_without_its_frames():
    f = failed_from(raised(ValueError("v")), "id1", "task")
    assert type(f.exc) is ValueError and f.exc.__traceback__ is None
    assert "raise exc" in f.traceback  # the text keeps the frames


def test_failed_from_in_process_keeps_the_exception_itself():
    f = failed_from(raised(Unpicklable("locked")), "id1", "task", portable=False)
    assert type(f.exc) is Unpicklable


def test_value_of_nested_groups():
    bad = Failed(ValueError("x"), "", "b", "boom")
    assert value_of(GroupOutcome([1, GroupOutcome([2, 3]), 4])) == ([1, [2, 3], 4], None)
    assert value_of(GroupOutcome([1, GroupOutcome([2, bad]), Skipped(Revoked())])) == (None, bad)
    skipped = Skipped(NotTaken("branch not taken"))
    assert value_of(skipped) == (None, skipped.cause)
    assert value_of(GroupOutcome([])) == ([], None)
    assert value_of(None) == (None, None)


def test_outcomes_pickle():
    for o in (Skipped(Revoked("r")), NotTaken("n"), GroupOutcome([1, Skipped(NotTaken("t"))])):
        back = pickle.loads(pickle.dumps(o))
        assert type(back) is type(o)
    assert pickle.loads(pickle.dumps(NO_INPUT)) is NO_INPUT


def test_a_unit_result_pickles_as_one_object():
    outcomes = {f"id{i}": list(range(10)) for i in range(40)}
    ur = UnitResult(outcomes)
    reduced = ur.__reduce__()
    assert reduced[0] is UnitResult and reduced[1] == (outcomes,)
    back = pickle.loads(pickle.dumps(ur))
    assert back.outcomes == outcomes and "id3" in back and back["id3"] == list(range(10))
    assert len(back) == 40 and repr(back) == "<UnitResult of 40 steps>"
    assert len(pickle.dumps(ur)) - len(pickle.dumps(outcomes)) < 100
    assert sizeof(ur) >= sum(sizeof(v) for v in outcomes.values())


def test_resolve_selectors():
    deps = ({"a": 1, "b": 2}, {"c": 3})
    assert resolve(None, deps) is NO_INPUT
    assert resolve(("r", 1, "c"), deps) == 3
    out = resolve(("l", (("x", 0, ("a", "b")), ("l", (("x", 1, ("c",)),)))), deps)
    assert value_of(out) == ([1, 2, [3]], None)


def test_outcome_at_ref_and_list():
    results = {"k1": {"a": 1, "b": 2}, "k2": {"c": 3}}
    assert outcome_at(Ref("k1", "b"), results) == 2
    out = outcome_at(Lst((Ref("k1", "a"), Lst((Ref("k2", "c"),)))), results)
    assert value_of(out) == ([1, [3]], None)


def _spy_on_event_batches(dask_worker) -> None:
    """Record how each nbcanvas event batch leaves this worker (the real send still goes)."""
    stream = dask_worker.batched_stream
    if getattr(stream, "nbcanvas_seen", None) is None:
        stream.nbcanvas_seen, send = [], stream.send

        def send_and_note(*msgs):
            for m in msgs:
                if isinstance(m, dict) and m.get("op") == "log-event" and m.get("topic") == "nbcanvas":
                    stream.nbcanvas_seen.append(type(m["msg"]["ev"]).__name__)
            return send(*msgs)
        stream.send = send_and_note
    stream.nbcanvas_seen.clear()


@pytest.mark.parametrize("fixture", ["dask_client", "threads_client"])
def test_event_batches_leave_the_worker_pickled_and_reach_the_client_as_events(fixture, request):
    """Worker processes (TCP) and the threads pool (in memory) alike: a batch leaves the
    worker as ``ToPickle`` (so the worker does not walk every event to check it, and the
    in-memory hop does not copy it), and both the scheduler's record and the client's store
    read the plain events (state, start time, which worker ran the step)."""
    from nbcanvas.cluster import connection
    client = request.getfixturevalue(fixture)
    mine = nc.App(f"tests.test_runtime.{fixture}", set_as_current=False)
    mine.connect(client)
    inc = mine.task(lambda x: x + 1, name="tr.inc")
    client.run(_spy_on_event_batches)
    r = nc.chain(inc.s(1), inc.s(), inc.s()).delay()
    assert r.get(timeout=60) == 4
    seen = [k for ks in client.run(lambda dask_worker: list(dask_worker.batched_stream.nbcanvas_seen)).values() for k in ks]
    assert seen and set(seen) == {"ToPickle"}, seen
    rec = connection(mine).rpc("nbcanvas_lookup", id=r.handle.id)
    assert [row[0] for row in rec["states"].values()] == ["SUCCESS"] * 3
    node = r.handle.store.get(r.id)
    assert node is not None and node.state == "SUCCESS"
    assert node.started is not None and node.host
    r.forget()



# -- canvases compiled on a worker --------------------------------------------------------------

def _task_prefixes(client, name: str) -> set[str]:
    """The scheduler's task prefixes with ``name`` in them (it keeps them all for good)."""
    return set(client.run_on_scheduler(
        lambda dask_scheduler, name=name: [p for p in dask_scheduler.task_prefixes
                                           if name in p]))


@pytest.mark.parametrize("fixture, tagged", [("threads_client", False), ("dask_client", True)])
def test_fan_outs_made_at_run_time_are_named_as_the_client_names_batches(fixture, tagged,
                                                                         request):
    """A ``foreach`` compiles its fan-out on the worker, and names its batches as the client
    would for that cluster: on the embedded one (no task is root-ish) without a per-workflow
    tag, so workflows add no task prefix, which the scheduler and every worker keep for good
    and walk on every transition; on a user's cluster that hands root-ish tasks out in blocks
    by name (this one: ``worker-saturation: inf``), with one."""
    client = request.getfixturevalue(fixture)
    mine = nc.App(f"tests.test_runtime.dynamic-{fixture}", set_as_current=False)
    mine.connect(client)
    upto = mine.task(lambda n: list(range(n)), name=f"trt.upto_{fixture}")
    inc = mine.task(lambda x: x + 1, name=f"trt.dyn_{fixture}")
    kept = [nc.chain(upto.s(200), nc.foreach(inc.s())).delay() for _ in range(3)]
    try:
        for r in kept:
            assert r.get(timeout=60) == list(range(1, 201))
        prefixes = _task_prefixes(client, f"dyn_{fixture}")
        if tagged:
            assert len(prefixes) == 3 and all(p.startswith(f"dyn_{fixture}_batch.")
                                              for p in prefixes), prefixes
        else:
            assert prefixes == {f"dyn_{fixture}_batch"}
    finally:
        for r in kept:
            r.forget()


def test_a_fan_out_of_tasks_known_to_be_tiny_runs_in_place(dask_client):
    """A ``foreach`` over tasks the client knows to be tiny (all of them less work than one
    dask task) runs them inside its own unit: nothing of theirs reaches the scheduler, yet
    every element is announced, reported and returned as with a fan-out through dask, which
    the same canvas over tasks nobody has timed still makes."""
    from nbcanvas import store
    mine = nc.App("tests.test_runtime.in-place", set_as_current=False)
    mine.connect(dask_client)
    upto = mine.task(lambda n: list(range(n)), name="trt.upto_in_place")
    known = mine.task(lambda x: x + 1, name="trt.in_place_known")
    unknown = mine.task(lambda x: x + 1, name="trt.in_place_unknown")
    saved = dict(store.DURATIONS)
    store.DURATIONS[known.s().name] = 1e-5
    try:
        for t in (known, unknown):
            sig = nc.chain(upto.s(10), nc.foreach(t.s())).freeze()
            r = sig.delay()
            assert r.get(timeout=60) == list(range(1, 11))
            fe, st = sig.tasks[1], r.handle.store
            assert st.wait(lambda s: s.finished(), 30)
            assert [st.state(f"{fe.body.id}:{i}") for i in range(10)] == ["SUCCESS"] * 10
            assert st.get(fe.id).inline is not None  # the result rode in the foreach's event
            r.forget()
    finally:
        store.DURATIONS.clear()
        store.DURATIONS.update(saved)
    assert _task_prefixes(dask_client, "in_place_unknown")  # fanned out through dask
    assert not _task_prefixes(dask_client, "in_place_known")
