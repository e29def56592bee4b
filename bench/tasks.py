"""The benchmark's task functions: plain, importable by reference (stdlib only).

nbcanvas, raw dask and Celery all run these same functions, so workers of every system import
``bench.tasks`` from the repository root.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["add", "tsum", "sleep_ms", "nested_chords"]


def add(x: int, y: int) -> int:
    """The trivial task."""
    return x + y


def tsum(xs: Iterable[int]) -> int:
    """A chord body: the sum of the header's results."""
    return sum(xs)


def sleep_ms(ms: float, i: int = 0) -> int:
    """Sleep ``ms`` milliseconds (a task with real duration); returns ``i``."""
    time.sleep(ms / 1000.0)
    return i


def nested_chords(add: Any, tsum: Any, depth: int, fanout: int, chord: Callable[..., Any]) -> Any:
    """The nested-chord shape: a chord whose header holds ``fanout`` chords, ``depth`` levels.

    Level 0 is ``add.s(1, 1)``; level d is ``chord([level d-1] × fanout, tsum.s())``. Depth 6 ×
    fan-out 3: 364 chords over 729 leaf tasks; the result is ``2 * fanout**depth``. ``add`` and
    ``tsum`` are nbcanvas or Celery tasks, ``chord`` the matching primitive.
    """
    if depth == 0:
        return add.s(1, 1)
    return chord([nested_chords(add, tsum, depth - 1, fanout, chord) for _ in range(fanout)],
                 tsum.s())
