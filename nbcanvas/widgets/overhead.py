"""What the live view costs a running workflow, for the benchmarks (show stage).

:func:`observe_overhead` times ``build().delay()`` + ``.get()`` with and without a live view
bound to the result (widgets created, store observer subscribed, redraws paced as in a
kernel; outside a kernel ipywidgets still serializes every change, it only has no socket to
send it to), alternating the two so that drift hits both alike.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

__all__ = ["observe_overhead", "time_run"]


def time_run(build: Callable[[], Any], view: bool, timeout: float = 300.0,
             check: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """One run: seconds from ``build()`` to ``.get()`` returning; with ``view``, a live view
    is bound right after ``delay()``. Untimed afterwards: the view's final redraw, ``check``
    on the result, ``forget()``. Returns ``{"seconds", "redraws", "svg", "view_cpu"}``."""
    from .live import live_view
    t0 = time.perf_counter()
    r = build().delay()
    v = live_view(r) if view else None
    out = r.get(timeout=timeout)
    seconds = time.perf_counter() - t0
    stats: dict[str, Any] = {"seconds": seconds, "redraws": 0, "svg": 0, "view_cpu": 0.0}
    try:
        if v is not None:
            if not v.wait(timeout):
                raise AssertionError("the live view did not draw the final state")
            stats.update(redraws=v._pacer.calls, svg=v.svg_renders, view_cpu=v._pacer.cpu)
        if check is not None:
            check(out)
    finally:
        r.forget()
    return stats


def observe_overhead(build: Callable[[], Any], repeat: int = 5, timeout: float = 300.0,
                     check: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """Median seconds without / with the live view over ``repeat`` alternating pairs (after one
    untimed pair), the overhead in % of the run without it, and the view's own work.

    Returns ``{"without", "with", "overhead_pct", "runs_without", "runs_with", "redraws",
    "svg", "view_cpu"}`` (``redraws``/``svg``/``view_cpu``: medians per run with the view).
    """
    time_run(build, False, timeout, check)
    time_run(build, True, timeout, check)
    plain: list[float] = []
    viewed: list[dict[str, Any]] = []
    for _ in range(repeat):
        plain.append(time_run(build, False, timeout, check)["seconds"])
        viewed.append(time_run(build, True, timeout, check))
    without = statistics.median(plain)
    with_view = statistics.median(v["seconds"] for v in viewed)
    return {"without": without, "with": with_view,
            "overhead_pct": (with_view / without - 1.0) * 100.0,
            "runs_without": plain, "runs_with": [v["seconds"] for v in viewed],
            "redraws": statistics.median(v["redraws"] for v in viewed),
            "svg": statistics.median(v["svg"] for v in viewed),
            "view_cpu": statistics.median(v["view_cpu"] for v in viewed)}
