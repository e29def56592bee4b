"""The seed tutorial's tasks (../shared/seed), registered as ``tasks.<name>``, plus helpers.

Side effects that tests observe are appended to a file whose path is passed as an argument
(``record.s(path)``), one JSON object per line, so they are seen also when the task runs in
another process (the cluster runner). Read them back with :func:`records`.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any

import nbcanvas

app = nbcanvas.App("seed")

#: Seconds ``long_step`` sleeps per progress step (tests keep it short).
LONG_STEP_SLEEP = float(os.environ.get("NBCANVAS_TEST_LONG_STEP_SLEEP", "0.001"))


def _append(path: str | os.PathLike[str] | None, **record: Any) -> None:
    if path is None:
        return
    line = json.dumps(record, default=repr)
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def records(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every record appended to ``path`` so far (``[]`` if none)."""
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


# -- Task Signatures Basics --------------------------------------------------------------------
@app.task(name="tasks.add")
def add(x, y):
    return x + y


@app.task(name="tasks.sub")
def sub(x, y):
    """Not commutative: shows where a later argument goes (prepended)."""
    return x - y


# -- Task Chaining --------------------------------------------------------------------------------
@app.task(name="tasks.fetch_data")
def fetch_data(user_id):
    return {"user_id": user_id, "data": "raw_data"}


@app.task(name="tasks.process_data")
def process_data(data):
    data["processed"] = True
    return data


@app.task(name="tasks.save_result")
def save_result(data):
    # No database: the id is derived from the data, so it is deterministic.
    return f"result-{data['user_id']}"


# -- Groups ------------------------------------------------------------------------------------
@app.task(name="tasks.process_image")
def process_image(image_id):
    return f"processed_image_{image_id}"


# -- Chords ------------------------------------------------------------------------------------
@app.task(name="tasks.fetch_user_data")
def fetch_user_data(user_id):
    return {"user_id": user_id, "posts": 10}


@app.task(name="tasks.aggregate_stats")
def aggregate_stats(results):
    total_users = len(results)
    total_posts = sum(r["posts"] for r in results)
    return {"total_users": total_users, "total_posts": total_posts}


# -- Chains of groups --------------------------------------------------------------------------
@app.task(name="tasks.fetch_source_a")
def fetch_source_a():
    return "data_from_source_a"


@app.task(name="tasks.fetch_source_b")
def fetch_source_b():
    return "data_from_source_b"


@app.task(name="tasks.process_batch")
def process_batch(data):
    return f"processed_{data}"


@app.task(name="tasks.combine_results")
def combine_results(results):
    return f"combined_{results}"


# -- Conditional execution and error handling -----------------------------------------------------
@app.task(name="tasks.validate_input")
def validate_input(data):
    if not data.get("user_id"):
        raise ValueError("Missing user_id")
    return data


@app.task(name="tasks.process_valid")
def process_valid(data):
    return f'processed_{data["user_id"]}'


@app.task(name="tasks.handle_error", bind=True)
def handle_error(self, exc, traceback, log=None):
    _append(log, task="handle_error", id=self.request.id, exc_type=type(exc).__name__,
            exc=str(exc), traceback=traceback)
    return None


@app.task(name="tasks.send_success_notification")
def send_success_notification(result, log=None):
    _append(log, task="send_success_notification", result=result)


@app.task(name="tasks.send_failure_notification")
def send_failure_notification(exc, log=None):
    _append(log, task="send_failure_notification", exc_type=type(exc).__name__, exc=str(exc))


# -- Programmatic workflow building -----------------------------------------------------------------
def get_user(user_id):
    return {"id": user_id, "name": f"user{user_id}"}


def process_user_data(user):
    return {"id": user["id"], "name": user["name"].upper()}


@app.task(name="tasks.fetch_and_process")
def fetch_and_process(user_id):
    user = get_user(user_id)
    return process_user_data(user)


@app.task(name="tasks.aggregate_results")
def aggregate_results(results):
    return len(results)


def build_workflow(user_ids):
    """Dynamically build a workflow based on input (as in the seed)."""
    tasks = [fetch_and_process.s(uid) for uid in user_ids]
    return nbcanvas.chord(tasks)(aggregate_results.s())


# -- Immutable signatures ---------------------------------------------------------------------------
@app.task(name="tasks.task_a")
def task_a():
    return 10


@app.task(name="tasks.task_b")
def task_b(x):
    return x * 2


@app.task(name="tasks.task_c")
def task_c(x):
    return x + 1


# -- Monitoring --------------------------------------------------------------------------------------
@app.task(name="tasks.long_step", bind=True)
def long_step(self, data, steps=10, sleep=None, log=None):
    for i in range(steps):
        self.update_state(state="PROGRESS", meta={"step": i, "total": steps})
        _append(log, task="long_step", id=self.request.id, step=i)
        time.sleep(LONG_STEP_SLEEP if sleep is None else sleep)
    return data


