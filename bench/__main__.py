"""``python -m bench [--quick] [--only nbcanvas,dask,celery,duel,kill] [--repeat N]``.

Runs the systems one after the other (each on its own cluster, closed before the next starts:
the machine has 2 cores), each nbcanvas and dask column in a fresh Python process of its own
(``--one``: the same interpreter state for every column, whatever ran before; a process that
has run other workloads builds a canvas 25-30 % slower, see docs/performance.md), prints the
table, writes ``bench/results/<timestamp>.json``, and for a full run of nbcanvas, dask and
Celery also ``bench/results/latest.json`` and the README table.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from . import SYSTEM_LABELS, Sizes
from .common import ROOT, Cell, install_signal_handlers, log, na
from .report import build_report, markdown_table, text_table, update_readme, write_json

__all__ = ["main", "run_all", "readme_section", "GROUPS"]

#: ``--only`` names and the columns each fills.
GROUPS: dict[str, tuple[str, ...]] = {
    "nbcanvas": ("nbcanvas-embedded", "nbcanvas-threads", "nbcanvas-localcluster"),
    "dask": ("dask-defaults", "dask-tuned"),
    "celery": ("celery-redis", "celery-eager"),
    "duel": ("nbcanvas-embedded", "nbcanvas-threads", "celery-redis"),
    "kill": (),
}
DEFAULT_ONLY = ("nbcanvas", "dask", "celery", "duel")


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for mod in ("dask", "distributed", "nbcanvas"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            out[mod] = "?"
    return out


def _one(system: str, s: Sizes, repeat: int) -> dict[str, Cell]:
    """One column, measured in a fresh Python process (``python -m bench --one``)."""
    import json
    import tempfile

    from .common import Procs
    with tempfile.TemporaryDirectory() as tmp, Procs() as procs:
        out = Path(tmp) / "cells.json"
        p = procs.start(f"the {SYSTEM_LABELS[system]} column", [
            sys.executable, "-m", "bench", "--one", system, "--out", str(out),
            "--repeat", str(repeat), *(["--quick"] if s.quick else [])], cwd=ROOT)
        code = p.wait()
        if code != 0 or not out.exists():
            return {"_error": na(f"error: its process exited with {code} and no results")}
        return json.loads(out.read_text())


def _one_here(system: str, s: Sizes, repeat: int) -> dict[str, Cell]:
    log(f"== {SYSTEM_LABELS[system]}")
    t0 = time.perf_counter()
    try:
        if system.startswith("nbcanvas"):
            from .nb import run_nbcanvas
            return run_nbcanvas(system.split("-", 1)[1], s, repeat)
        from .rawdask import run_dask
        return run_dask(system == "dask-tuned", s, repeat)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - one system failing must not lose the others
        import traceback
        traceback.print_exc()
        return {"_error": na(f"error: {type(e).__name__}: {str(e)[:300]}")}
    finally:
        log(f"== {SYSTEM_LABELS[system]} done in {time.perf_counter() - t0:.0f} s")


def run_all(only: tuple[str, ...], s: Sizes, repeat: int) -> tuple[dict[str, dict[str, Cell]],
                                                                   dict[str, Any]]:
    """Results by system, and extra meta (Celery's version)."""
    results: dict[str, dict[str, Cell]] = {}
    extra: dict[str, Any] = {}
    for group in ("nbcanvas", "dask"):
        if group in only:
            for system in GROUPS[group]:
                results[system] = _one(system, s, repeat)
    if "celery" in only:
        from .celery_side import run_celery
        log("== Celery+Redis and Celery eager")
        t0 = time.perf_counter()
        for system, cells in run_celery(s, repeat).items():
            meta = cells.pop("_meta", None)
            if isinstance(meta, dict):
                extra.update(meta)
            results[system] = cells
        log(f"== Celery done in {time.perf_counter() - t0:.0f} s")
    if "duel" in only:
        from .duel import run_duel
        log("== nbcanvas embedded and Celery+Redis round trips, alternating")
        t0 = time.perf_counter()
        for system, cells in run_duel(s).items():
            results.setdefault(system, {}).update(cells)
        log(f"== alternating round trips done in {time.perf_counter() - t0:.0f} s")
    if "kill" in only:
        from .kill import run_kill
        log("== worker kill (issue 12.1)")
        try:
            cell = run_kill(s)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # noqa: BLE001
            cell = na(f"error: {type(e).__name__}: {e}")
        results.setdefault("nbcanvas-localcluster", {})["kill"] = cell
    return results, extra


_INTRO = (
    "`make bench` (or `python -m bench [--quick] [--only nbcanvas,dask,celery,duel,kill] "
    "[--repeat N]`) runs the same workloads, trivial tasks unless said, on nbcanvas, raw dask "
    "and Celery, one system after the other on the same machine (each nbcanvas and dask column "
    "in a fresh Python process, Celery in its own), and prints this table. "
    "Columns: **nbcanvas embedded** is nbcanvas's own cluster (2 worker processes × 1 thread, "
    "`worker-saturation: inf`, its streams writing at once (no batching delay or coroutine), "
    "its client talking to the "
    "scheduler in memory, its worker processes over `nbtcp://`, event loops on uvloop); "
    "**nbcanvas embedded, threads** is the same "
    "cluster with `nbcanvas.embedded.pool: threads` (its 2 workers are threads in the "
    "benchmark's process, reaching the scheduler in memory too); **nbcanvas LocalCluster** is "
    "a cluster of "
    "the same shape made by the user and passed with `App(client=...)`; **dask** is "
    "`client.map`/`client.get` on a dict of `dask.task_spec.Task` on the same cluster, with "
    "dask's defaults (`worker-saturation: 1.1`) and tuned (`inf`); **Celery+Redis** is a "
    "prefork worker, concurrency 2, Redis as broker and result backend; **Celery eager** is "
    "`task_always_eager=True`. Throughput rows are build + `delay()` + `.get()`, median of "
    "{repeat} runs; latencies are p50/p90 of at least 200 samples after a warm-up; *target* is "
    "nbcanvas's target from issue 11, *pass* is for nbcanvas embedded / threads / LocalCluster. "
    "`n/a`: "
    "no equivalent; `—`: not run; `err`: failed (the reason is listed under the table). Full "
    "numbers, runs and notes: `bench/results/latest.json`.")
_ROWS = (
    "Rows: *alternating with Celery* is the single-task round trip measured with nbcanvas's "
    "embedded cluster and Celery+Redis running side by side, in blocks of 25 that alternate "
    "between the two (`bench/duel.py`), so both see the same machine; there is a round for each "
    "pool, and Celery's cell is from the round against worker processes (the JSON note of the "
    "threads cell gives Celery's from its round). The plain latency rows measure each system "
    "on its own, minutes apart; *task defined in the notebook* is that round trip for an `add` "
    "defined in `__main__`, as a notebook defines it, which worker processes get by value "
    "(cloudpickle) with every task while the plain rows' `add` is imported by name (the "
    "threads pool gets either as itself), in blocks alternating with the plain task's. "
    "*build+compile* is building the group, "
    "`freeze()` and "
    "`nbcanvas.compile.compile_canvas(..., parallelism=2)` (the JSON note splits the three; for "
    "dask it is building the `Task` dict, for Celery build + `freeze()`); *nested chords* is a "
    "chord whose header holds 3 chords, 6 levels deep (364 chords, 729 tasks); *map over a "
    "result* is a step that returns a list of 10 and a step that maps `add` over it, a fan-out "
    "decided at run time: `chain(upto.s(10), nc.foreach(add.s(1)))`, for dask a task that "
    "launches tasks (`worker_client().map`, then `gather`), for Celery a task that replaces "
    "itself with a group (`self.replace(group(...))`); *parallel "
    "efficiency* is ideal time (tasks × 10 ms / 2 workers) over actual; *client RSS growth* is "
    "the peak RSS growth of a fresh client process for build + `delay()` + `.get()`; *live-view "
    "overhead* is how much longer a group takes with `nbcanvas.widgets.live_view(result)` "
    "attached (median over 121 pairs of runs with and without it). Celery gets lists, not "
    "generators, as group and chord headers (its chord is about twice as slow with a generator "
    "here).")


def readme_section(report: dict[str, Any]) -> str:
    """The README text between the bench markers."""
    m = report["meta"]
    v = m["versions"]
    run = (f"Last run: {m['started'][:10]}, {m['cpu_count']} cores, Python {v['python']}, "
           f"dask {v['dask']}, Celery {m.get('celery', '?')}; load average "
           f"{m['loadavg_start']:.1f} at the start, {m['loadavg_end']:.1f} at the end; the whole "
           f"run took {m['duration_s'] / 60:.1f} min.")
    if m.get("note"):
        run += f" {m['note']}"
    if max(m["loadavg_start"], m["loadavg_end"]) > 0.75 * (m["cpu_count"] or 1):
        run += (" The machine was busy with other work during the run (see the load average): "
                "absolute numbers are noisy; compare columns within this run.")
    paras = [textwrap.fill(_INTRO.format(repeat=m["repeat"]), 96), textwrap.fill(run, 96),
             markdown_table(report), textwrap.fill(_ROWS, 96)]
    return "\n\n".join(paras) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (for the test)")
    ap.add_argument("--only", default=",".join(DEFAULT_ONLY),
                    help="comma-separated: nbcanvas,dask,celery,duel,kill (default: all but kill)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per throughput workload")
    ap.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--no-readme", action="store_true", help="leave README.md alone")
    ap.add_argument("--note", default=os.environ.get("BENCH_NOTE", ""),
                    help="a sentence for the README (default: $BENCH_NOTE)")
    ap.add_argument("--one", choices=[*GROUPS["nbcanvas"], *GROUPS["dask"]],
                    help=argparse.SUPPRESS)  # one column, in this process: the bench's own use
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)  # where --one writes its cells
    a = ap.parse_args(argv)
    if a.one:
        import json
        if a.out is None:
            ap.error("--one needs --out")
        install_signal_handlers()
        cells = _one_here(a.one, Sizes.quick_sizes() if a.quick else Sizes.full(), a.repeat)
        a.out.write_text(json.dumps(cells))
        return 0
    only = tuple(x.strip() for x in a.only.split(",") if x.strip())
    unknown = [x for x in only if x not in GROUPS]
    if unknown:
        ap.error(f"unknown --only name(s) {unknown}; choose from {', '.join(GROUPS)}")
    install_signal_handlers()
    s = Sizes.quick_sizes() if a.quick else Sizes.full()
    started = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    results, extra = run_all(only, s, a.repeat)
    meta = {"started": started.isoformat(), "duration_s": round(time.perf_counter() - t0, 1),
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "repeat": a.repeat,
            "only": list(only), "quick": a.quick, "loadavg_start": load0,
            "loadavg_end": os.getloadavg()[0], "versions": _versions(), "note": a.note, **extra}
    report = build_report(results, s, meta, kill="kill" in only)
    print(text_table(report))
    full = not a.quick and all(g in only for g in DEFAULT_ONLY)
    path = write_json(report, a.results_dir, latest=full)
    log(f"wrote {path}" + (" and latest.json" if full else ""))
    if full and not a.no_readme:
        update_readme(ROOT / "README.md", readme_section(report))
        log("updated the bench section of README.md")
    log(f"total {meta['duration_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
