"""Growth checks: assert that a cost grows linearly, never by wall-clock limits.

Timing on a shared, loaded machine is noisy, so each size is timed best-of-``repeat`` with the
garbage collector off, and the check is tried up to ``attempts`` times: linear growth from
``n`` to ``4n`` gives a ratio near 4 and passes on some attempt; quadratic growth gives ~16
on every attempt and fails them all.
"""
from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any


def best_time(fn: Callable[[], Any], repeat: int = 3) -> float:
    """The shortest of ``repeat`` timings of ``fn()``, in seconds, with gc off."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        best = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
        return best
    finally:
        if enabled:
            gc.enable()


def assert_linear(make: Callable[[int], Callable[[], Any]], n: int, factor: int = 4,
                  limit: float = 8.0, attempts: int = 3) -> float:
    """Assert that ``make(k)()`` costs grow less than ``limit`` times from ``n`` to
    ``factor * n`` (quadratic growth would be ``factor ** 2``). Returns the best ratio."""
    small_fn, big_fn = make(n), make(factor * n)
    ratios = []
    for _ in range(attempts):
        gc.collect()
        small, big = best_time(small_fn), best_time(big_fn)
        ratios.append(big / small)
        if ratios[-1] < limit:
            return ratios[-1]
    raise AssertionError(f"cost grew {min(ratios):.1f}x (attempts: "
                         f"{', '.join(f'{r:.1f}' for r in ratios)}) from n={n} to "
                         f"n={factor * n}; linear would be ~{factor}x, quadratic ~{factor ** 2}x")
