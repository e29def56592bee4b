"""Raw dask on the same LocalCluster settings: defaults (worker-saturation 1.1) and tuned (inf).

A group is ``client.map`` + ``gather``; a chain and a chord are one ``client.get`` on a dict of
``dask.task_spec.Task`` (one dask task per step: raw dask has no fusion); latency is
``client.submit(...).result()``. "Build+compile" is building the same ``Task`` dict (raw dask's
whole "compile" step). No throughput run re-uses keys (``pure=False`` / fresh key prefixes).
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from . import Sizes, tasks
from .common import Cell, guarded, log, measure, na, p50_ms, split_latency
from .mem import run_probe

__all__ = ["run_dask", "chain_graph", "chord_graph", "nested_graph"]

TIMEOUT = 600.0  # for single futures


def chain_graph(n: int) -> tuple[dict[str, Any], str]:
    """``add(0, 0)`` then ``add(prev, 1)`` × (n-1), one Task per step; returns (graph, last key)."""
    from dask.task_spec import Task, TaskRef
    p = f"add-{uuid.uuid4().hex}-"
    g: dict[str, Any] = {p + "0": Task(p + "0", tasks.add, 0, 0)}
    for i in range(1, n):
        g[p + str(i)] = Task(p + str(i), tasks.add, TaskRef(p + str(i - 1)), 1)
    return g, p + str(n - 1)


def chord_graph(n: int) -> tuple[dict[str, Any], str]:
    """``n`` × ``add(i, i)`` into one ``tsum``; returns (graph, body key)."""
    from dask.task_spec import List, Task, TaskRef
    p = uuid.uuid4().hex
    g: dict[str, Any] = {f"add-{p}-{i}": Task(f"add-{p}-{i}", tasks.add, i, i) for i in range(n)}
    body = f"tsum-{p}"
    g[body] = Task(body, tasks.tsum, List(*(TaskRef(k) for k in list(g))))
    return g, body


def nested_graph(depth: int, fanout: int) -> tuple[dict[str, Any], str]:
    """The nested-chord shape of ``bench.nb.nested_chords`` as one Task dict."""
    from dask.task_spec import List, Task, TaskRef
    p = uuid.uuid4().hex
    g: dict[str, Any] = {}
    counter = iter(range(10**9))

    def node(d: int) -> str:
        k = f"n-{p}-{next(counter)}"
        if d == 0:
            g[k] = Task(k, tasks.add, 1, 1)
        else:
            g[k] = Task(k, tasks.tsum, List(*(TaskRef(node(d - 1)) for _ in range(fanout))))
        return k
    return g, node(depth)


def _wait_gather(client: Any, futs: Any) -> Any:
    return client.gather(futs)


def _group(client: Any, n: int) -> Callable[[], float]:
    def run() -> float:
        t0 = time.perf_counter()
        futs = client.map(tasks.add, range(n), range(n), pure=False)
        out = _wait_gather(client, futs)
        dt = time.perf_counter() - t0
        if out != [2 * i for i in range(n)]:
            raise AssertionError("wrong result")
        del futs
        return dt
    return run


def _graph_run(client: Any, make: Callable[[], tuple[dict[str, Any], str]],
               expect: Any) -> Callable[[], float]:
    def run() -> float:
        t0 = time.perf_counter()
        g, key = make()
        (fut,) = client.get(g, [key], sync=False)
        out = _wait_gather(client, [fut])[0]
        dt = time.perf_counter() - t0
        if out != expect:
            raise AssertionError(f"wrong result {out}")
        del fut
        return dt
    return run


def _latency(client: Any, s: Sizes) -> Cell:
    for i in range(30):
        client.submit(tasks.add, i, 1, pure=False).result()
    lat = []
    for i in range(s.latency_samples):
        t0 = time.perf_counter()
        v = client.submit(tasks.add, i, 1, pure=False).result(timeout=TIMEOUT)
        lat.append((time.perf_counter() - t0) * 1e3)
        if v != i + 1:
            raise AssertionError("wrong result")
    return split_latency(lat)


def _small_group(client: Any, s: Sizes, n: int) -> Cell:
    return p50_ms(_group(client, n), s.small_group_samples, ", map+gather")


def _map_over_result(client: Any, s: Sizes) -> Cell:
    """``upto(10)``, then a task that maps ``add`` over it from the worker (``map_add``)."""
    n = tasks.FOREACH_ITEMS

    def run() -> float:
        t0 = time.perf_counter()
        items = client.submit(tasks.upto, n, pure=False)
        v = client.submit(tasks.map_add, items, 1, pure=False).result(timeout=TIMEOUT)
        dt = time.perf_counter() - t0
        if v != list(range(1, n + 1)):
            raise AssertionError("wrong result")
        return dt
    return p50_ms(run, s.small_group_samples, ": submit(upto), then a task that maps add over "
                  "it with worker_client (tasks launching tasks)")


def _par_eff(client: Any, s: Sizes, repeat: int) -> Cell:
    ideal = s.par_tasks * s.par_ms / 1000.0 / s.threads

    def run() -> float:
        t0 = time.perf_counter()
        futs = client.map(tasks.sleep_ms, [s.par_ms] * s.par_tasks, range(s.par_tasks),
                          pure=False)
        _wait_gather(client, futs)
        return ideal / (time.perf_counter() - t0) * 100.0
    c = measure(run, repeat)
    c["note"] = f"ideal {ideal:.2f} s with {s.threads} threads"
    return c


def _build(make: Callable[[], Any], repeat: int, note: str) -> Cell:
    def run() -> float:
        t0 = time.perf_counter()
        make()
        return (time.perf_counter() - t0) * 1e3
    return measure(run, max(repeat, 5), note=note)


def _compile_group(n: int) -> dict[str, Any]:
    from dask.task_spec import Task
    p = uuid.uuid4().hex
    return {f"add-{p}-{i}": Task(f"add-{p}-{i}", tasks.add, i, i) for i in range(n)}


def workloads(client: Any, s: Sizes, repeat: int, tuned: bool) -> dict[str, Cell]:
    """Every row for raw dask on ``client``'s cluster."""
    log("  warm-up")
    _group(client, 200)()
    _graph_run(client, lambda: chain_graph(20), 19)()
    _graph_run(client, lambda: chord_graph(100), 9900)()
    budget = 20.0  # seconds of runs per workload (dask defaults: 15 s per 10k group here)
    r: dict[str, Cell] = {}
    r["group"] = guarded("group", lambda: measure(_group(client, s.group), repeat, budget,
                                                  note="client.map + gather"))
    r["chain"] = guarded("chain", lambda: measure(
        _graph_run(client, lambda: chain_graph(s.chain), s.chain - 1), repeat, budget,
        note="client.get, one Task per step"))
    r["chord"] = guarded("chord", lambda: measure(
        _graph_run(client, lambda: chord_graph(s.chord), s.chord * (s.chord - 1)), repeat,
        budget, note="client.get"))
    r["latency_p50"] = guarded("latency", lambda: _latency(client, s))
    r["latency_p90"] = r["latency_p50"].pop("p90", r["latency_p50"])
    r["group1_get"] = guarded("group of 1", lambda: _small_group(client, s, 1))
    r["group10_get"] = guarded("group of 10", lambda: _small_group(client, s, 10))
    r["foreach_get"] = guarded("map over a result", lambda: _map_over_result(client, s))
    r["par_eff"] = guarded("parallel efficiency", lambda: _par_eff(client, s, repeat))
    r["pipe"] = na("n/a: no `|` in raw dask")
    r["build"] = guarded("build graph", lambda: _build(
        lambda: _compile_group(s.compile), repeat, "building the Task dict"))
    r["nested"] = guarded("nested graph", lambda: _build(
        lambda: nested_graph(s.nested_depth, s.nested_fanout), repeat,
        "building the Task dict"))
    r["compile"] = na("n/a: no compile step of its own")
    r["render"] = na("n/a")
    r["liveview"] = na("n/a")
    if tuned:
        r["memory"] = guarded("memory", lambda: run_probe("dask", client.scheduler.address,
                                                          s.memory))
    else:
        r["memory"] = na("not run: with worker-saturation 1.1 a 100k group takes minutes")
    return r


def run_dask(tuned: bool, s: Sizes, repeat: int) -> dict[str, Cell]:
    """Raw dask with ``worker-saturation`` inf (``tuned``) or dask's default 1.1."""
    from .clusters import local_cluster
    with local_cluster("inf" if tuned else 1.1) as client:
        return workloads(client, s, repeat, tuned)
