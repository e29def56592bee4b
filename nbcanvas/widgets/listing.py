"""The workflow list widget of ``nc.workflows()`` in a kernel (show stage).

A ``VBox`` (``nbcanvas-workflow-list``): a chooser (``nbcanvas-workflow-select``) and a
refresh button (``nbcanvas-workflow-refresh``), the table (``nbcanvas-workflows``, an HTML
table with escaped cells), and the chosen workflow's live view (``nbcanvas-workflow-view``),
re-attached with ``nc.AsyncResult(id)`` when it was sent by another process.

Live without polling: every event message that reaches this process (of any workflow) pokes a
:class:`~nbcanvas.widgets.pace.Pacer` that asks the scheduler for the list again at most once
a second.
"""
from __future__ import annotations

import html
import weakref
from collections.abc import Sequence
from typing import Any, Final

import ipywidgets as w

from ..events import add_listener
from ..workflows import COLUMNS, cells, workflow_rows
from .live import LiveView, Shown, _classed, live_view
from .pace import Pacer

__all__ = ["WorkflowListView", "REFRESH_INTERVAL"]

#: Seconds between two refreshes of the list, at least.
REFRESH_INTERVAL: Final = 1.0
_NONE: Final = ""


class WorkflowListView(Shown):
    """The live workflow list (see the module doc); ``.box`` is the widget."""

    text = "<nbcanvas workflow list>"

    def __init__(self, app: Any = None, rows: Sequence[dict[str, Any]] | None = None,
                 interval: float = REFRESH_INTERVAL) -> None:
        self.app = app
        self.rows: list[dict[str, Any]] = []
        self.view: LiveView | None = None
        self.choose = _classed(w.Dropdown(options=[("choose a workflow…", _NONE)], value=_NONE,
                                          description="live view"), "nbcanvas-workflow-select")
        self.refresh_button = _classed(w.Button(description="refresh", icon="refresh"),
                                       "nbcanvas-workflow-refresh")
        self.table = _classed(w.HTML(), "nbcanvas-workflows")
        self.detail = _classed(w.VBox(), "nbcanvas-workflow-view")
        self.box = _classed(w.VBox([w.HBox([self.choose, self.refresh_button]), self.table,
                                    self.detail]), "nbcanvas-workflow-list")
        self.refreshes = 0
        self._pacer = Pacer(self._refresh, interval, budget=0.5, name="nbcanvas-workflow-list")
        pacer = weakref.ref(self._pacer)
        self._remove = add_listener(lambda _wf: _poke(pacer))
        weakref.finalize(self, self._remove)
        self.choose.observe(self._chosen, "value")
        self.refresh_button.on_click(lambda _button: self._pacer.poke())
        self.show_rows(workflow_rows(app) if rows is None else list(rows))

    def close(self) -> None:
        """Stop refreshing (the widgets stay as they are)."""
        self._remove()
        self._pacer.close()
        if self.view is not None:
            self.view.close()

    def refresh(self) -> None:
        """Ask the scheduler now."""
        self._refresh()

    def _refresh(self) -> bool:
        self.show_rows(workflow_rows(self.app))
        return False  # never finished: new workflows may come

    def show_rows(self, rows: list[dict[str, Any]]) -> None:
        """Draw ``rows`` (summaries as ``workflow_rows`` gives them)."""
        from ..dot import state_colour
        head = "".join(f"<th style='text-align:left'>{html.escape(t)}</th>" for t, _ in COLUMNS)
        body = []
        for row in rows:
            tds = []
            for (title, _), text in zip(COLUMNS, cells(row)):
                style = f" style='background:{state_colour(str(row.get('state')))}'" \
                    if title == "STATE" else ""
                tds.append(f"<td{style}>{html.escape(text)}</td>")
            body.append(f"<tr data-id='{html.escape(str(row.get('id', '')))}'>{''.join(tds)}</tr>")
        if not rows:
            body.append(f"<tr><td colspan='{len(COLUMNS)}'>no workflows known to the scheduler"
                        f"</td></tr>")
        self.table.value = (f"<table class='nbcanvas-workflow-table'><tr>{head}</tr>"
                            f"{''.join(body)}</table>")
        options = [("choose a workflow…", _NONE)] + [
            (f"{r.get('name', '')} · {str(r.get('id', ''))[:8]}", str(r.get("id"))) for r in rows]
        if options != list(self.choose.options):
            value = self.choose.value
            with self.choose.hold_trait_notifications():
                self.choose.options = options
                self.choose.value = value if value in {v for _, v in options} else _NONE
        # last: whoever sees these rows (the pacer draws from its own thread) finds the table
        # and the chooser already showing them
        self.rows = rows
        self.refreshes += 1

    def _chosen(self, change: dict[str, Any]) -> None:
        if change.get("new") == change.get("old"):
            return
        if self.view is not None:
            self.view.close()
            self.view = None
        wid = change.get("new")
        if not wid:
            self.detail.children = ()
            return
        try:
            from ..result import AsyncResult
            self.view = live_view(AsyncResult(wid, app=self.app))
            self.detail.children = (self.view.box,)
        except Exception as e:  # noqa: BLE001 - e.g. forgotten meanwhile: say so in the cell
            self.detail.children = (_classed(w.HTML(
                f"<pre>{html.escape(f'{type(e).__name__}: {e}')}</pre>"), "nbcanvas-error"),)


def _poke(ref: Any) -> None:
    pacer = ref()
    if pacer is not None:
        pacer.poke()
