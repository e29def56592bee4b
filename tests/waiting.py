"""The tests' one polling loop, for conditions no event announces.

A file another process writes (a scheduler file, a child's "ready" file), a line a library
prints on its own thread, a scheduler's state seen from another process: nothing to wait on,
so poll, always with a deadline. Everything that has an event (a result, a store, a view's
final state) waits on that event instead.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["wait_until", "scheduler_address", "stop_processes", "dask_cli"]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str = "the condition",
               interval: float = 0.02, give_up: Callable[[], Any] | None = None) -> Any:
    """Poll ``predicate()`` until it is truthy and return its value.

    Raises ``AssertionError`` naming ``what`` after ``timeout`` seconds, or at once when
    ``give_up()`` is truthy (e.g. the process that should write the file has exited).

    >>> wait_until(lambda: 42, 1.0)
    42
    >>> wait_until(lambda: False, 0.05, "nothing")
    Traceback (most recent call last):
    AssertionError: nothing did not happen within 0.05 s
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if give_up is not None and give_up():
            raise AssertionError(f"{what} cannot happen any more")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g} s")
        time.sleep(interval)


def scheduler_address(sched_file: Any, process: Any, timeout: float = 60.0) -> str:
    """The address in the ``--scheduler-file`` a ``dask scheduler`` ``process`` writes once it
    listens (read whole: the file can be seen before its JSON is complete)."""
    import json

    def read() -> str | None:
        try:
            return json.loads(open(sched_file).read())["address"]
        except (FileNotFoundError, ValueError, KeyError):
            return None
    return wait_until(read, timeout, "the scheduler's address in its file",
                      give_up=lambda: process.poll() is not None)


def stop_processes(procs: list[Any], sig: int | None = None, timeout: float = 20.0) -> None:
    """Stop child processes by PID: ``sig`` (SIGTERM by default) to each still running, last
    started first, then wait ``timeout`` s for each and SIGKILL what is left."""
    import signal
    import subprocess
    for p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM if sig is None else sig)
    for p in procs:
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=timeout)


def dask_cli() -> str:
    """The ``dask`` command of this interpreter's environment (for ``dask scheduler|worker``)."""
    import shutil
    import sys
    from pathlib import Path
    return shutil.which("dask", path=str(Path(sys.executable).parent)) or "dask"
