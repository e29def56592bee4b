"""nbcanvas workloads, on the embedded cluster (tuned streams) and on a user's LocalCluster.

Every throughput workload is timed end to end as a user sees it: build the canvas, ``delay()``,
``.get()``; results are checked, then ``forget()`` (untimed) frees them on the cluster.
"""
from __future__ import annotations

import gc
import os
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

from . import Sizes
from .common import Cell, cell, guarded, log, measure, na, p50_ms, percentile, split_latency
from .mem import run_probe
from .tasks import nested_chords

__all__ = ["NbTasks", "on_embedded", "run_nbcanvas", "live_view_overhead", "GET_TIMEOUT",
           "notebook_task"]

GET_TIMEOUT = 300.0  # a hang shows up as an error cell, not a stuck bench


class NbTasks:
    """The bench's tasks registered on one nbcanvas ``App``."""

    def __init__(self, name: str, client: Any = None) -> None:
        import nbcanvas as nc

        from . import tasks
        self.nc = nc
        self.app = nc.App(name, client=client, set_as_current=False)
        self.add = self.app.task(tasks.add, name="bench.add")
        self.tsum = self.app.task(tasks.tsum, name="bench.tsum")
        self.sleep = self.app.task(tasks.sleep_ms, name="bench.sleep_ms")
        self.upto = self.app.task(tasks.upto, name="bench.upto")


def _run_get(sig: Any, expect: Any) -> float:
    """Seconds for ``sig.delay().get()``; checks the result, then forgets it (untimed)."""
    t0 = time.perf_counter()
    r = sig.delay()
    out = r.get(timeout=GET_TIMEOUT)
    dt = time.perf_counter() - t0
    try:
        if out != expect:
            raise AssertionError(f"wrong result: {str(out)[:80]} != {str(expect)[:80]}")
    finally:
        r.forget()
    return dt


def _e2e(build: Callable[[], Any], expect: Any) -> Callable[[], float]:
    """A run that times build + delay + get."""
    def run() -> float:
        t0 = time.perf_counter()
        sig = build()
        return (time.perf_counter() - t0) + _run_get(sig, expect)
    return run


def live_view_overhead(t: NbTasks, s: Sizes, repeat: int) -> Cell:
    """Live-view overhead on a group: % longer build + delay + get with a live view attached.

    The view is ``nbcanvas.widgets.live_view(result)`` made right after ``delay()`` (widgets,
    SVG diagram and progress bars redrawn from the event store by its pacer thread, as in a
    kernel with no frontend attached). Runs come in pairs, one with the view and one without,
    the pair's order swapping each time; the value is the median over the pairs of
    ``with / without − 1``. On a shared machine the background load comes and goes in bursts
    that can double a run's time: the two runs of a pair see about the same load, so their
    ratio cancels it, and the median drops the pairs a burst split. While nbcanvas has no live
    view this is n/a.
    """
    try:
        from nbcanvas.widgets import live_view
    except ImportError as e:
        return na(f"n/a: nbcanvas has no live view yet ({e}); bench.nb.live_view_overhead "
                  f"measures nbcanvas.widgets.live_view(result)")
    expect = [2 * i for i in range(s.liveview)]
    renders: list[int] = []
    cpu: list[float] = []  # the view's own CPU while the group ran, as a share of the run

    def run(view: bool) -> float:
        gc.collect()  # no run pays for the garbage of the one before it
        t0 = time.perf_counter()
        r = t.nc.group(t.add.s(i, i) for i in range(s.liveview)).delay()
        c0 = time.thread_time()
        lv = live_view(r) if view else None
        made = time.thread_time() - c0
        out = r.get(timeout=GET_TIMEOUT)
        dt = time.perf_counter() - t0
        if lv is not None:
            cpu.append((made + lv._pacer.cpu) / dt * 100.0)
            lv.wait(10)
            renders.append(lv.svg_renders)
            lv.close()
        r.forget()
        if out != expect:
            raise AssertionError("wrong result")
        return dt
    try:
        run(True)  # warm-up, and: does the live view work here?
    except Exception as e:  # noqa: BLE001
        return na(f"n/a: live_view(result) failed: {type(e).__name__}: {str(e)[:160]}")
    plain, viewed = [], []
    for i in range(max(repeat, s.liveview_pairs)):
        if i % 2:
            viewed.append(run(True))
            plain.append(run(False))
        else:
            plain.append(run(False))
            viewed.append(run(True))
    ratios = [(v / p - 1.0) * 100.0 for v, p in zip(viewed, plain, strict=True)]
    return cell(statistics.median(ratios), ratios,
                f"median of {len(ratios)} pairs (with / without the view − 1); medians "
                f"{statistics.median(viewed):.3f} s with, {statistics.median(plain):.3f} s "
                f"without, best {min(viewed):.3f} / {min(plain):.3f} s; SVG renders per view: "
                f"{statistics.median(renders):.0f}; the view's own CPU in the kernel while the "
                f"group ran (making it, and its redraws): {statistics.median(cpu):.2f} % of "
                f"the run (median)")


