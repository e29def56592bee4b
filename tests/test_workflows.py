"""nbcanvas.workflows: nc.workflows() -- a text table outside a kernel, a live widget in one
(refreshed by events, at most once a second; choosing a workflow shows its live view)."""
from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

import nbcanvas as nc
from nbcanvas import events
from nbcanvas.workflows import COLUMNS, WorkflowList, format_table, workflows

from .integration import controltasks as t
from tests.waiting import wait_until

ROWS = [
    {"id": "aaaaaaaa-1", "name": "chord: fetch → aggregate", "state": "SUCCESS", "done": 6,
     "total": 6, "created": 1e9, "started": 1e9, "finished": 1e9 + 2.5},
    {"id": "bbbbbbbb-2", "name": "group: " + "x" * 80, "state": "STARTED", "done": 1234,
     "total": 10_000, "created": 1e9 + 1, "started": 1e9 + 1, "finished": None},
    {"id": "cccccccc-3", "name": "<b>odd</b>\nname", "state": "PENDING", "done": 0,
     "total": 3, "created": 1e9 + 2, "started": None, "finished": None},
]


def test_text_table_has_fixed_columns():
    text = format_table(ROWS, now=1e9 + 61, local=False)
    lines = text.splitlines()
    assert lines[0].split() == [title for title, _ in COLUMNS]
    starts = [sum(w + 2 for _, w in COLUMNS[:k]) for k in range(len(COLUMNS))]
    for line in lines[1:]:  # every STATE cell starts in the same column
        assert line[starts[2] - 1] == " " and line[starts[2]] != " "
    assert lines[1].split()[-2:] == ["2.5", "s"]
    assert "group: " + "x" * 24 + "…" in lines[2] and "1,234/10,000" in lines[2]
    assert lines[2].endswith("1 min 00 s …")  # running: duration so far
    assert "<b>odd</b> name" in lines[3] and lines[3].rstrip().endswith("0/3")
    assert format_table(ROWS, now=1e9 + 61, local=False) == text  # deterministic


def test_empty_table_says_so():
    assert format_table([]).splitlines()[1] == "(no workflows known to the scheduler)"


def test_event_listeners_hear_every_workflow():
    heard: list[str] = []
    remove = events.add_listener(heard.append)
    try:
        events.dispatch((0.0, {"wf": "unknown-here", "ev": [["S", "x", 1.0, 0, "w"]]}))
    finally:
        remove()
    events.dispatch((0.0, {"wf": "after-remove", "ev": []}))
    assert heard == ["unknown-here"]


def test_list_shows_as_text_outside_a_kernel_and_as_a_widget_inside(monkeypatch):
    from nbcanvas import display
    listing = WorkflowList(ROWS)
    assert listing._repr_mimebundle_() == {"text/plain": repr(listing)}
    assert str(listing).startswith("ID ") and len(listing) == 3
    monkeypatch.setattr(display, "in_kernel", lambda: True)
    bundle = listing._repr_mimebundle_()
    assert bundle["text/plain"] == "<nbcanvas workflow list>" and display.WIDGET in bundle


def test_widget_table_escapes_cells():
    from nbcanvas.widgets import WorkflowListView
    view = WorkflowListView(rows=ROWS)
    try:
        assert "<b>odd" not in view.table.value and "&lt;b&gt;odd&lt;/b&gt;" in view.table.value
        assert [v for _, v in view.choose.options] == ["", *(r["id"] for r in ROWS)]
        assert {"nbcanvas-workflows", "nbcanvas-workflow-select"} <= {
            c for w in (view.table, view.choose) for c in w._dom_classes}
    finally:
        view.close()


@pytest.mark.cluster
def test_workflows_lists_what_the_scheduler_knows(dask_client):
    r = nc.chord([t.slow.s(i) for i in range(3)])(t.total.s()).delay()
    assert r.get(timeout=60) == 6
    wf = r.handle.id
    listing = workflows()
    row = next(x for x in listing.rows if x["id"] == wf)
    assert (row["name"], row["state"], row["done"], row["total"]) == (
        "chord: slow → total", "SUCCESS", 4, 4)
    assert wf[:8] in repr(listing) and "chord: slow → total" in repr(listing)
    r.forget()
    assert all(x["id"] != wf for x in workflows().rows)


@pytest.mark.cluster
def test_widget_refreshes_on_events_and_shows_the_chosen_live_view(dask_client, tmp_path):
    from nbcanvas.widgets import WorkflowListView
    gate = str(tmp_path / f"gate-{uuid.uuid4().hex[:6]}")
    view = WorkflowListView()
    try:
        r = nc.chain(t.slow.s(1), t.long_step.s(steps=1, gate=gate)).delay()
        wf = r.handle.id

        def state() -> str | None:
            return next((x["state"] for x in view.rows if x["id"] == wf), None)
        wait_until(lambda: state() == "STARTED", 30, "the row STARTED")  # refreshed by events
        assert wf[:8] in view.table.value
        view.choose.value = wf
        live = view.view
        assert live is not None and view.detail.children == (live.box,)
        Path(f"{gate}.0").touch()
        assert live.wait(60) and live.overall.value == live.overall.max == 2
        wait_until(lambda: state() == "SUCCESS", 30, "the row SUCCESS")
        refreshes = view.refreshes
        t0 = time.monotonic()
        for _ in range(50):  # a burst of events: at most one refresh a second
            events.dispatch((0.0, {"wf": wf, "ev": []}))
        wait_until(lambda: view._pacer.wait_idle(0.1), 30, "the list's pacer idle")
        assert view.refreshes - refreshes <= 1 + (time.monotonic() - t0) / view._pacer.interval
        view.choose.value = ""
        assert view.detail.children == () and view.view is None
        r.forget()
    finally:
        Path(f"{gate}.0").touch()
        view.close()
