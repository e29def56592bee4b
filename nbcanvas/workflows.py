"""``nc.workflows()``: the workflows known to the connected scheduler (observe stage).

What Celery users run Flower for, in a cell. The scheduler plugin keeps one record per
workflow until ``forget()``; this asks it for a summary of each (name, state, done/total,
times). In a kernel the result shows as a live widget (the table, refreshed when events
arrive, and a chooser that opens a workflow's live view); elsewhere as a plain-text table
with fixed columns -- ``print(nc.workflows())`` in a script.

>>> rows = [{"id": "3f0c9a1e-77", "name": "chord: fetch → aggregate", "state": "SUCCESS",
...          "done": 6, "total": 6, "created": 1e9, "started": 1e9, "finished": 1e9 + 2.5}]
>>> print(format_table(rows, local=False))
ID        NAME                              STATE      DONE/TOTAL     STARTED              DURATION
3f0c9a1e  chord: fetch → aggregate          SUCCESS              6/6  2001-09-09 01:46:40  2.5 s
"""
from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

__all__ = ["WorkflowList", "workflows", "workflow_rows", "format_table", "COLUMNS"]

#: Column titles and widths of the text table (the last column is not padded).
COLUMNS: Final = (("ID", 8), ("NAME", 32), ("STATE", 9), ("DONE/TOTAL", 13), ("STARTED", 19),
                  ("DURATION", 0))


def workflow_rows(app: Any = None) -> list[dict[str, Any]]:
    """Summaries of the workflows the scheduler knows, oldest first: dicts with ``id, name,
    state, done, total, counts, created, started, finished`` (times in seconds since the epoch)."""
    from .cluster import connection
    rows = connection(app).rpc("nbcanvas_list") or []
    return sorted((dict(r) for r in rows), key=lambda r: (r.get("created") or 0.0, r["id"]))


def _cut(text: Any, width: int) -> str:
    s = "".join(c if c.isprintable() else " " for c in str(text))
    return s if len(s) <= width else s[:width - 1] + "…"


def duration(row: Mapping[str, Any], now: float | None = None) -> str:
    """``2.5 s`` for a finished workflow, ``3.1 s …`` (so far) for a running one."""
    from .widgets.model import format_seconds
    started, finished = row.get("started"), row.get("finished")
    if started is None:
        return ""
    if finished is not None:
        return format_seconds(finished - started)
    return format_seconds((time.time() if now is None else now) - started) + " …"


def cells(row: Mapping[str, Any], now: float | None = None, local: bool = True) -> list[str]:
    """The text of one row, column by column (not cut to width)."""
    started = row.get("started")
    when = "" if started is None else time.strftime(
        "%Y-%m-%d %H:%M:%S", (time.localtime if local else time.gmtime)(started))
    return [str(row.get("id", ""))[:8], str(row.get("name", "")), str(row.get("state", "")),
            f"{row.get('done', 0):,}/{row.get('total', 0):,}", when, duration(row, now)]


def format_table(rows: Sequence[Mapping[str, Any]], now: float | None = None,
                 local: bool = True) -> str:
    """The rows as a text table with fixed column widths (``local=False``: times in UTC)."""
    lines = ["  ".join(t.ljust(wd) if wd else t for t, wd in COLUMNS)]
    for row in rows:
        parts = []
        for (title, wd), text in zip(COLUMNS, cells(row, now, local)):
            if title == "DONE/TOTAL":  # numbers are never cut
                parts.append(text.rjust(wd))
            else:
                parts.append((_cut(text, wd) if wd else text).ljust(wd))
        lines.append("  ".join(parts).rstrip())
    if not rows:
        lines.append("(no workflows known to the scheduler)")
    return "\n".join(lines)


class WorkflowList:
    """The answer of :func:`workflows`: ``.rows`` (a snapshot); shows as a live widget in a
    kernel, as a text table elsewhere (``repr``/``str``)."""

    def __init__(self, rows: list[dict[str, Any]], app: Any = None) -> None:
        self.rows = rows
        self.app = app

    def __repr__(self) -> str:
        return format_table(self.rows)

    __str__ = __repr__

    def __len__(self) -> int:
        return len(self.rows)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from .display import TEXT, WIDGET, in_kernel
        text = repr(self)
        if not in_kernel() or (include and WIDGET not in include) or \
                (exclude and WIDGET in exclude):
            return {TEXT: text}
        from .widgets import WorkflowListView
        return WorkflowListView(self.app, rows=self.rows)._repr_mimebundle_()


def workflows(app: Any = None) -> WorkflowList:
    """The workflows known to the connected scheduler (name, state, done/total, started,
    duration): a live widget in a kernel (choose one to see its live view), a text table
    elsewhere. Connects like ``delay()`` does (``app``'s client, the current one, ...)."""
    return WorkflowList(workflow_rows(app), app)
