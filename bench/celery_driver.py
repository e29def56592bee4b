"""The Celery side of the workloads, run with the Celery venv's python (no nbcanvas, no dask).

``python -m bench.celery_driver --mode redis|eager --sizes JSON --repeat N --out FILE``
writes ``{workload: cell}`` as JSON. ``redis`` needs the Redis server and the prefork worker
that ``bench.celery_side`` started; ``eager`` sets ``task_always_eager`` and runs in process.
``--mode serve`` (same worker) warms up, prints ``ready``, then answers each ``lat N`` line on
stdin with a JSON list of N ``delay().get()`` round trips in ms, until ``quit``: the bench
alternates blocks of these with nbcanvas's (``bench.duel``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from . import Sizes
from .common import Cell, guarded, log, measure, na, p50_ms, split_latency
from .tasks import nested_chords

__all__ = ["run", "serve", "wait_for_worker", "main"]

TIMEOUT = 600.0


def wait_for_worker(app: Any, timeout: float = 60.0) -> None:
    """Until the worker answers a ping (raises ``RuntimeError`` after ``timeout`` s)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if app.control.ping(timeout=1.0):
                return
        except Exception:  # noqa: BLE001 - the broker may not be up yet
            time.sleep(0.5)
    raise RuntimeError(f"the Celery worker did not answer a ping within {timeout:g} s")


def _e2e(build: Callable[[], Any], expect: Any) -> Callable[[], float]:
    def run() -> float:
        t0 = time.perf_counter()
        r = build().delay()
        out = r.get(timeout=TIMEOUT)
        dt = time.perf_counter() - t0
        _release(r)
        if out != expect:
            raise AssertionError(f"wrong result {str(out)[:80]}")
        return dt
    return run


def _release(r: Any) -> None:
    """Forget a result and its parents one by one (Celery recurses through ``.parent`` in
    ``forget()`` and in ``__del__``: a RecursionError past a few hundred chain steps)."""
    nodes = []
    while r is not None:
        nodes.append(r)
        r = getattr(r, "parent", None)
    for n in nodes:
        n.parent = None
    for n in reversed(nodes):
        try:
            n.forget()
        except Exception:  # noqa: BLE001 - eager results have nothing to forget
            pass


def _build(make: Callable[[], Any], repeat: int, note: str) -> Cell:
    def run() -> float:
        t0 = time.perf_counter()
        make()
        return (time.perf_counter() - t0) * 1e3
    return measure(run, repeat, budget=20.0, note=note)


