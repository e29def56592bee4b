"""Client memory: RSS growth of a fresh process for build + delay + get of a big group.

``run_probe`` starts ``python -m bench.mem SYSTEM ADDRESS N`` against a running scheduler, so
earlier workloads of the bench don't muddy the numbers. The probe connects and warms up, takes
its RSS as the base, resets the peak (``/proc/self/clear_refs``), runs the group once, and
prints JSON: base, peak and after, in MB. The cell's value is peak − base.
"""
from __future__ import annotations

import gc
import json
import subprocess
import sys
import time

from .common import ROOT, Cell, Procs, cell, na, reset_peak_rss, rss_mb

__all__ = ["run_probe", "probe", "PROBE_TIMEOUT"]

PROBE_TIMEOUT = 600.0


def probe(system: str, address: str, n: int) -> dict[str, float]:
    """Run in the child: build + delay + get of an ``n``-task group on ``address``."""
    from . import tasks
    from .clusters import quiet_distributed
    quiet_distributed()
    if system == "nbcanvas":
        import nbcanvas as nc
        app = nc.App("bench-mem", address=address, set_as_current=False)
        add = app.task(tasks.add, name="bench.add")

        def once(k: int) -> list[int]:
            r = nc.group(add.s(i, i) for i in range(k)).delay()
            try:
                return r.get(timeout=PROBE_TIMEOUT)
            finally:
                r.forget()
    elif system == "dask":
        from distributed import Client
        client = Client(address, set_as_default=False)

        def once(k: int) -> list[int]:
            futs = client.map(tasks.add, range(k), range(k), pure=False)
            try:
                return client.gather(futs)
            finally:
                del futs
    else:
        raise ValueError(system)
    once(100)  # connect, import, warm up
    gc.collect()
    base = rss_mb()["VmRSS"]
    reset = reset_peak_rss()
    t0 = time.perf_counter()
    out = once(n)
    dt = time.perf_counter() - t0
    if len(out) != n or out[-1] != 2 * (n - 1):
        raise AssertionError("wrong result")
    now = rss_mb()
    return {"base": base, "peak": now["VmHWM"], "after": now["VmRSS"], "seconds": dt,
            "peak_reset": float(reset)}


def run_probe(system: str, address: str, n: int) -> Cell:
    """The memory cell for ``system`` (``nbcanvas`` or ``dask``), from a child process."""
    with Procs() as procs:
        p = procs.start(f"memory probe ({system})",
                        [sys.executable, "-m", "bench.mem", system, address, str(n)],
                        cwd=str(ROOT), stdout=subprocess.PIPE, text=True)
        try:
            out, _ = p.communicate(timeout=PROBE_TIMEOUT)
        except subprocess.TimeoutExpired:
            return na(f"error: memory probe took more than {PROBE_TIMEOUT:g} s")
    if p.returncode != 0:
        return na(f"error: memory probe exited with {p.returncode}")
    d = json.loads(out.strip().splitlines()[-1])
    return cell(d["peak"] - d["base"], [],
                f"peak − base; base {d['base']:.0f} MB, after {d['after'] - d['base']:+.0f} MB, "
                f"{d['seconds']:.1f} s")


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1], sys.argv[2], int(sys.argv[3]))), flush=True)
