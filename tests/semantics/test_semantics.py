"""The rules of API.md beyond the seed, as every engine must follow them (see conftest ``run``)."""
from __future__ import annotations

import pytest

import nbcanvas as nc
from nbcanvas import chain, chord, group

from . import seedtasks as t
from .seedtasks import records


def tagged(path, tag):
    """Records of ``path`` whose task/tag is ``tag``."""
    return [r for r in records(path) if r["task"] == tag]


# -- chords ------------------------------------------------------------------------------------------


def test_empty_chord_header_calls_body_with_empty_list(run):
    assert run(chord([], t.collect.s())).get() == []
    assert run(chord(group(), t.tsum.s())).get() == 0
    assert run(chord([])(t.collect.s())).get() == []


def test_empty_group_then_body_in_chain(run):
    assert run(chain(group([]), t.collect.s())).get() == []


def test_group_results_in_header_order(run):
    # Members finish in reverse order; results still come in header order.
    n = 6
    g = group(t.delayed.s(i, (n - i) * 0.01) for i in range(n))
    assert run(g).get() == list(range(n))
    assert run(chord(g, t.collect.s())).get() == list(range(n))


def test_group_of_many_in_order(run):
    assert run(group(t.identity.s(i) for i in range(200))).get() == list(range(200))


def test_chord_header_failure_runs_errback_once_and_body_not_run(run, log, settle):
    c = chord([t.add.s(1, 1), t.fail.s(message="header broke"), t.add.s(2, 2)],
              t.record.s(path=log, tag="body"))
    r = run(c, link_error=t.record.s(path=log, tag="errback"))
    with pytest.raises(t.Boom, match="header broke"):
        r.get()
    settle(r)
    assert tagged(log, "body") == []
    errbacks = tagged(log, "errback")
    assert len(errbacks) == 1, errbacks
    assert errbacks[0]["args"] == ["Boom('header broke')"]
    assert r.state == "NOT_RUN"
    assert [m.state for m in r.parent.results] == ["SUCCESS", "FAILURE", "SUCCESS"]


# -- chains and failures ----------------------------------------------------------------------------


def test_failing_step_stops_the_chain(run, log, settle):
    wf = chain(t.add.s(1, 1), t.fail.s(), t.record.s(path=log, tag="after"), t.add.s(1))
    r = run(wf)
    with pytest.raises(t.Boom):
        r.get()
    settle(r)
    assert records(log) == []
    states = []
    node = r
    while node is not None:
        states.append(node.state)
        node = node.parent
    assert states == ["NOT_RUN", "NOT_RUN", "FAILURE", "SUCCESS"]


def test_not_run_steps_by_id(run):
    wf = chain(t.add.s(1, 1), t.fail.s(), t.add.s(1), t.add.s(2)).freeze()
    ids = [s.id for s in wf.tasks]
    r = run(wf)
    assert r.id == ids[-1]
    r.get(propagate=False)  # wait: on a cluster the states arrive as the steps run
    assert [nc.AsyncResult(i).state for i in ids] == ["SUCCESS", "FAILURE", "NOT_RUN", "NOT_RUN"]
    assert nc.AsyncResult(ids[0]).get() == 2


def test_get_raises_original_type_with_remote_traceback(run):
    r = run(chain(t.add.s(1, 1), t.fail.s(message="kaput")))
    with pytest.raises(t.Boom) as info:
        r.get()
    exc = info.value
    assert type(exc) is t.Boom
    assert str(exc) == "kaput"
    notes = "\n".join(getattr(exc, "__notes__", []))
    assert "Traceback (most recent call last)" in notes
    assert "raise Boom(message)" in notes
    assert "Boom: kaput" in notes
    assert "Boom: kaput" in r.traceback
    assert r.parent.traceback is None


