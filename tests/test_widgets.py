"""nbcanvas.widgets: the view model (counts, labels, meta, escaping) and the live view's real
ipywidgets, fed by a real StateStore with real event messages (no mocks, no cluster)."""
from __future__ import annotations

import html
import re
import shutil
import threading
import time
from typing import Any

import pytest

import nbcanvas as nc
from nbcanvas import chain, chord, foreach, group
from nbcanvas.compile import compile_canvas
from nbcanvas.dot import STATE_COLOURS
from nbcanvas.store import StateStore
from nbcanvas.widgets import LiveView, Pacer, Source, format_meta, live_view, view_model
from nbcanvas.widgets.model import structure_steps

app = nc.App("test-widgets")


@app.task(name="tasks.fetch")
def fetch(i):
    return i


@app.task(name="tasks.aggregate")
def aggregate(xs):
    return sum(xs)


@app.task(name="tasks.long_step")
def long_step(x):
    return x


class Fed:
    """A frozen canvas, its compiled node table, and a real store fed with event messages."""

    def __init__(self, canvas: Any, name: str = "demo") -> None:
        self.sig = canvas.freeze()
        self.wf = self.sig.id
        cg = compile_canvas(self.sig, self.wf, parallelism=1, fusion=True, batching=False)
        self.nodes = cg.nodes
        self.store = StateStore(self.wf, {i: r[:4] for i, r in cg.nodes.items()})
        structure = self.sig.to_dict(strict=False)
        self.source = Source(name, self.store, lambda: structure, frozenset(cg.nodes))

    def ids(self, name: str) -> list[str]:
        return [i for i, r in self.nodes.items() if r[1] == name and r[0] == "signature"]

    def send(self, *events: list[Any]) -> None:
        self.store.apply({"wf": self.wf, "ev": [list(e) for e in events]})

    def run(self, id: str, state: str = "SUCCESS", t0: float = 1.0, t1: float = 2.0) -> None:
        self.send(["S", id, t0, 0, "w1"], ["D", id, t1, state, None])


def fills(svg: str) -> dict[str, str]:
    """Node id (the SVG ``<title>``) -> fill colour of its shape."""
    return {html.unescape(t): f for t, f in
            re.findall(r'class="node">\s*<title>([^<]*)</title>\s*<\w+ fill="([^"]+)"', svg)}


needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot")


# -- the view model -------------------------------------------------------------------------
def test_counts_per_step_of_a_chord():
    f = Fed(chord([fetch.s(i) for i in range(3)])(aggregate.s()))
    a, b, c = f.ids("fetch")
    f.run(a, t0=10.0, t1=12.0)
    f.send(["S", b, 11.0, 0, "w2"])
    vm = view_model(f.source, now=13.5)
    assert [(s.label, s.done, s.total, s.running) for s in vm.steps] == [
        ("1. fetch × 3", 1, 3, 1), ("2. aggregate", 0, 1, 0)]
    assert (vm.overall.done, vm.overall.total, vm.overall.elapsed) == (1, 4, 3.5)
    assert vm.overall.style == "info" and not vm.finished
    assert vm.overall.text == "1/4 done · 1 running · 3.5 s"


def test_chain_steps_come_from_the_structure_even_when_fused():
    f = Fed(chain(fetch.s(1), group(long_step.s(), long_step.s()), aggregate.s(), fetch.s()))
    labels = [s.label for s in view_model(f.source).steps]
    assert labels == ["1. fetch", "2. long_step × 2", "3. aggregate", "4. fetch"]


def test_structure_steps_of_a_chord_and_its_callbacks():
    sig = chord([fetch.s(1), fetch.s(2)])(aggregate.s()).freeze()
    steps = structure_steps(sig.to_dict(strict=False))
    header, body = sig.to_dict(strict=False)["header"], sig.to_dict(strict=False)["body"]
    assert steps[header["id"]] == 0 and steps[body["id"]] == 1
    assert {steps[t["id"]] for t in header["tasks"]} == {0}


