"""nbcanvas.states: Celery's state names, the sets, and the order a store never goes back on."""
from __future__ import annotations

import pytest

from nbcanvas import states


def test_names_are_celerys():
    for name in ("PENDING", "RECEIVED", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED"):
        assert getattr(states, name) == name
    assert states.NOT_RUN == "NOT_RUN" and states.PROGRESS == "PROGRESS"


def test_sets_partition_the_states():
    assert states.READY_STATES | states.UNREADY_STATES == states.ALL_STATES
    assert not states.READY_STATES & states.UNREADY_STATES
    assert states.NOT_RUN in states.READY_STATES  # a skipped step is over
    assert states.PROPAGATE_STATES <= states.READY_STATES
    assert states.PROPAGATE_STATES <= states.EXCEPTION_STATES
    assert states.SUCCESS not in states.EXCEPTION_STATES
    assert states.PROGRESS not in states.ALL_STATES  # a custom state, by convention


def test_precedence_follows_a_task_life():
    life = [states.PENDING, states.RECEIVED, states.STARTED, states.RETRY, states.SUCCESS]
    ranks = [states.precedence(s) for s in life]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks)


@pytest.mark.parametrize("final", sorted(states.READY_STATES))
def test_every_ready_state_ranks_above_every_other(final):
    top = states.precedence(final)
    for s in states.UNREADY_STATES | {"PROGRESS", "ANYTHING"}:
        assert states.precedence(s) < top


def test_custom_states_rank_beside_started():
    assert states.precedence("PROGRESS") == states.precedence("MY_STATE") == \
        states.precedence(states.STARTED)
    assert states.precedence(states.RECEIVED) < states.precedence("PROGRESS")