def test_builtin_exception_type_kept(run):
    r = run(chain(t.validate_input.s({}), t.process_valid.s()))
    with pytest.raises(ValueError, match="Missing user_id") as info:
        r.get()
    assert type(info.value) is ValueError


def test_get_propagate_false_returns_the_exception(run):
    r = run(t.fail.s(message="quiet"))
    exc = r.get(propagate=False)
    assert isinstance(exc, t.Boom) and str(exc) == "quiet"
    assert r.failed() and not r.successful() and r.ready()
    assert r.state == "FAILURE"
    assert isinstance(r.info, t.Boom)


def test_chain_plain_errback_runs_once(run, log, settle):
    wf = chain(t.add.s(1, 1), t.fail.s(), t.add.s(1), t.add.s(2))
    r = run(wf, link_error=t.plain_errback.s(path=log))
    with pytest.raises(t.Boom):
        r.get()
    settle(r)
    assert records(log) == [{"task": "plain_errback", "exc_type": "Boom", "exc": "boom"}]


def test_chain_bound_errback_gets_traceback_once(run, log, settle):
    wf = chain(t.add.s(1, 1), t.fail.s(message="tb please"), t.add.s(1))
    r = run(wf, link_error=t.bound_errback.s(path=log))
    with pytest.raises(t.Boom):
        r.get()
    settle(r)
    calls = records(log)
    assert len(calls) == 1, calls
    assert (calls[0]["exc_type"], calls[0]["exc"]) == ("Boom", "tb please")
    assert "Traceback (most recent call last)" in calls[0]["traceback"]
    assert "Boom: tb please" in calls[0]["traceback"]


def test_chain_errback_given_with_link_error_method(run, log, settle):
    wf = chain(t.add.s(1, 1), t.fail.s(), t.add.s(1)).link_error(t.plain_errback.s(path=log))
    r = run(wf)
    with pytest.raises(t.Boom):
        r.get()
    settle(r)
    assert len(records(log)) == 1


def test_chain_errback_not_called_on_success(run, log, settle):
    r = run(chain(t.add.s(1, 1), t.add.s(1)), link_error=t.plain_errback.s(path=log))
    assert r.get() == 3
    settle(r)
    assert records(log) == []


def test_step_errback_and_chain_errback_each_once(run, log, settle):
    step = t.fail.s().on_error(t.record.s(path=log, tag="step-errback"))
    wf = chain(t.add.s(1, 1), step, t.add.s(1))
    r = run(wf, link_error=t.record.s(path=log, tag="chain-errback"))
    with pytest.raises(t.Boom):
        r.get()
    settle(r)
    assert len(tagged(log, "step-errback")) == 1
    assert len(tagged(log, "chain-errback")) == 1


def test_failure_inside_group_in_chain(run, log, settle):
    wf = chain(t.add.s(1, 1), group(t.fail.s(), t.add.s(1)), t.record.s(path=log, tag="after"))
    r = run(wf, link_error=t.record.s(path=log, tag="errback"))
    with pytest.raises(t.Boom):
        r.get()
    settle(r)
    assert tagged(log, "after") == []
    assert len(tagged(log, "errback")) == 1
    assert r.state == "NOT_RUN"


# -- links, immutables, partials ---------------------------------------------------------------------


def test_link_gets_result_prepended(run, log, settle):
    r = run(t.add.s(2, 3).link(t.record.s("extra", path=log, tag="link")))
    assert r.get() == 5
    settle(r)
    assert tagged(log, "link") == [{"task": "link", "args": [5, "extra"], "kwargs": {}}]


def test_link_on_apply_runs_once_with_chain_result(run, log, settle):
    r = run(chain(t.add.s(1, 1), t.mul.s(10)), link=t.record.s(path=log, tag="link"))
    assert r.get() == 20
    settle(r)
    assert tagged(log, "link") == [{"task": "link", "args": [20], "kwargs": {}}]


