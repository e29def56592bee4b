"""nbcanvas.runtime.emit: JSON-safe meta, the direct sink and the buffered worker sink."""
from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from nbcanvas.runtime import emit
from nbcanvas.runtime.emit import TOPIC, Sink, WorkerSink, jsonable, set_sink_factory


def test_topic_name():
    assert TOPIC == "nbcanvas"


@pytest.mark.parametrize("value,expected", [
    ({"done": 1, "total": 2.5, "ok": True, "none": None}, {"done": 1, "total": 2.5, "ok": True,
                                                           "none": None}),
    ((1, [2, (3,)]), [1, [2, [3]]]),
    ({1: "a"}, {"1": "a"}),
    ("text", "text"),
])
def test_jsonable_keeps_plain_data(value, expected):
    assert jsonable(value) == expected


def test_jsonable_reprs_the_rest():
    class Thing:
        def __repr__(self) -> str:
            return "<thing>"
    assert jsonable({"x": Thing(), "s": {1}}) == {"x": "<thing>", "s": "{1}"}
    assert jsonable(Thing()) == "<thing>"


def test_jsonable_cuts_large_meta():
    out = jsonable({"blob": "x" * 10_000})
    assert set(out) == {"truncated"} and len(out["truncated"]) == emit._META_LIMIT


def test_sink_delivers_each_event_at_once():
    got: list[dict[str, Any]] = []
    sink = Sink(got.append)
    sink.emit("wf1", ["S", "a", 1.0, 0, "h"])
    assert got == [{"wf": "wf1", "ev": [["S", "a", 1.0, 0, "h"]]}]
    sink.flush()
    assert len(got) == 1


def test_worker_sink_batches_many_events_into_one_message_per_workflow():
    got: list[dict[str, Any]] = []
    sink = WorkerSink(got.append, interval=3600)  # the background thread never flushes here
    for i in range(1000):
        sink.emit("wf-a" if i % 2 else "wf-b", ["S", str(i), float(i)])
    assert got == []
    sink.flush()
    assert sorted(m["wf"] for m in got) == ["wf-a", "wf-b"]
    for m in got:
        ids = [int(e[1]) for e in m["ev"]]
        assert ids == sorted(ids) and len(ids) == 500  # in emit order
    sink.flush()
    assert len(got) == 2  # nothing left


def test_worker_sink_makes_one_event_of_a_start_and_its_end():
    got: list[dict[str, Any]] = []
    sink = WorkerSink(got.append, interval=3600)
    sink.emit("wf", ["S", "a", 1.0, 0, "h"])
    sink.emit("wf", ["D", "a", 2.0, "SUCCESS", None, b"r"])
    sink.emit("wf", ["S", "b", 3.0, 0, "h"])
    sink.emit("wf", ["U", "b", 4.0, "PROGRESS", {"i": 1}])  # something in between: kept apart
    sink.emit("wf", ["D", "b", 5.0, "SUCCESS", None])
    sink.emit("wf", ["S", "c", 6.0, 1, "h"])
    sink.emit("other", ["D", "c", 7.0, "SUCCESS", None])  # another workflow's step
    sink.emit("wf", ["D", "d", 8.0, "FAILURE", "boom"])  # its start went in an earlier batch
    sink.flush()
    by_wf = {m["wf"]: m["ev"] for m in got}
    assert by_wf["wf"] == [["E", "a", 1.0, 0, "h", 2.0, "SUCCESS", None, b"r"],
                           ["S", "b", 3.0, 0, "h"], ["U", "b", 4.0, "PROGRESS", {"i": 1}],
                           ["D", "b", 5.0, "SUCCESS", None], ["S", "c", 6.0, 1, "h"],
                           ["D", "d", 8.0, "FAILURE", "boom"]]
    assert by_wf["other"] == [["D", "c", 7.0, "SUCCESS", None]]


def test_worker_sink_flushes_in_the_background():
    arrived = threading.Event()
    got: list[dict[str, Any]] = []

    def deliver(msg: dict[str, Any]) -> None:
        got.append(msg)
        arrived.set()

    sink = WorkerSink(deliver, interval=0.01)
    sink.emit("wf", ["D", "a", 1.0, "SUCCESS", None])
    assert arrived.wait(10)
    assert got == [{"wf": "wf", "ev": [["D", "a", 1.0, "SUCCESS", None]]}]
    assert sink._thread is not None and sink._thread.daemon
    assert sink._thread.name == "nbcanvas-events"


