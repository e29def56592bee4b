"""Exception types of nbcanvas (stdlib only).

Each error is also a subclass of the matching builtin, so plain ``except``
clauses keep working:

>>> import nbcanvas as nc
>>> issubclass(nc.TimeoutError, TimeoutError), issubclass(nc.NotRegistered, KeyError)
(True, True)
"""
from __future__ import annotations

__all__ = [
    "NbcanvasError",
    "TimeoutError",
    "TaskRevokedError",
    "NotRegistered",
    "ImproperlyConfigured",
    "Retry",
    "MaxRetriesExceededError",
    "TimeLimitExceeded",
    "SoftTimeLimitExceeded",
    "ChordError",
    "RemoteError",
    "ResultNotFound",
    "WorkflowLost",
]

import builtins


class NbcanvasError(Exception):
    """Base class of every nbcanvas error."""


class TimeoutError(NbcanvasError, builtins.TimeoutError):
    """``.get(timeout=...)`` ran out of time. Nothing was cancelled."""


class TaskRevokedError(NbcanvasError):
    """The task (or the workflow it belongs to) was revoked."""


class NotRegistered(NbcanvasError, KeyError):
    """No task is registered under that name; the message names the closest ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ImproperlyConfigured(NbcanvasError, ValueError):
    """A bad option, a bad connection target or a bad configuration."""


class Retry(NbcanvasError):
    """Raised by ``self.retry()`` inside a bound task to ask for another attempt."""

    def __init__(self, message: str | None = None, exc: BaseException | None = None,
                 when: float | None = None) -> None:
        super().__init__(message or "Retry requested")
        self.exc = exc
        self.when = when

    def __reduce__(self):  # keep the fields through pickling
        return (type(self), (self.args[0], self.exc, self.when))


class MaxRetriesExceededError(NbcanvasError):
    """A task asked for a retry after it used up ``max_retries``."""


class TimeLimitExceeded(NbcanvasError, builtins.TimeoutError):
    """A task ran longer than its ``time_limit``."""


class SoftTimeLimitExceeded(NbcanvasError):
    """A task ran longer than its ``soft_time_limit``; it may catch this and clean up."""


class ChordError(NbcanvasError):
    """A chord's body did not run because a header task failed."""


class RemoteError(NbcanvasError):
    """Stands in for a remote exception that could not be pickled back.

    ``type_name`` is the qualified name of the original exception type.
    """

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message

    def __reduce__(self):
        return (type(self), (self.type_name, self.message))


class ResultNotFound(NbcanvasError, KeyError):
    """No workflow with that id is known here or on the scheduler (never sent, or forgotten)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class WorkflowLost(NbcanvasError, RuntimeError):
    """The cluster could not finish a unit of the workflow (e.g. its workers kept dying)."""