def test_link_not_called_on_failure(run, log, settle):
    r = run(t.fail.s(), link=t.record.s(path=log, tag="link"))
    with pytest.raises(t.Boom):
        r.get()
    settle(r)
    assert records(log) == []


def test_immutable_link_ignores_result(run, log, settle):
    r = run(t.add.s(1, 1).link(t.record.si("fixed", path=log, tag="link")))
    assert r.get() == 2
    settle(r)
    assert tagged(log, "link") == [{"task": "link", "args": ["fixed"], "kwargs": {}}]


def test_link_on_group_gets_list(run, log, settle):
    r = run(group(t.add.s(1, 1), t.add.s(2, 2)), link=t.record.s(path=log, tag="link"))
    assert r.get() == [2, 4]
    settle(r)
    assert tagged(log, "link") == [{"task": "link", "args": [[2, 4]], "kwargs": {}}]


def test_immutable_ignores_parent_result(run):
    assert run(chain(t.add.s(1, 1), t.add.si(10, 10))).get() == 20
    assert run(chain(t.add.s(1, 1), t.add.si(10, 10), t.add.s(1))).get() == 21


def test_immutable_ignores_later_args(run):
    assert run(t.add.si(1, 2), args=(100,)).get() == 3
    assert run(t.add.si(1, 2), kwargs={"x": 100}).get() == 3


def test_later_args_prepended(run):
    assert run(t.sub.s(10), args=(3,)).get() == -7
    assert run(chain(t.add.s(1, 2), t.sub.s(10))).get() == 3 - 10


def test_later_kwargs_override(run):
    assert run(t.pair.s(1, y=2), kwargs={"y": 3}).get() == [1, 3, None]
    assert run(t.pair.s(1, y=2), kwargs={"z": 4}).get() == [1, 2, 4]
    assert run(t.pair.s(y=2).clone((7,), {"y": 5})).get() == [7, 5, None]


def test_parent_result_prepended_with_kwargs(run):
    assert run(chain(t.identity.s("a"), t.pair.s(z="c"))).get() == ["a", None, "c"]


# -- foreach -----------------------------------------------------------------------------------------


def test_foreach_maps_over_previous_result(run):
    r = run(chain(t.numbers.s(4), nc.foreach(t.mul.s(10))))
    assert r.get() == [0, 10, 20, 30]
    assert r.state == "SUCCESS"
    assert [c.get() for c in r.children] == [0, 10, 20, 30]


def test_foreach_of_empty_list(run):
    assert run(chain(t.numbers.s(0), nc.foreach(t.mul.s(10)))).get() == []


def test_foreach_given_its_sequence(run):
    assert run(nc.foreach(t.mul.s(2)), args=([1, 2, 3],)).get() == [2, 4, 6]


def test_foreach_of_chain_body(run):
    wf = chain(t.numbers.s(3), nc.foreach(chain(t.add.s(1), t.mul.s(10))), t.collect.s())
    assert run(wf).get() == [10, 20, 30]


def test_foreach_of_group_body(run):
    wf = chain(t.numbers.s(3), nc.foreach(group(t.add.s(1), t.mul.s(2))))
    assert run(wf).get() == [[1, 0], [2, 2], [3, 4]]


def test_foreach_then_more_steps(run):
    wf = chain(t.numbers.s(5), nc.foreach(t.mul.s(2)), t.tsum.s(), t.add.s(1))
    assert run(wf).get() == 2 * (0 + 1 + 2 + 3 + 4) + 1


def test_foreach_element_failure_fails_step_and_stops_chain(run, log, settle):
    wf = chain(t.identity.s([{"user_id": 1}, {}, {"user_id": 3}]),
               nc.foreach(t.validate_input.s()), t.record.s(path=log, tag="after"))
    r = run(wf, link_error=t.record.s(path=log, tag="errback"))
    with pytest.raises(ValueError, match="Missing user_id"):
        r.get()
    settle(r)
    assert tagged(log, "after") == []
    assert len(tagged(log, "errback")) == 1
    assert r.state == "NOT_RUN"
    assert r.parent.state == "FAILURE"


