"""``nc.progress(result)``: the live view in a kernel, a tqdm line elsewhere (show stage).

In a Jupyter kernel it displays the live view and returns at once (the view keeps updating
while other cells run). Anywhere else -- ``python script.py``, a terminal IPython -- it prints
one ``tqdm`` progress line **to stderr** (tqdm's default: stdout stays clean for the program's
own output) and blocks until the workflow is finished, like dask's ``progress``. Both read the
same counts (:func:`nbcanvas.widgets.view_model`); the line is redrawn when events arrive.

>>> import io
>>> from nbcanvas import App
>>> app = App("doc-progress")
>>> @app.task(name="tasks.double")
... def double(x):
...     return 2 * x
>>> out = io.StringIO()
>>> text_progress(double.s(21).apply(), file=out)
>>> "1/1" in out.getvalue() and "double" in out.getvalue()
True
"""
from __future__ import annotations

import sys
import time
from typing import IO, Any

__all__ = ["progress", "text_progress"]


def progress(result: Any, *, file: IO[str] | None = None) -> None:
    """Show the progress of ``result``'s workflow (an ``AsyncResult``/``GroupResult``, also one
    re-attached by id): the live view in a kernel (returns at once), else a tqdm line on
    ``file`` (default ``sys.stderr``), returning when the workflow is finished."""
    from .display import in_kernel
    if in_kernel():
        from IPython.display import display

        from .widgets import live_view
        display(live_view(result))
        return None
    text_progress(result, file=file)
    return None


def text_progress(result: Any, *, file: IO[str] | None = None, mininterval: float = 0.1) -> None:
    """A tqdm line (``tqdm.std``) fed by the state store: blocks until the workflow is
    finished and its results are in (or they are in and no event came for a second)."""
    from tqdm.std import tqdm

    from .widgets.model import source_of, view_model
    source = source_of(result)
    store = source.store
    vm = view_model(source)
    bar = tqdm(total=vm.overall.total, desc=source.name, unit="task",
               file=file if file is not None else sys.stderr, mininterval=mininterval,
               dynamic_ncols=True, leave=True)
    if source.watch_done is not None:
        source.watch_done(store.poke)  # wake up if the results come without a final event
    lost_since: float | None = None
    try:
        while True:
            _show(bar, vm)
            if vm.finished:
                break
            if source.results_done is not None and source.results_done():
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since > 1.0:
                    break
            seen = vm.version
            store.wait(lambda s: s.version != seen, timeout=1.0 if lost_since else None)
            vm = view_model(source)
        done = source.results_done
        while done is not None and not done():  # the events come just before the results
            store.wait(lambda s: done(), timeout=0.25)  # woken by watch_done's poke
    finally:
        bar.refresh()
        bar.close()


def _show(bar: Any, vm: Any) -> None:
    o = vm.overall
    if bar.total != o.total:
        bar.total = o.total
    extra = ", ".join(f"{n:,} {word}" for n, word in ((o.failed, "failed"),
                      (o.revoked, "revoked"), (o.running, "running")) if n)
    if extra != getattr(bar, "_nbcanvas_extra", None):
        bar._nbcanvas_extra = extra
        bar.set_postfix_str(extra, refresh=False)
    bar.update(o.done - bar.n)
