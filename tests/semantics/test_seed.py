"""Every example of the seed tutorial (../shared/seed/000_*.txt), with the result Celery gives.

Each test sends its canvas through the ``run`` fixture, so the same tests check every engine.
"""
from __future__ import annotations


import pytest

import nbcanvas as nc
from nbcanvas import chain, chord, group, signature

from . import seedtasks as t
from .seedtasks import records

# -- Task Signatures Basics -----------------------------------------------------------------------


def test_signature_shorthand(run):
    sig = t.add.s(2, 2)
    assert run(sig).get() == 4


def test_signature_by_name(run):
    sig = signature("tasks.add", args=(2, 2))
    assert sig == t.add.s(2, 2)
    assert sig.type is t.add
    assert run(sig).get() == 4


def test_partial_signature(run):
    partial_add = t.add.s(2)
    assert run(partial_add, args=(3,)).get() == 5


def test_partial_arguments_are_prepended(run):
    # Celery's real behaviour: sub.s(10).delay(3) runs sub(3, 10).
    assert run(t.sub.s(10), args=(3,)).get() == -7
    assert t.sub.s(10).clone((3,)).args == (3, 10)


# -- Task Chaining ------------------------------------------------------------------------------------


def test_chain_fetch_process_save(run):
    workflow = chain(
        t.fetch_data.s(user_id=42),
        t.process_data.s(),
        t.save_result.s(),
    )
    result = run(workflow)
    assert result.get() == "result-42"
    assert result.parent.get() == {"user_id": 42, "data": "raw_data", "processed": True}
    first = result.parent.parent
    # process_data mutates its input; as with Celery, fetch_data's own result is unchanged
    assert first.get() == {"user_id": 42, "data": "raw_data"}
    assert first.parent is None


# -- Parallel Execution with Groups ------------------------------------------------------------------


def test_group_of_images(run):
    job = group(t.process_image.s(i) for i in range(1, 6))
    results = run(job)
    assert isinstance(results, nc.GroupResult)
    assert results.get() == [f"processed_image_{i}" for i in range(1, 6)]
    assert results.get()[:2] == ["processed_image_1", "processed_image_2"]


# -- Chords ------------------------------------------------------------------------------------------


def test_chord_aggregate_stats(run):
    workflow = chord([t.fetch_user_data.s(i) for i in range(1, 6)])(t.aggregate_stats.s())
    assert run(workflow).get() == {"total_users": 5, "total_posts": 50}


# -- Complex Workflows: Chains of Groups -------------------------------------------------------------


def test_chain_of_group_and_chord(run):
    workflow = chain(
        group(t.fetch_source_a.s(), t.fetch_source_b.s()),
        chord([t.process_batch.s()])(t.combine_results.s()),
    )
    # As in Celery, the group followed by a chord becomes chord(group, chord): the list of
    # the group's results is prepended to every header task of the second chord.
    processed = "processed_['data_from_source_a', 'data_from_source_b']"
    assert run(workflow).get() == f"combined_{[processed]}"
    assert run(workflow).get() == \
        "combined_[\"processed_['data_from_source_a', 'data_from_source_b']\"]"


# -- Conditional Execution and Error Handling ----------------------------------------------------------


def test_error_handling_valid_input(run, log, settle):
    workflow = chain(t.validate_input.s({"user_id": 42}), t.process_valid.s())
    result = run(workflow, link_error=t.handle_error.s(log=log))
    assert result.get() == "processed_42"
    settle(result)
    assert records(log) == []


def test_error_handling_invalid_input(run, log, settle):
    workflow = chain(t.validate_input.s({}), t.process_valid.s())
    result = run(workflow, link_error=t.handle_error.s(log=log))
    with pytest.raises(ValueError, match="Missing user_id"):
        result.get()
    settle(result)
    calls = records(log)
    assert len(calls) == 1, calls
    (call,) = calls
    assert call["task"] == "handle_error"
    assert (call["exc_type"], call["exc"]) == ("ValueError", "Missing user_id")
    assert "Traceback (most recent call last)" in call["traceback"]
    assert "ValueError: Missing user_id" in call["traceback"]
    assert "validate_input" in call["traceback"]
    assert result.state == "NOT_RUN"
    assert result.parent.state == "FAILURE"


def test_link_success_notification(run, log, settle):
    workflow = chain(t.fetch_data.s(42), t.process_data.s())
    result = run(workflow, link=t.send_success_notification.s(log=log),
                 link_error=t.send_failure_notification.s(log=log))
    assert result.get() == {"user_id": 42, "data": "raw_data", "processed": True}
    settle(result)
    assert records(log) == [{"task": "send_success_notification",
                             "result": {"user_id": 42, "data": "raw_data", "processed": True}}]