def _render(t: NbTasks, s: Sizes, repeat: int) -> Cell:
    g = t.nc.group(t.add.s(i, i) for i in range(s.render))

    def run() -> float:
        t0 = time.perf_counter()
        svg = g.graph().pipe(format="svg")
        dt = time.perf_counter() - t0
        if not svg:
            raise AssertionError("empty SVG")
        return dt
    try:
        run()  # warm-up (and: does the diagrams module work yet?)
    except Exception as e:  # noqa: BLE001
        return na(f"n/a: g.graph() failed: {type(e).__name__}: {str(e)[:160]}")
    return measure(run, repeat)


#: nbcanvas and raw dask latency samples alternate in blocks of this many: sample by sample,
#: each system's sample paid for the other's clean-up messages (about 0.1-0.2 ms here)
LATENCY_BLOCK = 25


def notebook_task(t: NbTasks) -> Any:
    """``add`` as a notebook defines it: a function of ``__main__``, which workers in other
    processes get by value (cloudpickle) with every task, as notebook code is sent."""
    space: dict[str, Any] = {"__name__": "__main__"}
    exec("def add(x, y):\n    return x + y\n", space)
    return t.app.task(space["add"], name="bench.add_notebook")


def _latency(t: NbTasks, s: Sizes, client: Any) -> Cell:
    """p50/p90 of ``add.delay(i, 1).get()``; the note gives raw dask's on the same client.
    Blocks of a task defined in a notebook alternate with them (the ``"nb"`` cell)."""
    from . import tasks
    nb_add = notebook_task(t)
    for i in range(30):  # warm-up
        t.add.delay(i, 1).get(timeout=GET_TIMEOUT)
        nb_add.delay(i, 1).get(timeout=GET_TIMEOUT)
        client.submit(tasks.add, i, 1, pure=False).result()
    lat: list[float] = []
    raw: list[float] = []
    nb: list[float] = []
    while len(lat) < s.latency_samples:
        for task, into in ((t.add, lat), (nb_add, nb)):
            for i in range(LATENCY_BLOCK):
                t0 = time.perf_counter()
                v = task.delay(i, 1).get(timeout=GET_TIMEOUT)
                into.append((time.perf_counter() - t0) * 1e3)
                if v != i + 1:
                    raise AssertionError(f"wrong result {v}")
        for i in range(LATENCY_BLOCK):
            t0 = time.perf_counter()
            client.submit(tasks.add, i, 1, pure=False).result(timeout=GET_TIMEOUT)
            raw.append((time.perf_counter() - t0) * 1e3)
    c = split_latency(lat)
    for x, p in ((c, 50), (c["p90"], 90)):
        x["note"] += (f" (blocks of {LATENCY_BLOCK} alternating with raw dask and with a "
                      f"notebook's task); raw dask submit().result() on the same client: "
                      f"{percentile(raw, p):.2f} ms")
    c["nb"] = cell(percentile(nb, 50), (), f"{len(nb)} samples after warm-up, in blocks of "
                   f"{LATENCY_BLOCK} alternating with the plain task's; the function is "
                   f"__main__'s, sent by value")
    return c