def test_foreach_after_failed_step_not_run(run):
    wf = chain(t.fail.s(), nc.foreach(t.mul.s(2))).freeze()
    r = run(wf)
    with pytest.raises(t.Boom):
        r.get()
    assert nc.AsyncResult(wf.tasks[1].id).state == "NOT_RUN"


# -- branch ------------------------------------------------------------------------------------------


def test_branch_then(run):
    # cond gets the previous result; the chosen branch gets the previous result too
    wf = chain(t.add.s(2, 2), nc.branch(t.is_even.s(), t.mul.s(10), t.add.s(1)))
    assert run(wf).get() == 40


def test_branch_otherwise(run):
    wf = chain(t.add.s(2, 1), nc.branch(t.is_even.s(), t.mul.s(10), t.add.s(1)))
    assert run(wf).get() == 4


def test_branch_otherwise_none_passes_input_through(run):
    wf = chain(t.add.s(2, 1), nc.branch(t.is_even.s(), t.mul.s(10)), t.add.s(100))
    assert run(wf).get() == 103


def test_branch_not_taken_is_not_run(run, log, settle):
    then = t.record.s(path=log, tag="then")
    otherwise = t.record.s(path=log, tag="otherwise")
    wf = chain(t.identity.s(3), nc.branch(t.is_even.s(), then, otherwise)).freeze()
    b = wf.tasks[1]
    r = run(wf)
    assert r.get() == 3
    settle(r)
    assert [rec["task"] for rec in records(log)] == ["otherwise"]
    assert nc.AsyncResult(b.then.id).state == "NOT_RUN"
    assert nc.AsyncResult(b.otherwise.id).state == "SUCCESS"
    assert nc.AsyncResult(b.cond.id).get() is False
    assert r.state == "SUCCESS"


def test_branch_with_group_and_chain_branches(run):
    br = nc.branch(t.is_even.s(), group(t.add.s(1), t.mul.s(3)), chain(t.add.s(100), t.mul.s(2)))
    assert run(chain(t.identity.s(4), br)).get() == [5, 12]
    assert run(chain(t.identity.s(5), br)).get() == 210


def test_branch_with_chord_branch_and_group_cond(run):
    cond = chain(group(t.identity.s(), t.is_even.s()), t.collect.s(), t.identity.s())
    br = nc.branch(t.is_even.s(), chord([t.add.s(1), t.add.s(2)], t.tsum.s()))
    assert run(chain(t.identity.s(2), br)).get() == 3 + 4
    assert run(chain(t.identity.s(3), br)).get() == 3
    # any canvas as the condition: its (truthy) result decides
    assert run(chain(t.identity.s(3), nc.branch(cond, t.mul.s(2)))).get() == 6


def test_branch_given_its_input(run):
    assert run(nc.branch(t.is_even.s(), t.mul.s(10)), args=(6,)).get() == 60


def test_branch_condition_failure(run, log, settle):
    wf = chain(t.identity.s(1), nc.branch(t.fail.s(), t.record.s(path=log, tag="then"),
                                          t.record.s(path=log, tag="otherwise")))
    r = run(wf, link_error=t.record.s(path=log, tag="errback"))
    with pytest.raises(t.Boom):
        r.get()
    settle(r)
    assert [rec["task"] for rec in records(log)] == ["errback"]


# -- nesting -----------------------------------------------------------------------------------------


def test_group_of_chains(run):
    g = group(chain(t.add.s(1, 1), t.mul.s(10)), chain(t.add.s(2, 2), t.mul.s(10)))
    assert run(g).get() == [20, 40]


