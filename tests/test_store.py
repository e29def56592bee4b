"""nbcanvas.store: the per-workflow state table that events feed and every view reads."""
from __future__ import annotations

import threading
from typing import Any

import pytest

from nbcanvas.store import TASK_KINDS, StateStore

NODES = {
    "a": ("signature", "fetch", 0, None),
    "g": ("group", "group", 1, None),
    "b": ("signature", "work", 1, "g"),
    "c": ("signature", "work", 1, "g"),
    "fe": ("foreach", "foreach", 2, None),
    "cb": ("callback", "notify", 2, "fe"),
}


def store() -> StateStore:
    return StateStore("wf", NODES)


def msg(*events: list[Any]) -> dict[str, Any]:
    return {"wf": "wf", "ev": list(events)}


def test_unknown_nodes_are_pending():
    s = store()
    assert s.state("a") == "PENDING" and s.get("a") is None and s.snapshot() == {}


def test_start_retry_start_done():
    s = store()
    s.apply(msg(["S", "a", 10.0, 0, "tcp://w1"]))
    st = s.get("a")
    assert (st.state, st.started, st.retries, st.host) == ("STARTED", 10.0, 0, "tcp://w1")
    s.apply(msg(["R", "a", 11.0, "OSError: down", 1.5]))
    assert (st.state, st.info, st.retries) == ("RETRY", "OSError: down", 1)
    s.apply(msg(["S", "a", 12.0, 1, "tcp://w2"]))
    assert (st.state, st.started, st.retries, st.host) == ("STARTED", 10.0, 1, "tcp://w2")
    s.apply(msg(["D", "a", 13.0, "SUCCESS", None, b"pickled"]))
    assert (st.state, st.finished, st.info, st.inline) == ("SUCCESS", 13.0, None, b"pickled")
    assert st.as_list() == ["SUCCESS", None, 10.0, 13.0, 1, None]


@pytest.mark.parametrize("inline", [(), (b"pickled",)])
def test_a_started_and_ended_event_is_its_start_then_its_end(inline):
    both, split = store(), store()
    both.apply(msg(["E", "a", 10.0, 2, "tcp://w1", 13.0, "SUCCESS", None, *inline]))
    split.apply(msg(["S", "a", 10.0, 2, "tcp://w1"], ["D", "a", 13.0, "SUCCESS", None, *inline]))
    a, b = both.get("a"), split.get("a")
    fields = ("state", "meta", "started", "finished", "retries", "info", "host", "inline")
    assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
    assert (a.state, a.started, a.finished, a.host) == ("SUCCESS", 10.0, 13.0, "tcp://w1")
    assert a.inline == (inline[0] if inline else None)


def test_update_state_sets_a_custom_state_and_meta():
    s = store()
    s.apply(msg(["S", "a", 1.0, 0, "h"], ["U", "a", 2.0, "PROGRESS", {"i": 3}]))
    assert s.state("a") == "PROGRESS" and s.get("a").meta == {"i": 3}
    assert s.latest == ("a", "PROGRESS", {"i": 3})


@pytest.mark.parametrize("final", ["SUCCESS", "FAILURE", "REVOKED", "NOT_RUN"])
def test_a_ready_state_is_never_undone(final):
    s = store()
    s.apply(msg(["D", "a", 5.0, final, "why"]))
    s.apply(msg(["S", "a", 6.0, 1, "h"], ["R", "a", 7.0, "late", 0], ["U", "a", 8.0, "X", 1],
                ["D", "a", 9.0, "FAILURE" if final != "FAILURE" else "SUCCESS", "other"]))
    st = s.get("a")
    assert (st.state, st.info, st.finished, st.retries) == (final, "why", 5.0, 0)


