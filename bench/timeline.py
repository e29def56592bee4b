"""``python -m bench.timeline``: where one ``delay().get()`` spends its time, hop by hop.

Runs ``add.delay(1, 2).get()`` on nbcanvas's embedded cluster with worker processes and stamps
each hand-off with the system-wide monotonic clock, in the kernel (this process: the main
thread, the scheduler's ``update_graph``, its ``nbtcp://`` comm to the workers) and in the worker
that ran the task (its comm, and dask's ``_run_task_simple`` around the task). The stamps are
wrappers put around those functions for the measurement, so they add a little to each step.
Prints the median of each step per round and writes them to ``--json`` if asked.

This is a measuring tool, not part of ``make bench``: docs/performance.md cites its output.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["STEPS", "AFTER", "install_kernel_stamps", "install_worker_stamps", "take_stamps",
           "steps_of", "main"]

#: (name, first stamp, second stamp): each step of a round trip is the time between two stamps
STEPS: list[tuple[str, str, str]] = [
    ("delay() on the kernel's main thread", "t0", "delayed"),
    ("to the scheduler on the kernel's event loop", "delayed", "graph"),
    ("the scheduler's update_graph", "graph", "graph_done"),
    ("to the scheduler's write to the worker", "graph_done", "k_write"),
    ("the scheduler's write (serialise, send)", "k_write", "k_written"),
    ("the wire, and the worker reads the message", "k_written", "w_read"),
    ("the worker's state machine, to its task thread", "w_read", "w_start"),
    ("the task (nbcanvas's step runner around add)", "w_start", "w_end"),
    ("back to the worker's loop and state machine", "w_end", "w_write"),
    ("the worker's write (serialise, send)", "w_write", "w_written"),
    ("the wire, to the kernel's event loop", "w_written", "k_read"),
    ("the kernel takes the result in, .get() returns", "k_read", "t1"),
]

_now = time.perf_counter  # CLOCK_MONOTONIC on Linux: one clock for every process


def _stamps() -> list[tuple[str, float]]:
    """This process's list of stamps. It lives in ``builtins``, not in a module global: run as
    ``python -m bench.timeline``, these functions are ``__main__``'s, which dask pickles by
    value with a copy of their globals each time it sends one."""
    import builtins
    if not hasattr(builtins, "_nbcanvas_timeline"):
        builtins._nbcanvas_timeline = []  # type: ignore[attr-defined]
    return builtins._nbcanvas_timeline  # type: ignore[attr-defined]


def _wrap_comm(prefix: str, on_arrival: bool) -> None:
    """Stamp ``<prefix>_write``/``<prefix>_written`` around nbtcp writes of small messages
    (``LeanComm.write_now``, which the embedded cluster's streams call) and ``<prefix>_read``
    when bytes arrive (``on_arrival``, before any connection is made) or a read returns."""
    from nbcanvas import comm
    out = _stamps()
    write = comm.LeanComm.write_now

    def stamped_write(self: Any, msg: Any, *a: Any, **k: Any) -> int | None:
        out.append((f"{prefix}_write", _now()))
        n = write(self, msg, *a, **k)
        out.append((f"{prefix}_written", _now()))
        return n
    comm.LeanComm.write_now = stamped_write  # type: ignore[method-assign]
    if on_arrival:
        received = comm._Stream.data_received

        def stamped_received(self: Any, data: bytes) -> None:
            out.append((f"{prefix}_read", _now()))
            received(self, data)
        comm._Stream.data_received = stamped_received  # type: ignore[method-assign]
    else:
        read = comm.LeanComm.read

        async def stamped_read(self: Any, *a: Any, **k: Any) -> Any:
            msg = await read(self, *a, **k)
            out.append((f"{prefix}_read", _now()))
            return msg
        comm.LeanComm.read = stamped_read  # type: ignore[method-assign]


def install_kernel_stamps() -> None:
    """In the kernel, before the embedded cluster starts (the event loop binds each
    connection's ``data_received`` when it is made)."""
    _wrap_comm("k", on_arrival=True)


def install_worker_stamps() -> None:
    """In a worker process (``client.run``): its comm and the task thread's run."""
    import distributed.worker as dworker
    _wrap_comm("w", on_arrival=False)
    out, run = _stamps(), dworker._run_task_simple

    def stamped_run(*a: Any, **k: Any) -> Any:
        out.append(("w_start", _now()))
        try:
            return run(*a, **k)
        finally:
            out.append(("w_end", _now()))
    dworker._run_task_simple = stamped_run


def take_stamps() -> list[tuple[str, float]]:
    """This process's stamps so far, cleared."""
    out = _stamps()
    taken = out[:]
    out.clear()
    return taken


def _stamp_update_graph(dask_scheduler: Any) -> None:
    """On the scheduler (``client.run_on_scheduler``; the embedded one is in this process)."""
    handler = dask_scheduler.stream_handlers["update-graph"]
    out = _stamps()

    async def stamped(*a: Any, **k: Any) -> Any:
        out.append(("graph", _now()))
        try:
            return await handler(*a, **k)
        finally:
            out.append(("graph_done", _now()))
    dask_scheduler.stream_handlers["update-graph"] = stamped


#: the stamp each stamp must follow: what caused it. A stamp taken after the fact (the end of
#: a write, ``delay()`` returning on the main thread) can come after the next one, taken in
#: another thread or process, when its thread waits for a CPU.
AFTER: dict[str, str] = {"graph": "t0", "graph_done": "graph", "k_write": "graph_done",
                         "k_written": "k_write", "w_read": "k_write", "w_start": "w_read",
                         "w_end": "w_start", "w_write": "w_end", "w_written": "w_write",
                         "k_read": "w_write"}


def steps_of(t0: float, delayed: float, t1: float,
             stamps: list[tuple[str, float]]) -> list[float] | None:
    """One round trip's steps (seconds) from the stamps between ``t0`` and ``t1``: each stamp
    is the first of its name after the stamp that caused it (:data:`AFTER`); None if one is
    missing. A step that overlaps the next comes out negative (say, the scheduler taking the
    graph before ``delay()`` has returned on the main thread).

    >>> names = [b for _, _, b in STEPS[1:-1]]  # "graph", "graph_done", ..., "k_read"
    >>> steps_of(0.0, 1.0, 13.0, [(n, float(i)) for i, n in enumerate(names, start=2)])
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0]
    >>> steps_of(0.0, 3.0, 13.0, [(n, float(i)) for i, n in enumerate(names, start=2)])[:2]
    [3.0, -1.0]
    >>> steps_of(0.0, 1.0, 13.0, [("graph", 2.0)]) is None
    True
    """
    at = {"t0": t0, "delayed": delayed}
    for name, cause in AFTER.items():
        found = next((t for n, t in stamps if n == name and at[cause] <= t <= t1), None)
        if found is None:
            return None
        at[name] = found
    at["t1"] = t1
    return [at[b] - at[a] for _, a, b in STEPS]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m bench.timeline", description=__doc__)
    ap.add_argument("--n", type=int, default=300, help="round trips per round (300)")
    ap.add_argument("--rounds", type=int, default=4, help="rounds (4)")
    ap.add_argument("--json", type=Path, help="write the medians here")
    a = ap.parse_args(argv)
    install_kernel_stamps()
    import dask

    from nbcanvas.cluster import close_embedded

    from .nb import on_embedded
    with dask.config.set({"nbcanvas.embedded.comm": "nbtcp"}):
        t, conn = on_embedded("bench-timeline", "processes")
    try:
        client = conn.client
        client.run(install_worker_stamps)
        client.run_on_scheduler(_stamp_update_graph)
        for i in range(100):
            t.add.delay(i, 1).get(timeout=30)
        rounds = []
        for _ in range(a.rounds):
            take_stamps()
            client.run(take_stamps)
            marks = []
            for i in range(a.n):
                t0 = _now()
                r = t.add.delay(i, 1)
                delayed = _now()
                r.get(timeout=30)
                marks.append((t0, delayed, _now()))
            stamps = sorted(take_stamps() + [s for v in client.run(take_stamps).values()
                                             for s in v], key=lambda s: s[1])
            rows = [x for x in (steps_of(*m, stamps) for m in marks) if x is not None]
            medians = [statistics.median(c) * 1e3 for c in zip(*rows)] if rows else []
            total = statistics.median(m[2] - m[0] for m in marks) * 1e3
            rounds.append({"round_trips": len(rows), "total_ms": total, "steps_ms": medians})
            print(f"round {len(rounds)}: {len(rows)} of {a.n} round trips stamped whole, "
                  f"median {total:.3f} ms", flush=True)
    finally:
        close_embedded()
    print(f"{'step':<52}" + "".join(f"{i + 1:>8}" for i in range(len(rounds))))
    for k, (name, _, _) in enumerate(STEPS):
        print(f"{name:<52}" + "".join(f"{r['steps_ms'][k]:8.3f}" if r["steps_ms"] else "       —"
                                      for r in rounds))
    report = {"steps": [s[0] for s in STEPS], "rounds": rounds}
    if a.json:
        a.json.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
