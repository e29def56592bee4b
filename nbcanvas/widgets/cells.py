"""Keep live views whole in notebooks saved by nbclient (and ``jupyter execute``) (show stage).

A view redraws from its own thread; ipykernel tags those widget messages with the latest
cell's request. nbclient (which writes the widget state into an executed notebook) keeps only
the messages of the cell it is running, so a redraw that lands *between* two cells -- or after
a cell whose ``.get()`` has returned but before the view drew the final state -- would be lost
from the saved notebook (JupyterLab itself applies every message). Two IPython hooks close the
gaps, at no cost when nothing is pending:

- ``post_execute``: views whose workflow is over wait (briefly) until they drew the final state;
- ``pre_execute``: views that redrew between cells send their whole state again, now tagged
  with the new cell.
"""
from __future__ import annotations

import threading
import time
import weakref
from typing import Any

__all__ = ["watch", "cell_mark", "redrawn", "install_hooks", "FLUSH_TIMEOUT"]

#: Longest wait after a cell for views whose workflow is over.
FLUSH_TIMEOUT = 3.0

_lock = threading.Lock()
_views: weakref.WeakSet[Any] = weakref.WeakSet()
_resend: dict[int, Any] = {}  # id(view) -> view that redrew between cells (held until resent)
_state = {"mark": 0, "in_cell": False, "installed": False}


def watch(view: Any) -> None:
    """Follow ``view`` (a ``LiveView``) around cell boundaries; installs the hooks once."""
    with _lock:
        _views.add(view)
    install_hooks()


def cell_mark() -> tuple[int, bool]:
    """(boundary counter, a cell is running): take it before a redraw, pass it to redrawn()."""
    return _state["mark"], bool(_state["in_cell"])


def redrawn(view: Any, before: tuple[int, bool]) -> None:
    """``view`` finished a redraw begun at ``before``: if a cell boundary came in between, or no
    cell ran, its messages may be lost to nbclient -- send them again in the next cell."""
    if not _state["installed"]:
        return
    if before != (_state["mark"], True) or not _state["in_cell"]:
        with _lock:
            _resend[id(view)] = view


def install_hooks() -> None:
    """Register the pre/post_execute hooks in a kernel (nothing elsewhere)."""
    from ..display import in_kernel
    if _state["installed"] or not in_kernel():
        return
    from IPython import get_ipython
    ip = get_ipython()
    with _lock:
        if _state["installed"] or ip is None:
            return
        ip.events.register("pre_execute", _pre_execute)
        ip.events.register("post_execute", _post_execute)
        _state["installed"] = True


def _pre_execute() -> None:
    with _lock:
        _state["mark"] += 1
        _state["in_cell"] = True
        views = list(_resend.values())
        _resend.clear()
    for view in views:
        view.send_all()


def _post_execute() -> None:
    deadline = time.monotonic() + FLUSH_TIMEOUT
    with _lock:
        views = list(_views)
    for view in views:
        if view.finishing():
            view.wait(max(0.0, deadline - time.monotonic()))
    with _lock:
        _state["mark"] += 1
        _state["in_cell"] = False