def test_run_time_nodes_and_branch_choices():
    s = store()
    s.apply(msg(["N", "fe:0", 1.0, "fe", "work", "signature", 0],
                ["N", "fe:1", 1.0, "fe", "all", "group", 1],
                ["N", "a", 1.0, "fe", "other", "signature", 2],  # known: kept as it was
                ["B", "br", 1.0, "otherwise"]))
    assert s.nodes["fe:0"] == ("signature", "work", 2, "fe")  # the step of its parent
    assert s.nodes["fe:1"] == ("group", "all", 2, "fe")
    assert s.nodes["a"] == NODES["a"]
    assert s.branches == {"br": "otherwise"}
    assert "fe:0" in s.task_ids() and "fe:1" not in s.task_ids()


def test_counts_and_done_total_count_tasks_only():
    s = store()
    assert set(s.task_ids()) == {"a", "b", "c", "fe", "cb"}
    assert {k for k, v in NODES.items() if v[0] in TASK_KINDS} == set(s.task_ids())
    s.apply(msg(["D", "a", 1.0, "SUCCESS", None], ["S", "b", 1.0, 0, "h"],
                ["D", "c", 1.0, "FAILURE", "x"], ["D", "g", 1.0, "SUCCESS", None]))
    assert s.counts() == {"SUCCESS": 1, "STARTED": 1, "FAILURE": 1, "PENDING": 2}
    assert s.done_total() == (2, 5)
    assert s.done_total(["b", "c"]) == (1, 2)
    assert not s.finished()
    s.apply(msg(["D", "b", 2.0, "SUCCESS", None], ["D", "fe", 2.0, "NOT_RUN", "r"],
                ["D", "cb", 2.0, "REVOKED", "r"]))
    assert s.finished() and s.done_total() == (5, 5)
    assert StateStore("empty", {}).finished() is False


def test_snapshot():
    s = store()
    s.apply(msg(["S", "a", 1.0, 0, "h"], ["D", "b", 1.0, "SUCCESS", None]))
    assert s.snapshot() == {"a": "STARTED", "b": "SUCCESS"}


def test_progress_state_of_the_whole_workflow():
    s = store()
    assert s.progress_state() == ("PENDING", None)
    s.apply(msg(["S", "a", 1.0, 0, "h"]))
    assert s.progress_state() == ("STARTED", None)
    s.apply(msg(["U", "a", 2.0, "PROGRESS", {"i": 1}]))
    assert s.progress_state() == ("PROGRESS", {"i": 1})
    s.apply(msg(["D", "a", 3.0, "SUCCESS", None]))
    assert s.progress_state() == ("STARTED", None)  # the custom state is over; work goes on
    s.apply(msg(["R", "b", 4.0, "e", 1]))
    assert s.progress_state() == ("RETRY", None)


def test_load_merges_a_snapshot_and_keeps_final_states():
    s = store()
    s.apply(msg(["D", "a", 5.0, "SUCCESS", None]))
    s.load({"a": ["FAILURE", None, 1.0, 2.0, 0, "x"],
            "b": ["PROGRESS", {"i": 2}, 1.0, None, 1, None]},
           nodes={"fe:0": ["signature", "work", 2, "fe"], "a": ["x", "y", 9, None]})
    assert s.state("a") == "SUCCESS"
    st = s.get("b")
    assert (st.state, st.meta, st.started, st.retries) == ("PROGRESS", {"i": 2}, 1.0, 1)
    assert s.nodes["fe:0"] == ("signature", "work", 2, "fe") and s.nodes["a"] == NODES["a"]


def test_reset_forgets_states_and_tells_observers():
    s = store()
    s.apply(msg(["D", "a", 1.0, "FAILURE", "x"], ["D", "b", 1.0, "SUCCESS", None]))
    seen: list[dict[str, str]] = []
    s.subscribe(lambda st: seen.append(st.snapshot()))
    v = s.version
    s.reset(["a"])
    assert s.state("a") == "PENDING" and s.state("b") == "SUCCESS"
    assert s.version == v + 1 and seen == [{"b": "SUCCESS"}]
    s.apply(msg(["S", "a", 2.0, 0, "h"]))
    assert s.state("a") == "STARTED"  # a reset node runs again


