"""Outcomes: what a step leaves behind besides a plain value (compile stage, stdlib only).

A unit returns ``{node id: outcome}``; an outcome is the plain result, or one of the classes
here. Failures flow downstream as values, so a step after a failed one records ``NOT_RUN``
instead of running, and the chain's errback runs exactly once.
"""
from __future__ import annotations

import os
import pickle
import traceback as tb_mod
from types import ModuleType, TracebackType
from typing import Any

from ..errors import RemoteError, TaskRevokedError

try:  # cloudpickle (a dask dependency) ships exception classes defined in a notebook
    import cloudpickle as _cloudpickle
    _pickler: ModuleType = _cloudpickle
except ImportError:  # pragma: no cover
    _pickler = pickle

__all__ = ["Failed", "Skipped", "Revoked", "NotTaken", "GroupOutcome", "UnitResult", "value_of",
           "failed_from"]


class Failed:
    """A step raised ``exc``; ``traceback`` is the remote traceback text."""

    __slots__ = ("exc", "traceback", "id", "name")

    def __init__(self, exc: BaseException, traceback: str, id: str, name: str) -> None:
        self.exc, self.traceback, self.id, self.name = exc, traceback, id, name

    def __reduce__(self):
        return (Failed, (self.exc, self.traceback, self.id, self.name))

    def __repr__(self) -> str:
        return f"<Failed {self.name}: {self.exc!r}>"


class Revoked:
    """The workflow was revoked before this step could start."""

    __slots__ = ("reason",)

    def __init__(self, reason: str = "revoked") -> None:
        self.reason = reason

    def __reduce__(self):
        return (Revoked, (self.reason,))

    @property
    def exc(self) -> BaseException:
        return TaskRevokedError(self.reason)

    traceback = None


class NotTaken:
    """A branch that was not chosen, or a callback that was not triggered."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __reduce__(self):
        return (NotTaken, (self.reason,))

    @property
    def exc(self) -> BaseException:
        from ..errors import NbcanvasError
        return NbcanvasError(f"this step did not run: {self.reason}")

    traceback = None


class Skipped:
    """A step that did not run because of ``cause`` (a Failed, Revoked or NotTaken)."""

    __slots__ = ("cause",)

    def __init__(self, cause: Failed | Revoked | NotTaken) -> None:
        self.cause = cause

    def __reduce__(self):
        return (Skipped, (self.cause,))

    def __repr__(self) -> str:
        return f"<Skipped: {self.cause!r}>"


class GroupOutcome:
    """The outcomes of a group's members, in order."""

    __slots__ = ("items",)

    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def __reduce__(self):
        return (GroupOutcome, (self.items,))


def value_of(outcome: Any) -> tuple[Any, Failed | Revoked | NotTaken | None]:
    """(plain value, None) or (None, cause). Groups give the list of member values, or the
    cause of their first member that did not succeed."""
    if isinstance(outcome, GroupOutcome):
        values = []
        for item in outcome.items:
            v, cause = value_of(item)
            if cause is not None:
                return None, cause
            values.append(v)
        return values, None
    if isinstance(outcome, Failed):
        return None, outcome
    if isinstance(outcome, Skipped):
        return None, outcome.cause
    return outcome, None


_RUNTIME_DIR = os.path.dirname(os.path.abspath(__file__))


def _user_frames(tb: TracebackType | None) -> TracebackType | None:
    """The traceback from the task's own code on: nbcanvas's runtime frames are noise."""
    first = tb
    while tb is not None and os.path.dirname(tb.tb_frame.f_code.co_filename) == _RUNTIME_DIR:
        tb = tb.tb_next
    return tb if tb is not None else first


def failed_from(exc: BaseException, id: str, name: str, portable: bool = True
                ) -> Failed:
    """A Failed that is sure to travel: an unpicklable exception becomes a RemoteError.

    ``portable=False`` (``apply()``: the outcome never leaves this process) keeps the
    exception as it is, so ``.get()`` raises the task's own exception even if it can't pickle.
    """
    text = "".join(tb_mod.format_exception(type(exc), exc, _user_frames(exc.__traceback__)))
    if not portable:
        exc.__traceback__ = None  # as below: the text keeps it, and re-raising can't grow it
        return Failed(exc, text, id, name)
    try:
        _pickler.loads(_pickler.dumps(exc))
    except Exception:
        exc = RemoteError(f"{type(exc).__module__}.{type(exc).__qualname__}", str(exc))
    else:
        exc.__traceback__ = None  # the text above keeps it; frames don't pickle
    return Failed(exc, text, id, name)


class UnitResult:
    """What one unit (one dask task) returns: ``{node id: outcome}``, pickled as one object.

    distributed serialises a plain dict item by item; wrapped, it travels as one pickle
    (10x faster for the 40 results of a batched 10k group).
    """

    __slots__ = ("outcomes",)

    def __init__(self, outcomes: dict[str, Any]) -> None:
        self.outcomes = outcomes

    def __reduce__(self):
        return (UnitResult, (self.outcomes,))

    def __getitem__(self, id: str) -> Any:
        return self.outcomes[id]

    def __contains__(self, id: object) -> bool:
        return id in self.outcomes

    def __len__(self) -> int:
        return len(self.outcomes)

    def __repr__(self) -> str:
        return f"<UnitResult of {len(self.outcomes)} steps>"