def test_chain_of_groups_and_chords(run):
    wf = chain(
        t.add.s(1, 1),                                  # 2
        group(t.add.s(1), t.add.s(2)),                  # [3, 4]
        t.tsum.s(),                                     # 7 (group | sig is a chord)
        group(t.mul.s(2), t.mul.s(3)),                  # [14, 21]
        chord([t.tsum.s(), t.collect.s()], t.collect.s()),  # header members get [14, 21]
    )
    assert run(wf).get() == [35, [14, 21]]


def test_chord_header_with_chains_and_groups(run):
    c = chord([chain(t.add.s(1, 1), t.mul.s(3)), group(t.add.s(1, 1), t.add.s(2, 2)),
               t.identity.s("x")], t.collect.s())
    assert run(c).get() == [6, [2, 4], "x"]


def test_chord_body_is_a_chain(run):
    c = chord([t.add.s(1, 1), t.add.s(2, 2)], chain(t.tsum.s(), t.mul.s(2)))
    assert run(c).get() == 12


def test_chord_body_is_a_group(run):
    c = chord([t.add.s(1, 1), t.add.s(2, 2)], group(t.tsum.s(), t.collect.s()))
    assert run(c).get() == [6, [2, 4]]


def _nested(depth):
    if depth == 0:
        return t.add.s(1, 1)
    return chord([_nested(depth - 1), _nested(depth - 1)], t.tsum.s())


def test_depth_6_nested_chords(run):
    assert run(_nested(6)).get() == 2 * 2 ** 6


def test_group_in_chain_passes_parent_result_to_every_member(run):
    wf = chain(t.add.s(2, 3), group(t.mul.s(1), t.mul.s(2), t.mul.s(3)))
    assert run(wf).get() == [5, 10, 15]


def test_nested_chain_in_chain_flattens_and_runs(run):
    inner = chain(t.add.s(1), t.mul.s(2))
    assert run(chain(t.add.s(1, 1), inner, inner)).get() == ((2 + 1) * 2 + 1) * 2


# -- map / starmap / chunks --------------------------------------------------------------------------


def test_map(run):
    assert run(t.upper.map(["a", "b", "c"])).get() == ["A", "B", "C"]


def test_starmap(run):
    assert run(t.add.starmap([(1, 2), (3, 4)])).get() == [3, 7]


def test_chunks(run):
    pairs = list(zip(range(10), range(10)))
    expected = [[0, 2, 4], [6, 8, 10], [12, 14, 16], [18]]
    r = run(t.add.chunks(pairs, 3))
    assert r.get() == expected
    g = run(t.add.chunks(pairs, 3).group())
    assert isinstance(g, nc.GroupResult)
    assert g.get() == expected
    assert len(g.results) == 4


def test_map_in_chord_header(run):
    c = chord([t.upper.map(["a"]), t.add.starmap([(1, 1)])], t.collect.s())
    assert run(c).get() == [["A"], [2]]


# -- retries -----------------------------------------------------------------------------------------


def test_bound_retry_succeeds_on_third_try(run, log):
    r = run(t.flaky.s(3, path=log))
    assert r.get() == 2  # self.request.retries on the attempt that succeeded
    assert [rec["attempt"] for rec in records(log)] == [1, 2, 3]
    assert r.state == "SUCCESS"


def test_bound_retry_past_max_retries_raises_exc(run, log):
    r = run(t.flaky.s(10, path=log))  # default max_retries=3: 4 attempts in all
    with pytest.raises(OSError, match="not yet"):
        r.get()
    assert [rec["attempt"] for rec in records(log)] == [1, 2, 3, 4]
    assert r.state == "FAILURE"


def test_bound_retry_max_retries_option_on_signature(run, log):
    r = run(t.flaky.s(10, path=log).set(max_retries=1))
    with pytest.raises(OSError):
        r.get()
    assert len(records(log)) == 2


def test_autoretry_ends_in_failure_after_three_attempts(run, log):
    r = run(t.always_ioerror.s(path=log))
    with pytest.raises(OSError, match="disk on fire"):
        r.get()
    assert len(records(log)) == 3
    assert r.state == "FAILURE"