def test_failure_and_not_run_are_counted_and_shown_as_danger():
    f = Fed(chain(fetch.s(1), long_step.s(), aggregate.s()))
    first, = f.ids("fetch")
    middle, = f.ids("long_step")
    last, = f.ids("aggregate")
    f.run(first)
    f.send(["S", middle, 2.0, 0, "w"], ["D", middle, 3.0, "FAILURE", "ValueError: x"],
           ["D", last, 3.0, "NOT_RUN", None])
    vm = view_model(f.source)
    assert vm.finished and vm.overall.style == "danger"
    assert (vm.overall.done, vm.overall.failed, vm.overall.skipped) == (3, 1, 1)
    assert vm.overall.text == "3/3 done · 1 failed · 1 not run · 2.0 s"
    assert [s.style for s in vm.steps] == ["success", "danger", ""]  # nothing of it ran


def test_update_state_meta_of_running_tasks_names_their_index():
    f = Fed(group(long_step.s(i) for i in range(4)))
    ids = f.ids("long_step")
    f.send(["S", ids[2], 1.0, 0, "w"], ["U", ids[2], 1.5, "PROGRESS", {"step": 7, "total": 10}])
    vm = view_model(f.source)
    assert vm.notes == ("long_step[2]: step 7/10",) and vm.meta == {ids[2]: "step 7/10"}
    f.send(["D", ids[2], 2.0, "SUCCESS", None])
    assert view_model(f.source).notes == ()  # finished: no meta shown


def test_retry_shows_as_running_with_its_reason():
    f = Fed(fetch.s(1))
    i, = f.ids("fetch")
    f.send(["S", i, 1.0, 0, "w"], ["R", i, 1.2, "OSError: down", 0.5])
    vm = view_model(f.source)
    assert vm.overall.running == 1 and vm.notes == ("fetch: retry 1 (OSError: down)",)


def test_nodes_made_at_run_time_count_in_their_step():
    f = Fed(chain(fetch.s(3), foreach(long_step.s()), aggregate.s()))
    fe = next(i for i, r in f.nodes.items() if r[0] == "foreach")
    kids = [f"{fe}-{k}" for k in range(3)]
    f.send(["S", fe, 1.0, 0, "w"], *[["N", k, 1.0, fe, "long_step", "signature"] for k in kids])
    f.run(kids[0])
    step = view_model(f.source).steps[1]
    assert (step.label, step.done, step.total, step.running) == ("2. foreach long_step × 3", 1,
                                                                 4, 1)


def test_meta_text_is_short_and_printable():
    assert format_meta({"current": 3, "total": 9, "file": "a\nb"}) == "current 3/9, file: a b"
    assert len(format_meta(list(range(1000)))) == 60


def test_a_10k_group_is_counted_and_drawn_as_one_node():
    f = Fed(group(fetch.s(i) for i in range(10_000)))
    ids = f.ids("fetch")
    f.send(*[e for i in ids[:2500] for e in (["S", i, 1.0, 0, "w"], ["D", i, 2.0, "SUCCESS", 0])])
    vm = view_model(f.source)
    assert (vm.overall.done, vm.overall.total, vm.steps[0].label) == (2500, 10_000,
                                                                      "fetch × 10,000")
    v = LiveView(f.source)
    assert v._pacer.wait_idle(30)
    assert v.diagram.value.count('class="node"') == (1 if shutil.which("dot") else 0)
    v.close()


# -- the widgets ----------------------------------------------------------------------------
CLASSES = ["nbcanvas-live", "nbcanvas-header", "nbcanvas-diagram", "nbcanvas-progress",
           "nbcanvas-progress-text", "nbcanvas-steps", "nbcanvas-step", "nbcanvas-step-bar",
           "nbcanvas-step-text", "nbcanvas-meta", "nbcanvas-overall"]


def classes(view: LiveView) -> set[str]:
    return {c for w in view.widgets() for c in w._dom_classes}


@needs_dot
def test_live_view_follows_the_store_to_success():
    f = Fed(chord([fetch.s(i) for i in range(3)])(aggregate.s()))
    view = LiveView(f.source)
    assert view._pacer.wait_idle(30)
    assert (view.overall.value, view.overall.max, view.overall.bar_style) == (0, 4, "")
    assert set(fills(view.diagram.value).values()) == {STATE_COLOURS["PENDING"]}
    for i in f.ids("fetch") + f.ids("aggregate"):
        f.run(i)
    assert view.wait(30)
    assert (view.overall.value, view.overall.max, view.overall.bar_style) == (4, 4, "success")
    assert [(r[0].value, r[0].max) for r in view._rows] == [(3, 3), (1, 1)]
    colours = fills(view.diagram.value)
    assert set(colours) == set(f.ids("fetch") + f.ids("aggregate"))
    assert set(colours.values()) == {STATE_COLOURS["SUCCESS"]}
    assert set(CLASSES) <= classes(view)
    assert view._repr_mimebundle_()["text/plain"] == "<nbcanvas live view: demo>"
    assert f.store._observers == [] and not view.live  # unsubscribed once final


