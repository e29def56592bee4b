"""Tasks for the workflow-control tests (importable by worker processes and subprocesses)."""
from __future__ import annotations

import os
import time

import nbcanvas as nc

app = nc.App("control", set_as_current=False)


@app.task(name="control.slow")
def slow(x, delay=0.05):
    time.sleep(delay)
    return x + 1


@app.task(name="control.total")
def total(xs):
    return sum(xs)


@app.task(name="control.spin")
def spin(seconds):
    """Busy Python loop (interruptible at the next bytecode, unlike a C-level sleep)."""
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


@app.task(name="control.logged")
def logged(x, path, name):
    with open(path, "a") as f:
        f.write(name + "\n")
    return x + [name]


@app.task(name="control.flaky")
def flaky(x, path, name, flag):
    with open(path, "a") as f:
        f.write(name + "\n")
    if not os.path.exists(flag):
        raise OSError("not yet")
    return x + [name]


@app.task(name="control.collect")
def collect(xs):
    return xs


@app.task(name="control.long_step", bind=True)
def long_step(self, data, steps=10, gate=None):
    for i in range(steps):
        self.update_state(state="PROGRESS", meta={"step": i, "total": steps})
        deadline = time.monotonic() + 30
        while gate is not None and not os.path.exists(f"{gate}.{i}") and \
                time.monotonic() < deadline:
            time.sleep(0.01)
    return data


@app.task(name="control.add_one_via_subtask")
def add_one_via_subtask(x, timeout=20.0):
    """Sends a workflow from inside a task and waits for it (Celery refuses: "never call
    result.get() within a task")."""
    return slow.delay(x, 0.0).get(timeout=timeout)


@app.task(name="control.scheduler_seen")
def scheduler_seen():
    """The scheduler a task's own ``delay()`` would go to (the default app's connection)."""
    return nc.connect().scheduler.address


@app.task(name="control.items")
def items(n, path):
    with open(path, "a") as f:
        f.write("items\n")
    return list(range(n))


@app.task(name="control.flaky_item")
def flaky_item(x, path, flag, bad):
    """``x * 10``; fails for item ``bad`` until ``flag`` exists. Logs ``e<x>`` each run."""
    with open(path, "a") as f:
        f.write(f"e{x}\n")
    if x == bad and not os.path.exists(flag):
        raise OSError("not yet")
    return x * 10
