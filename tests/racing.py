"""The tests' one way to catch a reader walking a dict while another thread writes to it.

CPython switches threads every 5 ms by default, so a reader that walks a dict without the lock
its writers hold almost never meets a write. :func:`no_race` makes the interpreter switch every
microsecond while one thread writes and this one reads, so such a reader fails within a few
hundred reads ("dictionary changed size during iteration").
"""
from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["no_race"]


def no_race(write: Callable[[int], Any], read: Callable[[], Any], reads: int = 300) -> None:
    """Call ``write(i)`` for i = 0, 1, ... in a thread while calling ``read()`` ``reads``
    times here; fail if a read raises ``RuntimeError`` (or the writer does not stop).

    >>> d = {}
    >>> no_race(lambda i: d.__setitem__(i, i), lambda: sorted(d))
    >>> no_race(lambda i: d.__setitem__(i, i), lambda: [k for k in d])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    AssertionError: a read met a write: dictionary changed size during iteration...
    """
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            write(i)
            i += 1

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    th = threading.Thread(target=writer, daemon=True)
    th.start()
    error: RuntimeError | None = None
    try:
        for _ in range(reads):
            try:
                read()
            except RuntimeError as e:
                error = e
                break
    finally:
        stop.set()
        sys.setswitchinterval(old)
        th.join(timeout=30)
    assert not th.is_alive(), "the writing thread did not stop"
    assert error is None, f"a read met a write: {error}"