@app.task(name="tasks.aggregate")
def aggregate(results):
    return sum(results)


# -- FAQ: failure handling and reusable templates ----------------------------------------------------
@app.task(name="tasks.handle_failure")
def handle_failure(exc, log=None):
    _append(log, task="handle_failure", exc_type=type(exc).__name__, exc=str(exc))


@app.task(name="tasks.validate")
def validate(data):
    if not isinstance(data, dict) or not data:
        raise ValueError(f"invalid data: {data!r}")
    return dict(data)


@app.task(name="tasks.process")
def process(data, user_id):
    return {**data, "user_id": user_id, "processed": True}


@app.task(name="tasks.save")
def save(record):
    return f"saved:{record['user_id']}:{','.join(sorted(record))}"


def my_workflow(data, user_id):
    """The seed's reusable template."""
    return nbcanvas.chain(validate.s(data), process.s(user_id), save.s())


# -- helpers (not in the seed) ---------------------------------------------------------------------
class Boom(Exception):
    """The exception of :func:`fail`."""


@app.task(name="tasks.fail")
def fail(*args, message="boom", path=None, **kwargs):
    """Raise ``Boom(message)``; each attempt is recorded in ``path`` if given."""
    _append(path, task="fail", args=list(args))
    raise Boom(message)


@app.task(name="tasks.record")
def record(*args, path=None, tag="record", **kwargs):
    """Append ``{"tag", "args", "kwargs"}`` to ``path``; return ``args[0]`` (or None)."""
    _append(path, task=tag, args=list(args), kwargs=kwargs)
    return args[0] if args else None


@app.task(name="tasks.identity")
def identity(x):
    return x


@app.task(name="tasks.tsum")
def tsum(xs):
    return sum(xs)


@app.task(name="tasks.collect")
def collect(xs):
    """Return the list it was given (shows exactly what a chord body receives)."""
    return list(xs)


@app.task(name="tasks.delayed")
def delayed(x, seconds=0.0):
    """Return ``x`` after ``seconds`` (used to make later group members finish first)."""
    time.sleep(seconds)
    return x


@app.task(name="tasks.whoami", bind=True)
def whoami(self, *args):
    """The bound task's own request: [id, retries, args]."""
    return [self.request.id, self.request.retries, list(self.request.args)]


@app.task(name="tasks.spin")
def spin(seconds):
    """Busy Python loop for up to ``seconds`` (interruptible by a time limit)."""
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
    return n


@app.task(name="tasks.mul")
def mul(x, y):
    return x * y


@app.task(name="tasks.pair")
def pair(x, y=None, z=None):
    return [x, y, z]


@app.task(name="tasks.is_even")
def is_even(x):
    return x % 2 == 0


@app.task(name="tasks.upper")
def upper(s):
    return s.upper()


@app.task(name="tasks.numbers")
def numbers(n):
    return list(range(n))


@app.task(name="tasks.flaky", bind=True)
def flaky(self, succeed_on, path=None):
    """Fails with IOError until attempt ``succeed_on`` (1-based); retries via ``self.retry``."""
    _append(path, task="flaky", attempt=self.request.retries + 1)
    if self.request.retries + 1 < succeed_on:
        raise self.retry(exc=IOError("not yet"), countdown=0)
    return self.request.retries


@app.task(name="tasks.always_ioerror", autoretry_for=(IOError,), max_retries=2,
          default_retry_delay=0)
def always_ioerror(path=None):
    _append(path, task="always_ioerror")
    raise IOError("disk on fire")


@app.task(name="tasks.ioerror_until", bind=True, autoretry_for=(IOError,), max_retries=5,
          default_retry_delay=0)
def ioerror_until(self, n, path=None):
    """Raises IOError on attempts before ``n`` (1-based), then returns the attempt number."""
    _append(path, task="ioerror_until", attempt=self.request.retries + 1)
    if self.request.retries + 1 < n:
        raise IOError("transient")
    return self.request.retries + 1


@app.task(name="tasks.gate")
def gate(path, timeout=30.0):
    """Block until the file ``path`` exists (a test opens the gate); return its name."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"gate {path} was never opened")
        time.sleep(0.005)
    return os.path.basename(path)


@app.task(name="tasks.bound_errback", bind=True)
def bound_errback(self, exc, traceback, path=None):
    _append(path, task="bound_errback", exc_type=type(exc).__name__, exc=str(exc),
            traceback=traceback)


@app.task(name="tasks.plain_errback")
def plain_errback(exc, path=None):
    _append(path, task="plain_errback", exc_type=type(exc).__name__, exc=str(exc))
