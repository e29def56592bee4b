"""nbcanvas.options: which options mean something here, and clear errors for the rest."""
from __future__ import annotations

import pytest

import nbcanvas as nc
from nbcanvas.options import (CALL_OPTIONS, REFUSED, TASK_OPTIONS, check_call_options,
                              check_task_options)

app = nc.App("test_options")


@app.task(name="options.add")
def add(x, y):
    return x + y


def test_the_documented_task_options_are_accepted():
    # API.md "Tasks": these are the options of @app.task
    documented = {"max_retries", "autoretry_for", "retry_backoff", "retry_backoff_max",
                  "retry_jitter", "default_retry_delay", "priority", "resources", "workers",
                  "pure", "time_limit"}
    assert documented <= TASK_OPTIONS


def test_refused_options_are_known_to_neither_table():
    assert not (set(REFUSED) & TASK_OPTIONS)
    assert not (set(REFUSED) & CALL_OPTIONS)
    assert all(reason for reason in REFUSED.values())


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_every_refused_option_names_itself_and_why(name):
    with pytest.raises(nc.ImproperlyConfigured) as info:
        check_task_options({name: True}, where="task 'add'")
    msg = str(info.value)
    assert msg.startswith("task 'add': option ")
    assert repr(name) in msg and REFUSED[name] in msg
    with pytest.raises(ValueError, match=repr(name)):
        check_call_options({name: True}, where="signature 'add'")


def test_unknown_option_lists_the_known_ones():
    with pytest.raises(nc.ImproperlyConfigured) as info:
        check_task_options({"time_limt": 3}, where="task 'add'")
    msg = str(info.value)
    assert "unknown option 'time_limt'" in msg
    assert "did you mean 'time_limit'" in msg
    assert "known: " in msg and "max_retries" in msg


def test_no_suggestion_when_nothing_is_close():
    with pytest.raises(nc.ImproperlyConfigured) as info:
        check_task_options({"zzzzzz": 1}, where="task 'add'")
    assert "did you mean" not in str(info.value)


def test_check_returns_a_new_dict():
    opts = {"max_retries": 2}
    out = check_task_options(opts, where="x")
    assert out == opts and out is not opts
    out2 = check_call_options(opts, where="x")
    assert out2 == opts and out2 is not opts


def test_autoretry_for_one_type_becomes_tuple():
    assert check_task_options({"autoretry_for": KeyError}, "x") == {"autoretry_for": (KeyError,)}


@pytest.mark.parametrize("opts", [
    {"max_retries": None}, {"max_retries": 0}, {"time_limit": 0.5}, {"countdown": 0},
    {"priority": -3}, {"resources": {"GPU": 1, "MEM": 0.5}}, {"autoretry_for": (OSError,)},
])
def test_good_values(opts):
    assert check_call_options(opts, "x") == opts


@pytest.mark.parametrize("opts, word", [
    ({"max_retries": -1}, "max_retries"), ({"max_retries": 1.0}, "max_retries"),
    ({"countdown": -1}, "countdown"), ({"countdown": "1"}, "countdown"),
    ({"soft_time_limit": False}, "soft_time_limit"), ({"retry_backoff_max": -2}, "backoff"),
    ({"dont_autoretry_for": ("x",)}, "dont_autoretry_for"), ({"priority": "high"}, "priority"),
    ({"resources": {1: 1}}, "resources"), ({"task_id": 12}, "task_id"),
])
def test_bad_values(opts, word):
    with pytest.raises(nc.ImproperlyConfigured, match=word):
        check_call_options(opts, "x")


def test_call_only_options_are_not_task_options():
    for name in ("countdown", "eta", "expires", "task_id", "shadow"):
        assert name in CALL_OPTIONS
        with pytest.raises(nc.ImproperlyConfigured, match=name):
            check_task_options({name: 1}, "x")


def test_signature_set_validates():
    s = add.s(1, 1)
    with pytest.raises(nc.ImproperlyConfigured, match="'acks_late' means nothing here"):
        s.set(acks_late=True)
    with pytest.raises(nc.ImproperlyConfigured, match="did you mean 'countdown'"):
        s.set(countdwn=1)
    assert s.set(countdown=1).options == {"countdown": 1}


def test_containers_validate_options():
    with pytest.raises(nc.ImproperlyConfigured, match="serializer"):
        nc.group(add.s(1, 1), serializer="json")
    with pytest.raises(nc.ImproperlyConfigured, match="serializer"):
        nc.chain(add.s(1, 1), serializer="json")
    with pytest.raises(nc.ImproperlyConfigured, match="serializer"):
        nc.chord([add.s(1, 1)], add.s(1), serializer="json")
    with pytest.raises(nc.ImproperlyConfigured, match="acks_late"):
        nc.group(add.s(1, 1)).set(acks_late=True)


def test_apply_validates_options_before_running():
    with pytest.raises(nc.ImproperlyConfigured, match="acks_late"):
        add.s(1, 1).apply(acks_late=True)
    with pytest.raises(nc.ImproperlyConfigured, match="serializer"):
        add.s(1, 1).apply_async(serializer="json")  # refused before any connection


def test_signature_constructor_validates():
    with pytest.raises(nc.ImproperlyConfigured, match="routing_key"):
        nc.signature("options.add", args=(1, 1), routing_key="x")
    with pytest.raises(nc.ImproperlyConfigured, match="routing_key"):
        nc.Signature("options.add", (1, 1), options={"routing_key": "x"})
