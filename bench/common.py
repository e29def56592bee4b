"""Measurement helpers and child-process bookkeeping (stdlib only: the Celery driver uses it).

A measured value is a :class:`Cell` (value, runs, note) turned into a plain dict for JSON.
Every subprocess the bench starts goes through :class:`Procs`, which stops it by PID (SIGTERM,
then SIGKILL to its own process group) however the bench ends.
"""
from __future__ import annotations

import gc
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["Cell", "cell", "na", "error_cell", "measure", "guarded", "percentile", "p50_ms",
           "split_latency", "timed", "rss_mb", "reset_peak_rss", "Procs", "free_port", "log",
           "ROOT", "install_signal_handlers"]

#: The repository root (the directory that holds ``bench/``).
ROOT = Path(__file__).resolve().parent.parent

Cell = dict[str, Any]  # {"value": float | None, "runs": [...], "note": str}


def log(msg: str) -> None:
    """Progress to stderr (stdout carries the table)."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def cell(value: float | None, runs: Sequence[float] = (), note: str = "") -> Cell:
    """A measured value, the runs it is the median of, and an optional note."""
    return {"value": value, "runs": [round(r, 6) for r in runs], "note": note}


def na(note: str) -> Cell:
    """Not applicable / not measured, with the reason."""
    return cell(None, (), note)


def error_cell(e: BaseException) -> Cell:
    return cell(None, (), f"error: {type(e).__name__}: {str(e)[:300]}")


def percentile(xs: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100)."""
    s = sorted(xs)
    if not s:
        raise ValueError("no samples")
    k = max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))
    return s[k]


def split_latency(samples_ms: Sequence[float]) -> Cell:
    """The p50 cell of latency samples, carrying the p90 cell under ``"p90"``."""
    note = f"{len(samples_ms)} samples after warm-up"
    c = cell(percentile(samples_ms, 50), (), note)
    c["p90"] = cell(percentile(samples_ms, 90), (), note)
    return c


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """``(seconds, result)`` of one call."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def measure(run: Callable[[], float], repeat: int, budget: float = 20.0,
            note: str = "") -> Cell:
    """Median of ``repeat`` calls of ``run`` (each returns its own measured value).

    Stops early, after at least one run, once the runs took more than ``budget`` seconds in all
    (the note then says how many runs were made): the slowest systems would otherwise blow the
    bench's time budget. Each call starts after a full garbage collection (not timed), so that
    no run pays for the garbage of the one before it.
    """
    runs: list[float] = []
    t0 = time.perf_counter()
    for _ in range(max(1, repeat)):
        gc.collect()
        runs.append(run())
        if time.perf_counter() - t0 > budget:
            break
    if len(runs) < repeat:
        note = "; ".join(x for x in (note, f"{len(runs)} of {repeat} runs (time budget)") if x)
    return cell(statistics.median(runs), runs, note)


def p50_ms(run: Callable[[], float], samples: int, note: str, warm: int = 5) -> Cell:
    """The p50 of ``samples`` calls of ``run`` (each returns seconds), in ms, after ``warm``
    untimed calls; the note says how many."""
    for _ in range(warm):
        run()
    lat = [run() * 1e3 for _ in range(samples)]
    return cell(percentile(lat, 50), [], f"p50 of {len(lat)}{note}")


def guarded(name: str, fn: Callable[[], Cell]) -> Cell:
    """Run one workload; an exception becomes an error cell (and a traceback on stderr)."""
    log(f"  {name} ...")
    t0 = time.perf_counter()
    try:
        out = fn()
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - a failed workload must not stop the others
        traceback.print_exc(file=sys.stderr)
        out = error_cell(e)
    v = out.get("value")
    log(f"  {name} = {v if v is None else round(v, 4)} {out.get('note', '')} "
        f"({time.perf_counter() - t0:.1f} s)")
    return out


def rss_mb() -> dict[str, float]:
    """This process's ``VmRSS`` and ``VmHWM`` (peak) in MB, from /proc/self/status."""
    out: dict[str, float] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0]) / 1024.0
    except OSError:
        import resource
        out["VmHWM"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        out["VmRSS"] = out["VmHWM"]
    return out


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux ``clear_refs`` 5); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Procs:
    """The subprocesses the bench started; ``stop_all()`` (or ``with``) stops each by PID.

    Each child starts in its own session (so a terminal's Ctrl-C reaches only the bench, which
    then stops them in order) and is stopped with SIGTERM, then SIGKILL to its process group
    (Celery's prefork children included) after ``timeout`` seconds.
    """

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[Any]]] = []

    def start(self, name: str, args: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        p = subprocess.Popen(list(args), start_new_session=True, **kw)
        self.procs.append((name, p))
        log(f"started {name} (pid {p.pid})")
        return p

    def stop(self, p: subprocess.Popen[Any], timeout: float = 10.0) -> None:
        name = next((n for n, q in self.procs if q is p), "process")
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGTERM)
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{name} (pid {p.pid}) ignored SIGTERM for {timeout:g} s: SIGKILL")
            except ProcessLookupError:
                pass
        try:  # whatever is left of its process group (the child was its leader)
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            log(f"{name} (pid {p.pid}) did not exit after SIGKILL")
        self.procs = [(n, q) for n, q in self.procs if q is not p]

    def stop_all(self) -> None:
        for _, p in reversed(list(self.procs)):
            self.stop(p)

    def __enter__(self) -> Procs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so every ``finally`` stops its children."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(sig, _raise_interrupt)
        except (ValueError, OSError):  # not the main thread
            pass
