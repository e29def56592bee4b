"""The live view: a workflow's state-coloured diagram and progress bars (show stage).

An ``ipywidgets.VBox`` (CSS class ``nbcanvas-live``) holding, top to bottom:

- ``nbcanvas-header``: the workflow's name and, on a cluster, a link to the dask dashboard
  (``nbcanvas-dashboard``);
- ``nbcanvas-diagram``: the Graphviz SVG with every node filled with its state's colour;
- ``nbcanvas-overall``: the whole workflow's bar (``nbcanvas-progress``) and its counts
  (``nbcanvas-progress-text``); ``bar_style`` ``danger`` as soon as a task failed;
- ``nbcanvas-steps``: one row (``nbcanvas-step``) per top-level step -- a bar
  (``nbcanvas-step-bar``) and its counts and elapsed time (``nbcanvas-step-text``);
- ``nbcanvas-meta``: the latest ``update_state`` meta of running tasks.

It is fed by the state store only: an observer (on distributed's IO thread) pokes a
:class:`~nbcanvas.widgets.pace.Pacer`, whose short-lived thread redraws at most every
``interval`` seconds, once more after the last event, and then unsubscribes. The diagram is
redrawn less often when drawing it is slow (at most ``SVG_BUDGET`` of one thread's time), and
not at all when its DOT text did not change. User text is escaped before it reaches HTML.
"""
from __future__ import annotations

import html
import threading
import time
import weakref
from typing import Any, Final

import ipywidgets as w
from ipywidgets.widgets.widget_string import HTMLStyle

from . import cells
from .model import MAX_STEPS, Bar, Source, ViewModel, source_of, view_model
from .pace import Pacer

__all__ = ["LiveView", "Shown", "live_view", "live_views", "BUDGET", "SVG_BUDGET", "GRACE"]

#: Share of one thread's time the redraws may take: a redraw that costs ``c`` seconds waits at
#: least ``c / BUDGET`` before the next (10,000 nodes: ~0.2 s between bar updates).
BUDGET: Final = 0.05
#: The same for the diagram (a ``dot`` run of ~50 ms: a new diagram every second or so).
SVG_BUDGET: Final = 0.05
#: Seconds to wait for the last events after the workflow's results are in (or lost).
GRACE: Final = 1.0
WIDGET_VIEW: Final = "application/vnd.jupyter.widget-view+json"

_views: weakref.WeakSet[LiveView] = weakref.WeakSet()


def _classed(widget: Any, *classes: str) -> Any:
    for c in classes:
        widget.add_class(c)
    return widget


class Shown:
    """Shows ``self.box`` in a kernel, with ``self.text`` as its deterministic text/plain."""

    box: Any
    text: str

    def __repr__(self) -> str:
        return self.text

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle = self.box._repr_mimebundle_(include=include, exclude=exclude) or {}
        bundle["text/plain"] = self.text
        return bundle


