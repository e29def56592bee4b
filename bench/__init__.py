"""Benchmarks: nbcanvas vs raw dask vs Celery+Redis vs Celery eager, in one run, one table.

``python -m bench [--quick] [--only nbcanvas,dask,celery,kill] [--repeat N]`` (or ``make bench``).
This package is imported by the Celery worker and driver too, which run in their own venv
(``bench/.celery-venv``) without nbcanvas or dask: this module and ``bench.tasks``,
``bench.common``, ``bench.celery_app`` and ``bench.celery_driver`` use the standard library
(and Celery) only.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["Sizes", "Workload", "SYSTEMS", "SYSTEM_LABELS", "workloads", "TARGETS"]

#: Columns of the table, in order.
SYSTEMS: tuple[str, ...] = ("nbcanvas-embedded", "nbcanvas-threads", "nbcanvas-localcluster",
                            "dask-defaults", "dask-tuned", "celery-redis", "celery-eager")
SYSTEM_LABELS: dict[str, str] = {
    "nbcanvas-embedded": "nbcanvas embedded", "nbcanvas-threads": "nbcanvas embedded, threads",
    "nbcanvas-localcluster": "nbcanvas LocalCluster",
    "dask-defaults": "dask defaults", "dask-tuned": "dask tuned", "celery-redis": "Celery+Redis",
    "celery-eager": "Celery eager"}


@dataclass(frozen=True)
class Sizes:
    """Workload sizes: ``Sizes.full()`` are those of issue 11, ``Sizes.quick()`` for tests."""

    group: int = 10_000            # trivial tasks
    chain: int = 1_000             # steps
    chord: int = 5_000             # header tasks -> 1 body
    latency_samples: int = 300     # delay().get() samples after warm-up (>= 200)
    duel_blocks: int = 12          # nbcanvas vs Celery round trips: alternating blocks each
    small_group_samples: int = 30  # .get() of a group of 1 and of 10
    par_tasks: int = 200           # tasks of par_ms each, for parallel efficiency
    par_ms: float = 10.0
    threads: int = 2               # worker threads everywhere (2 processes x 1 thread)
    pipe: int = 2_000              # sig = sig | add.s(1), this many times
    compile: int = 10_000          # build + compile of a group of this many
    nested_depth: int = 6          # nested chords: depth and fan-out
    nested_fanout: int = 3
    render: int = 10_000           # g.graph().pipe(format="svg")
    liveview: int = 10_000
    # pairs of runs with and without the view. The view costs 2-3 % here, and a pair's ratio
    # spreads with a standard deviation of 7-12 points on this shared machine: the median of 41
    # pairs moved by several points between measurements of the same code (threads,
    # 2026-12-04: 5.07, 2.76, 2.93, 2.13 in a row, 7.88 in a full run); 121 pairs gave 1.77 and
    # 3.36 (a standard error of about 1.2 points against 2), about 2 minutes per column
    liveview_pairs: int = 121
    memory: int = 100_000          # client RSS growth for build + delay + get
    kill_tasks: int = 1_000        # worker killed mid-group: tasks of kill_ms, runs
    kill_ms: float = 50.0
    kill_runs: int = 20
    quick: bool = False

    @classmethod
    def full(cls) -> Sizes:
        return cls()

    @classmethod
    def quick_sizes(cls) -> Sizes:
        return cls(group=200, chain=20, chord=100, latency_samples=20, duel_blocks=2,
                   small_group_samples=4,
                   par_tasks=20, pipe=50, compile=200, nested_depth=3, nested_fanout=2,
                   render=200, liveview=200, liveview_pairs=11, memory=2_000, kill_tasks=40,
                   kill_runs=2,
                   quick=True)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sizes:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class Workload:
    """One row of the table: ``target`` is nbcanvas's target from issue 11 (None: no target)."""

    key: str
    label: str
    unit: str
    target: float | None = None
    higher_is_better: bool = False

    def passes(self, value: float | None) -> bool | None:
        """Whether ``value`` meets the target (None when there is no target or no value)."""
        if self.target is None or value is None:
            return None
        return value >= self.target if self.higher_is_better else value <= self.target

    def target_text(self) -> str:
        if self.target is None:
            return ""
        return f"{'≥' if self.higher_is_better else '≤'} {self.target:g}"


#: Targets of issue 11 (2-core machine, full sizes).
TARGETS: dict[str, float] = {
    "group": 1.0, "chain": 0.3, "chord": 0.6, "latency_p50": 1.5, "group1_get": 5.0,
    "group10_get": 5.0, "par_eff": 90.0, "pipe": 30.0, "compile": 50.0, "render": 0.3,
    "liveview": 5.0, "memory": 300.0}


def _n(x: int) -> str:
    return f"{x // 1000}k" if x >= 1000 and x % 1000 == 0 else str(x)


def workloads(s: Sizes, kill: bool = False) -> list[Workload]:
    """The rows for sizes ``s`` (plus the worker-kill row when ``kill``)."""
    t = TARGETS
    rows = [
        Workload("group", f"group {_n(s.group)}", "s", t["group"]),
        Workload("chain", f"chain {_n(s.chain)}", "s", t["chain"]),
        Workload("chord", f"chord {_n(s.chord)}→1", "s", t["chord"]),
        Workload("latency_p50", "delay().get() p50", "ms", t["latency_p50"]),
        Workload("latency_p90", "delay().get() p90", "ms"),
        Workload("latency_nb_p50", "delay().get() p50, task defined in the notebook", "ms"),
        Workload("duel_p50", "delay().get() p50, alternating with Celery", "ms"),
        Workload("duel_p90", "delay().get() p90, alternating with Celery", "ms"),
        Workload("group1_get", "group of 1 .get()", "ms", t["group1_get"]),
        Workload("group10_get", "group of 10 .get()", "ms", t["group10_get"]),
        Workload("foreach_get", "map over a result (10 items) .get()", "ms"),
        Workload("par_eff", f"parallel efficiency {s.par_tasks}×{s.par_ms:g} ms", "%",
                 t["par_eff"], higher_is_better=True),
        Workload("pipe", f"sig | add.s(1) ×{s.pipe} (build)", "ms", t["pipe"]),
        Workload("build", f"build+compile {_n(s.compile)} group", "ms", t["compile"]),
        Workload("compile", f"compile {_n(s.compile)} group (`compile_canvas`)", "ms",
                 t["compile"]),
        Workload("nested", f"compile nested chords depth {s.nested_depth}×{s.nested_fanout}",
                 "ms"),
        Workload("render", f"render {_n(s.render)} group (SVG)", "s", t["render"]),
        Workload("liveview", f"live-view overhead {_n(s.liveview)} group", "%", t["liveview"]),
        Workload("memory", f"client RSS growth, {_n(s.memory)} group", "MB", t["memory"]),
    ]
    if kill:
        label = f"worker SIGKILL mid {_n(s.kill_tasks)}×{s.kill_ms:g} ms group"
        rows.append(Workload("kill", label,
                             f"runs ok of {s.kill_runs}", float(s.kill_runs),
                             higher_is_better=True))
    return rows