def test_link_error_failure_notification(run, log, settle):
    workflow = chain(t.validate_input.s({}), t.process_valid.s())
    result = run(workflow, link=t.send_success_notification.s(log=log),
                 link_error=t.send_failure_notification.s(log=log))
    with pytest.raises(ValueError):
        result.get()
    settle(result)
    assert records(log) == [{"task": "send_failure_notification", "exc_type": "ValueError",
                             "exc": "Missing user_id"}]


# -- Canvas: Programmatic Workflow Building ----------------------------------------------------------


def test_dynamic_build_workflow(run):
    user_list = [1, 2, 3, 4, 5]
    workflow = t.build_workflow(user_list)
    assert isinstance(workflow, chord)
    assert len(workflow.tasks) == 5
    assert run(workflow).get() == 5


# -- Immutable Signatures -----------------------------------------------------------------------------


def test_normal_chaining_passes_result(run):
    assert run(chain(t.task_a.s(), t.task_b.s())).get() == 20


def test_immutable_signature_ignores_result(run):
    assert run(chain(t.task_a.s(), t.task_b.si(5))).get() == 10


# -- Monitoring Workflow Progress ---------------------------------------------------------------------


def test_monitoring_long_steps(run, log, settle):
    workflow = chord([t.long_step.s(i, log=log) for i in range(3)])(t.aggregate.s())
    task = run(workflow)
    assert task.get() == 0 + 1 + 2
    settle(task)

    # monitor_workflow(task.id), as in the seed
    result = t.app.AsyncResult(task.id)
    assert result.status == "SUCCESS"
    assert result.info == 3

    header = task.parent
    assert isinstance(header, nc.GroupResult)
    assert [r.status for r in header.results] == ["SUCCESS"] * 3
    assert header.get() == [0, 1, 2]
    store = task.handle.store
    for r in header.results:
        # the last update_state meta is kept beside the final state
        assert store.get(r.id).meta == {"step": 9, "total": 10}
    steps = [(rec["id"], rec["step"]) for rec in records(log)]
    assert len(steps) == 30
    assert {i for i, _ in steps} == {r.id for r in header.results}
    for r in header.results:
        assert [s for i, s in steps if i == r.id] == list(range(10))


# -- FAQ ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("condition, expected", [(True, 20), (False, 11)])
def test_faq_conditional_branching_manual(run, condition, expected):
    if condition:
        workflow = chain(t.task_a.s(), t.task_b.s())
    else:
        workflow = chain(t.task_a.s(), t.task_c.s())
    assert run(workflow).get() == expected


@pytest.mark.parametrize("x, y, expected", [(4, 6, 20), (5, 6, 12)])
def test_faq_conditional_branching_with_branch(run, x, y, expected):
    # 10 is even: task_b(10) = 20; 11 is odd: task_c(11) = 12
    workflow = chain(t.add.s(x, y), nc.branch(t.is_even.s(), t.task_b.s(), t.task_c.s()))
    assert run(workflow).get() == expected


def test_faq_failure_handling_link_error(run, log, settle):
    ok = run(chain(t.task_a.s(), t.task_b.s()), link_error=t.handle_failure.s(log=log))
    assert ok.get() == 20
    settle(ok)
    assert records(log) == []

    bad = run(chain(t.task_a.s(), t.fail.s(), t.task_b.s()),
              link_error=t.handle_failure.s(log=log))
    with pytest.raises(t.Boom, match="boom"):
        bad.get()
    settle(bad)
    assert records(log) == [{"task": "handle_failure", "exc_type": "Boom", "exc": "boom"}]


@pytest.mark.runners("cluster-async")
def test_faq_cancel_running_workflow(run, tmp_path, settle):
    gate_file = str(tmp_path / "gate")
    workflow = chain(t.gate.s(gate_file), t.upper.s(), t.upper.s())
    result = run(workflow)
    first = result.parent.parent
    assert first.handle.store.wait(lambda s: s.state(first.id) == "STARTED", 30)
    result.revoke()
    open(gate_file, "w").close()
    with pytest.raises(nc.TaskRevokedError):
        result.get(timeout=30)
    settle(result)
    assert first.state == "SUCCESS"
    assert result.parent.state == "REVOKED"
    assert result.state == "REVOKED"


def test_faq_reusable_template(run):
    result = run(t.my_workflow({"key": "value"}, 42))
    assert result.get() == "saved:42:key,processed,user_id"
    assert result.parent.get() == {"key": "value", "user_id": 42, "processed": True}