class LiveView(Shown):
    """The live view of one workflow (see the module doc). ``view.box`` is the widget; its
    parts share one ``Layout`` (style the view through ``view.box.layout``, its own)."""

    def __init__(self, source: Source, interval: float = 0.1) -> None:
        self.source = source
        self.text = f"<nbcanvas live view: {source.name}>"
        # The parts share one Layout and one HTML style: made per widget, those two are two
        # thirds of the cost of making a view (0.36 ms per HTML widget against 0.08 ms).
        self._layout = w.Layout()
        self._text_style = HTMLStyle()
        self.header = self._html("nbcanvas-header", self._header_html())
        self.diagram = self._html("nbcanvas-diagram", "<i>drawing…</i>")
        self.overall = self._bar("nbcanvas-progress", description="total")
        self.overall_text = self._html("nbcanvas-progress-text")
        self.steps = _classed(w.VBox(layout=self._layout), "nbcanvas-steps")
        self.notes = self._html("nbcanvas-meta")
        self.box = _classed(w.VBox([self.header, self.diagram,
                                    _classed(w.HBox([self.overall, self.overall_text],
                                                    layout=self._layout), "nbcanvas-overall"),
                                    self.steps, self.notes]), "nbcanvas-live")
        self._rows: list[tuple[Any, Any, Any]] = []
        self._more: Any = None  # "… and N more steps", made when needed
        self._structure: Any = None
        self._dot: str | None = None
        # A large workflow's diagram is drawn first after a short delay: rendering it (the
        # `dot` process) while thousands of small tasks start would take CPU from them, and
        # the canvas was usually just shown as a cell's value anyway.
        self._quiet_until = time.monotonic() + (LARGE_DELAY if len(source.static) > LARGE else 0.0)
        self._svg_next = self._quiet_until
        self._results_seen = False
        self._lost_since: float | None = None
        self.model: ViewModel | None = None
        self.svg_renders = 0
        self.svg_seconds = 0.0
        self.final = threading.Event()
        self._watching = self._urgent = False
        self._pacer = Pacer(self._redraw, interval, budget=BUDGET, name="nbcanvas-live-view")
        self._unsubscribe = source.store.subscribe(lambda _store: self._pacer.poke())
        _views.add(self)
        cells.watch(self)
        self._pacer.poke()  # the first redraw at once, from the pacer's thread

    # -- life ----------------------------------------------------------------------------------
    @property
    def live(self) -> bool:
        """True while the view still follows its workflow."""
        return not self.final.is_set() and not self._pacer.closed

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the final state is drawn (True) or ``timeout`` passed (False)."""
        return self.final.wait(timeout)

    def close(self) -> None:
        """Stop following the workflow (the widgets stay as they are)."""
        self._unsubscribe()
        self._pacer.close()

    def finishing(self) -> bool:
        """True if the workflow is over but its final state is not drawn yet."""
        if self.final.is_set() or self._pacer.closed:
            return False
        done = self.source.results_done
        return self.source.store.finished() or (done is not None and done())

    def widgets(self) -> list[Any]:
        """Every widget of the view."""
        rows = [x for row in self._rows for x in row]
        more = [] if self._more is None else [self._more]
        return [self.box, *self.box.children, *self.box.children[2].children, self.steps,
                *more, *rows]

    def send_all(self) -> None:
        """Send the whole state of every widget again (see ``nbcanvas.widgets.cells``)."""
        for widget in self.widgets():
            widget.send_state()

    def _html(self, css: str, value: str = "") -> Any:
        return _classed(w.HTML(value, layout=self._layout, style=self._text_style), css)

    def _bar(self, css: str, **kw: Any) -> Any:
        """A progress bar (its own style: its colour changes with its step's states)."""
        return _classed(w.IntProgress(value=0, min=0, max=1, layout=self._layout, **kw), css)

    # -- drawing -------------------------------------------------------------------------------
    def _redraw(self) -> bool:
        """One redraw (from the pacer's thread); True when the final state is drawn."""
        before = cells.cell_mark()
        try:
            return self._redraw_now()
        finally:
            cells.redrawn(self, before)

    def _redraw_now(self) -> bool:
        if not self._watching and self.source.watch_done is not None:
            self._watching = True
            self.source.watch_done(self._results_in)
        now = time.monotonic()
        if now < self._quiet_until:
            # A large workflow that may be over in a moment: counting and drawing it now would
            # take CPU from its own tasks. Draw once its results are in (one pacing interval
            # later, when the client has fetched them), or after the delay.
            done = self.source.results_done
            if done is not None and done() and not self._results_seen:
                self._results_seen = True
                self._quiet_until = min(self._quiet_until, now + self._pacer.interval)
            self._pacer.poke()
            return False
        vm = view_model(self.source)
        over = vm.finished or self._lost(vm)
        self._show(vm)
        now = time.monotonic()
        if over or now >= self._svg_next:
            t0 = now
            self._draw(vm)
            cost = time.monotonic() - t0
            self._svg_next = t0 + max(self._pacer.interval, cost / SVG_BUDGET)
        else:
            self._pacer.poke()  # the diagram is due later: come back for it
        if over:
            self._unsubscribe()
            self.final.set()
        return over

    def _results_in(self) -> None:
        """A result future finished: once all have, draw the final state without waiting."""
        done = self.source.results_done
        urgent = not self._urgent and done is not None and done()
        self._urgent = self._urgent or urgent  # once: no burst of unpaced redraws
        self._pacer.poke(urgent=urgent)

    def _lost(self, vm: ViewModel) -> bool:
        """The results are in (or gone) but the store is not finished: give the last events
        ``GRACE`` seconds, then draw what is known and stop."""
        done = self.source.results_done
        if done is None or not done():
            return False
        now = time.monotonic()
        if self._lost_since is None:
            self._lost_since = now
        if now - self._lost_since >= GRACE:
            return True
        self._pacer.poke()
        return False

    def _header_html(self) -> str:
        text = f"<b>{html.escape(self.source.name)}</b>"
        if self.source.dashboard:
            link = html.escape(self.source.dashboard)
            text += (f' · <a class="nbcanvas-dashboard" href="{link}" target="_blank"'
                     f' rel="noopener">dask dashboard</a>')
        return text

    def _show(self, vm: ViewModel) -> None:
        self.model = vm
        _set_bar(self.overall, vm.overall, vm.finished)
        self.overall_text.value = html.escape(vm.overall.text)
        shown = vm.steps[:MAX_STEPS]
        while len(self._rows) < len(shown):
            bar, text = self._bar("nbcanvas-step-bar"), self._html("nbcanvas-step-text")
            row = _classed(w.HBox([bar, text], layout=self._layout), "nbcanvas-step")
            self._rows.append((bar, text, row))
        children = tuple(row[2] for row in self._rows[:len(shown)])
        for (bar, text, _), step in zip(self._rows, shown):
            _set_bar(bar, step, vm.finished)
            text.value = f"<b>{html.escape(step.label)}</b> {html.escape(step.text)}"
        if vm.more_steps:
            if self._more is None:
                self._more = self._html("nbcanvas-step-more")
            self._more.value = html.escape(f"… and {vm.more_steps:,} more steps")
            children += (self._more,)
        if children != tuple(self.steps.children):
            self.steps.children = children
        lines = "\n".join(vm.notes)
        self.notes.value = f"<pre>{html.escape(lines)}</pre>" if lines else ""

    def _draw(self, vm: ViewModel) -> None:
        """The diagram, coloured by the current states (skipped if the DOT text is the same)."""
        from ..display import render_svg
        from ..dot import canvas_graph
        src = self.source
        if src.structure is None:
            return
        t0 = time.monotonic()
        if self._structure is None:
            self._structure = src.structure()
        store = src.store
        nodes = dict(store.nodes)
        dynamic = {} if len(nodes) == len(src.static) else {
            i: row for i, row in nodes.items() if i not in src.static}
        graph = canvas_graph(self._structure, states=store.snapshot(),
                             branches=dict(store.branches), dynamic=dynamic, meta=vm.meta)
        if graph.source == self._dot:
            return
        svg, problem = render_svg(lambda: graph)
        if svg is not None:
            self.diagram.value = ('<div class="nbcanvas-svg" style="overflow:auto">'
                                  f'{svg[svg.find("<svg"):]}</div>')
        else:
            self.diagram.value = f"<pre>{html.escape(problem or '')}</pre>"
        self._dot = graph.source
        self.svg_renders += 1
        self.svg_seconds += time.monotonic() - t0


NOT_RUN_GREY = "#bdbdbd"
#: workflows with more nodes than this draw their first diagram after LARGE_DELAY seconds
LARGE = 2_000
LARGE_DELAY = 1.0


def _set_bar(bar: Any, b: Bar, finished: bool) -> None:
    with bar.hold_sync():
        bar.max = max(1, b.total)
        bar.value = bar.max if finished and b.total == 0 else b.done
        bar.bar_style = b.style or ("success" if finished and b.total == 0 else "")
        # nothing of this step ran: grey (bar_style '' would be the theme's blue)
        bar.style.bar_color = NOT_RUN_GREY if b.total and b.skipped == b.total else None


def live_view(result: Any, interval: float = 0.1) -> LiveView:
    """A :class:`LiveView` of the workflow of ``result`` (an ``AsyncResult``/``GroupResult``,
    also one re-attached by id, or a workflow handle). Display it, or use ``.box``."""
    return LiveView(source_of(result), interval)


def live_views() -> list[LiveView]:
    """The views of this process that still follow their workflow."""
    return [v for v in list(_views) if v.live]
