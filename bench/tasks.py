"""The benchmark's task functions: plain, importable by reference (stdlib only).

nbcanvas, raw dask and Celery all run these same functions, so workers of every system import
``bench.tasks`` from the repository root.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["add", "tsum", "sleep_ms", "upto", "map_add", "nested_chords", "FOREACH_ITEMS"]

#: items of the "map over a result" row: a step returns a list, the next maps a task over it
FOREACH_ITEMS = 10


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


def upto(n: int) -> list[int]:
    """``[0, ..., n - 1]``: a result whose length is known only once it is computed."""
    return list(range(n))


def map_add(items: list[int], y: int) -> list[int]:
    """raw dask's way to map a task over a result: a task that launches tasks (``worker_client``,
    dask's "launch tasks from tasks"), one ``add(x, y)`` per item, and gathers them."""
    from distributed import worker_client
    with worker_client() as client:
        return client.gather(client.map(add, items, [y] * len(items), pure=False))


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
