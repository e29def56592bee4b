"""Single-task round trips of nbcanvas and Celery+Redis, measured in alternating blocks.

The latency rows of the other workloads come from one system after the other, minutes apart;
on a shared 2-core machine the background load drifts in between (Celery's p50 was 2.1 ms in
one full run here and 3.6 ms in the next). Here both run at the same time: nbcanvas's embedded
cluster in this process, and a Celery prefork worker (concurrency 2) with Redis, driven by
``bench.celery_driver --mode serve`` in the Celery venv. Blocks of ``delay().get()`` alternate
between the two (``Sizes.duel_blocks`` blocks each, the starting side swapping every block),
so both see the same machine. Only one system sends work at any moment; the other one idles.
There is a round for each pool of the embedded cluster (``ROUNDS``), against the same Celery
worker.
"""
from __future__ import annotations

import json
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from . import Sizes
from .common import ROOT, Cell, Procs, log, na, split_latency

__all__ = ["run_duel", "KEYS"]

KEYS = ("duel_p50", "duel_p90")
READY_TIMEOUT = 120.0
BLOCK_TIMEOUT = 120.0


class _Lines:
    """The lines a child prints, read by a thread, waited for with a timeout."""

    def __init__(self, stream: Any) -> None:
        self._q: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self._q.put(line)
        self._q.put(None)

    def next(self, timeout: float, what: str) -> str:
        try:
            line = self._q.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"the Celery driver gave no {what} within {timeout:g} s") from None
        if line is None:
            raise RuntimeError(f"the Celery driver exited before its {what}")
        return line.strip()


def _cells(samples: list[float], blocks: int) -> dict[str, Cell]:
    c = split_latency(samples)
    p90 = c.pop("p90")
    note = f"{len(samples)} samples in {blocks} blocks alternating with the other system"
    c["note"] = p90["note"] = note
    return {"duel_p50": c, "duel_p90": p90}


def _nbcanvas_side(pool: str) -> Any:
    """A function running n nbcanvas round trips on the embedded cluster (ms each)."""
    from .nb import on_embedded
    t, _ = on_embedded(f"bench-duel-{pool}", pool)

    def run(n: int) -> list[float]:
        lat = []
        for i in range(n):
            t0 = time.perf_counter()
            if t.add.delay(i, 1).get(timeout=60) != i + 1:
                raise AssertionError("wrong result")
            lat.append((time.perf_counter() - t0) * 1e3)
        return lat
    run(50)  # warm-up
    return run


#: the nbcanvas side of each round of the duel (one embedded cluster at a time): its column
#: and ``nbcanvas.embedded.pool``; Celery's column shows its blocks of the first round
ROUNDS = (("nbcanvas-embedded", "processes"), ("nbcanvas-threads", "threads"))


def run_duel(s: Sizes) -> dict[str, dict[str, Cell]]:
    """``{"nbcanvas-embedded": cells, "nbcanvas-threads": cells, "celery-redis": cells}`` for
    ``KEYS`` (error cells if something failed): a round against Celery for each pool."""
    from .celery_side import VENV, celery_env, ensure_venv, start_redis, start_worker
    try:
        py = ensure_venv()
    except Exception as e:  # noqa: BLE001
        return _failed(f"error: could not set up {VENV.name}: {type(e).__name__}: {e}")
    logdir = Path(tempfile.mkdtemp(prefix="nbcanvas-bench-duel-"))
    env = celery_env()
    blocks = max(2, s.duel_blocks)
    size = max(1, s.latency_samples // blocks)
    samples: dict[str, list[float]] = {}
    try:
        with Procs() as procs:
            port = start_redis(procs, logdir)
            env["BENCH_REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
            start_worker(procs, py, env, logdir)
            driver = procs.start("celery driver (serve)",
                                 [str(py), "-m", "bench.celery_driver", "--mode", "serve"],
                                 cwd=str(ROOT), env=env, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True, bufsize=1)
            lines = _Lines(driver.stdout)
            if lines.next(READY_TIMEOUT, "ready line") != "ready":
                raise RuntimeError("the Celery driver did not say ready")

            def celery(n: int) -> list[float]:
                assert driver.stdin is not None
                driver.stdin.write(f"lat {n}\n")
                driver.stdin.flush()
                return [float(x) for x in json.loads(lines.next(BLOCK_TIMEOUT, "samples"))]
            from nbcanvas.cluster import close_embedded
            for system, pool in ROUNDS:
                close_embedded()  # the previous round's
                sides = {system: _nbcanvas_side(pool), f"celery-redis/{system}": celery}
                log(f"  {pool}: {blocks} blocks of {size} round trips each, alternating")
                for b in range(blocks):
                    order = list(sides) if b % 2 == 0 else list(reversed(sides))
                    for side in order:
                        samples.setdefault(side, []).extend(sides[side](size))
            assert driver.stdin is not None
            driver.stdin.write("quit\n")
            driver.stdin.flush()
    except Exception as e:  # noqa: BLE001 - a failed duel leaves the other rows alone
        log(f"duel failed: {type(e).__name__}: {e}")
        return _failed(f"error: {type(e).__name__}: {str(e)[:200]}")
    finally:
        shutil.rmtree(logdir, ignore_errors=True)
        from nbcanvas.cluster import close_embedded
        close_embedded()
    out = {system: _cells(samples[system], blocks) for system, _ in ROUNDS}
    for system, _ in ROUNDS[1:]:  # Celery's blocks of the later rounds go in their notes
        theirs = split_latency(samples[f"celery-redis/{system}"])
        for key, c in (("duel_p50", theirs), ("duel_p90", theirs["p90"])):
            out[system][key]["note"] += f"; Celery+Redis in the same blocks: {c['value']:.2f} ms"
    first = ROUNDS[0][0]
    out["celery-redis"] = _cells(samples[f"celery-redis/{first}"], blocks)
    return out


def _failed(note: str) -> dict[str, dict[str, Cell]]:
    bad = {k: na(note) for k in KEYS}
    return {system: dict(bad) for system in [r[0] for r in ROUNDS] + ["celery-redis"]}