@needs_dot
def test_live_view_shows_failure_running_meta_and_escapes_user_text():
    f = Fed(group(long_step.s(i) for i in range(3)), name="<b>evil</b> & co")
    a, b, c = f.ids("long_step")
    view = LiveView(f.source)
    f.send(["S", a, 1.0, 0, "w"], ["U", a, 1.1, "PROGRESS", {"msg": "<script>x</script>"}],
           ["S", b, 1.0, 0, "w"], ["D", b, 2.0, "FAILURE", "ValueError"])
    assert view._pacer.wait_idle(30)
    assert "<script>" not in view.notes.value and "&lt;script&gt;" in view.notes.value
    assert "<b>evil" not in view.header.value and "&lt;b&gt;evil&lt;/b&gt; &amp; co" in \
        view.header.value
    assert view.overall.bar_style == "danger" and "1 failed" in view.overall_text.value
    colours = fills(view.diagram.value)
    assert colours[b] == STATE_COLOURS["FAILURE"] and colours[c] == STATE_COLOURS["PENDING"]
    assert colours[a] == STATE_COLOURS["STARTED"]  # a custom state is drawn as running
    f.send(["D", a, 3.0, "SUCCESS", 1], ["D", c, 3.0, "REVOKED", None])
    assert view.wait(30) and fills(view.diagram.value)[c] == STATE_COLOURS["REVOKED"]


def test_a_view_shares_its_layout_and_text_style_and_sums_up_steps_past_the_limit():
    """Each ipywidget otherwise makes its own Layout and style widget (0.36 ms per HTML widget
    against 0.08 ms shared): a view of 25 steps made 24 + 8 per row widgets, now 12 + 4."""
    from ipywidgets.widgets.widget import _instances  # every widget alive, by model id

    from nbcanvas.widgets.model import MAX_STEPS
    steps = MAX_STEPS + 5
    f = Fed(chain(*[fetch.si(i) for i in range(steps)]))
    before = len(_instances)
    view = LiveView(f.source)
    assert view._pacer.wait_idle(30)
    made = len(_instances) - before
    assert len(view._rows) == MAX_STEPS
    assert made == 12 + 4 * MAX_STEPS + 1  # + the "more steps" line
    parts = [view.header, view.diagram, view.overall, view.overall_text, view.notes, view.steps,
             *[x for row in view._rows for x in row]]
    assert {id(p.layout) for p in parts} == {id(view.header.layout)}
    assert view.box.layout is not view.header.layout  # the outer box styles the view alone
    assert view.header.style is view.notes.style is view._rows[0][1].style
    assert view.overall.style is not view._rows[0][0].style  # each bar's colour is its own
    assert view.steps.children[-1] is view._more
    assert view._more.value == "… and 5 more steps"
    assert view._more in view.widgets()


def test_redraws_are_paced_and_the_last_state_is_always_drawn():
    f = Fed(group(fetch.s(i) for i in range(400)))
    view = LiveView(f.source, interval=0.05)
    ids = f.ids("fetch")
    t0 = time.monotonic()
    for i in ids:  # 400 event batches as fast as they come
        f.run(i)
    fed_for = time.monotonic() - t0
    assert view.wait(30)
    # at most one redraw per interval while events came, plus the first and the final one
    assert view._pacer.calls <= 3 + fed_for / 0.05
    assert view.overall.value == view.overall.max == 400
    assert not any(t.name == "nbcanvas-live-view" and t.is_alive() and view._pacer._running is t
                   for t in threading.enumerate())


