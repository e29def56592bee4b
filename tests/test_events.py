"""nbcanvas.events: the registry of stores and the topic handler that feeds them."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from nbcanvas.events import TOPIC, dispatch, drop_store, get_store, register_store, stores
from nbcanvas.runtime.emit import TOPIC as EMIT_TOPIC
from nbcanvas.store import StateStore


@pytest.fixture
def two() -> Iterator[tuple[StateStore, StateStore]]:
    a = StateStore(f"wf-{uuid.uuid4()}", {"x": ("signature", "t", 0, None)})
    b = StateStore(f"wf-{uuid.uuid4()}", {"x": ("signature", "t", 0, None)})
    register_store(a)
    register_store(b)
    yield a, b
    drop_store(a.workflow_id)
    drop_store(b.workflow_id)


def done(wf: str, id: str = "x") -> dict:
    return {"wf": wf, "ev": [["D", id, 1.0, "SUCCESS", None]]}


def test_topic_is_the_runtime_topic():
    assert TOPIC == EMIT_TOPIC


def test_register_keeps_the_first_store_of_a_workflow(two):
    a, _ = two
    again = StateStore(a.workflow_id, {})
    assert register_store(again) is a and get_store(a.workflow_id) is a
    assert a in stores()


def test_drop_store(two):
    a, b = two
    drop_store(a.workflow_id)
    drop_store(a.workflow_id)  # unknown: harmless
    assert get_store(a.workflow_id) is None and get_store(b.workflow_id) is b
    assert a not in stores()


@pytest.mark.parametrize("shape", ["tuple", "list", "bare"])
def test_dispatch_routes_by_workflow_id(two, shape):
    a, b = two
    m = done(a.workflow_id)
    event = {"tuple": (123.0, m), "list": [123.0, m], "bare": m}[shape]
    dispatch(event)
    assert a.state("x") == "SUCCESS" and b.state("x") == "PENDING"


def test_dispatch_ignores_unknown_workflows_and_other_messages(two):
    a, b = two
    versions = (a.version, b.version)
    dispatch((1.0, done(f"wf-{uuid.uuid4()}")))
    dispatch((1.0, "not a dict"))
    dispatch((1.0, {"no": "wf"}))
    dispatch(None)
    assert (a.version, b.version) == versions

