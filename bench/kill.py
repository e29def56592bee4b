"""Issue 12.1 in the bench: a worker process SIGKILLed (by PID) mid-way through a group.

A group of ``kill_tasks`` tasks of ``kill_ms`` ms each runs on a fresh LocalCluster (2 worker
processes under nannies, worker-saturation inf). Once about half the members are done, one
worker process is killed with SIGKILL by its PID (``client.run(os.getpid)``); the nanny starts
a new one. A run counts as correct when ``.get()`` returns every member's result, in order,
within the time limit (no hang). The cell's value is the number of correct runs.
"""
from __future__ import annotations

import os
import random
import signal
import time
from typing import Any

from . import Sizes
from .common import Cell, cell, log

__all__ = ["run_kill", "one_run"]


def one_run(t: Any, client: Any, s: Sizes, rng: random.Random) -> tuple[bool, str]:
    """One group with one worker killed mid-way: ``(correct, what happened)``."""
    n = s.kill_tasks
    ideal = n * s.kill_ms / 1000.0 / 2
    limit = max(60.0, ideal * 6)
    pids = client.run(os.getpid)  # {worker address: pid}
    r = t.nc.group(t.sleep.s(s.kill_ms, i) for i in range(n)).delay()
    t0 = time.perf_counter()
    try:
        while r.completed_count() < n // 2 and time.perf_counter() - t0 < ideal * 2:
            time.sleep(0.02)
        done_before = r.completed_count()
        victim = rng.choice(sorted(pids.items()))
        os.kill(victim[1], signal.SIGKILL)
        try:
            out = r.get(timeout=limit)
        except Exception as e:  # noqa: BLE001 - a wrong outcome is what we count
            return False, f"{type(e).__name__}: {str(e)[:120]}"
        dt = time.perf_counter() - t0
        if out != list(range(n)):
            bad = sum(1 for i, v in enumerate(out) if v != i) if isinstance(out, list) else n
            return False, f"wrong results ({bad} of {n})"
        return True, f"killed pid {victim[1]} at {done_before}/{n} done; {dt:.1f} s"
    finally:
        try:
            r.forget()
        except Exception:  # noqa: BLE001
            pass
        client.wait_for_workers(2, timeout=120)


def run_kill(s: Sizes) -> Cell:
    """``kill_runs`` runs; the value is how many ended with complete, correct results."""
    from .clusters import local_cluster
    from .nb import NbTasks
    rng = random.Random(12)
    ok, notes = 0, []
    with local_cluster("inf") as client:
        t = NbTasks("bench-kill", client=client)
        t.nc.group(t.sleep.s(1, i) for i in range(10)).delay().get(timeout=60)  # warm-up
        for i in range(s.kill_runs):
            good, what = one_run(t, client, s, rng)
            ok += good
            log(f"  kill run {i + 1}/{s.kill_runs}: {'ok' if good else 'FAILED'}: {what}")
            if not good:
                notes.append(f"run {i + 1}: {what}")
    return cell(float(ok), [], "; ".join([f"{ok}/{s.kill_runs} correct"] + notes[:3]))
