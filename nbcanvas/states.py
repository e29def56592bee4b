"""Task states, as in Celery, plus the ``NOT_RUN`` state of a skipped step (stdlib only).

>>> from nbcanvas import states
>>> states.SUCCESS in states.READY_STATES, states.precedence("STARTED") < states.precedence("SUCCESS")
(True, True)
"""
from __future__ import annotations

from typing import Final

__all__ = [
    "PENDING", "RECEIVED", "STARTED", "RETRY", "PROGRESS", "SUCCESS", "FAILURE", "REVOKED",
    "NOT_RUN", "READY_STATES", "UNREADY_STATES", "EXCEPTION_STATES", "PROPAGATE_STATES",
    "ALL_STATES", "precedence",
]

PENDING: Final = "PENDING"
RECEIVED: Final = "RECEIVED"
STARTED: Final = "STARTED"
RETRY: Final = "RETRY"
PROGRESS: Final = "PROGRESS"  # the conventional custom state of update_state
SUCCESS: Final = "SUCCESS"
FAILURE: Final = "FAILURE"
REVOKED: Final = "REVOKED"
#: A step that never ran: an earlier step failed or was revoked, or its branch was not taken.
NOT_RUN: Final = "NOT_RUN"

READY_STATES: Final = frozenset({SUCCESS, FAILURE, REVOKED, NOT_RUN})
UNREADY_STATES: Final = frozenset({PENDING, RECEIVED, STARTED, RETRY})
EXCEPTION_STATES: Final = frozenset({RETRY, FAILURE, REVOKED})
PROPAGATE_STATES: Final = frozenset({FAILURE, REVOKED})
ALL_STATES: Final = frozenset({PENDING, RECEIVED, STARTED, RETRY, SUCCESS, FAILURE, REVOKED,
                               NOT_RUN})

_ORDER: Final = {PENDING: 0, RECEIVED: 1, STARTED: 2, RETRY: 3}


def precedence(state: str) -> int:
    """Order of states in a task's life: ready states rank last, custom states beside STARTED.

    A store never moves a node from a higher to a lower precedence, so late or reordered
    events cannot undo a final state.
    """
    if state in READY_STATES:
        return 10
    return _ORDER.get(state, 2)