def test_autoretry_succeeds(run, log):
    r = run(t.ioerror_until.s(3, path=log))
    assert r.get() == 3
    assert len(records(log)) == 3


def test_autoretry_only_for_listed_exceptions(run, log):
    # Boom is not an IOError: one attempt only
    r = run(t.fail.s(path=log).set(autoretry_for=(IOError,), max_retries=3,
                                   default_retry_delay=0))
    with pytest.raises(t.Boom):
        r.get()
    assert len(records(log)) == 1


def test_autoretry_options_on_signature(run, log):
    r = run(t.fail.s(path=log).set(autoretry_for=(t.Boom,), max_retries=2,
                                   default_retry_delay=0))
    with pytest.raises(t.Boom):
        r.get()
    assert len(records(log)) == 3


def test_retry_options_inherited_from_chain(run, log):
    wf = chain(t.identity.s(1), t.fail.s(path=log)).set(autoretry_for=(t.Boom,), max_retries=1,
                                                        default_retry_delay=0)
    r = run(wf)
    with pytest.raises(t.Boom):
        r.get()
    assert len(records(log)) == 2


def test_retried_step_in_chain_then_continues(run, log):
    r = run(chain(t.ioerror_until.s(2, path=log), t.mul.s(100)))
    assert r.get() == 200


# -- result objects ------------------------------------------------------------------------------------


def test_parent_chain_walking(run):
    r = run(chain(t.add.s(1, 1), t.add.s(1), t.add.s(1)))
    values = []
    node = r
    while node is not None:
        values.append(node.get())
        node = node.parent
    assert values == [4, 3, 2]


def test_children_are_callbacks(run, log):
    r = run(t.add.s(1, 1).link(t.record.s(path=log, tag="link")))
    assert r.get() == 2
    kids = r.children
    assert len(kids) == 1
    assert kids[0].state == "SUCCESS"
    assert kids[0].get() == 2  # record returns its first argument


def test_group_result_interface(run):
    g = run(group(t.add.s(1, 1), t.fail.s(), t.add.s(2, 2)))
    assert isinstance(g, nc.GroupResult)
    assert g.ready()
    assert g.completed_count() == 2
    assert not g.successful()
    assert g.failed()
    assert not g.waiting()
    assert len(g.results) == 3 and len(g) == 3
    assert [r.state for r in g.results] == ["SUCCESS", "FAILURE", "SUCCESS"]
    values = g.get(propagate=False)
    assert values[0] == 2 and values[2] == 4 and isinstance(values[1], t.Boom)
    with pytest.raises(t.Boom):
        g.get()
    with pytest.raises(t.Boom):
        g.join()


def test_group_result_all_successful(run):
    g = run(group(t.add.s(i, i) for i in range(4)))
    assert g.successful() and not g.failed() and g.ready()
    assert g.completed_count() == 4
    assert [r.get() for r in g.results] == [0, 2, 4, 6]
    assert [r.get() for r in g] == [0, 2, 4, 6]
    assert g[1].get() == 2


def test_async_result_interface(run):
    r = run(t.add.s(2, 2))
    assert r.ready() and r.successful() and not r.failed()
    assert r.state == r.status == "SUCCESS"
    assert r.result == r.info == 4
    assert r.traceback is None
    assert r.wait() == 4
    assert nc.AsyncResult(r.id).get() == 4
    assert nc.AsyncResult(r.id) == r


def test_result_by_id_of_every_step(run):
    wf = chain(t.add.s(1, 1), group(t.mul.s(2), t.mul.s(3)), t.tsum.s()).freeze()
    r = run(wf)
    assert r.get() == 10
    first, grp = wf.tasks[0], wf.tasks[1]
    assert nc.AsyncResult(first.id).get() == 2
    assert [nc.AsyncResult(m.id).get() for m in grp.tasks] == [4, 6]