def run(mode: str, s: Sizes, repeat: int) -> dict[str, Cell]:
    """Every workload for Celery in ``mode`` (``redis`` or ``eager``)."""
    from celery import chain, chord, group

    from .celery_app import add, app, dmap, sleep_ms, tsum, upto
    if mode == "eager":
        app.conf.task_always_eager = True
        app.conf.task_eager_propagates = True
    else:
        wait_for_worker(app)
    log(f"  celery {mode}: warm-up")
    # Headers are lists, not generators: Celery's chord is about twice as slow with a
    # generator header (measured here), and the bench gives each system its best form.
    _e2e(lambda: group([add.s(i, i) for i in range(100)]), [2 * i for i in range(100)])()
    _e2e(lambda: chain(add.s(0, 0), *(add.s(1) for _ in range(9))), 9)()
    _e2e(lambda: chord([add.s(i, i) for i in range(50)], tsum.s()), 2450)()
    budget = 20.0
    r: dict[str, Cell] = {}
    r["group"] = guarded("group", lambda: measure(_e2e(
        lambda: group([add.s(i, i) for i in range(s.group)]), [2 * i for i in range(s.group)]),
        repeat, budget))
    r["chain"] = guarded("chain", lambda: measure(_e2e(
        lambda: chain(add.s(0, 0), *(add.s(1) for _ in range(s.chain - 1))), s.chain - 1),
        repeat, budget))
    r["chord"] = guarded("chord", lambda: measure(_e2e(
        lambda: chord([add.s(i, i) for i in range(s.chord)], tsum.s()),
        s.chord * (s.chord - 1)), repeat, budget))

    def latency() -> Cell:
        for i in range(30):
            add.delay(i, 1).get(timeout=TIMEOUT)
        lat = []
        for i in range(s.latency_samples):
            t0 = time.perf_counter()
            if add.delay(i, 1).get(timeout=TIMEOUT) != i + 1:
                raise AssertionError("wrong result")
            lat.append((time.perf_counter() - t0) * 1e3)
        return split_latency(lat)
    r["latency_p50"] = guarded("latency", latency)
    r["latency_p90"] = r["latency_p50"].pop("p90", r["latency_p50"])

    samples = max(2, s.small_group_samples // 3)  # ~0.5 s each: Celery polls every 0.5 s

    def small(n: int) -> Cell:
        one = _e2e(lambda: group([add.s(i, i) for i in range(n)]), [2 * i for i in range(n)])
        return p50_ms(one, samples, "", warm=2)
    r["group1_get"] = guarded("group of 1", lambda: small(1))
    r["group10_get"] = guarded("group of 10", lambda: small(10))

    def foreach() -> Cell:
        from .tasks import FOREACH_ITEMS as n
        one = _e2e(lambda: chain(upto.s(n), dmap.s(add.s(1))), list(range(1, n + 1)))
        return p50_ms(one, samples, f": chain(upto.s({n}), dmap.s(add.s(1))), dmap "
                      f"replacing itself by a group", warm=2)
    r["foreach_get"] = guarded("map over a result", foreach)

    def par_eff() -> Cell:
        ideal = s.par_tasks * s.par_ms / 1000.0 / s.threads
        one = _e2e(lambda: group([sleep_ms.s(s.par_ms, i) for i in range(s.par_tasks)]),
                   list(range(s.par_tasks)))
        c = measure(lambda: ideal / one() * 100.0, repeat, budget)
        c["note"] = (f"ideal {ideal:.2f} s with {s.threads} worker processes" if mode == "redis"
                     else f"ideal {ideal:.2f} s; eager runs one task at a time, in process")
        return c
    r["par_eff"] = guarded("parallel efficiency", par_eff)

    def pipe() -> None:
        sig = add.s(0, 0)
        for _ in range(s.pipe):
            sig = sig | add.s(1)
    r["pipe"] = guarded("sig | x", lambda: _build(pipe, repeat, "quadratic in Celery"))
    r["build"] = guarded("build+freeze", lambda: _build(
        lambda: group([add.s(i, i) for i in range(s.compile)]).freeze(), max(repeat, 5),
        "build + freeze() (Celery has no compile step)"))
    r["nested"] = guarded("nested freeze", lambda: _build(
        lambda: nested_chords(add, tsum, s.nested_depth, s.nested_fanout, chord).freeze(),
        max(repeat, 5), "freeze() (Celery has no compile step)"))
    r["compile"] = na("n/a: no compile step of its own")
    r["render"] = na("n/a: Celery draws no diagrams")
    r["liveview"] = na("n/a: Celery has no live view")
    r["memory"] = na(f"not run: a {s.memory} group through Redis takes minutes" if mode == "redis"
                     else "n/a: eager runs in the client")
    return r


def serve(lines: Any = None, out: Any = None) -> None:
    """Answer ``lat N`` lines with N round trips each (see the module's docstring)."""
    from .celery_app import add, app
    lines = sys.stdin if lines is None else lines
    out = sys.stdout if out is None else out
    wait_for_worker(app)
    for i in range(30):
        add.delay(i, 1).get(timeout=TIMEOUT)
    print("ready", file=out, flush=True)
    for line in lines:
        words = line.split()
        if not words or words[0] != "lat":
            break
        lat = []
        for i in range(int(words[1])):
            t0 = time.perf_counter()
            if add.delay(i, 1).get(timeout=TIMEOUT) != i + 1:
                raise AssertionError("wrong result")
            lat.append((time.perf_counter() - t0) * 1e3)
        print(json.dumps(lat), file=out, flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mode", choices=("redis", "eager", "serve"), required=True)
    ap.add_argument("--sizes", default="{}", help="JSON of bench.Sizes")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", help="the JSON file (redis and eager modes)")
    a = ap.parse_args(argv)
    if a.mode == "serve":
        serve()
        sys.stdout.flush()
        os._exit(0)
    if not a.out:
        ap.error("--out is required in redis and eager modes")
    res = run(a.mode, Sizes.from_dict(json.loads(a.sizes)), a.repeat)
    import celery
    res["_meta"] = {"celery": celery.__version__}  # type: ignore[assignment]
    with open(a.out, "w") as f:
        json.dump(res, f)
    # Skip interpreter teardown: Celery's AsyncResult.__del__ talks to Redis while modules
    # are being torn down and prints tracebacks that mean nothing.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
