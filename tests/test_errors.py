"""nbcanvas.errors: one base class, builtin parents for plain ``except``, fields that pickle."""
from __future__ import annotations

import builtins
import pickle

import pytest

import nbcanvas as nc
from nbcanvas import errors

BUILTIN_PARENT = {
    "TimeoutError": builtins.TimeoutError,
    "NotRegistered": KeyError,
    "ImproperlyConfigured": ValueError,
    "TimeLimitExceeded": builtins.TimeoutError,
    "ResultNotFound": KeyError,
    "WorkflowLost": RuntimeError,
}


@pytest.mark.parametrize("name", [n for n in errors.__all__ if n != "NbcanvasError"])
def test_every_error_is_an_nbcanvas_error(name):
    cls = getattr(errors, name)
    assert issubclass(cls, errors.NbcanvasError) and issubclass(cls, Exception)


@pytest.mark.parametrize("name,parent", sorted(BUILTIN_PARENT.items()))
def test_builtin_parents_keep_plain_except_clauses_working(name, parent):
    cls = getattr(errors, name)
    with pytest.raises(parent):
        raise cls("boom")


def test_public_names_are_the_same_classes():
    for name in ("TimeoutError", "TaskRevokedError", "NotRegistered", "ImproperlyConfigured",
                 "Retry", "MaxRetriesExceededError", "TimeLimitExceeded",
                 "SoftTimeLimitExceeded", "ChordError", "RemoteError"):
        assert getattr(nc, name) is getattr(errors, name)


def test_soft_time_limit_is_not_a_timeout():
    # a task catches SoftTimeLimitExceeded to clean up; `except TimeoutError` must not eat it
    assert not issubclass(errors.SoftTimeLimitExceeded, builtins.TimeoutError)


@pytest.mark.parametrize("cls", [errors.NotRegistered, errors.ResultNotFound])
def test_key_errors_are_not_quoted(cls):
    assert str(cls("no task named 'x'")) == "no task named 'x'"
    assert str(cls()) == ""


@pytest.mark.parametrize("name", errors.__all__)
def test_every_error_pickles(name):
    cls = getattr(errors, name)
    exc = cls("a", "b") if cls is errors.RemoteError else cls("message")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is cls and str(back) == str(exc)


def test_retry_keeps_its_fields_through_pickling():
    cause = ValueError("flaky")
    r = errors.Retry("again", exc=cause, when=2.5)
    back = pickle.loads(pickle.dumps(r))
    assert (str(back), type(back.exc), str(back.exc), back.when) == \
        ("again", ValueError, "flaky", 2.5)


def test_retry_has_a_default_message():
    r = errors.Retry()
    assert str(r) == "Retry requested" and r.exc is None and r.when is None


def test_remote_error_names_the_original_type():
    e = errors.RemoteError("mymod.Weird", "cannot pickle")
    assert str(e) == "mymod.Weird: cannot pickle"
    back = pickle.loads(pickle.dumps(e))
    assert (back.type_name, back.message) == ("mymod.Weird", "cannot pickle")