def test_diagram_lights_the_taken_branch_and_counts_foreach_elements():
    @app.task(name="tasks.is_big")
    def is_big(x):
        return x > 1
    f = Fed(chain(fetch.s(3), foreach(long_step.s()),
                  nc.branch(is_big.s(), aggregate.s(), fetch.s())))
    fe = next(i for i, r in f.nodes.items() if r[0] == "foreach")
    br = next(i for i, r in f.nodes.items() if r[0] == "branch")
    kids = [f"{fe}-{k}" for k in range(3)]
    f.send(["S", fe, 1.0, 0, "w"], *[["N", k, 1.0, fe, "long_step", "signature"] for k in kids])
    f.run(kids[0])
    f.send(["B", br, 2.0, "then"])
    view = LiveView(f.source)
    assert view._pacer.wait_idle(30)
    dot = view._dot or ""
    assert "1/3 done" in dot  # the foreach node counts its elements
    then, = f.ids("aggregate")
    otherwise = [i for i in f.ids("fetch") if f.nodes[i][3] == br]
    assert re.search(rf'"?{br}"? -> "?{then}"? \[[^]]*penwidth=2.5', dot)
    assert re.search(rf'"?{otherwise[0]}"? \[[^]]*color=gray55', dot)  # greyed: not taken
    view.close()


def test_eager_result_shows_its_final_state():
    r = (fetch.s(1) | long_step.s()).apply()
    view = live_view(r)
    assert view.wait(30)
    assert (view.overall.value, view.overall.max, view.overall.bar_style) == (2, 2, "success")
    assert view.text == "<nbcanvas live view: chain fetch → long_step>"


def test_without_dot_the_diagram_says_how_to_install_it(monkeypatch):
    monkeypatch.setenv("PATH", "")
    view = live_view(fetch.s(1).apply())
    assert view.wait(30)
    assert "install" in view.diagram.value and "graphviz" in view.diagram.value.lower()
    assert view.overall.bar_style == "success"


def test_result_mimebundle_is_the_repr_outside_a_kernel_and_the_widget_inside(monkeypatch):
    from nbcanvas import display
    r = fetch.s(1).apply()
    assert display.result_mimebundle(r) == {"text/plain": repr(r)}
    assert r._repr_mimebundle_() == {"text/plain": repr(r)}
    monkeypatch.setattr(display, "in_kernel", lambda: True)
    bundle = display.result_mimebundle(r)
    assert bundle["text/plain"] == "<nbcanvas live view: fetch>"
    assert set(bundle) == {"text/plain", display.WIDGET}
    assert display.result_mimebundle(r, exclude={display.WIDGET}) == {"text/plain": repr(r)}


# -- the pacer ------------------------------------------------------------------------------
def test_pacer_coalesces_and_runs_once_more_after_the_last_poke():
    seen: list[int] = []
    counter = [0]
    p = Pacer(lambda: seen.append(counter[0]) or False, interval=0.02)
    for k in range(1, 501):
        counter[0] = k
        p.poke()
    assert p.wait_idle(10) and seen[-1] == 500 and len(seen) < 500


def test_pacer_stops_when_fn_says_done_and_survives_errors():
    calls = []

    def fn() -> bool:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("first redraw fails")
        return True
    p = Pacer(fn, interval=0.0)
    p.poke()
    assert p.wait_idle(10) and isinstance(p.error, RuntimeError)
    p.poke()
    assert p.wait_idle(10) and p.closed and len(calls) == 2
    p.poke()  # closed: ignored
    assert p.wait_idle(10) and len(calls) == 2


def test_the_view_names_a_workflow_from_its_handle_without_walking_the_canvas():
    from nbcanvas.widgets.model import source_of
    r = chord([fetch.s(i) for i in range(3)], aggregate.s()).apply()
    assert r.handle.name == "chord: fetch → aggregate"
    assert source_of(r).name == "chord fetch → aggregate"
    big = group(fetch.s(i) for i in range(2000)).apply()
    walked: list[int] = []
    import nbcanvas.canvas as canvas
    import nbcanvas.canvas.walk as walk
    original = walk.iter_nodes

    def counting(*a, **k):
        walked.append(1)
        return original(*a, **k)
    canvas.iter_nodes = walk.iter_nodes = counting
    try:
        assert source_of(big).name == "group fetch"
    finally:
        canvas.iter_nodes = walk.iter_nodes = original
    assert walked == []  # a 2000-member group is not walked again for its name