def test_observers_see_every_batch_and_can_unsubscribe():
    s = store()
    seen: list[int] = []
    unsubscribe = s.subscribe(lambda st: seen.append(st.version))
    s.subscribe(lambda st: 1 / 0)  # a broken observer never breaks the feed
    s.apply(msg(["S", "a", 1.0, 0, "h"], ["D", "a", 2.0, "SUCCESS", None]))
    s.apply(msg(["S", "b", 1.0, 0, "h"]))
    assert seen == [1, 2]
    unsubscribe()
    unsubscribe()  # twice is harmless
    s.apply(msg(["D", "b", 2.0, "SUCCESS", None]))
    assert seen == [1, 2] and s.state("b") == "SUCCESS"


def test_wait_wakes_on_an_event_from_another_thread():
    s = store()
    waiting = threading.Event()
    result: list[bool] = []

    def waiter() -> None:
        waiting.set()
        result.append(s.wait(lambda st: st.state("a") == "SUCCESS", timeout=30))

    t = threading.Thread(target=waiter)
    t.start()
    assert waiting.wait(10)
    s.apply(msg(["S", "a", 1.0, 0, "h"]))
    s.apply(msg(["D", "a", 2.0, "SUCCESS", None]))
    t.join(30)
    assert result == [True]


def test_a_store_holds_a_condition_only_while_someone_waits():
    """A kept workflow holds no Condition once nobody waits on it: eight objects fewer per
    workflow for the garbage collector to walk."""
    import gc
    s = store()
    s.apply(msg(["E", "a", 1.0, 0, "h", 2.0, "SUCCESS", None]))
    assert s.wait(lambda st: st.state("a") == "SUCCESS", timeout=0) is True
    assert s._cond is None
    assert not any(isinstance(o, threading.Condition) for o in gc.get_referents(s.__dict__))
    seen: list[object] = []
    assert s.wait(lambda st: seen.append(st._cond) or False, timeout=0.01) is False
    assert isinstance(seen[-1], threading.Condition)  # made for the waiter ...
    assert s._cond is None  # ... and dropped when it left
    waiting, done = threading.Event(), []
    t = threading.Thread(target=lambda: done.append(
        s.wait(lambda st: waiting.set() or st.state("b") == "SUCCESS", timeout=30)))
    t.start()
    assert waiting.wait(10)
    s.apply(msg(["E", "b", 3.0, 0, "h", 4.0, "SUCCESS", None]))
    t.join(30)
    assert done == [True] and s._cond is None


def test_wait_times_out_and_poke_wakes_waiters():
    s = store()
    assert s.wait(lambda st: st.finished(), timeout=0.05) is False
    flag: list[bool] = []
    waiting = threading.Event()

    def waiter() -> None:
        waiting.set()
        flag.append(s.wait(lambda st: bool(flag_source), timeout=30))

    flag_source: list[int] = []
    t = threading.Thread(target=waiter)
    t.start()
    assert waiting.wait(10)
    flag_source.append(1)
    s.poke()
    t.join(30)
    assert flag == [True] and not t.is_alive()


def test_concurrent_feeds_lose_nothing():
    s = StateStore("wf", {f"n{i}": ("signature", "t", 0, None) for i in range(400)})
    go = threading.Barrier(4)

    def feed(part: int) -> None:
        go.wait()
        for i in range(part, 400, 4):
            s.apply(msg(["S", f"n{i}", 1.0, 0, "h"]))
            s.apply(msg(["D", f"n{i}", 2.0, "SUCCESS", None]))

    threads = [threading.Thread(target=feed, args=(p,)) for p in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert s.done_total() == (400, 400) and s.version == 800


def test_task_ids_while_the_event_thread_adds_run_time_nodes():
    """``retry()`` lists a workflow's tasks on the notebook's thread while the event loop's
    thread may still add nodes made at run time (a ``foreach``'s elements)."""
    from tests.racing import no_race

    s = StateStore("wf", {f"n{i}": ("signature", "t", 0, None) for i in range(2000)})
    no_race(lambda i: s.apply(msg(["N", f"fe:{i}", 1.0, "n0", "work", "signature", i])),
            lambda: s.task_ids())