def test_worker_sink_starts_one_thread_however_many_emit_at_once():
    sink = WorkerSink(lambda m: None, interval=3600)
    before = sum(t.name == "nbcanvas-events" for t in threading.enumerate())
    go = threading.Barrier(8)

    def burst() -> None:
        go.wait()
        for i in range(50):
            sink.emit("wf", ["S", str(i), 0.0])

    threads = [threading.Thread(target=burst) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    after = sum(t.name == "nbcanvas-events" for t in threading.enumerate())
    assert after - before == 1


def test_a_flush_never_overtakes_a_batch_being_delivered():
    gate = threading.Event()
    in_deliver = threading.Event()
    got: list[list[str]] = []

    def deliver(msg: dict[str, Any]) -> None:
        if not got:  # the first batch is slow to go out
            in_deliver.set()
            assert gate.wait(30)
        got.append([e[1] for e in msg["ev"]])

    sink = WorkerSink(deliver, interval=3600)
    sink.emit("wf", ["S", "first", 0.0])
    a = threading.Thread(target=sink.flush)
    a.start()
    assert in_deliver.wait(30)

    def unit_ends() -> None:  # a unit's last event and its final flush
        sink.emit("wf", ["D", "second", 1.0])
        sink.flush()

    b = threading.Thread(target=unit_ends)
    b.start()
    b.join(0.3)
    assert b.is_alive() and got == []
    gate.set()
    a.join(30)
    b.join(30)
    assert got == [["first"], ["second"]]


def test_a_held_sink_waits_for_release_and_release_sends_at_once():
    """After a unit returns (``hold``) the thread sends nothing, so that no batch is queued
    on the worker's loop behind the unit's result; ``release`` (on that loop) sends it all."""
    got: list[dict[str, Any]] = []
    sink = WorkerSink(got.append, interval=0.001, hold_limit=3600)
    sink.hold()  # first: an event emitted before it may go out at once, as it should
    assert sink.held
    sink.emit("wf", ["S", "a", 1.0, 0, "h"])
    sink.emit("wf", ["S", "b", 2.0, 0, "h"])  # another unit's event meanwhile
    loops = threading.Event()  # twenty rounds of another sink's thread, same interval
    beat = WorkerSink(lambda m: loops.set(), interval=0.001)
    for _ in range(20):
        loops.clear()
        beat.emit("x", ["S", "x", 0.0])
        assert loops.wait(10)
    assert got == []
    sink.release()
    assert not sink.held
    assert got == [{"wf": "wf", "ev": [["S", "a", 1.0, 0, "h"], ["S", "b", 2.0, 0, "h"]]}]


def test_a_held_sink_sends_anyway_after_the_hold_limit():
    """A release that never comes (a worker that lost its plugin) delays events, never
    loses them."""
    arrived = threading.Event()
    got: list[dict[str, Any]] = []

    def deliver(msg: dict[str, Any]) -> None:
        got.append(msg)
        arrived.set()

    sink = WorkerSink(deliver, interval=0.001, hold_limit=0.2)
    sink.emit("wf", ["D", "a", 1.0, "SUCCESS", None])
    held_at = time.monotonic()
    sink.hold()
    assert arrived.wait(10)
    assert time.monotonic() - held_at >= 0.2  # not before the limit
    assert got == [{"wf": "wf", "ev": [["D", "a", 1.0, "SUCCESS", None]]}]


def test_the_background_thread_survives_a_failed_delivery():
    failed, arrived = threading.Event(), threading.Event()
    calls: list[dict[str, Any]] = []

    def deliver(msg: dict[str, Any]) -> None:
        calls.append(msg)
        if len(calls) == 1:
            failed.set()
            raise RuntimeError("worker closing")
        arrived.set()

    sink = WorkerSink(deliver, interval=0.01)
    sink.emit("wf", ["S", "lost", 0.0])
    assert failed.wait(10)
    sink.emit("wf", ["S", "kept", 1.0])
    assert arrived.wait(10)
    assert calls[-1]["ev"] == [["S", "kept", 1.0]]


def test_set_sink_factory_replaces_the_factory():
    saved = list(emit._factory)
    try:
        set_sink_factory(lambda: Sink(print))
        set_sink_factory(lambda: Sink(repr))
        assert len(emit._factory) == 1 and emit._factory[0]()._deliver is repr
    finally:
        emit._factory[:] = saved