def _small_group(t: NbTasks, s: Sizes, n: int) -> Cell:
    def one() -> float:
        t0 = time.perf_counter()
        out = t.nc.group(t.add.s(i, i) for i in range(n)).delay().get(timeout=GET_TIMEOUT)
        dt = time.perf_counter() - t0
        if out != [2 * i for i in range(n)]:
            raise AssertionError("wrong result")
        return dt
    return p50_ms(one, s.small_group_samples, ", build+delay+get")


def _foreach(t: NbTasks, s: Sizes) -> Cell:
    """``chain(upto.s(10), foreach(add.s(1)))``: a fan-out decided at run time."""
    from .tasks import FOREACH_ITEMS as n
    one = _e2e(lambda: t.nc.chain(t.upto.s(n), t.nc.foreach(t.add.s(1))), list(range(1, n + 1)))
    return p50_ms(one, s.small_group_samples,
                  f": chain(upto.s({n}), foreach(add.s(1))), build+delay+get")


def _par_eff(t: NbTasks, s: Sizes, repeat: int) -> Cell:
    ideal = s.par_tasks * s.par_ms / 1000.0 / s.threads
    run = _e2e(lambda: t.nc.group(t.sleep.s(s.par_ms, i) for i in range(s.par_tasks)),
               list(range(s.par_tasks)))
    c = measure(lambda: ideal / run() * 100.0, repeat)
    c["note"] = f"ideal {ideal:.2f} s with {s.threads} threads"
    return c


def _pipe(t: NbTasks, s: Sizes, repeat: int) -> Cell:
    def run() -> float:
        t0 = time.perf_counter()
        sig = t.add.s(0, 0)
        for _ in range(s.pipe):
            sig = sig | t.add.s(1)
        return (time.perf_counter() - t0) * 1e3
    return measure(run, repeat)


