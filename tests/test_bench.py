"""The bench harness (``bench/``): it runs with tiny sizes and writes valid JSON.

No test here asserts wall-clock numbers: only that every cell is measured or says why not.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import SYSTEM_LABELS, SYSTEMS, Sizes, workloads
from bench.common import Procs, cell, measure, na, percentile
from bench.report import END, START, build_report, markdown_table, text_table, update_readme
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent


def _fake_results() -> dict:
    s = Sizes.full()
    res = {name: {w.key: cell(float(i), [float(i)]) for i, w in enumerate(workloads(s))}
           for name in SYSTEMS}
    res["dask-defaults"]["render"] = na("n/a: no diagrams")
    res["celery-redis"] = {"_error": na("error: RuntimeError: no redis")}
    return res


def test_report_tables_and_pass_marks(tmp_path: Path) -> None:
    rep = build_report(_fake_results(), Sizes.full(), {"started": "2026-01-01T00:00:00+00:00"})
    assert rep["systems"] == list(SYSTEMS)
    assert rep["pass"]["group"]["nbcanvas-embedded"] is True       # 0 s <= 1 s
    assert rep["pass"]["par_eff"]["nbcanvas-embedded"] is False    # 7 % < 90 %
    assert rep["pass"]["latency_p90"]["nbcanvas-embedded"] is None  # no target
    assert rep["results"]["celery-redis"]["group"]["note"].startswith("error")
    json.loads(json.dumps(rep))
    text, md = text_table(rep), markdown_table(rep)
    assert "group 10k" in text and "nbcanvas embedded" in text
    assert md.count("\n| ") == len(rep["workloads"])  # header, separator, rows
    assert md.count("no redis") == 1  # one note for a system that failed as a whole
    assert "err" in md and "no redis" in md and "n/a" in md


def test_readme_section_only_between_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# title\n\ntext\n")
    update_readme(readme, "table 1")
    assert readme.read_text() == f"# title\n\ntext\n\n{START}\ntable 1\n{END}\n"
    readme.write_text(readme.read_text() + "after\n")
    update_readme(readme, "table 2")
    assert readme.read_text() == f"# title\n\ntext\n\n{START}\ntable 2\n{END}\nafter\n"


def test_measure_and_percentile() -> None:
    c = measure(lambda: 2.0, 3)
    assert c["value"] == 2.0 and len(c["runs"]) == 3
    c = measure(lambda: (time.sleep(0.02), 1.0)[1], 5, budget=0.01)
    assert len(c["runs"]) == 1 and "1 of 5 runs" in c["note"]
    assert percentile(list(range(1, 101)), 50) == 50
    assert percentile(list(range(1, 101)), 90) == 90


def test_procs_stops_children_by_pid(tmp_path) -> None:
    ready = tmp_path / "ready"
    with Procs() as procs:
        p = procs.start("sleeper", [sys.executable, "-c",
                                    "import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, "
                                    f"signal.SIG_IGN); pathlib.Path({str(ready)!r}).touch(); "
                                    "time.sleep(60)"])
        wait_until(ready.exists, 30, "the child ignoring SIGTERM",
                   give_up=lambda: p.poll() is not None)
        t0 = time.monotonic()
        procs.stop(p, timeout=0.5)   # ignores SIGTERM: SIGKILL after the timeout
        assert p.returncode == -signal.SIGKILL and time.monotonic() - t0 < 10
        q = procs.start("sleeper 2", [sys.executable, "-c", "import time; time.sleep(60)"])
    assert q.poll() is not None  # stopped on the way out of the with block


def _run_bench(tmp_path: Path, only: str, timeout: float) -> dict:
    env = {**os.environ}
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    out = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", only, "--repeat",
                          "1", "--results-dir", str(tmp_path), "--no-readme"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    files = [p for p in tmp_path.glob("*.json") if p.name != "latest.json"]
    assert len(files) == 1 and not (tmp_path / "latest.json").exists()  # quick: no latest
    rep = json.loads(files[0].read_text())
    assert rep["meta"]["quick"] is True and rep["sizes"]["group"] == Sizes.quick_sizes().group
    assert "workload" in out.stdout  # the table
    for system in rep["systems"]:
        for key, c in rep["results"][system].items():
            assert set(c) >= {"value", "runs", "note"}
            # every cell is a number or says why not; none of the runnable ones failed
            assert c["value"] is not None or c["note"], (system, key)
            assert not c["note"].startswith("error"), (system, key, c["note"])
    rep["_log"] = out.stderr
    return rep


@pytest.mark.cluster
@pytest.mark.slow
def test_quick_run_nbcanvas_and_dask(tmp_path: Path) -> None:
    rep = _run_bench(tmp_path, "nbcanvas,dask", timeout=240)
    assert rep["systems"] == ["nbcanvas-embedded", "nbcanvas-threads", "nbcanvas-localcluster",
                              "dask-defaults", "dask-tuned"]
    # each column ran in a fresh process of its own, whatever ran before it
    started = re.findall(r"started the (.+?) column \(pid (\d+)\)", rep["_log"])
    assert [name for name, _ in started] == [SYSTEM_LABELS[x] for x in rep["systems"]]
    assert len({pid for _, pid in started}) == len(started)
    for system in rep["systems"]:
        for key in ("group", "chain", "chord", "latency_p50", "group10_get", "par_eff"):
            assert isinstance(rep["results"][system][key]["value"], float), (system, key)
    for system in ("nbcanvas-embedded", "nbcanvas-threads"):
        assert rep["results"][system]["memory"]["value"] > 0
        live = rep["results"][system]["liveview"]  # measured, or n/a without a view
        assert isinstance(live["value"], float) or live["note"].startswith("n/a")


#: Celery runs in its own venv (made by `make bench`) against a redis-server it starts.
needs_celery = pytest.mark.skipif(
    not (ROOT / "bench" / ".celery-venv" / ".bench-installed").exists()
    or shutil.which("redis-server") is None,
    reason="needs bench/.celery-venv (made by `make bench`) and redis-server")


@pytest.mark.cluster
@pytest.mark.slow
@needs_celery
def test_quick_run_celery(tmp_path: Path) -> None:
    rep = _run_bench(tmp_path, "celery", timeout=240)
    assert rep["systems"] == ["celery-redis", "celery-eager"]
    assert isinstance(rep["results"]["celery-redis"]["chord"]["value"], float)


@pytest.mark.cluster
@pytest.mark.slow
@needs_celery
def test_quick_run_duel(tmp_path: Path) -> None:
    rep = _run_bench(tmp_path, "duel", timeout=240)
    assert rep["systems"] == ["nbcanvas-embedded", "nbcanvas-threads", "celery-redis"]
    assert [w["key"] for w in rep["workloads"]] == ["duel_p50", "duel_p90"]
    for system in rep["systems"]:
        p50, p90 = (rep["results"][system][k] for k in ("duel_p50", "duel_p90"))
        assert 0 < p50["value"] <= p90["value"], (system, p50, p90)
        assert "alternating" in p50["note"]
    assert "Celery+Redis in the same blocks" in rep["results"]["nbcanvas-threads"]["duel_p50"]["note"]


def test_timeline_stamps_every_step_of_a_round_trip(tmp_path: Path) -> None:
    """``python -m bench.timeline`` on the embedded cluster with worker processes: each of its
    steps has a time for most round trips (a missing stamp would drop the round trip)."""
    from bench.timeline import STEPS
    out = tmp_path / "timeline.json"
    proc = subprocess.run([sys.executable, "-m", "bench.timeline", "--n", "20", "--rounds", "1",
                           "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["steps"] == [s[0] for s in STEPS]
    (one,) = report["rounds"]
    assert one["round_trips"] >= 15, proc.stdout
    # a step may be negative: it overlapped the next (see bench.timeline.steps_of)
    assert len(one["steps_ms"]) == len(STEPS) and all(math.isfinite(v) for v in one["steps_ms"])
    assert one["total_ms"] > 0
    assert "the worker's write" in proc.stdout
