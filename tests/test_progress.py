"""nbcanvas.progress: nc.progress() prints a tqdm line outside a kernel (blocking until the
workflow is finished) and shows the live view in one (covered by the kernel tests)."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import pytest

import nbcanvas as nc
from nbcanvas.progress import progress, text_progress

from .integration import controltasks as t
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
app = nc.App("test-progress")


@app.task(name="tasks.double")
def double(x):
    return 2 * x


@app.task(name="tasks.fail")
def fail(x):
    raise ValueError("no")


def test_text_line_of_a_finished_workflow():
    out = io.StringIO()
    text_progress(nc.group(double.s(i) for i in range(5)).apply(), file=out)
    line = out.getvalue()
    assert "group double" in line and "5/5" in line and "100%" in line


def test_failures_show_in_the_line():
    out = io.StringIO()
    text_progress((double.s(1) | fail.s() | double.s()).apply(), file=out)
    assert "3/3" in out.getvalue() and "1 failed" in out.getvalue()


def test_progress_outside_a_kernel_writes_to_stderr(capsys):
    assert progress(double.s(2).apply()) is None
    captured = capsys.readouterr()
    assert captured.out == "" and "1/1" in captured.err


def test_get_with_progress_prints_the_line_then_returns(capsys):
    assert double.s(4).apply().get(progress=True) == 8
    assert "1/1" in capsys.readouterr().err


@pytest.mark.cluster
def test_line_is_driven_by_events_and_blocks_until_finished(dask_client, tmp_path):
    gate = str(tmp_path / f"gate-{uuid.uuid4().hex[:6]}")
    r = nc.group(t.long_step.s(k, steps=1, gate=f"{gate}{k}") for k in range(3)).delay()
    out = io.StringIO()
    runner = threading.Thread(target=text_progress, args=(r,),
                              kwargs={"file": out, "mininterval": 0})
    runner.start()
    members = r.handle.nodes[r.id].members
    store = r.handle.store
    try:
        assert store.wait(lambda s: any(s.state(m) == "PROGRESS" for m in members), 30)
        k = next(k for k, m in enumerate(members) if store.state(m) == "PROGRESS")
        Path(f"{gate}{k}.0").touch()  # let one running member finish
        wait_until(lambda: "1/3" in out.getvalue(), 30, "tqdm's 1/3 line")  # its own thread
        assert runner.is_alive()  # still blocking: two members wait for their gates
    finally:
        for k in range(3):
            Path(f"{gate}{k}.0").touch()
    runner.join(60)
    assert not runner.is_alive() and "3/3" in out.getvalue() and "100%" in out.getvalue()
    assert r.get(timeout=30) == [0, 1, 2]
    r.forget()


@pytest.mark.cluster
def test_plain_python_script_prints_a_progress_line(dask_client):
    code = textwrap.dedent(f"""
        import nbcanvas as nc
        from distributed import Client
        from tests.integration import controltasks as t
        client = Client({dask_client.scheduler.address!r})
        r = nc.group(t.slow.s(i, 0.01) for i in range(20)).delay()
        nc.progress(r)
        print("after progress:", r.ready())
        r.forget()
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "after progress: True"
    assert "group slow" in out.stderr and "20/20" in out.stderr