def _compile(t: NbTasks, s: Sizes, repeat: int) -> Cell:
    """Build + freeze + compile of a group; the note splits the median into the three."""
    from nbcanvas.compile import compile_canvas
    parts: list[tuple[float, float, float]] = []

    def run() -> float:
        t0 = time.perf_counter()
        g = t.nc.group(t.add.s(i, i) for i in range(s.compile))
        t1 = time.perf_counter()
        f = g.freeze()
        t2 = time.perf_counter()
        compile_canvas(f, uuid.uuid4().hex, parallelism=2)
        t3 = time.perf_counter()
        parts.append(((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3))
        return (t3 - t0) * 1e3
    c = measure(run, max(repeat, 5))
    b, f, k = (statistics.median(x[i] for x in parts) for i in range(3))
    c["note"] = f"medians: build {b:.0f} + freeze {f:.0f} + compile_canvas {k:.0f} ms"
    return c


def _compile_only(t: NbTasks, s: Sizes, repeat: int) -> Cell:
    """``compile_canvas`` of a frozen group alone (issue 11's "compile 10k" target, which the
    build+compile row is held to as well)."""
    from nbcanvas.compile import compile_canvas
    f = t.nc.group(t.add.s(i, i) for i in range(s.compile)).freeze()

    def run() -> float:
        t0 = time.perf_counter()
        compile_canvas(f, uuid.uuid4().hex, parallelism=2)
        return (time.perf_counter() - t0) * 1e3
    return measure(run, max(repeat, 5))


def _nested(t: NbTasks, s: Sizes, repeat: int) -> Cell:
    from nbcanvas.compile import compile_canvas
    sig = nested_chords(t.add, t.tsum, s.nested_depth, s.nested_fanout, t.nc.chord)

    def run() -> float:
        t0 = time.perf_counter()
        compile_canvas(sig.freeze(), uuid.uuid4().hex, parallelism=2)
        return (time.perf_counter() - t0) * 1e3
    c = measure(run, max(repeat, 5))
    c["note"] = (f"freeze+compile; {sum(s.nested_fanout ** d for d in range(s.nested_depth))} "
                 f"chords, {s.nested_fanout ** s.nested_depth} leaves")
    return c


def workloads(t: NbTasks, s: Sizes, repeat: int, client: Any) -> dict[str, Cell]:
    """Every row for one nbcanvas system (``client``: its cluster's client)."""
    from nbcanvas.cluster import scheduler_address
    nc, add, tsum = t.nc, t.add, t.tsum
    log("  warm-up")
    _run_get(nc.group(add.s(i, i) for i in range(200)), [2 * i for i in range(200)])
    _run_get(nc.chain(add.s(0, 0), *(add.s(1) for _ in range(19))), 19)
    _run_get(nc.chord((add.s(i, i) for i in range(100)), tsum.s()), 9900)
    gc.collect()
    r: dict[str, Cell] = {}
    r["group"] = guarded("group", lambda: measure(_e2e(
        lambda: nc.group(add.s(i, i) for i in range(s.group)),
        [2 * i for i in range(s.group)]), repeat))
    r["chain"] = guarded("chain", lambda: measure(_e2e(
        lambda: nc.chain(add.s(0, 0), *(add.s(1) for _ in range(s.chain - 1))),
        s.chain - 1), repeat))
    r["chord"] = guarded("chord", lambda: measure(_e2e(
        lambda: nc.chord((add.s(i, i) for i in range(s.chord)), tsum.s()),
        s.chord * (s.chord - 1)), repeat))
    r["latency_p50"] = guarded("latency", lambda: _latency(t, s, client))
    r["latency_p90"] = r["latency_p50"].pop("p90", r["latency_p50"])
    r["latency_nb_p50"] = r["latency_p50"].pop("nb", r["latency_p50"])
    r["group1_get"] = guarded("group of 1", lambda: _small_group(t, s, 1))
    r["group10_get"] = guarded("group of 10", lambda: _small_group(t, s, 10))
    r["foreach_get"] = guarded("map over a result", lambda: _foreach(t, s))
    r["par_eff"] = guarded("parallel efficiency", lambda: _par_eff(t, s, repeat))
    r["pipe"] = guarded("sig | x", lambda: _pipe(t, s, repeat))
    r["build"] = guarded("build+compile", lambda: _compile(t, s, repeat))
    r["compile"] = guarded("compile", lambda: _compile_only(t, s, repeat))
    r["nested"] = guarded("nested chords", lambda: _nested(t, s, repeat))
    r["render"] = guarded("render", lambda: _render(t, s, repeat))
    r["liveview"] = guarded("live view", lambda: live_view_overhead(t, s, repeat))
    r["memory"] = guarded("memory", lambda: run_probe("nbcanvas", scheduler_address(client),
                                                      s.memory))
    return r


def on_embedded(name: str, pool: str = "processes") -> tuple[NbTasks, Any]:
    """The bench's tasks on nbcanvas's embedded cluster (started, workers up; ``pool`` as
    ``nbcanvas.embedded.pool``) and its connection; ``nbcanvas.cluster.close_embedded()``
    stops it."""
    import dask

    from nbcanvas import cluster as ncl
    os.environ.pop("DASK_SCHEDULER_ADDRESS", None)
    t = NbTasks(name)
    with dask.config.set({"nbcanvas.embedded.pool": pool}):
        conn = ncl.connection(t.app)
    if not conn.embedded:
        raise RuntimeError("nbcanvas did not use its embedded cluster (a current Client "
                           "or a scheduler address is set)")
    conn.client.wait_for_workers(conn.nthreads, timeout=60)
    return t, conn


def run_nbcanvas(kind: str, s: Sizes, repeat: int) -> dict[str, Cell]:
    """``kind``: ``"embedded"`` (nbcanvas's own cluster, tuned), ``"threads"`` (the same with
    ``nbcanvas.embedded.pool: threads``) or ``"localcluster"``."""
    if kind in ("embedded", "threads"):
        from nbcanvas import cluster as ncl

        from .clusters import quiet_distributed
        quiet_distributed()
        try:
            pool = "threads" if kind == "threads" else "processes"
            t, conn = on_embedded(f"bench-{kind}", pool)
            log(f"nbcanvas embedded cluster ({pool}) at {conn.address} "
                f"({conn.nthreads} worker threads)")
            return workloads(t, s, repeat, conn.client)
        finally:
            ncl.close_embedded()
    from .clusters import local_cluster
    with local_cluster("inf") as client:
        t = NbTasks("bench-localcluster", client=client)
        return workloads(t, s, repeat, client)