def test_parent_result_unchanged_by_a_mutating_step(run):
    r = run(chain(t.fetch_data.s(42), t.process_data.s()))
    assert r.get()["processed"] is True
    assert r.parent.get() == {"user_id": 42, "data": "raw_data"}


# -- arguments given when sending --------------------------------------------------------------------


def test_apply_args_go_to_first_step_of_chain(run):
    assert run(chain(t.sub.s(10), t.add.s(1)), args=(3,)).get() == (3 - 10) + 1


def test_apply_args_go_to_every_group_member(run):
    assert run(group(t.sub.s(1), t.sub.s(2)), args=(10,)).get() == [9, 8]


def test_apply_args_go_to_chord_header(run):
    assert run(chord([t.sub.s(1), t.sub.s(2)], t.collect.s()), args=(10,)).get() == [9, 8]


def test_link_on_a_step_inside_a_chain(run, log, settle):
    wf = chain(t.add.s(1, 1).link(t.record.s(path=log, tag="step-link")), t.mul.s(10))
    r = run(wf)
    assert r.get() == 20
    settle(r)
    assert tagged(log, "step-link") == [{"task": "step-link", "args": [2], "kwargs": {}}]


# -- bound tasks, options -------------------------------------------------------------------------------


def test_bound_task_request(run):
    r = run(chain(t.identity.s("in"), t.whoami.s()))
    rid, retries, args = r.get()
    assert rid == r.id
    assert retries == 0
    assert args == ["in"]


def test_time_limit_interrupts_step(run):
    r = run(t.spin.s(30).set(time_limit=0.2))
    with pytest.raises(nc.TimeLimitExceeded):
        r.get(timeout=25)
    assert r.state == "FAILURE"


def test_countdown_still_runs(run):
    assert run(t.add.s(1, 1).set(countdown=0.01)).get() == 2


def test_expired_step_is_revoked(run):
    import datetime
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=60)
    r = run(chain(t.add.s(1, 1), t.add.s(1).set(expires=past)))
    with pytest.raises(nc.TaskRevokedError):
        r.get()
    assert r.state == "REVOKED"
    assert r.parent.get() == 2


def test_long_chain_runs(run):
    wf = t.add.s(0, 0)
    for _ in range(999):
        wf = wf | t.add.s(1)
    assert len(wf.tasks) == 1000
    assert run(wf).get() == 999


def test_large_group_runs(run):
    assert run(group(t.add.s(i, 1) for i in range(2000))).get() == [i + 1 for i in range(2000)]


# -- running the same frozen canvas again ------------------------------------------------------------

def test_same_frozen_canvas_runs_again(run, log):
    wf = chain(t.record.s("a", path=log, tag="first"), t.fail.s(path=log)).freeze()
    first = run(wf)
    with pytest.raises(t.Boom):
        first.get()
    assert first.state == "FAILURE"
    ok = chain(t.record.s("a", path=log, tag="first"), t.identity.s()).freeze()
    again = run(ok)
    again2 = run(ok)  # same ids again: it runs again and reports its own states
    assert again.get() == again2.get() == "a"
    assert again2.state == "SUCCESS"
    assert len(tagged(log, "first")) == 3


def test_same_frozen_canvas_after_failure_reports_new_states(run, tmp_path):
    flag = str(tmp_path / "flag")
    wf = t.gate.s(flag, timeout=0).freeze()  # fails until the flag file exists
    r1 = run(wf)
    with pytest.raises(TimeoutError):
        r1.get()
    open(flag, "w").close()
    r2 = run(wf)
    assert r2.get() == "flag"
    assert r2.state == "SUCCESS"
    assert nc.AsyncResult(wf.id).state == "SUCCESS"


# -- callbacks on every kind of canvas -----------------------------------------------------------------


