"""Tasks of the reliability suite.

The plain functions live at module level (workers import them by reference: ``tests`` is a
package on their sys.path; CLI-started workers get the repository root on ``PYTHONPATH``).
``tasks_for(app, prefix)`` registers them on any app -- each dedicated cluster gets its own
``App(client=...)`` -- and the module's own ``app`` holds them as ``rel.<name>`` for the
session's LocalCluster (the current client). Side effects that tests count are appended to
a file whose path is an argument, one JSON object per line, whichever process ran the task.
"""
from __future__ import annotations

import json
import os
import threading
import time
from types import SimpleNamespace
from typing import Any

import nbcanvas as nc


def append(path: str | None, **record: Any) -> None:
    if path is None:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, default=repr) + "\n")


def records(path: str, task: str | None = None) -> list[dict[str, Any]]:
    """Records appended to ``path`` (those of ``task`` only, if given)."""
    try:
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []
    return [r for r in rows if task is None or r.get("task") == task]


class Boom(Exception):
    """The exception of :func:`fail`."""


def add(x, y):
    return x + y


def tsum(xs):
    return sum(xs)


def collect(xs):
    return list(xs)


def identity(x):
    return x


def nap(x, seconds=0.05, path=None):
    """Return ``x`` after ``seconds`` (a 50 ms task); record ``(x, pid)`` in ``path``."""
    time.sleep(seconds)
    append(path, task="nap", x=x, pid=os.getpid())
    return x


def fail(*args, message="boom", path=None, **kwargs):
    append(path, task="fail", args=list(args))
    raise Boom(message)


def record(*args, path=None, tag="record", **kwargs):
    """Append ``{"task": tag, "args": ...}`` to ``path``; return ``args[0]`` (or None)."""
    append(path, task=tag, args=list(args))
    return args[0] if args else None


def errback(exc, path=None, tag="errback"):
    append(path, task=tag, exc_type=type(exc).__name__, exc=str(exc))


def make_lock(x=None):
    """Return a value that cannot be pickled."""
    return threading.Lock()


def echo_html(self, payload):
    """Report ``payload`` as update_state meta, then return it (escaping tests)."""
    self.update_state(state="PROGRESS", meta={"note": payload})
    return payload


def echo_and_wait(self, payload, gate, timeout=60.0):
    """Report ``payload`` as update_state meta, wait for the gate file, return ``payload``."""
    self.update_state(state="PROGRESS", meta={"note": payload})
    deadline = time.monotonic() + timeout
    while not os.path.exists(gate):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {gate} was never opened")
        time.sleep(0.01)
    return payload


def gate(path, timeout=60.0):
    """Block until the file ``path`` exists (the test opens the gate); return its name."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {path} was never opened")
        time.sleep(0.01)
    return os.path.basename(path)


def hog(mib, path=None):
    """Allocate ``mib`` MiB and hold it (for the memory-limit test)."""
    append(path, task="hog", pid=os.getpid())
    blocks = [bytearray(1024 * 1024) for _ in range(mib)]
    time.sleep(5)
    return len(blocks)


_PLAIN = [add, tsum, collect, identity, nap, fail, record, errback, make_lock, gate, hog]
_BOUND = [echo_html, echo_and_wait]


def tasks_for(app: nc.App, prefix: str) -> SimpleNamespace:
    """Register every task of this module on ``app`` as ``<prefix>.<name>``."""
    ns = {f.__name__: app.task(f, name=f"{prefix}.{f.__name__}") for f in _PLAIN}
    ns.update({f.__name__: app.task(f, name=f"{prefix}.{f.__name__}", bind=True)
               for f in _BOUND})
    return SimpleNamespace(app=app, **ns)


#: The suite's own app: runs wherever the current client points (the session LocalCluster).
app = nc.App("reliability", set_as_current=False)
rel = tasks_for(app, "rel")