def test_group_then_group_passes_the_list_to_every_member(run):
    wf = chain(group(t.add.s(1, 1), t.add.s(2, 2)), group(t.tsum.s(), t.collect.s()))
    assert run(wf).get() == [6, [2, 4]]


def test_apply_kwargs_override_in_every_group_member(run):
    r = run(group(t.pair.s(1, y=2), t.pair.s(2)), kwargs={"z": 9, "y": 0})
    assert r.get() == [[1, 0, 9], [2, 0, 9]]


def test_errback_of_a_chain_inside_a_group(run, log, settle):
    inner = chain(t.add.s(1, 1), t.fail.s()).link_error(t.record.s(path=log, tag="eb"))
    r = run(group(inner, t.add.s(2, 2)))
    values = r.get(propagate=False)
    assert isinstance(values[0], t.Boom) and values[1] == 4
    settle(r)
    assert tagged(log, "eb") == [{"task": "eb", "args": ["Boom('boom')"], "kwargs": {}}]


def test_link_of_a_chord_gets_the_body_result(run, log, settle):
    r = run(chord([t.add.s(1, 1), t.add.s(2, 2)], t.tsum.s()).link(t.record.s(path=log,
                                                                              tag="l")))
    assert r.get() == 6
    settle(r)
    assert tagged(log, "l") == [{"task": "l", "args": [6], "kwargs": {}}]


def test_link_of_a_chord_header_member(run, log, settle):
    member = t.add.s(1, 1).link(t.record.s(path=log, tag="member"))
    r = run(chord([member, t.add.s(2, 2)], t.tsum.s()))
    assert r.get() == 6
    settle(r)
    assert tagged(log, "member") == [{"task": "member", "args": [2], "kwargs": {}}]


def test_link_and_errback_of_foreach_and_branch(run, log, settle):
    ok = run(chain(t.numbers.s(3), nc.foreach(t.mul.s(2)).link(t.record.s(path=log, tag="fl"))))
    assert ok.get() == [0, 2, 4]
    bad = run(chain(t.numbers.s(3),
                    nc.foreach(t.fail.s()).link_error(t.record.s(path=log, tag="fe"))))
    with pytest.raises(t.Boom):
        bad.get()
    br = run(chain(t.identity.s(4),
                   nc.branch(t.is_even.s(), t.mul.s(2)).link(t.record.s(path=log, tag="bl"))))
    assert br.get() == 8
    for r in (ok, bad, br):
        settle(r)
    assert tagged(log, "fl") == [{"task": "fl", "args": [[0, 2, 4]], "kwargs": {}}]
    assert tagged(log, "fe") == [{"task": "fe", "args": ["Boom('boom')"], "kwargs": {}}]
    assert tagged(log, "bl") == [{"task": "bl", "args": [8], "kwargs": {}}]


def test_group_errback_runs_once_with_the_first_failure_in_header_order(run, log, settle):
    # Deliberately not Celery's (which calls a group's errback once per failed member).
    r = run(group(t.add.s(1, 1), t.fail.s(message="a"), t.fail.s(message="b")),
            link_error=t.record.s(path=log, tag="eb"))
    values = r.get(propagate=False)
    assert values[0] == 2 and [str(v) for v in values[1:]] == ["a", "b"]
    settle(r)
    assert tagged(log, "eb") == [{"task": "eb", "args": ["Boom('a')"], "kwargs": {}}]


def test_chain_errback_once_when_a_chord_inside_fails(run, log, settle):
    wf = chain(t.add.s(1, 1), chord([t.mul.s(2), t.fail.s(), t.fail.s()], t.tsum.s()),
               t.add.s(1))
    r = run(wf, link_error=t.record.s(path=log, tag="eb"))
    with pytest.raises(t.Boom):
        r.get()
    settle(r)
    assert len(tagged(log, "eb")) == 1
    assert r.state == "NOT_RUN" and r.parent.state == "NOT_RUN"
